//! The client against the fake OpenAI-compatible server on loopback: real HTTP and SSE.

use std::time::Duration;

use apogee_llm::fake::{FakeLlm, Part, Reply};
use apogee_llm::{ApiKey, LlmClient, LlmConfig, LlmError, Message, StreamItem, Tool};
use serde_json::json;

fn client(fake: &FakeLlm, tweak: impl FnOnce(&mut LlmConfig)) -> LlmClient {
    let mut c = LlmConfig::new(fake.base_url.parse().unwrap(), "gpt-4o-mini");
    c.max_retry_wait = Duration::from_secs(2);
    tweak(&mut c);
    LlmClient::new(c).unwrap()
}

fn ask() -> Vec<Message> {
    vec![Message::User {
        content: "How much did we spend?".into(),
    }]
}

/// Reads a whole reply: its text pieces and the completion, or the error.
async fn read(client: &LlmClient) -> Result<(Vec<String>, apogee_llm::Completion), LlmError> {
    let tools = [Tool::function(
        "measure_usage",
        "d",
        json!({"type": "object"}),
    )];
    let mut stream = client.stream(&ask(), &tools).await?;
    let mut pieces = Vec::new();
    loop {
        match stream.next().await? {
            StreamItem::Text(t) => pieces.push(t),
            StreamItem::Done(c) => return Ok((pieces, c)),
        }
    }
}

#[tokio::test]
async fn text_arrives_in_pieces_and_tool_calls_whole() {
    let fake = FakeLlm::scripted(vec![
        Reply::calls(
            "Measuring now.",
            &[("measure_usage", json!({"period": {"from": "a", "to": "b"}}))],
        ),
        Reply::text("Spend was $12.50 across 40 calls."),
    ])
    .await;
    let c = client(&fake, |c| c.api_key = Some(ApiKey::new("sk-test")));
    let (pieces, first) = read(&c).await.unwrap();
    assert_eq!(pieces.concat(), "Measuring now.");
    assert_eq!(first.tool_calls.len(), 1);
    assert_eq!(first.tool_calls[0].function.name, "measure_usage");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&first.tool_calls[0].function.arguments).unwrap(),
        json!({"period": {"from": "a", "to": "b"}})
    );
    assert_eq!(first.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(first.usage.unwrap().prompt_tokens, 800);
    let (pieces, second) = read(&c).await.unwrap();
    assert!(pieces.len() > 1, "streamed in pieces: {pieces:?}");
    assert_eq!(second.text, "Spend was $12.50 across 40 calls.");
    let requests = fake.requests();
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(requests[0].body["stream"], true);
    assert_eq!(requests[0].body["model"], "gpt-4o-mini");
    assert_eq!(requests[0].tool_names(), ["measure_usage"]);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_a_long_one_is_not() {
    let fake = FakeLlm::scripted(vec![
        Reply::Status {
            status: 429,
            retry_after: Some(1),
            message: "slow down".into(),
        },
        Reply::text("ok 1"),
        Reply::Status {
            status: 429,
            retry_after: Some(3600),
            message: "come back in an hour".into(),
        },
    ])
    .await;
    let c = client(&fake, |_| {});
    let (_, done) = read(&c).await.unwrap();
    assert_eq!(done.text, "ok 1");
    assert_eq!(fake.requests().len(), 2);
    let err = read(&c).await.unwrap_err();
    assert_eq!(
        err,
        LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(3600))
        }
    );
    assert_eq!(fake.requests().len(), 3, "not retried");
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times_and_4xx_not_at_all() {
    let fake = FakeLlm::start(|_| Reply::status(503, "overloaded")).await;
    let c = client(&fake, |c| c.max_retries = 2);
    let err = read(&c).await.unwrap_err();
    assert_eq!(
        err,
        LlmError::Status {
            status: 503,
            message: "overloaded".into()
        }
    );
    assert_eq!(fake.requests().len(), 3);
    let fake = FakeLlm::start(|_| Reply::status(401, "bad key")).await;
    let c = client(&fake, |_| {});
    assert!(matches!(
        read(&c).await,
        Err(LlmError::Status { status: 401, .. })
    ));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let fake = FakeLlm::start(|_| Reply::Hang).await;
    let c = client(&fake, |c| {
        c.timeout = Duration::from_millis(300);
        c.max_retries = 1;
    });
    assert!(matches!(read(&c).await, Err(LlmError::Timeout(_))));
    assert_eq!(fake.requests().len(), 2, "retried once");
    // A stream that starts, then goes silent: the idle timeout.
    let fake = FakeLlm::start(|_| Reply::Stream(vec![Part::Text("Hm".into()), Part::Stall])).await;
    let c = client(&fake, |c| c.idle_timeout = Duration::from_millis(300));
    assert!(matches!(read(&c).await, Err(LlmError::Timeout(_))));
}

#[tokio::test]
async fn a_cut_stream_and_a_malformed_chunk_are_errors() {
    let fake = FakeLlm::scripted(vec![
        Reply::Stream(vec![Part::Text("Spend was".into())]),
        Reply::Stream(vec![Part::Raw("{not json".into())]),
    ])
    .await;
    let c = client(&fake, |_| {});
    assert!(matches!(read(&c).await, Err(LlmError::Cut(_))));
    assert!(matches!(read(&c).await, Err(LlmError::Malformed(_))));
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection_at_once() {
    let fake =
        FakeLlm::start(|_| Reply::Stream(vec![Part::Text("Thinking".into()), Part::Stall])).await;
    let c = client(&fake, |_| {});
    let mut stream = c.stream(&ask(), &[]).await.unwrap();
    assert_eq!(
        stream.next().await.unwrap(),
        StreamItem::Text("Thinking".into())
    );
    drop(stream);
    assert!(fake.wait_dropped(1, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn the_node_holds_at_most_its_calls_open_and_a_finished_one_frees_its_place() {
    let fake =
        FakeLlm::start(|_| Reply::Stream(vec![Part::Text("Thinking".into()), Part::Stall])).await;
    let c = client(&fake, |c| {
        c.max_concurrent_calls = 2;
        c.queue_wait = Duration::from_millis(200);
    });
    let first = c.stream(&ask(), &[]).await.unwrap();
    let mut second = c.stream(&ask(), &[]).await.unwrap();
    assert_eq!(c.calls_open(), 2);
    // The third waits its queue wait, then is refused without reaching the model.
    let third = c.stream(&ask(), &[]).await.unwrap_err();
    assert_eq!(third, LlmError::Busy { limit: 2 });
    assert_eq!(fake.requests().len(), 2);
    let stats = c.stats();
    assert_eq!(
        (stats.calls_open, stats.requests, stats.busy, stats.failed),
        (2, 2, 1, 0)
    );
    // A stream read to its end or dropped gives its place back.
    assert_eq!(
        second.next().await.unwrap(),
        StreamItem::Text("Thinking".into())
    );
    drop(second);
    assert_eq!(c.calls_open(), 1);
    let mut again = c.stream(&ask(), &[]).await.unwrap();
    assert_eq!(
        again.next().await.unwrap(),
        StreamItem::Text("Thinking".into())
    );
    assert_eq!(fake.requests().len(), 3);
    drop((first, again));
    assert_eq!(c.calls_open(), 0);
}

#[tokio::test]
async fn a_call_waiting_for_a_place_gets_the_first_one_freed() {
    let fake =
        FakeLlm::start(|_| Reply::Stream(vec![Part::Text("Thinking".into()), Part::Stall])).await;
    let c = std::sync::Arc::new(client(&fake, |c| {
        c.max_concurrent_calls = 1;
        c.queue_wait = Duration::from_secs(30);
    }));
    let first = c.stream(&ask(), &[]).await.unwrap();
    let waiting = tokio::spawn({
        let c = std::sync::Arc::clone(&c);
        async move { c.stream(&ask(), &[]).await.map(|_| ()) }
    });
    // Bounded: the waiting call has sent nothing while the place is taken.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(fake.requests().len(), 1);
    drop(first);
    waiting.await.unwrap().unwrap();
    assert_eq!(fake.requests().len(), 2);
}
