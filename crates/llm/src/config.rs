//! The LLM settings: the `[llm]` table of the config file overridden by `APOGEE_LLM_*`
//! variables, checked once at start. The planner is on when a base URL and a model are set;
//! with neither, Apogee answers with its deterministic planner alone.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// An API key: never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The checked settings the client and the planner run with.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    /// The OpenAI-compatible base URL (`https://api.openai.com/v1`); requests go to
    /// `{base_url}/chat/completions`.
    pub base_url: Url,
    pub model: String,
    /// Sent as `Authorization: Bearer …`; `None` for servers that need none (a local Ollama).
    pub api_key: Option<ApiKey>,
    /// To open the connection.
    pub connect_timeout: Duration,
    /// One model call, from sending the request to the stream's last byte.
    pub timeout: Duration,
    /// Longest silence within a streamed reply.
    pub idle_timeout: Duration,
    /// Retries of one call after a connection error, a timeout before the reply started, a
    /// 5xx or a 429.
    pub max_retries: u32,
    /// Longest wait before a retry; a 429 asking for more (`Retry-After`) is not retried.
    pub max_retry_wait: Duration,
    /// Model calls per run (each may call several tools).
    pub max_steps: u32,
    /// Prompt plus completion tokens per run.
    pub max_run_tokens: u64,
    /// `max_tokens` of each call.
    pub max_output_tokens: u32,
    /// What an org's runs may spend on the LLM per calendar month (UTC), in US dollars,
    /// measured from the recorded `apogee-assistant` usage; `None`: no limit.
    pub monthly_budget_usd: Option<f64>,
    /// Model calls this node has open at once, across every run: a thousand people asking
    /// together must not open a thousand streams to the provider (its rate limit, this
    /// node's sockets and memory).
    pub max_concurrent_calls: usize,
    /// How long a call waits for one of those places before the run is answered without the
    /// model (`LlmError::Busy`).
    pub queue_wait: Duration,
}

impl LlmConfig {
    /// Defaults for everything but the endpoint and the model (tests and examples).
    pub fn new(base_url: Url, model: impl Into<String>) -> LlmConfig {
        LlmConfig {
            base_url,
            model: model.into(),
            api_key: None,
            connect_timeout: Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            idle_timeout: Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
            max_retries: DEFAULT_MAX_RETRIES,
            max_retry_wait: Duration::from_millis(DEFAULT_MAX_RETRY_WAIT_MS),
            max_steps: DEFAULT_MAX_STEPS,
            max_run_tokens: DEFAULT_MAX_RUN_TOKENS,
            max_output_tokens: DEFAULT_MAX_OUTPUT_TOKENS,
            monthly_budget_usd: None,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
            queue_wait: Duration::from_millis(DEFAULT_QUEUE_WAIT_MS),
        }
    }
}

const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_IDLE_TIMEOUT_MS: u64 = 20_000;
const DEFAULT_MAX_RETRIES: u32 = 2;
const DEFAULT_MAX_RETRY_WAIT_MS: u64 = 10_000;
const DEFAULT_MAX_STEPS: u32 = 6;
const DEFAULT_MAX_RUN_TOKENS: u64 = 60_000;
const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 1_500;
const DEFAULT_MAX_CONCURRENT_CALLS: usize = 32;
const DEFAULT_QUEUE_WAIT_MS: u64 = 2_000;
/// The semaphore's own bound, far above what any provider lets one client hold.
const MAX_CONCURRENT_CALLS_LIMIT: usize = 4_096;
/// Bounds that keep one run from holding a server for long whatever is configured.
const MAX_STEPS_LIMIT: u32 = 20;
const MAX_RETRIES_LIMIT: u32 = 5;

/// The `[llm]` table of the config file; every key optional, the same names as the
/// `APOGEE_LLM_*` variables without the prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    base_url: Option<String>,
    model: Option<String>,
    api_key: Option<String>,
    api_key_file: Option<PathBuf>,
    connect_timeout_ms: Option<u64>,
    timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_retries: Option<u32>,
    max_retry_wait_ms: Option<u64>,
    max_steps: Option<u32>,
    max_run_tokens: Option<u64>,
    max_output_tokens: Option<u32>,
    monthly_budget_usd: Option<f64>,
    max_concurrent_calls: Option<usize>,
    queue_wait_ms: Option<u64>,
}

/// Why the settings were refused; the message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, SettingsError> {
    value
        .parse()
        .map_err(|_| SettingsError(format!("{name}: `{value}` is not a valid number")))
}

impl LlmSettings {
    /// Applies the `APOGEE_LLM_*` variables read through `var` (empty counts as unset).
    pub fn overlay(
        mut self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<LlmSettings, SettingsError> {
        macro_rules! overlay {
            ($(($name:literal, $field:ident, $how:ident),)*) => {$(
                if let Some(v) = var($name) {
                    self.$field = Some(overlay!(@$how $name, v));
                }
            )*};
            (@text $name:literal, $v:ident) => { $v.into() };
            (@num $name:literal, $v:ident) => { number($name, &$v)? };
        }
        overlay! {
            ("APOGEE_LLM_BASE_URL", base_url, text),
            ("APOGEE_LLM_MODEL", model, text),
            ("APOGEE_LLM_API_KEY", api_key, text),
            ("APOGEE_LLM_API_KEY_FILE", api_key_file, text),
            ("APOGEE_LLM_CONNECT_TIMEOUT_MS", connect_timeout_ms, num),
            ("APOGEE_LLM_TIMEOUT_MS", timeout_ms, num),
            ("APOGEE_LLM_IDLE_TIMEOUT_MS", idle_timeout_ms, num),
            ("APOGEE_LLM_MAX_RETRIES", max_retries, num),
            ("APOGEE_LLM_MAX_RETRY_WAIT_MS", max_retry_wait_ms, num),
            ("APOGEE_LLM_MAX_STEPS", max_steps, num),
            ("APOGEE_LLM_MAX_RUN_TOKENS", max_run_tokens, num),
            ("APOGEE_LLM_MAX_OUTPUT_TOKENS", max_output_tokens, num),
            ("APOGEE_LLM_MONTHLY_BUDGET_USD", monthly_budget_usd, num),
            ("APOGEE_LLM_MAX_CONCURRENT_CALLS", max_concurrent_calls, num),
            ("APOGEE_LLM_QUEUE_WAIT_MS", queue_wait_ms, num),
        }
        Ok(self)
    }

    /// The checked settings; `None` when neither a base URL nor a model is set (the LLM
    /// planner is off). Reads the key file when one is named.
    pub fn resolve(self) -> Result<Option<LlmConfig>, SettingsError> {
        let base = self.base_url.filter(|s| !s.is_empty());
        let model = self.model.filter(|s| !s.is_empty());
        let (base, model) = match (base, model) {
            (None, None) => {
                if self.api_key.is_some() || self.api_key_file.is_some() {
                    return Err(SettingsError(
                        "llm: an API key is set but no APOGEE_LLM_BASE_URL and APOGEE_LLM_MODEL"
                            .into(),
                    ));
                }
                return Ok(None);
            }
            (Some(b), Some(m)) => (b, m),
            (Some(_), None) => {
                return Err(SettingsError(
                    "llm: APOGEE_LLM_BASE_URL is set but APOGEE_LLM_MODEL is not".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(SettingsError(
                    "llm: APOGEE_LLM_MODEL is set but APOGEE_LLM_BASE_URL is not".into(),
                ));
            }
        };
        let base_url = Url::parse(&base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                SettingsError(format!(
                    "llm_base_url: `{base}` is not an http(s) URL like https://api.openai.com/v1"
                ))
            })?;
        let api_key = match (self.api_key, self.api_key_file) {
            (Some(_), Some(_)) => {
                return Err(SettingsError(
                    "llm: set APOGEE_LLM_API_KEY or APOGEE_LLM_API_KEY_FILE, not both".into(),
                ));
            }
            (Some(k), None) => Some(k),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    SettingsError(format!(
                        "llm_api_key_file: cannot read {}: {e}",
                        path.display()
                    ))
                })?;
                Some(text.trim().to_string())
            }
            (None, None) => None,
        }
        .filter(|k| !k.is_empty())
        .map(ApiKey);
        let mut c = LlmConfig::new(base_url, model);
        c.api_key = api_key;
        let ms = |v: Option<u64>, default: Duration, name: &str| match v {
            Some(ms) if ms < 100 => Err(SettingsError(format!("{name} must be at least 100"))),
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => Ok(default),
        };
        c.connect_timeout = ms(
            self.connect_timeout_ms,
            c.connect_timeout,
            "llm_connect_timeout_ms",
        )?;
        c.timeout = ms(self.timeout_ms, c.timeout, "llm_timeout_ms")?;
        c.idle_timeout = ms(self.idle_timeout_ms, c.idle_timeout, "llm_idle_timeout_ms")?;
        if let Some(ms) = self.max_retry_wait_ms {
            c.max_retry_wait = Duration::from_millis(ms);
        }
        if let Some(n) = self.max_retries {
            if n > MAX_RETRIES_LIMIT {
                return Err(SettingsError(format!(
                    "llm_max_retries: at most {MAX_RETRIES_LIMIT}"
                )));
            }
            c.max_retries = n;
        }
        if let Some(n) = self.max_steps {
            if n == 0 || n > MAX_STEPS_LIMIT {
                return Err(SettingsError(format!(
                    "llm_max_steps: 1 to {MAX_STEPS_LIMIT}"
                )));
            }
            c.max_steps = n;
        }
        if let Some(n) = self.max_run_tokens {
            if n == 0 {
                return Err(SettingsError(
                    "llm_max_run_tokens must be at least 1".into(),
                ));
            }
            c.max_run_tokens = n;
        }
        if let Some(n) = self.max_output_tokens {
            if n == 0 {
                return Err(SettingsError(
                    "llm_max_output_tokens must be at least 1".into(),
                ));
            }
            c.max_output_tokens = n;
        }
        if let Some(usd) = self.monthly_budget_usd {
            if !usd.is_finite() || usd < 0.0 {
                return Err(SettingsError(
                    "llm_monthly_budget_usd must be a number of dollars, 0 or more".into(),
                ));
            }
            c.monthly_budget_usd = Some(usd);
        }
        if let Some(n) = self.max_concurrent_calls {
            if n == 0 || n > MAX_CONCURRENT_CALLS_LIMIT {
                return Err(SettingsError(format!(
                    "llm_max_concurrent_calls: 1 to {MAX_CONCURRENT_CALLS_LIMIT}"
                )));
            }
            c.max_concurrent_calls = n;
        }
        if let Some(ms) = self.queue_wait_ms {
            c.queue_wait = Duration::from_millis(ms);
        }
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(vars: &[(&str, &str)]) -> Result<Option<LlmConfig>, SettingsError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LlmSettings::default()
            .overlay(|name| {
                vars.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .filter(|v| !v.is_empty())
            })?
            .resolve()
    }

    #[test]
    fn unset_is_off_and_both_names_turn_it_on() {
        assert_eq!(resolve(&[]), Ok(None));
        let c = resolve(&[
            ("APOGEE_LLM_BASE_URL", "http://127.0.0.1:11434/v1"),
            ("APOGEE_LLM_MODEL", "llama3.1"),
            ("APOGEE_LLM_MAX_STEPS", "3"),
            ("APOGEE_LLM_MONTHLY_BUDGET_USD", "25.5"),
            ("APOGEE_LLM_MAX_CONCURRENT_CALLS", "4"),
            ("APOGEE_LLM_QUEUE_WAIT_MS", "0"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.max_concurrent_calls, 4);
        assert_eq!(c.queue_wait, Duration::ZERO);
        assert_eq!(c.model, "llama3.1");
        assert_eq!(c.max_steps, 3);
        assert_eq!(c.monthly_budget_usd, Some(25.5));
        assert_eq!(c.api_key, None);
        assert_eq!(c.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("APOGEE_LLM_MODEL", "gpt-4o")], "APOGEE_LLM_BASE_URL"),
            (
                &[("APOGEE_LLM_BASE_URL", "http://x/v1")],
                "APOGEE_LLM_MODEL",
            ),
            (
                &[
                    ("APOGEE_LLM_BASE_URL", "ftp://x"),
                    ("APOGEE_LLM_MODEL", "m"),
                ],
                "llm_base_url",
            ),
            (
                &[
                    ("APOGEE_LLM_BASE_URL", "http://x/v1"),
                    ("APOGEE_LLM_MODEL", "m"),
                    ("APOGEE_LLM_MAX_STEPS", "0"),
                ],
                "llm_max_steps",
            ),
            (
                &[
                    ("APOGEE_LLM_BASE_URL", "http://x/v1"),
                    ("APOGEE_LLM_MODEL", "m"),
                    ("APOGEE_LLM_MONTHLY_BUDGET_USD", "-1"),
                ],
                "llm_monthly_budget_usd",
            ),
            (
                &[
                    ("APOGEE_LLM_BASE_URL", "http://x/v1"),
                    ("APOGEE_LLM_MODEL", "m"),
                    ("APOGEE_LLM_API_KEY", "k"),
                    ("APOGEE_LLM_API_KEY_FILE", "/nonexistent"),
                ],
                "not both",
            ),
            (&[("APOGEE_LLM_API_KEY", "k")], "API key is set"),
            (
                &[
                    ("APOGEE_LLM_BASE_URL", "http://x/v1"),
                    ("APOGEE_LLM_MODEL", "m"),
                    ("APOGEE_LLM_MAX_CONCURRENT_CALLS", "0"),
                ],
                "llm_max_concurrent_calls",
            ),
            (
                &[
                    ("APOGEE_LLM_BASE_URL", "http://x/v1"),
                    ("APOGEE_LLM_MODEL", "m"),
                    ("APOGEE_LLM_TIMEOUT_MS", "soon"),
                ],
                "APOGEE_LLM_TIMEOUT_MS",
            ),
        ];
        for (vars, names) in cases {
            let err = resolve(vars).expect_err(names);
            assert!(err.0.contains(names), "{vars:?}: {err}");
        }
    }

    #[test]
    fn a_key_file_is_read_and_trimmed_and_never_printed() {
        let path = std::env::temp_dir().join(format!("apogee-llm-key-{}", std::process::id()));
        std::fs::write(&path, "sk-secret\n").unwrap();
        let c = resolve(&[
            ("APOGEE_LLM_BASE_URL", "https://api.openai.com/v1"),
            ("APOGEE_LLM_MODEL", "gpt-4o-mini"),
            ("APOGEE_LLM_API_KEY_FILE", path.to_str().unwrap()),
        ])
        .unwrap()
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(c.api_key.as_ref().map(ApiKey::expose), Some("sk-secret"));
        assert!(!format!("{c:?}").contains("sk-secret"));
    }
}
