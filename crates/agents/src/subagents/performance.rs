//! The `performance` agent: latency percentiles and error rates by model
//! (`latency_by_model`), for questions like "which model is slowest?".

use apogee_analytics::{LatencyRow, OrgUsageQueries};

use crate::findings::latency_json;
use crate::scope::{Agent, Done, StepError};
use crate::tools::latency::{latency_by_model, latency_sentence};
use crate::triage::Triage;

pub(crate) async fn work(
    agent: Agent,
    usage: &dyn OrgUsageQueries,
    t: &Triage,
) -> Result<Done<Vec<LatencyRow>>, StepError> {
    agent
        .think(format!(
            "Measuring p50/p95/p99 latency and the error rate of each model over {}.",
            t.period.label()
        ))
        .await?;
    let rows = agent.call(latency_by_model(usage, &t.period)).await?;
    let summary = latency_sentence(&rows);
    let data = latency_json(&rows);
    Ok(Done::new(rows, summary).with_data(data))
}
