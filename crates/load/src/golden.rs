//! The `golden` scenario: each user connects, asks the question `runs` times in a row, and the
//! time from sending `user_message` to the supervisor's `agent_completed` is recorded. Checks
//! along the way that each user's seqs are contiguous and every run ends `ok`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::stats::percentiles;

struct UserResult {
    durations: Vec<Duration>,
    events: u64,
}

async fn next_json<S>(ws: &mut S, deadline: Instant) -> anyhow::Result<Value>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .context("timed out waiting for a frame")?;
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
            Some(Ok(Message::Close(f))) => bail!("server closed the connection: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

async fn one_user(
    addr: String,
    user: String,
    runs: usize,
    question: String,
    timeout: Duration,
) -> anyhow::Result<UserResult> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?user={user}")).await?;
    let ready = next_json(&mut ws, Instant::now() + timeout).await?;
    let mut expected_seq = ready["head_seq"]
        .as_u64()
        .context("connection_ready without head_seq")?
        + 1;
    let mut result = UserResult {
        durations: Vec::with_capacity(runs),
        events: 0,
    };
    let nonce = ready["connection_id"].as_str().unwrap_or("c").to_string();
    for i in 0..runs {
        let started = Instant::now();
        let deadline = started + timeout;
        let msg = json!({"type":"user_message","client_msg_id": format!("load-{nonce}-{i}"),"content": question});
        ws.send(Message::Text(msg.to_string().into())).await?;
        let mut run_id: Option<String> = None;
        loop {
            let v = next_json(&mut ws, deadline).await?;
            if v["type"] == "message_ack" {
                run_id = v["run_id"].as_str().map(str::to_string);
                continue;
            }
            if v["type"] == "error" {
                bail!("server error: {v}");
            }
            let Some(seq) = v["seq"].as_u64() else {
                continue;
            };
            if seq != expected_seq {
                bail!("user {user}: expected seq {expected_seq}, got {seq}");
            }
            expected_seq += 1;
            result.events += 1;
            if v["type"] == "agent_completed"
                && v["agent"] == "supervisor"
                && v["run_id"].as_str() == run_id.as_deref()
            {
                if v["status"] != "ok" {
                    bail!("run ended {}: {}", v["status"], v["summary"]);
                }
                result.durations.push(started.elapsed());
                break;
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(result)
}

pub async fn run(
    addr: &str,
    users: usize,
    runs: usize,
    question: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..users)
        .map(|u| {
            tokio::spawn(one_user(
                addr.to_string(),
                format!("load-{u}"),
                runs,
                question.to_string(),
                timeout,
            ))
        })
        .collect();
    let mut durations = Vec::new();
    let mut events = 0;
    for t in tasks {
        let r = t.await??;
        durations.extend(r.durations);
        events += r.events;
    }
    let wall = started.elapsed();
    let p = percentiles(&mut durations).context("no run completed")?;
    Ok(format!(
        "golden: {users} users × {runs} runs, {events} events in {:.2}s\nrun time (send → supervisor agent_completed): {p}",
        wall.as_secs_f64()
    ))
}
