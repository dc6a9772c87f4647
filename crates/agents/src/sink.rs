//! Where agents report what they do. The server's implementation assigns each event its
//! `seq`, persists it and fans it out; agents only describe the step.

use apogee_protocol::EventBody;
use async_trait::async_trait;

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
}
