//! The recommender summaries (migration 17): per hour, what the optimization agent's
//! recommenders need from records priced from the catalog, kept at ingest beside the hourly
//! rollups (`rollup.rs`) by the same rule — folded from the rows an insert or a delete
//! returns, applied in its transaction — so they always equal the raw rows they summarise
//! and a recommender's cost grows with hours × features × models, not with calls.
//!
//! - `usage_mix_hourly`: the token mix by model, feature, batch flag, per-call class (an
//!   aggregated record, a single call in a time bucket, a single call with its own time), the
//!   right-sizing "short" flag at [`ShortLimits::default`] and the long-prompt band (per-call
//!   prompts over [`LONG_INPUT_TOKENS`], in steps of [`LONG_INPUT_STEP`]). Right-sizing,
//!   Batch API (night-time traffic), prompt caching and context tiers read it, exactly.
//! - `usage_output_daily`: single-call output lengths by UTC day, model and feature, exact
//!   (calls per length, interactive and batch apart). Output caps read it, exactly. By day,
//!   because lengths spread wide: a day holds at most one row per distinct length.
//!
//! A summary row sums records of several hourly rollup rows (every provider and user of its
//! hour), whose own sums are checked at ingest; its additions are checked here
//! ([`SummaryDelta::add_row`]) and a real org stays far from the 64-bit limit (9.2 × 10⁹
//! dollars in one hour of one model and feature).

use std::borrow::Cow;

use foldhash::HashMap;

use apogee_analytics::savings::ShortLimits;

use crate::prompt_repeats::PromptCall;
use crate::rollup::{KeyText, NONE_KEY, RawRow, hour_floor};

pub(crate) const DAY_MS: i64 = 86_400_000;

/// The start of the UTC day holding `ts_ms`.
pub(crate) fn day_floor(ts_ms: i64) -> i64 {
    ts_ms - ts_ms.rem_euclid(DAY_MS)
}

/// Per-call prompts above this many tokens are kept by length in `usage_mix_hourly`.
pub(crate) const LONG_INPUT_TOKENS: i64 = 100_000;
/// The step, in tokens, of those lengths: context-tier bands whose bounds are multiples of it
/// (the catalog's tiers and their margins all are) are read exactly.
pub(crate) const LONG_INPUT_STEP: i64 = 100;

/// `usage_mix_hourly`'s per-call class of an aggregated record (`request_count` ≠ 1).
pub(crate) const PER_CALL_AGGREGATE: i64 = 0;
/// A single call reported in a time bucket (`bucket_seconds` set): its time is the bucket's.
pub(crate) const PER_CALL_BUCKETED: i64 = 1;
/// A single call with its own timestamp.
pub(crate) const PER_CALL_TIMED: i64 = 2;

/// The short limits the summaries are kept at: what the product asks (`ShortLimits::default`,
/// also written in migration 17's backfill). Other limits are read from raw rows.
pub(crate) fn summarised_limits() -> ShortLimits {
    ShortLimits::default()
}

/// Whether a record is short at `limits`: at most the limits per call (an aggregate's tokens
/// over its `request_count`).
pub(crate) fn is_short(input: i64, output: i64, calls: i64, limits: ShortLimits) -> bool {
    let calls = i128::from(calls);
    i128::from(input) <= i128::from(limits.max_input_tokens) * calls
        && i128::from(output) <= i128::from(limits.max_output_tokens) * calls
}

/// The long-prompt band of a per-call prompt length: 0 up to [`LONG_INPUT_TOKENS`], above it
/// the length in [`LONG_INPUT_STEP`]s rounded up, so `(above, up_to]` with both multiples of
/// the step is `(above / step, up_to / step]` in bands.
pub(crate) fn long_input(per_call_input: i64) -> i64 {
    if per_call_input > LONG_INPUT_TOKENS {
        per_call_input.div_euclid(LONG_INPUT_STEP)
            + i64::from(per_call_input % LONG_INPUT_STEP != 0)
    } else {
        0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct MixKey<'a> {
    pub(crate) hour_ms: i64,
    pub(crate) model: Cow<'a, str>,
    pub(crate) feature: Cow<'a, str>,
    pub(crate) batch: i64,
    pub(crate) per_call: i64,
    pub(crate) short: i64,
    pub(crate) long_input: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MixSums {
    pub(crate) rows: i64,
    pub(crate) calls: i64,
    pub(crate) fresh_input_tokens: i64,
    pub(crate) cached_input_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) cost_nanos: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct OutputKey<'a> {
    pub(crate) day_ms: i64,
    pub(crate) model: Cow<'a, str>,
    pub(crate) feature: Cow<'a, str>,
    pub(crate) output_tokens: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OutputSums {
    pub(crate) interactive_calls: i64,
    pub(crate) batch_calls: i64,
}

/// Summary sums of raw rows, to add to (or subtract from) the summary tables, and for an
/// ingest the calls with a prompt hash (`prompt_repeats`). Keys borrow or own their text as
/// the `RollupDelta` they ride in.
#[derive(Debug, Default)]
pub(crate) struct SummaryDelta<'a> {
    mixes: HashMap<MixKey<'a>, MixSums>,
    outputs: HashMap<OutputKey<'a>, OutputSums>,
    /// Whether calls with a prompt are kept (ingest); a delete only notes that it saw one, so
    /// its memory follows the hours touched, not the rows.
    keep_prompt_calls: bool,
    prompt_calls: Vec<PromptCall>,
    prompts_touched: bool,
}

fn overflow() -> sqlx::Error {
    sqlx::Error::Decode("recommender summary sums out of the 64-bit range".into())
}

impl<'a> SummaryDelta<'a> {
    /// A delta for an ingest: keeps the calls with a prompt hash, in insertion order.
    pub(crate) fn for_ingest() -> SummaryDelta<'a> {
        SummaryDelta {
            keep_prompt_calls: true,
            ..SummaryDelta::default()
        }
    }

    /// The calls with a prompt hash folded in (an ingest's), in insertion order.
    pub(crate) fn prompt_calls(&self) -> &[PromptCall] {
        &self.prompt_calls
    }

    /// Whether any row folded in had a prompt hash.
    pub(crate) fn prompts_touched(&self) -> bool {
        self.prompts_touched
    }

    /// Folds in one raw row, its text kept in the keys as `text` says; rows not priced from
    /// the catalog add nothing.
    pub(crate) fn fold<'r>(
        &mut self,
        r: &RawRow<'r>,
        text: &impl KeyText<'r, 'a>,
    ) -> Result<(), sqlx::Error> {
        if let Some(prompt_hash) = r.prompt_hash {
            self.prompts_touched = true;
            if self.keep_prompt_calls {
                self.prompt_calls.push(PromptCall {
                    model: r.model.to_string(),
                    prompt_hash: prompt_hash.to_string(),
                    ts_ms: r.ts_ms,
                    feature: r.feature.unwrap_or(NONE_KEY).to_string(),
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    cost_nanos: r.cost_nanos,
                });
            }
        }
        match r.price_source {
            None | Some("client") => return Ok(()),
            Some(_) => {}
        }
        let ts_ms = r.ts_ms;
        let hour_ms = hour_floor(ts_ms);
        let model = text.key(r.model);
        let feature = text.key(r.feature.unwrap_or(NONE_KEY));
        let batch = i64::from(r.batch);
        let calls = r.request_count;
        let input = r.input_tokens;
        let cached = r.cached_input_tokens;
        let output = r.output_tokens;
        let cost = r.cost_nanos.unwrap_or(0);
        let per_call = match (calls, r.bucket_seconds) {
            (1, Some(_)) => PER_CALL_BUCKETED,
            (1, None) => PER_CALL_TIMED,
            _ => PER_CALL_AGGREGATE,
        };
        let key = MixKey {
            hour_ms,
            model: model.clone(),
            feature: feature.clone(),
            batch,
            per_call,
            short: i64::from(is_short(input, output, calls, summarised_limits())),
            long_input: long_input(input / calls.max(1)),
        };
        let m = self.mixes.entry(key).or_default();
        *m = MixSums {
            rows: m.rows.checked_add(1).ok_or_else(overflow)?,
            calls: m.calls.checked_add(calls).ok_or_else(overflow)?,
            fresh_input_tokens: m
                .fresh_input_tokens
                .checked_add(input - cached)
                .ok_or_else(overflow)?,
            cached_input_tokens: m
                .cached_input_tokens
                .checked_add(cached)
                .ok_or_else(overflow)?,
            output_tokens: m.output_tokens.checked_add(output).ok_or_else(overflow)?,
            cost_nanos: m.cost_nanos.checked_add(cost).ok_or_else(overflow)?,
        };
        if calls == 1 {
            let key = OutputKey {
                day_ms: day_floor(ts_ms),
                model,
                feature,
                output_tokens: output,
            };
            let o = self.outputs.entry(key).or_default();
            let n = if batch != 0 {
                &mut o.batch_calls
            } else {
                &mut o.interactive_calls
            };
            *n = n.checked_add(1).ok_or_else(overflow)?;
        }
        Ok(())
    }

    /// The mix sums, in key order (upserts lock rows in the same order in every transaction).
    pub(crate) fn mix_entries(&self) -> Vec<(&MixKey<'a>, &MixSums)> {
        let mut entries: Vec<_> = self.mixes.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
    }

    /// The output-length counts, in key order.
    pub(crate) fn output_entries(&self) -> Vec<(&OutputKey<'a>, &OutputSums)> {
        let mut entries: Vec<_> = self.outputs.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
    }
}

/// Summary rows per multi-row upsert (14 binds each at most).
pub(crate) const ROWS_PER_UPSERT: usize = 1_000;

pub(crate) const MIX_UPSERT_HEAD: &str = "INSERT INTO usage_mix_hourly (org_id, hour_ms, model,
     feature_key, batch, per_call, short, long_input, row_count, calls, fresh_input_tokens,
     cached_input_tokens, output_tokens, cost_nanos) ";

pub(crate) const MIX_UPSERT_TAIL: &str = " ON CONFLICT (org_id, hour_ms, model, feature_key,
      batch, per_call, short, long_input)
    DO UPDATE SET
      row_count = usage_mix_hourly.row_count + excluded.row_count,
      calls = usage_mix_hourly.calls + excluded.calls,
      fresh_input_tokens = usage_mix_hourly.fresh_input_tokens + excluded.fresh_input_tokens,
      cached_input_tokens = usage_mix_hourly.cached_input_tokens + excluded.cached_input_tokens,
      output_tokens = usage_mix_hourly.output_tokens + excluded.output_tokens,
      cost_nanos = usage_mix_hourly.cost_nanos + excluded.cost_nanos";

pub(crate) const OUTPUT_UPSERT_HEAD: &str = "INSERT INTO usage_output_daily (org_id, day_ms,
     model, feature_key, output_tokens, interactive_calls, batch_calls) ";

pub(crate) const OUTPUT_UPSERT_TAIL: &str = " ON CONFLICT (org_id, day_ms, model, feature_key,
      output_tokens)
    DO UPDATE SET
      interactive_calls = usage_output_daily.interactive_calls + excluded.interactive_calls,
      batch_calls = usage_output_daily.batch_calls + excluded.batch_calls";

/// SQLite's write of an ingest's summaries, as `rollup::sqlite_add_delta` (which calls it).
pub(crate) fn sqlite_add_summaries(
    conn: &rusqlite::Connection,
    delta: &SummaryDelta<'_>,
    org_id: &str,
) -> rusqlite::Result<()> {
    use crate::db::sqlite_values;
    let mut upsert = conn.prepare(&format!(
        "{MIX_UPSERT_HEAD}{}{MIX_UPSERT_TAIL}",
        sqlite_values(14)
    ))?;
    for (k, s) in delta.mix_entries() {
        upsert.execute(rusqlite::params![
            org_id,
            k.hour_ms,
            &*k.model,
            &*k.feature,
            k.batch,
            k.per_call,
            k.short,
            k.long_input,
            s.rows,
            s.calls,
            s.fresh_input_tokens,
            s.cached_input_tokens,
            s.output_tokens,
            s.cost_nanos,
        ])?;
    }
    let mut upsert = conn.prepare(&format!(
        "{OUTPUT_UPSERT_HEAD}{}{OUTPUT_UPSERT_TAIL}",
        sqlite_values(7)
    ))?;
    for (k, s) in delta.output_entries() {
        upsert.execute(rusqlite::params![
            org_id,
            k.day_ms,
            &*k.model,
            &*k.feature,
            k.output_tokens,
            s.interactive_calls,
            s.batch_calls,
        ])?;
    }
    Ok(())
}

/// Adds a [`SummaryDelta`] to the org's summaries (`sign` 1) or takes it away (`sign` -1, then
/// dropping rows no raw row backs any more), inside the transaction `tx`; called by
/// `rollup::apply_delta!`, for the same reason a macro.
macro_rules! apply_summaries {
    ($tx:expr, $delta:expr, $org_id:expr, $sign:expr) => {{
        let (tx, delta, org_id, sign): (_, &$crate::summaries::SummaryDelta<'_>, &str, i64) =
            ($tx, $delta, $org_id, $sign);
        let mixes = delta.mix_entries();
        for chunk in mixes.chunks($crate::summaries::ROWS_PER_UPSERT) {
            let mut qb = sqlx::QueryBuilder::new($crate::summaries::MIX_UPSERT_HEAD);
            qb.push_values(chunk, |mut b, (k, s)| {
                b.push_bind(org_id)
                    .push_bind(k.hour_ms)
                    .push_bind(&*k.model)
                    .push_bind(&*k.feature)
                    .push_bind(k.batch)
                    .push_bind(k.per_call)
                    .push_bind(k.short)
                    .push_bind(k.long_input)
                    .push_bind(sign * s.rows)
                    .push_bind(sign * s.calls)
                    .push_bind(sign * s.fresh_input_tokens)
                    .push_bind(sign * s.cached_input_tokens)
                    .push_bind(sign * s.output_tokens)
                    .push_bind(sign * s.cost_nanos);
            });
            qb.push($crate::summaries::MIX_UPSERT_TAIL);
            qb.build().execute(&mut **tx).await?;
        }
        let outputs = delta.output_entries();
        for chunk in outputs.chunks($crate::summaries::ROWS_PER_UPSERT) {
            let mut qb = sqlx::QueryBuilder::new($crate::summaries::OUTPUT_UPSERT_HEAD);
            qb.push_values(chunk, |mut b, (k, s)| {
                b.push_bind(org_id)
                    .push_bind(k.day_ms)
                    .push_bind(&*k.model)
                    .push_bind(&*k.feature)
                    .push_bind(k.output_tokens)
                    .push_bind(sign * s.interactive_calls)
                    .push_bind(sign * s.batch_calls);
            });
            qb.push($crate::summaries::OUTPUT_UPSERT_TAIL);
            qb.build().execute(&mut **tx).await?;
        }
        if sign < 0 && !mixes.is_empty() {
            sqlx::query("DELETE FROM usage_mix_hourly WHERE org_id = $1 AND row_count <= 0")
                .bind(org_id)
                .execute(&mut **tx)
                .await?;
        }
        if sign < 0 && !outputs.is_empty() {
            sqlx::query(
                "DELETE FROM usage_output_daily
                 WHERE org_id = $1 AND interactive_calls + batch_calls <= 0",
            )
            .bind(org_id)
            .execute(&mut **tx)
            .await?;
        }
    }};
}

pub(crate) use apply_summaries;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backfill_keeps_the_limits_the_product_asks() {
        // Migration 17 writes these numbers in SQL.
        let limits = summarised_limits();
        assert_eq!(
            (limits.max_input_tokens, limits.max_output_tokens),
            (1_000, 300)
        );
        let sql = include_str!("../migrations/0017_recommender_summaries.sql");
        assert!(sql.contains("(input_tokens - 1) / 1000 < request_count"));
        assert!(sql.contains("(output_tokens - 1) / 300 < request_count"));
        assert!(sql.contains("input_tokens / request_count > 100000"));
    }

    /// Both summary tables' rows, in key order, as text (one shape for either backend).
    async fn snapshot(db: &crate::db::Db) -> Vec<String> {
        use crate::db::on_read;
        let mut rows = Vec::new();
        for sql in [
            "SELECT org_id, hour_ms, model, feature_key, batch, per_call, short, long_input,
                    row_count, calls, fresh_input_tokens, cached_input_tokens, output_tokens,
                    cost_nanos
             FROM usage_mix_hourly
             ORDER BY org_id, hour_ms, model, feature_key, batch, per_call, short, long_input",
            "SELECT org_id, day_ms, model, feature_key, output_tokens, interactive_calls,
                    batch_calls, CAST(0 AS BIGINT) AS a, CAST(0 AS BIGINT) AS b,
                    CAST(0 AS BIGINT) AS c, CAST(0 AS BIGINT) AS d, CAST(0 AS BIGINT) AS e,
                    CAST(0 AS BIGINT) AS f, CAST(0 AS BIGINT) AS g
             FROM usage_output_daily ORDER BY org_id, day_ms, model, feature_key, output_tokens",
            "SELECT org_id, COALESCE(lone_ts_ms, -1), model, prompt_hash, row_count,
                    COALESCE(lone_input_tokens, -1), COALESCE(lone_output_tokens, -1),
                    COALESCE(lone_cost_nanos, -1), CAST(0 AS BIGINT) AS a,
                    CAST(0 AS BIGINT) AS b, CAST(0 AS BIGINT) AS c, CAST(0 AS BIGINT) AS d,
                    CAST(0 AS BIGINT) AS e, CAST(0 AS BIGINT) AS f
             FROM usage_prompts ORDER BY org_id, model, prompt_hash",
            "SELECT org_id, hour_ms, model, prompt_hash || '/' || feature_key, row_count,
                    input_tokens, output_tokens, cost_nanos, unpriced_rows, first_ts_ms,
                    first_input_tokens, first_output_tokens, COALESCE(first_cost_nanos, -1),
                    COALESCE(second_ts_ms, -1)
             FROM usage_repeats_hourly
             ORDER BY org_id, hour_ms, model, prompt_hash, feature_key",
        ] {
            let found: Vec<String> = on_read!(db, pool => {
                sqlx::query_as::<_, (String, i64, String, String, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64)>(sql)
                    .fetch_all(pool)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| {
                        let sums = [r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12, r.13];
                        format!("{} {} {} {} {sums:?}", r.0, r.1, r.2, r.3)
                    })
                    .collect()
            });
            rows.extend(found);
        }
        rows
    }

    #[tokio::test]
    async fn the_backfill_equals_what_ingest_keeps() {
        use apogee_analytics::{PriceCatalog, PricedRecord, UsageRecord};
        use chrono::{Duration, TimeZone, Utc};
        let catalog = PriceCatalog::builtin().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap();
        // Every class the summaries tell apart: models with and without tiers, an unpriced
        // model, client costs, aggregates, time buckets, batch calls, long prompts on and off
        // the steps, outputs across many buckets, and a missing feature.
        let mut records = Vec::new();
        for i in 0..400i64 {
            let model = [
                "gpt-4o",
                "claude-sonnet-4",
                "gemini-1.5-pro",
                "no-such-model",
            ][(i % 4) as usize];
            let input = if i % 7 == 0 {
                100_000 + i * 517
            } else {
                i * 13
            };
            let mut u = UsageRecord::new(
                t0 + Duration::minutes(i * 17),
                model.into(),
                input,
                (i * 37) % 3_000,
            );
            u.request_id = Some(format!("r{i}"));
            u.feature = (i % 5 != 0).then(|| ["chat", "search"][(i % 2) as usize].into());
            u.cached_input_tokens = Some(input / 4);
            u.batch = Some(i % 3 == 0);
            u.request_count = Some(if i % 6 == 0 { 3 } else { 1 });
            u.bucket_seconds = (i % 11 == 0).then_some(60);
            u.cost_usd = (i % 13 == 0).then_some(0.25);
            // Prompts sent again and again, once, or not said.
            u.prompt_hash = match i % 4 {
                0 => Some(format!("faq-{}", i % 3)),
                1 => Some(format!("own-{i}")),
                2 => Some(format!("faq-{}", i % 5)),
                _ => None,
            };
            let p = PricedRecord::price(u, &catalog);
            let provider = p.provider(&catalog);
            records.push((p, provider));
        }
        for t in crate::test_support::stores().await {
            let db = &t.store.db;
            // In two batches, so prompts pass from lone to repeated across batches too.
            t.store.ingest_usage("acme", &records[..150]).await.unwrap();
            t.store.ingest_usage("acme", &records[150..]).await.unwrap();
            t.store.ingest_usage("other", &records[..50]).await.unwrap();
            let kept = snapshot(db).await;
            assert!(kept.len() > 100, "{}", kept.len());
            let sql = match t.backend {
                crate::Backend::Sqlite => {
                    include_str!("../migrations/0017_recommender_summaries.sql")
                }
                crate::Backend::Postgres => {
                    include_str!("../migrations/postgres/0017_recommender_summaries.sql")
                }
            };
            let backfill = &sql[sql.find("INSERT INTO usage_mix_hourly").unwrap()..];
            let prompts_sql = match t.backend {
                crate::Backend::Sqlite => include_str!("../migrations/0018_prompt_repeats.sql"),
                crate::Backend::Postgres => {
                    include_str!("../migrations/postgres/0018_prompt_repeats.sql")
                }
            };
            let prompts_backfill =
                &prompts_sql[prompts_sql.find("INSERT INTO usage_prompts").unwrap()..];
            crate::db::on_write!(db, pool => {
                sqlx::raw_sql(
                    "DELETE FROM usage_mix_hourly; DELETE FROM usage_output_daily;
                     DELETE FROM usage_prompts; DELETE FROM usage_repeats_hourly",
                )
                .execute(pool)
                .await
                .unwrap();
                sqlx::raw_sql(backfill).execute(pool).await.unwrap();
                sqlx::raw_sql(prompts_backfill).execute(pool).await.unwrap();
            });
            assert_eq!(snapshot(db).await, kept, "{:?}", t.backend);
            t.store.close().await;
        }
    }

    #[test]
    fn short_and_long_prompts_by_hand() {
        let limits = summarised_limits();
        assert!(is_short(1_000, 300, 1, limits));
        assert!(!is_short(1_001, 300, 1, limits));
        assert!(!is_short(1_000, 301, 1, limits));
        // An aggregate of 3 calls: per call at most the limits.
        assert!(is_short(3_000, 900, 3, limits));
        assert!(!is_short(3_001, 900, 3, limits));
        assert!(is_short(0, 0, 1, limits));
        for (tokens, band) in [
            (0, 0),
            (100_000, 0),
            (100_001, 1_001),
            (128_000, 1_280),
            (128_001, 1_281),
            (153_600, 1_536),
        ] {
            assert_eq!(long_input(tokens), band, "{tokens}");
        }
    }
}
