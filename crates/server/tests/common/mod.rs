//! Test harness: starts the real `apogee` binary on port 0 with its own data directory and
//! talks to it over loopback with a real WebSocket client and plain HTTP/1.1.

#![allow(dead_code)]

pub mod fd_limit;
pub mod in_process;
pub mod oidc;
pub mod services;
pub mod tracker;

#[allow(unused_imports)]
pub use tracker::*;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for any single wait in a test; tests never loop unbounded.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_apogee")
}

/// The log filter of every `apogee` a test starts: warnings, without the demo-auth warning
/// each demo server gives once (dozens of servers per run would fill the output with it).
pub const TEST_LOG: &str = "warn,apogee_server::demo_auth=off";

/// Variables a spawned `apogee` keeps from the test's environment: none that changes what it
/// does (`RUST_LOG` and `RUST_BACKTRACE` only shape its stderr).
const INHERITED_ENV: [&str; 2] = ["RUST_LOG", "RUST_BACKTRACE"];

/// `apogee` with a clean environment: an exported `APOGEE_DATABASE_URL`, `APOGEE_AUTH` or
/// `APOGEE_REDIS_URL` in the shell running the tests must not change what a test exercises
/// (or touch a real database). The test adds what it means to set; logs default to
/// [`TEST_LOG`].
pub fn apogee() -> Command {
    let mut cmd = Command::new(binary());
    cmd.env_clear().env("RUST_LOG", TEST_LOG);
    for var in INHERITED_ENV {
        if let Ok(value) = std::env::var(var) {
            cmd.env(var, value);
        }
    }
    cmd
}

/// Runs `apogee demo-data` into `dir` with a small dataset.
pub async fn load_demo_data(dir: &Path, calls: u64) {
    load_demo_data_with(dir, calls, &[]).await
}

/// [`load_demo_data`] with extra environment (e.g. `APOGEE_DATABASE_URL`).
pub async fn load_demo_data_with(dir: &Path, calls: u64, env: &[(&str, &str)]) {
    let out = apogee()
        .args([
            "demo-data",
            "--calls",
            &calls.to_string(),
            "--days",
            "30",
            "--seed",
            "1",
        ])
        .env("APOGEE_DATA_DIR", dir)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run demo-data");
    assert!(
        out.status.success(),
        "demo-data failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Server {
    pub addr: String,
    pub dir: PathBuf,
    child: Child,
    /// The fake LLM the server plans with, when the test process runs with the LLM planner on
    /// ([`LLM_SWITCH`]).
    pub llm: Option<apogee_llm::fake::FakeLlm>,
}

/// `APOGEE_TEST_LLM=fake` in the test process's environment: every server [`Server::start`]
/// starts (unless the test configures an LLM itself) plans with the LLM planner over a fake
/// OpenAI-compatible server on loopback scripted as an analyst
/// (`apogee_llm::fake::analyst`). `scripts/test` runs the mission-critical suite both ways.
pub const LLM_SWITCH: &str = "APOGEE_TEST_LLM";

/// The model name servers are configured with against a fake LLM: a catalog model, so its
/// recorded usage is priced.
pub const FAKE_LLM_MODEL: &str = "gpt-4o-mini";

/// What a stalling model says before it stops answering (see [`stalling_reply`]).
pub const STALLED_THOUGHT: &str = "Let me think about this question carefully first.";

/// A model reply that starts streaming and then never finishes: the run that asked stays in
/// the planner until it is cancelled or the model times out.
pub fn stalling_reply() -> apogee_llm::fake::Reply {
    use apogee_llm::fake::{Part, Reply};
    Reply::Stream(vec![
        Part::Text(format!("{STALLED_THOUGHT}\n")),
        Part::Stall,
    ])
}

/// Reads `c`'s events (at most 100) until the stalling model's thought arrives; returns them.
pub async fn until_the_model_stalls(c: &mut Client) -> Vec<Value> {
    let mut events = Vec::new();
    for _ in 0..100 {
        let v = c.next().await.unwrap();
        let stalled = v["type"] == "agent_thinking"
            && v["text"]
                .as_str()
                .is_some_and(|t| t.starts_with(STALLED_THOUGHT));
        events.push(v);
        if stalled {
            return events;
        }
    }
    panic!("the model never started its reply: {events:?}");
}

impl Server {
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = apogee();
        cmd.arg("serve")
            .env("APOGEE_ADDR", "127.0.0.1:0")
            .env("APOGEE_DATA_DIR", dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let llm = match std::env::var(LLM_SWITCH).as_deref() {
            Ok("fake") if !env.iter().any(|(k, _)| *k == "APOGEE_LLM_BASE_URL") => {
                let fake = apogee_llm::fake::FakeLlm::start(apogee_llm::fake::analyst).await;
                cmd.env("APOGEE_LLM_BASE_URL", &fake.base_url)
                    .env("APOGEE_LLM_MODEL", FAKE_LLM_MODEL);
                Some(fake)
            }
            Ok("fake") | Err(_) => None,
            Ok(other) => panic!("{LLM_SWITCH}={other}: only `fake` is known"),
        };
        let mut server = Server::spawn(cmd, dir).await;
        server.llm = llm;
        server
    }

    /// Spawns `cmd` (an `apogee serve` with stdout piped) and waits for its listening line.
    pub(crate) async fn spawn(mut cmd: Command, dir: &Path) -> Server {
        let mut child = cmd.spawn().expect("spawn apogee serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("server printed nothing in time")
            .expect("read stdout")
            .expect("server exited before listening");
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        Server {
            addr,
            dir: dir.to_path_buf(),
            child,
            llm: None,
        }
    }

    /// Freezes the process at once (SIGSTOP), then kills it (SIGKILL): a crash at an exact
    /// point, with nothing flushed or closed after it.
    pub async fn crash(mut self) {
        let pid = self.child.id().expect("pid").to_string();
        for sig in ["-STOP", "-KILL"] {
            let status = std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap();
            assert!(status.success());
        }
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exit in time")
            .unwrap();
    }

    /// Sends SIGTERM without waiting.
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("pid").to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits for the process to exit.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exit in time")
            .unwrap()
    }

    /// SIGTERM, then the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exit in time")
            .unwrap()
    }

    pub async fn ws(&self, query: &str) -> Client {
        Client::connect(&self.addr, query, &[])
            .await
            .expect("connect")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join("apogee.db")
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
}

impl Client {
    pub async fn connect(
        addr: &str,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut req = format!("ws://{addr}/ws{query}").into_client_request()?;
        for (k, v) in headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            req.headers_mut().insert(name, v.parse().unwrap());
        }
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("handshake in time")?;
        Ok(Client { ws })
    }

    /// Connects over a socket with a tiny receive buffer, so a client that stops reading
    /// backs up into the server quickly.
    pub async fn connect_small_buffer(addr: &str, query: &str) -> Client {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let stream = sock.connect(addr.parse().unwrap()).await.unwrap();
        let req = format!("ws://{addr}/ws{query}")
            .into_client_request()
            .unwrap();
        let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
        Client { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws
            .send(Message::Text(t.to_string().into()))
            .await
            .unwrap();
    }

    /// The next JSON frame (skipping pings), or `None` on close. Pings do not extend the
    /// wait: a server that only pings fails the test in [`WAIT`] instead of hanging it.
    pub async fn next(&mut self) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("frame in time")?;
            match msg {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(t.as_str()).expect("JSON frame"));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next JSON frame, or `Err(close code)` when the server closes (within [`WAIT`]).
    pub async fn ws_next_or_close(&mut self) -> Result<Value, Option<u16>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("frame in time");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Ok(serde_json::from_str(t.as_str()).expect("JSON frame"));
                }
                Some(Ok(Message::Close(Some(f)))) => return Err(Some(f.code.into())),
                Some(Ok(Message::Close(None))) | Some(Err(_)) | None => return Err(None),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The close code the server sent, reading past other frames.
    pub async fn close_code(&mut self) -> Option<u16> {
        for _ in 0..10_000 {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("frame in time")?;
            match msg {
                Ok(Message::Close(Some(f))) => return Some(f.code.into()),
                Ok(Message::Close(None)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
        None
    }

    pub async fn ready(&mut self) -> Value {
        let v = self.next().await.expect("connection_ready");
        assert_eq!(v["type"], "connection_ready", "{v}");
        v
    }

    pub async fn ask(&mut self, client_msg_id: &str, content: &str, thread_id: Option<&str>) {
        self.send(json!({"type":"user_message","client_msg_id":client_msg_id,"content":content,"thread_id":thread_id})).await;
    }

    /// Frames until (and including) the supervisor's `agent_completed` of `run_id`.
    pub async fn until_run_end(&mut self, run_id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let v = self.next().await.expect("stream ended before the run did");
            let end = v["type"] == "agent_completed"
                && v["agent"] == "supervisor"
                && v["run_id"] == run_id;
            out.push(v);
            if end {
                return out;
            }
        }
        panic!("run {run_id} did not end within 10000 frames");
    }
}

/// A counter or gauge of the server's `/metrics` (0 when absent).
pub async fn metric(server: &Server, name: &str) -> u64 {
    let (status, text) = http(&server.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Minimal HTTP/1.1 request over loopback; returns (status, body).
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let (status, _, body) = http_full(addr, method, path, headers, body).await;
    (status, body)
}

/// Like [`http`], also returning the response head (status line and headers) as text.
pub async fn http_full(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// `POST /api/ws-ticket` with a Bearer token; the answer must be 200.
pub async fn ws_ticket(addr: &str, token: &str) -> Value {
    let auth = format!("Bearer {token}");
    let (status, body) = http(
        addr,
        "POST",
        "/api/ws-ticket",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

pub async fn get_json(addr: &str, path: &str, user: &str) -> (u16, Value) {
    let (status, body) = http(addr, "GET", path, &[("X-Apogee-User", user)], b"").await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Path of a file under `tests/fixtures`.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A signed JWT; `kid` goes into the header when given.
pub fn jwt(
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    key: &jsonwebtoken::EncodingKey,
    claims: &Value,
) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).expect("encode JWT")
}

pub fn hs256(secret: &str, claims: &Value) -> String {
    jwt(
        jsonwebtoken::Algorithm::HS256,
        None,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        claims,
    )
}

/// How a WebSocket handshake was answered: 101, or the HTTP refusal.
pub struct Handshake {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
    pub client: Option<Client>,
}

pub async fn handshake(addr: &str, query: &str, headers: &[(&str, &str)]) -> Handshake {
    match Client::connect(addr, query, headers).await {
        Ok(c) => Handshake {
            status: 101,
            retry_after: None,
            body: String::new(),
            client: Some(c),
        },
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Handshake {
            status: resp.status().as_u16(),
            retry_after: resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default(),
            client: None,
        },
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

/// The handshake's status with a Bearer token (or none).
pub async fn bearer_status(addr: &str, query: &str, token: Option<&str>) -> u16 {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let h = handshake(addr, query, &headers).await;
    if h.status == 401 {
        assert!(h.body.contains("\"unauthorized\""), "{}", h.body);
    }
    h.status
}
