//! The LLM planner end to end over the real WebSocket: the `apogee` binary configured with a
//! fake OpenAI-compatible server on loopback (real HTTP and SSE, scripted in this process).
//! The five events with the model's tool arguments and streamed thinking, the grounded answer,
//! the same question answered by the rules with the LLM unset, a cancel dropping the model's
//! stream, and Apogee's own LLM calls in `GET /api/costs` under `apogee-assistant`.

mod common;

use std::time::Duration;

use apogee_llm::fake::{self, FakeLlm, Reply};
use common::*;
use serde_json::{Value, json};

const QUESTION: &str = "How much did we spend in the last 7 days?";

/// Asks `question` on a fresh thread; returns the run's events.
async fn ask(c: &mut Client, id: &str, question: &str) -> Vec<Value> {
    c.ask(id, question, None).await;
    let ack = c.next().await.unwrap();
    assert_eq!(ack["type"], "message_ack", "{ack}");
    let run_id = ack["run_id"].as_str().unwrap().to_string();
    let events = c.until_run_end(&run_id).await;
    assert_run_well_formed(&events);
    events
}

fn answer(events: &[Value]) -> String {
    events
        .iter()
        .find(|e| e["type"] == "message_created" && e["message"]["role"] == "assistant")
        .and_then(|e| e["message"]["content"].as_str())
        .expect("assistant answer")
        .to_string()
}

/// Whether the supervisor said `text` in one of its thoughts.
fn supervisor_thought(events: &[Value], text: &str) -> bool {
    events.iter().any(|e| {
        e["type"] == "agent_thinking"
            && e["agent"] == "supervisor"
            && e["text"].as_str().is_some_and(|t| t.contains(text))
    })
}

fn llm_env(fake: &FakeLlm) -> [(&str, &str); 2] {
    [
        ("APOGEE_LLM_BASE_URL", fake.base_url.as_str()),
        ("APOGEE_LLM_MODEL", FAKE_LLM_MODEL),
    ]
}

#[tokio::test]
async fn a_question_runs_end_to_end_with_the_llm_planner_and_by_the_rules_without() {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 2_000).await;

    // The LLM unset: the deterministic answer, as before.
    let rules = Server::start(dir.path(), &[]).await;
    let mut c = rules.ws("?user=alice").await;
    c.ready().await;
    let events = ask(&mut c, "q0", QUESTION).await;
    let end = events.last().unwrap();
    assert_eq!(end["data"]["plan"]["intent"], "figure");
    assert!(end["data"].get("planner").is_none(), "{end}");
    assert!(events.iter().all(|e| e["agent"] != "planner"));
    let deterministic_calls = end["data"]["totals"]["calls"].as_i64().unwrap();
    drop(c);
    assert!(rules.terminate().await.success());

    let fake = FakeLlm::start(fake::analyst).await;
    let server = Server::start(dir.path(), &llm_env(&fake)).await;
    let mut c = server.ws("?user=alice").await;
    c.ready().await;
    let events = ask(&mut c, "q1", QUESTION).await;
    // The five events.
    for kind in [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ] {
        assert!(events.iter().any(|e| e["type"] == kind), "no {kind}");
    }
    // The tools the model chose, with the arguments it sent, run by the planner agent.
    let executing: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "tool_executing" && e["agent"] == "planner")
        .collect();
    let tools: Vec<&str> = executing
        .iter()
        .map(|e| e["tool"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["plan_question", "measure_usage"]);
    assert_eq!(executing[0]["args"], json!({ "question": QUESTION }));
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    let sent: Value = serde_json::from_str(
        requests[2].messages()[4]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(executing[1]["args"], sent);
    // The model's streamed text, as the planner's thinking.
    let thinking: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "agent_thinking" && e["agent"] == "planner")
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(
        thinking.contains(&"Let me read the question first."),
        "{thinking:?}"
    );
    // The grounded answer: the measurement the model was given, as it wrote it.
    let measured = events
        .iter()
        .find(|e| e["type"] == "tool_completed" && e["tool"] == "measure_usage")
        .unwrap();
    let totals = &measured["data"]["totals"];
    let want = format!(
        "Spend in the last 7 days was ${:.2} across {} calls.",
        totals["cost_usd"].as_f64().unwrap(),
        totals["calls"]
    );
    assert_eq!(answer(&events), want);
    assert!(thinking.contains(&want.as_str()));
    let end = events.last().unwrap();
    assert_eq!(end["status"], "ok");
    assert_eq!(end["data"]["planner"]["kind"], "llm");
    assert_eq!(end["data"]["answer"]["kind"], "llm");
    // The org's usage now holds the assistant's own two calls made before that measurement.
    assert_eq!(totals["calls"].as_i64().unwrap(), deterministic_calls + 2);
    // The model saw the question as a user turn and fixed text as the system prompt.
    assert_eq!(requests[0].question(), QUESTION);
    assert!(!requests[0].contents("system")[0].contains("support-bot"));
}

#[tokio::test]
async fn the_llm_calls_of_a_run_appear_in_api_costs_under_apogee_assistant() {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 500).await;
    let fake = FakeLlm::start(fake::analyst).await;
    let server = Server::start(dir.path(), &llm_env(&fake)).await;
    let path = "/api/costs?period=24h&feature=apogee-assistant&group_by=model";
    let (status, before) = get_json(&server.addr, path, "bob").await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["totals"]["calls"], 0);
    let mut c = server.ws("?user=bob").await;
    c.ready().await;
    ask(&mut c, "q1", QUESTION).await;
    let (status, after) = get_json(&server.addr, path, "bob").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["totals"]["calls"], 3, "{after}");
    let rows = after["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{after}");
    assert_eq!(rows[0]["key"], FAKE_LLM_MODEL);
    // Priced from the catalog like any other traffic: 800 + 800 + 900 input tokens.
    assert!(
        after["totals"]["cost_usd"].as_f64().unwrap() > 0.0,
        "{after}"
    );
    assert_eq!(after["totals"]["unpriced_calls"], 0);
    assert_eq!(after["totals"]["input_tokens"], 2_500);
    let (_, by_feature) = get_json(
        &server.addr,
        "/api/costs?period=24h&group_by=feature",
        "bob",
    )
    .await;
    assert!(
        by_feature["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["key"] == "apogee-assistant" && r["calls"] == 3),
        "{by_feature}"
    );
}

#[tokio::test]
async fn a_failing_model_ends_in_a_complete_run_answered_by_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 500).await;
    let fake = FakeLlm::start(|_| Reply::status(503, "the model is overloaded")).await;
    let mut env = llm_env(&fake).to_vec();
    env.push(("APOGEE_LLM_MAX_RETRIES", "1"));
    env.push(("APOGEE_LLM_MAX_RETRY_WAIT_MS", "2000"));
    let server = Server::start(dir.path(), &env).await;
    let mut c = server.ws("?user=carol").await;
    c.ready().await;
    let events = ask(&mut c, "q1", QUESTION).await;
    let end = events.last().unwrap();
    assert_eq!(end["status"], "ok");
    assert_eq!(end["data"]["planner"]["kind"], "rules");
    assert_eq!(end["data"]["plan"]["intent"], "figure");
    assert!(events.iter().any(|e| e["type"] == "agent_completed"
        && e["agent"] == "planner"
        && e["status"] == "error"));
    assert!(supervisor_thought(
        &events,
        "HTTP 503: the model is overloaded"
    ));
    assert!(answer(&events).contains('$'));
    assert_eq!(fake.requests().len(), 2, "one retry");
}

#[tokio::test]
async fn with_every_place_for_llm_calls_taken_a_run_is_answered_by_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 500).await;
    let fake = FakeLlm::start(|_| stalling_reply()).await;
    let mut env = llm_env(&fake).to_vec();
    env.push(("APOGEE_LLM_MAX_CONCURRENT_CALLS", "1"));
    env.push(("APOGEE_LLM_QUEUE_WAIT_MS", "200"));
    let server = Server::start(dir.path(), &env).await;
    // One user's run holds the node's only place, its model stalled mid-reply.
    let mut holder = server.ws("?user=frank").await;
    holder.ready().await;
    holder.ask("q1", QUESTION, None).await;
    until_the_model_stalls(&mut holder).await;
    assert_eq!(metric(&server, "apogee_llm_calls_open").await, 1);
    // Another user's question is answered without the model, and says why.
    let mut c = server.ws("?user=grace").await;
    c.ready().await;
    let events = ask(&mut c, "q1", QUESTION).await;
    let end = events.last().unwrap();
    assert_eq!(end["status"], "ok", "{end}");
    assert_eq!(end["data"]["planner"]["kind"], "rules");
    assert!(supervisor_thought(
        &events,
        "this node's LLM calls are at their limit (1 at once)"
    ));
    assert!(answer(&events).contains('$'));
    assert_eq!(
        fake.requests().len(),
        1,
        "the refused call never reached the model"
    );
    assert_eq!(metric(&server, "apogee_llm_calls_busy_total").await, 1);
    assert_eq!(metric(&server, "apogee_llm_requests_total").await, 1);
    // A refused call is not usage: nothing is recorded under `apogee-assistant` (the
    // holder's call is recorded when it ends).
    let path = "/api/costs?period=24h&feature=apogee-assistant";
    let (status, costs) = get_json(&server.addr, path, "grace").await;
    assert_eq!(status, 200, "{costs}");
    assert_eq!(costs["totals"]["calls"], 0, "{costs}");
}

#[tokio::test]
async fn cancel_drops_the_models_stream_and_closes_every_step() {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 500).await;
    let fake = FakeLlm::start(|_| stalling_reply()).await;
    let server = Server::start(dir.path(), &llm_env(&fake)).await;
    let mut c = server.ws("?user=dave").await;
    c.ready().await;
    c.ask("q1", QUESTION, None).await;
    let ack = c.next().await.unwrap();
    let run_id = ack["run_id"].as_str().unwrap().to_string();
    let mut events = until_the_model_stalls(&mut c).await;
    c.send(json!({ "type": "cancel_run", "run_id": run_id }))
        .await;
    events.extend(c.until_run_end(&run_id).await);
    assert_run_well_formed(&events);
    let end = events.last().unwrap();
    assert_eq!(end["status"], "cancelled", "{end}");
    assert!(
        fake.wait_dropped(1, Duration::from_secs(5)).await,
        "the stream was dropped"
    );
}

#[tokio::test]
async fn budget_commands_are_answered_by_the_rules_with_the_llm_planner_on() {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 2_000).await;
    let fake = FakeLlm::start(fake::analyst).await;
    let server = Server::start(dir.path(), &llm_env(&fake)).await;
    let mut c = server.ws("?user=alice").await;
    c.ready().await;
    // The planner's tools are read-only and know no budgets: a budget command never reaches
    // the model, and the budget it sets is the API's.
    let events = ask(
        &mut c,
        "b0",
        "set a monthly budget of $2,000 for support-bot",
    )
    .await;
    assert!(events.iter().all(|e| e["agent"] != "planner"));
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "tool_completed" && e["tool"] == "set_budget"),
        "no set_budget step"
    );
    assert!(answer(&events).starts_with("Done: a monthly budget of $2,000 for support-bot"));
    let events = ask(&mut c, "b1", "what budgets do we have?").await;
    assert!(events.iter().all(|e| e["agent"] != "planner"));
    assert!(fake.requests().is_empty(), "the model was asked");
    let (status, body) = get_json(&server.addr, "/api/budgets", "alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["budgets"].as_array().map(Vec::len), Some(1), "{body}");
    // Any other question still goes to the model first.
    ask(&mut c, "q0", QUESTION).await;
    assert!(!fake.requests().is_empty());
}
