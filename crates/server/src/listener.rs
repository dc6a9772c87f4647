//! The HTTP listener: accepts TCP connections and serves each with hyper's HTTP/1.1 (with
//! upgrades, for the WebSocket), under bounds no client can push past:
//!
//! - a header-read timeout, which also closes keep-alive connections idle between requests
//!   (hyper arms it whenever a connection waits for a request head, the first one included);
//! - at most `per_ip` open sockets per client address (IPv6 per /64), upgraded ones included;
//! - at most `sockets` open sockets in all, derived from the process's open-file limit
//!   ([`ConnectionLimits::derive`]) so `accept` never fails for want of descriptors. At that
//!   bound a new connection takes the place of the one that has been idle longest (no request
//!   in flight, not upgraded): sockets that say nothing cannot lock everyone else out.
//!
//! The socket is bound by [`bind`], with the configured listen backlog: the kernel queues that
//! many completed handshakes for `accept` and drops SYNs beyond (the client retries after a
//! second), so a storm of clients connecting at once needs a deeper queue than the usual 128.
//!
//! When every place is taken and the evicted sockets are still being closed, the newcomer
//! waits (bounded, beside the accept loop, so everyone else's connections are still taken)
//! for one to close rather than being turned away; once `MAX_CLOSING` (16) newcomers wait so, the
//! accept loop itself waits, and later arrivals queue in the listen backlog. A refused connection
//! gets a canned `503`; what it already sent is read first so the close is not a reset. The bookkeeping is
//! `Table`, pure and unit-tested; a socket's place in it is held by the IO object itself
//! (`TrackedIo`), so it is released exactly when the socket closes, also after an upgrade
//! moved it into a WebSocket.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::handshake_limit::client_key;
use crate::metrics::{Metrics, ReasonLabels};

/// Descriptors kept back from the open-file limit for everything that is not a client socket
/// (database and Redis connections, files, the runtime's own), plus a sixteenth of the limit.
const RESERVED_FDS: u64 = 64;
/// Sockets per client address unless configured: enough for a busy office behind one NAT.
const DEFAULT_PER_IP: usize = 1024;
/// WebSocket connections per user unless configured: many tabs and devices, not thousands.
const DEFAULT_PER_USER: usize = 32;
/// How long shutdown waits for connections still mid-request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Evicted sockets whose tasks have not closed them yet, at most: they still hold descriptors,
/// so admissions wait for one to close rather than let them pile up past the reserve.
const MAX_CLOSING: usize = 16;
/// How long a connection waits for an evicted socket to close before it is refused. The tasks of evicted sockets close them as soon as they are polled,
/// so this is scheduling delay on a busy node; the listen backlog queues arrivals meanwhile.
const CLOSING_WAIT: Duration = Duration::from_secs(1);
/// Reads of up to 4 KiB a refused connection gets, to take in a request it already sent.
const REFUSE_DRAIN_READS: usize = 4;
/// Pause after `accept` fails (the process is out of descriptors or memory): retrying at
/// once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The connection bounds of one node, fixed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The process's open-file limit the rest was derived from.
    pub open_files: u64,
    /// Open client sockets of any kind.
    pub sockets: usize,
    /// Open sockets per client address.
    pub per_ip: usize,
    /// WebSocket connections (HTTP 503 `unavailable` beyond). Kept below `sockets`, so REST
    /// calls still get in when every WebSocket place is taken.
    pub websockets: usize,
    /// WebSocket connections per user (HTTP 429 beyond).
    pub per_user: usize,
}

/// What the operator asked for; `None` means "derive it".
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestedLimits {
    pub websockets: Option<usize>,
    pub per_ip: Option<usize>,
    pub per_user: Option<usize>,
}

impl ConnectionLimits {
    /// Limits that fit `open_files` descriptors. A requested value above what fits is lowered
    /// (and said so by [`ConnectionLimits::lowered`]); below, it is kept.
    pub fn derive(open_files: u64, requested: RequestedLimits) -> ConnectionLimits {
        let reserve = RESERVED_FDS + open_files / 16;
        let sockets = usize::try_from(open_files.saturating_sub(reserve))
            .unwrap_or(usize::MAX)
            .max(1);
        let fitting_websockets = sockets.saturating_sub((sockets / 8).max(8)).max(1);
        let websockets = requested
            .websockets
            .map_or(fitting_websockets, |w| w.min(fitting_websockets));
        let per_ip = requested
            .per_ip
            .unwrap_or_else(|| DEFAULT_PER_IP.min((sockets / 4).max(1)))
            .min(sockets);
        ConnectionLimits {
            open_files,
            sockets,
            per_ip,
            websockets,
            per_user: requested.per_user.unwrap_or(DEFAULT_PER_USER),
        }
    }

    /// Whether a requested WebSocket limit had to be lowered to fit the descriptors.
    pub fn lowered(&self, requested: RequestedLimits) -> bool {
        requested.websockets.is_some_and(|w| w > self.websockets)
    }
}

/// How the listener serves: its bounds and the header-read timeout.
#[derive(Debug, Clone, Copy)]
pub struct ListenerConfig {
    pub limits: ConnectionLimits,
    pub header_timeout: Duration,
}

/// Binds a listening socket on `addr` whose accept queue holds `backlog` connections (the
/// kernel caps it at `net.core.somaxconn`). Like tokio's own `bind`, it sets `SO_REUSEADDR`
/// on Unix, so a restarted server takes its port back while old connections sit in
/// `TIME_WAIT`.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Runs until `shutdown`: accepts, admits and serves connections with `app`. Then stops
/// accepting, asks every connection to finish its request in flight, and waits for them
/// (bounded); upgraded connections are their handlers' to close.
pub async fn run(
    listener: TcpListener,
    app: Router,
    config: ListenerConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let acceptor = Arc::new(Acceptor {
        table: Arc::new(Mutex::new(Table::new(
            config.limits.sockets,
            config.limits.per_ip,
        ))),
        closed: Arc::new(Notify::new()),
        started: Instant::now(),
        app,
        header_timeout: config.header_timeout,
        metrics,
        tasks: TaskTracker::new(),
        waiting: AtomicUsize::new(0),
        closing_wait: CLOSING_WAIT,
        shutdown,
    });
    acceptor.accept_loop(listener).await;
}

/// What the accept loop and the admissions waiting beside it share.
struct Acceptor {
    table: Arc<Mutex<Table>>,
    /// Told when an evicted socket closes, for an admission waiting on it.
    closed: Arc<Notify>,
    started: Instant,
    app: Router,
    header_timeout: Duration,
    metrics: Arc<Metrics>,
    /// Every connection's task and every waiting admission: shutdown waits for them.
    tasks: TaskTracker,
    /// Admissions waiting for an evicted socket to close, at most [`MAX_CLOSING`] (each
    /// holds its socket).
    waiting: AtomicUsize,
    /// How long an admission waits for an evicted socket to close ([`CLOSING_WAIT`]).
    closing_wait: Duration,
    shutdown: CancellationToken,
}

impl Acceptor {
    /// Accepts until shutdown, then waits (bounded) for the connections' requests in flight.
    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        self.metrics.accept_errors.inc();
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
                _ = self.shutdown.cancelled() => break,
            };
            let admitted = lock(&self.table).admit(peer.ip(), millis(self.started));
            match admitted {
                Ok(conn) => self.serve(conn, stream, peer),
                // Only sockets still closing are in the way: wait for one beside the loop, so
                // connections from everyone else are still taken meanwhile.
                Err(Refusal::Closing) => match WaitingAdmission::take(&self) {
                    Some(waiting) => {
                        self.tasks.spawn(waiting.admit(stream, peer));
                    }
                    // Every waiting place is taken (a flood of sockets evicting each other):
                    // wait here instead, so later arrivals queue in the listen backlog until a
                    // socket closes rather than being refused.
                    None => {
                        if !self.admit_once_closed(stream, peer).await {
                            break;
                        }
                    }
                },
                Err(refusal) => self.refuse(stream, refusal),
            }
        }
        drop(listener);
        self.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some HTTP requests were still in flight at shutdown");
        }
    }

    /// Admits a connection once an evicted socket has closed (bounded by `closing_wait`),
    /// then serves or refuses it; `false` when shutdown came first (nobody is admitted any
    /// more, and the socket just closes).
    async fn admit_once_closed(&self, stream: TcpStream, peer: SocketAddr) -> bool {
        let admitted = tokio::select! {
            admitted = admit(
                &self.table,
                &self.closed,
                peer.ip(),
                self.started,
                self.closing_wait,
            ) => admitted,
            _ = self.shutdown.cancelled() => return false,
        };
        match admitted {
            Ok(conn) => self.serve(conn, stream, peer),
            Err(refusal) => self.refuse(stream, refusal),
        }
        true
    }

    /// Serves an admitted connection on its own task, after closing the idle one it displaced.
    fn serve(&self, conn: Admitted, stream: TcpStream, peer: SocketAddr) {
        if let Some(victim) = conn.evicted {
            self.metrics
                .sockets_refused
                .get_or_create(&ReasonLabels {
                    reason: "evicted_idle",
                })
                .inc();
            victim.evict.cancel();
        }
        tune_socket(&stream);
        let io = TrackedIo {
            inner: stream,
            _slot: Slot {
                table: Arc::clone(&self.table),
                closed: Arc::clone(&self.closed),
                id: conn.id,
            },
        };
        let service = Service {
            app: self.app.clone(),
            peer,
            conn: Arc::clone(&conn.state),
            started: self.started,
        };
        self.tasks.spawn(serve_one(
            io,
            service,
            conn.state,
            self.header_timeout,
            self.shutdown.clone(),
        ));
    }

    fn refuse(&self, stream: TcpStream, refusal: Refusal) {
        self.metrics
            .sockets_refused
            .get_or_create(&ReasonLabels {
                reason: refusal.name(),
            })
            .inc();
        refuse(stream, refusal);
    }
}

/// One of the [`MAX_CLOSING`] places for an admission waiting beside the accept loop: a
/// close frees one place, and at most that many sockets are closing, so more waiters could
/// not all be admitted anyway.
struct WaitingAdmission(Arc<Acceptor>);

impl WaitingAdmission {
    fn take(acceptor: &Arc<Acceptor>) -> Option<WaitingAdmission> {
        acceptor
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CLOSING).then_some(n + 1)
            })
            .ok()
            .map(|_| WaitingAdmission(Arc::clone(acceptor)))
    }

    async fn admit(self, stream: TcpStream, peer: SocketAddr) {
        self.0.admit_once_closed(stream, peer).await;
    }
}

impl Drop for WaitingAdmission {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Admits a connection, waiting (bounded by `wait`) while the only thing in its way
/// is evicted sockets still being closed: refusing then would turn away a client whose place
/// is about to be free.
async fn admit(
    table: &Mutex<Table>,
    closed: &Notify,
    ip: IpAddr,
    started: Instant,
    wait: Duration,
) -> Result<Admitted, Refusal> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let admitted = lock(table).admit(ip, millis(started));
        match admitted {
            Err(Refusal::Closing) => {
                // A close between the check and this wait leaves a permit: no wake-up is lost.
                if tokio::time::timeout_at(deadline, closed.notified())
                    .await
                    .is_err()
                {
                    return Err(Refusal::Closing);
                }
            }
            other => return other,
        }
    }
}

async fn serve_one(
    io: TrackedIo,
    service: Service,
    state: Arc<ConnState>,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            // Dropping the connection closes its socket at once.
            _ = state.evict.cancelled() => return,
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Answers a connection that cannot be admitted: one best-effort write into the fresh
/// socket's empty send buffer, then close. What the client has already sent is read first
/// (bounded, without waiting): closing a socket with unread bytes makes the kernel reset it,
/// and the client would see the reset instead of the `503`.
fn refuse(stream: TcpStream, why: Refusal) {
    let message = match why {
        Refusal::PerIp => "too many connections from this address",
        Refusal::Full | Refusal::Closing => "this node is at its connection limit; retry shortly",
    };
    let mut scratch = [0u8; 4096];
    for _ in 0..REFUSE_DRAIN_READS {
        match stream.try_read(&mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let body = format!(r#"{{"error":{{"code":"unavailable","message":"{message}"}}}}"#);
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// Kernel send buffer per connection. Fixed rather than auto-tuned: it bounds the memory a
/// client that stops reading can pin in the kernel, and makes such a client fill its send
/// queue (and get 1013) after a predictable amount of data. Events are small frames.
const SOCKET_SEND_BUFFER: usize = 64 * 1024;

fn tune_socket(tcp: &TcpStream) {
    // Events are small and latency matters more than packet count.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    if let Err(e) = socket2::SockRef::from(tcp).set_send_buffer_size(SOCKET_SEND_BUFFER) {
        tracing::debug!(error = %e, "could not set the socket send buffer");
    }
}

fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // The table's maps stay consistent whatever panicked while holding the lock.
    crate::sync::lock(table)
}

/// The hyper service of one connection: the router, with the peer address for handlers and
/// the connection's state kept up to date (busy while a request is in flight, upgraded after
/// a `101`), which is what eviction looks at.
#[derive(Clone)]
struct Service {
    app: Router,
    peer: SocketAddr,
    conn: Arc<ConnState>,
    started: Instant,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let busy = Busy::begin(Arc::clone(&self.conn), self.started);
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let app = self.app.clone();
        Box::pin(async move {
            let response = match app.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                busy.upgraded();
            }
            Ok(response)
        })
    }
}

/// A request in flight on a connection; the connection is idle again when it is dropped
/// (answered, or abandoned with the connection).
struct Busy {
    conn: Arc<ConnState>,
    started: Instant,
}

impl Busy {
    fn begin(conn: Arc<ConnState>, started: Instant) -> Busy {
        conn.set(State::Busy);
        Busy { conn, started }
    }

    fn upgraded(self) {
        self.conn.set(State::Upgraded);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.conn.state() == State::Busy {
            self.conn
                .idle_since
                .store(millis(self.started), Ordering::Relaxed);
            self.conn.set(State::Idle);
        }
    }
}

/// A client socket holding its place in the [`Table`] until it is dropped.
struct TrackedIo {
    inner: TcpStream,
    _slot: Slot,
}

struct Slot {
    table: Arc<Mutex<Table>>,
    /// Told when an evicted socket closes, for an admission waiting on it.
    closed: Arc<Notify>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let was_closing = lock(&self.table).remove(self.id);
        if was_closing {
            self.closed.notify_one();
        }
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum State {
    /// Waiting for a request (the first one too).
    Idle = 0,
    Busy = 1,
    /// Handed to a WebSocket: never evicted, its handler bounds it.
    Upgraded = 2,
}

/// What the listener, the connection's task and its service share about one connection.
#[derive(Debug)]
struct ConnState {
    state: AtomicU8,
    /// Milliseconds since the listener started at which it last became idle.
    idle_since: AtomicU64,
    /// Cancelled to close the connection at once.
    evict: CancellationToken,
}

impl ConnState {
    fn new(now_ms: u64) -> ConnState {
        ConnState {
            state: AtomicU8::new(State::Idle as u8),
            idle_since: AtomicU64::new(now_ms),
            evict: CancellationToken::new(),
        }
    }

    fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Idle,
            1 => State::Busy,
            _ => State::Upgraded,
        }
    }

    fn set(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerIp,
    /// Every place is taken by a connection that is busy or upgraded.
    Full,
    /// Every place is taken and [`MAX_CLOSING`] evicted sockets are still being closed.
    Closing,
}

impl Refusal {
    fn name(self) -> &'static str {
        match self {
            Refusal::PerIp => "per_ip",
            Refusal::Full => "full",
            Refusal::Closing => "closing",
        }
    }
}

/// An admitted connection: its id and state, and the idle connection it displaced, if any.
struct Admitted {
    id: u64,
    state: Arc<ConnState>,
    evicted: Option<Arc<ConnState>>,
}

struct Entry {
    ip: IpAddr,
    state: Arc<ConnState>,
    /// Evicted: its socket is being closed and no longer counts for its address or the
    /// limit, only against [`MAX_CLOSING`].
    closing: bool,
}

/// Open sockets by id and by client address. Eviction scans the open sockets, which only
/// happens when every place is taken.
struct Table {
    max: usize,
    per_ip: usize,
    next_id: u64,
    open: HashMap<u64, Entry>,
    by_ip: HashMap<IpAddr, usize>,
    /// Entries of `open` that are closing.
    closing: usize,
}

impl Table {
    fn new(max: usize, per_ip: usize) -> Table {
        Table {
            max: max.max(1),
            per_ip: per_ip.max(1),
            next_id: 0,
            open: HashMap::new(),
            by_ip: HashMap::new(),
            closing: 0,
        }
    }

    /// Sockets that count against the limit.
    fn live(&self) -> usize {
        self.open.len() - self.closing
    }

    fn admit(&mut self, ip: IpAddr, now_ms: u64) -> Result<Admitted, Refusal> {
        let ip = client_key(ip);
        if self.by_ip.get(&ip).copied().unwrap_or(0) >= self.per_ip {
            return Err(Refusal::PerIp);
        }
        let mut evicted = None;
        if self.live() >= self.max {
            if self.closing >= MAX_CLOSING {
                return Err(Refusal::Closing);
            }
            let victim = self
                .open
                .iter_mut()
                .filter(|(_, e)| !e.closing && e.state.state() == State::Idle)
                .min_by_key(|(id, e)| (e.state.idle_since.load(Ordering::Relaxed), **id))
                .map(|(_, e)| e)
                .ok_or(Refusal::Full)?;
            victim.closing = true;
            evicted = Some(Arc::clone(&victim.state));
            let ip = victim.ip;
            self.closing += 1;
            self.release_ip(ip);
        }
        self.next_id += 1;
        let id = self.next_id;
        let state = Arc::new(ConnState::new(now_ms));
        self.open.insert(
            id,
            Entry {
                ip,
                state: Arc::clone(&state),
                closing: false,
            },
        );
        *self.by_ip.entry(ip).or_default() += 1;
        Ok(Admitted { id, state, evicted })
    }

    fn release_ip(&mut self, ip: IpAddr) {
        if let Some(n) = self.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }

    /// Forgets a closed connection; says whether it was an evicted one being closed.
    fn remove(&mut self, id: u64) -> bool {
        let Some(entry) = self.open.remove(&id) else {
            return false;
        };
        if entry.closing {
            self.closing -= 1;
        } else {
            self.release_ip(entry.ip);
        }
        entry.closing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn an_address_gets_at_most_its_share() {
        let mut t = Table::new(10, 2);
        assert!(t.admit(ip(1), 0).is_ok());
        let second = t.admit(ip(1), 0).unwrap();
        assert_eq!(t.admit(ip(1), 0).err(), Some(Refusal::PerIp));
        assert!(
            t.admit(ip(2), 0).is_ok(),
            "other addresses are not affected"
        );
        t.remove(second.id);
        assert!(t.admit(ip(1), 0).is_ok(), "a closed socket frees its place");
    }

    #[test]
    fn ipv6_addresses_count_per_64_block() {
        let mut t = Table::new(10, 1);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let c: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(t.admit(a, 0).is_ok());
        assert_eq!(t.admit(b, 0).err(), Some(Refusal::PerIp));
        assert!(t.admit(c, 0).is_ok());
    }

    #[test]
    fn when_full_the_longest_idle_connection_makes_room() {
        let mut t = Table::new(3, 10);
        let old = t.admit(ip(1), 10).unwrap();
        let busy = t.admit(ip(2), 5).unwrap();
        busy.state.set(State::Busy);
        let newer = t.admit(ip(3), 20).unwrap();
        let next = t.admit(ip(4), 30).unwrap();
        let victim = next.evicted.expect("someone idle makes room");
        assert!(Arc::ptr_eq(&victim, &old.state), "the one idle longest");
        assert_eq!((t.live(), t.closing), (3, 1));
        assert_eq!(t.by_ip.get(&ip(1)), None);
        // Nobody idle: refused.
        newer.state.set(State::Upgraded);
        next.state.set(State::Busy);
        assert_eq!(t.admit(ip(5), 40).err(), Some(Refusal::Full));
        // The evicted socket is gone once its task drops it; twice changes nothing.
        assert!(t.remove(old.id));
        assert!(!t.remove(old.id));
        assert_eq!((t.live(), t.closing, t.open.len()), (3, 0, 3));
    }

    #[test]
    fn sockets_being_closed_are_bounded_too() {
        let mut t = Table::new(1, 10);
        let mut evicted = Vec::new();
        let mut first = t.admit(ip(1), 0).unwrap();
        for i in 0..MAX_CLOSING {
            let next = t.admit(ip(2), i as u64 + 1).unwrap();
            assert!(next.evicted.is_some());
            evicted.push(first.id);
            first = next;
        }
        assert_eq!(t.admit(ip(3), 99).err(), Some(Refusal::Closing));
        assert!(t.remove(evicted[0]), "an evicted socket closed");
        assert!(t.admit(ip(3), 100).is_ok(), "room once one has closed");
    }

    /// Takes a one-place table's place and evicts its holder [`MAX_CLOSING`] times, leaving
    /// that many evicted sockets that never close by themselves (nothing drops their slots);
    /// their ids.
    fn fill_with_closing(table: &Mutex<Table>) -> Vec<u64> {
        let mut evicted = Vec::new();
        let mut current = lock(table).admit(ip(1), 0).unwrap();
        for _ in 0..MAX_CLOSING {
            let next = lock(table).admit(ip(2), 1).unwrap();
            evicted.push(current.id);
            current = next;
        }
        evicted
    }

    /// An admission blocked only by sockets still closing waits for one to close, and is
    /// refused once the wait is over.
    #[tokio::test(start_paused = true)]
    async fn an_admission_waits_for_an_evicted_socket_to_close() {
        let table = Arc::new(Mutex::new(Table::new(1, 10)));
        let closed = Arc::new(Notify::new());
        let started = Instant::now();
        let evicted = fill_with_closing(&table);
        let waiting = tokio::spawn({
            let (table, closed) = (Arc::clone(&table), Arc::clone(&closed));
            async move {
                admit(&table, &closed, ip(3), started, CLOSING_WAIT)
                    .await
                    .is_ok()
            }
        });
        tokio::time::sleep(CLOSING_WAIT / 2).await;
        assert!(!waiting.is_finished(), "it waits while sockets are closing");
        drop(Slot {
            table: Arc::clone(&table),
            closed: Arc::clone(&closed),
            id: evicted[0],
        });
        assert!(waiting.await.unwrap(), "admitted once one has closed");
        // Nothing closes now: refused after the wait.
        let refused = admit(&table, &closed, ip(4), started, CLOSING_WAIT).await;
        assert_eq!(refused.err(), Some(Refusal::Closing));
    }

    /// A connection waiting for an evicted socket to close waits beside the accept loop, up to
    /// [`MAX_CLOSING`] of them; the one past those places is not refused: the loop itself
    /// waits with it (later arrivals queue in the backlog). A close serves one of them.
    #[tokio::test]
    async fn a_waiting_admission_does_not_hold_up_the_accept_loop() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let table = Arc::new(Mutex::new(Table::new(1, 64)));
        let closed = Arc::new(Notify::new());
        let evicted = fill_with_closing(&table);
        let listener = bind("127.0.0.1:0".parse().unwrap(), 64).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let acceptor = Arc::new(Acceptor {
            table: Arc::clone(&table),
            closed: Arc::clone(&closed),
            started: Instant::now(),
            app: Router::new().route("/health", axum::routing::get(|| async { "ok" })),
            header_timeout: Duration::from_secs(60),
            metrics: Arc::new(Metrics::new()),
            tasks: TaskTracker::new(),
            waiting: AtomicUsize::new(0),
            // Longer than the test: a waiter is admitted by a close, never by its deadline.
            closing_wait: Duration::from_secs(3600),
            shutdown: shutdown.clone(),
        });
        let accepting = tokio::spawn(Arc::clone(&acceptor).accept_loop(listener));

        let request = b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n";
        let mut waiters = Vec::new();
        for _ in 0..MAX_CLOSING {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(request).await.unwrap();
            waiters.push(c);
        }
        // Each waits beside the loop: the loop took every one of them (bounded, so a loop
        // stuck behind a waiter fails the test instead of hanging it).
        tokio::time::timeout(Duration::from_secs(60), async {
            while acceptor.waiting.load(Ordering::Acquire) < MAX_CLOSING {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("every waiter is taken by the loop while the others wait");
        // Past the waiting places: not refused, it waits too.
        let mut past = TcpStream::connect(addr).await.unwrap();
        past.write_all(request).await.unwrap();
        let mut buf = [0u8; 512];
        assert!(
            tokio::time::timeout(Duration::from_millis(500), past.read(&mut buf))
                .await
                .is_err(),
            "the connection past the waiting places is not answered before a socket closes"
        );
        waiters.push(past);

        // A socket closes: one of them takes the place and is served.
        drop(Slot {
            table: Arc::clone(&table),
            closed: Arc::clone(&closed),
            id: evicted[0],
        });
        let reads = waiters.iter_mut().map(|c| {
            Box::pin(async move {
                let mut buf = [0u8; 512];
                let n = c.read(&mut buf).await.unwrap();
                String::from_utf8_lossy(&buf[..n]).into_owned()
            })
        });
        let (served, _, _) = tokio::time::timeout(
            Duration::from_secs(60),
            futures_util::future::select_all(reads),
        )
        .await
        .expect("a waiter is served once a socket closes");
        assert!(served.starts_with("HTTP/1.1 200"), "{served}");

        // Shutdown ends the waits too, the loop's own included: the loop's drain does not sit
        // out their deadlines.
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), accepting)
            .await
            .expect("the loop ends at shutdown")
            .unwrap();
        assert_eq!(acceptor.waiting.load(Ordering::Acquire), 0);
    }

    /// The backlog is what the kernel queues: with nobody accepting, `backlog + 1` handshakes
    /// complete (Linux admits while the queue is not above the backlog) and the next SYN is
    /// dropped, so that connect is still pending after its peers are all established.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_accept_queue_holds_the_configured_backlog() {
        for backlog in [2_u32, 5] {
            let listener = bind("127.0.0.1:0".parse().unwrap(), backlog).unwrap();
            let addr = listener.local_addr().unwrap();
            let mut queued = Vec::new();
            for _ in 0..=backlog {
                let connect = TcpStream::connect(addr);
                queued.push(
                    tokio::time::timeout(Duration::from_secs(5), connect)
                        .await
                        .expect("a connection within the backlog is established")
                        .unwrap(),
                );
            }
            let beyond = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr));
            assert!(
                beyond.await.is_err(),
                "connection {} was queued past a backlog of {backlog}",
                backlog + 2
            );
            // Accepting one makes room again.
            let (first, _) = listener.accept().await.unwrap();
            drop(first);
        }
    }

    #[test]
    fn limits_fit_the_open_file_limit() {
        let none = RequestedLimits::default();
        let small = ConnectionLimits::derive(256, none);
        assert_eq!(small.sockets, 256 - 64 - 16);
        assert!(small.websockets < small.sockets);
        assert!(small.per_ip <= small.sockets / 4);
        let big = ConnectionLimits::derive(20_000, none);
        assert!(big.sockets < 20_000 && big.sockets > 18_000, "{big:?}");
        assert_eq!(big.per_ip, DEFAULT_PER_IP);
        // Asking for more WebSockets than descriptors allow is lowered, and said so.
        let asked = RequestedLimits {
            websockets: Some(50_000),
            ..none
        };
        let lowered = ConnectionLimits::derive(20_000, asked);
        assert_eq!(lowered.websockets, big.websockets);
        assert!(lowered.lowered(asked));
        let modest = RequestedLimits {
            websockets: Some(100),
            per_ip: Some(5),
            per_user: Some(3),
        };
        let kept = ConnectionLimits::derive(20_000, modest);
        assert_eq!((kept.websockets, kept.per_ip, kept.per_user), (100, 5, 3));
        assert!(!kept.lowered(modest));
        // Even a tiny limit leaves one of each.
        let tiny = ConnectionLimits::derive(10, none);
        assert!(tiny.sockets >= 1 && tiny.websockets >= 1 && tiny.per_ip >= 1);
    }
}
