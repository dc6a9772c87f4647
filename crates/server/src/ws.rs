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
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::admission::{ConnectionSlot, Refused};
use crate::http_error::ApiError;
use crate::hub::{Replay, Subscription};
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
        return ApiError::TooManyRequests {
            retry_after,
            message: format!(
                "too many failed handshakes from this address; retry in {retry_after} s"
            ),
        }
        .into_response();
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
    ws.protocols([apogee_protocol::SUBPROTOCOL])
        // Every open connection keeps this buffer for its whole life, and it is also the most
        // one read takes in: client frames are small (a message, a ping), and a larger one
        // is read in several (the codec reserves its full length once its header is in).
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(CODEC_MAX_MESSAGE)
        .max_frame_size(CODEC_MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let identity = conn.session.identity();
            let span =
                tracing::info_span!("ws", user = %identity.user_id(), org = %identity.org_id());
            tasks
                .track_future(serve_connection(socket, conn))
                .instrument(span)
        })
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
async fn serve_connection(socket: WebSocket, conn: Box<Connection>) {
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
    socket: WebSocket,
    app: &'a AppState,
    session: &'a UserSession,
    started: Instant,
    /// When a frame last came in, in milliseconds after `started`.
    last_seen_ms: u64,
    errors_in_window: u32,
    window_start: Instant,
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
        let hb = Duration::from_millis(self.app.config.heartbeat_ms);
        // A timer in the future itself rather than an `Interval`, which boxes its own.
        let heartbeat = tokio::time::sleep(hb);
        tokio::pin!(heartbeat);
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
                    Some(ev) => self.send(Message::Text(ev.frame), &too_slow).await,
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
                () = &mut heartbeat => {
                    heartbeat.as_mut().reset(tokio::time::Instant::now() + hb);
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
        self.send(Message::Text(ready.to_json().into()), &too_slow)
            .await?;
        match replay {
            Replay::Memory(events) => {
                for e in events {
                    self.send(Message::Text(e.frame), &too_slow).await?;
                }
            }
            Replay::Store { mut after } => {
                while after < head {
                    let upto = (after + REPLAY_PAGE).min(head);
                    for e in self.session.replay(after, upto).await.map_err(internal)? {
                        self.send(Message::Text(e.payload.into()), &too_slow)
                            .await?;
                    }
                    after = upto;
                }
            }
            Replay::None | Replay::Resync => {}
        }
        Ok(sub)
    }

    /// Ends the connection: its close code, or whatever the codec still holds (its answer
    /// to a close frame), each sent if it can be within [`CLOSE_TIMEOUT`].
    async fn finish(mut self, end: End) {
        match end {
            End::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
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
        Message::Ping(_) | Message::Pong(_) => Ok(None),
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
fn read_error(e: &axum::Error) -> End {
    use std::error::Error as _;
    use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
    let Some(ws) = e.source().and_then(|s| s.downcast_ref::<WsError>()) else {
        return End::Drop;
    };
    match ws {
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
        let code = |e: WsError| match read_error(&axum::Error::new(e)) {
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
