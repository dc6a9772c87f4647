//! The WebSocket endpoint (PROTOCOL.md §1–§6): authentication before the upgrade, then one
//! task per connection that sends `connection_ready`, the replay, and live events, answers
//! client frames, and enforces the lifecycle rules (heartbeats, limits, expiry, shutdown).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use apogee_protocol::client::MAX_FRAME_BYTES;
use apogee_protocol::{ClientFrame, ErrorCode, FrameError, ServerFrame, close, parse_client_frame};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tracing::Instrument;

use crate::app::AppState;
use crate::http_error::ApiError;
use crate::session::{SessionError, UserSession};

/// Events read from the store per replay query, so a long replay never sits in memory whole.
const REPLAY_PAGE: u64 = 500;
/// A write that takes longer than this means the client is not reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Bad frames tolerated per window before the connection is closed with 1008.
const MAX_ERRORS_PER_WINDOW: u32 = 20;
const ERROR_WINDOW: Duration = Duration::from_secs(10);
/// The largest message the WebSocket layer buffers; frames over [`MAX_FRAME_BYTES`] but under
/// this get a clean 1009, larger ones are cut off by the codec.
const CODEC_MAX_MESSAGE: usize = 256 * 1024;

/// Longest wait scheduled for a token's expiry (ten years).
const MAX_EXPIRY_WAIT_SECS: i64 = 10 * 365 * 24 * 3600;

type Sink = SplitSink<WebSocket, Message>;

/// The handshake. Authentication runs before the upgrade is accepted, so a bad credential is a
/// plain HTTP answer (401, or 429 for an address with too many recent failures).
pub async fn upgrade(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // Checked first, so a malformed request never spends a single-use ticket.
    let last_seq = match query.get("last_seq").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return ApiError::BadRequest("`last_seq` must be a non-negative integer".into())
                .into_response();
        }
    };
    let ip = peer.ip();
    if let Some(retry_after) = app.handshake_limit.blocked(ip) {
        app.metrics.handshake_failures.inc();
        return ApiError::TooManyRequests(retry_after).into_response();
    }
    let identity = match app.auth.authenticate_ws(&headers, &query).await {
        Ok(id) => id,
        Err(e) => {
            if e.is_client_error() {
                app.metrics.handshake_failures.inc();
                app.handshake_limit.record_failure(ip);
                tracing::info!(%ip, error = %e, "refused a WebSocket handshake");
            }
            return ApiError::from(e).into_response();
        }
    };
    let session = app.sessions.open(&identity);
    ws.protocols([apogee_protocol::SUBPROTOCOL])
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(CODEC_MAX_MESSAGE)
        .max_frame_size(CODEC_MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let span =
                tracing::info_span!("ws", user = %identity.user_id(), org = %identity.org_id());
            app.connections
                .track_future(serve_connection(socket, session, last_seq, app.clone()))
                .instrument(span)
        })
}

/// Why the loop ended and how to close.
enum End {
    Close(u16, &'static str),
    /// The peer went away or cannot be written to: nothing more to send.
    Drop,
}

struct Connection {
    sink: Sink,
    session: UserSession,
    app: AppState,
    errors_in_window: u32,
    window_start: Instant,
}

async fn serve_connection(
    socket: WebSocket,
    session: UserSession,
    last_seq: Option<u64>,
    app: AppState,
) {
    let (sink, mut stream) = socket.split();
    let connection_id = app.next_connection_id();
    let mut conn = Connection {
        sink,
        session,
        app: app.clone(),
        errors_in_window: 0,
        window_start: Instant::now(),
    };
    app.metrics.connections_total.inc();
    app.metrics.connections_open.inc();

    let end = match conn.start(connection_id, last_seq).await {
        Ok(sub) => conn.run(sub, &mut stream).await,
        Err(e) => {
            tracing::error!(error = %e, "could not start connection");
            End::Close(close::INTERNAL_ERROR, "internal error")
        }
    };
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            conn.sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
    app.metrics.connections_open.dec();
}

impl Connection {
    async fn send_text(&mut self, text: axum::extract::ws::Utf8Bytes) -> Result<(), End> {
        match tokio::time::timeout(SEND_TIMEOUT, self.sink.send(Message::Text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Drop),
            Err(_) => Err(End::Close(close::TRY_AGAIN_LATER, "too slow")),
        }
    }

    async fn send_frame(&mut self, frame: &ServerFrame) -> Result<(), End> {
        self.send_text(frame.to_json().into()).await
    }

    /// Subscribes, then sends `connection_ready` and the replay.
    async fn start(
        &mut self,
        connection_id: u64,
        last_seq: Option<u64>,
    ) -> Result<crate::hub::Subscription, apogee_store::StoreError> {
        let sub = self
            .session
            .subscribe(connection_id, self.app.config.send_queue)
            .await?;
        let head = sub.head_seq;
        let (from, resync) = match last_seq {
            None => (head, false),
            Some(n) if n > head => (head, true),
            Some(n) if n == head => (head, false),
            Some(n) => match self.session.oldest_seq().await? {
                Some(oldest) if oldest <= n + 1 => (n, false),
                _ => (head, true),
            },
        };
        let identity = self.session.identity();
        let ready = ServerFrame::ConnectionReady {
            connection_id: format!("c_{connection_id}"),
            user_id: identity.user_id().to_string(),
            org_id: identity.org_id().to_string(),
            server_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            heartbeat_ms: self.app.config.heartbeat_ms,
            head_seq: head,
            replayed: head - from,
            resync_required: resync,
        };
        if self.send_frame(&ready).await.is_err() {
            return Ok(sub);
        }
        let mut after = from;
        while after < head {
            let upto = (after + REPLAY_PAGE).min(head);
            for e in self.session.replay(after, upto).await? {
                if self.send_text(e.payload.into()).await.is_err() {
                    return Ok(sub);
                }
            }
            after = upto;
        }
        Ok(sub)
    }

    async fn run(
        &mut self,
        mut sub: crate::hub::Subscription,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
    ) -> End {
        let hb = Duration::from_millis(self.app.config.heartbeat_ms);
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + hb, hb);
        let mut last_seen = Instant::now();
        let expiry = self.session.identity().expires_at().map(|exp| {
            // Clamped: a far-future `exp` must not overflow the timer's arithmetic.
            let secs = exp
                .saturating_sub(chrono::Utc::now().timestamp())
                .clamp(0, MAX_EXPIRY_WAIT_SECS) as u64;
            tokio::time::Instant::now() + Duration::from_secs(secs)
        });
        let token_expired = async move {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(token_expired);
        let shutdown = self.app.shutdown.clone();
        let too_slow = sub.too_slow.clone();
        loop {
            let step = tokio::select! {
                _ = shutdown.cancelled() => Err(End::Close(close::SERVICE_RESTART, "server restarting")),
                _ = too_slow.cancelled() => Err(End::Close(close::TRY_AGAIN_LATER, "too slow: resume with last_seq")),
                _ = &mut token_expired => Err(End::Close(close::TOKEN_EXPIRED, "token_expired")),
                ev = sub.rx.recv() => match ev {
                    Some(ev) => self.send_text(ev.frame).await,
                    None => Err(End::Close(close::INTERNAL_ERROR, "stream closed")),
                },
                msg = stream.next() => {
                    last_seen = Instant::now();
                    match msg {
                        Some(Ok(msg)) => self.on_message(msg).await,
                        Some(Err(e)) => Err(read_error(&e)),
                        None => Err(End::Drop),
                    }
                }
                _ = heartbeat.tick() => {
                    if last_seen.elapsed() > hb * 2 {
                        tracing::info!("dropping a silent connection");
                        Err(End::Drop)
                    } else {
                        match tokio::time::timeout(SEND_TIMEOUT, self.sink.send(Message::Ping(Default::default()))).await {
                            Ok(Ok(())) => Ok(()),
                            _ => Err(End::Drop),
                        }
                    }
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_message(&mut self, msg: Message) -> Result<(), End> {
        match msg {
            Message::Text(text) => {
                if text.len() > MAX_FRAME_BYTES {
                    return Err(End::Close(
                        close::MESSAGE_TOO_BIG,
                        "frame larger than 64 KiB",
                    ));
                }
                match parse_client_frame(text.as_str()) {
                    Ok(frame) => self.on_frame(frame).await,
                    Err(e) => self.send_error(e).await,
                }
            }
            Message::Binary(_) => Err(End::Close(
                close::UNSUPPORTED_DATA,
                "binary frames are not supported",
            )),
            Message::Close(_) => Err(End::Drop),
            Message::Ping(_) | Message::Pong(_) => Ok(()),
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> Result<(), End> {
        match frame {
            ClientFrame::Ping { nonce } => self.send_frame(&ServerFrame::Pong { nonce }).await,
            ClientFrame::UserMessage {
                client_msg_id,
                content,
                thread_id,
            } => {
                match self
                    .session
                    .submit_message(&client_msg_id, &content, thread_id.as_deref())
                    .await
                {
                    Ok(ack) => {
                        let frame = ServerFrame::MessageAck {
                            client_msg_id,
                            message_id: ack.record.message_id,
                            thread_id: ack.record.thread_id,
                            run_id: ack.record.run_id,
                            duplicate: ack.duplicate,
                        };
                        self.send_frame(&frame).await
                    }
                    Err(e) => self.send_error(session_error(e, Some(client_msg_id))).await,
                }
            }
            ClientFrame::CancelRun { run_id } => match self.session.cancel_run(&run_id).await {
                Ok(()) => Ok(()),
                Err(e) => self.send_error(session_error(e, None)).await,
            },
        }
    }

    async fn send_error(&mut self, e: FrameError) -> Result<(), End> {
        let code = e.code;
        self.app
            .metrics
            .client_errors
            .get_or_create(&crate::metrics::CodeLabels {
                code: error_code_name(code),
            })
            .inc();
        if code != ErrorCode::Internal {
            if self.window_start.elapsed() > ERROR_WINDOW {
                self.window_start = Instant::now();
                self.errors_in_window = 0;
            }
            self.errors_in_window += 1;
            if self.errors_in_window > MAX_ERRORS_PER_WINDOW {
                return Err(End::Close(close::POLICY_VIOLATION, "too many bad frames"));
            }
        }
        let frame = ServerFrame::Error {
            code,
            message: e.message,
            client_msg_id: e.client_msg_id,
            retry_after_ms: None,
        };
        self.send_frame(&frame).await
    }
}

fn error_code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest => "bad_request",
        ErrorCode::UnknownType => "unknown_type",
        ErrorCode::NotFound => "not_found",
        ErrorCode::RateLimited => "rate_limited",
        ErrorCode::Busy => "busy",
        ErrorCode::Internal => "internal",
    }
}

fn session_error(e: SessionError, client_msg_id: Option<String>) -> FrameError {
    let (code, message) = match e {
        SessionError::NotFound => (ErrorCode::NotFound, "no such thread or run".to_string()),
        SessionError::Busy(_) => (ErrorCode::Busy, e.to_string()),
        SessionError::Store(e) => {
            tracing::error!(error = %e, "store failure while handling a frame");
            (
                ErrorCode::Internal,
                "internal error; retry with the same client_msg_id".to_string(),
            )
        }
    };
    FrameError {
        code,
        message,
        client_msg_id,
    }
}

/// A read error: an over-long message gets 1009; anything else means the peer is gone.
fn read_error(e: &axum::Error) -> End {
    let text = e.to_string();
    if text.contains("too long") || text.contains("Space limit") || text.contains("too big") {
        End::Close(close::MESSAGE_TOO_BIG, "frame larger than 64 KiB")
    } else {
        End::Drop
    }
}
