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
    assert!(server.terminate().await.success());
}
