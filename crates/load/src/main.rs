//! `apogee-load`: drives an Apogee server through its public WebSocket protocol only
//! (PROTOCOL.md) and reports what clients observe. Every loop is bounded by a count and a
//! deadline; it refuses any address that is not loopback.

mod chaos;
mod conn;
mod fair;
mod golden;
mod idle;
mod progress;
mod server_metrics;
mod slow;
mod stats;
mod storm;

use std::time::Duration;

use clap::{Parser, Subcommand};

/// The server's allocator (mimalloc) here too: the load tool shares the machine's cores with
/// the server it measures, and glibc's `malloc`/`free` for thousands of clients' frames was CPU
/// taken from the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "apogee-load",
    about = "Load and resilience scenarios against an Apogee server (loopback only)"
)]
struct Cli {
    /// Server address, e.g. 127.0.0.1:8080 (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080", global = true)]
    addr: String,
    /// Give up on any single run or wait after this many seconds.
    #[arg(long, default_value_t = 120, global = true)]
    timeout_secs: u64,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Hold N idle connections; report connect rate and server memory per connection.
    Idle {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
        /// Prefix of the user names, to run several load processes against one server.
        #[arg(long, default_value = "idle")]
        prefix: String,
    },
    /// Users run the golden path; report run time, event latency and events/s.
    Golden {
        #[arg(long, default_value_t = 1)]
        users: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value = "Analyze my AI costs")]
        question: String,
        /// Another node of the same cluster: each user also listens there (two-node runs).
        #[arg(long)]
        watch_addr: Option<String>,
    },
    /// Random disconnects with resume; verify zero loss and duplication per user.
    Chaos {
        #[arg(long, default_value_t = 50)]
        users: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Probability of dropping the connection after each received frame.
        #[arg(long, default_value_t = 0.05)]
        drop_probability: f64,
        #[arg(long, default_value = "Analyze my AI costs")]
        question: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Drop N clients at once and reconnect them all with resume.
    Storm {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        #[arg(long, default_value_t = 3)]
        read_before_drop: u64,
        #[arg(long, default_value = "How do I send usage data?")]
        question: String,
    },
    /// Users firing bursts of questions while one quiet user asks one at a time; reports the
    /// quiet user's answer time (compare with `--bursters 0`).
    Fair {
        #[arg(long, default_value_t = 1)]
        bursters: usize,
        /// Questions each burster sends at once.
        #[arg(long, default_value_t = 20)]
        burst: usize,
        /// Questions the quiet user asks, one after another.
        #[arg(long, default_value_t = 10)]
        samples: usize,
        #[arg(long, default_value = "Analyze my AI costs")]
        question: String,
    },
    /// Some tabs stop reading while others run the golden path.
    Slow {
        #[arg(long, default_value_t = 20)]
        users: usize,
        #[arg(long, default_value_t = 5)]
        slow: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value = "Analyze my AI costs")]
        question: String,
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
    // Every connection is a file descriptor.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let timeout = Duration::from_secs(cli.timeout_secs);
    let addr = cli.addr.as_str();
    let report = match cli.scenario {
        Scenario::Idle {
            connections,
            users,
            concurrency,
            hold_secs,
            prefix,
        } => {
            let hold = Duration::from_secs(hold_secs);
            idle::run(
                addr,
                idle::Idle {
                    connections,
                    users,
                    concurrency,
                    hold,
                    prefix,
                },
            )
            .await?
        }
        Scenario::Golden {
            users,
            runs,
            question,
            watch_addr,
        } => {
            golden::run(
                addr,
                golden::Golden {
                    users,
                    runs,
                    question,
                    timeout,
                    watch_addr,
                },
            )
            .await?
        }
        Scenario::Chaos {
            users,
            runs,
            drop_probability,
            question,
            seed,
        } => {
            anyhow::ensure!(
                (0.0..1.0).contains(&drop_probability),
                "--drop-probability must be in [0, 1)"
            );
            chaos::run(
                addr,
                chaos::Chaos {
                    users,
                    runs,
                    drop_probability,
                    question,
                    timeout,
                    seed,
                },
            )
            .await?
        }
        Scenario::Storm {
            clients,
            concurrency,
            read_before_drop,
            question,
        } => {
            storm::run(
                addr,
                storm::Storm {
                    clients,
                    concurrency,
                    read_before_drop,
                    question,
                    timeout,
                },
            )
            .await?
        }
        Scenario::Fair {
            bursters,
            burst,
            samples,
            question,
        } => {
            fair::run(
                addr,
                fair::Fair {
                    bursters,
                    burst,
                    samples,
                    question,
                    timeout,
                },
            )
            .await?
        }
        Scenario::Slow {
            users,
            slow,
            runs,
            question,
        } => {
            slow::run(
                addr,
                slow::Slow {
                    users,
                    slow,
                    runs,
                    question,
                    timeout,
                },
            )
            .await?
        }
    };
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(
            is_loopback("127.0.0.1:8080") && is_loopback("localhost:1") && is_loopback("[::1]:9")
        );
        assert!(!is_loopback("10.0.0.1:8080") && !is_loopback("example.com:80"));
    }
}
