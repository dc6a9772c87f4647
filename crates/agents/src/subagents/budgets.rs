//! The `budgets` agent: carries out a budget command through the org's budgets (the code
//! behind `/api/budgets`). It lists the budgets first, so a set on a scope that already has
//! one changes that budget instead of adding a second, and a removal finds the budget the
//! question means; then it calls `set_budget` or `delete_budget` when the command is complete
//! and unambiguous. What is missing or ambiguous is returned for the answer to ask about.

use apogee_analytics::{Nanos, Scope};
use chrono::{DateTime, Utc};

use crate::budgets::{BudgetDraft, BudgetRefusal, BudgetStatus, OrgBudgets};
use crate::plan::{BudgetCommand, QuestionPlan};
use crate::scope::{Agent, Done, StepError};
use crate::tools::budgets::{SetBudget, delete_budget, list_budgets, set_budget};

/// What a budget command came to.
#[derive(Debug, Clone)]
pub(crate) enum BudgetResult {
    /// The org's budgets (a list, or the budgets part of "are we on track").
    Listed(Vec<BudgetStatus>),
    /// Created (`was` is `None`) or given a new amount.
    Set {
        budget: BudgetStatus,
        was: Option<Nanos>,
    },
    /// The budgets code refused it.
    Refused(BudgetRefusal),
    /// A set without an amount; `existing` is the budget already on that scope, if any.
    NeedAmount {
        existing: Vec<BudgetStatus>,
    },
    /// A new budget without a calendar.
    NeedPeriod {
        amount_cents: i64,
    },
    /// Several budgets fit; the question must say which calendar.
    Ambiguous {
        candidates: Vec<BudgetStatus>,
    },
    Removed(BudgetStatus),
    /// Nothing to remove on that scope; the org's budgets.
    NoneToRemove(Vec<BudgetStatus>),
}

/// The same scope, whatever order its filters and values were written in.
pub(crate) fn same_scope(a: &Scope, b: &Scope) -> bool {
    let key = |s: &Scope| {
        let mut f: Vec<(String, bool, Vec<String>)> = s
            .filters
            .iter()
            .map(|f| {
                let mut v = f.values.clone();
                v.sort();
                (f.dimension.to_string(), f.exclude, v)
            })
            .collect();
        f.sort();
        f
    };
    key(a) == key(b)
}

pub(crate) async fn work(
    agent: Agent,
    budgets: &dyn OrgBudgets,
    plan: &QuestionPlan,
    now: DateTime<Utc>,
) -> Result<Done<BudgetResult>, StepError> {
    let command = plan.budget.clone().unwrap_or(BudgetCommand::List);
    agent
        .think("Reading the org's budgets with their spend so far and forecast.")
        .await?;
    let all = agent.call(list_budgets(budgets, now)).await?;
    let on_scope: Vec<BudgetStatus> = all
        .iter()
        .filter(|b| same_scope(&b.scope, &plan.scope))
        .cloned()
        .collect();
    let result = match command {
        BudgetCommand::List | BudgetCommand::OnTrack => BudgetResult::Listed(all),
        BudgetCommand::Set {
            amount_cents,
            period,
            thresholds,
        } => {
            let fits: Vec<BudgetStatus> = on_scope
                .into_iter()
                .filter(|b| period.is_none_or(|p| p == b.period))
                .collect();
            let thresholds = (!thresholds.is_empty()).then_some(thresholds);
            match (amount_cents, period, fits.as_slice()) {
                (None, ..) => BudgetResult::NeedAmount { existing: fits },
                (Some(_), None, [_, _, ..]) => BudgetResult::Ambiguous { candidates: fits },
                (Some(cents), None, []) => BudgetResult::NeedPeriod {
                    amount_cents: cents,
                },
                (Some(cents), _, [one, ..]) => {
                    agent
                        .think(format!(
                            "This scope already has a {} budget: changing its amount rather than adding a second.",
                            one.period.adjective()
                        ))
                        .await?;
                    let what = SetBudget::Change {
                        id: one.id.clone(),
                        amount_usd: cents as f64 / 100.0,
                        thresholds,
                    };
                    settled(
                        agent.call(set_budget(budgets, what, now)).await?,
                        Some(one.amount),
                    )
                }
                (Some(cents), Some(p), []) => {
                    agent
                        .think("Creating the budget; the budgets code checks it as the API does.")
                        .await?;
                    let draft = BudgetDraft {
                        amount_usd: cents as f64 / 100.0,
                        period: p,
                        scope: plan.scope.clone(),
                        thresholds,
                    };
                    settled(
                        agent
                            .call(set_budget(budgets, SetBudget::Create(draft), now))
                            .await?,
                        None,
                    )
                }
            }
        }
        BudgetCommand::Remove { period } => {
            let fits: Vec<BudgetStatus> = on_scope
                .into_iter()
                .filter(|b| period.is_none_or(|p| p == b.period))
                .collect();
            match fits.as_slice() {
                [] => BudgetResult::NoneToRemove(all),
                [one] => match agent.call(delete_budget(budgets, one)).await? {
                    Ok(()) => BudgetResult::Removed(one.clone()),
                    Err(refusal) => BudgetResult::Refused(refusal),
                },
                _ => BudgetResult::Ambiguous { candidates: fits },
            }
        }
    };
    let summary = match &result {
        BudgetResult::Listed(l) => format!("read {} budgets", l.len()),
        BudgetResult::Set { was: None, .. } => "created the budget".into(),
        BudgetResult::Set { .. } => "changed the budget's amount".into(),
        BudgetResult::Refused(_) => "the budget was refused".into(),
        BudgetResult::NeedAmount { .. } => "no amount given: asking for it".into(),
        BudgetResult::NeedPeriod { .. } => "no calendar given: asking for it".into(),
        BudgetResult::Ambiguous { .. } => "several budgets fit: asking which".into(),
        BudgetResult::Removed(_) => "deleted the budget".into(),
        BudgetResult::NoneToRemove(_) => "no budget on that scope".into(),
    };
    Ok(Done::new(result, summary))
}

fn settled(r: Result<BudgetStatus, BudgetRefusal>, was: Option<Nanos>) -> BudgetResult {
    match r {
        Ok(budget) => BudgetResult::Set { budget, was },
        Err(refusal) => BudgetResult::Refused(refusal),
    }
}
