//! Creating, changing and deleting an org's budgets and reading where each stands: the one
//! path `/api/budgets` ([`super::routes`]) and the chat ([`MemberBudgets`], the agents'
//! [`OrgBudgets`]) both take. The checks are [`BudgetSpec`]'s, the limit per org is
//! [`MAX_BUDGETS_PER_ORG`] enforced by the store's transaction, and the figures are
//! [`standing`]'s, so a budget set from the chat is the one the API and the Budgets panel show,
//! with the same spent, forecast and state.

use std::sync::Arc;

use apogee_agents::{BudgetDraft, BudgetRefusal, BudgetStatus, OrgBudgets};
use apogee_analytics::{OrgUsageQueries, QueryError};
use apogee_store::{BudgetError, BudgetRow, OrgUsage, Store, StoreError, UserKey};
use chrono::{DateTime, Utc};

use super::evaluate::{Standing, standing};
use super::spec::{BudgetChange, BudgetSpec, NewBudget};
use super::{Budgets, MAX_BUDGETS_PER_ORG};

fn now_text() -> String {
    apogee_protocol::time::record_time(Utc::now())
}

/// The stored row of `spec`, on top of `base`'s identity and dates.
fn row_of(spec: &BudgetSpec, base: BudgetRow) -> BudgetRow {
    let (scope, thresholds) = spec.stored_texts();
    BudgetRow {
        name: spec.name.trim().to_string(),
        amount_nanos: spec.amount_nanos(),
        period: spec.period.as_str().to_string(),
        scope,
        thresholds,
        forecast_alert: spec.forecast_alert,
        ..base
    }
}

/// Stores a new budget of `user`'s org, unless the org already has [`MAX_BUDGETS_PER_ORG`],
/// and has it evaluated at once (usage already over a threshold alerts now, not at the next
/// ingest).
pub async fn create(
    store: &Store,
    evaluator: &Budgets,
    user: &UserKey,
    spec: &BudgetSpec,
) -> Result<BudgetRow, BudgetError> {
    let now = now_text();
    let row = row_of(
        spec,
        BudgetRow {
            id: format!("bud_{}", uuid::Uuid::now_v7().simple()),
            org_id: user.org_id.clone(),
            name: String::new(),
            amount_nanos: 0,
            period: String::new(),
            scope: String::new(),
            thresholds: String::new(),
            forecast_alert: false,
            revision: 1,
            created_by: user.user_id.clone(),
            created_at: now.clone(),
            updated_at: now,
        },
    );
    store.create_budget(&row, MAX_BUDGETS_PER_ORG).await?;
    evaluator.usage_changed(&row.org_id);
    Ok(row)
}

/// Stores `row` as `after`. A change of what the budget measures (anything but its name)
/// starts a new revision, whose crossings alert afresh. `None` when the budget is gone.
pub async fn change(
    store: &Store,
    evaluator: &Budgets,
    row: BudgetRow,
    before: &BudgetSpec,
    after: &BudgetSpec,
) -> Result<Option<BudgetRow>, StoreError> {
    let revision = if before.measures_differently(after) {
        row.revision.saturating_add(1)
    } else {
        row.revision
    };
    let row = row_of(
        after,
        BudgetRow {
            revision,
            updated_at: now_text(),
            ..row
        },
    );
    if !store.update_budget(&row).await? {
        return Ok(None);
    }
    evaluator.usage_changed(&row.org_id);
    Ok(Some(row))
}

/// Where a stored budget stands at `now`.
pub async fn read(
    usage: &dyn OrgUsageQueries,
    row: &BudgetRow,
    now: DateTime<Utc>,
) -> Result<(BudgetSpec, Standing), ReadError> {
    let spec = BudgetSpec::from_row(row).map_err(|e| ReadError::Unreadable(row.id.clone(), e))?;
    let standing = standing(usage, &spec, now).await?;
    Ok((spec, standing))
}

/// Why a budget's standing could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("budget {0}: {1}")]
    Unreadable(String, String),
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// The budgets of one member's org, for the chat: every operation goes through the functions
/// above, with the member's org and name from their authenticated session.
pub struct MemberBudgets {
    store: Store,
    evaluator: Arc<Budgets>,
    user: UserKey,
    usage: OrgUsage,
}

impl MemberBudgets {
    pub fn new(store: Store, evaluator: Arc<Budgets>, user: UserKey, usage: OrgUsage) -> Self {
        MemberBudgets {
            store,
            evaluator,
            user,
            usage,
        }
    }

    async fn status(
        &self,
        row: &BudgetRow,
        now: DateTime<Utc>,
    ) -> Result<BudgetStatus, BudgetRefusal> {
        let (spec, s) = read(&self.usage, row, now).await.map_err(failed)?;
        Ok(BudgetStatus {
            id: row.id.clone(),
            name: spec.name.clone(),
            amount: spec.amount,
            period: spec.period,
            scope: spec.scope.clone(),
            thresholds: spec.thresholds.clone(),
            window: s.period,
            spent: s.spent,
            forecast: s.forecast,
            percent: s.percent(&spec),
            state: s.state(&spec),
        })
    }

    async fn found(&self, id: &str) -> Result<BudgetRow, BudgetRefusal> {
        self.store
            .budget(&self.user.org_id, id)
            .await
            .map_err(failed)?
            .ok_or(BudgetRefusal::NotFound)
    }
}

fn failed(e: impl std::fmt::Display) -> BudgetRefusal {
    BudgetRefusal::Failed(e.to_string())
}

#[async_trait::async_trait]
impl OrgBudgets for MemberBudgets {
    async fn list(&self, now: DateTime<Utc>) -> Result<Vec<BudgetStatus>, BudgetRefusal> {
        let rows = self
            .store
            .budgets(&self.user.org_id)
            .await
            .map_err(failed)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.status(row, now).await?);
        }
        Ok(out)
    }

    async fn create(
        &self,
        draft: BudgetDraft,
        now: DateTime<Utc>,
    ) -> Result<BudgetStatus, BudgetRefusal> {
        let spec = BudgetSpec::new(NewBudget {
            name: None,
            amount_usd: draft.amount_usd,
            period: draft.period,
            scope: draft.scope,
            thresholds: draft.thresholds,
            forecast_alert: None,
        })
        .map_err(BudgetRefusal::Invalid)?;
        let row = create(&self.store, &self.evaluator, &self.user, &spec)
            .await
            .map_err(|e| match e {
                BudgetError::TooMany(..) => BudgetRefusal::LimitReached(e.to_string()),
                BudgetError::Store(e) => failed(e),
            })?;
        self.status(&row, now).await
    }

    async fn change(
        &self,
        id: &str,
        amount_usd: f64,
        thresholds: Option<Vec<i64>>,
        now: DateTime<Utc>,
    ) -> Result<BudgetStatus, BudgetRefusal> {
        let row = self.found(id).await?;
        let before = BudgetSpec::from_row(&row).map_err(BudgetRefusal::Failed)?;
        let after = before
            .clone()
            .with(BudgetChange {
                amount_usd: Some(amount_usd),
                thresholds,
                ..BudgetChange::default()
            })
            .map_err(BudgetRefusal::Invalid)?;
        let row = change(&self.store, &self.evaluator, row, &before, &after)
            .await
            .map_err(failed)?
            .ok_or(BudgetRefusal::NotFound)?;
        self.status(&row, now).await
    }

    async fn delete(&self, id: &str) -> Result<(), BudgetRefusal> {
        if self
            .store
            .delete_budget(&self.user.org_id, id)
            .await
            .map_err(failed)?
        {
            Ok(())
        } else {
            Err(BudgetRefusal::NotFound)
        }
    }
}
