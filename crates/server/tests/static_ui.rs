//! The embedded web UI and `GET /api/config` over loopback: the page and its modules are
//! served from the binary, and the config tells a browser which sign-in to offer.

mod common;

use common::*;

#[tokio::test]
async fn the_ui_and_its_assets_are_served_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let (s, body) = http(&server.addr, "GET", "/", &[], b"").await;
    assert_eq!(s, 200);
    assert!(
        body.contains(r#"<script type="module" src="/assets/js/main.js">"#),
        "{body}"
    );
    let (s, body) = http(&server.addr, "GET", "/assets/js/main.js", &[], b"").await;
    assert_eq!(s, 200);
    assert!(body.contains("import"), "{body}");
    let (s, _) = http(&server.addr, "GET", "/assets/app.css", &[], b"").await;
    assert_eq!(s, 200);
    for missing in [
        "/assets/nope.js",
        "/assets/index.html",
        "/assets/../Cargo.toml",
    ] {
        let (s, _) = http(&server.addr, "GET", missing, &[], b"").await;
        assert_eq!(s, 404, "{missing}");
    }
    let (s, body) = http(&server.addr, "GET", "/api/config", &[], b"").await;
    assert_eq!(s, 200);
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["auth"], "demo", "{body}");
    // The bounds the UI checks before sending come from the protocol crate, not retyped.
    assert_eq!(
        config["limits"]["message_chars"],
        apogee_protocol::client::MAX_CONTENT_CHARS,
        "{body}"
    );
    assert_eq!(
        config["limits"]["frame_bytes"],
        apogee_protocol::client::MAX_FRAME_BYTES
    );
}

#[tokio::test]
async fn config_reports_jwt_mode_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("APOGEE_AUTH", "jwt"),
            (
                "APOGEE_JWT_HS256_SECRET",
                "test-secret-of-reasonable-length",
            ),
        ],
    )
    .await;
    let (s, body) = http(&server.addr, "GET", "/api/config", &[], b"").await;
    assert_eq!(s, 200);
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["auth"], "jwt", "{body}");
    let (s, _) = http(&server.addr, "GET", "/", &[], b"").await;
    assert_eq!(s, 200, "the page itself needs no credentials");
}
