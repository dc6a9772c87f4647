//! The `report` agent: writes the answer (`compose_report`) from what the other agents found.

use crate::report::ReportInput;
use crate::scope::{Agent, Done, StepError};
use crate::tools::report::compose_report;
use crate::triage::Intent;

pub(crate) async fn work(agent: Agent, input: &ReportInput<'_>) -> Result<Done<()>, StepError> {
    let lead = match input.triage.intent {
        Intent::Savings => "leading with the savings",
        Intent::SpikeExplanation => "leading with what happened",
        Intent::Latency => "leading with latency and errors by model",
        Intent::ModelSelection => "leading with the spend by model and right-sizing",
        _ => "with the spend by model, feature and day",
    };
    agent
        .think(format!(
            "Writing the report for {}, {lead}.",
            input.triage.period.label()
        ))
        .await?;
    agent.call(compose_report(&agent, input)).await?;
    Ok(Done::new((), "posted the report"))
}
