//! The `report` agent: writes the answer the plan calls for and posts it. A full report
//! (`compose_report`) for analysis questions; otherwise one focused answer (`compose_answer`):
//! a figure, a forecast, a what-if, names without usage, or a few lines for a greeting, a
//! capability question, a request Apogee cannot do, or a question it cannot map.

use crate::answer::analysis::ReportInput;
use crate::answer::figure::Answer;
use crate::plan::{Intent, QuestionPlan};
use crate::scope::{Agent, Done, StepError};
use crate::tools::compose::{compose_answer, compose_report};

/// The full analysis report; returns its first sentence.
pub(crate) async fn full(agent: Agent, input: &ReportInput<'_>) -> Result<Done<String>, StepError> {
    let lead = match input.plan.intent {
        Intent::Savings => "leading with the savings",
        Intent::SpikeExplanation => "leading with what happened",
        Intent::ModelSelection => "leading with the spend by model and right-sizing",
        _ => "with the spend by model, feature and day",
    };
    agent
        .think(format!(
            "Writing the report for {}, {lead}.",
            input.plan.period.period().label()
        ))
        .await?;
    let rendered = agent.call(compose_report(&agent, input)).await?;
    Ok(Done::new(rendered.lead, "posted the report"))
}

/// The LLM planner's grounded answer, posted as it wrote it.
pub(crate) async fn llm(agent: Agent, markdown: String) -> Result<Done<Answer>, StepError> {
    agent
        .think(
            "Posting the LLM planner's answer: every figure in it was found in the tool results.",
        )
        .await?;
    let lead = markdown.lines().next().unwrap_or("").to_string();
    let a = agent
        .call(compose_answer(&agent, "llm", move || Answer {
            lead,
            markdown,
            chart: serde_json::json!({ "kind": "none" }),
            sections: vec!["llm".into()],
        }))
        .await?;
    Ok(Done::new(a, "posted the answer"))
}

/// A focused or short answer of `kind`, written by `write`; returns it.
pub(crate) async fn answer<W>(
    agent: Agent,
    plan: &QuestionPlan,
    kind: &'static str,
    write: W,
) -> Result<Done<Answer>, StepError>
where
    W: FnOnce() -> Answer + Send,
{
    let how = if plan.intent.is_conversation() {
        "a few lines, without reading usage"
    } else if !plan.unknown_names.is_empty() {
        "saying which names have no usage, and which do"
    } else {
        "the figure first, then only what supports it"
    };
    agent.think(format!("Writing the answer: {how}.")).await?;
    let a = agent.call(compose_answer(&agent, kind, write)).await?;
    Ok(Done::new(a, "posted the answer"))
}
