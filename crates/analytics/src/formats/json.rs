//! §8 usage records as a JSON array or NDJSON. A body whose first non-blank character is `[`
//! is an array (which must parse as a whole); anything else is NDJSON, one record per
//! non-blank line, each line on its own.

use std::io::BufRead;

use apogee_protocol::depth::{MAX_JSON_DEPTH, json_depth_exceeds};

use crate::usage::UsageRecord;

use super::{FormatError, record_from_value};

fn line_record(line: &str) -> Result<UsageRecord, String> {
    if json_depth_exceeds(line.as_bytes(), MAX_JSON_DEPTH) {
        return Err(format!(
            "not JSON: nested deeper than {MAX_JSON_DEPTH} levels"
        ));
    }
    serde_json::from_str::<serde_json::Value>(line)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(record_from_value)
}

/// NDJSON records read line by line from `reader` (for files too large to hold). A line that is
/// not UTF-8 is a bad record; a read error is reported as one and ends the iteration.
pub fn ndjson_records<R: BufRead>(
    mut reader: R,
) -> impl Iterator<Item = Result<UsageRecord, String>> {
    let mut buf = Vec::new();
    let mut done = false;
    std::iter::from_fn(move || {
        while !done {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => done = true,
                Ok(_) => match std::str::from_utf8(&buf) {
                    Ok(line) if line.trim().is_empty() => continue,
                    // Like `str::lines`, without the `\n` or `\r\n` ending.
                    Ok(line) => {
                        let line = line.strip_suffix('\n').unwrap_or(line);
                        return Some(line_record(line.strip_suffix('\r').unwrap_or(line)));
                    }
                    Err(_) => return Some(Err("line is not UTF-8".into())),
                },
                Err(e) => {
                    done = true;
                    return Some(Err(format!("read error, nothing after this was read: {e}")));
                }
            }
        }
        None
    })
}

pub fn parse(text: &str) -> Result<Vec<Result<UsageRecord, String>>, FormatError> {
    if text.trim_start().starts_with('[') {
        let values: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| {
            FormatError::Document(format!("body starts like a JSON array but is not one: {e}"))
        })?;
        return Ok(values.into_iter().map(record_from_value).collect());
    }
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(line_record)
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::formats::{Format, parse, testdata};

    #[test]
    fn sample_ndjson_keeps_good_lines_and_reports_bad_ones_by_index() {
        let b = parse(Format::Usage, testdata::USAGE_NDJSON.as_bytes()).unwrap();
        let idx: Vec<usize> = b.rejected.iter().map(|r| r.index).collect();
        assert_eq!(idx, [3, 4, 5, 6], "{:?}", b.rejected);
        assert_eq!(b.records.len(), 4);
        // Line 2 is Anthropic-style: 40 + 900 read + 60 written = 1000 canonical.
        assert_eq!(b.records[1].input_tokens, 1000);
        assert_eq!(b.records[1].tags.as_ref().map(|t| t.len()), Some(2));
    }

    #[test]
    fn streamed_ndjson_matches_the_whole_body_parse() {
        let streamed: Vec<_> = super::ndjson_records(testdata::USAGE_NDJSON.as_bytes()).collect();
        let whole = super::parse(testdata::USAGE_NDJSON).unwrap();
        assert_eq!(streamed, whole);
        let bad: Vec<_> = super::ndjson_records(&b"\xff\n\n{}"[..]).collect();
        assert_eq!(bad.len(), 2);
        assert!(bad.iter().all(Result::is_err));
    }

    #[test]
    fn array_must_parse_as_a_whole_but_records_fail_alone() {
        let body = br#"[{"ts":"2026-11-20T08:15:02Z","model":"gpt-4o","input_tokens":10,"output_tokens":5}, {"model":"gpt-4o"}]"#;
        let b = parse(Format::Usage, body).unwrap();
        assert_eq!(b.records.len(), 1);
        assert_eq!(b.rejected[0].index, 1);
        assert!(parse(Format::Usage, b"[{").is_err());
        assert!(parse(Format::Usage, b"\xff").is_err());
    }
}
