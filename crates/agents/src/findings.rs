//! What a run found, step by step, and its JSON: the supervisor's `agent_completed` `data`
//! (what a UI charts and what tests compare with the REST API) and the tools' result `data`.
//! Money is given twice: exact integer `*_nanos` and `*_usd` floats for display.
//!
//! `data.plan` is the [`QuestionPlan`] the answer used; `data.answer` says how to show it
//! (`kind`: `figure`, `report`, `conversation`, `help` or `budget`; its first sentence `lead`; the
//! `chart` that supports it; follow-up `suggestions`). The older fields (`intent`, `period`,
//! `totals`, `by_model`, …) keep their meaning: `totals` are the totals of what was asked.

use apogee_analytics::forecast::MonthEnd;
use apogee_analytics::savings::what_if::Repriced;
use apogee_analytics::savings::{Recommendation, ShortLimits};
use apogee_analytics::trends::{DaySpend, Driver, Spike};
use apogee_analytics::{
    CostRow, Dimension, LatencyStats, Nanos, Period, RepeatProfile, UsageTotals,
};
use apogee_protocol::time::instant;
use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::answer::explain::spike_sentence;
use crate::answer::figure::{FigureData, Group, Measured};
use crate::answer::projection::{ForecastData, WhatIfData};
use crate::plan::{Intent, QuestionPlan, SavingKind};

/// The `data` agent's results for a full report, over the analysed period.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct UsageData {
    pub totals: UsageTotals,
    /// Spend by model as shown: names of one catalog model merged
    /// ([`apogee_analytics::model_rows`]).
    pub by_model: Vec<CostRow>,
    /// Spend by model as stored, one row per name sent: what drill-downs by model match.
    pub by_model_as_stored: Vec<CostRow>,
    pub by_feature: Vec<CostRow>,
    pub by_day: Vec<CostRow>,
    /// The month-end forecast as of the run, for analysis and spike questions.
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
    /// The period's repeated prompts, with the features repeating the most, for an answer
    /// about the response cache.
    pub repeats: RepeatProfile,
}

impl Savings {
    pub(crate) fn total_monthly(&self) -> Nanos {
        self.recommendations.iter().map(|r| r.monthly_saving).sum()
    }

    /// The recommendations worth a line in an answer: a saving that rounds to $0.00 a month is
    /// counted, not listed.
    pub(crate) fn listed(&self) -> Vec<&Recommendation> {
        self.recommendations
            .iter()
            .filter(|r| r.worth_listing())
            .collect()
    }

    /// The recommendations that move short calls to a cheaper model.
    pub(crate) fn right_sizing(&self) -> Vec<&Recommendation> {
        self.of_kind(SavingKind::RightSizeModel)
    }

    /// The recommendations of one kind, largest first.
    pub(crate) fn of_kind(&self, kind: SavingKind) -> Vec<&Recommendation> {
        self.recommendations
            .iter()
            .filter(|r| r.kind == kind.as_str())
            .collect()
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

/// How the answer is shown: the UI's part of `data`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shown {
    /// `figure`, `report`, `conversation`, `help`, `budget` or `llm` (the LLM planner's own words).
    pub kind: &'static str,
    pub lead: String,
    pub chart: Value,
    pub suggestions: Vec<String>,
}

/// Everything a run found so far; partial when it failed or was cancelled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Findings {
    pub plan: Option<QuestionPlan>,
    pub usage: Option<UsageData>,
    pub figure: Option<FigureData>,
    pub forecast: Option<ForecastData>,
    pub what_if: Option<WhatIfData>,
    pub spike: Option<Spike>,
    pub savings: Option<Savings>,
    pub coverage: Option<Coverage>,
    /// The budgets a budget command read or made, as `list_budgets` and `set_budget` show them.
    pub budgets: Option<Value>,
    pub shown: Option<Shown>,
    /// Which planner answered, when an LLM is configured: the supervisor's `data.planner`.
    pub planner: Option<Value>,
}

impl Findings {
    pub(crate) fn to_json(&self) -> Value {
        let p = self.plan.as_ref();
        let u = self.usage.as_ref();
        let rows = |f: fn(&UsageData) -> &Vec<CostRow>| u.map_or(json!([]), |u| rows_json(f(u)));
        let one = |d: Dimension| p.and_then(|p| p.only(&d)).map(str::to_string);
        let totals = u
            .map(|u| totals_json(&u.totals))
            .or_else(|| self.figure.as_ref().map(|f| totals_json(&f.current.totals)));
        let latency = self
            .figure
            .as_ref()
            .filter(|_| p.is_some_and(|p| p.measures.iter().any(|m| m.is_latency())))
            .map(|f| latency_json(&f.current));
        json!({
            "plan": p,
            "answer": self.shown.as_ref().map(|s| json!({
                "kind": s.kind,
                "lead": s.lead,
                "chart": s.chart,
                "suggestions": s.suggestions,
            })),
            "intent": p.map(|p| p.intent.as_str()),
            "period": p.map(|p| {
                let mut v = period_json(&p.period.period());
                v["description"] = json!(p.period.text);
                v
            }),
            "focus_day": p.and_then(|p| p.focus_day).map(|d| d.to_string()),
            "model": one(Dimension::Model),
            "feature": one(Dimension::Feature),
            "user": one(Dimension::User),
            "totals": totals,
            "by_model": rows(|u| &u.by_model),
            "by_feature": rows(|u| &u.by_feature),
            "by_day": rows(|u| &u.by_day),
            "by_user": rows(|u| &u.by_user),
            // A full report reads a named user's own row only; a figure is filtered by it.
            "user_filter_applied": p
                .filter(|p| p.only(&Dimension::User).is_some())
                .map(|p| !p.intent.is_full_report()),
            "forecast": u.and_then(|u| u.forecast.as_ref()).map(MonthEnd::to_json)
                .or_else(|| self.forecast.as_ref().map(forecast_json)),
            "figure": self.figure.as_ref().map(figure_json),
            "what_if": self.what_if.as_ref().map(what_if_json),
            "recommendations": self
                .savings
                .as_ref()
                .map_or(json!([]), |s| recommendations_json(&s.recommendations)),
            "total_monthly_saving_nanos": self.savings.as_ref().map(|s| s.total_monthly()),
            "total_monthly_saving_usd": self.savings.as_ref().map(|s| s.total_monthly().usd()),
            "spike": self.spike.as_ref().map(spike_json),
            "latency": latency,
            "coverage": self.coverage.as_ref().map(coverage_json),
            "budgets": self.budgets,
        })
    }
}

pub(crate) fn period_json(p: &Period) -> Value {
    json!({
        "from": instant(p.from),
        "to": instant(p.to),
        "label": p.label(),
    })
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

fn percentiles_json(v: &mut Value, p: Option<&LatencyStats>) {
    if let Some(p) = p {
        v["latency_samples"] = json!(p.latency_samples);
        v["mean_ms"] = json!(p.mean_ms);
        v["p50_ms"] = json!(p.p50_ms);
        v["p95_ms"] = json!(p.p95_ms);
        v["p99_ms"] = json!(p.p99_ms);
    }
}

fn group_json(g: &Group) -> Value {
    let mut v = totals_json(&g.totals);
    v["key"] = json!(g.key);
    percentiles_json(&mut v, g.latency.as_ref());
    v
}

fn measured_json(m: &Measured) -> Value {
    let mut totals = totals_json(&m.totals);
    percentiles_json(&mut totals, m.latency.as_ref());
    json!({
        "totals": totals,
        "rows": m.groups.iter().map(group_json).collect::<Vec<_>>(),
    })
}

pub(crate) fn figure_json(f: &FigureData) -> Value {
    json!({
        "current": measured_json(&f.current),
        "previous": f.previous.as_ref().map(measured_json),
        "org_totals": f.org.as_ref().map(totals_json),
        "series": f.series.iter().map(day_json).collect::<Vec<_>>(),
    })
}

fn day_json(d: &DaySpend) -> Value {
    json!({
        "day": d.day.to_string(),
        "calls": d.calls,
        "cost_nanos": d.cost.0,
        "cost_usd": d.cost.usd(),
    })
}

/// Latency of a measured slice as a table: the slice, then one object per group.
fn latency_json(m: &Measured) -> Value {
    let row = |key: Option<&str>, t: &UsageTotals, p: Option<&LatencyStats>| {
        let mut v = json!({
            "key": key,
            "calls": t.calls,
            "error_calls": t.error_calls,
            "error_rate": if t.calls > 0 { t.error_calls as f64 / t.calls as f64 } else { 0.0 },
        });
        percentiles_json(&mut v, p);
        v
    };
    let mut out = vec![row(None, &m.totals, m.latency.as_ref())];
    out.extend(
        m.groups
            .iter()
            .map(|g| row(Some(&g.key), &g.totals, g.latency.as_ref())),
    );
    Value::Array(out)
}

pub(crate) fn repriced_json(r: &Repriced) -> Value {
    json!({
        "model": r.model,
        "calls": r.calls,
        "now_nanos": r.now.0,
        "now_usd": r.now.usd(),
        "after_nanos": r.after.map(|n| n.0),
        "after_usd": r.after.map(Nanos::usd),
    })
}

pub(crate) fn what_if_json(w: &WhatIfData) -> Value {
    let priced: Vec<&Repriced> = w.lines.iter().filter(|l| l.after.is_some()).collect();
    let now: Nanos = priced.iter().map(|l| l.now).sum();
    let after: Nanos = priced.iter().filter_map(|l| l.after).sum();
    json!({
        "lines": w.lines.iter().map(repriced_json).collect::<Vec<_>>(),
        "now_nanos": now.0,
        "after_nanos": after.0,
        "saving_nanos": (now - after).0,
        "left_out_calls": w.left_out_calls,
    })
}

pub(crate) fn forecast_json(f: &ForecastData) -> Value {
    let fc = &f.forecast;
    json!({
        "month_end": instant(f.month_end),
        "spent_nanos": fc.spent.0,
        "spent_usd": fc.spent.usd(),
        "daily_run_rate_nanos": fc.daily_run_rate.0,
        "daily_run_rate_usd": fc.daily_run_rate.usd(),
        "remaining_days": fc.remaining_days,
        "projected_nanos": fc.projected.0,
        "projected_usd": fc.projected.usd(),
    })
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
        "summary": spike_sentence(s),
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

/// Whether a plan's answer is a full report (for `data.answer.kind`).
pub(crate) fn answer_kind(plan: &QuestionPlan) -> &'static str {
    match plan.intent {
        i if i.is_full_report() => "report",
        i if i.is_conversation() => "conversation",
        Intent::DataHelp => "help",
        Intent::Budget => "budget",
        _ => "figure",
    }
}
