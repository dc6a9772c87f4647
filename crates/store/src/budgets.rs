//! Budgets, the alerts they fired and the members of each org (whom alerts reach). Budgets
//! are stored as the server checked them (amounts in nanodollars, the scope and thresholds as
//! JSON text); what they mean is the server's business. The one decision made here is the
//! one that must hold across nodes and restarts: an alert's crossing is claimed by inserting
//! its key into `budget_alerts` in the same transaction as its events
//! ([`Store::fire_alert`]), so each crossing fires exactly once.

use crate::db::{Cols, Db, on_read, on_write};
use crate::events::append_claimed;
use crate::{NewEvent, Store, StoreError, StoredEvent, UserKey};

/// A budget as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRow {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub amount_nanos: i64,
    /// `month`, `week` or `day`.
    pub period: String,
    /// The engine's scope as JSON (`[]` for the whole org).
    pub scope: String,
    /// Whole percents as a JSON array.
    pub thresholds: String,
    pub forecast_alert: bool,
    /// Moves when what the budget measures changes, so it alerts afresh.
    pub revision: i64,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

/// The key and content of one crossing, claimed by [`Store::fire_alert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertClaim {
    pub budget_id: String,
    pub revision: i64,
    /// First day of the calendar period, `YYYY-MM-DD`.
    pub period_start: String,
    /// A percent (`80`) or `forecast`.
    pub crossing: String,
    pub org_id: String,
    pub fired_ms: i64,
    /// The alert as JSON, kept for the API.
    pub alert: String,
    /// Whether the crossing speaks: it is queued for every webhook of the org (a threshold
    /// passed together with a higher one is claimed silently).
    pub notify: bool,
}

impl AlertClaim {
    /// The alert's id: `{budget_id}:{revision}:{period_start}:{crossing}`.
    pub fn alert_id(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.budget_id, self.revision, self.period_start, self.crossing
        )
    }
}

/// An alert that fired, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredAlert {
    pub budget_id: String,
    pub revision: i64,
    pub period_start: String,
    pub crossing: String,
    pub fired_ms: i64,
    pub alert: String,
}

/// Why a budget could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("this org already has {0} {1}, the most allowed; delete one first")]
    TooMany(usize, &'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for BudgetError {
    fn from(e: sqlx::Error) -> Self {
        BudgetError::Store(e.into())
    }
}

pub(crate) const CLAIM_ALERT: &str = "INSERT INTO budget_alerts
     (budget_id, revision, period_start, crossing, org_id, fired_ms, alert)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (budget_id, revision, period_start, crossing) DO NOTHING";

const BUDGET_COLUMNS: &str = "id, org_id, name, amount_nanos, period, scope, thresholds, \
     forecast_alert, revision, created_by, created_at, updated_at";

fn budget_row(r: &impl Cols) -> Result<BudgetRow, sqlx::Error> {
    Ok(BudgetRow {
        id: r.text("id")?,
        org_id: r.text("org_id")?,
        name: r.text("name")?,
        amount_nanos: r.int("amount_nanos")?,
        period: r.text("period")?,
        scope: r.text("scope")?,
        thresholds: r.text("thresholds")?,
        forecast_alert: r.int("forecast_alert")? != 0,
        revision: r.int("revision")?,
        created_by: r.text("created_by")?,
        created_at: r.text("created_at")?,
        updated_at: r.text("updated_at")?,
    })
}

fn fired_alert(r: &impl Cols) -> Result<FiredAlert, sqlx::Error> {
    Ok(FiredAlert {
        budget_id: r.text("budget_id")?,
        revision: r.int("revision")?,
        period_start: r.text("period_start")?,
        crossing: r.text("crossing")?,
        fired_ms: r.int("fired_ms")?,
        alert: r.text("alert")?,
    })
}

/// The statement that serialises creations of one org's rows within a transaction: on
/// PostgreSQL an advisory lock on the org, so two nodes creating at once cannot both pass a
/// limit; SQLite's one writer connection already serialises them.
pub(crate) fn org_lock(db: &crate::db::Db) -> &'static str {
    db.pick("SELECT $1", "SELECT pg_advisory_xact_lock(hashtext($1))")
}

/// Inside the transaction `$tx`: takes the org's lock (`org_lock`), counts the org's rows of
/// `$table` and returns [`BudgetError::TooMany`] when there are already `$max`. A macro so one
/// text serves both backends' transaction types.
macro_rules! refuse_past_limit {
    ($tx:expr, $lock:expr, $table:literal, $org:expr, $max:expr) => {{
        let (tx, org, max): (_, &str, usize) = ($tx, $org, $max);
        sqlx::query($lock).bind(org).execute(&mut **tx).await?;
        let count: i64 = sqlx::query_scalar(concat!(
            "SELECT COUNT(*) FROM ",
            $table,
            " WHERE org_id = $1"
        ))
        .bind(org)
        .fetch_one(&mut **tx)
        .await?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= max {
            return Err(BudgetError::TooMany(max, $table));
        }
    }};
}

pub(crate) use refuse_past_limit;

impl Store {
    /// Stores a new budget unless its org already has `max_per_org`. The count and the insert
    /// share a transaction; on PostgreSQL the org's budgets are locked first, so two nodes
    /// creating at once cannot both pass the limit.
    pub async fn create_budget(
        &self,
        budget: &BudgetRow,
        max_per_org: usize,
    ) -> Result<(), BudgetError> {
        let lock = org_lock(&self.db);
        on_write!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            refuse_past_limit!(&mut tx, lock, "budgets", &budget.org_id, max_per_org);
            sqlx::query(&format!(
                "INSERT INTO budgets ({BUDGET_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ))
            .bind(&budget.id)
            .bind(&budget.org_id)
            .bind(&budget.name)
            .bind(budget.amount_nanos)
            .bind(&budget.period)
            .bind(&budget.scope)
            .bind(&budget.thresholds)
            .bind(i64::from(budget.forecast_alert))
            .bind(budget.revision)
            .bind(&budget.created_by)
            .bind(&budget.created_at)
            .bind(&budget.updated_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The org's budgets, oldest first.
    pub async fn budgets(&self, org_id: &str) -> Result<Vec<BudgetRow>, StoreError> {
        on_read!(&self.db, pool => {
            let rows = sqlx::query(&format!(
                "SELECT {BUDGET_COLUMNS} FROM budgets WHERE org_id = $1 ORDER BY created_at, id"
            ))
            .bind(org_id)
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(budget_row).collect::<Result<_, _>>()?)
        })
    }

    /// One budget of the org (`None` when the id is another org's or unknown).
    pub async fn budget(&self, org_id: &str, id: &str) -> Result<Option<BudgetRow>, StoreError> {
        on_write!(&self.db, pool => {
            let row = sqlx::query(&format!(
                "SELECT {BUDGET_COLUMNS} FROM budgets WHERE org_id = $1 AND id = $2"
            ))
            .bind(org_id)
            .bind(id)
            .fetch_optional(pool)
            .await?;
            Ok(row.as_ref().map(budget_row).transpose()?)
        })
    }

    /// Replaces a budget's fields (its id, org, creator and creation time stay); `false` when
    /// the org has no such budget.
    pub async fn update_budget(&self, budget: &BudgetRow) -> Result<bool, StoreError> {
        let done = on_write!(&self.db, pool => {
            sqlx::query(
                "UPDATE budgets SET name = $3, amount_nanos = $4, period = $5, scope = $6,
                        thresholds = $7, forecast_alert = $8, revision = $9, updated_at = $10
                 WHERE org_id = $1 AND id = $2",
            )
            .bind(&budget.org_id)
            .bind(&budget.id)
            .bind(&budget.name)
            .bind(budget.amount_nanos)
            .bind(&budget.period)
            .bind(&budget.scope)
            .bind(&budget.thresholds)
            .bind(i64::from(budget.forecast_alert))
            .bind(budget.revision)
            .bind(&budget.updated_at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done > 0)
    }

    /// Deletes a budget; its fired alerts stay as history. `false` when there was none.
    pub async fn delete_budget(&self, org_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = on_write!(&self.db, pool => {
            sqlx::query("DELETE FROM budgets WHERE org_id = $1 AND id = $2")
                .bind(org_id)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Orgs with at least one budget: what the timer evaluates.
    pub async fn budget_orgs(&self) -> Result<Vec<String>, StoreError> {
        on_read!(&self.db, pool => {
            Ok(sqlx::query_scalar("SELECT DISTINCT org_id FROM budgets ORDER BY org_id")
                .fetch_all(pool)
                .await?)
        })
    }

    /// Orgs with at least one recorded member: what the anomaly check looks at.
    pub async fn member_orgs(&self) -> Result<Vec<String>, StoreError> {
        on_read!(&self.db, pool => {
            Ok(sqlx::query_scalar("SELECT DISTINCT org_id FROM org_members ORDER BY org_id")
                .fetch_all(pool)
                .await?)
        })
    }

    /// The alerts the org's budgets fired in periods starting at or after `since`
    /// (`YYYY-MM-DD`), oldest first.
    pub async fn fired_alerts(
        &self,
        org_id: &str,
        since: &str,
    ) -> Result<Vec<FiredAlert>, StoreError> {
        on_write!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT budget_id, revision, period_start, crossing, fired_ms, alert
                 FROM budget_alerts WHERE org_id = $1 AND period_start >= $2
                 ORDER BY fired_ms, budget_id, crossing",
            )
            .bind(org_id)
            .bind(since)
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(fired_alert).collect::<Result<_, _>>()?)
        })
    }

    /// Claims `claim` and, when it was not claimed before, appends `events` (one per member)
    /// in the same transaction: `None` when the crossing had already fired.
    pub async fn fire_alert(
        &self,
        claim: &AlertClaim,
        events: Vec<NewEvent>,
    ) -> Result<Option<Vec<StoredEvent>>, StoreError> {
        append_claimed(&self.db, Some(claim), events, Vec::new()).await
    }

    /// Records `user` as a member of its org (alerts reach members' streams); `true` when the
    /// user was not known before.
    /// On SQLite the row is written in the event committer's next batch: a thousand users
    /// connecting at once took the single writer connection for a commit each, and the
    /// events of runs already going waited behind them.
    pub async fn record_member(&self, user: &UserKey, now_ms: i64) -> Result<bool, StoreError> {
        match &self.db {
            Db::Sqlite { .. } => self.committer.member(user.clone(), now_ms).await,
            Db::Postgres(_) => insert_member(&self.db, user, now_ms).await,
        }
    }

    /// Up to `limit` members of the org, in user order.
    pub async fn org_members(
        &self,
        org_id: &str,
        limit: usize,
    ) -> Result<Vec<UserKey>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_write!(&self.db, pool => {
            let users: Vec<String> = sqlx::query_scalar(
                "SELECT user_id FROM org_members WHERE org_id = $1 ORDER BY user_id LIMIT $2",
            )
            .bind(org_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(users
                .into_iter()
                .map(|user_id| UserKey {
                    org_id: org_id.to_string(),
                    user_id,
                })
                .collect())
        })
    }
}

/// Records `user` as a member of its org unless it already is; `true` when it was new.
const INSERT_MEMBER: &str = "INSERT INTO org_members (org_id, user_id, first_seen_ms)
     VALUES ($1, $2, $3) ON CONFLICT (org_id, user_id) DO NOTHING";

/// [`Store::record_member`] as a statement of its own.
pub(crate) async fn insert_member(
    db: &Db,
    user: &UserKey,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let done = on_write!(db, pool => {
        sqlx::query(INSERT_MEMBER)
            .bind(&user.org_id)
            .bind(&user.user_id)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(done > 0)
}

/// [`Store::record_member`] for each of `members` in the transaction open on `conn` (the
/// committer's batch); whether each was new.
pub(crate) fn sqlite_insert_members(
    conn: &rusqlite::Connection,
    members: &[(UserKey, i64)],
) -> Result<Vec<bool>, rusqlite::Error> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let mut insert = conn.prepare_cached(INSERT_MEMBER)?;
    members
        .iter()
        .map(|(user, at)| {
            insert
                .execute(rusqlite::params![user.org_id, user.user_id, at])
                .map(|n| n > 0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(org: &str, id: &str) -> BudgetRow {
        BudgetRow {
            id: id.into(),
            org_id: org.into(),
            name: "all".into(),
            amount_nanos: 5_000_000_000,
            period: "month".into(),
            scope: "[]".into(),
            thresholds: "[50,80,100]".into(),
            forecast_alert: true,
            revision: 1,
            created_by: "alice".into(),
            created_at: "2026-11-01T00:00:00.000Z".into(),
            updated_at: "2026-11-01T00:00:00.000Z".into(),
        }
    }

    fn claim(crossing: &str) -> AlertClaim {
        AlertClaim {
            budget_id: "b1".into(),
            revision: 1,
            period_start: "2026-11-01".into(),
            crossing: crossing.into(),
            org_id: "acme".into(),
            fired_ms: 1,
            alert: "{}".into(),
            notify: true,
        }
    }

    fn event(user: &str) -> NewEvent {
        NewEvent {
            user: UserKey {
                org_id: "acme".into(),
                user_id: user.into(),
            },
            run_id: None,
            thread_id: String::new(),
            ts_ms: 1,
            render: Box::new(|seq| format!("{{\"seq\":{seq}}}")),
        }
    }

    #[tokio::test]
    async fn budgets_are_per_org_and_limited() {
        for t in crate::test_support::stores().await {
            let s = &t.store;
            s.create_budget(&budget("acme", "b1"), 2).await.unwrap();
            s.create_budget(&budget("acme", "b2"), 2).await.unwrap();
            assert!(matches!(
                s.create_budget(&budget("acme", "b3"), 2).await,
                Err(BudgetError::TooMany(2, "budgets"))
            ));
            s.create_budget(&budget("other", "b4"), 2).await.unwrap();
            assert_eq!(s.budgets("acme").await.unwrap().len(), 2);
            assert_eq!(s.budget("other", "b1").await.unwrap(), None);
            let mut b = s.budget("acme", "b1").await.unwrap().unwrap();
            b.amount_nanos = 7;
            b.revision = 2;
            assert!(s.update_budget(&b).await.unwrap());
            assert_eq!(s.budget("acme", "b1").await.unwrap(), Some(b.clone()));
            b.org_id = "other".into();
            assert!(!s.update_budget(&b).await.unwrap(), "another org's id");
            assert!(!s.delete_budget("other", "b1").await.unwrap());
            assert!(s.delete_budget("acme", "b1").await.unwrap());
            assert_eq!(s.budget_orgs().await.unwrap(), ["acme", "other"]);
        }
    }

    #[tokio::test]
    async fn a_crossing_fires_once_with_its_events() {
        for t in crate::test_support::stores().await {
            let s = &t.store;
            let other = crate::Store::open(&t.url).await.unwrap();
            let c = claim("80");
            let (a, b) = tokio::join!(
                s.fire_alert(&c, vec![event("ann"), event("bo")]),
                other.fire_alert(&c, vec![event("ann"), event("bo")])
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(a.is_some() != b.is_some(), "exactly one claimant wins");
            let ann = UserKey {
                org_id: "acme".into(),
                user_id: "ann".into(),
            };
            assert_eq!(s.head_seq(&ann).await.unwrap(), 1);
            assert!(
                s.fire_alert(&claim("80"), vec![event("ann")])
                    .await
                    .unwrap()
                    .is_none()
            );
            assert_eq!(
                s.head_seq(&ann).await.unwrap(),
                1,
                "no event without a claim"
            );
            // Another crossing of the same budget, with no member yet, still fires.
            assert_eq!(
                s.fire_alert(&claim("100"), vec![]).await.unwrap(),
                Some(vec![])
            );
            let fired = s.fired_alerts("acme", "2026-11-01").await.unwrap();
            assert_eq!(fired.len(), 2);
            assert!(
                s.fired_alerts("acme", "2026-12-01")
                    .await
                    .unwrap()
                    .is_empty()
            );
            other.close().await;
        }
    }

    #[tokio::test]
    async fn members_are_recorded_once() {
        for t in crate::test_support::stores().await {
            let s = &t.store;
            let ann = UserKey {
                org_id: "acme".into(),
                user_id: "ann".into(),
            };
            assert!(s.record_member(&ann, 1).await.unwrap());
            assert!(!s.record_member(&ann, 2).await.unwrap());
            assert_eq!(s.org_members("acme", 10).await.unwrap(), vec![ann]);
            assert_eq!(s.member_orgs().await.unwrap(), ["acme"]);
            assert!(s.org_members("other", 10).await.unwrap().is_empty());
        }
    }
}
