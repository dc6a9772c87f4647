//! The recommenders' inputs read from the recommender summaries (`crate::summaries`,
//! migration 17) for the whole hours of a period, and from raw rows for its partial edge hours
//! ([`Split`]), as the engine reads the hourly rollups: a 30-day question reads ~720 hours ×
//! models × features of summaries instead of every call.
//!
//! Output tails read the daily output-length counts for whole UTC days instead, and raw rows
//! for the rest of the period. Each is exact: equal to the raw-row reference
//! (`RawUsage::raw_*`), which `tests/summaries_equal_raw.rs` checks. A question the summaries do not keep
//! (right-sizing limits other than `ShortLimits::default()`, a prompt band not on the
//! summaries' steps, a filtered model mix) is answered from raw rows.

use std::collections::BTreeMap;

use apogee_analytics::{
    BatchCandidate, CostRow, Dimension, FeatureModelCost, Grouping, InputBand, ModelMix, Nanos,
    OutputTail, Period, QueryError, RepeatProfile, TokenMix, TrafficProfile, UsageQuery,
};

use super::recommender_inputs::{OutputCount, mix, output_histogram, tails_of};
use super::{RawUsage, Split, backend, bytewise, cost_row};
use crate::db::{Cols, Sums, on_read};
use crate::summaries::{
    DAY_MS, LONG_INPUT_STEP, LONG_INPUT_TOKENS, PER_CALL_TIMED, day_floor, summarised_limits,
};

/// The five columns of a [`TokenMix`] over the summary rows matching `cond`, named as
/// `recommender_inputs::mix_columns` names them (read back with `mix`).
fn mix_columns(sums: Sums, cond: &str, p: &str) -> String {
    let sum = |col: &str, name: &str| {
        format!(
            "{} AS {p}{name}",
            sums.sum(&format!("CASE WHEN {cond} THEN {col} ELSE 0 END"))
        )
    };
    [
        sum("calls", "calls"),
        sum("fresh_input_tokens", "fresh"),
        sum("cached_input_tokens", "cached"),
        sum("output_tokens", "output"),
        sum("cost_nanos", "cost"),
    ]
    .join(", ")
}

fn add_mix(to: &mut TokenMix, m: &TokenMix) {
    to.calls = to.calls.saturating_add(m.calls);
    to.fresh_input_tokens = to.fresh_input_tokens.saturating_add(m.fresh_input_tokens);
    to.cached_input_tokens = to.cached_input_tokens.saturating_add(m.cached_input_tokens);
    to.output_tokens = to.output_tokens.saturating_add(m.output_tokens);
    to.cost = to.cost + m.cost;
}

/// `SELECT`s over `usage_mix_hourly` take the org, then the whole hours, as `$1..$3`.
const MIX_WHERE: &str = "org_id = $1 AND hour_ms >= $2 AND hour_ms < $3";

impl RawUsage {
    pub(super) async fn summarised_traffic_profile(
        &self,
        period: &Period,
        model: &str,
        max_input_tokens: i64,
        max_output_tokens: i64,
    ) -> Result<TrafficProfile, QueryError> {
        let limits = summarised_limits();
        if (max_input_tokens, max_output_tokens)
            != (limits.max_input_tokens, limits.max_output_tokens)
        {
            return self
                .raw_traffic_profile(period, model, max_input_tokens, max_output_tokens)
                .await;
        }
        let split = Split::of(period);
        let mut total = TrafficProfile {
            model: model.to_string(),
            ..TrafficProfile::default()
        };
        if split.has_hours() {
            total = widening!(&self.db, sums => {
                let sql = format!(
                    "SELECT {all_calls} AS all_calls, {all_cost} AS all_cost, {interactive}, {batch}
                     FROM usage_mix_hourly WHERE {MIX_WHERE} AND model = $4",
                    all_calls = sums.sum("calls"),
                    all_cost = sums.sum("cost_nanos"),
                    interactive = mix_columns(sums, "short = 1 AND batch = 0", "i_"),
                    batch = mix_columns(sums, "short = 1 AND batch = 1", "b_"),
                );
                on_read!(&self.db, pool => {
                    let r = sqlx::query(&sql)
                        .bind(&self.org_id)
                        .bind(split.hours_from)
                        .bind(split.hours_to)
                        .bind(model)
                        .fetch_one(pool)
                        .await
                        .map_err(backend)?;
                    Ok(TrafficProfile {
                        model: model.to_string(),
                        short_interactive: mix(&r, "i_").map_err(backend)?,
                        short_batch: mix(&r, "b_").map_err(backend)?,
                        all_calls: r.wide_count("all_calls").map_err(backend)?,
                        all_cost: Nanos(r.wide("all_cost").map_err(backend)?),
                    })
                })
            })?;
        }
        for edge in split.edges()? {
            let p = self
                .raw_traffic_profile(&edge, model, max_input_tokens, max_output_tokens)
                .await?;
            add_mix(&mut total.short_interactive, &p.short_interactive);
            add_mix(&mut total.short_batch, &p.short_batch);
            total.all_calls = total.all_calls.saturating_add(p.all_calls);
            total.all_cost = total.all_cost + p.all_cost;
        }
        Ok(total)
    }

    pub(super) async fn summarised_batch_candidates(
        &self,
        period: &Period,
    ) -> Result<Vec<BatchCandidate>, QueryError> {
        let split = Split::of(period);
        let mut by_key: BTreeMap<(String, String), BatchCandidate> = BTreeMap::new();
        let mut merge = |c: BatchCandidate| {
            let entry = by_key
                .entry((c.feature.clone(), c.model.clone()))
                .or_insert_with(|| BatchCandidate {
                    feature: c.feature.clone(),
                    model: c.model.clone(),
                    interactive_calls: 0,
                    night: TokenMix::default(),
                });
            entry.interactive_calls = entry.interactive_calls.saturating_add(c.interactive_calls);
            add_mix(&mut entry.night, &c.night);
        };
        if split.has_hours() {
            // Night is the hour of day of the summary's hour; only calls with their own time
            // count (an aggregated record's time is its bucket's start), as in the reference.
            let night = format!(
                "((hour_ms / 3600000) % 24) < {} AND per_call = {PER_CALL_TIMED}",
                apogee_analytics::queries::NIGHT_END_HOUR
            );
            let found: Vec<BatchCandidate> = widening!(&self.db, sums => {
                let sql = format!(
                    "SELECT feature_key{b} AS f, model{b} AS model, {all_calls} AS all_calls,
                            {night_mix}
                     FROM usage_mix_hourly WHERE {MIX_WHERE} AND batch = 0
                     GROUP BY feature_key, model",
                    b = bytewise(&self.db),
                    all_calls = sums.sum("calls"),
                    night_mix = mix_columns(sums, &night, "n_"),
                );
                on_read!(&self.db, pool => {
                    sqlx::query(&sql)
                        .bind(&self.org_id)
                        .bind(split.hours_from)
                        .bind(split.hours_to)
                        .fetch_all(pool)
                        .await
                        .map_err(backend)?
                        .iter()
                        .map(|r| {
                            Ok(BatchCandidate {
                                feature: r.text("f")?,
                                model: r.text("model")?,
                                interactive_calls: r.wide_count("all_calls")?,
                                night: mix(r, "n_")?,
                            })
                        })
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(backend)
                })
            })?;
            found.into_iter().for_each(&mut merge);
        }
        for edge in split.edges()? {
            self.raw_batch_candidates(&edge)
                .await?
                .into_iter()
                .for_each(&mut merge);
        }
        Ok(by_key.into_values().collect())
    }

    pub(super) async fn summarised_input_band(
        &self,
        period: &Period,
        model: &str,
        above: i64,
        up_to: i64,
    ) -> Result<InputBand, QueryError> {
        let on_steps = above >= LONG_INPUT_TOKENS
            && above % LONG_INPUT_STEP == 0
            && up_to % LONG_INPUT_STEP == 0;
        if !on_steps {
            return self.raw_input_band(period, model, above, up_to).await;
        }
        let split = Split::of(period);
        let mut band = InputBand {
            model: model.to_string(),
            above_input_tokens: above,
            up_to_input_tokens: up_to,
            interactive: TokenMix::default(),
            batch: TokenMix::default(),
        };
        if split.has_hours() {
            let (interactive, batch) = widening!(&self.db, sums => {
                let in_band = "long_input > $5 AND long_input <= $6";
                let sql = format!(
                    "SELECT {interactive}, {batch}
                     FROM usage_mix_hourly WHERE {MIX_WHERE} AND model = $4",
                    interactive = mix_columns(sums, &format!("{in_band} AND batch = 0"), "i_"),
                    batch = mix_columns(sums, &format!("{in_band} AND batch = 1"), "b_"),
                );
                on_read!(&self.db, pool => {
                    let r = sqlx::query(&sql)
                        .bind(&self.org_id)
                        .bind(split.hours_from)
                        .bind(split.hours_to)
                        .bind(model)
                        .bind(above / LONG_INPUT_STEP)
                        .bind(up_to / LONG_INPUT_STEP)
                        .fetch_one(pool)
                        .await
                        .map_err(backend)?;
                    Ok((
                        mix(&r, "i_").map_err(backend)?,
                        mix(&r, "b_").map_err(backend)?,
                    ))
                })
            })?;
            band.interactive = interactive;
            band.batch = batch;
        }
        for edge in split.edges()? {
            let b = self.raw_input_band(&edge, model, above, up_to).await?;
            add_mix(&mut band.interactive, &b.interactive);
            add_mix(&mut band.batch, &b.batch);
        }
        Ok(band)
    }

    /// The engine's model mix: from the summaries when the whole org is asked, ungrouped or
    /// by feature or model; otherwise (filters, other groupings) from raw rows.
    pub(super) async fn summarised_model_mix(
        &self,
        q: &UsageQuery,
    ) -> Result<Vec<ModelMix>, QueryError> {
        // The key's expression, and what to group by.
        let (key, group) = match &q.group_by {
            None => ("''", "model"),
            Some(Grouping::By(Dimension::Feature)) => ("feature_key", "feature_key, model"),
            Some(Grouping::By(Dimension::Model)) => ("model", "model"),
            Some(_) => return self.raw_model_mix(q).await,
        };
        if !q.scope.filters.is_empty() {
            return self.raw_model_mix(q).await;
        }
        let split = Split::of(&q.period);
        let mut merged: BTreeMap<(Option<String>, String), (TokenMix, TokenMix)> = BTreeMap::new();
        if split.has_hours() {
            let found: Vec<(String, String, TokenMix, TokenMix)> = widening!(&self.db, sums => {
                let sql = format!(
                    "SELECT {key}{b} AS k, model{b} AS model, {interactive}, {batch}
                     FROM usage_mix_hourly WHERE {MIX_WHERE}
                     GROUP BY {group}",
                    b = bytewise(&self.db),
                    interactive = mix_columns(sums, "batch = 0", "i_"),
                    batch = mix_columns(sums, "batch = 1", "b_"),
                );
                on_read!(&self.db, pool => {
                    sqlx::query(&sql)
                        .bind(&self.org_id)
                        .bind(split.hours_from)
                        .bind(split.hours_to)
                        .fetch_all(pool)
                        .await
                        .map_err(backend)?
                        .iter()
                        .map(|r| Ok((r.text("k")?, r.text("model")?, mix(r, "i_")?, mix(r, "b_")?)))
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(backend)
                })
            })?;
            for (k, model, interactive, batch) in found {
                let k = q.group_by.as_ref().map(|_| k);
                let m = merged.entry((k, model)).or_default();
                add_mix(&mut m.0, &interactive);
                add_mix(&mut m.1, &batch);
            }
        }
        for edge in split.edges()? {
            let edge_q = UsageQuery {
                period: edge,
                ..q.clone()
            };
            for m in self.raw_model_mix(&edge_q).await? {
                let e = merged.entry((m.key, m.model)).or_default();
                add_mix(&mut e.0, &m.interactive);
                add_mix(&mut e.1, &m.batch);
            }
        }
        if merged.len() > apogee_analytics::MAX_GROUPS {
            return Err(QueryError::model_mix_too_large());
        }
        Ok(merged
            .into_iter()
            .map(|((key, model), (interactive, batch))| ModelMix {
                key,
                model,
                interactive,
                batch,
            })
            .collect())
    }

    /// Spend by feature × model from the hourly rollups (`usage_hourly` keeps both), edges
    /// from raw rows.
    pub(super) async fn summarised_breakdown_feature_model(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelCost>, QueryError> {
        let split = Split::of(period);
        let mut by_key: BTreeMap<(String, String), (i64, Nanos)> = BTreeMap::new();
        if split.has_hours() {
            let found: Vec<FeatureModelCost> = widening!(&self.db, sums => {
                let sql = format!(
                    "SELECT feature_key{b} AS f, model{b} AS model, {calls} AS calls,
                            {cost} AS cost
                     FROM usage_hourly WHERE {MIX_WHERE}
                     GROUP BY feature_key, model",
                    b = bytewise(&self.db),
                    calls = sums.sum("calls"),
                    cost = sums.sum("cost_nanos"),
                );
                on_read!(&self.db, pool => {
                    sqlx::query(&sql)
                        .bind(&self.org_id)
                        .bind(split.hours_from)
                        .bind(split.hours_to)
                        .fetch_all(pool)
                        .await
                        .map_err(backend)?
                        .iter()
                        .map(|r| {
                            Ok(FeatureModelCost {
                                feature: r.text("f")?,
                                model: r.text("model")?,
                                calls: r.wide_count("calls")?,
                                cost: Nanos(r.wide("cost")?),
                            })
                        })
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(backend)
                })
            })?;
            for row in found {
                let e = by_key.entry((row.feature, row.model)).or_default();
                *e = (e.0.saturating_add(row.calls), e.1 + row.cost);
            }
        }
        for edge in split.edges()? {
            for row in self.raw_breakdown_feature_model(&edge).await? {
                let e = by_key.entry((row.feature, row.model)).or_default();
                *e = (e.0.saturating_add(row.calls), e.1 + row.cost);
            }
        }
        let mut rows: Vec<FeatureModelCost> = by_key
            .into_iter()
            .map(|((feature, model), (calls, cost))| FeatureModelCost {
                feature,
                model,
                calls,
                cost,
            })
            .collect();
        // Cost descending, then feature and model (byte-wise), as the reference sorts.
        rows.sort_by(|a, b| {
            b.cost
                .cmp(&a.cost)
                .then_with(|| a.feature.cmp(&b.feature))
                .then_with(|| a.model.cmp(&b.model))
        });
        Ok(rows)
    }

    /// Repeated prompts from the repeated-prompt summaries (`prompt_repeats`) for the whole
    /// hours and raw rows for the edges: per prompt, every call of the period after its first
    /// (by time, then insertion), by the feature of the repeat; a prompt counts for the
    /// feature of its second call. Calls of one prompt in the same millisecond under two
    /// features may be ordered differently from the reference.
    ///
    /// Folded in one statement ([`REPEATS_BY_FEATURE`]): what travels back is one row per
    /// feature, not one per summary row.
    pub(super) async fn summarised_repeated_prompts(
        &self,
        period: &Period,
    ) -> Result<RepeatProfile, QueryError> {
        let split = Split::of(period);
        let found: Vec<(CostRow, i64)> = widening!(&self.db, sums => {
            let sql = REPEATS_BY_FEATURE
                .replace("{rowid}", self.db.pick("rowid", "ctid"))
                .replace("{b}", bytewise(&self.db))
                .replace("{calls}", &sums.sum("d_n"))
                .replace("{input}", &sums.sum("d_i"))
                .replace("{output}", &sums.sum("d_o"))
                .replace("{cost}", &sums.sum("d_c"))
                .replace("{unpriced}", &sums.sum("d_u"))
                .replace("{prompts}", &sums.sum("d_p"));
            on_read!(&self.db, pool => {
                sqlx::query(&sql)
                    .bind(&self.org_id)
                    .bind(split.hours_from)
                    .bind(split.hours_to)
                    .bind(split.from)
                    .bind(split.edge1_to)
                    .bind(split.edge2_from)
                    .bind(split.to)
                    .fetch_all(pool)
                    .await
                    .map_err(backend)?
                    .iter()
                    .map(|r| Ok((cost_row(r)?, r.wide_count("prompts")?)))
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(backend)
            })
        })?;
        Ok(repeat_profile(found))
    }

    /// Output tails from the daily output-length counts for the period's whole UTC days and
    /// raw rows for the rest (none for the product's periods, which are whole days): the
    /// same histogram the reference builds, folded the same way.
    pub(super) async fn summarised_output_tails(
        &self,
        period: &Period,
        percentile: i64,
    ) -> Result<Vec<OutputTail>, QueryError> {
        let (from, to) = (period.from_ms(), period.to_ms());
        let days_from = day_floor(from.saturating_add(DAY_MS - 1));
        let days_to = day_floor(to);
        let mut counts: BTreeMap<(String, String, i64), (i64, i64)> = BTreeMap::new();
        let mut add = |(f, model, output, n_i, n_b): OutputCount| {
            let c = counts.entry((f, model, output)).or_default();
            *c = (c.0.saturating_add(n_i), c.1.saturating_add(n_b));
        };
        let raw = if days_from < days_to {
            let found: Vec<OutputCount> = widening!(&self.db, sums => {
                let sql = format!(
                    "SELECT feature_key{b} AS f, model{b} AS model, output_tokens AS output,
                            {n_i} AS n_i, {n_b} AS n_b
                     FROM usage_output_daily
                     WHERE org_id = $1 AND day_ms >= $2 AND day_ms < $3
                     GROUP BY feature_key, model, output_tokens",
                    b = bytewise(&self.db),
                    n_i = sums.sum("interactive_calls"),
                    n_b = sums.sum("batch_calls"),
                );
                on_read!(&self.db, pool => {
                    sqlx::query(&sql)
                        .bind(&self.org_id)
                        .bind(days_from)
                        .bind(days_to)
                        .fetch_all(pool)
                        .await
                        .map_err(backend)?
                        .iter()
                        .map(|r| {
                            Ok((
                                r.text("f")?,
                                r.text("model")?,
                                r.int("output")?,
                                r.wide_count("n_i")?,
                                r.wide_count("n_b")?,
                            ))
                        })
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(backend)
                })
            })?;
            found.into_iter().for_each(&mut add);
            [(from, days_from), (days_to, to)]
        } else {
            // No whole day inside: all raw, read once.
            [(from, to), (to, to)]
        };
        for (edge_from, edge_to) in raw.into_iter().filter(|(a, b)| a < b) {
            let at = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .ok_or_else(|| QueryError::Backend(format!("{ms} ms is out of range")))
            };
            let edge = Period::new(at(edge_from)?, at(edge_to)?);
            output_histogram(&self.db, &self.org_id, &edge)
                .await?
                .into_iter()
                .for_each(&mut add);
        }
        let histogram: Vec<OutputCount> = counts
            .into_iter()
            .map(|((f, model, output), (n_i, n_b))| (f, model, output, n_i, n_b))
            .collect();
        Ok(tails_of(&histogram, percentile))
    }
}

/// The period's repeats by feature, in one statement: each prompt's parts — a summary row
/// (an hour × feature of `usage_repeats_hourly`) or one raw call of an edge (`$4..$5`,
/// `$6..$7`) — ordered by their first call (time, then insertion; parts of one hour by
/// feature), then per feature every call of a prompt with two or more calls in the period,
/// less each prompt's first call (the first part's own first), and one prompt for the feature
/// of its second call (the first part's own second, or the next part's first if earlier).
/// `{calls}`…`{prompts}` are the wide sums of `d_n`…`d_p` ([`Sums::sum`]).
const REPEATS_BY_FEATURE: &str = "
WITH parts AS (
  SELECT model, prompt_hash, feature_key AS f, row_count AS n, input_tokens AS i,
         output_tokens AS o, cost_nanos AS c, unpriced_rows AS u, first_ts_ms AS t1,
         first_input_tokens AS fi, first_output_tokens AS fo, first_cost_nanos AS fc,
         second_ts_ms AS t2, 0 AS seq
  FROM usage_repeats_hourly
  WHERE org_id = $1 AND hour_ms >= $2 AND hour_ms < $3
  UNION ALL
  SELECT model, prompt_hash, COALESCE(feature, '(none)'), 1, input_tokens, output_tokens,
         COALESCE(cost_nanos, 0), CASE WHEN cost_nanos IS NULL THEN 1 ELSE 0 END, ts_ms,
         input_tokens, output_tokens, cost_nanos, NULL,
         ROW_NUMBER() OVER (ORDER BY ts_ms, {rowid})
  FROM usage_records
  WHERE org_id = $1 AND prompt_hash IS NOT NULL
    AND ((ts_ms >= $4 AND ts_ms < $5) OR (ts_ms >= $6 AND ts_ms < $7))
),
ranked AS (
  SELECT f, n, i, o, c, u, fi, fo, fc, t2,
         SUM(n) OVER (PARTITION BY model, prompt_hash) AS total,
         ROW_NUMBER() OVER w AS r, LEAD(t1) OVER w AS next_t1, LEAD(f) OVER w AS next_f
  FROM parts
  WINDOW w AS (PARTITION BY model, prompt_hash ORDER BY t1, seq, f{b})
),
per_feature AS (
  SELECT f AS k,
         n - CASE WHEN r = 1 THEN 1 ELSE 0 END AS d_n,
         i - CASE WHEN r = 1 THEN fi ELSE 0 END AS d_i,
         o - CASE WHEN r = 1 THEN fo ELSE 0 END AS d_o,
         c - CASE WHEN r = 1 THEN COALESCE(fc, 0) ELSE 0 END AS d_c,
         u - CASE WHEN r = 1 AND fc IS NULL THEN 1 ELSE 0 END AS d_u,
         0 AS d_p
  FROM ranked WHERE total >= 2
  UNION ALL
  SELECT CASE WHEN t2 IS NOT NULL AND (next_t1 IS NULL OR next_t1 >= t2) THEN f
              WHEN next_t1 IS NOT NULL THEN next_f
              ELSE f END,
         0, 0, 0, 0, 0, 1
  FROM ranked WHERE total >= 2 AND r = 1
)
SELECT k{b} AS k, {calls} AS calls, {input} AS input_tokens, {output} AS output_tokens,
       {cost} AS cost, {unpriced} AS unpriced_calls, {prompts} AS prompts
FROM per_feature
GROUP BY k";

/// The period's repeat profile from its repeats by feature (with the prompts each counts):
/// features by cost, the top five kept.
fn repeat_profile(by_feature: Vec<(CostRow, i64)>) -> RepeatProfile {
    let mut rows: Vec<(CostRow, i64)> = by_feature
        .into_iter()
        .filter(|(row, _)| row.calls > 0)
        .collect();
    rows.sort_by(|a, b| b.0.cost.cmp(&a.0.cost).then_with(|| a.0.key.cmp(&b.0.key)));
    let mut profile = RepeatProfile::default();
    for (row, prompts) in rows {
        profile.repeated_prompts += prompts;
        profile.repeat_calls += row.calls;
        profile.repeat_cost = profile.repeat_cost + row.cost;
        profile.top_features.push(row);
    }
    profile.top_features.truncate(5);
    profile
}
