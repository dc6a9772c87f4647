//! Browser sessions after OpenID Connect sign-in (docs/security.md, "Browser sessions").
//!
//! The browser holds a random 256-bit secret in an `HttpOnly`, `SameSite=Lax` cookie
//! (`Secure`, and named `__Host-…`, when the UI is served over https); the store holds the
//! session under the secret's SHA-256, with its user, org, expiry and CSRF token. Every node
//! reads the store on every cookie-authenticated request, so a session signed out on one node
//! is refused by all at once. What a cookie alone may do is deliberately little:
//!
//! - API calls need the session's CSRF token in `X-CSRF-Token` as well ([`Proof::Csrf`]): a
//!   page of another origin can make the browser send the cookie but cannot read the token.
//! - A WebSocket handshake, where browsers cannot add headers, needs `Origin` to be the UI's
//!   own origin ([`Proof::SameOrigin`]).
//! - Reading who is signed in (`GET /auth/session`, which hands out the CSRF token) needs
//!   only the cookie ([`Proof::CookieOnly`]); other origins cannot read the answer.
//!
//! Open WebSocket connections of a session end (close 4001) when it is signed out: at once
//! on the node that signed it out, within [`RECHECK`] on the others, which check the sessions
//! of their open connections in batches.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use apogee_store::{Store, StoreError, UserKey, WebSession};
use axum::http::HeaderMap;
use axum::http::header::{COOKIE, ORIGIN};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::oidc::{OidcConfig, Person};

/// The header carrying the CSRF token on cookie-authenticated API calls.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions one user may hold at once (one per browser and device, with room to spare); a
/// new sign-in beyond it ends the oldest.
pub const MAX_SESSIONS_PER_USER: usize = 20;
/// How long a sign-in may take at the provider (the login cookie's life).
pub const LOGIN_TTL_SECS: u64 = 600;
/// How often a node checks that the sessions of its open connections still exist, so a
/// sign-out on another node reaches them.
pub const RECHECK: Duration = Duration::from_secs(30);
/// Cookie secrets are 32 random bytes as hex.
const SECRET_HEX_CHARS: usize = 64;

/// Why a cookie did not authenticate.
#[derive(Debug, thiserror::Error)]
pub enum WebSessionError {
    #[error("no session cookie")]
    NoCookie,
    #[error("the session is unknown, expired or signed out: sign in again")]
    Ended,
    #[error("cookie-authenticated calls must send the X-CSRF-Token header from GET /auth/session")]
    Csrf,
    #[error("a cookie-authenticated WebSocket must be opened from {0}")]
    Origin(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What must come with the cookie (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Csrf,
    SameOrigin,
    CookieOnly,
}

/// 32 random bytes from the thread's CSPRNG, as hex.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `secret`, as hex: what the store keys sessions and sign-ins by.
pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn well_formed_secret(value: &str) -> bool {
    value.len() == SECRET_HEX_CHARS && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Cookie names and attributes, from where the UI is served.
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    secure: bool,
    origin: String,
}

impl CookiePolicy {
    pub fn new(config: &OidcConfig) -> CookiePolicy {
        CookiePolicy {
            secure: config.secure_cookies(),
            origin: config.origin(),
        }
    }

    /// `__Host-` cookies are refused by browsers unless `Secure`, `Path=/` and host-only: on
    /// https they cannot be set or shadowed by a sibling subdomain.
    pub fn session_name(&self) -> &'static str {
        if self.secure {
            "__Host-apogee_session"
        } else {
            "apogee_session"
        }
    }

    pub fn login_name(&self) -> &'static str {
        if self.secure {
            "__Host-apogee_login"
        } else {
            "apogee_login"
        }
    }

    /// The UI's origin, which cookie-authenticated WebSockets must come from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn set_cookie(&self, name: &str, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
    }

    pub fn session_cookie(&self, secret: &str, max_age: u64) -> String {
        self.set_cookie(self.session_name(), secret, max_age)
    }

    pub fn clear_session_cookie(&self) -> String {
        self.set_cookie(self.session_name(), "", 0)
    }

    pub fn login_cookie(&self, value: &str) -> String {
        self.set_cookie(self.login_name(), value, LOGIN_TTL_SECS)
    }

    pub fn clear_login_cookie(&self) -> String {
        self.set_cookie(self.login_name(), "", 0)
    }
}

/// The browser sessions of this server.
pub struct WebSessions {
    store: Store,
    policy: CookiePolicy,
    ttl_secs: u64,
    watch: Arc<SessionWatch>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl WebSessions {
    /// Also starts the task that re-checks watched sessions every [`RECHECK`]; it ends when
    /// these sessions are dropped.
    pub fn new(store: Store, config: &OidcConfig) -> WebSessions {
        let watch = Arc::new(SessionWatch::default());
        tokio::spawn(recheck(Arc::downgrade(&watch), store.clone()));
        WebSessions {
            store,
            policy: CookiePolicy::new(config),
            ttl_secs: config.session_ttl_secs,
            watch,
        }
    }

    pub fn policy(&self) -> &CookiePolicy {
        &self.policy
    }

    /// Whether the request carries a session cookie at all (well formed or not).
    pub fn has_cookie(&self, headers: &HeaderMap) -> bool {
        cookie(headers, self.policy.session_name()).is_some()
    }

    /// The live session the request's cookie names, if `proof` is there too.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        proof: Proof,
    ) -> Result<WebSession, WebSessionError> {
        let secret =
            cookie(headers, self.policy.session_name()).ok_or(WebSessionError::NoCookie)?;
        if !well_formed_secret(secret) {
            return Err(WebSessionError::Ended);
        }
        // The origin is checked before the store is read: a cross-site handshake costs nothing.
        if proof == Proof::SameOrigin {
            let same = headers
                .get(ORIGIN)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|o| o.eq_ignore_ascii_case(&self.policy.origin));
            if !same {
                return Err(WebSessionError::Origin(self.policy.origin.clone()));
            }
        }
        let session = self
            .store
            .web_session(&secret_hash(secret), now_ms())
            .await?
            .ok_or(WebSessionError::Ended)?;
        if proof == Proof::Csrf {
            let sent = headers
                .get(CSRF_HEADER)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !bool::from(sent.ct_eq(session.csrf_token.as_bytes())) {
                return Err(WebSessionError::Csrf);
            }
        }
        Ok(session)
    }

    /// Starts a session for `person`; returns it and the secret for its cookie.
    pub async fn create(&self, person: &Person) -> Result<(WebSession, String), StoreError> {
        let secret = random_secret();
        let now = now_ms();
        let session = WebSession {
            id: secret_hash(&secret),
            user: UserKey {
                org_id: person.org_id.clone(),
                user_id: person.user_id.clone(),
            },
            name: person.name.clone(),
            email: person.email.clone(),
            csrf_token: random_secret(),
            created_ms: now,
            expires_ms: now.saturating_add((self.ttl_secs as i64).saturating_mul(1000)),
        };
        let removed = self
            .store
            .create_web_session(&session, MAX_SESSIONS_PER_USER, now)
            .await?;
        self.watch.revoke(&removed);
        Ok((session, secret))
    }

    /// Seconds a new session's cookie lives.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Signs one session out, and ends this node's connections of it at once.
    pub async fn sign_out(&self, id: &str) -> Result<(), StoreError> {
        self.store.delete_web_session(id).await?;
        self.watch.revoke(&[id.to_string()]);
        Ok(())
    }

    /// Signs every session of `user` out; returns how many there were.
    pub async fn sign_out_everywhere(&self, user: &UserKey) -> Result<usize, StoreError> {
        let ids = self.store.delete_user_web_sessions(user).await?;
        self.watch.revoke(&ids);
        Ok(ids.len())
    }

    /// Whether session `id` is live now (a ticket bought with it is only good while it is).
    pub async fn is_live(&self, id: &str) -> Result<bool, StoreError> {
        Ok(!self
            .store
            .live_web_sessions(&[id.to_string()], now_ms())
            .await?
            .is_empty())
    }

    /// Resolves when session `id` is signed out (here at once, elsewhere within [`RECHECK`]).
    pub fn revoked(&self, id: &str) -> impl Future<Output = ()> + Send + 'static {
        let guard = SessionWatch::watch(&self.watch, id);
        async move {
            guard.token.cancelled().await;
        }
    }

    /// Sessions watched by open connections on this node (for tests of the bound).
    pub fn watched(&self) -> usize {
        self.watch.lock().len()
    }
}

/// The sessions of this node's open connections, each with a token cancelled when it ends.
/// Entries live exactly as long as a connection watches them, so the map is bounded by the
/// node's connections.
#[derive(Default)]
struct SessionWatch {
    sessions: Mutex<HashMap<String, Watched>>,
}

struct Watched {
    token: CancellationToken,
    watchers: usize,
}

/// One connection's watch on a session; dropping it (the connection ended) stops watching.
struct WatchGuard {
    watch: Arc<SessionWatch>,
    id: String,
    token: CancellationToken,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        // A revoked entry was already removed; one under the same id now is not this one's.
        if self.token.is_cancelled() {
            return;
        }
        let mut sessions = self.watch.lock();
        if let Some(w) = sessions.get_mut(&self.id) {
            w.watchers = w.watchers.saturating_sub(1);
            if w.watchers == 0 {
                sessions.remove(&self.id);
            }
        }
    }
}

impl SessionWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        // Every change leaves the map consistent: a panic elsewhere cannot poison its meaning.
        crate::sync::lock(&self.sessions)
    }

    fn watch(this: &Arc<SessionWatch>, id: &str) -> WatchGuard {
        let mut sessions = this.lock();
        let w = sessions.entry(id.to_string()).or_insert_with(|| Watched {
            token: CancellationToken::new(),
            watchers: 0,
        });
        w.watchers += 1;
        WatchGuard {
            watch: Arc::clone(this),
            id: id.to_string(),
            token: w.token.clone(),
        }
    }

    fn revoke(&self, ids: &[String]) {
        let mut sessions = self.lock();
        for id in ids {
            if let Some(w) = sessions.remove(id) {
                w.token.cancel();
            }
        }
    }

    async fn recheck_once(&self, store: &Store) {
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        if ids.is_empty() {
            return;
        }
        match store.live_web_sessions(&ids, now_ms()).await {
            Ok(live) => {
                let live: std::collections::HashSet<String> = live.into_iter().collect();
                let ended: Vec<String> = ids.into_iter().filter(|id| !live.contains(id)).collect();
                if !ended.is_empty() {
                    tracing::info!(
                        sessions = ended.len(),
                        "ending connections of signed-out sessions"
                    );
                }
                self.revoke(&ended);
            }
            // Kept open: a store that cannot answer is no proof of a sign-out.
            Err(e) => tracing::warn!(error = %e, "could not re-check browser sessions"),
        }
    }
}

async fn recheck(watch: Weak<SessionWatch>, store: Store) {
    loop {
        tokio::time::sleep(RECHECK).await;
        let Some(watch) = watch.upgrade() else { return };
        watch.recheck_once(&store).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_among_several_headers() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; apogee_session=abc ; b=2"),
        );
        h.append(COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(cookie(&h, "apogee_session"), Some("abc"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "apogee"), None);
        assert_eq!(cookie(&HeaderMap::new(), "a"), None);
    }

    #[test]
    fn secrets_are_random_hex_and_stored_hashed() {
        let (a, b) = (random_secret(), random_secret());
        assert_ne!(a, b);
        assert!(well_formed_secret(&a));
        assert!(!well_formed_secret("zz"));
        assert!(!well_formed_secret(&"g".repeat(64)));
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn cookie_attributes_follow_the_scheme() {
        let http = CookiePolicy {
            secure: false,
            origin: "http://127.0.0.1:8080".into(),
        };
        assert_eq!(
            http.session_cookie("s", 60),
            "apogee_session=s; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        let https = CookiePolicy {
            secure: true,
            origin: "https://apogee.example".into(),
        };
        assert_eq!(
            https.clear_session_cookie(),
            "__Host-apogee_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure"
        );
        assert_eq!(
            https.login_cookie("l"),
            format!(
                "__Host-apogee_login=l; Path=/; HttpOnly; SameSite=Lax; Max-Age={LOGIN_TTL_SECS}; Secure"
            )
        );
    }

    #[tokio::test]
    async fn a_watch_ends_on_revoke_and_entries_go_with_their_connections() {
        let watch = Arc::new(SessionWatch::default());
        let a1 = SessionWatch::watch(&watch, "a");
        let a2 = SessionWatch::watch(&watch, "a");
        let b = SessionWatch::watch(&watch, "b");
        assert_eq!(watch.lock().len(), 2);
        drop(a2);
        assert_eq!(watch.lock().len(), 2, "a is still watched by a1");
        watch.revoke(&["a".into(), "zz".into()]);
        tokio::time::timeout(Duration::from_secs(1), a1.token.cancelled())
            .await
            .unwrap();
        assert!(!b.token.is_cancelled());
        drop(a1);
        drop(b);
        assert_eq!(watch.lock().len(), 0);
    }
}
