"""Regenerates crates/analytics/testdata/litellm/model_prices_and_context_window.json from
LiteLLM's wheel: `pip download litellm==VERSION --no-deps`, unzip
`litellm/model_prices_and_context_window_backup.json`, then
`python3 filter.py BACKUP.json > model_prices_and_context_window.json`."""
import json
import sys

PROVIDERS = {
    "openai", "text-completion-openai", "anthropic", "gemini", "vertex_ai-language-models",
    "vertex_ai-anthropic_models", "vertex_ai-mistral_models", "vertex_ai-llama_models",
    "vertex_ai-embedding-models", "mistral", "deepseek", "xai", "cohere", "cohere_chat",
    "bedrock", "bedrock_converse", "azure", "groq", "together_ai",
}
MODES = {"chat", "completion", "responses", "embedding", None}
KEEP = {"litellm_provider", "mode", "deprecation_date", "source"}

doc = json.load(open(sys.argv[1]))
out = {}
for key, entry in doc.items():
    if key == "sample_spec" or not isinstance(entry, dict):
        continue
    if entry.get("litellm_provider") not in PROVIDERS or entry.get("mode") not in MODES:
        continue
    if "input_cost_per_token" not in entry:
        continue
    out[key] = {
        f: v
        for f, v in entry.items()
        if f in KEEP or ("cost" in f and isinstance(v, (int, float)))
    }
print(json.dumps(out, indent=4))
