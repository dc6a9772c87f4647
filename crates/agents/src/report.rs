//! The markdown answer of an analysis run, rendered from the tools' results alone: every
//! figure in it is a query result or computed from one, so the report can be checked against
//! the data. Shaped by the intent: a savings question leads with savings, a spike question
//! with the spike's explanation.

use apogee_analytics::{CostRow, LatencyRow, Nanos};
use chrono::{Datelike, NaiveDate};

use crate::findings::{Savings, UsageData};
use crate::format::{count, share};
use crate::spike::{Spike, pick_day};
use crate::tools::trends::forecast_sentence;
use crate::triage::{Intent, Triage, weekday_name};

/// Features listed in the report; the rest are in the run's data.
pub(crate) const TOP_FEATURES: usize = 8;

/// What the report is made of.
pub(crate) struct ReportInput<'a> {
    pub triage: &'a Triage,
    pub usage: &'a UsageData,
    pub spike: Option<&'a Spike>,
    pub savings: Option<&'a Savings>,
    /// Latency and errors by model, for latency questions.
    pub latency: Option<&'a [LatencyRow]>,
}

/// The answer and the titles of its sections.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rendered {
    pub markdown: String,
    pub sections: Vec<String>,
}

struct Doc {
    out: String,
    sections: Vec<String>,
}

impl Doc {
    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn blank(&mut self) {
        self.out.push('\n');
    }

    fn section(&mut self, title: &str) {
        self.blank();
        self.line(&format!("## {title}"));
        self.blank();
        self.sections.push(title.to_string());
    }
}

pub(crate) fn render(r: &ReportInput<'_>) -> Rendered {
    let t = r.triage;
    let mut doc = Doc {
        out: String::new(),
        sections: Vec::new(),
    };
    let title = match (t.intent, r.spike) {
        (Intent::Savings, _) => "How to cut your AI bill".to_string(),
        (Intent::SpikeExplanation, Some(s)) if s.requested => format!(
            "What happened on {} {}",
            weekday_name(s.day.day.weekday()),
            s.day.day
        ),
        (Intent::SpikeExplanation, _) => "What drove your AI spend".to_string(),
        (Intent::Latency, _) => "Latency and errors by model".to_string(),
        (Intent::ModelSelection, _) => "Choosing a model".to_string(),
        _ => "Your AI spend".to_string(),
    };
    doc.line(&format!("# {title}"));
    doc.blank();
    doc.line(&format!(
        "Period: {} ({}, UTC).",
        t.period_text,
        t.period.label()
    ));

    match t.intent {
        Intent::Savings => {
            savings_lead(&mut doc, r.savings);
            overview(&mut doc, r);
            savings_section(&mut doc, r.savings, true);
            tables(&mut doc, r.usage);
            trend(&mut doc, r);
        }
        Intent::SpikeExplanation => {
            spike_section(&mut doc, r.spike);
            overview(&mut doc, r);
            tables(&mut doc, r.usage);
            trend(&mut doc, r);
            savings_section(&mut doc, r.savings, false);
        }
        Intent::ModelSelection => {
            overview(&mut doc, r);
            tables(&mut doc, r.usage);
            savings_section(&mut doc, r.savings, true);
        }
        Intent::Latency => {
            latency_section(&mut doc, r.latency);
            overview(&mut doc, r);
            tables(&mut doc, r.usage);
            savings_section(&mut doc, r.savings, false);
        }
        Intent::CostBreakdown | Intent::General | Intent::DataHelp => {
            overview(&mut doc, r);
            tables(&mut doc, r.usage);
            trend(&mut doc, r);
            savings_section(&mut doc, r.savings, false);
        }
    }
    unpriced_note(&mut doc, r.usage);
    doc.blank();
    doc.line(
        "_Costs are your usage records priced with the Apogee price catalog (or the cost you \
         sent); savings are estimates under the assumptions listed._",
    );
    Rendered {
        markdown: doc.out,
        sections: doc.sections,
    }
}

fn ms(v: Option<i64>) -> String {
    v.map_or("–".to_string(), |v| format!("{} ms", count(v)))
}

fn latency_section(doc: &mut Doc, rows: Option<&[LatencyRow]>) {
    doc.section("Latency and errors by model");
    let rows = rows.unwrap_or_default();
    if rows.is_empty() {
        doc.line("No calls in this period.");
        return;
    }
    doc.line("| model | calls | p50 | p95 | p99 | errors |");
    doc.line("| --- | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        doc.line(&format!(
            "| {} | {} | {} | {} | {} | {:.1}% |",
            r.key,
            count(r.stats.calls),
            ms(r.stats.p50_ms),
            ms(r.stats.p95_ms),
            ms(r.stats.p99_ms),
            r.stats.error_rate() * 100.0
        ));
    }
    doc.blank();
    doc.line(
        "_Percentiles are nearest-rank over the calls that reported `latency_ms`; errors are \
         calls with a status other than `ok`._",
    );
}

fn savings_lead(doc: &mut Doc, savings: Option<&Savings>) {
    doc.blank();
    match savings {
        Some(s) if !s.recommendations.is_empty() => doc.line(&format!(
            "**You could save about {} per month** with {} change{}, estimated from this \
             period's usage (details and assumptions below).",
            s.total_monthly().display_usd(),
            s.recommendations.len(),
            if s.recommendations.len() == 1 {
                ""
            } else {
                "s"
            }
        )),
        _ => doc.line(
            "I found no saving backed by this period's usage: no model in use has short \
             traffic that a cheaper catalog model could take, and no prompt was repeated.",
        ),
    }
}

fn overview(doc: &mut Doc, r: &ReportInput<'_>) {
    let totals = &r.usage.totals;
    doc.section("Overview");
    doc.line(&format!(
        "- **Total spend: {}** across {} calls",
        totals.cost.display_usd(),
        count(totals.calls)
    ));
    doc.line(&format!(
        "- Tokens: {} input ({} of them read from cache) and {} output",
        count(totals.input_tokens),
        count(totals.cached_input_tokens),
        count(totals.output_tokens)
    ));
    if totals.error_calls > 0 {
        doc.line(&format!(
            "- {} calls ended with an error status",
            count(totals.error_calls)
        ));
    }
    if let Some(model) = &r.triage.model {
        doc.line(&highlight("Model", model, &r.usage.by_model, totals.cost));
    }
    if let Some(user) = &r.triage.user {
        doc.line(&highlight(
            "User",
            &format!("`{user}`"),
            &r.usage.by_user,
            totals.cost,
        ));
        // Only the user's own row is filtered: say so rather than let the rest read as theirs.
        doc.line(
            "- The other figures and the recommendations cover the whole organisation: they \
             are not filtered by user.",
        );
    }
    if let Some(feature) = &r.triage.feature {
        doc.line(&highlight(
            "Feature",
            &format!("`{feature}`"),
            &r.usage.by_feature,
            totals.cost,
        ));
    }
}

/// The line about a model or feature the question named.
fn highlight(what: &str, name: &str, rows: &[CostRow], total: Nanos) -> String {
    let key = name.trim_matches('`');
    match rows.iter().find(|r| r.key.eq_ignore_ascii_case(key)) {
        Some(row) => format!(
            "- {what} {name}: {} across {} calls ({} of spend)",
            cost_cell(row),
            count(row.calls),
            share(row.cost, total)
        ),
        None => format!("- {what} {name}: no usage in this period"),
    }
}

fn cost_cell(row: &CostRow) -> String {
    if row.calls > 0 && row.unpriced_calls == row.calls {
        "unpriced".into()
    } else if row.unpriced_calls > 0 {
        format!(
            "{} (+{} unpriced calls)",
            row.cost.display_usd(),
            count(row.unpriced_calls)
        )
    } else {
        row.cost.display_usd()
    }
}

fn table(doc: &mut Doc, first: &str, rows: &[CostRow], total: Nanos) {
    doc.line(&format!("| {first} | calls | cost | share |"));
    doc.line("| --- | ---: | ---: | ---: |");
    for row in rows {
        doc.line(&format!(
            "| {} | {} | {} | {} |",
            row.key,
            count(row.calls),
            cost_cell(row),
            share(row.cost, total)
        ));
    }
}

fn tables(doc: &mut Doc, usage: &UsageData) {
    let total = usage.totals.cost;
    doc.section("Spend by model");
    table(doc, "model", &usage.by_model, total);
    doc.section("Top features");
    let shown = usage.by_feature.len().min(TOP_FEATURES);
    table(doc, "feature", &usage.by_feature[..shown], total);
    if usage.by_feature.len() > shown {
        let rest = &usage.by_feature[shown..];
        doc.blank();
        doc.line(&format!(
            "{} more features: {} in total.",
            rest.len(),
            rest.iter().map(|r| r.cost).sum::<Nanos>().display_usd()
        ));
    }
}

fn trend(doc: &mut Doc, r: &ReportInput<'_>) {
    doc.section("Daily trend");
    let by_day = &r.usage.by_day;
    match pick_day(by_day, None) {
        Some(p) => {
            doc.line(&format!(
                "- Highest day: {} ({}), {} across {} calls",
                p.day,
                weekday_name(p.day.weekday()),
                p.cost.display_usd(),
                count(p.calls)
            ));
            doc.line(&format!(
                "- Median day: {} over {} days (days without usage count as zero)",
                p.median.display_usd(),
                p.days
            ));
        }
        None => doc.line("- All usage of this period falls on a single day."),
    }
    if let Some(focus) = r.triage.focus_day
        && r.spike.is_none()
    {
        doc.line(&day_line(focus, by_day));
    }
    if let Some(m) = &r.usage.forecast {
        doc.line(&format!("- Month-end forecast: {}", forecast_sentence(m)));
    }
}

fn day_line(day: NaiveDate, by_day: &[CostRow]) -> String {
    let key = day.to_string();
    let name = weekday_name(day.weekday());
    match by_day.iter().find(|r| r.key == key) {
        Some(row) => format!(
            "- {name} {day}: {} across {} calls",
            cost_cell(row),
            count(row.calls)
        ),
        None => format!("- {name} {day}: no usage"),
    }
}

fn spike_section(doc: &mut Doc, spike: Option<&Spike>) {
    doc.section("What happened");
    let Some(s) = spike else {
        doc.line(
            "There are fewer than two days of usage in this period, so no day can be compared \
             with the others.",
        );
        return;
    };
    doc.line(&s.sentence());
    let drivers: Vec<(&str, &crate::spike::Driver)> =
        [("feature", s.feature.as_ref()), ("model", s.model.as_ref())]
            .into_iter()
            .filter_map(|(k, d)| Some((k, d?)))
            .collect();
    if drivers.is_empty() {
        return;
    }
    doc.blank();
    doc.line(&format!(
        "| grew most | on {} | daily average of the other {} days | increase |",
        s.day.day,
        s.day.days.saturating_sub(1)
    ));
    doc.line("| --- | ---: | ---: | ---: |");
    for (kind, d) in drivers {
        let name = if kind == "feature" {
            format!("feature `{}`", d.key)
        } else {
            format!("model {}", d.key)
        };
        doc.line(&format!(
            "| {name} | {} | {} | +{} |",
            d.day_cost.display_usd(),
            d.baseline.display_usd(),
            d.increase.display_usd()
        ));
    }
}

fn savings_section(doc: &mut Doc, savings: Option<&Savings>, lead: bool) {
    let Some(s) = savings else {
        return;
    };
    doc.section(if lead {
        "Recommendations"
    } else {
        "Ways to save"
    });
    if s.recommendations.is_empty() {
        doc.line("No saving is backed by this period's usage.");
        return;
    }
    doc.line("| recommendation | monthly saving | affected calls | confidence |");
    doc.line("| --- | ---: | ---: | --- |");
    for rec in &s.recommendations {
        doc.line(&format!(
            "| {} | {} | {} | {} |",
            rec.title,
            rec.monthly_saving.display_usd(),
            count(rec.affected_calls),
            confidence(rec.confidence)
        ));
    }
    doc.blank();
    doc.line(&format!(
        "**Total potential saving: {} per month.** Recommendations can touch the same calls, \
         so treat the total as an upper bound.",
        s.total_monthly().display_usd()
    ));
    doc.blank();
    doc.line("Assumptions:");
    doc.blank();
    for (i, rec) in s.recommendations.iter().enumerate() {
        doc.line(&format!("{}. **{}**", i + 1, rec.title));
        for a in &rec.assumptions {
            doc.line(&format!("   - {a}"));
        }
    }
}

fn confidence(c: apogee_analytics::savings::Confidence) -> &'static str {
    use apogee_analytics::savings::Confidence;
    match c {
        Confidence::Low => "low",
        Confidence::Medium => "medium",
        Confidence::High => "high",
    }
}

fn unpriced_note(doc: &mut Doc, usage: &UsageData) {
    let t = &usage.totals;
    if t.unpriced_calls == 0 {
        return;
    }
    let models: Vec<&str> = usage
        .by_model
        .iter()
        .filter(|r| r.unpriced_calls > 0)
        .map(|r| r.key.as_str())
        .collect();
    doc.section("Not priced");
    doc.line(&format!(
        "{} calls ({} tokens) to models not in the price catalog are not included: {}; add \
         their prices to the catalog to include them.",
        count(t.unpriced_calls),
        count(t.unpriced_tokens),
        if models.is_empty() {
            "unknown models".to_string()
        } else {
            models.join(", ")
        }
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spike::{DayPick, Driver};
    use apogee_analytics::LatencyStats;
    use apogee_analytics::savings::{Confidence, Recommendation, ShortLimits};
    use apogee_analytics::{Period, UsageTotals};
    use chrono::{TimeZone, Utc};

    fn row(key: &str, calls: i64, usd: f64, unpriced: i64) -> CostRow {
        CostRow {
            key: key.into(),
            calls,
            input_tokens: calls * 100,
            output_tokens: calls * 10,
            cost: Nanos::from_usd(usd),
            unpriced_calls: unpriced,
        }
    }

    fn usage() -> UsageData {
        UsageData {
            totals: UsageTotals {
                calls: 130,
                input_tokens: 13_000,
                output_tokens: 1_300,
                cached_input_tokens: 500,
                cost: Nanos::from_usd(1234.5),
                unpriced_calls: 30,
                unpriced_tokens: 3_300,
                error_calls: 2,
            },
            by_model: vec![
                row("gpt-4o", 100, 1234.5, 0),
                row("llama-3.1-70b-internal", 30, 0.0, 30),
            ],
            by_feature: vec![
                row("support-bot", 100, 1000.0, 0),
                row("(none)", 30, 234.5, 10),
            ],
            by_day: vec![
                row("2026-11-16", 40, 300.0, 0),
                row("2026-11-17", 50, 634.5, 0),
                row("2026-11-18", 40, 300.0, 0),
            ],
            forecast: None,
            by_user: vec![row("u-7", 10, 34.5, 0)],
        }
    }

    fn triage(intent: Intent) -> Triage {
        let now = Utc.with_ymd_and_hms(2026, 11, 19, 10, 0, 0).unwrap();
        Triage {
            intent,
            period: Period::last_days(now, 30),
            period_text: "the last 30 days".into(),
            focus_day: None,
            model: None,
            feature: None,
            user: None,
        }
    }

    fn savings() -> Savings {
        Savings {
            recommendations: vec![Recommendation {
                kind: "response_cache".into(),
                title: "Cache responses to exact-duplicate prompts".into(),
                period_saving: Nanos::from_usd(100.0),
                monthly_saving: Nanos::from_usd(100.0),
                affected_calls: 1_500,
                assumptions: vec!["a cache serves 80% of those repeats".into()],
                confidence: Confidence::High,
            }],
            limits: ShortLimits::default(),
            cache_hit_rate: 0.8,
        }
    }

    #[test]
    fn breakdown_report_has_every_section_and_figure() {
        let t = triage(Intent::CostBreakdown);
        let u = usage();
        let s = savings();
        let r = render(&ReportInput {
            triage: &t,
            usage: &u,
            spike: None,
            savings: Some(&s),
            latency: None,
        });
        let md = &r.markdown;
        assert!(md.starts_with("# Your AI spend\n"), "{md}");
        assert!(md.contains("2026-10-21 – 2026-11-19"), "{md}");
        assert!(
            md.contains("**Total spend: $1,234.50** across 130 calls"),
            "{md}"
        );
        assert!(md.contains("| gpt-4o | 100 | $1,234.50 | 100.0% |"), "{md}");
        assert!(
            md.contains("| llama-3.1-70b-internal | 30 | unpriced | 0.0% |"),
            "{md}"
        );
        assert!(
            md.contains("| (none) | 30 | $234.50 (+10 unpriced calls) | 19.0% |"),
            "{md}"
        );
        assert!(md.contains("Highest day: 2026-11-17 (Tuesday), $634.50 across 50 calls"));
        assert!(md.contains("Median day: $300.00 over 3 days"));
        assert!(md.contains(
            "30 calls (3,300 tokens) to models not in the price catalog are not included: \
             llama-3.1-70b-internal; add their prices"
        ));
        assert!(
            md.contains("| Cache responses to exact-duplicate prompts | $100.00 | 1,500 | high |")
        );
        assert!(md.contains("**Total potential saving: $100.00 per month.**"));
        assert!(md.contains("   - a cache serves 80% of those repeats"));
        assert_eq!(
            r.sections,
            [
                "Overview",
                "Spend by model",
                "Top features",
                "Daily trend",
                "Ways to save",
                "Not priced"
            ]
        );
    }

    #[test]
    fn savings_question_leads_with_savings() {
        let t = triage(Intent::Savings);
        let u = usage();
        let s = savings();
        let r = render(&ReportInput {
            triage: &t,
            usage: &u,
            spike: None,
            savings: Some(&s),
            latency: None,
        });
        assert!(r.markdown.starts_with("# How to cut your AI bill\n"));
        let lead = r
            .markdown
            .find("**You could save about $100.00 per month**")
            .unwrap();
        assert!(lead < r.markdown.find("## Overview").unwrap());
        assert_eq!(r.sections[1], "Recommendations");
    }

    #[test]
    fn spike_question_leads_with_the_explanation() {
        let t = triage(Intent::SpikeExplanation);
        let u = usage();
        let spike = Spike {
            day: DayPick {
                day: "2026-11-17".parse().unwrap(),
                cost: Nanos::from_usd(634.5),
                calls: 50,
                median: Nanos::from_usd(300.0),
                days: 3,
            },
            requested: false,
            feature: Some(Driver {
                key: "support-bot".into(),
                day_cost: Nanos::from_usd(500.0),
                baseline: Nanos::from_usd(250.0),
                increase: Nanos::from_usd(250.0),
            }),
            model: None,
        };
        let r = render(&ReportInput {
            triage: &t,
            usage: &u,
            spike: Some(&spike),
            savings: None,
            latency: None,
        });
        assert_eq!(r.sections[0], "What happened");
        assert!(r.markdown.contains(
            "Spend on 2026-11-17 (Tuesday) was $634.50, 2.1× the median day ($300.00); $250.00 \
             of the increase came from feature `support-bot`."
        ));
        assert!(
            r.markdown
                .contains("| feature `support-bot` | $500.00 | $250.00 | +$250.00 |")
        );
    }

    #[test]
    fn named_model_and_feature_are_highlighted() {
        let mut t = triage(Intent::CostBreakdown);
        t.model = Some("gpt-4o".into());
        t.feature = Some("email-drafts".into());
        let u = usage();
        let r = render(&ReportInput {
            triage: &t,
            usage: &u,
            spike: None,
            savings: None,
            latency: None,
        });
        assert!(
            r.markdown
                .contains("- Model gpt-4o: $1,234.50 across 100 calls (100.0% of spend)")
        );
        assert!(
            r.markdown
                .contains("- Feature `email-drafts`: no usage in this period")
        );
    }

    #[test]
    fn a_named_user_is_highlighted_and_the_rest_said_to_be_org_wide() {
        let mut t = triage(Intent::CostBreakdown);
        t.user = Some("u-7".into());
        let u = usage();
        let md = render(&ReportInput {
            triage: &t,
            usage: &u,
            spike: None,
            savings: None,
            latency: None,
        })
        .markdown;
        assert!(
            md.contains("- User `u-7`: $34.50 across 10 calls (2.8% of spend)"),
            "{md}"
        );
        assert!(md.contains("are not filtered by user"), "{md}");
        t.user = Some("bob".into());
        let md = render(&ReportInput {
            triage: &t,
            usage: &u,
            spike: None,
            savings: None,
            latency: None,
        })
        .markdown;
        assert!(md.contains("- User `bob`: no usage in this period"), "{md}");
    }

    #[test]
    fn model_selection_leads_with_models_and_recommendations() {
        let t = triage(Intent::ModelSelection);
        let u = usage();
        let s = savings();
        let r = render(&ReportInput {
            triage: &t,
            usage: &u,
            spike: None,
            savings: Some(&s),
            latency: None,
        });
        assert!(
            r.markdown.starts_with("# Choosing a model\n"),
            "{}",
            r.markdown
        );
        assert!(
            r.sections.contains(&"Recommendations".to_string()),
            "{:?}",
            r.sections
        );
    }

    #[test]
    fn latency_question_leads_with_the_latency_table() {
        let t = triage(Intent::Latency);
        let u = usage();
        let rows = [LatencyRow {
            key: "gpt-4o".into(),
            stats: LatencyStats {
                calls: 200,
                error_calls: 3,
                latency_samples: 190,
                p50_ms: Some(820),
                p95_ms: Some(1_840),
                p99_ms: Some(2_600),
            },
        }];
        let r = render(&ReportInput {
            triage: &t,
            usage: &u,
            spike: None,
            savings: None,
            latency: Some(&rows),
        });
        assert!(r.markdown.starts_with("# Latency and errors by model\n"));
        assert_eq!(r.sections[0], "Latency and errors by model");
        assert!(
            r.markdown
                .contains("| gpt-4o | 200 | 820 ms | 1,840 ms | 2,600 ms | 1.5% |"),
            "{}",
            r.markdown
        );
    }
}
