//! Sign-in through the company's OpenID Connect provider: the authorization-code flow with
//! PKCE (S256), server side. The protocol's mechanics (authorization URL, `state`, PKCE, the
//! token request with client authentication) are the `oauth2` crate's, over the workspace's
//! reqwest; the ID token is verified with jsonwebtoken against the provider's keys, fetched
//! and rotated by the JWKS cache of `jwks.rs` (`id_token.rs`). This module writes no crypto.
//!
//! One sign-in: `GET /auth/login` stores `state`, `nonce` and the PKCE verifier under the
//! hash of a fresh login cookie and redirects to the provider; the provider redirects back
//! to `GET /auth/callback`, which takes that record once (it must be this browser's, and the
//! `state` must match), exchanges the code with the verifier, verifies the ID token (issuer,
//! audience, expiry, signature, nonce), maps its claims to a user and an org (`person.rs`),
//! and starts a browser session (`web_session.rs`). Routes: `routes.rs`; settings: `config.rs`;
//! the provider's metadata: `discovery.rs`.
//!
//! The provider's metadata is discovered at start; when the provider cannot be reached then,
//! the server starts anyway and discovers it at the first sign-in (at most once per
//! [`DISCOVERY_RETRY`]).

mod config;
mod discovery;
mod id_token;
mod person;
mod routes;

pub use config::{OidcConfig, OidcSettings, OrgMapping, Secret};
pub use person::Person;
pub use routes::routes;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apogee_store::{PendingLogin, Store, StoreError};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, RwLock};

use crate::config::Config;
use crate::handshake_limit::HandshakeLimiter;
use crate::jwks::RemoteJwks;
use crate::web_session::{LOGIN_TTL_SECS, random_secret, secret_hash};
use discovery::DiscoveryError;
use id_token::{Expected, IdTokenError};
use person::PersonError;

/// Least time between two discovery attempts while the provider is unreachable.
pub const DISCOVERY_RETRY: Duration = Duration::from_secs(5);
/// Sign-ins one client address may start per minute; each holds a row for
/// [`LOGIN_TTL_SECS`] unless finished.
pub const LOGIN_STARTS_PER_MINUTE: u32 = 30;
/// Sign-ins in progress across all nodes, whatever the addresses (the table's bound).
pub const MAX_PENDING_LOGINS: u64 = 10_000;
/// Requests to the provider (discovery, token) give up after this long.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `code` or `state` passed on from the callback's query.
const MAX_CALLBACK_PARAM: usize = 4096;

/// The token response's OpenID Connect field.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct IdTokenFields {
    id_token: String,
}

impl ExtraTokenFields for IdTokenFields {}

type TokenResponse = StandardTokenResponse<IdTokenFields, BasicTokenType>;

type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The discovered provider: its OAuth 2.0 client and its keys.
struct Provider {
    client: OAuthClient,
    jwks: RemoteJwks,
}

/// Why a sign-in did not complete. [`SignInError::code`] is what the UI is told.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("too many sign-ins started from this address; retry in {0} s")]
    TooMany(u64),
    #[error("too many sign-ins in progress")]
    Full,
    #[error("the identity provider cannot be reached: {0}")]
    Unreachable(String),
    #[error("no sign-in in progress in this browser (expired, finished, or started elsewhere)")]
    NoLogin,
    #[error("the `state` does not match this browser's sign-in")]
    State,
    #[error("the identity provider refused: {0}")]
    Denied(String),
    #[error("the token request failed: {0}")]
    Token(String),
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
    #[error(transparent)]
    Person(#[from] PersonError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SignInError {
    /// A stable word for the UI and the metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SignInError::TooMany(_) | SignInError::Full => "busy",
            SignInError::Unreachable(_) | SignInError::Token(_) => "provider",
            SignInError::NoLogin => "expired",
            SignInError::State => "state",
            SignInError::Denied(_) => "denied",
            SignInError::IdToken(_) => "token",
            SignInError::Person(_) => "org",
            SignInError::Store(_) => "internal",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcSetupError {
    #[error("cannot build the HTTP client for the identity provider: {0}")]
    Client(String),
}

/// Where to send the browser to sign in, and the value of its login cookie.
pub struct LoginStart {
    pub location: String,
    pub login_cookie: String,
}

/// What the provider sends back to `/auth/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// This server as an OpenID Connect relying party.
pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    store: Store,
    jwks_max_age: Duration,
    jwks_min_refresh: Duration,
    provider: RwLock<Option<Arc<Provider>>>,
    /// Held while discovering; the last attempt.
    discovering: Mutex<Option<Instant>>,
    login_starts: HandshakeLimiter,
}

/// `e` and its sources, for the log (the token request's errors nest the cause deep).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Oidc {
    /// Sets up the relying party and tries discovery once (a failure is logged, not fatal).
    pub async fn new(config: &Config, store: Store) -> Result<Option<Oidc>, OidcSetupError> {
        let Some(oidc) = config.oidc.clone() else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            // Never follow a redirect from the token endpoint (RFC 6749 §3.2 has none).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OidcSetupError::Client(e.to_string()))?;
        let rp = Oidc {
            config: oidc,
            http,
            store,
            jwks_max_age: Duration::from_secs(config.jwt_jwks_cache_secs),
            jwks_min_refresh: Duration::from_secs(config.jwt_jwks_min_refresh_secs),
            provider: RwLock::new(None),
            discovering: Mutex::new(None),
            login_starts: HandshakeLimiter::new(LOGIN_STARTS_PER_MINUTE),
        };
        match rp.provider().await {
            Ok(_) => {
                tracing::info!(issuer = %rp.config.issuer, "OpenID Connect provider discovered")
            }
            Err(e) => {
                tracing::warn!(issuer = %rp.config.issuer, error = %e, "OpenID Connect provider not reachable yet; sign-in will retry")
            }
        }
        Ok(Some(rp))
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    async fn provider(&self) -> Result<Arc<Provider>, SignInError> {
        if let Some(p) = self.provider.read().await.as_ref() {
            return Ok(Arc::clone(p));
        }
        let mut last = self.discovering.lock().await;
        if let Some(p) = self.provider.read().await.as_ref() {
            return Ok(Arc::clone(p));
        }
        if last.is_some_and(|t| t.elapsed() < DISCOVERY_RETRY) {
            return Err(SignInError::Unreachable(
                "discovery failed moments ago".into(),
            ));
        }
        *last = Some(Instant::now());
        let provider = Arc::new(self.discover().await?);
        *self.provider.write().await = Some(Arc::clone(&provider));
        Ok(provider)
    }

    async fn discover(&self) -> Result<Provider, SignInError> {
        let unreachable = |e: DiscoveryError| SignInError::Unreachable(e.to_string());
        let meta = discovery::discover(&self.http, &self.config.issuer)
            .await
            .map_err(unreachable)?;
        let url_err = |e: url::ParseError| SignInError::Unreachable(e.to_string());
        let mut client = oauth2::Client::new(ClientId::new(self.config.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(meta.authorization_endpoint))
            .set_token_uri(TokenUrl::from_url(meta.token_endpoint))
            .set_redirect_uri(
                RedirectUrl::new(self.config.redirect_url.to_string()).map_err(url_err)?,
            );
        if let Some(secret) = &self.config.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_string()));
        }
        if meta.secret_in_body {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        let jwks = RemoteJwks::new(
            meta.jwks_uri.to_string(),
            self.jwks_max_age,
            self.jwks_min_refresh,
        )
        .map_err(|e| SignInError::Unreachable(e.to_string()))?;
        // Fetched now so the first sign-in does not wait for it; kept fresh by the cache.
        jwks.keys(None).await;
        Ok(Provider { client, jwks })
    }

    /// Starts a sign-in from `ip`: records it and says where to send the browser.
    pub async fn start(&self, ip: IpAddr) -> Result<LoginStart, SignInError> {
        if let Some(wait) = self.login_starts.blocked(ip) {
            return Err(SignInError::TooMany(wait));
        }
        // Every start counts, finished or not: each may hold a row until it expires.
        self.login_starts.record_failure(ip);
        let provider = self.provider().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = random_secret();
        let (url, state) = provider
            .client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.config.scopes.iter().cloned().map(Scope::new))
            .add_extra_param("nonce", &nonce)
            .set_pkce_challenge(challenge)
            .url();
        let login_cookie = random_secret();
        let login = PendingLogin {
            id: secret_hash(&login_cookie),
            state: state.secret().clone(),
            nonce,
            pkce_verifier: verifier.secret().clone(),
            expires_ms: now_ms() + (LOGIN_TTL_SECS as i64) * 1000,
        };
        if !self
            .store
            .start_oidc_login(&login, MAX_PENDING_LOGINS, now_ms())
            .await?
        {
            return Err(SignInError::Full);
        }
        Ok(LoginStart {
            location: url.to_string(),
            login_cookie,
        })
    }

    /// Finishes the sign-in of the browser holding `login_cookie` with what the provider sent
    /// back; the person it signed in.
    pub async fn finish(
        &self,
        login_cookie: Option<&str>,
        back: &Callback,
    ) -> Result<Person, SignInError> {
        let cookie = login_cookie
            .filter(|c| !c.is_empty() && c.len() <= 128)
            .ok_or(SignInError::NoLogin)?;
        // Taken before anything else: whatever happens next, this sign-in cannot be replayed.
        let login = self
            .store
            .take_oidc_login(&secret_hash(cookie), now_ms())
            .await?
            .ok_or(SignInError::NoLogin)?;
        let state = back
            .state
            .as_deref()
            .filter(|s| s.len() <= MAX_CALLBACK_PARAM)
            .unwrap_or_default();
        if !bool::from(state.as_bytes().ct_eq(login.state.as_bytes())) {
            return Err(SignInError::State);
        }
        if let Some(error) = &back.error {
            let detail = back.error_description.as_deref().unwrap_or_default();
            return Err(SignInError::Denied(
                format!("{error} {detail}")
                    .trim()
                    .chars()
                    .take(300)
                    .collect(),
            ));
        }
        let code = back
            .code
            .as_deref()
            .filter(|c| !c.is_empty() && c.len() <= MAX_CALLBACK_PARAM)
            .ok_or_else(|| SignInError::Denied("no authorization code".into()))?;
        let provider = self.provider().await?;
        let tokens = provider
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => SignInError::Token(r.to_string()),
                other => SignInError::Token(error_chain(&other)),
            })?;
        let id_token = &tokens.extra_fields().id_token;
        let (alg, kid) = id_token::header(id_token)?;
        let keys = provider.jwks.keys(kid.as_deref()).await;
        let expected = Expected {
            issuer: &self.config.issuer,
            client_id: &self.config.client_id,
            nonce: &login.nonce,
        };
        let claims = id_token::verify(id_token, alg, kid.as_deref(), &keys, &expected)?;
        Ok(person::person(
            &claims,
            &self.config.user_claim,
            &self.config.org,
        )?)
    }
}
