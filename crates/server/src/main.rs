//! `apogee`: the command-line entry point (`serve`, `demo-data`, `ingest`, `prices check`).
//! Errors end here as anyhow.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use apogee_analytics::formats::Format;
use apogee_server::config::Config;
use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's allocator: a node allocates and frees per connection, per frame
/// and per event on every worker thread at once, and in a 15,000-client reconnection storm
/// glibc's `malloc`/`free` (with its chunk coalescing) was about a quarter of the server's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "apogee",
    version,
    about = "Self-hosted, real-time AI-spend optimization assistant"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (WebSocket, REST, metrics).
    #[command(after_help = SERVE_ENV_HELP)]
    Serve {
        /// TOML configuration file; APOGEE_* environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Load the synthetic demo dataset into org `demo` first, unless it has recent data.
        #[arg(long)]
        demo_data: bool,
    },
    /// Load a realistic, clearly labelled synthetic usage history into the configured database.
    DemoData {
        /// TOML configuration file naming the database; APOGEE_* environment variables
        /// override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The org to load it into (its earlier demo records are replaced, nothing else).
        #[arg(long, default_value = "demo")]
        org: String,
        /// Days of history, ending now.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// API calls to generate over those days.
        #[arg(long, default_value_t = 200_000)]
        calls: u64,
        /// Random seed: the same seed, days and calls give the same history.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Load a usage file into the configured database for one org (idempotent by request_id).
    /// On a terminal, prints a summary and the first rejections; otherwise, or with --json,
    /// `{format, accepted, duplicates, rejected, rejected_count}` as JSON (the first 100
    /// rejections, and how many there were). Exits 1 when no record of the file was good
    /// (none stored now or before), and with --strict when any record was rejected.
    Ingest {
        /// NDJSON/JSON usage records (docs/usage-record.md), CSV with a header row, a LiteLLM
        /// spend-log export or an OpenAI usage export; the format is detected from the content.
        file: PathBuf,
        /// TOML configuration file naming the database; APOGEE_* environment variables
        /// override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The org the records belong to.
        #[arg(long, default_value = "demo")]
        org: String,
        /// ndjson, csv, litellm or openai, instead of detecting it from the content.
        #[arg(long, value_parser = parse_format)]
        format: Option<Format>,
        /// Print the summary as JSON, even on a terminal.
        #[arg(long)]
        json: bool,
        /// Exit 1 when any record was rejected (the good ones are still stored).
        #[arg(long)]
        strict: bool,
    },
    /// Delete an org's usage records (and their share of the hourly rollups) by request id,
    /// request id prefix, or time range; prints `{"deleted": N}`.
    DeleteUsage {
        /// TOML configuration file naming the database; APOGEE_* environment variables
        /// override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The org whose records to delete.
        #[arg(long)]
        org: String,
        /// A request id to delete (repeat for several).
        #[arg(long = "id")]
        ids: Vec<String>,
        /// Delete the records whose request id starts with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Delete the records at or after this instant (RFC 3339 or YYYY-MM-DD)…
        #[arg(long)]
        from: Option<String>,
        /// …and before this one (a bare date includes that whole day).
        #[arg(long)]
        to: Option<String>,
    },
    /// Price catalog tools.
    Prices {
        #[command(subcommand)]
        command: PricesCommand,
    },
}

#[derive(Subcommand)]
enum PricesCommand {
    /// Read a prices file (Apogee's TOML or LiteLLM's model_prices_and_context_window.json)
    /// the way the server would and say what it holds; with --org, list the models of that
    /// org's usage that are unpriced, whether the file prices them, and the closest catalog
    /// names. Exits non-zero when the file cannot be used.
    Check {
        /// The prices file to read.
        file: PathBuf,
        /// TOML configuration file naming the database; APOGEE_* environment variables
        /// override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The org whose usage to check (needs the configured database).
        #[arg(long)]
        org: Option<String>,
        /// How many days of the org's usage to look at.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

/// What `serve --help` says about the environment (the README's table has every variable).
const SERVE_ENV_HELP: &str = "\
Environment (overrides the --config file; every variable, with its default, is in the
README's Configuration table):
  APOGEE_ADDR            listen address [default: 127.0.0.1:8080; port 0 picks a free one]
  APOGEE_ENV             development, staging or production [default: development]
  APOGEE_DATA_DIR        where the SQLite database lives [default: ./apogee-data]
  APOGEE_DATABASE_URL    sqlite://PATH or postgres://USER:PASS@HOST/DB
  APOGEE_REDIS_URL       redis://HOST:PORT/DB, to run several nodes
  APOGEE_AUTH            demo (development only) or jwt
  APOGEE_JWT_*           keys and claims for jwt mode
  APOGEE_OIDC_*          sign-in through your OpenID Connect provider
  APOGEE_PRICES_FILE     your own prices (TOML, or LiteLLM's price map)
  APOGEE_METRICS_ADDR    serve /metrics on this address only
  RUST_LOG               log filter [default: info]";

fn parse_format(name: &str) -> Result<Format, String> {
    Format::parse_name(name)
        .ok_or_else(|| format!("unknown format `{name}`: use ndjson, csv, litellm or openai"))
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Config::load(path, |k| std::env::var(k).ok()).context("invalid configuration")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Each connection is a file descriptor: allow as many as the hard limit permits.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
    match Cli::parse().command {
        Command::Serve { config, demo_data } => {
            let config = load_config(config.as_deref())?;
            if demo_data {
                apogee_server::demo_data::load_if_stale(&config).await?;
            }
            apogee_server::app::serve(config).await?;
        }
        Command::DemoData {
            config,
            org,
            days,
            calls,
            seed,
        } => {
            let config = load_config(config.as_deref())?;
            let spec = apogee_server::demo_data::spec(days, calls, seed);
            let summary = apogee_server::demo_data::load(&config, &org, &spec).await?;
            println!("{summary}");
        }
        Command::Ingest {
            file,
            config,
            org,
            format,
            json,
            strict,
        } => {
            let config = load_config(config.as_deref())?;
            let progress = std::io::stderr().is_terminal();
            let summary =
                apogee_server::ingest::file::run(&config, &file, &org, format, progress).await?;
            if json || !std::io::stdout().is_terminal() {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                print!("{summary}");
            }
            if summary.nothing_accepted() {
                anyhow::bail!(
                    "no record of {} was accepted (read as {}; --format chooses another)",
                    file.display(),
                    summary.format
                );
            }
            if strict && summary.rejected_count > 0 {
                anyhow::bail!(
                    "{} record(s) of {} were rejected (--strict)",
                    summary.rejected_count,
                    file.display()
                );
            }
        }
        Command::Prices {
            command:
                PricesCommand::Check {
                    file,
                    config,
                    org,
                    days,
                },
        } => {
            let config = load_config(config.as_deref())?;
            let report = apogee_server::prices::check(&config, &file, org.as_deref(), days).await?;
            print!("{report}");
        }
        Command::DeleteUsage {
            config,
            org,
            ids,
            prefix,
            from,
            to,
        } => {
            let config = load_config(config.as_deref())?;
            let request = apogee_server::usage_delete::Request {
                ids,
                prefix,
                from,
                to,
            };
            let deleted = apogee_server::usage_delete::run(&config, &org, request).await?;
            println!("{}", serde_json::json!({ "deleted": deleted }));
        }
    }
    Ok(())
}
