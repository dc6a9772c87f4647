//! JWKS documents (RFC 7517): parsing them into verification keys, and keeping the set from a
//! URL fresh. A fetched set is used for `jwt_jwks_cache_secs`; after that, or when a token's
//! `kid` is not in the set, it is fetched again, but never more than once per
//! `jwt_jwks_min_refresh_secs`, so key rotation at the identity provider is picked up without
//! letting garbage `kid`s (or an identity provider that is down) turn every handshake into a
//! fetch. When a fetch fails, the last good set stays in use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

/// Largest JWKS document accepted; real ones are a few KiB.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Most keys kept from one document.
const MAX_KEYS: usize = 100;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS document is not JSON with a `keys` array: {0}")]
    Shape(serde_json::Error),
    #[error("the JWKS document has no usable RS256 or ES256 signing key")]
    NoUsableKey,
    #[error("fetching the JWKS failed: {0}")]
    Fetch(String),
}

/// One verification key: the algorithm it verifies and the `kid` it is picked by.
#[derive(Clone)]
pub struct KeyEntry {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// The signing algorithm a JWK may verify, or `None` when this server does not accept it.
fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(KeyAlgorithm::RS256) if by_type == Algorithm::RS256 => Some(by_type),
        Some(KeyAlgorithm::ES256) if by_type == Algorithm::ES256 => Some(by_type),
        // A key declared for another algorithm is never used for these two.
        Some(_) => None,
    }
}

/// Parses a JWKS document. Keys this server cannot use (other types, encryption keys,
/// malformed entries) are skipped, as identity providers often publish several kinds.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<KeyEntry>, JwksError> {
    let raw: RawSet = serde_json::from_slice(bytes).map_err(JwksError::Shape)?;
    let keys: Vec<KeyEntry> = raw
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter_map(|jwk| {
            let alg = jwk_algorithm(&jwk)?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(KeyEntry {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            })
        })
        .take(MAX_KEYS)
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(keys)
}

struct Cached {
    keys: Arc<Vec<KeyEntry>>,
    fetched_at: Option<Instant>,
}

/// A JWKS fetched from a URL and refreshed as described in the module header.
pub struct RemoteJwks {
    url: String,
    client: reqwest::Client,
    max_age: Duration,
    min_refresh: Duration,
    cached: RwLock<Cached>,
    /// Held while fetching, so concurrent misses cause one fetch; holds the last attempt.
    fetching: Mutex<Option<Instant>>,
}

impl RemoteJwks {
    pub fn new(url: String, max_age: Duration, min_refresh: Duration) -> Result<Self, JwksError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| JwksError::Fetch(e.to_string()))?;
        Ok(Self {
            url,
            client,
            max_age,
            min_refresh,
            cached: RwLock::new(Cached {
                keys: Arc::new(Vec::new()),
                fetched_at: None,
            }),
            fetching: Mutex::new(None),
        })
    }

    /// The current keys, fetching first when the set is stale, or when `want_kid` is not in it
    /// and the last fetch is old enough.
    pub async fn keys(&self, want_kid: Option<&str>) -> Arc<Vec<KeyEntry>> {
        let (keys, fresh) = {
            let c = self.cached.read().await;
            let fresh = c.fetched_at.is_some_and(|t| t.elapsed() < self.max_age);
            (Arc::clone(&c.keys), fresh)
        };
        let missing =
            want_kid.is_some_and(|kid| !keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        if fresh && !missing {
            return keys;
        }
        self.refresh(Instant::now()).await
    }

    /// Fetches unless another task did since `asked_at`, or the last attempt was too recent.
    async fn refresh(&self, asked_at: Instant) -> Arc<Vec<KeyEntry>> {
        let mut last_attempt = self.fetching.lock().await;
        if last_attempt.is_some_and(|t| t >= asked_at) {
            // Another task fetched (or tried) while this one waited for the lock.
            return Arc::clone(&self.cached.read().await.keys);
        }
        if last_attempt.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return Arc::clone(&self.cached.read().await.keys);
        }
        *last_attempt = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "fetched JWKS");
                let keys = Arc::new(keys);
                let mut c = self.cached.write().await;
                c.keys = Arc::clone(&keys);
                c.fetched_at = Some(Instant::now());
                keys
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; keeping the last good keys");
                Arc::clone(&self.cached.read().await.keys)
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<KeyEntry>, JwksError> {
        let fetch_err = |e: reqwest::Error| JwksError::Fetch(e.to_string());
        let mut resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(fetch_err)?
            .error_for_status()
            .map_err(fetch_err)?;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(fetch_err)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksError::Fetch(format!(
                    "document larger than {MAX_JWKS_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_keys_are_kept_and_others_skipped() {
        let doc = br#"{"keys":[
            {"kty":"RSA","kid":"r1","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"sXch","e":"AQAB"},
            {"kty":"OKP","kid":"ed","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"weird"}
        ]}"#;
        let keys = parse_jwks(doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("r1"));
        assert_eq!(keys[0].alg, Algorithm::RS256);
        assert!(matches!(
            parse_jwks(br#"{"keys":[]}"#),
            Err(JwksError::NoUsableKey)
        ));
        assert!(matches!(parse_jwks(b"[]"), Err(JwksError::Shape(_))));
    }
}
