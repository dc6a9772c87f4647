//! The chat-completions client: one streamed call (`POST {base}/chat/completions` with
//! `stream: true`) at a time, retried when the server is unreachable, slow to answer, busy
//! (5xx) or rate limited (429, after its `Retry-After` when that is short enough), and read
//! as a [`ChatStream`] of text pieces ending in the [`Completion`]. Every wait is bounded:
//! the connection, the whole call, the silence within the stream, the bytes of the reply.
//! Dropping the stream (or the future of [`LlmClient::stream`]) drops the connection at once,
//! which is how a cancelled run stops the model. The node holds at most
//! [`LlmConfig::max_concurrent_calls`] calls open at once, across every run; a call that finds
//! none free within [`LlmConfig::queue_wait`] fails as [`LlmError::Busy`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use url::Url;

use crate::config::LlmConfig;
use crate::sse::SseDecoder;
use crate::wire::{ChatRequest, Chunk, ErrorBody, Message, StreamOptions, Tool, ToolCall, Usage};

/// Most text plus tool-call arguments one reply may stream.
pub const MAX_REPLY_BYTES: usize = 256 * 1024;
/// Most tool calls one reply may make.
pub const MAX_TOOL_CALLS: usize = 16;
/// Most of an error body kept for the message.
const MAX_ERROR_BYTES: usize = 4 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("could not reach the LLM: {0}")]
    Connect(String),
    #[error("the LLM answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the LLM is rate limited (HTTP 429{})", retry_after.map(|d| format!(", retry after {} s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("the LLM did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the LLM's reply broke off: {0}")]
    Cut(String),
    #[error("the LLM's reply is malformed: {0}")]
    Malformed(String),
    /// Every one of the node's places for model calls stayed taken for the queue wait.
    #[error("this node's LLM calls are at their limit ({limit} at once)")]
    Busy { limit: usize },
}

impl LlmError {
    /// Worth another try of the same call.
    fn retryable(&self) -> bool {
        match self {
            LlmError::Connect(_) | LlmError::Timeout(_) | LlmError::RateLimited { .. } => true,
            LlmError::Status { status, .. } => *status >= 500,
            // Waiting longer for a place is the queue wait's job, not a retry's.
            LlmError::Cut(_) | LlmError::Malformed(_) | LlmError::Busy { .. } => false,
        }
    }
}

/// A finished reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
    /// As the server reported it (`stream_options.include_usage`); `None` when it did not.
    pub usage: Option<Usage>,
    /// The model that answered, as the server named it.
    pub model: Option<String>,
}

/// What [`ChatStream::next`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// A piece of the reply's text, as it arrives.
    Text(String),
    /// The reply is complete.
    Done(Completion),
}

/// The client of one configured endpoint. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: Url,
    config: LlmConfig,
    /// One permit per call open (from the request to the end of its [`ChatStream`]).
    places: Arc<Semaphore>,
    requests: AtomicU64,
    failed: AtomicU64,
    busy: AtomicU64,
}

/// What the client has done since start, for the node's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlmStats {
    /// Calls holding a place now (waiting for the reply, streaming it, or waiting to retry).
    pub calls_open: u64,
    /// HTTP requests sent to the model, retries included.
    pub requests: u64,
    /// Requests that failed (unreachable, timed out, an error status, rate limited).
    pub failed: u64,
    /// Calls refused because every place stayed taken for the queue wait.
    pub busy: u64,
}

impl LlmClient {
    pub fn new(config: LlmConfig) -> Result<LlmClient, LlmError> {
        let mut base = config.base_url.as_str().trim_end_matches('/').to_string();
        base.push_str("/chat/completions");
        let endpoint = Url::parse(&base).map_err(|e| LlmError::Connect(e.to_string()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| LlmError::Connect(e.to_string()))?;
        let places = Arc::new(Semaphore::new(config.max_concurrent_calls.max(1)));
        Ok(LlmClient {
            http,
            endpoint,
            config,
            places,
            requests: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            busy: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Calls open now (waiting for their reply or streaming it).
    pub fn calls_open(&self) -> usize {
        self.config
            .max_concurrent_calls
            .max(1)
            .saturating_sub(self.places.available_permits())
    }

    pub fn stats(&self) -> LlmStats {
        LlmStats {
            calls_open: self.calls_open() as u64,
            requests: self.requests.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
        }
    }

    /// A place for one call, waiting at most the queue wait.
    async fn place(&self) -> Result<OwnedSemaphorePermit, LlmError> {
        let busy = LlmError::Busy {
            limit: self.config.max_concurrent_calls,
        };
        match tokio::time::timeout(
            self.config.queue_wait,
            Arc::clone(&self.places).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a closed one means no place either.
            Ok(Err(_)) | Err(_) => {
                self.busy.fetch_add(1, Ordering::Relaxed);
                Err(busy)
            }
        }
    }

    /// Starts one streamed call, retrying as the module doc says.
    pub async fn stream(
        &self,
        messages: &[Message],
        tools: &[Tool],
    ) -> Result<ChatStream, LlmError> {
        let body = serde_json::to_vec(&ChatRequest {
            model: &self.config.model,
            messages,
            tools,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            max_tokens: self.config.max_output_tokens,
        })
        .map_err(|e| LlmError::Malformed(e.to_string()))?;
        // Held through the retries' waits too: a call waiting to retry is still open.
        let place = self.place().await?;
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let error = match self.send(&body).await {
                Ok(response) => {
                    return Ok(ChatStream::new(
                        response,
                        self.config.idle_timeout,
                        started + self.config.timeout,
                        self.config.timeout,
                        place,
                    ));
                }
                Err(e) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    e
                }
            };
            if attempt >= self.config.max_retries || !error.retryable() {
                return Err(error);
            }
            let wait = match &error {
                LlmError::RateLimited {
                    retry_after: Some(d),
                } => *d,
                _ => Duration::from_millis(250u64 << attempt.min(6)),
            };
            if wait > self.config.max_retry_wait {
                return Err(error);
            }
            tracing::warn!(error = %error, attempt, wait_ms = wait.as_millis() as u64, "LLM call failed; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn send(&self, body: &[u8]) -> Result<reqwest::Response, LlmError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "text/event-stream")
            .body(body.to_vec());
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose());
        }
        let timeout = self.config.timeout;
        let response = match tokio::time::timeout(timeout, request.send()).await {
            Err(_) => return Err(LlmError::Timeout(timeout)),
            Ok(Err(e)) if e.is_timeout() => return Err(LlmError::Timeout(timeout)),
            Ok(Err(e)) => return Err(LlmError::Connect(e.to_string())),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.as_u16() == 429 {
            return Err(LlmError::RateLimited { retry_after });
        }
        let message = error_message(response, timeout).await;
        Err(LlmError::Status {
            status: status.as_u16(),
            message,
        })
    }
}

/// The message of an error reply (its first [`MAX_ERROR_BYTES`]).
async fn error_message(mut response: reqwest::Response, timeout: Duration) -> String {
    let mut body = Vec::new();
    let read = async {
        while body.len() < MAX_ERROR_BYTES {
            match response.chunk().await {
                Ok(Some(bytes)) => body.extend_from_slice(&bytes),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    body.truncate(MAX_ERROR_BYTES);
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) => e.error.message,
        Err(_) => String::from_utf8_lossy(&body).trim().to_string(),
    }
}

/// A reply being streamed. See [`ChatStream::next`].
#[derive(Debug)]
pub struct ChatStream {
    response: reqwest::Response,
    decoder: SseDecoder,
    events: VecDeque<String>,
    pieces: VecDeque<String>,
    idle: Duration,
    deadline: Instant,
    timeout: Duration,
    text: String,
    calls: Vec<ToolCall>,
    bytes: usize,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    model: Option<String>,
    /// `[DONE]` arrived (or the connection ended after the finish reason).
    ended: bool,
    returned: bool,
    /// The node's place for this call, given back when the stream is dropped.
    _place: OwnedSemaphorePermit,
}

impl ChatStream {
    fn new(
        response: reqwest::Response,
        idle: Duration,
        deadline: Instant,
        timeout: Duration,
        place: OwnedSemaphorePermit,
    ) -> ChatStream {
        ChatStream {
            response,
            decoder: SseDecoder::default(),
            events: VecDeque::new(),
            pieces: VecDeque::new(),
            idle,
            deadline,
            timeout,
            text: String::new(),
            calls: Vec::new(),
            bytes: 0,
            finish_reason: None,
            usage: None,
            model: None,
            ended: false,
            returned: false,
            _place: place,
        }
    }

    /// The next piece of text, or the complete reply. After [`StreamItem::Done`] the stream is
    /// over: calling again is an error.
    pub async fn next(&mut self) -> Result<StreamItem, LlmError> {
        loop {
            if let Some(piece) = self.pieces.pop_front() {
                return Ok(StreamItem::Text(piece));
            }
            if self.ended {
                if self.returned {
                    return Err(LlmError::Malformed("the reply is already complete".into()));
                }
                self.returned = true;
                return Ok(StreamItem::Done(self.completion()));
            }
            if let Some(event) = self.events.pop_front() {
                self.apply(&event)?;
                continue;
            }
            let now = Instant::now();
            if now >= self.deadline {
                return Err(LlmError::Timeout(self.timeout));
            }
            let wait = self.idle.min(self.deadline - now);
            match tokio::time::timeout(wait, self.response.chunk()).await {
                Err(_) => return Err(LlmError::Timeout(wait)),
                Ok(Err(e)) => return Err(LlmError::Cut(e.to_string())),
                Ok(Ok(None)) if self.finish_reason.is_some() => self.ended = true,
                Ok(Ok(None)) => {
                    return Err(LlmError::Cut(
                        "the connection closed before the reply was complete".into(),
                    ));
                }
                Ok(Ok(Some(bytes))) => {
                    let mut out = Vec::new();
                    self.decoder
                        .feed(&bytes, &mut out)
                        .map_err(|e| LlmError::Malformed(e.to_string()))?;
                    self.events.extend(out);
                }
            }
        }
    }

    fn completion(&mut self) -> Completion {
        let mut calls = std::mem::take(&mut self.calls);
        for (i, c) in calls.iter_mut().enumerate() {
            if c.id.is_empty() {
                c.id = format!("call_{i}");
            }
        }
        Completion {
            text: std::mem::take(&mut self.text),
            tool_calls: calls,
            finish_reason: self.finish_reason.take(),
            usage: self.usage,
            model: self.model.take(),
        }
    }

    fn grow(&mut self, by: usize) -> Result<(), LlmError> {
        self.bytes += by;
        if self.bytes > MAX_REPLY_BYTES {
            return Err(LlmError::Malformed(format!(
                "the reply is longer than {MAX_REPLY_BYTES} bytes"
            )));
        }
        Ok(())
    }

    fn apply(&mut self, data: &str) -> Result<(), LlmError> {
        if data.trim() == "[DONE]" {
            self.ended = true;
            return Ok(());
        }
        if let Ok(e) = serde_json::from_str::<ErrorBody>(data) {
            return Err(LlmError::Cut(e.error.message));
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| LlmError::Malformed(format!("a chunk is not valid JSON: {e}")))?;
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if self.model.is_none() {
            self.model = chunk.model;
        }
        // One choice is asked for (`n` is not sent); a server sending more gets the first read.
        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(());
        };
        if let Some(delta) = choice.delta {
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.grow(text.len())?;
                self.text.push_str(&text);
                self.pieces.push_back(text);
            }
            for piece in delta.tool_calls.unwrap_or_default() {
                let index = match (piece.index, &piece.id) {
                    (Some(i), _) => i,
                    // No index: a new id starts a call, anything else continues the last.
                    (None, Some(_)) => self.calls.len(),
                    (None, None) => self.calls.len().saturating_sub(1),
                };
                if index >= MAX_TOOL_CALLS {
                    return Err(LlmError::Malformed(format!(
                        "more than {MAX_TOOL_CALLS} tool calls in one reply"
                    )));
                }
                while self.calls.len() <= index {
                    self.calls.push(ToolCall::function("", "", ""));
                }
                let call = &mut self.calls[index];
                if let Some(id) = piece.id.filter(|id| !id.is_empty()) {
                    call.id = id;
                }
                if let Some(f) = piece.function {
                    let name = f.name.unwrap_or_default();
                    let args = f.arguments.unwrap_or_default();
                    self.bytes += name.len();
                    let call = &mut self.calls[index];
                    if call.function.name.is_empty() {
                        call.function.name = name;
                    } else if !name.is_empty() && name != call.function.name {
                        call.function.name.push_str(&name);
                    }
                    call.function.arguments.push_str(&args);
                    self.grow(args.len())?;
                }
            }
        }
        if let Some(reason) = choice.finish_reason {
            self.finish_reason = Some(reason);
        }
        Ok(())
    }
}
