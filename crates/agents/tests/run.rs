//! `apogee_agents::run` end to end over the analytics' in-memory usage and demo dataset: the
//! event protocol (PROTOCOL.md §4 pairing rules) on the golden path, on failure, on
//! cancellation and on a broken sink, and the answer's figures against direct queries.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use apogee_agents::{RunContext, RunOutcome, run};
use apogee_analytics::demo;
use apogee_analytics::{
    BatchCandidate, CostRow, Dimension, FeatureModelCost, Filter, Grouping, InputBand,
    LatencySlice, MemoryUsage, ModelMix, OrgUsageQueries, OutputTail, Period, QueryError,
    RepeatProfile, Scope, TagCount, TrafficProfile, UsageQuery, UsageSlice, UsageTotals,
};
use apogee_protocol::{AgentStatus, EventBody, ToolStatus};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

mod common;

use common::*;

async fn run_with(
    question: &str,
    usage: Arc<dyn OrgUsageQueries>,
    recorder: Arc<Recorder>,
    cancel: CancellationToken,
) -> RunOutcome {
    run(RunContext {
        run_id: RUN_ID.into(),
        question: question.into(),
        now: now(),
        usage,
        catalog: catalog(),
        sink: recorder,
        cancel,
        previous_plan: None,
        budgets: None,
        llm: None,
        history: Vec::new(),
    })
    .await
}

async fn ask(question: &str) -> (RunOutcome, Vec<EventBody>, Option<String>) {
    let recorder = Arc::new(Recorder::default());
    let outcome = run_with(
        question,
        demo_usage(),
        recorder.clone(),
        CancellationToken::new(),
    )
    .await;
    let events = recorder.events();
    assert_well_formed(&events);
    (outcome, events, recorder.answer())
}

fn has_dollar_figure(text: &str) -> bool {
    text.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
}

#[tokio::test]
async fn analyze_my_costs_golden_path() {
    let (outcome, events, answer) = ask("Analyze my AI costs").await;
    assert_eq!(outcome.status, AgentStatus::Ok, "{}", outcome.summary);
    assert_eq!(outcome.sink_error, None);

    let types: HashSet<&str> = events.iter().map(|e| e.type_name()).collect();
    for t in [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ] {
        assert!(types.contains(t), "missing {t}");
    }
    assert_eq!(
        agents_started(&events),
        ["supervisor", "triage", "data", "optimization", "report"]
    );
    assert_eq!(
        tools_called(&events),
        [
            "plan_question",
            "usage_totals",
            "spend_by_model",
            "spend_by_feature",
            "spend_by_day",
            "forecast_month_end",
            "right_size_models",
            "find_duplicate_prompts",
            "find_batchable_traffic",
            "find_prompt_cache_savings",
            "find_output_caps",
            "find_context_tier_savings",
            "compose_report"
        ]
    );
    // Call ids are call_1, call_2, … in order, and every tool succeeded with its data.
    let mut n = 0;
    for e in &events {
        if let EventBody::ToolExecuting { call_id, .. } = e {
            n += 1;
            assert_eq!(call_id, &format!("call_{n}"));
        }
        if let EventBody::ToolCompleted { status, data, .. } = e {
            assert_eq!(*status, ToolStatus::Ok);
            assert!(data.is_some());
        }
        if let EventBody::AgentCompleted { status, .. } = e {
            assert_eq!(*status, AgentStatus::Ok);
        }
    }
    // Every sub-agent says what it does.
    for agent in ["triage", "data", "optimization", "report"] {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, EventBody::AgentThinking { agent: a, .. } if a == agent)),
            "{agent} has no thinking"
        );
    }
    assert!(events.iter().any(|e| matches!(
        e,
        EventBody::AgentThinking { text, .. }
            if text == "Looking at 30 days of usage: 2026-10-27 – 2026-11-25"
    )));

    // The figures are the store's.
    let usage = demo_usage();
    let period = Period::last_days(now(), 30);
    let totals = usage.totals(&period).await.unwrap();
    assert!(totals.calls > 0 && totals.unpriced_calls > 0);
    let month = apogee_analytics::forecast::month_end(&*usage, now())
        .await
        .unwrap();
    assert!(month.forecast.projected > month.forecast.spent);
    assert_eq!(
        outcome.data["forecast"]["projected_nanos"],
        serde_json::json!(month.forecast.projected)
    );
    let answer = answer.expect("the report was posted");
    assert!(
        answer.contains(&totals.cost.display_usd()),
        "{} not in\n{answer}",
        totals.cost.display_usd()
    );
    assert!(answer.contains("| model | calls | cost | share |"));
    assert!(answer.contains("to models not in the price catalog are not included"));
    assert!(answer.contains(demo::UNPRICED_MODEL));

    let data = &outcome.data;
    assert_eq!(data["intent"], "analysis");
    assert_eq!(data["plan"]["intent"], "analysis");
    assert_eq!(data["answer"]["kind"], "report");
    assert!(answer.starts_with(data["answer"]["lead"].as_str().unwrap()));
    assert_eq!(data["period"]["label"], "2026-10-27 – 2026-11-25");
    assert_eq!(data["totals"]["calls"], totals.calls);
    assert_eq!(data["totals"]["cost_nanos"], serde_json::json!(totals.cost));
    assert_eq!(data["totals"]["unpriced_calls"], totals.unpriced_calls);
    let by_model = usage
        .breakdown(&period, Grouping::By(Dimension::Model))
        .await
        .unwrap();
    assert_eq!(keys_costs(&data["by_model"]), keys_costs_rows(&by_model));
    let by_day = usage.breakdown(&period, Grouping::Day).await.unwrap();
    assert_eq!(keys_costs(&data["by_day"]), keys_costs_rows(&by_day));
    assert!(!data["recommendations"].as_array().unwrap().is_empty());

    // The supervisor's final event carries the same data as the outcome.
    match events.last().unwrap() {
        EventBody::AgentCompleted { data: Some(d), .. } => assert_eq!(d, &outcome.data),
        e => panic!("{e:?}"),
    }
}

fn keys_costs(rows: &Value) -> Vec<(String, i128)> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                i128::from(r["cost_nanos"].as_i64().unwrap()),
            )
        })
        .collect()
}

fn keys_costs_rows(rows: &[CostRow]) -> Vec<(String, i128)> {
    rows.iter().map(|r| (r.key.clone(), r.cost.0)).collect()
}

#[tokio::test]
async fn savings_question_yields_ranked_recommendations() {
    let (outcome, events, answer) = ask("How do we cut the bill?").await;
    assert_eq!(outcome.status, AgentStatus::Ok, "{}", outcome.summary);
    assert_eq!(outcome.data["intent"], "savings");
    let recs = outcome.data["recommendations"].as_array().unwrap();
    assert!(!recs.is_empty());
    let savings: Vec<i64> = recs
        .iter()
        .map(|r| r["monthly_saving_nanos"].as_i64().unwrap())
        .collect();
    assert!(savings[0] > 0);
    assert!(
        savings.windows(2).all(|w| w[0] >= w[1]),
        "ranked: {savings:?}"
    );
    assert!(recs.iter().any(|r| r["kind"] == "right_size_model"));
    assert!(recs.iter().any(|r| r["kind"] == "response_cache"));
    assert!(
        recs.iter()
            .all(|r| !r["assumptions"].as_array().unwrap().is_empty())
    );

    let answer = answer.unwrap();
    assert!(answer.starts_with("You could save about"), "{answer}");
    assert!(answer.contains("| recommendation | monthly saving | affected calls | confidence |"));
    assert!(answer.contains("a response cache serves 80%"));
    let total = outcome.data["total_monthly_saving_nanos"].as_i64().unwrap();
    assert_eq!(total, savings.iter().sum::<i64>());
    assert!(answer.contains(&apogee_analytics::Nanos::from(total).display_usd()));
    assert!(tools_called(&events).contains(&"right_size_models"));
}

#[tokio::test]
async fn spike_question_names_the_spike_day_and_its_cause() {
    let spike = demo::spike(&spec()).unwrap();
    let (outcome, events, answer) = ask("Why did spend jump?").await;
    assert_eq!(outcome.status, AgentStatus::Ok, "{}", outcome.summary);
    assert_eq!(
        agents_started(&events),
        [
            "supervisor",
            "triage",
            "data",
            "anomaly",
            "optimization",
            "report"
        ]
    );
    let s = &outcome.data["spike"];
    assert_eq!(s["day"], spike.date.to_string());
    assert_eq!(s["is_spike"], true);
    assert!(s["ratio"].as_f64().unwrap() > 2.0, "{s}");
    assert_eq!(s["feature"]["key"], demo::SPIKE_FEATURE);
    assert_eq!(s["model"]["key"], demo::SPIKE_MODEL);
    let answer = answer.unwrap();
    assert!(
        answer.contains(&format!("Spend on {}", spike.date)),
        "{answer}"
    );
    assert!(
        answer.contains("feature doc-summarizer on claude-sonnet-4"),
        "{answer}"
    );
    assert!(
        answer.find("## What happened").unwrap() < answer.find("## Overview").unwrap(),
        "a spike question leads with the explanation"
    );
    // The day's cost is the store's.
    let day = &outcome.data["by_day"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == spike.date.to_string())
        .unwrap()["cost_nanos"];
    let day: &Value = day;
    assert_eq!(&s["day_cost_nanos"], day);
    assert!(outcome.summary.contains(&spike.date.to_string()));
    // The median/MAD check finds the same day, and the week is compared with the one before.
    let outliers = tool_data(&events, "detect_anomalies");
    assert_eq!(
        outliers["anomalies"][0]["day"],
        spike.date.to_string(),
        "{outliers}"
    );
    let week = tool_data(&events, "compare_periods");
    assert!(week["current_nanos"].as_i64().unwrap() > 0, "{week}");
}

/// The `data` of the first completed call of `tool`.
fn tool_data(events: &[EventBody], name: &str) -> Value {
    events
        .iter()
        .find_map(|e| match e {
            EventBody::ToolCompleted { tool, data, .. } if tool == name => data.clone(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no completed {name}"))
}

#[tokio::test]
async fn latency_question_gets_the_performance_agent_and_a_ranking() {
    let (outcome, events, answer) = ask("Which model is slowest? Show p95 latency").await;
    assert_eq!(outcome.status, AgentStatus::Ok, "{}", outcome.summary);
    // Latency is measured, and nothing else runs: no breakdowns, no recommenders.
    assert_eq!(
        agents_started(&events),
        ["supervisor", "triage", "performance", "report"]
    );
    assert_eq!(
        tools_called(&events),
        ["plan_question", "measure_latency", "compose_answer"]
    );
    // The ranking is the reference query's rows, slowest p95 first.
    let mut rows = demo_usage()
        .latency_by_model(&Period::last_days(now(), 30))
        .await
        .unwrap();
    rows.retain(|r| r.stats.p95_ms.is_some());
    rows.sort_by(|a, b| b.stats.p95_ms.cmp(&a.stats.p95_ms).then(a.key.cmp(&b.key)));
    let slowest = &rows[0];
    let latency = outcome.data["latency"].as_array().unwrap();
    assert!(
        latency
            .iter()
            .any(|r| r["key"] == slowest.key.as_str()
                && r["p95_ms"].as_i64() == slowest.stats.p95_ms)
    );
    let answer = answer.unwrap();
    let p95 = slowest.stats.p95_ms.unwrap();
    assert!(
        answer.starts_with(&format!(
            "{} was the slowest model by p95 in the last 30 days (Oct 27 – Nov 25): {} ms.",
            slowest.key,
            count(p95)
        )),
        "{answer}"
    );
    assert_eq!(outcome.data["answer"]["chart"]["kind"], "ranking");
}

/// "Why is doc-summarizer so expensive?": its spend, its share of calls beside its share of
/// spend, and its calls' size against the org's, each from the reference queries.
#[tokio::test]
async fn a_why_question_takes_the_slices_cost_per_call_apart() {
    let (outcome, _, answer) = ask("Why is doc-summarizer so expensive?").await;
    assert_eq!(outcome.status, AgentStatus::Ok, "{}", outcome.summary);
    assert_eq!(outcome.data["plan"]["drivers"], true);
    let totals = |scope: Scope| async move {
        demo_usage()
            .aggregate(&UsageQuery {
                period: Period::last_days(now(), 30),
                scope,
                group_by: None,
            })
            .await
            .unwrap()
            .totals
    };
    let feature = totals(Scope::all().and(Filter::is(Dimension::Feature, "doc-summarizer"))).await;
    let org = totals(Scope::all()).await;
    let tokens_per_call = |t: &UsageTotals| {
        let tokens = t.input_tokens + t.output_tokens - t.unpriced_tokens;
        (tokens as f64 / (t.calls - t.unpriced_calls) as f64).round() as i64
    };
    let answer = answer.unwrap();
    assert!(
        answer.starts_with(&format!(
            "doc-summarizer cost {} in the last 30 days (Oct 27 – Nov 25), {:.1}% of spend from {:.1}% of calls.",
            feature.cost.display_usd(),
            feature.cost.0 as f64 / org.cost.0 as f64 * 100.0,
            feature.calls as f64 / org.calls as f64 * 100.0,
        )),
        "{answer}"
    );
    assert!(
        answer.contains(&format!(
            "they use {} tokens each against {}",
            count(tokens_per_call(&feature)),
            count(tokens_per_call(&org))
        )),
        "{answer}"
    );
}

fn count(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[tokio::test]
async fn named_weekday_is_compared_with_its_window() {
    let spike = demo::spike(&spec()).unwrap();
    let weekday = match chrono::Datelike::weekday(&spike.date) {
        chrono::Weekday::Mon => "Monday",
        chrono::Weekday::Tue => "Tuesday",
        chrono::Weekday::Wed => "Wednesday",
        chrono::Weekday::Thu => "Thursday",
        chrono::Weekday::Fri => "Friday",
        chrono::Weekday::Sat => "Saturday",
        chrono::Weekday::Sun => "Sunday",
    };
    // `now` is within a week after the spike, so the weekday names the spike date.
    assert!((now().date_naive() - spike.date).num_days() < 7);
    let (outcome, _, answer) = ask(&format!("What happened on {weekday}?")).await;
    assert_eq!(outcome.status, AgentStatus::Ok, "{}", outcome.summary);
    assert_eq!(outcome.data["intent"], "spike_explanation");
    assert_eq!(outcome.data["focus_day"], spike.date.to_string());
    let from: DateTime<Utc> = outcome.data["period"]["from"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let to: DateTime<Utc> = outcome.data["period"]["to"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!((to - from).num_days(), 14);
    assert_eq!(to.date_naive(), spike.date.succ_opt().unwrap());
    assert_eq!(outcome.data["spike"]["day"], spike.date.to_string());
    assert_eq!(outcome.data["spike"]["requested"], true);
    assert!(
        answer
            .unwrap()
            .starts_with(&format!("Spend on {} ({weekday})", spike.date))
    );
}

#[tokio::test]
async fn empty_usage_gets_the_data_helper_without_figures() {
    let empty: Arc<dyn OrgUsageQueries> = Arc::new(MemoryUsage::new(Vec::new(), catalog()));
    let recorder = Arc::new(Recorder::default());
    let outcome = run_with(
        "Analyze my AI costs",
        empty,
        recorder.clone(),
        CancellationToken::new(),
    )
    .await;
    let events = recorder.events();
    assert_eq!(assert_well_formed(&events), AgentStatus::Ok);
    assert_eq!(outcome.status, AgentStatus::Ok);
    assert_eq!(
        agents_started(&events),
        ["supervisor", "triage", "data", "data_helper"]
    );
    assert_eq!(
        tools_called(&events),
        ["plan_question", "usage_totals", "check_data_coverage"]
    );
    let answer = recorder.answer().unwrap();
    assert!(answer.contains("POST /api/usage"), "{answer}");
    assert!(answer.contains("curl"));
    assert!(answer.contains("apogee demo-data"));
    assert!(!has_dollar_figure(&answer), "{answer}");
    assert!(!has_dollar_figure(&outcome.summary));
    assert_eq!(outcome.data["coverage"]["calls"], 0);
}

#[tokio::test]
async fn usage_outside_the_period_is_pointed_to() {
    // The demo history ends on 2026-11-25; ask about a week later.
    let later = Utc.with_ymd_and_hms(2026, 12, 10, 12, 0, 0).unwrap();
    let recorder = Arc::new(Recorder::default());
    let outcome = run(RunContext {
        run_id: RUN_ID.into(),
        question: "What did we spend in the last 7 days?".into(),
        now: later,
        usage: demo_usage(),
        catalog: catalog(),
        sink: recorder.clone(),
        cancel: CancellationToken::new(),
        previous_plan: None,
        budgets: None,
        llm: None,
        history: Vec::new(),
    })
    .await;
    assert_eq!(assert_well_formed(&recorder.events()), AgentStatus::Ok);
    let answer = recorder.answer().unwrap();
    let first = spec().start().unwrap().date_naive();
    assert!(
        answer.contains(&format!("between {first} and 2026-11-25")),
        "{answer}"
    );
    assert!(!has_dollar_figure(&answer));
    assert_eq!(outcome.data["coverage"]["calls"], 20_000);
}

#[tokio::test]
async fn how_to_send_usage_is_data_help() {
    let (outcome, events, answer) = ask("How do I send usage data?").await;
    assert_eq!(outcome.status, AgentStatus::Ok);
    assert_eq!(outcome.data["intent"], "data_help");
    assert_eq!(
        agents_started(&events),
        ["supervisor", "triage", "data_helper"]
    );
    let answer = answer.unwrap();
    assert!(answer.contains("POST /api/usage"));
    assert!(answer.contains("20,000 calls recorded"), "{answer}");
}

fn open_sub_agents(events: &[EventBody]) -> Vec<String> {
    let mut open = Vec::new();
    for e in events {
        match e {
            EventBody::AgentStarted { agent, .. } if agent != "supervisor" => {
                open.push(agent.clone())
            }
            EventBody::AgentCompleted { agent, .. } => open.retain(|a| a != agent),
            _ => {}
        }
    }
    open
}

/// The events of a complete golden-path run, to cancel or break it at every step.
async fn golden_events(question: &str) -> Vec<EventBody> {
    ask(question).await.1
}

#[tokio::test]
async fn cancellation_at_every_step_keeps_pairs() {
    for question in ["Analyze my AI costs", "Why did spend jump?"] {
        let full = golden_events(question).await;
        let report_done = full
            .iter()
            .position(|e| matches!(e, EventBody::AgentCompleted { agent, .. } if agent == "report"))
            .unwrap();
        for n in 1..full.len() {
            let cancel = CancellationToken::new();
            let recorder = Arc::new(Recorder {
                cancel_after: Some((n, cancel.clone())),
                ..Recorder::default()
            });
            let outcome = run_with(question, demo_usage(), recorder.clone(), cancel).await;
            let events = recorder.events();
            let status = assert_well_formed(&events);
            assert_eq!(status, outcome.status);
            let kinds = |evs: &[EventBody]| evs.iter().map(|e| e.type_name()).collect::<Vec<_>>();
            assert_eq!(
                kinds(&events[..n]),
                kinds(&full[..n]),
                "same run up to the cancel"
            );
            // Once the report agent has ended there is nothing left to cancel.
            let want = if n <= report_done {
                AgentStatus::Cancelled
            } else {
                AgentStatus::Ok
            };
            assert_eq!(status, want, "cancel after {n} events");
            if want == AgentStatus::Cancelled {
                assert_eq!(outcome.summary, "Cancelled before the analysis finished.");
            }
            // Nothing starts after the cancel, and the sub-agent open at that moment ends
            // cancelled.
            assert!(events[n..].iter().all(|e| !matches!(
                e,
                EventBody::AgentStarted { .. } | EventBody::ToolExecuting { .. }
            )));
            for open in open_sub_agents(&events[..n]) {
                assert!(
                    events[n..].iter().any(|e| matches!(
                        e,
                        EventBody::AgentCompleted { agent, status: AgentStatus::Cancelled, .. }
                            if *agent == open
                    )),
                    "{open} open at cancel after {n} events"
                );
            }
            // A cancel fired as a tool started ends that tool as cancelled.
            if matches!(events[n - 1], EventBody::ToolExecuting { .. }) {
                assert!(matches!(
                    &events[n],
                    EventBody::ToolCompleted { status: ToolStatus::Error, summary, .. }
                        if summary == "cancelled"
                ));
            }
        }
    }
}

#[tokio::test]
async fn cancelled_before_start_still_opens_and_closes() {
    let cancel = CancellationToken::new();
    cancel.cancel();
    let recorder = Arc::new(Recorder::default());
    let outcome = run_with(
        "Analyze my AI costs",
        demo_usage(),
        recorder.clone(),
        cancel,
    )
    .await;
    let events = recorder.events();
    assert_eq!(assert_well_formed(&events), AgentStatus::Cancelled);
    assert_eq!(outcome.status, AgentStatus::Cancelled);
    assert_eq!(agents_started(&events), ["supervisor"]);
    assert!(recorder.answer().is_none());
}

/// Usage whose totals never answer, to cancel a tool while it runs.
struct Stuck;

#[async_trait]
impl OrgUsageQueries for Stuck {
    async fn aggregate(&self, _: &UsageQuery) -> Result<UsageSlice, QueryError> {
        std::future::pending().await
    }
    async fn latency(&self, _: &UsageQuery) -> Result<LatencySlice, QueryError> {
        std::future::pending().await
    }
    async fn model_mix(&self, _: &UsageQuery) -> Result<Vec<ModelMix>, QueryError> {
        std::future::pending().await
    }
    async fn tags(&self, _: &Period) -> Result<Vec<TagCount>, QueryError> {
        std::future::pending().await
    }
    async fn traffic_profile(
        &self,
        _: &Period,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<TrafficProfile, QueryError> {
        std::future::pending().await
    }
    async fn repeated_prompts(&self, _: &Period) -> Result<RepeatProfile, QueryError> {
        std::future::pending().await
    }
    async fn batch_candidates(&self, _: &Period) -> Result<Vec<BatchCandidate>, QueryError> {
        std::future::pending().await
    }
    async fn breakdown_feature_model(
        &self,
        _: &Period,
    ) -> Result<Vec<FeatureModelCost>, QueryError> {
        std::future::pending().await
    }
    async fn output_tails(&self, _: &Period, _: i64) -> Result<Vec<OutputTail>, QueryError> {
        std::future::pending().await
    }
    async fn input_band(
        &self,
        _: &Period,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<InputBand, QueryError> {
        std::future::pending().await
    }
}

/// On a paused clock (time moves only when every task waits), so the tool's measured
/// duration is exactly the time from its start to the cancel.
#[tokio::test(start_paused = true)]
async fn cancel_interrupts_a_running_tool() {
    let cancel = CancellationToken::new();
    let recorder = Arc::new(Recorder::default());
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.cancel();
    });
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        run_with(
            "Analyze my AI costs",
            Arc::new(Stuck),
            recorder.clone(),
            cancel,
        ),
    )
    .await
    .expect("the run ends once cancelled");
    let events = recorder.events();
    assert_eq!(assert_well_formed(&events), AgentStatus::Cancelled);
    assert_eq!(outcome.status, AgentStatus::Cancelled);
    assert!(events.iter().any(|e| matches!(
        e,
        EventBody::ToolCompleted { tool, status: ToolStatus::Error, summary, duration_ms, .. }
            if tool == "usage_totals" && summary == "cancelled" && *duration_ms == 50
    )));
    assert_eq!(agent_status(&events, "data"), Some(AgentStatus::Cancelled));
}

/// Demo usage where chosen queries fail.
struct Failing {
    inner: Arc<MemoryUsage>,
    totals: bool,
    repeats: bool,
}

fn backend() -> QueryError {
    QueryError::Backend("database is locked".into())
}

#[async_trait]
impl OrgUsageQueries for Failing {
    async fn totals(&self, p: &Period) -> Result<UsageTotals, QueryError> {
        if self.totals {
            return Err(backend());
        }
        self.inner.totals(p).await
    }
    async fn aggregate(&self, q: &UsageQuery) -> Result<UsageSlice, QueryError> {
        self.inner.aggregate(q).await
    }
    async fn latency(&self, q: &UsageQuery) -> Result<LatencySlice, QueryError> {
        self.inner.latency(q).await
    }
    async fn model_mix(&self, q: &UsageQuery) -> Result<Vec<ModelMix>, QueryError> {
        self.inner.model_mix(q).await
    }
    async fn tags(&self, p: &Period) -> Result<Vec<TagCount>, QueryError> {
        self.inner.tags(p).await
    }
    async fn traffic_profile(
        &self,
        p: &Period,
        m: &str,
        i: i64,
        o: i64,
    ) -> Result<TrafficProfile, QueryError> {
        self.inner.traffic_profile(p, m, i, o).await
    }
    async fn repeated_prompts(&self, p: &Period) -> Result<RepeatProfile, QueryError> {
        if self.repeats {
            return Err(backend());
        }
        self.inner.repeated_prompts(p).await
    }
    async fn batch_candidates(&self, p: &Period) -> Result<Vec<BatchCandidate>, QueryError> {
        self.inner.batch_candidates(p).await
    }
    async fn breakdown_feature_model(
        &self,
        p: &Period,
    ) -> Result<Vec<FeatureModelCost>, QueryError> {
        self.inner.breakdown_feature_model(p).await
    }
    async fn output_tails(&self, p: &Period, pct: i64) -> Result<Vec<OutputTail>, QueryError> {
        self.inner.output_tails(p, pct).await
    }
    async fn input_band(
        &self,
        p: &Period,
        m: &str,
        a: i64,
        u: i64,
    ) -> Result<InputBand, QueryError> {
        self.inner.input_band(p, m, a, u).await
    }
}

#[tokio::test]
async fn failing_usage_ends_in_error_with_every_step_closed() {
    let usage = Arc::new(Failing {
        inner: demo_usage(),
        totals: true,
        repeats: false,
    });
    let recorder = Arc::new(Recorder::default());
    let outcome = run_with(
        "Analyze my AI costs",
        usage,
        recorder.clone(),
        CancellationToken::new(),
    )
    .await;
    let events = recorder.events();
    assert_eq!(assert_well_formed(&events), AgentStatus::Error);
    assert_eq!(outcome.status, AgentStatus::Error);
    assert_eq!(
        outcome.summary,
        "Could not read usage data: usage query failed: database is locked"
    );
    assert_eq!(agent_status(&events, "data"), Some(AgentStatus::Error));
    assert!(events.iter().any(|e| matches!(
        e,
        EventBody::ToolCompleted { tool, status: ToolStatus::Error, .. } if tool == "usage_totals"
    )));
    assert!(recorder.answer().is_none());
    // What was found before the failure is still reported.
    assert_eq!(outcome.data["intent"], "analysis");
}

#[tokio::test]
async fn a_late_failure_keeps_earlier_results() {
    let usage = Arc::new(Failing {
        inner: demo_usage(),
        totals: false,
        repeats: true,
    });
    let recorder = Arc::new(Recorder::default());
    let outcome = run_with(
        "How do we cut the bill?",
        usage,
        recorder.clone(),
        CancellationToken::new(),
    )
    .await;
    let events = recorder.events();
    assert_eq!(assert_well_formed(&events), AgentStatus::Error);
    assert_eq!(agent_status(&events, "data"), Some(AgentStatus::Ok));
    assert_eq!(
        agent_status(&events, "optimization"),
        Some(AgentStatus::Error)
    );
    assert_eq!(agent_status(&events, "report"), None);
    assert!(outcome.summary.starts_with("Could not read usage data"));
    assert!(outcome.data["totals"]["calls"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn an_answer_that_cannot_be_stored_fails_the_report() {
    let recorder = Arc::new(Recorder {
        fail_answer: true,
        ..Recorder::default()
    });
    let outcome = run_with(
        "Analyze my AI costs",
        demo_usage(),
        recorder.clone(),
        CancellationToken::new(),
    )
    .await;
    let events = recorder.events();
    assert_eq!(assert_well_formed(&events), AgentStatus::Error);
    assert_eq!(agent_status(&events, "report"), Some(AgentStatus::Error));
    assert_eq!(
        outcome.summary,
        "Could not store the answer: event sink failed: message store is full"
    );
    assert_eq!(outcome.sink_error, None);
}

#[tokio::test]
async fn a_broken_sink_stops_the_run() {
    let full = golden_events("Analyze my AI costs").await;
    for n in 0..full.len() {
        let recorder = Arc::new(Recorder {
            fail_after: Some(n),
            ..Recorder::default()
        });
        let outcome = run_with(
            "Analyze my AI costs",
            demo_usage(),
            recorder.clone(),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(outcome.status, AgentStatus::Error);
        assert_eq!(outcome.sink_error.as_deref(), Some("stream is gone"));
        assert_eq!(recorder.events().len(), n);
        // Nothing more is tried once the sink failed.
        assert_eq!(*recorder.emit_attempts.lock().unwrap(), n + 1);
    }
}

#[tokio::test]
async fn the_run_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let fut = run(RunContext {
        run_id: RUN_ID.into(),
        question: "hi".into(),
        now: now(),
        usage: demo_usage(),
        catalog: catalog(),
        sink: Arc::new(Recorder::default()),
        cancel: CancellationToken::new(),
        previous_plan: None,
        budgets: None,
        llm: None,
        history: Vec::new(),
    });
    assert_send(&fut);
    let outcome = tokio::spawn(fut).await.unwrap();
    assert_eq!(outcome.status, AgentStatus::Ok);
    assert_eq!(outcome.data["intent"], "greeting");
}

#[test]
fn spike_date_is_the_documented_one() {
    // The demo module header: 6 + seed % 4 days before `end`.
    assert_eq!(
        demo::spike(&spec()).unwrap().date,
        NaiveDate::from_ymd_opt(2026, 11, 19).unwrap()
    );
}

#[tokio::test]
async fn model_selection_gets_the_models_and_right_sizing() {
    let (outcome, events, answer) = ask("Which model should we use for support-bot?").await;
    assert_eq!(outcome.status, AgentStatus::Ok, "{}", outcome.summary);
    assert_eq!(outcome.data["intent"], "model_selection");
    assert_eq!(
        agents_started(&events),
        ["supervisor", "triage", "data", "optimization", "report"]
    );
    let tools = tools_called(&events);
    assert!(tools.contains(&"spend_by_model") && tools.contains(&"right_size_models"));
    assert!(answer.expect("posted").starts_with("You spent"));
}

#[tokio::test]
async fn a_user_figure_is_filtered_and_an_unknown_user_is_said_to_have_no_usage() {
    let user = "demo-user-03";
    let (outcome, events, answer) =
        ask(&format!("How much did user {user} spend last week?")).await;
    assert_eq!(outcome.status, AgentStatus::Ok, "{}", outcome.summary);
    assert_eq!(outcome.data["user"], user);
    assert_eq!(outcome.data["user_filter_applied"], true);
    assert_eq!(
        tools_called(&events),
        [
            "read_org_names",
            "plan_question",
            "measure_usage",
            "measure_usage",
            "measure_usage",
            "compose_answer"
        ]
    );
    // Last week is the calendar week before the one of `now`: Nov 16–22.
    let last_week = Period::new(
        Utc.with_ymd_and_hms(2026, 11, 16, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap(),
    );
    let mine = demo_usage()
        .aggregate(&UsageQuery {
            period: last_week,
            scope: Scope::all().and(Filter::is(Dimension::User, user)),
            group_by: None,
        })
        .await
        .unwrap()
        .totals;
    let answer = answer.expect("posted");
    assert!(
        answer.starts_with(&format!(
            "User {user} cost {} last week (Nov 16–22)",
            mine.cost.display_usd()
        )),
        "{answer}"
    );
    assert_eq!(
        outcome.data["totals"]["cost_nanos"],
        mine.cost.to_i64().unwrap()
    );
    // A user without usage is said to have none, with the users that do.
    let (outcome, events, answer) = ask("costs for user bob last week").await;
    assert_eq!(outcome.data["plan"]["unknown_names"][0]["typed"], "bob");
    assert!(!tools_called(&events).contains(&"measure_usage"));
    let answer = answer.unwrap();
    assert!(
        answer.starts_with("I found no usage for user bob last week"),
        "{answer}"
    );
    assert!(answer.contains("Users with usage then: "), "{answer}");
}

/// Asks `question` after `previous` (a plan) in the same thread.
async fn ask_after(
    question: &str,
    previous: Option<apogee_agents::QuestionPlan>,
) -> (RunOutcome, Vec<EventBody>, Option<String>) {
    let recorder = Arc::new(Recorder::default());
    let outcome = run(RunContext {
        run_id: RUN_ID.into(),
        question: question.into(),
        now: now(),
        usage: demo_usage(),
        catalog: catalog(),
        sink: recorder.clone(),
        cancel: CancellationToken::new(),
        previous_plan: previous,
        budgets: None,
        llm: None,
        history: Vec::new(),
    })
    .await;
    let events = recorder.events();
    assert_well_formed(&events);
    (outcome, events, recorder.answer())
}

#[tokio::test]
async fn a_figure_runs_only_the_tools_it_needs() {
    let (outcome, events, answer) = ask("Which feature spends the most on gpt-4o?").await;
    assert_eq!(outcome.status, AgentStatus::Ok, "{}", outcome.summary);
    assert_eq!(
        agents_started(&events),
        ["supervisor", "triage", "data", "report"]
    );
    let tools = tools_called(&events);
    assert_eq!(
        tools,
        [
            "read_org_names",
            "plan_question",
            "measure_usage",
            "compose_answer"
        ]
    );
    let period = Period::last_days(now(), 30);
    let rows = demo_usage()
        .aggregate(&UsageQuery {
            period,
            scope: Scope::all().and(Filter::is(Dimension::Model, "gpt-4o")),
            group_by: Some(Grouping::By(Dimension::Feature)),
        })
        .await
        .unwrap();
    let top = &rows.rows[0];
    let answer = answer.unwrap();
    assert!(
        answer.starts_with(&format!(
            "{} spent the most on gpt-4o in the last 30 days (Oct 27 – Nov 25): {}",
            top.key,
            top.totals.cost.display_usd()
        )),
        "{answer}"
    );
    assert!(!answer.contains("## "), "no report sections: {answer}");
    assert_eq!(outcome.data["answer"]["kind"], "figure");
    assert!(
        !outcome.data["answer"]["suggestions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn conversation_moves_answer_in_a_few_lines_without_reading_usage() {
    for (question, intent, starts) in [
        ("hello", "greeting", "Hello!"),
        ("What can you do?", "capabilities", "I answer questions"),
        (
            "email me when spend goes over $1500 a month",
            "unsupported",
            "I can't set up alerts",
        ),
        (
            "what's the weather in Paris",
            "unknown",
            "I can't answer that yet",
        ),
        ("asdf qwerty zxcv", "unknown", "I can't answer that yet"),
    ] {
        let (outcome, events, answer) = ask(question).await;
        assert_eq!(outcome.status, AgentStatus::Ok, "{question}");
        assert_eq!(outcome.data["intent"], intent, "{question}");
        assert_eq!(
            agents_started(&events),
            ["supervisor", "triage", "report"],
            "{question}"
        );
        // Words that could be names are looked up; nothing is measured.
        let tools = tools_called(&events);
        assert!(
            tools
                .iter()
                .all(|t| ["read_org_names", "plan_question", "compose_answer"].contains(t)),
            "{question}: {tools:?}"
        );
        if intent != "unknown" {
            assert_eq!(tools, ["plan_question", "compose_answer"], "{question}");
        }
        let answer = answer.unwrap();
        assert!(answer.starts_with(starts), "{question}: {answer}");
        assert!(answer.lines().count() <= 12, "{question}: {answer}");
        // No figure: a dollar sign only in an example question.
        let said: String = answer.lines().filter(|l| !l.starts_with("- “")).collect();
        assert!(!has_dollar_figure(&said), "{question}: {answer}");
        assert!(!answer.contains("## "), "{question}: {answer}");
    }
}

#[tokio::test]
async fn a_follow_up_refines_the_previous_plan() {
    let (first, _, _) = ask_after("How much did gpt-4o cost last week?", None).await;
    let plan: apogee_agents::QuestionPlan =
        serde_json::from_value(first.data["plan"].clone()).unwrap();
    assert_eq!(first.thread_plan.as_ref(), Some(&plan));
    let (second, _, answer) = ask_after("and claude-sonnet-4?", Some(plan.clone())).await;
    assert_eq!(second.data["plan"]["refines_previous"], true);
    assert_eq!(second.data["model"], "claude-sonnet-4");
    assert_eq!(second.data["plan"]["period"], first.data["plan"]["period"]);
    assert!(answer.unwrap().starts_with("claude-sonnet-4 cost $"));
    let (third, _, answer) =
        ask_after("break that down by feature", second.thread_plan.clone()).await;
    assert_eq!(third.data["plan"]["group_by"], "feature");
    assert_eq!(third.data["model"], "claude-sonnet-4");
    assert!(answer.unwrap().contains("| feature |"));
    // A greeting in between keeps the thread's plan for the next follow-up.
    let (hello, _, _) = ask_after("thanks!", third.thread_plan.clone()).await;
    assert_eq!(hello.thread_plan, third.thread_plan);
}

#[tokio::test]
async fn a_what_if_prices_the_move_on_the_same_tokens() {
    let (outcome, events, answer) = ask(
        "What would we save by moving doc-summarizer from claude-sonnet-4 to claude-3-5-haiku?",
    )
    .await;
    assert_eq!(outcome.status, AgentStatus::Ok, "{}", outcome.summary);
    assert_eq!(
        agents_started(&events),
        ["supervisor", "triage", "optimization", "report"]
    );
    assert!(tools_called(&events).contains(&"price_model_move"));
    let w = &outcome.data["what_if"];
    let saving = w["saving_nanos"].as_i64().unwrap();
    assert!(saving > 0, "{w}");
    let answer = answer.unwrap();
    assert!(
        answer.starts_with(
            "Moving doc-summarizer from claude-sonnet-4 to claude-3-5-haiku would have cost $"
        ),
        "{answer}"
    );
    assert!(
        answer.contains(&apogee_analytics::Nanos::from(saving).display_usd()),
        "{answer}"
    );
}
