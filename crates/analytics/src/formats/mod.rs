//! Parsers of the usage formats Apogee ingests, each in its own module, all pure (bytes in,
//! records out). Every record is parsed, normalised to the canonical token convention and
//! validated on its own, so one bad record is reported by its index and never drops the rest.
//! Pricing and storage happen after, in the same way for every format.
//!
//! Memory is bounded by the body, not by what it claims to hold: documents are read as a
//! stream of elements ([`stream`]) straight into typed records or, for the vendor exports,
//! one small element at a time, never as one JSON tree; a [`Collector`] keeps the records,
//! the first [`Limits::max_rejections`] rejections and a count of the rest, and stops the
//! parse with [`FormatError::TooManyRecords`] past [`Limits::max_records`].

pub mod csv;
pub mod json;
pub mod litellm;
pub mod openai_usage;
pub mod stream;

use apogee_protocol::depth::{MAX_JSON_DEPTH, json_depth_exceeds};
use serde::Serialize;

use crate::usage::UsageRecord;

/// A file or body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// §8 records as a JSON array or NDJSON.
    Usage,
    /// §8 fields as CSV columns under a header row.
    Csv,
    /// A LiteLLM spend-log export (JSON array).
    Litellm,
    /// An OpenAI organization usage-API export (completions buckets).
    OpenaiUsage,
}

impl Format {
    /// `ndjson`/`json`, `csv`, `litellm`, `openai`.
    pub fn parse_name(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "ndjson" | "json" | "usage" => Some(Format::Usage),
            "csv" => Some(Format::Csv),
            "litellm" => Some(Format::Litellm),
            "openai" | "openai-usage" | "openai_usage" => Some(Format::OpenaiUsage),
            _ => None,
        }
    }

    /// Guesses from the first bytes of a file ([`DETECT_BYTES`] are enough): text that does
    /// not start with `[` or `{` is CSV (an empty file is §8 NDJSON, with no records); a JSON document with OpenAI usage buckets
    /// (`start_time` and `results`) is an OpenAI usage export; one whose records carry
    /// LiteLLM's `startTime` with its `spend` or `call_type` is a LiteLLM spend log;
    /// any other JSON is §8 records.
    pub fn detect(head: &[u8]) -> Format {
        let text = String::from_utf8_lossy(head);
        let text = text.trim_start_matches('\u{feff}').trim_start();
        if !text.is_empty() && !text.starts_with(['[', '{']) {
            return Format::Csv;
        }
        let has_key = |key: &str| {
            let quoted = format!("\"{key}\"");
            text.match_indices(&quoted)
                .any(|(at, _)| text[at + quoted.len()..].trim_start().starts_with(':'))
        };
        if has_key("results") && has_key("start_time") {
            Format::OpenaiUsage
        } else if has_key("startTime") && (has_key("spend") || has_key("call_type")) {
            Format::Litellm
        } else {
            Format::Usage
        }
    }

    /// The name `--format` and `?format=` take for this format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Usage => "ndjson",
            Format::Csv => "csv",
            Format::Litellm => "litellm",
            Format::OpenaiUsage => "openai",
        }
    }
}

/// How much of a file's start [`Format::detect`] reads.
pub const DETECT_BYTES: usize = 64 * 1024;

/// Why the record at `index` was not stored. `index` is the record's 0-based position in the
/// source: array element, non-blank NDJSON line, CSV data row, or OpenAI result (counted across
/// buckets in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub index: usize,
    pub error: String,
}

/// What one body may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Records (valid or not) in one body; past it the body is refused whole.
    pub max_records: usize,
    /// Rejections reported with their reason; the rest are only counted.
    pub max_rejections: usize,
}

/// Records per request unless configured: a few tens of MiB of parsed records at most.
pub const DEFAULT_MAX_RECORDS: usize = 50_000;
/// Rejections reported by index and reason; enough to fix a file by, small to send back.
pub const DEFAULT_MAX_REJECTIONS: usize = 100;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_records: DEFAULT_MAX_RECORDS,
            max_rejections: DEFAULT_MAX_REJECTIONS,
        }
    }
}

impl Limits {
    /// No bound on records (a file loaded in chunks by its owner); rejections still capped.
    pub fn unbounded() -> Limits {
        Limits {
            max_records: usize::MAX,
            ..Limits::default()
        }
    }
}

/// The records that passed (canonical, validated, unpriced) with their source indexes, and
/// the rejections: the first [`Limits::max_rejections`] in full, all of them counted.
#[derive(Debug, Default)]
pub struct ParsedBatch {
    pub records: Vec<UsageRecord>,
    /// `indexes[i]` is the source index of `records[i]`.
    pub indexes: Vec<usize>,
    pub rejected: Vec<Rejection>,
    /// Every rejection, including those past the reported ones.
    pub rejected_count: usize,
}

/// A body that cannot be read as its format at all (as opposed to one bad record).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("{0}")]
    Document(String),
    #[error(
        "more than {0} records in one body; send it in parts (or load it with `apogee ingest`)"
    )]
    TooManyRecords(usize),
}

/// Receives a source's records in order, normalising and validating each as it arrives.
#[derive(Debug)]
pub struct Collector {
    limits: Limits,
    batch: ParsedBatch,
    /// Records seen so far (the next one's index).
    seen: usize,
}

impl Collector {
    pub fn new(limits: Limits) -> Collector {
        Collector {
            limits,
            batch: ParsedBatch::default(),
            seen: 0,
        }
    }

    /// The source's next record, whose index is the number of records before it.
    pub fn push(&mut self, parsed: Result<UsageRecord, String>) -> Result<(), FormatError> {
        self.push_at(self.seen, parsed)
    }

    /// A record with the index its source gives it (sources that skip entries, such as OTLP's
    /// spans that are not GenAI calls); the indexes must increase.
    pub fn push_at(
        &mut self,
        index: usize,
        parsed: Result<UsageRecord, String>,
    ) -> Result<(), FormatError> {
        if self.room() == 0 {
            return Err(self.too_many());
        }
        self.seen = index + 1;
        match parsed.and_then(|r| r.normalise().map_err(|e| e.to_string())) {
            Ok(record) => {
                self.batch.records.push(record);
                self.batch.indexes.push(index);
            }
            Err(error) => self.reject(index, error),
        }
        Ok(())
    }

    /// Counts a rejection, keeping its reason while under the limit.
    fn reject(&mut self, index: usize, error: String) {
        self.batch.rejected_count += 1;
        if self.batch.rejected.len() < self.limits.max_rejections {
            self.batch.rejected.push(Rejection { index, error });
        }
    }

    /// Records pushed so far, valid or not.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// How many more records the body may have (for sources that must hold a group of raw
    /// records before pushing them).
    pub fn room(&self) -> usize {
        let used = self.batch.records.len() + self.batch.rejected_count;
        self.limits.max_records.saturating_sub(used)
    }

    /// The error for a record past the limit.
    pub fn too_many(&self) -> FormatError {
        FormatError::TooManyRecords(self.limits.max_records)
    }

    pub fn finish(self) -> ParsedBatch {
        self.batch
    }
}

/// Parses `bytes` as `format` with the default [`Limits`].
pub fn parse(format: Format, bytes: &[u8]) -> Result<ParsedBatch, FormatError> {
    parse_with(format, bytes, Limits::default())
}

/// Parses `bytes` as `format`.
pub fn parse_with(
    format: Format,
    bytes: &[u8],
    limits: Limits,
) -> Result<ParsedBatch, FormatError> {
    let text = std::str::from_utf8(bytes).map_err(|_| FormatError::NotUtf8)?;
    // Whole JSON documents are refused before parsing when nested too deep (NDJSON is checked
    // line by line, so one deep line is one rejected record).
    let document = match format {
        Format::Usage => text.trim_start().starts_with('['),
        Format::Litellm | Format::OpenaiUsage => true,
        Format::Csv => false,
    };
    if document && json_depth_exceeds(bytes, MAX_JSON_DEPTH) {
        return Err(FormatError::Document(format!(
            "body is nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    let mut out = Collector::new(limits);
    match format {
        Format::Usage => json::read(text, &mut out)?,
        Format::Csv => csv::read(text, &mut out)?,
        Format::Litellm => litellm::read(text, &mut out)?,
        Format::OpenaiUsage => openai_usage::read(text, &mut out)?,
    }
    Ok(out.finish())
}

/// Normalises and validates each parsed record; its index is its position in `results`.
pub fn collect(results: impl IntoIterator<Item = Result<UsageRecord, String>>) -> ParsedBatch {
    collect_indexed(results.into_iter().enumerate())
}

/// Records a chunk's vectors are sized for up front, at most: `apogee ingest` collects
/// 20,000 at a time, and growing the vector by doubling copies it (fresh pages each time).
const COLLECT_RESERVE: usize = 1 << 16;

/// Normalises and validates each parsed record, keeping the index its source gave it.
pub fn collect_indexed(
    results: impl IntoIterator<Item = (usize, Result<UsageRecord, String>)>,
) -> ParsedBatch {
    let results = results.into_iter();
    let mut out = Collector::new(Limits::unbounded());
    // An iterator taking a chunk of a stream says how many at most (`take`'s bound).
    let expected = results.size_hint().1.unwrap_or(0).min(COLLECT_RESERVE);
    out.batch.records.reserve(expected);
    out.batch.indexes.reserve(expected);
    for (index, r) in results {
        // Unbounded: pushing cannot fail.
        let _ = out.push_at(index, r);
    }
    out.finish()
}

/// A §8 record from a JSON value.
pub(crate) fn record_from_value(value: serde_json::Value) -> Result<UsageRecord, String> {
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// A vendor export's element read as a JSON value, when small enough that its tree is
/// bounded (a tree can take 30 times its text); `what` names the element in the error.
pub(crate) fn small_value(raw: &str, what: &str) -> Result<serde_json::Value, String> {
    if raw.len() > stream::MAX_ELEMENT_BYTES {
        return Err(format!(
            "{what} is larger than {} KiB",
            stream::MAX_ELEMENT_BYTES / 1024
        ));
    }
    serde_json::from_str(raw).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
pub(crate) mod testdata {
    /// The sample files under `crates/analytics/testdata/`.
    pub const USAGE_NDJSON: &str = include_str!("../../testdata/usage.ndjson");
    pub const USAGE_CSV: &str = include_str!("../../testdata/usage.csv");
    pub const LITELLM: &str = include_str!("../../testdata/litellm_spend_logs.json");
    pub const OPENAI_USAGE: &str = include_str!("../../testdata/openai_usage_completions.json");
}

#[cfg(test)]
mod detect_tests {
    use super::*;

    #[test]
    fn each_sample_and_shape_is_detected_from_its_content() {
        let cases: &[(&str, &str, Format)] = &[
            ("usage.ndjson", testdata::USAGE_NDJSON, Format::Usage),
            ("usage.csv", testdata::USAGE_CSV, Format::Csv),
            ("litellm", testdata::LITELLM, Format::Litellm),
            ("openai", testdata::OPENAI_USAGE, Format::OpenaiUsage),
            (
                "json array",
                r#"[{"ts":"2026-11-20T08:15:02Z","model":"m","input_tokens":1,"output_tokens":1}]"#,
                Format::Usage,
            ),
            (
                "bom and blank lines",
                "\u{feff}\n\n  {\"model\":\"m\"}",
                Format::Usage,
            ),
            (
                "litellm under data",
                r#"{"data": [{"startTime": "2026-11-20T08:15:02", "spend": 0.1}]}"#,
                Format::Litellm,
            ),
            (
                "a tag value named startTime",
                r#"{"model":"m","tags":{"k":"startTime"},"feature":"spend"}"#,
                Format::Usage,
            ),
            (
                "csv header",
                "ts,model,input_tokens,output_tokens\n",
                Format::Csv,
            ),
            ("empty", "", Format::Usage),
        ];
        for (name, text, want) in cases {
            assert_eq!(Format::detect(text.as_bytes()), *want, "{name}");
            assert_eq!(Format::parse_name(want.name()), Some(*want), "{name}");
        }
    }
}

#[cfg(test)]
mod depth_tests {
    use super::*;

    fn ok_record(i: usize) -> String {
        format!(
            r#"{{"request_id":"r{i}","ts":"2026-11-20T08:15:02Z","model":"gpt-4o","input_tokens":1,"output_tokens":1}}"#
        )
    }

    #[test]
    fn rejections_are_reported_up_to_the_limit_and_counted_beyond() {
        let body: String = (0..250).map(|_| "1\n").collect();
        let limits = Limits {
            max_records: 1000,
            max_rejections: 10,
        };
        let b = parse_with(Format::Usage, body.as_bytes(), limits).unwrap();
        assert_eq!((b.rejected.len(), b.rejected_count), (10, 250));
        assert_eq!(b.rejected[9].index, 9);
    }

    #[test]
    fn a_body_with_more_records_than_allowed_is_refused_whole() {
        let limits = Limits {
            max_records: 5,
            max_rejections: 10,
        };
        let lines: Vec<String> = (0..6).map(ok_record).collect();
        for body in [lines.join("\n"), format!("[{}]", lines.join(","))] {
            assert_eq!(
                parse_with(Format::Usage, body.as_bytes(), limits).unwrap_err(),
                FormatError::TooManyRecords(5)
            );
            let five = parse_with(
                Format::Usage,
                body.as_bytes(),
                Limits {
                    max_records: 6,
                    ..limits
                },
            )
            .unwrap();
            assert_eq!(five.records.len(), 6);
            assert_eq!(five.indexes, [0, 1, 2, 3, 4, 5]);
        }
    }

    #[test]
    fn deep_json_is_refused_before_parsing() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        for format in [Format::Usage, Format::Litellm, Format::OpenaiUsage] {
            assert!(matches!(
                parse(format, deep.as_bytes()),
                Err(FormatError::Document(_))
            ));
        }
        let ndjson = format!(
            "{}\n{{\"ts\":\"2026-11-20T08:15:02Z\",\"model\":\"gpt-4o\",\"input_tokens\":1,\"output_tokens\":1}}\n",
            "{\"a\":".repeat(10_000)
        );
        let p = parse(Format::Usage, ndjson.as_bytes()).unwrap();
        assert_eq!(p.records.len(), 1);
        assert_eq!(p.rejected[0].index, 0);
    }
}
