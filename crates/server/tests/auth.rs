//! JWT mode at the handshake: good tokens connect as their `sub`/`org`; every bad one is an
//! HTTP 401 before any upgrade, and demo `?user=` is ignored.

mod common;

use base64::Engine;
use common::*;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use tokio_tungstenite::tungstenite::Error as WsError;

const SECRET: &str = "test-secret-of-reasonable-length";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn token(claims: serde_json::Value, secret: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn none_alg_token() -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64.encode(json!({"sub":"mallory","org":"acme","exp": now() + 600}).to_string());
    format!("{header}.{claims}.")
}

async fn status_of(addr: &str, query: &str, bearer: Option<&str>) -> u16 {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    match Client::connect(addr, query, &headers).await {
        Ok(_) => 101,
        Err(WsError::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            if resp.status().as_u16() == 401 {
                assert!(body.contains("\"unauthorized\""), "{body}");
            }
            resp.status().as_u16()
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn jwt_handshake_accepts_good_tokens_and_refuses_bad_ones_with_401() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[("APOGEE_AUTH", "jwt"), ("APOGEE_JWT_HS256_SECRET", SECRET)],
    )
    .await;
    let good = token(
        json!({"sub":"alice","org":"acme","exp": now() + 600}),
        SECRET,
    );

    let mut c = Client::connect(
        &server.addr,
        "?user=eve",
        &[("authorization", &format!("Bearer {good}"))],
    )
    .await
    .unwrap();
    let ready = c.ready().await;
    assert_eq!(
        (ready["user_id"].as_str(), ready["org_id"].as_str()),
        (Some("alice"), Some("acme")),
        "demo ?user= is ignored"
    );

    let cases = [
        ("none alg", Some(none_alg_token())),
        (
            "wrong secret",
            Some(token(
                json!({"sub":"alice","org":"acme","exp": now() + 600}),
                "another-secret",
            )),
        ),
        (
            "expired",
            Some(token(
                json!({"sub":"alice","org":"acme","exp": now() - 600}),
                SECRET,
            )),
        ),
        (
            "missing org",
            Some(token(json!({"sub":"alice","exp": now() + 600}), SECRET)),
        ),
        (
            "missing sub",
            Some(token(json!({"org":"acme","exp": now() + 600}), SECRET)),
        ),
        (
            "missing exp",
            Some(token(json!({"sub":"alice","org":"acme"}), SECRET)),
        ),
        ("garbage", Some("not.a.jwt".to_string())),
        ("no credentials", None),
    ];
    for (name, t) in cases {
        assert_eq!(
            status_of(&server.addr, "?user=alice", t.as_deref()).await,
            401,
            "{name}"
        );
    }
    // REST uses the same rule.
    let (status, _) = http(
        &server.addr,
        "GET",
        "/api/threads",
        &[("X-Apogee-User", "alice")],
        b"",
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = http(
        &server.addr,
        "GET",
        "/api/threads",
        &[("Authorization", &format!("Bearer {good}"))],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn production_refuses_demo_auth() {
    let dir = tempfile::tempdir().unwrap();
    let out = apogee()
        .arg("serve")
        .env("APOGEE_ADDR", "127.0.0.1:0")
        .env("APOGEE_DATA_DIR", dir.path())
        .env("APOGEE_ENV", "production")
        .env("APOGEE_AUTH", "demo")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("production"));
}
