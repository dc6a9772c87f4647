//! The `triage` agent: reads the question into a [`QuestionPlan`]. When a word of it could be
//! a name, it first reads the org's own names in the period (`read_org_names`), so "support
//! bot" is `support-bot` and "the growth team" is `team=growth`; then it plans
//! (`plan_question`), refining the thread's previous plan for a follow-up.

use apogee_analytics::{OrgUsageQueries, PriceCatalog};
use chrono::{DateTime, Utc};

use crate::plan::{Intent, QuestionPlan};
use crate::question::names::OrgNames;
use crate::question::{PlanContext, names_period};
use crate::scope::{Agent, Done, StepError};
use crate::tools::planning::{describe, plan_question, read_org_names};

/// What triage hands the supervisor.
pub(crate) struct Reading {
    pub plan: QuestionPlan,
    /// The names read (empty when the question named nothing), for "no usage for feature x;
    /// features with usage: …".
    pub names: OrgNames,
}

pub(crate) async fn work(
    agent: Agent,
    question: &str,
    now: DateTime<Utc>,
    usage: &dyn OrgUsageQueries,
    catalog: &PriceCatalog,
    previous: Option<&QuestionPlan>,
) -> Result<Done<Reading>, StepError> {
    agent
        .think("Reading the question to decide what to measure, for which usage and over which period.")
        .await?;
    let names = match names_period(question, now, previous) {
        Some(period) => {
            agent
                .think(format!(
                    "It names something: reading the features, users, models, providers and tags with usage in {} to match it against.",
                    period.label()
                ))
                .await?;
            agent.call(read_org_names(usage, period)).await?
        }
        None => OrgNames::default(),
    };
    let catalog_models: Vec<String> = catalog.entries().iter().map(|e| e.model.clone()).collect();
    let ctx = PlanContext {
        now,
        names: &names,
        catalog_models: &catalog_models,
        previous,
    };
    let plan = agent.call(plan_question(question, ctx)).await?;
    agent.think(explain(&plan)).await?;
    let summary = describe(&plan);
    let data = serde_json::json!(plan);
    Ok(Done::new(Reading { plan, names }, summary).with_data(data))
}

/// The plan in a sentence, for the step list.
fn explain(p: &QuestionPlan) -> String {
    let what = match p.intent {
        Intent::Figure => "a figure: I will measure exactly that and nothing else",
        Intent::Forecast => "where this month's spend is heading",
        Intent::WhatIf => "a what-if: the same traffic priced another way",
        Intent::Analysis => "a full analysis of the bill",
        Intent::Savings => "how to cut the bill: the full analysis, led by the savings",
        Intent::SpikeExplanation => "why spend changed: the full analysis, led by the spike",
        Intent::ModelSelection => "which model to use: spend by model and right-sizing",
        Intent::Budget => {
            "a budget command: the org's budgets, through the same code as the Budgets panel"
        }
        Intent::DataHelp => "how to get usage data into Apogee",
        Intent::Greeting => "a greeting",
        Intent::Capabilities => "what I can do",
        Intent::Unsupported => "something I cannot do yet",
        Intent::Unknown => "nothing I can map to usage",
    };
    let mut s = format!("The question asks for {what}.");
    if p.refines_previous {
        s.push_str(" It follows up on the previous question, so I refine that plan.");
    }
    if !p.unknown_names.is_empty() {
        s.push_str(
            " Some names in it have no usage in the period; I will say so rather than guess.",
        );
    }
    s
}
