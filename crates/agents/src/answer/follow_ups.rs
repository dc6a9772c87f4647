//! The follow-up questions offered under an answer: phrased so the planner reads each as a
//! refinement of the plan just answered ("Break that down by user", "What about last month?",
//! "Only support-bot"), or as a fresh question where there is nothing to refine.

use apogee_analytics::{Dimension, Grouping};

use crate::plan::{Intent, QuestionPlan, SavingKind, WhatIf};

/// Most suggestions under one answer.
const MAX_SUGGESTIONS: usize = 3;

/// A name fit to put in a suggestion: short, printable.
fn usable(key: &str) -> bool {
    !key.is_empty()
        && key.chars().count() <= 40
        && !key.chars().any(char::is_control)
        && key != apogee_analytics::NONE_KEY
}

fn other_period(plan: &QuestionPlan) -> &'static str {
    if plan.period.text == "last month" {
        "What about this month?"
    } else {
        "What about last month?"
    }
}

/// The dimension a figure is usefully broken down by next: one the scope does not pin.
fn next_dimension(plan: &QuestionPlan) -> &'static str {
    let pinned = |d: &Dimension| {
        plan.scope.values_of(d).is_some() || plan.group_by == Some(Grouping::By(d.clone()))
    };
    if !pinned(&Dimension::Feature) {
        "feature"
    } else if !pinned(&Dimension::Model) {
        "model"
    } else {
        "user"
    }
}

/// Suggestions after `plan`'s answer; `top` is the first group of a grouped figure.
pub(crate) fn suggestions(plan: &QuestionPlan, top: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    match plan.intent {
        Intent::Figure => match (&plan.group_by, plan.compare.is_some()) {
            (_, true) => {
                if plan.group_by.is_none() {
                    out.push(format!("Break that down by {}", next_dimension(plan)));
                }
                out.push(other_period(plan).into());
            }
            (None, false) => {
                out.push(format!("Break that down by {}", next_dimension(plan)));
                out.push("Compared to the period before?".into());
                out.push(other_period(plan).into());
            }
            (Some(g), false) if g.is_time() => {
                out.push(format!("Break that down by {}", next_dimension(plan)));
                out.push("Compared to the period before?".into());
            }
            (Some(_), false) => {
                if let Some(key) = top.filter(|k| usable(k)) {
                    out.push(format!("Only {key}"));
                }
                match plan.rank.and_then(|r| r.top) {
                    Some(n) if n < 10 => out.push("And the top 10?".into()),
                    _ => out.push("Break that down by day".into()),
                }
                out.push(other_period(plan).into());
            }
        },
        Intent::WhatIf => {
            if matches!(plan.what_if, Some(WhatIf::MoveToModel { .. })) {
                out.push("And with the Batch API?".into());
            }
            out.push(other_period(plan).into());
            out.push("Which feature spends the most?".into());
        }
        Intent::Forecast => {
            out.push("How much did we spend this month?".into());
            out.push("Which feature spends the most this month?".into());
            out.push("Compare this week to last week".into());
        }
        Intent::Analysis | Intent::SpikeExplanation | Intent::ModelSelection => {
            out.push("Which feature spends the most?".into());
            out.push("Compare this week to last week".into());
            out.push("What will we spend by the end of the month?".into());
        }
        // After one way to save, or the largest: the same over another period, then another
        // way to save.
        Intent::Savings if plan.saving.is_some() || plan.rank.is_some() => {
            out.push(other_period(plan).into());
            out.push(
                match plan.saving {
                    Some(SavingKind::ResponseCache) => "How much would prompt caching save?",
                    _ => "How much could a response cache save?",
                }
                .into(),
            );
            out.push(
                if plan.rank.is_some() {
                    "Which feature spends the most?"
                } else {
                    "What is our biggest saving?"
                }
                .into(),
            );
        }
        Intent::Savings => {
            out.push("What is our biggest saving?".into());
            out.push("Which feature spends the most?".into());
            out.push("What will we spend by the end of the month?".into());
        }
        _ => {}
    }
    out.truncate(MAX_SUGGESTIONS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::question::names::OrgNames;
    use crate::question::{PlanContext, plan_question};
    use chrono::{TimeZone, Utc};

    #[test]
    fn every_suggestion_refines_the_plan_it_follows() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let names = OrgNames {
            models: vec!["gpt-4o".into(), "claude-sonnet-4".into()],
            features: vec!["support-bot".into(), "doc-summarizer".into()],
            users: vec!["alice".into()],
            ..OrgNames::default()
        };
        let catalog = vec!["gpt-4o".to_string(), "gpt-4o-mini".to_string()];
        let ctx = |previous: Option<&QuestionPlan>| -> QuestionPlanCtx { (now, previous.cloned()) };
        type QuestionPlanCtx = (chrono::DateTime<Utc>, Option<QuestionPlan>);
        let plan_with = |q: &str, c: QuestionPlanCtx| {
            plan_question(
                q,
                &PlanContext {
                    now: c.0,
                    names: &names,
                    catalog_models: &catalog,
                    previous: c.1.as_ref(),
                },
            )
        };
        for q in [
            "How much did gpt-4o cost last week?",
            "Which feature spends the most on gpt-4o?",
            "spend by user",
            "daily spend",
            "Compare this week to last week",
            "What would we save by moving support-bot to gpt-4o-mini?",
            "How can we cut the bill?",
            "How much could a response cache save?",
            "What is our biggest saving?",
        ] {
            let plan = plan_with(q, ctx(None));
            let top = match plan.group_by {
                Some(Grouping::By(Dimension::Feature)) => Some("support-bot"),
                Some(Grouping::By(Dimension::User)) => Some("alice"),
                _ => None,
            };
            let offered = suggestions(&plan, top);
            assert!(!offered.is_empty(), "{q}");
            for s in offered {
                let next = plan_with(&s, ctx(Some(&plan)));
                assert!(
                    next.refines_previous || next.intent != Intent::Unknown,
                    "{s:?} after {q:?}: {next:?}"
                );
                assert!(next.unknown_names.is_empty(), "{s:?} after {q:?}: {next:?}");
                assert_ne!(next, plan, "{s:?} after {q:?} changes nothing");
            }
        }
    }
}
