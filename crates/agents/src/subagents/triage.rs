//! The `triage` agent: classifies the question (`classify_question`) into the plan's intent,
//! period, and named model or feature.

use apogee_analytics::PriceCatalog;
use chrono::{DateTime, Utc};

use crate::findings::triage_json;
use crate::scope::{Agent, Done, StepError};
use crate::tools::classify::classify_question;
use crate::triage::{Intent, Triage, weekday_name};

pub(crate) async fn work(
    agent: Agent,
    question: &str,
    now: DateTime<Utc>,
    catalog: &PriceCatalog,
) -> Result<Done<Triage>, StepError> {
    agent
        .think("Reading the question to decide what to analyse, and over which period.")
        .await?;
    let t = agent
        .call(classify_question(question, now, catalog))
        .await?;
    agent.think(explain(&t)).await?;
    let summary = format!(
        "{} question about {} ({})",
        t.intent.as_str(),
        t.period_text,
        t.period.label()
    );
    let data = triage_json(&t);
    Ok(Done::new(t, summary).with_data(data))
}

fn explain(t: &Triage) -> String {
    let what = match t.intent {
        Intent::CostBreakdown => "a cost breakdown",
        Intent::SpikeExplanation => "why spend changed",
        Intent::Savings => "how to cut the bill",
        Intent::Latency => "latency and errors by model",
        Intent::ModelSelection => "which model to use, by spend per model and right-sizing",
        Intent::DataHelp => "how to get usage data into Apogee",
        Intent::General => "a general question; I will summarise the spend",
    };
    let mut s = format!(
        "The question is about {what}, over {} ({}).",
        t.period_text,
        t.period.label()
    );
    if let Some(day) = t.focus_day {
        use chrono::Datelike;
        s.push_str(&format!(
            " It names {} {day}, which I will compare with the other days.",
            weekday_name(day.weekday())
        ));
    }
    if let Some(m) = &t.model {
        s.push_str(&format!(" It names the model {m}."));
    }
    if let Some(f) = &t.feature {
        s.push_str(&format!(" It names the feature `{f}`."));
    }
    if let Some(u) = &t.user {
        s.push_str(&format!(" It names the user {u}."));
    }
    s
}
