//! The server's [`EventSink`]: a run's events go into its user's stream (persisted, then
//! fanned out), its final answer becomes a stored assistant message, and each call the LLM
//! planner made becomes a usage record of the org (feature `apogee-assistant`), priced and
//! stored like any ingested record.
//!
//! A step does not wait for its event to be stored before the run goes on: events are queued
//! in order ([`UserStream::queue`]) and each is sent once stored, so a run's steps share
//! transactions instead of paying one commit each. A failed write is found at the next step
//! (which then fails, as a write that failed did before) or by [`StreamSink::flush`], which the
//! run awaits before it is recorded as ended.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use apogee_agents::{ASSISTANT_FEATURE, EventSink, LlmCall, SinkError};
use apogee_analytics::{PriceCatalog, UsageRecord};
use apogee_protocol::{EventBody, MessageInfo, Role};
use apogee_store::{MessageRow, QueuedEvent, RunRecord, Store, StoreError};
use async_trait::async_trait;

use crate::hub::UserStream;

pub struct StreamSink {
    stream: Arc<UserStream>,
    store: Store,
    thread_id: String,
    run_id: String,
    catalog: Arc<PriceCatalog>,
    /// The run's events queued and not yet known stored, oldest first (at most the stream's
    /// per-user bound of events in flight, plus those found stored at the next step).
    queued: Mutex<VecDeque<QueuedEvent>>,
}

impl StreamSink {
    pub fn new(
        stream: Arc<UserStream>,
        store: Store,
        thread_id: String,
        run_id: String,
        catalog: Arc<PriceCatalog>,
    ) -> Self {
        Self {
            stream,
            store,
            thread_id,
            run_id,
            catalog,
            queued: Mutex::new(VecDeque::new()),
        }
    }

    /// Forgets the events found stored; the first write found failed is the answer.
    fn settle(&self) -> Result<(), StoreError> {
        let mut queued = crate::sync::lock(&self.queued);
        while let Some(front) = queued.front_mut() {
            match front.try_stored() {
                None => break,
                Some(result) => {
                    queued.pop_front();
                    result?;
                }
            }
        }
        Ok(())
    }

    /// Waits until every event of the run queued so far is stored (and so offered to the
    /// user's connections); the first write that failed is the answer.
    pub async fn flush(&self) -> Result<(), SinkError> {
        let queued: Vec<QueuedEvent> = crate::sync::lock(&self.queued).drain(..).collect();
        let mut first_error = None;
        for q in queued {
            if let Err(e) = q.stored().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), |e| Err(sink_error(e)))
    }
}

/// The usage record of one LLM call: the org's, by the user who asked.
fn usage_record(call: &LlmCall, user: &str) -> Result<UsageRecord, String> {
    let record: UsageRecord = serde_json::from_value(serde_json::json!({
        "request_id": call.request_id,
        "ts": call.at,
        "model": call.model,
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "cached_input_tokens": call.cached_input_tokens,
        "latency_ms": call.latency_ms,
        "status": call.status,
        "stream": true,
        "user": user,
        "feature": ASSISTANT_FEATURE,
    }))
    .map_err(|e| e.to_string())?;
    record.normalise().map_err(|e| e.to_string())
}

fn sink_error(e: impl std::fmt::Display) -> SinkError {
    SinkError(e.to_string())
}

#[async_trait]
impl EventSink for StreamSink {
    async fn emit(&self, body: EventBody) -> Result<(), SinkError> {
        self.settle().map_err(sink_error)?;
        let queued = self
            .stream
            .queue(&self.thread_id, Some(&self.run_id), body)
            .await
            .map_err(sink_error)?;
        crate::sync::lock(&self.queued).push_back(queued);
        Ok(())
    }

    /// The answer is stored in the transaction of its `message_created` event (a row queued
    /// with it, no commit of its own): never sent without being stored.
    async fn post_answer(&self, content: &str) -> Result<(), SinkError> {
        self.settle().map_err(sink_error)?;
        let now = chrono::Utc::now();
        let row = MessageRow {
            id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            thread_id: self.thread_id.clone(),
            role: Role::Assistant.as_str().to_string(),
            content: content.to_string(),
            client_msg_id: None,
            run_id: Some(self.run_id.clone()),
            created_at: apogee_protocol::time::record_time(now),
        };
        let message = MessageInfo {
            id: row.id.clone(),
            role: Role::Assistant,
            content: row.content.clone(),
            created_at: row.created_at.clone(),
            client_msg_id: None,
            run_id: row.run_id.clone(),
        };
        let record = RunRecord::Answer {
            message: row,
            created_ms: now.timestamp_millis(),
        };
        let queued = self
            .stream
            .queue_with_record(
                &self.thread_id,
                &self.run_id,
                EventBody::MessageCreated { message },
                record,
            )
            .await
            .map_err(sink_error)?;
        crate::sync::lock(&self.queued).push_back(queued);
        Ok(())
    }

    async fn record_llm_call(&self, call: &LlmCall) -> Result<(), SinkError> {
        let key = self.stream.key();
        let record = usage_record(call, &key.user_id).map_err(SinkError)?;
        let priced = crate::ingest::price(record, &self.catalog);
        self.store
            .ingest_usage(&key.org_id, &[priced])
            .await
            .map_err(sink_error)?;
        Ok(())
    }
}
