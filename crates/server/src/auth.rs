//! Authentication (PROTOCOL.md §1, §7): demo identities, JWTs (verified in `jwt.rs`) and
//! single-use WebSocket tickets (kept in the store). An [`Identity`] can only be produced
//! here, from credentials that checked out.

use std::collections::HashMap;

use apogee_store::{Redeemed, Store, StoreError, TicketGrant, UserKey};
use axum::http::HeaderMap;
use rand::Rng;

use crate::config::{AuthMode, Config};
use crate::jwt::{JwtError, JwtSetupError, JwtVerifier};

pub const DEMO_ORG: &str = "demo";
/// How long a WebSocket ticket can be redeemed (§1).
pub const TICKET_TTL_SECS: u64 = 60;
/// Tickets are `t_` + 64 hex digits; anything much longer is refused without a lookup.
const MAX_TICKET_CHARS: usize = 128;

/// Who is calling. Fields are private: the only way to get one is to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    user_id: String,
    org_id: String,
    /// When the credential stops being valid (unix seconds); `None` for demo identities.
    expires_at: Option<i64>,
}

impl Identity {
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn org_id(&self) -> &str {
        &self.org_id
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
    /// The credentials could not be checked (the store failed); not the caller's fault.
    #[error("credentials could not be checked")]
    Unavailable(#[from] StoreError),
}

impl AuthError {
    /// Whether the caller presented bad credentials (as opposed to the server failing).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, AuthError::Unavailable(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(transparent)]
    Jwt(#[from] JwtSetupError),
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
        Ok(Authenticator { mode, store })
    }

    pub fn is_demo(&self) -> bool {
        matches!(self.mode, Mode::Demo)
    }

    /// The WebSocket handshake. JWT mode: the Bearer header, else `?ticket=`. Demo mode:
    /// `?ticket=`, else `?user=` (or a random demo user). Demo parameters are ignored in JWT
    /// mode.
    pub async fn authenticate_ws(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Result<Identity, AuthError> {
        match &self.mode {
            Mode::Jwt(verifier) => match (bearer(headers), query.get("ticket")) {
                (Some(token), _) => Self::jwt(verifier, token).await,
                (None, Some(ticket)) => self.redeem(ticket).await,
                (None, None) => Err(AuthError::MissingToken),
            },
            Mode::Demo => match (query.get("ticket"), query.get("user")) {
                (Some(ticket), _) => self.redeem(ticket).await,
                (None, Some(name)) => Self::demo(name),
                (None, None) => Ok(Identity {
                    user_id: format!("demo-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
                    org_id: DEMO_ORG.into(),
                    expires_at: None,
                }),
            },
        }
    }

    /// REST calls: Bearer header in JWT mode; `X-Apogee-User` in demo mode.
    pub async fn authenticate_rest(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        match &self.mode {
            Mode::Demo => {
                let name = headers
                    .get("x-apogee-user")
                    .and_then(|v| v.to_str().ok())
                    .ok_or(AuthError::MissingDemoUser)?;
                Self::demo(name)
            }
            Mode::Jwt(verifier) => {
                Self::jwt(verifier, bearer(headers).ok_or(AuthError::MissingToken)?).await
            }
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
            user: UserKey {
                org_id: identity.org_id.clone(),
                user_id: identity.user_id.clone(),
            },
            expires_ms: now + (TICKET_TTL_SECS * 1000) as i64,
            token_exp: identity.expires_at,
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
            Redeemed::Valid(grant) => Ok(Identity {
                user_id: grant.user.user_id,
                org_id: grant.user.org_id,
                expires_at: grant.token_exp,
            }),
            Redeemed::Expired => Err(AuthError::ExpiredTicket),
            Redeemed::Unknown => Err(AuthError::UnknownTicket),
        }
    }

    fn demo(name: &str) -> Result<Identity, AuthError> {
        if !valid_demo_name(name) {
            return Err(AuthError::InvalidDemoUser);
        }
        Ok(Identity {
            user_id: name.to_string(),
            org_id: DEMO_ORG.into(),
            expires_at: None,
        })
    }

    async fn jwt(verifier: &JwtVerifier, token: &str) -> Result<Identity, AuthError> {
        let claims = verifier.verify(token).await?;
        Ok(Identity {
            user_id: claims.sub,
            org_id: claims.org,
            expires_at: Some(claims.exp),
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
