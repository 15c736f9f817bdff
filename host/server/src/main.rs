//! The `streamgate` binary: everything is in the library's [`streamgate::cli`].

fn main() -> std::process::ExitCode {
    streamgate::cli::main()
}
