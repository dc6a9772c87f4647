//! The `slow` scenario: U users run questions while S extra connections (second tabs of the
//! first S users) never read. Reports the readers' event latency and how the stalled tabs
//! ended (PROTOCOL.md: 1013, then resume), showing one slow client slows no one else.

use std::time::{Duration, Instant};

use crate::conn::{Conn, Frame};
use crate::golden::{self, Golden};

pub struct Slow {
    pub users: usize,
    pub slow: usize,
    pub runs: usize,
    pub question: String,
    pub timeout: Duration,
}

pub async fn run(addr: &str, p: Slow) -> anyhow::Result<String> {
    let mut stalled = Vec::new();
    for i in 0..p.slow.min(p.users) {
        stalled.push(Conn::connect_small_buffer(addr, &format!("golden-{i}")).await?);
    }
    let report = golden::run(
        addr,
        Golden {
            users: p.users,
            runs: p.runs,
            question: p.question.clone(),
            timeout: p.timeout,
            watch_addr: None,
        },
    )
    .await?;
    // Now read the stalled tabs: each should end with 1013 once the server gave up on it.
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for mut c in stalled {
        let deadline = Instant::now() + Duration::from_secs(10);
        let code = loop {
            match c.next(deadline).await {
                Ok(Frame::Closed(code)) => {
                    break code.map_or("none".to_string(), |c| c.to_string());
                }
                Ok(_) => continue,
                Err(_) => break "still open".to_string(),
            }
        };
        *codes.entry(code).or_default() += 1;
    }
    Ok(format!(
        "{report}\nstalled tabs ({}): closed with {codes:?}",
        p.slow
    ))
}
