//! The built-in catalog against LiteLLM's price map (vendored in `testdata/litellm/`): every
//! LiteLLM entry of a covered provider whose name the catalog resolves — the way ingest
//! resolves it, with LiteLLM's provider — must have the catalog's price within 1% for every
//! price both list (input, output, cache read and write, 1-hour cache write, batch discount,
//! priority and flex prices, context tiers), regional premiums included. Differences Apogee
//! keeps on purpose are listed with their reason in `data/litellm_differences.toml`; a listed
//! difference that no longer occurs fails too, so the list stays true.

use std::collections::BTreeSet;

use apogee_analytics::PriceCatalog;
use apogee_analytics::catalog::price_map;
use chrono::{DateTime, Utc};
use serde::Deserialize;

const MAP: &str = include_str!("../testdata/litellm/model_prices_and_context_window.json");
const DIFFERENCES: &str = include_str!("../data/litellm_differences.toml");
/// Prices compared are those in force on the catalog's version date.
const AT: &str = "2026-11-29T12:00:00Z";
const TOLERANCE: f64 = 0.01;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Differences {
    difference: Vec<Difference>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Difference {
    provider: String,
    name: String,
    field: String,
    reason: String,
}

/// LiteLLM keys that are not a name any API reports and so are not compared: AWS-region
/// paths and commitment plans (`bedrock/us-east-1/…`, `bedrock/*/1-month-commitment/…`), and
/// Azure deployment types (`azure/eu/…`, `azure/us/…`, `azure/global/…`, `azure/us-gov/…`:
/// Apogee prices Azure OpenAI at its global deployments' list prices, see
/// docs/protocol-notes.md).
fn compared(provider: &str, name: &str) -> bool {
    let Some((first, _)) = name.split_once('/') else {
        return true;
    };
    let aws_region =
        first.matches('-').count() >= 2 && first.ends_with(|c: char| c.is_ascii_digit());
    let azure_zone = provider == "azure" && ["eu", "us", "global", "us-gov"].contains(&first);
    !(aws_region || azure_zone || first == "*" || name.contains("commitment"))
}

fn differs(ours: f64, theirs: f64) -> bool {
    let scale = ours.abs().max(theirs.abs());
    scale > 0.0 && (ours - theirs).abs() / scale > TOLERANCE
}

#[test]
fn builtin_prices_match_litellm_or_the_difference_is_explained() {
    let catalog = PriceCatalog::builtin().unwrap();
    let map = price_map::parse(MAP).unwrap();
    let at: DateTime<Utc> = AT.parse().unwrap();
    let mut diffs: Vec<((String, String, String), String)> = Vec::new();
    let mut compared_names = 0;
    for theirs in &map.entries {
        if !compared(&theirs.provider, &theirs.model) {
            continue;
        }
        let Some(p) = catalog.lookup_for(Some(&theirs.provider), &theirs.model, at) else {
            continue;
        };
        compared_names += 1;
        let ours = p.entry;
        let k = if p.regional {
            1.0 + ours.regional_premium
        } else {
            1.0
        };
        let write = ours.cache_write.unwrap_or(ours.input);
        let mut fields: Vec<(String, f64, Option<f64>)> = vec![
            ("input".into(), k * ours.input, Some(theirs.input)),
            ("output".into(), k * ours.output, Some(theirs.output)),
            (
                "cached_input".into(),
                k * ours.cached_input.unwrap_or(ours.input),
                theirs.cached_input,
            ),
            ("cache_write".into(), k * write, theirs.cache_write),
            (
                "cache_write_1h".into(),
                k * ours.cache_write_1h.unwrap_or(write),
                theirs.cache_write_1h,
            ),
        ];
        if ours.batch_discount > 0.0 && theirs.batch_discount > 0.0 {
            fields.push((
                "batch_discount".into(),
                ours.batch_discount,
                Some(theirs.batch_discount),
            ));
        }
        for (tier, a, b) in [
            ("priority", &ours.priority, &theirs.priority),
            ("flex", &ours.flex, &theirs.flex),
        ] {
            if let (Some(a), Some(b)) = (a, b) {
                fields.push(((format!("{tier}.input")), k * a.input, Some(b.input)));
                fields.push(((format!("{tier}.output")), k * a.output, Some(b.output)));
                if let (Some(x), Some(y)) = (a.cached_input, b.cached_input) {
                    fields.push(((format!("{tier}.cached_input")), k * x, Some(y)));
                }
            }
        }
        for t in &theirs.tiers {
            if let Some(o) = ours
                .tiers
                .iter()
                .find(|o| o.above_input_tokens == t.above_input_tokens)
            {
                let n = t.above_input_tokens;
                fields.push(((format!("tier>{n}.input")), k * o.input, Some(t.input)));
                fields.push(((format!("tier>{n}.output")), k * o.output, Some(t.output)));
            }
        }
        for (field, ours_price, theirs_price) in fields {
            let Some(theirs_price) = theirs_price else {
                continue;
            };
            if differs(ours_price, theirs_price) {
                let text = format!(
                    "{}/{} {field}: catalog {ours_price} ({}), LiteLLM {theirs_price}",
                    theirs.provider,
                    theirs.model,
                    ours.id()
                );
                diffs.push(((theirs.provider.clone(), theirs.model.clone(), field), text));
            }
        }
    }
    assert!(
        compared_names > 300,
        "only {compared_names} LiteLLM names resolve in the catalog"
    );

    let listed: Differences = toml::from_str(DIFFERENCES).unwrap();
    let mut explained = BTreeSet::new();
    for d in &listed.difference {
        assert!(
            d.reason.trim().len() > 20,
            "{}/{} {}: say why",
            d.provider,
            d.name,
            d.field
        );
        explained.insert((d.provider.clone(), d.name.clone(), d.field.clone()));
    }
    let found: BTreeSet<_> = diffs.iter().map(|(key, _)| key.clone()).collect();
    let unexplained: Vec<&String> = diffs
        .iter()
        .filter(|(key, _)| !explained.contains(key))
        .map(|(_, text)| text)
        .collect();
    let stale: Vec<_> = explained.difference(&found).collect();
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "differences over 1% not in litellm_differences.toml:\n{}\n\nlisted but no longer different: {stale:?}",
        unexplained
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
