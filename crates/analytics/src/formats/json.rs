//! §8 usage records as a JSON array or NDJSON. A body whose first non-blank character is `[`
//! is an array (which must parse as a whole); anything else is NDJSON, one record per
//! non-blank line, each line on its own — unless not one line is JSON at all, which is not
//! NDJSON but some other document (a 400, not a body of rejected records). Each element or
//! line is read straight into a record, so an out-of-range number rejects only its record.

use std::io::BufRead;

use apogee_protocol::depth::{MAX_JSON_DEPTH, json_depth_exceeds};
use serde_json::error::Category;

use crate::usage::UsageRecord;

use super::{Collector, FormatError, stream};

/// One §8 record from its JSON text; `Err((message, is_json))` tells a record that is wrong
/// from text that is not JSON.
fn parse_record(text: &str) -> Result<UsageRecord, (String, bool)> {
    serde_json::from_str::<UsageRecord>(text).map_err(|e| match e.classify() {
        Category::Syntax | Category::Eof => (format!("not JSON: {e}"), false),
        Category::Data | Category::Io => (e.to_string(), true),
    })
}

/// One NDJSON line; the flag says whether it was JSON at all.
fn line_record(line: &str) -> (Result<UsageRecord, String>, bool) {
    if json_depth_exceeds(line.as_bytes(), MAX_JSON_DEPTH) {
        return (
            Err(format!(
                "not JSON: nested deeper than {MAX_JSON_DEPTH} levels"
            )),
            true,
        );
    }
    match parse_record(line) {
        Ok(r) => (Ok(r), true),
        Err((e, is_json)) => (Err(e), is_json),
    }
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
                        return Some(line_record(line.strip_suffix('\r').unwrap_or(line)).0);
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

/// Reads a body's records into `out`.
pub fn read(text: &str, out: &mut Collector) -> Result<(), FormatError> {
    if text.trim_start().starts_with('[') {
        return stream::array_elements(
            text,
            |raw| out.push(parse_record(raw).map_err(|(e, _)| e)),
            "body starts like a JSON array but is not one",
        );
    }
    let mut lines = 0usize;
    let mut any_json = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (record, is_json) = line_record(line);
        lines += 1;
        any_json |= is_json;
        out.push(record)?;
    }
    if lines > 0 && !any_json {
        return Err(FormatError::Document(
            "body is neither a JSON array nor NDJSON: not one line is JSON".into(),
        ));
    }
    Ok(())
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
        let streamed =
            crate::formats::collect(super::ndjson_records(testdata::USAGE_NDJSON.as_bytes()));
        let whole = parse(Format::Usage, testdata::USAGE_NDJSON.as_bytes()).unwrap();
        assert_eq!(streamed.records, whole.records);
        assert_eq!(streamed.rejected, whole.rejected);
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

    #[test]
    fn an_out_of_range_number_rejects_only_its_record() {
        let good =
            r#"{"ts":"2026-11-20T08:15:02Z","model":"gpt-4o","input_tokens":10,"output_tokens":5}"#;
        let huge = r#"{"ts":"2026-11-20T08:15:02Z","model":"gpt-4o","input_tokens":1e309,"output_tokens":5}"#;
        let junk = r#"{"ts":"2026-11-20T08:15:02Z","model":"gpt-4o","input_tokens":1,"output_tokens":5,"extra":1e309}"#;
        for body in [
            format!("[{good},{huge},{good},{junk}]"),
            format!("{good}\n{huge}\n{good}\n{junk}"),
        ] {
            let b = parse(Format::Usage, body.as_bytes()).unwrap();
            assert_eq!(b.indexes, [0, 2, 3], "{body}");
            assert_eq!(b.rejected.len(), 1);
            assert_eq!(b.rejected[0].index, 1);
            assert!(
                b.rejected[0].error.contains("out of range"),
                "{:?}",
                b.rejected
            );
        }
    }

    #[test]
    fn a_body_that_is_not_json_at_all_is_refused_whole() {
        for body in ["{{{{{{{{", "{{{{\n}}}}\nnot json", "<xml/>"] {
            assert!(
                matches!(
                    parse(Format::Usage, body.as_bytes()),
                    Err(crate::formats::FormatError::Document(_))
                ),
                "{body}"
            );
        }
        // One JSON line among broken ones is NDJSON with rejections; so is JSON that is not a
        // record; an empty body is no records.
        let b = parse(Format::Usage, b"{{{{\n1\n").unwrap();
        assert_eq!((b.records.len(), b.rejected_count), (0, 2));
        assert_eq!(parse(Format::Usage, b"").unwrap().rejected_count, 0);
    }
}
