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
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::usage::UsageRecord;

use super::{Collector, FormatError, small_value, stream};

/// Reads an export's results into `out`, one bucket at a time: a bucket's bounds are kept as
/// a small JSON object and its results are parsed one by one against them.
pub fn read(text: &str, out: &mut Collector) -> Result<(), FormatError> {
    let mut stop = None;
    let read = stream::read_document(
        text,
        Pages {
            out: &mut *out,
            stop: &mut stop,
        },
    );
    stream::finish(read, stop, "not an OpenAI usage export")
}

/// A page, or an array of pages.
struct Pages<'f> {
    out: &'f mut Collector,
    stop: &'f mut stream::Stop,
}

impl<'de> DeserializeSeed<'de> for Pages<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pages<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a usage page or an array of pages")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Page {
                out: &mut *self.out,
                stop: &mut *self.stop,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        Page {
            out: self.out,
            stop: self.stop,
        }
        .visit_map(map)
    }
}

/// One page: its `data` array of buckets.
struct Page<'f> {
    out: &'f mut Collector,
    stop: &'f mut stream::Stop,
}

const NO_DATA: &str = "a usage page needs a `data` array";

impl<'de> DeserializeSeed<'de> for Page<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Page<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(NO_DATA)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "data" && !found {
                found = true;
                map.next_value_seed(Buckets {
                    out: &mut *self.out,
                    stop: &mut *self.stop,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if found {
            Ok(())
        } else {
            Err(A::Error::custom(NO_DATA))
        }
    }
}

/// A page's `data`: buckets, each handed to [`Bucket`].
struct Buckets<'f> {
    out: &'f mut Collector,
    stop: &'f mut stream::Stop,
}

impl<'de> DeserializeSeed<'de> for Buckets<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Buckets<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(NO_DATA)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let seed = BucketSeed {
                room: self.out.room(),
                full: self.out.too_many(),
                stop: &mut *self.stop,
            };
            let Some(bucket) = seq.next_element_seed(seed)? else {
                return Ok(());
            };
            if let Err(e) = bucket.emit(self.out) {
                *self.stop = Some(e);
                return Err(stream::stopped());
            }
        }
    }
}

/// A bucket as read: its bounds (small values only) and its results as raw JSON.
struct Bucket<'a> {
    bounds: Map<String, Value>,
    results: Option<Vec<&'a str>>,
}

impl Bucket<'_> {
    /// Its results as records, in order.
    fn emit(self, out: &mut Collector) -> Result<(), FormatError> {
        let Some(results) = self.results else {
            return out.push(Err("bucket without a `results` array".into()));
        };
        let bucket = Value::Object(self.bounds);
        for raw in results {
            out.push(small_value(raw, "result").and_then(|r| record(&bucket, &r)))?;
        }
        Ok(())
    }
}

/// Reads one bucket, holding at most `room` results (the records the body may still have).
struct BucketSeed<'f> {
    room: usize,
    /// The error for one result more.
    full: FormatError,
    stop: &'f mut stream::Stop,
}

impl<'de> DeserializeSeed<'de> for BucketSeed<'_> {
    type Value = Bucket<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Bucket<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BucketSeed<'_> {
    type Value = Bucket<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a usage bucket object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bucket<'de>, A::Error> {
        let mut bucket = Bucket {
            bounds: Map::new(),
            results: None,
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "results" => {
                    let raw: &'de RawValue = map.next_value()?;
                    let mut results = Vec::new();
                    let (room, full) = (self.room, &self.full);
                    let read = stream::array_elements(
                        raw.get(),
                        |r| {
                            if results.len() >= room {
                                return Err(full.clone());
                            }
                            results.push(r);
                            Ok(())
                        },
                        "results",
                    );
                    match read {
                        Ok(()) => bucket.results = Some(results),
                        // Not an array: the bucket has no results (reported as its record).
                        Err(FormatError::Document(_)) => {}
                        Err(e) => {
                            *self.stop = Some(e);
                            return Err(stream::stopped());
                        }
                    }
                }
                "start_time" | "end_time" | "object" => {
                    let raw: &'de RawValue = map.next_value()?;
                    if let Ok(v) = small_value(raw.get(), &key) {
                        bucket.bounds.insert(key.into_owned(), v);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(bucket)
    }
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
    fn buckets_are_read_whatever_the_key_order_and_bounded_by_the_record_limit() {
        use crate::formats::{FormatError, Limits, parse_with};
        let result = r#"{"object":"organization.usage.completions.result","model":"gpt-4o","input_tokens":10,"output_tokens":5,"num_model_requests":2}"#;
        let results = [result; 6].join(",");
        let page = format!(
            r#"{{"object":"page","data":[{{"results":[{results}],"junk":[1,2,3],"start_time":1764547200,"end_time":1764633600}}],"has_more":false}}"#
        );
        let b = parse(Format::OpenaiUsage, page.as_bytes()).unwrap();
        assert_eq!(b.records.len(), 6, "{:?}", b.rejected);
        assert_eq!(b.records[0].ts.timestamp(), 1_764_547_200);
        let limits = Limits {
            max_records: 5,
            max_rejections: 10,
        };
        assert_eq!(
            parse_with(Format::OpenaiUsage, page.as_bytes(), limits).unwrap_err(),
            FormatError::TooManyRecords(5)
        );
        // A result too large to parse is rejected as its record; the others stay.
        let big = format!(
            r#"{{"model":"gpt-4o","input_tokens":1,"output_tokens":1,"num_model_requests":1,"pad":"{}"}}"#,
            "x".repeat(2 * 1024 * 1024)
        );
        let page = format!(
            r#"{{"data":[{{"start_time":1764547200,"end_time":1764633600,"results":[{result},{big}]}}]}}"#
        );
        let b = parse(Format::OpenaiUsage, page.as_bytes()).unwrap();
        assert_eq!((b.records.len(), b.rejected[0].index), (1, 1));
        assert!(
            b.rejected[0].error.contains("larger than"),
            "{:?}",
            b.rejected
        );
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
