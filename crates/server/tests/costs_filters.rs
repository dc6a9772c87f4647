//! `GET /api/costs` filters, groupings and comparison windows over loopback: a small generated
//! dataset (the demo generator's records, with their `team` and `env` tags) is posted to
//! `/api/usage`, and every answer is checked against the matching records summed here by
//! hand; bad parameters are 400s that say what is wrong.

mod common;

use std::collections::BTreeMap;

use apogee_analytics::demo::{DemoSpec, generate};
use apogee_analytics::{PriceCatalog, PricedRecord};
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use common::*;
use serde_json::Value;

fn end() -> DateTime<Utc> {
    // A Wednesday; the 21 days before it cross a month boundary and four ISO weeks.
    Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap()
}

fn records() -> Vec<PricedRecord> {
    let catalog = PriceCatalog::builtin().unwrap();
    let spec = DemoSpec {
        days: 21,
        calls: 3_000,
        seed: 5,
        end: end(),
    };
    generate(&spec)
        .map(|r| PricedRecord::price(r, &catalog))
        .collect()
}

async fn server_with(dir: &std::path::Path, records: &[PricedRecord]) -> Server {
    let server = Server::start(dir, &[]).await;
    let body: String = records
        .iter()
        .map(|p| serde_json::to_string(&p.record).unwrap() + "\n")
        .collect();
    let (s, answer) = http(
        &server.addr,
        "POST",
        "/api/usage",
        &[
            ("X-Apogee-User", "alice"),
            ("Content-Type", "application/x-ndjson"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "{answer}");
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["accepted"], records.len());
    server
}

/// Sums of the records a predicate keeps, computed here field by field.
#[derive(Debug, Default, PartialEq)]
struct Sums {
    calls: i64,
    input: i64,
    output: i64,
    cost: i64,
    unpriced: i64,
    errors: i64,
}

fn sums<'a>(records: impl Iterator<Item = &'a PricedRecord>) -> Sums {
    let mut s = Sums::default();
    for p in records {
        let r = &p.record;
        let calls = r.request_count.unwrap_or(1);
        s.calls += calls;
        s.input += r.input_tokens;
        s.output += r.output_tokens;
        match p.cost {
            Some(c) => s.cost += i64::try_from(c.0).unwrap(),
            None => s.unpriced += calls,
        }
        if r.status.as_deref().is_some_and(|st| st != "ok") {
            s.errors += calls;
        }
    }
    s
}

fn sums_of(v: &Value) -> Sums {
    let n = |k: &str| v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"));
    Sums {
        calls: n("calls"),
        input: n("input_tokens"),
        output: n("output_tokens"),
        cost: n("cost_nanos"),
        unpriced: n("unpriced_calls"),
        errors: n("error_calls"),
    }
}

fn in_window(p: &PricedRecord, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    p.record.ts >= from && p.record.ts < to
}

fn tag<'a>(p: &'a PricedRecord, key: &str) -> &'a str {
    p.record
        .tags
        .as_ref()
        .and_then(|t| t.get(key))
        .map_or("(none)", String::as_str)
}

fn user(p: &PricedRecord) -> &str {
    p.record.user.as_deref().unwrap_or("(none)")
}

fn feature(p: &PricedRecord) -> &str {
    p.record.feature.as_deref().unwrap_or("(none)")
}

fn provider(p: &PricedRecord) -> String {
    p.provider(&PriceCatalog::builtin().unwrap())
}

type Keep = fn(&PricedRecord) -> bool;

#[tokio::test]
async fn filters_equal_the_matching_records_summed_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let data = records();
    let server = server_with(dir.path(), &data).await;
    // The whole history: 2026-11-04 … 2026-11-24.
    let window = "from=2026-11-04&to=2026-11-24";
    let (from, to) = (end() - Duration::days(21), end());
    let cases: [(&str, Keep); 12] = [
        ("", |_| true),
        ("model=gpt-4o", |p| p.record.model == "gpt-4o"),
        ("model=gpt-4o&model=gpt-4o-mini", |p| {
            p.record.model == "gpt-4o" || p.record.model == "gpt-4o-mini"
        }),
        ("not.model=gpt-4o", |p| p.record.model != "gpt-4o"),
        ("provider=anthropic", |p| provider(p) == "anthropic"),
        ("feature=support-bot&user=demo-user-03", |p| {
            feature(p) == "support-bot" && user(p) == "demo-user-03"
        }),
        ("user=(none)", |p| p.record.user.is_none()),
        ("tag.team=growth", |p| tag(p, "team") == "growth"),
        // Records without a team are not `growth`: excluding it keeps them.
        ("not.tag.team=growth", |p| tag(p, "team") != "growth"),
        ("tag.team=(none)", |p| tag(p, "team") == "(none)"),
        (
            "tag.team=support&tag.team=growth&not.feature=ticket-tagging",
            |p| matches!(tag(p, "team"), "support" | "growth") && feature(p) != "ticket-tagging",
        ),
        ("tag.env=prod&not.tag.team=knowledge&model=gpt-4o", |p| {
            tag(p, "env") == "prod" && tag(p, "team") != "knowledge" && p.record.model == "gpt-4o"
        }),
    ];
    for (filters, keep) in cases {
        let path = format!("/api/costs?{window}&{filters}");
        let (s, v) = get_json(&server.addr, &path, "alice").await;
        assert_eq!(s, 200, "{path}: {v}");
        let expected = sums(data.iter().filter(|p| in_window(p, from, to) && keep(p)));
        assert!(expected.calls > 0, "{filters} selects nothing");
        assert_eq!(sums_of(&v["totals"]), expected, "{filters}");
        // Grouped by model (the default), the rows add up to the totals.
        let rows = v["rows"].as_array().unwrap();
        let row_calls: i64 = rows.iter().map(|r| r["calls"].as_i64().unwrap()).sum();
        assert_eq!(row_calls, expected.calls, "{filters}");
        assert_eq!(v["group_by"], "model");
    }
    // The filters as understood are echoed back.
    let (_, v) = get_json(
        &server.addr,
        &format!("/api/costs?{window}&model=gpt-4o&model=gpt-4o-mini&not.tag.team=growth"),
        "alice",
    )
    .await;
    assert_eq!(
        v["filters"],
        serde_json::json!([
            {"dimension": "model", "values": ["gpt-4o", "gpt-4o-mini"]},
            {"dimension": "tag:team", "values": ["growth"], "exclude": true},
        ])
    );
    // Every field PROTOCOL.md §7 gave the answer is still there.
    for field in [
        "org_id", "from", "to", "group_by", "currency", "totals", "rows", "forecast",
    ] {
        assert!(v.get(field).is_some(), "{field} missing: {v}");
    }
    assert_eq!(v["from"], "2026-11-04T00:00:00Z");
    assert_eq!(v["to"], "2026-11-25T00:00:00Z");
    assert!(v["totals"]["cost_usd"].is_f64() && v["rows"][0]["cost_usd"].is_f64());
}

/// The UTC Monday that starts `t`'s week.
fn monday(t: DateTime<Utc>) -> String {
    let d = t.date_naive();
    (d - Duration::days(i64::from(d.weekday().num_days_from_monday())))
        .format("%Y-%m-%d")
        .to_string()
}

#[tokio::test]
async fn groups_by_week_and_by_tag() {
    let dir = tempfile::tempdir().unwrap();
    let data = records();
    let server = server_with(dir.path(), &data).await;
    let (from, to) = (end() - Duration::days(21), end());

    // Weeks, keyed by their Monday, ascending; the first week started before the window.
    let (s, v) = get_json(
        &server.addr,
        "/api/costs?from=2026-11-04&to=2026-11-24&group_by=week&tag.team=growth",
        "alice",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let mut by_week: BTreeMap<String, Vec<&PricedRecord>> = BTreeMap::new();
    for p in data
        .iter()
        .filter(|p| in_window(p, from, to) && tag(p, "team") == "growth")
    {
        by_week.entry(monday(p.record.ts)).or_default().push(p);
    }
    let rows = v["rows"].as_array().unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, by_week.keys().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(keys[0], "2026-11-02");
    for r in rows {
        let expected = sums(by_week[r["key"].as_str().unwrap()].iter().copied());
        assert_eq!(sums_of(r), expected, "{r}");
    }

    // A tag key: one row per team, `(none)` for the untagged ad-hoc scripts, by cost.
    let (s, v) = get_json(
        &server.addr,
        "/api/costs?from=2026-11-04&to=2026-11-24&group_by=tag:team",
        "alice",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["group_by"], "tag:team");
    let mut by_team: BTreeMap<&str, Vec<&PricedRecord>> = BTreeMap::new();
    for p in data.iter().filter(|p| in_window(p, from, to)) {
        by_team.entry(tag(p, "team")).or_default().push(p);
    }
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), by_team.len());
    assert!(by_team.contains_key("(none)") && by_team.contains_key("growth"));
    let costs: Vec<i64> = rows
        .iter()
        .map(|r| r["cost_nanos"].as_i64().unwrap())
        .collect();
    assert!(costs.windows(2).all(|w| w[0] >= w[1]), "{costs:?}");
    for r in rows {
        let expected = sums(by_team[r["key"].as_str().unwrap()].iter().copied());
        assert_eq!(sums_of(r), expected, "{r}");
    }
}

#[tokio::test]
async fn groups_by_the_hour_of_the_day_and_the_day_of_the_week_across_partial_hours() {
    let dir = tempfile::tempdir().unwrap();
    let data = records();
    let server = server_with(dir.path(), &data).await;
    // Both ends inside an hour: the partial hours come from the raw rows, the rest from the
    // hourly rollups, and each call counts in its own hour of the day.
    let from = Utc.with_ymd_and_hms(2026, 11, 4, 10, 30, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2026, 11, 20, 17, 45, 0).unwrap();
    let (s, v) = get_json(
        &server.addr,
        "/api/costs?from=2026-11-04T10:30:00Z&to=2026-11-20T17:45:00Z&group_by=hour_of_day&feature=support-bot",
        "alice",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["group_by"], "hour_of_day");
    let mut by_hour: BTreeMap<String, Vec<&PricedRecord>> = BTreeMap::new();
    for p in data
        .iter()
        .filter(|p| in_window(p, from, to) && feature(p) == "support-bot")
    {
        by_hour
            .entry(p.record.ts.format("%H:00").to_string())
            .or_default()
            .push(p);
    }
    assert!(by_hour.len() > 12, "{by_hour:?}");
    let rows = v["rows"].as_array().unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, by_hour.keys().map(String::as_str).collect::<Vec<_>>());
    for r in rows {
        let expected = sums(by_hour[r["key"].as_str().unwrap()].iter().copied());
        assert_eq!(sums_of(r), expected, "{r}");
    }

    // Weekdays, Monday first: the window starts on a Wednesday.
    let (s, v) = get_json(
        &server.addr,
        "/api/costs?from=2026-11-04T10:30:00Z&to=2026-11-20T17:45:00Z&group_by=day_of_week&feature=support-bot",
        "alice",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let mut by_weekday: BTreeMap<u32, Vec<&PricedRecord>> = BTreeMap::new();
    for p in data
        .iter()
        .filter(|p| in_window(p, from, to) && feature(p) == "support-bot")
    {
        by_weekday
            .entry(p.record.ts.weekday().num_days_from_monday())
            .or_default()
            .push(p);
    }
    let rows = v["rows"].as_array().unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        by_weekday
            .keys()
            .map(|d| apogee_analytics::WEEKDAYS[*d as usize])
            .collect::<Vec<_>>()
    );
    assert_eq!(keys.len(), 7);
    for (r, records) in rows.iter().zip(by_weekday.values()) {
        assert_eq!(sums_of(r), sums(records.iter().copied()), "{r}");
    }
}

#[tokio::test]
async fn a_comparison_window_has_its_own_totals_rows_and_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let data = records();
    let server = server_with(dir.path(), &data).await;
    let at = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0).unwrap();
    let support = |p: &&PricedRecord| tag(p, "team") == "support";

    // This week (Nov 18–24) against the 7 days before it.
    let (s, v) = get_json(
        &server.addr,
        "/api/costs?from=2026-11-18&to=2026-11-24&tag.team=support&group_by=feature&compare=previous",
        "alice",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let now = sums(
        data.iter()
            .filter(|p| in_window(p, at(18), at(25)))
            .filter(support),
    );
    let before = sums(
        data.iter()
            .filter(|p| in_window(p, at(11), at(18)))
            .filter(support),
    );
    assert_eq!(sums_of(&v["totals"]), now);
    let c = &v["compare"];
    assert_eq!(c["from"], "2026-11-11T00:00:00Z");
    assert_eq!(c["to"], "2026-11-18T00:00:00Z");
    assert_eq!(sums_of(&c["totals"]), before);
    assert_eq!(c["change"]["cost_nanos"], now.cost - before.cost);
    assert_eq!(c["change"]["calls"], now.calls - before.calls);
    let ratio = c["change"]["cost_ratio"].as_f64().unwrap();
    assert!((ratio - (now.cost - before.cost) as f64 / before.cost as f64).abs() < 1e-12);
    // Per feature: both windows' rows, and each feature's change.
    let keys = |rows: &Value| {
        let mut k: Vec<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap().to_string())
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&c["rows"]), ["support-bot", "ticket-tagging"]);
    assert_eq!(
        keys(&c["change"]["rows"]),
        ["support-bot", "ticket-tagging"]
    );
    let bot = |from, to| {
        sums(
            data.iter()
                .filter(|p| in_window(p, from, to) && feature(p) == "support-bot"),
        )
        .cost
    };
    let bot_change = c["change"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "support-bot")
        .unwrap();
    assert_eq!(
        bot_change["cost_nanos"],
        bot(at(18), at(25)) - bot(at(11), at(18))
    );

    // An explicit window, of another length.
    let (s, v) = get_json(
        &server.addr,
        "/api/costs?from=2026-11-18&to=2026-11-24&model=gpt-4o&compare_from=2026-11-04&compare_to=2026-11-06",
        "alice",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let c = &v["compare"];
    assert_eq!(c["from"], "2026-11-04T00:00:00Z");
    assert_eq!(c["to"], "2026-11-07T00:00:00Z");
    let before = sums(
        data.iter()
            .filter(|p| in_window(p, at(4), at(7)) && p.record.model == "gpt-4o"),
    );
    assert_eq!(sums_of(&c["totals"]), before);

    // Without `compare` there is no comparison.
    let (_, v) = get_json(&server.addr, "/api/costs?period=7d", "alice").await;
    assert!(v.get("compare").is_none(), "{v}");
}

#[tokio::test]
async fn bad_parameters_are_400s_that_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let too_many: String = (0..=16).map(|i| format!("&tag.k{i}=v")).collect();
    for (query, says) in [
        ("group_by=color", "unknown group_by `color`"),
        ("group_by=tag:", "unknown group_by `tag:`"),
        ("colour=red", "unknown parameter `colour`"),
        ("model=", "`model` has an empty value"),
        ("not.tag.team=", "`not.tag.team` has an empty value"),
        (too_many.as_str(), "at most 16 filters"),
        (
            "from=2026-11-10&to=2026-11-09",
            "`from` must be before `to`",
        ),
        (
            "from=2026-11-10T00:00:00Z&to=2026-11-10T00:00:00Z",
            "`from` must be before `to`",
        ),
        (
            "compare_from=2026-11-10&compare_to=2026-11-01",
            "`compare_from` must be before `compare_to`",
        ),
        ("compare=lastyear", "unknown compare `lastyear`"),
        ("compare_to=2026-11-01", "give both"),
        (
            "compare_from=yesterday&compare_to=2026-11-01",
            "neither YYYY-MM-DD nor RFC 3339",
        ),
        ("period=fortnight", "unknown period `fortnight`"),
        (
            "group_by=day&group_by=week",
            "`group_by` is given more than once",
        ),
    ] {
        let (s, v) = get_json(&server.addr, &format!("/api/costs?{query}"), "alice").await;
        assert_eq!(s, 400, "{query}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{query}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{query}: {message}");
    }
}
