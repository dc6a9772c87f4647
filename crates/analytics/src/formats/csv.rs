//! §8 usage records as CSV with a header row. Columns are the record's field names in any
//! order; an empty cell is an absent field; `tags` holds a JSON object, and any `tag.KEY`
//! column adds the tag `KEY`. Unknown columns are ignored, like unknown JSON fields.

use serde_json::{Map, Value};

use crate::usage::UsageRecord;

use super::{Collector, FormatError, record_from_value, stream::MAX_ELEMENT_BYTES};

/// Columns a header row may have: every field, tag columns and columns Apogee ignores, with
/// room to spare. The header is read whole, so it is bounded before it is.
pub const MAX_COLUMNS: usize = 1024;

/// Fields whose cells are integers, booleans or decimals; the rest are strings.
const INTEGERS: &[&str] = &[
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "latency_ms",
    "max_tokens",
    "request_count",
];
const BOOLEANS: &[&str] = &["batch", "stream"];
const DECIMALS: &[&str] = &["cost_usd"];

/// Reads a body's rows into `out`. Rows longer than [`MAX_ELEMENT_BYTES`] make the body
/// a 400 before any row is read: the CSV reader holds a row whole (and a position per cell),
/// so a hostile row would cost many times its size.
pub fn read(text: &str, out: &mut Collector) -> Result<(), FormatError> {
    if longest_row(text.as_bytes()) > MAX_ELEMENT_BYTES {
        return Err(FormatError::Document(format!(
            "a CSV row is longer than {} KiB",
            MAX_ELEMENT_BYTES / 1024
        )));
    }
    for record in records(text.as_bytes())? {
        out.push(record)?;
    }
    Ok(())
}

/// The length of the longest row in bytes, newlines inside quoted cells included.
fn longest_row(bytes: &[u8]) -> usize {
    let (mut longest, mut start, mut quoted) = (0, 0, false);
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => {
                longest = longest.max(i - start);
                start = i + 1;
            }
            _ => {}
        }
    }
    longest.max(bytes.len() - start)
}

/// CSV records read row by row from `reader` (for files too large to hold). The header row is
/// read first; a read error is reported as one bad record and ends the iteration.
pub fn records<R: std::io::Read>(
    reader: R,
) -> Result<impl Iterator<Item = Result<UsageRecord, String>>, FormatError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(reader);
    let header_row = reader
        .headers()
        .map_err(|e| FormatError::Document(format!("CSV header row: {e}")))?;
    if header_row.len() > MAX_COLUMNS {
        return Err(FormatError::Document(format!(
            "CSV header row has {} columns, more than {MAX_COLUMNS}",
            header_row.len()
        )));
    }
    let headers: Vec<String> = header_row.iter().map(str::to_string).collect();
    for required in ["ts", "model", "input_tokens", "output_tokens"] {
        if !headers.iter().any(|h| h == required) {
            return Err(FormatError::Document(format!(
                "CSV header row has no `{required}` column"
            )));
        }
    }
    let mut rows = reader.into_records();
    let mut done = false;
    Ok(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let row = match rows.next()? {
            Ok(row) => row,
            Err(e) => {
                if matches!(e.kind(), ::csv::ErrorKind::Io(_)) {
                    done = true;
                }
                return Some(Err(format!("bad CSV row: {e}")));
            }
        };
        if row.len() != headers.len() {
            return Some(Err(format!(
                "row has {} cells, the header {}",
                row.len(),
                headers.len()
            )));
        }
        Some(row_to_record(&headers, &row))
    }))
}

fn row_to_record(headers: &[String], row: &::csv::StringRecord) -> Result<UsageRecord, String> {
    let mut object = Map::new();
    let mut tags = Map::new();
    for (name, cell) in headers.iter().zip(row.iter()) {
        if cell.is_empty() {
            continue;
        }
        if let Some(key) = name.strip_prefix("tag.") {
            tags.insert(key.to_string(), Value::String(cell.to_string()));
            continue;
        }
        let value = if INTEGERS.contains(&name.as_str()) {
            Value::from(
                cell.parse::<i64>()
                    .map_err(|_| format!("`{name}`: `{cell}` is not an integer"))?,
            )
        } else if BOOLEANS.contains(&name.as_str()) {
            Value::Bool(match cell.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(format!("`{name}`: `{cell}` is not true or false")),
            })
        } else if DECIMALS.contains(&name.as_str()) {
            let n = cell
                .parse::<f64>()
                .map_err(|_| format!("`{name}`: `{cell}` is not a number"))?;
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| format!("`{name}`: `{cell}` is not a finite number"))?
        } else if name == "tags" {
            let v: Value = serde_json::from_str(cell)
                .map_err(|_| "`tags` must be a JSON object".to_string())?;
            match v {
                Value::Object(m) => {
                    tags.extend(m);
                    continue;
                }
                _ => return Err("`tags` must be a JSON object".into()),
            }
        } else {
            Value::String(cell.to_string())
        };
        object.insert(name.clone(), value);
    }
    if !tags.is_empty() {
        object.insert("tags".into(), Value::Object(tags));
    }
    record_from_value(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use crate::formats::{Format, parse, testdata};

    #[test]
    fn sample_csv_types_cells_and_rejects_bad_rows() {
        let b = parse(Format::Csv, testdata::USAGE_CSV.as_bytes()).unwrap();
        let idx: Vec<usize> = b.rejected.iter().map(|r| r.index).collect();
        assert_eq!(idx, [2, 3, 4], "{:?}", b.rejected);
        assert_eq!(b.records.len(), 3);
        let r = &b.records[0];
        assert_eq!(
            (r.input_tokens, r.cached_tokens(), r.batch),
            (1200, 200, Some(false))
        );
        assert_eq!(
            r.tags
                .as_ref()
                .and_then(|t| t.get("team"))
                .map(String::as_str),
            Some("support")
        );
        assert_eq!(b.records[2].stream, Some(true));
    }

    #[test]
    fn header_without_required_columns_is_refused_whole() {
        assert!(parse(Format::Csv, b"ts,model\n2026-11-20T08:15:02Z,gpt-4o\n").is_err());
    }

    #[test]
    fn huge_rows_and_headers_are_refused_before_they_are_read() {
        let header = "ts,model,input_tokens,output_tokens";
        let wide = format!("{header}\n{}\n", ",".repeat(2 * 1024 * 1024));
        assert!(parse(Format::Csv, wide.as_bytes()).is_err());
        let many_columns = format!("{header}{}\n", ",x".repeat(super::MAX_COLUMNS));
        assert!(parse(Format::Csv, many_columns.as_bytes()).is_err());
        // A quoted newline does not end a row; a long quoted cell is one long row.
        assert_eq!(super::longest_row(b"a,\"b\nc\"\nd"), 7);
    }
}
