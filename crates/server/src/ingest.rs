//! Parsing of usage bodies (`POST /api/usage`): a JSON array or NDJSON. Each record is parsed
//! and validated on its own, so one bad record is reported by index and never drops the rest.
//! Nesting depth is checked before any parsing (`apogee_protocol::depth`): a too-deep array
//! body is refused whole (400), a too-deep NDJSON line is rejected as its record.

use apogee_analytics::{PriceCatalog, PricedRecord, UsageRecord};
use apogee_protocol::depth::{MAX_JSON_DEPTH, json_depth_exceeds};
use serde::Serialize;

/// Why the record at `index` (0-based position in the array, or among non-blank NDJSON
/// lines) was not stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub index: usize,
    pub error: String,
}

/// The records that passed, priced, with their resolved provider, and the rejections.
pub struct Parsed {
    pub accepted: Vec<(PricedRecord, String)>,
    pub rejected: Vec<Rejection>,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("body starts like a JSON array but is not one: {0}")]
    BadArray(serde_json::Error),
    #[error("body is nested deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep,
}

fn parse_value(value: serde_json::Value) -> Result<UsageRecord, String> {
    let record: UsageRecord = serde_json::from_value(value).map_err(|e| e.to_string())?;
    record.validate().map_err(|e| e.to_string())?;
    Ok(record)
}

pub fn parse_body(body: &[u8], catalog: &PriceCatalog) -> Result<Parsed, BodyError> {
    let text = std::str::from_utf8(body).map_err(|_| BodyError::NotUtf8)?;
    let mut results: Vec<Result<UsageRecord, String>> = Vec::new();
    if text.trim_start().starts_with('[') {
        if json_depth_exceeds(body, MAX_JSON_DEPTH) {
            return Err(BodyError::TooDeep);
        }
        let values: Vec<serde_json::Value> =
            serde_json::from_str(text).map_err(BodyError::BadArray)?;
        results.extend(values.into_iter().map(parse_value));
    } else {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if json_depth_exceeds(line.as_bytes(), MAX_JSON_DEPTH) {
                results.push(Err(format!(
                    "not JSON: nested deeper than {MAX_JSON_DEPTH} levels"
                )));
                continue;
            }
            results.push(
                serde_json::from_str::<serde_json::Value>(line)
                    .map_err(|e| format!("not JSON: {e}"))
                    .and_then(parse_value),
            );
        }
    }
    let mut parsed = Parsed {
        accepted: Vec::with_capacity(results.len()),
        rejected: Vec::new(),
    };
    for (index, r) in results.into_iter().enumerate() {
        match r {
            Ok(record) => {
                let priced = PricedRecord::price(record, catalog);
                let provider = priced.provider(catalog);
                parsed.accepted.push((priced, provider));
            }
            Err(error) => parsed.rejected.push(Rejection { index, error }),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_keeps_good_lines_and_reports_bad_ones_by_index() {
        let catalog = PriceCatalog::builtin().unwrap();
        let body = b"{\"ts\":\"2026-11-20T08:15:02Z\",\"model\":\"gpt-4o\",\"input_tokens\":10,\"output_tokens\":5}\n\nnot json\n{\"ts\":\"2026-11-20T08:15:02Z\",\"model\":\"x\",\"input_tokens\":-1,\"output_tokens\":5}\n{\"ts\":\"2026-11-20T08:15:02Z\",\"model\":\"mystery\",\"input_tokens\":1,\"output_tokens\":1}\n";
        let p = parse_body(body, &catalog).unwrap();
        assert_eq!(p.accepted.len(), 2);
        assert_eq!(
            p.rejected.iter().map(|r| r.index).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(p.accepted[0].1, "openai");
        assert_eq!(
            p.accepted[1].0.cost, None,
            "unknown models are unpriced, not $0"
        );
    }

    #[test]
    fn json_array_records_are_checked_one_by_one() {
        let catalog = PriceCatalog::builtin().unwrap();
        let body = br#"[{"ts":"2026-11-20T08:15:02Z","model":"gpt-4o","input_tokens":10,"output_tokens":5,"cost_usd":0.5}, {"model":"gpt-4o"}]"#;
        let p = parse_body(body, &catalog).unwrap();
        assert_eq!(p.accepted.len(), 1);
        assert_eq!(p.accepted[0].0.price_source.as_deref(), Some("client"));
        assert_eq!(p.rejected[0].index, 1);
        assert!(parse_body(b"[{", &catalog).is_err());
    }

    #[test]
    fn deep_json_is_refused_before_parsing() {
        let catalog = PriceCatalog::builtin().unwrap();
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(matches!(
            parse_body(deep.as_bytes(), &catalog),
            Err(BodyError::TooDeep)
        ));
        let ndjson = format!(
            "{}\n{{\"ts\":\"2026-11-20T08:15:02Z\",\"model\":\"gpt-4o\",\"input_tokens\":1,\"output_tokens\":1}}\n",
            "{\"a\":".repeat(10_000)
        );
        let p = parse_body(ndjson.as_bytes(), &catalog).unwrap();
        assert_eq!(p.accepted.len(), 1);
        assert_eq!(p.rejected[0].index, 0);
    }
}
