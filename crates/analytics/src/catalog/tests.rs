//! The catalog's pricing and name resolution, by hand.

use super::*;

fn calls(tokens: TokenCounts, batch: bool, n: i64) -> BilledCalls {
    BilledCalls {
        tokens,
        batch,
        calls: n,
        service_tier: ServiceTier::Standard,
    }
}

fn quote(p: &Pricing<'_>, tokens: &TokenCounts, batch: bool, n: i64) -> Quote {
    p.quote(&calls(*tokens, batch, n)).unwrap()
}

fn at(day: &str) -> DateTime<Utc> {
    format!("{day}T12:00:00Z").parse().unwrap()
}

#[test]
fn builtin_catalog_loads_and_prices_by_hand() {
    let c = PriceCatalog::builtin().unwrap();
    let p = c.lookup("GPT-4o").unwrap();
    // 1000 fresh × $2.50 + 200 cached × $1.25 + 300 out × $10 per 1M
    // = 0.0025 + 0.00025 + 0.003 = $0.00575
    assert_eq!(p.cost(1000, 200, 300, false), Nanos(5_750_000));
    assert_eq!(p.cost(1000, 200, 300, true), Nanos(2_875_000));
    assert_eq!(p.source_id(), "openai/gpt-4o@2024-10-02");
    assert!(c.lookup("acme-llama-70b").is_none());
}

#[test]
fn prices_by_the_calls_date() {
    let c = PriceCatalog::builtin().unwrap();
    let t = TokenCounts {
        input: 1000,
        cache_read: 0,
        cache_write: 0,
        output: 1000,
        ..TokenCounts::default()
    };
    // Before 2024-10-02: $5 + $15 per 1M → 1000 × 5 × 1000 + 1000 × 15 × 1000 nanos.
    let old = c.lookup_at("gpt-4o", at("2024-06-01")).unwrap();
    assert_eq!(quote(&old, &t, false, 1).cost, Nanos(20_000_000));
    assert_eq!(old.source_id(), "openai/gpt-4o@2024-05-13");
    // From 2024-10-02: $2.50 + $10 → $0.0125.
    let new = c.lookup_at("gpt-4o", at("2024-10-02")).unwrap();
    assert_eq!(quote(&new, &t, false, 1).cost, Nanos(12_500_000));
    // Older than the first entry: the first entry.
    let first = c.lookup_at("gpt-4o", at("2023-01-01")).unwrap();
    assert_eq!(first.source_id(), "openai/gpt-4o@2024-05-13");
}

#[test]
fn long_prompts_take_the_tier_price_with_cache_reads_and_writes() {
    let c = PriceCatalog::builtin().unwrap();
    let p = c.lookup_at("claude-sonnet-4", at("2025-09-01")).unwrap();
    // 200,000 prompt tokens is not above the threshold: base prices.
    // 100,000 fresh × $3 + 60,000 read × $0.30 + 40,000 write × $3.75 + 1,000 out × $15
    // = 0.3 + 0.018 + 0.15 + 0.015 = $0.483
    let at_limit = TokenCounts {
        input: 200_000,
        cache_read: 60_000,
        cache_write: 40_000,
        output: 1_000,
        ..TokenCounts::default()
    };
    let q = quote(&p, &at_limit, false, 1);
    assert_eq!(q.cost, Nanos(483_000_000));
    assert_eq!(q.source_id, "anthropic/claude-sonnet-4@2025-08-12");
    // One token more: the whole call at long-context prices.
    // 100,001 × $6 + 60,000 × $0.60 + 40,000 × $7.50 + 1,000 × $22.50
    // = 0.600006 + 0.036 + 0.3 + 0.0225 = $0.958506; batch halves it.
    let above = TokenCounts {
        input: 200_001,
        ..at_limit
    };
    let q = quote(&p, &above, false, 1);
    assert_eq!(q.cost, Nanos(958_506_000));
    assert_eq!(q.source_id, "anthropic/claude-sonnet-4@2025-08-12>200000");
    assert_eq!(quote(&p, &above, true, 1).cost, Nanos(479_253_000));
    // Before the long-context window existed there was no tier.
    // An aggregate of two such calls averages 100,000 prompt tokens: no tier.
    let two = TokenCounts {
        input: 200_001,
        cache_read: 0,
        cache_write: 0,
        output: 0,
        ..TokenCounts::default()
    };
    assert!(!quote(&p, &two, false, 2).source_id.contains('>'));
    let early = c.lookup_at("claude-sonnet-4", at("2025-06-01")).unwrap();
    assert!(
        quote(&early, &above, false, 1)
            .source_id
            .ends_with("@2025-05-22")
    );
}

#[test]
fn resolves_snapshot_names_prefixes_and_aliases() {
    let c = PriceCatalog::builtin().unwrap();
    for name in [
        "gpt-4o-2024-08-06",
        "openai/gpt-4o",
        "azure/gpt-4o-2024-08-06",
    ] {
        assert_eq!(c.lookup(name).unwrap().entry.model, "gpt-4o", "{name}");
    }
    for name in [
        "claude-3-5-haiku-20241022",
        "claude-3-5-haiku@20241022",
        "claude-3-5-haiku-latest",
    ] {
        assert_eq!(
            c.lookup(name).unwrap().entry.model,
            "claude-3-5-haiku",
            "{name}"
        );
    }
    assert!(c.lookup("gpt-4o-2024").is_none());
}

#[test]
fn every_alternative_is_priced_and_cheaper() {
    let c = PriceCatalog::builtin().unwrap();
    for e in c.entries() {
        if let Some(alt) = &e.cheaper_alternative {
            let a = c.lookup(alt).expect("alternative is in the catalog").entry;
            assert!(
                a.input < e.input && a.output < e.output,
                "{alt} vs {}",
                e.model
            );
            assert!(a.retires_on.is_none(), "{alt} is being retired");
        }
    }
}

#[test]
fn operator_file_overrides_and_adds() {
    let c = PriceCatalog::builtin().unwrap();
    let file = r#"version = "acme-2026-11"
[[model]]
provider = "openai"
model = "gpt-4o"
input = 2.00
output = 8.00
effective_from = "2024-10-02"
source = "contract ACME-42"

[[model]]
provider = "self-hosted"
model = "llama-3.1-70b-internal"
input = 0.20
output = 0.20
effective_from = "2024-01-01"
source = "internal GPU cost model"
"#;
    let o = c.with_overrides(file).unwrap();
    assert_eq!(o.version(), "2026-11-29+acme-2026-11");
    let p = o.lookup("gpt-4o").unwrap();
    assert_eq!(p.source_id(), "override:openai/gpt-4o@2024-10-02");
    assert_eq!(p.cost(1_000_000, 0, 0, false), Nanos(2_000_000_000));
    // The older built-in entry still prices older calls.
    let old = o.lookup_at("gpt-4o", at("2024-06-01")).unwrap();
    assert_eq!(old.source_id(), "openai/gpt-4o@2024-05-13");
    assert!(o.lookup("llama-3.1-70b-internal").is_some());
    assert!(c.lookup("llama-3.1-70b-internal").is_none());
}

#[test]
fn rejects_bad_prices_schemas_and_duplicates() {
    let entry = |input: &str, date: &str| {
        format!(
            "[[model]]\nprovider = \"p\"\nmodel = \"m\"\ninput = {input}\noutput = 1.0\neffective_from = \"{date}\"\nsource = \"s\"\n"
        )
    };
    assert!(PriceCatalog::from_toml(&entry("-1.0", "2026-01-01")).is_err());
    assert!(
        PriceCatalog::from_toml(&format!("schema = 1\n{}", entry("1.0", "2026-01-01"))).is_err()
    );
    let twice = format!(
        "{}{}",
        entry("1.0", "2026-01-01"),
        entry("2.0", "2026-01-01")
    );
    assert!(PriceCatalog::from_toml(&twice).is_err());
    let dated = format!(
        "{}{}",
        entry("1.0", "2026-01-01"),
        entry("2.0", "2026-02-01")
    );
    assert!(PriceCatalog::from_toml(&dated).is_ok());
    assert!(PriceCatalog::from_toml(&format!("{}typo = 1\n", entry("1.0", "2026-01-01"))).is_err());
}

fn tokens(input: i64, cache_read: i64, cache_write: i64, output: i64) -> TokenCounts {
    TokenCounts {
        input,
        cache_read,
        cache_write,
        output,
        ..TokenCounts::default()
    }
}

fn priced(c: &PriceCatalog, provider: Option<&str>, model: &str, day: &str) -> Option<String> {
    c.lookup_for(provider, model, at(day))
        .map(|p| p.source_id())
}

#[test]
fn a_snapshot_with_its_own_price_wins_over_its_alias() {
    let c = PriceCatalog::builtin().unwrap();
    // gpt-4o-2024-05-13 stayed at $5/$15 after `gpt-4o` moved to $2.50/$10 on 2024-10-02:
    // 1000 in + 1000 out = 5,000 + 15,000 µ$ = 20,000,000 nanos, whatever the date.
    let t = tokens(1000, 0, 0, 1000);
    for day in ["2024-06-01", "2026-03-01"] {
        let p = c.lookup_for(None, "gpt-4o-2024-05-13", at(day)).unwrap();
        assert_eq!(p.source_id(), "openai/gpt-4o-2024-05-13@2024-05-13");
        assert_eq!(quote(&p, &t, false, 1).cost, Nanos(20_000_000));
    }
    // Its later sibling takes the alias's current price: 2,500 + 10,000 µ$.
    let p = c
        .lookup_for(None, "gpt-4o-2024-08-06", at("2026-03-01"))
        .unwrap();
    assert_eq!(quote(&p, &t, false, 1).cost, Nanos(12_500_000));
    // The model name shown for both groups them only where the price is the same.
    assert_eq!(c.model_name(None, "gpt-4o-2024-08-06"), Some("gpt-4o"));
    assert_eq!(
        c.model_name(None, "gpt-4o-2024-05-13"),
        Some("gpt-4o-2024-05-13")
    );
}

#[test]
fn provider_prices_are_told_apart() {
    let c = PriceCatalog::builtin().unwrap();
    let day = "2026-03-01";
    // Gemini 2.0 Flash: $0.10/$0.40 on the Gemini API, $0.15/$0.60 on Vertex AI.
    assert_eq!(
        priced(&c, Some("gemini"), "gemini-2.0-flash-001", day).as_deref(),
        Some("google/gemini-2.0-flash@2025-02-05")
    );
    for (provider, model) in [
        (Some("gcp.vertex_ai"), "gemini-2.0-flash-001"),
        (None, "vertex_ai/gemini-2.0-flash"),
        (
            None,
            "projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001",
        ),
    ] {
        assert_eq!(
            priced(&c, provider, model, day).as_deref(),
            Some("vertex_ai/gemini-2.0-flash@2025-02-05"),
            "{model}"
        );
    }
    // Without a provider, the model's maker prices it.
    assert_eq!(
        priced(&c, None, "gemini-2.0-flash", day).as_deref(),
        Some("google/gemini-2.0-flash@2025-02-05")
    );
    // Gemini 2.5 is billed alike on both: the Gemini API entry, reached through Vertex AI.
    let p = c
        .lookup_for(Some("vertex_ai"), "gemini-2.5-pro", at(day))
        .unwrap();
    assert_eq!(
        (p.entry.provider.as_str(), p.provider),
        ("google", "vertex_ai")
    );
    // Claude through Bedrock: Anthropic's prices; a Bedrock-only model: Bedrock's.
    let p = c
        .lookup_for(
            Some("aws.bedrock"),
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            at(day),
        )
        .unwrap();
    assert_eq!(
        (p.entry.model.as_str(), p.provider),
        ("claude-3-5-sonnet", "bedrock")
    );
    assert_eq!(
        priced(&c, None, "meta.llama3-1-70b-instruct-v1:0", day).as_deref(),
        Some("bedrock/llama3-1-70b-instruct@2024-07-23")
    );
    // A provider that bills a model at its own prices never gets another's: Vertex AI does
    // not resell Claude 3.5 Haiku at Anthropic's prices, so that call is unpriced.
    assert!(priced(&c, Some("vertex_ai"), "claude-3-5-haiku@20241022", day).is_none());
    // A provider the catalog does not know is no hint.
    assert_eq!(
        priced(&c, Some("acme-gateway"), "gpt-4o", day).as_deref(),
        Some("openai/gpt-4o@2024-10-02")
    );
    // Groq's and Together's ids keep their own `org/` part.
    assert_eq!(
        priced(&c, Some("groq"), "openai/gpt-oss-120b", day).as_deref(),
        Some("groq/openai/gpt-oss-120b@2025-08-05")
    );
    assert_eq!(
        priced(
            &c,
            None,
            "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo",
            day
        )
        .as_deref(),
        Some("together/meta-llama/Llama-3.3-70B-Instruct-Turbo@2024-12-06")
    );
    // Names that are not the catalog's stay unpriced.
    for name in ["acme-llama-70b", "llama-3.1-70b-internal", "gpt-4o-2024"] {
        assert!(priced(&c, None, name, day).is_none(), "{name}");
    }
}

#[test]
fn bedrock_geographic_profiles_pay_the_regional_premium() {
    let c = PriceCatalog::builtin().unwrap();
    let t = tokens(100_000, 0, 0, 0);
    let cost = |model: &str| {
        let p = c
            .lookup_for(Some("bedrock"), model, at("2026-03-01"))
            .unwrap();
        let q = quote(&p, &t, false, 1);
        (q.cost, q.source_id)
    };
    // Claude Sonnet 4.5: 100,000 × $3 per 1M input globally, 10% more through `us.`/`eu.`.
    assert_eq!(
        cost("global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        (
            Nanos(300_000_000),
            "anthropic/claude-sonnet-4-5@2025-09-29".to_string()
        )
    );
    assert_eq!(
        cost("eu.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        (
            Nanos(330_000_000),
            "anthropic/claude-sonnet-4-5@2025-09-29+regional".to_string()
        )
    );
    // Models without a regional price cost the same through any profile.
    assert_eq!(
        cost("us.anthropic.claude-sonnet-4-20250514-v1:0").0,
        Nanos(300_000_000)
    );
}

#[test]
fn one_hour_cache_writes_cost_twice_the_input_price() {
    let c = PriceCatalog::builtin().unwrap();
    let p = c.lookup_at("claude-sonnet-4-5", at("2026-03-01")).unwrap();
    // 1,000 fresh × $3 + 2,000 written for 5 minutes × $3.75 + 1,000 written for an hour × $6
    // + 100 out × $15 = 3,000 + 7,500 + 6,000 + 1,500 = 18,000 µ$.
    let t = TokenCounts {
        input: 4_000,
        cache_read: 0,
        cache_write: 3_000,
        cache_write_1h: 1_000,
        output: 100,
    };
    assert_eq!(quote(&p, &t, false, 1).cost, Nanos(18_000_000));
}

#[test]
fn service_tiers_take_their_own_prices_or_none() {
    let c = PriceCatalog::builtin().unwrap();
    let p = c.lookup_at("gpt-5", at("2026-03-01")).unwrap();
    let t = tokens(1_000_000, 200_000, 0, 100_000);
    let on = |tier| {
        p.quote(&BilledCalls {
            tokens: t,
            batch: false,
            calls: 1,
            service_tier: tier,
        })
    };
    // Standard: 800,000 × $1.25 + 200,000 × $0.125 + 100,000 × $10 = 1.0 + 0.025 + 1.0 = $2.025.
    assert_eq!(
        on(ServiceTier::Standard).unwrap().cost,
        Nanos(2_025_000_000)
    );
    // Priority: 800,000 × $2.50 + 200,000 × $0.25 + 100,000 × $20 = 2.0 + 0.05 + 2.0 = $4.05.
    let q = on(ServiceTier::Priority).unwrap();
    assert_eq!(q.cost, Nanos(4_050_000_000));
    assert_eq!(q.source_id, "openai/gpt-5@2025-08-07#priority");
    // Flex: half of standard = $1.0125.
    assert_eq!(on(ServiceTier::Flex).unwrap().cost, Nanos(1_012_500_000));
    // Scale Tier has no per-token list price; a model without priority prices has none either.
    assert!(on(ServiceTier::Scale).is_none());
    let claude = c.lookup_at("claude-sonnet-4-5", at("2026-03-01")).unwrap();
    assert!(
        claude
            .quote(&BilledCalls {
                tokens: t,
                batch: false,
                calls: 1,
                service_tier: ServiceTier::Priority,
            })
            .is_none()
    );
}

#[test]
fn gemini_2_5_cache_reads_cost_a_tenth_of_input() {
    let c = PriceCatalog::builtin().unwrap();
    for (model, input) in [("gemini-2.5-pro", 1.25), ("gemini-2.5-flash", 0.30)] {
        let e = c.lookup_at(model, at("2026-03-01")).unwrap().entry;
        assert_eq!(e.input, input);
        assert!(
            (e.cached_input.unwrap() - input * 0.1).abs() < 1e-9,
            "{model}"
        );
    }
}

#[test]
fn a_litellm_price_map_overrides_the_same_provider_and_name() {
    let c = PriceCatalog::builtin().unwrap();
    let map = r#"{
      "gpt-4o": {"litellm_provider": "openai", "mode": "chat",
                 "input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06},
      "vertex_ai/gemini-2.0-flash": {"litellm_provider": "vertex_ai-language-models",
                 "mode": "chat", "input_cost_per_token": 1.2e-07, "output_cost_per_token": 5e-07},
      "my-finetune": {"litellm_provider": "openai", "mode": "chat",
                 "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06}
    }"#;
    let o = c.with_prices_file(map).unwrap();
    assert_eq!(o.version(), "2026-11-29+litellm");
    // Every date of gpt-4o now takes the map's price, older calls included.
    for day in ["2024-06-01", "2026-03-01"] {
        let p = o.lookup_for(Some("openai"), "gpt-4o", at(day)).unwrap();
        assert_eq!(p.source_id(), "override:openai/gpt-4o@price-map");
        assert_eq!(p.cost(1_000_000, 0, 0, false), Nanos(2_000_000_000));
    }
    // Names that reached gpt-4o through the built-in entry's aliases go to the map's entry.
    assert_eq!(
        o.lookup_for(None, "gpt-4o-2024-08-06", at("2026-03-01"))
            .unwrap()
            .source_id(),
        "override:openai/gpt-4o@price-map"
    );
    // The Gemini API's own entry is untouched; Vertex AI's is replaced.
    assert_eq!(
        priced(&o, Some("google"), "gemini-2.0-flash", "2026-03-01").as_deref(),
        Some("google/gemini-2.0-flash@2025-02-05")
    );
    assert_eq!(
        priced(&o, Some("vertex_ai"), "gemini-2.0-flash", "2026-03-01").as_deref(),
        Some("override:vertex_ai/gemini-2.0-flash@price-map")
    );
    assert!(o.lookup("my-finetune").is_some());
    assert!(c.with_prices_file("{ not json").is_err());
}

#[test]
fn closest_names_suggest_catalog_spellings() {
    let c = PriceCatalog::builtin().unwrap();
    let near = c.closest_names("gpt4o-mini", 3);
    assert!(near.contains(&"gpt-4o-mini"), "{near:?}");
    assert!(c.closest_names("zzzzzzzz", 3).is_empty());
}
