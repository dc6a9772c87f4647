//! The synthetic usage history behind `apogee demo-data` (PROTOCOL.md §9): a deterministic,
//! clearly labelled fake org (request ids `demo-{seed}-{index}`, users `demo-user-NN`) whose
//! usage has the patterns Apogee's analyses look for, so the golden path has something to find
//! on a fresh machine.
//!
//! What is in it, for `days` days ending at `end` (exclusive), `calls` records exactly, in
//! time order:
//!
//! | feature          | `team` tag  | model(s)                             | traffic |
//! | ---------------- | ----------- | ------------------------------------ | ------- |
//! | `search-rerank`  | `knowledge` | gemini-2.0-flash                     | ~34%, tiny calls, business hours |
//! | `support-bot`    | `support`   | gpt-4o                               | ~30%, 85% short (input 200–900, output 50–250): the right-sizing target; ~25% are FAQ prompts from a pool of 24 `prompt_hash`es: the response-cache target |
//! | `email-drafts`   | `growth`    | gpt-4o-mini (60%), claude-3-5-haiku  | ~14%, weekdays |
//! | `code-review`    | `platform`  | gpt-4.1                              | ~8%, large diffs, weekdays |
//! | `doc-summarizer` | `knowledge` | claude-sonnet-4                      | ~5%, inputs 4k–20k, nightly 01:00–04:00 UTC, `batch: false` although nobody waits for it: batchable traffic; no user (a scheduled job) |
//! | `ticket-tagging` | `support`   | gpt-4o via the Batch API             | ~4%, short, nightly 02:00–05:00 UTC, `batch: true` |
//! | `(none)`         | none        | gpt-4o-mini, no `provider`           | ~3.5%, ad-hoc scripts (provider comes from the catalog) |
//! | `internal-eval`  | `research`  | llama-3.1-70b-internal (self-hosted) | ~1.5%, not in the catalog: unpriced |
//!
//! Every record with a feature also has an `env` tag: `staging` for `internal-eval`, `prod`
//! for the rest. Tags follow from the feature alone, so adding them changed no other value.
//!
//! Weekdays are busier than weekends and interactive traffic peaks 09:00–18:00 UTC. About 1%
//! of calls have status `error` (no output tokens). OpenAI and Anthropic calls carry cached
//! input tokens where those providers cache (long shared prefixes).
//!
//! The spend spike ([`spike`]): on the UTC date `6 + seed % 4` days before `end` (at most
//! `days - 1`), a broken checkpoint makes the `doc-summarizer` nightly job re-run its whole
//! corpus from 01:00 to 09:00 UTC: that feature makes [`SPIKE_MULTIPLIER`] (8) times its usual
//! daily calls, all on claude-sonnet-4, and the day's spend is about 3.5× the median day (with
//! the default 30 days and 200,000 calls: ~$140 against a median of ~$37; other weekdays stay
//! within ~10% of the median and weekends near half of it). The calls are taken from the same
//! total, so `calls` stays exact.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::usage::UsageRecord;

pub const DEFAULT_DAYS: u32 = 30;
pub const DEFAULT_CALLS: u64 = 200_000;
pub const DEFAULT_SEED: u64 = 1;
/// Longest history generated; more is no demo and would only eat memory for the plan.
pub const MAX_DAYS: u32 = 3_660;
/// More records than any demo needs.
pub const MAX_CALLS: u64 = 100_000_000;

/// The feature that causes the spike, and its model.
pub const SPIKE_FEATURE: &str = "doc-summarizer";
pub const SPIKE_MODEL: &str = "claude-sonnet-4";
/// The spiking feature's calls on the spike date, relative to an ordinary day.
pub const SPIKE_MULTIPLIER: u32 = 8;
/// The model not in the price catalog.
pub const UNPRICED_MODEL: &str = "llama-3.1-70b-internal";
pub const UNPRICED_PROVIDER: &str = "self-hosted";
/// Number of distinct users, `demo-user-01` …
pub const USERS: u32 = 32;

const MS_PER_HOUR: i64 = 3_600_000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSpec {
    pub days: u32,
    pub calls: u64,
    pub seed: u64,
    /// Every record is before this instant; the history covers `[end - days, end)`.
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemoError {
    #[error("demo data: `days` must be between 1 and {MAX_DAYS}")]
    Days,
    #[error("demo data: `calls` must be at most {MAX_CALLS}")]
    Calls,
    #[error("demo data: the history would start before the earliest representable time")]
    Range,
}

impl DemoSpec {
    /// The CLI's defaults (30 days, 200,000 calls, seed 1) ending at `end`.
    pub fn with_defaults(end: DateTime<Utc>) -> DemoSpec {
        DemoSpec {
            days: DEFAULT_DAYS,
            calls: DEFAULT_CALLS,
            seed: DEFAULT_SEED,
            end,
        }
    }

    /// [`generate`] produces nothing for a spec that fails this.
    pub fn validate(&self) -> Result<(), DemoError> {
        if !(1..=MAX_DAYS).contains(&self.days) {
            return Err(DemoError::Days);
        }
        if self.calls > MAX_CALLS {
            return Err(DemoError::Calls);
        }
        self.start().map(|_| ()).ok_or(DemoError::Range)
    }

    /// First instant of the history.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.end
            .checked_sub_signed(TimeDelta::try_days(i64::from(self.days))?)
    }
}

/// The anomaly planted in a spec's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSpike {
    /// The UTC date whose spend spikes.
    pub date: NaiveDate,
    /// `date` is the day starting this many days before `end` (for a midnight `end`).
    pub days_before_end: u32,
    pub feature: &'static str,
    pub model: &'static str,
    /// The feature's calls that day relative to an ordinary day.
    pub multiplier: u32,
}

/// Where the spike of `spec`'s data is; `None` for a history shorter than two days.
pub fn spike(spec: &DemoSpec) -> Option<DemoSpike> {
    spec.validate().ok()?;
    if spec.days < 2 {
        return None;
    }
    // Any offset up to `days - 1` keeps the whole spike date, 01:00–09:00 included, inside
    // `[end - days, end)`, even when `end` is not a midnight.
    let days_before_end = (6 + (spec.seed % 4) as u32).min(spec.days - 1);
    let date = spec
        .end
        .checked_sub_signed(TimeDelta::try_days(i64::from(days_before_end))?)?
        .date_naive();
    Some(DemoSpike {
        date,
        days_before_end,
        feature: SPIKE_FEATURE,
        model: SPIKE_MODEL,
        multiplier: SPIKE_MULTIPLIER,
    })
}

/// The records of `spec`, in time order, exactly `spec.calls` of them (none when
/// [`DemoSpec::validate`] fails). Records are made an hour at a time, so memory stays small
/// whatever `calls` is.
pub fn generate(spec: &DemoSpec) -> impl ExactSizeIterator<Item = UsageRecord> + use<> {
    DemoRecords::new(spec)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feature {
    SearchRerank,
    SupportBot,
    EmailDrafts,
    CodeReview,
    DocSummarizer,
    TicketTagging,
    AdHoc,
    InternalEval,
}

const FEATURES: [Feature; 8] = [
    Feature::SearchRerank,
    Feature::SupportBot,
    Feature::EmailDrafts,
    Feature::CodeReview,
    Feature::DocSummarizer,
    Feature::TicketTagging,
    Feature::AdHoc,
    Feature::InternalEval,
];

/// Interactive traffic by UTC hour, relative to the busiest hours.
fn business_curve(hour: u32) -> f64 {
    match hour {
        0..=5 => 0.08,
        6 => 0.2,
        7 => 0.4,
        8 => 0.7,
        9..=12 => 1.0,
        13..=16 => 1.1,
        17 => 0.9,
        18 => 0.7,
        19 => 0.5,
        20 => 0.35,
        21 => 0.25,
        22 => 0.18,
        _ => 0.12,
    }
}

impl Feature {
    fn name(self) -> Option<&'static str> {
        match self {
            Feature::SearchRerank => Some("search-rerank"),
            Feature::SupportBot => Some("support-bot"),
            Feature::EmailDrafts => Some("email-drafts"),
            Feature::CodeReview => Some("code-review"),
            Feature::DocSummarizer => Some(SPIKE_FEATURE),
            Feature::TicketTagging => Some("ticket-tagging"),
            Feature::AdHoc => None,
            Feature::InternalEval => Some("internal-eval"),
        }
    }

    /// The team that owns the feature, as the demo's `team` tag: what "the growth team" in a
    /// question means. Ad-hoc scripts carry no tags.
    fn team(self) -> Option<&'static str> {
        match self {
            Feature::SupportBot | Feature::TicketTagging => Some("support"),
            Feature::EmailDrafts => Some("growth"),
            Feature::SearchRerank | Feature::DocSummarizer => Some("knowledge"),
            Feature::CodeReview => Some("platform"),
            Feature::InternalEval => Some("research"),
            Feature::AdHoc => None,
        }
    }

    /// The `env` tag: the internal evaluations run in staging, the product in production.
    fn env(self) -> Option<&'static str> {
        match self {
            Feature::InternalEval => Some("staging"),
            Feature::AdHoc => None,
            _ => Some("prod"),
        }
    }

    /// The record's tags, derived from the feature alone (no draw from the generator, so
    /// every other generated value stays as it was).
    fn tags(self) -> Option<BTreeMap<String, String>> {
        let tags: BTreeMap<String, String> = [("team", self.team()), ("env", self.env())]
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?.to_string())))
            .collect();
        (!tags.is_empty()).then_some(tags)
    }

    fn is_scheduled(self) -> bool {
        matches!(self, Feature::DocSummarizer | Feature::TicketTagging)
    }

    /// Share of all calls over an ordinary history.
    fn share(self) -> f64 {
        match self {
            Feature::SearchRerank => 0.34,
            Feature::SupportBot => 0.30,
            Feature::EmailDrafts => 0.14,
            Feature::CodeReview => 0.08,
            Feature::DocSummarizer => 0.05,
            Feature::TicketTagging => 0.04,
            Feature::AdHoc => 0.035,
            Feature::InternalEval => 0.015,
        }
    }

    /// Relative call rate in a UTC hour.
    fn rate(self, hour: u32, weekend: bool) -> f64 {
        let weekend_factor = match self {
            Feature::SearchRerank => 0.45,
            Feature::SupportBot => 0.5,
            Feature::EmailDrafts | Feature::AdHoc => 0.15,
            Feature::CodeReview | Feature::InternalEval => 0.08,
            // Cron jobs do not know it is Sunday; fewer tickets arrive, though.
            Feature::DocSummarizer => 1.0,
            Feature::TicketTagging => 0.5,
        };
        let by_hour = match self {
            Feature::DocSummarizer => f64::from(u8::from((1..=3).contains(&hour))),
            Feature::TicketTagging => f64::from(u8::from((2..=4).contains(&hour))),
            _ => business_curve(hour),
        };
        by_hour * if weekend { weekend_factor } else { 1.0 }
    }
}

/// One hour of the history (the first and last may be partial).
#[derive(Debug, Clone, Copy)]
struct Slot {
    start_ms: i64,
    len_ms: i64,
    counts: [u64; FEATURES.len()],
}

/// Splits `calls` over hours and features: each feature keeps its share, spread by its hourly
/// rate, plus the spike's extra calls; cumulative rounding makes the counts add up exactly.
fn plan(spec: &DemoSpec) -> Vec<Slot> {
    let Some(start) = spec.start() else {
        return Vec::new();
    };
    if spec.validate().is_err() {
        return Vec::new();
    }
    let start_ms = start.timestamp_millis();
    let end_ms = spec.end.timestamp_millis();
    let spike = spike(spec);

    let mut slots = Vec::new();
    let mut rates: Vec<[f64; FEATURES.len()]> = Vec::new();
    let mut spike_hours = Vec::new();
    let mut hour_ms = start_ms.div_euclid(MS_PER_HOUR) * MS_PER_HOUR;
    while hour_ms < end_ms {
        let from = hour_ms.max(start_ms);
        let to = (hour_ms + MS_PER_HOUR).min(end_ms);
        let at = DateTime::from_timestamp_millis(hour_ms).unwrap_or(spec.end);
        let weekend = matches!(at.weekday(), Weekday::Sat | Weekday::Sun);
        let fraction = (to - from) as f64 / MS_PER_HOUR as f64;
        // A growing user base (+20% over the history) and day-to-day noise (±8%), so no two
        // days look alike; the cron jobs work through a fixed corpus and stay flat.
        let growth = 0.9 + 0.2 * (hour_ms - start_ms) as f64 / (end_ms - start_ms) as f64;
        let day_seed = mix(spec.seed ^ mix(at.date_naive().num_days_from_ce() as u64));
        let noise = 0.92 + 0.16 * (day_seed >> 11) as f64 / (1u64 << 53) as f64;
        let mut r = [0.0; FEATURES.len()];
        for (i, f) in FEATURES.iter().enumerate() {
            let organic = if f.is_scheduled() {
                1.0
            } else {
                growth * noise
            };
            r[i] = f.rate(at.hour(), weekend) * fraction * organic;
        }
        if spike
            .as_ref()
            .is_some_and(|s| s.date == at.date_naive() && (1..=8).contains(&at.hour()))
        {
            spike_hours.push(slots.len());
        }
        rates.push(r);
        slots.push(Slot {
            start_ms: from,
            len_ms: to - from,
            counts: [0; FEATURES.len()],
        });
        hour_ms += MS_PER_HOUR;
    }

    let mut sums = [0.0; FEATURES.len()];
    for r in &rates {
        for (s, v) in sums.iter_mut().zip(r) {
            *s += v;
        }
    }
    let mut weights: Vec<[f64; FEATURES.len()]> = rates
        .iter()
        .map(|r| {
            let mut w = [0.0; FEATURES.len()];
            for (i, f) in FEATURES.iter().enumerate() {
                if sums[i] > 0.0 {
                    w[i] = f.share() * r[i] / sums[i];
                }
            }
            w
        })
        .collect();
    let doc = FEATURES
        .iter()
        .position(|f| *f == Feature::DocSummarizer)
        .unwrap_or(0);
    if !spike_hours.is_empty() {
        // An ordinary day's weight of the feature is its share over the days.
        let extra =
            f64::from(SPIKE_MULTIPLIER - 1) * Feature::DocSummarizer.share() / f64::from(spec.days);
        let per_hour = extra / spike_hours.len() as f64;
        for &h in &spike_hours {
            weights[h][doc] += per_hour;
        }
    }

    let total: f64 = weights.iter().flatten().sum();
    if total <= 0.0 {
        return Vec::new();
    }
    let calls = spec.calls as f64;
    let mut cumulative = 0.0;
    let mut assigned = 0u64;
    let cells = slots.len() * FEATURES.len();
    let mut cell = 0;
    for (slot, w) in slots.iter_mut().zip(&weights) {
        for (count, weight) in slot.counts.iter_mut().zip(w) {
            cell += 1;
            cumulative += weight;
            let boundary = if cell == cells {
                spec.calls
            } else {
                ((calls * cumulative / total).round() as u64).min(spec.calls)
            };
            let boundary = boundary.max(assigned);
            *count = boundary - assigned;
            assigned = boundary;
        }
    }
    slots
}

/// Zipf-like cumulative weights, so a few users make most calls.
fn user_weights() -> Vec<f64> {
    let mut acc = 0.0;
    (1..=USERS)
        .map(|k| {
            acc += 1.0 / f64::from(k).powf(1.1);
            acc
        })
        .collect()
}

/// A stable 64-bit mix (splitmix64), for prompt hashes that must repeat across calls.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const FAQ_PROMPTS: u64 = 24;
const POPULAR_QUERIES: u64 = 300;

struct DemoRecords {
    seed: u64,
    rng: StdRng,
    slots: std::vec::IntoIter<Slot>,
    /// The current hour's records, latest first, so `pop` yields them in time order.
    pending: Vec<UsageRecord>,
    next_index: u64,
    remaining: u64,
    users: Vec<f64>,
}

impl DemoRecords {
    fn new(spec: &DemoSpec) -> DemoRecords {
        let slots = plan(spec);
        let remaining = slots.iter().flat_map(|s| s.counts).sum();
        DemoRecords {
            seed: spec.seed,
            rng: StdRng::seed_from_u64(spec.seed),
            slots: slots.into_iter(),
            pending: Vec::new(),
            next_index: 0,
            remaining,
            users: user_weights(),
        }
    }

    /// A user among the first `pool` users, skewed toward the first.
    fn user(&mut self, pool: u32) -> Option<String> {
        let pool = (pool.clamp(1, USERS) - 1) as usize;
        let top = self.users.get(pool).copied().unwrap_or(1.0);
        let x = self.rng.random_range(0.0..top);
        let k = self.users.partition_point(|&c| c <= x) + 1;
        Some(format!("demo-user-{k:02}"))
    }

    fn unique_hash(&mut self) -> String {
        format!("{:016x}", self.rng.random::<u64>())
    }

    /// The hash of the `id`-th prompt of a pool, the same in every call and every load.
    fn pooled_hash(&self, pool: u64, id: u64) -> String {
        format!("{:016x}", mix(mix(self.seed ^ pool) ^ id))
    }

    /// A Zipf-ish pick from `0..n`: popular FAQs are asked far more often.
    fn popular(&mut self, n: u64) -> u64 {
        let x: f64 = self.rng.random_range(0.0..1.0);
        ((x * x * n as f64) as u64).min(n - 1)
    }

    /// Roughly bell-shaped in `lo..=hi`.
    fn tokens(&mut self, lo: i64, hi: i64) -> i64 {
        (self.rng.random_range(lo..=hi) + self.rng.random_range(lo..=hi)) / 2
    }

    /// OpenAI caches prompt prefixes of 1024+ tokens in 128-token steps.
    fn openai_cached(&mut self, input: i64, probability: f64) -> i64 {
        if input < 1024 || !self.rng.random_bool(probability) {
            return 0;
        }
        let share = self.rng.random_range(0.3..0.8);
        let cached = ((input as f64 * share) as i64).max(1024);
        (cached.min(input) / 128) * 128
    }

    fn fill(&mut self, slot: &Slot) {
        for (feature, &count) in FEATURES.iter().zip(&slot.counts) {
            for _ in 0..count {
                let offset = self.rng.random_range(0..slot.len_ms);
                let record = self.record(*feature, slot.start_ms + offset);
                self.pending.push(record);
            }
        }
        self.pending.sort_by_key(|r| std::cmp::Reverse(r.ts));
    }

    fn record(&mut self, feature: Feature, ts_ms: i64) -> UsageRecord {
        let mut provider = Some("openai");
        let model;
        let input;
        let output;
        let mut cached = Some(0);
        let mut user = None;
        let mut prompt_hash = None;
        let mut batch = Some(false);
        match feature {
            Feature::SearchRerank => {
                provider = Some("google");
                model = "gemini-2.0-flash";
                cached = None;
                user = self.user(USERS);
                if self.rng.random_bool(0.1) {
                    let id = self.popular(POPULAR_QUERIES);
                    prompt_hash = Some(self.pooled_hash(2, id));
                    input = 150 + (id as i64 * 53) % 400;
                } else {
                    input = self.tokens(120, 600);
                }
                output = self.tokens(5, 40);
            }
            Feature::SupportBot => {
                model = "gpt-4o";
                user = self.user(USERS);
                if self.rng.random_bool(0.25) {
                    let id = self.popular(FAQ_PROMPTS);
                    prompt_hash = Some(self.pooled_hash(1, id));
                    input = 220 + (id as i64 * 97) % 600;
                    output = self.tokens(60, 220);
                } else if self.rng.random_bool(0.8) {
                    input = self.tokens(200, 900);
                    output = self.tokens(50, 250);
                } else {
                    // Escalations carry the conversation so far.
                    input = self.tokens(1_200, 4_000);
                    output = self.tokens(250, 700);
                    cached = Some(self.openai_cached(input, 0.7));
                }
            }
            Feature::EmailDrafts => {
                user = self.user(USERS);
                input = self.tokens(300, 1_500);
                output = self.tokens(150, 600);
                if self.rng.random_bool(0.6) {
                    model = "gpt-4o-mini";
                    cached = Some(self.openai_cached(input, 0.5));
                } else {
                    provider = Some("anthropic");
                    model = "claude-3-5-haiku";
                }
            }
            Feature::CodeReview => {
                model = "gpt-4.1";
                user = self.user(12);
                input = self.tokens(2_000, 14_000);
                output = self.tokens(200, 1_500);
                cached = Some(self.openai_cached(input, 0.5));
            }
            Feature::DocSummarizer => {
                provider = Some("anthropic");
                model = SPIKE_MODEL;
                input = self.tokens(4_000, 20_000);
                output = self.tokens(300, 1_200);
                // The job's instructions and examples are a cached prefix.
                if self.rng.random_bool(0.85) {
                    cached = Some(self.rng.random_range(1_500..=2_200));
                }
            }
            Feature::TicketTagging => {
                model = "gpt-4o";
                batch = Some(true);
                input = self.tokens(300, 800);
                output = self.tokens(10, 60);
            }
            Feature::AdHoc => {
                provider = None;
                model = "gpt-4o-mini";
                batch = None;
                cached = None;
                user = self.user(USERS);
                input = self.tokens(100, 2_000);
                output = self.tokens(50, 500);
            }
            Feature::InternalEval => {
                provider = Some(UNPRICED_PROVIDER);
                model = UNPRICED_MODEL;
                cached = None;
                user = self.user(4);
                input = self.tokens(500, 3_000);
                output = self.tokens(100, 800);
            }
        }
        let prompt_hash = match prompt_hash {
            Some(h) => h,
            None => self.unique_hash(),
        };

        let failed = self.rng.random_bool(0.01);
        let output = if failed { 0 } else { output };
        let latency = if !failed {
            let (first_token_ms, per_output_ms) = match model {
                "gpt-4o" => (350.0, 11.0),
                "gpt-4o-mini" => (250.0, 7.0),
                "gpt-4.1" => (450.0, 13.0),
                "claude-sonnet-4" => (700.0, 19.0),
                "claude-3-5-haiku" => (300.0, 9.0),
                "gemini-2.0-flash" => (120.0, 4.0),
                _ => (400.0, 26.0),
            };
            let jitter = self.rng.random_range(0.85..1.35);
            let prefill = input as f64 * 0.02;
            ((first_token_ms + per_output_ms * output as f64 + prefill) * jitter) as i64
        } else if self.rng.random_bool(0.5) {
            self.rng.random_range(80..=600)
        } else {
            // Timeouts.
            self.rng.random_range(30_000..=60_000)
        };

        UsageRecord {
            provider: provider.map(Into::into),
            cached_input_tokens: cached.map(|c: i64| c.min(input)),
            latency_ms: Some(latency),
            user,
            feature: feature.name().map(Into::into),
            tags: feature.tags(),
            prompt_hash: Some(prompt_hash),
            batch,
            status: Some(if failed { "error" } else { "ok" }.into()),
            ..UsageRecord::new(
                DateTime::from_timestamp_millis(ts_ms).unwrap_or_default(),
                model.into(),
                input,
                output,
            )
        }
    }
}

impl Iterator for DemoRecords {
    type Item = UsageRecord;

    fn next(&mut self) -> Option<UsageRecord> {
        while self.pending.is_empty() {
            let slot = self.slots.next()?;
            self.fill(&slot);
        }
        let mut record = self.pending.pop()?;
        record.request_id = Some(format!("demo-{}-{}", self.seed, self.next_index));
        self.next_index += 1;
        self.remaining = self.remaining.saturating_sub(1);
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

impl ExactSizeIterator for DemoRecords {}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::OnceLock;

    use chrono::TimeZone;

    use super::*;
    use crate::catalog::PriceCatalog;
    use crate::money::Nanos;
    use crate::usage::PricedRecord;

    fn spec() -> DemoSpec {
        DemoSpec::with_defaults(Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap())
    }

    /// The default dataset, generated once for all tests.
    fn default_data() -> &'static [PricedRecord] {
        static DATA: OnceLock<Vec<PricedRecord>> = OnceLock::new();
        DATA.get_or_init(|| {
            let catalog = PriceCatalog::builtin().unwrap();
            generate(&spec())
                .map(|r| PricedRecord::price(r, &catalog))
                .collect()
        })
    }

    fn daily_cost(data: &[PricedRecord]) -> BTreeMap<NaiveDate, Nanos> {
        let mut days = BTreeMap::new();
        for r in data {
            let day = days.entry(r.record.ts.date_naive()).or_insert(Nanos::ZERO);
            *day = *day + r.cost.unwrap_or(Nanos::ZERO);
        }
        days
    }

    fn median(mut values: Vec<Nanos>) -> Nanos {
        values.sort();
        values[values.len() / 2]
    }

    #[test]
    fn exact_count_in_range_and_valid() {
        let s = spec();
        let data = default_data();
        assert_eq!(data.len() as u64, s.calls);
        let start = s.start().unwrap();
        let mut last = start;
        for (i, r) in data.iter().enumerate() {
            let u = &r.record;
            assert!(u.ts >= start && u.ts < s.end, "{:?}", u.ts);
            assert!(u.ts >= last, "records are in time order");
            last = u.ts;
            assert_eq!(
                u.request_id.as_deref(),
                Some(format!("demo-1-{i}").as_str())
            );
            assert!(
                u.user
                    .as_deref()
                    .is_none_or(|u| u.starts_with("demo-user-"))
            );
            u.validate().unwrap();
        }
        let days: Vec<_> = daily_cost(data).into_keys().collect();
        assert_eq!(days.len(), 30);
        assert_eq!(days[0], NaiveDate::from_ymd_opt(2026, 10, 27).unwrap());
    }

    #[test]
    fn exact_count_for_awkward_specs() {
        let end = Utc.with_ymd_and_hms(2026, 3, 5, 17, 42, 13).unwrap();
        for (days, calls, seed) in [
            (1, 1, 0),
            (1, 0, 3),
            (2, 7, 9),
            (3, 1_001, 4),
            (45, 12_345, 77),
        ] {
            let s = DemoSpec {
                days,
                calls,
                seed,
                end,
            };
            let it = generate(&s);
            assert_eq!(it.len() as u64, calls);
            let records: Vec<_> = it.collect();
            assert_eq!(records.len() as u64, calls, "{s:?}");
            let start = s.start().unwrap();
            assert!(records.iter().all(|r| r.ts >= start && r.ts < end));
            assert!(records.iter().all(|r| r.validate().is_ok()));
        }
        let bad = DemoSpec { days: 0, ..spec() };
        assert_eq!(bad.validate(), Err(DemoError::Days));
        assert_eq!(generate(&bad).count(), 0);
        assert!(spike(&bad).is_none());
    }

    #[test]
    fn deterministic_for_a_spec() {
        let s = DemoSpec {
            calls: 5_000,
            ..spec()
        };
        let a: Vec<_> = generate(&s).collect();
        let b: Vec<_> = generate(&s).collect();
        assert_eq!(a, b);
        let c: Vec<_> = generate(&DemoSpec { seed: 2, ..s }).collect();
        assert_ne!(a, c);
        assert!(c[0].request_id.as_deref().unwrap().starts_with("demo-2-"));
    }

    #[test]
    fn spike_day_is_at_least_two_and_a_half_times_the_median() {
        let s = spec();
        let spike = spike(&s).unwrap();
        assert_eq!(spike.days_before_end, 7);
        assert_eq!(spike.date, NaiveDate::from_ymd_opt(2026, 11, 19).unwrap());
        let days = daily_cost(default_data());
        let med = median(days.values().copied().collect());
        let peak = days[&spike.date];
        assert!(
            peak.0 as f64 >= 2.5 * med.0 as f64,
            "spike {peak:?} vs median {med:?}"
        );
        for (day, cost) in &days {
            if *day != spike.date {
                assert!((cost.0 as f64) < 1.6 * med.0 as f64, "{day} {cost:?}");
            }
        }
        // The excess is the spiking feature's.
        let on_spike_day = |feature: Option<&str>| -> Nanos {
            default_data()
                .iter()
                .filter(|r| r.record.ts.date_naive() == spike.date)
                .filter(|r| feature.is_none() || r.record.feature.as_deref() == feature)
                .filter_map(|r| r.cost)
                .sum()
        };
        let feature_cost = on_spike_day(Some(SPIKE_FEATURE));
        assert!((feature_cost.0 as f64) > 0.7 * (peak - med).0 as f64);
        assert_eq!(on_spike_day(None), peak);
    }

    #[test]
    fn spike_date_follows_the_seed_and_fits_short_histories() {
        let s = spec();
        let offsets: Vec<u32> = (0..4)
            .map(|seed| spike(&DemoSpec { seed, ..s }).unwrap().days_before_end)
            .collect();
        assert_eq!(offsets, vec![6, 7, 8, 9]);
        let short = DemoSpec { days: 3, ..s };
        assert_eq!(spike(&short).unwrap().days_before_end, 2);
        assert!(spike(&DemoSpec { days: 1, ..s }).is_none());
    }

    #[test]
    fn unpriced_share_and_shape() {
        let data = default_data();
        let n = data.len() as f64;
        let unpriced = data.iter().filter(|r| r.cost.is_none()).count() as f64;
        assert!((0.01..=0.02).contains(&(unpriced / n)), "{unpriced}");
        assert!(
            data.iter()
                .filter(|r| r.cost.is_none())
                .all(|r| r.record.model == UNPRICED_MODEL)
        );
        let errors = data
            .iter()
            .filter(|r| r.record.status.as_deref() == Some("error"))
            .count() as f64;
        assert!((0.005..=0.015).contains(&(errors / n)), "{errors}");
        let cached = data.iter().filter(|r| r.record.cached_tokens() > 0).count();
        assert!(cached > 1_000);

        let mut models: Vec<&str> = data.iter().map(|r| r.record.model.as_str()).collect();
        models.sort_unstable();
        models.dedup();
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "claude-sonnet-4",
            "claude-3-5-haiku",
            "gemini-2.0-flash",
            UNPRICED_MODEL,
        ] {
            assert!(models.contains(&m), "{m}");
        }
        let users: std::collections::HashSet<_> = data
            .iter()
            .filter_map(|r| r.record.user.as_deref())
            .collect();
        assert!((20..=40).contains(&users.len()));

        // Weekdays are busier than weekends.
        let mut per_weekday: HashMap<bool, (u64, u64)> = HashMap::new();
        let mut seen_days = std::collections::HashSet::new();
        for r in data {
            let d = r.record.ts.date_naive();
            let weekend = matches!(d.weekday(), Weekday::Sat | Weekday::Sun);
            let e = per_weekday.entry(weekend).or_default();
            e.0 += 1;
            if seen_days.insert(d) {
                e.1 += 1;
            }
        }
        let avg = |w: bool| per_weekday[&w].0 as f64 / per_weekday[&w].1 as f64;
        assert!(avg(false) > 1.5 * avg(true));
    }

    #[test]
    fn duplicates_and_short_support_calls_present() {
        let data = default_data();
        let mut groups: HashMap<(&str, &str), u32> = HashMap::new();
        for r in data {
            if let Some(h) = r.record.prompt_hash.as_deref() {
                *groups.entry((r.record.model.as_str(), h)).or_default() += 1;
            }
        }
        let repeats: u32 = groups.values().filter(|&&c| c > 1).map(|c| c - 1).sum();
        let support = data
            .iter()
            .filter(|r| r.record.feature.as_deref() == Some("support-bot"))
            .count() as f64;
        // ~25% of support-bot calls are FAQs from a tiny pool, nearly all repeats.
        assert!(f64::from(repeats) > 0.2 * support, "{repeats} of {support}");
        let short = data
            .iter()
            .filter(|r| r.record.feature.as_deref() == Some("support-bot"))
            .filter(|r| r.record.input_tokens <= 1_000 && r.record.output_tokens <= 300)
            .count() as f64;
        assert!(short / support > 0.75);
    }

    #[test]
    fn teams_follow_from_features() {
        let mut teams: HashMap<Option<&str>, std::collections::BTreeSet<Option<&str>>> =
            HashMap::new();
        for r in default_data() {
            let tag = |k: &str| {
                r.record
                    .tags
                    .as_ref()
                    .and_then(|t| t.get(k))
                    .map(String::as_str)
            };
            teams
                .entry(tag("team"))
                .or_default()
                .insert(r.record.feature.as_deref());
            assert_eq!(tag("env").is_some(), r.record.feature.is_some());
        }
        let features = |team| teams[&Some(team)].iter().copied().collect::<Vec<_>>();
        assert_eq!(features("growth"), [Some("email-drafts")]);
        assert_eq!(
            features("support"),
            [Some("support-bot"), Some("ticket-tagging")]
        );
        assert_eq!(
            features("knowledge"),
            [Some("doc-summarizer"), Some("search-rerank")]
        );
        assert_eq!(features("platform"), [Some("code-review")]);
        assert_eq!(features("research"), [Some("internal-eval")]);
        assert_eq!(teams[&None].iter().copied().collect::<Vec<_>>(), [None]);
    }
}
