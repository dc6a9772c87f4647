//! The WebSocket endpoint (PROTOCOL.md §1–§6): authentication before the upgrade, then per
//! connection one task owning the whole socket: it sends `connection_ready`, the replay, live
//! events, answers, heartbeats and closes, and reads client frames, handling each beside its
//! other waits, so a connection busy with a client's request never stops draining its event
//! queue; the lifecycle rules (limits, expiry, slow clients, shutdown) are enforced in one
//! place.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use apogee_protocol::client::MAX_FRAME_BYTES;
use apogee_protocol::{ClientFrame, ErrorCode, FrameError, ServerFrame, close, parse_client_frame};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use crate::admission::{ConnectionSlot, Refused};
use crate::http_error::ApiError;
use crate::hub::{Delivered, Replay, Subscription};
use crate::metrics::{CodeLabels, SourceLabels};
use crate::session::{PendingRun, SessionError, UserSession};
use crate::state::AppState;

/// Events read from the store per replay query, so a long replay never sits in memory whole.
const REPLAY_PAGE: u64 = 500;
/// A write that takes longer than this means the client is not reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a close frame may take to go out (a slow client gets the time to read what was
/// already queued for it, then its close code).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bad frames tolerated per window before the connection is closed with 1008.
const MAX_ERRORS_PER_WINDOW: u32 = 20;
const ERROR_WINDOW: Duration = Duration::from_secs(10);
/// The largest message the WebSocket layer buffers; frames over [`MAX_FRAME_BYTES`] but under
/// this get a clean 1009, larger ones are cut off by the codec.
const CODEC_MAX_MESSAGE: usize = 256 * 1024;

/// Bytes of the WebSocket codec's read buffer (axum's default is 128 KiB).
const READ_BUFFER: usize = 256;

/// Longest wait scheduled for a token's expiry (ten years).
const MAX_EXPIRY_WAIT_SECS: i64 = 10 * 365 * 24 * 3600;

/// The most bytes of queued event frames written at once: a burst (a replay, events queued
/// while the previous write went out) goes out in writes of about this size, each one
/// syscall, and the buffer is freed once written.
const BURST_BYTES: usize = 64 * 1024;

/// The upgraded connection: tokio-tungstenite's codec over hyper's upgraded socket.
type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The codec's settings. Every open connection keeps its read buffer for its whole life, and
/// it is also the most one read takes in: client frames are small (a message, a ping), and a
/// larger one is read in several (the codec reserves its full length once its header is in).
/// Messages go out at once (no write buffer kept): event bursts are written by [`Link`]
/// itself, one buffer per burst.
fn codec_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(CODEC_MAX_MESSAGE))
        .max_frame_size(Some(CODEC_MAX_MESSAGE))
}

/// Checks an HTTP/1.1 WebSocket upgrade request (RFC 6455 §4.2.1) and returns the
/// `Sec-WebSocket-Accept` value and whether the client offered Apogee's subprotocol; or the
/// status and message for a request that is not one (axum's own answers to such requests).
fn check_upgrade(
    method: &axum::http::Method,
    headers: &HeaderMap,
) -> Result<(String, bool), (StatusCode, &'static str)> {
    let bad = |message| Err((StatusCode::BAD_REQUEST, message));
    if method != axum::http::Method::GET {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "Request method must be `GET`",
        ));
    }
    let connection_upgrade = headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    if !connection_upgrade {
        return bad("Connection header did not include 'upgrade'");
    }
    let eq = |name: header::HeaderName, value: &str| {
        headers
            .get(name)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
    };
    if !eq(header::UPGRADE, "websocket") {
        return bad("`Upgrade` header did not include 'websocket'");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return bad("`Sec-WebSocket-Key` header missing");
    };
    if !eq(header::SEC_WEBSOCKET_VERSION, "13") {
        return bad("`Sec-WebSocket-Version` header did not include '13'");
    }
    let subprotocol = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|p| p.trim_ascii() == apogee_protocol::SUBPROTOCOL.as_bytes());
    Ok((
        tungstenite::handshake::derive_accept_key(key.as_bytes()),
        subprotocol,
    ))
}

/// The 101 answer that completes the upgrade.
fn switching_protocols(accept: String, subprotocol: bool) -> Response {
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if subprotocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(apogee_protocol::SUBPROTOCOL),
        );
    }
    response
}

/// The longest header [`encode_text`] writes: opcode, length marker and a 64-bit length.
const FRAME_HEADER_MAX: usize = 10;

/// Appends one unfragmented, unmasked text frame (a server's, RFC 6455 §5.2) to `out`.
fn encode_text(out: &mut Vec<u8>, payload: &str) {
    let len = payload.len();
    out.push(0x81); // FIN, text
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload.as_bytes());
}

/// The handshake. Authentication runs before the upgrade is accepted, so a bad credential is a
/// plain HTTP answer (401, or 429 for an address with too many recent failures). The upgrade
/// is hyper's and the codec tokio-tungstenite's, with no wrapper between them: each open
/// connection's task is its own future and nothing else.
pub async fn upgrade(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    mut req: Request,
) -> Response {
    let (accept, subprotocol) = match check_upgrade(req.method(), req.headers()) {
        Ok(checked) => checked,
        Err(refused) => return refused.into_response(),
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket request couldn't be upgraded since no upgrade state was present",
        )
            .into_response();
    };
    let headers: &HeaderMap = req.headers();
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
        return ApiError::TooManyRequests {
            retry_after,
            message: format!(
                "too many failed handshakes from this address; retry in {retry_after} s"
            ),
        }
        .into_response();
    }
    let identity = match app.auth.authenticate_ws(headers, &query).await {
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
    let user = identity.key();
    let slot = match app.admission.admit(user) {
        Ok(slot) => slot,
        Err(Refused::NodeFull) => {
            app.metrics.connections_refused.inc();
            return ApiError::Unavailable(
                "this node is at its connection limit; retry shortly".into(),
            )
            .into_response();
        }
        Err(Refused::UserFull(max)) => {
            app.metrics.connections_refused_per_user.inc();
            return ApiError::TooManyRequests {
                retry_after: 1,
                message: format!(
                    "this user has {max} connections open on this node, the most allowed"
                ),
            }
            .into_response();
        }
    };
    // Before the stream's head is read: an alert fired from now on is in this user's stream.
    app.budgets.member_seen(user).await;
    let session = app.sessions.open(&identity);
    let tasks = app.connections.clone();
    let conn = Box::new(Connection {
        session,
        app,
        last_seq,
        _slot: slot,
    });
    let span = tracing::info_span!("ws", user = %identity.user_id(), org = %identity.org_id());
    tokio::spawn(
        tasks.track_future(
            async move {
                // The client went away before the 101 reached it: nothing to serve.
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(codec_config()),
                )
                .await;
                serve_connection(socket, conn).await;
            }
            .instrument(span),
        ),
    );
    switching_protocols(accept, subprotocol)
}

/// What a connection holds for its whole life, boxed once: the upgrade's future and the
/// connection's own then carry a pointer to it rather than each a copy of the session and the
/// server's handles (tens of thousands of idle connections are mostly these futures).
struct Connection {
    session: UserSession,
    app: AppState,
    last_seq: Option<u64>,
    /// Released when the connection ends: the node's and the user's connection counts.
    _slot: ConnectionSlot,
}

/// Why a connection ends and how to close it.
#[derive(Debug)]
enum End {
    Close(u16, &'static str),
    /// The peer went away or cannot be written to: nothing more to send.
    Drop,
    /// The peer sent a close frame: the answering close (queued by the codec) is flushed.
    PeerClosed,
}

/// The client frame being handled, if any: its store work runs beside the connection's
/// other waits, so events keep flowing meanwhile, and no further frame is read until it is
/// done.
type Handling<'a> = Option<Pin<Box<dyn Future<Output = Answer> + Send + 'a>>>;

/// What a client frame gets. Boxed: it can hold a stored turn, and a value the connection's
/// future holds across a wait sizes that future for every idle connection.
type Answer = Result<Box<Handled>, End>;

/// What handling a client frame produced: the answer to send, and the run to start once the
/// answer is out (so the ack precedes the run's events).
struct Handled {
    reply: Option<Reply>,
    pending: Option<PendingRun>,
}

enum Reply {
    Frame(ServerFrame),
    /// Counted towards the connection's error window before it is sent.
    Error(FrameError, Option<Duration>),
}

impl Handled {
    fn reply(frame: ServerFrame) -> Answer {
        Ok(Box::new(Handled {
            reply: Some(Reply::Frame(frame)),
            pending: None,
        }))
    }

    fn error(e: FrameError, retry_after: Option<Duration>) -> Answer {
        Ok(Box::new(Handled {
            reply: Some(Reply::Error(e, retry_after)),
            pending: None,
        }))
    }
}

/// Runs one connection on one task that owns the whole socket. Only what waits while the
/// connection is idle lives in this future (the socket, the event queue, the timers and
/// cancellations); every step that does work (start-up and replay, sending a frame, handling
/// a client frame, closing) is boxed, so the task of an idle connection is sized for waiting,
/// not for working.
async fn serve_connection(socket: Socket, conn: Box<Connection>) {
    let Connection {
        session,
        app,
        last_seq,
        ..
    } = &*conn;
    app.metrics.connections_total.inc();
    app.metrics.connections_open.inc();
    let connection_id = app.next_connection_id();
    let mut link = Link {
        socket,
        app,
        session,
        started: Instant::now(),
        last_seen_ms: 0,
        errors_in_window: 0,
        window_start: Instant::now(),
        unsent: Vec::new(),
    };
    let mut handling: Handling<'_> = None;
    let end = link.run(connection_id, *last_seq, &mut handling).await;
    // The frame in hand is finished (bounded store work) before the close: a stored message
    // must not lose the run it starts because the connection is closing.
    if let Some(frame) = handling.take()
        && let Ok(handled) = frame.await
        && let Some(pending) = handled.pending
    {
        pending.start();
    }
    Box::pin(link.finish(end)).await;
    app.metrics.connections_open.dec();
}

/// The connection's socket and what it knows of its peer: sends `connection_ready`, the
/// replay, live events, answers to client frames (an ack before the events it caused),
/// heartbeats and every close the server initiates; reads and handles client frames.
struct Link<'a> {
    socket: Socket,
    app: &'a AppState,
    session: &'a UserSession,
    started: Instant,
    /// When a frame last came in, in milliseconds after `started`.
    last_seen_ms: u64,
    errors_in_window: u32,
    window_start: Instant,
    /// What is left of a burst whose write was cut short (too slow, shutdown): written before
    /// the close frame, so the client never gets half a frame. Empty (no allocation) otherwise.
    unsent: Vec<u8>,
}

impl<'a> Link<'a> {
    /// Sends one message, giving up as soon as the connection is found too slow or the
    /// server is shutting down. Boxed: its timer and waits are live only while a frame goes
    /// out, and inline they would size every idle connection's task for them.
    async fn send(&mut self, msg: Message, too_slow: &CancellationToken) -> Result<(), End> {
        Box::pin(self.send_inline(msg, too_slow)).await
    }

    async fn send_inline(&mut self, msg: Message, too_slow: &CancellationToken) -> Result<(), End> {
        tokio::select! {
            r = tokio::time::timeout(SEND_TIMEOUT, self.socket.send(msg)) => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(End::Drop),
                Err(_) => Err(End::Close(close::TRY_AGAIN_LATER, close::reason::TOO_SLOW)),
            },
            _ = too_slow.cancelled() => Err(End::Close(close::TRY_AGAIN_LATER, close::reason::TOO_SLOW)),
            _ = self.app.shutdown.cancelled() => Err(End::Close(close::SERVICE_RESTART, close::reason::RESTARTING)),
        }
    }

    /// Writes encoded text frames (a burst: a replay, or events queued meanwhile) in one
    /// write, under the same bounds as [`Self::send`]. Boxed, as sends are.
    async fn write_frames(
        &mut self,
        frames: Vec<u8>,
        too_slow: &CancellationToken,
    ) -> Result<(), End> {
        self.unsent = frames;
        let shutdown = &self.app.shutdown;
        Box::pin(async {
            tokio::select! {
                r = tokio::time::timeout(SEND_TIMEOUT, self.write_unsent()) => match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(())) => Err(End::Drop),
                    Err(_) => Err(End::Close(close::TRY_AGAIN_LATER, close::reason::TOO_SLOW)),
                },
                _ = too_slow.cancelled() => Err(End::Close(close::TRY_AGAIN_LATER, close::reason::TOO_SLOW)),
                _ = shutdown.cancelled() => Err(End::Close(close::SERVICE_RESTART, close::reason::RESTARTING)),
            }
        })
        .await
    }

    /// Writes `unsent` straight to the socket, after whatever the codec still holds (so
    /// frames keep their order); cancel-safe: what was written is taken off as it goes.
    async fn write_unsent(&mut self) -> Result<(), ()> {
        self.socket.flush().await.map_err(|_| ())?;
        while !self.unsent.is_empty() {
            match self.socket.get_mut().write(&self.unsent).await {
                Ok(0) | Err(_) => return Err(()),
                Ok(n) => {
                    self.unsent.drain(..n);
                }
            }
        }
        self.unsent = Vec::new();
        self.socket.get_mut().flush().await.map_err(|_| ())
    }

    /// Sends `first` and whatever else is queued already, up to [`BURST_BYTES`] a write.
    async fn send_events(
        &mut self,
        first: Delivered,
        rx: &mut crate::queue::Receiver<Delivered>,
        too_slow: &CancellationToken,
    ) -> Result<(), End> {
        let mut frames = Vec::new();
        encode_text(&mut frames, first.frame.as_str());
        while frames.len() < BURST_BYTES
            && let Some(ev) = rx.try_pop()
        {
            encode_text(&mut frames, ev.frame.as_str());
        }
        self.write_frames(frames, too_slow).await
    }

    /// Serves the connection until it must end, and says how. A client frame still being
    /// handled then is left in `handling` for the caller to finish.
    async fn run(
        &mut self,
        connection_id: u64,
        last_seq: Option<u64>,
        handling: &mut Handling<'a>,
    ) -> End {
        // Boxed: the start-up work (store reads, replay) is large and short-lived; inline it
        // would size every idle connection's task for it.
        let mut sub = match Box::pin(self.start(connection_id, last_seq)).await {
            Ok(sub) => sub,
            Err(end) => return end,
        };
        let too_slow = sub.too_slow.clone();
        // The node's one heartbeat timer, not one per connection.
        let hb = self.app.heartbeat.period();
        let mut beat = self.app.heartbeat.join();
        // Boxed, and allocated only for a credential that expires.
        let mut token_expired: Pin<Box<dyn Future<Output = ()> + Send>> =
            match self.session.identity().expires_at() {
                Some(exp) => {
                    // Clamped: a far-future `exp` must not overflow the timer's arithmetic.
                    let secs = exp
                        .saturating_sub(chrono::Utc::now().timestamp())
                        .clamp(0, MAX_EXPIRY_WAIT_SECS) as u64;
                    Box::pin(tokio::time::sleep(Duration::from_secs(secs)))
                }
                None => Box::pin(std::future::pending()),
            };
        // A browser session signed out ends its connections as an expired token does.
        let mut revoked = self.app.auth.revoked(self.session.identity());
        let session = self.session;
        loop {
            let step = tokio::select! {
                biased;
                _ = self.app.shutdown.cancelled() => Err(End::Close(close::SERVICE_RESTART, close::reason::RESTARTING)),
                _ = &mut token_expired => Err(End::Close(close::TOKEN_EXPIRED, close::reason::TOKEN_EXPIRED)),
                _ = &mut revoked => Err(End::Close(close::TOKEN_EXPIRED, close::reason::TOKEN_EXPIRED)),
                // The frame in hand first: its answer goes out before the events it caused.
                handled = poll_fn(|cx| match handling.as_mut() {
                    Some(frame) => frame.as_mut().poll(cx),
                    None => Poll::Pending,
                }) => {
                    *handling = None;
                    Box::pin(self.answer(handled, &too_slow)).await
                }
                // No wait of its own for `too_slow`: the stream drops a connection's sender as
                // it fires it, and the queue's closing wakes this branch, which then closes
                // at once rather than send what was still queued.
                ev = poll_fn(|cx| sub.rx.poll_pop(cx)) => match ev {
                    _ if too_slow.is_cancelled() => Err(End::Close(close::TRY_AGAIN_LATER, close::reason::TOO_SLOW)),
                    Some(ev) => self.send_events(ev, &mut sub.rx, &too_slow).await,
                    None => Err(End::Close(close::INTERNAL_ERROR, "stream closed")),
                },
                msg = self.socket.next(), if handling.is_none() => match msg {
                    None => Err(End::Drop),
                    Some(Err(e)) => Err(read_error(&e)),
                    Some(Ok(msg)) => {
                        self.last_seen_ms = self.started.elapsed().as_millis() as u64;
                        match classify(msg) {
                            Ok(Some(frame)) => {
                                *handling = Some(Box::pin(handle(session, frame)));
                                Ok(())
                            }
                            Ok(None) => Ok(()),
                            Err(answer) => Box::pin(self.answer(answer, &too_slow)).await,
                        }
                    }
                },
                () = poll_fn(|cx| beat.poll_tick(cx)) => {
                    let silent = self.started.elapsed().saturating_sub(Duration::from_millis(self.last_seen_ms));
                    if silent > hb * 2 {
                        tracing::info!("dropping a silent connection");
                        Err(End::Drop)
                    } else {
                        self.send(Message::Ping(Default::default()), &too_slow).await
                    }
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Sends what handling a client frame produced, then starts its run: whether or not the
    /// answer could be sent, because the message is stored; its run must start even if this
    /// connection is ending (shutdown waits for it). Boxed by its callers, as sends are: inline,
    /// its locals (a frame, a stored turn) would size every idle connection's task.
    async fn answer(&mut self, handled: Answer, too_slow: &CancellationToken) -> Result<(), End> {
        let Handled { reply, pending } = *handled?;
        let sent = match reply {
            None => Ok(()),
            Some(Reply::Frame(frame)) => {
                self.send(Message::Text(frame.to_json().into()), too_slow)
                    .await
            }
            Some(Reply::Error(e, retry_after)) => self.send_error(e, retry_after, too_slow).await,
        };
        if let Some(pending) = pending {
            pending.start();
        }
        sent
    }
    /// Subscribes, then sends `connection_ready` and the replay: from memory when the user's
    /// recent events cover it, else from the store in pages.
    async fn start(
        &mut self,
        connection_id: u64,
        last_seq: Option<u64>,
    ) -> Result<Subscription, End> {
        let internal = |e: apogee_store::StoreError| {
            tracing::error!(error = %e, "could not start a connection");
            End::Close(close::INTERNAL_ERROR, "internal error")
        };
        let mut sub = self
            .session
            .subscribe(connection_id, self.app.config.send_queue, last_seq)
            .await
            .map_err(internal)?;
        let head = sub.head_seq;
        let replay = match std::mem::replace(&mut sub.replay, Replay::None) {
            Replay::Store { after } => match self.session.oldest_seq().await.map_err(internal)? {
                Some(oldest) if oldest <= after + 1 => Replay::Store { after },
                _ => Replay::Resync,
            },
            other => other,
        };
        let (replayed, resync, source) = match &replay {
            Replay::None => (0, false, "none"),
            Replay::Resync => (0, true, "resync"),
            Replay::Memory(events) => (events.len() as u64, false, "memory"),
            Replay::Store { after } => (head - after, false, "store"),
        };
        self.app
            .metrics
            .replays
            .get_or_create(&SourceLabels { source })
            .inc();
        let identity = self.session.identity();
        let ready = ServerFrame::ConnectionReady {
            connection_id: format!("c_{connection_id}"),
            user_id: identity.user_id().to_string(),
            org_id: identity.org_id().to_string(),
            server_time: apogee_protocol::time::instant(chrono::Utc::now()),
            heartbeat_ms: self.app.config.heartbeat_ms,
            head_seq: head,
            replayed,
            resync_required: resync,
        };
        let too_slow = sub.too_slow.clone();
        // `connection_ready` and the replay go out in writes of up to `BURST_BYTES`, not one
        // write per frame.
        let ready = ready.to_json();
        // Sized once for what goes in the first write: growing it frame by frame reallocated
        // and copied the burst several times per resume (seen in a 15,000-client storm).
        let replay_bytes = match &replay {
            Replay::Memory(events) => events
                .iter()
                .map(|e| e.frame.len() + FRAME_HEADER_MAX)
                .sum::<usize>(),
            Replay::Store { .. } => BURST_BYTES,
            Replay::None | Replay::Resync => 0,
        };
        let mut frames = Vec::with_capacity(
            (ready.len() + FRAME_HEADER_MAX + replay_bytes).min(BURST_BYTES * 2),
        );
        encode_text(&mut frames, &ready);
        match replay {
            Replay::Memory(events) => {
                for e in events {
                    if frames.len() >= BURST_BYTES {
                        self.write_frames(std::mem::take(&mut frames), &too_slow)
                            .await?;
                    }
                    encode_text(&mut frames, e.frame.as_str());
                }
            }
            Replay::Store { mut after } => {
                while after < head {
                    let upto = (after + REPLAY_PAGE).min(head);
                    for e in self.session.replay(after, upto).await.map_err(internal)? {
                        if frames.len() >= BURST_BYTES {
                            self.write_frames(std::mem::take(&mut frames), &too_slow)
                                .await?;
                        }
                        encode_text(&mut frames, &e.payload);
                    }
                    after = upto;
                }
            }
            Replay::None | Replay::Resync => {}
        }
        self.write_frames(frames, &too_slow).await?;
        Ok(sub)
    }

    /// Ends the connection: its close code, or whatever the codec still holds (its answer
    /// to a close frame), each sent if it can be within [`CLOSE_TIMEOUT`].
    async fn finish(mut self, end: End) {
        // The rest of a burst cut short goes first: a close after half a frame would be
        // garbage to the client.
        if !self.unsent.is_empty() {
            match tokio::time::timeout(CLOSE_TIMEOUT, self.write_unsent()).await {
                Ok(Ok(())) => {}
                Ok(Err(())) | Err(_) => return,
            }
        }
        match end {
            End::Close(code, reason) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                let _ = tokio::time::timeout(
                    CLOSE_TIMEOUT,
                    self.socket.send(Message::Close(Some(frame))),
                )
                .await;
            }
            End::PeerClosed | End::Drop => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.socket.flush()).await;
            }
        }
    }

    async fn send_error(
        &mut self,
        e: FrameError,
        retry_after: Option<Duration>,
        too_slow: &CancellationToken,
    ) -> Result<(), End> {
        let code = e.code;
        self.app
            .metrics
            .client_errors
            .get_or_create(&CodeLabels {
                code: error_code_name(code),
            })
            .inc();
        // Only frames the client got wrong count towards closing it: `rate_limited` and
        // `busy` answer well-formed requests that came too fast, `internal` is ours.
        if counts_as_abuse(code) {
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
            retry_after_ms: retry_after.map(|d| d.as_millis().max(1) as u64),
        };
        self.send(Message::Text(frame.to_json().into()), too_slow)
            .await
    }
}

/// What a message from the client asks for: `Ok(Some)` a frame that needs the store (handled
/// by [`handle`] beside the connection's other waits), `Ok(None)` nothing, `Err` an answer or
/// an end at once.
fn classify(msg: Message) -> Result<Option<ClientFrame>, Answer> {
    match msg {
        Message::Text(text) => {
            if text.len() > MAX_FRAME_BYTES {
                return Err(Err(End::Close(
                    close::MESSAGE_TOO_BIG,
                    "frame larger than 64 KiB",
                )));
            }
            match parse_client_frame(text.as_str()) {
                Ok(ClientFrame::Ping { nonce }) => Err(Handled::reply(ServerFrame::Pong { nonce })),
                Ok(frame) => Ok(Some(frame)),
                Err(e) => Err(Handled::error(e, None)),
            }
        }
        Message::Binary(_) => Err(Err(End::Close(
            close::UNSUPPORTED_DATA,
            "binary frames are not supported",
        ))),
        Message::Close(_) => Err(Err(End::PeerClosed)),
        // Raw frames are never read whole.
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(None),
    }
}

/// Handles a client frame that needs the store.
async fn handle(session: &UserSession, frame: ClientFrame) -> Answer {
    match frame {
        ClientFrame::Ping { nonce } => Handled::reply(ServerFrame::Pong { nonce }),
        ClientFrame::UserMessage {
            client_msg_id,
            content,
            thread_id,
        } => match session
            .submit_message(&client_msg_id, &content, thread_id.as_deref())
            .await
        {
            Ok(submitted) => {
                let ack = submitted.ack;
                Ok(Box::new(Handled {
                    reply: Some(Reply::Frame(ServerFrame::MessageAck {
                        client_msg_id,
                        message_id: ack.record.message_id,
                        thread_id: ack.record.thread_id,
                        run_id: ack.record.run_id,
                        duplicate: ack.duplicate,
                    })),
                    pending: submitted.pending,
                }))
            }
            // Not stored: the client resends it once reconnected.
            Err(SessionError::ShuttingDown) => Err(End::Close(
                close::SERVICE_RESTART,
                close::reason::RESTARTING,
            )),
            Err(e) => {
                let (frame, retry) = session_error(e, Some(client_msg_id));
                Handled::error(frame, retry)
            }
        },
        ClientFrame::CancelRun { run_id } => match session.cancel_run(&run_id).await {
            Ok(()) => Ok(Box::new(Handled {
                reply: None,
                pending: None,
            })),
            Err(e) => {
                let (frame, retry) = session_error(e, None);
                Handled::error(frame, retry)
            }
        },
    }
}
fn counts_as_abuse(code: ErrorCode) -> bool {
    match code {
        ErrorCode::BadRequest | ErrorCode::UnknownType | ErrorCode::NotFound => true,
        ErrorCode::RateLimited | ErrorCode::Busy | ErrorCode::Internal => false,
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

fn session_error(e: SessionError, client_msg_id: Option<String>) -> (FrameError, Option<Duration>) {
    let retry = match &e {
        SessionError::RateLimited(wait) => Some(*wait),
        _ => None,
    };
    let (code, message) = match e {
        SessionError::NotFound => (ErrorCode::NotFound, "no such thread or run".to_string()),
        // A message refused while draining closes the connection instead (`on_frame`).
        SessionError::Busy(_) | SessionError::ShuttingDown => (ErrorCode::Busy, e.to_string()),
        SessionError::RateLimited(_) => (ErrorCode::RateLimited, e.to_string()),
        SessionError::Store(e) => {
            tracing::error!(error = %e, "store failure while handling a frame");
            (
                ErrorCode::Internal,
                "internal error; retry with the same client_msg_id".to_string(),
            )
        }
    };
    (
        FrameError {
            code,
            message,
            client_msg_id,
        },
        retry,
    )
}

/// A read error: the close code RFC 6455 §7.4.1 gives its cause, or `Drop` when the peer is
/// simply gone (nothing can be sent then).
fn read_error(e: &tungstenite::Error) -> End {
    use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            End::Close(close::MESSAGE_TOO_BIG, "frame larger than 64 KiB")
        }
        WsError::Utf8(_) => End::Close(close::INVALID_PAYLOAD, "text frame is not UTF-8"),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => End::Drop,
        WsError::Protocol(ProtocolError::ControlFrameTooBig) => End::Close(
            close::PROTOCOL_ERROR,
            "control frame payload over 125 bytes",
        ),
        WsError::Protocol(ProtocolError::UnmaskedFrameFromClient) => {
            End::Close(close::PROTOCOL_ERROR, "client frames must be masked")
        }
        WsError::Protocol(ProtocolError::NonZeroReservedBits) => {
            End::Close(close::PROTOCOL_ERROR, "reserved bits set")
        }
        WsError::Protocol(ProtocolError::FragmentedControlFrame) => {
            End::Close(close::PROTOCOL_ERROR, "fragmented control frame")
        }
        WsError::Protocol(_) => End::Close(close::PROTOCOL_ERROR, "protocol error"),
        WsError::Capacity(_) => End::Close(close::MESSAGE_TOO_BIG, "frame too large"),
        _ => End::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_is_checked_as_rfc_6455_says_and_offers_our_subprotocol_only_if_asked() {
        use axum::http::Method;
        let request = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(*name, HeaderValue::from_static(value));
            }
            headers
        };
        let good = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ];
        // RFC 6455 §1.3's example.
        assert_eq!(
            check_upgrade(&Method::GET, &request(&good)),
            Ok(("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string(), false))
        );
        let mut offered = good.to_vec();
        offered.push(("sec-websocket-protocol", "chat, apogee.v1"));
        assert_eq!(apogee_protocol::SUBPROTOCOL, "apogee.v1");
        assert_eq!(
            check_upgrade(&Method::GET, &request(&offered)).map(|(_, p)| p),
            Ok(true)
        );
        assert_eq!(
            check_upgrade(&Method::POST, &request(&good)).map_err(|(s, _)| s),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
        for missing in 0..good.len() {
            let mut partial = good.to_vec();
            partial.remove(missing);
            assert_eq!(
                check_upgrade(&Method::GET, &request(&partial)).map_err(|(s, _)| s),
                Err(StatusCode::BAD_REQUEST),
                "without {}",
                good[missing].0
            );
        }
    }

    #[test]
    fn a_burst_is_the_frames_tungstenite_would_write_one_by_one() {
        use tungstenite::protocol::frame::Frame;
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        // Each length form of RFC 6455 §5.2: 7 bits, 16 bits, 64 bits.
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let mut ours = Vec::new();
            encode_text(&mut ours, &payload);
            let mut theirs = Vec::new();
            Frame::message(payload.clone(), OpCode::Data(Data::Text), true)
                .format(&mut theirs)
                .expect("format into a Vec");
            assert_eq!(ours, theirs, "payload of {} bytes", payload.len());
        }
        let mut two = Vec::new();
        encode_text(&mut two, "a");
        encode_text(&mut two, "bc");
        assert_eq!(two, [0x81, 1, b'a', 0x81, 2, b'b', b'c']);
    }

    #[test]
    fn only_frames_the_client_got_wrong_count_towards_1008() {
        assert!(counts_as_abuse(ErrorCode::BadRequest));
        assert!(counts_as_abuse(ErrorCode::UnknownType));
        assert!(counts_as_abuse(ErrorCode::NotFound));
        assert!(!counts_as_abuse(ErrorCode::RateLimited));
        assert!(!counts_as_abuse(ErrorCode::Busy));
        assert!(!counts_as_abuse(ErrorCode::Internal));
    }

    #[test]
    fn read_errors_close_with_the_code_of_their_cause() {
        use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
        let code = |e: WsError| match read_error(&e) {
            End::Close(code, _) => Some(code),
            End::Drop | End::PeerClosed => None,
        };
        assert_eq!(
            code(WsError::Protocol(ProtocolError::ControlFrameTooBig)),
            Some(close::PROTOCOL_ERROR),
            "a 200-byte ping is a protocol error, not a message too big"
        );
        assert_eq!(
            code(WsError::Capacity(CapacityError::MessageTooLong {
                size: 300_000,
                max_size: 262_144
            })),
            Some(close::MESSAGE_TOO_BIG)
        );
        assert_eq!(
            code(WsError::Utf8("bad".into())),
            Some(close::INVALID_PAYLOAD)
        );
        assert_eq!(
            code(WsError::Protocol(ProtocolError::InvalidOpcode(5))),
            Some(close::PROTOCOL_ERROR)
        );
        assert_eq!(code(WsError::ConnectionClosed), None);
        assert_eq!(
            code(WsError::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
            )),
            None
        );
    }
}
