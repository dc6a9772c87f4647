//! Authentication (PROTOCOL.md §1, §7): demo identities, JWTs (verified in `jwt.rs`),
//! single-use WebSocket tickets (kept in the store) and, with OpenID Connect sign-in, browser
//! session cookies (`web_session.rs`). An [`Identity`] can only be produced here, from
//! credentials that checked out.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use apogee_store::{Redeemed, Store, StoreError, TicketGrant, UserKey};
use axum::http::HeaderMap;
use rand::Rng;

use crate::config::{AuthMode, Config};
use crate::jwt::{JwtError, JwtSetupError, JwtVerifier};
use crate::oidc::{Oidc, OidcSetupError};
use crate::web_session::{Proof, WebSessionError, WebSessions};

pub const DEMO_ORG: &str = "demo";
/// How long a WebSocket ticket can be redeemed (§1).
pub const TICKET_TTL_SECS: u64 = 60;
/// Tickets are `t_` + 64 hex digits; anything much longer is refused without a lookup.
const MAX_TICKET_CHARS: usize = 128;

/// Who is calling. Fields are private: the only way to get one is to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The org and user, shared with everything that keeps them for a connection (its
    /// admission slot, budget membership, the hub's map and the user's stream): one copy per
    /// user however many places hold it.
    key: Arc<UserKey>,
    /// When the credential stops being valid (unix seconds); `None` for demo identities.
    expires_at: Option<i64>,
    /// The browser session (its store id) the credential came from, if any: signing it out
    /// ends connections opened with it.
    web_session: Option<String>,
}

impl Identity {
    pub fn user_id(&self) -> &str {
        &self.key.user_id
    }

    pub fn org_id(&self) -> &str {
        &self.key.org_id
    }

    /// The user's key, to share rather than copy.
    pub fn key(&self) -> &Arc<UserKey> {
        &self.key
    }

    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send `Authorization: Bearer <JWT>` or `?ticket=`")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(#[from] JwtError),
    #[error("invalid ticket: unknown or already used")]
    UnknownTicket,
    #[error("invalid ticket: expired")]
    ExpiredTicket,
    #[error("invalid demo user: `user` must match [A-Za-z0-9_-]{{1,64}}")]
    InvalidDemoUser,
    #[error("missing demo user: send the `X-Apogee-User` header")]
    MissingDemoUser,
    #[error("not signed in: the session is unknown, expired or signed out")]
    SessionEnded,
    /// A session cookie without its CSRF token (HTTP 403).
    #[error("cookie-authenticated calls must send the X-CSRF-Token header from GET /auth/session")]
    Csrf,
    /// A cookie-authenticated WebSocket handshake from another origin (HTTP 403).
    #[error("a cookie-authenticated WebSocket must be opened from {0}")]
    Origin(String),
    /// The credentials could not be checked (the store failed); not the caller's fault.
    #[error("credentials could not be checked")]
    Unavailable(#[from] StoreError),
}

impl AuthError {
    /// Whether the caller presented bad credentials (as opposed to the server failing).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, AuthError::Unavailable(_))
    }

    /// Whether the credentials are valid but came without the proof a cookie needs (403).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::Csrf | AuthError::Origin(_))
    }
}

impl From<WebSessionError> for AuthError {
    fn from(e: WebSessionError) -> Self {
        match e {
            WebSessionError::NoCookie => AuthError::MissingToken,
            WebSessionError::Ended => AuthError::SessionEnded,
            WebSessionError::Csrf => AuthError::Csrf,
            WebSessionError::Origin(o) => AuthError::Origin(o),
            WebSessionError::Store(e) => AuthError::Unavailable(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(transparent)]
    Jwt(#[from] JwtSetupError),
    #[error(transparent)]
    Oidc(#[from] OidcSetupError),
}

/// A freshly issued WebSocket ticket.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub ticket: String,
    pub expires_in: u64,
}

enum Mode {
    Demo,
    Jwt(Box<JwtVerifier>),
}

/// Checks credentials according to the configured mode.
pub struct Authenticator {
    mode: Mode,
    store: Store,
    /// Sign-in through an OpenID Connect provider and the browser sessions it starts (JWT
    /// mode with `APOGEE_OIDC_ISSUER`).
    oidc: Option<Arc<Oidc>>,
    web_sessions: Option<Arc<WebSessions>>,
}

fn valid_demo_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Authenticator {
    /// Loads the configured keys; tickets are kept in `store`.
    pub async fn from_config(
        config: &Config,
        store: Store,
    ) -> Result<Authenticator, AuthSetupError> {
        let mode = match config.auth {
            AuthMode::Demo => Mode::Demo,
            AuthMode::Jwt => Mode::Jwt(Box::new(JwtVerifier::from_config(config).await?)),
        };
        let oidc = Oidc::new(config, store.clone()).await?.map(Arc::new);
        let web_sessions = config
            .oidc
            .as_ref()
            .map(|c| Arc::new(WebSessions::new(store.clone(), c)));
        Ok(Authenticator {
            mode,
            store,
            oidc,
            web_sessions,
        })
    }

    pub fn is_demo(&self) -> bool {
        matches!(self.mode, Mode::Demo)
    }

    /// Sign-in through the OpenID Connect provider, when configured.
    pub fn oidc(&self) -> Option<&Arc<Oidc>> {
        self.oidc.as_ref()
    }

    /// The browser sessions, when OpenID Connect sign-in is configured.
    pub fn web_sessions(&self) -> Option<&Arc<WebSessions>> {
        self.web_sessions.as_ref()
    }

    /// A REST call made with a browser session cookie: the cookie names a live session and
    /// `X-CSRF-Token` carries its token (a cookie alone authenticates no API call).
    pub async fn authenticate_cookie(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        self.web_session(headers, Proof::Csrf).await
    }

    async fn web_session(&self, headers: &HeaderMap, proof: Proof) -> Result<Identity, AuthError> {
        let web = self.web_sessions.as_ref().ok_or(AuthError::MissingToken)?;
        let s = web.check(headers, proof).await?;
        Ok(Identity {
            key: Arc::new(s.user),
            expires_at: Some(s.expires_ms.div_euclid(1000)),
            web_session: Some(s.id),
        })
    }

    /// Whether the request carries a browser session cookie (and sessions are on).
    fn has_session_cookie(&self, headers: &HeaderMap) -> bool {
        self.web_sessions
            .as_ref()
            .is_some_and(|w| w.has_cookie(headers))
    }

    /// Resolves when the credential behind `identity` is revoked (its browser session signed
    /// out); never for credentials that cannot be revoked (JWTs end at their expiry).
    /// Boxed, and allocated only for a revocable credential: every open connection holds one
    /// of these while idle.
    pub fn revoked(&self, identity: &Identity) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        match (&self.web_sessions, &identity.web_session) {
            (Some(web), Some(id)) => Box::pin(web.revoked(id)),
            // A zero-sized future: boxing it allocates nothing.
            _ => Box::pin(std::future::pending()),
        }
    }

    /// The WebSocket handshake. JWT mode: the Bearer header, else `?ticket=`, else a browser
    /// session cookie with the UI's own `Origin`. Demo mode: `?ticket=`, else `?user=` (or a
    /// random demo user). Demo parameters are ignored in JWT mode.
    pub async fn authenticate_ws(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Result<Identity, AuthError> {
        match &self.mode {
            Mode::Jwt(verifier) => match (bearer(headers), query.get("ticket")) {
                (Some(token), _) => Self::jwt(verifier, token).await,
                (None, Some(ticket)) => self.redeem(ticket).await,
                (None, None) if self.has_session_cookie(headers) => {
                    self.web_session(headers, Proof::SameOrigin).await
                }
                (None, None) => Err(AuthError::MissingToken),
            },
            Mode::Demo => match (query.get("ticket"), query.get("user")) {
                (Some(ticket), _) => self.redeem(ticket).await,
                (None, Some(name)) => Self::demo(name),
                (None, None) => Ok(Identity {
                    key: Arc::new(UserKey {
                        user_id: format!(
                            "demo-{}",
                            &uuid::Uuid::now_v7().simple().to_string()[20..]
                        ),
                        org_id: DEMO_ORG.into(),
                    }),
                    expires_at: None,
                    web_session: None,
                }),
            },
        }
    }

    /// REST calls: Bearer header in JWT mode, else a browser session cookie with its CSRF
    /// token; `X-Apogee-User` in demo mode.
    pub async fn authenticate_rest(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        match &self.mode {
            Mode::Demo => {
                let name = headers
                    .get("x-apogee-user")
                    .and_then(|v| v.to_str().ok())
                    .ok_or(AuthError::MissingDemoUser)?;
                Self::demo(name)
            }
            Mode::Jwt(verifier) => match bearer(headers) {
                Some(token) => Self::jwt(verifier, token).await,
                None if self.has_session_cookie(headers) => self.authenticate_cookie(headers).await,
                None => Err(AuthError::MissingToken),
            },
        }
    }

    /// Issues a single-use ticket bound to `identity`, redeemable for [`TICKET_TTL_SECS`].
    pub async fn issue_ticket(&self, identity: &Identity) -> Result<Ticket, StoreError> {
        let bytes: [u8; 32] = rand::rng().random();
        let ticket: String = std::iter::once("t_".to_string())
            .chain(bytes.iter().map(|b| format!("{b:02x}")))
            .collect();
        let now = now_ms();
        let grant = TicketGrant {
            user: UserKey::clone(&identity.key),
            expires_ms: now + (TICKET_TTL_SECS * 1000) as i64,
            token_exp: identity.expires_at,
            web_session: identity.web_session.clone(),
        };
        self.store.issue_ticket(&ticket, &grant, now).await?;
        Ok(Ticket {
            ticket,
            expires_in: TICKET_TTL_SECS,
        })
    }

    async fn redeem(&self, ticket: &str) -> Result<Identity, AuthError> {
        // Ours are `t_` + hex: anything else is unknown without a lookup (one with U+0000
        // could not even be looked up on PostgreSQL).
        if ticket.is_empty()
            || ticket.len() > MAX_TICKET_CHARS
            || !ticket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(AuthError::UnknownTicket);
        }
        match self.store.redeem_ticket(ticket, now_ms()).await? {
            Redeemed::Valid(grant) => {
                // Bought with a browser session: only good while the session is.
                if let Some(id) = &grant.web_session {
                    let live = match &self.web_sessions {
                        Some(web) => web.is_live(id).await?,
                        None => false,
                    };
                    if !live {
                        return Err(AuthError::SessionEnded);
                    }
                }
                Ok(Identity {
                    key: Arc::new(grant.user),
                    expires_at: grant.token_exp,
                    web_session: grant.web_session,
                })
            }
            Redeemed::Expired => Err(AuthError::ExpiredTicket),
            Redeemed::Unknown => Err(AuthError::UnknownTicket),
        }
    }

    fn demo(name: &str) -> Result<Identity, AuthError> {
        if !valid_demo_name(name) {
            return Err(AuthError::InvalidDemoUser);
        }
        Ok(Identity {
            key: Arc::new(UserKey {
                user_id: name.to_string(),
                org_id: DEMO_ORG.into(),
            }),
            expires_at: None,
            web_session: None,
        })
    }

    async fn jwt(verifier: &JwtVerifier, token: &str) -> Result<Identity, AuthError> {
        let claims = verifier.verify(token).await?;
        Ok(Identity {
            key: Arc::new(UserKey {
                user_id: claims.sub,
                org_id: claims.org,
            }),
            expires_at: Some(claims.exp),
            web_session: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_names_are_checked() {
        assert!(Authenticator::demo("alice_01-x").is_ok());
        assert!(Authenticator::demo("").is_err());
        assert!(Authenticator::demo("a b").is_err());
        assert!(Authenticator::demo(&"a".repeat(65)).is_err());
    }
}
