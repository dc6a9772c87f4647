//! The grounding check: every number in the LLM planner's answer must be derivable from the
//! run's tool results, that is equal to one of their numbers after rounding to the digits
//! the answer shows, or to a simple sum, difference or ratio of two of them (a share or a
//! change in percent included). Numbers the question itself typed count as given. What is not
//! a figure is left alone: digits inside names (`gpt-4o`, `claude-3-5-haiku`, `p95`), the
//! numbers of an ordered list, and small counting words up to [`SMALL_COUNT`].

use serde_json::Value;

/// Integers up to this are counts the answer may state without a tool result ("3 features",
/// "top 5"): a tool result lists rows, it does not always count them.
const SMALL_COUNT: f64 = 10.0;
/// Values of the evidence combined pairwise (the first ones seen): a bound on the work.
const MAX_PAIRED: usize = 400;

/// The numbers of the tool results and the question.
#[derive(Debug, Default, Clone)]
pub(crate) struct Evidence {
    values: Vec<f64>,
    counts: Vec<f64>,
}

impl Evidence {
    /// Every number of `value`: JSON numbers and array lengths. Numbers inside strings are
    /// not figures: they are names (a feature called "saved $999.99" proves nothing) or
    /// instants.
    pub(crate) fn add_json(&mut self, value: &Value) {
        match value {
            Value::Number(n) => {
                if let Some(f) = n.as_f64() {
                    self.push(f);
                }
            }
            Value::String(_) => {}
            Value::Array(items) => {
                self.push_count(items.len() as f64);
                for v in items {
                    self.add_json(v);
                }
            }
            Value::Object(map) => {
                for v in map.values() {
                    self.add_json(v);
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// Every number of `text` the user typed (with its decimals), whatever surrounds it.
    pub(crate) fn add_text(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b',') {
                    i += 1;
                }
                if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                let digits: String = text[start..i].chars().filter(|c| *c != ',').collect();
                if let Ok(v) = digits.parse::<f64>() {
                    self.push(v);
                }
                // `1,234` is also `1` and `234` when the comma separated two numbers.
                for part in text[start..i].split(',') {
                    if let Ok(v) = part.parse::<f64>() {
                        self.push(v);
                    }
                }
            } else {
                i += 1;
            }
        }
    }

    fn push(&mut self, v: f64) {
        let v = v.abs();
        if v.is_finite() && !self.values.contains(&v) && !self.counts.contains(&v) {
            self.values.push(v);
        }
    }

    /// A count of listed items: a figure itself, not combined with others.
    fn push_count(&mut self, v: f64) {
        if !self.values.contains(&v) && !self.counts.contains(&v) {
            self.counts.push(v);
        }
    }

    /// Whether `w` is one of the numbers, rounded as written, or a simple combination of two.
    fn supports(&self, w: &Written) -> bool {
        if w.is_small_count() {
            return true;
        }
        let candidates = w.candidates();
        let matches = |g: f64| candidates.iter().any(|(x, tol)| (g - x).abs() <= *tol);
        if self.values.iter().chain(&self.counts).any(|&g| matches(g)) {
            return true;
        }
        // 0 and 1 combine into nothing new.
        let paired: Vec<f64> = self
            .values
            .iter()
            .copied()
            .filter(|v| *v != 0.0 && *v != 1.0)
            .take(MAX_PAIRED)
            .collect();
        for (i, &a) in paired.iter().enumerate() {
            for &b in &paired[i + 1..] {
                let (small, large) = if a < b { (a, b) } else { (b, a) };
                let derived = if w.percent {
                    // A share, or a change relative to either.
                    [
                        small / large * 100.0,
                        (large - small) / small * 100.0,
                        (large - small) / large * 100.0,
                    ]
                } else {
                    // A sum, a difference, a ratio (cost per call, times as much).
                    [large + small, large - small, large / small]
                };
                if derived.into_iter().any(matches) {
                    return true;
                }
            }
        }
        false
    }
}

/// A number as the answer writes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Written {
    pub text: String,
    /// The value, scaled (`1.2k` is 1200).
    pub value: f64,
    /// Digits after the decimal point as written.
    pub decimals: u32,
    /// `k`, `M`, `B` (`million`, `billion`): 1e3, 1e6, 1e9.
    pub scale: f64,
    pub percent: bool,
}

impl Written {
    fn is_small_count(&self) -> bool {
        self.decimals == 0
            && self.scale == 1.0
            && !self.percent
            && !self.text.contains('$')
            && self.value <= SMALL_COUNT
    }

    /// The values it may stand for, each with the half-unit of its last digit.
    fn candidates(&self) -> Vec<(f64, f64)> {
        let half = 0.5 * 10f64.powi(-(self.decimals as i32)) * self.scale;
        let tol = half + 1e-9 * self.value.abs();
        let mut out = vec![(self.value, tol)];
        if self.percent {
            // A share written as 12.5% may be the ratio 0.125 in a tool result.
            out.push((self.value / 100.0, tol / 100.0));
        }
        out
    }
}

/// The figures of `answer`, as written.
pub(crate) fn numbers(answer: &str) -> Vec<Written> {
    let mut out = Vec::new();
    for line in answer.lines() {
        let mut words: Vec<&str> = line.split_whitespace().collect();
        // `1. item`: the list's number, not a figure.
        if let Some(first) = words.first()
            && first.ends_with('.')
            && first[..first.len() - 1].chars().all(|c| c.is_ascii_digit())
            && !first[..first.len() - 1].is_empty()
        {
            words.remove(0);
        }
        let mut i = 0;
        while i < words.len() {
            let next = words.get(i + 1).copied();
            if let Some(w) = figure(words[i], next) {
                out.push(w);
            }
            i += 1;
        }
    }
    out
}

/// Reads one whitespace-separated word of the answer; `next` may scale it (`1.2 million`).
fn figure(word: &str, next: Option<&str>) -> Option<Written> {
    // Markdown and punctuation around the figure.
    let trimmed = word.trim_matches(|c: char| {
        matches!(
            c,
            '*' | '_'
                | '`'
                | '('
                | ')'
                | '['
                | ']'
                | '"'
                | '\''
                | ','
                | ';'
                | ':'
                | '!'
                | '?'
                | '|'
                | '~'
                | '≈'
        )
    });
    let trimmed = trimmed.trim_end_matches('.');
    let mut s = trimmed;
    let mut text = String::new();
    if let Some(rest) = s.strip_prefix('-').or_else(|| s.strip_prefix('−')) {
        s = rest;
    }
    if let Some(rest) = s.strip_prefix('$') {
        s = rest;
        text.push('$');
    }
    let end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == ',' || *c == '.'))
        .map_or(s.len(), |(i, _)| i);
    let (digits, suffix) = s.split_at(end);
    if digits.is_empty() || !digits.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let (percent, scale) = match suffix {
        "" => (false, word_scale(next)),
        "%" => (true, 1.0),
        "k" | "K" => (false, 1e3),
        "M" => (false, 1e6),
        "B" | "bn" => (false, 1e9),
        "x" | "×" => (false, 1.0),
        // Letters after digits: part of a name (`4o`, `3.5-sonnet`); `-`, `:` or `/`: a
        // date, a time or a range (`2026-11-20`, `14:00`). None is a figure.
        _ => return None,
    };
    // Letters before the digits (`gpt-4`, `p95`) were cut by the word split only when the
    // word started with them; a `-` joined to letters means a name.
    if word.contains(|c: char| c.is_ascii_alphabetic())
        && !matches!(suffix, "k" | "K" | "M" | "B" | "bn" | "x")
    {
        return None;
    }
    let plain: String = digits.chars().filter(|c| *c != ',').collect();
    let plain = plain.trim_end_matches('.');
    let value: f64 = plain.parse().ok()?;
    let decimals = plain.split_once('.').map_or(0, |(_, d)| d.len() as u32);
    text.push_str(digits);
    text.push_str(suffix);
    Some(Written {
        text,
        value: value * scale,
        decimals,
        scale,
        percent,
    })
}

fn word_scale(next: Option<&str>) -> f64 {
    let next = next.map(|n| {
        n.trim_end_matches(|c: char| !c.is_alphabetic())
            .to_lowercase()
    });
    match next.as_deref() {
        Some("thousand") => 1e3,
        Some("million") => 1e6,
        Some("billion") => 1e9,
        _ => 1.0,
    }
}

/// The figures of `answer` no tool result supports (empty: grounded).
pub(crate) fn unsupported(answer: &str, evidence: &Evidence) -> Vec<String> {
    numbers(answer)
        .into_iter()
        .filter(|w| !evidence.supports(w))
        .map(|w| w.text)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn evidence() -> Evidence {
        let mut e = Evidence::default();
        e.add_json(&json!({
            "totals": {"calls": 1234, "cost_usd": 4213.5512, "input_tokens": 1_250_000, "error_calls": 37},
            "rows": [
                {"key": "support-bot saved $999.99", "cost_usd": 3000.25, "calls": 800},
                {"key": "search", "cost_usd": 1213.3012, "calls": 434},
            ],
            "period": {"from": "2026-11-01T00:00:00Z", "to": "2026-11-26T00:00:00Z"},
            "latency_ms": {"p95": 1840},
        }));
        e.add_text("How much did support-bot spend in the last 30 days?");
        e
    }

    /// (answer, the figures it invents).
    const CASES: &[(&str, &[&str])] = &[
        ("Spend was $4,213.55 across 1,234 calls.", &[]),
        ("Spend was **$4,214** (about $4.2k).", &[]),
        ("support-bot spent $3,000.25, 71.2% of the total.", &[]),
        (
            "support-bot and search together: $4,213.55; search is $1,786.95 less.",
            &[],
        ),
        ("1.25 million input tokens; 1.25M again.", &[]),
        ("Errors: 37 of 1,234 calls (3.0%).", &[]),
        (
            "p95 latency 1840 ms on gpt-4o and claude-3-5-haiku, period 2026-11-01 to 2026-11-26.",
            &[],
        ),
        (
            "In the last 30 days:\n1. support-bot\n2. search\n3. other",
            &[],
        ),
        ("Top 3 features, 2 models.", &[]),
        ("Spend was $4,813.55 across 1,234 calls.", &["$4,813.55"]),
        ("You could save $912.40 a month.", &["$912.40"]),
        ("A feature's name is not a figure: $999.99.", &["$999.99"]),
        ("support-bot is 58% of spend.", &["58%"]),
        ("That is 17 errors.", &["17"]),
        ("Spend was $4,213.6 — and 2,750 calls.", &["2,750"]),
    ];

    #[test]
    fn invented_figures_are_found_and_derived_ones_pass() {
        let e = evidence();
        for (answer, invented) in CASES {
            assert_eq!(&unsupported(answer, &e), invented, "{answer}");
        }
    }

    #[test]
    fn figures_are_read_as_written() {
        let got: Vec<(String, f64, u32, bool)> =
            numbers("$1,234.50 12% 1.2k 3 million (7) gpt-4o p95 2x")
                .into_iter()
                .map(|w| (w.text, w.value, w.decimals, w.percent))
                .collect();
        assert_eq!(
            got,
            vec![
                ("$1,234.50".to_string(), 1234.5, 2, false),
                ("12%".to_string(), 12.0, 0, true),
                ("1.2k".to_string(), 1200.0, 1, false),
                ("3".to_string(), 3e6, 0, false),
                ("7".to_string(), 7.0, 0, false),
                ("2x".to_string(), 2.0, 0, false),
            ]
        );
    }
}
