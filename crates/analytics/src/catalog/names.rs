//! How the names providers, gateways and SDKs report map onto catalog names: provider ids
//! (`gen_ai.system` values, LiteLLM's `custom_llm_provider`, gateway prefixes), and the
//! candidate spellings of a model name tried in order — the name as sent first, so a snapshot
//! the catalog prices on its own (`gpt-4o-2024-05-13`) wins over the alias its date would
//! strip to.
//!
//! Shapes understood: gateway prefixes (`openai/gpt-4o`, `bedrock/converse/…`,
//! `together_ai/meta-llama/…`), Gemini API resource names (`models/gemini-2.0-flash`), Vertex
//! AI resource paths (`projects/…/publishers/google/models/gemini-2.0-flash-001`), Bedrock
//! model ids, inference profiles and ARNs (`anthropic.claude-3-5-sonnet-20241022-v2:0`,
//! `us.anthropic.claude-sonnet-4-20250514-v1:0`, `arn:aws:bedrock:…/…`), version suffixes
//! (`-001`, `-v1:0`, `-latest`) and snapshot dates (`-2024-08-06`, `-20241022`, `@20241022`).

/// The canonical id of a provider as sources name it (`gen_ai.system`, LiteLLM's
/// `custom_llm_provider`, a gateway prefix), lower-cased; names not known here are returned
/// lower-cased as they are.
pub fn provider_id(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let known = match lower.as_str() {
        "openai" | "text-completion-openai" | "openai_api" => "openai",
        "azure" | "azure_openai" | "azure-openai" | "az.ai.openai" | "azure_text" => "azure",
        "anthropic" | "anthropic_api" => "anthropic",
        "google" | "gemini" | "gcp.gemini" | "google_ai_studio" | "google-ai-studio"
        | "googleai" | "google_genai" | "google-genai" => "google",
        "vertex_ai"
        | "vertex"
        | "vertexai"
        | "vertex-ai"
        | "gcp.vertex_ai"
        | "google_vertex"
        | "google-vertex"
        | "vertex_ai_beta"
        | "vertex_ai-language-models"
        | "vertex_ai-anthropic_models"
        | "vertex_ai-mistral_models"
        | "vertex_ai-llama_models"
        | "vertex_ai-embedding-models"
        | "vertex_ai-text-models"
        | "vertex_ai-chat-models" => "vertex_ai",
        "bedrock" | "aws.bedrock" | "aws_bedrock" | "aws-bedrock" | "amazon_bedrock"
        | "bedrock_converse" | "bedrock_mantle" | "amazon-bedrock" => "bedrock",
        "mistral" | "mistralai" | "mistral_ai" | "mistral-ai" => "mistral",
        "deepseek" | "deepseek_ai" => "deepseek",
        "xai" | "x-ai" | "x.ai" | "x_ai" => "xai",
        "cohere" | "cohere_chat" | "cohere-chat" => "cohere",
        "groq" => "groq",
        "together" | "together_ai" | "togetherai" | "together.ai" | "together-ai" => "together",
        _ => return lower,
    };
    known.to_string()
}

/// Gateway and SDK prefixes (`openai/gpt-4o`) that name a provider, and LiteLLM's route words
/// (`bedrock/converse/…`) that name nothing.
fn prefix_provider(segment: &str) -> Option<Option<String>> {
    match segment {
        "converse" | "invoke" | "converse_like" => Some(None),
        "openai"
        | "azure"
        | "azure_ai"
        | "anthropic"
        | "bedrock"
        | "bedrock_converse"
        | "vertex_ai"
        | "vertex_ai_beta"
        | "gemini"
        | "google"
        | "groq"
        | "together_ai"
        | "together"
        | "mistral"
        | "deepseek"
        | "xai"
        | "cohere"
        | "cohere_chat"
        | "text-completion-openai" => Some(Some(provider_id(segment))),
        _ => None,
    }
}

/// Takes the gateway and route prefixes off a model name as LiteLLM and other gateways send it
/// (`anthropic/claude-…`, `bedrock/converse/us.anthropic.…`): the provider the first one names,
/// and the model id left (`meta-llama/Llama-…` keeps its `meta-llama/`, which is no provider).
pub fn strip_gateway_prefixes(model: &str) -> (Option<String>, &str) {
    let mut provider = None;
    let mut rest = model;
    while let Some((first, tail)) = rest.split_once('/') {
        if tail.is_empty() {
            break;
        }
        match prefix_provider(&first.to_ascii_lowercase()) {
            Some(p) => {
                provider = provider.or(p);
                rest = tail;
            }
            None => break,
        }
    }
    (provider, rest)
}

/// Bedrock's geographic inference-profile prefixes (`us.anthropic.…`), billed at regional
/// prices, and the global one, billed at list prices.
/// (GovCloud's `us-gov.` is left out: its prices are not the commercial regions'.)
const BEDROCK_GEO_PREFIXES: &[&str] = &["us", "eu", "apac", "au", "jp", "ca"];
const BEDROCK_GLOBAL_PREFIX: &str = "global";
/// Vendors of Bedrock model ids (`anthropic.claude-…`, `meta.llama3-…`).
const BEDROCK_VENDORS: &[&str] = &[
    "anthropic",
    "meta",
    "mistral",
    "amazon",
    "cohere",
    "ai21",
    "deepseek",
    "openai",
    "qwen",
    "writer",
    "twelvelabs",
    "moonshotai",
    "minimax",
];

/// A reported model name taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName {
    /// Spellings to look up, most specific first, without repeats.
    pub candidates: Vec<String>,
    /// The provider the name's shape implies (a gateway prefix, a Bedrock id, a Vertex path).
    pub provider: Option<String>,
    /// A Bedrock geographic inference profile (`us.`, `eu.`, …): regional prices.
    pub regional: bool,
}

impl ModelName {
    fn push(&mut self, name: &str) {
        let name = name.trim();
        if !name.is_empty() && !self.candidates.iter().any(|c| c == name) {
            self.candidates.push(name.to_string());
        }
    }

    fn imply(&mut self, provider: &str) {
        if self.provider.is_none() {
            self.provider = Some(provider.to_string());
        }
    }
}

/// Takes a model name as reported apart into its lookup candidates.
pub fn parse(model: &str) -> ModelName {
    let lower = model.trim().to_ascii_lowercase();
    let mut out = ModelName {
        candidates: Vec::new(),
        provider: None,
        regional: false,
    };
    out.push(&lower);
    let mut name = lower.as_str();

    // Bedrock ARNs: the model id or inference profile after the last `/`.
    if name.starts_with("arn:") {
        out.imply("bedrock");
        name = name.rsplit('/').next().unwrap_or(name);
        out.push(name);
    }
    // Vertex AI resource paths: `…/publishers/google/models/gemini-2.0-flash-001`.
    if let Some((_, rest)) = name.split_once("publishers/") {
        out.imply("vertex_ai");
        name = rest.rsplit_once("models/").map_or(rest, |(_, m)| m);
        out.push(name);
    }
    // Gateway prefixes, possibly several (`bedrock/converse/…`).
    while let Some((first, rest)) = name.split_once('/') {
        match prefix_provider(first) {
            Some(provider) => {
                if let Some(p) = provider {
                    out.imply(&p);
                }
                name = rest;
                out.push(name);
            }
            None => break,
        }
    }
    // Gemini API resource names.
    if let Some(rest) = name.strip_prefix("models/") {
        name = rest;
        out.push(name);
    }
    // Bedrock ids: `[geo.]vendor.model[-vN[:M]]`.
    if let Some(id) = bedrock_id(name, &mut out) {
        name = id;
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    out.push(last);
    let undated = strip_snapshot_date(last);
    out.push(undated);
    for base in [last, undated] {
        let unversioned = strip_version_suffix(base);
        out.push(unversioned);
        out.push(strip_snapshot_date(unversioned));
    }
    out
}

/// Recognises a Bedrock model id, pushing its shorter spellings; returns the id without its
/// geographic prefix.
fn bedrock_id<'a>(name: &'a str, out: &mut ModelName) -> Option<&'a str> {
    let (first, rest) = name.split_once('.')?;
    let (geo, id) = if BEDROCK_GEO_PREFIXES.contains(&first) || first == BEDROCK_GLOBAL_PREFIX {
        (Some(first), rest)
    } else {
        (None, name)
    };
    let (vendor, model) = id.split_once('.')?;
    if !BEDROCK_VENDORS.contains(&vendor) || model.is_empty() {
        return None;
    }
    out.imply("bedrock");
    out.regional = geo.is_some_and(|g| g != BEDROCK_GLOBAL_PREFIX);
    let unversioned = strip_bedrock_version(id);
    // A geographic profile Bedrock prices on its own (`eu.amazon.nova-pro`) first.
    if let Some(g) = geo {
        out.push(&format!("{g}.{unversioned}"));
    }
    out.push(id);
    out.push(unversioned);
    let bare = unversioned.split_once('.').map_or(unversioned, |(_, m)| m);
    out.push(bare);
    Some(bare)
}

/// `anthropic.claude-3-haiku-20240307-v1:0` / `…-v1:0:200k` / `…-v1` / `mistral.…-v0:2` →
/// without the version.
fn strip_bedrock_version(id: &str) -> &str {
    let mut s = id;
    // A context-window variant (`:200k`, `:28k`, `:mm`) after the version.
    if let Some((head, tail)) = s.rsplit_once(':')
        && (tail.ends_with('k') || tail == "mm")
        && head.contains(':')
    {
        s = head;
    }
    if let Some((head, tail)) = s.rsplit_once(':')
        && !tail.is_empty()
        && tail.bytes().all(|b| b.is_ascii_digit())
    {
        s = head;
    }
    if let Some((head, tail)) = s.rsplit_once("-v")
        && !tail.is_empty()
        && tail.bytes().all(|b| b.is_ascii_digit())
    {
        s = head;
    }
    s
}

/// `gemini-2.0-flash-001` → `gemini-2.0-flash`; `claude-3-5-haiku-latest` →
/// `claude-3-5-haiku`; anything else unchanged.
fn strip_version_suffix(name: &str) -> &str {
    if let Some(head) = name.strip_suffix("-latest") {
        return head;
    }
    if let Some((head, tail)) = name.rsplit_once('-')
        && tail.len() == 3
        && tail.bytes().all(|b| b.is_ascii_digit())
        && !head.is_empty()
    {
        return head;
    }
    name
}

/// `gpt-4o-2024-08-06` → `gpt-4o`; `claude-3-5-haiku-20241022` / `…@20241022` →
/// `claude-3-5-haiku`; anything else unchanged.
pub fn strip_snapshot_date(name: &str) -> &str {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((head, tail)) = name.rsplit_once('@')
        && (digits(tail) || tail == "default" || tail == "latest")
    {
        return head;
    }
    if let Some((head, tail)) = name.rsplit_once('-')
        && tail.len() == 8
        && digits(tail)
    {
        return head;
    }
    // `-YYYY-MM-DD`: the last 11 bytes.
    if name.len() > 11 && name.is_char_boundary(name.len() - 11) {
        let (head, tail) = name.split_at(name.len() - 11);
        let b = tail.as_bytes();
        if b[0] == b'-'
            && b[5] == b'-'
            && b[8] == b'-'
            && [&tail[1..5], &tail[6..8], &tail[9..11]]
                .iter()
                .all(|p| digits(p))
        {
            return head;
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_from_every_source() {
        for (given, id) in [
            ("OpenAI", "openai"),
            ("az.ai.openai", "azure"),
            ("gcp.vertex_ai", "vertex_ai"),
            ("gcp.gemini", "google"),
            ("gemini", "google"),
            ("aws.bedrock", "bedrock"),
            ("bedrock_converse", "bedrock"),
            ("together_ai", "together"),
            ("cohere_chat", "cohere"),
            ("self-hosted", "self-hosted"),
        ] {
            assert_eq!(provider_id(given), id, "{given}");
        }
    }

    #[test]
    fn candidates_go_from_the_name_as_sent_to_its_base() {
        let n = parse("gpt-4o-2024-05-13");
        assert_eq!(n.candidates, ["gpt-4o-2024-05-13", "gpt-4o"]);
        assert_eq!(n.provider, None);

        let n = parse("us.anthropic.claude-sonnet-4-20250514-v1:0");
        assert!(n.regional);
        assert_eq!(n.provider.as_deref(), Some("bedrock"));
        assert_eq!(
            n.candidates,
            [
                "us.anthropic.claude-sonnet-4-20250514-v1:0",
                "us.anthropic.claude-sonnet-4-20250514",
                "anthropic.claude-sonnet-4-20250514-v1:0",
                "anthropic.claude-sonnet-4-20250514",
                "claude-sonnet-4-20250514",
                "claude-sonnet-4",
            ]
        );
        let n = parse("global.anthropic.claude-sonnet-4-5-20250929-v1:0");
        assert!(!n.regional);
        assert!(n.candidates.iter().any(|c| c == "claude-sonnet-4-5"));

        let n =
            parse("projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001");
        assert_eq!(n.provider.as_deref(), Some("vertex_ai"));
        assert!(n.candidates.iter().any(|c| c == "gemini-2.0-flash"));

        let n = parse("bedrock/converse/meta.llama3-1-70b-instruct-v1:0");
        assert_eq!(n.provider.as_deref(), Some("bedrock"));
        assert!(
            n.candidates
                .iter()
                .any(|c| c == "meta.llama3-1-70b-instruct")
        );

        let n = parse("together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo");
        assert_eq!(n.provider.as_deref(), Some("together"));
        assert_eq!(n.candidates[1], "meta-llama/llama-3.3-70b-instruct-turbo");

        let n = parse(
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
        );
        assert!(n.regional);
        assert!(n.candidates.iter().any(|c| c == "claude-3-7-sonnet"));

        assert!(
            parse("claude-3-5-sonnet-v2@20241022")
                .candidates
                .iter()
                .any(|c| c == "claude-3-5-sonnet-v2")
        );
        assert!(
            parse("models/gemini-1.5-flash-002")
                .candidates
                .iter()
                .any(|c| c == "gemini-1.5-flash")
        );
        // Not a Bedrock id: a dotted version.
        assert_eq!(parse("gemini-2.5-flash").provider, None);
        assert_eq!(parse("gpt-4o-2024").candidates, ["gpt-4o-2024"]);
    }

    #[test]
    fn gateway_prefixes_come_off_but_model_orgs_stay() {
        assert_eq!(
            strip_gateway_prefixes("anthropic/claude-sonnet-4-20250514"),
            (Some("anthropic".into()), "claude-sonnet-4-20250514")
        );
        assert_eq!(
            strip_gateway_prefixes("bedrock/converse/us.anthropic.claude-sonnet-4-20250514-v1:0"),
            (
                Some("bedrock".into()),
                "us.anthropic.claude-sonnet-4-20250514-v1:0"
            )
        );
        assert_eq!(
            strip_gateway_prefixes("meta-llama/Llama-3.3-70B-Instruct-Turbo"),
            (None, "meta-llama/Llama-3.3-70B-Instruct-Turbo")
        );
        assert_eq!(strip_gateway_prefixes("gpt-4o"), (None, "gpt-4o"));
    }

    #[test]
    fn bedrock_versions_and_context_variants_are_stripped() {
        assert_eq!(
            strip_bedrock_version("anthropic.claude-3-haiku-20240307-v1:0:200k"),
            "anthropic.claude-3-haiku-20240307"
        );
        assert_eq!(
            strip_bedrock_version("mistral.mistral-7b-instruct-v0:2"),
            "mistral.mistral-7b-instruct"
        );
        assert_eq!(
            strip_bedrock_version("anthropic.claude-opus-4-6-v1"),
            "anthropic.claude-opus-4-6"
        );
        assert_eq!(strip_bedrock_version("deepseek.v3.2"), "deepseek.v3.2");
    }
}
