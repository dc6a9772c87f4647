//! [`MemoryUsage`]: the in-memory implementation of [`OrgUsageQueries`] over one org's priced
//! records. It is the reference semantics of every query: the SQL store must return exactly
//! what this returns for the same records, and analyses and agents are unit-tested against it.
//!
//! Semantics shared with the SQL store:
//! - a period is half-open `[from, to)` on the record's `ts`;
//! - a call is an error when its `status` is present and not exactly `ok`;
//! - a call is unpriced when its cost is unknown; unpriced calls add nothing to any cost and
//!   their input + output tokens are reported as `unpriced_tokens`;
//! - breakdown rows are by cost descending then key ascending (days: key ascending); a missing
//!   user or feature is the key `(none)`; days are UTC `YYYY-MM-DD`;
//! - the traffic profile takes only calls of exactly that model priced from the catalog (a
//!   client-sent cost says nothing about what the catalog model would charge);
//! - a repeated prompt is a `(model, prompt_hash)` pair seen more than once; the first call of
//!   each (earliest `ts`, ties by position) is the one a response cache could not have served;
//! - latency percentiles are nearest-rank over the records reporting `latency_ms` (one sample
//!   per record, whatever its `request_count`); calls and errors count `request_count`;
//! - feature × model traffic, output tails and input bands take only calls priced from the
//!   catalog, like the traffic profile; output tails also only single-call records, and take
//!   the nearest rank `ceil(p × n / 100)` in integers so SQL computes the same rank;
//! - an input band compares the prompt per call, `input_tokens / request_count` (integer
//!   division), with its bounds.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::catalog::PriceCatalog;
use crate::money::Nanos;
use crate::period::Period;
use crate::queries::{
    BatchCandidate, CostRow, FeatureModelCost, FeatureModelMix, GroupBy, InputBand, LatencyRow,
    NIGHT_END_HOUR, OrgUsageQueries, OutputTail, QueryError, RepeatProfile, TokenMix,
    TrafficProfile, UsageTotals, latency_row, sort_latency_rows,
};
use crate::usage::{PricedRecord, UsageRecord};

/// The key of records without a user or a feature.
pub const NONE_KEY: &str = "(none)";
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

    fn group_key(&self, r: &PricedRecord, by: GroupBy) -> String {
        match by {
            GroupBy::Model => r.record.model.clone(),
            GroupBy::Provider => r.provider(&self.catalog),
            GroupBy::User => r.record.user.clone().unwrap_or_else(|| NONE_KEY.into()),
            GroupBy::Feature => r.record.feature.clone().unwrap_or_else(|| NONE_KEY.into()),
            GroupBy::Day => r.record.ts.format("%Y-%m-%d").to_string(),
        }
    }
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
    // An aggregated record (an OpenAI usage bucket) stands for `request_count` calls.
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
    mix.calls += 1;
    mix.fresh_input_tokens += r.record.input_tokens - cached;
    mix.cached_input_tokens += cached;
    mix.output_tokens += r.record.output_tokens;
    mix.cost = mix.cost + r.cost.unwrap_or(Nanos::ZERO);
}

#[async_trait]
impl OrgUsageQueries for MemoryUsage {
    async fn totals(&self, period: &Period) -> Result<UsageTotals, QueryError> {
        let mut t = UsageTotals::default();
        for r in self.in_period(period) {
            let u = &r.record;
            let calls = u.request_count();
            t.calls += calls;
            t.input_tokens += u.input_tokens;
            t.output_tokens += u.output_tokens;
            t.cached_input_tokens += u.cached_tokens();
            match r.cost {
                Some(c) => t.cost = t.cost + c,
                None => {
                    t.unpriced_calls += calls;
                    t.unpriced_tokens += u.input_tokens + u.output_tokens;
                }
            }
            if is_error(u) {
                t.error_calls += calls;
            }
        }
        Ok(t)
    }

    async fn breakdown(&self, period: &Period, by: GroupBy) -> Result<Vec<CostRow>, QueryError> {
        let mut groups: HashMap<String, CostRow> = HashMap::new();
        for r in self.in_period(period) {
            let key = self.group_key(r, by);
            let row = groups
                .entry(key)
                .or_insert_with_key(|k| empty_row(k.clone()));
            add_to_row(row, r);
        }
        let mut rows: Vec<CostRow> = groups.into_values().collect();
        if by == GroupBy::Day {
            rows.sort_by(|a, b| a.key.cmp(&b.key));
        } else {
            by_cost_then_key(&mut rows);
        }
        Ok(rows)
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
            p.all_calls += 1;
            p.all_cost = p.all_cost + r.cost.unwrap_or(Nanos::ZERO);
            let u = &r.record;
            if u.input_tokens <= max_input_tokens && u.output_tokens <= max_output_tokens {
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
                let key = self.group_key(r, GroupBy::Feature);
                let row = features
                    .entry(key)
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
            c.interactive_calls += 1;
            if u.ts.hour() < NIGHT_END_HOUR {
                add_to_mix(&mut c.night, r);
            }
        }
        Ok(groups.into_values().collect())
    }

    async fn latency_by_model(&self, period: &Period) -> Result<Vec<LatencyRow>, QueryError> {
        // Per model: (calls, error calls, latencies of the records that reported one).
        let mut by_model: HashMap<&str, (i64, i64, Vec<i64>)> = HashMap::new();
        for r in self.in_period(period) {
            let u = &r.record;
            let e = by_model.entry(u.model.as_str()).or_default();
            e.0 += u.request_count();
            if is_error(u) {
                e.1 += u.request_count();
            }
            e.2.extend(u.latency_ms);
        }
        let mut rows: Vec<LatencyRow> = by_model
            .into_iter()
            .map(|(model, (calls, errors, mut lat))| {
                lat.sort_unstable();
                latency_row(model.to_string(), calls, errors, &lat)
            })
            .collect();
        sort_latency_rows(&mut rows);
        Ok(rows)
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

    async fn feature_model_traffic(
        &self,
        period: &Period,
    ) -> Result<Vec<FeatureModelMix>, QueryError> {
        let mut groups: std::collections::BTreeMap<(String, String), FeatureModelMix> =
            Default::default();
        for r in self.in_period(period).filter(|r| from_catalog(r)) {
            let u = &r.record;
            let feature = feature_of(u);
            let g = groups
                .entry((feature.clone(), u.model.clone()))
                .or_insert_with(|| FeatureModelMix {
                    feature,
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
        Ok(groups.into_values().collect())
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

        let by_model = run(u.breakdown(&p, GroupBy::Model)).unwrap();
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

        let by_provider = run(u.breakdown(&p, GroupBy::Provider)).unwrap();
        assert_eq!(
            keys_costs(&by_provider),
            vec![
                ("openai", 3, 2_800_000, 0),
                ("anthropic", 1, 0, 0),
                ("self-hosted", 1, 0, 1),
            ]
        );

        let by_user = run(u.breakdown(&p, GroupBy::User)).unwrap();
        assert_eq!(
            keys_costs(&by_user),
            vec![
                ("u-b", 1, 2_500_000, 0),
                ("u-a", 2, 300_000, 0),
                ("(none)", 2, 0, 1)
            ]
        );

        let by_feature = run(u.breakdown(&p, GroupBy::Feature)).unwrap();
        assert_eq!(
            keys_costs(&by_feature),
            vec![
                ("support", 2, 2_650_000, 0),
                ("(none)", 2, 150_000, 0),
                ("eval", 1, 0, 1)
            ]
        );

        let by_day = run(u.breakdown(&p, GroupBy::Day)).unwrap();
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
        let rows = run(u.breakdown(&Period::new(at(20, 8), at(21, 0)), GroupBy::Day)).unwrap();
        assert_eq!(keys_costs(&rows), vec![("2026-11-20", 2, 2_650_000, 0)]);
        assert!(
            run(u.breakdown(&november(1, 2), GroupBy::Model))
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
}
