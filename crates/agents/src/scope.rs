//! The pairing rules of PROTOCOL.md §4, enforced by construction. An agent's `agent_started`
//! and `agent_completed`, and a tool's `tool_executing` and `tool_completed`, are emitted by
//! one function each ([`SubAgent::run`], [`Agent::call`], [`supervise`]) around the body they
//! are given, so no code path (error, cancellation) can open a step without closing it. The
//! only exception is a failing sink: once the stream cannot take events nothing more is sent.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use apogee_protocol::{AgentStatus, EventBody, SUPERVISOR_AGENT, ToolStatus};
use serde_json::Value;
// tokio's clock (the system's monotonic clock outside tests): a test with a paused clock
// measures a tool's `duration_ms` exactly.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sink::{EventSink, LlmCall, SinkError};
use crate::tools::{ToolCall, ToolError, ToolOutput};

/// Why a step did not produce its result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error("cancelled")]
    Cancelled,
    /// The stream cannot take events: the run stops without another event.
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// What every step of one run shares: where events go, the cancel signal, the call counter.
pub(crate) struct RunEvents {
    run_id: String,
    sink: Arc<dyn EventSink>,
    cancel: CancellationToken,
    calls: AtomicU64,
    /// The sink's first failure. Steps running side by side may still try to emit after it:
    /// they get the same error without the sink being tried again.
    broken: std::sync::OnceLock<SinkError>,
    /// A line put above the run's answer (why the LLM planner's answer was replaced).
    answer_note: std::sync::OnceLock<String>,
}

impl RunEvents {
    pub(crate) fn new(
        run_id: String,
        sink: Arc<dyn EventSink>,
        cancel: CancellationToken,
    ) -> Arc<RunEvents> {
        Arc::new(RunEvents {
            run_id,
            sink,
            cancel,
            calls: AtomicU64::new(0),
            broken: std::sync::OnceLock::new(),
            answer_note: std::sync::OnceLock::new(),
        })
    }

    async fn emit(&self, body: EventBody) -> Result<(), SinkError> {
        if let Some(e) = self.broken.get() {
            return Err(e.clone());
        }
        self.sink.emit(body).await.inspect_err(|e| {
            tracing::warn!(run_id = %self.run_id, error = %e, "event sink failed; stopping the run");
            let _ = self.broken.set(e.clone());
        })
    }

    /// `call_1`, `call_2`, … unique within the run.
    fn next_call_id(&self) -> String {
        format!("call_{}", self.calls.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// What an agent's body hands back: its result for the supervisor, and what its
/// `agent_completed` says.
pub(crate) struct Done<T> {
    pub value: T,
    pub summary: String,
    pub data: Option<Value>,
}

impl<T> Done<T> {
    pub(crate) fn new(value: T, summary: impl Into<String>) -> Done<T> {
        Done {
            value,
            summary: summary.into(),
            data: None,
        }
    }

    pub(crate) fn with_data(mut self, data: Value) -> Done<T> {
        self.data = Some(data);
        self
    }
}

/// A started agent: what its body may do while it runs. Only [`SubAgent::run`] and
/// [`supervise`] make one, after emitting its `agent_started`.
#[derive(Clone)]
pub(crate) struct Agent {
    events: Arc<RunEvents>,
    name: &'static str,
}

impl Agent {
    pub(crate) async fn think(&self, text: impl Into<String>) -> Result<(), StepError> {
        self.events
            .emit(EventBody::AgentThinking {
                run_id: self.events.run_id.clone(),
                agent: self.name.into(),
                text: text.into(),
            })
            .await?;
        Ok(())
    }

    /// A sub-agent of this one, not yet started.
    pub(crate) fn child(&self, name: &'static str) -> SubAgent {
        SubAgent {
            events: Arc::clone(&self.events),
            name,
            parent: self.name,
        }
    }

    /// Stores the run's answer (see [`EventSink::post_answer`]), under the run's answer note
    /// when it has one.
    pub(crate) async fn post_answer(&self, markdown: &str) -> Result<(), SinkError> {
        match self.events.answer_note.get() {
            Some(note) => {
                self.events
                    .sink
                    .post_answer(&format!("{note}\n\n{markdown}"))
                    .await
            }
            None => self.events.sink.post_answer(markdown).await,
        }
    }

    /// Sets the line the run's answer is posted under (the first one set stays).
    pub(crate) fn set_answer_note(&self, note: String) {
        let _ = self.events.answer_note.set(note);
    }

    /// Completes when the run is cancelled.
    pub(crate) async fn cancelled(&self) {
        self.events.cancel.cancelled().await
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.events.cancel.is_cancelled()
    }

    /// Records one call to the LLM as usage of the org ([`EventSink::record_llm_call`]). A
    /// failure is logged: the run goes on.
    pub(crate) async fn record_llm_call(&self, call: &LlmCall) {
        if let Err(e) = self.events.sink.record_llm_call(call).await {
            tracing::warn!(run_id = %self.events.run_id, error = %e, "could not record an LLM call as usage");
        }
    }

    /// Runs one tool call between its `tool_executing` and `tool_completed`. A cancelled run
    /// starts no tool; a cancel arriving while the tool runs abandons it and still closes it.
    pub(crate) async fn call<T, F>(&self, call: ToolCall<F>) -> Result<T, StepError>
    where
        F: Future<Output = Result<ToolOutput<T>, ToolError>>,
    {
        let events = &self.events;
        if events.cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        let call_id = events.next_call_id();
        events
            .emit(EventBody::ToolExecuting {
                run_id: events.run_id.clone(),
                agent: self.name.into(),
                tool: call.name.into(),
                call_id: call_id.clone(),
                args: call.args,
            })
            .await?;
        let started = Instant::now();
        let outcome = tokio::select! {
            biased;
            () = events.cancel.cancelled() => None,
            result = call.run => Some(result),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, summary, data, result) = match outcome {
            None => (
                ToolStatus::Error,
                "cancelled".to_string(),
                None,
                Err(StepError::Cancelled),
            ),
            Some(Ok(out)) => (ToolStatus::Ok, out.summary, Some(out.data), Ok(out.value)),
            Some(Err(e)) => {
                tracing::warn!(run_id = %events.run_id, tool = call.name, error = %e, "tool failed");
                (
                    ToolStatus::Error,
                    e.to_string(),
                    None,
                    Err(StepError::Tool(e)),
                )
            }
        };
        events
            .emit(EventBody::ToolCompleted {
                run_id: events.run_id.clone(),
                agent: self.name.into(),
                tool: call.name.into(),
                call_id,
                status,
                summary,
                duration_ms,
                data,
            })
            .await?;
        result
    }
}

/// A sub-agent about to run.
pub(crate) struct SubAgent {
    events: Arc<RunEvents>,
    name: &'static str,
    parent: &'static str,
}

impl SubAgent {
    /// Emits `agent_started`, runs `body`, and emits `agent_completed` with the status the
    /// body ended with. A cancelled run starts no agent, and an agent open when the run is
    /// cancelled ends `cancelled`.
    pub(crate) async fn run<T, F, Fut>(self, body: F) -> Result<T, StepError>
    where
        F: FnOnce(Agent) -> Fut,
        Fut: Future<Output = Result<Done<T>, StepError>>,
    {
        if self.events.cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        let events = self.events;
        let run_id = events.run_id.clone();
        events
            .emit(EventBody::AgentStarted {
                run_id: run_id.clone(),
                agent: self.name.into(),
                parent_agent: Some(self.parent.into()),
            })
            .await?;
        let agent = Agent {
            events: Arc::clone(&events),
            name: self.name,
        };
        let outcome = match body(agent).await {
            // A cancel that arrived after the body's last check still ends the open agent.
            Ok(_) if events.cancel.is_cancelled() => Err(StepError::Cancelled),
            other => other,
        };
        let (status, summary, data, result) = match outcome {
            Ok(done) => (AgentStatus::Ok, done.summary, done.data, Ok(done.value)),
            // Nothing can be delivered any more, so there is nothing to close.
            Err(StepError::Sink(e)) => return Err(StepError::Sink(e)),
            Err(StepError::Cancelled) => (
                AgentStatus::Cancelled,
                "cancelled".to_string(),
                None,
                Err(StepError::Cancelled),
            ),
            Err(StepError::Tool(e)) => (
                AgentStatus::Error,
                e.to_string(),
                None,
                Err(StepError::Tool(e)),
            ),
        };
        events
            .emit(EventBody::AgentCompleted {
                run_id,
                agent: self.name.into(),
                status,
                summary,
                data,
            })
            .await?;
        result
    }
}

/// How the supervisor ended: what its `agent_completed` says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Conclusion {
    pub status: AgentStatus,
    pub summary: String,
    pub data: Value,
}

/// Runs the supervisor: its `agent_started` is the run's first event and its
/// `agent_completed` (with the body's [`Conclusion`]) the last. Unlike sub-agents it also
/// starts when the run is already cancelled, so every run has both.
pub(crate) async fn supervise<F, Fut>(
    events: Arc<RunEvents>,
    body: F,
) -> Result<Conclusion, SinkError>
where
    F: FnOnce(Agent) -> Fut,
    Fut: Future<Output = Result<Conclusion, SinkError>>,
{
    let run_id = events.run_id.clone();
    events
        .emit(EventBody::AgentStarted {
            run_id: run_id.clone(),
            agent: SUPERVISOR_AGENT.into(),
            parent_agent: None,
        })
        .await?;
    let agent = Agent {
        events: Arc::clone(&events),
        name: SUPERVISOR_AGENT,
    };
    let conclusion = body(agent).await?;
    events
        .emit(EventBody::AgentCompleted {
            run_id,
            agent: SUPERVISOR_AGENT.into(),
            status: conclusion.status,
            summary: conclusion.summary.clone(),
            data: Some(conclusion.data.clone()),
        })
        .await?;
    Ok(conclusion)
}
