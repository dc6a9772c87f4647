//! Focused answers to figure questions: the first sentence answers with the exact figure and
//! says what it covers ("gpt-4o cost $57.37 in the last 7 days (Nov 19–25), 23.5% of
//! spend."), then only the table that supports it, and the data of the one chart that fits
//! the plan (a ranking, a daily series, a before/after). Every figure is a query result or
//! computed from one; every name goes through [`escape`].

use apogee_analytics::trends::DaySpend;
use apogee_analytics::{Dimension, Grouping, LatencyStats, Nanos, Scope, UsageTotals};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::{Value as Json, json};

use super::markdown::{Doc, escape};
use super::when;
use crate::format::{count, ms, percent, share, signed_usd, times, usd_precise};
use crate::plan::{Measure, Order, PlanPeriod, QuestionPlan, Threshold, ThresholdAmount};
use crate::question::period::dates_label;

/// Rows a table lists at most; the rest are summed in one line.
pub(crate) const MAX_ROWS: usize = 20;
/// Rows a ranking of one shows around it.
const CONTEXT_ROWS: usize = 5;

/// One group of a measured slice.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    pub key: String,
    pub totals: UsageTotals,
    pub latency: Option<LatencyStats>,
}

/// A slice measured over one period: its totals and its groups (the plan's grouping).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Measured {
    pub totals: UsageTotals,
    pub latency: Option<LatencyStats>,
    pub groups: Vec<Group>,
    /// The length of the measured period in seconds, for the spend per day (0: unknown).
    pub seconds: i64,
}

/// What the data agent measured for a figure plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FigureData {
    pub current: Measured,
    /// The comparison period, same scope and grouping.
    pub previous: Option<Measured>,
    /// The whole org over the period, for the share of a scoped slice.
    pub org: Option<UsageTotals>,
    /// The scope's spend by day, for the chart of an ungrouped figure.
    pub series: Vec<DaySpend>,
}

/// A written answer: its markdown, its first sentence, the chart it supports and its
/// sections.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub markdown: String,
    pub lead: String,
    pub chart: Json,
    pub sections: Vec<String>,
}

/// One measured value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    Usd(Nanos),
    PerCall(Nanos),
    /// Dollars per million tokens (shown bare: the sentence or column names the unit).
    PerMillionTokens(Nanos),
    Count(i64),
    Rate(f64),
    Ms(i64),
}

impl Value {
    pub(crate) fn num(self) -> f64 {
        match self {
            Value::Usd(n) | Value::PerCall(n) | Value::PerMillionTokens(n) => n.usd(),
            Value::Count(c) | Value::Ms(c) => c as f64,
            Value::Rate(r) => r,
        }
    }

    pub(crate) fn text(self) -> String {
        match self {
            Value::Usd(n) => n.display_usd(),
            Value::PerCall(n) | Value::PerMillionTokens(n) => usd_precise(n),
            Value::Count(c) => count(c),
            Value::Rate(r) => percent(r),
            Value::Ms(v) => ms(v),
        }
    }
}

fn priced_calls(t: &UsageTotals) -> i64 {
    t.calls - t.unpriced_calls
}

/// `m` of a slice over a period of `seconds`; `None` when it has no value (no priced call,
/// no latency sample, no period length).
pub(crate) fn value(
    m: Measure,
    t: &UsageTotals,
    l: Option<&LatencyStats>,
    seconds: i64,
) -> Option<Value> {
    let v = match m {
        Measure::Spend => Value::Usd(t.cost),
        Measure::Calls => Value::Count(t.calls),
        Measure::InputTokens => Value::Count(t.input_tokens),
        Measure::OutputTokens => Value::Count(t.output_tokens),
        Measure::TotalTokens => Value::Count(t.total_tokens()),
        Measure::CachedInputTokens => Value::Count(t.cached_input_tokens),
        Measure::CacheReadShare => {
            if t.input_tokens <= 0 {
                return None;
            }
            Value::Rate(t.cached_input_tokens as f64 / t.input_tokens as f64)
        }
        Measure::TokensPerCall => {
            if t.calls <= 0 {
                return None;
            }
            Value::Count((t.total_tokens() as f64 / t.calls as f64).round() as i64)
        }
        Measure::CostPerCall => Value::PerCall(t.cost_per_call()?),
        Measure::CostPerMillionTokens => Value::PerMillionTokens(t.cost_per_million_tokens()?),
        Measure::SpendPerDay => {
            if seconds <= 0 {
                return None;
            }
            Value::Usd(Nanos(t.cost.0 * 86_400 / i128::from(seconds)))
        }
        Measure::CallsPerDay => {
            if seconds <= 0 {
                return None;
            }
            Value::Count((t.calls as f64 * 86_400.0 / seconds as f64).round() as i64)
        }
        Measure::Errors => Value::Count(t.error_calls),
        Measure::ErrorRate => {
            if t.calls <= 0 {
                return None;
            }
            Value::Rate(t.error_rate())
        }
        // Shown to the millisecond, as the percentiles are.
        Measure::LatencyMean => Value::Ms(l?.mean_ms?.round() as i64),
        Measure::LatencyP50 => Value::Ms(l?.p50_ms?),
        Measure::LatencyP95 => Value::Ms(l?.p95_ms?),
        Measure::LatencyP99 => Value::Ms(l?.p99_ms?),
    };
    Some(v)
}

/// Sums over a slice add up across groups; ratios and percentiles do not.
fn additive(m: Measure) -> bool {
    matches!(
        m,
        Measure::Spend
            | Measure::Calls
            | Measure::InputTokens
            | Measure::OutputTokens
            | Measure::TotalTokens
            | Measure::CachedInputTokens
            | Measure::Errors
    )
}

pub(crate) fn noun(m: Measure) -> &'static str {
    match m {
        Measure::Spend => "spend",
        Measure::Calls => "calls",
        Measure::InputTokens => "input tokens",
        Measure::OutputTokens => "output tokens",
        Measure::TotalTokens => "tokens",
        Measure::CachedInputTokens => "cached input tokens",
        Measure::CacheReadShare => "share of input read from cache",
        Measure::TokensPerCall => "tokens per call",
        Measure::CostPerCall => "cost per call",
        Measure::CostPerMillionTokens => "cost per 1M tokens",
        Measure::SpendPerDay => "spend per day",
        Measure::CallsPerDay => "calls per day",
        Measure::Errors => "failed calls",
        Measure::ErrorRate => "error rate",
        Measure::LatencyMean => "average latency",
        Measure::LatencyP50 => "p50 latency",
        Measure::LatencyP95 => "p95 latency",
        Measure::LatencyP99 => "p99 latency",
    }
}

/// `a`, `a and b`, `a, b and c`.
pub(crate) fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn tag_phrase(key: &str, values: &[String]) -> String {
    let v: Vec<String> = values.iter().map(|v| escape(v)).collect();
    format!("the {} {}", and_list(&v), escape(key))
}

/// The scope in words ("support-bot on gpt-4o", "the growth team", "user alice"); `None` for
/// the whole org.
pub(crate) fn subject(scope: &Scope) -> Option<String> {
    let values = |d: &Dimension| -> Option<String> {
        let f = scope
            .filters
            .iter()
            .find(|f| &f.dimension == d && !f.exclude)?;
        let names: Vec<String> = f.values.iter().map(|v| escape(v)).collect();
        Some(and_list(&names))
    };
    let features = values(&Dimension::Feature);
    let models = values(&Dimension::Model);
    let providers = values(&Dimension::Provider);
    let users = values(&Dimension::User);
    let tags: Vec<String> = scope
        .filters
        .iter()
        .filter(|f| !f.exclude)
        .filter_map(|f| match &f.dimension {
            Dimension::Tag(k) => Some(tag_phrase(k, &f.values)),
            _ => None,
        })
        .collect();
    let tags = (!tags.is_empty()).then(|| and_list(&tags));
    let mut base: Option<String> = None;
    let mut push = |s: String| match &mut base {
        None => base = Some(s),
        Some(b) => {
            b.push(' ');
            b.push_str(&s);
        }
    };
    match (&features, &models, &users, &tags, &providers) {
        (Some(f), ..) => push(f.clone()),
        (None, Some(m), ..) => push(m.clone()),
        (None, None, Some(u), ..) => push(format!("user {u}")),
        (None, None, None, Some(t), _) => push(t.clone()),
        (None, None, None, None, Some(p)) => push(p.clone()),
        _ => {}
    }
    if features.is_some()
        && let Some(m) = &models
    {
        push(format!("on {m}"));
    }
    if (features.is_some() || models.is_some())
        && let Some(u) = &users
    {
        push(format!("for user {u}"));
    }
    if (features.is_some() || models.is_some() || users.is_some())
        && let Some(t) = &tags
    {
        push(format!("in {t}"));
    }
    if (features.is_some() || models.is_some() || users.is_some() || tags.is_some())
        && let Some(p) = &providers
    {
        push(format!("via {p}"));
    }
    let excluded: Vec<String> = scope
        .filters
        .iter()
        .filter(|f| f.exclude)
        .flat_map(|f| f.values.iter().map(|v| escape(v)))
        .collect();
    if !excluded.is_empty() {
        let list = and_list(&excluded);
        match &mut base {
            None => base = Some(format!("Everything except {list}")),
            Some(b) => b.push_str(&format!(" except {list}")),
        }
    }
    base
}

/// Upper-cases the first letter of a sentence that starts with an ordinary word, not a
/// name ("The growth team", but "gpt-4o").
fn sentence_start(s: &str) -> String {
    let starts_plain = ["the ", "user ", "everything "]
        .iter()
        .any(|p| s.starts_with(p));
    if !starts_plain {
        return s.to_string();
    }
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn possessive(s: &str) -> String {
    format!("{s}'s")
}

fn dimension_noun(g: &Grouping, plural: bool) -> String {
    let one = match g {
        Grouping::HourOfDay if plural => return "hours of the day".to_string(),
        Grouping::HourOfDay => "hour of the day".to_string(),
        Grouping::DayOfWeek if plural => return "days of the week".to_string(),
        Grouping::DayOfWeek => "day of the week".to_string(),
        Grouping::Day => "day".to_string(),
        Grouping::Week => "week".to_string(),
        Grouping::By(Dimension::Tag(k)) => escape(k),
        Grouping::By(d) => d.kind().to_string(),
    };
    if plural { format!("{one}s") } else { one }
}

/// A group's key for sentences: days and weeks as dates, an hour of the day as the hour it
/// spans ("13:00–14:00 UTC"), a weekday by its name ("Monday"), names escaped.
fn key_text(g: &Grouping, key: &str, year: i32) -> String {
    match g {
        Grouping::HourOfDay => {
            return match key.get(..2).and_then(|h| h.parse::<u32>().ok()) {
                Some(h) => format!("{key}–{:02}:00 UTC", h + 1),
                None => escape(key),
            };
        }
        Grouping::DayOfWeek => return capitalise(&escape(key)),
        _ => {}
    }
    match (g, key.parse::<NaiveDate>()) {
        (Grouping::Day, Ok(d)) => dates_label(
            &crate::question::period::days(d, d.succ_opt().unwrap_or(d)),
            year,
        ),
        (Grouping::Week, Ok(d)) => format!(
            "the week of {}",
            dates_label(
                &crate::question::period::days(d, d.succ_opt().unwrap_or(d)),
                year
            )
        ),
        _ if key == apogee_analytics::NONE_KEY => format!("(no {})", dimension_noun(g, false)),
        _ => escape(key),
    }
}

/// The sentence of one measure over a slice in `period`, without its final stop
/// ("gpt-4o cost $57.37 in the last 7 days (Nov 23–29)"): the figure first, the period, then
/// what it is made of.
fn measure_clause(m: Measure, who: Option<&str>, slice: &Measured, period: &str) -> String {
    let (t, l, seconds) = (&slice.totals, slice.latency.as_ref(), slice.seconds);
    let v = value(m, t, l, seconds);
    let vt = v.map(Value::text).unwrap_or_else(|| "–".into());
    match (m, who) {
        (Measure::Spend, Some(s)) => format!("{s} cost {vt} {period}"),
        (Measure::Spend, None) => format!("You spent {vt} {period}"),
        (Measure::Calls, Some(s)) => format!("{s} made {vt} calls {period}"),
        (Measure::Calls, None) => format!("You made {vt} calls {period}"),
        (Measure::InputTokens, Some(s)) => format!("{s} sent {vt} input tokens {period}"),
        (Measure::InputTokens, None) => format!("Your calls sent {vt} input tokens {period}"),
        (Measure::OutputTokens, Some(s)) => format!("{s} received {vt} output tokens {period}"),
        (Measure::OutputTokens, None) => {
            format!("Your calls received {vt} output tokens {period}")
        }
        (Measure::TotalTokens, who) => format!(
            "{} used {vt} tokens {period}: {} input and {} output",
            who.unwrap_or("Your calls"),
            count(t.input_tokens),
            count(t.output_tokens)
        ),
        (Measure::CachedInputTokens, who) => format!(
            "{} read {vt} input tokens from cache {period}, {} of {} input tokens",
            who.unwrap_or("Your calls"),
            value(Measure::CacheReadShare, t, None, seconds).map_or("–".into(), Value::text),
            count(t.input_tokens)
        ),
        (Measure::CacheReadShare, who) => match v {
            Some(_) => format!(
                "{vt} of {} input tokens were read from cache {period}: {} of {}",
                who.map_or("your".to_string(), possessive),
                count(t.cached_input_tokens),
                count(t.input_tokens)
            ),
            None => format!(
                "{} sent no input tokens {period}, so nothing was read from cache",
                who.unwrap_or("Your calls")
            ),
        },
        (Measure::TokensPerCall, who) => match v {
            Some(_) => format!(
                "{} used {vt} tokens per call on average {period}: {} input and {} output over {} calls",
                who.unwrap_or("Your calls"),
                count((t.input_tokens as f64 / t.calls as f64).round() as i64),
                count((t.output_tokens as f64 / t.calls as f64).round() as i64),
                count(t.calls)
            ),
            None => format!("{} made no call {period}", who.unwrap_or("You")),
        },
        (Measure::SpendPerDay, who) => match v {
            Some(_) => format!(
                "{} {vt} a day on average {period}: {} over {} days",
                who.map_or("You spent".to_string(), |w| format!("{w} cost")),
                t.cost.display_usd(),
                days_text(seconds)
            ),
            None => format!("{} has no length, so no spend per day", period),
        },
        (Measure::CallsPerDay, who) => match v {
            Some(_) => format!(
                "{} {vt} calls a day on average {period}: {} over {} days",
                who.map_or("You made".to_string(), |w| format!("{w} made")),
                count(t.calls),
                days_text(seconds)
            ),
            None => format!("{} has no length, so no calls per day", period),
        },
        (Measure::CostPerCall, who) => match v {
            Some(_) => format!(
                "{} {period}: {} over {} priced calls",
                who.map_or(format!("A call cost {vt} on average"), |w| {
                    format!("{w} cost {vt} per call on average")
                }),
                t.cost.display_usd(),
                count(priced_calls(t))
            ),
            None => format!(
                "{} had no priced call {period}, so there is no cost per call",
                who.unwrap_or("Your usage")
            ),
        },
        (Measure::CostPerMillionTokens, who) => match v {
            Some(_) => format!(
                "{} {vt} per 1M tokens on average {period}: {} over {} priced tokens",
                who.map_or("Your usage cost".to_string(), |w| format!("{w} cost")),
                t.cost.display_usd(),
                count(t.total_tokens() - t.unpriced_tokens)
            ),
            None => format!(
                "{} had no priced call {period}, so there is no cost per token",
                who.unwrap_or("Your usage")
            ),
        },
        (Measure::Errors, who) => format!(
            "{} had {vt} failed calls {period}, {} of {} calls",
            who.unwrap_or("You"),
            value(Measure::ErrorRate, t, None, seconds).map_or("–".into(), Value::text),
            count(t.calls)
        ),
        (Measure::ErrorRate, who) => format!(
            "{vt} of {} calls failed {period}: {} of {}",
            who.map_or("your".to_string(), possessive),
            count(t.error_calls),
            count(t.calls)
        ),
        (m, who) => {
            let whose = who.map_or("Your".to_string(), possessive);
            match (v, l) {
                (Some(_), Some(p)) => {
                    let others: Vec<String> = [
                        (Measure::LatencyP50, "p50", p.p50_ms),
                        (Measure::LatencyP95, "p95", p.p95_ms),
                        (Measure::LatencyP99, "p99", p.p99_ms),
                    ]
                    .iter()
                    .filter(|(o, _, _)| *o != m)
                    .map(|(_, name, v)| format!("{name} {}", v.map_or("–".into(), ms)))
                    .collect();
                    format!(
                        "{whose} {} was {vt} {period}; {}, over {} calls that reported a latency",
                        noun(m),
                        others.join(", "),
                        count(p.latency_samples)
                    )
                }
                _ => format!(
                    "No call of {} reported a latency {period}",
                    who.unwrap_or("yours")
                ),
            }
        }
    }
}

/// "30", "1.5": a period's length in days.
fn days_text(seconds: i64) -> String {
    if seconds % 86_400 == 0 {
        count(seconds / 86_400)
    } else {
        format!("{:.1}", seconds as f64 / 86_400.0)
    }
}

/// Shares of a scoped slice in the whole org's figure, for additive measures.
fn share_clause(m: Measure, t: &UsageTotals, org: Option<&UsageTotals>) -> Option<String> {
    let org = org?;
    let (part, whole, what) = match m {
        Measure::Spend => (t.cost.0 as f64, org.cost.0 as f64, "spend"),
        Measure::Calls => (t.calls as f64, org.calls as f64, "all calls"),
        Measure::TotalTokens => (
            (t.input_tokens + t.output_tokens) as f64,
            (org.input_tokens + org.output_tokens) as f64,
            "all tokens",
        ),
        Measure::InputTokens => (
            t.input_tokens as f64,
            org.input_tokens as f64,
            "all input tokens",
        ),
        Measure::OutputTokens => (
            t.output_tokens as f64,
            org.output_tokens as f64,
            "all output tokens",
        ),
        Measure::Errors => (
            t.error_calls as f64,
            org.error_calls as f64,
            "all failed calls",
        ),
        Measure::CachedInputTokens => (
            t.cached_input_tokens as f64,
            org.cached_input_tokens as f64,
            "all cached input tokens",
        ),
        _ => return None,
    };
    (whole > 0.0).then(|| format!("{} of {what}", percent(part / whole)))
}

/// Writes the answer to a figure plan (see the module doc).
pub(crate) fn render(plan: &QuestionPlan, data: &FigureData, now: DateTime<Utc>) -> Answer {
    let year = now.year();
    let mut doc = Doc::default();
    let who = subject(&plan.scope);
    let m = plan.measure();
    let period = when(&plan.period, year);
    let cur = &data.current;
    let (lead, chart) = if cur.totals.calls == 0
        && data.previous.as_ref().is_none_or(|p| p.totals.calls == 0)
    {
        (
            format!(
                "No usage matches {} {period}.",
                who.clone().unwrap_or_else(|| "your question".into())
            ),
            json!({ "kind": "none" }),
        )
    } else if let (Some(prev), Some(cmp)) = (&data.previous, &plan.compare) {
        compare(&mut doc, plan, m, who.as_deref(), cur, prev, cmp, year)
    } else if let Some(g) = &plan.group_by {
        match plan.rank {
            Some(rank) => ranking(
                &mut doc,
                plan,
                m,
                g,
                rank.order,
                rank.top,
                who.as_deref(),
                cur,
                year,
            ),
            None if g.is_time() => series(&mut doc, plan, g, who.as_deref(), cur, &period, year),
            None => breakdown(&mut doc, plan, g, who.as_deref(), cur, &period, year),
        }
    } else {
        single(&mut doc, plan, m, who.as_deref(), data, &period, year)
    };
    let mut head = Doc::default();
    head.line(&lead);
    let markdown = if doc.out.is_empty() {
        head.out
    } else {
        format!("{}\n{}", head.out, doc.out.trim_start_matches('\n'))
    };
    let mut markdown = markdown;
    if let Some(note) = unpriced_note(m, &cur.totals) {
        markdown.push('\n');
        markdown.push_str(&note);
        markdown.push('\n');
    }
    Answer {
        markdown,
        lead,
        chart,
        sections: doc.sections,
    }
}

fn unpriced_note(m: Measure, t: &UsageTotals) -> Option<String> {
    (matches!(
        m,
        Measure::Spend | Measure::CostPerCall | Measure::CostPerMillionTokens
    ) && t.unpriced_calls > 0)
        .then(|| {
            format!(
                "_{} calls to models without a price are not in the cost figures._",
                count(t.unpriced_calls)
            )
        })
}

fn single(
    doc: &mut Doc,
    plan: &QuestionPlan,
    m: Measure,
    who: Option<&str>,
    data: &FigureData,
    period: &str,
    year: i32,
) -> (String, Json) {
    let t = &data.current.totals;
    let l = data.current.latency.as_ref();
    let seconds = data.current.seconds;
    let mut lead = measure_clause(m, who, &data.current, period);
    // What drives the spend: against the whole org, beside the share of spend its share of
    // calls, then its cost per call taken apart.
    let drivers = match (who, &data.org) {
        (Some(who), Some(org)) if plan.drivers && m == Measure::Spend && org.calls > 0 => {
            drivers_line(who, t, org).map(|line| {
                let calls = percent(t.calls as f64 / org.calls as f64);
                (format!(" from {calls} of calls"), line)
            })
        }
        _ => None,
    };
    if who.is_some()
        && let Some(s) = share_clause(m, t, data.org.as_ref())
    {
        lead.push_str(&format!(", {s}"));
        if let Some((calls, _)) = &drivers {
            lead.push_str(calls);
        }
    } else if who.is_none() && m == Measure::Spend {
        lead.push_str(&format!(" across {} calls", count(t.calls)));
    }
    // Spend leaves out calls without a price: say so where the figure is.
    if m == Measure::Spend && t.unpriced_calls > 0 {
        lead.push_str(&format!(
            "; {} of {} calls are to models without a price and not counted",
            count(t.unpriced_calls),
            count(t.calls)
        ));
    }
    lead.push('.');
    let lead = sentence_start(&lead);
    if let Some((_, line)) = &drivers {
        doc.line(line);
        doc.blank();
    }
    // The other measures asked for, one line each.
    let others: Vec<String> = plan
        .measures
        .iter()
        .skip(1)
        .filter_map(|&o| {
            value(o, t, l, seconds).map(|v| format!("- {}: {}", capitalise(noun(o)), v.text()))
        })
        .collect();
    for line in &others {
        doc.line(line);
    }
    let chart = series_chart(m, &data.series, year);
    if let Some(top) = data
        .series
        .iter()
        .max_by(|a, b| a.cost.cmp(&b.cost).then(b.day.cmp(&a.day)))
        && data.series.len() > 1
        && m == Measure::Spend
        // A series of nothing but $0 days has no highest day to name.
        && top.cost > Nanos(0)
    {
        if !others.is_empty() {
            doc.blank();
        }
        doc.line(&format!(
            "The highest day was {} at {}.",
            dates_label(
                &crate::question::period::days(top.day, top.day.succ_opt().unwrap_or(top.day)),
                year
            ),
            top.cost.display_usd()
        ));
    }
    (lead, chart)
}

/// Why a slice's calls cost what they do, against the whole org's: its cost per priced call
/// is its tokens per priced call times its price per token, and the line says which of the two
/// sets it apart. `None` when either has no priced call with tokens.
fn drivers_line(who: &str, t: &UsageTotals, org: &UsageTotals) -> Option<String> {
    // Over priced calls only, so that cost per call = tokens per call × price per token.
    let parts = |u: &UsageTotals| {
        let calls = priced_calls(u);
        let tokens = u
            .input_tokens
            .saturating_add(u.output_tokens)
            .saturating_sub(u.unpriced_tokens);
        (calls > 0 && tokens > 0).then(|| {
            let per_call = u.cost.0 as f64 / calls as f64;
            (
                per_call,
                tokens as f64 / calls as f64,
                u.cost.0 as f64 / tokens as f64,
            )
        })
    };
    let (per_call, tokens, price) = parts(t)?;
    let (org_per_call, org_tokens, org_price) = parts(org)?;
    if org_per_call <= 0.0 || org_price <= 0.0 {
        return None;
    }
    let ratio = per_call / org_per_call;
    // Above the org's: "3.1×"; below: "4.6%" (a ratio of 0.05 would read "0.0×").
    let relative = |r: f64| if r >= 1.0 { times(r) } else { percent(r) };
    let against = if ratio >= 1.0 {
        format!("{} the org's average", times(ratio))
    } else {
        format!("{} of the org's average", percent(ratio))
    };
    let nanos = |x: f64| Nanos(x.round() as i128);
    let mut line = format!(
        "{} calls cost {} each on average, {against} ({}): they use {} tokens each against {} ({}), billed at {} per million tokens against {} ({}).",
        possessive(who),
        usd_precise(nanos(per_call)),
        usd_precise(nanos(org_per_call)),
        count(tokens.round() as i64),
        count(org_tokens.round() as i64),
        relative(tokens / org_tokens),
        usd_precise(nanos(price * 1e6)),
        usd_precise(nanos(org_price * 1e6)),
        relative(price / org_price),
    );
    if ratio < 1.0 {
        line.push_str(" A call costs less than average: the spend comes from the number of calls.");
    } else if (price / org_price).ln() >= (tokens / org_tokens).ln() {
        line.push_str(
            " Most of the difference is the price per token, that is the models it calls.",
        );
    } else {
        line.push_str(" Most of the difference is the length of its calls.");
    }
    Some(line)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn series_chart(m: Measure, days: &[DaySpend], year: i32) -> Json {
    if days.len() < 2 || !matches!(m, Measure::Spend | Measure::SpendPerDay) {
        return json!({ "kind": "none" });
    }
    json!({
        "kind": "series",
        "title": "Spend by day",
        "points": days.iter().map(|d| json!({
            "key": d.day.to_string(),
            "label": dates_label(&crate::question::period::days(d.day, d.day.succ_opt().unwrap_or(d.day)), year),
            "value": d.cost.usd(),
            "display": d.cost.display_usd(),
        })).collect::<Vec<_>>(),
    })
}

/// The groups that have a value for `m`, best first for `order`, then by key; each group
/// `seconds` long (for the spend per day).
fn ranked(
    groups: &[Group],
    m: Measure,
    order: Order,
    seconds: impl Fn(&Group) -> i64,
) -> Vec<(&Group, Value)> {
    let mut rows: Vec<(&Group, Value)> = groups
        .iter()
        .filter_map(|g| value(m, &g.totals, g.latency.as_ref(), seconds(g)).map(|v| (g, v)))
        .collect();
    rows.sort_by(|a, b| {
        let by = a.1.num().total_cmp(&b.1.num());
        let by = if order == Order::Highest {
            by.reverse()
        } else {
            by
        };
        by.then_with(|| a.0.key.cmp(&b.0.key))
    });
    rows
}

/// The phrase of the top of a ranking: "spent the most", "was the cheapest model per call".
fn superlative(m: Measure, order: Order, g: &Grouping) -> String {
    let hi = order == Order::Highest;
    let thing = dimension_noun(g, false);
    let is_model = matches!(g, Grouping::By(Dimension::Model));
    if g.is_time() {
        return match (m, hi) {
            (Measure::Spend, true) => format!("was the most expensive {thing}"),
            (Measure::Spend, false) => format!("was the cheapest {thing}"),
            (Measure::Calls | Measure::CallsPerDay, true) => format!("was the busiest {thing}"),
            (Measure::Calls | Measure::CallsPerDay, false) => {
                format!("was the quietest {thing}")
            }
            (Measure::SpendPerDay, true) => format!("was the most expensive {thing}"),
            (Measure::SpendPerDay, false) => format!("was the cheapest {thing}"),
            (m, true) => format!("had the highest {}", noun(m)),
            (m, false) => format!("had the lowest {}", noun(m)),
        };
    }
    match (m, hi) {
        (Measure::Spend, true) if is_model => "cost the most".into(),
        (Measure::Spend, false) if is_model => "cost the least".into(),
        (Measure::Spend, true) => "spent the most".into(),
        (Measure::Spend, false) => "spent the least".into(),
        (Measure::Calls, true) => "made the most calls".into(),
        (Measure::Calls, false) => "made the fewest calls".into(),
        (Measure::InputTokens, true) => "sent the most input tokens".into(),
        (Measure::InputTokens, false) => "sent the fewest input tokens".into(),
        (Measure::OutputTokens, true) => "received the most output tokens".into(),
        (Measure::OutputTokens, false) => "received the fewest output tokens".into(),
        (Measure::TotalTokens, true) => "used the most tokens".into(),
        (Measure::TotalTokens, false) => "used the fewest tokens".into(),
        (Measure::SpendPerDay, true) => "spent the most per day".into(),
        (Measure::SpendPerDay, false) => "spent the least per day".into(),
        (Measure::CallsPerDay, true) => "made the most calls per day".into(),
        (Measure::CallsPerDay, false) => "made the fewest calls per day".into(),
        (Measure::CostPerCall, true) => format!("was the most expensive {thing} per call"),
        (Measure::CostPerCall, false) => format!("was the cheapest {thing} per call"),
        (Measure::CostPerMillionTokens, true) => {
            format!("was the most expensive {thing} per 1M tokens")
        }
        (Measure::CostPerMillionTokens, false) => {
            format!("was the cheapest {thing} per 1M tokens")
        }
        (Measure::Errors, true) => "had the most failed calls".into(),
        (Measure::Errors, false) => "had the fewest failed calls".into(),
        (Measure::ErrorRate, true) => "had the highest error rate".into(),
        (Measure::ErrorRate, false) => "had the lowest error rate".into(),
        (Measure::CachedInputTokens, true) => "read the most input tokens from cache".into(),
        (Measure::CachedInputTokens, false) => "read the fewest input tokens from cache".into(),
        (Measure::CacheReadShare, true) => "read the largest share of its input from cache".into(),
        (Measure::CacheReadShare, false) => {
            "read the smallest share of its input from cache".into()
        }
        (Measure::TokensPerCall, true) => "used the most tokens per call".into(),
        (Measure::TokensPerCall, false) => "used the fewest tokens per call".into(),
        (m, true) => format!("was the slowest {thing} by {}", &noun(m)[..3]),
        (m, false) => format!("was the fastest {thing} by {}", &noun(m)[..3]),
    }
}

/// " on gpt-4o", " within support-bot": where a ranking was taken.
fn within(scope: &Scope, who: Option<&str>) -> String {
    match who {
        None => String::new(),
        Some(w) => {
            let only_models = scope
                .filters
                .iter()
                .all(|f| f.dimension == Dimension::Model && !f.exclude);
            if only_models {
                format!(" on {w}")
            } else {
                format!(" within {w}")
            }
        }
    }
}

/// The measures of a group table: the headline, by which its rows are ordered, then the
/// others the question asked for ("spend, cost per call and tokens per call by model"), one
/// column each, over groups `seconds` long (for the spend per day).
#[derive(Clone, Copy)]
struct Columns<'a> {
    m: Measure,
    others: &'a [Measure],
    /// The measured period's length, and the period ([`group_seconds`]).
    seconds: i64,
    period: &'a PlanPeriod,
}

impl<'a> Columns<'a> {
    fn of(plan: &'a QuestionPlan, seconds: i64) -> Columns<'a> {
        Columns {
            m: plan.measure(),
            others: plan.measures.get(1..).unwrap_or_default(),
            seconds,
            period: &plan.period,
        }
    }
}

/// Rows a table of `g` lists at most: the 24 hours of a day and the days of a month are one
/// table each, never cut; anything else [`MAX_ROWS`].
fn table_rows(g: &Grouping) -> usize {
    match g {
        Grouping::HourOfDay => 24,
        Grouping::Day => 31,
        _ => MAX_ROWS,
    }
}

/// A point's label on a chart: short where the sentence's is long (the hour alone, "13:00";
/// a weekday's first three letters, "Mon").
fn chart_label(g: &Grouping, key: &str, year: i32) -> String {
    match g {
        Grouping::HourOfDay => escape(key),
        Grouping::DayOfWeek => capitalise(&escape(key.get(..3).unwrap_or(key))),
        _ => key_text(g, key, year),
    }
}

/// How many of the period's days (UTC dates it touches) fall on the weekday `key` (`monday`
/// … `sunday`; 0 for another key).
fn days_on(key: &str, period: &PlanPeriod) -> i64 {
    let Some(wd) = apogee_analytics::WEEKDAYS.iter().position(|d| *d == key) else {
        return 0;
    };
    let (first, last) = (
        period.from.date_naive(),
        (period.to - chrono::Duration::milliseconds(1)).date_naive(),
    );
    // Whole weeks hold one of each weekday; the days left over start on `first`'s weekday.
    let days = (last - first).num_days() + 1;
    if days <= 0 {
        return 0;
    }
    let wd = i64::try_from(wd).unwrap_or(0);
    let from_first = (wd - i64::from(first.weekday().num_days_from_monday())).rem_euclid(7);
    days / 7 + i64::from(from_first < days % 7)
}

/// Saturday or Sunday, as a key of [`Grouping::DayOfWeek`].
fn is_weekend(key: &str) -> bool {
    apogee_analytics::WEEKDAYS[5..].contains(&key)
}

/// How long the group `key` of `g` lasts within a period of `seconds` (`period`), for the spend
/// per day: a day or a week its own length; an hour of the day or a name the whole period; a
/// weekday 24 hours for each of the period's days that falls on it (at least one).
fn group_seconds(g: &Grouping, key: &str, period: &PlanPeriod, seconds: i64) -> i64 {
    const DAY: i64 = 86_400;
    match g {
        Grouping::Day => DAY,
        Grouping::Week => 7 * DAY,
        Grouping::DayOfWeek => DAY * days_on(key, period).max(1),
        Grouping::HourOfDay | Grouping::By(_) => seconds,
    }
}

fn group_table(
    doc: &mut Doc,
    cols: Columns<'_>,
    g: &Grouping,
    rows: &[(&Group, Value)],
    total: Option<&UsageTotals>,
    year: i32,
) {
    let m = cols.m;
    let with_share = additive(m) && total.is_some();
    let mut header = vec![
        (dimension_noun(g, false), false),
        (noun(m).to_string(), true),
    ];
    if with_share {
        header.push(("share".to_string(), true));
    }
    for o in cols.others {
        header.push((noun(*o).to_string(), true));
    }
    let with_calls = m != Measure::Calls && !cols.others.contains(&Measure::Calls);
    if with_calls {
        header.push(("calls".to_string(), true));
    }
    let header_refs: Vec<(&str, bool)> = header.iter().map(|(h, r)| (h.as_str(), *r)).collect();
    let shown = &rows[..rows.len().min(table_rows(g))];
    let table: Vec<Vec<String>> = shown
        .iter()
        .map(|(grp, v)| {
            let mut cells = vec![key_text(g, &grp.key, year), v.text()];
            if with_share && let Some(t) = total {
                cells.push(share_of(m, &grp.totals, t));
            }
            for o in cols.others {
                cells.push(
                    value(
                        *o,
                        &grp.totals,
                        grp.latency.as_ref(),
                        group_seconds(g, &grp.key, cols.period, cols.seconds),
                    )
                    .map_or_else(|| "–".into(), Value::text),
                );
            }
            if with_calls {
                cells.push(count(grp.totals.calls));
            }
            cells
        })
        .collect();
    doc.table(&header_refs, &table);
    if rows.len() > shown.len() {
        doc.blank();
        doc.line(&format!(
            "{} more {} not listed.",
            rows.len() - shown.len(),
            dimension_noun(g, true)
        ));
    }
}

fn share_of(m: Measure, part: &UsageTotals, whole: &UsageTotals) -> String {
    let (p, w) = match m {
        Measure::Spend => return share(part.cost, whole.cost),
        Measure::Calls => (part.calls, whole.calls),
        Measure::InputTokens => (part.input_tokens, whole.input_tokens),
        Measure::OutputTokens => (part.output_tokens, whole.output_tokens),
        Measure::TotalTokens => (
            part.input_tokens + part.output_tokens,
            whole.input_tokens + whole.output_tokens,
        ),
        Measure::Errors => (part.error_calls, whole.error_calls),
        _ => return "–".into(),
    };
    if w <= 0 {
        "–".into()
    } else {
        percent(p as f64 / w as f64)
    }
}

fn ranking_chart(m: Measure, g: &Grouping, rows: &[(&Group, Value)], year: i32) -> Json {
    json!({
        "kind": "ranking",
        "title": format!("{} by {}", capitalise(noun(m)), dimension_noun(g, false)),
        "rows": rows.iter().take(MAX_ROWS).map(|(grp, v)| json!({
            "label": key_text(g, &grp.key, year),
            "value": v.num(),
            "display": v.text(),
        })).collect::<Vec<_>>(),
    })
}

#[allow(clippy::too_many_arguments)]
fn ranking(
    doc: &mut Doc,
    plan: &QuestionPlan,
    m: Measure,
    g: &Grouping,
    order: Order,
    top: Option<u32>,
    who: Option<&str>,
    cur: &Measured,
    year: i32,
) -> (String, Json) {
    let period = when(&plan.period, year);
    // Usage without the dimension ("(none)") is no user, feature or team: it is not ranked.
    let named: Vec<Group> = cur
        .groups
        .iter()
        .filter(|grp| g.is_time() || grp.key != apogee_analytics::NONE_KEY)
        .cloned()
        .collect();
    let all = ranked(&named, m, order, |grp| {
        group_seconds(g, &grp.key, &plan.period, cur.seconds)
    });
    let n = top.map_or(all.len(), |t| (t as usize).min(all.len()));
    let shown = &all[..n];
    let inside = within(&plan.scope, who);
    let lead = match shown {
        // Usage there, but none of it names the dimension: say so, rather than "nothing".
        [] if cur.totals.calls > 0 => format!(
            "No {dim} has a {}{inside} {period}: its {} call{} carry no {dim}.",
            noun(m),
            count(cur.totals.calls),
            if cur.totals.calls == 1 { "" } else { "s" },
            dim = dimension_noun(g, false),
        ),
        [] => format!(
            "No {} has a {}{inside} {period}.",
            dimension_noun(g, false),
            noun(m)
        ),
        [(first, v)] if top == Some(1) => {
            // "was the busiest day" names no unit: the figure does ("10,184 calls").
            let figure = match m {
                Measure::Calls if g.is_time() => format!("{} calls", v.text()),
                Measure::CallsPerDay if g.is_time() => format!("{} calls a day", v.text()),
                Measure::SpendPerDay if g.is_time() => format!("{} a day", v.text()),
                _ => v.text(),
            };
            let mut s = format!(
                "{} {}{inside} {period}: {figure}",
                key_text(g, &first.key, year),
                superlative(m, order, g),
            );
            if additive(m) {
                let total =
                    value(m, &cur.totals, None, cur.seconds).map_or("–".into(), Value::text);
                let part = share_of(m, &first.totals, &cur.totals);
                s.push_str(&match who {
                    Some(w) => format!(", {part} of {} {total}", possessive(w)),
                    None => format!(", {part} of all {} ({total})", noun(m)),
                });
            }
            s.push('.');
            sentence_start(&s)
        }
        _ => {
            let names: Vec<String> = shown
                .iter()
                .take(10)
                .map(|(grp, v)| format!("{} ({})", key_text(g, &grp.key, year), v.text()))
                .collect();
            let what = match (top, order) {
                (None, _) => format!(
                    "{} ranked by {}",
                    capitalise(&dimension_noun(g, true)),
                    noun(m)
                ),
                (Some(_), Order::Highest) => {
                    format!("The top {n} {} by {}", dimension_noun(g, true), noun(m))
                }
                (Some(_), Order::Lowest) => format!(
                    "The {n} {} with the lowest {}",
                    dimension_noun(g, true),
                    noun(m)
                ),
            };
            let mut s = format!("{what}{inside} {period}: {}", and_list(&names));
            if additive(m) && top.is_some() {
                let sum: UsageTotals = sum_totals(shown.iter().map(|(grp, _)| &grp.totals));
                s.push_str(&format!(
                    "; {} together, {} of the total",
                    value(m, &sum, None, cur.seconds).map_or("–".into(), Value::text),
                    share_of(m, &sum, &cur.totals)
                ));
            }
            s.push('.');
            s
        }
    };
    // The one named is shown among the next ones, so the table says what it beat.
    let context = &all[..all.len().min(shown.len().max(CONTEXT_ROWS))];
    if !context.is_empty() {
        group_table(
            doc,
            Columns::of(plan, cur.seconds),
            g,
            context,
            Some(&cur.totals),
            year,
        );
    }
    let missing = named.len() - all.len();
    if named.len() < cur.groups.len() {
        doc.blank();
        doc.line(&format!(
            "Usage without a {} is not ranked.",
            dimension_noun(g, false)
        ));
    }
    if missing > 0 {
        doc.blank();
        doc.line(&format!(
            "{} {} with no {} {} not ranked.",
            missing,
            dimension_noun(g, missing != 1),
            noun(m),
            if missing == 1 { "is" } else { "are" }
        ));
    }
    (lead, ranking_chart(m, g, context, year))
}

/// "3 users spent more than $50 this month: a ($185.26), b ($84.60) and c ($55.91); …": the
/// groups (naming the dimension) whose spend is past the amount, and only those in the table.
#[allow(clippy::too_many_arguments)]
fn past_threshold(
    doc: &mut Doc,
    cols: Columns,
    t: Threshold,
    g: &Grouping,
    who: Option<&str>,
    cur: &Measured,
    rows: &[(&Group, Value)],
    period: &str,
    year: i32,
) -> (String, Json) {
    // Each group's amount in the threshold's unit (nanos or calls), exact; the threshold's
    // words; the verb of its sentences.
    let (limit, limit_text, verb): (i128, String, &str) = match t.amount {
        ThresholdAmount::Spend { cents } => {
            let limit = Nanos(i128::from(cents) * 10_000_000);
            (limit.0, limit.display_usd(), "spent")
        }
        ThresholdAmount::Calls { calls } => (
            i128::from(calls),
            format!("{} call{}", count(calls), if calls == 1 { "" } else { "s" }),
            "made",
        ),
    };
    let amount_of = |grp: &Group| match t.amount {
        ThresholdAmount::Spend { .. } => grp.totals.cost.0,
        ThresholdAmount::Calls { .. } => i128::from(grp.totals.calls),
    };
    let named: Vec<(&Group, Value)> = rows
        .iter()
        .filter(|(grp, _)| grp.key != apogee_analytics::NONE_KEY)
        .copied()
        .collect();
    let past: Vec<(&Group, Value)> = named
        .iter()
        .filter(|(grp, _)| {
            if t.above {
                amount_of(grp) > limit
            } else {
                amount_of(grp) < limit
            }
        })
        .copied()
        .collect();
    let than = match (t.above, t.amount) {
        (true, _) => format!("more than {limit_text}"),
        (false, ThresholdAmount::Spend { .. }) => format!("less than {limit_text}"),
        (false, ThresholdAmount::Calls { .. }) => format!("fewer than {limit_text}"),
    };
    let inside = who.map_or(String::new(), |w| format!(" within {w}"));
    let lead = match past.as_slice() {
        [] => {
            let nearest = if t.above { named.first() } else { named.last() };
            let mut lead = format!(
                "No {} {verb} {than}{inside} {period}",
                dimension_noun(g, false)
            );
            if let Some((grp, v)) = nearest {
                lead.push_str(&format!(
                    "; the {} was {} at {}",
                    if t.above { "most" } else { "least" },
                    key_text(g, &grp.key, year),
                    v.text()
                ));
            }
            lead + "."
        }
        _ => {
            const NAMED: usize = 10;
            let mut names: Vec<String> = past
                .iter()
                .take(NAMED)
                .map(|(grp, v)| format!("{} ({})", key_text(g, &grp.key, year), v.text()))
                .collect();
            if past.len() > NAMED {
                names.push(format!("{} more", past.len() - NAMED));
            }
            let together = sum_totals(past.iter().map(|(grp, _)| &grp.totals));
            let m = t.measure();
            format!(
                "{} {} {verb} {than}{inside} {period}: {}; {} together, {} of {}.",
                count(past.len() as i64),
                dimension_noun(g, past.len() != 1),
                and_list(&names),
                value(m, &together, None, cur.seconds).map_or("–".into(), Value::text),
                share_of(m, &together, &cur.totals),
                noun(m)
            )
        }
    };
    if !past.is_empty() {
        group_table(doc, cols, g, &past, Some(&cur.totals), year);
    }
    (lead, ranking_chart(t.measure(), g, &past, year))
}

/// "You spent $20.08 a day on weekends in the last 30 days (Nov 1–30), against $42.14 a day on
/// weekdays: $180.70 over 9 weekend days" (without its stop): Saturdays and Sundays summed
/// apart from the other days of a breakdown by weekday, each side per day over its own days in
/// the period. `None` when the measure is not spend or calls (per day), or a side has no day
/// in the period.
fn weekend_lead(
    m: Measure,
    who: Option<&str>,
    cur: &Measured,
    period_of: &PlanPeriod,
    period: &str,
) -> Option<String> {
    let per_day = match m {
        Measure::Spend | Measure::SpendPerDay => Measure::SpendPerDay,
        Measure::Calls | Measure::CallsPerDay => Measure::CallsPerDay,
        _ => return None,
    };
    let side_days = |weekend: bool| -> i64 {
        apogee_analytics::WEEKDAYS
            .iter()
            .filter(|d| is_weekend(d) == weekend)
            .map(|d| days_on(d, period_of))
            .sum()
    };
    let side_totals = |weekend: bool| {
        sum_totals(
            cur.groups
                .iter()
                .filter(|grp| is_weekend(&grp.key) == weekend)
                .map(|grp| &grp.totals),
        )
    };
    let (weekend_days, weekday_days) = (side_days(true), side_days(false));
    let (weekend, weekday) = (side_totals(true), side_totals(false));
    let on_weekends = value(per_day, &weekend, None, weekend_days * 86_400)?;
    let on_weekdays = value(per_day, &weekday, None, weekday_days * 86_400)?;
    let days = format!(
        "{} weekend day{}",
        count(weekend_days),
        if weekend_days == 1 { "" } else { "s" }
    );
    Some(match per_day {
        Measure::CallsPerDay => format!(
            "{} {} calls a day on weekends {period}, against {} a day on weekdays: {} over {days}",
            who.map_or("You made".to_string(), |w| format!("{w} made")),
            on_weekends.text(),
            on_weekdays.text(),
            count(weekend.calls),
        ),
        _ => format!(
            "{} {} a day on weekends {period}, against {} a day on weekdays: {} over {days}",
            who.map_or("You spent".to_string(), |w| format!("{w} cost")),
            on_weekends.text(),
            on_weekdays.text(),
            weekend.cost.display_usd(),
        ),
    })
}

/// "Your 32 users spent $17.86 each on average …": an additive measure's total over the
/// groups that name the dimension, divided by their number (usage without it is said apart,
/// not counted). `None` when no group names it, or the measure does not add up.
fn average_lead(
    m: Measure,
    g: &Grouping,
    who: Option<&str>,
    cur: &Measured,
    period: &str,
) -> Option<String> {
    let (named, unnamed): (Vec<&Group>, Vec<&Group>) = cur
        .groups
        .iter()
        .partition(|grp| grp.key != apogee_analytics::NONE_KEY);
    let k = i64::try_from(named.len()).ok().filter(|k| *k > 0)?;
    let total = sum_totals(named.iter().map(|grp| &grp.totals));
    let average = match value(m, &total, None, cur.seconds)? {
        Value::Usd(n) => Value::Usd(Nanos(n.0 / i128::from(k))),
        Value::Count(c) => Value::Count((c as f64 / k as f64).round() as i64),
        _ => return None,
    };
    let what = match m {
        Measure::Spend => format!("spent {} each", average.text()),
        Measure::Calls => format!("made {} calls each", average.text()),
        Measure::InputTokens => format!("sent {} input tokens each", average.text()),
        Measure::OutputTokens => format!("received {} output tokens each", average.text()),
        Measure::TotalTokens => format!("used {} tokens each", average.text()),
        Measure::Errors => format!("had {} failed calls each", average.text()),
        _ => return None,
    };
    let dims = dimension_noun(g, k != 1);
    let subject = match who {
        Some(w) => format!("{} {k} {dims}", possessive(w)),
        None => format!("Your {k} {dims}"),
    };
    let total_text = value(m, &total, None, cur.seconds).map_or("–".into(), Value::text);
    let mut lead = format!("{subject} {what} on average {period}: {total_text} over {k} {dims}");
    let without = sum_totals(unnamed.iter().map(|grp| &grp.totals));
    if without.calls > 0 {
        lead.push_str(&format!(
            "; usage without a {} ({}) is not counted",
            dimension_noun(g, false),
            value(m, &without, None, cur.seconds).map_or("–".into(), Value::text)
        ));
    }
    lead.push('.');
    Some(lead)
}

pub(crate) fn sum_totals<'a>(it: impl Iterator<Item = &'a UsageTotals>) -> UsageTotals {
    it.fold(UsageTotals::default(), |mut a, t| {
        a.add(t);
        a
    })
}

fn breakdown(
    doc: &mut Doc,
    plan: &QuestionPlan,
    g: &Grouping,
    who: Option<&str>,
    cur: &Measured,
    period: &str,
    year: i32,
) -> (String, Json) {
    let m = plan.measure();
    let cols = Columns::of(plan, cur.seconds);
    let rows = ranked(&cur.groups, m, Order::Highest, |_| cur.seconds);
    let n = cur.groups.len();
    if let Some(t) = plan.threshold
        && m == t.measure()
    {
        return past_threshold(doc, cols, t, g, who, cur, &rows, period, year);
    }
    if plan.average_per_group
        && let Some(lead) = average_lead(m, g, who, cur, period)
    {
        group_table(doc, cols, g, &rows, Some(&cur.totals), year);
        return (sentence_start(&lead), ranking_chart(m, g, &rows, year));
    }
    let mut lead = measure_clause(m, who, cur, period);
    // Two side by side ("compare gpt-4o and claude-sonnet-4 cost per call"): a ratio or a
    // latency leads with the one against the other; the slice's own figure follows.
    if let [(top, v), (low, lv)] = rows.as_slice()
        && !additive(m)
        && lv.num() > 0.0
    {
        doc.line(&format!("{}.", sentence_start(&lead)));
        let lead = format!(
            "{} {} was {} {period}, {} {} {}.",
            possessive(&key_text(g, &top.key, year)),
            noun(m),
            v.text(),
            times(v.num() / lv.num()),
            possessive(&key_text(g, &low.key, year)),
            lv.text()
        );
        // A table right under a paragraph would be read as part of it.
        doc.blank();
        group_table(doc, cols, g, &rows, Some(&cur.totals), year);
        return (sentence_start(&lead), ranking_chart(m, g, &rows, year));
    }
    match rows.first() {
        // One group: "highest X, lowest X" or "the largest of 1" would say nothing.
        Some((top, _)) if n == 1 => lead.push_str(&format!(
            ", all of it from one {}, {}",
            dimension_noun(g, false),
            key_text(g, &top.key, year)
        )),
        Some((top, v)) if additive(m) => lead.push_str(&format!(
            ", across {n} {}; the largest, {}, {} ({})",
            dimension_noun(g, n != 1),
            key_text(g, &top.key, year),
            v.text(),
            share_of(m, &top.totals, &cur.totals)
        )),
        Some((top, v)) => {
            let (low, lv) = rows.last().map_or((*top, *v), |(l, lv)| (*l, *lv));
            lead.push_str(&format!(
                "; by {}: highest {} at {}, lowest {} at {}",
                dimension_noun(g, false),
                key_text(g, &top.key, year),
                v.text(),
                key_text(g, &low.key, year),
                lv.text()
            ));
        }
        None => {}
    }
    lead.push('.');
    group_table(doc, cols, g, &rows, Some(&cur.totals), year);
    (sentence_start(&lead), ranking_chart(m, g, &rows, year))
}

fn series(
    doc: &mut Doc,
    plan: &QuestionPlan,
    g: &Grouping,
    who: Option<&str>,
    cur: &Measured,
    period: &str,
    year: i32,
) -> (String, Json) {
    let m = plan.measure();
    let mut lead = measure_clause(m, who, cur, period);
    // Each point's spend per day is over its own length (`group_seconds`): a day or a week
    // its own, an hour of the day the period's days, a weekday its days in the period.
    let points: Vec<(&Group, Value)> = cur
        .groups
        .iter()
        .filter_map(|grp| {
            let seconds = group_seconds(g, &grp.key, &plan.period, cur.seconds);
            value(m, &grp.totals, grp.latency.as_ref(), seconds).map(|v| (grp, v))
        })
        .collect();
    if plan.weekends
        && *g == Grouping::DayOfWeek
        && let Some(weekends) = weekend_lead(m, who, cur, &plan.period, period)
    {
        lead = weekends;
    } else if let Some((top, v)) = points
        .iter()
        .max_by(|a, b| a.1.num().total_cmp(&b.1.num()).then(b.0.key.cmp(&a.0.key)))
        && points.len() > 1
    {
        lead.push_str(&format!(
            "; the highest {} was {} at {}",
            dimension_noun(g, false),
            key_text(g, &top.key, year),
            v.text()
        ));
    }
    lead.push('.');
    // A long series lists its latest points (the chart shows them all), not its first.
    let earlier = points.len().saturating_sub(table_rows(g));
    group_table(
        doc,
        Columns::of(plan, cur.seconds),
        g,
        &points[earlier..],
        Some(&cur.totals),
        year,
    );
    if earlier > 0 {
        doc.blank();
        doc.line(&format!(
            "{} earlier {} not listed.",
            count(earlier as i64),
            dimension_noun(g, earlier != 1)
        ));
    }
    let chart = json!({
        "kind": "series",
        "title": format!("{} by {}", capitalise(noun(m)), dimension_noun(g, false)),
        "points": points.iter().map(|(grp, v)| json!({
            "key": grp.key,
            "label": chart_label(g, &grp.key, year),
            "value": v.num(),
            "display": v.text(),
        })).collect::<Vec<_>>(),
    });
    (sentence_start(&lead), chart)
}

fn days_in(p: &PlanPeriod, now_cap: Option<DateTime<Utc>>) -> f64 {
    let to = now_cap.map_or(p.to, |n| p.to.min(n.max(p.from)));
    ((to - p.from).num_seconds() as f64 / 86_400.0).max(0.0)
}

#[allow(clippy::too_many_arguments)]
fn compare(
    doc: &mut Doc,
    plan: &QuestionPlan,
    m: Measure,
    who: Option<&str>,
    cur: &Measured,
    prev: &Measured,
    cmp: &PlanPeriod,
    year: i32,
) -> (String, Json) {
    let period = when(&plan.period, year);
    let before = when(cmp, year);
    let now_v = value(m, &cur.totals, cur.latency.as_ref(), cur.seconds);
    let then_v = value(m, &prev.totals, prev.latency.as_ref(), prev.seconds);
    let mut lead = measure_clause(m, who, cur, &period);
    let change = match (now_v, then_v) {
        (Some(a), Some(b)) => match (a, b) {
            (Value::Rate(x), Value::Rate(y)) => format!(
                ", against {} {before} ({:+.1} points)",
                b.text(),
                (x - y) * 100.0
            ),
            _ if b.num() == 0.0 => format!(", against nothing {before}"),
            // Shown as nothing ("$0.00": less than a cent): a ratio to it means nothing.
            _ if !b.text().chars().any(|c| c.is_ascii_digit() && c != '0') => {
                format!(", against {} {before}", b.text())
            }
            // Ten times as much or more: a percentage in the thousands reads as noise.
            _ if a.num() / b.num() >= 10.0 => {
                let times = a.num() / b.num();
                let times = if times < 100.0 {
                    format!("{times:.1}")
                } else {
                    count(times.round() as i64)
                };
                format!(", {times} times the {} {before}", b.text())
            }
            _ => {
                let r = (a.num() - b.num()) / b.num();
                let dir = if r >= 0.0 { "up" } else { "down" };
                format!(", {dir} {} from {} {before}", percent(r.abs()), b.text())
            }
        },
        (_, None) => format!(", with nothing to compare {before}"),
        (None, Some(b)) => format!(", against {} {before}", b.text()),
    };
    lead.push_str(&change);
    lead.push('.');
    let lead = sentence_start(&lead);
    // Periods of different lengths ("this week so far" against last week) per day too.
    let (dn, dp) = (days_in(&plan.period, None), days_in(cmp, None));
    if additive(m)
        && (dn - dp).abs() > 0.5
        && dn > 0.0
        && dp > 0.0
        && let (Some(a), Some(b)) = (now_v, then_v)
    {
        let per_day = |v: Value, d: f64| match v {
            Value::Usd(n) => Nanos((n.0 as f64 / d).round() as i128).display_usd(),
            other => count((other.num() / d).round() as i64),
        };
        doc.line(&format!(
            "Per day that is {} against {} (the periods have {:.0} and {:.0} days).",
            per_day(a, dn),
            per_day(b, dp),
            dn,
            dp
        ));
    }
    // By group: what changed most.
    if let Some(g) = &plan.group_by {
        let mut keys: Vec<&str> = cur
            .groups
            .iter()
            .chain(&prev.groups)
            .map(|x| x.key.as_str())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let find = |groups: &[Group], k: &str| {
            groups
                .iter()
                .find(|x| x.key == k)
                .map(|x| (x.totals.clone(), x.latency.clone()))
        };
        let mut rows: Vec<(String, Option<Value>, Option<Value>, f64)> = keys
            .iter()
            .map(|k| {
                let a =
                    find(&cur.groups, k).and_then(|(t, l)| value(m, &t, l.as_ref(), cur.seconds));
                let b =
                    find(&prev.groups, k).and_then(|(t, l)| value(m, &t, l.as_ref(), prev.seconds));
                let d = a.map_or(0.0, Value::num) - b.map_or(0.0, Value::num);
                (k.to_string(), b, a, d)
            })
            .collect();
        rows.sort_by(|x, y| y.3.abs().total_cmp(&x.3.abs()).then(x.0.cmp(&y.0)));
        if !rows.is_empty() {
            if !doc.out.is_empty() {
                doc.blank();
            }
            let header = [
                (dimension_noun(g, false), false),
                (dates_label(&cmp.period(), year), true),
                (dates_label(&plan.period.period(), year), true),
                ("change".to_string(), true),
            ];
            let header_refs: Vec<(&str, bool)> =
                header.iter().map(|(h, r)| (h.as_str(), *r)).collect();
            let table: Vec<Vec<String>> = rows
                .iter()
                .take(MAX_ROWS)
                .map(|(k, b, a, d)| {
                    let delta = match (a.or(*b), m) {
                        (Some(Value::Usd(_)), _) => signed_usd(Nanos::from_usd(*d)),
                        (Some(Value::Rate(_)), _) => format!("{:+.1} pts", d * 100.0),
                        _ => format!("{:+}", d.round() as i64),
                    };
                    vec![
                        key_text(g, k, year),
                        b.map_or("–".into(), Value::text),
                        a.map_or("–".into(), Value::text),
                        delta,
                    ]
                })
                .collect();
            doc.table(&header_refs, &table);
        }
    }
    let bar = |label: String, v: Option<Value>| json!({ "label": label, "value": v.map_or(0.0, Value::num), "display": v.map_or("–".into(), Value::text) });
    let chart = json!({
        "kind": "before_after",
        "title": capitalise(noun(m)),
        "bars": [
            bar(dates_label(&cmp.period(), year), then_v),
            bar(dates_label(&plan.period.period(), year), now_v),
        ],
    });
    (lead, chart)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Intent, Rank};
    use apogee_analytics::{Filter, Period};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()
    }

    fn totals(calls: i64, usd: f64) -> UsageTotals {
        UsageTotals {
            calls,
            input_tokens: calls * 1000,
            output_tokens: calls * 100,
            cached_input_tokens: 0,
            cost: Nanos::from_usd(usd),
            unpriced_calls: 0,
            unpriced_tokens: 0,
            error_calls: calls / 100,
        }
    }

    fn plan(scope: Scope) -> QuestionPlan {
        let mut p = QuestionPlan::new(
            Intent::Figure,
            PlanPeriod::new(Period::last_days(now(), 7), "in the last 7 days"),
        );
        p.measures = vec![Measure::Spend];
        p.scope = scope;
        p
    }

    /// A week's figure made of `groups`, its totals their sum.
    fn grouped(groups: Vec<Group>) -> FigureData {
        FigureData {
            current: Measured {
                totals: sum_totals(groups.iter().map(|g| &g.totals)),
                latency: None,
                groups,
                seconds: 7 * 86_400,
            },
            ..FigureData::default()
        }
    }

    fn group(key: &str, calls: i64, usd: f64) -> Group {
        Group {
            key: key.into(),
            totals: totals(calls, usd),
            latency: None,
        }
    }

    #[test]
    fn the_first_sentence_is_the_figure_with_its_scope_and_share() {
        let p = plan(Scope::all().and(Filter::is(Dimension::Model, "gpt-4o")));
        let data = FigureData {
            current: Measured {
                totals: totals(4321, 57.37),
                ..Measured::default()
            },
            org: Some(totals(20_000, 244.13)),
            ..FigureData::default()
        };
        let a = render(&p, &data, now());
        assert_eq!(
            a.lead,
            "gpt-4o cost $57.37 in the last 7 days (Nov 23–29), 23.5% of spend."
        );
        assert!(a.markdown.starts_with(&a.lead));
    }

    /// "Why is doc-summarizer so expensive?": the share of spend beside the share of calls,
    /// then the cost per call taken apart into tokens per call and price per token.
    #[test]
    fn what_drives_a_slices_spend_is_its_cost_per_call_taken_apart() {
        let usage = |calls, usd, input, output| UsageTotals {
            calls,
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: 0,
            cost: Nanos::from_usd(usd),
            unpriced_calls: 0,
            unpriced_tokens: 0,
            error_calls: 0,
        };
        let org = usage(200_000, 1_000.0, 250_000_000, 14_000_000);
        let mut p = plan(Scope::all().and(Filter::is(Dimension::Feature, "doc-summarizer")));
        p.drivers = true;
        let render_for = |p: &QuestionPlan, t: UsageTotals| {
            let data = FigureData {
                current: Measured {
                    totals: t,
                    ..Measured::default()
                },
                org: Some(org.clone()),
                ..FigureData::default()
            };
            render(p, &data, now())
        };
        // 4,100 tokens a call at $12.20 per million: 3.1× the tokens, 3.2× the price.
        let a = render_for(&p, usage(10_000, 500.0, 40_000_000, 1_000_000));
        assert_eq!(
            a.lead,
            "doc-summarizer cost $500.00 in the last 7 days (Nov 23–29), 50.0% of spend from 5.0% of calls."
        );
        assert!(
            a.markdown.contains(
                "doc-summarizer's calls cost $0.05 each on average, 10.0× the org's average ($0.005): \
                 they use 4,100 tokens each against 1,320 (3.1×), billed at $12.20 per million tokens \
                 against $3.79 (3.2×). Most of the difference is the price per token, that is the \
                 models it calls."
            ),
            "{}",
            a.markdown
        );
        // Long calls at the org's price per token.
        let a = render_for(&p, usage(10_000, 155.30, 40_000_000, 1_000_000));
        assert!(
            a.markdown
                .contains("against 1,320 (3.1×), billed at $3.79 per million tokens against $3.79 (100.0%). Most of the difference is the length of its calls."),
            "{}",
            a.markdown
        );
        // Cheaper per call than the org: its spend is its number of calls.
        let a = render_for(&p, usage(100_000, 100.0, 100_000_000, 10_000_000));
        assert!(
            a.markdown.contains(
                "doc-summarizer's calls cost $0.001 each on average, 20.0% of the org's average ($0.005): \
                 they use 1,100 tokens each against 1,320 (83.3%), billed at $0.909 per million tokens \
                 against $3.79 (24.0%)."
            ) && a
                .markdown
                .contains("A call costs less than average: the spend comes from the number of calls."),
            "{}",
            a.markdown
        );
        // Without the flag, the figure alone.
        p.drivers = false;
        assert!(
            !render_for(&p, usage(10_000, 500.0, 40_000_000, 1_000_000))
                .markdown
                .contains("calls cost")
        );
    }

    /// Each measure asked for is a column of the table, after the headline's share.
    #[test]
    fn a_breakdown_shows_every_measure_asked_for() {
        let mut p = plan(Scope::all());
        p.measures = vec![Measure::Spend, Measure::CostPerCall, Measure::TokensPerCall];
        p.group_by = Some(Grouping::By(Dimension::Model));
        let data = FigureData {
            current: Measured {
                totals: totals(3_000, 40.0),
                groups: vec![
                    group("gpt-4o", 1_000, 30.0),
                    group("gpt-4o-mini", 2_000, 10.0),
                ],
                ..Measured::default()
            },
            ..FigureData::default()
        };
        let a = render(&p, &data, now());
        assert!(
            a.markdown.contains(
                "| model | spend | share | cost per call | tokens per call | calls |\n\
                 | --- | ---: | ---: | ---: | ---: | ---: |\n\
                 | gpt-4o | $30.00 | 75.0% | $0.03 | 1,100 | 1,000 |\n\
                 | gpt-4o-mini | $10.00 | 25.0% | $0.005 | 1,100 | 2,000 |"
            ),
            "{}",
            a.markdown
        );
    }

    /// A breakdown with one group says so, for a sum and for a ratio: "across 1 model; the
    /// largest…" or "highest X at $a, lowest X at $a" would say nothing.
    #[test]
    fn a_breakdown_of_one_group_names_it_once() {
        let scoped = Scope::all().and(Filter::is(Dimension::Feature, "doc-summarizer"));
        let cases = [
            (
                Measure::Spend,
                "doc-summarizer cost $523.11 in the last 7 days (Nov 23–29), all of it from one model, claude-sonnet-4.",
            ),
            (
                Measure::CostPerCall,
                "doc-summarizer cost $0.0429 per call on average in the last 7 days (Nov 23–29): $523.11 over 12,191 priced calls, all of it from one model, claude-sonnet-4.",
            ),
        ];
        for (m, lead) in cases {
            let mut p = plan(scoped.clone());
            p.measures = vec![m];
            p.group_by = Some(Grouping::By(Dimension::Model));
            let data = FigureData {
                current: Measured {
                    totals: totals(12_191, 523.11),
                    groups: vec![group("claude-sonnet-4", 12_191, 523.11)],
                    ..Measured::default()
                },
                ..FigureData::default()
            };
            assert_eq!(render(&p, &data, now()).lead, lead, "{m:?}");
        }
    }

    /// The prompt cache's reads and the tokens per call: each measure's first sentence, and
    /// one with nothing to divide by.
    #[test]
    fn cache_reads_and_tokens_per_call_lead_with_their_figure() {
        let scoped = Scope::all().and(Filter::is(Dimension::Feature, "doc-summarizer"));
        let mut cached = totals(4_000, 57.37);
        cached.cached_input_tokens = 1_000_000;
        let cases = [
            (
                Measure::CacheReadShare,
                cached.clone(),
                "25.0% of doc-summarizer's input tokens were read from cache in the last 7 days (Nov 23–29): 1,000,000 of 4,000,000.",
            ),
            (
                Measure::CachedInputTokens,
                cached.clone(),
                "doc-summarizer read 1,000,000 input tokens from cache in the last 7 days (Nov 23–29), 25.0% of 4,000,000 input tokens.",
            ),
            (
                Measure::TokensPerCall,
                cached,
                "doc-summarizer used 1,100 tokens per call on average in the last 7 days (Nov 23–29): 1,000 input and 100 output over 4,000 calls.",
            ),
            (
                Measure::CacheReadShare,
                UsageTotals {
                    input_tokens: 0,
                    ..totals(0, 0.0)
                },
                "No usage matches doc-summarizer in the last 7 days (Nov 23–29).",
            ),
        ];
        for (m, t, lead) in cases {
            let mut p = plan(scoped.clone());
            p.measures = vec![m];
            let data = FigureData {
                current: Measured {
                    totals: t,
                    ..Measured::default()
                },
                ..FigureData::default()
            };
            assert_eq!(render(&p, &data, now()).lead, lead, "{m:?}");
        }
    }

    #[test]
    fn spend_per_day_is_over_the_days_of_the_period() {
        let mut p = plan(Scope::all());
        p.measures = vec![Measure::SpendPerDay];
        let data = |seconds| FigureData {
            current: Measured {
                totals: totals(4321, 57.40),
                seconds,
                ..Measured::default()
            },
            ..FigureData::default()
        };
        assert_eq!(
            render(&p, &data(7 * 86_400), now()).lead,
            "You spent $8.20 a day on average in the last 7 days (Nov 23–29): $57.40 over 7 days."
        );
        assert_eq!(
            render(&p, &data(36 * 3_600), now()).lead,
            "You spent $38.27 a day on average in the last 7 days (Nov 23–29): $57.40 over 1.5 days."
        );
        // Ranked per day, the order is the spend's.
        p.group_by = Some(Grouping::By(Dimension::Feature));
        p.rank = Some(Rank {
            order: Order::Highest,
            top: Some(1),
        });
        let mut d = data(7 * 86_400);
        d.current.groups = vec![
            group("support-bot", 100, 14.0),
            group("doc-summarizer", 50, 35.0),
        ];
        assert!(
            render(&p, &d, now()).lead.starts_with(
                "doc-summarizer spent the most per day in the last 7 days (Nov 23–29): $5.00"
            ),
            "{}",
            render(&p, &d, now()).lead
        );
    }

    #[test]
    fn a_ranking_names_the_top_and_its_share() {
        let mut p = plan(Scope::all().and(Filter::is(Dimension::Model, "gpt-4o")));
        p.group_by = Some(Grouping::By(Dimension::Feature));
        p.rank = Some(Rank {
            order: Order::Highest,
            top: Some(1),
        });
        let data = grouped(vec![
            group("support-bot", 200, 80.0),
            group("ticket-tagging", 100, 20.0),
        ]);
        let a = render(&p, &data, now());
        assert_eq!(
            a.lead,
            "support-bot spent the most on gpt-4o in the last 7 days (Nov 23–29): $80.00, 80.0% of gpt-4o's $100.00."
        );
        assert!(
            a.markdown
                .contains("| support-bot | $80.00 | 80.0% | 200 |"),
            "{}",
            a.markdown
        );
        assert_eq!(a.chart["kind"], "ranking");
    }

    #[test]
    fn a_ranking_of_usage_without_the_dimension_says_so_with_its_scope() {
        let mut p = plan(Scope::all().and(Filter::is(Dimension::Feature, "doc-summarizer")));
        p.group_by = Some(Grouping::By(Dimension::User));
        p.rank = Some(Rank {
            order: Order::Highest,
            top: Some(1),
        });
        let data = grouped(vec![group(apogee_analytics::NONE_KEY, 1219, 52.68)]);
        let a = render(&p, &data, now());
        assert_eq!(
            a.lead,
            "No user has a spend within doc-summarizer in the last 7 days (Nov 23–29): its 1,219 calls carry no user."
        );
    }

    /// Two models named side by side: the one against the other leads, the slice follows.
    #[test]
    fn two_named_side_by_side_lead_with_their_ratio() {
        let mut p = plan(Scope::all().and(Filter {
            dimension: Dimension::Model,
            values: vec!["gpt-4o".into(), "gpt-4o-mini".into()],
            exclude: false,
        }));
        p.measures = vec![Measure::CostPerCall];
        p.group_by = Some(Grouping::By(Dimension::Model));
        let data = grouped(vec![
            group("gpt-4o", 1000, 25.0),
            group("gpt-4o-mini", 2000, 5.0),
        ]);
        let a = render(&p, &data, now());
        assert_eq!(
            a.lead,
            "gpt-4o's cost per call was $0.025 in the last 7 days (Nov 23–29), 10.0× gpt-4o-mini's $0.0025."
        );
        assert!(
            a.markdown.contains(
                "gpt-4o and gpt-4o-mini cost $0.01 per call on average in the last 7 days (Nov 23–29): $30.00 over 3,000 priced calls.\n\n| model |"
            ),
            "{}",
            a.markdown
        );
        // Spend adds up: its breakdown keeps the total first.
        p.measures = vec![Measure::Spend];
        assert!(
            render(&p, &data, now())
                .lead
                .starts_with("gpt-4o and gpt-4o-mini cost $30.00"),
            "{}",
            render(&p, &data, now()).lead
        );
    }

    #[test]
    fn cheapest_per_call_ranks_lowest_first() {
        let mut p = plan(Scope::all());
        p.measures = vec![Measure::CostPerCall];
        p.group_by = Some(Grouping::By(Dimension::Model));
        p.rank = Some(Rank {
            order: Order::Lowest,
            top: Some(1),
        });
        let data = grouped(vec![
            group("gpt-4o", 1000, 25.0),
            group("gpt-4o-mini", 2000, 5.0),
        ]);
        let a = render(&p, &data, now());
        assert_eq!(
            a.lead,
            "gpt-4o-mini was the cheapest model per call in the last 7 days (Nov 23–29): $0.0025."
        );
    }

    #[test]
    fn a_comparison_states_both_periods_and_the_change() {
        let mut p = plan(Scope::all());
        p.compare = Some(crate::question::period::previous_of(&p.period));
        let data = FigureData {
            current: Measured {
                totals: totals(100, 120.0),
                ..Measured::default()
            },
            previous: Some(Measured {
                totals: totals(100, 100.0),
                ..Measured::default()
            }),
            ..FigureData::default()
        };
        let a = render(&p, &data, now());
        assert_eq!(
            a.lead,
            "You spent $120.00 in the last 7 days (Nov 23–29), up 20.0% from $100.00 the 7 days before (Nov 16–22)."
        );
        assert_eq!(a.chart["kind"], "before_after");
    }

    #[test]
    fn cost_per_token_is_said_per_million_with_its_unit_once() {
        let mut p = plan(Scope::all());
        p.measures = vec![Measure::CostPerMillionTokens];
        p.group_by = Some(Grouping::By(Dimension::Model));
        p.rank = Some(Rank {
            order: Order::Lowest,
            top: Some(1),
        });
        // 1,100 tokens a call: $25 over 1.1M tokens, $5 over 2.2M.
        let data = grouped(vec![
            group("gpt-4o", 1000, 25.0),
            group("gpt-4o-mini", 2000, 5.0),
        ]);
        let a = render(&p, &data, now());
        assert_eq!(
            a.lead,
            "gpt-4o-mini was the cheapest model per 1M tokens in the last 7 days (Nov 23–29): $2.27."
        );
        assert!(a.markdown.contains("| gpt-4o | $22.73 |"), "{}", a.markdown);

        let mut p = plan(Scope::all().and(Filter::is(Dimension::Model, "gpt-4o")));
        p.measures = vec![Measure::CostPerMillionTokens];
        let data = FigureData {
            current: Measured {
                totals: totals(1000, 25.0),
                ..Measured::default()
            },
            ..FigureData::default()
        };
        assert_eq!(
            render(&p, &data, now()).lead,
            "gpt-4o cost $22.73 per 1M tokens on average in the last 7 days (Nov 23–29): $25.00 over 1,100,000 priced tokens."
        );
    }

    #[test]
    fn an_average_per_group_leads_and_leaves_out_usage_without_the_dimension() {
        let mut p = plan(Scope::all());
        p.group_by = Some(Grouping::By(Dimension::User));
        p.average_per_group = true;
        let data = grouped(vec![
            group("alice", 300, 30.0),
            group("bob", 100, 10.0),
            group(apogee_analytics::NONE_KEY, 50, 5.0),
        ]);
        let a = render(&p, &data, now());
        assert_eq!(
            a.lead,
            "Your 2 users spent $20.00 each on average in the last 7 days (Nov 23–29): $40.00 over 2 users; usage without a user ($5.00) is not counted."
        );
        assert!(a.markdown.contains("| alice |"), "{}", a.markdown);
        p.measures = vec![Measure::Calls];
        assert_eq!(
            render(&p, &data, now()).lead,
            "Your 2 users made 200 calls each on average in the last 7 days (Nov 23–29): 400 over 2 users; usage without a user (50) is not counted."
        );
    }

    #[test]
    fn groups_past_an_amount_are_named_and_alone_in_the_table() {
        let mut p = plan(Scope::all());
        p.group_by = Some(Grouping::By(Dimension::User));
        p.threshold = Some(Threshold {
            above: true,
            amount: ThresholdAmount::Spend { cents: 5_000 },
        });
        let data = grouped(vec![
            group("alice", 300, 90.0),
            group("bob", 100, 50.0),
            group("carol", 100, 12.0),
            group(apogee_analytics::NONE_KEY, 60, 8.0),
        ]);
        let a = render(&p, &data, now());
        assert_eq!(
            a.lead,
            "1 user spent more than $50.00 in the last 7 days (Nov 23–29): alice ($90.00); $90.00 together, 56.2% of spend."
        );
        assert!(a.markdown.contains("| alice |"), "{}", a.markdown);
        assert!(!a.markdown.contains("| bob |"), "{}", a.markdown);
        p.threshold = Some(Threshold {
            above: false,
            amount: ThresholdAmount::Spend { cents: 1_000 },
        });
        assert_eq!(
            render(&p, &data, now()).lead,
            "No user spent less than $10.00 in the last 7 days (Nov 23–29); the least was carol at $12.00."
        );
        // Calls: counted, and compared, as calls.
        p.measures = vec![Measure::Calls];
        p.threshold = Some(Threshold {
            above: true,
            amount: ThresholdAmount::Calls { calls: 100 },
        });
        let a = render(&p, &data, now());
        assert_eq!(
            a.lead,
            "1 user made more than 100 calls in the last 7 days (Nov 23–29): alice (300); 300 together, 53.6% of calls."
        );
        assert!(!a.markdown.contains("| bob |"), "{}", a.markdown);
        p.threshold = Some(Threshold {
            above: false,
            amount: ThresholdAmount::Calls { calls: 1 },
        });
        assert_eq!(
            render(&p, &data, now()).lead,
            "No user made fewer than 1 call in the last 7 days (Nov 23–29); the least was carol at 100."
        );
    }

    #[test]
    fn a_series_of_zero_days_names_no_highest_day() {
        let p = plan(Scope::all().and(Filter::is(Dimension::Feature, "internal-eval")));
        let day = |d: u32, usd: f64| DaySpend {
            day: NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
            cost: Nanos::from_usd(usd),
            calls: 10,
        };
        let data = |series: Vec<DaySpend>| FigureData {
            current: Measured {
                totals: totals(20, series.iter().map(|d| d.cost.usd()).sum()),
                seconds: 7 * 86_400,
                ..Measured::default()
            },
            series,
            ..FigureData::default()
        };
        let zero = render(&p, &data(vec![day(23, 0.0), day(24, 0.0)]), now());
        assert!(!zero.markdown.contains("highest day"), "{}", zero.markdown);
        let some = render(&p, &data(vec![day(23, 0.0), day(24, 2.0)]), now());
        assert!(
            some.markdown
                .contains("The highest day was Nov 24 at $2.00."),
            "{}",
            some.markdown
        );
    }

    #[test]
    fn the_busiest_day_says_its_calls_with_their_unit() {
        let mut p = plan(Scope::all());
        p.measures = vec![Measure::Calls];
        p.group_by = Some(Grouping::Day);
        p.rank = Some(Rank {
            order: Order::Highest,
            top: Some(1),
        });
        let data = grouped(vec![
            group("2026-11-23", 2000, 20.0),
            group("2026-11-24", 1000, 10.0),
        ]);
        assert_eq!(
            render(&p, &data, now()).lead,
            "Nov 23 was the busiest day in the last 7 days (Nov 23–29): 2,000 calls, 66.7% of all calls (3,000)."
        );
    }

    #[test]
    fn the_hours_of_the_day_are_named_by_the_hour_they_span() {
        let mut p = plan(Scope::all());
        p.group_by = Some(Grouping::HourOfDay);
        p.rank = Some(Rank {
            order: Order::Highest,
            top: Some(1),
        });
        let data = grouped(vec![
            group("09:00", 300, 21.0),
            group("13:00", 500, 49.0),
            group("23:00", 200, 0.0),
        ]);
        assert_eq!(
            render(&p, &data, now()).lead,
            "13:00–14:00 UTC was the most expensive hour of the day in the last 7 days (Nov 23–29): $49.00, 70.0% of all spend ($70.00)."
        );
        // As a series: each hour's spend per day is over the period's 7 days, not over one.
        p.rank = None;
        let a = render(&p, &data, now());
        assert!(
            a.lead
                .ends_with("the highest hour of the day was 13:00–14:00 UTC at $49.00."),
            "{}",
            a.lead
        );
        assert!(
            a.markdown
                .contains("| 13:00–14:00 UTC | $49.00 | 70.0% | 500 |"),
            "{}",
            a.markdown
        );
        assert_eq!(a.chart["title"], "Spend by hour of the day");
        assert_eq!(a.chart["points"][1]["label"], "13:00");
        // All 24 hours are listed, where a ranking of names stops at 20.
        let day = grouped(
            (0..24)
                .map(|h| group(&format!("{h:02}:00"), 10, 1.0))
                .collect(),
        );
        let all = render(&p, &day, now()).markdown;
        assert!(
            all.contains("| 23:00–24:00 UTC |") && !all.contains("not listed"),
            "{all}"
        );
        // A month of days is listed whole; a longer series lists its latest days.
        p.group_by = Some(Grouping::Day);
        p.measures = vec![Measure::Spend];
        let days = |n: u32| {
            grouped(
                (0..n)
                    .map(|i| {
                        let d = NaiveDate::from_ymd_opt(2026, 8, 1).unwrap()
                            + chrono::Duration::days(i64::from(i));
                        group(&d.to_string(), 10, 1.0)
                    })
                    .collect(),
            )
        };
        let month = render(&p, &days(31), now()).markdown;
        assert!(
            month.contains("| Aug 31 |") && !month.contains("not listed"),
            "{month}"
        );
        let quarter = render(&p, &days(40), now()).markdown;
        assert!(
            quarter.contains("| Sep 9 |")
                && !quarter.contains("| Aug 9 |")
                && quarter.contains("9 earlier days not listed."),
            "{quarter}"
        );
        p.group_by = Some(Grouping::HourOfDay);
        p.measures = vec![Measure::SpendPerDay];
        let per_day = render(&p, &data, now());
        assert!(
            per_day.markdown.contains("| 13:00–14:00 UTC | $7.00 |"),
            "{}",
            per_day.markdown
        );
    }

    #[test]
    fn the_days_of_the_week_are_named_and_a_day_is_over_its_own_days() {
        let mut p = plan(Scope::all());
        p.group_by = Some(Grouping::DayOfWeek);
        p.rank = Some(Rank {
            order: Order::Highest,
            top: Some(1),
        });
        p.measures = vec![Measure::Calls];
        let data = grouped(vec![
            group("monday", 300, 21.0),
            group("tuesday", 500, 49.0),
            group("sunday", 200, 4.0),
        ]);
        assert_eq!(
            render(&p, &data, now()).lead,
            "Tuesday was the busiest day of the week in the last 7 days (Nov 23–29): 500 calls, 50.0% of all calls (1,000)."
        );
        // Nov 1–30: five Sundays and Mondays, four Tuesdays; the spend per day of each weekday
        // is over its own days.
        p.rank = None;
        p.measures = vec![Measure::SpendPerDay];
        p.period = PlanPeriod::new(
            Period::new(
                Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
            ),
            "in November",
        );
        let a = render(&p, &data, now());
        for row in [
            "| Monday | $4.20 |",
            "| Tuesday | $12.25 |",
            "| Sunday | $0.80 |",
        ] {
            assert!(a.markdown.contains(row), "{row}: {}", a.markdown);
        }
        assert_eq!(a.chart["points"][0]["label"], "Mon");
        // Ranked by calls per day: Sunday's 200 over 5 days is the fewest.
        p.measures = vec![Measure::CallsPerDay];
        p.rank = Some(Rank {
            order: Order::Lowest,
            top: Some(1),
        });
        assert_eq!(
            render(&p, &data, now()).lead,
            "Sunday was the quietest day of the week in November (Nov 1–30): 40 calls a day."
        );
    }

    #[test]
    fn weekends_are_summed_apart_per_day_against_weekdays() {
        let mut p = plan(Scope::all().and(Filter::is(Dimension::Feature, "batch-report")));
        p.group_by = Some(Grouping::DayOfWeek);
        p.weekends = true;
        p.measures = vec![Measure::SpendPerDay];
        // Nov 1–30: 9 weekend days (five Sundays, four Saturdays), 21 weekdays.
        p.period = PlanPeriod::new(
            Period::new(
                Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
            ),
            "in November",
        );
        let data = grouped(vec![
            group("monday", 300, 21.0),
            group("tuesday", 500, 42.0),
            group("saturday", 100, 36.0),
            group("sunday", 200, 54.0),
        ]);
        let a = render(&p, &data, now());
        assert_eq!(
            a.lead,
            "batch-report cost $10.00 a day on weekends in November (Nov 1–30), against $3.00 a day on weekdays: $90.00 over 9 weekend days."
        );
        assert!(
            a.markdown.contains("| Saturday | $9.00 |"),
            "{}",
            a.markdown
        );
        p.measures = vec![Measure::CallsPerDay];
        p.scope = Scope::all();
        assert_eq!(
            render(&p, &data, now()).lead,
            "You made 33 calls a day on weekends in November (Nov 1–30), against 38 a day on weekdays: 300 over 9 weekend days."
        );
    }

    #[test]
    fn a_change_of_ten_times_or_more_is_said_in_times() {
        let mut p = plan(Scope::all());
        p.compare = Some(crate::question::period::previous_of(&p.period));
        let leads: Vec<String> = [(1_100.89, 0.23), (95.0, 5.0), (99.0, 10.0)]
            .into_iter()
            .map(|(now_usd, then_usd)| {
                let data = FigureData {
                    current: Measured {
                        totals: totals(100, now_usd),
                        ..Measured::default()
                    },
                    previous: Some(Measured {
                        totals: totals(100, then_usd),
                        ..Measured::default()
                    }),
                    ..FigureData::default()
                };
                render(&p, &data, now()).lead
            })
            .collect();
        assert_eq!(
            leads,
            [
                "You spent $1,100.89 in the last 7 days (Nov 23–29), 4,786 times the $0.23 the 7 days before (Nov 16–22).",
                "You spent $95.00 in the last 7 days (Nov 23–29), 19.0 times the $5.00 the 7 days before (Nov 16–22).",
                "You spent $99.00 in the last 7 days (Nov 23–29), up 890.0% from $10.00 the 7 days before (Nov 16–22).",
            ]
        );
    }

    #[test]
    fn a_change_from_less_than_a_cent_gives_no_ratio() {
        let mut p = plan(Scope::all());
        p.compare = Some(crate::question::period::previous_of(&p.period));
        let data = FigureData {
            current: Measured {
                totals: totals(100, 1_100.0),
                ..Measured::default()
            },
            previous: Some(Measured {
                totals: totals(1, 0.001),
                ..Measured::default()
            }),
            ..FigureData::default()
        };
        assert_eq!(
            render(&p, &data, now()).lead,
            "You spent $1,100.00 in the last 7 days (Nov 23–29), against $0.00 the 7 days before (Nov 16–22)."
        );
    }

    #[test]
    fn names_are_escaped_in_sentences_and_tables() {
        let mut p = plan(Scope::all());
        p.group_by = Some(Grouping::By(Dimension::Feature));
        let evil = "x |\n## Action required\n[verify](https://evil.example)";
        let data = grouped(vec![group(evil, 10, 10.0)]);
        let a = render(&p, &data, now());
        assert!(
            !a.markdown.lines().any(|l| l.starts_with('#')),
            "{}",
            a.markdown
        );
        assert!(!a.markdown.contains("[verify](https"), "{}", a.markdown);
    }
}
