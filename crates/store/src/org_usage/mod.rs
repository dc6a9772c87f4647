//! [`OrgUsageQueries`] over the usage table for one org, fixed at construction: every query
//! filters on that org, so a handle cannot reach another org's usage.
//!
//! Totals and breakdowns read the hourly rollups for the whole hours of a period and raw rows
//! only for its partial edge hours ([`Split`]), so they stay exact for any period while a
//! 30-day breakdown reads ~720 hours × dimensions instead of every call.
//!
//! The SQL is shared by both backends and gives identical results on them: sums cannot
//! overflow (`db::Sums`, with [`widening!`] retrying a SQLite read whose plain sum overflowed;
//! an org's lifetime of spend needs more than 64 bits), text keys sort byte-wise
//! (`COLLATE "C"` on PostgreSQL) and only day bucketing and the insertion-order tiebreak
//! differ by dialect. Rows ordered by cost are sorted here, on the exact sums.

use crate::db::{Cols, Db, Sums, on_read};
use crate::rollup;
use apogee_analytics::queries::{latency_row, sort_latency_rows};
use apogee_analytics::{
    BatchCandidate, CostRow, FeatureModelCost, FeatureModelMix, GroupBy, InputBand, LatencyRow,
    Nanos, OrgUsageQueries, OutputTail, Period, QueryError, RepeatProfile, TokenMix,
    TrafficProfile, UsageTotals,
};
use async_trait::async_trait;

mod more;

/// Usage queries bound to one org. Obtained from [`crate::Store::org_usage`].
#[derive(Clone)]
pub struct OrgUsage {
    db: Db,
    org_id: String,
}

/// Runs `body` — an expression of type `Result<_, QueryError>` that writes its sums with
/// `$sums.sum(…)` — with the backend's first way of summing, and again with sums that cannot
/// overflow when SQLite's plain `SUM` overflowed ([`Sums`]). A macro, so each query keeps its
/// body as written.
macro_rules! widening {
    ($db:expr, $sums:ident => $body:expr) => {{
        let mut $sums = Sums::first($db);
        loop {
            let result: Result<_, QueryError> = async { $body }.await;
            match &result {
                Err(QueryError::Backend(e)) => match $sums.after(e) {
                    Some(again) => $sums = again,
                    None => break result,
                },
                _ => break result,
            }
        }
    }};
}

/// Cost descending, then key ascending (byte-wise, as the SQL's keys): the order of every
/// breakdown by cost, on the exact sums.
fn by_cost_then_key(rows: &mut [CostRow]) {
    rows.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.key.cmp(&b.key)));
}

fn backend(e: sqlx::Error) -> QueryError {
    QueryError::Backend(e.to_string())
}

/// The group key over the union of rollup and raw rows that [`UNION_ROWS`] produces.
fn group_key(db: &Db, by: GroupBy) -> &'static str {
    match by {
        GroupBy::Model => "model",
        GroupBy::Provider => "provider",
        GroupBy::User => "user_key",
        GroupBy::Feature => "feature_key",
        // The UTC day; `hour_ms / 1000` truncates alike on both.
        GroupBy::Day => db.pick(
            "strftime('%Y-%m-%d', hour_ms / 1000, 'unixepoch')",
            "to_char(to_timestamp(hour_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        ),
    }
}

/// Appended to a text key in a select list so that grouping and ordering by it compare bytes,
/// as SQLite does, whatever the PostgreSQL database's collation.
fn bytewise(db: &Db) -> &'static str {
    db.pick("", " COLLATE \"C\"")
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
/// $1 org, $2/$3 the hours, $4/$5 the first edge, $6/$7 the second.
const UNION_ROWS: &str = "
    SELECT hour_ms, provider, model, user_key, feature_key, calls, input_tokens, output_tokens,
           cached_input_tokens, cost_nanos, unpriced_calls, unpriced_tokens, error_calls
    FROM usage_hourly WHERE org_id = $1 AND hour_ms >= $2 AND hour_ms < $3
    UNION ALL
    SELECT ts_ms AS hour_ms, provider, model, COALESCE(user_name, '(none)') AS user_key,
           COALESCE(feature, '(none)') AS feature_key, request_count AS calls, input_tokens,
           output_tokens, cached_input_tokens, COALESCE(cost_nanos, 0) AS cost_nanos,
           CASE WHEN cost_nanos IS NULL THEN request_count ELSE 0 END AS unpriced_calls,
           CASE WHEN cost_nanos IS NULL THEN input_tokens + output_tokens ELSE 0 END AS unpriced_tokens,
           CASE WHEN status <> 'ok' THEN request_count ELSE 0 END AS error_calls
    FROM usage_records
    WHERE org_id = $1 AND ((ts_ms >= $4 AND ts_ms < $5) OR (ts_ms >= $6 AND ts_ms < $7))";

/// Binds [`UNION_ROWS`]' parameters to a query of either backend.
macro_rules! bind_split {
    ($q:expr, $org_id:expr, $s:expr) => {{
        let s: Split = $s;
        $q.bind($org_id)
            .bind(s.hours_from)
            .bind(s.hours_to)
            .bind(s.from)
            .bind(s.edge1_to)
            .bind(s.edge2_from)
            .bind(s.to)
    }};
}

fn cost_row(r: &impl Cols) -> Result<CostRow, sqlx::Error> {
    Ok(CostRow {
        key: r.text("k")?,
        calls: r.wide_count("calls")?,
        input_tokens: r.wide_count("input_tokens")?,
        output_tokens: r.wide_count("output_tokens")?,
        cost: Nanos(r.wide("cost")?),
        unpriced_calls: r.wide_count("unpriced_calls")?,
    })
}

fn mix(r: &impl Cols, prefix: &str) -> Result<TokenMix, sqlx::Error> {
    Ok(TokenMix {
        calls: r.wide_count(&format!("{prefix}calls"))?,
        fresh_input_tokens: r.wide_count(&format!("{prefix}fresh"))?,
        cached_input_tokens: r.wide_count(&format!("{prefix}cached"))?,
        output_tokens: r.wide_count(&format!("{prefix}output"))?,
        cost: Nanos(r.wide(&format!("{prefix}cost"))?),
    })
}

impl OrgUsage {
    pub(crate) fn new(db: Db, org_id: String) -> Self {
        Self { db, org_id }
    }

    pub fn org_id(&self) -> &str {
        &self.org_id
    }
}

#[async_trait]
impl OrgUsageQueries for OrgUsage {
    async fn totals(&self, period: &Period) -> Result<UsageTotals, QueryError> {
        widening!(&self.db, sums => {
        let sql = format!(
            "SELECT {calls} AS calls, {input} AS input_tokens, {output} AS output_tokens,
                    {cached} AS cached, {cost} AS cost, {unpriced_calls} AS unpriced_calls,
                    {unpriced_tokens} AS unpriced_tokens, {errors} AS error_calls
             FROM ({UNION_ROWS}) AS u",
            calls = sums.sum("calls"),
            input = sums.sum("input_tokens"),
            output = sums.sum("output_tokens"),
            cached = sums.sum("cached_input_tokens"),
            cost = sums.sum("cost_nanos"),
            unpriced_calls = sums.sum("unpriced_calls"),
            unpriced_tokens = sums.sum("unpriced_tokens"),
            errors = sums.sum("error_calls"),
        );
        let split = Split::of(period);
        on_read!(&self.db, pool => {
            let r = bind_split!(sqlx::query(&sql), &self.org_id, split)
                .fetch_one(pool)
                .await
                .map_err(backend)?;
            let get = |c: &str| r.wide_count(c).map_err(backend);
            Ok(UsageTotals {
                calls: get("calls")?,
                input_tokens: get("input_tokens")?,
                output_tokens: get("output_tokens")?,
                cached_input_tokens: get("cached")?,
                cost: Nanos(r.wide("cost").map_err(backend)?),
                unpriced_calls: get("unpriced_calls")?,
                unpriced_tokens: get("unpriced_tokens")?,
                error_calls: get("error_calls")?,
            })
        })
        })
    }

    async fn breakdown(&self, period: &Period, by: GroupBy) -> Result<Vec<CostRow>, QueryError> {
        widening!(&self.db, sums => {
        let sql = format!(
            "SELECT {key}{bytewise} AS k, {calls} AS calls, {input} AS input_tokens,
                    {output} AS output_tokens, {cost} AS cost, {unpriced} AS unpriced_calls
             FROM ({UNION_ROWS}) AS u
             GROUP BY k ORDER BY k ASC",
            key = group_key(&self.db, by),
            bytewise = bytewise(&self.db),
            calls = sums.sum("calls"),
            input = sums.sum("input_tokens"),
            output = sums.sum("output_tokens"),
            cost = sums.sum("cost_nanos"),
            unpriced = sums.sum("unpriced_calls"),
        );
        let split = Split::of(period);
        let mut rows: Vec<CostRow> = on_read!(&self.db, pool => {
            let rows = bind_split!(sqlx::query(&sql), &self.org_id, split)
                .fetch_all(pool)
                .await
                .map_err(backend)?;
            rows.iter()
                .map(cost_row)
                .collect::<Result<_, _>>()
                .map_err(backend)?
        });
        if by != GroupBy::Day {
            by_cost_then_key(&mut rows);
        }
        Ok(rows)
        })
    }

    async fn traffic_profile(
        &self,
        period: &Period,
        model: &str,
        max_input_tokens: i64,
        max_output_tokens: i64,
    ) -> Result<TrafficProfile, QueryError> {
        widening!(&self.db, sums => {
        let short = "input_tokens <= $1 AND output_tokens <= $2";
        let batch_sum = |b: &str, prefix: &str| {
            let when = |then: &str| {
                sums.sum(&format!(
                    "CASE WHEN {short} AND batch = {b} THEN {then} ELSE 0 END"
                ))
            };
            format!(
                "{} AS {prefix}calls, {} AS {prefix}fresh, {} AS {prefix}cached,
                 {} AS {prefix}output, {} AS {prefix}cost",
                when("1"),
                when("input_tokens - cached_input_tokens"),
                when("cached_input_tokens"),
                when("output_tokens"),
                when("cost_nanos"),
            )
        };
        let sql = format!(
            "SELECT COUNT(*) AS all_calls, {all_cost} AS all_cost,
                    {interactive}, {batch}
             FROM usage_records
             WHERE org_id = $3 AND model = $4 AND ts_ms >= $5 AND ts_ms < $6
               AND price_source IS NOT NULL AND price_source <> 'client'",
            all_cost = sums.sum("cost_nanos"),
            interactive = batch_sum("FALSE", "i_"),
            batch = batch_sum("TRUE", "b_"),
        );
        on_read!(&self.db, pool => {
            let r = sqlx::query(&sql)
                .bind(max_input_tokens)
                .bind(max_output_tokens)
                .bind(&self.org_id)
                .bind(model)
                .bind(period.from_ms())
                .bind(period.to_ms())
                .fetch_one(pool)
                .await
                .map_err(backend)?;
            Ok(TrafficProfile {
                model: model.to_string(),
                short_interactive: mix(&r, "i_").map_err(backend)?,
                short_batch: mix(&r, "b_").map_err(backend)?,
                all_calls: r.int("all_calls").map_err(backend)?,
                all_cost: Nanos(r.wide("all_cost").map_err(backend)?),
            })
        })
        })
    }

    async fn repeated_prompts(&self, period: &Period) -> Result<RepeatProfile, QueryError> {
        widening!(&self.db, sums => {
        // A repeat is every call after the first (by time, then insertion order) of the same
        // prompt on the same model: the calls a response cache would have answered.
        // Insertion order breaks ties in time: SQLite's rowid; on PostgreSQL the row's
        // physical position (ctid), which follows insertion until space freed by deletes is
        // reused — then only calls of one prompt in the same millisecond may order differently.
        let sql = format!(
            "SELECT COALESCE(feature, '(none)'){bytewise} AS k, COUNT(*) AS calls,
                    {input} AS input_tokens, {output} AS output_tokens, {cost} AS cost,
                    {unpriced} AS unpriced_calls, {prompts} AS prompts
             FROM (SELECT feature, input_tokens, output_tokens, cost_nanos,
                          ROW_NUMBER() OVER (PARTITION BY model, prompt_hash ORDER BY ts_ms, {rowid}) AS rn
                   FROM usage_records
                   WHERE org_id = $1 AND ts_ms >= $2 AND ts_ms < $3 AND prompt_hash IS NOT NULL) AS numbered
             WHERE rn > 1
             GROUP BY k",
            bytewise = bytewise(&self.db),
            input = sums.sum("input_tokens"),
            output = sums.sum("output_tokens"),
            cost = sums.sum("cost_nanos"),
            unpriced = sums.sum("CASE WHEN cost_nanos IS NULL THEN 1 ELSE 0 END"),
            prompts = sums.sum("CASE WHEN rn = 2 THEN 1 ELSE 0 END"),
            rowid = self.db.pick("rowid", "ctid"),
        );
        let rows: Vec<(CostRow, i64)> = on_read!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(&self.org_id)
                .bind(period.from_ms())
                .bind(period.to_ms())
                .fetch_all(pool)
                .await
                .map_err(backend)?
                .iter()
                .map(|r| Ok((cost_row(r)?, r.wide_count("prompts")?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(backend)?
        });
        let mut rows = rows;
        rows.sort_by(|a, b| b.0.cost.cmp(&a.0.cost).then_with(|| a.0.key.cmp(&b.0.key)));
        let mut profile = RepeatProfile::default();
        for (row, prompts) in rows {
            profile.repeated_prompts += prompts;
            profile.repeat_calls += row.calls;
            profile.repeat_cost = profile.repeat_cost + row.cost;
            profile.top_features.push(row);
        }
        profile.top_features.truncate(5);
        Ok(profile)
        })
    }

    async fn batch_candidates(&self, period: &Period) -> Result<Vec<BatchCandidate>, QueryError> {
        widening!(&self.db, sums => {
        let night = format!(
            "((ts_ms / 3600000) % 24) < {}",
            apogee_analytics::queries::NIGHT_END_HOUR
        );
        let when = |then: &str| sums.sum(&format!("CASE WHEN {night} THEN {then} ELSE 0 END"));
        let sql = format!(
            "SELECT COALESCE(feature, '(none)'){bytewise} AS f, model{bytewise} AS model,
                    COUNT(*) AS all_calls, {calls} AS n_calls, {fresh} AS n_fresh,
                    {cached} AS n_cached, {output} AS n_output, {cost} AS n_cost
             FROM usage_records
             WHERE org_id = $1 AND ts_ms >= $2 AND ts_ms < $3 AND batch = FALSE
               AND price_source IS NOT NULL AND price_source <> 'client'
             GROUP BY f, model ORDER BY f, model",
            bytewise = bytewise(&self.db),
            calls = when("1"),
            fresh = when("input_tokens - cached_input_tokens"),
            cached = when("cached_input_tokens"),
            output = when("output_tokens"),
            cost = when("cost_nanos"),
        );
        on_read!(&self.db, pool => {
            let rows = sqlx::query(&sql)
                .bind(&self.org_id)
                .bind(period.from_ms())
                .bind(period.to_ms())
                .fetch_all(pool)
                .await
                .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    Ok(BatchCandidate {
                        feature: r.text("f")?,
                        model: r.text("model")?,
                        interactive_calls: r.int("all_calls")?,
                        night: mix(r, "n_")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(backend)
        })
        })
    }

    async fn latency_by_model(&self, period: &Period) -> Result<Vec<LatencyRow>, QueryError> {
        widening!(&self.db, sums => {
        // Calls and errors from the rollups; percentiles need every latency, read sorted so
        // each model's sample arrives in order.
        let sql = format!(
            "SELECT model, {calls} AS calls, {errors} AS errors
             FROM ({UNION_ROWS}) AS u GROUP BY model",
            calls = sums.sum("calls"),
            errors = sums.sum("error_calls"),
        );
        let split = Split::of(period);
        let (counts, latencies) = on_read!(&self.db, pool => {
            let counts = bind_split!(sqlx::query(&sql), &self.org_id, split)
                .fetch_all(pool)
                .await
                .map_err(backend)?
                .iter()
                .map(|r| Ok((r.text("model")?, r.wide_count("calls")?, r.wide_count("errors")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(backend)?;
            let latencies = sqlx::query(
                "SELECT model, latency_ms FROM usage_records
                 WHERE org_id = $1 AND ts_ms >= $2 AND ts_ms < $3 AND latency_ms IS NOT NULL
                 ORDER BY model, latency_ms",
            )
            .bind(&self.org_id)
            .bind(period.from_ms())
            .bind(period.to_ms())
            .fetch_all(pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|r| Ok((r.text("model")?, r.int("latency_ms")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(backend)?;
            (counts, latencies)
        });
        let mut samples: std::collections::HashMap<String, Vec<i64>> = Default::default();
        for (model, latency) in latencies {
            samples.entry(model).or_default().push(latency);
        }
        let mut rows = Vec::with_capacity(counts.len());
        for (model, calls, errors) in counts {
            let lat = samples.remove(&model).unwrap_or_default();
            rows.push(latency_row(model, calls, errors, &lat));
        }
        sort_latency_rows(&mut rows);
        Ok(rows)
        })
    }

    async fn breakdown_feature_model(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelCost>, QueryError> {
        widening!(&self.db, sums => more::breakdown_feature_model(&self.db, &self.org_id, period, sums).await)
    }

    async fn feature_model_traffic(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelMix>, QueryError> {
        widening!(&self.db, sums => more::feature_model_traffic(&self.db, &self.org_id, period, sums).await)
    }

    async fn output_tails(
        &self,
        period: &Period,
        percentile: i64,
    ) -> Result<Vec<OutputTail>, QueryError> {
        more::output_tails(&self.db, &self.org_id, period, percentile).await
    }

    async fn input_band(
        &self,
        period: &Period,
        model: &str,
        above: i64,
        up_to: i64,
    ) -> Result<InputBand, QueryError> {
        widening!(&self.db, sums => more::input_band(&self.db, &self.org_id, period, model, above, up_to, sums).await)
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
