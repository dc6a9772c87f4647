//! The `storm` scenario: N clients (one user each) ask a question and stop reading part-way;
//! once every run has finished on the server, all N drop at once and reconnect with
//! `last_seq`. Reports how long until every client had resumed and caught up, and checks
//! that no event was lost or duplicated.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use crate::conn::{Conn, Frame, UserLog};
use crate::progress::bar;
use crate::server_metrics::metric;
use crate::stats::percentiles;

pub struct Storm {
    pub clients: usize,
    pub concurrency: usize,
    /// Events each client reads before it stops reading.
    pub read_before_drop: u64,
    pub question: String,
    pub timeout: Duration,
}

/// How often a client holding its reads back pings the server: within the default heartbeat
/// (25 s), so the server never finds it silent.
const KEEP_OPEN_EVERY: Duration = Duration::from_secs(10);

struct ClientResult {
    /// The resumed connection, still open: clients stay connected after a storm, and
    /// closing each as soon as it caught up would spend the shared cores on close
    /// handshakes while others are still resuming. They are closed once all are in.
    conn: Conn,
    resumed_after: Duration,
    caught_up_after: Duration,
    replayed: u64,
    lost: u64,
    duplicates: u64,
}

/// The local address client `i` connects from: its own in 127.0.0.0/8 when the server is on
/// loopback, as N clients on N machines would be. From one address, N open connections plus
/// the N the drop leaves in TIME_WAIT need 2N ephemeral ports — more than Linux's default
/// range (28,232) at N = 15,000 — and the kernel's search for a free port then costs the
/// load tool more CPU than the server's whole resume path, on the cores they share.
fn source_address(server: &str, i: usize) -> Option<IpAddr> {
    let server: SocketAddr = server.parse().ok()?;
    if !server.ip().is_loopback() || !server.is_ipv4() {
        return None;
    }
    // 127.1.0.1 onwards: clear of the server's own 127.0.0.1.
    let n = u32::try_from(i).ok()?.checked_add(0x7f01_0001)?;
    (n < 0x7fff_ffff).then(|| IpAddr::V4(Ipv4Addr::from(n)))
}

async fn one_client(
    addr: String,
    user: String,
    source: Option<IpAddr>,
    p: Arc<Storm>,
    gate: Arc<Semaphore>,
    armed: Arc<AtomicUsize>,
    mut drop_at: watch::Receiver<Option<Instant>>,
) -> anyhow::Result<ClientResult> {
    let deadline = Instant::now() + p.timeout;
    let permit = gate.acquire_owned().await?;
    let mut conn = Conn::connect_from(&addr, &user, None, source).await?;
    let first = conn.ready(deadline).await?["head_seq"]
        .as_u64()
        .unwrap_or(0)
        + 1;
    drop(permit);
    conn.send(&json!({"type":"user_message","client_msg_id": format!("storm-{}", crate::conn::run_tag()),"content": p.question}))
        .await?;
    let mut log = UserLog::default();
    let mut read = 0;
    while read < p.read_before_drop {
        match conn.next(deadline).await? {
            Frame::Event { seq, value, .. } => {
                log.record(seq, &value);
                read += 1;
            }
            Frame::Closed(code) => bail!("{user}: closed before the storm ({code:?})"),
            Frame::Error(v) => bail!("{user}: {v}"),
            _ => {}
        }
    }
    armed.fetch_add(1, Ordering::SeqCst);
    // Stop reading; wait for everyone to be dropped at once. A client that reads nothing
    // answers no heartbeat, and the server drops a connection silent for two of them: a ping
    // of ours now and then keeps it open however long the others take to arm, so the storm
    // drops every client, not only those armed last.
    let mut keep_open = tokio::time::interval(KEEP_OPEN_EVERY);
    keep_open.tick().await;
    let dropped = loop {
        if let Some(t) = *drop_at.borrow_and_update() {
            break t;
        }
        tokio::select! {
            changed = drop_at.changed() => changed?,
            _ = keep_open.tick() => {
                conn.send(&json!({"type": "ping", "nonce": "storm"})).await?;
            }
        }
    };
    drop(conn);
    let mut conn =
        Conn::connect_retrying(&addr, &user, Some(log.last_seq()), source, deadline).await?;
    let ready = conn.ready(deadline).await?;
    let resumed_after = dropped.elapsed();
    if ready["resync_required"] == true {
        bail!("{user}: resync_required");
    }
    let head = ready["head_seq"].as_u64().unwrap_or(0);
    let replayed = ready["replayed"].as_u64().unwrap_or(0);
    while log.last_seq() < head {
        match conn.next(deadline).await? {
            Frame::Event { seq, value, .. } => {
                log.record(seq, &value);
            }
            Frame::Closed(code) => bail!("{user}: closed during replay ({code:?})"),
            _ => {}
        }
    }
    let caught_up_after = dropped.elapsed();
    Ok(ClientResult {
        conn,
        resumed_after,
        caught_up_after,
        replayed,
        lost: log.lost(first, head),
        duplicates: log.duplicates,
    })
}

pub async fn run(addr: &str, p: Storm) -> anyhow::Result<String> {
    let p = Arc::new(p);
    let gate = Arc::new(Semaphore::new(p.concurrency.max(1)));
    let armed = Arc::new(AtomicUsize::new(0));
    let (drop_tx, drop_rx) = watch::channel(None);
    let tasks: Vec<_> = (0..p.clients)
        .map(|i| {
            let (addr, p, gate, armed, rx) = (
                addr.to_string(),
                Arc::clone(&p),
                Arc::clone(&gate),
                Arc::clone(&armed),
                drop_rx.clone(),
            );
            let source = source_address(&addr, i);
            tokio::spawn(async move {
                one_client(addr, format!("storm-{i}"), source, p, gate, armed, rx).await
            })
        })
        .collect();
    let progress = bar(p.clients as u64, "arming");
    let deadline = Instant::now() + p.timeout;
    // Armed once every client still running has read its share: a client that failed while
    // arming (it is reported below) does not hold the others back, nor end the arming early.
    while Instant::now() < deadline {
        let ready = armed.load(Ordering::SeqCst);
        let failed = tasks.iter().filter(|t| t.is_finished()).count();
        if ready + failed >= p.clients {
            break;
        }
        progress.set_position(ready as u64);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress.finish_and_clear();
    // Let every run finish on the server, so the storm measures resumption alone.
    while Instant::now() < deadline
        && metric(addr, "apogee_runs_in_flight").await.unwrap_or(0.0) > 0.0
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = drop_tx.send(Some(Instant::now()));
    let mut results = Vec::new();
    let mut failures = 0;
    let mut first_error = None;
    for t in tasks {
        match t.await? {
            Ok(r) => results.push(r),
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    let mut resumed: Vec<Duration> = results.iter().map(|r| r.resumed_after).collect();
    let mut caught_up: Vec<Duration> = results.iter().map(|r| r.caught_up_after).collect();
    let replayed: u64 = results.iter().map(|r| r.replayed).sum();
    let lost: u64 = results.iter().map(|r| r.lost).sum();
    let dups: u64 = results.iter().map(|r| r.duplicates).sum();
    let all = caught_up.iter().max().copied().unwrap_or_default();
    let resumed_count = results.len();
    for r in results {
        r.conn.close().await;
    }
    Ok(format!(
        "storm: {} clients dropped at once, {} resumed, {failures} failed{err}; {replayed} events replayed, lost {lost}, duplicated {dups}\n\
         all clients caught up {:.2}s after the drop\n\
         per client, drop → connection_ready: {}\n\
         per client, drop → caught up: {}",
        p.clients,
        resumed_count,
        all.as_secs_f64(),
        percentiles(&mut resumed)
            .map(|p| p.to_string())
            .unwrap_or_default(),
        percentiles(&mut caught_up)
            .map(|p| p.to_string())
            .unwrap_or_default(),
        err = first_error
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_loopback_address_only_against_a_loopback_server() {
        let a = source_address("127.0.0.1:8080", 0);
        let b = source_address("127.0.0.1:8080", 14_999);
        assert_eq!(a, Some(IpAddr::V4(Ipv4Addr::new(127, 1, 0, 1))));
        assert_eq!(b, Some(IpAddr::V4(Ipv4Addr::new(127, 1, 58, 152))));
        assert_eq!(source_address("10.0.0.5:8080", 0), None);
        assert_eq!(source_address("[::1]:8080", 0), None);
    }
}
