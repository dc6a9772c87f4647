//! Where agents report what they do. The server's implementation assigns each event its
//! `seq`, persists it and fans it out; agents only describe the step.

use apogee_protocol::EventBody;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, thiserror::Error)]
#[error("event sink failed: {0}")]
pub struct SinkError(pub String);

#[async_trait]
pub trait EventSink: Send + Sync {
    /// Appends one event of this run to the user's stream.
    async fn emit(&self, body: EventBody) -> Result<(), SinkError>;

    /// Stores the run's final assistant answer (markdown) in the run's thread and emits its
    /// `message_created`. Called at most once per run, before the supervisor completes.
    async fn post_answer(&self, content: &str) -> Result<(), SinkError>;

    /// Records one call the run made to the LLM planner's model as a usage record of the org
    /// (feature [`ASSISTANT_FEATURE`]), so Apogee's own spend is priced and shown like any
    /// other traffic. Sinks that keep no usage ignore it.
    async fn record_llm_call(&self, call: &LlmCall) -> Result<(), SinkError> {
        let _ = call;
        Ok(())
    }
}

/// The feature Apogee's own LLM calls are recorded under.
pub const ASSISTANT_FEATURE: &str = "apogee-assistant";

/// One call to the LLM made for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmCall {
    /// Unique per run: `{run_id}:llm:{n}`.
    pub request_id: String,
    /// When the call started.
    pub at: DateTime<Utc>,
    /// The model that answered (as the server named it), else the configured one.
    pub model: String,
    /// As the server reported them; 0 when it did not (or the call failed).
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub latency_ms: u64,
    /// `ok`, `error` or `cancelled`.
    pub status: &'static str,
}
