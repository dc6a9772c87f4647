//! [`OrgUsageQueries`] over the usage table for one org, fixed at construction: every query
//! filters on that org, so a handle cannot reach another org's usage.
//!
//! The engine's queries over a scope ([`slice`]: aggregates, latency, model mixes, tags) read
//! the hourly rollups for the whole hours of a period and raw rows only for its partial edge
//! hours ([`Split`]) where they can, so they stay exact for any period while a 30-day
//! breakdown reads ~720 hours × dimensions instead of every call; `slice`'s module doc says
//! which read what. The recommenders' own queries are here and in [`recommender_inputs`].
//!
//! The SQL is shared by both backends and gives identical results on them: sums cannot
//! overflow (`db::Sums`, with [`widening!`] retrying a SQLite read whose plain sum overflowed;
//! an org's lifetime of spend needs more than 64 bits), text keys sort byte-wise
//! (`COLLATE "C"` on PostgreSQL) and only tag lookups and the insertion-order tiebreak
//! differ by dialect. Rows ordered by cost are sorted here, on the exact sums.

use std::sync::Arc;

use crate::db::{Cols, Db, Sums, on_read};
use crate::rollup;
use crate::usage_cache::{UsageCache, VersionLeader, VersionRead, VersionReads};
use apogee_analytics::{
    BatchCandidate, CostRow, FeatureModelCost, InputBand, LatencySlice, ModelMix, Nanos,
    OrgUsageQueries, OutputTail, Period, QueryError, RepeatProfile, TagCount, TrafficProfile,
    UsageQuery, UsageSlice,
};
use async_trait::async_trait;
use recommender_inputs::mix;

/// Usage queries bound to one org, answered through the store's cache of usage reads
/// (computed once per data version of the org). Obtained from [`crate::Store::org_usage`].
#[derive(Clone)]
pub struct OrgUsage {
    raw: RawUsage,
    cache: Arc<UsageCache>,
}

/// The queries themselves, over the database, uncached.
#[derive(Clone)]
struct RawUsage {
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

mod recommender_inputs;
mod slice;
mod summarised;

fn backend(e: sqlx::Error) -> QueryError {
    QueryError::Backend(e.to_string())
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

impl Split {
    /// The raw edges of the period that are not empty, as periods.
    fn edges(&self) -> Result<Vec<Period>, QueryError> {
        let mut edges = Vec::new();
        for (from, to) in [(self.from, self.edge1_to), (self.edge2_from, self.to)] {
            if from < to {
                edges.push(Period::new(at_ms(from)?, at_ms(to)?));
            }
        }
        Ok(edges)
    }

    /// Whether whole hours are read from the rollups or summaries.
    fn has_hours(&self) -> bool {
        self.hours_from < self.hours_to
    }
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

impl OrgUsage {
    pub(crate) fn new(db: Db, org_id: String, cache: Arc<UsageCache>) -> Self {
        Self {
            raw: RawUsage { db, org_id },
            cache,
        }
    }

    pub fn org_id(&self) -> &str {
        &self.raw.org_id
    }

    /// The org's data version: bumped by every transaction that changes its usage
    /// (`rollup::apply_delta!`), 0 before the first.
    /// Callers asking at once share one read that begins after all of them asked
    /// (`usage_cache::VersionReads`).
    async fn data_version(&self) -> Result<i64, QueryError> {
        match self.cache.versions.join_or_lead(&self.raw.org_id) {
            VersionRead::Join(answer) => match VersionReads::joined(answer).await {
                Some(answer) => answer,
                None => self.read_version(None).await,
            },
            VersionRead::Lead(mut leader) => {
                let answer = self.read_version(Some(&mut leader)).await;
                leader.finish(&answer);
                answer
            }
        }
    }

    /// Reads the org's data version; `leader` is told right before the statement runs.
    async fn read_version(
        &self,
        leader: Option<&mut VersionLeader<'_>>,
    ) -> Result<i64, QueryError> {
        let version: Option<i64> = on_read!(&self.raw.db, pool => {
            let mut conn = pool.acquire().await.map_err(backend)?;
            if let Some(leader) = leader {
                leader.begun();
            }
            sqlx::query_scalar("SELECT version FROM usage_versions WHERE org_id = $1")
                .bind(&self.raw.org_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?
        });
        Ok(version.unwrap_or(0))
    }

    /// `read` (the query `method` with `args`) at the org's current data version, from the
    /// cache or computed once.
    async fn cached<T>(
        &self,
        method: &str,
        args: impl serde::Serialize,
        read: impl Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError>
    where
        T: Clone + serde::Serialize + Send + Sync + 'static,
    {
        let version = self.data_version().await?;
        let args = serde_json::to_string(&args)
            .map_err(|e| QueryError::Backend(format!("usage cache key: {e}")))?;
        self.cache
            .get_or_compute(&self.raw.org_id, version, format!("{method}{args}"), read)
            .await
    }
}

/// A period that starts on a whole hour and ends inside that hour or a later one: "up to
/// now" (month to date, today so far). Its answer changes as its end moves only when the end passes a stored
/// record, so one answer serves every end from the one it was computed for up to the first
/// record stored at or after it (or the end of that hour), at the same data version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UpToNow {
    /// The period's end, ms.
    to: i64,
    /// The start of the hour it ends in.
    hour: i64,
}

impl UpToNow {
    fn of(period: &Period) -> Option<UpToNow> {
        let (from, to) = (period.from_ms(), period.to_ms());
        let hour = rollup::hour_floor(to);
        (rollup::hour_floor(from) == from && from <= hour && to > hour)
            .then_some(UpToNow { to, hour })
    }
}

/// A cached answer for periods ending anywhere in `[to_ms, until_ms]`: no record of the org is
/// stored at or after `to_ms` and before `until_ms`.
#[derive(Debug, Clone, serde::Serialize)]
struct UpToAnswer<T> {
    to_ms: i64,
    until_ms: i64,
    value: T,
}

impl OrgUsage {
    /// [`OrgUsageQueries::aggregate`] of a period ending inside an hour ([`UpToNow`]): cached
    /// under the query with its end moved back to the start of that hour, with the ends the
    /// answer holds for. An end outside them (a run that asked a moment before the cached
    /// answer was computed, or after a record stored ahead of its time) is read, not cached.
    async fn aggregate_up_to(
        &self,
        q: &UsageQuery,
        up_to: UpToNow,
    ) -> Result<UsageSlice, QueryError> {
        let hour_end = up_to.hour.saturating_add(rollup::HOUR_MS);
        let mut family = q.clone();
        family.period.to = at_ms(up_to.hour)?;
        let read = async {
            let value = self.raw.aggregate(q).await?;
            let next = self.raw.first_record_between(up_to.to, hour_end).await?;
            Ok(UpToAnswer {
                to_ms: up_to.to,
                until_ms: next.unwrap_or(hour_end),
                value,
            })
        };
        let answer = self.cached("aggregate_up_to", &family, read).await?;
        if (answer.to_ms..=answer.until_ms).contains(&up_to.to) {
            Ok(answer.value)
        } else {
            self.raw.aggregate(q).await
        }
    }
}

fn at_ms(ms: i64) -> Result<chrono::DateTime<chrono::Utc>, QueryError> {
    chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| QueryError::Backend(format!("{ms} ms is out of range")))
}

impl RawUsage {
    /// The time of the org's first record stored in `[from_ms, to_ms)`, if any.
    async fn first_record_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<i64>, QueryError> {
        on_read!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT MIN(ts_ms) FROM usage_records WHERE org_id = $1 AND ts_ms >= $2 AND ts_ms < $3",
            )
            .bind(&self.org_id)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_one(pool)
            .await
            .map_err(backend)
        })
    }
}

#[async_trait]
impl OrgUsageQueries for OrgUsage {
    async fn aggregate(&self, q: &UsageQuery) -> Result<UsageSlice, QueryError> {
        match UpToNow::of(&q.period) {
            Some(up_to) => self.aggregate_up_to(q, up_to).await,
            None => self.cached("aggregate", q, self.raw.aggregate(q)).await,
        }
    }

    async fn latency(&self, q: &UsageQuery) -> Result<LatencySlice, QueryError> {
        self.cached("latency", q, self.raw.latency(q)).await
    }

    async fn model_mix(&self, q: &UsageQuery) -> Result<Vec<ModelMix>, QueryError> {
        self.cached("model_mix", q, self.raw.model_mix(q)).await
    }

    async fn tags(&self, period: &Period) -> Result<Vec<TagCount>, QueryError> {
        self.cached("tags", period, self.raw.tags(period)).await
    }

    async fn traffic_profile(
        &self,
        period: &Period,
        model: &str,
        max_input_tokens: i64,
        max_output_tokens: i64,
    ) -> Result<TrafficProfile, QueryError> {
        let read = self
            .raw
            .traffic_profile(period, model, max_input_tokens, max_output_tokens);
        let args = (period, model, max_input_tokens, max_output_tokens);
        self.cached("traffic_profile", args, read).await
    }

    async fn repeated_prompts(&self, period: &Period) -> Result<RepeatProfile, QueryError> {
        let read = self.raw.repeated_prompts(period);
        self.cached("repeated_prompts", period, read).await
    }

    async fn batch_candidates(&self, period: &Period) -> Result<Vec<BatchCandidate>, QueryError> {
        let read = self.raw.batch_candidates(period);
        self.cached("batch_candidates", period, read).await
    }

    async fn breakdown_feature_model(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelCost>, QueryError> {
        let read = self.raw.breakdown_feature_model(period);
        self.cached("breakdown_feature_model", period, read).await
    }

    async fn output_tails(
        &self,
        period: &Period,
        percentile: i64,
    ) -> Result<Vec<OutputTail>, QueryError> {
        let read = self.raw.output_tails(period, percentile);
        self.cached("output_tails", (period, percentile), read)
            .await
    }

    async fn input_band(
        &self,
        period: &Period,
        model: &str,
        above: i64,
        up_to: i64,
    ) -> Result<InputBand, QueryError> {
        let read = self.raw.input_band(period, model, above, up_to);
        self.cached("input_band", (period, model, above, up_to), read)
            .await
    }
}

#[async_trait]
impl OrgUsageQueries for RawUsage {
    async fn aggregate(&self, q: &UsageQuery) -> Result<UsageSlice, QueryError> {
        widening!(&self.db, sums => slice::aggregate(&self.db, &self.org_id, q, sums).await)
    }

    async fn latency(&self, q: &UsageQuery) -> Result<LatencySlice, QueryError> {
        widening!(&self.db, sums => slice::latency(&self.db, &self.org_id, q, sums).await)
    }

    async fn model_mix(&self, q: &UsageQuery) -> Result<Vec<ModelMix>, QueryError> {
        self.summarised_model_mix(q).await
    }

    async fn tags(&self, period: &Period) -> Result<Vec<TagCount>, QueryError> {
        widening!(&self.db, sums => slice::tags(&self.db, &self.org_id, period, sums).await)
    }

    async fn traffic_profile(
        &self,
        period: &Period,
        model: &str,
        max_input_tokens: i64,
        max_output_tokens: i64,
    ) -> Result<TrafficProfile, QueryError> {
        self.summarised_traffic_profile(period, model, max_input_tokens, max_output_tokens)
            .await
    }

    async fn repeated_prompts(&self, period: &Period) -> Result<RepeatProfile, QueryError> {
        self.summarised_repeated_prompts(period).await
    }

    async fn batch_candidates(&self, period: &Period) -> Result<Vec<BatchCandidate>, QueryError> {
        self.summarised_batch_candidates(period).await
    }

    async fn breakdown_feature_model(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelCost>, QueryError> {
        self.summarised_breakdown_feature_model(period).await
    }

    async fn output_tails(
        &self,
        period: &Period,
        percentile: i64,
    ) -> Result<Vec<OutputTail>, QueryError> {
        self.summarised_output_tails(period, percentile).await
    }

    async fn input_band(
        &self,
        period: &Period,
        model: &str,
        above: i64,
        up_to: i64,
    ) -> Result<InputBand, QueryError> {
        self.summarised_input_band(period, model, above, up_to)
            .await
    }
}

/// An org's usage queries with every recommender input read from raw rows, uncached: the
/// reference the recommender summaries are tested against (`tests/summaries_equal_raw.rs`).
/// The other queries are answered as [`OrgUsage`] answers them. Obtained from
/// [`crate::Store::org_usage_raw_rows`]; the product reads [`OrgUsage`].
#[derive(Clone)]
pub struct RawRowUsage(RawUsage);

impl RawRowUsage {
    pub(crate) fn new(db: Db, org_id: String) -> Self {
        Self(RawUsage { db, org_id })
    }
}

#[async_trait]
impl OrgUsageQueries for RawRowUsage {
    async fn aggregate(&self, q: &UsageQuery) -> Result<UsageSlice, QueryError> {
        self.0.aggregate(q).await
    }

    async fn latency(&self, q: &UsageQuery) -> Result<LatencySlice, QueryError> {
        self.0.latency(q).await
    }

    async fn model_mix(&self, q: &UsageQuery) -> Result<Vec<ModelMix>, QueryError> {
        self.0.raw_model_mix(q).await
    }

    async fn tags(&self, period: &Period) -> Result<Vec<TagCount>, QueryError> {
        self.0.tags(period).await
    }

    async fn traffic_profile(
        &self,
        period: &Period,
        model: &str,
        max_input_tokens: i64,
        max_output_tokens: i64,
    ) -> Result<TrafficProfile, QueryError> {
        self.0
            .raw_traffic_profile(period, model, max_input_tokens, max_output_tokens)
            .await
    }

    async fn repeated_prompts(&self, period: &Period) -> Result<RepeatProfile, QueryError> {
        self.0.raw_repeated_prompts(period).await
    }

    async fn batch_candidates(&self, period: &Period) -> Result<Vec<BatchCandidate>, QueryError> {
        self.0.raw_batch_candidates(period).await
    }

    async fn breakdown_feature_model(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelCost>, QueryError> {
        self.0.raw_breakdown_feature_model(period).await
    }

    async fn output_tails(
        &self,
        period: &Period,
        percentile: i64,
    ) -> Result<Vec<OutputTail>, QueryError> {
        self.0.raw_output_tails(period, percentile).await
    }

    async fn input_band(
        &self,
        period: &Period,
        model: &str,
        above: i64,
        up_to: i64,
    ) -> Result<InputBand, QueryError> {
        self.0.raw_input_band(period, model, above, up_to).await
    }
}

/// The recommenders' queries over raw rows: the reference the summaries are tested against
/// (`RawRowUsage`), and what answers the raw edge hours of a period and questions the
/// summaries do not keep.
impl RawUsage {
    /// [`OrgUsageQueries::traffic_profile`] over raw rows: the reference.
    pub(super) async fn raw_traffic_profile(
        &self,
        period: &Period,
        model: &str,
        max_input_tokens: i64,
        max_output_tokens: i64,
    ) -> Result<TrafficProfile, QueryError> {
        widening!(&self.db, sums => {
        // Short per call: an aggregate's tokens over its request_count (MemoryUsage's rule).
        let short = "input_tokens <= $1 * request_count AND output_tokens <= $2 * request_count";
        let batch_sum = |b: &str, prefix: &str| {
            let when = |then: &str| {
                sums.sum(&format!(
                    "CASE WHEN {short} AND batch = {b} THEN {then} ELSE 0 END"
                ))
            };
            format!(
                "{} AS {prefix}calls, {} AS {prefix}fresh, {} AS {prefix}cached,
                 {} AS {prefix}output, {} AS {prefix}cost",
                when("request_count"),
                when("input_tokens - cached_input_tokens"),
                when("cached_input_tokens"),
                when("output_tokens"),
                when("cost_nanos"),
            )
        };
        let sql = format!(
            "SELECT {all_calls} AS all_calls, {all_cost} AS all_cost,
                    {interactive}, {batch}
             FROM usage_records
             WHERE org_id = $3 AND model = $4 AND ts_ms >= $5 AND ts_ms < $6
               AND price_source IS NOT NULL AND price_source <> 'client'",
            all_calls = sums.sum("request_count"),
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
                all_calls: r.wide_count("all_calls").map_err(backend)?,
                all_cost: Nanos(r.wide("all_cost").map_err(backend)?),
            })
        })
        })
    }

    /// [`OrgUsageQueries::repeated_prompts`] over raw rows.
    pub(super) async fn raw_repeated_prompts(
        &self,
        period: &Period,
    ) -> Result<RepeatProfile, QueryError> {
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
        Ok(summarised::repeat_profile(rows))
        })
    }

    /// [`OrgUsageQueries::batch_candidates`] over raw rows: the reference.
    pub(super) async fn raw_batch_candidates(
        &self,
        period: &Period,
    ) -> Result<Vec<BatchCandidate>, QueryError> {
        // An aggregated record's ts is its bucket's start, not a time of day: never at night.
        widening!(&self.db, sums => {
        let night = format!(
            "((ts_ms / 3600000) % 24) < {} AND request_count = 1 AND bucket_seconds IS NULL",
            apogee_analytics::queries::NIGHT_END_HOUR
        );
        let when = |then: &str| sums.sum(&format!("CASE WHEN {night} THEN {then} ELSE 0 END"));
        let sql = format!(
            "SELECT COALESCE(feature, '(none)'){bytewise} AS f, model{bytewise} AS model,
                    {all_calls} AS all_calls, {calls} AS n_calls, {fresh} AS n_fresh,
                    {cached} AS n_cached, {output} AS n_output, {cost} AS n_cost
             FROM usage_records
             WHERE org_id = $1 AND ts_ms >= $2 AND ts_ms < $3 AND batch = FALSE
               AND price_source IS NOT NULL AND price_source <> 'client'
             GROUP BY f, model ORDER BY f, model",
            bytewise = bytewise(&self.db),
            all_calls = sums.sum("request_count"),
            calls = when("request_count"),
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
                        interactive_calls: r.wide_count("all_calls")?,
                        night: mix(r, "n_")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(backend)
        })
        })
    }

    /// [`OrgUsageQueries::breakdown_feature_model`] over raw rows: the reference.
    pub(super) async fn raw_breakdown_feature_model(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelCost>, QueryError> {
        widening!(&self.db, sums => recommender_inputs::breakdown_feature_model(&self.db, &self.org_id, period, sums).await)
    }

    /// [`OrgUsageQueries::output_tails`] over raw rows: the reference (exact percentiles).
    pub(super) async fn raw_output_tails(
        &self,
        period: &Period,
        percentile: i64,
    ) -> Result<Vec<OutputTail>, QueryError> {
        recommender_inputs::output_tails(&self.db, &self.org_id, period, percentile).await
    }

    /// [`OrgUsageQueries::input_band`] over raw rows: the reference.
    pub(super) async fn raw_input_band(
        &self,
        period: &Period,
        model: &str,
        above: i64,
        up_to: i64,
    ) -> Result<InputBand, QueryError> {
        widening!(&self.db, sums => recommender_inputs::input_band(&self.db, &self.org_id, period, model, above, up_to, sums).await)
    }

    /// [`OrgUsageQueries::model_mix`] as the engine answers it from raw rows: the reference.
    pub(super) async fn raw_model_mix(&self, q: &UsageQuery) -> Result<Vec<ModelMix>, QueryError> {
        widening!(&self.db, sums => slice::model_mix(&self.db, &self.org_id, q, sums).await)
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
