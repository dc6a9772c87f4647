//! Markdown for answers: [`escape`], the one function every writer passes data-derived text
//! through (feature, user, model, provider and tag names, and titles built from them), and
//! [`Doc`], the line builder the writers share.
//!
//! Why escape: usage strings come from anyone allowed to send usage, and answers are read by
//! everyone in the org. A feature named `x |\n## Action required\n[verify](https://…)` must not
//! become a heading and a link in a colleague's report. Newlines and other control characters
//! cannot be escaped in markdown, so they become spaces; every character that means something
//! inline (emphasis, code, links, raw HTML, table cells) gets a CommonMark backslash escape; a
//! character that would start a block (heading, quote, list) at the start of a line is
//! escaped too, in case a writer ever starts a line with a name.

/// `s` made safe to place anywhere in a line of markdown, shown as typed.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.chars().enumerate() {
        let c = if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            ' '
        } else {
            c
        };
        let special = matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~' | '!'
        ) || (i == 0 && matches!(c, '-' | '+' | '='));
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    // A leading "1." would start a numbered list.
    if let Some(dot) = out.find(['.', ')'])
        && dot > 0
        && out[..dot].chars().all(|c| c.is_ascii_digit())
    {
        out.insert(dot, '\\');
    }
    out
}

/// An answer being written, line by line, with the titles of its sections.
#[derive(Debug, Default)]
pub(crate) struct Doc {
    pub out: String,
    pub sections: Vec<String>,
}

impl Doc {
    pub(crate) fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    pub(crate) fn blank(&mut self) {
        self.out.push('\n');
    }

    /// A `##` section (titles are the writer's own words, never data).
    pub(crate) fn section(&mut self, title: &str) {
        self.blank();
        self.line(&format!("## {title}"));
        self.blank();
        self.sections.push(title.to_string());
    }

    /// A table: `header` cells with their alignment (`true`: right), then rows of cells
    /// already escaped or formatted by the writer.
    pub(crate) fn table(&mut self, header: &[(&str, bool)], rows: &[Vec<String>]) {
        let head: Vec<&str> = header.iter().map(|(h, _)| *h).collect();
        self.line(&format!("| {} |", head.join(" | ")));
        let align: Vec<&str> = header
            .iter()
            .map(|(_, right)| if *right { "---:" } else { "---" })
            .collect();
        self.line(&format!("| {} |", align.join(" | ")));
        for row in rows {
            self.line(&format!("| {} |", row.join(" | ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_injected_heading_and_link_stay_text() {
        let feature = "x | **pwned** |\n## Action required\nVerify at [the portal](https://evil.example/login)\r\n<img src=x>";
        let e = escape(feature);
        assert!(!e.contains('\n') && !e.contains('\r'), "{e}");
        assert!(e.contains(r"\#\# Action required"), "{e}");
        assert!(
            e.contains(r"\[the portal\](https://evil.example/login)"),
            "{e}"
        );
        assert!(e.contains(r"x \| \*\*pwned\*\* \|"), "{e}");
        assert!(e.contains(r"\<img src=x\>"), "{e}");
    }

    #[test]
    fn plain_names_are_unchanged_and_block_starts_escaped() {
        for name in [
            "gpt-4o",
            "claude-3.5-sonnet",
            "support-bot",
            "demo-user-01",
            "u@x.com",
        ] {
            assert_eq!(escape(name), name);
        }
        assert_eq!(escape("alice_b"), r"alice\_b");
        assert_eq!(escape("- item"), r"\- item");
        assert_eq!(escape("1. first"), r"1\. first");
        assert_eq!(escape("2026.11"), r"2026\.11");
        assert_eq!(escape("a\\b"), r"a\\b");
    }

    #[test]
    fn tables_are_aligned() {
        let mut d = Doc::default();
        d.table(
            &[("model", false), ("cost", true)],
            &[vec!["gpt-4o".into(), "$1.00".into()]],
        );
        assert_eq!(
            d.out,
            "| model | cost |\n| --- | ---: |\n| gpt-4o | $1.00 |\n"
        );
    }
}
