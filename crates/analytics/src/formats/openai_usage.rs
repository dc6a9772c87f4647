//! OpenAI organization usage-API exports for completions (`GET /v1/organization/usage/
//! completions`): a page `{"object":"page","data":[bucket…]}` or a JSON array of pages, each
//! bucket `{"start_time","end_time","results":[…]}`.
//!
//! These are aggregates: each result becomes one record standing for `num_model_requests`
//! calls (`request_count`) over the bucket (`bucket_seconds` = `end_time − start_time`, so
//! heuristics that read the time of day leave it out), at the bucket's `start_time`, with the
//! result's summed tokens (`input_cached_tokens` and `input_cache_write_tokens` are inside
//! `input_tokens`, OpenAI's convention and Apogee's) and its `service_tier`. The
//! `request_id` is `openai-usage-` + a 64-bit FNV-1a hash of the bucket bounds and the
//! result's grouping fields (model, project, user, API key, batch, service tier) — not of its
//! counts — so importing the same export twice stores it once. `project_id` becomes the
//! record's `feature`, `user_id` its `user`, `api_key_id` a tag. Export with
//! `group_by=model` (a result without a model cannot be priced and is rejected), and only
//! buckets that are over: a bucket re-exported with more traffic is a duplicate.

use std::collections::BTreeMap;

use chrono::DateTime;
use serde_json::Value;

use crate::usage::UsageRecord;

use super::FormatError;

pub fn parse(text: &str) -> Result<Vec<Result<UsageRecord, String>>, FormatError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| FormatError::Document(format!("not an OpenAI usage export: {e}")))?;
    let pages = match doc {
        Value::Array(pages) => pages,
        page => vec![page],
    };
    let mut out = Vec::new();
    for page in &pages {
        let buckets = page
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| FormatError::Document("a usage page needs a `data` array".into()))?;
        for bucket in buckets {
            match bucket.get("results").and_then(Value::as_array) {
                Some(results) => out.extend(results.iter().map(|r| record(bucket, r))),
                None => out.push(Err("bucket without a `results` array".into())),
            }
        }
    }
    Ok(out)
}

/// FNV-1a, 64-bit: a stable hash with no dependency (not for security, only for ids).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn count(result: &Value, name: &str) -> Result<i64, String> {
    match result.get(name) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("`{name}` must be an integer")),
    }
}

fn field(result: &Value, name: &str) -> Option<String> {
    result
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn record(bucket: &Value, result: &Value) -> Result<UsageRecord, String> {
    let start = bucket
        .get("start_time")
        .and_then(Value::as_i64)
        .ok_or("bucket `start_time` must be a Unix time in seconds")?;
    let end = bucket
        .get("end_time")
        .and_then(Value::as_i64)
        .unwrap_or(start);
    let ts = DateTime::from_timestamp(start, 0).ok_or("bucket `start_time` is out of range")?;
    let model = field(result, "model")
        .ok_or("result has no `model`: export the usage with group_by=model")?;
    let requests = count(result, "num_model_requests")?;
    if requests < 1 {
        return Err("`num_model_requests` must be at least 1".into());
    }
    let batch = result.get("batch").and_then(Value::as_bool);
    let (project, user, key) = (
        field(result, "project_id"),
        field(result, "user_id"),
        field(result, "api_key_id"),
    );
    let identity = format!(
        "{start}|{end}|{model}|{}|{}|{}|{}|{}",
        project.as_deref().unwrap_or(""),
        user.as_deref().unwrap_or(""),
        key.as_deref().unwrap_or(""),
        batch.map_or("", |b| if b { "1" } else { "0" }),
        field(result, "service_tier").as_deref().unwrap_or(""),
    );
    let mut r = UsageRecord::new(
        ts,
        model,
        count(result, "input_tokens")?,
        count(result, "output_tokens")?,
    );
    r.request_id = Some(format!("openai-usage-{:016x}", fnv1a(&identity)));
    r.provider = Some("openai".into());
    r.cached_input_tokens = Some(count(result, "input_cached_tokens")?);
    r.cache_creation_input_tokens =
        Some(count(result, "input_cache_write_tokens")?).filter(|n| *n > 0);
    r.bucket_seconds = Some(end - start).filter(|s| *s > 0);
    r.service_tier = field(result, "service_tier");
    r.batch = batch;
    r.request_count = Some(requests);
    r.user = user;
    r.feature = project;
    r.tags = key.map(|k| BTreeMap::from([("api_key_id".to_string(), k)]));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::fnv1a;
    use crate::formats::{Format, parse, testdata};

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn sample_export_becomes_one_record_per_result() {
        let b = parse(Format::OpenaiUsage, testdata::OPENAI_USAGE.as_bytes()).unwrap();
        let idx: Vec<usize> = b.rejected.iter().map(|r| r.index).collect();
        assert_eq!(idx, [3, 4], "{:?}", b.rejected);
        assert_eq!(b.records.len(), 3);
        let r = &b.records[0];
        assert_eq!(r.ts.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(
            (r.input_tokens, r.cached_tokens(), r.output_tokens),
            (1_500_000, 400_000, 210_000)
        );
        assert_eq!(
            (r.request_count, r.batch, r.feature.as_deref()),
            (Some(1200), Some(false), Some("proj_support"))
        );
        // Same export again: the same ids, so ingest stores it once.
        let again = parse(Format::OpenaiUsage, testdata::OPENAI_USAGE.as_bytes()).unwrap();
        let ids = |b: &crate::formats::ParsedBatch| {
            b.records
                .iter()
                .map(|r| r.request_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&b), ids(&again));
        // Results differing only in `batch` get different ids.
        assert_ne!(b.records[0].request_id, b.records[1].request_id);
        // A day's bucket: its calls' times of day are unknown.
        assert_eq!(r.bucket_seconds, Some(86_400));
        assert!(r.is_aggregate());
    }

    #[test]
    fn service_tier_and_cache_writes_are_kept() {
        let export = include_str!("../../testdata/golden/openai_export.json");
        let b = parse(Format::OpenaiUsage, export.as_bytes()).unwrap();
        assert!(b.rejected.is_empty(), "{:?}", b.rejected);
        assert_eq!(b.records[2].service_tier.as_deref(), Some("priority"));
        let luna = &b.records[3];
        assert_eq!(
            (
                luna.input_tokens,
                luna.cached_tokens(),
                luna.cache_write_tokens()
            ),
            (1_000_000, 600_000, 200_000)
        );
    }
}
