//! The `chaos` scenario: U users each run R questions while their connection is dropped at
//! random (probability P after each received frame) and resumed with `last_seq`; at the end a
//! fresh connection per user checks that nothing was lost or duplicated.

use std::time::{Duration, Instant};

use anyhow::bail;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::conn::{Conn, Frame, UserLog};
use crate::progress::bar;

pub struct Chaos {
    pub users: usize,
    pub runs: usize,
    pub drop_probability: f64,
    pub question: String,
    pub timeout: Duration,
    pub seed: u64,
}

#[derive(Default)]
struct Outcome {
    reconnects: u64,
    events: u64,
    lost: u64,
    duplicates: u64,
}

async fn one_user(
    addr: String,
    user: String,
    p: std::sync::Arc<Chaos>,
    seed: u64,
    progress: indicatif::ProgressBar,
) -> anyhow::Result<Outcome> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut log = UserLog::default();
    let mut out = Outcome::default();
    let deadline = Instant::now() + p.timeout * p.runs as u32;
    let mut conn = Conn::connect(&addr, &user, None).await?;
    let first = conn.ready(deadline).await?["head_seq"]
        .as_u64()
        .unwrap_or(0)
        + 1;
    let mut resume_from = first - 1;
    for i in 0..p.runs as u64 {
        let msg = json!({"type":"user_message","client_msg_id": format!("chaos-{}-{user}-{i}", crate::conn::run_tag()),"content": p.question});
        conn.send(&msg).await?;
        let mut acked = false;
        while log.runs_completed <= i {
            if Instant::now() > deadline {
                bail!("{user}: run {i} did not finish in time");
            }
            if rng.random_bool(p.drop_probability) {
                conn.close().await;
                out.reconnects += 1;
                conn = Conn::connect(&addr, &user, Some(log.last_seq().max(resume_from))).await?;
                let ready = conn.ready(deadline).await?;
                if ready["resync_required"] == true {
                    bail!("{user}: resync_required on resume");
                }
                if !acked {
                    // The ack may have been lost with the connection: resend (idempotent).
                    conn.send(&msg).await?;
                }
                continue;
            }
            match conn.next(deadline).await? {
                Frame::Ack(_) => acked = true,
                Frame::Event { seq, value, .. } => {
                    out.events += 1;
                    if log.record(seq, &value) {
                        progress.inc(1);
                    }
                }
                Frame::Closed(_) => {
                    conn =
                        Conn::connect(&addr, &user, Some(log.last_seq().max(resume_from))).await?;
                    conn.ready(deadline).await?;
                    out.reconnects += 1;
                }
                Frame::Error(v) => bail!("{user}: server error {v}"),
                Frame::Ready(_) | Frame::Other => {}
            }
        }
        resume_from = log.last_seq();
    }
    conn.close().await;
    // A fresh connection tells the head: everything up to it must have been seen once.
    let mut check = Conn::connect(&addr, &user, None).await?;
    let head = check.ready(deadline).await?["head_seq"]
        .as_u64()
        .unwrap_or(0);
    check.close().await;
    out.lost = log.lost(first, head);
    out.duplicates = log.duplicates;
    Ok(out)
}

pub async fn run(addr: &str, p: Chaos) -> anyhow::Result<String> {
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
            let seed = p.seed.wrapping_add(u as u64);
            tokio::spawn(
                async move { one_user(addr, format!("chaos-{u}"), p, seed, progress).await },
            )
        })
        .collect();
    let mut total = Outcome::default();
    for t in tasks {
        let o = t.await??;
        total.reconnects += o.reconnects;
        total.events += o.events;
        total.lost += o.lost;
        total.duplicates += o.duplicates;
    }
    progress.finish_and_clear();
    Ok(format!(
        "chaos: {} users × {} runs in {:.2}s, drop probability {} per frame: {} reconnects, {} events, lost {}, duplicated {}",
        p.users,
        p.runs,
        started.elapsed().as_secs_f64(),
        p.drop_probability,
        total.reconnects,
        total.events,
        total.lost,
        total.duplicates
    ))
}
