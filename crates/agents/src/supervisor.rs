//! The public entry point [`run`]: the supervisor has triage read the question into a
//! [`QuestionPlan`], then runs the sub-agents that plan needs, and only those:
//!
//! - a figure: data (and performance for latency) → report;
//! - a forecast: data → report; a what-if: optimization → report;
//! - a full analysis (analysis, savings, spike, model choice): data → [anomaly] →
//!   optimization → report;
//! - names without usage, a greeting, a capability question, a request Apogee cannot do, a
//!   question it cannot map: report alone, in a few lines;
//! - data help, or no usage at all in the period: data_helper.
//!
//! With an LLM configured, the `planner` agent (`llm_planner/`) answers first; when it cannot
//! (the model failed or misbehaved, the org's LLM budget is spent, its answer was not
//! grounded) the supervisor says so in a thought and answers as above.
//!
//! Failures and cancellation become events and the [`RunOutcome`]; `run` itself never fails.

use std::sync::Arc;

use apogee_analytics::{OrgUsageQueries, PriceCatalog};
use apogee_protocol::AgentStatus;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::RunContext;
use crate::answer::analysis::{self, ReportInput};
use crate::answer::figure::{self, FigureData};
use crate::answer::{budgets as budget_answer, conversation, follow_ups, projection};
use crate::budgets::OrgBudgets;
use crate::findings::{Findings, Shown, answer_kind};
use crate::llm_planner::{self, LlmRun};
use crate::plan::BudgetCommand;
use crate::plan::{Intent, QuestionPlan};
use crate::question::names::OrgNames;
use crate::scope::{Agent, Conclusion, RunEvents, StepError, supervise};
use crate::sink::SinkError;
use crate::subagents::budgets::{self, BudgetResult};
use crate::subagents::{anomaly, data, data_helper, optimization, performance, report, triage};
use crate::tools::ToolError;
use crate::tools::budgets::status_json;
use crate::tools::planning::describe;
use crate::{Turn, llm_planner::Answered};

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// The status of the supervisor's final `agent_completed`.
    pub status: AgentStatus,
    /// Its user-readable summary.
    pub summary: String,
    /// Its structured result (the plan, how to show the answer, totals, breakdowns,
    /// recommendations, spike, …); `Null` when the sink failed before it could be sent.
    pub data: Value,
    /// The plan the next question of this thread refines: this run's, or (after a greeting or
    /// a question it could not map) the previous one. `None` when the run ended before
    /// planning and there was none before.
    pub thread_plan: Option<QuestionPlan>,
    /// Set when the event sink failed: the run stopped there, so its last events (the
    /// supervisor's `agent_completed` at least) were never delivered and the caller must close
    /// the run itself.
    pub sink_error: Option<String>,
}

/// What the plan works with.
struct Inputs {
    run_id: String,
    question: String,
    now: DateTime<Utc>,
    usage: Arc<dyn OrgUsageQueries>,
    catalog: Arc<PriceCatalog>,
    previous: Option<QuestionPlan>,
    budgets: Option<Arc<dyn OrgBudgets>>,
    llm: Option<Arc<apogee_llm::LlmClient>>,
    history: Vec<Turn>,
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
        previous_plan,
        budgets,
        llm,
        history,
    } = ctx;
    tracing::info!(%run_id, "run started");
    let events = RunEvents::new(run_id.clone(), sink, cancel);
    let inputs = Inputs {
        run_id: run_id.clone(),
        question,
        now,
        usage,
        catalog,
        previous: previous_plan,
        budgets,
        llm,
        history,
    };
    let thread_plan = std::sync::Mutex::new(inputs.previous.clone());
    let inputs = &inputs;
    let thread = &thread_plan;
    let outcome = match supervise(events, |sup| async move {
        let (conclusion, plan) = conclude(&sup, inputs).await?;
        if let Some(p) = plan {
            // A plan a follow-up can refine replaces the thread's; a greeting keeps the last.
            if !p.intent.is_conversation() && p.intent != Intent::DataHelp {
                *thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
            }
        }
        Ok(conclusion)
    })
    .await
    {
        Ok(c) => RunOutcome {
            status: c.status,
            summary: c.summary,
            data: c.data,
            thread_plan: thread_plan.into_inner().unwrap_or_else(|e| e.into_inner()),
            sink_error: None,
        },
        Err(e) => RunOutcome {
            status: AgentStatus::Error,
            summary: "The run stopped: its events could not be delivered.".into(),
            data: Value::Null,
            thread_plan: thread_plan.into_inner().unwrap_or_else(|e| e.into_inner()),
            sink_error: Some(e.0),
        },
    };
    tracing::info!(%run_id, status = ?outcome.status, "run ended");
    outcome
}

async fn conclude(
    sup: &Agent,
    inputs: &Inputs,
) -> Result<(Conclusion, Option<QuestionPlan>), SinkError> {
    let mut found = Findings::default();
    let result = steps(sup, inputs, &mut found).await;
    let mut data = found.to_json();
    if let Some(planner) = found.planner.take() {
        data["planner"] = planner;
    }
    let (status, summary) = match result {
        Ok(summary) => (AgentStatus::Ok, summary),
        Err(StepError::Sink(e)) => return Err(e),
        Err(StepError::Cancelled) => (
            AgentStatus::Cancelled,
            "Cancelled before the analysis finished.".to_string(),
        ),
        Err(StepError::Tool(e)) => (AgentStatus::Error, e.to_string()),
    };
    Ok((
        Conclusion {
            status,
            summary,
            data,
        },
        found.plan,
    ))
}

/// The run's steps; returns the supervisor's summary (the answer's first sentence). What each
/// step found goes into `found` as soon as it has it, so a failed or cancelled run still
/// reports what it had.
async fn steps(sup: &Agent, inputs: &Inputs, found: &mut Findings) -> Result<String, StepError> {
    if let Some(client) = &inputs.llm
        && !crate::question::is_budget_command(
            &inputs.question,
            inputs.now,
            inputs.previous.as_ref(),
        )
        && let Some(lead) = llm_steps(sup, inputs, client, found).await?
    {
        return Ok(lead);
    }
    let usage = &*inputs.usage;
    sup.think("Reading the question first, to plan which analyses to run.")
        .await?;
    let reading = sup
        .child("triage")
        .run(|a| {
            triage::work(
                a,
                &inputs.question,
                inputs.now,
                usage,
                &inputs.catalog,
                inputs.previous.as_ref(),
            )
        })
        .await?;
    let plan = reading.plan;
    found.plan = Some(plan.clone());
    let names = reading.names;

    if plan.intent == Intent::DataHelp {
        sup.think("This is about getting usage data in; handing it to the data helper.")
            .await?;
        return help(sup, inputs, &plan, None, found).await;
    }
    if plan.intent.is_conversation() {
        sup.think("Nothing to measure: answering in a few lines.")
            .await?;
        // The examples are in the answer itself: no follow-ups under it.
        let (answer, _) = match plan.intent {
            Intent::Greeting => conversation::greeting(),
            Intent::Capabilities => conversation::capabilities(),
            Intent::Unsupported => conversation::unsupported(
                plan.unsupported.unwrap_or(crate::plan::Unsupported::Alerts),
            ),
            _ => conversation::unknown(&inputs.question),
        };
        return post(sup, &plan, found, "conversation", answer, Vec::new()).await;
    }
    if plan.intent == Intent::Budget {
        return budget_steps(sup, inputs, &plan, &names, found).await;
    }
    if !plan.unknown_names.is_empty() {
        sup.think("Some names in the question have no usage in the period: saying so, with the names that do.")
            .await?;
        let (answer, suggestions) = conversation::unknown_names(&plan, &names, inputs.now);
        return post(sup, &plan, found, "figure", answer, suggestions).await;
    }
    match plan.intent {
        Intent::Figure => figure_steps(sup, inputs, &plan, found).await,
        Intent::Forecast => {
            sup.think(format!("Plan: data → report. {}", describe(&plan)))
                .await?;
            let f = sup
                .child("data")
                .run(|a| data::forecast(a, usage, &plan, inputs.now))
                .await?;
            found.forecast = Some(f.clone());
            let answer = projection::forecast(&plan, &f, inputs.now);
            let suggestions = follow_ups::suggestions(&plan, None);
            post(sup, &plan, found, "forecast", answer, suggestions).await
        }
        Intent::WhatIf => {
            sup.think(format!("Plan: optimization → report. {}", describe(&plan)))
                .await?;
            let what = plan
                .what_if
                .clone()
                .unwrap_or(crate::plan::WhatIf::BatchApi);
            let w = sup
                .child("optimization")
                .run(|a| optimization::what_if(a, usage, &inputs.catalog, &plan, &what))
                .await?;
            found.what_if = Some(w.clone());
            let answer = projection::what_if(&plan, &w, inputs.now);
            let suggestions = follow_ups::suggestions(&plan, None);
            post(sup, &plan, found, "what_if", answer, suggestions).await
        }
        _ => report_steps(sup, inputs, &plan, found).await,
    }
}

/// The LLM planner's turn: its answer when it has a grounded one (posted through the report
/// agent), else `None` after saying why, and the deterministic steps answer.
async fn llm_steps(
    sup: &Agent,
    inputs: &Inputs,
    client: &Arc<apogee_llm::LlmClient>,
    found: &mut Findings,
) -> Result<Option<String>, StepError> {
    sup.think("An LLM is configured: the planner asks it first, over the same read-only tools.")
        .await?;
    let run = LlmRun {
        run_id: &inputs.run_id,
        client,
        question: &inputs.question,
        history: &inputs.history,
        now: inputs.now,
        usage: &*inputs.usage,
        catalog: &inputs.catalog,
        previous: inputs.previous.as_ref(),
    };
    let answered: Answered = match sup
        .child("planner")
        .run(|a| llm_planner::work(a, &run))
        .await
    {
        Ok(a) => a,
        Err(StepError::Tool(e)) => {
            let why = match &e {
                ToolError::Ungrounded(figures) => {
                    sup.set_answer_note(format!(
                        "_Apogee's own answer: the LLM's answer had figures ({}) that its tool results do not support._",
                        figures.join(", ")
                    ));
                    format!(
                        "its answer had figures ({}) that no tool result supports",
                        figures.join(", ")
                    )
                }
                other => other.to_string(),
            };
            sup.think(format!(
                "The LLM planner could not answer: {why}. Answering with Apogee's own planner instead."
            ))
            .await?;
            found.planner = Some(serde_json::json!({
                "kind": "rules",
                "llm_model": client.config().model,
                "llm_fallback": why,
            }));
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    found.planner = Some(answered.to_json());
    let lead = answered.lead.clone();
    let markdown = answered.markdown;
    sup.child("report")
        .run(|a| report::llm(a, markdown))
        .await?;
    found.shown = Some(Shown {
        kind: "llm",
        lead: lead.clone(),
        chart: serde_json::json!({ "kind": "none" }),
        suggestions: Vec::new(),
    });
    Ok(Some(lead))
}

/// Posts a focused or short answer through the report agent and records how to show it.
async fn post(
    sup: &Agent,
    plan: &QuestionPlan,
    found: &mut Findings,
    kind: &'static str,
    answer: figure::Answer,
    suggestions: Vec<String>,
) -> Result<String, StepError> {
    let chart = answer.chart.clone();
    let posted = sup
        .child("report")
        .run(|a| report::answer(a, plan, kind, move || answer))
        .await?;
    found.shown = Some(Shown {
        kind: answer_kind(plan),
        lead: posted.lead.clone(),
        chart,
        suggestions,
    });
    Ok(posted.lead)
}

/// A budget command: the `budgets` agent carries it out through the org's budgets (for "are we
/// on track", after the `data` agent's month-end forecast of the whole org), then the report.
async fn budget_steps(
    sup: &Agent,
    inputs: &Inputs,
    plan: &QuestionPlan,
    names: &OrgNames,
    found: &mut Findings,
) -> Result<String, StepError> {
    let now = inputs.now;
    let command = plan.budget.clone().unwrap_or(BudgetCommand::List);
    let Some(store) = inputs.budgets.as_deref() else {
        sup.think("There are no budgets to reach in this setting: saying so.")
            .await?;
        let answer = budget_answer::unavailable();
        return post(sup, plan, found, "budget", answer, Vec::new()).await;
    };
    let changes = matches!(
        command,
        BudgetCommand::Set { .. } | BudgetCommand::Remove { .. }
    );
    if changes && !plan.unknown_names.is_empty() {
        sup.think("Some names of the budget's scope have no usage: saying so, rather than set or remove a budget on a guess.")
            .await?;
        let answer = budget_answer::unknown_scope(plan, names, now);
        return post(sup, plan, found, "budget", answer, Vec::new()).await;
    }
    if command == BudgetCommand::OnTrack {
        sup.think("Plan: data → budgets → report. The org's month first, then each budget against its amount.")
            .await?;
        let mut month = plan.clone();
        month.scope = apogee_analytics::Scope::all();
        let usage = &*inputs.usage;
        let f = sup
            .child("data")
            .run(|a| data::forecast(a, usage, &month, now))
            .await?;
        found.forecast = Some(f.clone());
        let result = sup
            .child("budgets")
            .run(|a| budgets::work(a, store, plan, now))
            .await?;
        let list = match result {
            BudgetResult::Listed(l) => l,
            _ => Vec::new(),
        };
        found.budgets = Some(serde_json::json!(
            list.iter().map(status_json).collect::<Vec<_>>()
        ));
        let answer = budget_answer::on_track(&f, &list, now);
        let suggestions = vec![
            "What will we spend by the end of the month?".to_string(),
            "Which feature spends the most this month?".to_string(),
        ];
        return post(sup, plan, found, "budget", answer, suggestions).await;
    }
    sup.think(format!(
        "Plan: budgets → report ({} a budget).",
        match command {
            BudgetCommand::Set { .. } => "set",
            BudgetCommand::Remove { .. } => "remove",
            _ => "list",
        }
    ))
    .await?;
    let result = sup
        .child("budgets")
        .run(|a| budgets::work(a, store, plan, now))
        .await?;
    found.budgets = Some(match &result {
        BudgetResult::Listed(l) | BudgetResult::NoneToRemove(l) => {
            serde_json::json!(l.iter().map(status_json).collect::<Vec<_>>())
        }
        BudgetResult::Set { budget, .. } | BudgetResult::Removed(budget) => {
            serde_json::json!([status_json(budget)])
        }
        BudgetResult::Ambiguous { candidates }
        | BudgetResult::NeedAmount {
            existing: candidates,
        } => {
            serde_json::json!(candidates.iter().map(status_json).collect::<Vec<_>>())
        }
        _ => serde_json::json!([]),
    });
    let suggestions = match &result {
        BudgetResult::Set { .. } | BudgetResult::Removed(_) => vec![
            "What budgets do we have?".to_string(),
            "Are we on track this month?".to_string(),
        ],
        BudgetResult::Listed(l) if !l.is_empty() => vec!["Are we on track this month?".to_string()],
        _ => Vec::new(),
    };
    let answer = budget_answer::render(plan, &result, now);
    post(sup, plan, found, "budget", answer, suggestions).await
}

async fn help(
    sup: &Agent,
    inputs: &Inputs,
    plan: &QuestionPlan,
    asked_calls: Option<i64>,
    found: &mut Findings,
) -> Result<String, StepError> {
    let usage = &*inputs.usage;
    let (coverage, lead) = sup
        .child("data_helper")
        .run(|a| data_helper::work(a, usage, plan, asked_calls, inputs.now))
        .await?;
    found.coverage = Some(coverage);
    found.shown = Some(Shown {
        kind: "help",
        lead,
        chart: serde_json::json!({ "kind": "none" }),
        suggestions: vec!["Analyze my AI costs".into()],
    });
    Ok(match asked_calls {
        Some(0) => format!(
            "No usage recorded in {}; explained how to send usage.",
            plan.period.period().label()
        ),
        _ => "Explained how to send usage to Apogee.".into(),
    })
}

async fn figure_steps(
    sup: &Agent,
    inputs: &Inputs,
    plan: &QuestionPlan,
    found: &mut Findings,
) -> Result<String, StepError> {
    let usage = &*inputs.usage;
    let latency = plan.measures.iter().any(|m| m.is_latency());
    let totals = plan.measures.iter().any(|m| !m.is_latency());
    let agents = match (totals, latency) {
        (true, true) => "data → performance → report",
        (false, true) => "performance → report",
        _ => "data → report",
    };
    sup.think(format!("Plan: {agents}. {}", describe(plan)))
        .await?;
    let mut fig = if totals {
        sup.child("data")
            .run(|a| data::figure(a, usage, &inputs.catalog, plan))
            .await?
    } else {
        FigureData::default()
    };
    if latency {
        fig = sup
            .child("performance")
            .run(|a| performance::work(a, usage, plan, fig))
            .await?;
    }
    found.figure = Some(fig.clone());
    // No usage at all in the period (not just in a scope): how to send some.
    let nothing =
        fig.current.totals.calls == 0 && fig.previous.as_ref().is_none_or(|p| p.totals.calls == 0);
    if nothing && plan.scope.is_all() {
        sup.think("There is no usage in this period; handing over to the data helper.")
            .await?;
        return help(sup, inputs, plan, Some(0), found).await;
    }
    let top = fig.current.groups.first().map(|g| g.key.clone());
    let suggestions = follow_ups::suggestions(plan, top.as_deref());
    let now = inputs.now;
    let answer = figure::render(plan, &fig, now);
    post(sup, plan, found, "figure", answer, suggestions).await
}

async fn report_steps(
    sup: &Agent,
    inputs: &Inputs,
    plan: &QuestionPlan,
    found: &mut Findings,
) -> Result<String, StepError> {
    let usage = &*inputs.usage;
    let steps = match plan.intent {
        Intent::SpikeExplanation => "data → anomaly → optimization → report",
        _ => "data → optimization → report",
    };
    sup.think(format!(
        "Plan: {steps}, over {}.",
        plan.period.period().label()
    ))
    .await?;
    let data = sup
        .child("data")
        .run(|a| data::work(a, usage, &inputs.catalog, plan, inputs.now))
        .await?;
    found.usage = Some(data.clone());
    if data.totals.calls == 0 {
        sup.think("There is no usage to analyse in this period; handing over to the data helper.")
            .await?;
        return help(sup, inputs, plan, Some(0), found).await;
    }
    if plan.intent == Intent::SpikeExplanation {
        found.spike = sup
            .child("anomaly")
            .run(|a| anomaly::work(a, usage, plan, &data))
            .await?;
    }
    let savings = sup
        .child("optimization")
        .run(|a| optimization::work(a, usage, &inputs.catalog, plan, &data))
        .await?;
    found.savings = Some(savings);
    let input = ReportInput {
        plan,
        usage: &data,
        spike: found.spike.as_ref(),
        savings: found.savings.as_ref(),
        now: inputs.now,
    };
    let lead = sup.child("report").run(|a| report::full(a, &input)).await?;
    // A question about one kind of saving gets its own chart under the answer's first sentence
    // instead of the full report's.
    let chart =
        analysis::focus_chart(&input).unwrap_or_else(|| serde_json::json!({ "kind": "report" }));
    found.shown = Some(Shown {
        kind: "report",
        lead: lead.clone(),
        chart,
        suggestions: follow_ups::suggestions(plan, None),
    });
    Ok(lead)
}
