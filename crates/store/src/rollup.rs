//! The hourly rollups (`usage_hourly`, migration 4): folding raw rows into per-hour sums and
//! applying them in the transaction that inserted or deleted those rows, so the rollups always
//! equal the raw rows they summarise.

use std::collections::HashMap;

use crate::db::Cols;

pub(crate) const HOUR_MS: i64 = 3_600_000;

/// The raw columns a rollup needs, for `RETURNING` after an insert or a delete.
pub(crate) const RAW_COLUMNS: &str = "ts_ms, provider, model, user_name, feature, input_tokens, \
     output_tokens, cached_input_tokens, cost_nanos, status, request_count";

/// Rollup rows per multi-row upsert: 15 binds each stays far below SQLite's variable limit.
pub(crate) const ROWS_PER_UPSERT: usize = 1_000;

/// The head of the rollup upsert; [`apply_delta`] pushes the values.
pub(crate) const UPSERT_HEAD: &str = "INSERT INTO usage_hourly (org_id, hour_ms, provider, model,
     user_key, feature_key, row_count, calls, input_tokens, output_tokens, cached_input_tokens,
     cost_nanos, unpriced_calls, unpriced_tokens, error_calls) ";

/// Adds to an existing rollup row. Qualified with the table name: PostgreSQL finds a bare
/// column name ambiguous next to `excluded`.
pub(crate) const UPSERT_TAIL: &str =
    " ON CONFLICT (org_id, hour_ms, provider, model, user_key, feature_key)
    DO UPDATE SET
      row_count = usage_hourly.row_count + excluded.row_count,
      calls = usage_hourly.calls + excluded.calls,
      input_tokens = usage_hourly.input_tokens + excluded.input_tokens,
      output_tokens = usage_hourly.output_tokens + excluded.output_tokens,
      cached_input_tokens = usage_hourly.cached_input_tokens + excluded.cached_input_tokens,
      cost_nanos = usage_hourly.cost_nanos + excluded.cost_nanos,
      unpriced_calls = usage_hourly.unpriced_calls + excluded.unpriced_calls,
      unpriced_tokens = usage_hourly.unpriced_tokens + excluded.unpriced_tokens,
      error_calls = usage_hourly.error_calls + excluded.error_calls";

/// Key of records without a user or a feature; the same key every breakdown reports.
const NONE_KEY: &str = "(none)";

/// The start of the UTC hour holding `ts_ms`.
pub(crate) fn hour_floor(ts_ms: i64) -> i64 {
    ts_ms - ts_ms.rem_euclid(HOUR_MS)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct HourKey {
    pub(crate) hour_ms: i64,
    pub(crate) provider: String,
    pub(crate) model: String,
    pub(crate) user: String,
    pub(crate) feature: String,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HourSums {
    pub(crate) rows: i64,
    pub(crate) calls: i64,
    pub(crate) input_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) cached_input_tokens: i64,
    pub(crate) cost_nanos: i64,
    pub(crate) unpriced_calls: i64,
    pub(crate) unpriced_tokens: i64,
    pub(crate) error_calls: i64,
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

    /// The sums by hour and dimensions, in key order: upserts then lock rollup rows in the
    /// same order in every transaction, so concurrent ingests (PostgreSQL) cannot deadlock.
    pub(crate) fn entries(&self) -> Vec<(&HourKey, &HourSums)> {
        let mut entries: Vec<_> = self.sums.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
    }

    /// Folds in one raw row read through [`RAW_COLUMNS`].
    pub(crate) fn add_row(&mut self, r: &impl Cols) -> Result<(), sqlx::Error> {
        let ts_ms = r.int("ts_ms")?;
        let key = HourKey {
            hour_ms: hour_floor(ts_ms),
            provider: r.text("provider")?,
            model: r.text("model")?,
            user: r.opt_text("user_name")?.unwrap_or_else(|| NONE_KEY.into()),
            feature: r.opt_text("feature")?.unwrap_or_else(|| NONE_KEY.into()),
        };
        let input = r.int("input_tokens")?;
        let output = r.int("output_tokens")?;
        let cached = r.int("cached_input_tokens")?;
        let cost = r.opt_int("cost_nanos")?;
        let status = r.text("status")?;
        let calls = r.int("request_count")?;
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
}

/// Adds a [`RollupDelta`]'s sums to the org's rollups (`sign` 1) or takes them away (`sign`
/// -1, after a delete), then drops rollup rows no raw row backs any more; inside the
/// transaction `tx` (`&mut Transaction` of either backend) that inserted or deleted the rows.
/// A macro so one text serves both backends' transaction types.
macro_rules! apply_delta {
    ($tx:expr, $delta:expr, $org_id:expr, $sign:expr) => {{
        let (tx, delta, org_id, sign): (_, &$crate::rollup::RollupDelta, &str, i64) =
            ($tx, $delta, $org_id, $sign);
        let entries = delta.entries();
        for chunk in entries.chunks($crate::rollup::ROWS_PER_UPSERT) {
            let mut qb = sqlx::QueryBuilder::new($crate::rollup::UPSERT_HEAD);
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
            qb.push($crate::rollup::UPSERT_TAIL);
            qb.build().execute(&mut **tx).await?;
        }
        if sign < 0 && !entries.is_empty() {
            sqlx::query("DELETE FROM usage_hourly WHERE org_id = $1 AND row_count <= 0")
                .bind(org_id)
                .execute(&mut **tx)
                .await?;
        }
    }};
}

pub(crate) use apply_delta;

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
