//! The `fair` scenario: while some users keep firing bursts of questions (each burst sent at
//! once, the next when the accepted ones have been answered), one quiet user asks a question
//! at a time. Reports the quiet user's answer time (send → supervisor `agent_completed`),
//! which a fair server keeps near what it is with nobody bursting (`--bursters 0`), and what
//! the bursters got: answered, refused (`busy` or `rate_limited`) and their answer times.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::conn::{Conn, Frame};
use crate::stats::percentiles;

pub struct Fair {
    pub bursters: usize,
    pub burst: usize,
    pub samples: usize,
    pub question: String,
    pub timeout: Duration,
}

#[derive(Default)]
struct Burster {
    answered: u64,
    refused: u64,
    run_times: Vec<Duration>,
}

/// Sends `burst` questions at once and reads until every accepted one is answered; again until
/// `stop`.
async fn burster(
    addr: String,
    user: String,
    p: Arc<Fair>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Burster> {
    let mut conn = Conn::connect(&addr, &user, None).await?;
    conn.ready(Instant::now() + p.timeout).await?;
    let mut out = Burster::default();
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let deadline = started + p.timeout;
        for i in 0..p.burst {
            conn.send(&json!({"type":"user_message","client_msg_id": format!("fair-{}-{user}-{round}-{i}", crate::conn::run_tag()),"content": p.question}))
                .await?;
        }
        round += 1;
        // Every message is answered by an ack (then its run ends) or by an error.
        let (mut replies, mut open, mut refused) = (0, 0, 0);
        while replies < p.burst || open > 0 {
            match conn.next(deadline).await? {
                Frame::Ack(_) => {
                    replies += 1;
                    open += 1;
                }
                Frame::Error(v) if v["code"] == "busy" || v["code"] == "rate_limited" => {
                    replies += 1;
                    refused += 1;
                }
                Frame::Error(v) => bail!("{user}: server error {v}"),
                Frame::Event { value, .. } => {
                    if value["type"] == "agent_completed" && value["agent"] == "supervisor" {
                        open -= 1;
                        out.answered += 1;
                        out.run_times.push(started.elapsed());
                    }
                }
                Frame::Closed(code) => bail!("{user}: closed ({code:?})"),
                Frame::Ready(_) | Frame::Other => {}
            }
        }
        out.refused += refused;
        if refused == p.burst as u64 {
            // Only refusals (rate limited): wait a little before the next burst.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    conn.close().await;
    Ok(out)
}

/// Asks one question at a time, `samples` times; each answer time.
async fn quiet(addr: String, p: Arc<Fair>) -> anyhow::Result<Vec<Duration>> {
    let user = format!("fair-quiet-{}", crate::conn::run_tag());
    let mut conn = Conn::connect(&addr, &user, None).await?;
    conn.ready(Instant::now() + p.timeout).await?;
    let mut times = Vec::with_capacity(p.samples);
    for i in 0..p.samples {
        let mut started = Instant::now();
        let deadline = started + p.timeout;
        let message = json!({"type":"user_message","client_msg_id": format!("fair-{}-quiet-{i}", crate::conn::run_tag()),"content": p.question});
        conn.send(&message).await?;
        loop {
            match conn.next(deadline).await? {
                Frame::Event { value, .. }
                    if value["type"] == "agent_completed" && value["agent"] == "supervisor" =>
                {
                    times.push(started.elapsed());
                    break;
                }
                // Over the per-user message rate (30 a minute): ask again when told to; the
                // answer time counts from then.
                Frame::Error(v) if v["code"] == "rate_limited" => {
                    let wait = v["retry_after_ms"].as_u64().unwrap_or(1000).min(60_000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    started = Instant::now();
                    conn.send(&message).await?;
                }
                Frame::Error(v) => bail!("quiet user: server error {v}"),
                Frame::Closed(code) => bail!("quiet user: closed ({code:?})"),
                _ => {}
            }
        }
        // A pause between questions, as a person asking would leave.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.close().await;
    Ok(times)
}

pub async fn run(addr: &str, p: Fair) -> anyhow::Result<String> {
    let p = Arc::new(p);
    let stop = Arc::new(AtomicBool::new(false));
    let bursters: Vec<_> = (0..p.bursters)
        .map(|b| {
            let (addr, p, stop) = (addr.to_string(), Arc::clone(&p), Arc::clone(&stop));
            let user = format!("fair-burst-{b}-{}", crate::conn::run_tag());
            tokio::spawn(burster(addr, user, p, stop))
        })
        .collect();
    if p.bursters > 0 {
        // Let the first bursts arrive before the quiet user asks.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut times = quiet(addr.to_string(), Arc::clone(&p)).await?;
    stop.store(true, Ordering::Relaxed);
    let mut total = Burster::default();
    for b in bursters {
        let b = b.await??;
        total.answered += b.answered;
        total.refused += b.refused;
        total.run_times.extend(b.run_times);
    }
    let quiet_line = percentiles(&mut times)
        .map(|p| p.to_string())
        .unwrap_or_default();
    let burst_line = percentiles(&mut total.run_times)
        .map(|p| p.to_string())
        .unwrap_or_else(|| "none".into());
    Ok(format!(
        "fair: {} bursters × {} questions at once, again and again; one quiet user asking {} times\n\
         quiet user's answer time (send → supervisor agent_completed): {quiet_line}\n\
         bursters: {} answered, {} refused (busy or rate limited); answer time from the burst's send: {burst_line}",
        p.bursters, p.burst, p.samples, total.answered, total.refused,
    ))
}
