//! Short answers that read no usage: a greeting, what Apogee can do, a request it cannot carry
//! out yet (said plainly, with what it can do instead), a question it cannot map ("I can't
//! answer that yet", with the closest questions it can answer), and names the question typed
//! that have no usage in the period (with the names that do).

use apogee_analytics::Dimension;
use chrono::{DateTime, Datelike, Utc};
use serde_json::json;

use super::figure::{Answer, and_list};
use super::markdown::escape;
use super::when;
use crate::plan::{QuestionPlan, UnknownName, Unsupported};
use crate::question::names::{OrgNames, closest};
use crate::question::words::{normalize, tokens};

/// Questions Apogee answers, with the words that make each the closest to a question.
const EXAMPLES: &[(&str, &[&str])] = &[
    (
        "What did we spend last week?",
        &["spend", "cost", "bill", "money", "week", "total"],
    ),
    (
        "Which feature spends the most?",
        &["feature", "most", "which", "top", "biggest"],
    ),
    (
        "Top 5 users this month",
        &["user", "users", "who", "people", "top"],
    ),
    (
        "Compare this week to last week",
        &["compare", "change", "week", "trend", "vs"],
    ),
    (
        "What's the cheapest model per call?",
        &["model", "cheap", "cheapest", "price", "per"],
    ),
    (
        "What is our p95 latency by model?",
        &["latency", "slow", "fast", "speed", "time", "p95"],
    ),
    (
        "What is our error rate this week?",
        &["error", "errors", "fail", "failures", "reliability"],
    ),
    (
        "What will we spend by the end of the month?",
        &["forecast", "month", "end", "budget", "will", "predict"],
    ),
    (
        "What would we save by moving support-bot to gpt-4o-mini?",
        &["save", "move", "switch", "cheaper", "what", "if"],
    ),
    (
        "How can we cut the bill?",
        &["cut", "reduce", "save", "optimize", "savings"],
    ),
    (
        "Why did spend jump?",
        &["why", "jump", "spike", "increase", "happened"],
    ),
    (
        "Analyze my AI costs",
        &["analyze", "analysis", "report", "overview", "summary"],
    ),
    (
        "How do I send usage?",
        &["send", "data", "upload", "ingest", "import", "usage"],
    ),
    (
        "Set a monthly budget of $2,000 for support-bot",
        &["budget", "limit", "cap", "set", "alert", "notify"],
    ),
    (
        "Are we on track this month?",
        &["track", "budget", "over", "pace", "month"],
    ),
    (
        "Daily spend this week",
        &["daily", "day", "days", "trend", "timeline"],
    ),
    (
        "Which hour of the day costs the most?",
        &["hour", "hours", "hourly", "peak", "time"],
    ),
    (
        "Which feature costs the most per call?",
        &["call", "calls", "single", "expensive", "per"],
    ),
    (
        "Spend by day of the week",
        &["weekday", "weekdays", "weekend", "weekends", "week"],
    ),
    (
        "How much do we spend on weekends?",
        &["weekend", "weekends", "saturday", "sunday", "batch"],
    ),
];

/// The default examples, in order.
const DEFAULT_EXAMPLES: [usize; 5] = [0, 1, 3, 7, 9];

fn examples(picks: &[usize]) -> Vec<String> {
    picks.iter().map(|&i| EXAMPLES[i].0.to_string()).collect()
}

fn bullets(items: &[String]) -> String {
    items
        .iter()
        .map(|q| format!("- “{q}”"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn answer(lead: String, body: &str, suggestions: &[String]) -> Answer {
    let markdown = if body.is_empty() {
        format!("{lead}\n\n{}\n", bullets(suggestions))
    } else {
        format!("{lead}\n\n{body}\n\n{}\n", bullets(suggestions))
    };
    Answer {
        markdown,
        lead,
        chart: json!({ "kind": "none" }),
        sections: Vec::new(),
    }
}

pub(crate) fn greeting() -> (Answer, Vec<String>) {
    let ex = examples(&DEFAULT_EXAMPLES);
    (
        answer(
            "Hello! I answer questions about your AI spend from your org's usage, with exact figures. Try:".into(),
            "",
            &ex,
        ),
        ex,
    )
}

pub(crate) fn capabilities() -> (Answer, Vec<String>) {
    let ex = examples(&[0, 1, 3, 8, 13, 14]);
    let body = "I can measure spend, calls, tokens, cost per call, errors and latency; filter by model, provider, feature, user or tag; group by any of them, by day, by week, by hour of the day or by day of the week (UTC); rank them; compare periods; price a move to another model or to the Batch API; forecast the month; analyse the whole bill for savings; and set, list, change and remove budgets (monthly, weekly or daily, for the org or any of those filters), which alert the whole org live as they cross their thresholds. Follow-ups refine the last answer (“and last month?”, “break that down by user”). For example:";
    (
        answer(
            "I answer questions about your org's AI usage and spend, from the usage records you send.".into(),
            body,
            &ex,
        ),
        ex,
    )
}

pub(crate) fn unsupported(u: Unsupported) -> (Answer, Vec<String>) {
    let (lead, body, picks): (&str, &str, &[usize]) = match u {
        Unsupported::Alerts => (
            "I can't set up alerts on their own: alerts come from budgets, which alert every member of the org live (and a Slack or Teams channel through `POST /api/webhooks`) as they cross their thresholds, and an unusual day raises an anomaly alert by itself.",
            "Set a budget here, with the thresholds you want (“alert at 50% and 90%”), or ask:",
            &[13, 14, 10],
        ),
        Unsupported::Export => (
            "I can't export files yet. Every figure I give also comes from the REST API (`GET /api/costs`), which a script can save as it likes.",
            "What I can do here:",
            &[0, 1, 2],
        ),
        Unsupported::ChangeModels => (
            "I can't change which model your features call: Apogee reads your usage, it does not route your traffic.",
            "What I can do is price the change before you make it:",
            &[8, 4, 9],
        ),
        Unsupported::Weekdays => (
            "I can't sum weekends apart within another breakdown yet: I compare weekends with weekdays for the whole org or one slice of it (“How much does support-bot spend on weekends?”), and break usage down by day of the week.",
            "Ask, for example:",
            &[19, 18, 15],
        ),
        Unsupported::SingleCalls => (
            "I can't pick out single calls yet: my figures are sums over calls (by hour, model, feature, user and tag). I can tell you where calls cost the most on average, and their latency percentiles.",
            "Ask, for example:",
            &[17, 4, 5],
        ),
        Unsupported::TokenCostSplit => (
            "I can't split spend into input and output tokens: each call's cost is stored whole, as it was billed. I can give each kind's token counts, and the cost per 1M tokens by model.",
            "Ask, for example:",
            &[4, 1, 11],
        ),
    };
    let ex = examples(picks);
    (answer(lead.into(), body, &ex), ex)
}

/// "I can't answer that yet", with the examples sharing the most words with `question`.
pub(crate) fn unknown(question: &str) -> (Answer, Vec<String>) {
    let words: Vec<String> = tokens(question).into_iter().map(|t| t.lower).collect();
    let mut scored: Vec<(usize, usize)> = EXAMPLES
        .iter()
        .enumerate()
        .map(|(i, (_, keys))| {
            (
                keys.iter()
                    .filter(|k| words.iter().any(|w| w.starts_with(*k)))
                    .count(),
                i,
            )
        })
        .filter(|(score, _)| *score > 0)
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut picks: Vec<usize> = scored.into_iter().map(|(_, i)| i).take(3).collect();
    for d in DEFAULT_EXAMPLES {
        if picks.len() >= 3 {
            break;
        }
        if !picks.contains(&d) {
            picks.push(d);
        }
    }
    let ex = examples(&picks);
    (
        answer(
            "I can't answer that yet. I answer questions about your AI usage and spend; the closest ones I can answer:".into(),
            "",
            &ex,
        ),
        ex,
    )
}

fn dimension_words(d: &Dimension) -> (String, String) {
    match d {
        Dimension::Tag(k) => (
            format!("{} tag", escape(k)),
            format!("{} values", escape(k)),
        ),
        other => (other.kind().to_string(), format!("{}s", other.kind())),
    }
}

/// Most names listed as "names with usage".
const MAX_LISTED: usize = 8;

/// The first sentence says which names have no usage in the period; then, per name, the
/// names of its dimension that do (closest first), so the next question can use one.
pub(crate) fn unknown_names(
    plan: &QuestionPlan,
    names: &OrgNames,
    now: DateTime<Utc>,
) -> (Answer, Vec<String>) {
    let period = when(&plan.period, now.year());
    let described: Vec<String> = plan
        .unknown_names
        .iter()
        .map(|u| match &u.dimension {
            Some(Dimension::Tag(k)) => format!("{}={}", escape(k), escape(&u.typed)),
            Some(d) => format!("{} {}", dimension_words(d).0, escape(&u.typed)),
            None => format!("anything named {}", escape(&u.typed)),
        })
        .collect();
    let lead = format!("I found no usage for {} {period}.", and_list(&described));
    let mut lines = Vec::new();
    let mut suggestions = Vec::new();
    for u in &plan.unknown_names {
        let (options, label) = options_for(u, names);
        if options.is_empty() {
            if let Some(Dimension::Tag(k)) = &u.dimension {
                lines.push(format!("No usage has a {} tag in this period.", escape(k)));
            }
            continue;
        }
        let near = closest(&u.typed, &options, MAX_LISTED);
        let listed: Vec<String> = near.iter().map(|n| escape(n)).collect();
        lines.push(format!("{} with usage then: {}.", label, listed.join(", ")));
        if let Some(first) = near.first() {
            let close =
                crate::question::words::distance(&normalize(&u.typed), &normalize(first), 3) <= 3;
            if close {
                suggestions.push(format!("How much did {first} cost?"));
            }
        }
    }
    if lines.is_empty() {
        lines.push("Your org has no usage at all in this period.".into());
    }
    if suggestions.is_empty() {
        suggestions = examples(&[1, 0]);
    }
    let markdown = format!("{lead}\n\n{}\n", lines.join("\n\n"));
    (
        Answer {
            markdown,
            lead,
            chart: json!({ "kind": "none" }),
            sections: Vec::new(),
        },
        suggestions,
    )
}

/// The names an unknown name could have meant, and how to call them.
fn options_for<'a>(u: &UnknownName, names: &'a OrgNames) -> (Vec<&'a str>, String) {
    match &u.dimension {
        Some(d) => {
            let (_, plural) = dimension_words(d);
            (names.of(d), capitalise(&plural))
        }
        None => {
            let mut all: Vec<&str> = Vec::new();
            all.extend(names.features.iter().map(String::as_str));
            all.extend(names.models.iter().map(String::as_str));
            all.extend(names.users.iter().map(String::as_str));
            all.extend(names.tags.iter().map(|(_, v)| v.as_str()));
            (all, "Names".to_string())
        }
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
    use apogee_analytics::Period;
    use chrono::TimeZone;

    #[test]
    fn conversation_answers_are_a_few_lines() {
        for (a, _) in [
            greeting(),
            capabilities(),
            unknown("what's the weather in Paris"),
            unsupported(Unsupported::Alerts),
            unsupported(Unsupported::ChangeModels),
            unsupported(Unsupported::TokenCostSplit),
            unsupported(Unsupported::SingleCalls),
            unsupported(Unsupported::Weekdays),
        ] {
            assert!(a.markdown.lines().count() <= 10, "{}", a.markdown);
            // No figures: a dollar sign only in an example question.
            assert!(
                a.markdown
                    .lines()
                    .filter(|l| !l.starts_with("- “"))
                    .all(|l| !l.contains('$')),
                "{}",
                a.markdown
            );
            assert!(!a.markdown.contains("## "), "{}", a.markdown);
        }
        assert!(
            unsupported(Unsupported::Alerts)
                .0
                .lead
                .starts_with("I can't set up alerts on their own")
        );
        assert!(
            unknown("tell me a joke")
                .0
                .lead
                .starts_with("I can't answer that yet")
        );
    }

    #[test]
    fn an_unknown_feature_lists_the_features_with_usage() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let mut plan = QuestionPlan::new(
            Intent::Figure,
            PlanPeriod::new(Period::last_days(now, 30), "in the last 30 days"),
        );
        plan.unknown_names = vec![UnknownName {
            dimension: Some(Dimension::Feature),
            typed: "suport-bott".into(),
        }];
        let names = OrgNames {
            features: vec!["doc-summarizer".into(), "support-bot".into()],
            ..OrgNames::default()
        };
        let (a, suggestions) = unknown_names(&plan, &names, now);
        assert_eq!(
            a.lead,
            "I found no usage for feature suport-bott in the last 30 days (Oct 27 – Nov 25)."
        );
        assert!(
            a.markdown
                .contains("Features with usage then: support-bot, doc-summarizer.")
        );
        assert_eq!(suggestions, ["How much did support-bot cost?"]);
    }
}
