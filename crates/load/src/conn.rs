//! One client connection speaking PROTOCOL.md: connect (with resume), send frames, read frames
//! with a deadline, and classify them; plus the per-user record that detects loss and
//! duplication of stream events.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct Conn {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// A frame as the scenarios care about it.
pub enum Frame {
    Ready(Value),
    Ack(Value),
    /// A stream event (its fields the scenarios read), with its delivery latency (event
    /// `ts` → receipt).
    Event {
        seq: u64,
        value: Value,
        latency: Option<Duration>,
    },
    Error(Value),
    Other,
    Closed(Option<u16>),
}

/// A tag unique to this load process, put into every `client_msg_id`: the server keeps ids
/// forever (that is what makes resends idempotent), so a second run of a scenario against the
/// same database must not reuse the first run's ids.
pub fn run_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| format!("{:016x}", rand::random::<u64>()))
}

/// Time from the event's `ts` to now; `None` when `ts` is missing or in the future.
pub fn latency(value: &Value) -> Option<Duration> {
    latency_since(value["ts"].as_str()?)
}

fn latency_since(ts: &str) -> Option<Duration> {
    let ts = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    (chrono::Utc::now() - ts.with_timezone(&chrono::Utc))
        .to_std()
        .ok()
}

/// The top-level fields of a stream event the scenarios read. Everything else (a step's
/// results, a report's data) is skipped by the parser without being built, so the load tool's
/// own cost per event — it shares the machine with the server — stays small.
#[derive(serde::Deserialize)]
struct EventHead<'a> {
    seq: u64,
    #[serde(borrow)]
    ts: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "type")]
    kind: Option<String>,
    agent: Option<String>,
    run_id: Option<String>,
    status: Option<Value>,
    summary: Option<Value>,
}

impl EventHead<'_> {
    /// The fields read, as the JSON object the scenarios look into.
    fn into_value(self) -> Value {
        let mut v = serde_json::Map::new();
        v.insert("seq".into(), self.seq.into());
        let fields = [
            ("type", self.kind.map(Value::from)),
            ("agent", self.agent.map(Value::from)),
            ("run_id", self.run_id.map(Value::from)),
            ("status", self.status),
            ("summary", self.summary),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                v.insert(name.into(), value);
            }
        }
        Value::Object(v)
    }
}

/// The codec of every load-tool client: a 16 KiB read buffer instead of tungstenite's
/// 128 KiB. Frames here are a few hundred bytes and a replay burst at most 64 KiB (read in a
/// few calls), while a 128 KiB buffer is its own `mmap` and `munmap` per connection: in a
/// 15,000-client storm that alone was a sixth of the load tool's CPU, taken from the cores
/// the server under test runs on.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(16 * 1024)
}

impl Conn {
    pub async fn connect(addr: &str, user: &str, last_seq: Option<u64>) -> anyhow::Result<Conn> {
        Self::connect_from(addr, user, last_seq, None).await
    }

    /// [`Conn::connect`] from the local address `source` when given (its port picked by the
    /// kernel), as a client on another machine would: each source address has its own range
    /// of ephemeral ports.
    pub async fn connect_from(
        addr: &str,
        user: &str,
        last_seq: Option<u64>,
        source: Option<IpAddr>,
    ) -> anyhow::Result<Conn> {
        let resume = last_seq
            .map(|n| format!("&last_seq={n}"))
            .unwrap_or_default();
        let url = format!("ws://{addr}/ws?user={user}{resume}");
        let Some(source) = source else {
            let (ws, _) =
                tokio_tungstenite::connect_async_with_config(url, Some(client_config()), false)
                    .await
                    .context("WebSocket handshake")?;
            return Ok(Conn { ws });
        };
        let sock = match source {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        sock.bind(SocketAddr::new(source, 0))
            .with_context(|| format!("binding to {source}"))?;
        let stream = sock.connect(addr.parse()?).await.context("TCP connect")?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            url,
            MaybeTlsStream::Plain(stream),
            Some(client_config()),
        )
        .await
        .context("WebSocket handshake")?;
        Ok(Conn { ws })
    }

    /// [`Self::connect_from`], trying again while the server refuses the handshake for now
    /// ([`refused_for_now`]), as a browser's reconnect does: after a jittered 50–150 ms,
    /// until `deadline`.
    pub async fn connect_retrying(
        addr: &str,
        user: &str,
        last_seq: Option<u64>,
        source: Option<IpAddr>,
        deadline: Instant,
    ) -> anyhow::Result<Conn> {
        loop {
            match Self::connect_from(addr, user, last_seq, source).await {
                Ok(conn) => return Ok(conn),
                Err(e) if Instant::now() < deadline && refused_for_now(&e) => {
                    let wait = rand::random_range(50..150);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Connects over a socket with a tiny receive buffer, for clients that stop reading.
    pub async fn connect_small_buffer(addr: &str, user: &str) -> anyhow::Result<Conn> {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.set_recv_buffer_size(4096)?;
        let stream = sock.connect(addr.parse()?).await?;
        let url = format!("ws://{addr}/ws?user={user}");
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            url,
            MaybeTlsStream::Plain(stream),
            Some(client_config()),
        )
        .await?;
        Ok(Conn { ws })
    }

    pub async fn send(&mut self, v: &Value) -> anyhow::Result<()> {
        self.ws.send(Message::Text(v.to_string().into())).await?;
        Ok(())
    }

    pub async fn next(&mut self, deadline: Instant) -> anyhow::Result<Frame> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next())
                .await
                .context("timed out waiting for a frame")?;
            let text = match msg {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(f))) => return Ok(Frame::Closed(f.map(|f| f.code.into()))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(Frame::Closed(None)),
            };
            if let Ok(head) = serde_json::from_str::<EventHead>(text.as_str()) {
                let latency = head.ts.as_deref().and_then(latency_since);
                return Ok(Frame::Event {
                    seq: head.seq,
                    value: head.into_value(),
                    latency,
                });
            }
            // Not an event, or one whose fields are not of the usual types: read it whole.
            let value: Value = serde_json::from_str(text.as_str())?;
            if let Some(seq) = value["seq"].as_u64() {
                let latency = latency(&value);
                return Ok(Frame::Event {
                    seq,
                    value,
                    latency,
                });
            }
            return Ok(match value["type"].as_str() {
                Some("connection_ready") => Frame::Ready(value),
                Some("message_ack") => Frame::Ack(value),
                Some("error") => Frame::Error(value),
                _ => Frame::Other,
            });
        }
    }

    /// Reads up to `connection_ready`.
    pub async fn ready(&mut self, deadline: Instant) -> anyhow::Result<Value> {
        match self.next(deadline).await? {
            Frame::Ready(v) => Ok(v),
            Frame::Closed(code) => bail!("closed before connection_ready ({code:?})"),
            _ => bail!("first frame was not connection_ready"),
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Every stream event a user has received, across its connections.
#[derive(Default)]
pub struct UserLog {
    seen: BTreeSet<u64>,
    pub duplicates: u64,
    pub runs_completed: u64,
}

impl UserLog {
    /// Records an event; true when it ends a run.
    pub fn record(&mut self, seq: u64, value: &Value) -> bool {
        if !self.seen.insert(seq) {
            self.duplicates += 1;
            return false;
        }
        let end = value["type"] == "agent_completed" && value["agent"] == "supervisor";
        if end {
            self.runs_completed += 1;
        }
        end
    }

    pub fn last_seq(&self) -> u64 {
        self.seen.last().copied().unwrap_or(0)
    }

    /// Seqs missing between the first seen and `head`.
    pub fn lost(&self, first: u64, head: u64) -> u64 {
        if head < first {
            return 0;
        }
        (head - first + 1).saturating_sub(self.seen.range(first..=head).count() as u64)
    }
}

/// Whether a failed connect is the server refusing for now (worth trying again): a 503 or
/// 429, the TCP connect refused, or the socket closed before the handshake's answer (a node
/// at its open-socket limit while the connections it is replacing still close).
fn refused_for_now(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind;
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    e.chain().any(|cause| {
        match cause.downcast_ref::<WsError>() {
            Some(WsError::Http(response)) => {
                return matches!(response.status().as_u16(), 429 | 503);
            }
            Some(WsError::Protocol(ProtocolError::HandshakeIncomplete)) => return true,
            _ => {}
        }
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::UnexpectedEof
            )
        })
    })
}

#[cfg(test)]
mod refusal_tests {
    use super::*;
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    use tokio_tungstenite::tungstenite::http::Response;

    fn http(status: u16) -> anyhow::Error {
        let response = Response::builder()
            .status(status)
            .body(None)
            .expect("a response");
        anyhow::Error::from(WsError::Http(Box::new(response))).context("WebSocket handshake")
    }

    #[test]
    fn only_a_refusal_for_now_is_tried_again() {
        let io = |kind| anyhow::Error::from(std::io::Error::from(kind)).context("TCP connect");
        let cases = [
            (http(503), true),
            (http(429), true),
            (http(401), false),
            (http(400), false),
            (io(std::io::ErrorKind::ConnectionRefused), true),
            (io(std::io::ErrorKind::ConnectionReset), true),
            (io(std::io::ErrorKind::PermissionDenied), false),
            (
                anyhow::Error::from(WsError::Protocol(ProtocolError::HandshakeIncomplete)),
                true,
            ),
            (
                anyhow::Error::from(WsError::Protocol(ProtocolError::WrongHttpMethod)),
                false,
            ),
        ];
        for (e, expected) in cases {
            assert_eq!(refused_for_now(&e), expected, "{e:#}");
        }
    }
}
