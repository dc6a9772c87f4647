//! [`MemoryUsage`]: the in-memory implementation of [`OrgUsageQueries`] over one org's priced
//! records. It is the reference semantics of every query: the SQL store must return exactly
//! what this returns for the same records, and analyses and agents are unit-tested against it.
//!
//! Semantics shared with the SQL store:
//! - a period is half-open `[from, to)` on the record's `ts`;
//! - a call is an error when its `status` is present and not exactly `ok`;
//! - a call is unpriced when its cost is unknown; unpriced calls add nothing to any cost and
//!   their input + output tokens are reported as `unpriced_tokens`;
//! - a scope's filters all hold; a filter holds when the record's value of its dimension is
//!   one of its values (with `exclude`, none of them); a record without a user, a feature or
//!   the filtered tag has the value `(none)`, so filtering on `(none)` selects those records;
//! - a provider is the record's own, else the catalog's, else `unknown` (as ingest stores it);
//! - aggregate rows are by cost descending then key ascending (days, weeks and hours of the
//!   day: key ascending; weekdays Monday first), keys compared byte-wise; a missing user,
//!   feature or tag is the key `(none)`; days are UTC `YYYY-MM-DD`, weeks the UTC Monday that
//!   starts them, hours of the day the UTC `HH:00` of every day of the period together,
//!   weekdays the UTC day's name in lower case; at most `MAX_GROUPS` rows, the first in that
//!   order, with `truncated` set when there were more;
//! - latency rows are by calls descending then key ascending (time groupings: key ascending),
//!   bounded alike;
//! - model mix rows are by key then model ascending; more than `MAX_GROUPS` is an error;
//! - tags are the key/value pairs of records in the period (not scoped), their calls summing
//!   `request_count`, by calls descending then key then value, at most `MAX_TAG_VALUES`;
//! - the traffic profile takes only calls of exactly that model priced from the catalog (a
//!   client-sent cost says nothing about what the catalog model would charge); a record is
//!   short when its tokens per call (`tokens / request_count`, compared as
//!   `tokens <= limit × request_count`) are within the limits;
//! - every `calls` of a [`TokenMix`], and a traffic profile's `all_calls`, a batch
//!   candidate's `interactive_calls` and an input band's calls, sum `request_count`;
//! - the night-time share of batch candidates reads the time of day, which an aggregated
//!   record (`request_count` above 1, or a `bucket_seconds` bucket such as an OpenAI
//!   usage-export day starting at 00:00) does not have: such records count among a feature's
//!   interactive calls but never as night calls;
//! - a repeated prompt is a `(model, prompt_hash)` pair seen more than once; the first call of
//!   each (earliest `ts`, ties by position) is the one a response cache could not have served;
//! - latency percentiles are nearest-rank over the records reporting `latency_ms` (one sample
//!   per record, whatever its `request_count`); calls and errors count `request_count`;
//! - model mixes, output tails and input bands take only calls priced from the catalog, like
//!   the traffic profile; output tails also only single-call records, and take
//!   the nearest rank `ceil(p × n / 100)` in integers so SQL computes the same rank;
//! - an input band compares the prompt per call, `input_tokens / request_count` (integer
//!   division), with its bounds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, Utc};

use crate::catalog::PriceCatalog;
use crate::money::Nanos;
use crate::period::Period;
use crate::queries::{
    BatchCandidate, CostRow, FeatureModelCost, InputBand, LatencyRow, LatencySlice, LatencyStats,
    ModelMix, NIGHT_END_HOUR, OrgUsageQueries, OutputTail, QueryError, RepeatProfile, TokenMix,
    TrafficProfile, UsageTotals, latency_mean, nearest_rank, sort_group_rows, sort_latency_rows,
};
use crate::query::{
    Dimension, Filter, GroupTotals, Grouping, MAX_GROUPS, MAX_TAG_VALUES, NONE_KEY, Scope,
    TagCount, UsageQuery, UsageSlice, WEEKDAYS,
};
use crate::usage::{PricedRecord, UsageRecord};
/// How many features [`RepeatProfile::top_features`] lists at most.
pub const TOP_REPEAT_FEATURES: usize = 5;

/// One org's usage held in memory, in the order given (the order breaks `ts` ties).
#[derive(Debug, Clone)]
pub struct MemoryUsage {
    records: Vec<PricedRecord>,
    catalog: Arc<PriceCatalog>,
}

impl MemoryUsage {
    /// `catalog` supplies the provider of records that do not name one.
    pub fn new(records: Vec<PricedRecord>, catalog: Arc<PriceCatalog>) -> MemoryUsage {
        MemoryUsage { records, catalog }
    }

    /// Prices `records` with `catalog` the way ingest does, then holds them.
    pub fn from_usage(
        records: impl IntoIterator<Item = UsageRecord>,
        catalog: Arc<PriceCatalog>,
    ) -> MemoryUsage {
        let records = records
            .into_iter()
            .map(|r| PricedRecord::price(r, &catalog))
            .collect();
        MemoryUsage { records, catalog }
    }

    pub fn records(&self) -> &[PricedRecord] {
        &self.records
    }

    fn in_period<'a>(&'a self, period: &'a Period) -> impl Iterator<Item = &'a PricedRecord> + 'a {
        self.records
            .iter()
            .filter(move |r| r.record.ts >= period.from && r.record.ts < period.to)
    }

    /// The records of `period` that `scope` selects.
    fn in_slice<'a>(
        &'a self,
        period: &'a Period,
        scope: &'a Scope,
    ) -> impl Iterator<Item = &'a PricedRecord> + 'a {
        self.in_period(period)
            .filter(move |r| scope.filters.iter().all(|f| self.holds(f, r)))
    }

    fn holds(&self, f: &Filter, r: &PricedRecord) -> bool {
        let value = self.value_of(r, &f.dimension);
        f.values.contains(&value) != f.exclude
    }

    /// The record's value of `dimension`: [`NONE_KEY`] when it has none.
    fn value_of(&self, r: &PricedRecord, dimension: &Dimension) -> String {
        let u = &r.record;
        let or_none = |v: Option<&String>| v.cloned().unwrap_or_else(|| NONE_KEY.into());
        match dimension {
            Dimension::Model => u.model.clone(),
            Dimension::Provider => r.provider(&self.catalog),
            Dimension::User => or_none(u.user.as_ref()),
            Dimension::Feature => or_none(u.feature.as_ref()),
            Dimension::Tag(key) => or_none(u.tags.as_ref().and_then(|t| t.get(key))),
        }
    }

    fn group_key(&self, r: &PricedRecord, by: &Grouping) -> String {
        match by {
            Grouping::By(d) => self.value_of(r, d),
            Grouping::Day => r.record.ts.format("%Y-%m-%d").to_string(),
            Grouping::Week => week_start(r.record.ts).format("%Y-%m-%d").to_string(),
            Grouping::HourOfDay => r.record.ts.format("%H:00").to_string(),
            Grouping::DayOfWeek => {
                WEEKDAYS[r.record.ts.weekday().num_days_from_monday() as usize].to_string()
            }
        }
    }
}

/// The Monday 00:00 UTC that starts the week holding `ts`.
fn week_start(ts: DateTime<Utc>) -> chrono::NaiveDate {
    let day = ts.date_naive();
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// What one record adds to the totals of its slice and group.
fn record_totals(r: &PricedRecord) -> UsageTotals {
    let u = &r.record;
    // An aggregated record (an OpenAI usage bucket) stands for `request_count` calls.
    let calls = u.request_count();
    let mut t = UsageTotals {
        calls,
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cached_input_tokens: u.cached_tokens(),
        ..UsageTotals::default()
    };
    match r.cost {
        Some(c) => t.cost = c,
        None => {
            t.unpriced_calls = calls;
            t.unpriced_tokens = u.input_tokens + u.output_tokens;
        }
    }
    if is_error(u) {
        t.error_calls = calls;
    }
    t
}

fn from_catalog(r: &PricedRecord) -> bool {
    r.price_source.as_deref().is_some_and(|s| s != "client")
}

fn feature_of(r: &UsageRecord) -> String {
    r.feature.clone().unwrap_or_else(|| NONE_KEY.into())
}

/// The nearest rank `ceil(p × n / 100)` (1-based) in integers, as the SQL store computes it.
pub fn nearest_rank_index(percentile: i64, n: i64) -> i64 {
    (percentile * n + 99) / 100
}

fn is_error(r: &UsageRecord) -> bool {
    r.status.as_deref().is_some_and(|s| s != "ok")
}

fn add_to_row(row: &mut CostRow, r: &PricedRecord) {
    let calls = r.record.request_count();
    row.calls += calls;
    row.input_tokens += r.record.input_tokens;
    row.output_tokens += r.record.output_tokens;
    match r.cost {
        Some(c) => row.cost = row.cost + c,
        None => row.unpriced_calls += calls,
    }
}

fn empty_row(key: String) -> CostRow {
    CostRow {
        key,
        calls: 0,
        input_tokens: 0,
        output_tokens: 0,
        cost: Nanos::ZERO,
        unpriced_calls: 0,
    }
}

fn by_cost_then_key(rows: &mut [CostRow]) {
    rows.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.key.cmp(&b.key)));
}

fn add_to_mix(mix: &mut TokenMix, r: &PricedRecord) {
    let cached = r.record.cached_tokens();
    mix.calls += r.record.request_count();
    mix.fresh_input_tokens += r.record.input_tokens - cached;
    mix.cached_input_tokens += cached;
    mix.output_tokens += r.record.output_tokens;
    mix.cost = mix.cost + r.cost.unwrap_or(Nanos::ZERO);
}

#[async_trait]
impl OrgUsageQueries for MemoryUsage {
    async fn aggregate(&self, q: &UsageQuery) -> Result<UsageSlice, QueryError> {
        q.scope.validate()?;
        let mut slice = UsageSlice::default();
        let mut groups: HashMap<String, UsageTotals> = HashMap::new();
        for r in self.in_slice(&q.period, &q.scope) {
            let t = record_totals(r);
            slice.totals.add(&t);
            if let Some(by) = &q.group_by {
                groups.entry(self.group_key(r, by)).or_default().add(&t);
            }
        }
        if let Some(by) = &q.group_by {
            let mut rows: Vec<GroupTotals> = groups
                .into_iter()
                .map(|(key, totals)| GroupTotals { key, totals })
                .collect();
            sort_group_rows(&mut rows, by);
            slice.truncated = rows.len() > MAX_GROUPS;
            rows.truncate(MAX_GROUPS);
            slice.rows = rows;
        }
        Ok(slice)
    }

    async fn latency(&self, q: &UsageQuery) -> Result<LatencySlice, QueryError> {
        // Per group (and for the slice): calls, error calls, the latencies reported.
        #[derive(Default)]
        struct Sample {
            calls: i64,
            errors: i64,
            latencies: Vec<i64>,
        }
        impl Sample {
            fn add(&mut self, u: &UsageRecord) {
                self.calls += u.request_count();
                if is_error(u) {
                    self.errors += u.request_count();
                }
                self.latencies.extend(u.latency_ms);
            }
            fn stats(mut self) -> LatencyStats {
                self.latencies.sort_unstable();
                let l = &self.latencies;
                LatencyStats {
                    calls: self.calls,
                    error_calls: self.errors,
                    latency_samples: l.len() as i64,
                    mean_ms: latency_mean(l.iter().map(|&x| i128::from(x)).sum(), l.len() as i64),
                    p50_ms: nearest_rank(l, 50.0),
                    p95_ms: nearest_rank(l, 95.0),
                    p99_ms: nearest_rank(l, 99.0),
                }
            }
        }
        q.scope.validate()?;
        let mut all = Sample::default();
        let mut groups: HashMap<String, Sample> = HashMap::new();
        for r in self.in_slice(&q.period, &q.scope) {
            all.add(&r.record);
            if let Some(by) = &q.group_by {
                groups
                    .entry(self.group_key(r, by))
                    .or_default()
                    .add(&r.record);
            }
        }
        let mut slice = LatencySlice {
            totals: all.stats(),
            ..LatencySlice::default()
        };
        if let Some(by) = &q.group_by {
            let mut rows: Vec<LatencyRow> = groups
                .into_iter()
                .map(|(key, s)| LatencyRow {
                    key,
                    stats: s.stats(),
                })
                .collect();
            sort_latency_rows(&mut rows, by);
            slice.truncated = rows.len() > MAX_GROUPS;
            rows.truncate(MAX_GROUPS);
            slice.rows = rows;
        }
        Ok(slice)
    }

    async fn model_mix(&self, q: &UsageQuery) -> Result<Vec<ModelMix>, QueryError> {
        q.scope.validate()?;
        let mut groups: BTreeMap<(Option<String>, String), ModelMix> = BTreeMap::new();
        for r in self
            .in_slice(&q.period, &q.scope)
            .filter(|r| from_catalog(r))
        {
            let key = q.group_by.as_ref().map(|by| self.group_key(r, by));
            let u = &r.record;
            let g = groups
                .entry((key.clone(), u.model.clone()))
                .or_insert_with(|| ModelMix {
                    key,
                    model: u.model.clone(),
                    interactive: TokenMix::default(),
                    batch: TokenMix::default(),
                });
            if u.is_batch() {
                add_to_mix(&mut g.batch, r);
            } else {
                add_to_mix(&mut g.interactive, r);
            }
        }
        if groups.len() > MAX_GROUPS {
            return Err(QueryError::model_mix_too_large());
        }
        Ok(groups.into_values().collect())
    }

    async fn tags(&self, period: &Period) -> Result<Vec<TagCount>, QueryError> {
        let mut counts: HashMap<(&str, &str), i64> = HashMap::new();
        for r in self.in_period(period) {
            for (k, v) in r.record.tags.iter().flatten() {
                *counts.entry((k.as_str(), v.as_str())).or_default() += r.record.request_count();
            }
        }
        let mut tags: Vec<TagCount> = counts
            .into_iter()
            .map(|((key, value), calls)| TagCount {
                key: key.into(),
                value: value.into(),
                calls,
            })
            .collect();
        tags.sort_by(|a, b| {
            b.calls
                .cmp(&a.calls)
                .then_with(|| a.key.cmp(&b.key))
                .then_with(|| a.value.cmp(&b.value))
        });
        tags.truncate(MAX_TAG_VALUES);
        Ok(tags)
    }

    async fn traffic_profile(
        &self,
        period: &Period,
        model: &str,
        max_input_tokens: i64,
        max_output_tokens: i64,
    ) -> Result<TrafficProfile, QueryError> {
        let mut p = TrafficProfile {
            model: model.to_string(),
            ..TrafficProfile::default()
        };
        let from_catalog = |r: &&PricedRecord| {
            r.record.model == model && r.price_source.as_deref().is_some_and(|s| s != "client")
        };
        for r in self.in_period(period).filter(from_catalog) {
            let u = &r.record;
            let calls = u.request_count();
            p.all_calls += calls;
            p.all_cost = p.all_cost + r.cost.unwrap_or(Nanos::ZERO);
            if u.input_tokens <= max_input_tokens.saturating_mul(calls)
                && u.output_tokens <= max_output_tokens.saturating_mul(calls)
            {
                if u.is_batch() {
                    add_to_mix(&mut p.short_batch, r);
                } else {
                    add_to_mix(&mut p.short_interactive, r);
                }
            }
        }
        Ok(p)
    }

    async fn repeated_prompts(&self, period: &Period) -> Result<RepeatProfile, QueryError> {
        // Positions within `self.records`, in order, so the earliest-by-position tie-break is
        // the natural order of each group.
        let mut groups: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, r) in self.records.iter().enumerate() {
            let u = &r.record;
            if u.ts < period.from || u.ts >= period.to {
                continue;
            }
            if let Some(hash) = u.prompt_hash.as_deref() {
                groups.entry((u.model.as_str(), hash)).or_default().push(i);
            }
        }

        let mut profile = RepeatProfile::default();
        let mut features: HashMap<String, CostRow> = HashMap::new();
        for positions in groups.values().filter(|p| p.len() > 1) {
            let first = positions
                .iter()
                .copied()
                .min_by_key(|&i| (self.records[i].record.ts, i));
            profile.repeated_prompts += 1;
            for &i in positions.iter().filter(|&&i| Some(i) != first) {
                let r = &self.records[i];
                profile.repeat_calls += 1;
                profile.repeat_cost = profile.repeat_cost + r.cost.unwrap_or(Nanos::ZERO);
                let row = features
                    .entry(feature_of(&r.record))
                    .or_insert_with_key(|k| empty_row(k.clone()));
                add_to_row(row, r);
            }
        }
        let mut top: Vec<CostRow> = features.into_values().collect();
        by_cost_then_key(&mut top);
        top.truncate(TOP_REPEAT_FEATURES);
        profile.top_features = top;
        Ok(profile)
    }

    async fn batch_candidates(&self, period: &Period) -> Result<Vec<BatchCandidate>, QueryError> {
        use chrono::Timelike;
        let mut groups: std::collections::BTreeMap<(String, String), BatchCandidate> =
            Default::default();
        let from_catalog = |r: &&PricedRecord| {
            !r.record.is_batch() && r.price_source.as_deref().is_some_and(|s| s != "client")
        };
        for r in self.in_period(period).filter(from_catalog) {
            let u = &r.record;
            let feature = u.feature.clone().unwrap_or_else(|| NONE_KEY.into());
            let c = groups
                .entry((feature.clone(), u.model.clone()))
                .or_insert_with(|| BatchCandidate {
                    feature,
                    model: u.model.clone(),
                    interactive_calls: 0,
                    night: TokenMix::default(),
                });
            c.interactive_calls += u.request_count();
            // An aggregate's `ts` is its bucket's start, not a time of day.
            if !u.is_aggregate() && u.ts.hour() < NIGHT_END_HOUR {
                add_to_mix(&mut c.night, r);
            }
        }
        Ok(groups.into_values().collect())
    }

    async fn breakdown_feature_model(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelCost>, QueryError> {
        let mut groups: HashMap<(String, String), FeatureModelCost> = HashMap::new();
        for r in self.in_period(period) {
            let u = &r.record;
            let feature = feature_of(u);
            let row = groups
                .entry((feature.clone(), u.model.clone()))
                .or_insert_with(|| FeatureModelCost {
                    feature,
                    model: u.model.clone(),
                    calls: 0,
                    cost: Nanos::ZERO,
                });
            row.calls += u.request_count();
            row.cost = row.cost + r.cost.unwrap_or(Nanos::ZERO);
        }
        let mut rows: Vec<FeatureModelCost> = groups.into_values().collect();
        rows.sort_by(|a, b| {
            b.cost
                .cmp(&a.cost)
                .then_with(|| a.feature.cmp(&b.feature))
                .then_with(|| a.model.cmp(&b.model))
        });
        Ok(rows)
    }

    async fn output_tails(
        &self,
        period: &Period,
        percentile: i64,
    ) -> Result<Vec<OutputTail>, QueryError> {
        // Per feature and model: (output tokens, batch) of each single-call record.
        let mut groups: std::collections::BTreeMap<(String, String), Vec<(i64, bool)>> =
            Default::default();
        for r in self
            .in_period(period)
            .filter(|r| from_catalog(r) && r.record.request_count() == 1)
        {
            let u = &r.record;
            groups
                .entry((feature_of(u), u.model.clone()))
                .or_default()
                .push((u.output_tokens, u.is_batch()));
        }
        let mut out = Vec::with_capacity(groups.len());
        for ((feature, model), calls) in groups {
            let mut lengths: Vec<i64> = calls.iter().map(|c| c.0).collect();
            lengths.sort_unstable();
            let n = lengths.len() as i64;
            let rank = nearest_rank_index(percentile, n).clamp(1, n);
            let Some(&cap) = lengths.get((rank - 1) as usize) else {
                continue;
            };
            let mut tail = OutputTail {
                feature,
                model,
                calls: n,
                cap,
                over_calls: 0,
                excess_interactive_tokens: 0,
                excess_batch_tokens: 0,
            };
            for &(output, batch) in calls.iter().filter(|c| c.0 > cap) {
                tail.over_calls += 1;
                if batch {
                    tail.excess_batch_tokens += output - cap;
                } else {
                    tail.excess_interactive_tokens += output - cap;
                }
            }
            out.push(tail);
        }
        Ok(out)
    }

    async fn input_band(
        &self,
        period: &Period,
        model: &str,
        above_input_tokens: i64,
        up_to_input_tokens: i64,
    ) -> Result<InputBand, QueryError> {
        let mut band = InputBand {
            model: model.to_string(),
            above_input_tokens,
            up_to_input_tokens,
            ..InputBand::default()
        };
        for r in self
            .in_period(period)
            .filter(|r| r.record.model == model && from_catalog(r))
        {
            let u = &r.record;
            let per_call = u.input_tokens / u.request_count().max(1);
            if per_call > above_input_tokens && per_call <= up_to_input_tokens {
                if u.is_batch() {
                    add_to_mix(&mut band.batch, r);
                } else {
                    add_to_mix(&mut band.interactive, r);
                }
            }
        }
        Ok(band)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    /// Every query here completes on its first poll, so no runtime is needed.
    fn run<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("in-memory query did not complete at once"),
        }
    }

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn rec(ts: DateTime<Utc>, model: &str, input: i64, output: i64) -> UsageRecord {
        UsageRecord::new(ts, model.into(), input, output)
    }

    fn catalog() -> Arc<PriceCatalog> {
        Arc::new(PriceCatalog::builtin().unwrap())
    }

    fn usage(records: Vec<UsageRecord>) -> MemoryUsage {
        MemoryUsage::from_usage(records, catalog())
    }

    fn november(from_day: u32, to_day: u32) -> Period {
        Period::new(at(from_day, 0), at(to_day, 0))
    }

    #[test]
    fn totals_by_hand() {
        let mut a = rec(at(20, 8), "gpt-4o", 1000, 300);
        a.cached_input_tokens = Some(200);
        a.status = Some("ok".into());
        // gpt-4o: 800 × 2.50 + 200 × 1.25 + 300 × 10 per 1M = $0.00525
        let mut b = rec(at(20, 9), "gpt-4o-mini", 2000, 100);
        b.status = Some("error".into());
        // mini: 2000 × 0.15 + 100 × 0.60 per 1M = $0.00036
        let c = rec(at(21, 0), "acme-llama", 50, 7); // unpriced
        let mut d = rec(at(21, 1), "acme-llama", 10, 10);
        d.cost_usd = Some(0.5); // client-priced
        d.status = Some("timeout".into());
        let outside = rec(at(22, 0), "gpt-4o", 1_000_000, 1_000_000); // `to` is exclusive
        let before = rec(at(19, 23), "gpt-4o", 1_000_000, 1_000_000);
        let u = usage(vec![a, b, c, d, outside, before]);

        let t = run(u.totals(&november(20, 22))).unwrap();
        assert_eq!(
            t,
            UsageTotals {
                calls: 4,
                input_tokens: 3060,
                output_tokens: 417,
                cached_input_tokens: 200,
                cost: Nanos(5_250_000 + 360_000 + 500_000_000),
                unpriced_calls: 1,
                unpriced_tokens: 57,
                error_calls: 2,
            }
        );
        let empty = run(u.totals(&november(10, 11))).unwrap();
        assert_eq!(empty, UsageTotals::default());
    }

    fn breakdown_fixture() -> MemoryUsage {
        let mut a = rec(at(20, 8), "gpt-4o", 1000, 0); // $0.0025
        a.user = Some("u-b".into());
        a.feature = Some("support".into());
        let mut b = rec(at(20, 23), "gpt-4o-mini", 1000, 0); // $0.00015
        b.user = Some("u-a".into());
        let mut c = rec(at(21, 0), "gpt-4o-mini", 1000, 0); // $0.00015
        c.user = Some("u-a".into());
        c.feature = Some("support".into());
        let mut d = rec(at(19, 5), "acme-llama", 40, 2); // unpriced, no user
        d.provider = Some("self-hosted".into());
        d.feature = Some("eval".into());
        let e = rec(at(21, 3), "claude-3-5-haiku", 0, 0); // $0, ties with unpriced on cost
        usage(vec![a, b, c, d, e])
    }

    fn keys_costs(rows: &[CostRow]) -> Vec<(&str, i64, i128, i64)> {
        rows.iter()
            .map(|r| (r.key.as_str(), r.calls, r.cost.0, r.unpriced_calls))
            .collect()
    }

    #[test]
    fn breakdown_by_each_dimension() {
        let u = breakdown_fixture();
        let p = november(1, 30);

        let by_model = run(u.breakdown(&p, Grouping::By(Dimension::Model))).unwrap();
        assert_eq!(
            keys_costs(&by_model),
            vec![
                ("gpt-4o", 1, 2_500_000, 0),
                ("gpt-4o-mini", 2, 300_000, 0),
                ("acme-llama", 1, 0, 1),
                ("claude-3-5-haiku", 1, 0, 0),
            ]
        );
        assert_eq!(by_model[1].input_tokens, 2000);
        assert_eq!(by_model[2].output_tokens, 2);

        let by_provider = run(u.breakdown(&p, Grouping::By(Dimension::Provider))).unwrap();
        assert_eq!(
            keys_costs(&by_provider),
            vec![
                ("openai", 3, 2_800_000, 0),
                ("anthropic", 1, 0, 0),
                ("self-hosted", 1, 0, 1),
            ]
        );

        let by_user = run(u.breakdown(&p, Grouping::By(Dimension::User))).unwrap();
        assert_eq!(
            keys_costs(&by_user),
            vec![
                ("u-b", 1, 2_500_000, 0),
                ("u-a", 2, 300_000, 0),
                ("(none)", 2, 0, 1)
            ]
        );

        let by_feature = run(u.breakdown(&p, Grouping::By(Dimension::Feature))).unwrap();
        assert_eq!(
            keys_costs(&by_feature),
            vec![
                ("support", 2, 2_650_000, 0),
                ("(none)", 2, 150_000, 0),
                ("eval", 1, 0, 1)
            ]
        );

        let by_day = run(u.breakdown(&p, Grouping::Day)).unwrap();
        assert_eq!(
            keys_costs(&by_day),
            vec![
                ("2026-11-19", 1, 0, 1),
                ("2026-11-20", 2, 2_650_000, 0),
                ("2026-11-21", 2, 150_000, 0),
            ]
        );
    }

    #[test]
    fn breakdown_respects_the_period() {
        let u = breakdown_fixture();
        let rows = run(u.breakdown(&Period::new(at(20, 8), at(21, 0)), Grouping::Day)).unwrap();
        assert_eq!(keys_costs(&rows), vec![("2026-11-20", 2, 2_650_000, 0)]);
        assert!(
            run(u.breakdown(&november(1, 2), Grouping::By(Dimension::Model)))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn traffic_profile_by_hand() {
        let short = |input, output, batch: bool| {
            let mut r = rec(at(20, 10), "gpt-4o", input, output);
            r.batch = Some(batch);
            r
        };
        let mut cached = short(1000, 300, false); // on both limits: short
        cached.cached_input_tokens = Some(400);
        // 600 × 2.50 + 400 × 1.25 + 300 × 10 = 1500 + 500 + 3000 → $0.005
        let plain = short(200, 100, false); // 500 + 1000 → $0.0015
        let batch = short(400, 100, true); // (1000 + 1000) × 0.5 → $0.001
        let long_in = short(1001, 10, false); // 2502.5 + 100 → 2_602_500 nanos
        let long_out = short(10, 301, false); // 25 + 3010 → 3_035_000 nanos
        let mut client = short(100, 10, false); // client-priced: not catalog traffic
        client.cost_usd = Some(1.0);
        let other_model = rec(at(20, 10), "gpt-4o-mini", 100, 10);
        let mut other_case = short(100, 10, false); // prices as gpt-4o but is another name
        other_case.model = "GPT-4o".into();
        let late = rec(at(25, 0), "gpt-4o", 100, 10);
        let u = usage(vec![
            cached,
            plain,
            batch,
            long_in,
            long_out,
            client,
            other_model,
            other_case,
            late,
        ]);

        let p = run(u.traffic_profile(&november(20, 25), "gpt-4o", 1000, 300)).unwrap();
        assert_eq!(p.model, "gpt-4o");
        assert_eq!(p.all_calls, 5);
        assert_eq!(
            p.all_cost,
            Nanos(5_000_000 + 1_500_000 + 1_000_000 + 2_602_500 + 3_035_000)
        );
        assert_eq!(
            p.short_interactive,
            TokenMix {
                calls: 2,
                fresh_input_tokens: 800,
                cached_input_tokens: 400,
                output_tokens: 400,
                cost: Nanos(6_500_000),
            }
        );
        assert_eq!(
            p.short_batch,
            TokenMix {
                calls: 1,
                fresh_input_tokens: 400,
                cached_input_tokens: 0,
                output_tokens: 100,
                cost: Nanos(1_000_000),
            }
        );

        let none = run(u.traffic_profile(&november(20, 25), "acme-llama", 1000, 300)).unwrap();
        assert_eq!(none.model, "acme-llama");
        assert_eq!(none.all_calls, 0);
        assert_eq!(none.short_interactive, TokenMix::default());
    }

    #[test]
    fn repeated_prompts_by_hand() {
        let call = |ts, model: &str, hash: &str, feature: Option<&str>, output| {
            let mut r = rec(ts, model, 1000, output);
            r.prompt_hash = Some(hash.into());
            r.feature = feature.map(Into::into);
            r
        };
        // gpt-4o 1000 in + N out: $0.0025 + N × $0.00001.
        let records = vec![
            // "faq" on gpt-4o three times; the earliest (by ts) is listed second.
            call(at(20, 12), "gpt-4o", "faq", Some("support"), 100), // 3_500_000
            call(at(20, 9), "gpt-4o", "faq", Some("support"), 0),    // first: 2_500_000
            call(at(20, 15), "gpt-4o", "faq", Some("support"), 200), // 4_500_000
            // same hash on another model: a distinct prompt, seen once.
            call(at(20, 10), "gpt-4o-mini", "faq", Some("support"), 0),
            // "tie": same ts twice, the first by position is the original.
            call(at(21, 8), "gpt-4o", "tie", None, 300), // first: 5_500_000
            call(at(21, 8), "gpt-4o", "tie", None, 400), // 6_500_000
            // an unpriced model repeated: counts as a repeat call at zero cost.
            call(at(21, 9), "acme-llama", "u", Some("eval"), 5),
            call(at(21, 10), "acme-llama", "u", Some("eval"), 5),
            // a one-off prompt, no hash, and a repeat outside the period.
            call(at(21, 11), "gpt-4o", "once", Some("support"), 0),
            rec(at(21, 12), "gpt-4o", 10, 10),
            call(at(26, 0), "gpt-4o", "faq", Some("support"), 0),
        ];
        let u = usage(records);

        let r = run(u.repeated_prompts(&november(20, 26))).unwrap();
        assert_eq!(r.repeated_prompts, 3);
        assert_eq!(r.repeat_calls, 4);
        assert_eq!(r.repeat_cost, Nanos(3_500_000 + 4_500_000 + 6_500_000));
        assert_eq!(
            keys_costs(&r.top_features),
            vec![
                ("support", 2, 8_000_000, 0),
                ("(none)", 1, 6_500_000, 0),
                ("eval", 1, 0, 1),
            ]
        );
        assert_eq!(r.top_features[0].input_tokens, 2000);
        assert_eq!(r.top_features[0].output_tokens, 300);

        // Narrowing the period drops the earliest "faq": the two later ones remain, one repeat.
        let r = run(u.repeated_prompts(&Period::new(at(20, 10), at(21, 0)))).unwrap();
        assert_eq!(r.repeated_prompts, 1);
        assert_eq!(r.repeat_calls, 1);
        assert_eq!(r.repeat_cost, Nanos(4_500_000));
    }

    #[test]
    fn repeat_features_are_capped_and_ordered() {
        let mut records = Vec::new();
        for (i, feature) in ["a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
            for hour in 0..2 {
                let mut r = rec(at(20, hour), "gpt-4o-mini", 1000, 0); // $0.00015
                r.prompt_hash = Some(format!("h{i}"));
                r.feature = Some((*feature).into());
                records.push(r);
            }
        }
        // "g" gets a second repeat and so the most repeat cost.
        let mut extra = rec(at(20, 5), "gpt-4o-mini", 1000, 0);
        extra.prompt_hash = Some("h6".into());
        extra.feature = Some("g".into());
        records.push(extra);
        let u = usage(records);
        let r = run(u.repeated_prompts(&november(20, 21))).unwrap();
        assert_eq!(r.repeated_prompts, 7);
        assert_eq!(r.repeat_calls, 8);
        let keys: Vec<&str> = r.top_features.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, vec!["g", "a", "b", "c", "d"]);
        assert_eq!(r.top_features[0].cost, Nanos(300_000));
    }

    #[test]
    fn aggregated_records_are_never_night_calls_and_count_their_calls() {
        let night = |hour, feature: &str| {
            let mut r = rec(at(20, hour), "gpt-4o-mini", 1000, 100);
            r.feature = Some(feature.into());
            r
        };
        // An OpenAI usage-export day: 500 calls in one record at 00:00, a day's bucket.
        let mut export = night(0, "reports");
        export.request_count = Some(500);
        export.bucket_seconds = Some(86_400);
        export.input_tokens = 500_000;
        // A §8 aggregate of 3 calls at 02:00: its calls' times are not known either.
        let mut summed = night(2, "digest");
        summed.request_count = Some(3);
        let single = night(3, "digest");
        let u = usage(vec![export, summed, single]);
        let c = run(u.batch_candidates(&november(20, 21))).unwrap();
        let got: Vec<(&str, i64, i64)> = c
            .iter()
            .map(|c| (c.feature.as_str(), c.interactive_calls, c.night.calls))
            .collect();
        assert_eq!(got, vec![("digest", 4, 1), ("reports", 500, 0)]);
    }

    #[test]
    fn short_calls_are_judged_per_call_and_counted_by_request_count() {
        // 100 calls of 500 input and 100 output tokens in one record: short.
        let mut bucket = rec(at(20, 0), "gpt-4o", 50_000, 10_000);
        bucket.request_count = Some(100);
        // 10 calls of 1,500 input tokens: not short.
        let mut long = rec(at(20, 1), "gpt-4o", 15_000, 100);
        long.request_count = Some(10);
        let u = usage(vec![bucket, long]);
        let p = run(u.traffic_profile(&november(20, 21), "gpt-4o", 1000, 300)).unwrap();
        assert_eq!(p.all_calls, 110);
        assert_eq!(p.short_interactive.calls, 100);
        assert_eq!(p.short_interactive.fresh_input_tokens, 50_000);
    }
}

/// The engine's queries ([`OrgUsageQueries::aggregate`], `latency`, `model_mix`, `tags`) by
/// hand, over records around a month boundary: 2026-10-26 and 2026-11-02 are Mondays.
#[cfg(test)]
mod engine_tests {
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    fn run<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("in-memory query did not complete at once"),
        }
    }

    fn at(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0).unwrap()
    }

    fn tags(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// A: gpt-4o 1000 in, $0.0025, ana, support-bot, team=support env=prod, 100 ms.
    /// B: gpt-4o-mini 1000 in, $0.00015, bo, email-drafts, team=growth `a.b"c`=x, 300 ms.
    /// C: gpt-4o-mini 2000 in, $0.0003, ana, no feature, team=growth env=dev, error, 200 ms.
    /// D: gpt-4o 2000 in via the Batch API, $0.0025, no user, support-bot, no tags, no latency.
    /// E: acme-llama 40 in 2 out, unpriced, self-hosted, bo, eval, team=growth, 3 calls, all
    ///    errors, 900 ms.
    /// F: after the period (team=growth).
    fn fixture() -> MemoryUsage {
        let mut a = UsageRecord::new(at(10, 30, 10), "gpt-4o".into(), 1000, 0);
        a.user = Some("ana".into());
        a.feature = Some("support-bot".into());
        a.tags = tags(&[("team", "support"), ("env", "prod")]);
        a.latency_ms = Some(100);
        let mut b = UsageRecord::new(at(10, 31, 23), "gpt-4o-mini".into(), 1000, 0);
        b.user = Some("bo".into());
        b.feature = Some("email-drafts".into());
        b.tags = tags(&[("team", "growth"), ("a.b\"c", "x")]);
        b.latency_ms = Some(300);
        let mut c = UsageRecord::new(at(11, 1, 12), "gpt-4o-mini".into(), 2000, 0);
        c.user = Some("ana".into());
        c.tags = tags(&[("team", "growth"), ("env", "dev")]);
        c.status = Some("error".into());
        c.latency_ms = Some(200);
        let mut d = UsageRecord::new(at(11, 2, 8), "gpt-4o".into(), 2000, 0);
        d.feature = Some("support-bot".into());
        d.batch = Some(true);
        let mut e = UsageRecord::new(at(11, 2, 9), "acme-llama".into(), 40, 2);
        e.provider = Some("self-hosted".into());
        e.user = Some("bo".into());
        e.feature = Some("eval".into());
        e.tags = tags(&[("team", "growth")]);
        e.request_count = Some(3);
        e.status = Some("error".into());
        e.latency_ms = Some(900);
        let mut f = UsageRecord::new(at(11, 9, 0), "gpt-4o".into(), 1000, 0);
        f.tags = tags(&[("team", "growth")]);
        MemoryUsage::from_usage(
            vec![a, b, c, d, e, f],
            Arc::new(PriceCatalog::builtin().unwrap()),
        )
    }

    fn period() -> Period {
        Period::new(at(10, 26, 0), at(11, 9, 0))
    }

    fn query(filters: Vec<Filter>, group_by: Option<Grouping>) -> UsageQuery {
        UsageQuery {
            period: period(),
            scope: Scope { filters },
            group_by,
        }
    }

    fn any_of(d: Dimension, values: &[&str]) -> Filter {
        Filter {
            dimension: d,
            values: values.iter().map(|v| v.to_string()).collect(),
            exclude: false,
        }
    }

    fn none_of(d: Dimension, values: &[&str]) -> Filter {
        Filter {
            exclude: true,
            ..any_of(d, values)
        }
    }

    fn tag(key: &str) -> Dimension {
        Dimension::Tag(key.into())
    }

    /// (calls, cost nanos, unpriced calls, error calls)
    type Brief = (i64, i128, i64, i64);

    fn brief(t: &UsageTotals) -> Brief {
        (t.calls, t.cost.0, t.unpriced_calls, t.error_calls)
    }

    fn slice(filters: Vec<Filter>) -> Brief {
        brief(
            &run(fixture().aggregate(&query(filters, None)))
                .unwrap()
                .totals,
        )
    }

    #[test]
    fn the_whole_period() {
        let s = run(fixture().aggregate(&query(vec![], None))).unwrap();
        assert_eq!(
            s.totals,
            UsageTotals {
                calls: 7,
                input_tokens: 6040,
                output_tokens: 2,
                cached_input_tokens: 0,
                cost: Nanos(5_450_000),
                unpriced_calls: 3,
                unpriced_tokens: 42,
                error_calls: 4,
            }
        );
        assert!(s.rows.is_empty() && !s.truncated);
    }

    #[test]
    fn filters_on_each_dimension() {
        use Dimension::*;
        // One value, several values, and excluded values.
        assert_eq!(
            slice(vec![any_of(Feature, &["support-bot"])]),
            (2, 5_000_000, 0, 0)
        );
        assert_eq!(
            slice(vec![any_of(Model, &["gpt-4o-mini", "acme-llama"])]),
            (5, 450_000, 3, 4)
        );
        assert_eq!(slice(vec![none_of(Model, &["gpt-4o"])]), (5, 450_000, 3, 4));
        assert_eq!(
            slice(vec![any_of(Provider, &["openai"])]),
            (4, 5_450_000, 0, 1)
        );
        assert_eq!(
            slice(vec![any_of(Provider, &["self-hosted"])]),
            (3, 0, 3, 3)
        );
        assert_eq!(
            slice(vec![any_of(User, &["ana", "bo"])]),
            (6, 2_950_000, 3, 4)
        );
        assert_eq!(slice(vec![any_of(Model, &["no-such-model"])]), (0, 0, 0, 0));
    }

    #[test]
    fn none_selects_records_without_the_dimension() {
        use Dimension::*;
        assert_eq!(slice(vec![any_of(User, &["(none)"])]), (1, 2_500_000, 0, 0));
        assert_eq!(
            slice(vec![none_of(Feature, &["(none)"])]),
            (6, 5_150_000, 3, 3)
        );
        assert_eq!(
            slice(vec![any_of(tag("team"), &["(none)"])]),
            (1, 2_500_000, 0, 0)
        );
    }

    #[test]
    fn tag_filters_and_filters_together() {
        assert_eq!(
            slice(vec![any_of(tag("team"), &["growth"])]),
            (5, 450_000, 3, 4)
        );
        // Records without `env` are not `prod`, so excluding `prod` keeps them.
        assert_eq!(
            slice(vec![none_of(tag("env"), &["prod"])]),
            (6, 2_950_000, 3, 4)
        );
        assert_eq!(
            slice(vec![any_of(tag("a.b\"c"), &["x"])]),
            (1, 150_000, 0, 0)
        );
        // Filters are AND'd.
        assert_eq!(
            slice(vec![
                any_of(tag("team"), &["growth"]),
                any_of(Dimension::User, &["bo"]),
            ]),
            (4, 150_000, 3, 3)
        );
        assert_eq!(
            slice(vec![
                any_of(tag("team"), &["growth"]),
                none_of(tag("env"), &["dev"]),
                any_of(Dimension::Model, &["gpt-4o-mini"]),
            ]),
            (1, 150_000, 0, 0)
        );
    }

    fn rows(filters: Vec<Filter>, by: Grouping) -> Vec<(String, Brief)> {
        let s = run(fixture().aggregate(&query(filters, Some(by)))).unwrap();
        // The groups partition the slice.
        let mut sum = UsageTotals::default();
        for r in &s.rows {
            sum.add(&r.totals);
        }
        assert_eq!(sum, s.totals);
        s.rows
            .iter()
            .map(|r| (r.key.clone(), brief(&r.totals)))
            .collect()
    }

    fn keyed(rows: &[(&str, Brief)]) -> Vec<(String, Brief)> {
        rows.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn grouped_by_day_and_by_week_across_a_month_boundary() {
        assert_eq!(
            rows(vec![], Grouping::Day),
            keyed(&[
                ("2026-10-30", (1, 2_500_000, 0, 0)),
                ("2026-10-31", (1, 150_000, 0, 0)),
                ("2026-11-01", (1, 300_000, 0, 1)),
                ("2026-11-02", (4, 2_500_000, 3, 3)),
            ])
        );
        // Sunday 2026-11-01 belongs to the week of Monday 2026-10-26.
        assert_eq!(
            rows(vec![], Grouping::Week),
            keyed(&[
                ("2026-10-26", (3, 2_950_000, 0, 1)),
                ("2026-11-02", (4, 2_500_000, 3, 3)),
            ])
        );
        assert_eq!(
            rows(vec![any_of(tag("team"), &["growth"])], Grouping::Week),
            keyed(&[
                ("2026-10-26", (2, 450_000, 0, 1)),
                ("2026-11-02", (3, 0, 3, 3)),
            ])
        );
    }

    #[test]
    fn grouped_by_the_hour_of_the_day_across_days() {
        // E's three calls at 09:00 on Nov 2; only the hours with usage are listed.
        assert_eq!(
            rows(vec![], Grouping::HourOfDay),
            keyed(&[
                ("08:00", (1, 2_500_000, 0, 0)),
                ("09:00", (3, 0, 3, 3)),
                ("10:00", (1, 2_500_000, 0, 0)),
                ("12:00", (1, 300_000, 0, 1)),
                ("23:00", (1, 150_000, 0, 0)),
            ])
        );
        assert_eq!(
            rows(
                vec![any_of(Dimension::Model, &["gpt-4o"])],
                Grouping::HourOfDay
            ),
            keyed(&[
                ("08:00", (1, 2_500_000, 0, 0)),
                ("10:00", (1, 2_500_000, 0, 0))
            ])
        );
    }

    #[test]
    fn grouped_by_the_day_of_the_week_monday_first() {
        // Fri Oct 30 (A), Sat Oct 31 (B), Sun Nov 1 (C), Mon Nov 2 (D and E's three calls).
        assert_eq!(
            rows(vec![], Grouping::DayOfWeek),
            keyed(&[
                ("monday", (4, 2_500_000, 3, 3)),
                ("friday", (1, 2_500_000, 0, 0)),
                ("saturday", (1, 150_000, 0, 0)),
                ("sunday", (1, 300_000, 0, 1)),
            ])
        );
    }

    #[test]
    fn grouped_by_dimensions_and_tag_keys() {
        use Dimension::*;
        // Cost descending, then key ascending byte-wise: `(none)` sorts before letters.
        assert_eq!(
            rows(vec![], Grouping::By(tag("team"))),
            keyed(&[
                ("(none)", (1, 2_500_000, 0, 0)),
                ("support", (1, 2_500_000, 0, 0)),
                ("growth", (5, 450_000, 3, 4)),
            ])
        );
        assert_eq!(
            rows(vec![], Grouping::By(tag("env"))),
            keyed(&[
                ("(none)", (5, 2_650_000, 3, 3)),
                ("prod", (1, 2_500_000, 0, 0)),
                ("dev", (1, 300_000, 0, 1)),
            ])
        );
        assert_eq!(
            rows(vec![], Grouping::By(User)),
            keyed(&[
                ("ana", (2, 2_800_000, 0, 1)),
                ("(none)", (1, 2_500_000, 0, 0)),
                ("bo", (4, 150_000, 3, 3)),
            ])
        );
        assert_eq!(
            rows(
                vec![any_of(Feature, &["support-bot"])],
                Grouping::By(Provider)
            ),
            keyed(&[("openai", (2, 5_000_000, 0, 0))])
        );
        assert_eq!(
            rows(vec![any_of(tag("team"), &["growth"])], Grouping::By(Model)),
            keyed(&[
                ("gpt-4o-mini", (2, 450_000, 0, 1)),
                ("acme-llama", (3, 0, 3, 3)),
            ])
        );
    }

    #[test]
    fn groups_beyond_the_bound_are_left_out_but_counted() {
        let records = (0..MAX_GROUPS as i64 + 2).map(|i| {
            let mut r = UsageRecord::new(at(11, 2, 0), "gpt-4o-mini".into(), 1000 + i, 0);
            r.user = Some(format!("u{i:05}"));
            r
        });
        let u = MemoryUsage::from_usage(records, Arc::new(PriceCatalog::builtin().unwrap()));
        let s = run(u.aggregate(&query(vec![], Some(Grouping::By(Dimension::User))))).unwrap();
        assert!(s.truncated);
        assert_eq!(s.rows.len(), MAX_GROUPS);
        assert_eq!(s.totals.calls, MAX_GROUPS as i64 + 2);
        // The most expensive (the largest prompts) are kept.
        assert_eq!(s.rows[0].key, format!("u{:05}", MAX_GROUPS + 1));
    }

    fn stats(calls: i64, errors: i64, latencies: &[i64]) -> LatencyStats {
        let mut sorted = latencies.to_vec();
        sorted.sort_unstable();
        LatencyStats {
            calls,
            error_calls: errors,
            latency_samples: sorted.len() as i64,
            mean_ms: latency_mean(
                sorted.iter().map(|&x| i128::from(x)).sum(),
                sorted.len() as i64,
            ),
            p50_ms: nearest_rank(&sorted, 50.0),
            p95_ms: nearest_rank(&sorted, 95.0),
            p99_ms: nearest_rank(&sorted, 99.0),
        }
    }

    #[test]
    fn latency_of_the_slice_and_per_group() {
        let by_feature =
            run(fixture().latency(&query(vec![], Some(Grouping::By(Dimension::Feature))))).unwrap();
        // [100, 200, 300, 900]: p50 is the 2nd, p95 and p99 the 4th.
        assert_eq!(
            by_feature.totals,
            LatencyStats {
                calls: 7,
                error_calls: 4,
                latency_samples: 4,
                mean_ms: Some(375.0),
                p50_ms: Some(200),
                p95_ms: Some(900),
                p99_ms: Some(900),
            }
        );
        let got: Vec<(&str, &LatencyStats)> = by_feature
            .rows
            .iter()
            .map(|r| (r.key.as_str(), &r.stats))
            .collect();
        assert_eq!(
            got,
            vec![
                ("eval", &stats(3, 3, &[900])),
                ("support-bot", &stats(2, 0, &[100])),
                ("(none)", &stats(1, 1, &[200])),
                ("email-drafts", &stats(1, 0, &[300])),
            ]
        );
        assert_eq!(got[1].1.p95_ms, Some(100));

        let by_week = run(fixture().latency(&query(vec![], Some(Grouping::Week)))).unwrap();
        let got: Vec<(&str, &LatencyStats)> = by_week
            .rows
            .iter()
            .map(|r| (r.key.as_str(), &r.stats))
            .collect();
        assert_eq!(
            got,
            vec![
                ("2026-10-26", &stats(3, 1, &[100, 200, 300])),
                ("2026-11-02", &stats(4, 3, &[900])),
            ]
        );
        assert_eq!(got[0].1.p50_ms, Some(200));

        let growth =
            run(fixture().latency(&query(vec![any_of(tag("team"), &["growth"])], None))).unwrap();
        assert_eq!(growth.totals, stats(5, 4, &[300, 200, 900]));
        assert!(growth.rows.is_empty());
        // Latency by model is the grouping by model.
        let by_model = run(fixture().latency_by_model(&period())).unwrap();
        assert_eq!(by_model[0].key, "acme-llama");
        assert_eq!(by_model[1].key, "gpt-4o");
        assert_eq!(by_model[1].stats, stats(2, 0, &[100]));
    }

    fn mix(calls: i64, fresh: i64, cost: i64) -> TokenMix {
        TokenMix {
            calls,
            fresh_input_tokens: fresh,
            cached_input_tokens: 0,
            output_tokens: 0,
            cost: Nanos::from(cost),
        }
    }

    #[test]
    fn model_mix_per_group_and_for_a_slice() {
        // Catalog-priced only: E (unpriced) is not traffic a catalog price could move.
        let by_feature =
            run(fixture().model_mix(&query(vec![], Some(Grouping::By(Dimension::Feature)))))
                .unwrap();
        let m = |key: &str, model: &str, interactive, batch| ModelMix {
            key: Some(key.into()),
            model: model.into(),
            interactive,
            batch,
        };
        assert_eq!(
            by_feature,
            vec![
                m(
                    "(none)",
                    "gpt-4o-mini",
                    mix(1, 2000, 300_000),
                    TokenMix::default()
                ),
                m(
                    "email-drafts",
                    "gpt-4o-mini",
                    mix(1, 1000, 150_000),
                    TokenMix::default()
                ),
                m(
                    "support-bot",
                    "gpt-4o",
                    mix(1, 1000, 2_500_000),
                    mix(1, 2000, 2_500_000)
                ),
            ]
        );
        let growth =
            run(fixture().model_mix(&query(vec![any_of(tag("team"), &["growth"])], None))).unwrap();
        assert_eq!(
            growth,
            vec![ModelMix {
                key: None,
                model: "gpt-4o-mini".into(),
                interactive: mix(2, 3000, 450_000),
                batch: TokenMix::default(),
            }]
        );
    }

    #[test]
    fn tags_seen_in_the_period_by_calls() {
        let t = run(fixture().tags(&period())).unwrap();
        let got: Vec<(&str, &str, i64)> = t
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str(), t.calls))
            .collect();
        assert_eq!(
            got,
            vec![
                ("team", "growth", 5),
                ("a.b\"c", "x", 1),
                ("env", "dev", 1),
                ("env", "prod", 1),
                ("team", "support", 1),
            ]
        );
        assert!(
            run(fixture().tags(&Period::new(at(11, 2, 8), at(11, 2, 9))))
                .unwrap()
                .is_empty()
        );
    }
}
