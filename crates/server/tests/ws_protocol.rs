//! The WebSocket under a client that pushes it: a burst of pings is answered in full, polite
//! `rate_limited` and `busy` answers never add up to a 1008, and every protocol violation
//! closes with a close frame carrying the code RFC 6455 gives it (a 200-byte ping is a
//! protocol error, 1002, not a message too big). The protocol violations are written as raw
//! frames over a plain socket, since a well-behaved client library will not send them.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket handshake done by hand; returns the socket right after the 101.
async fn raw_ws(addr: &str, query: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws{query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, s.read_exact(&mut byte))
            .await
            .expect("handshake answer in time")
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// One client frame (FIN set, masked with a fixed key), as RFC 6455 §5.2 lays it out.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11u8, 0x22, 0x33, 0x44];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Reads server frames until a close frame: its code, or `None` when the socket ends
/// without one.
async fn close_code(s: &mut TcpStream) -> Option<u16> {
    for _ in 0..10_000 {
        let mut head = [0u8; 2];
        if tokio::time::timeout(WAIT, s.read_exact(&mut head))
            .await
            .expect("a frame or the end in time")
            .is_err()
        {
            return None;
        }
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.ok()?;
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.ok()?;
            len = u64::from_be_bytes(b);
        }
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).await.ok()?;
        if head[0] & 0x0f == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
    None
}

#[tokio::test]
async fn protocol_violations_close_with_the_right_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("a 200-byte ping", frame(0x9, &[b'p'; 200]), 1002),
        ("a reserved opcode", frame(0x3, b"x"), 1002),
        (
            "a text frame that is not UTF-8",
            frame(0x1, b"\xff\xfe{}"),
            1007,
        ),
        ("a binary frame", frame(0x2, b"{}"), 1003),
    ];
    for (what, bytes, want) in cases {
        let mut s = raw_ws(&server.addr, "?user=mallory").await;
        s.write_all(&bytes).await.unwrap();
        assert_eq!(close_code(&mut s).await, Some(want), "{what}");
    }
    // An unmasked client frame.
    let mut s = raw_ws(&server.addr, "?user=mallory").await;
    s.write_all(&[0x81, 0x02, b'{', b'}']).await.unwrap();
    assert_eq!(close_code(&mut s).await, Some(1002), "an unmasked frame");
    // A ping of 125 bytes is fine: answered with a pong, the connection stays, and a close
    // from the client is answered with its code.
    let mut s = raw_ws(&server.addr, "?user=mallory").await;
    s.write_all(&frame(0x9, &[b'p'; 125])).await.unwrap();
    s.write_all(&frame(0x1, br#"{"type":"ping","nonce":"after"}"#))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(r#""nonce":"after""#) {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("the pong in time")
            .unwrap();
        assert!(n > 0, "closed before answering");
        seen.extend_from_slice(&buf[..n]);
    }
    s.write_all(&frame(0x8, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut s).await, Some(1000));
}

#[tokio::test]
async fn a_burst_of_pings_in_one_write_is_answered_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let mut c = server.ws("?user=pinger").await;
    c.ready().await;
    // 300 pings (far more than the 64 answers the server keeps queued), flushed at once.
    for i in 0..300 {
        let ping = json!({"type":"ping","nonce":i}).to_string();
        c.ws.feed(Message::Text(ping.into())).await.unwrap();
    }
    c.ws.flush().await.unwrap();
    for i in 0..300 {
        let v = c.next().await.expect("a pong, not a dropped connection");
        assert_eq!(v, json!({"type":"pong","nonce":i}));
    }
    // WebSocket-level pings too, in one write.
    let mut s = raw_ws(&server.addr, "?user=pinger").await;
    let burst: Vec<u8> = (0..300).flat_map(|_| frame(0x9, b"hb")).collect();
    s.write_all(&burst).await.unwrap();
    s.write_all(&frame(0x8, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(
        close_code(&mut s).await,
        Some(1000),
        "answered, then a clean close"
    );
}

#[tokio::test]
async fn polite_refusals_never_add_up_to_a_1008() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("APOGEE_MESSAGES_PER_MINUTE", "1"),
            ("APOGEE_MESSAGE_BURST", "1"),
        ],
    )
    .await;
    let mut c = server.ws("?user=eager").await;
    c.ready().await;
    // 60 messages at once: one goes through, the rest are rate limited (well over the 20
    // bad frames that close a connection).
    for i in 0..60 {
        c.ask(&format!("m{i}"), "hello", None).await;
    }
    let mut limited = 0;
    let mut acked = 0;
    while limited + acked < 60 {
        let v = c.next().await.expect("answers, not a close");
        match (v["type"].as_str(), v["code"].as_str()) {
            (Some("message_ack"), _) => acked += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            (Some("error"), other) => panic!("unexpected error {other:?}: {v}"),
            _ => {}
        }
    }
    assert_eq!((acked, limited), (1, 59));
    c.send(json!({"type":"ping","nonce":"still-open"})).await;
    loop {
        let v = c.next().await.expect("still open");
        if v["type"] == "pong" {
            assert_eq!(v["nonce"], "still-open");
            break;
        }
    }
}
