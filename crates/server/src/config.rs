//! Server configuration (PROTOCOL.md §9): an optional TOML file overridden by `APOGEE_*`
//! environment variables, validated once at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::oidc::{OidcConfig, OidcSettings};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0} is not valid: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Development,
    Staging,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Demo,
    Jwt,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub env: Environment,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub redis_url: Option<String>,
    pub auth: AuthMode,
    pub jwt_hs256_secret: Option<String>,
    /// PEM public key (RSA → RS256, P-256 → ES256).
    pub jwt_public_key_file: Option<PathBuf>,
    /// A JWKS document on disk, read once at start.
    pub jwt_jwks_file: Option<PathBuf>,
    /// A JWKS document fetched over HTTP(S) and kept fresh (see `jwks.rs`).
    pub jwt_jwks_url: Option<String>,
    /// How long a fetched JWKS is used before it is fetched again.
    pub jwt_jwks_cache_secs: u64,
    /// Least time between two fetches caused by tokens with an unknown `kid`.
    pub jwt_jwks_min_refresh_secs: u64,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// Failed WebSocket handshakes one IP may make per minute before it gets 429.
    pub handshake_failures_per_minute: u32,
    pub heartbeat_ms: u64,
    /// Events a connection may have queued before it counts as too slow (close 1013).
    pub send_queue: usize,
    /// Runs one user may have in flight at once (`busy` beyond).
    pub max_runs_per_user: usize,
    /// Runs this node executes at once, across users; the others wait their turn in arrival
    /// order (each user's runs already one at a time), so a thousand questions at once share
    /// the store's connections and the cores in turns instead of all timing out together.
    pub max_runs_executing: usize,
    /// How long shutdown waits for in-flight runs before recording them as interrupted.
    pub shutdown_grace_ms: u64,
    /// A node that has not renewed its lease for this long counts as dead: another node closes
    /// its runs as interrupted. Renewed every fifth of it.
    pub node_lease_ms: u64,
    /// Largest REST request body, bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Recent events kept in memory per active user, so most resumes never touch the store.
    pub replay_buffer: usize,
    /// Events kept in the store per user; a resume from before them gets `resync_required`.
    pub event_retention: u64,
    /// How long a user's stream (its position and recent events) is kept in memory after the
    /// user's last connection and run ended, so a reconnection resumes without reading the
    /// store; 0 keeps nothing.
    pub stream_grace_ms: u64,
    /// Bytes the streams kept for the grace may hold together across the node (the oldest
    /// departures are let go first beyond).
    pub stream_grace_bytes: usize,
    /// `user_message`s a user may send per minute (sustained), and the burst allowed.
    pub messages_per_minute: u32,
    pub message_burst: u32,
    /// WebSocket connections this node accepts at once (HTTP 503 beyond); derived from the
    /// open-file limit when absent, and lowered to what that limit allows (`listener.rs`).
    pub max_connections: Option<usize>,
    /// Open sockets per client address (IPv6 per /64); derived when absent.
    pub max_connections_per_ip: Option<usize>,
    /// WebSocket connections per user (HTTP 429 beyond); 32 when absent.
    pub max_connections_per_user: Option<usize>,
    /// Completed TCP handshakes the kernel queues for `accept` (`listen(2)`'s backlog; capped
    /// by `net.core.somaxconn`): a storm of clients connecting at once beyond it is dropped
    /// and retries a second later.
    pub listen_backlog: u32,
    /// How long a client has to send a request's headers; also how long a keep-alive
    /// connection may sit idle between requests.
    pub header_timeout_ms: u64,
    /// How long a client has to send a whole request body (HTTP 408 beyond).
    pub body_timeout_ms: u64,
    /// Records (or OTLP spans) one ingest request may carry (HTTP 413 beyond).
    pub max_records_per_request: usize,
    /// Ingest requests one user may have in flight at once (HTTP 429 beyond).
    pub max_ingests_per_user: usize,
    /// Ingest requests this node parses at once; more wait their turn.
    pub max_concurrent_ingests: usize,
    /// `GET /api/costs` calls per user per minute (HTTP 429 beyond).
    pub costs_per_minute: u32,
    /// `GET /api/recommendations` calls per user per minute (HTTP 429 beyond).
    pub recommendations_per_minute: u32,
    /// Usage reads the analysis cache keeps (per org and data version), and their size in
    /// bytes at most (`apogee_store::UsageCacheLimits`).
    pub usage_cache_entries: usize,
    pub usage_cache_bytes: usize,
    /// Every org's budgets are evaluated this often (besides after each ingest batch).
    pub budget_eval_ms: u64,
    /// Serve `/metrics` on this address instead of the main listener.
    pub metrics_addr: Option<SocketAddr>,
    /// When set, `/metrics` on the main listener needs `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// Operator price entries that override or add to the built-in catalog.
    pub prices_file: Option<PathBuf>,
    /// Browser sign-in through an OpenID Connect provider (`[oidc]`, `APOGEE_OIDC_*`).
    pub oidc: Option<OidcConfig>,
    /// The LLM the planner asks first (`[llm]`, `APOGEE_LLM_*`); `None`: the deterministic
    /// planner alone.
    pub llm: Option<apogee_llm::LlmConfig>,
}

/// Shortest HS256 secret accepted in production (RFC 7518 §3.2 asks for 256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// The file's shape: every key optional, same names as the variables without `APOGEE_`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<String>,
    env: Option<Environment>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    redis_url: Option<String>,
    auth: Option<AuthMode>,
    jwt_hs256_secret: Option<String>,
    jwt_public_key_file: Option<PathBuf>,
    jwt_jwks_file: Option<PathBuf>,
    jwt_jwks_url: Option<String>,
    jwt_jwks_cache_secs: Option<u64>,
    jwt_jwks_min_refresh_secs: Option<u64>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    handshake_failures_per_minute: Option<u32>,
    heartbeat_ms: Option<u64>,
    send_queue: Option<usize>,
    max_runs_per_user: Option<usize>,
    max_runs_executing: Option<usize>,
    shutdown_grace_ms: Option<u64>,
    node_lease_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    replay_buffer: Option<usize>,
    event_retention: Option<u64>,
    stream_grace_ms: Option<u64>,
    stream_grace_bytes: Option<usize>,
    messages_per_minute: Option<u32>,
    message_burst: Option<u32>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    max_connections_per_user: Option<usize>,
    listen_backlog: Option<u32>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    max_records_per_request: Option<usize>,
    max_ingests_per_user: Option<usize>,
    max_concurrent_ingests: Option<usize>,
    costs_per_minute: Option<u32>,
    recommendations_per_minute: Option<u32>,
    usage_cache_entries: Option<usize>,
    usage_cache_bytes: Option<usize>,
    budget_eval_ms: Option<u64>,
    metrics_addr: Option<String>,
    metrics_token: Option<String>,
    prices_file: Option<PathBuf>,
    oidc: Option<OidcSettings>,
    llm: Option<apogee_llm::LlmSettings>,
}

fn parse_enum<T: for<'de> Deserialize<'de>>(name: &str, value: &str) -> Result<T, ConfigError> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(value))
        .map_err(|_| ConfigError::Invalid(format!("{name}: unknown value `{value}`")))
}

fn parse_num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError::Invalid(format!("{name}: `{value}` is not a valid number")))
}

impl Config {
    /// Reads `file` (if given), then applies the environment read through `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut f = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
                let mut f = toml::from_str::<FileConfig>(&text)
                    .map_err(|e| ConfigError::Parse(path.to_path_buf(), e))?;
                // A relative prices file in the config file is relative to that file.
                if let (Some(prices), Some(dir)) = (&f.prices_file, path.parent())
                    && prices.is_relative()
                {
                    f.prices_file = Some(dir.join(prices));
                }
                f
            }
            None => FileConfig::default(),
        };
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        // Each variable overrides the file's key of the same name.
        macro_rules! overlay {
            ($(($name:ident, $field:ident, $how:ident),)*) => {$(
                if let Some(v) = var(stringify!($name)) {
                    f.$field = Some(overlay!(@$how $name, v));
                }
            )*};
            (@text $name:ident, $v:ident) => { $v.into() };
            (@parse_num $name:ident, $v:ident) => { parse_num(stringify!($name), &$v)? };
            (@parse_enum $name:ident, $v:ident) => { parse_enum(stringify!($name), &$v)? };
        }
        overlay! {
            (APOGEE_ADDR, addr, text),
            (APOGEE_ENV, env, parse_enum),
            (APOGEE_DATA_DIR, data_dir, text),
            (APOGEE_DATABASE_URL, database_url, text),
            (APOGEE_REDIS_URL, redis_url, text),
            (APOGEE_AUTH, auth, parse_enum),
            (APOGEE_JWT_HS256_SECRET, jwt_hs256_secret, text),
            (APOGEE_JWT_PUBLIC_KEY_FILE, jwt_public_key_file, text),
            (APOGEE_JWT_JWKS_FILE, jwt_jwks_file, text),
            (APOGEE_JWT_JWKS_URL, jwt_jwks_url, text),
            (APOGEE_JWT_JWKS_CACHE_SECS, jwt_jwks_cache_secs, parse_num),
            (APOGEE_JWT_JWKS_MIN_REFRESH_SECS, jwt_jwks_min_refresh_secs, parse_num),
            (APOGEE_HANDSHAKE_FAILURES_PER_MINUTE, handshake_failures_per_minute, parse_num),
            (APOGEE_JWT_ISSUER, jwt_issuer, text),
            (APOGEE_JWT_AUDIENCE, jwt_audience, text),
            (APOGEE_HEARTBEAT_MS, heartbeat_ms, parse_num),
            (APOGEE_SEND_QUEUE, send_queue, parse_num),
            (APOGEE_MAX_RUNS_PER_USER, max_runs_per_user, parse_num),
            (APOGEE_MAX_RUNS_EXECUTING, max_runs_executing, parse_num),
            (APOGEE_SHUTDOWN_GRACE_MS, shutdown_grace_ms, parse_num),
            (APOGEE_NODE_LEASE_MS, node_lease_ms, parse_num),
            (APOGEE_MAX_BODY_BYTES, max_body_bytes, parse_num),
            (APOGEE_REPLAY_BUFFER, replay_buffer, parse_num),
            (APOGEE_EVENT_RETENTION, event_retention, parse_num),
            (APOGEE_STREAM_GRACE_MS, stream_grace_ms, parse_num),
            (APOGEE_STREAM_GRACE_BYTES, stream_grace_bytes, parse_num),
            (APOGEE_MESSAGES_PER_MINUTE, messages_per_minute, parse_num),
            (APOGEE_MESSAGE_BURST, message_burst, parse_num),
            (APOGEE_MAX_CONNECTIONS, max_connections, parse_num),
            (APOGEE_MAX_CONNECTIONS_PER_IP, max_connections_per_ip, parse_num),
            (APOGEE_MAX_CONNECTIONS_PER_USER, max_connections_per_user, parse_num),
            (APOGEE_LISTEN_BACKLOG, listen_backlog, parse_num),
            (APOGEE_HEADER_TIMEOUT_MS, header_timeout_ms, parse_num),
            (APOGEE_BODY_TIMEOUT_MS, body_timeout_ms, parse_num),
            (APOGEE_MAX_RECORDS_PER_REQUEST, max_records_per_request, parse_num),
            (APOGEE_MAX_INGESTS_PER_USER, max_ingests_per_user, parse_num),
            (APOGEE_MAX_CONCURRENT_INGESTS, max_concurrent_ingests, parse_num),
            (APOGEE_COSTS_PER_MINUTE, costs_per_minute, parse_num),
            (APOGEE_RECOMMENDATIONS_PER_MINUTE, recommendations_per_minute, parse_num),
            (APOGEE_USAGE_CACHE_ENTRIES, usage_cache_entries, parse_num),
            (APOGEE_USAGE_CACHE_BYTES, usage_cache_bytes, parse_num),
            (APOGEE_BUDGET_EVAL_MS, budget_eval_ms, parse_num),
            (APOGEE_METRICS_ADDR, metrics_addr, text),
            (APOGEE_METRICS_TOKEN, metrics_token, text),
            (APOGEE_PRICES_FILE, prices_file, text),
        }
        let oidc = f.oidc.take().unwrap_or_default().overlay(var)?;
        let llm = f
            .llm
            .take()
            .unwrap_or_default()
            .overlay(var)
            .and_then(apogee_llm::LlmSettings::resolve)
            .map_err(|e| ConfigError::Invalid(e.0))?;
        let mut config = Self::resolve(f, oidc)?;
        config.llm = llm;
        Ok(config)
    }

    fn resolve(f: FileConfig, oidc: OidcSettings) -> Result<Config, ConfigError> {
        let env = f.env.unwrap_or(Environment::Development);
        let addr_text = f.addr.unwrap_or_else(|| "127.0.0.1:8080".into());
        let addr = addr_text.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "addr: `{addr_text}` is not a socket address like 127.0.0.1:8080"
            ))
        })?;
        let data_dir = f.data_dir.unwrap_or_else(|| PathBuf::from("apogee-data"));
        let database_url = f
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("apogee.db").display()));
        let shared_database = ["postgres://", "postgresql://"]
            .iter()
            .any(|p| database_url.starts_with(p));
        if !shared_database && !database_url.starts_with("sqlite:") {
            return Err(ConfigError::Invalid(format!(
                "database_url: expected sqlite://PATH or postgres://… (got `{database_url}`)"
            )));
        }
        if let Some(url) = &f.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
                return Err(ConfigError::Invalid(
                    "redis_url: expected redis://HOST[:PORT][/DB] or redis+unix:///PATH".into(),
                ));
            }
            if !shared_database {
                return Err(ConfigError::Invalid(
                    "redis_url: nodes that share Redis must share a PostgreSQL database_url too (an embedded SQLite database is one node's own)".into(),
                ));
            }
        }
        let oidc = oidc.resolve(addr, env)?;
        let auth = f.auth.unwrap_or(match env {
            Environment::Development if oidc.is_none() => AuthMode::Demo,
            _ => AuthMode::Jwt,
        });
        if auth == AuthMode::Demo && oidc.is_some() {
            return Err(ConfigError::Invalid(
                "OpenID Connect sign-in needs APOGEE_AUTH=jwt, not demo".into(),
            ));
        }
        if auth == AuthMode::Demo && env == Environment::Production {
            return Err(ConfigError::Invalid(
                "demo auth is refused when APOGEE_ENV=production; set APOGEE_AUTH=jwt".into(),
            ));
        }
        let has_key = f.jwt_hs256_secret.as_deref().is_some_and(|s| !s.is_empty())
            || f.jwt_public_key_file.is_some()
            || f.jwt_jwks_file.is_some()
            || f.jwt_jwks_url.is_some();
        // With OpenID Connect, browsers sign in through the provider; keys are then only
        // needed by API clients sending Bearer tokens.
        if auth == AuthMode::Jwt && !has_key && oidc.is_none() {
            return Err(ConfigError::Invalid(
                "jwt auth needs a key: set APOGEE_JWT_HS256_SECRET, APOGEE_JWT_PUBLIC_KEY_FILE, \
                 APOGEE_JWT_JWKS_FILE or APOGEE_JWT_JWKS_URL (or sign-in through \
                 APOGEE_OIDC_ISSUER)"
                    .into(),
            ));
        }
        if env == Environment::Production
            && let Some(secret) = f.jwt_hs256_secret.as_deref().filter(|s| !s.is_empty())
            && secret.len() < MIN_HS256_SECRET_BYTES
        {
            return Err(ConfigError::Invalid(format!(
                "jwt_hs256_secret: {} bytes is too short for production; use at least \
                 {MIN_HS256_SECRET_BYTES} random bytes",
                secret.len()
            )));
        }
        if let Some(url) = &f.jwt_jwks_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::Invalid(format!(
                "jwt_jwks_url: `{url}` is not an http(s) URL"
            )));
        }
        let handshake_failures_per_minute = f.handshake_failures_per_minute.unwrap_or(30);
        if handshake_failures_per_minute == 0 {
            return Err(ConfigError::Invalid(
                "handshake_failures_per_minute must be at least 1".into(),
            ));
        }
        let heartbeat_ms = f.heartbeat_ms.unwrap_or(25_000);
        if heartbeat_ms < 100 {
            return Err(ConfigError::Invalid(
                "heartbeat_ms must be at least 100".into(),
            ));
        }
        let node_lease_ms = f.node_lease_ms.unwrap_or(15_000);
        if node_lease_ms < 1_000 {
            return Err(ConfigError::Invalid(
                "node_lease_ms must be at least 1000".into(),
            ));
        }
        let send_queue = f.send_queue.unwrap_or(1024);
        let max_runs_per_user = f.max_runs_per_user.unwrap_or(4);
        // A run mostly waits on the store (and the LLM when one is set): several per core.
        let max_runs_executing = f.max_runs_executing.unwrap_or_else(|| {
            16 * std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        if send_queue == 0 || max_runs_per_user == 0 || max_runs_executing == 0 {
            return Err(ConfigError::Invalid(
                "send_queue, max_runs_per_user and max_runs_executing must be at least 1".into(),
            ));
        }
        let event_retention = f.event_retention.unwrap_or(100_000);
        let messages_per_minute = f.messages_per_minute.unwrap_or(30);
        let message_burst = f.message_burst.unwrap_or(10);
        if event_retention < 100 || messages_per_minute == 0 || message_burst == 0 {
            return Err(ConfigError::Invalid(
                "event_retention must be at least 100; messages_per_minute and message_burst at least 1".into(),
            ));
        }
        let listen_backlog = f.listen_backlog.unwrap_or(1024);
        if listen_backlog == 0 || i32::try_from(listen_backlog).is_err() {
            return Err(ConfigError::Invalid(
                "listen_backlog must be between 1 and 2147483647".into(),
            ));
        }
        let header_timeout_ms = f.header_timeout_ms.unwrap_or(10_000);
        let body_timeout_ms = f.body_timeout_ms.unwrap_or(60_000);
        if header_timeout_ms < 100 || body_timeout_ms < 100 {
            return Err(ConfigError::Invalid(
                "header_timeout_ms and body_timeout_ms must be at least 100".into(),
            ));
        }
        let positive = [
            ("max_connections", f.max_connections),
            ("max_connections_per_ip", f.max_connections_per_ip),
            ("max_connections_per_user", f.max_connections_per_user),
            ("max_records_per_request", f.max_records_per_request),
            ("max_ingests_per_user", f.max_ingests_per_user),
            ("max_concurrent_ingests", f.max_concurrent_ingests),
            ("budget_eval_ms", f.budget_eval_ms.map(|v| v as usize)),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == Some(0)) {
            return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
        }
        let costs_per_minute = f.costs_per_minute.unwrap_or(60);
        let recommendations_per_minute = f.recommendations_per_minute.unwrap_or(10);
        if costs_per_minute == 0 || recommendations_per_minute == 0 {
            return Err(ConfigError::Invalid(
                "costs_per_minute and recommendations_per_minute must be at least 1".into(),
            ));
        }
        let metrics_addr = match f.metrics_addr {
            Some(text) => Some(text.parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "metrics_addr: `{text}` is not a socket address like 127.0.0.1:9090"
                ))
            })?),
            None => None,
        };
        let metrics_token = f.metrics_token.filter(|t| !t.is_empty());
        if let Some(token) = &metrics_token
            && token.len() < 16
        {
            return Err(ConfigError::Invalid(
                "metrics_token must be at least 16 characters".into(),
            ));
        }
        Ok(Config {
            addr,
            env,
            data_dir,
            database_url,
            redis_url: f.redis_url,
            auth,
            jwt_hs256_secret: f.jwt_hs256_secret.filter(|s| !s.is_empty()),
            jwt_public_key_file: f.jwt_public_key_file,
            jwt_jwks_file: f.jwt_jwks_file,
            jwt_jwks_url: f.jwt_jwks_url,
            jwt_jwks_cache_secs: f.jwt_jwks_cache_secs.unwrap_or(300),
            jwt_jwks_min_refresh_secs: f.jwt_jwks_min_refresh_secs.unwrap_or(10),
            handshake_failures_per_minute,
            jwt_issuer: f.jwt_issuer,
            jwt_audience: f.jwt_audience,
            heartbeat_ms,
            send_queue,
            max_runs_per_user,
            max_runs_executing,
            shutdown_grace_ms: f.shutdown_grace_ms.unwrap_or(10_000),
            node_lease_ms,
            max_body_bytes: f.max_body_bytes.unwrap_or(16 * 1024 * 1024),
            replay_buffer: f.replay_buffer.unwrap_or(512),
            event_retention,
            stream_grace_ms: f.stream_grace_ms.unwrap_or(30_000),
            stream_grace_bytes: f.stream_grace_bytes.unwrap_or(256 * 1024 * 1024),
            messages_per_minute,
            message_burst,
            max_connections: f.max_connections,
            max_connections_per_ip: f.max_connections_per_ip,
            max_connections_per_user: f.max_connections_per_user,
            listen_backlog,
            header_timeout_ms,
            body_timeout_ms,
            max_records_per_request: f.max_records_per_request.unwrap_or(50_000),
            max_ingests_per_user: f.max_ingests_per_user.unwrap_or(2),
            max_concurrent_ingests: f.max_concurrent_ingests.unwrap_or(4),
            costs_per_minute,
            recommendations_per_minute,
            usage_cache_entries: f.usage_cache_entries.unwrap_or(4096),
            usage_cache_bytes: f.usage_cache_bytes.unwrap_or(64 * 1024 * 1024),
            budget_eval_ms: f.budget_eval_ms.unwrap_or(60_000),
            metrics_addr,
            metrics_token,
            prices_file: f.prices_file,
            oidc,
            llm: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(None, |k| map.get(k).cloned())
    }

    #[test]
    fn the_llm_planner_is_off_unless_configured_and_env_overrides_the_file() {
        assert_eq!(load(&[]).unwrap().llm, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apogee.toml");
        std::fs::write(
            &path,
            "[llm]\nbase_url = \"http://127.0.0.1:11434/v1\"\nmodel = \"qwen2.5:7b\"\nmax_steps = 4\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), |k| {
            (k == "APOGEE_LLM_MODEL").then(|| "llama3.1".to_string())
        })
        .unwrap();
        let llm = c.llm.expect("on");
        assert_eq!(llm.model, "llama3.1");
        assert_eq!(llm.max_steps, 4);
        assert_eq!(llm.base_url.as_str(), "http://127.0.0.1:11434/v1");
        let err = load(&[("APOGEE_LLM_BASE_URL", "http://127.0.0.1:11434/v1")]).unwrap_err();
        assert!(err.to_string().contains("APOGEE_LLM_MODEL"), "{err}");
    }

    #[test]
    fn prices_file_comes_from_env_or_relative_to_the_config_file() {
        assert_eq!(load(&[]).unwrap().prices_file, None);
        let c = load(&[("APOGEE_PRICES_FILE", "/etc/apogee/prices.toml")]).unwrap();
        assert_eq!(
            c.prices_file,
            Some(PathBuf::from("/etc/apogee/prices.toml"))
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apogee.toml");
        std::fs::write(&path, "prices_file = \"prices.toml\"\n").unwrap();
        let c = Config::load(Some(&path), |_| None).unwrap();
        assert_eq!(c.prices_file, Some(dir.path().join("prices.toml")));
    }

    #[test]
    fn defaults_are_development_demo_sqlite() {
        let c = load(&[]).unwrap();
        assert_eq!(c.env, Environment::Development);
        assert_eq!(c.auth, AuthMode::Demo);
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://apogee-data/apogee.db");
    }

    #[test]
    fn production_refuses_demo_and_needs_a_key() {
        assert!(load(&[("APOGEE_ENV", "production"), ("APOGEE_AUTH", "demo")]).is_err());
        assert!(load(&[("APOGEE_ENV", "production")]).is_err());
        let c = load(&[
            ("APOGEE_ENV", "production"),
            ("APOGEE_JWT_HS256_SECRET", &"s".repeat(32)),
        ])
        .unwrap();
        assert_eq!(c.auth, AuthMode::Jwt);
        let c = load(&[
            ("APOGEE_ENV", "production"),
            ("APOGEE_JWT_JWKS_URL", "https://idp.example/jwks.json"),
        ])
        .unwrap();
        assert_eq!(c.auth, AuthMode::Jwt);
        assert!(
            load(&[
                ("APOGEE_AUTH", "jwt"),
                ("APOGEE_JWT_JWKS_URL", "file:///etc/passwd"),
            ])
            .is_err()
        );
    }

    #[test]
    fn production_refuses_a_short_hs256_secret() {
        let e = load(&[
            ("APOGEE_ENV", "production"),
            ("APOGEE_JWT_HS256_SECRET", "x"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("too short"), "{e}");
        let short = "s".repeat(MIN_HS256_SECRET_BYTES - 1);
        assert!(
            load(&[
                ("APOGEE_ENV", "production"),
                ("APOGEE_JWT_HS256_SECRET", &short)
            ])
            .is_err()
        );
        // Outside production a short secret starts (with a warning at start).
        assert!(load(&[("APOGEE_AUTH", "jwt"), ("APOGEE_JWT_HS256_SECRET", "x")]).is_ok());
    }

    #[test]
    fn connection_and_rate_settings_are_checked() {
        let c = load(&[]).unwrap();
        assert_eq!(
            c.max_connections, None,
            "derived at start from the open-file limit"
        );
        assert_eq!(c.header_timeout_ms, 10_000);
        assert_eq!(c.listen_backlog, 1024);
        assert_eq!(
            load(&[("APOGEE_LISTEN_BACKLOG", "4096")])
                .unwrap()
                .listen_backlog,
            4096
        );
        assert!(load(&[("APOGEE_LISTEN_BACKLOG", "0")]).is_err());
        assert!(load(&[("APOGEE_MAX_CONNECTIONS_PER_IP", "0")]).is_err());
        assert!(load(&[("APOGEE_MAX_RUNS_EXECUTING", "0")]).is_err());
        assert_eq!(
            load(&[("APOGEE_MAX_RUNS_EXECUTING", "3")])
                .unwrap()
                .max_runs_executing,
            3
        );
        assert!(load(&[("APOGEE_HEADER_TIMEOUT_MS", "5")]).is_err());
        assert_eq!(
            (c.stream_grace_ms, c.stream_grace_bytes),
            (30_000, 256 << 20)
        );
        let c = load(&[
            ("APOGEE_STREAM_GRACE_MS", "0"),
            ("APOGEE_STREAM_GRACE_BYTES", "1048576"),
        ])
        .unwrap();
        assert_eq!((c.stream_grace_ms, c.stream_grace_bytes), (0, 1 << 20));
        assert!(load(&[("APOGEE_STREAM_GRACE_BYTES", "lots")]).is_err());
        assert!(load(&[("APOGEE_METRICS_ADDR", "nowhere")]).is_err());
        assert!(load(&[("APOGEE_METRICS_TOKEN", "short")]).is_err());
        let c = load(&[("APOGEE_METRICS_ADDR", "127.0.0.1:9100")]).unwrap();
        assert_eq!(c.metrics_addr.map(|a| a.port()), Some(9100));
    }

    #[test]
    fn openid_connect_means_jwt_auth_and_needs_no_bearer_key() {
        let oidc = [
            ("APOGEE_OIDC_ISSUER", "https://idp.example.com"),
            ("APOGEE_OIDC_CLIENT_ID", "apogee"),
            ("APOGEE_OIDC_ORG", "acme"),
        ];
        let c = load(&oidc).unwrap();
        assert_eq!(
            c.auth,
            AuthMode::Jwt,
            "development defaults to jwt with a provider"
        );
        assert_eq!(c.oidc.unwrap().client_id, "apogee");
        let demo: Vec<_> = oidc
            .iter()
            .copied()
            .chain([("APOGEE_AUTH", "demo")])
            .collect();
        assert!(load(&demo).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apogee.toml");
        std::fs::write(
            &path,
            "auth = \"jwt\"\n[oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"apogee\"\n\
             org_claim = \"hd\"\norg_map = { \"Acme.com\" = \"acme\" }\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), |_| None).unwrap();
        let mapping = c.oidc.unwrap().org;
        assert_eq!(
            mapping,
            crate::oidc::OrgMapping::Claim {
                claim: "hd".into(),
                map: Some([("acme.com".to_string(), "acme".to_string())].into())
            }
        );
        std::fs::write(
            &path,
            "[oidc]\nissuer = \"https://idp.example.com\"\nbogus = 1\n",
        )
        .unwrap();
        assert!(
            Config::load(Some(&path), |_| None).is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn env_overrides_file_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apogee.toml");
        std::fs::write(&path, "addr = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\n").unwrap();
        let c = Config::load(Some(&path), |k| {
            (k == "APOGEE_ADDR").then(|| "127.0.0.1:0".to_string())
        })
        .unwrap();
        assert_eq!(c.addr.port(), 0);
        assert_eq!(c.database_url, "sqlite:///tmp/x/apogee.db");
        let e = load(&[("APOGEE_AUTH", "magic")]).unwrap_err().to_string();
        assert!(e.contains("APOGEE_AUTH"), "{e}");
    }
}
