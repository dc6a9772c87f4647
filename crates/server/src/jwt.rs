//! JWT verification (PROTOCOL.md §1): HS256 with a shared secret, RS256/ES256 with a PEM
//! public key or JWKS keys picked by `kid`. The token's `alg` must be one this server was
//! configured for and must match the key's type, so neither `none` nor an RS256→HS256
//! confusion can pass. `exp` is required, `nbf` checked when present, `iss`/`aud` required and
//! checked when configured, all with [`LEEWAY_SECS`] of clock skew. Claims must have their
//! registered types (RFC 7519 §4.1: `iss` and `sub` strings, `aud` a string or strings, the
//! times numbers): a token that bends them is refused, not interpreted. When several keys
//! share the token's `kid` (a key rotation published both), each is tried.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::Config;
use crate::jwks::{JwksError, KeyEntry, RemoteJwks, parse_jwks};

/// Seconds of clock skew tolerated on `exp`/`nbf`.
pub const LEEWAY_SECS: u64 = 5;
/// Longest token looked at; real ones are well under 4 KiB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Shorter HS256 secrets are accepted with a warning outside production, and refused in it
/// (`config.rs`).
use crate::config::MIN_HS256_SECRET_BYTES as MIN_SECRET_BYTES;
/// Longest `sub`/`org` accepted.
const MAX_CLAIM_CHARS: usize = 256;

/// Why a key source could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum JwtSetupError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is neither an RSA nor an EC (P-256) public key in PEM form")]
    BadPem(String),
    #[error("JWKS file {0}: {1}")]
    BadJwks(String, JwksError),
    #[error("JWKS URL: {0}")]
    Remote(JwksError),
}

/// Why a token was refused (always HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("no key to verify this token (unknown `kid`)")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("claim `{0}` is missing or invalid")]
    Claim(String),
}

/// The claims an [`crate::auth::Identity`] is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    pub sub: String,
    pub org: String,
    /// Unix seconds.
    pub exp: i64,
}

pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    pem: Option<KeyEntry>,
    jwks_file: Vec<KeyEntry>,
    jwks_url: Option<RemoteJwks>,
    issuer: Option<String>,
    audience: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, JwtSetupError> {
    std::fs::read(path).map_err(|e| JwtSetupError::Read(path.display().to_string(), e))
}

fn pem_key(path: &Path) -> Result<KeyEntry, JwtSetupError> {
    let pem = read(path)?;
    let (alg, key) = match DecodingKey::from_rsa_pem(&pem) {
        Ok(k) => (Algorithm::RS256, k),
        Err(_) => match DecodingKey::from_ec_pem(&pem) {
            Ok(k) => (Algorithm::ES256, k),
            Err(_) => return Err(JwtSetupError::BadPem(path.display().to_string())),
        },
    };
    Ok(KeyEntry {
        kid: None,
        alg,
        key,
    })
}

impl JwtVerifier {
    /// Loads every configured key source. A JWKS URL is fetched once here; if that fails the
    /// server still starts (the identity provider may be down) and retries on demand.
    pub async fn from_config(config: &Config) -> Result<JwtVerifier, JwtSetupError> {
        let hs256 = config.jwt_hs256_secret.as_deref().map(|s| {
            if s.len() < MIN_SECRET_BYTES {
                tracing::warn!(
                    bytes = s.len(),
                    "the HS256 secret is short; use at least {MIN_SECRET_BYTES} random bytes"
                );
            }
            DecodingKey::from_secret(s.as_bytes())
        });
        let pem = config
            .jwt_public_key_file
            .as_deref()
            .map(pem_key)
            .transpose()?;
        let jwks_file = match config.jwt_jwks_file.as_deref() {
            Some(path) => parse_jwks(&read(path)?)
                .map_err(|e| JwtSetupError::BadJwks(path.display().to_string(), e))?,
            None => Vec::new(),
        };
        let jwks_url = match &config.jwt_jwks_url {
            Some(url) => {
                if url.starts_with("http://") {
                    // Keys fetched in clear text can be swapped by anyone on the path.
                    tracing::warn!(%url, "the JWKS URL is not https; use it only on a trusted network");
                }
                let remote = RemoteJwks::new(
                    url.clone(),
                    Duration::from_secs(config.jwt_jwks_cache_secs),
                    Duration::from_secs(config.jwt_jwks_min_refresh_secs),
                )
                .map_err(JwtSetupError::Remote)?;
                remote.keys(None).await;
                Some(remote)
            }
            None => None,
        };
        Ok(JwtVerifier {
            hs256,
            pem,
            jwks_file,
            jwks_url,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        })
    }

    /// Whether a token signed with `alg` can be accepted at all with this configuration.
    fn accepts(&self, alg: Algorithm) -> bool {
        match alg {
            Algorithm::HS256 => self.hs256.is_some(),
            Algorithm::RS256 | Algorithm::ES256 => {
                self.jwks_url.is_some()
                    || self.pem.as_ref().is_some_and(|k| k.alg == alg)
                    || self.jwks_file.iter().any(|k| k.alg == alg)
            }
            _ => false,
        }
    }

    /// The keys to try: every JWKS key of the token's algorithm with its `kid`; else the PEM
    /// key of that algorithm; else, for a token without `kid`, the only JWKS key of that
    /// algorithm.
    async fn keys_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Vec<DecodingKey>, JwtError> {
        if alg == Algorithm::HS256 {
            return self
                .hs256
                .clone()
                .map(|k| vec![k])
                .ok_or(JwtError::UnknownKey);
        }
        let remote = match &self.jwks_url {
            Some(r) => r.keys(kid).await,
            None => Arc::new(Vec::new()),
        };
        let jwks = || {
            self.jwks_file
                .iter()
                .chain(remote.iter())
                .filter(|k| k.alg == alg)
        };
        if let Some(kid) = kid {
            let by_kid: Vec<DecodingKey> = jwks()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .map(|k| k.key.clone())
                .collect();
            if !by_kid.is_empty() {
                return Ok(by_kid);
            }
        }
        if let Some(k) = self.pem.as_ref().filter(|k| k.alg == alg) {
            return Ok(vec![k.key.clone()]);
        }
        if kid.is_none() {
            let mut it = jwks();
            if let (Some(only), None) = (it.next(), it.next()) {
                return Ok(vec![only.key.clone()]);
            }
        }
        Err(JwtError::UnknownKey)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        v
    }

    pub async fn verify(&self, token: &str) -> Result<VerifiedClaims, JwtError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Malformed);
        }
        // `alg: none` and unknown algorithms fail here: they are not in jsonwebtoken's enum.
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if !self.accepts(header.alg) {
            return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
        }
        let validation = self.validation(header.alg);
        let mut verified = Err(JwtError::Signature);
        for key in self.keys_for(header.alg, header.kid.as_deref()).await? {
            verified =
                jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).map_err(|e| {
                    match e.kind() {
                        ErrorKind::InvalidSignature => JwtError::Signature,
                        ErrorKind::ExpiredSignature => JwtError::Expired,
                        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                        ErrorKind::InvalidIssuer => JwtError::Issuer,
                        ErrorKind::InvalidAudience => JwtError::Audience,
                        ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
                            JwtError::Claim(c.clone())
                        }
                        ErrorKind::InvalidAlgorithm => {
                            JwtError::Algorithm(format!("{:?}", header.alg))
                        }
                        _ => JwtError::Malformed,
                    }
                });
            // Only a signature that does not match says another key of the same `kid` may.
            if !matches!(verified, Err(JwtError::Signature)) {
                break;
            }
        }
        let data = verified?;
        check_claim_types(&data.claims)?;
        let claim = |name: &str| {
            data.claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .filter(|s| {
                    !s.is_empty()
                        && s.chars().count() <= MAX_CLAIM_CHARS
                        && !s.chars().any(char::is_control)
                })
                .map(str::to_string)
                .ok_or_else(|| JwtError::Claim(name.to_string()))
        };
        // Clamped so an absurd `exp` cannot overflow time arithmetic later.
        let exp = data
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| JwtError::Claim("exp".into()))?
            .clamp(0.0, i64::MAX as f64) as i64;
        Ok(VerifiedClaims {
            sub: claim("sub")?,
            org: claim("org")?,
            exp,
        })
    }
}

/// Refuses registered claims of the wrong JSON type, whatever the validation configured:
/// `iss`, `sub` strings; `aud` a string or an array of strings; `exp`, `nbf`, `iat` numbers.
/// (jsonwebtoken reads an `iss` array as a set of issuers; no issuer sends one.)
fn check_claim_types(claims: &serde_json::Value) -> Result<(), JwtError> {
    use serde_json::Value;
    let Value::Object(map) = claims else {
        return Err(JwtError::Malformed);
    };
    for (name, value) in map {
        let ok = match name.as_str() {
            "iss" | "sub" | "org" | "jti" => value.is_string(),
            "aud" => match value {
                Value::String(_) => true,
                Value::Array(items) => items.iter().all(Value::is_string),
                _ => false,
            },
            "exp" | "nbf" | "iat" => value.is_number(),
            _ => true,
        };
        if !ok {
            return Err(JwtError::Claim(name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "s3cret-s3cret-s3cret";

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    async fn verifier(vars: &[(&str, String)]) -> JwtVerifier {
        let config = Config::load(None, |k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.clone())
                .or_else(|| (k == "APOGEE_AUTH").then(|| "jwt".to_string()))
        })
        .unwrap();
        JwtVerifier::from_config(&config).await.unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn hs(claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn issuer_and_audience_are_required_when_configured() {
        let v = verifier(&[
            ("APOGEE_JWT_HS256_SECRET", SECRET.into()),
            ("APOGEE_JWT_ISSUER", "https://idp".into()),
            ("APOGEE_JWT_AUDIENCE", "apogee".into()),
        ])
        .await;
        let exp = now() + 60;
        let ok = hs(json!({"sub":"a","org":"o","exp":exp,"iss":"https://idp","aud":"apogee"}));
        assert_eq!(v.verify(&ok).await.unwrap().sub, "a");
        let cases = [
            (
                json!({"sub":"a","org":"o","exp":exp,"aud":"apogee"}),
                JwtError::Claim("iss".into()),
            ),
            (
                json!({"sub":"a","org":"o","exp":exp,"iss":"https://idp"}),
                JwtError::Claim("aud".into()),
            ),
            (
                json!({"sub":"a","org":"o","exp":exp,"iss":"https://evil","aud":"apogee"}),
                JwtError::Issuer,
            ),
            (
                json!({"sub":"a","org":"o","exp":exp,"iss":"https://idp","aud":"other"}),
                JwtError::Audience,
            ),
        ];
        for (claims, want) in cases {
            assert_eq!(
                v.verify(&hs(claims.clone())).await.unwrap_err(),
                want,
                "{claims}"
            );
        }
    }

    #[tokio::test]
    async fn time_claims_have_a_small_leeway() {
        let v = verifier(&[("APOGEE_JWT_HS256_SECRET", SECRET.into())]).await;
        let t = now();
        let slightly_late = hs(json!({"sub":"a","org":"o","exp": t - 1}));
        assert!(v.verify(&slightly_late).await.is_ok(), "within leeway");
        let expired = hs(json!({"sub":"a","org":"o","exp": t - 120}));
        assert_eq!(v.verify(&expired).await.unwrap_err(), JwtError::Expired);
        let early = hs(json!({"sub":"a","org":"o","exp": t + 600, "nbf": t + 120}));
        assert_eq!(v.verify(&early).await.unwrap_err(), JwtError::NotYetValid);
        let far = hs(json!({"sub":"a","org":"o","exp": i64::MAX}));
        assert_eq!(v.verify(&far).await.unwrap().exp, i64::MAX);
        let absurd = hs(json!({"sub":"a","org":"o","exp": 1e300}));
        assert_eq!(
            v.verify(&absurd).await.unwrap_err(),
            JwtError::Claim("exp".into())
        );
    }

    #[tokio::test]
    async fn claims_of_the_wrong_type_are_refused() {
        let v = verifier(&[
            ("APOGEE_JWT_HS256_SECRET", SECRET.into()),
            ("APOGEE_JWT_ISSUER", "https://idp".into()),
        ])
        .await;
        let exp = now() + 60;
        let ok = json!({"sub":"a","org":"o","exp":exp,"iss":"https://idp","aud":["x","y"],"iat":1});
        assert!(v.verify(&hs(ok)).await.is_ok());
        let cases = [
            (
                json!({"sub":"a","org":"o","exp":exp,"iss":["https://idp"]}),
                "iss",
            ),
            (
                json!({"sub":"a","org":"o","exp":exp,"iss":"https://idp","aud":[1]}),
                "aud",
            ),
            (
                json!({"sub":"a","org":"o","exp":exp,"iss":"https://idp","nbf":"0"}),
                "nbf",
            ),
            (
                json!({"sub":"a\u{0}b","org":"o","exp":exp,"iss":"https://idp"}),
                "sub",
            ),
            (
                json!({"sub":"a","org":"o\u{1b}","exp":exp,"iss":"https://idp"}),
                "org",
            ),
        ];
        for (claims, name) in cases {
            assert_eq!(
                v.verify(&hs(claims.clone())).await.unwrap_err(),
                JwtError::Claim(name.into()),
                "{claims}"
            );
        }
        // jsonwebtoken itself refuses a `sub` that is not a string.
        let array_sub = json!({"sub":["a"],"org":"o","exp":exp,"iss":"https://idp"});
        assert!(v.verify(&hs(array_sub)).await.is_err());
        // Without an issuer configured, an array `iss` is still not a string.
        let open = verifier(&[("APOGEE_JWT_HS256_SECRET", SECRET.into())]).await;
        let array_iss = json!({"sub":"a","org":"o","exp":exp,"iss":["x"]});
        assert_eq!(
            open.verify(&hs(array_iss)).await.unwrap_err(),
            JwtError::Claim("iss".into())
        );
    }

    #[tokio::test]
    async fn every_key_sharing_a_kid_is_tried() {
        // A rotation that published the new key under the old `kid`, the old key first.
        let key = |file: &str, kid: &str| {
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(fixture(file)).unwrap()).unwrap();
            let mut k = doc["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"] == kid)
                .unwrap()
                .clone();
            k["kid"] = json!("shared");
            k
        };
        let doc = json!({"keys": [key("jwks_rotated.json", "rsa-2"), key("jwks.json", "rsa-1")]});
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        let v = verifier(&[("APOGEE_JWT_JWKS_FILE", path.display().to_string())]).await;
        let sign = |pem: &str| {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some("shared".into());
            let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture(pem)).unwrap()).unwrap();
            encode(
                &header,
                &json!({"sub":"a","org":"o","exp": now() + 60}),
                &key,
            )
            .unwrap()
        };
        assert_eq!(v.verify(&sign("rsa_private.pem")).await.unwrap().sub, "a");
        assert_eq!(
            v.verify(&sign("rsa_other_private.pem")).await.unwrap().sub,
            "a"
        );
        // A key under the kid does not make any signature pass.
        let mut forged = sign("rsa_private.pem");
        forged.truncate(forged.len() - 4);
        forged.push_str("AAAA");
        assert_eq!(v.verify(&forged).await.unwrap_err(), JwtError::Signature);
    }

    #[tokio::test]
    async fn a_public_key_used_as_hmac_secret_is_refused() {
        // The classic confusion: an RS256 server fed an HS256 token signed with its public key.
        let public_pem = std::fs::read(fixture("rsa_public.pem")).unwrap();
        let v = verifier(&[("APOGEE_JWT_PUBLIC_KEY_FILE", fixture("rsa_public.pem"))]).await;
        let forged = encode(
            &Header::default(),
            &json!({"sub":"a","org":"o","exp": now() + 60}),
            &EncodingKey::from_secret(&public_pem),
        )
        .unwrap();
        assert_eq!(
            v.verify(&forged).await.unwrap_err(),
            JwtError::Algorithm("HS256".into())
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_key_stops_the_start() {
        let config = Config::load(None, |k| match k {
            "APOGEE_AUTH" => Some("jwt".into()),
            "APOGEE_JWT_PUBLIC_KEY_FILE" => Some(fixture("jwks.json")),
            _ => None,
        })
        .unwrap();
        assert!(matches!(
            JwtVerifier::from_config(&config).await,
            Err(JwtSetupError::BadPem(_))
        ));
    }
}
