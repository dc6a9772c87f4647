//! REST error answers (PROTOCOL.md §7): `{"error":{"code","message"}}` with a fitting status.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the proof they need (a cookie without its CSRF token).
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Over a rate or a limit; retry after `retry_after` seconds (sent as `Retry-After`).
    #[error("{message}")]
    TooManyRequests { retry_after: u64, message: String },
    /// The client took longer than allowed to send its request body.
    #[error("{0}")]
    RequestTimeout(String),
    /// A per-org or per-user count is at its limit (409): remove something first.
    #[error("{0}")]
    LimitReached(String),
    #[error("internal error")]
    Internal,
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::LimitReached(_) => (StatusCode::CONFLICT, "limit_reached"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }

    /// A 429 after a rate said to wait `wait` (at least one second in `Retry-After`).
    pub fn rate_limited(wait: std::time::Duration, message: impl Into<String>) -> ApiError {
        ApiError::TooManyRequests {
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            message: message.into(),
        }
    }

    /// Logs a server-side failure and hides its details from the client.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "request failed");
        ApiError::Internal
    }
}

/// Bad credentials are 401, a session cookie without its CSRF token (or from another origin)
/// 403; a server that could not check them answers 500.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        if e.is_forbidden() {
            ApiError::Forbidden(e.to_string())
        } else if e.is_client_error() {
            ApiError::Unauthorized(e.to_string())
        } else {
            ApiError::internal(e)
        }
    }
}

/// A store failure is ours, not the client's: logged, answered 500 without its details.
impl From<apogee_store::StoreError> for ApiError {
    fn from(e: apogee_store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let body = Json(json!({"error": {"code": code, "message": self.to_string()}}));
        match self {
            ApiError::TooManyRequests { retry_after, .. } => (
                status,
                [(header::RETRY_AFTER, retry_after.to_string())],
                body,
            )
                .into_response(),
            _ => (status, body).into_response(),
        }
    }
}
