//! A nesting-depth check that runs before any JSON parser. serde_json parses recursively and
//! stops at 128 levels; this scan is iterative, so input nested 10,000 (or 10,000,000) levels
//! deep is refused in one linear pass with constant stack, and the parser only ever sees
//! shallow documents.

/// Deepest nesting of arrays and objects accepted in a client frame or a usage body. Real
/// frames and records are 1–3 levels deep; 32 leaves room for structured `ping` nonces
/// without letting anyone make the parser recurse far.
pub const MAX_JSON_DEPTH: usize = 32;

/// Whether `text` opens more than `max` nested arrays/objects at some point. Brackets inside
/// strings do not count. Malformed JSON is not judged here: the parser reports it.
pub fn json_depth_exceeds(text: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_outside_strings_only() {
        assert!(!json_depth_exceeds(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(json_depth_exceeds(br#"{"a":[1,{"b":[]}]}"#, 3));
        assert!(!json_depth_exceeds(br#"{"a":"[[[[[[\"[[[["}"#, 1));
        assert!(!json_depth_exceeds(br#"[][][][]"#, 1));
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(json_depth_exceeds(deep.as_bytes(), MAX_JSON_DEPTH));
        let ok = "[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH);
        assert!(!json_depth_exceeds(ok.as_bytes(), MAX_JSON_DEPTH));
    }
}
