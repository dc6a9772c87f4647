//! OpenID Connect Discovery 1.0: the provider's `/.well-known/openid-configuration`, fetched
//! from the configured issuer and checked before anything in it is used: the `issuer` it
//! states must be the configured one exactly (§4.3), and the endpoints must be https (or
//! http on loopback, like the issuer), so a document served from the wrong place, or a
//! tampered one, cannot point sign-in elsewhere.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::config::checked_url;

/// Largest discovery document accepted; real ones are a few KiB.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("fetching {0} failed: {1}")]
    Fetch(String, String),
    #[error("{0} is not a discovery document: {1}")]
    Shape(String, serde_json::Error),
    #[error("the discovery document names issuer `{found}`, not the configured `{configured}`")]
    Issuer { configured: String, found: String },
    #[error("the discovery document's {0}")]
    Endpoint(String),
}

/// What this server uses of the provider's metadata.
#[derive(Debug, Clone)]
pub struct ProviderMetadata {
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub jwks_uri: Url,
    /// Whether the token endpoint takes the client secret in the request body only
    /// (`client_secret_post` without `client_secret_basic`).
    pub secret_in_body: bool,
}

#[derive(Deserialize)]
struct Document {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

/// `GET url` with a body of at most `max` bytes, as JSON.
pub(crate) async fn fetch_json<T: DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    max: usize,
) -> Result<T, DiscoveryError> {
    let fetch_err = |e: reqwest::Error| DiscoveryError::Fetch(url.to_string(), e.to_string());
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(fetch_err)?
        .error_for_status()
        .map_err(fetch_err)?;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(fetch_err)? {
        if body.len() + chunk.len() > max {
            return Err(DiscoveryError::Fetch(
                url.to_string(),
                format!("document larger than {max} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| DiscoveryError::Shape(url.to_string(), e))
}

/// The discovery document's address for `issuer` (a trailing `/` on the issuer is kept out
/// of the path, as providers that state their issuer with one serve it there too).
pub fn document_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Fetches and checks the provider's metadata.
pub async fn discover(
    client: &reqwest::Client,
    issuer: &str,
) -> Result<ProviderMetadata, DiscoveryError> {
    let doc: Document = fetch_json(client, &document_url(issuer), MAX_DOCUMENT_BYTES).await?;
    check(doc, issuer)
}

fn check(doc: Document, issuer: &str) -> Result<ProviderMetadata, DiscoveryError> {
    if doc.issuer != issuer {
        return Err(DiscoveryError::Issuer {
            configured: issuer.to_string(),
            found: doc.issuer,
        });
    }
    let endpoint = |name: &str, text: &str| {
        checked_url(name, text).map_err(|e| DiscoveryError::Endpoint(e.to_string()))
    };
    if let Some(methods) = &doc.code_challenge_methods_supported
        && !methods.iter().any(|m| m == "S256")
    {
        // Sent anyway: a provider that ignores PKCE still works, one that needs it gets it.
        tracing::warn!(
            ?methods,
            "the provider does not list PKCE S256; sign-in sends it anyway"
        );
    }
    let secret_in_body = doc
        .token_endpoint_auth_methods_supported
        .as_ref()
        .is_some_and(|m| {
            m.iter().any(|m| m == "client_secret_post")
                && !m.iter().any(|m| m == "client_secret_basic")
        });
    Ok(ProviderMetadata {
        authorization_endpoint: endpoint("authorization_endpoint", &doc.authorization_endpoint)?,
        token_endpoint: endpoint("token_endpoint", &doc.token_endpoint)?,
        jwks_uri: endpoint("jwks_uri", &doc.jwks_uri)?,
        secret_in_body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(issuer: &str, endpoints: &str) -> Document {
        Document {
            issuer: issuer.into(),
            authorization_endpoint: format!("{endpoints}/auth"),
            token_endpoint: format!("{endpoints}/token"),
            jwks_uri: format!("{endpoints}/jwks"),
            token_endpoint_auth_methods_supported: None,
            code_challenge_methods_supported: Some(vec!["S256".into()]),
        }
    }

    #[test]
    fn the_stated_issuer_must_be_the_configured_one_exactly() {
        let ok = check(
            doc("https://idp.example", "https://idp.example"),
            "https://idp.example",
        );
        assert_eq!(
            ok.unwrap().token_endpoint.as_str(),
            "https://idp.example/token"
        );
        for (stated, configured) in [
            ("https://idp.example/", "https://idp.example"),
            ("https://evil.example", "https://idp.example"),
            ("https://IDP.example", "https://idp.example"),
        ] {
            assert!(
                matches!(
                    check(doc(stated, "https://idp.example"), configured),
                    Err(DiscoveryError::Issuer { .. })
                ),
                "{stated} vs {configured}"
            );
        }
    }

    #[test]
    fn endpoints_in_clear_text_are_refused_off_loopback() {
        assert!(matches!(
            check(
                doc("https://idp.example", "http://idp.example"),
                "https://idp.example"
            ),
            Err(DiscoveryError::Endpoint(_))
        ));
        assert!(
            check(
                doc("http://127.0.0.1:9", "http://127.0.0.1:9"),
                "http://127.0.0.1:9"
            )
            .is_ok()
        );
    }

    #[test]
    fn the_secret_goes_in_the_body_only_when_basic_is_not_offered() {
        let with = |methods: &[&str]| {
            let mut d = doc("https://idp.example", "https://idp.example");
            d.token_endpoint_auth_methods_supported =
                Some(methods.iter().map(|s| s.to_string()).collect());
            check(d, "https://idp.example").unwrap().secret_in_body
        };
        assert!(with(&["client_secret_post"]));
        assert!(!with(&["client_secret_basic", "client_secret_post"]));
        assert!(!with(&["private_key_jwt"]));
        assert_eq!(
            document_url("https://a.example/"),
            "https://a.example/.well-known/openid-configuration"
        );
    }
}
