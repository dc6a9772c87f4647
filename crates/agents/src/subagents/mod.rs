//! The sub-agents the supervisor hands work to. Each entry point (`work`, or one per kind of
//! plan: `data::figure`, `optimization::what_if`, `report::answer`, …) is the body run between
//! the agent's `agent_started` and `agent_completed` ([`crate::scope::SubAgent::run`]): it says
//! what it is doing (`agent_thinking`), calls its tools and returns its result. Sub-agents
//! sequence tools; they hold no rules of their own beyond which tool comes next.

pub(crate) mod anomaly;
pub(crate) mod budgets;
pub(crate) mod data;
pub(crate) mod data_helper;
pub(crate) mod optimization;
pub(crate) mod performance;
pub(crate) mod report;
pub(crate) mod triage;
