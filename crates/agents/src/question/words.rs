//! The words of a question: tokens, the one stop-word list, number words, and the string
//! similarity names are matched with. Everything else in `question/` reads these tokens.

/// One word of the question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    /// As typed (case kept), without surrounding punctuation.
    pub raw: String,
    /// Lower-cased, a trailing possessive `'s` removed.
    pub lower: String,
    /// Typed inside backticks or quotes: meant as a name.
    pub quoted: bool,
}

/// Longest question read, in characters; the rest is ignored (a question, not a document).
pub(crate) const MAX_QUESTION_CHARS: usize = 2_000;
/// Most tokens read.
const MAX_TOKENS: usize = 200;

/// Characters kept inside a token: names use them (`gpt-4o`, `claude-3.5`, `u_7`, `team=x`).
fn joins(c: char) -> bool {
    matches!(c, '-' | '.' | '_' | '=' | ':' | '/' | '$' | '@' | '%' | '+')
}

/// The question's tokens. Text in backticks or double quotes is one token each side of which
/// nothing is split, so a quoted name is read whole.
pub(crate) fn tokens(question: &str) -> Vec<Token> {
    let text: String = question.chars().take(MAX_QUESTION_CHARS).collect();
    let mut out = Vec::new();
    // Odd segments were inside quotes.
    for (i, segment) in text.split(['`', '"', '“', '”']).enumerate() {
        if i % 2 == 1 {
            let name = segment.trim();
            if !name.is_empty() {
                out.push(Token {
                    raw: name.to_string(),
                    lower: name.to_lowercase(),
                    quoted: true,
                });
            }
            continue;
        }
        for word in segment.split(|c: char| !(c.is_alphanumeric() || joins(c) || c == '\'')) {
            let word = word.trim_matches(|c: char| c == '\'' || (joins(c) && c != '$' && c != '%'));
            let word = word
                .strip_suffix("'s")
                .or_else(|| word.strip_suffix("’s"))
                .unwrap_or(word);
            let word = word.trim_matches(|c: char| matches!(c, '.' | ':' | '-' | '/'));
            if word.is_empty() {
                continue;
            }
            out.push(Token {
                raw: word.to_string(),
                lower: word.to_lowercase(),
                quoted: false,
            });
        }
    }
    out.truncate(MAX_TOKENS);
    out
}

/// Words that carry nothing a plan needs and never name anything on their own.
const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "across",
    "actually",
    "after",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "anything",
    "are",
    "as",
    "at",
    "be",
    "been",
    "being",
    "both",
    "but",
    "by",
    "can",
    "could",
    "currently",
    "dear",
    "did",
    "didn't",
    "distinct",
    "do",
    "does",
    "doesn't",
    "doing",
    "done",
    "don't",
    "each",
    "ever",
    "every",
    "exactly",
    "for",
    "from",
    "get",
    "give",
    "go",
    "goes",
    "going",
    "gone",
    "got",
    "had",
    "has",
    "have",
    "having",
    "here",
    "hey",
    "how",
    "i",
    "i'd",
    "i'm",
    "if",
    "in",
    "into",
    "is",
    "it",
    "it's",
    "its",
    "just",
    "kind",
    "kindly",
    "know",
    "let",
    "let's",
    "like",
    "look",
    "me",
    "mine",
    "my",
    "need",
    "now",
    "of",
    "on",
    "only",
    "or",
    "our",
    "ours",
    "out",
    "over",
    "overall",
    "please",
    "pls",
    "plz",
    "quick",
    "quickly",
    "really",
    "roughly",
    "see",
    "show",
    "so",
    "some",
    "tell",
    "than",
    "thank",
    "thanks",
    "that",
    "that's",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "total",
    "under",
    "unique",
    "up",
    "us",
    "via",
    "want",
    "was",
    "we",
    "we're",
    "went",
    "were",
    "what",
    "what's",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "who",
    "whole",
    "why",
    "will",
    "with",
    "within",
    "would",
    "you",
    "your",
    "yours",
];

pub(crate) fn is_stop(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

/// `14`, `fourteen` → the number.
pub(crate) fn number(word: &str) -> Option<u32> {
    if let Ok(n) = word.parse::<u32>() {
        return Some(n);
    }
    let n = match word {
        "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "fourteen" => 14,
        "fifteen" => 15,
        "twenty" => 20,
        "thirty" => 30,
        "sixty" => 60,
        "ninety" => 90,
        _ => return None,
    };
    Some(n)
}

/// Letters and digits only, lower-cased: `GPT-4o` and `gpt4o` and `gpt 4o` are one name.
pub(crate) fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`, giving up above
/// `max` (returns `max + 1`).
pub(crate) fn distance(a: &str, b: &str, max: usize) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > max {
        return max + 1;
    }
    // Optimal string alignment over three rows.
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
            row_min = row_min.min(d);
        }
        if row_min > max {
            return max + 1;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()].min(max + 1)
}

/// How many edits a typed name of this (normalized) length may be from a real one: none for
/// short names, where one edit makes another word.
pub(crate) fn allowed_edits(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lowers(q: &str) -> Vec<String> {
        tokens(q).into_iter().map(|t| t.lower).collect()
    }

    #[test]
    fn tokens_keep_names_whole() {
        assert_eq!(
            lowers("How much did GPT-4o cost, on Nov. 20?"),
            ["how", "much", "did", "gpt-4o", "cost", "on", "nov", "20"]
        );
        assert_eq!(
            lowers("support-bot's p95 (claude-3.5-sonnet)"),
            ["support-bot", "p95", "claude-3.5-sonnet"]
        );
        assert_eq!(
            lowers("a budget at $1500/month."),
            ["a", "budget", "at", "$1500/month"]
        );
        let quoted = tokens("costs of `Doc Summarizer` please");
        assert_eq!(quoted[2].raw, "Doc Summarizer");
        assert!(quoted[2].quoted);
        assert_eq!(lowers("team=growth"), ["team=growth"]);
        assert!(tokens("   ?! ").is_empty());
    }

    #[test]
    fn distances() {
        assert_eq!(distance("claudesonnet4", "claudesonet4", 2), 1);
        assert_eq!(distance("gpt4o", "gtp4o", 2), 1);
        assert_eq!(distance("abc", "xyz", 1), 2);
        assert_eq!(distance("supportbot", "supportbot", 0), 0);
        assert_eq!(normalize("gpt-4o Mini"), "gpt4omini");
    }

    #[test]
    fn numbers() {
        assert_eq!(number("14"), Some(14));
        assert_eq!(number("three"), Some(3));
        assert_eq!(number("x"), None);
    }
}
