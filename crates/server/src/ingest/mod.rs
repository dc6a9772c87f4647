//! Ingest shared by every path (`POST /api/usage`, `POST /v1/traces`, `apogee ingest`):
//! parsed records are priced with the server's catalog and their provider resolved, ready for
//! the store. Parsing lives in `apogee_analytics::formats` (pure) and [`otlp`] (OTLP/HTTP).

pub mod file;
pub mod otlp;

use apogee_analytics::formats::{self, Format, FormatError, ParsedBatch, Rejection};
use apogee_analytics::{PriceCatalog, PricedRecord, UsageRecord};

/// The records that passed, priced, with their resolved provider, and the rejections.
pub struct Parsed {
    pub accepted: Vec<(PricedRecord, String)>,
    pub rejected: Vec<Rejection>,
}

/// Prices a record and resolves its provider (given, else the catalog's, else `unknown`).
pub fn price(record: UsageRecord, catalog: &PriceCatalog) -> (PricedRecord, String) {
    let priced = PricedRecord::price(record, catalog);
    let provider = priced.provider(catalog);
    (priced, provider)
}

/// Prices every record of a parsed batch.
pub fn price_batch(batch: ParsedBatch, catalog: &PriceCatalog) -> Parsed {
    Parsed {
        accepted: batch
            .records
            .into_iter()
            .map(|r| price(r, catalog))
            .collect(),
        rejected: batch.rejected,
    }
}

/// Parses and prices a body or file of `format`.
pub fn parse_body(
    format: Format,
    body: &[u8],
    catalog: &PriceCatalog,
) -> Result<Parsed, FormatError> {
    Ok(price_batch(formats::parse(format, body)?, catalog))
}

/// The format of a `POST /api/usage` body: `?format=` when given, else `text/csv` is CSV, else
/// §8 JSON/NDJSON.
pub fn body_format(query: Option<&str>, content_type: Option<&str>) -> Result<Format, String> {
    if let Some(name) = query {
        return Format::parse_name(name).ok_or_else(|| {
            format!("unknown format `{name}`: use ndjson, json, csv, litellm or openai")
        });
    }
    let csv = content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("text/csv"));
    Ok(if csv { Format::Csv } else { Format::Usage })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_good_records_and_keeps_rejections() {
        let catalog = PriceCatalog::builtin().unwrap();
        let body = b"{\"ts\":\"2026-11-20T08:15:02Z\",\"model\":\"gpt-4o\",\"input_tokens\":10,\"output_tokens\":5}\n\nnot json\n{\"ts\":\"2026-11-20T08:15:02Z\",\"model\":\"mystery\",\"input_tokens\":1,\"output_tokens\":1}\n";
        let p = parse_body(Format::Usage, body, &catalog).unwrap();
        assert_eq!(p.accepted.len(), 2);
        assert_eq!(p.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [1]);
        assert_eq!(p.accepted[0].1, "openai");
        assert_eq!(
            p.accepted[1].0.cost, None,
            "unknown models are unpriced, not $0"
        );
        assert_eq!(p.accepted[1].1, "unknown");
    }

    #[test]
    fn body_format_follows_query_then_content_type() {
        assert_eq!(
            body_format(None, Some("text/csv; charset=utf-8")),
            Ok(Format::Csv)
        );
        assert_eq!(
            body_format(None, Some("application/x-ndjson")),
            Ok(Format::Usage)
        );
        assert_eq!(
            body_format(Some("litellm"), Some("text/csv")),
            Ok(Format::Litellm)
        );
        assert!(body_format(Some("xml"), None).is_err());
    }
}
