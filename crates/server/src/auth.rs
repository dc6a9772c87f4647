//! Authentication at the handshake (PROTOCOL.md §1, §7): demo identities or HS256 JWTs. An
//! [`Identity`] can only be produced here, from credentials that checked out.

use std::collections::HashMap;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{AuthMode, Config};

/// Seconds of clock skew tolerated on `exp`/`nbf`.
const LEEWAY_SECS: u64 = 5;
pub const DEMO_ORG: &str = "demo";

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
    #[error("missing credentials: send `Authorization: Bearer <JWT>`")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("invalid demo user: `user` must match [A-Za-z0-9_-]{{1,64}}")]
    InvalidDemoUser,
    #[error("missing demo user: send the `X-Apogee-User` header")]
    MissingDemoUser,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    org: Option<String>,
}

struct JwtCheck {
    key: DecodingKey,
    validation: Validation,
}

enum Mode {
    Demo,
    Jwt(Box<JwtCheck>),
}

/// Checks credentials according to the configured mode.
pub struct Authenticator {
    mode: Mode,
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

impl Authenticator {
    pub fn from_config(config: &Config) -> Authenticator {
        let mode = match config.auth {
            AuthMode::Demo => Mode::Demo,
            AuthMode::Jwt => {
                let secret = config.jwt_hs256_secret.clone().unwrap_or_default();
                let mut validation = Validation::new(Algorithm::HS256);
                validation.leeway = LEEWAY_SECS;
                validation.validate_nbf = true;
                validation.set_required_spec_claims(&["exp", "sub"]);
                match &config.jwt_issuer {
                    Some(iss) => validation.set_issuer(&[iss]),
                    None => validation.iss = None,
                }
                match &config.jwt_audience {
                    Some(aud) => validation.set_audience(&[aud]),
                    None => validation.validate_aud = false,
                }
                Mode::Jwt(Box::new(JwtCheck {
                    key: DecodingKey::from_secret(secret.as_bytes()),
                    validation,
                }))
            }
        };
        Authenticator { mode }
    }

    pub fn is_demo(&self) -> bool {
        matches!(self.mode, Mode::Demo)
    }

    /// The WebSocket handshake: Bearer header in JWT mode; `?user=` (or a random demo user)
    /// in demo mode. Demo query parameters are ignored in JWT mode.
    pub fn authenticate_ws(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Result<Identity, AuthError> {
        match &self.mode {
            Mode::Demo => match query.get("user") {
                Some(name) => Self::demo(name),
                None => Ok(Identity {
                    user_id: format!("demo-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
                    org_id: DEMO_ORG.into(),
                    expires_at: None,
                }),
            },
            Mode::Jwt(_) => self.jwt(bearer(headers).ok_or(AuthError::MissingToken)?),
        }
    }

    /// REST calls: Bearer header in JWT mode; `X-Apogee-User` in demo mode.
    pub fn authenticate_rest(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        match &self.mode {
            Mode::Demo => {
                let name = headers
                    .get("x-apogee-user")
                    .and_then(|v| v.to_str().ok())
                    .ok_or(AuthError::MissingDemoUser)?;
                Self::demo(name)
            }
            Mode::Jwt(_) => self.jwt(bearer(headers).ok_or(AuthError::MissingToken)?),
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

    fn jwt(&self, token: &str) -> Result<Identity, AuthError> {
        let Mode::Jwt(check) = &self.mode else {
            return Err(AuthError::MissingToken);
        };
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &check.key, &check.validation)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        let exp = data.claims.get("exp").and_then(serde_json::Value::as_i64);
        let claims: Claims = serde_json::from_value(data.claims)
            .map_err(|e| AuthError::InvalidToken(format!("bad claims: {e}")))?;
        let non_empty = |v: Option<String>, name: &str| {
            v.filter(|s| !s.is_empty() && s.len() <= 256)
                .ok_or_else(|| {
                    AuthError::InvalidToken(format!("claim `{name}` is missing or invalid"))
                })
        };
        Ok(Identity {
            user_id: non_empty(claims.sub, "sub")?,
            org_id: non_empty(claims.org, "org")?,
            expires_at: exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn jwt_auth() -> Authenticator {
        let config = Config::load(None, |k| match k {
            "APOGEE_AUTH" => Some("jwt".into()),
            "APOGEE_JWT_HS256_SECRET" => Some("s3cret".into()),
            _ => None,
        })
        .unwrap();
        Authenticator::from_config(&config)
    }

    fn headers_with(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn valid_hs256_token_gives_identity() {
        let t = encode(
            &Header::default(),
            &json!({"sub":"alice","org":"acme","exp": now() + 60}),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        let id = jwt_auth().authenticate_rest(&headers_with(&t)).unwrap();
        assert_eq!((id.user_id(), id.org_id()), ("alice", "acme"));
    }

    #[test]
    fn rejects_bad_tokens() {
        let a = jwt_auth();
        let key = EncodingKey::from_secret(b"s3cret");
        let missing_org = encode(
            &Header::default(),
            &json!({"sub":"a","exp": now() + 60}),
            &key,
        )
        .unwrap();
        let expired = encode(
            &Header::default(),
            &json!({"sub":"a","org":"o","exp": now() - 60}),
            &key,
        )
        .unwrap();
        let wrong = encode(
            &Header::default(),
            &json!({"sub":"a","org":"o","exp": now() + 60}),
            &EncodingKey::from_secret(b"other"),
        )
        .unwrap();
        for t in [missing_org, expired, wrong, "garbage".to_string()] {
            assert!(a.authenticate_rest(&headers_with(&t)).is_err(), "{t}");
        }
        assert!(a.authenticate_rest(&HeaderMap::new()).is_err());
    }

    #[test]
    fn demo_names_are_checked() {
        assert!(Authenticator::demo("alice_01-x").is_ok());
        assert!(Authenticator::demo("").is_err());
        assert!(Authenticator::demo("a b").is_err());
        assert!(Authenticator::demo(&"a".repeat(65)).is_err());
    }
}
