//! Stream events (PROTOCOL.md §4): the frames that belong to a user's stream, carry `seq`, are
//! persisted before they are sent and are replayed on resume.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event of a user's stream, as sent on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEvent {
    pub seq: u64,
    /// RFC 3339 UTC.
    pub ts: String,
    pub thread_id: String,
    #[serde(flatten)]
    pub body: EventBody,
}

/// The typed part of a stream event; `type` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    ThreadCreated {
        thread: ThreadInfo,
    },
    MessageCreated {
        message: MessageInfo,
    },
    AgentStarted {
        run_id: String,
        agent: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_agent: Option<String>,
    },
    AgentThinking {
        run_id: String,
        agent: String,
        text: String,
    },
    ToolExecuting {
        run_id: String,
        agent: String,
        tool: String,
        call_id: String,
        args: Value,
    },
    ToolCompleted {
        run_id: String,
        agent: String,
        tool: String,
        call_id: String,
        status: ToolStatus,
        summary: String,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
    },
    AgentCompleted {
        run_id: String,
        agent: String,
        status: AgentStatus,
        summary: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
    },
}

impl EventBody {
    /// The wire name of this event's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::ThreadCreated { .. } => "thread_created",
            EventBody::MessageCreated { .. } => "message_created",
            EventBody::AgentStarted { .. } => "agent_started",
            EventBody::AgentThinking { .. } => "agent_thinking",
            EventBody::ToolExecuting { .. } => "tool_executing",
            EventBody::ToolCompleted { .. } => "tool_completed",
            EventBody::AgentCompleted { .. } => "agent_completed",
        }
    }

    /// The run this event belongs to, if any.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            EventBody::ThreadCreated { .. } => None,
            EventBody::MessageCreated { message } => message.run_id.as_deref(),
            EventBody::AgentStarted { run_id, .. }
            | EventBody::AgentThinking { run_id, .. }
            | EventBody::ToolExecuting { run_id, .. }
            | EventBody::ToolCompleted { run_id, .. }
            | EventBody::AgentCompleted { run_id, .. } => Some(run_id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadInfo {
    pub id: String,
    pub title: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageInfo {
    pub id: String,
    pub role: Role,
    pub content: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Ok,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Ok,
    Error,
    Cancelled,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trips_with_flat_type() {
        let e = StreamEvent {
            seq: 3,
            ts: "2026-11-24T10:00:00Z".into(),
            thread_id: "t1".into(),
            body: EventBody::AgentStarted {
                run_id: "r1".into(),
                agent: "triage".into(),
                parent_agent: Some("supervisor".into()),
            },
        };
        let text = serde_json::to_string(&e).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "agent_started");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["parent_agent"], "supervisor");
        assert_eq!(serde_json::from_str::<StreamEvent>(&text).unwrap(), e);
    }
}
