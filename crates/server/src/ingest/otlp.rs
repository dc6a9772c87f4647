//! OTLP/HTTP traces (`POST /v1/traces`, protobuf or JSON) read as usage records: each span that
//! carries OpenTelemetry GenAI usage attributes is one LLM call. Other spans (HTTP, database,
//! the application's own) are skipped, not rejected: instrumented apps send whole traces.
//!
//! Attributes read (span first, then its resource):
//! - model: `gen_ai.response.model` (what was billed), else `gen_ai.request.model`;
//! - provider: `gen_ai.provider.name`, else `gen_ai.system`;
//! - tokens: `gen_ai.usage.input_tokens` / `output_tokens`, the legacy
//!   `gen_ai.usage.prompt_tokens` / `completion_tokens`, and `llm.usage.prompt_tokens` /
//!   `completion_tokens`; cache reads `gen_ai.usage.cache_read.input_tokens` (or
//!   `gen_ai.usage.cache_read_input_tokens`), cache writes
//!   `gen_ai.usage.cache_creation.input_tokens` (or `…cache_creation_input_tokens`), reasoning
//!   `gen_ai.usage.reasoning.output_tokens`;
//! - `gen_ai.request.max_tokens`, the first of `gen_ai.response.finish_reasons`,
//!   `gen_ai.request.stream` / `llm.is_streaming`;
//! - service tier: `openai.response.service_tier` (or the older
//!   `gen_ai.openai.response.service_tier`), else the requested `openai.request.service_tier`
//!   (`gen_ai.openai.request.service_tier`);
//! - user: `apogee.user`, `enduser.id` or `user.id`; feature: `apogee.feature`, else the
//!   resource's `service.name`; `gen_ai.operation.name` becomes the tag `operation`.
//!
//! The span's start is the record's `ts`, its duration the latency, `trace_id-span_id` (hex)
//! its `request_id`, and status code ERROR (or an `error.type` attribute) its `error` status.
//! The GenAI conventions count cached tokens inside `input_tokens`; counts where the cache
//! exceeds the input can only be Anthropic-style and are added up instead.

use apogee_analytics::formats::{ParsedBatch, collect_indexed};
use apogee_analytics::{CacheConvention, UsageRecord};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{Span, status::StatusCode};
use prost::Message;

/// How the body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn from_content_type(content_type: Option<&str>) -> Option<Encoding> {
        let mime = content_type?.split(';').next()?.trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("not an OTLP ExportTraceServiceRequest in protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("not an OTLP ExportTraceServiceRequest in JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn decode(encoding: Encoding, body: &[u8]) -> Result<ExportTraceServiceRequest, OtlpError> {
    Ok(match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body)?,
        Encoding::Json => serde_json::from_slice(body)?,
    })
}

/// What a request held: the GenAI spans as records (rejections indexed by the span's position
/// among all spans of the request), and how many spans were not GenAI calls.
pub struct Spans {
    pub batch: ParsedBatch,
    pub skipped: usize,
}

pub fn records(request: &ExportTraceServiceRequest) -> Spans {
    let mut results = Vec::new();
    let mut index = 0usize;
    let mut skipped = 0usize;
    for rs in &request.resource_spans {
        let resource: &[KeyValue] = rs
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let attrs = Attrs {
                    span: &span.attributes,
                    resource,
                };
                if attrs.is_genai_call() {
                    results.push((index, record(span, &attrs)));
                } else {
                    skipped += 1;
                }
                index += 1;
            }
        }
    }
    Spans {
        batch: collect_indexed(results),
        skipped,
    }
}

/// The OTLP answer: full success, or the number of rejected spans and why.
pub fn response(
    encoding: Encoding,
    batch_rejections: &[apogee_analytics::formats::Rejection],
) -> Vec<u8> {
    let partial_success = (!batch_rejections.is_empty()).then(|| ExportTracePartialSuccess {
        rejected_spans: batch_rejections.len() as i64,
        error_message: batch_rejections
            .iter()
            .take(5)
            .map(|r| format!("span {}: {}", r.index, r.error))
            .collect::<Vec<_>>()
            .join("; "),
    });
    let answer = ExportTraceServiceResponse { partial_success };
    match encoding {
        Encoding::Protobuf => answer.encode_to_vec(),
        // Serialising a plain generated message cannot fail; an empty object is still valid.
        Encoding::Json => serde_json::to_vec(&answer).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

struct Attrs<'a> {
    span: &'a [KeyValue],
    resource: &'a [KeyValue],
}

impl Attrs<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.span
            .iter()
            .chain(self.resource)
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v: &AnyValue| v.value.as_ref())
    }

    fn first<'k>(&self, keys: &[&'k str]) -> Option<(&'k str, &Value)> {
        keys.iter().find_map(|k| self.get(k).map(|v| (*k, v)))
    }

    fn text(&self, keys: &[&str]) -> Option<String> {
        match self.first(keys)?.1 {
            Value::StringValue(s) if !s.is_empty() => Some(s.clone()),
            Value::ArrayValue(a) => a.values.first().and_then(|v| match &v.value {
                Some(Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            }),
            _ => None,
        }
    }

    /// An integer attribute; some instrumentations send counts as doubles or strings.
    fn int(&self, keys: &[&str]) -> Result<Option<i64>, String> {
        let Some((key, v)) = self.first(keys) else {
            return Ok(None);
        };
        match v {
            Value::IntValue(i) => Ok(Some(*i)),
            Value::DoubleValue(d) if d.fract() == 0.0 && d.abs() < 1e15 => Ok(Some(*d as i64)),
            Value::StringValue(s) => s
                .parse()
                .map(Some)
                .map_err(|_| format!("`{key}` is not an integer")),
            _ => Err(format!("`{key}` is not an integer")),
        }
    }

    fn flag(&self, keys: &[&str]) -> Option<bool> {
        match self.first(keys)?.1 {
            Value::BoolValue(b) => Some(*b),
            _ => None,
        }
    }

    /// A GenAI call: a span that reports token usage.
    fn is_genai_call(&self) -> bool {
        self.span
            .iter()
            .any(|kv| kv.key.starts_with("gen_ai.usage.") || kv.key.starts_with("llm.usage."))
    }
}

const INPUT: &[&str] = &[
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
];
const OUTPUT: &[&str] = &[
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
];
const CACHE_READ: &[&str] = &[
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
];
const CACHE_WRITE: &[&str] = &[
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn record(span: &Span, a: &Attrs<'_>) -> Result<UsageRecord, String> {
    let model = a
        .text(&["gen_ai.response.model", "gen_ai.request.model"])
        .ok_or("span has usage but no `gen_ai.response.model` or `gen_ai.request.model`")?;
    let input = a.int(INPUT)?.ok_or("span has no input token count")?;
    let output = a.int(OUTPUT)?.unwrap_or(0);
    if span.span_id.is_empty() {
        return Err("span has no span_id".into());
    }
    let start = i64::try_from(span.start_time_unix_nano)
        .map_err(|_| "`startTimeUnixNano` is out of range".to_string())?;
    if start == 0 {
        return Err("span has no start time".into());
    }
    let ts = chrono::DateTime::from_timestamp_nanos(start);
    let mut r = UsageRecord::new(ts, model, input, output);
    r.request_id = Some(format!("{}-{}", hex(&span.trace_id), hex(&span.span_id)));
    r.provider = a.text(&["gen_ai.provider.name", "gen_ai.system"]);
    r.cached_input_tokens = a.int(CACHE_READ)?;
    r.cache_creation_input_tokens = a.int(CACHE_WRITE)?;
    r.reasoning_tokens = a.int(&["gen_ai.usage.reasoning.output_tokens"])?;
    r.max_tokens = a.int(&["gen_ai.request.max_tokens"])?;
    r.finish_reason = a.text(&["gen_ai.response.finish_reasons"]);
    r.stream = a.flag(&["gen_ai.request.stream", "llm.is_streaming"]);
    r.service_tier = a.text(&[
        "openai.response.service_tier",
        "gen_ai.openai.response.service_tier",
        "openai.request.service_tier",
        "gen_ai.openai.request.service_tier",
    ]);
    r.user = a.text(&["apogee.user", "enduser.id", "user.id"]);
    r.feature = a.text(&["apogee.feature", "service.name"]);
    r.latency_ms = span
        .end_time_unix_nano
        .checked_sub(span.start_time_unix_nano)
        .filter(|_| span.end_time_unix_nano > 0)
        .and_then(|ns| i64::try_from(ns / 1_000_000).ok());
    let failed = span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
        || a.get("error.type").is_some();
    r.status = Some(if failed { "error" } else { "ok" }.into());
    if let Some(op) = a.text(&["gen_ai.operation.name"]) {
        r.tags = Some([("operation".to_string(), op)].into_iter().collect());
    }
    if r.cached_tokens() + r.cache_write_tokens() > input {
        r.token_convention = Some(CacheConvention::ExcludesCache);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_JSON: &str = include_str!("../../testdata/otlp_genai_traces.json");

    #[test]
    fn sample_json_trace_yields_genai_spans_and_skips_the_rest() {
        let req = decode(Encoding::Json, SAMPLE_JSON.as_bytes()).unwrap();
        let spans = records(&req);
        assert_eq!(spans.skipped, 1, "the HTTP server span is not a call");
        let idx: Vec<usize> = spans.batch.rejected.iter().map(|r| r.index).collect();
        assert_eq!(idx, [4, 5], "{:?}", spans.batch.rejected);
        let r = &spans.batch.records;
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0].request_id.as_deref(),
            Some("5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174")
        );
        assert_eq!(
            (r[0].model.as_str(), r[0].provider.as_deref()),
            ("gpt-4o-2024-08-06", Some("openai"))
        );
        assert_eq!(
            (r[0].input_tokens, r[0].cached_tokens(), r[0].output_tokens),
            (1200, 1000, 310)
        );
        assert_eq!(
            (r[0].latency_ms, r[0].feature.as_deref()),
            (Some(840), Some("support-bot"))
        );
        assert_eq!(r[0].ts.to_rfc3339(), "2026-11-20T08:15:02+00:00");
        // Anthropic counts: input 50 excludes 1000 read + 150 written.
        assert_eq!(
            (r[1].input_tokens, r[1].status.as_deref()),
            (1200, Some("ok"))
        );
        // Legacy names, and an error status.
        assert_eq!(
            (
                r[2].input_tokens,
                r[2].output_tokens,
                r[2].status.as_deref()
            ),
            (300, 40, Some("error"))
        );
    }

    #[test]
    fn protobuf_round_trip_reads_the_same_spans() {
        let req = decode(Encoding::Json, SAMPLE_JSON.as_bytes()).unwrap();
        let bytes = req.encode_to_vec();
        let again = decode(Encoding::Protobuf, &bytes).unwrap();
        assert_eq!(records(&again).batch.records, records(&req).batch.records);
        assert!(decode(Encoding::Protobuf, b"\xff\xff\xff").is_err());
    }

    #[test]
    fn response_reports_rejected_spans() {
        let rej = [apogee_analytics::formats::Rejection {
            index: 4,
            error: "bad".into(),
        }];
        let json: serde_json::Value =
            serde_json::from_slice(&response(Encoding::Json, &rej)).unwrap();
        assert_eq!(json["partialSuccess"]["errorMessage"], "span 4: bad");
        let pb = ExportTraceServiceResponse::decode(response(Encoding::Protobuf, &[]).as_slice())
            .unwrap();
        assert!(pb.partial_success.is_none());
    }
}
