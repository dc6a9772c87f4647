//! Who signed in, from the claims of a verified ID token: the user id (the configured claim,
//! `sub` by default), the org (by the configured [`OrgMapping`]), and the name and email the
//! top bar shows. An account the mapping has no org for is refused, never put in a default
//! org: the org decides whose usage a person sees.

use serde_json::{Map, Value};

use super::config::OrgMapping;

/// Longest user or org id accepted (as for JWT claims).
const MAX_ID_CHARS: usize = 256;
/// Longest display name kept.
const MAX_NAME_CHARS: usize = 200;

/// A person the provider signed in, mapped to this server's user and org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub user_id: String,
    pub org_id: String,
    pub name: String,
    pub email: Option<String>,
}

/// Why a verified account cannot sign in here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonError {
    #[error("the ID token has no usable `{0}` claim to name the user")]
    User(String),
    #[error("the ID token has no usable `{0}` claim to name the org")]
    OrgClaim(String),
    #[error("`{claim}` value `{value}` is not mapped to an org")]
    Unmapped { claim: String, value: String },
    #[error("the account's email is missing or not verified, so its domain cannot name an org")]
    UnverifiedEmail,
}

/// A string claim usable as an id: non-empty, bounded, no control characters.
fn id_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| {
            !s.is_empty() && s.chars().count() <= MAX_ID_CHARS && !s.chars().any(char::is_control)
        })
        .map(str::to_string)
}

/// `email_verified` as providers send it: a boolean, or (some) the string `"true"`.
fn email_verified(claims: &Map<String, Value>) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// Maps verified claims to a [`Person`].
pub fn person(
    claims: &Map<String, Value>,
    user_claim: &str,
    mapping: &OrgMapping,
) -> Result<Person, PersonError> {
    let user_id =
        id_claim(claims, user_claim).ok_or_else(|| PersonError::User(user_claim.into()))?;
    let email = id_claim(claims, "email");
    let org_id = match mapping {
        OrgMapping::Fixed(org) => org.clone(),
        OrgMapping::Claim { claim, map } => {
            let value =
                id_claim(claims, claim).ok_or_else(|| PersonError::OrgClaim(claim.clone()))?;
            match map {
                None => value,
                Some(map) => map
                    .get(&value.to_ascii_lowercase())
                    .cloned()
                    .ok_or_else(|| PersonError::Unmapped {
                        claim: claim.clone(),
                        value,
                    })?,
            }
        }
        OrgMapping::EmailDomain(map) => {
            let email = email
                .as_deref()
                .filter(|_| email_verified(claims))
                .ok_or(PersonError::UnverifiedEmail)?;
            let domain = email
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default();
            map.get(&domain)
                .cloned()
                .ok_or_else(|| PersonError::Unmapped {
                    claim: "email domain".into(),
                    value: domain,
                })?
        }
    };
    let name = ["name", "preferred_username", "email"]
        .iter()
        .find_map(|c| id_claim(claims, c))
        .unwrap_or_else(|| user_id.clone())
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    Ok(Person {
        user_id,
        org_id,
        name,
        email,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_mapping_names_the_org_or_refuses() {
        let fixed = OrgMapping::Fixed("acme".into());
        let tid = OrgMapping::Claim {
            claim: "tid".into(),
            map: None,
        };
        let hd = OrgMapping::Claim {
            claim: "hd".into(),
            map: Some(map(&[("acme.com", "acme")])),
        };
        let domains = OrgMapping::EmailDomain(map(&[("acme.com", "acme"), ("labs.io", "labs")]));
        let cases: Vec<(&str, Value, &OrgMapping, Result<&str, PersonError>)> = vec![
            ("fixed", json!({"sub": "u1"}), &fixed, Ok("acme")),
            (
                "claim as is",
                json!({"sub": "u1", "tid": "T-9"}),
                &tid,
                Ok("T-9"),
            ),
            (
                "claim missing",
                json!({"sub": "u1"}),
                &tid,
                Err(PersonError::OrgClaim("tid".into())),
            ),
            (
                "claim not a string",
                json!({"sub": "u1", "tid": 7}),
                &tid,
                Err(PersonError::OrgClaim("tid".into())),
            ),
            (
                "claim mapped",
                json!({"sub": "u1", "hd": "ACME.com"}),
                &hd,
                Ok("acme"),
            ),
            (
                "claim unmapped",
                json!({"sub": "u1", "hd": "evil.com"}),
                &hd,
                Err(PersonError::Unmapped {
                    claim: "hd".into(),
                    value: "evil.com".into(),
                }),
            ),
            (
                "verified domain",
                json!({"sub": "u1", "email": "Dana@Labs.io", "email_verified": true}),
                &domains,
                Ok("labs"),
            ),
            (
                "verified as a string",
                json!({"sub": "u1", "email": "d@acme.com", "email_verified": "true"}),
                &domains,
                Ok("acme"),
            ),
            (
                "unverified email",
                json!({"sub": "u1", "email": "d@acme.com", "email_verified": false}),
                &domains,
                Err(PersonError::UnverifiedEmail),
            ),
            (
                "no email_verified",
                json!({"sub": "u1", "email": "d@acme.com"}),
                &domains,
                Err(PersonError::UnverifiedEmail),
            ),
            (
                "unmapped domain",
                json!({"sub": "u1", "email": "d@acme.com.evil.io", "email_verified": true}),
                &domains,
                Err(PersonError::Unmapped {
                    claim: "email domain".into(),
                    value: "acme.com.evil.io".into(),
                }),
            ),
        ];
        for (what, c, mapping, want) in cases {
            let got = person(&claims(c), "sub", mapping).map(|p| p.org_id);
            assert_eq!(got, want.map(str::to_string), "{what}");
        }
    }

    #[test]
    fn the_user_claim_and_the_display_name() {
        let fixed = OrgMapping::Fixed("acme".into());
        let p = person(
            &claims(
                json!({"sub": "u1", "oid": "o-1", "name": "Dana Scully", "email": "d@acme.com"}),
            ),
            "oid",
            &fixed,
        )
        .unwrap();
        assert_eq!(
            p,
            Person {
                user_id: "o-1".into(),
                org_id: "acme".into(),
                name: "Dana Scully".into(),
                email: Some("d@acme.com".into()),
            }
        );
        let by_username = person(
            &claims(json!({"sub": "u1", "preferred_username": "dana"})),
            "sub",
            &fixed,
        );
        assert_eq!(by_username.unwrap().name, "dana");
        assert_eq!(
            person(&claims(json!({"sub": "u1"})), "sub", &fixed)
                .unwrap()
                .name,
            "u1"
        );
        for bad in [
            json!({}),
            json!({"sub": ""}),
            json!({"sub": "a\u{7}b"}),
            json!({"sub": "x".repeat(300)}),
        ] {
            assert_eq!(
                person(&claims(bad.clone()), "sub", &fixed),
                Err(PersonError::User("sub".into())),
                "{bad}"
            );
        }
        let long = person(
            &claims(json!({"sub": "u1", "name": "n".repeat(250)})),
            "sub",
            &fixed,
        )
        .unwrap();
        assert_eq!(long.name.chars().count(), MAX_NAME_CHARS);
    }
}
