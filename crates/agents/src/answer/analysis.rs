//! The full analysis report, for questions that ask for one ("Analyze my AI costs", "How can
//! we cut the bill?", "Why did spend jump?", "Which model should we use?"), rendered from the
//! tools' results alone: every figure in it is a query result or computed from one. Its first
//! sentence answers the question asked (the total, the saving, what happened); the sections
//! follow, led by what the question is about.

use apogee_analytics::queries::NIGHT_END_HOUR;
use apogee_analytics::savings::{
    BATCHABLE_NIGHT_SHARE, FAR_ABOVE_FACTOR, MIN_CACHEABLE_PREFIX_TOKENS, MIN_PROMPT_CACHE_CALLS,
    MIN_TRUNCATION_CALLS, OUTPUT_CAP_PERCENTILE, Recommendation,
};
use apogee_analytics::trends::{DaySpend, Spike, pick_day};
use apogee_analytics::{CostRow, Dimension, Nanos};
use chrono::{DateTime, Datelike, Utc};

use super::explain::{forecast_sentence, spike_sentence};
use super::figure::and_list;
use super::markdown::{Doc, escape};
use super::when;
use crate::findings::{Savings, UsageData};
use crate::format::{count, share, usd_precise};
use crate::plan::{Intent, Order, QuestionPlan, Rank, SavingKind};
use crate::question::period::weekday_name;

/// Features listed in the report; the rest are in the run's data.
pub(crate) const TOP_FEATURES: usize = 8;

/// What the report is made of.
pub(crate) struct ReportInput<'a> {
    pub plan: &'a QuestionPlan,
    pub usage: &'a UsageData,
    pub spike: Option<&'a Spike>,
    pub savings: Option<&'a Savings>,
    /// The run's clock (dates are written without the year when it is this one's).
    pub now: DateTime<Utc>,
}

/// The answer, its first sentence and the titles of its sections.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rendered {
    pub markdown: String,
    pub lead: String,
    pub sections: Vec<String>,
}

/// The days of a by-day breakdown, for the spike arithmetic.
pub(crate) fn day_spend(rows: &[CostRow]) -> Vec<DaySpend> {
    rows.iter()
        .filter_map(|r| {
            Some(DaySpend {
                day: r.key.parse().ok()?,
                cost: r.cost,
                calls: r.calls,
            })
        })
        .collect()
}

fn lead(r: &ReportInput<'_>, period: &str) -> String {
    let t = &r.usage.totals;
    let spend = format!(
        "{} {period} across {} calls",
        t.cost.display_usd(),
        count(t.calls)
    );
    let saving = r.savings.filter(|s| !s.listed().is_empty()).map(|s| {
        format!(
            "{} change{} could save about {} a month",
            s.listed().len(),
            if s.listed().len() == 1 { "" } else { "s" },
            s.total_monthly().display_usd()
        )
    });
    let top_model = r.usage.by_model.first().map(|m| {
        format!(
            "{} is the largest model at {} ({})",
            escape(&m.key),
            m.cost.display_usd(),
            share(m.cost, t.cost)
        )
    });
    if r.plan.intent == Intent::ModelSelection
        && let Some(model) = r.plan.only(&Dimension::Model)
    {
        return model_lead(r, model, period);
    }
    match r.plan.intent {
        Intent::Savings => match (r.savings, r.plan.saving, &saving) {
            (Some(s), Some(kind), _) => kind_lead(r, s, kind, period),
            (Some(s), None, Some(_)) => match r.plan.rank {
                Some(Rank {
                    order: Order::Highest,
                    top,
                }) => largest_lead(s, top, period),
                _ => format!(
                    "You could save about {} a month with {} change{}, estimated from the usage {period} (you spent {}).",
                    s.total_monthly().display_usd(),
                    s.listed().len(),
                    if s.listed().len() == 1 { "" } else { "s" },
                    t.cost.display_usd()
                ),
            },
            _ => format!(
                "I found no saving backed by the usage {period}: no model in use has short traffic a cheaper catalog model could take, and no prompt was repeated (you spent {spend})."
            ),
        },
        Intent::SpikeExplanation => match r.spike {
            Some(s) => spike_sentence(s),
            None => format!(
                "There are fewer than two days of usage {period}, so no day can be compared with the others (you spent {spend})."
            ),
        },
        Intent::ModelSelection => {
            let mut s = format!("You spent {spend}");
            if let Some(m) = top_model {
                s.push_str(&format!("; {m}"));
            }
            match r.savings.map(|s| s.right_sizing()) {
                Some(rs) if !rs.is_empty() => s.push_str(&format!(
                    "; moving short calls to a cheaper model could save about {} a month",
                    rs.iter()
                        .map(|r| r.monthly_saving)
                        .sum::<Nanos>()
                        .display_usd()
                )),
                _ => s.push_str(
                    "; no model in use has short traffic a cheaper catalog model could take",
                ),
            }
            s.push('.');
            s
        }
        _ => {
            let mut s = format!("You spent {spend}");
            if let Some(m) = top_model {
                s.push_str(&format!("; {m}"));
            }
            if let Some(sv) = saving {
                s.push_str(&format!("; {sv}"));
            }
            s.push('.');
            s
        }
    }
}

/// The chart a savings answer about one kind of saving, or the largest savings, shows under
/// its first sentence (`answer.chart`): the repeat cost by feature for the response cache, else
/// the monthly saving of each recommendation it names. `None` for every other report (its
/// charts are the full report's) and when there is nothing to chart.
pub(crate) fn focus_chart(r: &ReportInput<'_>) -> Option<serde_json::Value> {
    let s = r.savings?;
    if r.plan.intent != Intent::Savings {
        return None;
    }
    let bar = |label: &str, amount: Nanos, display: String| serde_json::json!({ "label": escape(label), "value": amount.usd(), "display": display });
    let (title, rows): (&str, Vec<serde_json::Value>) = match (r.plan.saving, r.plan.rank) {
        (Some(SavingKind::ResponseCache), _) => (
            "Repeat cost by feature",
            s.repeats
                .top_features
                .iter()
                .map(|f| bar(&f.key, f.cost, f.cost.display_usd()))
                .collect(),
        ),
        (Some(kind), _) => (
            kind_title(kind),
            s.of_kind(kind)
                .into_iter()
                .filter(|rec| rec.worth_listing())
                .map(monthly_bar)
                .collect(),
        ),
        (
            None,
            Some(Rank {
                order: Order::Highest,
                top,
            }),
        ) => (
            "Largest savings",
            s.listed()
                .into_iter()
                .take(top.map_or(usize::MAX, |t| t as usize))
                .map(monthly_bar)
                .collect(),
        ),
        _ => return None,
    };
    (!rows.is_empty())
        .then(|| serde_json::json!({ "kind": "ranking", "title": title, "rows": rows }))
}

fn monthly_bar(rec: &Recommendation) -> serde_json::Value {
    // Labels are written as the answer's text is (the UI shows them as plain text).
    serde_json::json!({
        "label": escape(&rec.title),
        "value": rec.monthly_saving.usd(),
        "display": format!("{}/mo", rec.monthly_saving.display_usd()),
    })
}

/// "Is claude-sonnet-4 worth it?": what the model cost, its share and cost per call, and
/// whether a cheaper catalog model could take its short calls.
fn model_lead(r: &ReportInput<'_>, model: &str, period: &str) -> String {
    let t = &r.usage.totals;
    let Some(row) = r.usage.by_model.iter().find(|m| m.key == model) else {
        return format!("No calls to {} {period}.", escape(model));
    };
    let priced = row.calls - row.unpriced_calls;
    let mut s = format!(
        "{} cost {} {period}, {} of spend, over {} calls",
        escape(model),
        row.cost.display_usd(),
        share(row.cost, t.cost),
        count(row.calls)
    );
    if priced > 0 {
        s.push_str(&format!(
            " at {} a call on average",
            usd_precise(Nanos(row.cost.0 / i128::from(priced)))
        ));
    }
    let moved = r.savings.and_then(|sv| {
        sv.right_sizing()
            .into_iter()
            .find_map(|rec| rec.right_sizes(model).map(|to| (rec, to)))
    });
    match moved {
        Some((rec, to)) => s.push_str(&format!(
            "; moving its {} short calls to {} could save about {} a month",
            count(rec.affected_calls),
            escape(to),
            rec.monthly_saving.display_usd()
        )),
        None if r.savings.is_some() => s.push_str(&format!(
            "; no cheaper catalog model would bill its short calls (at most {} input and {} output tokens) for less",
            count(r.savings.map_or(0, |sv| sv.limits.max_input_tokens)),
            count(r.savings.map_or(0, |sv| sv.limits.max_output_tokens))
        )),
        None => {}
    }
    s.push('.');
    s
}

/// "The biggest saving: …", "The 3 biggest savings: …": the largest listed recommendations,
/// then the total of all of them.
fn largest_lead(s: &Savings, top: Option<u32>, period: &str) -> String {
    let listed = s.listed();
    let n = top.map_or(listed.len(), |t| t as usize).min(listed.len());
    if n == 1 {
        let rec = listed[0];
        return format!(
            "The biggest saving, estimated from the usage {period}: {}, about {} a month over {} calls ({} confidence).",
            escape(&rec.title),
            rec.monthly_saving.display_usd(),
            count(rec.affected_calls),
            confidence(rec.confidence)
        );
    }
    let named = listed[..n]
        .iter()
        .map(|rec| {
            format!(
                "{} ({} a month)",
                escape(&rec.title),
                rec.monthly_saving.display_usd()
            )
        })
        .collect::<Vec<_>>();
    let mut out = format!(
        "The {n} biggest savings, estimated from the usage {period}: {}",
        and_list(&named)
    );
    if n < listed.len() {
        out.push_str(&format!(
            "; all {} changes together about {} a month",
            listed.len(),
            s.total_monthly().display_usd()
        ));
    }
    out.push('.');
    out
}

/// The first sentence of an answer about one kind of saving: what it would save and where,
/// or that the period's usage backs none, and why.
fn kind_lead(r: &ReportInput<'_>, s: &Savings, kind: SavingKind, period: &str) -> String {
    let all = s.of_kind(kind);
    let recs: Vec<&Recommendation> = all.iter().copied().filter(|r| r.worth_listing()).collect();
    let total: Nanos = recs.iter().map(|r| r.monthly_saving).sum();
    let mut out = if kind == SavingKind::ResponseCache {
        response_cache_lead(r, s, total, period)
    } else if recs.is_empty() {
        let mut out = format!(
            "I found no {} in the usage {period}: {}",
            kind_noun(kind),
            why_none(kind, s)
        );
        if !all.is_empty() {
            out.push_str(&format!(
                " (the {} found would save less than $0.01 a month)",
                all.len()
            ));
        }
        out.push('.');
        out
    } else {
        let mut named: Vec<String> = recs
            .iter()
            .take(3)
            .map(|rec| {
                format!(
                    "{} ({} a month)",
                    escape(&rec.title),
                    rec.monthly_saving.display_usd()
                )
            })
            .collect();
        if recs.len() > 3 {
            named.push(format!("{} more", recs.len() - 3));
        }
        format!(
            "{} could save about {} a month, estimated from the usage {period}: {}.",
            kind_doing(kind),
            total.display_usd(),
            and_list(&named)
        )
    };
    // What else there is to save, so a "no" is not the whole answer.
    let others: Vec<&Recommendation> = s
        .listed()
        .into_iter()
        .filter(|rec| rec.kind != kind.as_str())
        .collect();
    if !others.is_empty() {
        out.push_str(&format!(
            " {} other change{} could save about {} a month (below).",
            others.len(),
            if others.len() == 1 { "" } else { "s" },
            others
                .iter()
                .map(|rec| rec.monthly_saving)
                .sum::<Nanos>()
                .display_usd()
        ));
    }
    out
}

/// The response cache's lead: the repeated prompts themselves (how many, what they cost,
/// which features send them), then the saving.
fn response_cache_lead(r: &ReportInput<'_>, s: &Savings, saving: Nanos, period: &str) -> String {
    let rp = &s.repeats;
    if rp.repeat_calls == 0 {
        return format!(
            "No prompt was sent more than once {period} (same prompt and model), so a response cache would save nothing."
        );
    }
    let saving_text = if saving > Nanos::ZERO {
        format!(
            "a response cache serving {:.0}% of the repeats could save about {} a month",
            s.cache_hit_rate * 100.0,
            saving.display_usd()
        )
    } else {
        "a response cache would save less than $0.01 a month".to_string()
    };
    let whole = |when: &str| {
        format!(
            "{} calls{when} repeated one of {} prompts sent more than once, costing {}",
            count(rp.repeat_calls),
            count(rp.repeated_prompts),
            rp.repeat_cost.display_usd()
        )
    };
    if let Some(feature) = r.plan.only(&Dimension::Feature) {
        let whole = whole("");
        return match rp.top_features.iter().find(|f| f.key == feature) {
            Some(f) => format!(
                "{} sent {} calls {period} that repeated an earlier prompt, costing {}. Across the org, {whole}; {saving_text}.",
                escape(feature),
                count(f.calls),
                f.cost.display_usd()
            ),
            None => format!(
                "{} is not among the {} features repeating prompts the most {period}. Across the org, {whole}; {saving_text}.",
                escape(feature),
                rp.top_features.len()
            ),
        };
    }
    let top: Vec<String> = rp
        .top_features
        .iter()
        .take(3)
        .map(|f| format!("{} ({})", escape(&f.key), f.cost.display_usd()))
        .collect();
    // One sentence: the saving, then what backs it.
    let mut sentence = format!(
        "{}: {}",
        upper_first(&saving_text),
        whole(&format!(" {period}"))
    );
    if !top.is_empty() {
        sentence.push_str(&format!("; most of it from {}", and_list(&top)));
    }
    sentence.push('.');
    sentence
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// What one kind of saving does, as the subject of a sentence.
fn kind_doing(kind: SavingKind) -> &'static str {
    match kind {
        SavingKind::RightSizeModel => "Moving short calls to a cheaper model",
        SavingKind::ResponseCache => "A response cache",
        SavingKind::BatchApi => "Sending night-time jobs through the Batch API",
        SavingKind::PromptCache => "Caching stable prompt prefixes",
        SavingKind::OutputCap => "Capping long outputs",
        SavingKind::ContextTier => "Trimming prompts below a long-context price tier",
    }
}

/// What one kind of saving looks for, after "I found no".
fn kind_noun(kind: SavingKind) -> &'static str {
    match kind {
        SavingKind::RightSizeModel => "short traffic a cheaper model could take",
        SavingKind::ResponseCache => "repeated prompt",
        SavingKind::BatchApi => "night-time job the Batch API could take",
        SavingKind::PromptCache => "prompts worth caching",
        SavingKind::OutputCap => "long tail of outputs worth capping",
        SavingKind::ContextTier => "prompts just above a long-context price tier",
    }
}

/// Why a recommender found nothing: its own threshold, in words.
fn why_none(kind: SavingKind, s: &Savings) -> String {
    match kind {
        SavingKind::RightSizeModel => format!(
            "no model in use has short calls (at most {} input and {} output tokens) that a cheaper catalog model would bill for less",
            count(s.limits.max_input_tokens),
            count(s.limits.max_output_tokens)
        ),
        SavingKind::ResponseCache => "no prompt was sent twice".to_string(),
        SavingKind::BatchApi => format!(
            "no feature sent at least {:.0}% of its interactive calls on a model between 00:00 and {NIGHT_END_HOUR:02}:00 UTC",
            BATCHABLE_NIGHT_SHARE * 100.0
        ),
        SavingKind::PromptCache => format!(
            "no feature sends at least {MIN_PROMPT_CACHE_CALLS} interactive calls on one model with prompts long enough to cache ({} tokens) and little already read from cache, on a provider with prompt caching",
            count(MIN_CACHEABLE_PREFIX_TOKENS)
        ),
        SavingKind::OutputCap => format!(
            "no feature's outputs on a model run far beyond their p{OUTPUT_CAP_PERCENTILE} length (the calls above it averaging {FAR_ABOVE_FACTOR}× or more, over at least {MIN_TRUNCATION_CALLS} calls)"
        ),
        SavingKind::ContextTier => {
            "no model with a long-context price tier has prompts just above it".to_string()
        }
    }
}

pub(crate) fn render(r: &ReportInput<'_>) -> Rendered {
    let year = r.now.year();
    let period = when(&r.plan.period, year);
    let mut doc = Doc::default();
    let lead = lead(r, &period);
    doc.line(&lead);
    match r.plan.intent {
        Intent::Savings => {
            match r.plan.saving {
                Some(kind) => kind_section(&mut doc, r.savings, kind),
                None => savings_section(&mut doc, r.savings, true),
            }
            overview(&mut doc, r);
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
        _ => {
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
        lead,
        sections: doc.sections,
    }
}

fn overview(doc: &mut Doc, r: &ReportInput<'_>) {
    let totals = &r.usage.totals;
    doc.section("Overview");
    doc.line(&format!(
        "- Period: {} UTC ({})",
        r.plan.period.period().label(),
        r.plan.period.text
    ));
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
    // Names the question gave: their own row, and a word that the rest is org-wide.
    let named = [
        ("Model", Dimension::Model, &r.usage.by_model),
        ("Feature", Dimension::Feature, &r.usage.by_feature),
        ("User", Dimension::User, &r.usage.by_user),
    ];
    let mut any = false;
    for (what, dim, rows) in named {
        for name in r.plan.scope.values_of(&dim).unwrap_or_default() {
            doc.line(&highlight(what, name, rows, totals.cost));
            any = true;
        }
    }
    if any {
        doc.line(
            "- The other figures and the recommendations cover the whole organisation: this \
             report is not filtered.",
        );
    }
}

/// The line about a model, feature or user the question named.
fn highlight(what: &str, name: &str, rows: &[CostRow], total: Nanos) -> String {
    match rows.iter().find(|r| r.key.eq_ignore_ascii_case(name)) {
        Some(row) => format!(
            "- {what} {}: {} across {} calls ({} of spend)",
            escape(name),
            cost_cell(row),
            count(row.calls),
            share(row.cost, total)
        ),
        None => format!("- {what} {}: no usage in this period", escape(name)),
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
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                escape(&row.key),
                count(row.calls),
                cost_cell(row),
                share(row.cost, total),
            ]
        })
        .collect();
    doc.table(
        &[
            (first, false),
            ("calls", true),
            ("cost", true),
            ("share", true),
        ],
        &cells,
    );
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
    let days = day_spend(&r.usage.by_day);
    match pick_day(&days, None) {
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
    if let Some(focus) = r.plan.focus_day
        && r.spike.is_none()
    {
        let name = weekday_name(focus.weekday());
        match days.iter().find(|d| d.day == focus) {
            Some(d) => doc.line(&format!(
                "- {name} {focus}: {} across {} calls",
                d.cost.display_usd(),
                count(d.calls)
            )),
            None => doc.line(&format!("- {name} {focus}: no usage")),
        }
    }
    if let Some(m) = &r.usage.forecast {
        doc.line(&format!("- Month-end forecast: {}", forecast_sentence(m)));
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
    // The first sentence of the report already says it; here the table behind it.
    let drivers: Vec<(&str, &apogee_analytics::trends::Driver)> =
        [("feature", s.feature.as_ref()), ("model", s.model.as_ref())]
            .into_iter()
            .filter_map(|(k, d)| Some((k, d?)))
            .collect();
    if drivers.is_empty() {
        doc.line("No feature or model spent more that day than on its average day.");
        return;
    }
    let head_day = format!("on {}", s.day.day);
    let head_avg = format!(
        "daily average of the other {} days",
        s.day.days.saturating_sub(1)
    );
    let rows: Vec<Vec<String>> = drivers
        .iter()
        .map(|(kind, d)| {
            vec![
                format!("{kind} {}", escape(&d.key)),
                d.day_cost.display_usd(),
                d.baseline.display_usd(),
                format!("+{}", d.increase.display_usd()),
            ]
        })
        .collect();
    doc.table(
        &[
            ("grew most", false),
            (&head_day, true),
            (&head_avg, true),
            ("increase", true),
        ],
        &rows,
    );
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
    let all: Vec<&Recommendation> = s.recommendations.iter().collect();
    recommendation_list(doc, &all);
}

/// For a question about one kind of saving: that kind's findings (for the response cache, the
/// features repeating prompts first), then every other way to save.
fn kind_section(doc: &mut Doc, savings: Option<&Savings>, kind: SavingKind) {
    let Some(s) = savings else {
        return;
    };
    doc.section(kind_title(kind));
    if kind == SavingKind::ResponseCache && !s.repeats.top_features.is_empty() {
        let rows: Vec<Vec<String>> = s
            .repeats
            .top_features
            .iter()
            .map(|f| {
                vec![
                    escape(&f.key),
                    count(f.calls),
                    f.cost.display_usd(),
                    share(f.cost, s.repeats.repeat_cost),
                ]
            })
            .collect();
        doc.table(
            &[
                ("feature", false),
                ("repeat calls", true),
                ("repeat cost", true),
                ("share", true),
            ],
            &rows,
        );
        doc.blank();
    }
    let mine = s.of_kind(kind);
    if !mine.is_empty() {
        recommendation_list(doc, &mine);
    }
    let others: Vec<&Recommendation> = s
        .recommendations
        .iter()
        .filter(|rec| rec.kind != kind.as_str())
        .collect();
    if !others.is_empty() {
        doc.section("Other ways to save");
        recommendation_list(doc, &others);
    }
}

/// The section title of one kind of saving.
fn kind_title(kind: SavingKind) -> &'static str {
    match kind {
        SavingKind::RightSizeModel => "Cheaper models for short calls",
        SavingKind::ResponseCache => "Repeated prompts",
        SavingKind::BatchApi => "Night-time jobs for the Batch API",
        SavingKind::PromptCache => "Prompt caching",
        SavingKind::OutputCap => "Output caps",
        SavingKind::ContextTier => "Long-context price tiers",
    }
}

/// A table of `recs` worth a line, their total and their assumptions; says so when none is.
fn recommendation_list(doc: &mut Doc, recs: &[&Recommendation]) {
    // A saving that rounds to $0.00 a month is not worth a line.
    let listed: Vec<&Recommendation> = recs.iter().copied().filter(|r| r.worth_listing()).collect();
    let below = recs.len() - listed.len();
    if listed.is_empty() {
        doc.line("No saving is backed by this period's usage.");
        if below > 0 {
            doc.line(&format!(
                "({below} possible saving{} of less than $0.01 a month left out.)",
                if below == 1 { "" } else { "s" }
            ));
        }
        return;
    }
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|rec| {
            vec![
                escape(&rec.title),
                rec.monthly_saving.display_usd(),
                count(rec.affected_calls),
                confidence(rec.confidence).to_string(),
            ]
        })
        .collect();
    doc.table(
        &[
            ("recommendation", false),
            ("monthly saving", true),
            ("affected calls", true),
            ("confidence", false),
        ],
        &rows,
    );
    doc.blank();
    let total: Nanos = recs.iter().map(|r| r.monthly_saving).sum();
    if listed.len() > 1 {
        doc.line(&format!(
            "**Total potential saving: {} per month.** Recommendations can touch the same \
             calls, so treat the total as an upper bound.",
            total.display_usd()
        ));
    } else {
        doc.line(&format!(
            "**Potential saving: {} per month.**",
            total.display_usd()
        ));
    }
    if below > 0 {
        doc.line(&format!(
            "{below} smaller saving{} of less than $0.01 a month {} left out.",
            if below == 1 { "" } else { "s" },
            if below == 1 { "is" } else { "are" }
        ));
    }
    doc.blank();
    doc.line("Assumptions:");
    doc.blank();
    for (i, rec) in listed.iter().enumerate() {
        doc.line(&format!("{}. **{}**", i + 1, escape(&rec.title)));
        for a in &rec.assumptions {
            doc.line(&format!("   - {}", escape(a)));
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
    let models: Vec<String> = usage
        .by_model
        .iter()
        .filter(|r| r.unpriced_calls > 0)
        .map(|r| escape(&r.key))
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
    use crate::plan::PlanPeriod;
    use apogee_analytics::savings::{Confidence, Recommendation, ShortLimits};
    use apogee_analytics::trends::{DayPick, Driver};
    use apogee_analytics::{Filter, Period, RepeatProfile, Scope, UsageTotals};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 19, 10, 0, 0).unwrap()
    }

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
            by_model_as_stored: Vec::new(),
        }
    }

    fn plan(intent: Intent) -> QuestionPlan {
        QuestionPlan::new(
            intent,
            PlanPeriod::new(Period::last_days(now(), 30), "in the last 30 days"),
        )
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
            repeats: RepeatProfile {
                repeated_prompts: 300,
                repeat_calls: 1_500,
                repeat_cost: Nanos::from_usd(125.0),
                top_features: vec![
                    row("support-bot", 900, 75.0, 0),
                    row("doc-summarizer", 600, 50.0, 0),
                ],
            },
        }
    }

    fn input<'a>(
        plan: &'a QuestionPlan,
        u: &'a UsageData,
        s: Option<&'a Savings>,
        spike: Option<&'a Spike>,
    ) -> ReportInput<'a> {
        ReportInput {
            plan,
            usage: u,
            spike,
            savings: s,
            now: now(),
        }
    }

    #[test]
    fn savings_that_round_to_nothing_are_not_listed() {
        let p = plan(Intent::Analysis);
        let u = usage();
        let mut s = savings();
        let tiny = |title: &str, nanos: i64| Recommendation {
            kind: "right_size_model".into(),
            title: title.into(),
            period_saving: Nanos(nanos.into()),
            monthly_saving: Nanos(nanos.into()),
            affected_calls: 1,
            assumptions: vec![format!("{title} assumption")],
            confidence: Confidence::Medium,
        };
        s.recommendations
            .push(tiny("Route short gpt-4o calls", 2_115_000));
        s.recommendations.push(tiny("Cap outputs", 4_999_999));
        let md = render(&input(&p, &u, Some(&s), None)).markdown;
        assert!(!md.contains("$0.00"), "{md}");
        assert!(!md.contains("Route short gpt-4o calls"), "{md}");
        assert!(
            md.contains("2 smaller savings of less than $0.01 a month are left out."),
            "{md}"
        );
        // Only those: nothing listed at all says so.
        s.recommendations.remove(0);
        let md = render(&input(&p, &u, Some(&s), None)).markdown;
        assert!(
            md.contains("No saving is backed by this period's usage."),
            "{md}"
        );
        assert!(
            md.contains("(2 possible savings of less than $0.01 a month left out.)"),
            "{md}"
        );
    }

    #[test]
    fn the_analysis_leads_with_the_total_then_every_section() {
        let p = plan(Intent::Analysis);
        let u = usage();
        let s = savings();
        let r = render(&input(&p, &u, Some(&s), None));
        let md = &r.markdown;
        assert_eq!(
            r.lead,
            "You spent $1,234.50 in the last 30 days (Oct 21 – Nov 19) across 130 calls; gpt-4o is the largest model at $1,234.50 (100.0%); 1 change could save about $100.00 a month."
        );
        assert!(md.starts_with(&r.lead), "{md}");
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
        assert!(
            md.contains("| Cache responses to exact-duplicate prompts | $100.00 | 1,500 | high |")
        );
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
    fn savings_and_spikes_lead_with_their_answer() {
        let u = usage();
        let s = savings();
        let p = plan(Intent::Savings);
        let r = render(&input(&p, &u, Some(&s), None));
        assert!(
            r.lead
                .starts_with("You could save about $100.00 a month with 1 change"),
            "{}",
            r.lead
        );
        assert_eq!(r.sections[0], "Recommendations");
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
        let p = plan(Intent::SpikeExplanation);
        let r = render(&input(&p, &u, None, Some(&spike)));
        assert_eq!(
            r.lead,
            "Spend on 2026-11-17 (Tuesday) was $634.50, 2.1× the median day ($300.00); $250.00 of the increase came from feature support-bot."
        );
        assert!(
            r.markdown
                .contains("| feature support-bot | $500.00 | $250.00 | +$250.00 |")
        );
    }

    /// A question about one kind of saving, or the largest ones, leads with those; the
    /// plan's tweak, then the lead and the sections the answer must have.
    #[test]
    fn a_question_about_one_kind_of_saving_leads_with_it() {
        let cap = Recommendation {
            kind: "output_cap".into(),
            title: "Cap support-bot's gpt-4o outputs at 800 tokens".into(),
            period_saving: Nanos::from_usd(20.0),
            monthly_saving: Nanos::from_usd(20.0),
            affected_calls: 120,
            assumptions: vec!["p95 of 800 tokens".into()],
            confidence: Confidence::Medium,
        };
        let with_cap = {
            let mut s = savings();
            s.recommendations.push(cap);
            s
        };
        type Tweak = fn(&mut QuestionPlan);
        let cases: [(&str, Tweak, &Savings, &str, &[&str]); 6] = [
            (
                "the response cache, with the features repeating the most",
                |p| p.saving = Some(SavingKind::ResponseCache),
                &with_cap,
                "A response cache serving 80% of the repeats could save about $100.00 a month: 1,500 calls in the last 30 days (Oct 21 – Nov 19) repeated one of 300 prompts sent more than once, costing $125.00; most of it from support-bot ($75.00) and doc-summarizer ($50.00). 1 other change could save about $20.00 a month (below).",
                &["Repeated prompts", "Other ways to save"],
            ),
            (
                "the response cache for one feature",
                |p| {
                    p.saving = Some(SavingKind::ResponseCache);
                    p.scope = Scope::all().and(Filter::is(Dimension::Feature, "support-bot"));
                },
                &with_cap,
                "support-bot sent 900 calls in the last 30 days (Oct 21 – Nov 19) that repeated an earlier prompt, costing $75.00. Across the org, 1,500 calls repeated one of 300 prompts sent more than once, costing $125.00; a response cache serving 80% of the repeats could save about $100.00 a month. 1 other change could save about $20.00 a month (below).",
                &["Repeated prompts", "Other ways to save"],
            ),
            (
                "the response cache for a feature that repeats little",
                |p| {
                    p.saving = Some(SavingKind::ResponseCache);
                    p.scope = Scope::all().and(Filter::is(Dimension::Feature, "code-review"));
                },
                &with_cap,
                "code-review is not among the 2 features repeating prompts the most in the last 30 days (Oct 21 – Nov 19). Across the org, 1,500 calls repeated one of 300 prompts sent more than once, costing $125.00; a response cache serving 80% of the repeats could save about $100.00 a month. 1 other change could save about $20.00 a month (below).",
                &["Repeated prompts", "Other ways to save"],
            ),
            (
                "a kind with findings",
                |p| p.saving = Some(SavingKind::OutputCap),
                &with_cap,
                "Capping long outputs could save about $20.00 a month, estimated from the usage in the last 30 days (Oct 21 – Nov 19): Cap support-bot's gpt-4o outputs at 800 tokens ($20.00 a month). 1 other change could save about $100.00 a month (below).",
                &["Output caps", "Other ways to save"],
            ),
            (
                "a kind without findings says why",
                |p| p.saving = Some(SavingKind::BatchApi),
                &with_cap,
                "I found no night-time job the Batch API could take in the usage in the last 30 days (Oct 21 – Nov 19): no feature sent at least 90% of its interactive calls on a model between 00:00 and 06:00 UTC. 2 other changes could save about $120.00 a month (below).",
                &["Night-time jobs for the Batch API", "Other ways to save"],
            ),
            (
                "the largest two",
                |p| {
                    p.rank = Some(Rank {
                        order: Order::Highest,
                        top: Some(1),
                    })
                },
                &with_cap,
                "The biggest saving, estimated from the usage in the last 30 days (Oct 21 – Nov 19): Cache responses to exact-duplicate prompts, about $100.00 a month over 1,500 calls (high confidence).",
                &["Recommendations"],
            ),
        ];
        let u = usage();
        for (what, tweak, s, lead, sections) in cases {
            let mut p = plan(Intent::Savings);
            tweak(&mut p);
            let r = render(&input(&p, &u, Some(s), None));
            assert_eq!(r.lead, lead, "{what}");
            assert_eq!(&r.sections[..sections.len()], sections, "{what}");
        }
        // Its chart: what the answer leads with, not the full report's.
        let chart = |tweak: Tweak| {
            let mut p = plan(Intent::Savings);
            tweak(&mut p);
            focus_chart(&input(&p, &u, Some(&with_cap), None))
        };
        let repeats = chart(|p| p.saving = Some(SavingKind::ResponseCache)).unwrap();
        assert_eq!(repeats["title"], "Repeat cost by feature");
        assert_eq!(repeats["rows"][0]["label"], "support-bot");
        assert_eq!(repeats["rows"][1]["display"], "$50.00");
        let caps = chart(|p| p.saving = Some(SavingKind::OutputCap)).unwrap();
        assert_eq!(caps["rows"].as_array().map(Vec::len), Some(1));
        assert_eq!(caps["rows"][0]["display"], "$20.00/mo");
        assert_eq!(chart(|p| p.saving = Some(SavingKind::BatchApi)), None);
        assert_eq!(chart(|_| {}), None);
        let mut p = plan(Intent::Savings);
        p.rank = Some(Rank {
            order: Order::Highest,
            top: Some(1),
        });
        let mut s = with_cap.clone();
        s.recommendations.push(Recommendation {
            kind: "batch_api".into(),
            title: "Send ticket-tagging's nightly gpt-4o calls through the Batch API".into(),
            period_saving: Nanos::from_usd(5.0),
            monthly_saving: Nanos::from_usd(5.0),
            affected_calls: 40,
            assumptions: Vec::new(),
            confidence: Confidence::High,
        });
        p.rank = Some(Rank {
            order: Order::Highest,
            top: Some(2),
        });
        assert_eq!(
            render(&input(&p, &u, Some(&s), None)).lead,
            "The 2 biggest savings, estimated from the usage in the last 30 days (Oct 21 – Nov 19): Cache responses to exact-duplicate prompts ($100.00 a month) and Cap support-bot's gpt-4o outputs at 800 tokens ($20.00 a month); all 3 changes together about $125.00 a month."
        );
    }

    /// "Is gpt-4o worth it?" is about gpt-4o: its cost and share, and only its own move to a
    /// cheaper model (never another model's).
    #[test]
    fn a_model_question_leads_with_that_model() {
        let u = usage();
        let mut p = plan(Intent::ModelSelection);
        p.scope = Scope::all().and(Filter::is(Dimension::Model, "gpt-4o"));
        let mut s = savings();
        let move_of = |model: &str, usd: f64| Recommendation {
            kind: "right_size_model".into(),
            title: format!("Route short {model} calls to gpt-4o-mini"),
            period_saving: Nanos::from_usd(usd),
            monthly_saving: Nanos::from_usd(usd),
            affected_calls: 70,
            assumptions: Vec::new(),
            confidence: Confidence::Medium,
        };
        s.recommendations.push(move_of("gpt-4.1", 50.0));
        assert_eq!(
            render(&input(&p, &u, Some(&s), None)).lead,
            "gpt-4o cost $1,234.50 in the last 30 days (Oct 21 – Nov 19), 100.0% of spend, over 100 calls at $12.35 a call on average; no cheaper catalog model would bill its short calls (at most 1,000 input and 300 output tokens) for less."
        );
        s.recommendations.push(move_of("gpt-4o", 20.0));
        assert_eq!(
            render(&input(&p, &u, Some(&s), None)).lead,
            "gpt-4o cost $1,234.50 in the last 30 days (Oct 21 – Nov 19), 100.0% of spend, over 100 calls at $12.35 a call on average; moving its 70 short calls to gpt-4o-mini could save about $20.00 a month."
        );
    }

    #[test]
    fn named_names_are_highlighted_and_the_rest_said_to_be_org_wide() {
        let mut p = plan(Intent::Analysis);
        p.scope = Scope::all()
            .and(Filter::is(Dimension::Model, "gpt-4o"))
            .and(Filter::is(Dimension::User, "bob"));
        let u = usage();
        let md = render(&input(&p, &u, None, None)).markdown;
        assert!(
            md.contains("- Model gpt-4o: $1,234.50 across 100 calls (100.0% of spend)"),
            "{md}"
        );
        assert!(md.contains("- User bob: no usage in this period"), "{md}");
        assert!(md.contains("this report is not filtered"), "{md}");
    }

    #[test]
    fn titles_and_names_from_data_cannot_inject_markdown() {
        let p = plan(Intent::Analysis);
        let mut u = usage();
        u.by_feature[0].key = "x |\n## Action required\n[verify](https://evil.example)".into();
        let mut s = savings();
        s.recommendations[0].title = format!("Cap {}'s outputs", u.by_feature[0].key);
        let md = render(&input(&p, &u, Some(&s), None)).markdown;
        assert!(!md.lines().any(|l| l.starts_with("## Action")), "{md}");
        assert!(!md.contains("[verify](https"), "{md}");
    }
}
