//! Stream events (PROTOCOL.md §4): the frames that belong to a user's stream, carry `seq`, are
//! persisted before they are sent and are replayed on resume.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The agent every run starts and ends with: its `agent_completed` ends the run (§4).
pub const SUPERVISOR_AGENT: &str = "supervisor";

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
    /// A budget crossed one of its thresholds, or its forecast went over it: sent once per
    /// crossing to every member of the org; `thread_id` is empty (it belongs to no thread).
    BudgetAlert {
        alert: BudgetAlert,
    },
    /// The org's spend on the latest complete day was far above its typical day: sent once
    /// per day to every member of the org; `thread_id` is empty.
    AnomalyAlert {
        alert: AnomalyAlert,
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
            EventBody::BudgetAlert { .. } => "budget_alert",
            EventBody::AnomalyAlert { .. } => "anomaly_alert",
        }
    }

    /// The run this event belongs to, if any.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            EventBody::ThreadCreated { .. }
            | EventBody::BudgetAlert { .. }
            | EventBody::AnomalyAlert { .. } => None,
            EventBody::MessageCreated { message } => message.run_id.as_deref(),
            EventBody::AgentStarted { run_id, .. }
            | EventBody::AgentThinking { run_id, .. }
            | EventBody::ToolExecuting { run_id, .. }
            | EventBody::ToolCompleted { run_id, .. }
            | EventBody::AgentCompleted { run_id, .. } => Some(run_id),
        }
    }
}

/// What a `budget_alert` says: which budget, which crossing, the figures and who spent most.
/// Money is in nanodollars (exact) and in USD (for display).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetAlert {
    /// Stable per crossing: `{budget_id}:{revision}:{period_start}:{crossing}`.
    pub id: String,
    pub budget: BudgetRef,
    /// `threshold` (spend reached `threshold_percent` of the amount) or `forecast` (the
    /// projection for the period's end is over the amount).
    pub kind: AlertKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_percent: Option<u32>,
    /// The calendar period, RFC 3339 UTC, `[from, to)`.
    pub period_from: String,
    pub period_to: String,
    pub spent_nanos: i64,
    pub spent_usd: f64,
    /// Spent as a percent of the amount.
    pub percent: f64,
    /// Where spend is heading by the period's end.
    pub forecast_nanos: i64,
    pub forecast_usd: f64,
    /// The features and models that spent most in the period, within the budget's scope.
    pub top_contributors: Vec<Contributor>,
    /// One sentence for people (toasts, chat integrations).
    pub message: String,
}

/// What an `anomaly_alert` says: the day, how far it was from the typical day, and who spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyAlert {
    /// Stable per org and day: `anomaly:{day}`.
    pub id: String,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub cost_nanos: i64,
    pub cost_usd: f64,
    /// The median day of the baseline before it.
    pub median_nanos: i64,
    pub median_usd: f64,
    /// Robust z-score of the day against the baseline; absent when the baseline's days are
    /// all alike (any difference is then infinitely unusual).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
    /// Days the median and z-score are taken over (the day included).
    pub baseline_days: u32,
    /// The features and models that spent most that day.
    pub top_contributors: Vec<Contributor>,
    /// One sentence for people.
    pub message: String,
}

/// The budget an alert is about, as it was when the alert fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRef {
    pub id: String,
    pub name: String,
    /// `month`, `week` or `day`.
    pub period: String,
    /// The query engine's filters (`[]`: the whole org).
    pub scope: Value,
    pub amount_nanos: i64,
    pub amount_usd: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Threshold,
    Forecast,
}

/// One feature or model that spent within a budget's scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contributor {
    /// `feature` or `model`.
    pub dimension: String,
    pub key: String,
    pub cost_nanos: i64,
    pub cost_usd: f64,
    /// Share of the scope's spend in the period, percent.
    pub share_percent: f64,
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
