//! ID token validation (OpenID Connect Core 1.0 §3.1.3.7), with jsonwebtoken doing the
//! cryptography: the signature by one of the provider's keys (RS256 or ES256, picked by `kid`,
//! the algorithm bound to the key's type so `none` and HS256 confusion cannot pass), `iss`
//! exactly the issuer, `aud` containing our client id, `azp` (when present) our client id,
//! `exp`/`iat`/`sub` present, `exp`/`nbf` within [`LEEWAY_SECS`], and the `nonce` the
//! sign-in sent, so a token minted for another sign-in cannot be replayed into this one.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::jwks::KeyEntry;
use crate::jwt::LEEWAY_SECS;

/// Longest ID token looked at; real ones are a few KiB.
const MAX_TOKEN_BYTES: usize = 32 * 1024;

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("malformed ID token")]
    Malformed,
    #[error("ID token algorithm {0} is not accepted (RS256, ES256)")]
    Algorithm(String),
    #[error("no provider key verifies this ID token (unknown `kid`)")]
    UnknownKey,
    #[error("bad ID token signature")]
    Signature,
    #[error("ID token expired")]
    Expired,
    #[error("ID token not yet valid")]
    NotYetValid,
    #[error("ID token from another issuer")]
    Issuer,
    #[error("ID token for another client (`aud`)")]
    Audience,
    #[error("ID token authorised for another client (`azp`)")]
    AuthorizedParty,
    #[error("ID token nonce does not match this sign-in")]
    Nonce,
    #[error("ID token claim `{0}` is missing or invalid")]
    Claim(String),
}

/// What this sign-in expects of its ID token.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
}

/// The signing algorithm and `kid` of a token, before any key is looked up.
pub fn header(token: &str) -> Result<(Algorithm, Option<String>), IdTokenError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(IdTokenError::Malformed);
    }
    // `alg: none` and unknown algorithms fail here: they are not in jsonwebtoken's enum.
    let header = jsonwebtoken::decode_header(token).map_err(|_| IdTokenError::Malformed)?;
    match header.alg {
        Algorithm::RS256 | Algorithm::ES256 => Ok((header.alg, header.kid)),
        other => Err(IdTokenError::Algorithm(format!("{other:?}"))),
    }
}

fn validation(alg: Algorithm, expected: &Expected<'_>) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECS;
    v.validate_nbf = true;
    v.set_issuer(&[expected.issuer]);
    v.set_audience(&[expected.client_id]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v
}

fn refusal(e: &jsonwebtoken::errors::Error, alg: Algorithm) -> IdTokenError {
    match e.kind() {
        ErrorKind::InvalidSignature => IdTokenError::Signature,
        ErrorKind::ExpiredSignature => IdTokenError::Expired,
        ErrorKind::ImmatureSignature => IdTokenError::NotYetValid,
        ErrorKind::InvalidIssuer => IdTokenError::Issuer,
        ErrorKind::InvalidAudience => IdTokenError::Audience,
        ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
            IdTokenError::Claim(c.clone())
        }
        ErrorKind::InvalidAlgorithm => IdTokenError::Algorithm(format!("{alg:?}")),
        _ => IdTokenError::Malformed,
    }
}

/// Verifies `token` (whose header said `alg` and `kid`) against the provider's `keys` and
/// returns its claims. Every key of the token's algorithm with its `kid` is tried (providers
/// reuse a `kid` across rotations now and then); a token without `kid` tries every key of
/// its algorithm.
pub fn verify(
    token: &str,
    alg: Algorithm,
    kid: Option<&str>,
    keys: &[KeyEntry],
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, IdTokenError> {
    let validation = validation(alg, expected);
    let mut tried = false;
    for key in keys
        .iter()
        .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
    {
        tried = true;
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
            Ok(data) => return check_claims(data.claims, expected),
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
            Err(e) => return Err(refusal(&e, alg)),
        }
    }
    Err(if tried {
        IdTokenError::Signature
    } else {
        IdTokenError::UnknownKey
    })
}

/// What jsonwebtoken does not check: `iat` present, `sub` a string, `azp`, `nonce`.
fn check_claims(
    claims: Map<String, Value>,
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, IdTokenError> {
    if !claims.get("iat").is_some_and(Value::is_number) {
        return Err(IdTokenError::Claim("iat".into()));
    }
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(IdTokenError::Claim("sub".into()));
    }
    let audiences = match claims.get("aud") {
        Some(Value::Array(a)) => a.len(),
        _ => 1,
    };
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == expected.client_id => {}
        Some(_) => return Err(IdTokenError::AuthorizedParty),
        // §3.1.3.7: with several audiences, `azp` says which client the token was for.
        None if audiences > 1 => return Err(IdTokenError::AuthorizedParty),
        None => {}
    }
    let nonce = claims
        .get("nonce")
        .and_then(Value::as_str)
        .ok_or(IdTokenError::Nonce)?;
    if !bool::from(nonce.as_bytes().ct_eq(expected.nonce.as_bytes())) {
        return Err(IdTokenError::Nonce);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, EncodingKey, Header, encode};
    use serde_json::json;

    const ISSUER: &str = "https://idp.example";
    const CLIENT: &str = "apogee";
    const NONCE: &str = "n-0123456789";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn keys() -> Vec<KeyEntry> {
        vec![
            KeyEntry {
                kid: Some("rsa-1".into()),
                alg: Algorithm::RS256,
                key: DecodingKey::from_rsa_pem(&fixture("rsa_public.pem")).unwrap(),
            },
            KeyEntry {
                kid: Some("ec-1".into()),
                alg: Algorithm::ES256,
                key: DecodingKey::from_ec_pem(&fixture("ec_public.pem")).unwrap(),
            },
        ]
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn good_claims() -> Value {
        json!({"iss": ISSUER, "aud": CLIENT, "sub": "u-1", "exp": now() + 300,
               "iat": now(), "nonce": NONCE, "email": "dana@acme.test"})
    }

    fn sign(alg: Algorithm, kid: Option<&str>, private: &str, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        let pem = fixture(private);
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
            _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
        };
        encode(&header, claims, &key).unwrap()
    }

    fn check(token: &str) -> Result<Map<String, Value>, IdTokenError> {
        let (alg, kid) = header(token)?;
        let expected = Expected {
            issuer: ISSUER,
            client_id: CLIENT,
            nonce: NONCE,
        };
        verify(token, alg, kid.as_deref(), &keys(), &expected)
    }

    fn with(changes: Value) -> Value {
        let mut claims = good_claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    #[test]
    fn a_token_from_the_provider_for_this_sign_in_is_accepted() {
        let rs = sign(
            Algorithm::RS256,
            Some("rsa-1"),
            "rsa_private.pem",
            &good_claims(),
        );
        assert_eq!(check(&rs).unwrap()["email"], "dana@acme.test");
        let es = sign(
            Algorithm::ES256,
            Some("ec-1"),
            "ec_private.pem",
            &good_claims(),
        );
        assert!(check(&es).is_ok());
        let no_kid = sign(Algorithm::RS256, None, "rsa_private.pem", &good_claims());
        assert!(
            check(&no_kid).is_ok(),
            "no kid: every key of the algorithm is tried"
        );
        let several = with(json!({"aud": [CLIENT, "other"], "azp": CLIENT}));
        assert!(
            check(&sign(
                Algorithm::RS256,
                Some("rsa-1"),
                "rsa_private.pem",
                &several
            ))
            .is_ok()
        );
    }

    #[test]
    fn every_claim_rule_refuses_its_case() {
        let t = now();
        let cases = [
            (json!({"iss": "https://evil.example"}), IdTokenError::Issuer),
            (json!({"iss": null}), IdTokenError::Claim("iss".into())),
            (json!({"aud": "other-client"}), IdTokenError::Audience),
            (json!({"aud": null}), IdTokenError::Claim("aud".into())),
            (
                json!({"aud": ["other", CLIENT]}),
                IdTokenError::AuthorizedParty,
            ),
            (json!({"azp": "other"}), IdTokenError::AuthorizedParty),
            (json!({"exp": t - 60}), IdTokenError::Expired),
            (json!({"exp": null}), IdTokenError::Claim("exp".into())),
            (json!({"iat": null}), IdTokenError::Claim("iat".into())),
            (json!({"nbf": t + 120}), IdTokenError::NotYetValid),
            (json!({"sub": null}), IdTokenError::Claim("sub".into())),
            (json!({"sub": ""}), IdTokenError::Claim("sub".into())),
            (json!({"nonce": "n-other"}), IdTokenError::Nonce),
            (json!({"nonce": null}), IdTokenError::Nonce),
        ];
        for (change, want) in cases {
            let token = sign(
                Algorithm::RS256,
                Some("rsa-1"),
                "rsa_private.pem",
                &with(change.clone()),
            );
            assert_eq!(check(&token).unwrap_err(), want, "{change}");
        }
    }

    #[test]
    fn keys_and_algorithms_are_checked() {
        let claims = good_claims();
        // Signed by a key the provider does not publish, under a published kid.
        let forged = sign(
            Algorithm::RS256,
            Some("rsa-1"),
            "rsa_other_private.pem",
            &claims,
        );
        assert_eq!(check(&forged).unwrap_err(), IdTokenError::Signature);
        let unknown = sign(Algorithm::RS256, Some("rsa-9"), "rsa_private.pem", &claims);
        assert_eq!(check(&unknown).unwrap_err(), IdTokenError::UnknownKey);
        // An RSA kid with an EC algorithm finds no key.
        let mixed = sign(Algorithm::ES256, Some("rsa-1"), "ec_private.pem", &claims);
        assert_eq!(check(&mixed).unwrap_err(), IdTokenError::UnknownKey);
        let hs = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&fixture("rsa_public.pem")),
        )
        .unwrap();
        assert_eq!(
            check(&hs).unwrap_err(),
            IdTokenError::Algorithm("HS256".into())
        );
        let none = format!(
            "{}.{}.",
            base64url(br#"{"alg":"none","typ":"JWT"}"#),
            base64url(claims.to_string().as_bytes())
        );
        assert_eq!(check(&none).unwrap_err(), IdTokenError::Malformed);
        assert_eq!(check("").unwrap_err(), IdTokenError::Malformed);
        assert_eq!(
            check(&"a".repeat(40_000)).unwrap_err(),
            IdTokenError::Malformed
        );
    }

    fn base64url(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
