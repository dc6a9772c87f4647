//! A fake OpenAI-compatible server for tests: a real HTTP/1.1 server on loopback answering
//! `POST …/chat/completions` with server-sent events, as a script decides per request. It
//! stands in for the one part that cannot run here, a hosted model. Replies can stream text
//! and tool calls in pieces, answer an HTTP error (429 with `Retry-After`), stall, hang, or
//! cut the stream mid-way; the server records every request and every connection the client
//! dropped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// 0 for the first request the fake got, then 1, 2, …
    pub index: usize,
    pub body: Value,
    pub authorization: Option<String>,
}

impl Request {
    pub fn messages(&self) -> &[Value] {
        self.body["messages"].as_array().map_or(&[], Vec::as_slice)
    }

    /// The contents of the messages of `role`, in order.
    pub fn contents(&self, role: &str) -> Vec<&str> {
        self.messages()
            .iter()
            .filter(|m| m["role"] == role)
            .filter_map(|m| m["content"].as_str())
            .collect()
    }

    /// The last user message.
    pub fn question(&self) -> &str {
        self.contents("user").last().copied().unwrap_or("")
    }

    /// The tool results sent back so far, parsed (text that is not JSON as a string).
    pub fn tool_results(&self) -> Vec<Value> {
        self.contents("tool")
            .into_iter()
            .map(|c| serde_json::from_str(c).unwrap_or_else(|_| json!(c)))
            .collect()
    }

    pub fn tool_names(&self) -> Vec<String> {
        self.body["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One piece of a streamed reply.
#[derive(Debug, Clone)]
pub enum Part {
    Text(String),
    /// A tool call, its arguments sent in two pieces.
    Call {
        name: String,
        arguments: String,
    },
    Usage {
        prompt: u64,
        completion: u64,
    },
    Finish(&'static str),
    /// `data: [DONE]`.
    Done,
    /// A raw `data:` line (e.g. not JSON).
    Raw(String),
    Pause(Duration),
    /// Sends nothing more and keeps the connection open until the client drops it.
    Stall,
}

/// What the fake answers one request with.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with an event stream of these parts; the connection closes after the last (without
    /// [`Part::Done`] and [`Part::Finish`] that is a stream cut mid-way).
    Stream(Vec<Part>),
    /// An error status with a JSON error body.
    Status {
        status: u16,
        retry_after: Option<u64>,
        message: String,
    },
    /// Reads the request and never answers.
    Hang,
}

impl Reply {
    /// Streams `text` in pieces of a few words, then usage, `stop` and `[DONE]`.
    pub fn text(text: &str) -> Reply {
        let mut parts: Vec<Part> = pieces(text).into_iter().map(Part::Text).collect();
        parts.extend([
            Part::Usage {
                prompt: 900,
                completion: 60,
            },
            Part::Finish("stop"),
            Part::Done,
        ]);
        Reply::Stream(parts)
    }

    /// Streams a short thought, then calls `calls` (name, arguments).
    pub fn calls(thought: &str, calls: &[(&str, Value)]) -> Reply {
        let mut parts: Vec<Part> = pieces(thought).into_iter().map(Part::Text).collect();
        parts.extend(calls.iter().map(|(name, args)| Part::Call {
            name: name.to_string(),
            arguments: args.to_string(),
        }));
        parts.extend([
            Part::Usage {
                prompt: 800,
                completion: 40,
            },
            Part::Finish("tool_calls"),
            Part::Done,
        ]);
        Reply::Stream(parts)
    }

    pub fn status(status: u16, message: &str) -> Reply {
        Reply::Status {
            status,
            retry_after: None,
            message: message.into(),
        }
    }
}

/// `text` in pieces of three words (the spaces kept), as a model streams it.
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut words = 0;
    for part in text.split_inclusive(' ') {
        current.push_str(part);
        words += 1;
        if words == 3 {
            out.push(std::mem::take(&mut current));
            words = 0;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

type Script = dyn Fn(&Request) -> Reply + Send + Sync;

struct State {
    script: Box<Script>,
    requests: Mutex<Vec<Request>>,
    /// Connections the client closed while the fake was still streaming or stalled.
    dropped: watch::Sender<usize>,
}

/// The running fake; stops accepting when dropped.
pub struct FakeLlm {
    /// The base URL to configure (`http://127.0.0.1:PORT/v1`).
    pub base_url: String,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FakeLlm {
    /// Starts the fake; `script` answers each request.
    pub async fn start(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeLlm {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake LLM on loopback");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(State {
            script: Box::new(script),
            requests: Mutex::new(Vec::new()),
            dropped: watch::channel(0).0,
        });
        let accepting = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let state = Arc::clone(&accepting);
                tokio::spawn(async move {
                    let _ = serve(socket, &state).await;
                });
            }
        });
        FakeLlm {
            base_url: format!("http://{addr}/v1"),
            state,
            accept,
        }
    }

    /// Answers the requests with `replies` in order; any request after them gets a 500.
    pub async fn scripted(replies: Vec<Reply>) -> FakeLlm {
        FakeLlm::start(move |r| {
            replies
                .get(r.index)
                .cloned()
                .unwrap_or_else(|| Reply::status(500, "the script has no more replies"))
        })
        .await
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many connections the client dropped mid-reply so far.
    pub fn dropped(&self) -> usize {
        *self.state.dropped.borrow()
    }

    /// Waits until the client has dropped `n` connections mid-reply; false after `within`.
    pub async fn wait_dropped(&self, n: usize, within: Duration) -> bool {
        let mut rx = self.state.dropped.subscribe();
        tokio::time::timeout(within, rx.wait_for(|d| *d >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Most bytes of a request's headers and body the fake reads.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

async fn serve(mut socket: TcpStream, state: &State) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Ok(());
        }
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut length = 0usize;
    let mut authorization = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length.min(MAX_BODY) {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let mut parts = request_line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "POST" || !path.ends_with("/chat/completions") {
        let text = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        return socket.write_all(text.as_bytes()).await;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("fake").to_string();
    let request = {
        let mut requests = state.requests.lock().unwrap_or_else(|e| e.into_inner());
        let r = Request {
            index: requests.len(),
            body,
            authorization,
        };
        requests.push(r.clone());
        r
    };
    match (state.script)(&request) {
        Reply::Status {
            status,
            retry_after,
            message,
        } => {
            let body = json!({"error": {"message": message, "type": "fake_error"}}).to_string();
            let retry = retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default();
            let text = format!(
                "HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\n{retry}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(text.as_bytes()).await
        }
        Reply::Hang => {
            wait_closed(&mut socket).await;
            Ok(())
        }
        Reply::Stream(parts) => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                state.dropped.send_modify(|d| *d += 1);
                return Ok(());
            }
            let mut calls = 0;
            for part in parts {
                let events = match part {
                    Part::Pause(d) => {
                        tokio::time::sleep(d).await;
                        continue;
                    }
                    Part::Stall => {
                        wait_closed(&mut socket).await;
                        state.dropped.send_modify(|d| *d += 1);
                        return Ok(());
                    }
                    Part::Done => vec!["[DONE]".to_string()],
                    Part::Raw(s) => vec![s],
                    Part::Text(t) => vec![chunk(&model, json!({"content": t}), None)],
                    Part::Finish(reason) => vec![chunk(&model, json!({}), Some(reason))],
                    Part::Usage { prompt, completion } => vec![
                        json!({
                            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                            "choices": [],
                            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
                        })
                        .to_string(),
                    ],
                    Part::Call { name, arguments } => {
                        let index = calls;
                        calls += 1;
                        let cut = arguments
                            .char_indices()
                            .nth(arguments.chars().count() / 2)
                            .map_or(0, |(i, _)| i);
                        vec![
                            chunk(
                                &model,
                                json!({"tool_calls": [{"index": index, "id": format!("call_fake_{}_{index}", request.index), "type": "function", "function": {"name": name, "arguments": &arguments[..cut]}}]}),
                                None,
                            ),
                            chunk(
                                &model,
                                json!({"tool_calls": [{"index": index, "function": {"arguments": &arguments[cut..]}}]}),
                                None,
                            ),
                        ]
                    }
                };
                for e in events {
                    if socket
                        .write_all(format!("data: {e}\n\n").as_bytes())
                        .await
                        .is_err()
                    {
                        state.dropped.send_modify(|d| *d += 1);
                        return Ok(());
                    }
                }
            }
            socket.shutdown().await
        }
    }
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
    .to_string()
}

/// Returns when the peer has closed the connection.
async fn wait_closed(socket: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    loop {
        match socket.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// A scripted analyst for suites that only need the planner on: it asks Apogee's
/// `plan_question` tool to read the question, measures the plan's scope and period with
/// `measure_usage`, and answers with the spend and calls that tool returned, so its answer
/// is grounded. Follows the result shapes of the agents crate's LLM tools.
pub fn analyst(request: &Request) -> Reply {
    let results = request.tool_results();
    match results.len() {
        0 => Reply::calls(
            "Let me read the question first.",
            &[("plan_question", json!({ "question": request.question() }))],
        ),
        1 => {
            let plan = &results[0]["plan"];
            Reply::calls(
                "Now measuring the spend of that scope and period.",
                &[(
                    "measure_usage",
                    json!({
                        "period": {"from": plan["period"]["from"], "to": plan["period"]["to"]},
                        "scope": plan.get("scope").cloned().unwrap_or(json!([])),
                    }),
                )],
            )
        }
        _ => {
            let plan = &results[0]["plan"];
            let totals = &results[results.len() - 1]["totals"];
            let cost = totals["cost_usd"].as_f64().unwrap_or(0.0);
            let calls = totals["calls"].as_i64().unwrap_or(0);
            let period = plan["period"]["text"].as_str().unwrap_or("the period");
            Reply::text(&format!(
                "Spend {period} was ${cost:.2} across {calls} calls."
            ))
        }
    }
}
