//! What a run found, step by step, and its JSON: the supervisor's `agent_completed` `data`
//! (what a UI charts and what tests compare with SQL) and the tools' result `data`. Money is
//! given twice: exact integer `*_nanos` and `*_usd` floats for display.

use apogee_analytics::forecast::MonthEnd;
use apogee_analytics::savings::{Recommendation, ShortLimits};
use apogee_analytics::{CostRow, LatencyRow, Nanos, Period, UsageTotals};
use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::spike::{Driver, Spike};
use crate::triage::Triage;

/// The `data` agent's results over the analysed period.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct UsageData {
    pub totals: UsageTotals,
    pub by_model: Vec<CostRow>,
    pub by_feature: Vec<CostRow>,
    pub by_day: Vec<CostRow>,
    /// The month-end forecast as of the run, for cost and spike questions.
    pub forecast: Option<MonthEnd>,
    /// Spend by user, read only when the question names a user (to report that user's row).
    pub by_user: Vec<CostRow>,
}

/// The `optimization` agent's results.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Savings {
    /// By monthly saving, largest first.
    pub recommendations: Vec<Recommendation>,
    pub limits: ShortLimits,
    /// Share of repeated prompts a response cache is assumed to serve.
    pub cache_hit_rate: f64,
}

impl Savings {
    pub(crate) fn total_monthly(&self) -> Nanos {
        self.recommendations.iter().map(|r| r.monthly_saving).sum()
    }
}

/// The `data_helper`'s look at whether the org has usage at all.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Coverage {
    pub window: Period,
    pub calls: i64,
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
}

/// Everything a run found so far; partial when it failed or was cancelled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Findings {
    pub triage: Option<Triage>,
    pub usage: Option<UsageData>,
    pub spike: Option<Spike>,
    pub savings: Option<Savings>,
    pub latency: Option<Vec<LatencyRow>>,
    pub coverage: Option<Coverage>,
}

impl Findings {
    pub(crate) fn to_json(&self) -> Value {
        let t = self.triage.as_ref();
        let u = self.usage.as_ref();
        let rows = |f: fn(&UsageData) -> &Vec<CostRow>| u.map_or(json!([]), |u| rows_json(f(u)));
        json!({
            "intent": t.map(|t| t.intent.as_str()),
            "period": t.map(triage_period_json),
            "focus_day": t.and_then(|t| t.focus_day).map(|d| d.to_string()),
            "model": t.and_then(|t| t.model.clone()),
            "feature": t.and_then(|t| t.feature.clone()),
            "user": t.and_then(|t| t.user.clone()),
            "totals": u.map(|u| totals_json(&u.totals)),
            "by_model": rows(|u| &u.by_model),
            "by_feature": rows(|u| &u.by_feature),
            "by_day": rows(|u| &u.by_day),
            "by_user": rows(|u| &u.by_user),
            // A named user is reported from the by-user breakdown; no other figure is
            // filtered by user.
            "user_filter_applied": t.and_then(|t| t.user.as_ref()).map(|_| false),
            "forecast": u.and_then(|u| u.forecast.as_ref()).map(MonthEnd::to_json),
            "recommendations": self
                .savings
                .as_ref()
                .map_or(json!([]), |s| recommendations_json(&s.recommendations)),
            "total_monthly_saving_nanos": self.savings.as_ref().map(|s| s.total_monthly()),
            "total_monthly_saving_usd": self.savings.as_ref().map(|s| s.total_monthly().usd()),
            "spike": self.spike.as_ref().map(spike_json),
            "latency": self.latency.as_deref().map(latency_json),
            "coverage": self.coverage.as_ref().map(coverage_json),
        })
    }
}

/// Latency by model as a chartable table: one object per model.
pub(crate) fn latency_json(rows: &[LatencyRow]) -> Value {
    rows.iter()
        .map(|r| {
            json!({
                "model": r.model,
                "calls": r.calls,
                "error_calls": r.error_calls,
                "error_rate": r.error_rate(),
                "latency_samples": r.latency_samples,
                "p50_ms": r.p50_ms,
                "p95_ms": r.p95_ms,
                "p99_ms": r.p99_ms,
            })
        })
        .collect()
}

pub(crate) fn period_json(p: &Period) -> Value {
    json!({
        "from": p.from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "to": p.to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "label": p.label(),
    })
}

fn triage_period_json(t: &Triage) -> Value {
    let mut v = period_json(&t.period);
    v["description"] = json!(t.period_text);
    v
}

pub(crate) fn triage_json(t: &Triage) -> Value {
    let mut v = json!({
        "intent": t.intent.as_str(),
        "period": triage_period_json(t),
    });
    if let Some(d) = t.focus_day {
        v["focus_day"] = json!(d.to_string());
    }
    if let Some(m) = &t.model {
        v["model"] = json!(m);
    }
    if let Some(u) = &t.user {
        v["user"] = json!(u);
    }
    if let Some(f) = &t.feature {
        v["feature"] = json!(f);
    }
    v
}

pub(crate) fn totals_json(t: &UsageTotals) -> Value {
    json!({
        "calls": t.calls,
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "cached_input_tokens": t.cached_input_tokens,
        "cost_nanos": t.cost,
        "cost_usd": t.cost.usd(),
        "unpriced_calls": t.unpriced_calls,
        "unpriced_tokens": t.unpriced_tokens,
        "error_calls": t.error_calls,
    })
}

pub(crate) fn rows_json(rows: &[CostRow]) -> Value {
    rows.iter()
        .map(|r| {
            json!({
                "key": r.key,
                "calls": r.calls,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "cost_nanos": r.cost,
                "cost_usd": r.cost.usd(),
                "unpriced_calls": r.unpriced_calls,
            })
        })
        .collect()
}

pub(crate) fn recommendation_json(r: &Recommendation) -> Value {
    r.to_json()
}

pub(crate) fn recommendations_json(recs: &[Recommendation]) -> Value {
    recs.iter().map(recommendation_json).collect()
}

fn driver_json(d: &Driver) -> Value {
    json!({
        "key": d.key,
        "day_cost_nanos": d.day_cost,
        "day_cost_usd": d.day_cost.usd(),
        "baseline_cost_nanos": d.baseline,
        "baseline_cost_usd": d.baseline.usd(),
        "increase_nanos": d.increase,
        "increase_usd": d.increase.usd(),
    })
}

pub(crate) fn spike_json(s: &Spike) -> Value {
    json!({
        "day": s.day.day.to_string(),
        "requested": s.requested,
        "is_spike": s.is_spike(),
        "day_cost_nanos": s.day.cost,
        "day_cost_usd": s.day.cost.usd(),
        "day_calls": s.day.calls,
        "median_cost_nanos": s.day.median,
        "median_cost_usd": s.day.median.usd(),
        "ratio": s.ratio(),
        "increase_nanos": s.increase(),
        "increase_usd": s.increase().usd(),
        "days_compared": s.day.days,
        "feature": s.feature.as_ref().map(driver_json),
        "model": s.model.as_ref().map(driver_json),
        "summary": s.sentence(),
    })
}

pub(crate) fn coverage_json(c: &Coverage) -> Value {
    json!({
        "window": period_json(&c.window),
        "calls": c.calls,
        "first_day": c.first_day.map(|d| d.to_string()),
        "last_day": c.last_day.map(|d| d.to_string()),
    })
}
