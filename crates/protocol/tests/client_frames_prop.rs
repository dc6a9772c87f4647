//! Property tests over the client-frame parser: whatever a client sends, the parser answers
//! with a frame or a specified error (never a panic), and well-formed frames round-trip.

use apogee_protocol::client::{MAX_CLIENT_MSG_ID_CHARS, MAX_CONTENT_CHARS};
use apogee_protocol::depth::{MAX_JSON_DEPTH, json_depth_exceeds};
use apogee_protocol::{ClientFrame, ErrorCode, ServerFrame, parse_client_frame};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::hash_map("[a-z_]{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Frames shaped like real ones, with each field possibly missing, mistyped or out of range.
fn frame_like() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just(json!("user_message")),
        Just(json!("cancel_run")),
        Just(json!("ping")),
        json_value(),
    ];
    let text = prop_oneof![
        ".{0,80}".prop_map(Value::from),
        (0usize..3).prop_map(|i| Value::from("x".repeat([0, 64, 65][i]))),
        json_value(),
    ];
    (
        kind,
        prop::option::of(text.clone()),
        prop::option::of(text.clone()),
        prop::option::of(text.clone()),
        prop::option::of(json_value()),
    )
        .prop_map(|(kind, id, content, thread, nonce)| {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), kind);
            for (k, v) in [
                ("client_msg_id", id.clone()),
                ("run_id", id),
                ("content", content),
                ("thread_id", thread),
                ("nonce", nonce),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        })
}

/// Every refusal must map to an `error` frame that serializes.
fn answered(text: &str) {
    match parse_client_frame(text) {
        Ok(ClientFrame::UserMessage {
            client_msg_id,
            content,
            ..
        }) => {
            assert!((1..=MAX_CLIENT_MSG_ID_CHARS).contains(&client_msg_id.chars().count()));
            assert!((1..=MAX_CONTENT_CHARS).contains(&content.chars().count()));
        }
        Ok(_) => {}
        Err(e) => {
            assert!(
                matches!(e.code, ErrorCode::BadRequest | ErrorCode::UnknownType),
                "{e:?}"
            );
            let frame = ServerFrame::Error {
                code: e.code,
                message: e.message,
                client_msg_id: e.client_msg_id,
                retry_after_ms: None,
            };
            let v: Value = serde_json::from_str(&frame.to_json()).unwrap();
            assert_eq!(v["type"], "error");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_text_is_answered(text in ".{0,300}") {
        answered(&text);
    }

    #[test]
    fn any_bytes_as_lossy_text_are_answered(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        answered(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn any_json_is_answered(v in json_value()) {
        answered(&v.to_string());
    }

    #[test]
    fn frame_shaped_json_is_answered(v in frame_like()) {
        answered(&v.to_string());
    }

    #[test]
    fn bracket_soup_is_answered(text in "[\\[\\]{}\":,a0 ]{0,400}") {
        answered(&text);
    }

    #[test]
    fn deep_nesting_is_bad_request_without_recursion(depth in (MAX_JSON_DEPTH + 1)..20_000usize, obj in any::<bool>()) {
        let (open, close) = if obj { ("{\"a\":", "}") } else { ("[", "]") };
        let text = format!(r#"{{"type":"ping","nonce":{}1{}}}"#, open.repeat(depth), close.repeat(depth));
        let e = parse_client_frame(&text).unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::BadRequest);
    }

    #[test]
    fn shallow_json_is_never_taken_for_deep(v in json_value(), s in ".{0,60}") {
        // Brackets and escaped quotes inside strings must not count as nesting.
        let text = json!([v, s]).to_string();
        prop_assert!(!json_depth_exceeds(text.as_bytes(), MAX_JSON_DEPTH), "{}", text);
    }

    #[test]
    fn valid_user_messages_round_trip(
        id in "[A-Za-z0-9_-]{1,64}",
        content in "\\PC{1,200}",
        thread in prop::option::of("[a-z0-9_]{1,40}"),
    ) {
        let text = json!({"type":"user_message","client_msg_id":id,"content":content,"thread_id":thread}).to_string();
        let parsed = parse_client_frame(&text).unwrap();
        prop_assert_eq!(parsed, ClientFrame::UserMessage { client_msg_id: id, content, thread_id: thread });
    }
}

#[test]
fn ten_thousand_nested_arrays_are_refused() {
    let text = "[".repeat(10_000) + &"]".repeat(10_000);
    assert_eq!(
        parse_client_frame(&text).unwrap_err().code,
        ErrorCode::BadRequest
    );
}
