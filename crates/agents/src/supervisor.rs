//! The public entry point [`run`]: the supervisor plans the run from the triage and hands the
//! work to sub-agents (triage → data → [anomaly] → optimization → report, or data_helper when
//! there is nothing to analyse). Failures and cancellation become events and the
//! [`RunOutcome`]; `run` itself never fails.

use std::sync::Arc;

use apogee_analytics::{OrgUsageQueries, PriceCatalog};
use apogee_protocol::AgentStatus;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::RunContext;
use crate::findings::{Findings, Savings, UsageData};
use crate::format::{count, share};
use crate::report::ReportInput;
use crate::scope::{Agent, Conclusion, RunEvents, StepError, supervise};
use crate::sink::SinkError;
use crate::spike::Spike;
use crate::subagents::{anomaly, data, data_helper, optimization, performance, report, triage};
use crate::tools::latency::latency_sentence;
use crate::triage::{Intent, Triage};

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// The status of the supervisor's final `agent_completed`.
    pub status: AgentStatus,
    /// Its user-readable summary.
    pub summary: String,
    /// Its structured result (intent, period, totals, breakdowns, recommendations, spike);
    /// `Null` when the sink failed before it could be sent.
    pub data: Value,
    /// Set when the event sink failed: the run stopped there, so its last events (the
    /// supervisor's `agent_completed` at least) were never delivered and the caller must close
    /// the run itself.
    pub sink_error: Option<String>,
}

/// What the plan works with.
struct Inputs {
    question: String,
    now: DateTime<Utc>,
    usage: Arc<dyn OrgUsageQueries>,
    catalog: Arc<PriceCatalog>,
}

/// Answers one user message: streams every step into `ctx.sink`, posts the answer with
/// [`crate::EventSink::post_answer`] and ends with the supervisor's `agent_completed`.
pub async fn run(ctx: RunContext) -> RunOutcome {
    let RunContext {
        run_id,
        question,
        now,
        usage,
        catalog,
        sink,
        cancel,
    } = ctx;
    tracing::info!(%run_id, "run started");
    let events = RunEvents::new(run_id.clone(), sink, cancel);
    let inputs = Inputs {
        question,
        now,
        usage,
        catalog,
    };
    let outcome = match supervise(events, |sup| async move { conclude(&sup, &inputs).await }).await
    {
        Ok(c) => RunOutcome {
            status: c.status,
            summary: c.summary,
            data: c.data,
            sink_error: None,
        },
        Err(e) => RunOutcome {
            status: AgentStatus::Error,
            summary: "The run stopped: its events could not be delivered.".into(),
            data: Value::Null,
            sink_error: Some(e.0),
        },
    };
    tracing::info!(%run_id, status = ?outcome.status, "run ended");
    outcome
}

async fn conclude(sup: &Agent, inputs: &Inputs) -> Result<Conclusion, SinkError> {
    let mut found = Findings::default();
    let result = plan(sup, inputs, &mut found).await;
    let data = found.to_json();
    let (status, summary) = match result {
        Ok(summary) => (AgentStatus::Ok, summary),
        Err(StepError::Sink(e)) => return Err(e),
        Err(StepError::Cancelled) => (
            AgentStatus::Cancelled,
            "Cancelled before the analysis finished.".to_string(),
        ),
        Err(StepError::Tool(e)) => (AgentStatus::Error, e.to_string()),
    };
    Ok(Conclusion {
        status,
        summary,
        data,
    })
}

/// The run's steps; returns the supervisor's summary. What each step found goes into `found`
/// as soon as it has it, so a failed or cancelled run still reports what it had.
async fn plan(sup: &Agent, inputs: &Inputs, found: &mut Findings) -> Result<String, StepError> {
    let usage = &*inputs.usage;
    sup.think("Reading the question first, to plan which analyses to run.")
        .await?;
    let t = sup
        .child("triage")
        .run(|a| triage::work(a, &inputs.question, inputs.now, &inputs.catalog))
        .await?;
    found.triage = Some(t.clone());

    if t.intent == Intent::DataHelp {
        sup.think("This is about getting usage data in; handing it to the data helper.")
            .await?;
        let coverage = sup
            .child("data_helper")
            .run(|a| data_helper::work(a, usage, &t, None, inputs.now))
            .await?;
        found.coverage = Some(coverage);
        return Ok("Explained how to send usage to Apogee.".into());
    }

    let steps = match t.intent {
        Intent::SpikeExplanation => "data → anomaly → optimization → report",
        Intent::Latency => "data → performance → optimization → report",
        _ => "data → optimization → report",
    };
    sup.think(format!("Plan: {steps}, over {}.", t.period.label()))
        .await?;
    let data = sup
        .child("data")
        .run(|a| data::work(a, usage, &inputs.catalog, &t, inputs.now))
        .await?;
    found.usage = Some(data.clone());

    if data.totals.calls == 0 {
        sup.think("There is no usage to analyse in this period; handing over to the data helper.")
            .await?;
        let coverage = sup
            .child("data_helper")
            .run(|a| data_helper::work(a, usage, &t, Some(0), inputs.now))
            .await?;
        found.coverage = Some(coverage);
        return Ok(format!(
            "No usage recorded in {}; explained how to send usage.",
            t.period.label()
        ));
    }

    if t.intent == Intent::SpikeExplanation {
        found.spike = sup
            .child("anomaly")
            .run(|a| anomaly::work(a, usage, &t, &data))
            .await?;
    }
    if t.intent == Intent::Latency {
        found.latency = Some(
            sup.child("performance")
                .run(|a| performance::work(a, usage, &t))
                .await?,
        );
    }
    let savings = sup
        .child("optimization")
        .run(|a| optimization::work(a, usage, &inputs.catalog, &t, &data))
        .await?;
    found.savings = Some(savings);

    let input = ReportInput {
        triage: &t,
        usage: &data,
        spike: found.spike.as_ref(),
        savings: found.savings.as_ref(),
        latency: found.latency.as_deref(),
    };
    sup.child("report").run(|a| report::work(a, &input)).await?;
    if let Some(rows) = found.latency.as_deref() {
        return Ok(format!("{}.", latency_sentence(rows)));
    }
    Ok(summary(
        &t,
        &data,
        found.spike.as_ref(),
        found.savings.as_ref(),
    ))
}

/// The supervisor's closing line, shaped like the report.
fn summary(
    t: &Triage,
    data: &UsageData,
    spike: Option<&Spike>,
    savings: Option<&Savings>,
) -> String {
    let spend = format!(
        "{} across {} calls over {}",
        data.totals.cost.display_usd(),
        count(data.totals.calls),
        t.period.label()
    );
    let saving = savings.filter(|s| !s.recommendations.is_empty()).map(|s| {
        format!(
            "{} ways to save about {} per month",
            s.recommendations.len(),
            s.total_monthly().display_usd()
        )
    });
    match t.intent {
        Intent::Savings => match saving {
            Some(s) => format!("Found {s}, on {spend}."),
            None => format!("No saving is backed by the usage: {spend}."),
        },
        Intent::SpikeExplanation => match spike {
            Some(s) => s.sentence(),
            None => format!("Too few days of usage to compare: {spend}."),
        },
        _ => {
            let mut line = format!("Spend was {spend}");
            if let Some(top) = data.by_model.first() {
                line.push_str(&format!(
                    "; top model {} ({})",
                    top.key,
                    share(top.cost, data.totals.cost)
                ));
            }
            if let Some(s) = saving {
                line.push_str(&format!("; {s}"));
            }
            line.push('.');
            line
        }
    }
}
