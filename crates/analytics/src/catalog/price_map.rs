//! LiteLLM's price map (`model_prices_and_context_window.json`, which operators of a LiteLLM
//! proxy already maintain) read as catalog entries.
//!
//! Each key whose `mode` is a token-priced one (`chat`, `completion`, `responses`,
//! `embedding`, or none) and that has an `input_cost_per_token` becomes one entry:
//!
//! | LiteLLM field (US dollars per token) | entry field (per 1M tokens) |
//! | --- | --- |
//! | `litellm_provider` | `provider` (as a [`super::provider_id`]: `gemini` → `google`, `vertex_ai-*` → `vertex_ai`, `bedrock_converse` → `bedrock`, `together_ai` → `together`) |
//! | the key, without a leading `provider/` | `model` |
//! | `input_cost_per_token`, `output_cost_per_token` | `input`, `output` |
//! | `cache_read_input_token_cost` | `cached_input` |
//! | `cache_creation_input_token_cost`, `…_above_1hr` | `cache_write`, `cache_write_1h` |
//! | `input_cost_per_token_batches` | `batch_discount` = 1 − batch / input |
//! | `*_priority`, `*_flex` | `priority`, `flex` |
//! | `*_above_{N}k_tokens` | a context tier above N × 1000 prompt tokens |
//! | `deprecation_date` | `retires_on` |
//! | `source` | `source` |
//!
//! The map has no dates: its entries price every call, whatever its date. Other modes (images,
//! audio, rerank) and per-character, per-second or `tiered_pricing` prices are left out and
//! counted in [`PriceMap::skipped`].

use std::collections::HashSet;

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::{CatalogError, Origin, PriceEntry, PriceTier, TierPrices, provider_id};

/// Modes priced per token.
const TOKEN_MODES: &[&str] = &["chat", "completion", "responses", "embedding"];

/// The date map entries carry: before any call Apogee accepts, so they price every call.
pub fn undated() -> NaiveDate {
    NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default()
}

/// The entries of a price map, and the keys left out with why.
#[derive(Debug, Default)]
pub struct PriceMap {
    pub entries: Vec<PriceEntry>,
    pub skipped: Vec<(String, String)>,
}

/// Reads a LiteLLM price map.
pub fn parse(text: &str) -> Result<PriceMap, CatalogError> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| CatalogError::PriceMap(e.to_string()))?;
    let Value::Object(models) = doc else {
        return Err(CatalogError::PriceMap(
            "expected a JSON object of model name → prices".into(),
        ));
    };
    let mut map = PriceMap::default();
    let mut seen = HashSet::new();
    for (key, value) in &models {
        if key == "sample_spec" {
            continue;
        }
        match entry(key, value) {
            Ok(Some(e)) => {
                if seen.insert((e.provider.clone(), e.model.to_ascii_lowercase())) {
                    map.entries.push(e);
                } else {
                    map.skipped
                        .push((key.clone(), "listed twice for its provider".into()));
                }
            }
            Ok(None) => {}
            Err(reason) => map.skipped.push((key.clone(), reason)),
        }
    }
    Ok(map)
}

/// US dollars per token → per 1M tokens, rounded to a millionth of a dollar per 1M (the
/// floating-point noise of `1.25e-06 × 1e6`).
fn per_million(v: &Value) -> Option<f64> {
    let per_token = v.as_f64()?;
    Some((per_token * 1e12).round() / 1e6)
}

fn price(o: &Map<String, Value>, field: &str) -> Option<f64> {
    o.get(field).and_then(per_million)
}

fn service_tier(o: &Map<String, Value>, suffix: &str) -> Option<TierPrices> {
    Some(TierPrices {
        input: price(o, &format!("input_cost_per_token_{suffix}"))?,
        output: price(o, &format!("output_cost_per_token_{suffix}"))?,
        cached_input: price(o, &format!("cache_read_input_token_cost_{suffix}")),
        cache_write: price(o, &format!("cache_creation_input_token_cost_{suffix}")),
    })
}

/// `input_cost_per_token_above_200k_tokens` and its siblings → context tiers.
fn tiers(o: &Map<String, Value>, output: f64) -> Vec<PriceTier> {
    let mut tiers: Vec<PriceTier> = o
        .keys()
        .filter_map(|k| {
            let n = k
                .strip_prefix("input_cost_per_token_above_")?
                .strip_suffix("k_tokens")?;
            let thousands: i64 = n.parse().ok()?;
            let at = |field: &str| price(o, &format!("{field}_above_{n}k_tokens"));
            Some(PriceTier {
                above_input_tokens: thousands.checked_mul(1000)?,
                input: at("input_cost_per_token")?,
                output: at("output_cost_per_token").unwrap_or(output),
                cached_input: at("cache_read_input_token_cost"),
                cache_write: at("cache_creation_input_token_cost"),
                cache_write_1h: None,
            })
        })
        .collect();
    tiers.sort_by_key(|t| t.above_input_tokens);
    tiers
}

fn entry(key: &str, value: &Value) -> Result<Option<PriceEntry>, String> {
    let Value::Object(o) = value else {
        return Err("not a JSON object".into());
    };
    let mode = o.get("mode").and_then(Value::as_str);
    if mode.is_some_and(|m| !TOKEN_MODES.contains(&m)) {
        return Ok(None);
    }
    let Some(input) = price(o, "input_cost_per_token") else {
        return Err("no input_cost_per_token".into());
    };
    let Some(litellm_provider) = o.get("litellm_provider").and_then(Value::as_str) else {
        return Err("no litellm_provider".into());
    };
    let provider = provider_id(litellm_provider);
    // `gemini/gemini-2.5-pro` → `gemini-2.5-pro`; `groq/openai/gpt-oss-120b` →
    // `openai/gpt-oss-120b` (the rest is the provider's own id).
    let model = match key.split_once('/') {
        Some((first, rest)) if !rest.is_empty() && provider_id(first) == provider => rest,
        _ => key,
    };
    let output = price(o, "output_cost_per_token").unwrap_or(0.0);
    let batch_discount = price(o, "input_cost_per_token_batches")
        .filter(|_| input > 0.0)
        .map(|b| 1.0 - b / input)
        .filter(|d| (0.0..1.0).contains(d))
        .map(|d| (d * 1e6).round() / 1e6)
        .unwrap_or(0.0);
    let e = PriceEntry {
        provider,
        model: model.to_string(),
        aliases: Vec::new(),
        also_billed_by: Vec::new(),
        input,
        output,
        cached_input: price(o, "cache_read_input_token_cost"),
        cache_write: price(o, "cache_creation_input_token_cost"),
        cache_write_1h: price(o, "cache_creation_input_token_cost_above_1hr"),
        batch_discount,
        priority: service_tier(o, "priority"),
        flex: service_tier(o, "flex"),
        regional_premium: 0.0,
        effective_from: undated(),
        retires_on: o
            .get("deprecation_date")
            .and_then(Value::as_str)
            .and_then(|d| d.parse().ok()),
        source: o
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or("LiteLLM model_prices_and_context_window.json")
            .to_string(),
        cheaper_alternative: None,
        tiers: tiers(o, output),
        origin: Origin::PriceMap,
    };
    e.check().map_err(|e| e.to_string())?;
    Ok(Some(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = r#"{
      "sample_spec": {"input_cost_per_token": 0.0, "litellm_provider": "one of …"},
      "gpt-5": {"litellm_provider": "openai", "mode": "chat",
        "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
        "cache_read_input_token_cost": 1.25e-07,
        "input_cost_per_token_batches": 6.25e-07, "output_cost_per_token_batches": 5e-06,
        "input_cost_per_token_priority": 2.5e-06, "output_cost_per_token_priority": 2e-05,
        "cache_read_input_token_cost_priority": 2.5e-07,
        "input_cost_per_token_flex": 6.25e-07, "output_cost_per_token_flex": 5e-06,
        "deprecation_date": "2026-12-11"},
      "claude-sonnet-4-6": {"litellm_provider": "anthropic", "mode": "chat",
        "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
        "cache_read_input_token_cost": 3e-07, "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06},
      "gemini/gemini-2.5-pro": {"litellm_provider": "gemini", "mode": "chat",
        "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
        "input_cost_per_token_above_200k_tokens": 2.5e-06,
        "output_cost_per_token_above_200k_tokens": 1.5e-05,
        "cache_read_input_token_cost_above_200k_tokens": 2.5e-07},
      "groq/openai/gpt-oss-120b": {"litellm_provider": "groq", "mode": "chat",
        "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07},
      "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation",
        "output_cost_per_image": 0.04},
      "broken": {"litellm_provider": "openai", "mode": "chat"},
      "negative": {"litellm_provider": "openai", "input_cost_per_token": -1e-06}
    }"#;

    #[test]
    fn maps_litellm_fields_onto_entries() {
        let map = parse(MAP).unwrap();
        let by = |m: &str| map.entries.iter().find(|e| e.model == m).unwrap();
        let gpt5 = by("gpt-5");
        assert_eq!(
            (gpt5.provider.as_str(), gpt5.input, gpt5.output),
            ("openai", 1.25, 10.0)
        );
        assert_eq!(gpt5.cached_input, Some(0.125));
        assert_eq!(gpt5.batch_discount, 0.5);
        assert_eq!(
            gpt5.priority,
            Some(TierPrices {
                input: 2.5,
                output: 20.0,
                cached_input: Some(0.25),
                cache_write: None
            })
        );
        assert_eq!(gpt5.flex.as_ref().map(|f| f.input), Some(0.625));
        assert_eq!(gpt5.retires_on, "2026-12-11".parse().ok());
        let sonnet = by("claude-sonnet-4-6");
        assert_eq!(
            (sonnet.cache_write, sonnet.cache_write_1h),
            (Some(3.75), Some(6.0))
        );
        let pro = by("gemini-2.5-pro");
        assert_eq!(pro.provider, "google");
        assert_eq!(pro.tiers.len(), 1);
        assert_eq!(
            (
                pro.tiers[0].above_input_tokens,
                pro.tiers[0].input,
                pro.tiers[0].cached_input
            ),
            (200_000, 2.5, Some(0.25))
        );
        assert_eq!(by("openai/gpt-oss-120b").provider, "groq");
        assert_eq!(map.entries.len(), 4, "the image model is not token-priced");
        let skipped: Vec<&str> = map.skipped.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(skipped, ["broken", "negative"]);
    }

    #[test]
    fn a_map_that_is_not_an_object_is_refused() {
        assert!(parse("[1, 2]").is_err());
        assert!(parse("{").is_err());
    }
}
