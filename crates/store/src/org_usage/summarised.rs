//! The recommenders' inputs read from the recommender summaries (`crate::summaries`,
//! migration 17) for the whole hours of a period, and from raw rows for its partial edge hours
//! ([`Split`]), as the engine reads the hourly rollups: a 30-day question reads ~720 hours ×
//! models × features of summaries instead of every call.
//!
//! Output tails read the daily output-length counts for whole UTC days instead, and raw rows
//! for the rest of the period; repeated prompts read daily repeat rows for whole days and
//! hourly ones for the hours around them. Each is exact: equal to the raw-row reference
//! (`RawUsage::raw_*`), which `tests/summaries_equal_raw.rs` checks. A question the summaries do not keep
//! (right-sizing limits other than `ShortLimits::default()`, a prompt band not on the
//! summaries' steps, a filtered model mix) is answered from raw rows.

use std::collections::{BTreeMap, HashMap};

use apogee_analytics::{
    BatchCandidate, CostRow, Dimension, FeatureModelCost, Grouping, InputBand, ModelMix, Nanos,
    OutputTail, Period, QueryError, RepeatProfile, TokenMix, TrafficProfile, UsageQuery,
};

use super::recommender_inputs::{OutputCount, mix, output_histogram, tails_of};
use super::{RawUsage, Split, backend, bytewise};
use crate::db::{Cols, Db, Sums, on_read, on_sqlite_handle, sqlite_error};
use crate::prompt_repeats::SPLIT;
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

    /// Repeated prompts from the repeated-prompt summaries (`prompt_repeats`) — daily rows for
    /// the whole UTC days, hourly rows for the whole hours around them — and raw rows for the
    /// edges: per prompt, every call of the period after its first
    /// (by time, then insertion), by the feature of the repeat; a prompt counts for the
    /// feature of its second call. Calls of one prompt in the same millisecond under two
    /// features may be ordered differently from the reference.
    pub(super) async fn summarised_repeated_prompts(
        &self,
        period: &Period,
    ) -> Result<RepeatProfile, QueryError> {
        let split = Split::of(period);
        // Per prompt, its parts: one per summary row, one per raw edge call.
        let mut parts = PromptParts::default();
        if split.has_hours() {
            // Whole UTC days from the daily rows, the hours around them from the hourly ones.
            let days_from = day_floor(split.hours_from.saturating_add(DAY_MS - 1));
            let days_to = day_floor(split.hours_to);
            let mut reads = Vec::new();
            if days_from < days_to {
                reads.push((true, days_from, days_to));
                reads.push((false, split.hours_from, days_from));
                reads.push((false, days_to, split.hours_to));
            } else {
                reads.push((false, split.hours_from, split.hours_to));
            }
            reads.retain(|(_, a, b)| a < b);
            self.read_repeat_rows(&reads, &mut parts).await?;
        }
        for edge in split.edges()? {
            let sql = format!(
                "SELECT model, prompt_hash, COALESCE(feature, '(none)') AS f, ts_ms,
                        input_tokens, output_tokens, cost_nanos
                 FROM usage_records
                 WHERE org_id = $1 AND ts_ms >= $2 AND ts_ms < $3 AND prompt_hash IS NOT NULL
                 ORDER BY ts_ms, {rowid}",
                rowid = self.db.pick("rowid", "ctid"),
            );
            let call = |r: &dyn Cols, parts: &mut PromptParts| -> Result<(), sqlx::Error> {
                let cost = r.opt_int_at(6)?;
                let (input, output) = (r.int_at(4)?, r.int_at(5)?);
                let part = PromptPart {
                    feature: parts.features.id(r.str_at(2)?),
                    rows: 1,
                    input_tokens: i128::from(input),
                    output_tokens: i128::from(output),
                    cost: i128::from(cost.unwrap_or(0)),
                    unpriced_rows: i128::from(cost.is_none()),
                    first_ts_ms: r.int_at(3)?,
                    first_input_tokens: input,
                    first_output_tokens: output,
                    first_cost: cost,
                    second_ts_ms: None,
                };
                parts.add(r.str_at(0)?, r.str_at(1)?, part);
                Ok(())
            };
            on_read!(&self.db, pool => {
                for r in sqlx::query(&sql)
                    .bind(&self.org_id)
                    .bind(edge.from_ms())
                    .bind(edge.to_ms())
                    .fetch_all(pool)
                    .await
                    .map_err(backend)?
                {
                    call(&r, &mut parts).map_err(backend)?;
                }
            });
        }
        Ok(parts.profile())
    }

    /// Adds the repeat summary rows of each `(daily, from, to)` of `reads` to `parts`: daily
    /// rows (`usage_repeats_daily`) or hourly ones of `[from, to)`. A 10M org's 30 days are ~90k daily rows over a
    /// few thousand prompts, and through sqlx each row cost ~8 µs, ten times SQLite's work. So
    /// SQLite's rows are stepped through the connection's own handle; PostgreSQL folds them
    /// into one part per prompt and feature first ([`repeat_parts_sql`]), which SQLite's
    /// window sort would make slower than reading them.
    async fn read_repeat_rows(
        &self,
        reads: &[(bool, i64, i64)],
        parts: &mut PromptParts,
    ) -> Result<(), QueryError> {
        // Each sum arrives in two parts (see `repeat_rows_sql`), exact together whatever the
        // number of rows folded.
        let sum = |r: &dyn Cols, at: usize| -> Result<i128, sqlx::Error> {
            Ok(i128::from(r.int_at(at)?) * SPLIT + i128::from(r.int_at(at + 1)?))
        };
        let row = |r: &dyn Cols, parts: &mut PromptParts| -> Result<(), sqlx::Error> {
            let part = PromptPart {
                feature: parts.features.id(r.str_at(2)?),
                rows: i128::from(r.int_at(3)?),
                input_tokens: sum(r, 4)?,
                output_tokens: sum(r, 6)?,
                cost: sum(r, 8)?,
                unpriced_rows: i128::from(r.int_at(10)?),
                first_ts_ms: r.int_at(11)?,
                first_input_tokens: r.int_at(12)?,
                first_output_tokens: r.int_at(13)?,
                first_cost: r.opt_int_at(14)?,
                second_ts_ms: r.opt_int_at(15)?,
            };
            parts.add(r.str_at(0)?, r.str_at(1)?, part);
            Ok(())
        };
        match &self.db {
            Db::Sqlite { read, .. } => {
                // One connection and one hand-off for all the reads.
                let mut conn = read.acquire().await.map_err(backend)?;
                on_sqlite_handle(&mut conn, |conn| {
                    for &(daily, from, to) in reads {
                        let mut statement = conn
                            .prepare(&repeat_rows_sql(daily))
                            .map_err(sqlite_error)?;
                        let mut rows = statement
                            .query(rusqlite::params![self.org_id, from, to])
                            .map_err(sqlite_error)?;
                        while let Some(r) = rows.next().map_err(sqlite_error)? {
                            row(r, parts)?;
                        }
                    }
                    Ok::<_, sqlx::Error>(())
                })
                .await
                .map_err(backend)?;
            }
            Db::Postgres(pool) => {
                for &(daily, from, to) in reads {
                    for r in sqlx::query(&repeat_parts_sql(daily))
                        .bind(&self.org_id)
                        .bind(from)
                        .bind(to)
                        .fetch_all(pool)
                        .await
                        .map_err(backend)?
                    {
                        row(&r, parts).map_err(backend)?;
                    }
                }
            }
        }
        Ok(())
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

/// The repeat summary rows of `[$2, $3)`, columns in [`PromptPart`]'s order: model, prompt,
/// feature, rows, then input, output and cost each in two parts (`_hi` and `_lo` on daily rows;
/// `x / 10⁹` and `x % 10⁹` on hourly ones, so their sums never overflow either), the unpriced
/// rows, the row's first call and its second call's time.
fn repeat_rows_sql(daily: bool) -> String {
    let (table, bucket) = if daily {
        ("usage_repeats_daily", "day_ms")
    } else {
        ("usage_repeats_hourly", "hour_ms")
    };
    let parts = |col: &str| {
        if daily {
            format!("{col}_hi AS {col}_hi, {col}_lo AS {col}_lo")
        } else {
            format!("{col} / {SPLIT} AS {col}_hi, {col} % {SPLIT} AS {col}_lo")
        }
    };
    format!(
        "SELECT model, prompt_hash, feature_key, row_count, {input}, {output}, {cost},
                unpriced_rows, first_ts_ms, first_input_tokens, first_output_tokens,
                first_cost_nanos, second_ts_ms
         FROM {table}
         WHERE org_id = $1 AND {bucket} >= $2 AND {bucket} < $3",
        input = parts("input_tokens"),
        output = parts("output_tokens"),
        cost = parts("cost_nanos"),
    )
}

/// [`repeat_rows_sql`] folded into one part per model, prompt and feature, in the same columns:
/// the sums of each part, and the earliest row's first call with the group's second call (the
/// earliest row's own second or the next row's first, whichever is earlier; rows of one group
/// are distinct hours or days, so their first calls differ).
fn repeat_parts_sql(daily: bool) -> String {
    let sum = |col: &str| format!("CAST(SUM({col}_hi) AS BIGINT), CAST(SUM({col}_lo) AS BIGINT)");
    format!(
        "SELECT model, prompt_hash, feature_key, CAST(SUM(row_count) AS BIGINT),
                {input}, {output}, {cost}, CAST(SUM(unpriced_rows) AS BIGINT),
                MIN(first_ts_ms),
                MIN(CASE WHEN nth = 1 THEN first_input_tokens END),
                MIN(CASE WHEN nth = 1 THEN first_output_tokens END),
                MIN(CASE WHEN nth = 1 THEN first_cost_nanos END),
                MIN(CASE WHEN nth = 1 THEN second_ts_ms ELSE first_ts_ms END)
         FROM (SELECT rows_of_period.*,
                      ROW_NUMBER() OVER (PARTITION BY model, prompt_hash, feature_key
                                         ORDER BY first_ts_ms) AS nth
               FROM ({rows}) AS rows_of_period) AS numbered
         GROUP BY model, prompt_hash, feature_key",
        input = sum("input_tokens"),
        output = sum("output_tokens"),
        cost = sum("cost_nanos"),
        rows = repeat_rows_sql(daily),
    )
}

/// A part of one prompt's calls in a period: one repeat summary row (SQLite), its calls under
/// one feature in the summary rows of one read (PostgreSQL, [`repeat_parts_sql`]), or one raw
/// call of an edge hour.
#[derive(Debug, Clone)]
struct PromptPart {
    /// Index into [`PromptParts::features`].
    feature: usize,
    rows: i128,
    input_tokens: i128,
    output_tokens: i128,
    cost: i128,
    unpriced_rows: i128,
    first_ts_ms: i64,
    first_input_tokens: i64,
    first_output_tokens: i64,
    first_cost: Option<i64>,
    second_ts_ms: Option<i64>,
}

/// Names read in one query (models, features), each kept once and referred to by index.
#[derive(Debug, Default)]
struct Names {
    index: HashMap<String, usize>,
    names: Vec<String>,
}

impl Names {
    fn id(&mut self, name: &str) -> usize {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.names.len();
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), id);
        id
    }
}

/// Every prompt's parts in a period, by model and then prompt hash. A period holds many rows
/// over few models and features, so names are kept once and a part allocates nothing but its
/// prompt's first entry.
#[derive(Debug, Default)]
struct PromptParts {
    features: Names,
    models: Names,
    /// Per model (by index into `models`), each prompt hash's parts in read order.
    by_model: Vec<HashMap<String, Vec<PromptPart>>>,
}

impl PromptParts {
    fn add(&mut self, model: &str, prompt_hash: &str, part: PromptPart) {
        let model = self.models.id(model);
        // Ids are handed out in order, so a new model's is the next index.
        if model == self.by_model.len() {
            self.by_model.push(HashMap::new());
        }
        let prompts = &mut self.by_model[model];
        match prompts.get_mut(prompt_hash) {
            Some(parts) => parts.push(part),
            None => {
                prompts.insert(prompt_hash.to_owned(), vec![part]);
            }
        }
    }

    /// The period's repeat profile from each prompt's parts: all its calls but the first, by
    /// feature; the prompt itself counts for the feature of its second call.
    fn profile(self) -> RepeatProfile {
        let mut by_feature = vec![FeatureRepeats::default(); self.features.names.len()];
        for mut parts in self.by_model.into_iter().flat_map(HashMap::into_values) {
            if parts.iter().map(|p| p.rows).sum::<i128>() < 2 {
                continue;
            }
            // The first call is the earliest part's first; parts of one hour with calls in the
            // same millisecond keep their read order (stable sort).
            parts.sort_by_key(|p| p.first_ts_ms);
            let (first, rest) = parts.split_at(1);
            let first = &first[0];
            // The second call: the first part's own second, or the next part's first.
            let second_feature = match (first.second_ts_ms, rest.first()) {
                (Some(ts), Some(next)) if next.first_ts_ms < ts => next.feature,
                (Some(_), _) => first.feature,
                (None, Some(next)) => next.feature,
                (None, None) => first.feature,
            };
            for p in &parts {
                let f = &mut by_feature[p.feature];
                f[0] += p.rows;
                f[1] += p.input_tokens;
                f[2] += p.output_tokens;
                f[3] += p.cost;
                f[4] += p.unpriced_rows;
            }
            let f = &mut by_feature[first.feature];
            f[0] -= 1;
            f[1] -= i128::from(first.first_input_tokens);
            f[2] -= i128::from(first.first_output_tokens);
            f[3] -= i128::from(first.first_cost.unwrap_or(0));
            f[4] -= i128::from(first.first_cost.is_none());
            by_feature[second_feature][5] += 1;
        }
        let rows: Vec<(CostRow, i64)> = self
            .features
            .names
            .into_iter()
            .zip(by_feature)
            .filter(|(_, f)| f[0] > 0)
            .map(|(key, f)| {
                (
                    CostRow {
                        key,
                        calls: narrow(f[0]),
                        input_tokens: narrow(f[1]),
                        output_tokens: narrow(f[2]),
                        cost: Nanos(f[3]),
                        unpriced_calls: narrow(f[4]),
                    },
                    narrow(f[5]),
                )
            })
            .collect();
        repeat_profile(rows)
    }
}

/// The repeat profile from each feature's repeats and its number of repeated prompts: the
/// totals over all of them, the five costliest features first (ties by name).
pub(super) fn repeat_profile(mut rows: Vec<(CostRow, i64)>) -> RepeatProfile {
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

/// A feature's repeats: rows, input, output, cost, unpriced rows, prompts.
type FeatureRepeats = [i128; 6];

fn narrow(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}
