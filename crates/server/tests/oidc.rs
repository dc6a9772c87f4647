//! Sign-in through a real OpenID Connect provider (panva's oidc-provider on loopback): the
//! authorization-code flow with PKCE, the browser session it starts (cookie, CSRF token,
//! `Origin` on the WebSocket), sign-out and sign-out everywhere, expiry, and the attacks the
//! flow must stop — a forged or replayed `state`, a callback in another browser, ID tokens for
//! another audience, another sign-in, another issuer, or signed by an unpublished key — plus
//! a key rotation at the provider. Bearer tokens keep working beside it.

mod common;

use std::path::Path;

use common::oidc::{Browser, ClientReg, Page, TestProvider, free_port, sign_in_error};
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "apogee-client-secret";
const HS256: &str = "bearer-secret-of-reasonable-length!";

/// A provider and an `apogee serve` signing in through it (org from the `org_id` claim).
struct Setup {
    provider: TestProvider,
    server: Server,
    /// `http://127.0.0.1:PORT`, the UI's origin.
    url: String,
    _dir: tempfile::TempDir,
}

async fn load_org_data(dir: &Path, org: &str) {
    let out = apogee()
        .args(["demo-data", "--org", org, "--calls", "3000", "--days", "30"])
        .env("APOGEE_DATA_DIR", dir)
        .output()
        .await
        .expect("run demo-data");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `None` only when the services are skipped on purpose.
async fn setup(extra: &[(&str, &str)]) -> Option<Setup> {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let redirect = format!("{url}/auth/callback");
    let provider = TestProvider::start(
        "127.0.0.1",
        &[
            ClientReg {
                id: "apogee",
                secret: SECRET,
                redirect_uri: &redirect,
            },
            ClientReg {
                id: "other-app",
                secret: "other-secret",
                redirect_uri: "http://127.0.0.1:9/cb",
            },
        ],
    )
    .await?;
    let dir = tempfile::tempdir().unwrap();
    load_org_data(dir.path(), "acme").await;
    let addr = format!("127.0.0.1:{port}");
    let mut env = vec![
        ("APOGEE_ADDR", addr.as_str()),
        ("APOGEE_AUTH", "jwt"),
        ("APOGEE_JWT_HS256_SECRET", HS256),
        ("APOGEE_OIDC_ISSUER", provider.issuer.as_str()),
        ("APOGEE_OIDC_CLIENT_ID", "apogee"),
        ("APOGEE_OIDC_CLIENT_SECRET", SECRET),
        ("APOGEE_OIDC_SCOPES", "openid email profile org"),
        ("APOGEE_OIDC_ORG_CLAIM", "org_id"),
        // A rotated key is fetched at the first ID token that names it.
        ("APOGEE_JWT_JWKS_MIN_REFRESH_SECS", "0"),
    ];
    env.extend_from_slice(extra);
    let server = Server::start(dir.path(), &env).await;
    Some(Setup {
        provider,
        server,
        url,
        _dir: dir,
    })
}

/// A signed-in browser's credentials.
struct Session {
    cookie: String,
    csrf: String,
}

impl Session {
    fn api_headers(&self) -> Vec<(&str, &str)> {
        vec![("Cookie", &self.cookie), ("X-CSRF-Token", &self.csrf)]
    }
}

async fn session_of(s: &Setup, browser: &Browser) -> (u16, Value, Option<Session>) {
    let cookie = browser.cookie_header(&s.url);
    let (status, body) = http(
        &s.server.addr,
        "GET",
        "/auth/session",
        &[("Cookie", &cookie)],
        b"",
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let session = v["csrf_token"].as_str().map(|csrf| Session {
        cookie: cookie.clone(),
        csrf: csrf.to_string(),
    });
    (status, v, session)
}

async fn signed_in(s: &Setup, login: &str) -> (Browser, Session) {
    let mut browser = Browser::new();
    let done = browser.sign_in(&s.url, login).await;
    assert_eq!(sign_in_error(&done), None, "{done:?}");
    let (status, body, session) = session_of(s, &browser).await;
    assert_eq!(status, 200, "{body}");
    (browser, session.expect("a CSRF token"))
}

/// A WebSocket opened with the session cookie from the UI's origin.
async fn cookie_ws(s: &Setup, session: &Session) -> Client {
    let h = handshake(
        &s.server.addr,
        "",
        &[("Cookie", &session.cookie), ("Origin", &s.url)],
    )
    .await;
    assert_eq!(h.status, 101, "{}", h.body);
    h.client.unwrap()
}

fn session_cookie_attributes(page: &Page) -> String {
    page.set_cookies
        .iter()
        .find(|c| c.starts_with("apogee_session="))
        .cloned()
        .unwrap_or_else(|| panic!("no session cookie in {page:?}"))
}

#[tokio::test]
async fn signing_in_through_the_provider_starts_a_session_that_runs_a_question_over_the_websocket()
{
    let Some(s) = setup(&[]).await else { return };
    // The app sends the browser to the provider with PKCE (S256), state and nonce.
    let mut browser = Browser::new();
    let authorize = browser.start_sign_in(&s.url).await;
    let q: std::collections::HashMap<String, String> = reqwest::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert!(authorize.starts_with(&s.provider.issuer), "{authorize}");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "apogee");
    assert_eq!(q["redirect_uri"], format!("{}/auth/callback", s.url));
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["code_challenge"].len() >= 43 && q["state"].len() >= 16 && q["nonce"].len() >= 32);
    assert_eq!(q["scope"], "openid email profile org");
    let callback = browser.at_provider(&authorize, &s.url, "dana").await;
    let done = browser.get(&callback).await;
    assert_eq!(sign_in_error(&done), None, "{done:?}");
    assert_eq!(
        done.location.as_deref(),
        Some(format!("{}/", s.url).as_str())
    );
    let attrs = session_cookie_attributes(&done);
    for a in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(attrs.contains(a), "{a} missing: {attrs}");
    }
    assert!(!attrs.contains("Secure"), "plain http on loopback: {attrs}");
    assert!(
        done.set_cookies
            .iter()
            .any(|c| c.starts_with("apogee_login=;")),
        "the login cookie is cleared: {done:?}"
    );

    let (status, me, session) = session_of(&s, &browser).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            &me["user_id"],
            &me["org_id"],
            &me["name"],
            &me["email"],
            &me["provider"]
        ),
        (
            &json!("dana"),
            &json!("acme"),
            &json!("Dana"),
            &json!("dana@acme.test"),
            &json!("127.0.0.1")
        )
    );
    let session = session.unwrap();

    // A WebSocket run as the signed-in user, in the org the claim named.
    let mut ws = cookie_ws(&s, &session).await;
    let ready = ws.ready().await;
    assert_eq!(
        (ready["user_id"].as_str(), ready["org_id"].as_str()),
        (Some("dana"), Some("acme"))
    );
    ws.ask("m1", "Analyze my AI costs", None).await;
    let ack = ws.next().await.unwrap();
    assert_eq!(ack["type"], "message_ack", "{ack}");
    let run_id = ack["run_id"].as_str().unwrap().to_string();
    let events = ws.until_run_end(&run_id).await;
    assert_run_well_formed(&events);
    let end = events.last().unwrap();
    assert_eq!(end["status"], "ok", "{end}");
    let answer = events
        .iter()
        .find(|e| e["type"] == "message_created" && e["message"]["role"] == "assistant")
        .expect("an answer");
    assert!(
        answer["message"]["content"].as_str().unwrap().contains('$'),
        "{answer}"
    );

    // REST with the cookie and its CSRF token sees the same user's data.
    let (status, body) = http(
        &s.server.addr,
        "GET",
        "/api/threads",
        &session.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let threads: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(threads["threads"].as_array().unwrap().len(), 1);
    let (status, body) = http(
        &s.server.addr,
        "GET",
        "/api/costs",
        &session.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["org_id"],
        "acme"
    );

    // A ticket bought with the cookie opens a connection as the same user.
    let (status, body) = http(
        &s.server.addr,
        "POST",
        "/api/ws-ticket",
        &session.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ticket = serde_json::from_str::<Value>(&body).unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let mut h = handshake(&s.server.addr, &format!("?ticket={ticket}"), &[]).await;
    assert_eq!(h.status, 101, "{}", h.body);
    assert_eq!(h.client.as_mut().unwrap().ready().await["user_id"], "dana");

    // Another person of another org gets their own identity and nothing of dana's.
    let (_, eve) = signed_in(&s, "eve@globex.test").await;
    let (status, body) = http(
        &s.server.addr,
        "GET",
        "/api/threads",
        &eve.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["threads"],
        json!([])
    );
    let mut eve_ws = cookie_ws(&s, &eve).await;
    let ready = eve_ws.ready().await;
    assert_eq!(
        (ready["user_id"].as_str(), ready["org_id"].as_str()),
        (Some("eve@globex.test"), Some("globex"))
    );

    // What the UI learns before signing in.
    let (_, config) = http(&s.server.addr, "GET", "/api/config", &[], b"").await;
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["auth"], "jwt");
    assert_eq!(
        config["oidc"],
        json!({"provider": "127.0.0.1", "login_url": "/auth/login"})
    );
    assert_eq!(config["token_form"], false);
}

#[tokio::test]
async fn requests_with_the_cookie_but_without_the_csrf_token_or_from_another_origin_are_refused() {
    let Some(s) = setup(&[]).await else { return };
    let (_, session) = signed_in(&s, "dana").await;
    let addr = &s.server.addr;
    let record = br#"[{"request_id":"csrf-1","ts":"2026-01-02T03:04:05Z","model":"gpt-4o","input_tokens":10,"output_tokens":5}]"#;
    // What a page of another origin can make the browser send: the cookie, no token.
    let cross_site: [(&str, Vec<(&str, &str)>); 3] = [
        (
            "no token",
            vec![("Cookie", &session.cookie), ("Origin", "http://evil.test")],
        ),
        (
            "wrong token",
            vec![("Cookie", &session.cookie), ("X-CSRF-Token", "guess")],
        ),
        (
            "empty token",
            vec![("Cookie", &session.cookie), ("X-CSRF-Token", "")],
        ),
    ];
    for (what, headers) in &cross_site {
        for (method, path, body) in [
            ("POST", "/api/usage", &record[..]),
            ("POST", "/api/ws-ticket", b""),
            ("GET", "/api/threads", b""),
        ] {
            let (status, text) = http(addr, method, path, headers, body).await;
            assert_eq!(status, 403, "{what}: {method} {path}: {text}");
            assert!(
                text.contains("\"forbidden\"") && text.contains("X-CSRF-Token"),
                "{text}"
            );
        }
        let (status, _) = http(addr, "POST", "/auth/logout", headers, b"").await;
        assert_eq!(status, 403, "{what}: another site cannot sign the user out");
    }
    // Nothing was ingested; the same call with the token is accepted, once.
    let (status, body) = http(addr, "POST", "/api/usage", &session.api_headers(), record).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["accepted"], 1);

    // A cookie-authenticated WebSocket must come from the UI's origin.
    for origin in [
        Some("http://evil.test"),
        Some("http://127.0.0.1:1"),
        Some("null"),
        None,
    ] {
        let mut headers = vec![("Cookie", session.cookie.as_str())];
        if let Some(o) = origin {
            headers.push(("Origin", o));
        }
        let h = handshake(addr, "", &headers).await;
        assert_eq!(h.status, 403, "{origin:?}: {}", h.body);
    }
    // Still signed in after all that.
    let mut ws = cookie_ws(&s, &session).await;
    assert_eq!(ws.ready().await["user_id"], "dana");
    // A malformed or unknown cookie is simply not signed in.
    for cookie in [
        "apogee_session=nope",
        &format!("apogee_session={}", "a".repeat(64)),
    ] {
        let (status, _) = http(
            addr,
            "GET",
            "/api/threads",
            &[("Cookie", cookie), ("X-CSRF-Token", &session.csrf)],
            b"",
        )
        .await;
        assert_eq!(status, 401, "{cookie}");
    }
}

#[tokio::test]
async fn signing_out_ends_the_session_and_its_connections_and_everywhere_ends_them_all() {
    let Some(s) = setup(&[]).await else { return };
    let (_, a) = signed_in(&s, "dana").await;
    let (_, b) = signed_in(&s, "dana").await;
    let (_, c) = signed_in(&s, "dana").await;
    let (_, other) = signed_in(&s, "fox").await;
    let mut ws_a = cookie_ws(&s, &a).await;
    let mut ws_b = cookie_ws(&s, &b).await;
    let mut ws_other = cookie_ws(&s, &other).await;
    for ws in [&mut ws_a, &mut ws_b, &mut ws_other] {
        ws.ready().await;
    }
    // A ticket bought with session c before it is signed out.
    let (status, body) = http(
        &s.server.addr,
        "POST",
        "/api/ws-ticket",
        &c.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ticket = serde_json::from_str::<Value>(&body).unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_string();

    // Sign out in one browser: its cookie and its connection end, the others go on.
    let (status, head, body) = http_full(
        &s.server.addr,
        "POST",
        "/auth/logout",
        &a.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains("apogee_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
        "{head}"
    );
    assert_eq!(ws_a.close_code().await, Some(4001));
    let (status, _) = http(&s.server.addr, "GET", "/api/threads", &a.api_headers(), b"").await;
    assert_eq!(status, 401);
    let h = handshake(
        &s.server.addr,
        "",
        &[("Cookie", &a.cookie), ("Origin", &s.url)],
    )
    .await;
    assert_eq!(h.status, 401, "{}", h.body);
    let (status, _) = http(&s.server.addr, "GET", "/api/threads", &b.api_headers(), b"").await;
    assert_eq!(status, 200, "session b is another sign-in");

    // Sign out everywhere from b: b and c end too, another user's session does not.
    let (status, body) = http(
        &s.server.addr,
        "POST",
        "/auth/logout/everywhere",
        &b.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["signed_out"],
        2
    );
    assert_eq!(ws_b.close_code().await, Some(4001));
    for gone in [&b, &c] {
        let (status, _) = http(
            &s.server.addr,
            "GET",
            "/api/threads",
            &gone.api_headers(),
            b"",
        )
        .await;
        assert_eq!(status, 401);
    }
    let h = handshake(&s.server.addr, &format!("?ticket={ticket}"), &[]).await;
    assert_eq!(
        h.status, 401,
        "a ticket bought with a signed-out session: {}",
        h.body
    );
    let (status, _) = http(
        &s.server.addr,
        "GET",
        "/api/threads",
        &other.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 200);
    ws_other
        .send(json!({"type": "ping", "nonce": "still-here"}))
        .await;
    assert_eq!(ws_other.next().await.unwrap()["type"], "pong");

    // Signing out again just clears the cookie.
    let (status, body) = http(
        &s.server.addr,
        "POST",
        "/auth/logout",
        &a.api_headers(),
        b"",
    )
    .await;
    assert_eq!(
        (status, body.contains("\"signed_out\":0")),
        (200, true),
        "{body}"
    );
}

#[tokio::test]
async fn an_expired_session_is_refused_and_ends_its_connection() {
    // Long enough for the sign-in and the handshake on a busy machine, short for a test.
    let Some(s) = setup(&[("APOGEE_OIDC_SESSION_TTL_SECS", "6")]).await else {
        return;
    };
    let (_, session) = signed_in(&s, "dana").await;
    let mut ws = cookie_ws(&s, &session).await;
    ws.ready().await;
    let started = std::time::Instant::now();
    assert_eq!(
        ws.close_code().await,
        Some(4001),
        "closed at the session's expiry"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    let (status, head, _) = http_full(
        &s.server.addr,
        "GET",
        "/auth/session",
        &[("Cookie", &session.cookie)],
        b"",
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        head.contains("apogee_session=;"),
        "the dead cookie is cleared: {head}"
    );
    let (status, _) = http(
        &s.server.addr,
        "GET",
        "/api/threads",
        &session.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 401);
    let h = handshake(
        &s.server.addr,
        "",
        &[("Cookie", &session.cookie), ("Origin", &s.url)],
    )
    .await;
    assert_eq!(h.status, 401, "{}", h.body);
    // Signing in again gives a fresh session.
    let (_, again) = signed_in(&s, "dana").await;
    let (status, _) = http(
        &s.server.addr,
        "GET",
        "/api/threads",
        &again.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_forged_or_replayed_state_and_a_callback_in_another_browser_are_refused() {
    let Some(s) = setup(&[]).await else { return };
    let no_session = |page: &Page| {
        !page
            .set_cookies
            .iter()
            .any(|c| c.starts_with("apogee_session=") && !c.starts_with("apogee_session=;"))
    };

    // A forged state: refused, and the sign-in it was aimed at is spent.
    let mut browser = Browser::new();
    let authorize = browser.start_sign_in(&s.url).await;
    let callback = browser.at_provider(&authorize, &s.url, "dana").await;
    let mut forged = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged-state".to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let page = browser.get(forged.as_str()).await;
    assert_eq!(sign_in_error(&page).as_deref(), Some("state"));
    assert!(no_session(&page), "{page:?}");
    let replay = browser.get(&callback).await;
    assert_eq!(
        sign_in_error(&replay).as_deref(),
        Some("expired"),
        "one try per sign-in"
    );
    assert!(no_session(&replay));

    // A callback opened in a browser that did not start the sign-in (login CSRF): refused,
    // and the real browser can still finish.
    let mut victim = Browser::new();
    let mut attacker = Browser::new();
    let authorize = attacker.start_sign_in(&s.url).await;
    let callback = attacker.at_provider(&authorize, &s.url, "mallory").await;
    let page = victim.get(&callback).await;
    assert_eq!(sign_in_error(&page).as_deref(), Some("expired"));
    assert!(no_session(&page));
    let (status, _, _) = session_of(&s, &victim).await;
    assert_eq!(status, 401, "the victim is not signed in as the attacker");
    let page = attacker.get(&callback).await;
    assert_eq!(sign_in_error(&page), None, "{page:?}");

    // A used callback cannot be replayed either, nor a bare one.
    let page = attacker.get(&callback).await;
    assert_eq!(sign_in_error(&page).as_deref(), Some("expired"));
    let page = Browser::new()
        .get(&format!("{}/auth/callback", s.url))
        .await;
    assert_eq!(sign_in_error(&page).as_deref(), Some("expired"));

    // The provider's refusal comes back as `denied`, once the state checks out.
    let mut browser = Browser::new();
    let authorize = browser.start_sign_in(&s.url).await;
    let state = reqwest::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let page = browser
        .get(&format!(
            "{}/auth/callback?error=access_denied&state={state}",
            s.url
        ))
        .await;
    assert_eq!(sign_in_error(&page).as_deref(), Some("denied"));
}

#[tokio::test]
async fn id_tokens_for_another_audience_sign_in_issuer_or_key_are_refused() {
    let Some(s) = setup(&[]).await else { return };
    let mut browser = Browser::new();
    let hour_ago = unix_now() - 3600;
    let cases = [
        (
            "another audience",
            json!({"claims": {"aud": "other-app", "azp": null}}),
        ),
        (
            "several audiences, azp another",
            json!({"claims": {"aud": ["apogee", "other-app"], "azp": "other-app"}}),
        ),
        (
            "another sign-in's nonce",
            json!({"claims": {"nonce": "from-another-sign-in"}}),
        ),
        ("no nonce", json!({"claims": {"nonce": null}})),
        (
            "another issuer",
            json!({"claims": {"iss": "http://127.0.0.1:1"}}),
        ),
        (
            "expired",
            json!({"claims": {"exp": hour_ago, "iat": hour_ago - 60}}),
        ),
        (
            "a key the provider never published",
            json!({"unpublished_key": true}),
        ),
    ];
    for (what, change) in cases {
        s.provider.next_id_token(change).await;
        let page = browser.sign_in(&s.url, "dana").await;
        assert_eq!(
            sign_in_error(&page).as_deref(),
            Some("token"),
            "{what}: {page:?}"
        );
        let (status, _, _) = session_of(&s, &browser).await;
        assert_eq!(status, 401, "{what}");
    }
    // An untouched token still signs in.
    let page = browser.sign_in(&s.url, "dana").await;
    assert_eq!(sign_in_error(&page), None, "{page:?}");
    let (_, metrics) = http(&s.server.addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains("apogee_sign_ins_total{code=\"token\"} 7"),
        "{metrics}"
    );
    assert!(
        metrics.contains("apogee_sign_ins_total{code=\"ok\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_key_rotation_at_the_provider_is_picked_up_without_a_restart() {
    let Some(s) = setup(&[]).await else { return };
    let (_, before) = signed_in(&s, "dana").await;
    let new_kid = s.provider.rotate_keys().await;
    // The next ID token is signed with a key this server has not fetched yet.
    let jwks: Value = reqwest::get(format!("{}/jwks", s.provider.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], new_kid.as_str());
    let (_, after) = signed_in(&s, "dana").await;
    for session in [&before, &after] {
        let (status, _) = http(
            &s.server.addr,
            "GET",
            "/api/threads",
            &session.api_headers(),
            b"",
        )
        .await;
        assert_eq!(status, 200);
    }
    // And once more: the old key may go, the new one is known.
    s.provider.rotate_keys().await;
    signed_in(&s, "dana").await;
}

#[tokio::test]
async fn bearer_tokens_keep_working_beside_sign_in() {
    let Some(s) = setup(&[]).await else { return };
    let token = hs256(
        HS256,
        &json!({"sub": "svc", "org": "acme", "exp": unix_now() + 600}),
    );
    let bearer = format!("Bearer {token}");
    let (status, body) = http(
        &s.server.addr,
        "GET",
        "/api/costs",
        &[("Authorization", &bearer)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A bearer call needs no CSRF token, and a stray cookie does not change who it is.
    let (status, body) = http(
        &s.server.addr,
        "POST",
        "/api/ws-ticket",
        &[
            ("Authorization", &bearer),
            ("Cookie", "apogee_session=junk"),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut ws = Client::connect(&s.server.addr, "", &[("authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(ws.ready().await["user_id"], "svc");
    let (status, _) = http(
        &s.server.addr,
        "GET",
        "/api/threads",
        &[("Authorization", "Bearer nope")],
        b"",
    )
    .await;
    assert_eq!(
        status, 401,
        "a bad bearer token is not rescued by anything else"
    );
}

#[tokio::test]
async fn accounts_the_org_mapping_does_not_cover_are_refused_and_sign_ins_are_bounded_per_address()
{
    let Some(s) = setup(&[
        ("APOGEE_OIDC_ORG_CLAIM", ""),
        ("APOGEE_OIDC_ORG_MAP", "acme.test=acme"),
    ])
    .await
    else {
        return;
    };
    let (_, dana) = signed_in(&s, "dana").await;
    let (_, body) = http(
        &s.server.addr,
        "GET",
        "/auth/session",
        &[("Cookie", &dana.cookie)],
        b"",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["org_id"],
        "acme"
    );
    for (login, why) in [
        ("eve@globex.test", "an unmapped domain"),
        ("unverified-dana", "an unverified email"),
    ] {
        let page = Browser::new().sign_in(&s.url, login).await;
        assert_eq!(sign_in_error(&page).as_deref(), Some("org"), "{why}");
    }
    // Each sign-in started holds a row until it ends or expires: one address may start only
    // so many a minute. (Three were started above, by this same address.)
    let mut browser = Browser::new();
    let mut refused = 0;
    for _ in 0..40 {
        let page = browser.get(&format!("{}/auth/login", s.url)).await;
        if sign_in_error(&page).as_deref() == Some("busy") {
            refused += 1;
        }
    }
    assert_eq!(refused, 40 - (30 - 3), "30 starts per minute per address");
}

/// The close code of `ws` within `secs` seconds, whatever else (pings, events) comes first.
async fn close_within(ws: &mut Client, secs: u64) -> Option<u16> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.ws.next())
            .await
            .expect("closed in time");
        match msg {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn a_session_started_on_one_node_works_and_ends_on_another() {
    let Some(db) = services::postgres_database().await else {
        return;
    };
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let redirect = format!("{url}/auth/callback");
    let Some(provider) = TestProvider::start(
        "127.0.0.1",
        &[ClientReg {
            id: "apogee",
            secret: SECRET,
            redirect_uri: &redirect,
        }],
    )
    .await
    else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let addr_a = format!("127.0.0.1:{port}");
    let common_env = [
        ("APOGEE_DATABASE_URL", db.url.as_str()),
        ("APOGEE_AUTH", "jwt"),
        ("APOGEE_OIDC_ISSUER", provider.issuer.as_str()),
        ("APOGEE_OIDC_CLIENT_ID", "apogee"),
        ("APOGEE_OIDC_CLIENT_SECRET", SECRET),
        ("APOGEE_OIDC_ORG", "acme"),
        // Behind one load balancer, both nodes have the same public address.
        ("APOGEE_OIDC_REDIRECT_URL", redirect.as_str()),
    ];
    let mut env_a = common_env.to_vec();
    env_a.push(("APOGEE_ADDR", addr_a.as_str()));
    let node_a = Server::start(dir_a.path(), &env_a).await;
    let node_b = Server::start(dir_b.path(), &common_env).await;
    let setup_a = Setup {
        provider,
        server: node_a,
        url: url.clone(),
        _dir: dir_a,
    };
    let (_, session) = signed_in(&setup_a, "dana").await;
    // Node b accepts the cookie made on node a, for REST and for a WebSocket.
    let (status, body) = http(
        &node_b.addr,
        "GET",
        "/api/threads",
        &session.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let h = handshake(
        &node_b.addr,
        "",
        &[("Cookie", &session.cookie), ("Origin", &url)],
    )
    .await;
    assert_eq!(h.status, 101, "{}", h.body);
    let mut ws_b = h.client.unwrap();
    assert_eq!(ws_b.ready().await["user_id"], "dana");
    // Signed out on node a: node b refuses the cookie at once and ends its connection
    // within its re-check period.
    let (status, _) = http(
        &setup_a.server.addr,
        "POST",
        "/auth/logout",
        &session.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = http(
        &node_b.addr,
        "GET",
        "/api/threads",
        &session.api_headers(),
        b"",
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(close_within(&mut ws_b, 45).await, Some(4001));
}
