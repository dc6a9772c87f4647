//! Authentication as request extractors: a handler that names [`Identity`] or
//! [`UserSession`] among its arguments cannot run without the caller authenticated, and the
//! credentials are checked before any later extractor reads the request (its query, its
//! body). Which credentials a request is judged by — Bearer JWT, browser session cookie with
//! its CSRF token, the demo header — is [`crate::auth::Authenticator::authenticate_rest`]'s
//! one rule; a refusal is the REST error of [`ApiError`] (401, 403 for a cookie without its
//! proof).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::Identity;
use crate::http_error::ApiError;
use crate::session::UserSession;
use crate::state::AppState;

impl FromRequestParts<AppState> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        Ok(app.auth.authenticate_rest(&parts.headers).await?)
    }
}

/// The caller's session: every `/api` handler's way to the caller's own data.
impl FromRequestParts<AppState> for UserSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let identity = Identity::from_request_parts(parts, app).await?;
        Ok(app.sessions.open(&identity))
    }
}
