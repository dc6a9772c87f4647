//! The agents that answer a user's question about their AI spend: a supervisor that plans the
//! run and hands work to sub-agents (triage, data, anomaly, optimization, report, data_helper),
//! the tools they call over the org's usage, and the [`EventSink`] every step is reported into.
//! Knows nothing of WebSocket, HTTP or SQL: usage comes through [`OrgUsageQueries`].
//!
//! The entry point is [`run`]. Everything is deterministic (rules, no LLM): the same question
//! over the same data at the same `now` gives the same events and answer.

mod answer;
mod findings;
mod format;
mod help;
mod plan;
mod question;
mod report;
mod scope;
pub mod sink;
mod spike;
mod subagents;
mod supervisor;
mod tools;
mod triage;

pub use plan::{
    Intent, Measure, Order, PlanPeriod, QuestionPlan, Rank, UnknownName, Unsupported, WhatIf,
};
pub use question::names::OrgNames;
pub use question::{PlanContext, names_period, plan_question};
pub use sink::{EventSink, SinkError};
pub use supervisor::{RunOutcome, run};

use std::sync::Arc;

use apogee_analytics::{OrgUsageQueries, PriceCatalog};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

/// Everything one run needs. Built by the server for one user's message; `usage` is already
/// scoped to the user's org.
pub struct RunContext {
    pub run_id: String,
    /// The user's message.
    pub question: String,
    /// The clock the run reasons with ("last 7 days" is relative to it).
    pub now: DateTime<Utc>,
    pub usage: Arc<dyn OrgUsageQueries>,
    pub catalog: Arc<PriceCatalog>,
    pub sink: Arc<dyn EventSink>,
    pub cancel: CancellationToken,
}
