//! What the agents' integration tests share: the demo usage in memory, the clock, the price
//! catalog, a recording event sink, and the PROTOCOL.md §4 checks of a run's events.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use apogee_agents::{EventSink, LlmCall, SinkError};
use apogee_analytics::demo::{self, DemoSpec};
use apogee_analytics::{MemoryUsage, PriceCatalog, PricedRecord};
use apogee_protocol::{AgentStatus, EventBody};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use tokio_util::sync::CancellationToken;

pub const RUN_ID: &str = "run-1";

pub fn end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
}

/// Wednesday noon, the last day of the demo history.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

pub fn spec() -> DemoSpec {
    DemoSpec {
        days: 30,
        calls: 20_000,
        seed: 1,
        end: end(),
    }
}

pub fn catalog() -> Arc<PriceCatalog> {
    static CATALOG: OnceLock<Arc<PriceCatalog>> = OnceLock::new();
    CATALOG
        .get_or_init(|| Arc::new(PriceCatalog::builtin().unwrap()))
        .clone()
}

pub fn demo_usage() -> Arc<MemoryUsage> {
    static USAGE: OnceLock<Arc<MemoryUsage>> = OnceLock::new();
    USAGE
        .get_or_init(|| {
            let catalog = catalog();
            let records = demo::generate(&spec())
                .map(|r| PricedRecord::price(r, &catalog))
                .collect();
            Arc::new(MemoryUsage::new(records, catalog))
        })
        .clone()
}

/// Collects events and answers; can fire a cancel token or start failing after N events.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<EventBody>>,
    pub answers: Mutex<Vec<String>>,
    pub emit_attempts: Mutex<usize>,
    pub cancel_after: Option<(usize, CancellationToken)>,
    pub fail_after: Option<usize>,
    pub fail_answer: bool,
    /// The LLM calls recorded as usage.
    pub llm_calls: Mutex<Vec<LlmCall>>,
}

#[async_trait]
impl EventSink for Recorder {
    async fn emit(&self, body: EventBody) -> Result<(), SinkError> {
        *self.emit_attempts.lock().unwrap() += 1;
        let mut events = self.events.lock().unwrap();
        if self.fail_after.is_some_and(|n| events.len() >= n) {
            return Err(SinkError("stream is gone".into()));
        }
        events.push(body);
        if let Some((n, token)) = &self.cancel_after
            && events.len() == *n
        {
            token.cancel();
        }
        Ok(())
    }

    async fn post_answer(&self, content: &str) -> Result<(), SinkError> {
        if self.fail_answer {
            return Err(SinkError("message store is full".into()));
        }
        self.answers.lock().unwrap().push(content.to_string());
        Ok(())
    }

    async fn record_llm_call(&self, call: &LlmCall) -> Result<(), SinkError> {
        self.llm_calls.lock().unwrap().push(call.clone());
        Ok(())
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<EventBody> {
        self.events.lock().unwrap().clone()
    }

    pub fn answer(&self) -> Option<String> {
        let answers = self.answers.lock().unwrap();
        assert!(answers.len() <= 1, "post_answer is called at most once");
        answers.first().cloned()
    }
}

/// PROTOCOL.md §4: the supervisor's start first and its end last, every agent and tool
/// started once and ended once, in order, tools inside their open agent; returns the
/// supervisor's final status.
pub fn assert_well_formed(events: &[EventBody]) -> AgentStatus {
    assert!(!events.is_empty(), "a run has events");
    match &events[0] {
        EventBody::AgentStarted {
            agent,
            parent_agent,
            ..
        } => {
            assert_eq!(agent, "supervisor");
            assert_eq!(*parent_agent, None);
        }
        e => panic!("first event {e:?}"),
    }
    let final_status = match events.last().unwrap() {
        EventBody::AgentCompleted { agent, status, .. } => {
            assert_eq!(agent, "supervisor");
            *status
        }
        e => panic!("last event {e:?}"),
    };
    let mut open_agents: Vec<String> = Vec::new();
    let mut open_tools: HashMap<String, (String, String)> = HashMap::new();
    let mut seen_calls = HashSet::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.run_id(), Some(RUN_ID), "{e:?}");
        match e {
            EventBody::AgentStarted {
                agent,
                parent_agent,
                ..
            } => {
                if i > 0 {
                    assert_eq!(parent_agent.as_deref(), Some("supervisor"), "{e:?}");
                    assert_ne!(agent, "supervisor");
                }
                assert!(open_tools.is_empty(), "agent started inside a tool call");
                open_agents.push(agent.clone());
            }
            EventBody::AgentThinking { agent, text, .. } => {
                assert_eq!(open_agents.last(), Some(agent), "{e:?}");
                assert!(!text.trim().is_empty());
            }
            EventBody::ToolExecuting {
                agent,
                tool,
                call_id,
                ..
            } => {
                assert_eq!(open_agents.last(), Some(agent), "{e:?}");
                assert!(
                    seen_calls.insert(call_id.clone()),
                    "call_id reused: {call_id}"
                );
                assert!(open_tools.is_empty(), "tools run one at a time");
                open_tools.insert(call_id.clone(), (agent.clone(), tool.clone()));
            }
            EventBody::ToolCompleted {
                agent,
                tool,
                call_id,
                summary,
                ..
            } => {
                let opened = open_tools.remove(call_id);
                assert_eq!(opened, Some((agent.clone(), tool.clone())), "{e:?}");
                assert!(!summary.trim().is_empty());
            }
            EventBody::AgentCompleted { agent, summary, .. } => {
                assert!(open_tools.is_empty(), "agent ended with a tool open");
                assert_eq!(open_agents.pop().as_ref(), Some(agent), "{e:?}");
                assert!(!summary.trim().is_empty());
                if agent == "supervisor" {
                    assert_eq!(i, events.len() - 1, "events after the supervisor ended");
                }
            }
            e => panic!("unexpected event {e:?}"),
        }
    }
    assert!(open_agents.is_empty(), "unclosed agents {open_agents:?}");
    final_status
}

pub fn agents_started(events: &[EventBody]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            EventBody::AgentStarted { agent, .. } => Some(agent.as_str()),
            _ => None,
        })
        .collect()
}

pub fn tools_called(events: &[EventBody]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            EventBody::ToolExecuting { tool, .. } => Some(tool.as_str()),
            _ => None,
        })
        .collect()
}

pub fn agent_status(events: &[EventBody], name: &str) -> Option<AgentStatus> {
    events.iter().find_map(|e| match e {
        EventBody::AgentCompleted { agent, status, .. } if agent == name => Some(*status),
        _ => None,
    })
}
