//! Connections no client can use to take a node down: idle and dribbling sockets are closed by
//! the header timeout, an address gets a bounded share of the sockets, a node whose open-file
//! limit is low still answers `/health` while hundreds of idle sockets press on it, and the
//! WebSocket limits (per node, derived from the open-file limit; per user) answer 503 / 429.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// A TCP connection to `addr` from the loopback address `127.0.0.<last>` (all of 127/8 is
/// loopback on Linux), so one test can play many client addresses.
async fn connect_from(last: u8, addr: &str) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from(([127, 0, 0, last], 0))).unwrap();
    tokio::time::timeout(WAIT, sock.connect(addr.parse().unwrap()))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Reads until the server closes the socket (EOF or reset) or `deadline` passes; returns
/// what was read, or `None` when the socket was still open at the deadline.
async fn read_until_closed(s: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn five_hundred_idle_sockets_under_a_low_fd_limit_leave_health_answering() {
    let dir = tempfile::tempdir().unwrap();
    // 256 descriptors: about 176 for client sockets once the server keeps its reserve.
    let server =
        Server::start_with_open_files(dir.path(), &[("APOGEE_HEADER_TIMEOUT_MS", "2000")], 256)
            .await;
    let timeout = Duration::from_millis(2000);
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(500);
    // From twenty addresses, so the per-address share is not what saves the node.
    for i in 0..500u32 {
        idle.push(connect_from(2 + (i % 20) as u8, &server.addr).await);
    }
    // Every idle place is taken; a real client still gets in, several times over.
    for _ in 0..3 {
        let (status, body) = http(&server.addr, "GET", "/health", &[], b"").await;
        assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    }
    // And every idle socket is closed within the header timeout (plus scheduling slack).
    let deadline = opened + timeout + Duration::from_secs(3);
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(
            read_until_closed(s, deadline).await.is_some(),
            "idle socket {i} still open {:?} after the first connect",
            opened.elapsed()
        );
    }
    let (status, _) = http(&server.addr, "GET", "/health", &[], b"").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn headers_dribbled_a_byte_at_a_time_are_cut_off_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("APOGEE_HEADER_TIMEOUT_MS", "1000")]).await;
    let mut s = connect_from(2, &server.addr).await;
    let started = Instant::now();
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_after = None;
    for b in request {
        if s.write_all(&[*b]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let closed_after = match closed_after {
        Some(t) => t,
        None => {
            let end = read_until_closed(&mut s, started + Duration::from_secs(10)).await;
            assert!(end.is_some(), "a dribbling client was never cut off");
            started.elapsed()
        }
    };
    assert!(
        closed_after < Duration::from_secs(4),
        "cut off after {closed_after:?}, not at the 1 s header timeout"
    );
    // A keep-alive connection that goes quiet after a request is closed too.
    let mut s = connect_from(3, &server.addr).await;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = Instant::now();
    let got = read_until_closed(&mut s, answered + Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(answered.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn one_address_gets_a_bounded_share_and_others_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("APOGEE_MAX_CONNECTIONS_PER_IP", "5")]).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from(2, &server.addr).await);
    }
    // Let the server accept those five first.
    let (status, _) = http(&server.addr, "GET", "/health", &[], b"").await;
    assert_eq!(status, 200);
    let mut sixth = connect_from(2, &server.addr).await;
    let answer = read_until_closed(&mut sixth, Instant::now() + WAIT)
        .await
        .expect("refused at once");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.contains("too many connections from this address"),
        "{text}"
    );
    // Another address, and the same one once a socket closes, are served.
    let (status, _) = http(&server.addr, "GET", "/health", &[], b"").await;
    assert_eq!(status, 200);
    drop(held.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = connect_from(2, &server.addr).await;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = read_until_closed(&mut s, deadline)
            .await
            .unwrap_or_default();
        if String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never reused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn websocket_limits_answer_429_per_user_and_503_per_node() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("APOGEE_MAX_CONNECTIONS_PER_USER", "2"),
            ("APOGEE_MAX_CONNECTIONS", "3"),
        ],
    )
    .await;
    let mut a1 = server.ws("?user=alice").await;
    a1.ready().await;
    let mut a2 = server.ws("?user=alice").await;
    a2.ready().await;
    let h = handshake(&server.addr, "?user=alice", &[]).await;
    assert_eq!(h.status, 429, "{}", h.body);
    assert!(h.body.contains("rate_limited"), "{}", h.body);
    assert!(h.retry_after.is_some());
    let mut b = server.ws("?user=bob").await;
    b.ready().await;
    let h = handshake(&server.addr, "?user=carol", &[]).await;
    assert_eq!(h.status, 503, "the node's limit: {}", h.body);
    assert!(h.body.contains("unavailable"), "{}", h.body);
    // Closing one frees its places.
    drop(a1);
    let deadline = Instant::now() + WAIT;
    loop {
        let h = handshake(&server.addr, "?user=alice", &[]).await;
        if h.status == 101 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after a close",
            h.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_connection_limit_follows_the_open_file_limit_so_the_503_fires() {
    let dir = tempfile::tempdir().unwrap();
    // Asks for far more than 256 descriptors allow: the node lowers it to what fits.
    let server = Server::start_with_open_files(
        dir.path(),
        &[
            ("APOGEE_MAX_CONNECTIONS", "50000"),
            ("APOGEE_MAX_CONNECTIONS_PER_IP", "100000"),
        ],
        256,
    )
    .await;
    let mut open = Vec::new();
    let refused = loop {
        assert!(open.len() < 256, "never refused: descriptors would run out");
        let user = format!("?user=u{}", open.len());
        let h = handshake(&server.addr, &user, &[]).await;
        match h.status {
            101 => open.push(h.client),
            503 => break h,
            other => panic!("unexpected {other}: {}", h.body),
        }
    };
    assert!(
        refused.body.contains("connection limit"),
        "{}",
        refused.body
    );
    assert!(open.len() > 100, "only {} connections", open.len());
    // REST keeps a share of the sockets: still answered with every WebSocket place taken.
    let (status, _) = http(&server.addr, "GET", "/health", &[], b"").await;
    assert_eq!(status, 200);
}
