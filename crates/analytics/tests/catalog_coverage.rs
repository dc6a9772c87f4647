//! Coverage of the built-in catalog: each model name of `testdata/model_names.tsv` (the names
//! real exports and APIs report, with the provider they report) is sent as a §8 usage record
//! through the parser and priced the way ingest prices it. At least 95% must be priced, overall
//! and for every provider, and none priced at $0 that has a list price.

use std::collections::BTreeMap;
use std::sync::Arc;

use apogee_analytics::formats::{self, Format};
use apogee_analytics::{PriceCatalog, PricedRecord};
use serde_json::json;

const NAMES: &str = include_str!("../testdata/model_names.tsv");
const MIN_PRICED_SHARE: f64 = 0.95;

/// The provider a row counts for: the one named, else the `provider/` prefix of the model.
fn family(provider: &str, model: &str) -> String {
    let p = if provider.is_empty() {
        model.split('/').next().unwrap_or("")
    } else {
        provider
    };
    apogee_analytics::catalog::provider_id(p)
}

#[test]
fn at_least_95_percent_of_real_model_names_are_priced() {
    let catalog = Arc::new(PriceCatalog::builtin().unwrap());
    let rows: Vec<(&str, &str)> = NAMES
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            (cols.next().unwrap_or(""), cols.next().unwrap_or(""))
        })
        .collect();
    assert!(rows.len() > 200, "{} names", rows.len());

    let body: String = rows
        .iter()
        .enumerate()
        .map(|(i, (provider, model))| {
            let mut r = json!({
                "request_id": format!("n-{i}"),
                "ts": "2026-11-20T08:15:02Z",
                "model": model,
                "input_tokens": 1000,
                "output_tokens": 100,
            });
            if !provider.is_empty() {
                r["provider"] = json!(provider);
            }
            format!("{r}\n")
        })
        .collect();
    let parsed = formats::parse(Format::Usage, body.as_bytes()).unwrap();
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);

    let mut by_provider: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut unpriced = Vec::new();
    for (record, (provider, model)) in parsed.records.into_iter().zip(&rows) {
        let priced = PricedRecord::price(record, &catalog);
        let counts = by_provider.entry(family(provider, model)).or_default();
        counts.0 += 1;
        match priced.cost {
            Some(cost) => {
                counts.1 += 1;
                let source = priced.price_source.unwrap_or_default();
                let free = source.contains("text-embedding-004");
                assert!(free || cost.0 > 0, "{model} priced at $0 by {source}");
            }
            None => unpriced.push(format!("{provider}\t{model}")),
        }
    }
    let total = rows.len();
    let priced = total - unpriced.len();
    let share = priced as f64 / total as f64;
    eprintln!(
        "{priced} of {total} names priced ({:.1}%); unpriced:\n{}",
        share * 100.0,
        unpriced.join("\n")
    );
    assert!(share >= MIN_PRICED_SHARE, "{:.1}% priced", share * 100.0);
    for (provider, (n, p)) in &by_provider {
        assert!(
            *p as f64 / *n as f64 >= MIN_PRICED_SHARE,
            "{provider}: {p} of {n} names priced"
        );
    }
    for provider in [
        "openai",
        "azure",
        "anthropic",
        "google",
        "vertex_ai",
        "mistral",
        "deepseek",
        "xai",
        "cohere",
        "bedrock",
        "groq",
        "together",
    ] {
        assert!(by_provider.contains_key(provider), "no {provider} names");
    }
}
