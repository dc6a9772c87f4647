//! The `idle` scenario: opens N connections (spread over U users), holds them while answering
//! heartbeats, and reports the connect rate and the server's resident memory per connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use crate::conn::{Conn, Frame};
use crate::progress::bar;
use crate::server_metrics::resident_bytes;

pub struct Idle {
    pub connections: usize,
    pub users: usize,
    pub concurrency: usize,
    pub hold: Duration,
    /// User names are `{prefix}-{n}`, so several load processes can share a server.
    pub prefix: String,
}

pub async fn run(addr: &str, p: Idle) -> anyhow::Result<String> {
    let rss_before = resident_bytes(addr).await?;
    let progress = bar(p.connections as u64, "connecting");
    let gate = Arc::new(Semaphore::new(p.concurrency.max(1)));
    let (release_tx, release_rx) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(p.connections);
    for i in 0..p.connections {
        let addr = addr.to_string();
        let user = format!("{}-{}", p.prefix, i % p.users.max(1));
        let gate = Arc::clone(&gate);
        let progress = progress.clone();
        let mut release = release_rx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await?;
            let mut conn = Conn::connect(&addr, &user, None).await?;
            conn.ready(Instant::now() + Duration::from_secs(60)).await?;
            drop(permit);
            progress.inc(1);
            // Keep reading so the server's pings get their pongs; stop when released.
            loop {
                tokio::select! {
                    _ = release.changed() => break,
                    f = conn.next(Instant::now() + Duration::from_secs(3600)) => {
                        if let Frame::Closed(code) = f? {
                            anyhow::bail!("server closed an idle connection ({code:?})");
                        }
                    }
                }
            }
            conn.close().await;
            anyhow::Ok(())
        }));
    }
    // Wait until every connection is ready (or failed), bounded by the tasks themselves.
    let deadline = Instant::now() + Duration::from_secs(600);
    while progress.position() < p.connections as u64 && Instant::now() < deadline {
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_time = started.elapsed();
    let ready = progress.position();
    progress.finish_and_clear();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = resident_bytes(addr).await?;
    tokio::time::sleep(p.hold).await;
    let rss_held = resident_bytes(addr).await?;
    let _ = release_tx.send(true);
    let mut failures = 0;
    let mut first_error = None;
    for t in tasks {
        if let Err(e) = t.await? {
            failures += 1;
            first_error.get_or_insert(e.to_string());
        }
    }
    let per_conn = rss_after.saturating_sub(rss_before) as f64 / ready.max(1) as f64;
    Ok(format!(
        "idle: {ready}/{n} connections ready over {users} users in {:.2}s ({:.0} connections/s), {failures} failed{err}\n\
         server RSS: {:.1} MiB before, {:.1} MiB with all connected, {:.1} MiB after holding {}s\n\
         RSS per idle connection: {:.2} KiB",
        connect_time.as_secs_f64(),
        ready as f64 / connect_time.as_secs_f64(),
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0,
        rss_held as f64 / 1048576.0,
        p.hold.as_secs(),
        per_conn / 1024.0,
        n = p.connections,
        users = p.users,
        err = first_error
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
    ))
}
