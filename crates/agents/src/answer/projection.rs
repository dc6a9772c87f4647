//! Answers that project: the month-end forecast of a scope, and what-ifs (the scope's
//! traffic moved to another model, or sent through the Batch API, re-priced with the catalog
//! on the same tokens). First sentence first, then the table behind it.

use apogee_analytics::savings::what_if::{Repriced, monthly};
use apogee_analytics::trends::Forecast;
use apogee_analytics::{Dimension, Nanos, Scope};
use chrono::{DateTime, Datelike, Duration, Utc};
use serde_json::json;

use super::figure::{Answer, and_list, subject};
use super::markdown::{Doc, escape};
use super::when;
use crate::format::{count, percent};
use crate::plan::{QuestionPlan, WhatIf};
use crate::question::period::{dates_label, days};

/// A month-end forecast of the plan's scope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ForecastData {
    pub forecast: Forecast,
    /// The first instant of the next month.
    pub month_end: DateTime<Utc>,
    /// Complete days the run rate averages.
    pub recent_days: i64,
}

pub(crate) fn forecast(plan: &QuestionPlan, f: &ForecastData, now: DateTime<Utc>) -> Answer {
    let year = now.year();
    let last = (f.month_end - Duration::days(1)).date_naive();
    let by = dates_label(&days(last, f.month_end.date_naive()), year);
    let whose = subject(&plan.scope).map_or("Your".to_string(), |s| format!("{s}'s"));
    let fc = &f.forecast;
    let lead = format!(
        "{whose} spend is heading for {} by {by}: {} so far this month, then {:.1} days at {} a day (the average of the last {} complete days).",
        fc.projected.display_usd(),
        fc.spent.display_usd(),
        fc.remaining_days,
        fc.daily_run_rate.display_usd(),
        f.recent_days
    );
    let mut doc = Doc::default();
    doc.line(&lead);
    doc.blank();
    doc.line(
        "_A projection at the recent run rate, not a promise: a change in traffic changes it._",
    );
    Answer {
        markdown: doc.out,
        lead,
        chart: json!({
            "kind": "before_after",
            "title": "Spend this month",
            "bars": [
                {"label": "So far", "value": fc.spent.usd(), "display": fc.spent.display_usd()},
                {"label": format!("By {by}"), "value": fc.projected.usd(), "display": fc.projected.display_usd()},
            ],
        }),
        sections: Vec::new(),
    }
}

/// The scope's traffic re-priced, model by model.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct WhatIfData {
    pub lines: Vec<Repriced>,
    /// Calls of the scope that were not priced from the catalog (a cost sent by the client, or
    /// a model without a price): they cannot be re-priced and are left out.
    pub left_out_calls: i64,
}

pub(crate) fn what_if(plan: &QuestionPlan, w: &WhatIfData, now: DateTime<Utc>) -> Answer {
    let year = now.year();
    let period = when(&plan.period, year);
    let who = subject(&plan.scope).unwrap_or_else(|| "all your traffic".into());
    let (action, column) = match &plan.what_if {
        Some(WhatIf::MoveToModel { to }) => {
            // "Moving doc-summarizer from claude-sonnet-4 to …": the models moved away from
            // apart from the rest of the scope.
            let from = plan.scope.values_of(&Dimension::Model).map(|m| {
                let names: Vec<String> = m.iter().map(|v| escape(v)).collect();
                and_list(&names)
            });
            let rest = Scope {
                filters: plan
                    .scope
                    .filters
                    .iter()
                    .filter(|f| f.dimension != Dimension::Model || f.exclude)
                    .cloned()
                    .collect(),
            };
            let moving = match (subject(&rest), from) {
                (Some(r), Some(f)) => format!("{r} from {f}"),
                (None, Some(f)) => format!("all traffic from {f}"),
                (Some(r), None) => r,
                (None, None) => "all your traffic".into(),
            };
            (
                format!("Moving {moving} to {}", escape(to)),
                format!("on {}", escape(to)),
            )
        }
        _ => (
            format!("Sending {who} through the Batch API"),
            "through the Batch API".to_string(),
        ),
    };
    let priced: Vec<&Repriced> = w.lines.iter().filter(|l| l.after.is_some()).collect();
    let now_total: Nanos = priced.iter().map(|l| l.now).sum();
    let after_total: Nanos = priced.iter().filter_map(|l| l.after).sum();
    let mut doc = Doc::default();
    let lead = if priced.is_empty() {
        match &plan.what_if {
            Some(WhatIf::MoveToModel { to }) if w.lines.is_empty() => format!(
                "{} has no usage priced from the catalog {period}, so there is nothing to move to {}.",
                capitalise(&who),
                escape(to)
            ),
            Some(WhatIf::MoveToModel { to }) => format!(
                "I can't price {action} {period}: the catalog has no price for {}.",
                escape(to),
                action = action.to_lowercase()
            ),
            _ if w.lines.is_empty() => format!(
                "{} has no usage priced from the catalog {period}, so there is nothing to send through the Batch API.",
                capitalise(&who)
            ),
            _ => format!(
                "{} runs only on models without a Batch API price in the catalog {period}, so batching changes nothing I can price.",
                capitalise(&who)
            ),
        }
    } else {
        let diff = now_total - after_total;
        let pct = if now_total.0 > 0 {
            diff.0 as f64 / now_total.0 as f64
        } else {
            0.0
        };
        let per_month = monthly(Nanos(diff.0.abs()), plan.period.period().days());
        let change = if diff >= Nanos::ZERO {
            format!(
                "{} less ({}), about {} a month",
                diff.display_usd(),
                percent(pct),
                per_month.display_usd()
            )
        } else {
            format!(
                "{} more ({}), about {} a month",
                Nanos(-diff.0).display_usd(),
                percent(-pct),
                per_month.display_usd()
            )
        };
        let mut s = format!(
            "{action} would have cost {} instead of {} {period}: {change}.",
            after_total.display_usd(),
            now_total.display_usd()
        );
        if matches!(plan.what_if, Some(WhatIf::BatchApi)) {
            s.push_str(" Batch results arrive within 24 hours.");
        }
        s
    };
    if !w.lines.is_empty() {
        let header = [
            ("model", false),
            ("calls", true),
            ("at catalog prices", true),
            (column.as_str(), true),
        ];
        let rows: Vec<Vec<String>> = w
            .lines
            .iter()
            .map(|l| {
                vec![
                    escape(&l.model),
                    count(l.calls),
                    l.now.display_usd(),
                    l.after.map_or("no price".into(), Nanos::display_usd),
                ]
            })
            .collect();
        doc.table(&header, &rows);
        doc.blank();
        doc.line(
            "_Same tokens, priced with the catalog's base rates on both sides (batch calls stay batch calls); the quality of the other model's answers is not checked._",
        );
    }
    if w.left_out_calls > 0 {
        doc.blank();
        doc.line(&format!(
            "{} calls were not priced from the catalog (a cost sent with the call, or a model without a price) and are left out.",
            count(w.left_out_calls)
        ));
    }
    let markdown = if doc.out.is_empty() {
        format!("{lead}\n")
    } else {
        format!("{lead}\n\n{}", doc.out)
    };
    Answer {
        markdown,
        lead,
        chart: if priced.is_empty() {
            json!({ "kind": "none" })
        } else {
            json!({
                "kind": "before_after",
                "title": "Cost of the same traffic",
                "bars": [
                    {"label": "As it ran", "value": now_total.usd(), "display": now_total.display_usd()},
                    {"label": capitalise(&column), "value": after_total.usd(), "display": after_total.display_usd()},
                ],
            })
        },
        sections: Vec::new(),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Intent, PlanPeriod};
    use apogee_analytics::{Filter, Period};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    #[test]
    fn a_move_leads_with_both_costs_and_the_difference() {
        let mut plan = QuestionPlan::new(
            Intent::WhatIf,
            PlanPeriod::new(Period::last_days(now(), 30), "in the last 30 days"),
        );
        plan.scope = Scope::all()
            .and(Filter::is(Dimension::Model, "claude-sonnet-4"))
            .and(Filter::is(Dimension::Feature, "doc-summarizer"));
        plan.what_if = Some(WhatIf::MoveToModel {
            to: "claude-3-5-haiku".into(),
        });
        let w = WhatIfData {
            lines: vec![Repriced {
                model: "claude-sonnet-4".into(),
                calls: 1200,
                now: Nanos::from_usd(300.0),
                after: Some(Nanos::from_usd(80.0)),
            }],
            left_out_calls: 0,
        };
        let a = what_if(&plan, &w, now());
        assert_eq!(
            a.lead,
            "Moving doc-summarizer from claude-sonnet-4 to claude-3-5-haiku would have cost $80.00 instead of $300.00 in the last 30 days (Oct 27 – Nov 25): $220.00 less (73.3%), about $220.00 a month."
        );
        assert!(
            a.markdown
                .contains("| claude-sonnet-4 | 1,200 | $300.00 | $80.00 |")
        );
    }
}
