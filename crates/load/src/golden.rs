//! The `golden` scenario: U users at once, each asking the question R times in a row. Reports
//! run time (send → supervisor `agent_completed`), event delivery latency (event `ts` →
//! receipt), delivered events/s, and checks every user's seqs are contiguous. With
//! `watch_addr` each user also has a second connection on another node, which must see the
//! same events (through Redis) in order; their latency is reported apart.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::conn::{Conn, Frame};
use crate::progress::bar;
use crate::stats::percentiles;

pub struct Golden {
    pub users: usize,
    pub runs: usize,
    pub question: String,
    pub timeout: Duration,
    /// A second node where each user keeps another connection open.
    pub watch_addr: Option<String>,
}

struct UserResult {
    run_times: Vec<Duration>,
    latencies: Vec<Duration>,
    events: u64,
    /// Latencies seen by the connection on the watch node.
    watched: Vec<Duration>,
}

/// Reads the user's stream on another node from `expected` until `runs` supervisor runs
/// completed; every event must arrive once, in order.
async fn watch(
    mut conn: Conn,
    user: String,
    mut expected: u64,
    runs: usize,
    deadline: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    let mut completed = 0;
    while completed < runs {
        match conn.next(deadline).await? {
            Frame::Event {
                seq,
                value,
                latency,
            } => {
                if seq != expected {
                    bail!("{user} on the watch node: expected seq {expected}, got {seq}");
                }
                expected += 1;
                latencies.extend(latency);
                if value["type"] == "agent_completed" && value["agent"] == "supervisor" {
                    completed += 1;
                }
            }
            Frame::Error(v) => bail!("server error on the watch node: {v}"),
            Frame::Closed(code) => bail!("watch connection closed ({code:?})"),
            Frame::Ready(_) | Frame::Ack(_) | Frame::Other => {}
        }
    }
    conn.close().await;
    Ok(latencies)
}

async fn one_user(
    addr: String,
    user: String,
    p: &Golden,
    progress: indicatif::ProgressBar,
) -> anyhow::Result<UserResult> {
    let mut conn = Conn::connect(&addr, &user, None).await?;
    let ready = conn.ready(Instant::now() + p.timeout).await?;
    let mut expected = ready["head_seq"].as_u64().unwrap_or(0) + 1;
    let nonce = ready["connection_id"].as_str().unwrap_or("c").to_string();
    let watcher = match &p.watch_addr {
        Some(watch_addr) => {
            let mut other = Conn::connect(watch_addr, &user, None).await?;
            let ready = other.ready(Instant::now() + p.timeout).await?;
            let from = ready["head_seq"].as_u64().unwrap_or(0) + 1;
            if from != expected {
                bail!("{user}: the nodes disagree on the head ({from} vs {expected})");
            }
            let deadline = Instant::now() + p.timeout * p.runs.max(1) as u32;
            Some(tokio::spawn(watch(
                other,
                user.clone(),
                from,
                p.runs,
                deadline,
            )))
        }
        None => None,
    };
    let mut r = UserResult {
        run_times: Vec::new(),
        latencies: Vec::new(),
        events: 0,
        watched: Vec::new(),
    };
    for i in 0..p.runs {
        let started = Instant::now();
        let deadline = started + p.timeout;
        conn.send(&json!({"type":"user_message","client_msg_id": format!("load-{}-{nonce}-{i}", crate::conn::run_tag()),"content": p.question}))
            .await?;
        let mut run_id = None;
        loop {
            match conn.next(deadline).await? {
                Frame::Ack(v) => run_id = v["run_id"].as_str().map(str::to_string),
                Frame::Event {
                    seq,
                    value,
                    latency,
                } => {
                    if seq != expected {
                        bail!("{user}: expected seq {expected}, got {seq}");
                    }
                    expected += 1;
                    r.events += 1;
                    r.latencies.extend(latency);
                    if value["type"] == "agent_completed"
                        && value["agent"] == "supervisor"
                        && value["run_id"].as_str() == run_id.as_deref()
                    {
                        if value["status"] != "ok" {
                            bail!("run ended {}: {}", value["status"], value["summary"]);
                        }
                        r.run_times.push(started.elapsed());
                        progress.inc(1);
                        break;
                    }
                }
                Frame::Error(v) => bail!("server error: {v}"),
                Frame::Closed(code) => bail!("connection closed ({code:?})"),
                Frame::Ready(_) | Frame::Other => {}
            }
        }
    }
    conn.close().await;
    if let Some(watcher) = watcher {
        r.watched = watcher.await??;
    }
    Ok(r)
}

pub async fn run(addr: &str, p: Golden) -> anyhow::Result<String> {
    let p = std::sync::Arc::new(p);
    let progress = bar((p.users * p.runs) as u64, "runs");
    let started = Instant::now();
    let tasks: Vec<_> = (0..p.users)
        .map(|u| {
            let (addr, p, progress) = (
                addr.to_string(),
                std::sync::Arc::clone(&p),
                progress.clone(),
            );
            tokio::spawn(async move { one_user(addr, format!("golden-{u}"), &p, progress).await })
        })
        .collect();
    let (mut run_times, mut latencies, mut events) = (Vec::new(), Vec::new(), 0);
    let mut watched = Vec::new();
    for t in tasks {
        let r = t.await??;
        run_times.extend(r.run_times);
        latencies.extend(r.latencies);
        watched.extend(r.watched);
        events += r.events;
    }
    progress.finish_and_clear();
    let wall = started.elapsed();
    let runs = percentiles(&mut run_times)
        .map(|p| p.to_string())
        .unwrap_or_default();
    let lat = percentiles(&mut latencies)
        .map(|p| p.to_string())
        .unwrap_or_default();
    let watch_line = match &p.watch_addr {
        Some(w) => format!(
            "\nevent latency on the watch node {w} (ts → receipt, through Redis): {}",
            percentiles(&mut watched)
                .map(|p| p.to_string())
                .unwrap_or_default()
        ),
        None => String::new(),
    };
    Ok(format!(
        "golden: {} users × {} runs, {events} events in {:.2}s ({:.0} events/s delivered)\n\
         run time (send → supervisor agent_completed): {runs}\n\
         event latency (ts → receipt): {lat}{watch_line}",
        p.users,
        p.runs,
        wall.as_secs_f64(),
        events as f64 / wall.as_secs_f64(),
    ))
}
