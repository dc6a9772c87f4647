//! The server's [`EventSink`]: a run's events go into its user's stream (persisted, then
//! fanned out) and its final answer becomes a stored assistant message.

use std::sync::Arc;

use apogee_agents::{EventSink, SinkError};
use apogee_protocol::{EventBody, MessageInfo, Role};
use apogee_store::{MessageRow, Store};
use async_trait::async_trait;

use crate::hub::UserStream;

pub struct StreamSink {
    stream: Arc<UserStream>,
    store: Store,
    thread_id: String,
    run_id: String,
}

impl StreamSink {
    pub fn new(stream: Arc<UserStream>, store: Store, thread_id: String, run_id: String) -> Self {
        Self {
            stream,
            store,
            thread_id,
            run_id,
        }
    }
}

fn sink_error(e: impl std::fmt::Display) -> SinkError {
    SinkError(e.to_string())
}

#[async_trait]
impl EventSink for StreamSink {
    async fn emit(&self, body: EventBody) -> Result<(), SinkError> {
        self.stream
            .publish(&self.thread_id, Some(&self.run_id), body)
            .await
            .map(|_| ())
            .map_err(sink_error)
    }

    async fn post_answer(&self, content: &str) -> Result<(), SinkError> {
        let now = chrono::Utc::now();
        let row = MessageRow {
            id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            thread_id: self.thread_id.clone(),
            role: Role::Assistant.as_str().to_string(),
            content: content.to_string(),
            client_msg_id: None,
            run_id: Some(self.run_id.clone()),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        self.store
            .add_assistant_message(self.stream.key(), &row, now.timestamp_millis())
            .await
            .map_err(sink_error)?;
        let message = MessageInfo {
            id: row.id,
            role: Role::Assistant,
            content: row.content,
            created_at: row.created_at,
            client_msg_id: None,
            run_id: row.run_id,
        };
        self.emit(EventBody::MessageCreated { message }).await
    }
}
