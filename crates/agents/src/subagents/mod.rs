//! The sub-agents the supervisor hands work to. Each is one `work` function: the body run
//! between its `agent_started` and `agent_completed` ([`crate::scope::SubAgent::run`]). It
//! says what it is doing (`agent_thinking`), calls its tools and returns its result.

pub(crate) mod anomaly;
pub(crate) mod data;
pub(crate) mod data_helper;
pub(crate) mod optimization;
pub(crate) mod performance;
pub(crate) mod report;
pub(crate) mod triage;
