//! The tools sub-agents call. Each tool is a function returning a [`ToolCall`]: its wire name,
//! the JSON of its arguments, and the (not yet started) work, which ends in a [`ToolOutput`]
//! with a one-line summary and the result JSON of its `tool_completed`. Running it, timing it
//! and pairing its events is [`crate::scope::Agent::call`]'s job, not the tool's.

pub(crate) mod budgets;
pub(crate) mod compose;
pub(crate) mod planning;
pub(crate) mod savings;
pub(crate) mod trends;
pub(crate) mod usage;

use apogee_analytics::{Period, QueryError};
use serde_json::{Value, json};

use crate::sink::SinkError;

/// A tool call ready to run.
pub(crate) struct ToolCall<F> {
    pub name: &'static str,
    pub args: Value,
    pub run: F,
}

/// What a tool produced.
pub(crate) struct ToolOutput<T> {
    pub value: T,
    /// One line with the real numbers, for the step list of the UI.
    pub summary: String,
    pub data: Value,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ToolError {
    #[error("Could not read usage data: {0}")]
    Usage(#[from] QueryError),
    #[error("Could not store the answer: {0}")]
    Answer(SinkError),
    #[error("Could not read or write budgets: {0}")]
    Budgets(String),
    /// A tool call of the LLM planner's model with arguments that do not fit the tool.
    #[error("The arguments do not fit the tool: {0}")]
    Arguments(String),
    /// A tool the LLM planner's model named that does not exist.
    #[error("There is no tool `{0}`; call one of the tools offered")]
    UnknownTool(String),
    /// The LLM planner stopped: the model failed, or misbehaved past a bound.
    #[error("{0}")]
    Planner(String),
    /// The LLM planner's answer has figures that no tool result supports.
    #[error("The answer's figures {} are not in the tool results", .0.join(", "))]
    Ungrounded(Vec<String>),
}

/// The arguments every period-bound tool takes.
pub(crate) fn period_args(period: &Period) -> Value {
    json!({
        "from": apogee_protocol::time::instant(period.from),
        "to": apogee_protocol::time::instant(period.to),
    })
}
