//! `apogee-load`: drives an Apogee server through its public WebSocket protocol only
//! (PROTOCOL.md) and reports what a client observes. Every loop is bounded by a count and a
//! deadline; point it at loopback addresses only.

mod golden;
mod stats;

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "apogee-load",
    about = "Load scenarios against an Apogee server (loopback only)"
)]
struct Cli {
    /// Server base address, e.g. 127.0.0.1:8080.
    #[arg(long, default_value = "127.0.0.1:8080", global = true)]
    addr: String,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Users each run the golden path ("Analyze my AI costs") a number of times, one after the
    /// other; reports time from sending the message to the supervisor's completion.
    Golden {
        #[arg(long, default_value_t = 1)]
        users: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value = "Analyze my AI costs")]
        question: String,
        /// Give up on a run after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
}

fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        is_loopback(&cli.addr),
        "apogee-load only targets loopback addresses (got {})",
        cli.addr
    );
    match cli.scenario {
        Scenario::Golden {
            users,
            runs,
            question,
            timeout_secs,
        } => {
            let report = golden::run(
                &cli.addr,
                users,
                runs,
                &question,
                Duration::from_secs(timeout_secs),
            )
            .await?;
            println!("{report}");
        }
    }
    Ok(())
}
