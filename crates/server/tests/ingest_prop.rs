//! Property tests over the usage-record parsers (`ingest::parse_body`, `UsageRecord`): any
//! body is answered (records accepted or rejected by index, or the body refused whole), no
//! input panics, and the range rules hold for every record that is accepted.

use apogee_analytics::formats::{Format, Limits};
use apogee_analytics::usage::{MAX_FIELD_CHARS, MAX_TOKENS};
use apogee_analytics::{PriceCatalog, UsageRecord};
use apogee_server::ingest::parse_body;

/// Every body format `POST /api/usage` and `apogee ingest` accept.
const FORMATS: [Format; 4] = [
    Format::Usage,
    Format::Csv,
    Format::Litellm,
    Format::OpenaiUsage,
];
use proptest::prelude::*;
use serde_json::{Value, json};

fn catalog() -> PriceCatalog {
    PriceCatalog::builtin().unwrap()
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        (-5i64..5).prop_map(Value::from),
        (0..=MAX_TOKENS + 1).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        Just(json!("12")),
        Just(Value::Null),
    ]
}

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("gpt-4o")),
        Just(json!("gpt-4o-mini")),
        "\\PC{0,20}".prop_map(Value::from),
        (MAX_FIELD_CHARS - 1..MAX_FIELD_CHARS + 2).prop_map(|n| Value::from("m".repeat(n))),
        Just(json!(7)),
        Just(Value::Null),
    ]
}

fn timestamp() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("2026-11-20T08:15:02Z")),
        Just(json!("2026-11-20T08:15:02+05:30")),
        Just(json!("+262143-12-31T23:59:59Z")),
        "\\PC{0,30}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
    ]
}

/// Records shaped like §8, each field possibly missing, mistyped or out of range.
fn record_like() -> impl Strategy<Value = Value> {
    (
        prop::option::of(timestamp()),
        prop::option::of(text()),
        prop::option::of(number()),
        prop::option::of(number()),
        prop::option::of(number()),
        prop::option::of(number()),
        prop::option::of(number()),
        prop::option::of(text()),
        prop::option::of(prop_oneof![any::<bool>().prop_map(Value::from), text()]),
    )
        .prop_map(
            |(ts, model, input, output, cached, latency, cost, rid, batch)| {
                let mut m = serde_json::Map::new();
                for (k, v) in [
                    ("ts", ts),
                    ("model", model),
                    ("input_tokens", input),
                    ("output_tokens", output),
                    ("cached_input_tokens", cached),
                    ("latency_ms", latency),
                    ("cost_usd", cost),
                    ("request_id", rid),
                    ("batch", batch),
                ] {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                }
                Value::Object(m)
            },
        )
}

fn check_accepted(body: &[u8], records: usize) {
    let catalog = catalog();
    // Arrays and NDJSON of flat records are always answered record by record.
    let parsed = parse_body(Format::Usage, body, &catalog, Limits::default())
        .expect("a well-formed body is not refused whole");
    assert_eq!(parsed.accepted.len() + parsed.rejected.len(), records);
    for r in &parsed.rejected {
        assert!(r.index < records);
    }
    for (p, _) in &parsed.accepted {
        let r = &p.record;
        assert!((0..=MAX_TOKENS).contains(&r.input_tokens));
        assert!((0..=MAX_TOKENS).contains(&r.output_tokens));
        assert!(r.cached_tokens() <= r.input_tokens);
        assert!(p.cost.is_none_or(|c| c.0 >= 0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn any_bytes_are_answered(body in prop::collection::vec(any::<u8>(), 0..400)) {
        for format in FORMATS {
            let _ = parse_body(format, &body, &catalog(), Limits::default());
        }
    }

    #[test]
    fn any_text_is_answered(body in "\\PC{0,400}") {
        for format in FORMATS {
            let _ = parse_body(format, body.as_bytes(), &catalog(), Limits::default());
        }
    }

    #[test]
    fn record_arrays_answer_every_record(records in prop::collection::vec(record_like(), 0..20)) {
        let body = Value::from(records.clone()).to_string();
        check_accepted(body.as_bytes(), records.len());
    }

    #[test]
    fn ndjson_answers_every_line(records in prop::collection::vec(record_like(), 1..20), garbage in "[^\\n\\r]{1,40}") {
        let mut body: Vec<String> = records.iter().map(Value::to_string).collect();
        // Never first: a body whose first line starts with `[` is (rightly) read as a JSON
        // array, which is not what this property is about.
        body.insert(body.len().div_ceil(2), garbage.clone());
        let lines = body.iter().filter(|l| !l.trim().is_empty()).count();
        check_accepted(body.join("\n").as_bytes(), lines);
    }

    #[test]
    fn negative_token_counts_never_validate(n in i64::MIN..0, field in 0usize..3) {
        let mut v = json!({"ts":"2026-11-20T08:15:02Z","model":"gpt-4o","input_tokens":10,"output_tokens":10});
        let name = ["input_tokens", "output_tokens", "cached_input_tokens"][field];
        v[name] = n.into();
        let r: UsageRecord = serde_json::from_value(v).unwrap();
        prop_assert!(r.validate().is_err());
    }
}
