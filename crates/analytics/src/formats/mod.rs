//! Parsers of the usage formats Apogee ingests, each in its own module, all pure (bytes in,
//! records out). Every record is parsed, normalised to the canonical token convention and
//! validated on its own, so one bad record is reported by its index and never drops the rest.
//! Pricing and storage happen after, in the same way for every format.

pub mod csv;
pub mod json;
pub mod litellm;
pub mod openai_usage;

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

    /// Guesses from a file name: `.csv` is CSV, anything else §8 JSON/NDJSON.
    pub fn from_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Usage,
        }
    }
}

/// Why the record at `index` was not stored. `index` is the record's 0-based position in the
/// source: array element, non-blank NDJSON line, CSV data row, or OpenAI result (counted across
/// buckets in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub index: usize,
    pub error: String,
}

/// The records that passed (canonical, validated, unpriced) and the rejections.
#[derive(Debug, Default)]
pub struct ParsedBatch {
    pub records: Vec<UsageRecord>,
    pub rejected: Vec<Rejection>,
}

/// A body that cannot be read as its format at all (as opposed to one bad record).
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("{0}")]
    Document(String),
}

/// Parses `bytes` as `format`.
pub fn parse(format: Format, bytes: &[u8]) -> Result<ParsedBatch, FormatError> {
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
    let results = match format {
        Format::Usage => json::parse(text)?,
        Format::Csv => csv::parse(text)?,
        Format::Litellm => litellm::parse(text)?,
        Format::OpenaiUsage => openai_usage::parse(text)?,
    };
    Ok(collect(results))
}

/// Normalises and validates each parsed record; its index is its position in `results`.
pub fn collect(results: Vec<Result<UsageRecord, String>>) -> ParsedBatch {
    collect_indexed(results.into_iter().enumerate())
}

/// Normalises and validates each parsed record, keeping the index its source gave it.
pub fn collect_indexed(
    results: impl IntoIterator<Item = (usize, Result<UsageRecord, String>)>,
) -> ParsedBatch {
    let mut batch = ParsedBatch::default();
    for (index, r) in results {
        match r.and_then(|rec| rec.normalise().map_err(|e| e.to_string())) {
            Ok(record) => batch.records.push(record),
            Err(error) => batch.rejected.push(Rejection { index, error }),
        }
    }
    batch
}

/// A §8 record from a JSON value.
pub(crate) fn record_from_value(value: serde_json::Value) -> Result<UsageRecord, String> {
    serde_json::from_value(value).map_err(|e| e.to_string())
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
mod depth_tests {
    use super::*;

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
