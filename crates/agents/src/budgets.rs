//! The org's budgets as the agents reach them: [`OrgBudgets`], implemented by the server over
//! the very code behind `/api/budgets` (the same checks, the same limit per org, the same
//! spent, forecast and state), so a budget set from the chat is the budget the REST API and
//! the Budgets panel show. The agents only describe what they want; every check and figure is
//! the implementation's.

use apogee_analytics::{BudgetPeriod, BudgetState, Nanos, Period, Scope};
use chrono::{DateTime, Utc};

/// A budget the chat asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetDraft {
    pub amount_usd: f64,
    pub period: BudgetPeriod,
    pub scope: Scope,
    /// Percents as the user typed them; `None`: the defaults.
    pub thresholds: Option<Vec<i64>>,
}

/// A budget and where it stands in its current period, as `GET /api/budgets` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetStatus {
    pub id: String,
    pub name: String,
    pub amount: Nanos,
    pub period: BudgetPeriod,
    pub scope: Scope,
    pub thresholds: Vec<u32>,
    /// The whole calendar period `now` falls in.
    pub window: Period,
    pub spent: Nanos,
    pub forecast: Nanos,
    /// Spent over the amount, in percent.
    pub percent: f64,
    pub state: BudgetState,
}

/// Why a budget command was not carried out. All but [`BudgetRefusal::Failed`] are answers to
/// the user, not failures of the run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetRefusal {
    /// The budget is not valid (amount, thresholds, scope): the message says why.
    #[error("{0}")]
    Invalid(String),
    /// The org has as many budgets as it may.
    #[error("{0}")]
    LimitReached(String),
    /// The budget is gone (deleted meanwhile).
    #[error("that budget no longer exists")]
    NotFound,
    /// The store could not be reached or read.
    #[error("could not read or write budgets: {0}")]
    Failed(String),
}

/// One org's budgets, already scoped to the asking user's org by whoever built it.
#[async_trait::async_trait]
pub trait OrgBudgets: Send + Sync {
    /// Every budget of the org, oldest first, with its standing at `now`.
    async fn list(&self, now: DateTime<Utc>) -> Result<Vec<BudgetStatus>, BudgetRefusal>;
    /// Creates a budget (checked, within the org's limit) and returns it as it stands.
    async fn create(
        &self,
        draft: BudgetDraft,
        now: DateTime<Utc>,
    ) -> Result<BudgetStatus, BudgetRefusal>;
    /// Changes the amount (and, when given, the thresholds) of budget `id`.
    async fn change(
        &self,
        id: &str,
        amount_usd: f64,
        thresholds: Option<Vec<i64>>,
        now: DateTime<Utc>,
    ) -> Result<BudgetStatus, BudgetRefusal>;
    /// Deletes budget `id`.
    async fn delete(&self, id: &str) -> Result<(), BudgetRefusal>;
}
