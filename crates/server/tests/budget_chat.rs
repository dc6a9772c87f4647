//! Budgets from the chat, through the real server: a budget set over the WebSocket is the one
//! `GET /api/budgets` shows (scope, amount, calendar), "are we on track" gives the API's
//! figures, a change and a removal reach the API, and bad input — a negative or absurd amount,
//! a feature without usage, a missing amount or calendar, the org's limit — gets a clear answer
//! and changes nothing. Every budget run streams the five step events with a real budget tool.
//! A budget set from the chat belongs to the asker's org only. On SQLite and on PostgreSQL.

mod common;

use common::services::postgres_database;
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "budget-chat-secret-of-some-length";

fn token(user: &str, org: &str) -> String {
    hs256(
        SECRET,
        &json!({"sub": user, "org": org, "exp": unix_now() + 600}),
    )
}

async fn rest(server: &str, method: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (status, text) = http(
        server,
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn budgets(server: &str, token: &str) -> Vec<Value> {
    let (s, b) = rest(server, "GET", "/api/budgets", token, &Value::Null).await;
    assert_eq!(s, 200, "{b}");
    b["budgets"].as_array().unwrap().clone()
}

/// One asked question: its run's events, the answer and the supervisor's `data`.
struct Asked {
    events: Vec<Value>,
    answer: String,
    data: Value,
}

impl Asked {
    fn tools(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter(|e| e["type"] == "tool_executing")
            .filter_map(|e| e["tool"].as_str())
            .collect()
    }
}

async fn ask(c: &mut Client, n: &mut u32, question: &str, thread: Option<&str>) -> Asked {
    *n += 1;
    c.ask(&format!("m{n}"), question, thread).await;
    let ack = c.next().await.expect("ack");
    assert_eq!(ack["type"], "message_ack", "{ack}");
    let run_id = ack["run_id"].as_str().unwrap().to_string();
    // Questions are asked one at a time: every frame until the run's end is this turn's.
    let run = c.until_run_end(&run_id).await;
    assert_run_well_formed(&run);
    for t in [
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    ] {
        assert!(run.iter().any(|e| e["type"] == t), "{question}: no {t}");
    }
    let end = run.last().unwrap();
    assert_eq!(end["status"], "ok", "{question}: {end}");
    let answer = run
        .iter()
        .find(|e| e["type"] == "message_created" && e["message"]["role"] == "assistant")
        .and_then(|e| e["message"]["content"].as_str())
        .unwrap_or_else(|| panic!("{question}: no answer"))
        .to_string();
    assert_eq!(end["data"]["intent"], "budget", "{question}: {answer}");
    Asked {
        data: end["data"].clone(),
        events: run,
        answer,
    }
}

/// Usage of acme over the last hours, all of it this month and before now (so every read
/// agrees on it, and the month's budget has spent something even just after the month began).
async fn usage(server: &str, token: &str) {
    use chrono::Datelike;
    let now = chrono::Utc::now();
    let month_start = chrono::NaiveDate::from_ymd_opt(now.year(), now.month(), 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .expect("the month's first day");
    // Spread over the last 10 hours, or over the month so far when that is shorter.
    let span = (now - month_start).min(chrono::Duration::hours(10));
    let mut lines = String::new();
    for h in 1..=30 {
        let ts = (now - span * h / 31).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for (feature, cost) in [("support-bot", 3.25), ("doc-summarizer", 1.5)] {
            lines.push_str(&format!(
                "{}\n",
                json!({"request_id": format!("{feature}-{h}"), "ts": ts, "model": "gpt-4o",
                    "input_tokens": 100, "output_tokens": 10, "cost_usd": cost,
                    "feature": feature, "tags": {"team": "growth"}})
            ));
        }
    }
    let auth = format!("Bearer {token}");
    let (s, text) = http(
        server,
        "POST",
        "/api/usage",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-ndjson"),
        ],
        lines.as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "{text}");
}

fn close(a: &Value, b: &Value) -> bool {
    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1.0)
}

async fn chat_budgets_are_the_api_budgets(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut env = env.to_vec();
    env.extend([
        ("APOGEE_AUTH", "jwt"),
        ("APOGEE_JWT_HS256_SECRET", SECRET),
        // Twenty questions in a row, more than the default burst.
        ("APOGEE_MESSAGES_PER_MINUTE", "600"),
        ("APOGEE_MESSAGE_BURST", "50"),
    ]);
    let server = Server::start(dir.path(), &env).await;
    let addr = server.addr.clone();
    let alice = token("alice", "acme");
    let carol = token("carol", "globex");
    usage(&addr, &alice).await;
    let auth = format!("Bearer {alice}");
    let mut c = Client::connect(&addr, "", &[("Authorization", &auth)])
        .await
        .expect("connect");
    c.ready().await;
    let mut n = 0;

    // Set: the API shows the very budget, with the asker as its author.
    let a = ask(
        &mut c,
        &mut n,
        "set a monthly budget of $2,000 for support-bot",
        None,
    )
    .await;
    assert!(
        a.answer
            .starts_with("Done: a monthly budget of $2,000 for support-bot ("),
        "{}",
        a.answer
    );
    let tools = a.tools();
    let at = |t: &str| tools.iter().position(|x| *x == t);
    assert!(
        at("list_budgets") < at("set_budget") && at("set_budget").is_some(),
        "{tools:?}"
    );
    assert!(
        a.events
            .iter()
            .any(|e| e["type"] == "agent_started" && e["agent"] == "budgets"),
        "no budgets agent"
    );
    let list = budgets(&addr, &alice).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let b = &list[0];
    assert_eq!(b["scope"], json!({"feature": ["support-bot"]}));
    assert_eq!(b["amount_usd"], 2000.0);
    assert_eq!(b["period"], "month");
    assert_eq!(b["thresholds"], json!([50, 80, 100]));
    assert_eq!(b["created_by"], "alice");
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(a.data["budgets"][0]["id"], id.as_str());

    // Another org sees none of it, from the API or the chat.
    assert!(budgets(&addr, &carol).await.is_empty());
    let cauth = format!("Bearer {carol}");
    let mut cc = Client::connect(&addr, "", &[("Authorization", &cauth)])
        .await
        .expect("connect");
    cc.ready().await;
    let mut cn = 0;
    let g = ask(&mut cc, &mut cn, "what budgets do we have?", None).await;
    assert!(
        g.answer.starts_with("The org has no budgets yet."),
        "{}",
        g.answer
    );

    // Thresholds and a tag scope, weekly.
    let t = ask(
        &mut c,
        &mut n,
        "Set a weekly budget of $300 for the growth team, alert at 50% and 90%",
        None,
    )
    .await;
    assert!(
        t.answer.starts_with("Done: a weekly budget of $300 for"),
        "{}",
        t.answer
    );
    let list = budgets(&addr, &alice).await;
    let growth = list
        .iter()
        .find(|b| b["scope"] == json!({"tag.team": ["growth"]}))
        .unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(
        (growth["period"].as_str(), growth["thresholds"].clone()),
        (Some("week"), json!([50, 90]))
    );

    // On track: the API's figures, the org's month first.
    let o = ask(&mut c, &mut n, "are we on track this month?", None).await;
    assert!(o.answer.starts_with("This month: $"), "{}", o.answer);
    assert!(o.tools().contains(&"forecast_month_end") && o.tools().contains(&"list_budgets"));
    let api = budgets(&addr, &alice).await;
    let chat = o.data["budgets"].as_array().unwrap();
    assert_eq!(chat.len(), api.len());
    for (c, r) in chat.iter().zip(&api) {
        assert_eq!(c["id"], r["id"]);
        assert_eq!(c["spent_nanos"], r["current"]["spent_nanos"], "{c} vs {r}");
        // The forecast runs the rest of the period at a daily rate: a few milliseconds apart,
        // the two reads differ by that much of a day at most.
        assert!(
            close(&c["forecast_usd"], &r["current"]["forecast_usd"]),
            "{c} vs {r}"
        );
        assert_eq!(c["state"], r["current"]["state"]);
    }
    let spent = api[0]["current"]["spent_usd"].as_f64().unwrap();
    assert!(spent > 0.0);

    // Bad input: a clear answer, nothing made.
    for (q, says) in [
        (
            "set a monthly budget of -$50 for doc-summarizer",
            "I didn't set the budget: the amount (`amount_usd`) must be above $0.",
        ),
        (
            "set a monthly budget of $5 trillion for doc-summarizer",
            "I didn't set the budget: the amount (`amount_usd`) is at most $1,000,000,000.",
        ),
        (
            "set a monthly budget of $100 for support-bots-v2",
            "I didn't set the budget: I found no usage for",
        ),
        (
            "set a budget",
            "How much, and per month, week or day, should the budget for the whole org be?",
        ),
        (
            "set a budget of $400 for doc-summarizer",
            "Per month, week or day? A budget of $400 for doc-summarizer.",
        ),
    ] {
        let r = ask(&mut c, &mut n, q, None).await;
        assert!(r.answer.starts_with(says), "{q}: {}", r.answer);
        assert!(!r.tools().contains(&"delete_budget"), "{q}");
        assert_eq!(budgets(&addr, &alice).await.len(), 2, "{q}");
    }
    // The missing calendar, answered in the thread, completes the command.
    let asked = ask(
        &mut c,
        &mut n,
        "set a budget of $400 for doc-summarizer",
        None,
    )
    .await;
    let thread = asked.events[0]["thread_id"].as_str().unwrap().to_string();
    let done = ask(&mut c, &mut n, "a week", Some(&thread)).await;
    assert!(
        done.answer
            .starts_with("Done: a weekly budget of $400 for doc-summarizer"),
        "{}",
        done.answer
    );
    assert_eq!(budgets(&addr, &alice).await.len(), 3);

    // A change of amount is a new revision of the same budget.
    let ch = ask(
        &mut c,
        &mut n,
        "change the support-bot budget to $3,000",
        None,
    )
    .await;
    assert!(
        ch.answer
            .starts_with("Done: the monthly budget for support-bot is now $3,000 (was $2,000)."),
        "{}",
        ch.answer
    );
    let (s, b) = rest(
        &addr,
        "GET",
        &format!("/api/budgets/{id}"),
        &alice,
        &Value::Null,
    )
    .await;
    assert_eq!(
        (s, b["amount_usd"].as_f64(), b["revision"].as_i64()),
        (200, Some(3000.0), Some(2))
    );

    // The org's limit: the chat says so and makes nothing.
    let max = rest(&addr, "GET", "/api/budgets", &alice, &Value::Null)
        .await
        .1["max_budgets"]
        .as_u64()
        .unwrap();
    for i in 3..max {
        let (s, b) = rest(
            &addr,
            "POST",
            "/api/budgets",
            &alice,
            &json!({"amount_usd": 1 + i, "scope": {"user": format!("u{i}")}}),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    let full = ask(
        &mut c,
        &mut n,
        "set a daily budget of $50 for doc-summarizer",
        None,
    )
    .await;
    assert!(
        full.answer.starts_with(&format!(
            "I didn't set the budget: this org already has {max} budgets"
        )),
        "{}",
        full.answer
    );
    assert_eq!(budgets(&addr, &alice).await.len() as u64, max);

    // Remove.
    let rm = ask(&mut c, &mut n, "delete the support-bot budget", None).await;
    assert!(
        rm.answer
            .starts_with("Deleted a monthly budget of $3,000 for support-bot."),
        "{}",
        rm.answer
    );
    assert!(rm.tools().contains(&"delete_budget"));
    let (s, _) = rest(
        &addr,
        "GET",
        &format!("/api/budgets/{id}"),
        &alice,
        &Value::Null,
    )
    .await;
    assert_eq!(s, 404);
    let again = ask(&mut c, &mut n, "delete the support-bot budget", None).await;
    assert!(
        again
            .answer
            .starts_with("There is no budget for support-bot to delete."),
        "{}",
        again.answer
    );
    assert!(budgets(&addr, &carol).await.is_empty());
}

#[tokio::test]
async fn chat_budgets_are_the_api_budgets_on_sqlite() {
    chat_budgets_are_the_api_budgets(&[]).await;
}

#[tokio::test]
async fn chat_budgets_are_the_api_budgets_on_postgres() {
    let Some(database) = postgres_database().await else {
        return;
    };
    chat_budgets_are_the_api_budgets(&[("APOGEE_DATABASE_URL", database.url.as_str())]).await;
}
