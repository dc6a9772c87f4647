//! The question corpus: every phrasing in `questions.toml` is planned with a fixed clock,
//! fixed org names and a fixed list of catalog models, and must give exactly the plan the file
//! writes down (every field: intent, measures, scope, grouping, period, comparison, ranking,
//! what-if, focus day, unknown names, unsupported request, budget command, and whether it refines the previous
//! question). Failures are reported all together, each with the plan it got.

use std::collections::BTreeMap;

use apogee_agents::{
    BudgetCommand, Intent, Measure, Order, OrgNames, PlanContext, PlanPeriod, QuestionPlan, Rank,
    SavingKind, ThresholdAmount, UnknownName, Unsupported, WhatIf, plan_question,
};
use apogee_analytics::{Dimension, Filter, Grouping, Scope};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    now: DateTime<Utc>,
    /// The default period, as `first..last` days.
    default_period: String,
    names: Names,
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Names {
    models: Vec<String>,
    providers: Vec<String>,
    features: Vec<String>,
    users: Vec<String>,
    /// `key=value`.
    tags: Vec<String>,
    catalog: Vec<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Case {
    q: String,
    /// Questions asked before in the same thread, oldest first.
    #[serde(default)]
    after: Vec<String>,
    /// Whether the plan refines the previous one (default: when `after` is not empty).
    refines: Option<bool>,
    intent: String,
    measures: Option<Vec<String>>,
    /// `dim=v1,v2` or `dim!=v`.
    #[serde(default)]
    scope: Vec<String>,
    group_by: Option<String>,
    /// `first..last` (inclusive days).
    period: Option<String>,
    compare: Option<String>,
    /// `highest 1`, `lowest 5`, `highest all`.
    rank: Option<String>,
    /// `move_to_model MODEL` or `batch_api`.
    what_if: Option<String>,
    /// The kind of saving a savings question asks about: `response_cache`, `output_cap`, …
    saving: Option<String>,
    focus_day: Option<NaiveDate>,
    /// The answer says what drives the scope's spend ("why is X so expensive?").
    #[serde(default)]
    drivers: bool,
    /// The answer leads with the average over the groups ("spend per user on average").
    #[serde(default)]
    average: bool,
    /// The answer leads with weekends against weekdays ("on weekends").
    #[serde(default)]
    weekends: bool,
    /// `above CENTS` or `below CENTS` (spend), `above N calls` or `below N calls`: only the
    /// groups past an amount.
    threshold: Option<String>,
    /// `dimension/typed` or `typed`.
    #[serde(default)]
    unknown: Vec<String>,
    unsupported: Option<String>,
    /// The plan's budget command as its JSON: `{ action = "set", amount_cents = 200000,
    /// period = "month", thresholds = [50, 90] }`, `{ action = "list" }`, …
    budget: Option<BudgetCommand>,
}

fn names(n: &Names) -> OrgNames {
    OrgNames {
        models: n.models.clone(),
        providers: n.providers.clone(),
        features: n.features.clone(),
        users: n.users.clone(),
        tags: n
            .tags
            .iter()
            .map(|t| {
                let (k, v) = t.split_once('=').expect("tag as key=value");
                (k.to_string(), v.to_string())
            })
            .collect(),
    }
}

fn days(span: &str) -> (NaiveDate, NaiveDate) {
    let (a, b) = span.split_once("..").expect("period as first..last");
    (a.parse().expect("first day"), b.parse().expect("last day"))
}

fn span_of(p: &PlanPeriod) -> String {
    let last = (p.to - Duration::milliseconds(1)).date_naive();
    format!("{}..{}", p.from.date_naive(), last)
}

fn parse<T: for<'de> Deserialize<'de>>(s: &str) -> T {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .unwrap_or_else(|e| panic!("`{s}`: {e}"))
}

/// The plan fields a case pins, in one comparable shape. Periods compare by their days, so
/// the wording of `text` is free.
#[derive(Debug, PartialEq)]
struct Shape {
    intent: Intent,
    measures: Vec<Measure>,
    scope: Scope,
    group_by: Option<Grouping>,
    period: String,
    compare: Option<String>,
    rank: Option<Rank>,
    what_if: Option<WhatIf>,
    saving: Option<SavingKind>,
    focus_day: Option<NaiveDate>,
    drivers: bool,
    average: bool,
    weekends: bool,
    threshold: Option<String>,
    unknown: Vec<UnknownName>,
    unsupported: Option<Unsupported>,
    budget: Option<BudgetCommand>,
    refines_previous: bool,
}

fn shape_of(p: &QuestionPlan) -> Shape {
    Shape {
        intent: p.intent,
        measures: p.measures.clone(),
        scope: p.scope.clone(),
        group_by: p.group_by.clone(),
        period: span_of(&p.period),
        compare: p.compare.as_ref().map(span_of),
        rank: p.rank,
        what_if: p.what_if.clone(),
        saving: p.saving,
        focus_day: p.focus_day,
        drivers: p.drivers,
        average: p.average_per_group,
        weekends: p.weekends,
        threshold: p.threshold.map(|t| {
            let side = if t.above { "above" } else { "below" };
            match t.amount {
                ThresholdAmount::Spend { cents } => format!("{side} {cents}"),
                ThresholdAmount::Calls { calls } => format!("{side} {calls} calls"),
            }
        }),
        unknown: p.unknown_names.clone(),
        unsupported: p.unsupported,
        budget: p.budget.clone(),
        refines_previous: p.refines_previous,
    }
}

fn expected(c: &Case, default_period: &str) -> Shape {
    let intent: Intent = parse(&c.intent);
    let measures = match &c.measures {
        Some(ms) => ms.iter().map(|m| parse(m)).collect(),
        None if matches!(intent, Intent::Figure | Intent::Forecast | Intent::WhatIf) => {
            vec![Measure::Spend]
        }
        None => Vec::new(),
    };
    let mut scope = Scope::all();
    for f in &c.scope {
        let (dim, values, exclude) = match f.split_once("!=") {
            Some((d, v)) => (d, v, true),
            None => {
                let (d, v) = f.split_once('=').expect("scope as dim=value");
                (d, v, false)
            }
        };
        scope.filters.push(Filter {
            dimension: dim.parse().expect("dimension"),
            values: values.split(',').map(str::to_string).collect(),
            exclude,
        });
    }
    // Plans list filters by dimension (model, provider, feature, user, tags).
    scope
        .filters
        .sort_by(|a, b| (&a.dimension, a.exclude).cmp(&(&b.dimension, b.exclude)));
    let rank = c.rank.as_ref().map(|r| {
        let (order, top) = r.split_once(' ').expect("rank as `order top`");
        Rank {
            order: parse::<Order>(order),
            top: (top != "all").then(|| top.parse().expect("top")),
        }
    });
    let what_if = c.what_if.as_ref().map(|w| match w.split_once(' ') {
        Some(("move_to_model", to)) => WhatIf::MoveToModel { to: to.into() },
        None if w == "batch_api" => WhatIf::BatchApi,
        _ => panic!("what_if `{w}`"),
    });
    let unknown = c
        .unknown
        .iter()
        .map(|u| match u.split_once('/') {
            Some((d, typed)) => UnknownName {
                dimension: Some(d.parse::<Dimension>().expect("dimension")),
                typed: typed.into(),
            },
            None => UnknownName {
                dimension: None,
                typed: u.clone(),
            },
        })
        .collect();
    let period = c.period.clone().unwrap_or_else(|| default_period.into());
    days(&period);
    Shape {
        intent,
        measures,
        scope,
        group_by: c.group_by.as_ref().map(|g| g.parse().expect("group_by")),
        period,
        compare: c.compare.clone(),
        rank,
        what_if,
        saving: c.saving.as_ref().map(|k| parse(k)),
        focus_day: c.focus_day,
        drivers: c.drivers,
        average: c.average,
        weekends: c.weekends,
        threshold: c.threshold.clone(),
        unknown,
        unsupported: c.unsupported.as_ref().map(|u| parse(u)),
        budget: c.budget.clone(),
        refines_previous: c.refines.unwrap_or(!c.after.is_empty()),
    }
}

#[test]
fn every_phrasing_gets_its_plan() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/questions.toml"))
            .expect("read the corpus");
    let corpus: Corpus = toml::from_str(&text).expect("parse the corpus");
    let org = names(&corpus.names);
    let mut failures = Vec::new();
    let mut covered: BTreeMap<&'static str, usize> = BTreeMap::new();
    for c in &corpus.case {
        let mut previous: Option<QuestionPlan> = None;
        for q in c.after.iter().chain(std::iter::once(&c.q)) {
            let ctx = PlanContext {
                now: corpus.now,
                names: &org,
                catalog_models: &corpus.names.catalog,
                previous: previous.as_ref(),
            };
            previous = Some(plan_question(q, &ctx));
        }
        let plan = previous.expect("planned");
        // The plan is data: it survives JSON as is.
        let json = serde_json::to_value(&plan).expect("serialise");
        assert_eq!(
            serde_json::from_value::<QuestionPlan>(json.clone()).expect("deserialise"),
            plan
        );
        let got = shape_of(&plan);
        let want = expected(c, &corpus.default_period);
        *covered.entry(plan.intent.as_str()).or_default() += 1;
        if got != want {
            failures.push(format!(
                "{:?}{}\n  want {want:?}\n  got  {got:?}\n  plan {json}",
                c.q,
                if c.after.is_empty() {
                    String::new()
                } else {
                    format!(" (after {:?})", c.after)
                }
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} phrasings planned wrong:\n{}",
        failures.len(),
        corpus.case.len(),
        failures.join("\n")
    );
    assert!(corpus.case.len() >= 200, "{} phrasings", corpus.case.len());
    // Every kind of answer is in the corpus, several times.
    for intent in [
        "figure",
        "forecast",
        "what_if",
        "analysis",
        "savings",
        "spike_explanation",
        "model_selection",
        "data_help",
        "greeting",
        "capabilities",
        "unsupported",
        "unknown",
        "budget",
    ] {
        assert!(
            covered.get(intent).copied().unwrap_or(0) >= 3,
            "{intent}: {covered:?}"
        );
    }
}
