//! The `streamgate` command line: `run`, `demo`, `simulate`, `token`, `plugin`
//! (operators, [`admin_client`]), `check` (a config and the services it names,
//! [`check`]), `record` (a tenant's log for the kit, [`record`]), and for plugin authors
//! `conformance` and `componentize` ([`kit`]). Log lines are text or JSON ([`logging`]).

pub mod admin_client;
mod check;
mod kit;
pub mod logging;
mod record;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::{self, Source};
use crate::config::Config;

#[derive(Parser)]
#[command(name = "streamgate", version, about = "Kafka -> Redis -> Wasm policies -> Server-Sent Events")]
struct Cli {
    /// How log lines on stderr look: `text` for people, `json` (one object per line)
    /// for log shippers.
    #[arg(long, global = true, value_enum, default_value = "text", env = "STREAMGATE_LOG_FORMAT")]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the tenants in a config file, reading Kafka and sharing through Redis.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config as `run` would, then reach every Kafka broker and Redis it names.
    ///
    /// Prints one verdict per check (`ok` or `FAIL`, with the address and the reason) and
    /// a summary. Exit status: 0 when every check passed, 1 when a service could not be
    /// reached (or a tenant's chain failed), 2 when the config itself is invalid.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Only the config: no connection to Kafka or Redis.
        #[arg(long)]
        offline: bool,
        /// How long each connection may take.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// The embedded default: simulated taxis, in-memory bus, no Kafka or Redis.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080", env = "STREAMGATE_LISTEN")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 300)]
        taxis: usize,
        /// Milliseconds between two reports of a taxi.
        #[arg(long, default_value_t = 500)]
        every_ms: u64,
    },
    /// Produce simulated taxi reports into a Kafka topic.
    Simulate {
        #[arg(long, default_value = "127.0.0.1:9092", env = "STREAMGATE_KAFKA_BROKERS")]
        brokers: String,
        #[arg(long, default_value = "taxi-locations")]
        topic: String,
        #[arg(long, default_value_t = 200)]
        taxis: usize,
        #[arg(long, default_value_t = 1000)]
        every_ms: u64,
        /// How many rounds of reports (each taxi reports once a round).
        #[arg(long, default_value_t = 60)]
        rounds: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Issue an HS256 subscriber token for a tenant with `[tenant.auth] hs256_secret`.
    Token {
        /// The tenant's secret (or env STREAMGATE_TOKEN_SECRET).
        #[arg(long, env = "STREAMGATE_TOKEN_SECRET", hide_env_values = true)]
        secret: String,
        #[arg(long)]
        tenant: String,
        /// A key the holder may read (repeatable); `*` for every key.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// Seconds until the token expires.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
    /// Deploy policy plugins and change tenants' chains on a running cluster (admin API).
    Plugin {
        /// Any instance of the cluster.
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "STREAMGATE_URL")]
        url: String,
        /// The admin token (config `admin.token`).
        #[arg(long, env = "STREAMGATE_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Record what a running tenant's first policy stage sees (from its Redis stream, bounded)
    /// into a file that `streamgate conformance NEW --against OLD --log FILE` replays.
    ///
    /// Per log entry: its position, its log time and the events' metadata as plugins get
    /// it (key, id and tag hashed); never payloads. Heartbeats are kept; control and
    /// undecodable entries are skipped and counted in the summary on stderr.
    Record {
        /// The tenant whose log (`<key_prefix>:<tenant>:log`) is read.
        #[arg(long)]
        tenant: String,
        /// The instances' config file: its `[redis]` url and key_prefix.
        #[arg(long, short, required_unless_present = "redis", conflicts_with_all = ["redis", "key_prefix"])]
        config: Option<PathBuf>,
        /// Redis URL, instead of --config.
        #[arg(long)]
        redis: Option<String>,
        /// Key prefix with --redis (default: streamgate).
        #[arg(long, requires = "redis")]
        key_prefix: Option<String>,
        /// The recorded log file to write (JSON lines, see docs/PLUGINS.md).
        #[arg(long, short)]
        out: PathBuf,
        /// At most this many log entries are read.
        #[arg(long, default_value_t = 10_000)]
        max_entries: usize,
        /// The file's entries take at most this many bytes.
        #[arg(long, default_value_t = 64 << 20)]
        max_bytes: usize,
        /// Start at this log position (e.g. an SSE id, 1763900000000-0) instead of the
        /// oldest retained entry.
        #[arg(long)]
        since: Option<crate::bus::LogPosition>,
    },
    /// Run the plugin conformance kit on a policy component (see docs/PLUGINS.md), or with
    /// `--against` compare it with another on the same generated and recorded logs.
    ///
    /// Exit status: 0 when every check passed (warnings and skips pass) or, with
    /// `--against`, when both decided every log alike; 1 when a check failed or they
    /// differ; 2 when the kit could not run (unreadable file, bad arguments, a recorded
    /// log that is damaged, truncated or of another version, a `--before` stage that
    /// cannot be loaded, refuses its config or faults).
    Conformance {
        /// The component file, or `builtin:NAME` for one of streamgate's own plugins.
        plugin: String,
        /// The config JSON stages are created from, as a tenant would give it.
        #[arg(long, default_value = "")]
        config: String,
        /// Print the report as JSON on stdout (progress still goes to stderr).
        #[arg(long)]
        json: bool,
        /// Seed of the generated inputs (default: from the clock; the report prints it).
        #[arg(long)]
        seed: Option<u64>,
        /// Generated logs, shared by the checks that judge generated runs.
        #[arg(long, default_value_t = streamgate_conformance::DEFAULT_CASES)]
        cases: usize,
        /// Differential mode: the plugin (file or builtin:NAME) to compare with; every
        /// difference in released events, their order and drop reasons is reported.
        #[arg(long)]
        against: Option<String>,
        /// The old plugin's config in differential mode (default: --config).
        #[arg(long, requires = "against")]
        against_config: Option<String>,
        #[command(flatten)]
        recorded: kit::Recorded,
    },
    /// Turn a plugin's core Wasm module (built for wasm32-unknown-unknown) into a component.
    Componentize {
        /// The core module cargo built, e.g. target/wasm32-unknown-unknown/plugin/my_plugin.wasm.
        module: PathBuf,
        /// Where to write the component.
        #[arg(long, short)]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginAction {
    /// Upload a component; prints its sha256 reference.
    Push {
        file: PathBuf,
        /// JSON config the plugin must accept (default: its defaults).
        #[arg(long)]
        config: Option<String>,
    },
    /// Set a tenant's chain: `--policy REF[=CONFIG_JSON]` per stage, in order. REF is
    /// builtin:NAME, sha256:HEX, or a local .wasm file (uploaded first).
    Set {
        tenant: String,
        #[arg(long = "policy", required = true)]
        policies: Vec<String>,
    },
    /// Go back to the tenant's previous chain.
    Rollback { tenant: String },
    /// The tenant's chain, history, calls, drops and faults (JSON).
    Status { tenant: String },
    /// With `--policy`: run that chain beside the tenant's as a shadow (output compared,
    /// never sent). Without: the shadow's diff (JSON). `--promote` makes it the live chain.
    Shadow {
        tenant: String,
        #[arg(long = "policy")]
        policies: Vec<String>,
        /// With `--policy`: promote by itself once at most RATE of the events differ for MS
        /// of log time, e.g. `0.001:600000`.
        #[arg(long, value_name = "RATE:MS", requires = "policies")]
        auto_promote: Option<String>,
        #[arg(long, conflicts_with_all = ["policies", "stop"])]
        promote: bool,
        #[arg(long, conflicts_with = "policies")]
        stop: bool,
    },
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format;
    logging::init(format);
    match cli.command {
        Command::Conformance {
            plugin,
            config,
            json,
            seed,
            cases,
            against: Some(old),
            against_config,
            recorded,
        } => {
            let run = kit::Run { config, json, seed, cases };
            return kit::differential(&plugin, &old, against_config, recorded, run);
        }
        Command::Conformance { plugin, config, json, seed, cases, against: None, recorded, .. } => {
            return kit::conformance(&plugin, &recorded, kit::Run { config, json, seed, cases });
        }
        Command::Componentize { module, output } => return kit::componentize(&module, &output),
        Command::Check { config, offline, timeout_ms } => {
            return check::check(&config, offline, Duration::from_millis(timeout_ms));
        }
        _ => {}
    }
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    let result = runtime.block_on(run(cli));
    // A blocking thread inside a client library (a Kafka consumer's close) never holds the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let failed = result.map_err(|e| logging::fatal(format, &e)).is_err();
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.log_format;
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    match cli.command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            app::serve(config, Source::Kafka, cancel).await?;
        }
        Command::Demo { listen, taxis, every_ms } => {
            let mut config = crate::demo::demo_config(listen);
            // So the admin API and `streamgate plugin` can be tried on the demo.
            config.admin.token = std::env::var("STREAMGATE_ADMIN_TOKEN").ok();
            config.validate()?;
            logging::notice(format, &format!("streamgate demo: open http://{listen}/ (Ctrl-C to stop)"));
            app::serve(config, Source::Simulator { taxis, every: Duration::from_millis(every_ms) }, cancel)
                .await?;
        }
        Command::Simulate { brokers, topic, taxis, every_ms, rounds, seed } => {
            let every = Duration::from_millis(every_ms);
            let n =
                crate::source::simulate::run_into_kafka(&brokers, &topic, taxis, every, rounds, seed, cancel)
                    .await?;
            eprintln!("produced {n} reports into {topic}");
        }
        Command::Token { secret, tenant, keys, ttl_secs } => {
            let exp =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + ttl_secs;
            let claims = crate::auth::Claims { tenant, keys, exp };
            println!("{}", crate::auth::issue_hs256(&secret, &claims)?);
        }
        Command::Plugin { url, token, action } => plugin(&url, &token, action).await?,
        Command::Record { tenant, config, redis, key_prefix, out, max_entries, max_bytes, since } => {
            let args =
                record::RecordArgs { tenant, config, redis, key_prefix, out, max_entries, max_bytes, since };
            record::record(args).await?
        }
        Command::Conformance { .. } | Command::Componentize { .. } | Command::Check { .. } => {
            unreachable!("run before tokio")
        }
    }
    Ok(())
}

async fn plugin(url: &str, token: &str, action: PluginAction) -> anyhow::Result<()> {
    use admin_client::{AdminClient, describe_applied, describe_upload};
    let client = AdminClient::new(url, token);
    match action {
        PluginAction::Push { file, config } => {
            println!("{}", describe_upload(&client.push(&file, config.as_deref()).await?))
        }
        PluginAction::Set { tenant, policies } => {
            println!("{}", describe_applied(&client.set(&tenant, &policies).await?))
        }
        PluginAction::Rollback { tenant } => {
            println!("{}", describe_applied(&client.rollback(&tenant).await?))
        }
        PluginAction::Status { tenant } => println!("{:#}", client.status(&tenant).await?),
        PluginAction::Shadow { tenant, policies, auto_promote, .. } if !policies.is_empty() => {
            println!("{:#}", client.shadow(&tenant, &policies, auto_promote.as_deref()).await?)
        }
        PluginAction::Shadow { tenant, promote, stop, .. } => {
            println!("{:#}", client.shadow_action(&tenant, promote, stop).await?)
        }
    }
    Ok(())
}

async fn cancel_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    cancel.cancel();
}
