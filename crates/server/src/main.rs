//! `apogee`: the command-line entry point (`serve`, `demo-data`, `ingest`, `prices check`).
//! Errors end here as anyhow.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use apogee_analytics::formats::Format;
use apogee_server::config::Config;
use clap::{Parser, Subcommand};

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
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "demo")]
        org: String,
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long, default_value_t = 200_000)]
        calls: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Load a usage file into the configured database for one org (idempotent by request_id);
    /// prints `{accepted, duplicates, rejected, rejected_count}` as JSON (the first 100
    /// rejections, and how many there were).
    Ingest {
        /// NDJSON/JSON (§8 records), CSV with a header row, a LiteLLM spend-log export or an
        /// OpenAI usage export.
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "demo")]
        org: String,
        /// ndjson, csv, litellm or openai; by default `.csv` files are CSV, others NDJSON/JSON.
        #[arg(long, value_parser = parse_format)]
        format: Option<Format>,
    },
    /// Delete an org's usage records (and their share of the hourly rollups) by request id,
    /// request id prefix, or time range; prints `{"deleted": N}`.
    DeleteUsage {
        #[arg(long)]
        config: Option<PathBuf>,
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
        file: PathBuf,
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
        } => {
            let config = load_config(config.as_deref())?;
            let progress = std::io::stderr().is_terminal();
            let summary =
                apogee_server::ingest::file::run(&config, &file, &org, format, progress).await?;
            println!("{}", serde_json::to_string(&summary)?);
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
