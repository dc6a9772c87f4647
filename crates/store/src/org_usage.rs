//! [`OrgUsageQueries`] over the usage table for one org, fixed at construction: every query
//! filters on that org, so a handle cannot reach another org's usage.
//!
//! Totals and breakdowns read the hourly rollups for the whole hours of a period and raw rows
//! only for its partial edge hours ([`Split`]), so they stay exact for any period while a
//! 30-day breakdown reads ~720 hours × dimensions instead of every call.

use apogee_analytics::queries::{latency_row, sort_latency_rows};
use apogee_analytics::{
    BatchCandidate, CostRow, FeatureModelCost, FeatureModelMix, GroupBy, InputBand, LatencyRow,
    Nanos, OrgUsageQueries, OutputTail, Period, QueryError, RepeatProfile, TokenMix,
    TrafficProfile, UsageTotals,
};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use crate::rollup;

#[path = "org_usage_more.rs"]
mod more;

/// Usage queries bound to one org. Obtained from [`crate::Store::org_usage`].
#[derive(Clone)]
pub struct OrgUsage {
    pool: SqlitePool,
    org_id: String,
}

fn backend(e: sqlx::Error) -> QueryError {
    QueryError::Backend(e.to_string())
}

/// The group key over the union of rollup and raw rows that [`UNION_ROWS`] produces.
fn group_key(by: GroupBy) -> &'static str {
    match by {
        GroupBy::Model => "model",
        GroupBy::Provider => "provider",
        GroupBy::User => "user_key",
        GroupBy::Feature => "feature_key",
        GroupBy::Day => "strftime('%Y-%m-%d', hour_ms / 1000, 'unixepoch')",
    }
}

/// How a period `[from, to)` is read: whole hours `[hours_from, hours_to)` from the rollups,
/// the rest from raw rows in `[from, edge1_to)` and `[edge2_from, to)` (either may be empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Split {
    from: i64,
    to: i64,
    hours_from: i64,
    hours_to: i64,
    edge1_to: i64,
    edge2_from: i64,
}

impl Split {
    fn of(period: &Period) -> Split {
        let (from, to) = (period.from_ms(), period.to_ms());
        let up = rollup::hour_floor(from.saturating_add(rollup::HOUR_MS - 1));
        let down = rollup::hour_floor(to);
        if up < down {
            Split {
                from,
                to,
                hours_from: up,
                hours_to: down,
                edge1_to: up,
                edge2_from: down,
            }
        } else {
            // No whole hour inside: everything is raw, read once (the two edges would overlap).
            Split {
                from,
                to,
                hours_from: 0,
                hours_to: 0,
                edge1_to: to,
                edge2_from: to,
            }
        }
    }
}

/// Rollup rows of the whole hours, then raw rows of the edges shaped like rollup rows. Binds:
/// ?1 org, ?2/?3 the hours, ?4/?5 the first edge, ?6/?7 the second.
const UNION_ROWS: &str = "
    SELECT hour_ms, provider, model, user_key, feature_key, calls, input_tokens, output_tokens,
           cached_input_tokens, cost_nanos, unpriced_calls, unpriced_tokens, error_calls
    FROM usage_hourly WHERE org_id = ?1 AND hour_ms >= ?2 AND hour_ms < ?3
    UNION ALL
    SELECT ts_ms AS hour_ms, provider, model, COALESCE(user_name, '(none)') AS user_key,
           COALESCE(feature, '(none)') AS feature_key, request_count AS calls, input_tokens,
           output_tokens, cached_input_tokens, COALESCE(cost_nanos, 0) AS cost_nanos,
           CASE WHEN cost_nanos IS NULL THEN request_count ELSE 0 END AS unpriced_calls,
           CASE WHEN cost_nanos IS NULL THEN input_tokens + output_tokens ELSE 0 END AS unpriced_tokens,
           CASE WHEN status <> 'ok' THEN request_count ELSE 0 END AS error_calls
    FROM usage_records
    WHERE org_id = ?1 AND ((ts_ms >= ?4 AND ts_ms < ?5) OR (ts_ms >= ?6 AND ts_ms < ?7))";

fn bind_split<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    org_id: &'q str,
    s: Split,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    q.bind(org_id)
        .bind(s.hours_from)
        .bind(s.hours_to)
        .bind(s.from)
        .bind(s.edge1_to)
        .bind(s.edge2_from)
        .bind(s.to)
}

fn cost_row(r: &SqliteRow) -> Result<CostRow, sqlx::Error> {
    Ok(CostRow {
        key: r.try_get("k")?,
        calls: r.try_get("calls")?,
        input_tokens: r.try_get("input_tokens")?,
        output_tokens: r.try_get("output_tokens")?,
        cost: Nanos(r.try_get("cost")?),
        unpriced_calls: r.try_get("unpriced_calls")?,
    })
}

fn mix(r: &SqliteRow, prefix: &str) -> Result<TokenMix, sqlx::Error> {
    Ok(TokenMix {
        calls: r.try_get(format!("{prefix}calls").as_str())?,
        fresh_input_tokens: r.try_get(format!("{prefix}fresh").as_str())?,
        cached_input_tokens: r.try_get(format!("{prefix}cached").as_str())?,
        output_tokens: r.try_get(format!("{prefix}output").as_str())?,
        cost: Nanos(r.try_get(format!("{prefix}cost").as_str())?),
    })
}

impl OrgUsage {
    pub(crate) fn new(pool: SqlitePool, org_id: String) -> Self {
        Self { pool, org_id }
    }

    pub fn org_id(&self) -> &str {
        &self.org_id
    }
}

#[async_trait]
impl OrgUsageQueries for OrgUsage {
    async fn totals(&self, period: &Period) -> Result<UsageTotals, QueryError> {
        let sql = format!(
            "SELECT COALESCE(SUM(calls), 0) AS calls,
                    COALESCE(SUM(input_tokens), 0) AS input_tokens,
                    COALESCE(SUM(output_tokens), 0) AS output_tokens,
                    COALESCE(SUM(cached_input_tokens), 0) AS cached,
                    COALESCE(SUM(cost_nanos), 0) AS cost,
                    COALESCE(SUM(unpriced_calls), 0) AS unpriced_calls,
                    COALESCE(SUM(unpriced_tokens), 0) AS unpriced_tokens,
                    COALESCE(SUM(error_calls), 0) AS error_calls
             FROM ({UNION_ROWS}) AS u"
        );
        let r = bind_split(sqlx::query(&sql), &self.org_id, Split::of(period))
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        let get = |c: &str| r.try_get::<i64, _>(c).map_err(backend);
        Ok(UsageTotals {
            calls: get("calls")?,
            input_tokens: get("input_tokens")?,
            output_tokens: get("output_tokens")?,
            cached_input_tokens: get("cached")?,
            cost: Nanos(get("cost")?),
            unpriced_calls: get("unpriced_calls")?,
            unpriced_tokens: get("unpriced_tokens")?,
            error_calls: get("error_calls")?,
        })
    }

    async fn breakdown(&self, period: &Period, by: GroupBy) -> Result<Vec<CostRow>, QueryError> {
        let order = if by == GroupBy::Day {
            "k ASC"
        } else {
            "cost DESC, k ASC"
        };
        let sql = format!(
            "SELECT {key} AS k, COALESCE(SUM(calls), 0) AS calls,
                    COALESCE(SUM(input_tokens), 0) AS input_tokens,
                    COALESCE(SUM(output_tokens), 0) AS output_tokens,
                    COALESCE(SUM(cost_nanos), 0) AS cost,
                    COALESCE(SUM(unpriced_calls), 0) AS unpriced_calls
             FROM ({UNION_ROWS}) AS u
             GROUP BY k ORDER BY {order}",
            key = group_key(by)
        );
        let rows = bind_split(sqlx::query(&sql), &self.org_id, Split::of(period))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(cost_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn traffic_profile(
        &self,
        period: &Period,
        model: &str,
        max_input_tokens: i64,
        max_output_tokens: i64,
    ) -> Result<TrafficProfile, QueryError> {
        let short = "input_tokens <= ?1 AND output_tokens <= ?2";
        let batch_sum = |b: &str, prefix: &str| {
            format!(
                "COALESCE(SUM(CASE WHEN {short} AND batch = {b} THEN 1 ELSE 0 END), 0) AS {prefix}calls,
                 COALESCE(SUM(CASE WHEN {short} AND batch = {b} THEN input_tokens - cached_input_tokens ELSE 0 END), 0) AS {prefix}fresh,
                 COALESCE(SUM(CASE WHEN {short} AND batch = {b} THEN cached_input_tokens ELSE 0 END), 0) AS {prefix}cached,
                 COALESCE(SUM(CASE WHEN {short} AND batch = {b} THEN output_tokens ELSE 0 END), 0) AS {prefix}output,
                 COALESCE(SUM(CASE WHEN {short} AND batch = {b} THEN cost_nanos ELSE 0 END), 0) AS {prefix}cost"
            )
        };
        let sql = format!(
            "SELECT COUNT(*) AS all_calls, COALESCE(SUM(cost_nanos), 0) AS all_cost,
                    {interactive}, {batch}
             FROM usage_records
             WHERE org_id = ?3 AND model = ?4 AND ts_ms >= ?5 AND ts_ms < ?6
               AND price_source IS NOT NULL AND price_source <> 'client'",
            interactive = batch_sum("0", "i_"),
            batch = batch_sum("1", "b_"),
        );
        let r = sqlx::query(&sql)
            .bind(max_input_tokens)
            .bind(max_output_tokens)
            .bind(&self.org_id)
            .bind(model)
            .bind(period.from_ms())
            .bind(period.to_ms())
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(TrafficProfile {
            model: model.to_string(),
            short_interactive: mix(&r, "i_").map_err(backend)?,
            short_batch: mix(&r, "b_").map_err(backend)?,
            all_calls: r.try_get("all_calls").map_err(backend)?,
            all_cost: Nanos(r.try_get("all_cost").map_err(backend)?),
        })
    }

    async fn repeated_prompts(&self, period: &Period) -> Result<RepeatProfile, QueryError> {
        // A repeat is every call after the first (by time, then insertion order) of the same
        // prompt on the same model: the calls a response cache would have answered.
        let rows = sqlx::query(
            "SELECT COALESCE(feature, '(none)') AS k, COUNT(*) AS calls,
                    COALESCE(SUM(input_tokens), 0) AS input_tokens,
                    COALESCE(SUM(output_tokens), 0) AS output_tokens,
                    COALESCE(SUM(cost_nanos), 0) AS cost,
                    COALESCE(SUM(CASE WHEN cost_nanos IS NULL THEN 1 ELSE 0 END), 0) AS unpriced_calls,
                    COALESCE(SUM(CASE WHEN rn = 2 THEN 1 ELSE 0 END), 0) AS prompts
             FROM (SELECT feature, input_tokens, output_tokens, cost_nanos,
                          ROW_NUMBER() OVER (PARTITION BY model, prompt_hash ORDER BY ts_ms, rowid) AS rn
                   FROM usage_records
                   WHERE org_id = ? AND ts_ms >= ? AND ts_ms < ? AND prompt_hash IS NOT NULL) AS numbered
             WHERE rn > 1
             GROUP BY k ORDER BY cost DESC, k ASC",
        )
        .bind(&self.org_id)
        .bind(period.from_ms())
        .bind(period.to_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut profile = RepeatProfile::default();
        for r in &rows {
            let row = cost_row(r).map_err(backend)?;
            profile.repeated_prompts += r.try_get::<i64, _>("prompts").map_err(backend)?;
            profile.repeat_calls += row.calls;
            profile.repeat_cost = profile.repeat_cost + row.cost;
            profile.top_features.push(row);
        }
        profile.top_features.truncate(5);
        Ok(profile)
    }

    async fn batch_candidates(&self, period: &Period) -> Result<Vec<BatchCandidate>, QueryError> {
        let night = format!(
            "((ts_ms / 3600000) % 24) < {}",
            apogee_analytics::queries::NIGHT_END_HOUR
        );
        let sql = format!(
            "SELECT COALESCE(feature, '(none)') AS f, model, COUNT(*) AS all_calls,
                    COALESCE(SUM(CASE WHEN {night} THEN 1 ELSE 0 END), 0) AS n_calls,
                    COALESCE(SUM(CASE WHEN {night} THEN input_tokens - cached_input_tokens ELSE 0 END), 0) AS n_fresh,
                    COALESCE(SUM(CASE WHEN {night} THEN cached_input_tokens ELSE 0 END), 0) AS n_cached,
                    COALESCE(SUM(CASE WHEN {night} THEN output_tokens ELSE 0 END), 0) AS n_output,
                    COALESCE(SUM(CASE WHEN {night} THEN cost_nanos ELSE 0 END), 0) AS n_cost
             FROM usage_records
             WHERE org_id = ? AND ts_ms >= ? AND ts_ms < ? AND batch = 0
               AND price_source IS NOT NULL AND price_source <> 'client'
             GROUP BY f, model ORDER BY f, model"
        );
        let rows = sqlx::query(&sql)
            .bind(&self.org_id)
            .bind(period.from_ms())
            .bind(period.to_ms())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(BatchCandidate {
                    feature: r.try_get("f")?,
                    model: r.try_get("model")?,
                    interactive_calls: r.try_get("all_calls")?,
                    night: mix(r, "n_")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)
    }

    async fn latency_by_model(&self, period: &Period) -> Result<Vec<LatencyRow>, QueryError> {
        // Calls and errors from the rollups; percentiles need every latency, read sorted so
        // each model's sample arrives in order.
        let sql = format!(
            "SELECT model, COALESCE(SUM(calls), 0) AS calls, COALESCE(SUM(error_calls), 0) AS errors
             FROM ({UNION_ROWS}) AS u GROUP BY model"
        );
        let counts = bind_split(sqlx::query(&sql), &self.org_id, Split::of(period))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let latencies = sqlx::query(
            "SELECT model, latency_ms FROM usage_records
             WHERE org_id = ? AND ts_ms >= ? AND ts_ms < ? AND latency_ms IS NOT NULL
             ORDER BY model, latency_ms",
        )
        .bind(&self.org_id)
        .bind(period.from_ms())
        .bind(period.to_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut samples: std::collections::HashMap<String, Vec<i64>> = Default::default();
        for r in &latencies {
            let model: String = r.try_get("model").map_err(backend)?;
            samples
                .entry(model)
                .or_default()
                .push(r.try_get("latency_ms").map_err(backend)?);
        }
        let mut rows = Vec::with_capacity(counts.len());
        for r in &counts {
            let model: String = r.try_get("model").map_err(backend)?;
            let lat = samples.remove(&model).unwrap_or_default();
            rows.push(latency_row(
                model,
                r.try_get("calls").map_err(backend)?,
                r.try_get("errors").map_err(backend)?,
                &lat,
            ));
        }
        sort_latency_rows(&mut rows);
        Ok(rows)
    }

    async fn breakdown_feature_model(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelCost>, QueryError> {
        more::breakdown_feature_model(&self.pool, &self.org_id, period).await
    }

    async fn feature_model_traffic(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelMix>, QueryError> {
        more::feature_model_traffic(&self.pool, &self.org_id, period).await
    }

    async fn output_tails(
        &self,
        period: &Period,
        percentile: i64,
    ) -> Result<Vec<OutputTail>, QueryError> {
        more::output_tails(&self.pool, &self.org_id, period, percentile).await
    }

    async fn input_band(
        &self,
        period: &Period,
        model: &str,
        above: i64,
        up_to: i64,
    ) -> Result<InputBand, QueryError> {
        more::input_band(&self.pool, &self.org_id, period, model, above, up_to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn a_period_splits_into_whole_hours_and_raw_edges() {
        let t = |h, m| Utc.with_ymd_and_hms(2026, 11, 20, h, m, 0).unwrap();
        let ms = |h, m| t(h, m).timestamp_millis();
        let s = Split::of(&Period::new(t(10, 15), t(13, 30)));
        assert_eq!((s.hours_from, s.hours_to), (ms(11, 0), ms(13, 0)));
        assert_eq!((s.from, s.edge1_to), (ms(10, 15), ms(11, 0)));
        assert_eq!((s.edge2_from, s.to), (ms(13, 0), ms(13, 30)));
        // Aligned: the edges are empty.
        let s = Split::of(&Period::new(t(10, 0), t(12, 0)));
        assert_eq!((s.hours_from, s.hours_to), (ms(10, 0), ms(12, 0)));
        assert_eq!(s.edge1_to, s.from);
        assert_eq!(s.edge2_from, s.to);
        // Inside one hour: all raw, read once.
        let s = Split::of(&Period::new(t(10, 15), t(10, 45)));
        assert_eq!(s.hours_from, s.hours_to);
        assert_eq!(
            (s.from, s.edge1_to, s.edge2_from),
            (ms(10, 15), ms(10, 45), ms(10, 45))
        );
    }
}
