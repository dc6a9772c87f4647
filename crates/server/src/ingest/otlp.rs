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
//!
//! Bodies are read as a stream of spans, never decoded whole: the protobuf wire format is
//! walked field by field (`wire`) and OTLP/JSON visited element by element, each span kept
//! as the bytes or text it came in until its resource is known (a resource may follow its
//! spans), then decoded alone. A request may hold at most `max_records` spans (413 beyond),
//! and a span over [`MAX_ELEMENT_BYTES`] is rejected as its record rather than decoded.

use apogee_analytics::formats::stream::MAX_ELEMENT_BYTES;
use apogee_analytics::formats::{Collector, FormatError, Limits, ParsedBatch};
use apogee_analytics::{CacheConvention, UsageRecord};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
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
    Protobuf(String),
    #[error("not an OTLP ExportTraceServiceRequest in JSON: {0}")]
    Json(String),
    /// More spans than one request may hold.
    #[error("{0}")]
    TooManySpans(FormatError),
}

/// The whole request decoded at once: for tests and tools on trusted input only (the server
/// reads requests with [`read`]).
pub fn decode(encoding: Encoding, body: &[u8]) -> Result<ExportTraceServiceRequest, OtlpError> {
    Ok(match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body)
            .map_err(|e| OtlpError::Protobuf(e.to_string()))?,
        Encoding::Json => {
            serde_json::from_slice(body).map_err(|e| OtlpError::Json(e.to_string()))?
        }
    })
}

/// What a request held: the GenAI spans as records (rejections indexed by the span's position
/// among all spans of the request), and how many spans were not GenAI calls.
pub struct Spans {
    pub batch: ParsedBatch,
    pub skipped: usize,
}

/// Reads a request's spans as records, span by span.
pub fn read(encoding: Encoding, body: &[u8], limits: Limits) -> Result<Spans, OtlpError> {
    let mut reader = SpanReader {
        out: Collector::new(limits),
        next_index: 0,
        max_spans: limits.max_records,
        skipped: 0,
    };
    match encoding {
        Encoding::Protobuf => wire::request(body, &mut reader)?,
        Encoding::Json => {
            let text = std::str::from_utf8(body)
                .map_err(|_| OtlpError::Json("body is not UTF-8".into()))?;
            json::request(text, &mut reader)?;
        }
    }
    Ok(Spans {
        batch: reader.out.finish(),
        skipped: reader.skipped,
    })
}

/// A span (or resource) as it came in, decoded only when needed.
enum Encoded<'a> {
    Protobuf(&'a [u8]),
    Json(&'a str),
}

impl Encoded<'_> {
    fn len(&self) -> usize {
        match self {
            Encoded::Protobuf(b) => b.len(),
            Encoded::Json(t) => t.len(),
        }
    }

    fn decode<M: Message + Default + serde::de::DeserializeOwned>(
        &self,
        what: &str,
    ) -> Result<M, OtlpError> {
        match self {
            Encoded::Protobuf(b) => {
                M::decode(*b).map_err(|e| OtlpError::Protobuf(format!("{what}: {e}")))
            }
            Encoded::Json(t) => {
                serde_json::from_str(t).map_err(|e| OtlpError::Json(format!("{what}: {e}")))
            }
        }
    }
}

/// Turns each resource's spans into records, counting spans across the request.
struct SpanReader {
    out: Collector,
    next_index: usize,
    max_spans: usize,
    skipped: usize,
}

impl SpanReader {
    /// Whether the request may hold one more span beyond the `held` not yet turned into
    /// records.
    fn room_for_one(&self, held: usize) -> Result<(), FormatError> {
        if self.next_index + held >= self.max_spans {
            return Err(FormatError::TooManyRecords(self.max_spans));
        }
        Ok(())
    }

    /// One resource's spans, in order.
    fn resource_spans(
        &mut self,
        resource: Option<Encoded<'_>>,
        spans: Vec<Encoded<'_>>,
    ) -> Result<(), OtlpError> {
        let resource = match resource {
            None => Ok(Vec::new()),
            Some(r) if r.len() > MAX_ELEMENT_BYTES => Err(format!(
                "the span's resource is larger than {} KiB",
                MAX_ELEMENT_BYTES / 1024
            )),
            Some(r) => Ok(r.decode::<Resource>("a resource")?.attributes),
        };
        for encoded in spans {
            let index = self.next_index;
            self.next_index += 1;
            let record = if encoded.len() > MAX_ELEMENT_BYTES {
                Err(format!(
                    "span is larger than {} KiB",
                    MAX_ELEMENT_BYTES / 1024
                ))
            } else {
                match &resource {
                    Err(e) => Err(e.clone()),
                    Ok(resource) => {
                        let span: Span = encoded.decode("a span")?;
                        let attrs = Attrs {
                            span: &span.attributes,
                            resource,
                        };
                        if !attrs.is_genai_call() {
                            self.skipped += 1;
                            continue;
                        }
                        record(&span, &attrs)
                    }
                }
            };
            self.out
                .push_at(index, record)
                .map_err(OtlpError::TooManySpans)?;
        }
        Ok(())
    }
}

/// The protobuf wire format, walked field by field: `ExportTraceServiceRequest` field 1 is a
/// `ResourceSpans`, whose field 1 is its `Resource` and field 2 a `ScopeSpans`, whose field 2
/// is a `Span` (opentelemetry-proto's `trace.proto`). Other fields are skipped unread.
mod wire {
    use super::{Encoded, OtlpError, SpanReader};

    fn malformed(what: &str) -> OtlpError {
        OtlpError::Protobuf(what.to_string())
    }

    fn varint(buf: &mut &[u8]) -> Result<u64, OtlpError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = buf
                .split_first()
                .ok_or_else(|| malformed("truncated varint"))?;
            *buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    /// Calls `each` with the number and bytes of every length-delimited field of `message`,
    /// checking the framing of the others.
    pub(super) fn fields<'a>(
        mut message: &'a [u8],
        mut each: impl FnMut(u32, &'a [u8]) -> Result<(), OtlpError>,
    ) -> Result<(), OtlpError> {
        while !message.is_empty() {
            let key = varint(&mut message)?;
            let number = u32::try_from(key >> 3).map_err(|_| malformed("field number"))?;
            let skip = match key & 7 {
                0 => {
                    varint(&mut message)?;
                    0
                }
                1 => 8,
                5 => 4,
                2 => {
                    let len = usize::try_from(varint(&mut message)?)
                        .map_err(|_| malformed("field length"))?;
                    if len > message.len() {
                        return Err(malformed("a field runs past the end of its message"));
                    }
                    let (bytes, rest) = message.split_at(len);
                    message = rest;
                    each(number, bytes)?;
                    0
                }
                _ => return Err(malformed("unsupported wire type")),
            };
            if skip > message.len() {
                return Err(malformed("a field runs past the end of its message"));
            }
            message = &message[skip..];
        }
        Ok(())
    }

    pub(super) fn request(body: &[u8], reader: &mut SpanReader) -> Result<(), OtlpError> {
        fields(body, |number, resource_spans| {
            if number != 1 {
                return Ok(());
            }
            let mut resource = None;
            let mut spans = Vec::new();
            fields(resource_spans, |number, bytes| match number {
                1 => {
                    resource = Some(Encoded::Protobuf(bytes));
                    Ok(())
                }
                2 => fields(bytes, |number, span| {
                    if number == 2 {
                        reader
                            .room_for_one(spans.len())
                            .map_err(OtlpError::TooManySpans)?;
                        spans.push(Encoded::Protobuf(span));
                    }
                    Ok(())
                }),
                _ => Ok(()),
            })?;
            reader.resource_spans(resource, spans)
        })
    }
}

/// OTLP/JSON (lowerCamelCase keys, as the specification and opentelemetry-proto write them),
/// visited element by element: `resourceSpans[].resource` and
/// `resourceSpans[].scopeSpans[].spans[]`; other keys are skipped unread.
mod json {
    use std::borrow::Cow;

    use apogee_analytics::formats::FormatError;
    use apogee_analytics::formats::stream;
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    use super::{Encoded, OtlpError, SpanReader};

    /// Where a visitor leaves the [`OtlpError`] that stopped the read (serde's error type
    /// cannot carry it).
    type Stop = Option<OtlpError>;

    fn stop<E: serde::de::Error>(slot: &mut Stop, e: OtlpError) -> E {
        *slot = Some(e);
        E::custom("stopped")
    }

    pub(super) fn request(text: &str, reader: &mut SpanReader) -> Result<(), OtlpError> {
        let mut slot = None;
        let read = stream::read_document(
            text,
            Request {
                reader,
                stop: &mut slot,
            },
        );
        match (read, slot) {
            (_, Some(e)) => Err(e),
            (Ok(()), None) => Ok(()),
            (Err(e), None) => Err(OtlpError::Json(e.to_string())),
        }
    }

    /// Visits a JSON object key by key; `value` reads the value of each key it wants, and
    /// returns `false` for the others, which are skipped unread.
    fn each_key<'de, A: MapAccess<'de>>(
        mut map: A,
        mut value: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
    ) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if !value(&key, &mut map)? {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    struct Request<'f> {
        reader: &'f mut SpanReader,
        stop: &'f mut Stop,
    }

    impl<'de> DeserializeSeed<'de> for Request<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Request<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an ExportTraceServiceRequest object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
            each_key(map, |key, map| {
                if key != "resourceSpans" {
                    return Ok(false);
                }
                map.next_value_seed(ResourceSpansList {
                    reader: &mut *self.reader,
                    stop: &mut *self.stop,
                })?;
                Ok(true)
            })
        }
    }

    struct ResourceSpansList<'f> {
        reader: &'f mut SpanReader,
        stop: &'f mut Stop,
    }

    impl<'de> DeserializeSeed<'de> for ResourceSpansList<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for ResourceSpansList<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of ResourceSpans")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq
                .next_element_seed(ResourceSpans {
                    reader: &mut *self.reader,
                    stop: &mut *self.stop,
                })?
                .is_some()
            {}
            Ok(())
        }
    }

    struct ResourceSpans<'f> {
        reader: &'f mut SpanReader,
        stop: &'f mut Stop,
    }

    impl<'de> DeserializeSeed<'de> for ResourceSpans<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for ResourceSpans<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a ResourceSpans object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
            let mut resource = None;
            let mut spans: Vec<Encoded<'de>> = Vec::new();
            let reader = &*self.reader;
            let slot = &mut *self.stop;
            each_key(map, |key, map| {
                match key {
                    "resource" => {
                        let raw: &'de RawValue = map.next_value()?;
                        resource = Some(Encoded::Json(raw.get()));
                    }
                    "scopeSpans" => {
                        let mut full = None;
                        let mut each = |raw: &'de str| {
                            // One ScopeSpans: its `spans`, gathered raw.
                            stream::read_document(
                                raw,
                                ScopeSpans {
                                    reader,
                                    spans: &mut spans,
                                    full: &mut full,
                                },
                            )
                            .map_err(|e| FormatError::Document(e.to_string()))
                        };
                        let mut inner = None;
                        let read = map.next_value_seed(stream::EachElement {
                            each: &mut each,
                            stop: &mut inner,
                        });
                        if let Some(e) = full {
                            return Err(stop(slot, OtlpError::TooManySpans(e)));
                        }
                        if let Some(e) = inner {
                            return Err(stop(slot, OtlpError::Json(e.to_string())));
                        }
                        read?;
                    }
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            self.reader
                .resource_spans(resource, spans)
                .map_err(|e| stop(self.stop, e))
        }
    }

    /// One ScopeSpans object: pushes its `spans` (raw) onto `spans`, stopping with `full` set
    /// when the request would hold too many.
    struct ScopeSpans<'f, 'de> {
        reader: &'f SpanReader,
        spans: &'f mut Vec<Encoded<'de>>,
        full: &'f mut Option<FormatError>,
    }

    impl<'de> DeserializeSeed<'de> for ScopeSpans<'_, 'de> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for ScopeSpans<'_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a ScopeSpans object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
            let (reader, spans, full) = (self.reader, self.spans, self.full);
            each_key(map, |key, map| {
                if key != "spans" {
                    return Ok(false);
                }
                let mut each = |raw: &'de str| {
                    reader.room_for_one(spans.len())?;
                    spans.push(Encoded::Json(raw));
                    Ok(())
                };
                map.next_value_seed(stream::EachElement {
                    each: &mut each,
                    stop: &mut *full,
                })?;
                Ok(true)
            })
        }
    }
}

/// The OTLP answer: full success, or the number of rejected spans and why.
pub fn response(
    encoding: Encoding,
    batch_rejections: &[apogee_analytics::formats::Rejection],
    rejected_count: usize,
) -> Vec<u8> {
    let partial_success = (rejected_count > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: i64::try_from(rejected_count).unwrap_or(i64::MAX),
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
        let spans = read(Encoding::Json, SAMPLE_JSON.as_bytes(), Limits::default()).unwrap();
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
        let json = read(Encoding::Json, SAMPLE_JSON.as_bytes(), Limits::default()).unwrap();
        let pb = read(Encoding::Protobuf, &bytes, Limits::default()).unwrap();
        assert_eq!(pb.batch.records, json.batch.records);
        assert_eq!(pb.batch.rejected, json.batch.rejected);
        assert_eq!(pb.skipped, json.skipped);
        for bad in [&b"\xff\xff\xff"[..], b"\x0a\x05ab", b"\x0b"] {
            assert!(
                matches!(
                    read(Encoding::Protobuf, bad, Limits::default()),
                    Err(OtlpError::Protobuf(_))
                ),
                "{bad:?}"
            );
        }
    }

    /// A request of `n` GenAI spans under one resource that comes after them.
    fn many_spans(n: usize) -> ExportTraceServiceRequest {
        let mut req = decode(Encoding::Json, SAMPLE_JSON.as_bytes()).unwrap();
        let rs = &mut req.resource_spans[0];
        let span = rs.scope_spans[0].spans[1].clone();
        rs.scope_spans[0].spans = (0..n)
            .map(|i| {
                let mut s = span.clone();
                s.span_id = (i as u64 + 1).to_be_bytes().to_vec();
                s
            })
            .collect();
        req
    }

    #[test]
    fn spans_are_counted_against_the_limit_in_both_encodings() {
        let limits = Limits {
            max_records: 10,
            max_rejections: 5,
        };
        let req = many_spans(10);
        let pb = req.encode_to_vec();
        let json = serde_json::to_vec(&req).unwrap();
        assert_eq!(
            read(Encoding::Protobuf, &pb, limits)
                .unwrap()
                .batch
                .records
                .len(),
            10
        );
        assert_eq!(
            read(Encoding::Json, &json, limits)
                .unwrap()
                .batch
                .records
                .len(),
            10
        );
        let req = many_spans(11);
        for (encoding, body) in [
            (Encoding::Protobuf, req.encode_to_vec()),
            (Encoding::Json, serde_json::to_vec(&req).unwrap()),
        ] {
            assert!(
                matches!(
                    read(encoding, &body, limits),
                    Err(OtlpError::TooManySpans(FormatError::TooManyRecords(10)))
                ),
                "{encoding:?}"
            );
        }
    }

    #[test]
    fn the_resource_may_follow_its_spans_and_an_oversized_span_is_rejected_alone() {
        // Protobuf with the resource field written after the spans.
        let req = many_spans(2);
        let rs = &req.resource_spans[0];
        // A length-delimited field: key, varint length, bytes.
        let field = |number: u8, bytes: &[u8], out: &mut Vec<u8>| {
            out.push(number << 3 | 2);
            let mut len = bytes.len();
            while len >= 0x80 {
                out.push((len as u8 & 0x7f) | 0x80);
                len >>= 7;
            }
            out.push(len as u8);
            out.extend_from_slice(bytes);
        };
        let mut resource_spans = Vec::new();
        for scope in &rs.scope_spans {
            field(2, &scope.encode_to_vec(), &mut resource_spans);
        }
        field(
            1,
            &rs.resource.as_ref().unwrap().encode_to_vec(),
            &mut resource_spans,
        );
        let mut body = Vec::new();
        field(1, &resource_spans, &mut body);
        let spans = read(Encoding::Protobuf, &body, Limits::default()).unwrap();
        assert_eq!(spans.batch.records.len(), 2);
        assert_eq!(
            spans.batch.records[0].feature.as_deref(),
            Some("support-bot"),
            "the resource's service.name"
        );
        // A span over the size limit is a rejected record; its neighbours are read.
        let mut req = many_spans(3);
        req.resource_spans[0].scope_spans[0].spans[1].name = "x".repeat(MAX_ELEMENT_BYTES + 1);
        for (encoding, body) in [
            (Encoding::Protobuf, req.encode_to_vec()),
            (Encoding::Json, serde_json::to_vec(&req).unwrap()),
        ] {
            let spans = read(encoding, &body, Limits::default()).unwrap();
            assert_eq!(spans.batch.indexes, [0, 2], "{encoding:?}");
            assert_eq!(spans.batch.rejected[0].index, 1);
        }
    }

    #[test]
    fn response_reports_rejected_spans() {
        let rej = [apogee_analytics::formats::Rejection {
            index: 4,
            error: "bad".into(),
        }];
        let json: serde_json::Value =
            serde_json::from_slice(&response(Encoding::Json, &rej, 1)).unwrap();
        assert_eq!(json["partialSuccess"]["errorMessage"], "span 4: bad");
        let pb =
            ExportTraceServiceResponse::decode(response(Encoding::Protobuf, &[], 0).as_slice())
                .unwrap();
        assert!(pb.partial_success.is_none());
    }
}
