//! Ingest of priced usage records (all columns of usage records v2), idempotent per org by
//! `request_id`.

use apogee_analytics::PricedRecord;
use sqlx::QueryBuilder;

use crate::db::on_write;
use crate::rollup::{RAW_COLUMNS, RollupDelta, apply_delta};
use crate::{Store, StoreError};

/// Rows per multi-row INSERT: 23 binds each stays far below SQLite's variable limit (32766)
/// and PostgreSQL's (65535).
const ROWS_PER_INSERT: usize = 500;

/// What an ingest stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub accepted: u64,
    /// Records whose `request_id` was already stored for the org (or repeated in the batch).
    pub duplicates: u64,
    /// Records not stored, by position in the input, with the reason (ascending positions):
    /// records whose hourly sums would overflow.
    pub rejected: Vec<(usize, String)>,
}

/// Tags as a JSON object (`NULL` when there are none).
fn tags_json(r: &apogee_analytics::UsageRecord) -> Option<String> {
    r.tags
        .as_ref()
        .filter(|t| !t.is_empty())
        .and_then(|t| serde_json::to_string(t).ok())
}

impl Store {
    /// Stores `records` for `org_id` in one transaction, together with the hourly rollups of
    /// the rows actually inserted (a duplicate adds nothing). `providers[i]` is the provider
    /// of `records[i]` as resolved by the caller (given, or the catalog's).
    pub async fn ingest_usage(
        &self,
        org_id: &str,
        records: &[(PricedRecord, String)],
    ) -> Result<IngestSummary, StoreError> {
        let delta = on_write!(&self.db, pool => {
            let mut delta = RollupDelta::default();
            let mut tx = pool.begin().await?;
            for chunk in records.chunks(ROWS_PER_INSERT) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO usage_records (org_id, request_id, ts_ms, provider, model, input_tokens,
                     output_tokens, cached_input_tokens, latency_ms, user_name, feature, prompt_hash, batch,
                     status, cost_nanos, price_source, cache_creation_input_tokens, reasoning_tokens,
                     stream, finish_reason, max_tokens, tags, request_count) ",
                );
                qb.push_values(chunk, |mut b, (p, provider)| {
                    let r = &p.record;
                    b.push_bind(org_id)
                        .push_bind(r.request_id.as_deref())
                        .push_bind(r.ts.timestamp_millis())
                        .push_bind(provider.as_str())
                        .push_bind(r.model.as_str())
                        .push_bind(r.input_tokens)
                        .push_bind(r.output_tokens)
                        .push_bind(r.cached_tokens())
                        .push_bind(r.latency_ms)
                        .push_bind(r.user.as_deref())
                        .push_bind(r.feature.as_deref())
                        .push_bind(r.prompt_hash.as_deref())
                        .push_bind(r.is_batch())
                        .push_bind(r.status.as_deref().unwrap_or("ok"))
                        .push_bind(p.cost.map(|c| c.0))
                        .push_bind(p.price_source.as_deref())
                        .push_bind(r.cache_write_tokens())
                        .push_bind(r.reasoning_tokens)
                        .push_bind(r.stream)
                        .push_bind(r.finish_reason.as_deref())
                        .push_bind(r.max_tokens)
                        .push_bind(tags_json(r))
                        .push_bind(r.request_count());
                });
                // RETURNING yields only the rows inserted, not those skipped as duplicates.
                qb.push(" ON CONFLICT (org_id, request_id) DO NOTHING RETURNING ");
                qb.push(RAW_COLUMNS);
                for row in qb.build().fetch_all(&mut *tx).await? {
                    delta.add_row(&row)?;
                }
            }
            apply_delta!(&mut tx, &delta, org_id, 1);
            tx.commit().await?;
            delta
        });
        let accepted = delta.rows();
        Ok(IngestSummary {
            accepted,
            duplicates: records.len() as u64 - accepted,
            rejected: Vec::new(),
        })
    }
}

impl Store {
    /// Deletes the org's records whose `request_id` starts with `prefix` (used to refresh the
    /// synthetic demo history), and their share of the rollups, in one transaction; returns
    /// how many were removed.
    pub async fn delete_usage_with_prefix(
        &self,
        org_id: &str,
        prefix: &str,
    ) -> Result<u64, StoreError> {
        let pattern = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let sql = format!(
            "DELETE FROM usage_records WHERE org_id = $1 AND request_id LIKE $2 ESCAPE '\\'
             RETURNING {RAW_COLUMNS}"
        );
        let delta = on_write!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let rows = sqlx::query(&sql)
                .bind(org_id)
                .bind(pattern)
                .fetch_all(&mut *tx)
                .await?;
            let mut delta = RollupDelta::default();
            for row in &rows {
                delta.add_row(row)?;
            }
            apply_delta!(&mut tx, &delta, org_id, -1);
            tx.commit().await?;
            delta
        });
        Ok(delta.rows())
    }
}
