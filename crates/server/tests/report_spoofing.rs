//! Usage strings cannot write into a colleague's answer: one member of an org sends usage
//! whose feature, user, model and tag hold markdown (a table-breaking `|`, a heading, a
//! phishing link, newlines) through `POST /api/usage` as CSV; another member of the same org
//! asks "Analyze my AI costs", and a question naming the feature; the answers show the strings
//! as text, with no injected heading, link or table cell.

mod common;

use common::*;
use serde_json::Value;

/// Markdown an attacker would like a report to render.
const HEADING: &str = "## Action required";
const LINK: &str = "[verify your account](https://evil.example/login)";

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn ask(c: &mut Client, id: &str, question: &str) -> String {
    c.ask(id, question, None).await;
    let ack = c.next().await.unwrap();
    assert_eq!(ack["type"], "message_ack", "{ack}");
    let run_id = ack["run_id"].as_str().unwrap().to_string();
    let events = c.until_run_end(&run_id).await;
    assert_run_well_formed(&events);
    assert_eq!(events.last().unwrap()["status"], "ok", "{question}");
    events
        .iter()
        .find(|e| e["type"] == "message_created" && e["message"]["role"] == "assistant")
        .and_then(|e| e["message"]["content"].as_str())
        .expect("an answer")
        .to_string()
}

/// No line of `md` is a heading or a table row the attacker wrote, and no link or image
/// syntax survives unescaped.
fn assert_nothing_injected(md: &str) {
    for line in md.lines() {
        assert!(
            !line.trim_start().starts_with("## Action"),
            "injected heading: {line}\n{md}"
        );
        let link = line
            .match_indices("](https://evil")
            .any(|(i, _)| !line[..i].ends_with('\\'));
        assert!(!link, "injected link: {line}\n{md}");
        let html = line
            .match_indices("<img")
            .any(|(i, _)| !line[..i].ends_with('\\'));
        assert!(!html, "raw HTML: {line}\n{md}");
    }
    // Every `[` of the attacker's link is escaped, so no renderer makes a link of it.
    let unescaped = md
        .match_indices("[verify")
        .filter(|(i, _)| !md[..*i].ends_with('\\'))
        .count();
    assert_eq!(unescaped, 0, "{md}");
}

#[tokio::test]
async fn usage_strings_cannot_inject_markdown_into_another_members_answer() {
    let dir = tempfile::tempdir().unwrap();
    load_demo_data(dir.path(), 5_000).await;
    let server = Server::start(dir.path(), &[]).await;
    let now = chrono::Utc::now() - chrono::Duration::hours(1);
    let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // One row with newlines (the contract may refuse control characters at ingest) and one
    // without, so at least one reaches the store whatever ingest accepts.
    let with_newlines = format!("x | **pwned** |\n{HEADING}\n{LINK}\n<img src=x>");
    let one_line = format!("spoof | {HEADING} {LINK} <img src=x> `code` *em*");
    let mut csv = String::from(
        "request_id,ts,provider,model,input_tokens,output_tokens,user,feature,cost_usd,tag.team\n",
    );
    for (i, feature) in [&with_newlines, &one_line].iter().enumerate() {
        csv.push_str(&format!(
            "spoof-{i},{ts},openai,{},1000,100,{},{},500.00,{}\n",
            csv_field(&format!(
                "gpt-4o{}",
                if i == 0 {
                    ""
                } else {
                    " | [m](https://evil.example)"
                }
            )),
            csv_field(&format!("mallory | {LINK}")),
            csv_field(feature),
            csv_field(&if i == 0 {
                format!("growth\n{HEADING}")
            } else {
                format!("growth {HEADING}")
            }),
        ));
    }
    let (status, body) = http(
        &server.addr,
        "POST",
        "/api/usage",
        &[("X-Apogee-User", "mallory"), ("Content-Type", "text/csv")],
        csv.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert!(
        reply["accepted"].as_u64().unwrap_or(0) >= 1,
        "the one-line row is accepted: {reply}"
    );

    // Another member of the same org reads the report: the spoofed feature is the top one
    // ($500 a call), so it is in the tables, the lead and the recommendations' context.
    let mut alice = server.ws("?user=alice").await;
    alice.ready().await;
    let report = ask(&mut alice, "a1", "Analyze my AI costs").await;
    assert!(
        report.contains("spoof"),
        "the row is in the report: {report}"
    );
    assert_nothing_injected(&report);
    // Its tables keep their columns: the `|` of a name is escaped, not a cell boundary.
    for line in report.lines().filter(|l| l.contains("spoof")) {
        if line.starts_with('|') {
            // Cell boundaries are the pipes a renderer splits on: the unescaped ones.
            let boundaries = line
                .match_indices('|')
                .filter(|(i, _)| !line[..*i].ends_with('\\'))
                .count();
            assert_eq!(
                boundaries, 5,
                "a table row of 4 columns gained cells: {line}"
            );
        }
    }
    // A focused answer that ranks the features names it too, escaped.
    let ranking = ask(&mut alice, "a2", "Which feature spends the most?").await;
    assert!(ranking.contains("spoof"), "{ranking}");
    assert_nothing_injected(&ranking);
    let users = ask(&mut alice, "a3", "spend by user").await;
    assert!(users.contains("mallory"), "{users}");
    assert_nothing_injected(&users);
    assert!(server.terminate().await.success());
}
