//! LiteLLM spend-log exports: a JSON array of spend logs (the proxy's `LiteLLM_SpendLogs` rows
//! as `/spend/logs` returns them), or `{"data": [...]}`.
//!
//! Mapping: `request_id`; `startTime` → `ts` (a time without offset is UTC) and `endTime −
//! startTime` → `latency_ms`; `model`; `custom_llm_provider`, else the gateway prefix of
//! `model` (`anthropic/…`, `bedrock/converse/…`; an org such as Together's `meta-llama/` stays
//! part of the model), → `provider`; `prompt_tokens`/`completion_tokens`; `user`; the first of
//! `request_tags` (a JSON array, or the JSON string of one, as the proxy stores it) →
//! `feature`; `end_user`, `team_id`, `api_key` alias, `model_group` and `cache_hit` → tags;
//! `status` `failure` → `error`; `metadata.cost_breakdown.service_tier` → `service_tier`.
//! Cache tokens come from `metadata.additional_usage_values` (`cache_read_input_tokens` or
//! `prompt_tokens_details.cached_tokens`, `cache_creation_input_tokens`, the 1-hour part from
//! `prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens` or
//! `cache_creation.ephemeral_1h_input_tokens`, `completion_tokens_details.reasoning_tokens`).
//!
//! LiteLLM reports usage OpenAI-style (cached tokens inside `prompt_tokens`); counts where the
//! cache exceeds `prompt_tokens` can only be Anthropic-style and are added up instead.
//! `spend` is LiteLLM's own price and wins like a client `cost_usd` — except a `spend` of 0 on
//! a call with tokens, which is how LiteLLM books models it has no price for: that call is
//! priced from Apogee's catalog or reported unpriced, never kept at $0. A cache hit
//! (`cache_hit: "True"`) made no provider call: it costs its `spend`, $0, whatever its tokens.
//! A negative `spend` rejects the log.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use crate::catalog::strip_gateway_prefixes;
use crate::tokens::CacheConvention;
use crate::usage::UsageRecord;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Collector, FormatError, small_value, stream};

/// Reads an export's spend logs into `out`, one at a time.
pub fn read(text: &str, out: &mut Collector) -> Result<(), FormatError> {
    let mut each = |raw: &str| out.push(small_value(raw, "spend log").and_then(|v| record(&v)));
    let mut stop = None;
    let read = stream::read_document(
        text,
        Export {
            each: &mut each,
            stop: &mut stop,
        },
    );
    stream::finish(read, stop, "not a LiteLLM spend-log export")
}

/// The export: an array of spend logs, or an object whose `data` is one.
struct Export<'f, F> {
    each: &'f mut F,
    stop: &'f mut stream::Stop,
}

impl<'de, F: FnMut(&'de str) -> Result<(), FormatError>> DeserializeSeed<'de> for Export<'_, F> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(&'de str) -> Result<(), FormatError>> Visitor<'de> for Export<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of spend logs or {\"data\": [...]}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        stream::EachElement {
            each: self.each,
            stop: self.stop,
        }
        .visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "data" && !found {
                found = true;
                map.next_value_seed(stream::EachElement {
                    each: &mut *self.each,
                    stop: &mut *self.stop,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if found {
            Ok(())
        } else {
            Err(A::Error::custom(
                "expected a JSON array of spend logs or {\"data\": [...]}",
            ))
        }
    }
}

/// `2026-11-20T08:15:02Z`, `2026-11-20T08:15:02.123000` (UTC), or `2026-11-20 08:15:02`.
fn time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| t.and_utc())
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn int(v: Option<&Value>, name: &str) -> Result<Option<i64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("`{name}` must be an integer")),
    }
}

/// The first of `request_tags`: a JSON array of strings, or (as the proxy's `SpendLogs` table
/// stores it) the JSON text of one.
fn first_tag(tags: Option<&Value>) -> Option<String> {
    let parsed;
    let list = match tags? {
        Value::Array(list) => list,
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).ok()?;
            parsed.as_array()?
        }
        _ => return None,
    };
    text(list.first())
}

fn record(log: &Value) -> Result<UsageRecord, String> {
    let Value::Object(o) = log else {
        return Err("a spend log must be a JSON object".into());
    };
    let ts = time(o.get("startTime").unwrap_or(&Value::Null))
        .ok_or("`startTime` is missing or not a time")?;
    let model_text = text(o.get("model")).ok_or("`model` is missing")?;
    let input = int(o.get("prompt_tokens"), "prompt_tokens")?.unwrap_or(0);
    let output = int(o.get("completion_tokens"), "completion_tokens")?.unwrap_or(0);
    let (prefix, model) = strip_gateway_prefixes(&model_text);
    let mut r = UsageRecord::new(ts, model.to_string(), input, output);
    r.request_id = text(o.get("request_id"));
    r.provider = text(o.get("custom_llm_provider")).or(prefix);
    r.user = text(o.get("user"));
    r.latency_ms = o
        .get("endTime")
        .and_then(time)
        .map(|end| (end - ts).num_milliseconds())
        .filter(|ms| *ms >= 0);
    r.status = match text(o.get("status")).as_deref() {
        Some("failure") => Some("error".into()),
        Some(_) => Some("ok".into()),
        None => None,
    };
    r.feature = first_tag(o.get("request_tags"));
    let spend = match o.get("spend") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_f64().ok_or("`spend` must be a number")?),
    };
    if spend.is_some_and(|s| s < 0.0) {
        return Err("`spend` must not be negative".into());
    }
    let cache_hit = o
        .get("cache_hit")
        .and_then(|hit| {
            hit.as_bool()
                .or_else(|| hit.as_str().map(|s| s.eq_ignore_ascii_case("true")))
        })
        .unwrap_or(false);
    r.cost_usd = if cache_hit {
        // Served from LiteLLM's cache: no provider call, nothing billed.
        Some(spend.unwrap_or(0.0))
    } else {
        spend.filter(|s| *s > 0.0 || input + output == 0)
    };

    // `metadata` is an object, or the same object as a JSON string in some exports.
    let metadata = match o.get("metadata") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    let usage = &metadata["additional_usage_values"];
    let cache_read = int(
        usage.get("cache_read_input_tokens"),
        "cache_read_input_tokens",
    )?
    .or(int(
        usage.pointer("/prompt_tokens_details/cached_tokens"),
        "cached_tokens",
    )?);
    let cache_write = int(
        usage.get("cache_creation_input_tokens"),
        "cache_creation_input_tokens",
    )?;
    r.cached_input_tokens = cache_read.filter(|n| *n > 0);
    r.cache_creation_input_tokens = cache_write.filter(|n| *n > 0);
    let write_1h = int(
        usage.pointer(
            "/prompt_tokens_details/cache_creation_token_details/ephemeral_1h_input_tokens",
        ),
        "ephemeral_1h_input_tokens",
    )?
    .or(int(
        usage.pointer("/cache_creation/ephemeral_1h_input_tokens"),
        "ephemeral_1h_input_tokens",
    )?);
    r.cache_creation_1h_input_tokens = write_1h.filter(|n| *n > 0);
    r.service_tier = text(metadata.pointer("/cost_breakdown/service_tier"));
    r.reasoning_tokens = int(
        usage.pointer("/completion_tokens_details/reasoning_tokens"),
        "reasoning_tokens",
    )?
    .filter(|n| *n > 0);
    if r.cached_tokens() + r.cache_write_tokens() > input {
        r.token_convention = Some(CacheConvention::ExcludesCache);
    }

    let mut tags = BTreeMap::new();
    for (key, value) in [
        ("end_user", o.get("end_user")),
        ("team_id", o.get("team_id")),
        ("model_group", o.get("model_group")),
        ("api_key_alias", metadata.get("user_api_key_alias")),
        ("team_alias", metadata.get("user_api_key_team_alias")),
    ] {
        if let Some(v) = text(value) {
            tags.insert(key.to_string(), v);
        }
    }
    if cache_hit {
        tags.insert("litellm_cache_hit".into(), "true".into());
    }
    r.tags = (!tags.is_empty()).then_some(tags);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use crate::formats::{Format, parse, testdata};
    use crate::money::Nanos;

    #[test]
    fn sample_spend_logs_map_to_records() {
        let b = parse(Format::Litellm, testdata::LITELLM.as_bytes()).unwrap();
        let idx: Vec<usize> = b.rejected.iter().map(|r| r.index).collect();
        assert_eq!(idx, [4, 5], "{:?}", b.rejected);
        assert_eq!(b.records.len(), 4);
        let a = &b.records[0];
        assert_eq!(a.request_id.as_deref(), Some("chatcmpl-9a1b"));
        assert_eq!(
            (a.provider.as_deref(), a.model.as_str()),
            (Some("openai"), "gpt-4o")
        );
        assert_eq!(
            (a.input_tokens, a.cached_tokens(), a.latency_ms),
            (1200, 1000, Some(1840))
        );
        assert_eq!(a.client_cost(), Some(Nanos(4_850_000)));
        assert_eq!(a.feature.as_deref(), Some("support-bot"));
        // Anthropic counts that only fit the exclusive convention: 50 + 1000 + 150.
        let c = &b.records[1];
        assert_eq!(
            (c.provider.as_deref(), c.input_tokens),
            (Some("anthropic"), 1200)
        );
        // spend 0 on an unknown model is not a price.
        let u = &b.records[2];
        assert_eq!((u.cost_usd, u.status.as_deref()), (None, Some("ok")));
        assert_eq!(b.records[3].status.as_deref(), Some("error"));
    }

    /// LiteLLM's `SpendLogs` rows as the proxy writes them (request_tags as JSON text, the
    /// usage object's extras under `metadata.additional_usage_values`).
    const PROXY_LOGS: &str = include_str!("../../testdata/golden/litellm_spend_logs.json");

    #[test]
    fn cache_hits_cost_nothing_and_tags_stored_as_json_text_name_the_feature() {
        let b = parse(Format::Litellm, PROXY_LOGS.as_bytes()).unwrap();
        let hit = &b.records[0];
        assert_eq!(hit.client_cost(), Some(Nanos::ZERO));
        assert_eq!(hit.feature.as_deref(), Some("faq-bot"));
        assert_eq!(
            hit.tags.as_ref().and_then(|t| t.get("litellm_cache_hit")),
            Some(&"true".to_string())
        );
        // Not a cache hit and `spend` 0 on tokens: left to the catalog, as before.
        assert_eq!(b.records[1].client_cost(), None);
    }

    #[test]
    fn service_tier_and_one_hour_cache_writes_come_from_metadata() {
        let b = parse(Format::Litellm, PROXY_LOGS.as_bytes()).unwrap();
        assert_eq!(b.records[1].service_tier.as_deref(), Some("flex"));
        let ttl = &b.records[2];
        assert_eq!(
            (
                ttl.provider.as_deref(),
                ttl.model.as_str(),
                ttl.cache_write_tokens(),
                ttl.cache_write_1h_tokens()
            ),
            (Some("anthropic"), "claude-sonnet-4-5-20250929", 5000, 4000)
        );
    }

    #[test]
    fn a_negative_spend_rejects_its_log_by_index() {
        let b = parse(Format::Litellm, PROXY_LOGS.as_bytes()).unwrap();
        assert_eq!(b.rejected.len(), 1);
        assert_eq!(b.rejected[0].index, 3);
        assert!(b.rejected[0].error.contains("`spend`"), "{:?}", b.rejected);
    }

    #[test]
    fn a_model_org_is_not_a_provider_prefix() {
        let log = r#"[{"request_id":"t-1","startTime":"2026-11-20T08:00:00Z","model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","custom_llm_provider":"together_ai","prompt_tokens":10,"completion_tokens":5,"spend":0.0}]"#;
        let b = parse(Format::Litellm, log.as_bytes()).unwrap();
        assert_eq!(
            (
                b.records[0].provider.as_deref(),
                b.records[0].model.as_str()
            ),
            (
                Some("together_ai"),
                "meta-llama/Llama-3.3-70B-Instruct-Turbo"
            )
        );
    }

    #[test]
    fn logs_are_read_one_at_a_time_and_an_oversized_one_is_rejected_alone() {
        let log = r#"{"request_id":"a","startTime":"2026-11-20T08:15:02Z","model":"gpt-4o","prompt_tokens":10,"completion_tokens":5}"#;
        let big = format!(
            r#"{{"request_id":"b","startTime":"2026-11-20T08:15:02Z","model":"gpt-4o","prompt_tokens":10,"completion_tokens":5,"messages":"{}"}}"#,
            "x".repeat(2 * 1024 * 1024)
        );
        let body = format!(r#"{{"total":2,"data":[{log},{big},{log}],"page":1}}"#);
        let b = parse(Format::Litellm, body.as_bytes()).unwrap();
        assert_eq!(b.indexes, [0, 2]);
        assert_eq!(b.rejected[0].index, 1);
        assert!(
            b.rejected[0].error.contains("larger than"),
            "{:?}",
            b.rejected
        );
        assert!(parse(Format::Litellm, b"{\"data\":[1,").is_err());
    }

    #[test]
    fn non_array_documents_are_refused_whole() {
        assert!(parse(Format::Litellm, b"{\"logs\":1}").is_err());
        assert!(
            parse(Format::Litellm, b"{\"data\":[]}")
                .unwrap()
                .records
                .is_empty()
        );
    }
}
