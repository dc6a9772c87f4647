//! The agents that answer a user's question about their AI spend. Knows nothing of WebSocket,
//! HTTP or SQL: usage comes through [`OrgUsageQueries`], one org's, budgets through
//! [`OrgBudgets`] (the server's own budget code behind it), and every step is reported into an
//! [`EventSink`].
//!
//! # Layout: rules → tools → sub-agents
//!
//! - **Rules** are pure functions, tested by hand-computed examples and data: `plan` (the
//!   [`QuestionPlan`] type), `question/` (reading a question into a plan: `words` with the one
//!   stop-word list, `period`, `names` against the org's own, `intent`, combined by
//!   [`plan_question`]), `answer/` (writing answers: `figure`, `projection`, `analysis`,
//!   `conversation`, `budgets`, `help`, `explain`, `follow_ups`, and `markdown` with the one
//!   escape every writer uses), `format` (numbers). The arithmetic of spend (spikes, anomalies, change,
//!   forecast, savings, what-if pricing) is `apogee_analytics`'s.
//! - **Tools** (`tools/`) wrap one query or one rule as a step with a name, arguments and a
//!   result: `plan_question`, `read_org_names`, `measure_usage`, `measure_latency`, the
//!   breakdowns, trends, recommenders, what-if pricing, the budget tools (`list_budgets`,
//!   `set_budget`, `delete_budget`, over [`OrgBudgets`]), and `compose_*`, which post the
//!   answer. A tool never decides what to run next.
//! - **Sub-agents** (`subagents/`: triage, data, performance, anomaly, optimization, budgets,
//!   report, data_helper) sequence tools and say what they do; the supervisor (`supervisor.rs`) runs
//!   the ones the plan needs, and only those. `scope.rs` pairs every start with its end by
//!   construction.
//!
//! Beside the supervisor, `llm_planner/` lets a configured LLM plan over the same tools (read
//! only), with every figure of its answer checked against their results; the deterministic
//! path answers whenever it cannot. The client and wire format are `apogee_llm`'s.
//!
//! The entry point is [`run`]. Without an LLM ([`RunContext::llm`] `None`, the default)
//! everything is deterministic (rules, no LLM): the same question over the same data at the
//! same `now`, after the same previous plan, gives the same events and answer.

mod answer;
mod budgets;
mod findings;
mod format;
mod llm_planner;
mod plan;
mod question;
mod scope;
pub mod sink;
mod subagents;
mod supervisor;
mod tools;

pub use budgets::{BudgetDraft, BudgetRefusal, BudgetStatus, OrgBudgets};
pub use plan::{
    BudgetCommand, Intent, Measure, Order, PlanPeriod, QuestionPlan, Rank, SavingKind, Threshold,
    ThresholdAmount, UnknownName, Unsupported, WhatIf,
};
pub use question::names::OrgNames;
pub use question::{PlanContext, names_period, plan_question};
pub use sink::{ASSISTANT_FEATURE, EventSink, LlmCall, SinkError};
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
    /// The plan the thread's previous question left ([`RunOutcome::thread_plan`]), which a
    /// follow-up ("and last month?") refines.
    pub previous_plan: Option<QuestionPlan>,
    /// The org's budgets (the same code as `/api/budgets`); `None` where there is no budget
    /// store, and budget commands then say so.
    pub budgets: Option<Arc<dyn OrgBudgets>>,
    /// The LLM the planner asks first; `None`: the deterministic planner alone.
    pub llm: Option<Arc<apogee_llm::LlmClient>>,
    /// The thread's earlier turns, oldest first (read only by the LLM planner).
    pub history: Vec<Turn>,
}

/// One earlier message of the thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: TurnRole,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnRole {
    User,
    Assistant,
}
