//! The OpenID Connect settings: the `[oidc]` table of the config file overridden by
//! `APOGEE_OIDC_*` variables, checked once at start. Sign-in is on when an issuer is set.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use crate::config::{ConfigError, Environment};

/// How long a browser session lasts unless configured (12 hours: a working day).
pub const DEFAULT_SESSION_TTL_SECS: u64 = 12 * 3600;
/// The longest session accepted (30 days).
const MAX_SESSION_TTL_SECS: u64 = 30 * 24 * 3600;
/// The scopes asked for unless configured.
const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];
/// Where the provider sends the browser back; the UI and its API live at the origin's root.
pub const CALLBACK_PATH: &str = "/auth/callback";

/// A value that must not reach logs (`Debug` prints `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which organisation a person who signed in belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgMapping {
    /// Everyone the provider signs in belongs to this org (a provider, realm or tenant of one
    /// company).
    Fixed(String),
    /// The org is this claim's value (`org_id`, `tid`, `hd`, …); with a map, only the mapped
    /// values may sign in, each to its org. Map keys are lower case.
    Claim {
        claim: String,
        map: Option<BTreeMap<String, String>>,
    },
    /// The org comes from the domain of the person's verified email; unmapped domains may not
    /// sign in. Keys are lower-case domains.
    EmailDomain(BTreeMap<String, String>),
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Exactly as the provider's discovery document states it.
    pub issuer: String,
    pub client_id: String,
    /// `None` for a public client (PKCE only).
    pub client_secret: Option<Secret>,
    /// This server's `/auth/callback` as the browser reaches it; its origin is the one the
    /// UI is served from (cookies, CSRF and WebSocket `Origin` checks follow it).
    pub redirect_url: Url,
    /// Always starts with `openid`.
    pub scopes: Vec<String>,
    /// The name on the sign-in button.
    pub provider_name: String,
    pub org: OrgMapping,
    /// The claim that names the user (`sub` unless configured).
    pub user_claim: String,
    pub session_ttl_secs: u64,
    /// Whether the UI also offers the paste-a-token form (a developer setting).
    pub token_form: bool,
}

/// The `[oidc]` table of the config file; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    redirect_url: Option<String>,
    /// Space- or comma-separated.
    scopes: Option<String>,
    provider_name: Option<String>,
    org: Option<String>,
    org_claim: Option<String>,
    org_map: Option<BTreeMap<String, String>>,
    user_claim: Option<String>,
    session_ttl_secs: Option<u64>,
    token_form: Option<bool>,
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// `a=b, c=d` as a map with lower-case keys.
fn parse_map(name: &str, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut map = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .ok_or_else(|| {
                invalid(format!(
                    "{name}: `{pair}` is not `value=org` (e.g. example.com=acme)"
                ))
            })?;
        map.insert(key.to_ascii_lowercase(), value.to_string());
    }
    Ok(map)
}

fn parse_bool(name: &str, text: &str) -> Result<bool, ConfigError> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(format!("{name}: `{text}` is not true or false"))),
    }
}

/// Whether `url` is a loopback address (where plain `http` is acceptable: development, tests).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An absolute `https` URL, or `http` on loopback only: anything else would carry codes,
/// tokens and cookies in clear text.
pub(crate) fn checked_url(name: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| invalid(format!("{name}: `{text}`: {e}")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(invalid(format!(
            "{name}: `{text}` must use https (plain http only on loopback, for development)"
        ))),
        _ => Err(invalid(format!("{name}: `{text}` is not an http(s) URL"))),
    }
}

/// The button's default label, from well-known issuers.
fn provider_name(issuer: &Url) -> String {
    let host = issuer.host_str().unwrap_or_default().to_ascii_lowercase();
    if host == "accounts.google.com" {
        "Google".into()
    } else if host == "login.microsoftonline.com" {
        "Microsoft".into()
    } else if host.ends_with(".okta.com") || host.ends_with(".oktapreview.com") {
        "Okta".into()
    } else if issuer.path().contains("/realms/") {
        "Keycloak".into()
    } else {
        host
    }
}

impl OidcSettings {
    /// Applies the `APOGEE_OIDC_*` variables read through `var` over the file's table.
    pub fn overlay(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = |name: &str| var(name);
        if let Some(v) = text("APOGEE_OIDC_ISSUER") {
            self.issuer = Some(v);
        }
        if let Some(v) = text("APOGEE_OIDC_CLIENT_ID") {
            self.client_id = Some(v);
        }
        if let Some(v) = text("APOGEE_OIDC_CLIENT_SECRET") {
            self.client_secret = Some(v);
        }
        if let Some(v) = text("APOGEE_OIDC_CLIENT_SECRET_FILE") {
            self.client_secret_file = Some(v.into());
        }
        if let Some(v) = text("APOGEE_OIDC_REDIRECT_URL") {
            self.redirect_url = Some(v);
        }
        if let Some(v) = text("APOGEE_OIDC_SCOPES") {
            self.scopes = Some(v);
        }
        if let Some(v) = text("APOGEE_OIDC_PROVIDER_NAME") {
            self.provider_name = Some(v);
        }
        if let Some(v) = text("APOGEE_OIDC_ORG") {
            self.org = Some(v);
        }
        if let Some(v) = text("APOGEE_OIDC_ORG_CLAIM") {
            self.org_claim = Some(v);
        }
        if let Some(v) = text("APOGEE_OIDC_ORG_MAP") {
            self.org_map = Some(parse_map("APOGEE_OIDC_ORG_MAP", &v)?);
        }
        if let Some(v) = text("APOGEE_OIDC_USER_CLAIM") {
            self.user_claim = Some(v);
        }
        if let Some(v) = text("APOGEE_OIDC_SESSION_TTL_SECS") {
            self.session_ttl_secs = Some(v.parse().map_err(|_| {
                invalid(format!(
                    "APOGEE_OIDC_SESSION_TTL_SECS: `{v}` is not a valid number"
                ))
            })?);
        }
        if let Some(v) = text("APOGEE_OIDC_TOKEN_FORM") {
            self.token_form = Some(parse_bool("APOGEE_OIDC_TOKEN_FORM", &v)?);
        }
        Ok(self)
    }

    /// Checks the settings; `None` when no issuer is set (sign-in through a provider is off).
    /// `addr` is the listen address (the default redirect URL on loopback).
    pub fn resolve(
        self,
        addr: SocketAddr,
        env: Environment,
    ) -> Result<Option<OidcConfig>, ConfigError> {
        let Some(issuer) = self.issuer.filter(|s| !s.is_empty()) else {
            let stray = self.client_id.is_some()
                || self.client_secret.is_some()
                || self.client_secret_file.is_some()
                || self.redirect_url.is_some()
                || self.org.is_some()
                || self.org_claim.is_some()
                || self.org_map.is_some();
            if stray {
                return Err(invalid(
                    "OpenID Connect settings are set but APOGEE_OIDC_ISSUER is not",
                ));
            }
            return Ok(None);
        };
        let issuer_url = checked_url("APOGEE_OIDC_ISSUER", &issuer)?;
        let client_id = self
            .client_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("APOGEE_OIDC_CLIENT_ID is required with APOGEE_OIDC_ISSUER"))?;
        let client_secret = match (self.client_secret, self.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "set APOGEE_OIDC_CLIENT_SECRET or APOGEE_OIDC_CLIENT_SECRET_FILE, not both",
                ));
            }
            (Some(s), None) => Some(s),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| {
                        invalid(format!(
                            "APOGEE_OIDC_CLIENT_SECRET_FILE: cannot read {}: {e}",
                            path.display()
                        ))
                    })?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        }
        .filter(|s| !s.is_empty())
        .map(Secret);
        let redirect_url = match self.redirect_url {
            Some(text) => checked_url("APOGEE_OIDC_REDIRECT_URL", &text)?,
            None if addr.ip().is_loopback() && addr.port() != 0 => {
                let host = match addr.ip() {
                    IpAddr::V6(ip) => format!("[{ip}]"),
                    IpAddr::V4(ip) => ip.to_string(),
                };
                checked_url(
                    "APOGEE_OIDC_REDIRECT_URL",
                    &format!("http://{host}:{}{CALLBACK_PATH}", addr.port()),
                )?
            }
            None => {
                return Err(invalid(format!(
                    "APOGEE_OIDC_REDIRECT_URL is required (this server's public address of \
                     {CALLBACK_PATH}, e.g. https://apogee.example.com{CALLBACK_PATH})"
                )));
            }
        };
        if redirect_url.path() != CALLBACK_PATH
            || redirect_url.query().is_some()
            || redirect_url.fragment().is_some()
        {
            return Err(invalid(format!(
                "APOGEE_OIDC_REDIRECT_URL: `{redirect_url}` must end in {CALLBACK_PATH} at the \
                 root of its origin (the UI and its API are served from the root)"
            )));
        }
        if env == Environment::Production && redirect_url.scheme() != "https" {
            return Err(invalid(
                "APOGEE_OIDC_REDIRECT_URL must be https in production (cookies are Secure only over https)",
            ));
        }
        let mut scopes: Vec<String> = self
            .scopes
            .as_deref()
            .map(|s| {
                s.split([' ', ','])
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect());
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        let org_map = self.org_map.map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect::<BTreeMap<_, _>>()
        });
        let org = match (self.org, self.org_claim, org_map) {
            (Some(org), None, None) if !org.is_empty() => {
                if issuer_url.host_str() == Some("accounts.google.com") {
                    return Err(invalid(
                        "APOGEE_OIDC_ORG with Google would let every Google account in: map the \
                         Workspace domain instead (APOGEE_OIDC_ORG_CLAIM=hd with \
                         APOGEE_OIDC_ORG_MAP=yourdomain.com=ORG)",
                    ));
                }
                OrgMapping::Fixed(org)
            }
            (None, Some(claim), map) if !claim.is_empty() => OrgMapping::Claim { claim, map },
            (None, None, Some(map)) => OrgMapping::EmailDomain(map),
            (None, None, None) => {
                return Err(invalid(
                    "say which org people who sign in belong to: APOGEE_OIDC_ORG (one org), \
                     APOGEE_OIDC_ORG_CLAIM (a claim such as org_id, tid or hd) or \
                     APOGEE_OIDC_ORG_MAP alone (email domain=org, …)",
                ));
            }
            _ => {
                return Err(invalid(
                    "APOGEE_OIDC_ORG cannot be combined with APOGEE_OIDC_ORG_CLAIM or \
                     APOGEE_OIDC_ORG_MAP, and none may be empty",
                ));
            }
        };
        if let OrgMapping::EmailDomain(map) | OrgMapping::Claim { map: Some(map), .. } = &org
            && map.is_empty()
        {
            return Err(invalid("APOGEE_OIDC_ORG_MAP is empty"));
        }
        let session_ttl_secs = self.session_ttl_secs.unwrap_or(DEFAULT_SESSION_TTL_SECS);
        if !(1..=MAX_SESSION_TTL_SECS).contains(&session_ttl_secs) {
            return Err(invalid(format!(
                "APOGEE_OIDC_SESSION_TTL_SECS must be between 1 and {MAX_SESSION_TTL_SECS}"
            )));
        }
        Ok(Some(OidcConfig {
            provider_name: self
                .provider_name
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| provider_name(&issuer_url)),
            issuer,
            client_id,
            client_secret,
            redirect_url,
            scopes,
            org,
            user_claim: self
                .user_claim
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "sub".into()),
            session_ttl_secs,
            token_form: self.token_form.unwrap_or(false),
        }))
    }
}

impl OidcConfig {
    /// The origin the UI is served from (`scheme://host[:port]`).
    pub fn origin(&self) -> String {
        self.redirect_url.origin().ascii_serialization()
    }

    /// Whether cookies must be `Secure` (the UI is served over https).
    pub fn secure_cookies(&self) -> bool {
        self.redirect_url.scheme() == "https"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(vars: &[(&str, &str)]) -> Result<Option<OidcConfig>, ConfigError> {
        resolve_at(vars, "127.0.0.1:8080", Environment::Development)
    }

    fn resolve_at(
        vars: &[(&str, &str)],
        addr: &str,
        env: Environment,
    ) -> Result<Option<OidcConfig>, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        OidcSettings::default()
            .overlay(|k| map.get(k).map(|v| v.to_string()))?
            .resolve(addr.parse().unwrap(), env)
    }

    const BASE: [(&str, &str); 3] = [
        ("APOGEE_OIDC_ISSUER", "https://idp.example.com/realms/acme"),
        ("APOGEE_OIDC_CLIENT_ID", "apogee"),
        ("APOGEE_OIDC_ORG", "acme"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = BASE.to_vec();
        for (k, val) in extra {
            v.retain(|(name, _)| name != k);
            v.push((k, val));
        }
        v
    }

    #[test]
    fn off_without_an_issuer_and_stray_settings_are_refused() {
        assert!(resolve(&[]).unwrap().is_none());
        assert!(resolve(&[("APOGEE_OIDC_CLIENT_ID", "x")]).is_err());
    }

    #[test]
    fn defaults_on_loopback() {
        let c = resolve(&BASE).unwrap().unwrap();
        assert_eq!(
            c.redirect_url.as_str(),
            "http://127.0.0.1:8080/auth/callback"
        );
        assert_eq!(c.origin(), "http://127.0.0.1:8080");
        assert!(!c.secure_cookies());
        assert_eq!(c.scopes, vec!["openid", "email", "profile"]);
        assert_eq!(c.provider_name, "Keycloak");
        assert_eq!(c.user_claim, "sub");
        assert_eq!(c.session_ttl_secs, DEFAULT_SESSION_TTL_SECS);
        assert_eq!(c.org, OrgMapping::Fixed("acme".into()));
        assert!(c.client_secret.is_none() && !c.token_form);
    }

    #[test]
    fn a_public_address_needs_an_explicit_https_redirect_url() {
        let vars = BASE.to_vec();
        assert!(resolve_at(&vars, "0.0.0.0:8080", Environment::Development).is_err());
        assert!(resolve_at(&vars, "127.0.0.1:0", Environment::Development).is_err());
        let http = with(&[(
            "APOGEE_OIDC_REDIRECT_URL",
            "http://apogee.example.com/auth/callback",
        )]);
        assert!(resolve_at(&http, "0.0.0.0:8080", Environment::Staging).is_err());
        let https = with(&[(
            "APOGEE_OIDC_REDIRECT_URL",
            "https://apogee.example.com/auth/callback",
        )]);
        let c = resolve_at(&https, "0.0.0.0:8080", Environment::Production)
            .unwrap()
            .unwrap();
        assert!(c.secure_cookies());
        assert_eq!(c.origin(), "https://apogee.example.com");
        let loopback_in_production = BASE.to_vec();
        assert!(
            resolve_at(
                &loopback_in_production,
                "127.0.0.1:8080",
                Environment::Production
            )
            .is_err()
        );
        for bad in [
            "https://apogee.example.com/apogee/auth/callback",
            "https://apogee.example.com/auth/callback?x=1",
            "ftp://apogee.example.com/auth/callback",
        ] {
            let vars = with(&[("APOGEE_OIDC_REDIRECT_URL", bad)]);
            assert!(resolve(&vars).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_issuer_is_https_unless_on_loopback() {
        assert!(resolve(&with(&[("APOGEE_OIDC_ISSUER", "http://idp.example.com")])).is_err());
        let c = resolve(&with(&[("APOGEE_OIDC_ISSUER", "http://localhost:9000")]))
            .unwrap()
            .unwrap();
        assert_eq!(c.provider_name, "localhost");
    }

    #[test]
    fn org_mapping_is_exactly_one_of_three() {
        let claim = resolve(&[
            (
                "APOGEE_OIDC_ISSUER",
                "https://login.microsoftonline.com/t1/v2.0",
            ),
            ("APOGEE_OIDC_CLIENT_ID", "apogee"),
            ("APOGEE_OIDC_ORG_CLAIM", "tid"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            claim.org,
            OrgMapping::Claim {
                claim: "tid".into(),
                map: None
            }
        );
        assert_eq!(claim.provider_name, "Microsoft");
        let domains = resolve(&[
            ("APOGEE_OIDC_ISSUER", "https://acme.okta.com"),
            ("APOGEE_OIDC_CLIENT_ID", "apogee"),
            ("APOGEE_OIDC_ORG_MAP", "Acme.com=acme, acme-labs.io = labs"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            domains.org,
            OrgMapping::EmailDomain(BTreeMap::from([
                ("acme-labs.io".into(), "labs".into()),
                ("acme.com".into(), "acme".into()),
            ]))
        );
        assert_eq!(domains.provider_name, "Okta");
        let none = [
            ("APOGEE_OIDC_ISSUER", "https://acme.okta.com"),
            ("APOGEE_OIDC_CLIENT_ID", "apogee"),
        ];
        assert!(resolve(&none).is_err());
        assert!(resolve(&with(&[("APOGEE_OIDC_ORG_CLAIM", "tid")])).is_err());
        assert!(resolve(&with(&[("APOGEE_OIDC_ORG_MAP", "bad")])).is_err());
        // Any Google account could sign in to a fixed org.
        assert!(
            resolve(&with(&[(
                "APOGEE_OIDC_ISSUER",
                "https://accounts.google.com"
            )]))
            .is_err()
        );
        let google = [
            ("APOGEE_OIDC_ISSUER", "https://accounts.google.com"),
            ("APOGEE_OIDC_CLIENT_ID", "apogee"),
            ("APOGEE_OIDC_ORG_CLAIM", "hd"),
            ("APOGEE_OIDC_ORG_MAP", "acme.com=acme"),
        ];
        assert_eq!(resolve(&google).unwrap().unwrap().provider_name, "Google");
    }

    #[test]
    fn secrets_scopes_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").unwrap();
        let file_text = file.display().to_string();
        let vars: Vec<(&str, &str)> = with(&[
            ("APOGEE_OIDC_SCOPES", "email,profile org"),
            ("APOGEE_OIDC_TOKEN_FORM", "true"),
        ])
        .into_iter()
        .chain([("APOGEE_OIDC_CLIENT_SECRET_FILE", file_text.as_str())])
        .collect();
        let c = resolve(&vars).unwrap().unwrap();
        assert_eq!(c.client_secret.as_ref().map(Secret::expose), Some("s3cret"));
        assert_eq!(format!("{:?}", c.client_secret), "Some(***)");
        assert_eq!(c.scopes, vec!["openid", "email", "profile", "org"]);
        assert!(c.token_form);
        let both: Vec<(&str, &str)> = vars
            .iter()
            .copied()
            .chain([("APOGEE_OIDC_CLIENT_SECRET", "x")])
            .collect();
        assert!(resolve(&both).is_err());
        assert!(resolve(&with(&[("APOGEE_OIDC_SESSION_TTL_SECS", "0")])).is_err());
        assert!(resolve(&with(&[("APOGEE_OIDC_TOKEN_FORM", "maybe")])).is_err());
    }
}
