//! The golden path end to end: demo data, "Analyze my AI costs" over a real WebSocket, a
//! complete well-formed run, and dollar figures equal to a direct SQL query over the data.

mod common;

use apogee_analytics::Nanos;
use common::*;
use sqlx::Row;

#[tokio::test]
async fn analyze_my_ai_costs_streams_a_complete_run_with_real_figures() {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 20_000).await;
    let server = Server::start(dir.path(), &[]).await;
    let mut alice = server.ws("?user=alice").await;
    let ready = alice.ready().await;
    assert_eq!(ready["user_id"], "alice");
    assert_eq!(ready["org_id"], "demo");
    assert_eq!(ready["head_seq"], 0);

    alice.ask("m1", "Analyze my AI costs", None).await;
    let ack = alice.next().await.unwrap();
    assert_eq!(ack["type"], "message_ack", "{ack}");
    assert_eq!(ack["duplicate"], false);
    let run_id = ack["run_id"].as_str().unwrap().to_string();
    let events = alice.until_run_end(&run_id).await;

    // Contiguous seqs from 1, all carrying ts and thread_id.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "{e}");
        assert!(
            e["ts"].is_string() && e["thread_id"] == ack["thread_id"],
            "{e}"
        );
    }
    assert_eq!(events[0]["type"], "thread_created");
    assert_eq!(events[1]["type"], "message_created");
    for t in [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ] {
        assert!(events.iter().any(|e| e["type"] == t), "no {t}");
    }
    for agent in ["triage", "data", "optimization", "report"] {
        assert!(
            events.iter().any(|e| e["type"] == "agent_started"
                && e["agent"] == agent
                && e["parent_agent"] == "supervisor"),
            "no {agent}"
        );
    }
    assert_run_well_formed(&events);
    let end = events.last().unwrap();
    assert_eq!(end["status"], "ok", "{end}");

    let answer = events
        .iter()
        .find(|e| e["type"] == "message_created" && e["message"]["role"] == "assistant")
        .expect("assistant answer");
    let content = answer["message"]["content"].as_str().unwrap();

    // The same figure straight from SQL over the stored usage.
    let data = &end["data"];
    let from = chrono::DateTime::parse_from_rfc3339(data["period"]["from"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let to = chrono::DateTime::parse_from_rfc3339(data["period"]["to"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", server.db_path().display()))
            .await
            .unwrap();
    let row = sqlx::query("SELECT COALESCE(SUM(cost_nanos),0) AS c, COUNT(*) AS n FROM usage_records WHERE org_id = 'demo' AND ts_ms >= ? AND ts_ms < ?")
        .bind(from)
        .bind(to)
        .fetch_one(&pool)
        .await
        .unwrap();
    let sql_cost = Nanos::from(row.get::<i64, _>("c"));
    let sql_calls: i64 = row.get("n");
    assert!(sql_calls > 0);
    assert_eq!(
        data["totals"]["cost_nanos"],
        serde_json::json!(sql_cost),
        "{}",
        data["totals"]
    );
    assert_eq!(data["totals"]["calls"], sql_calls);
    assert!(
        content.contains(&sql_cost.display_usd()),
        "answer lacks {}: {content}",
        sql_cost.display_usd()
    );

    // The most expensive model by SQL appears in the answer with its cost.
    let top = sqlx::query("SELECT model, SUM(cost_nanos) AS c FROM usage_records WHERE org_id = 'demo' AND ts_ms >= ? AND ts_ms < ? GROUP BY model ORDER BY c DESC LIMIT 1")
        .bind(from)
        .bind(to)
        .fetch_one(&pool)
        .await
        .unwrap();
    let top_model: String = top.get("model");
    assert!(
        content.contains(&top_model)
            && content.contains(&Nanos::from(top.get::<i64, _>("c")).display_usd()),
        "{content}"
    );

    // A savings figure, computed from the data, is in the answer.
    let recs = data["recommendations"].as_array().expect("recommendations");
    assert!(!recs.is_empty(), "{data}");
    let saving = Nanos::from(recs[0]["monthly_saving_nanos"].as_i64().unwrap());
    assert!(
        saving > Nanos::ZERO && content.contains(&saving.display_usd()),
        "{content}"
    );

    // REST sees the same run, scoped to alice.
    let (status, body) =
        get_json(&server.addr, &format!("/api/runs/{run_id}/events"), "alice").await;
    assert_eq!(status, 200);
    assert_eq!(body["events"].as_array().unwrap().len(), events.len());
    let (status, _) = get_json(&server.addr, &format!("/api/runs/{run_id}/events"), "bob").await;
    assert_eq!(status, 404);
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn org_without_usage_is_told_how_to_send_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let mut c = server.ws("?user=carol").await;
    c.ready().await;
    c.ask("m1", "Analyze my AI costs", None).await;
    let ack = c.next().await.unwrap();
    let events = c.until_run_end(ack["run_id"].as_str().unwrap()).await;
    assert_run_well_formed(&events);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "agent_started" && e["agent"] == "data_helper")
    );
    let answer = events
        .iter()
        .find(|e| e["type"] == "message_created" && e["message"]["role"] == "assistant")
        .unwrap();
    let content = answer["message"]["content"].as_str().unwrap();
    let dollar_figure = content
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit());
    assert!(
        content.contains("/api/usage") && !dollar_figure,
        "{content}"
    );
}
