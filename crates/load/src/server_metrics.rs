//! Reads figures from the server's `/metrics` endpoint (plain HTTP over loopback).

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn resident_bytes(addr: &str) -> anyhow::Result<u64> {
    Ok(metric(addr, "process_resident_memory_bytes").await? as u64)
}

/// The value of one unlabelled metric line from `/metrics`.
pub async fn metric(addr: &str, name: &str) -> anyhow::Result<f64> {
    let text = fetch(addr).await?;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {name} in /metrics"))
}

async fn fetch(addr: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut body = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_string(&mut body),
    )
    .await
    .context("metrics timed out")??;
    Ok(body)
}
