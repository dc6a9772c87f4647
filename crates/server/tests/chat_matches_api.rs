//! The chat's answers on demo data carry the same numbers as the REST API: "Why did spend
//! jump?" names the spike day at the cost `GET /api/costs` gives for that day, and "How can we
//! cut our LLM bill?" lists the savings `GET /api/recommendations` gives for the same window.

mod common;

use apogee_analytics::Nanos;
use common::*;
use serde_json::Value;

/// Asks `question` on a fresh thread; returns the supervisor's final `data` and the answer.
async fn ask(c: &mut Client, id: &str, question: &str) -> (Value, String) {
    c.ask(id, question, None).await;
    let ack = c.next().await.unwrap();
    assert_eq!(ack["type"], "message_ack", "{ack}");
    let run_id = ack["run_id"].as_str().unwrap().to_string();
    let events = c.until_run_end(&run_id).await;
    assert_run_well_formed(&events);
    let end = events.last().unwrap();
    assert_eq!(end["status"], "ok", "{end}");
    let answer = events
        .iter()
        .find(|e| e["type"] == "message_created" && e["message"]["role"] == "assistant")
        .and_then(|e| e["message"]["content"].as_str())
        .expect("assistant answer")
        .to_string();
    (end["data"].clone(), answer)
}

fn window(data: &Value) -> String {
    format!(
        "from={}&to={}",
        data["period"]["from"].as_str().unwrap(),
        data["period"]["to"].as_str().unwrap()
    )
}

#[tokio::test]
async fn spike_and_savings_answers_match_the_rest_api() {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 20_000).await;
    let server = Server::start(dir.path(), &[]).await;
    let mut alice = server.ws("?user=alice").await;
    alice.ready().await;

    let (data, answer) = ask(&mut alice, "q1", "Why did spend jump?").await;
    let (s, costs) = get_json(
        &server.addr,
        &format!("/api/costs?{}&group_by=day", window(&data)),
        "alice",
    )
    .await;
    assert_eq!(s, 200, "{costs}");
    assert_eq!(data["totals"]["cost_nanos"], costs["totals"]["cost_nanos"]);
    let spike_day = data["spike"]["day"].as_str().expect("a spike day");
    let day_row = costs["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == spike_day)
        .expect("the spike day has usage");
    assert_eq!(data["spike"]["day_cost_nanos"], day_row["cost_nanos"]);
    let day_cost = Nanos::from(day_row["cost_nanos"].as_i64().unwrap());
    assert!(
        answer.contains(spike_day) && answer.contains(&day_cost.display_usd()),
        "answer lacks {spike_day} at {}: {answer}",
        day_cost.display_usd()
    );
    // It is the most expensive day by the API too.
    let top = costs["rows"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|r| r["cost_nanos"].as_i64())
        .unwrap();
    assert_eq!(top["key"], spike_day);

    let (data, answer) = ask(&mut alice, "q2", "How can we cut our LLM bill?").await;
    let (s, api) = get_json(
        &server.addr,
        &format!("/api/recommendations?{}", window(&data)),
        "alice",
    )
    .await;
    assert_eq!(s, 200, "{api}");
    let pick = |recs: &Value| -> Vec<(String, i64)> {
        recs.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["title"].as_str().unwrap().to_string(),
                    r["monthly_saving_nanos"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let chat = pick(&data["recommendations"]);
    assert!(!chat.is_empty(), "{data}");
    assert_eq!(chat, pick(&api["recommendations"]));
    let top = Nanos::from(chat[0].1);
    assert!(answer.contains(&top.display_usd()), "{answer}");

    // A question about one way to save leads with that recommendation's own saving, the
    // API's figure for it, and charts the repeat cost by feature.
    let (data, answer) = ask(&mut alice, "q3", "How much could a response cache save?").await;
    assert_eq!(data["plan"]["saving"], "response_cache", "{data}");
    let (s, api) = get_json(
        &server.addr,
        &format!("/api/recommendations?{}", window(&data)),
        "alice",
    )
    .await;
    assert_eq!(s, 200, "{api}");
    let cache = api["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "response_cache")
        .expect("the demo data repeats prompts");
    let saving = Nanos::from(cache["monthly_saving_nanos"].as_i64().unwrap());
    let lead = answer.lines().next().unwrap_or_default();
    assert!(
        lead.starts_with(&format!(
            "A response cache serving 80% of the repeats could save about {} a month",
            saving.display_usd()
        )),
        "{lead}"
    );
    assert_eq!(data["answer"]["chart"]["kind"], "ranking", "{data}");
    assert_eq!(data["answer"]["chart"]["rows"][0]["label"], "support-bot");
    assert!(server.terminate().await.success());
}

/// `s` percent-encoded for a query string.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `GET /api/costs` query of a chat plan: its window, filters, grouping and comparison.
fn costs_query(plan: &Value) -> String {
    let mut q = format!(
        "from={}&to={}",
        enc(plan["period"]["from"].as_str().unwrap()),
        enc(plan["period"]["to"].as_str().unwrap())
    );
    for f in plan["scope"].as_array().into_iter().flatten() {
        let dim = f["dimension"].as_str().unwrap();
        let name = match dim.strip_prefix("tag:") {
            Some(key) => format!("tag.{key}"),
            None => dim.to_string(),
        };
        let name = if f["exclude"] == true {
            format!("not.{name}")
        } else {
            name
        };
        for v in f["values"].as_array().unwrap() {
            q.push_str(&format!("&{name}={}", enc(v.as_str().unwrap())));
        }
    }
    if let Some(g) = plan["group_by"].as_str() {
        q.push_str(&format!("&group_by={}", enc(g)));
    }
    if let Some(c) = plan.get("compare").filter(|c| !c.is_null()) {
        q.push_str(&format!(
            "&compare_from={}&compare_to={}",
            enc(c["from"].as_str().unwrap()),
            enc(c["to"].as_str().unwrap())
        ));
    }
    q
}

fn key_costs(rows: &Value) -> Vec<(String, i64, i64)> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                r["cost_nanos"].as_i64().unwrap(),
                r["calls"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn figure_answers_equal_the_api_for_the_same_plan() {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 20_000).await;
    let server = Server::start(
        dir.path(),
        &[
            ("APOGEE_MESSAGES_PER_MINUTE", "600"),
            ("APOGEE_MESSAGE_BURST", "50"),
        ],
    )
    .await;
    let mut alice = server.ws("?user=alice").await;
    alice.ready().await;
    let questions = [
        "How much did gpt-4o cost in the last 7 days?",
        "Which feature spends the most on claude-sonnet-4 in the last 14 days?",
        "top 5 users in the last 7 days",
        "spend by team in the last 14 days",
        "How much did the growth team spend in the last 7 days?",
        "How much did the support team spend on gpt-4o last week?",
        "Compare this week to last week",
        "spend in the last 7 days vs the 7 days before by feature",
        "weekly spend",
        "daily spend of support-bot in the last 14 days",
        "spend excluding internal-eval in the last 7 days",
        "How many calls did search-rerank make yesterday?",
        "openai spend by model in the last 7 days",
    ];
    for (i, question) in questions.iter().enumerate() {
        let (data, answer) = ask(&mut alice, &format!("f{i}"), question).await;
        let plan = &data["plan"];
        assert_eq!(plan["intent"], "figure", "{question}: {plan}");
        let (s, api) = get_json(
            &server.addr,
            &format!("/api/costs?{}", costs_query(plan)),
            "alice",
        )
        .await;
        assert_eq!(s, 200, "{question}: {api}");
        let figure = &data["figure"]["current"];
        for field in [
            "cost_nanos",
            "calls",
            "input_tokens",
            "output_tokens",
            "error_calls",
        ] {
            assert_eq!(
                figure["totals"][field], api["totals"][field],
                "{question}: {field}"
            );
        }
        if plan.get("group_by").is_some_and(|g| !g.is_null()) {
            assert_eq!(
                key_costs(&figure["rows"]),
                key_costs(&api["rows"]),
                "{question}: rows"
            );
        }
        if plan.get("compare").is_some_and(|c| !c.is_null()) {
            let previous = &data["figure"]["previous"]["totals"];
            assert_eq!(
                previous["cost_nanos"], api["compare"]["totals"]["cost_nanos"],
                "{question}"
            );
            assert_eq!(
                previous["calls"], api["compare"]["totals"]["calls"],
                "{question}"
            );
        }
        // The first sentence carries the API's figure.
        let lead = answer.lines().next().unwrap();
        let headline = plan["measures"][0].as_str().unwrap_or("spend");
        let figure_text = match headline {
            "calls" => {
                let n = api["totals"]["calls"].as_i64().unwrap();
                let s = n.to_string();
                let mut out = String::new();
                for (k, ch) in s.chars().enumerate() {
                    if k > 0 && (s.len() - k).is_multiple_of(3) {
                        out.push(',');
                    }
                    out.push(ch);
                }
                out
            }
            _ => Nanos::from(api["totals"]["cost_nanos"].as_i64().unwrap()).display_usd(),
        };
        let ranked = plan.get("rank").is_some_and(|r| !r.is_null());
        if !ranked {
            assert!(
                lead.contains(&figure_text),
                "{question}: {lead} lacks {figure_text}"
            );
        } else {
            // Usage without the dimension ("(none)") is not ranked.
            let top = api["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["key"] != "(none)")
                .unwrap();
            assert!(
                lead.contains(&Nanos::from(top["cost_nanos"].as_i64().unwrap()).display_usd()),
                "{question}: {lead} lacks the top row {top}"
            );
        }
    }
    assert!(server.terminate().await.success());
}
