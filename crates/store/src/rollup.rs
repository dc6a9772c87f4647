//! The hourly rollups (`usage_hourly`, migration 4): folding raw rows into per-hour sums and
//! applying them in the transaction that inserted or deleted those rows, so the rollups always
//! equal the raw rows they summarise.

use std::collections::HashMap;

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use crate::StoreError;

pub(crate) const HOUR_MS: i64 = 3_600_000;

/// The raw columns a rollup needs, for `RETURNING` after an insert or a delete.
pub(crate) const RAW_COLUMNS: &str = "ts_ms, provider, model, user_name, feature, input_tokens, \
     output_tokens, cached_input_tokens, cost_nanos, status, request_count";

/// Rollup rows per multi-row upsert: 15 binds each stays far below SQLite's variable limit.
const ROWS_PER_UPSERT: usize = 1_000;

/// Key of records without a user or a feature; the same key every breakdown reports.
const NONE_KEY: &str = "(none)";

/// The start of the UTC hour holding `ts_ms`.
pub(crate) fn hour_floor(ts_ms: i64) -> i64 {
    ts_ms - ts_ms.rem_euclid(HOUR_MS)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HourKey {
    hour_ms: i64,
    provider: String,
    model: String,
    user: String,
    feature: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct HourSums {
    rows: i64,
    calls: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    cost_nanos: i64,
    unpriced_calls: i64,
    unpriced_tokens: i64,
    error_calls: i64,
}

/// Sums of raw rows by hour and dimensions, to add to (or subtract from) the rollups.
#[derive(Debug, Default)]
pub(crate) struct RollupDelta {
    sums: HashMap<HourKey, HourSums>,
    rows: u64,
}

impl RollupDelta {
    /// Raw rows folded in so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Folds in one raw row read through [`RAW_COLUMNS`].
    pub(crate) fn add_row(&mut self, r: &SqliteRow) -> Result<(), sqlx::Error> {
        let ts_ms: i64 = r.try_get("ts_ms")?;
        let key = HourKey {
            hour_ms: hour_floor(ts_ms),
            provider: r.try_get("provider")?,
            model: r.try_get("model")?,
            user: r
                .try_get::<Option<String>, _>("user_name")?
                .unwrap_or_else(|| NONE_KEY.into()),
            feature: r
                .try_get::<Option<String>, _>("feature")?
                .unwrap_or_else(|| NONE_KEY.into()),
        };
        let input: i64 = r.try_get("input_tokens")?;
        let output: i64 = r.try_get("output_tokens")?;
        let cached: i64 = r.try_get("cached_input_tokens")?;
        let cost: Option<i64> = r.try_get("cost_nanos")?;
        let status: String = r.try_get("status")?;
        let calls: i64 = r.try_get("request_count")?;
        let s = self.sums.entry(key).or_default();
        s.rows += 1;
        s.calls += calls;
        s.input_tokens += input;
        s.output_tokens += output;
        s.cached_input_tokens += cached;
        match cost {
            Some(c) => s.cost_nanos += c,
            None => {
                s.unpriced_calls += calls;
                s.unpriced_tokens += input + output;
            }
        }
        if status != "ok" {
            s.error_calls += calls;
        }
        self.rows += 1;
        Ok(())
    }

    /// Adds the sums to the org's rollups (`sign` 1) or takes them away (`sign` -1, after a
    /// delete), then drops rollup rows no raw row backs any more.
    pub(crate) async fn apply(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        org_id: &str,
        sign: i64,
    ) -> Result<(), StoreError> {
        if self.sums.is_empty() {
            return Ok(());
        }
        let entries: Vec<(&HourKey, &HourSums)> = self.sums.iter().collect();
        for chunk in entries.chunks(ROWS_PER_UPSERT) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO usage_hourly (org_id, hour_ms, provider, model, user_key, feature_key,
                 row_count, calls, input_tokens, output_tokens, cached_input_tokens, cost_nanos,
                 unpriced_calls, unpriced_tokens, error_calls) ",
            );
            qb.push_values(chunk, |mut b, (k, s)| {
                b.push_bind(org_id)
                    .push_bind(k.hour_ms)
                    .push_bind(k.provider.as_str())
                    .push_bind(k.model.as_str())
                    .push_bind(k.user.as_str())
                    .push_bind(k.feature.as_str())
                    .push_bind(sign * s.rows)
                    .push_bind(sign * s.calls)
                    .push_bind(sign * s.input_tokens)
                    .push_bind(sign * s.output_tokens)
                    .push_bind(sign * s.cached_input_tokens)
                    .push_bind(sign * s.cost_nanos)
                    .push_bind(sign * s.unpriced_calls)
                    .push_bind(sign * s.unpriced_tokens)
                    .push_bind(sign * s.error_calls);
            });
            qb.push(
                " ON CONFLICT (org_id, hour_ms, provider, model, user_key, feature_key) DO UPDATE SET
                  row_count = row_count + excluded.row_count,
                  calls = calls + excluded.calls,
                  input_tokens = input_tokens + excluded.input_tokens,
                  output_tokens = output_tokens + excluded.output_tokens,
                  cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
                  cost_nanos = cost_nanos + excluded.cost_nanos,
                  unpriced_calls = unpriced_calls + excluded.unpriced_calls,
                  unpriced_tokens = unpriced_tokens + excluded.unpriced_tokens,
                  error_calls = error_calls + excluded.error_calls",
            );
            qb.build().execute(&mut **tx).await?;
        }
        if sign < 0 {
            sqlx::query("DELETE FROM usage_hourly WHERE org_id = ? AND row_count <= 0")
                .bind(org_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_floor_for_any_sign() {
        assert_eq!(hour_floor(0), 0);
        assert_eq!(hour_floor(HOUR_MS - 1), 0);
        assert_eq!(hour_floor(HOUR_MS), HOUR_MS);
        assert_eq!(hour_floor(-1), -HOUR_MS);
    }
}
