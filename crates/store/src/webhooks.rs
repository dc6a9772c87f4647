//! Webhooks per org and their delivery outbox. A crossing's deliveries are inserted in the
//! transaction that claims it (see `budgets`), one per webhook of the org, so none is lost
//! or doubled by a crash or a second node; nodes then take due deliveries under a lease
//! ([`Store::take_due_deliveries`]) and record each attempt's outcome.

use std::collections::HashMap;

use sqlx::QueryBuilder;

use crate::budgets::{BudgetError, org_lock, refuse_past_limit};
use crate::db::{Cols, on_read, on_write};
use crate::{Store, StoreError};

/// A webhook as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: String,
    pub org_id: String,
    pub url: String,
    /// `slack`, `teams` or `json`.
    pub format: String,
    pub secret: String,
    pub created_by: String,
    pub created_at: String,
}

/// What a webhook's deliveries came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    /// The error of the latest attempt that failed, if any.
    pub last_error: Option<String>,
}

/// A delivery taken for an attempt, with where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: String,
    pub webhook: WebhookRow,
    pub alert: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// Inserts a claimed crossing's deliveries, one per webhook of its org (bound in order:
/// alert id, alert JSON, now, org).
pub(crate) const QUEUE_DELIVERIES: &str = "INSERT INTO webhook_deliveries
     (id, webhook_id, org_id, alert_id, alert, status, attempts, next_attempt_ms,
      leased_until_ms, created_ms)
     SELECT $1 || '@' || id, id, org_id, $1, $2, 'pending', 0, $3, 0, $3
     FROM webhooks WHERE org_id = $4
     ON CONFLICT (webhook_id, alert_id) DO NOTHING";

const WEBHOOK_COLUMNS: &str = "id, org_id, url, format, secret, created_by, created_at";

fn webhook_row(r: &impl Cols) -> Result<WebhookRow, sqlx::Error> {
    Ok(WebhookRow {
        id: r.text("id")?,
        org_id: r.text("org_id")?,
        url: r.text("url")?,
        format: r.text("format")?,
        secret: r.text("secret")?,
        created_by: r.text("created_by")?,
        created_at: r.text("created_at")?,
    })
}

impl Store {
    /// Stores a webhook unless its org already has `max_per_org`.
    pub async fn create_webhook(
        &self,
        hook: &WebhookRow,
        max_per_org: usize,
    ) -> Result<(), BudgetError> {
        let lock = org_lock(&self.db);
        on_write!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            refuse_past_limit!(&mut tx, lock, "webhooks", &hook.org_id, max_per_org);
            sqlx::query(&format!(
                "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .bind(&hook.id)
            .bind(&hook.org_id)
            .bind(&hook.url)
            .bind(&hook.format)
            .bind(&hook.secret)
            .bind(&hook.created_by)
            .bind(&hook.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The org's webhooks, oldest first, each with what its deliveries came to.
    pub async fn webhooks(
        &self,
        org_id: &str,
    ) -> Result<Vec<(WebhookRow, DeliveryStats)>, StoreError> {
        let (hooks, counts, errors) = on_read!(&self.db, pool => {
            let hooks = sqlx::query(&format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE org_id = $1 ORDER BY created_at, id"
            ))
            .bind(org_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(webhook_row)
            .collect::<Result<Vec<_>, _>>()?;
            let counts: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT webhook_id, status, COUNT(*) FROM webhook_deliveries
                 WHERE org_id = $1 GROUP BY webhook_id, status",
            )
            .bind(org_id)
            .fetch_all(pool)
            .await?;
            let errors: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT d.webhook_id, d.last_error FROM webhook_deliveries d
                 WHERE d.org_id = $1 AND d.last_error IS NOT NULL
                 ORDER BY d.created_ms DESC, d.id DESC",
            )
            .bind(org_id)
            .fetch_all(pool)
            .await?;
            (hooks, counts, errors)
        });
        let mut stats: HashMap<String, DeliveryStats> = HashMap::new();
        for (hook, status, n) in counts {
            let s = stats.entry(hook).or_default();
            match status.as_str() {
                "pending" => s.pending = n,
                "delivered" => s.delivered = n,
                _ => s.failed += n,
            }
        }
        for (hook, error) in errors {
            let s = stats.entry(hook).or_default();
            if s.last_error.is_none() {
                s.last_error = error;
            }
        }
        Ok(hooks
            .into_iter()
            .map(|h| {
                let s = stats.remove(&h.id).unwrap_or_default();
                (h, s)
            })
            .collect())
    }

    /// Deletes a webhook and its deliveries; `false` when the org has no such webhook.
    pub async fn delete_webhook(&self, org_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = on_write!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("DELETE FROM webhooks WHERE org_id = $1 AND id = $2")
                .bind(org_id)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM webhook_deliveries WHERE org_id = $1 AND webhook_id = $2")
                .bind(org_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            done
        });
        Ok(done > 0)
    }

    /// Takes up to `limit` deliveries due at `now_ms` for one attempt each: they are leased
    /// until `lease_until_ms` (no other node takes them meanwhile; a node that dies leaves
    /// them to be taken again then) and their attempt is counted.
    pub async fn take_due_deliveries(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let pick = self.db.pick(
            "SELECT id FROM webhook_deliveries
             WHERE status = 'pending' AND next_attempt_ms <= $1 AND leased_until_ms <= $1
             ORDER BY next_attempt_ms LIMIT $3",
            "SELECT id FROM webhook_deliveries
             WHERE status = 'pending' AND next_attempt_ms <= $1 AND leased_until_ms <= $1
             ORDER BY next_attempt_ms LIMIT $3 FOR UPDATE SKIP LOCKED",
        );
        let sql = format!(
            "UPDATE webhook_deliveries SET leased_until_ms = $2, attempts = attempts + 1
             WHERE id IN ({pick}) RETURNING id, webhook_id, alert, attempts"
        );
        let taken: Vec<(String, String, String, i64)> = on_write!(&self.db, pool => {
            sqlx::query_as(&sql)
                .bind(now_ms)
                .bind(lease_until_ms)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let hooks: HashMap<String, WebhookRow> = on_write!(&self.db, pool => {
            let mut q = QueryBuilder::new(format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id IN ("
            ));
            let mut ids = q.separated(", ");
            for (_, hook, _, _) in &taken {
                ids.push_bind(hook);
            }
            q.push(")");
            q.build()
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| webhook_row(r).map(|h| (h.id.clone(), h)))
                .collect::<Result<_, _>>()?
        });
        Ok(taken
            .into_iter()
            .filter_map(|(id, hook, alert, attempts)| {
                // A webhook deleted meanwhile: its deliveries went with it.
                hooks.get(&hook).map(|webhook| DueDelivery {
                    id,
                    webhook: webhook.clone(),
                    alert,
                    attempts,
                })
            })
            .collect())
    }

    /// Records an attempt's outcome: delivered (`error` is `None`), to be tried again at
    /// `retry_at_ms`, or (neither) given up.
    pub async fn delivery_attempted(
        &self,
        id: &str,
        now_ms: i64,
        error: Option<&str>,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let (status, next, done) = match (error, retry_at_ms) {
            (None, _) => ("delivered", now_ms, Some(now_ms)),
            (Some(_), Some(at)) => ("pending", at, None),
            (Some(_), None) => ("failed", now_ms, Some(now_ms)),
        };
        on_write!(&self.db, pool => {
            sqlx::query(
                "UPDATE webhook_deliveries
                 SET status = $2, next_attempt_ms = $3, leased_until_ms = 0, done_ms = $4,
                     last_error = COALESCE($5, last_error)
                 WHERE id = $1",
            )
            .bind(id)
            .bind(status)
            .bind(next)
            .bind(done)
            .bind(error)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AlertClaim;

    fn hook(id: &str, org: &str) -> WebhookRow {
        WebhookRow {
            id: id.into(),
            org_id: org.into(),
            url: "http://127.0.0.1:9/hook".into(),
            format: "json".into(),
            secret: "s".into(),
            created_by: "ann".into(),
            created_at: "2026-11-01T00:00:00Z".into(),
        }
    }

    #[tokio::test]
    async fn a_claimed_crossing_queues_one_delivery_per_webhook() {
        for t in crate::test_support::stores().await {
            let s = &t.store;
            s.create_webhook(&hook("w1", "acme"), 2).await.unwrap();
            s.create_webhook(&hook("w2", "acme"), 2).await.unwrap();
            assert!(s.create_webhook(&hook("w3", "acme"), 2).await.is_err());
            s.create_webhook(&hook("w4", "other"), 2).await.unwrap();
            let claim = AlertClaim {
                budget_id: "b1".into(),
                revision: 1,
                period_start: "2026-11-01".into(),
                crossing: "80".into(),
                org_id: "acme".into(),
                fired_ms: 10,
                alert: "{\"id\":\"x\"}".into(),
                notify: true,
            };
            assert!(s.fire_alert(&claim, vec![]).await.unwrap().is_some());
            assert!(s.fire_alert(&claim, vec![]).await.unwrap().is_none());
            let due = s.take_due_deliveries(10, 1_000, 10).await.unwrap();
            let mut to: Vec<&str> = due.iter().map(|d| d.webhook.id.as_str()).collect();
            to.sort();
            assert_eq!(to, ["w1", "w2"], "one per webhook of the org, once");
            assert!(due.iter().all(|d| d.attempts == 1));
            // Leased: not taken again until the lease ends.
            assert!(
                s.take_due_deliveries(500, 1_500, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            s.delivery_attempted(&due[0].id, 20, None, None)
                .await
                .unwrap();
            s.delivery_attempted(&due[1].id, 20, Some("HTTP 500"), Some(2_000))
                .await
                .unwrap();
            assert!(
                s.take_due_deliveries(1_999, 3_000, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            let again = s.take_due_deliveries(2_000, 3_000, 10).await.unwrap();
            assert_eq!((again.len(), again[0].attempts), (1, 2));
            s.delivery_attempted(&again[0].id, 2_100, Some("HTTP 500"), None)
                .await
                .unwrap();
            let stats: Vec<DeliveryStats> = s
                .webhooks("acme")
                .await
                .unwrap()
                .into_iter()
                .map(|(_, st)| st)
                .collect();
            let delivered: i64 = stats.iter().map(|st| st.delivered).sum();
            let failed: i64 = stats.iter().map(|st| st.failed).sum();
            assert_eq!((delivered, failed), (1, 1));
            assert!(
                stats
                    .iter()
                    .any(|st| st.last_error.as_deref() == Some("HTTP 500"))
            );
            assert!(s.delete_webhook("acme", "w1").await.unwrap());
            assert!(!s.delete_webhook("acme", "w1").await.unwrap());
        }
    }
}
