//! The browser's sign-in endpoints (docs/protocol-notes.md, "Signing in with OpenID
//! Connect"): `GET /auth/login`, `GET /auth/callback`, `GET /auth/session`,
//! `POST /auth/logout`, `POST /auth/logout/everywhere`. All answer 404 unless OpenID Connect
//! is configured. The two the provider's redirects reach end in a redirect to the UI, with
//! `#signin_error=CODE` when the sign-in failed (the reason itself goes to the log).

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::{Callback, Oidc, SignInError};
use crate::http_error::ApiError;
use crate::metrics::CodeLabels;
use crate::state::AppState;
use crate::web_session::{Proof, WebSessionError, WebSessions, cookie};

/// The routes, merged into the main router by `app.rs`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/session", get(session))
        .route("/auth/logout", post(logout))
        .route("/auth/logout/everywhere", post(logout_everywhere))
}

/// OpenID Connect and its sessions, or 404 when sign-in through a provider is off.
fn parts(app: &AppState) -> Result<(&Oidc, &WebSessions), ApiError> {
    match (app.auth.oidc(), app.auth.web_sessions()) {
        (Some(oidc), Some(web)) => Ok((oidc, web)),
        _ => Err(ApiError::NotFound),
    }
}

/// A `303 See Other` with these cookies, never cached.
fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(to) {
        headers.insert(LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            headers.append(SET_COOKIE, v);
        }
    }
    (StatusCode::SEE_OTHER, headers).into_response()
}

fn count(app: &AppState, outcome: &'static str) {
    app.metrics
        .sign_ins
        .get_or_create(&CodeLabels { code: outcome })
        .inc();
}

/// Back to the UI with the failure's code; the reason is logged.
fn failed(app: &AppState, web: &WebSessions, e: &SignInError) -> Response {
    match e {
        SignInError::Store(_) => tracing::error!(error = %e, "sign-in failed"),
        _ => tracing::info!(error = %e, code = e.code(), "sign-in refused"),
    }
    count(app, e.code());
    redirect(
        &format!("/#signin_error={}", e.code()),
        &[web.policy().clear_login_cookie()],
    )
}

/// `GET /auth/login`: to the provider, with this browser's sign-in recorded.
async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let (oidc, web) = match parts(&app) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match oidc.start(peer.ip()).await {
        Ok(start) => redirect(
            &start.location,
            &[web.policy().login_cookie(&start.login_cookie)],
        ),
        Err(e) => failed(&app, web, &e),
    }
}

/// `GET /auth/callback`: the provider's answer; on success a session cookie and the UI.
async fn callback(
    State(app): State<AppState>,
    query: Result<Query<Callback>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (oidc, web) = match parts(&app) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let back = query.map(|Query(q)| q).unwrap_or_default();
    let login_cookie = cookie(&headers, web.policy().login_name());
    let person = match oidc.finish(login_cookie, &back).await {
        Ok(p) => p,
        Err(e) => return failed(&app, web, &e),
    };
    match web.create(&person).await {
        Ok((session, secret)) => {
            tracing::info!(user = %session.user.user_id, org = %session.user.org_id, "signed in");
            count(&app, "ok");
            redirect(
                "/",
                &[
                    web.policy().session_cookie(&secret, web.ttl_secs()),
                    web.policy().clear_login_cookie(),
                ],
            )
        }
        Err(e) => failed(&app, web, &SignInError::Store(e)),
    }
}

/// `response`, never cached, with `set_cookie` when given.
fn no_store(mut response: Response, set_cookie: Option<&str>) -> Response {
    if let Some(v) = set_cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().append(SET_COOKIE, v);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn session_error(e: WebSessionError) -> ApiError {
    match e {
        WebSessionError::NoCookie | WebSessionError::Ended => ApiError::Unauthorized(e.to_string()),
        WebSessionError::Csrf | WebSessionError::Origin(_) => ApiError::Forbidden(e.to_string()),
        WebSessionError::Store(e) => ApiError::internal(e),
    }
}

/// `GET /auth/session`: who this browser is signed in as, and the CSRF token its API calls
/// must send. 401 (and the cookie cleared) when it is not.
async fn session(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let (oidc, web) = match parts(&app) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match web.check(&headers, Proof::CookieOnly).await {
        Ok(s) => {
            let expires_at = chrono::DateTime::from_timestamp_millis(s.expires_ms)
                .map(apogee_protocol::time::instant);
            let body = Json(json!({
                "user_id": s.user.user_id,
                "org_id": s.user.org_id,
                "name": s.name,
                "email": s.email,
                "expires_at": expires_at,
                "csrf_token": s.csrf_token,
                "provider": oidc.config().provider_name,
            }));
            no_store(body.into_response(), None)
        }
        Err(e @ WebSessionError::Ended) => no_store(
            session_error(e).into_response(),
            Some(&web.policy().clear_session_cookie()),
        ),
        Err(e) => no_store(session_error(e).into_response(), None),
    }
}

/// Signs out this session (`everywhere: false`) or every session of its user. A request
/// without the CSRF token is refused (another site must not sign people out); one whose
/// session has already ended just clears the cookie.
async fn sign_out(app: &AppState, headers: &HeaderMap, everywhere: bool) -> Response {
    let web = match parts(app) {
        Ok((_, web)) => web,
        Err(e) => return e.into_response(),
    };
    let clear = web.policy().clear_session_cookie();
    let session = match web.check(headers, Proof::Csrf).await {
        Ok(s) => s,
        Err(WebSessionError::NoCookie | WebSessionError::Ended) => {
            return no_store(Json(json!({"signed_out": 0})).into_response(), Some(&clear));
        }
        Err(e) => return no_store(session_error(e).into_response(), None),
    };
    let done = if everywhere {
        web.sign_out_everywhere(&session.user).await
    } else {
        web.sign_out(&session.id).await.map(|()| 1)
    };
    match done {
        Ok(n) => {
            tracing::info!(user = %session.user.user_id, org = %session.user.org_id, sessions = n, everywhere, "signed out");
            no_store(Json(json!({"signed_out": n})).into_response(), Some(&clear))
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// `POST /auth/logout`.
async fn logout(State(app): State<AppState>, headers: HeaderMap) -> Response {
    sign_out(&app, &headers, false).await
}

/// `POST /auth/logout/everywhere`.
async fn logout_everywhere(State(app): State<AppState>, headers: HeaderMap) -> Response {
    sign_out(&app, &headers, true).await
}
