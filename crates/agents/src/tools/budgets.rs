//! The budget tools: `list_budgets`, `set_budget` (a new budget, or a new amount for one) and
//! `delete_budget`, each one call of [`OrgBudgets`] — the code behind `/api/budgets`, so what
//! they check and compute is the API's. A refusal (an invalid amount, the org's limit) is the
//! tool's result, for the answer to explain; only an unreachable store fails the step.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{ToolCall, ToolError, ToolOutput};
use crate::budgets::{BudgetDraft, BudgetRefusal, BudgetStatus, OrgBudgets};

/// A budget and its standing as tool results and `agent_completed.data` show it.
pub(crate) fn status_json(b: &BudgetStatus) -> Value {
    json!({
        "id": b.id,
        "name": b.name,
        "amount_usd": b.amount.usd(),
        "period": b.period,
        "scope": b.scope,
        "thresholds": b.thresholds,
        "from": apogee_protocol::time::instant(b.window.from),
        "to": apogee_protocol::time::instant(b.window.to),
        "spent_nanos": b.spent,
        "spent_usd": b.spent.usd(),
        "forecast_nanos": b.forecast,
        "forecast_usd": b.forecast.usd(),
        "percent": (b.percent * 10.0).round() / 10.0,
        "state": b.state,
    })
}

fn refusal_json(r: &BudgetRefusal) -> Value {
    let kind = match r {
        BudgetRefusal::Invalid(_) => "invalid",
        BudgetRefusal::LimitReached(_) => "limit_reached",
        BudgetRefusal::NotFound => "not_found",
        BudgetRefusal::Failed(_) => "failed",
    };
    json!({ "refused": kind, "reason": r.to_string() })
}

/// A store failure fails the step; any other refusal is the result.
fn settle<T>(r: Result<T, BudgetRefusal>) -> Result<Result<T, BudgetRefusal>, ToolError> {
    match r {
        Err(BudgetRefusal::Failed(e)) => Err(ToolError::Budgets(e)),
        other => Ok(other),
    }
}

pub(crate) fn list_budgets<'a>(
    budgets: &'a dyn OrgBudgets,
    now: DateTime<Utc>,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Vec<BudgetStatus>>, ToolError>> + Send + 'a> {
    ToolCall {
        name: "list_budgets",
        args: json!({}),
        run: async move {
            let list = budgets
                .list(now)
                .await
                .map_err(|e| ToolError::Budgets(e.to_string()))?;
            let heading = list
                .iter()
                .filter(|b| b.forecast > b.amount || b.spent >= b.amount)
                .count();
            Ok(ToolOutput {
                summary: match list.len() {
                    0 => "no budgets".into(),
                    n => format!(
                        "{n} budget{}, {heading} over or heading over",
                        if n == 1 { "" } else { "s" }
                    ),
                },
                data: json!({ "budgets": list.iter().map(status_json).collect::<Vec<_>>() }),
                value: list,
            })
        },
    }
}

/// What `set_budget` does.
#[derive(Debug, Clone)]
pub(crate) enum SetBudget {
    Create(BudgetDraft),
    /// A new amount (and thresholds) for an existing budget.
    Change {
        id: String,
        amount_usd: f64,
        thresholds: Option<Vec<i64>>,
    },
}

pub(crate) fn set_budget<'a>(
    budgets: &'a dyn OrgBudgets,
    what: SetBudget,
    now: DateTime<Utc>,
) -> ToolCall<
    impl Future<Output = Result<ToolOutput<Result<BudgetStatus, BudgetRefusal>>, ToolError>> + Send + 'a,
> {
    let args = match &what {
        SetBudget::Create(d) => json!({
            "action": "create",
            "amount_usd": d.amount_usd,
            "period": d.period,
            "scope": d.scope,
            "thresholds": d.thresholds,
        }),
        SetBudget::Change {
            id,
            amount_usd,
            thresholds,
            ..
        } => json!({
            "action": "change",
            "id": id,
            "amount_usd": amount_usd,
            "thresholds": thresholds,
        }),
    };
    ToolCall {
        name: "set_budget",
        args,
        run: async move {
            let result = match what {
                SetBudget::Create(d) => settle(budgets.create(d, now).await)?,
                SetBudget::Change {
                    id,
                    amount_usd,
                    thresholds,
                    ..
                } => settle(budgets.change(&id, amount_usd, thresholds, now).await)?,
            };
            let (summary, data) = match &result {
                Ok(b) => (
                    format!(
                        "{} a {} for {}: {} spent so far, {} forecast",
                        b.amount.display_usd(),
                        b.period.as_str(),
                        b.name,
                        b.spent.display_usd(),
                        b.forecast.display_usd()
                    ),
                    status_json(b),
                ),
                Err(r) => (format!("refused: {r}"), refusal_json(r)),
            };
            Ok(ToolOutput {
                summary,
                data,
                value: result,
            })
        },
    }
}

pub(crate) fn delete_budget<'a>(
    budgets: &'a dyn OrgBudgets,
    budget: &'a BudgetStatus,
) -> ToolCall<
    impl Future<Output = Result<ToolOutput<Result<(), BudgetRefusal>>, ToolError>> + Send + 'a,
> {
    ToolCall {
        name: "delete_budget",
        args: json!({ "id": budget.id, "name": budget.name }),
        run: async move {
            let result = settle(budgets.delete(&budget.id).await)?;
            let (summary, data) = match &result {
                Ok(()) => (
                    format!("deleted {}", budget.name),
                    json!({ "deleted": budget.id }),
                ),
                Err(r) => (format!("refused: {r}"), refusal_json(r)),
            };
            Ok(ToolOutput {
                summary,
                data,
                value: result,
            })
        },
    }
}
