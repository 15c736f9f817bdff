//! Where the command's log lines go and how they look: human-readable text on stderr by
//! default, or one JSON object per line (`--log-format json`, env
//! `STREAMGATE_LOG_FORMAT`) for log shippers. `RUST_LOG` picks what is logged either way.

use tracing_subscriber::EnvFilter;

/// The shape of each log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-11-30T09:52:02.123Z  INFO streamgate::app: streamgate listening ...`
    #[default]
    Text,
    /// `{"timestamp":"…","level":"INFO","fields":{"message":"…",…},"target":"…"}`
    Json,
}

/// Installs the global subscriber writing `format` lines to stderr.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // streamgate puts its context in each event's fields and opens no spans.
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(false).init(),
    }
}

/// A message for the operator: a plain line on stderr in text mode, a log line (so the
/// stream stays pure JSON) in JSON mode.
pub fn notice(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!("{message}"),
        LogFormat::Json => tracing::info!("{message}"),
    }
}

/// A fatal error ending the command, shown the same way as [`notice`].
pub fn fatal(format: LogFormat, error: &anyhow::Error) {
    match format {
        LogFormat::Text => eprintln!("streamgate: {error:#}"),
        LogFormat::Json => tracing::error!(error = format!("{error:#}"), "streamgate stopped on an error"),
    }
}
