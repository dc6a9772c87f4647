//! The chat UI (`web/` at the workspace root), embedded in the binary so `apogee serve` needs
//! no Node and no files beside it, plus `GET /api/config`: the little the UI must know before
//! it can authenticate (demo or JWT mode).
//!
//! Asset names are not fingerprinted, so every answer carries `Cache-Control: no-cache` with a
//! strong `ETag`: browsers revalidate on each load and get a cheap 304 while the binary is the
//! same. A strict Content-Security-Policy goes with the HTML: the UI uses no inline script or
//! style, so a slip that injected markup could not run code.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, extract::State};
use serde_json::{Value, json};

use crate::config::AuthMode;
use crate::state::AppState;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ctype:expr) => {
        Asset {
            path: $path,
            content_type: $ctype,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the UI loads. A file added to `web/` must be listed here to be served.
static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("budgets.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/connection.js", JS),
    asset!("js/state.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/format.js", JS),
    asset!("js/markdown.js", JS),
    asset!("js/charts.js", JS),
    asset!("js/timeline.js", JS),
    asset!("js/thread_view.js", JS),
    asset!("js/identity.js", JS),
    asset!("js/test_taps.js", JS),
    asset!("js/budgets.js", JS),
    asset!("js/frames.js", JS),
];

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/`, `/assets/…` and `/api/config`, merged into the main router by `app.rs`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
        .route("/api/config", get(config))
}

/// The asset and its index in [`ASSETS`] (the index of its ETag).
fn find(path: &str) -> Option<(usize, &'static Asset)> {
    ASSETS.iter().enumerate().find(|(_, a)| a.path == path)
}

/// FNV-1a over the bytes: stable for a given binary, which is all an ETag needs here.
fn etag(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

/// ETags are computed once per process, in the order of [`ASSETS`].
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| ASSETS.iter().map(|a| etag(a.body)).collect())
}

fn serve((index, asset): (usize, &'static Asset), headers: &HeaderMap) -> Response {
    let tag = etags()
        .get(index)
        .cloned()
        .unwrap_or_else(|| etag(asset.body));
    let mut out_headers = HeaderMap::new();
    out_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out_headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&tag) {
        out_headers.insert(header::ETAG, v);
    }
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, out_headers).into_response();
    }
    out_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if asset.content_type.starts_with("text/html") {
        out_headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        out_headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    (out_headers, asset.body).into_response()
}

async fn index(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(a) => serve(a, &headers),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // `index.html` is only served at `/`, so the page has one address.
    match find(&path).filter(|(_, a)| a.path != "index.html") {
        Some(a) => serve(a, &headers),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "not_found", "message": "no such asset"}})),
        )
            .into_response(),
    }
}

/// What a client needs before it authenticates; no credentials needed to read it. With
/// OpenID Connect sign-in, `oidc` names the provider and where sign-in starts, and
/// `token_form` says whether the paste-a-token form is offered too (a developer setting).
/// `limits` are the protocol's bounds a client checks before sending, so it never retypes them.
async fn config(State(app): State<AppState>) -> Json<Value> {
    let auth = match app.config.auth {
        AuthMode::Demo => "demo",
        AuthMode::Jwt => "jwt",
    };
    let mut body = json!({
        "auth": auth,
        "protocol": apogee_protocol::SUBPROTOCOL,
        "limits": {
            "message_chars": apogee_protocol::client::MAX_CONTENT_CHARS,
            "frame_bytes": apogee_protocol::client::MAX_FRAME_BYTES,
        },
    });
    if let Some(oidc) = app.auth.oidc() {
        body["oidc"] = json!({"provider": oidc.config().provider_name, "login_url": "/auth/login"});
        body["token_form"] = json!(oidc.config().token_form);
    }
    Json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_typed() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.path);
            assert!(a.content_type.contains('/'), "{}", a.path);
        }
        assert!(find("index.html").is_some());
    }

    #[test]
    fn index_references_only_embedded_assets() {
        let html = std::str::from_utf8(find("index.html").map(|(_, a)| a.body).unwrap_or_default())
            .unwrap_or_default();
        for part in html.split("/assets/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| !matches!(c, '"' | '\'' | '?'))
                .collect();
            assert!(find(&name).is_some(), "index.html loads unknown {name}");
        }
    }

    #[test]
    fn js_imports_resolve_to_embedded_modules() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).unwrap_or_default();
            for part in text.split("from './").skip(1) {
                let name: String = part.chars().take_while(|c| *c != '\'').collect();
                let path = format!("js/{name}");
                assert!(find(&path).is_some(), "{} imports unknown {path}", a.path);
            }
        }
    }

    #[test]
    fn etags_differ_by_content() {
        assert_ne!(etag(b"a"), etag(b"b"));
        assert_eq!(etag(b"a"), etag(b"a"));
    }
}
