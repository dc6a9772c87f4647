//! JWT mode with public keys: RS256 and ES256 from PEM files, a JWKS file and a JWKS URL
//! (served from loopback by the test), and every way a token can be wrong answered with 401
//! before any upgrade.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::RwLock;

fn rsa_key(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&std::fs::read(fixture("ec_private.pem")).unwrap()).unwrap()
}

fn claims(sub: &str, org: &str) -> Value {
    json!({"sub": sub, "org": org, "exp": unix_now() + 600, "iat": unix_now(),
           "iss": "https://idp.test", "aud": "apogee"})
}

/// Connects with the token and returns (user_id, org_id) from `connection_ready`.
async fn who(addr: &str, token: &str) -> (String, String) {
    let auth = format!("Bearer {token}");
    let mut h = handshake(addr, "?user=eve", &[("authorization", &auth)]).await;
    assert_eq!(h.status, 101, "{}", h.body);
    let ready = h.client.as_mut().unwrap().ready().await;
    (
        ready["user_id"].as_str().unwrap().to_string(),
        ready["org_id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn pem_public_keys_verify_rs256_and_es256_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = Server::start(
        dir.path(),
        &[
            ("APOGEE_AUTH", "jwt"),
            ("APOGEE_JWT_PUBLIC_KEY_FILE", &fixture("rsa_public.pem")),
        ],
    )
    .await;
    let good = jwt(
        Algorithm::RS256,
        None,
        &rsa_key("rsa_private.pem"),
        &claims("alice", "acme"),
    );
    assert_eq!(who(&rsa.addr, &good).await, ("alice".into(), "acme".into()));
    let public_pem = std::fs::read(fixture("rsa_public.pem")).unwrap();
    let cases = [
        (
            "wrong key",
            jwt(
                Algorithm::RS256,
                None,
                &rsa_key("rsa_other_private.pem"),
                &claims("alice", "acme"),
            ),
        ),
        (
            "wrong alg (ES256 on an RS256 server)",
            jwt(Algorithm::ES256, None, &ec_key(), &claims("alice", "acme")),
        ),
        (
            "HS256 signed with the public key",
            jwt(
                Algorithm::HS256,
                None,
                &EncodingKey::from_secret(&public_pem),
                &claims("alice", "acme"),
            ),
        ),
        (
            "RS384 with the right key",
            jwt(
                Algorithm::RS384,
                None,
                &rsa_key("rsa_private.pem"),
                &claims("alice", "acme"),
            ),
        ),
    ];
    for (name, t) in cases {
        assert_eq!(bearer_status(&rsa.addr, "", Some(&t)).await, 401, "{name}");
    }
    drop(rsa);

    let dir = tempfile::tempdir().unwrap();
    let ec = Server::start(
        dir.path(),
        &[
            ("APOGEE_AUTH", "jwt"),
            ("APOGEE_JWT_PUBLIC_KEY_FILE", &fixture("ec_public.pem")),
        ],
    )
    .await;
    let good = jwt(Algorithm::ES256, None, &ec_key(), &claims("bob", "globex"));
    assert_eq!(who(&ec.addr, &good).await, ("bob".into(), "globex".into()));
    let rs = jwt(
        Algorithm::RS256,
        None,
        &rsa_key("rsa_private.pem"),
        &claims("bob", "globex"),
    );
    assert_eq!(bearer_status(&ec.addr, "", Some(&rs)).await, 401);
}

#[tokio::test]
async fn jwks_file_picks_keys_by_kid_and_every_bad_token_is_401() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("APOGEE_AUTH", "jwt"),
            ("APOGEE_JWT_JWKS_FILE", &fixture("jwks.json")),
            ("APOGEE_JWT_ISSUER", "https://idp.test"),
            ("APOGEE_JWT_AUDIENCE", "apogee"),
        ],
    )
    .await;
    let rsa = rsa_key("rsa_private.pem");
    let rs = |kid: Option<&str>, c: &Value| jwt(Algorithm::RS256, kid, &rsa, c);
    let es = |kid: Option<&str>, c: &Value| jwt(Algorithm::ES256, kid, &ec_key(), c);

    assert_eq!(
        who(&server.addr, &rs(Some("rsa-1"), &claims("alice", "acme"))).await,
        ("alice".into(), "acme".into())
    );
    assert_eq!(
        who(&server.addr, &es(Some("ec-1"), &claims("bob", "acme"))).await,
        ("bob".into(), "acme".into())
    );
    // REST takes the same tokens.
    let auth = format!("Bearer {}", es(Some("ec-1"), &claims("bob", "acme")));
    let (status, body) = http(
        &server.addr,
        "GET",
        "/api/threads",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let mut c = claims("alice", "acme");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = claims("alice", "acme");
        f(&mut v);
        v
    };
    c["exp"] = json!(unix_now() - 600);
    let b64 =
        |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let none_alg = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
        b64(claims("mallory", "acme").to_string().as_bytes())
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("alg none", Some(none_alg)),
        (
            "wrong key under a known kid",
            Some(jwt(
                Algorithm::RS256,
                Some("rsa-1"),
                &rsa_key("rsa_other_private.pem"),
                &claims("alice", "acme"),
            )),
        ),
        (
            "encryption key never verifies",
            Some(jwt(
                Algorithm::RS256,
                Some("enc-1"),
                &rsa_key("rsa_other_private.pem"),
                &claims("alice", "acme"),
            )),
        ),
        (
            "unknown kid",
            Some(rs(Some("nope"), &claims("alice", "acme"))),
        ),
        (
            "wrong alg for the kid",
            Some(es(Some("rsa-1"), &claims("alice", "acme"))),
        ),
        (
            "HS256 not configured",
            Some(hs256("whatever", &claims("alice", "acme"))),
        ),
        ("expired", Some(rs(Some("rsa-1"), &c))),
        (
            "not yet valid",
            Some(rs(
                Some("rsa-1"),
                &with(&|v| v["nbf"] = json!(unix_now() + 600)),
            )),
        ),
        (
            "wrong issuer",
            Some(rs(
                Some("rsa-1"),
                &with(&|v| v["iss"] = json!("https://evil.test")),
            )),
        ),
        (
            "no issuer",
            Some(rs(
                Some("rsa-1"),
                &with(&|v| {
                    v.as_object_mut().unwrap().remove("iss");
                }),
            )),
        ),
        (
            "wrong audience",
            Some(rs(
                Some("rsa-1"),
                &with(&|v| v["aud"] = json!("someone-else")),
            )),
        ),
        (
            "missing sub",
            Some(rs(
                Some("rsa-1"),
                &with(&|v| {
                    v.as_object_mut().unwrap().remove("sub");
                }),
            )),
        ),
        (
            "missing org",
            Some(rs(
                Some("rsa-1"),
                &with(&|v| {
                    v.as_object_mut().unwrap().remove("org");
                }),
            )),
        ),
        (
            "empty org",
            Some(rs(Some("rsa-1"), &with(&|v| v["org"] = json!("")))),
        ),
        (
            "org not a string",
            Some(rs(Some("rsa-1"), &with(&|v| v["org"] = json!(["acme"])))),
        ),
        (
            "missing exp",
            Some(rs(
                Some("rsa-1"),
                &with(&|v| {
                    v.as_object_mut().unwrap().remove("exp");
                }),
            )),
        ),
        ("garbage", Some("not.a.jwt".into())),
        ("empty bearer", Some(String::new())),
        ("no credentials", None),
    ];
    for (name, t) in &cases {
        assert_eq!(
            bearer_status(&server.addr, "?user=alice", t.as_deref()).await,
            401,
            "{name}"
        );
        if let Some(t) = t {
            let auth = format!("Bearer {t}");
            let (status, _) = http(
                &server.addr,
                "GET",
                "/api/threads",
                &[("Authorization", &auth)],
                b"",
            )
            .await;
            assert_eq!(status, 401, "REST: {name}");
        }
    }
}

/// A loopback HTTP server answering every request with the current document, counting them.
struct JwksServer {
    addr: String,
    doc: Arc<RwLock<String>>,
    hits: Arc<AtomicUsize>,
}

async fn jwks_server(doc: String) -> JwksServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let doc = Arc::new(RwLock::new(doc));
    let hits = Arc::new(AtomicUsize::new(0));
    let (d, h) = (Arc::clone(&doc), Arc::clone(&hits));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (d, h) = (Arc::clone(&d), Arc::clone(&h));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let body = d.read().await.clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    JwksServer { addr, doc, hits }
}

#[tokio::test]
async fn jwks_url_is_cached_and_refetched_when_a_new_kid_appears() {
    let idp = jwks_server(std::fs::read_to_string(fixture("jwks.json")).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}/.well-known/jwks.json", idp.addr);
    let server = Server::start(
        dir.path(),
        &[
            ("APOGEE_AUTH", "jwt"),
            ("APOGEE_JWT_JWKS_URL", &url),
            ("APOGEE_JWT_JWKS_CACHE_SECS", "3600"),
            ("APOGEE_JWT_JWKS_MIN_REFRESH_SECS", "0"),
        ],
    )
    .await;
    assert_eq!(idp.hits.load(Ordering::SeqCst), 1, "fetched once at start");
    let rsa = rsa_key("rsa_private.pem");
    let t1 = jwt(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa,
        &claims("alice", "acme"),
    );
    let e1 = jwt(
        Algorithm::ES256,
        Some("ec-1"),
        &ec_key(),
        &claims("bob", "acme"),
    );
    assert_eq!(who(&server.addr, &t1).await.0, "alice");
    assert_eq!(who(&server.addr, &e1).await.0, "bob");
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        1,
        "known kids are served from the cache"
    );

    // The identity provider rotates its keys: rsa-1 is withdrawn, rsa-2 published.
    *idp.doc.write().await = std::fs::read_to_string(fixture("jwks_rotated.json")).unwrap();
    let t2 = jwt(
        Algorithm::RS256,
        Some("rsa-2"),
        &rsa_key("rsa_other_private.pem"),
        &claims("carol", "acme"),
    );
    assert_eq!(who(&server.addr, &t2).await.0, "carol");
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        2,
        "an unknown kid triggers one fetch"
    );
    assert_eq!(
        bearer_status(&server.addr, "", Some(&t1)).await,
        401,
        "withdrawn key"
    );
}

#[tokio::test]
async fn an_unreachable_jwks_url_does_not_stop_the_start_and_tokens_wait_for_it() {
    // A port that was just free: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{closed}/jwks.json");
    let server = Server::start(
        dir.path(),
        &[("APOGEE_AUTH", "jwt"), ("APOGEE_JWT_JWKS_URL", &url)],
    )
    .await;
    let t = jwt(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa_key("rsa_private.pem"),
        &claims("alice", "acme"),
    );
    assert_eq!(bearer_status(&server.addr, "", Some(&t)).await, 401);
    let (s, _) = http(&server.addr, "GET", "/health", &[], b"").await;
    assert_eq!(s, 200);
}
