//! Names in a question, resolved against the org's own names (the features, users, models,
//! providers and tag values its usage has in the period) and the price catalog's models:
//! case-insensitively, ignoring punctuation and spaces ("gpt4o", "support bot"), and with a
//! few typing slips allowed by length ("claude sonet 4"). A word the question marks as a name
//! ("feature blorp", a backticked or identifier-like word) that matches nothing is reported as
//! unknown rather than guessed.

use std::collections::HashMap;

use apogee_analytics::Dimension;
use serde::{Deserialize, Serialize};

use super::words::{Token, allowed_edits, distance, is_stop, normalize};
use crate::plan::UnknownName;

/// The names an org's usage has within a period: what a question's names resolve against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgNames {
    pub models: Vec<String>,
    pub providers: Vec<String>,
    pub features: Vec<String>,
    pub users: Vec<String>,
    /// `(key, value)` pairs of tags.
    pub tags: Vec<(String, String)>,
}

impl OrgNames {
    /// The names of `dimension`.
    pub fn of(&self, dimension: &Dimension) -> Vec<&str> {
        match dimension {
            Dimension::Model => self.models.iter().map(String::as_str).collect(),
            Dimension::Provider => self.providers.iter().map(String::as_str).collect(),
            Dimension::Feature => self.features.iter().map(String::as_str).collect(),
            Dimension::User => self.users.iter().map(String::as_str).collect(),
            Dimension::Tag(key) => self
                .tags
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect(),
        }
    }

    /// Distinct tag keys, in order of first appearance.
    pub fn tag_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = Vec::new();
        for (k, _) in &self.tags {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
        keys
    }
}

/// One name found in the question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub dimension: Dimension,
    /// As the org (or the catalog) spells it.
    pub value: String,
    /// Token span `[start, end)`.
    pub start: usize,
    pub end: usize,
    /// A catalog model without usage in the period.
    pub catalog_only: bool,
}

/// What the names reading found.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NameReading {
    pub found: Vec<Found>,
    pub unknown: Vec<UnknownName>,
    /// Token indexes read as names or as the word naming their dimension.
    pub used: Vec<usize>,
    /// Name comparisons made looking for typing slips (at most [`MAX_FUZZY_COMPARISONS`]).
    pub comparisons: usize,
}

/// The word naming a dimension ("feature", "users", "team"), if `word` is one. Tag keys are
/// the org's own (`team`, `project`), singular or plural.
pub(crate) fn dimension_word(word: &str, names: &OrgNames) -> Option<Dimension> {
    let d = match word {
        "model" | "models" | "llm" | "llms" => Dimension::Model,
        "provider" | "providers" | "vendor" | "vendors" => Dimension::Provider,
        "feature" | "features" | "product" | "products" => Dimension::Feature,
        "user" | "users" | "person" | "people" | "member" | "members" | "employee"
        | "employees" | "developer" | "developers" => Dimension::User,
        _ => {
            let singular = word.strip_suffix('s').unwrap_or(word);
            match names
                .tag_keys()
                .into_iter()
                .find(|k| k.eq_ignore_ascii_case(word) || k.eq_ignore_ascii_case(singular))
            {
                Some(key) => Dimension::Tag(key.to_string()),
                // Words that name a tag in most orgs, known even where no usage has it yet, so
                // "the growth team" is a team nobody has rather than two unknown words.
                None if COMMON_TAG_KEYS.contains(&singular) => Dimension::Tag(singular.to_string()),
                None => return None,
            }
        }
    };
    Some(d)
}

/// Most name comparisons for typing slips in one question (spans × names).
const MAX_FUZZY_COMPARISONS: usize = 200_000;

/// Tag keys common enough to read as a dimension before any usage carries them.
const COMMON_TAG_KEYS: &[&str] = &[
    "team",
    "project",
    "env",
    "environment",
    "department",
    "customer",
    "tenant",
    "squad",
];

/// Looks like a name rather than a word: letters with digits, or joined by `-`, `_`, `.`.
fn identifier_like(raw: &str) -> bool {
    let has_alpha = raw.chars().any(char::is_alphabetic);
    let has_digit = raw.chars().any(|c| c.is_ascii_digit());
    let joined = raw.chars().any(|c| matches!(c, '-' | '_' | '.' | '@'));
    has_alpha && (has_digit || joined) && !raw.starts_with('$')
}

/// Model families: an unknown identifier starting like these is an unknown model.
const MODEL_PREFIXES: &[&str] = &[
    "gpt",
    "o1",
    "o3",
    "o4",
    "claude",
    "gemini",
    "llama",
    "mistral",
    "mixtral",
    "deepseek",
    "command",
    "grok",
    "qwen",
    "phi",
    "text-embedding",
];

/// The dimensions a name may be, in the order ties are broken (a name that is both a
/// feature and a tag value is more often meant as the feature).
fn candidates<'a>(names: &'a OrgNames, catalog: &'a [String]) -> Vec<(Dimension, &'a str, bool)> {
    let mut out: Vec<(Dimension, &str, bool)> = Vec::new();
    out.extend(
        names
            .features
            .iter()
            .map(|v| (Dimension::Feature, v.as_str(), false)),
    );
    out.extend(
        names
            .models
            .iter()
            .map(|v| (Dimension::Model, v.as_str(), false)),
    );
    out.extend(
        names
            .users
            .iter()
            .map(|v| (Dimension::User, v.as_str(), false)),
    );
    out.extend(
        names
            .tags
            .iter()
            .map(|(k, v)| (Dimension::Tag(k.clone()), v.as_str(), false)),
    );
    out.extend(
        names
            .providers
            .iter()
            .map(|v| (Dimension::Provider, v.as_str(), false)),
    );
    out.extend(
        catalog
            .iter()
            .filter(|m| !names.models.iter().any(|n| n.eq_ignore_ascii_case(m)))
            .map(|m| (Dimension::Model, m.as_str(), true)),
    );
    out
}

/// Finds the names in `tokens`, skipping those in `skip` (read as time) and single words
/// `is_vocabulary` knows (measure and intent words never name a feature on their own).
pub(crate) fn read(
    tokens: &[Token],
    skip: &[usize],
    names: &OrgNames,
    catalog: &[String],
    is_vocabulary: &dyn Fn(&str) -> bool,
) -> NameReading {
    let all = candidates(names, catalog);
    let normalized: Vec<String> = all.iter().map(|(_, v, _)| normalize(v)).collect();
    let mut by_normal: HashMap<&str, Vec<usize>> = HashMap::new();
    for (c, n) in normalized.iter().enumerate() {
        by_normal.entry(n.as_str()).or_default().push(c);
    }
    // Typing slips are looked for within a budget: a long question against an org with tens
    // of thousands of names must not cost seconds.
    let mut comparisons_left = MAX_FUZZY_COMPARISONS;
    let mut out = NameReading::default();
    let free = |i: usize| i < tokens.len() && !skip.contains(&i);
    let word_only = |t: &Token| {
        !t.quoted && (is_stop(&t.lower) || (is_vocabulary(&t.lower) && !identifier_like(&t.raw)))
    };
    let hint_at = |i: Option<usize>| -> Option<Dimension> {
        let t = tokens.get(i?)?;
        if t.quoted {
            return None;
        }
        dimension_word(&t.lower, names)
    };

    let mut i = 0;
    while i < tokens.len() {
        // A word the rules know is still a name right next to its dimension ("the growth
        // team", "the report feature").
        let hinted = hint_at(i.checked_sub(1)).is_some() || hint_at(Some(i + 1)).is_some();
        if !free(i) || ((is_stop(&tokens[i].lower) || !hinted) && word_only(&tokens[i])) {
            i += 1;
            continue;
        }
        // `team=growth`, `team:growth`.
        if let Some((k, v)) = tokens[i].raw.split_once(['=', ':'])
            && let Some(Dimension::Tag(key)) = dimension_word(&k.to_lowercase(), names)
        {
            let value = names
                .of(&Dimension::Tag(key.clone()))
                .into_iter()
                .find(|x| normalize(x) == normalize(v));
            match value {
                Some(value) => out.found.push(Found {
                    dimension: Dimension::Tag(key),
                    value: value.to_string(),
                    start: i,
                    end: i + 1,
                    catalog_only: false,
                }),
                None => out.unknown.push(UnknownName {
                    dimension: Some(Dimension::Tag(key)),
                    typed: v.to_string(),
                }),
            }
            out.used.push(i);
            i += 1;
            continue;
        }
        let before = i.checked_sub(1).filter(|&b| free(b));
        let mut best: Option<(usize, usize, usize)> = None; // (end, candidate, edits)
        for n in (1..=4).rev() {
            let end = i + n;
            if end > tokens.len() || !(i..end).all(free) {
                continue;
            }
            // A quoted name is read alone; a span starts and ends on a content word.
            if n > 1 && (tokens[i..end].iter().any(|t| t.quoted) || word_only(&tokens[end - 1])) {
                continue;
            }
            let typed: String = tokens[i..end].iter().map(|t| normalize(&t.raw)).collect();
            if typed.chars().count() < 2 {
                continue;
            }
            let hint = hint_at(before).or_else(|| hint_at(Some(end)));
            let prefer = |c: usize| hint.as_ref().is_some_and(|h| *h == all[c].0);
            // Exact first; then the fewest edits; then the hinted dimension; then the order.
            let exact: &[usize] = by_normal.get(typed.as_str()).map_or(&[], Vec::as_slice);
            let pick = if !exact.is_empty() {
                let c = exact
                    .iter()
                    .copied()
                    .find(|&c| prefer(c))
                    .unwrap_or(exact[0]);
                Some((c, 0))
            } else if comparisons_left >= all.len()
                && !tokens[i..end]
                    .iter()
                    .all(|t| is_vocabulary(&t.lower) || is_stop(&t.lower))
            {
                comparisons_left -= all.len();
                out.comparisons += all.len();
                let allowed = allowed_edits(typed.chars().count());
                (0..all.len())
                    .filter(|&c| normalized[c].chars().count() >= 4)
                    .map(|c| (c, distance(&typed, &normalized[c], allowed)))
                    .filter(|&(_, d)| d <= allowed && d > 0)
                    .min_by_key(|&(c, d)| (d, !prefer(c), c))
            } else {
                None
            };
            if let Some((c, edits)) = pick {
                let better = match best {
                    None => true,
                    // A longer exact match wins; a fuzzy one only over a worse fuzzy one.
                    Some((_, _, e)) => edits < e,
                };
                if better {
                    best = Some((end, c, edits));
                }
                if edits == 0 {
                    break;
                }
            }
        }
        if let Some((end, c, _)) = best {
            let (dimension, value, catalog_only) = &all[c];
            out.found.push(Found {
                dimension: dimension.clone(),
                value: value.to_string(),
                start: i,
                end,
                catalog_only: *catalog_only,
            });
            out.used.extend(i..end);
            for h in [before, Some(end)].into_iter().flatten() {
                if hint_at(Some(h)).is_some_and(|d| d == *dimension) {
                    out.used.push(h);
                }
            }
            i = end;
            continue;
        }
        // A model family ("claude", "gpt", "gemini"): every model of the org named like it,
        // one or several.
        let t = &tokens[i];
        let family = family_of(&t.lower, &names.models);
        if !t.quoted && !is_vocabulary(&t.lower) && !family.is_empty() {
            for model in family {
                out.found.push(Found {
                    dimension: Dimension::Model,
                    value: model.to_string(),
                    start: i,
                    end: i + 1,
                    catalog_only: false,
                });
            }
            out.used.push(i);
            i += 1;
            continue;
        }
        // Nothing matched: is it meant as a name?
        let hint = hint_at(before).or_else(|| {
            // "the blorp feature", "the apollo team": a hint after the word.
            hint_at(Some(i + 1)).filter(|_| !is_vocabulary(&t.lower))
        });
        let model_like = MODEL_PREFIXES.iter().any(|p| t.lower.starts_with(p));
        let plain_word = is_vocabulary(&t.lower) || t.lower.chars().all(|c| c.is_ascii_digit());
        if t.quoted || (!plain_word && (identifier_like(&t.raw) || hint.is_some())) {
            let dimension = hint.or_else(|| model_like.then_some(Dimension::Model));
            out.unknown.push(UnknownName {
                dimension,
                typed: t.raw.clone(),
            });
            out.used.push(i);
        }
        i += 1;
    }
    out
}

/// The models whose name starts with `word` and then a `-` ("claude" → `claude-sonnet-4`,
/// `claude-3-5-haiku`).
fn family_of<'a>(word: &str, models: &'a [String]) -> Vec<&'a str> {
    if word.chars().count() < 3 || word.contains(['-', '.']) {
        return Vec::new();
    }
    models
        .iter()
        .filter(|m| {
            m.to_lowercase()
                .strip_prefix(word)
                .is_some_and(|rest| rest.starts_with('-'))
        })
        .map(String::as_str)
        .collect()
}

/// The names of `dimension` closest to `typed`, for "did you mean" lists.
pub(crate) fn closest<'a>(typed: &str, options: &[&'a str], n: usize) -> Vec<&'a str> {
    let typed = normalize(typed);
    let mut scored: Vec<(usize, &str)> = options
        .iter()
        .map(|o| (distance(&typed, &normalize(o), 64), *o))
        .collect();
    scored.sort();
    scored.into_iter().take(n).map(|(_, o)| o).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::question::words::tokens;

    fn names() -> OrgNames {
        OrgNames {
            models: vec![
                "gpt-4o".into(),
                "gpt-4o-mini".into(),
                "claude-sonnet-4".into(),
                "claude-3-5-haiku".into(),
            ],
            providers: vec!["openai".into(), "anthropic".into()],
            features: vec![
                "support-bot".into(),
                "doc-summarizer".into(),
                "search-rerank".into(),
            ],
            users: vec!["demo-user-01".into(), "alice".into()],
            tags: vec![
                ("team".into(), "growth".into()),
                ("team".into(), "support".into()),
            ],
        }
    }

    fn read_q(q: &str) -> NameReading {
        let catalog = vec!["gpt-4.1".to_string(), "gpt-4o".to_string()];
        let vocab = |w: &str| matches!(w, "cost" | "spend" | "much" | "calls" | "most");
        read(&tokens(q), &[], &names(), &catalog, &vocab)
    }

    fn found(q: &str) -> Vec<(String, String)> {
        read_q(q)
            .found
            .into_iter()
            .map(|f| (f.dimension.to_string(), f.value))
            .collect()
    }

    fn pair(d: &str, v: &str) -> (String, String) {
        (d.to_string(), v.to_string())
    }

    #[test]
    fn names_match_loosely() {
        assert_eq!(found("how much on gpt4o"), [pair("model", "gpt-4o")]);
        assert_eq!(found("GPT-4o mini calls"), [pair("model", "gpt-4o-mini")]);
        assert_eq!(found("claude sonet 4"), [pair("model", "claude-sonnet-4")]);
        assert_eq!(found("support bot cost"), [pair("feature", "support-bot")]);
        assert_eq!(found("the growth team"), [pair("tag:team", "growth")]);
        assert_eq!(found("team=support"), [pair("tag:team", "support")]);
        assert_eq!(found("user Alice"), [pair("user", "alice")]);
        assert_eq!(found("demo user 1"), [pair("user", "demo-user-01")]);
        assert_eq!(found("gpt-4.1"), [pair("model", "gpt-4.1")]);
        assert!(read_q("gpt-4.1").found[0].catalog_only);
        assert_eq!(found("Anthropic spend"), [pair("provider", "anthropic")]);
        assert_eq!(
            found("how much did claude cost"),
            [
                pair("model", "claude-sonnet-4"),
                pair("model", "claude-3-5-haiku")
            ]
        );
        assert_eq!(
            found("compare gpt-4o and claude-sonnet-4"),
            [pair("model", "gpt-4o"), pair("model", "claude-sonnet-4")]
        );
    }

    #[test]
    fn a_family_of_one_model_is_that_model() {
        let mut names = names();
        names.models.retain(|m| m != "claude-sonnet-4");
        let vocab = |w: &str| matches!(w, "spend" | "on" | "models");
        let reading = read(
            &tokens("support-bot spend on claude models"),
            &[],
            &names,
            &[],
            &vocab,
        );
        let found: Vec<(String, String)> = reading
            .found
            .iter()
            .map(|f| (f.dimension.to_string(), f.value.clone()))
            .collect();
        assert!(
            found.contains(&pair("model", "claude-3-5-haiku")),
            "{found:?}"
        );
        assert!(reading.unknown.is_empty(), "{:?}", reading.unknown);
    }

    #[test]
    fn a_long_question_against_many_names_stays_cheap() {
        let many = OrgNames {
            users: (0..20_000).map(|i| format!("user-{i:05}")).collect(),
            ..names()
        };
        let q = "support bot ".repeat(100) + "how much did usre-00042 spend";
        let r = read(&tokens(&q), &[], &many, &[], &|_| false);
        // Exact names are still found; slips are looked for only within the budget.
        assert!(r.found.iter().any(|f| f.value == "support-bot"));
        assert!(r.comparisons <= MAX_FUZZY_COMPARISONS, "{}", r.comparisons);
        assert!(r.comparisons > 0);
    }

    #[test]
    fn unknown_names_are_reported_not_guessed() {
        let r = read_q("how much did feature blorp cost");
        assert!(r.found.is_empty());
        assert_eq!(
            r.unknown,
            [UnknownName {
                dimension: Some(Dimension::Feature),
                typed: "blorp".into()
            }]
        );
        let r = read_q("spend on gpt-9-ultra");
        assert_eq!(r.unknown[0].dimension, Some(Dimension::Model));
        let r = read_q("what did `fancy thing` cost");
        assert_eq!(r.unknown[0].typed, "fancy thing");
        assert!(read_q("how much did we spend").unknown.is_empty());
    }
}
