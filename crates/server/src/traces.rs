//! `POST /v1/traces`: the OTLP/HTTP traces endpoint, so applications instrumented with
//! OpenTelemetry GenAI conventions export straight to Apogee. Authenticated like every REST
//! call; the body is protobuf (`application/x-protobuf`) or JSON (`application/json`),
//! plain or gzip (decompressed by the route's layer, see `app.rs`); the answer is an `ExportTraceServiceResponse` in the same encoding, with
//! `partial_success` naming rejected spans. Spans are read by [`crate::ingest::otlp`].

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::http_error::ApiError;
use crate::ingest::otlp::{self, Encoding};
use crate::ingest::price_batch;
use crate::rest::{body_bytes, session, store_parsed};

pub async fn traces(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let s = session(&app, &headers).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let encoding = Encoding::from_content_type(content_type).ok_or_else(|| {
        ApiError::UnsupportedMediaType(
            "OTLP/HTTP bodies are application/x-protobuf or application/json".into(),
        )
    })?;
    let body = body_bytes(&app, body)?;
    let request = otlp::decode(encoding, &body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let spans = otlp::records(&request);
    let parsed = price_batch(spans.batch, s.catalog());
    let summary = store_parsed(&app, &s, &parsed).await?;
    tracing::debug!(
        accepted = summary.accepted,
        duplicates = summary.duplicates,
        rejected = parsed.rejected.len(),
        skipped = spans.skipped,
        "OTLP spans ingested"
    );
    Ok((
        [(header::CONTENT_TYPE, encoding.content_type())],
        otlp::response(encoding, &parsed.rejected),
    )
        .into_response())
}
