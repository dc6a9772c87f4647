//! `POST /v1/traces`: the OTLP/HTTP traces endpoint, so applications instrumented with
//! OpenTelemetry GenAI conventions export straight to Apogee. Authenticated like every REST
//! call; the body is protobuf (`application/x-protobuf`) or JSON (`application/json`),
//! plain or gzip (decompressed by the route's layer, see `app.rs`); the answer is an `ExportTraceServiceResponse` in the same encoding, with
//! `partial_success` naming rejected spans. Spans are read by [`crate::ingest::otlp`].

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::http_error::ApiError;
use crate::ingest::otlp::{self, Encoding, OtlpError};
use crate::ingest::price_batch;
use crate::rest::{IngestRequest, store_parsed};
use crate::session::UserSession;
use crate::state::AppState;

pub async fn traces(
    State(app): State<AppState>,
    s: UserSession,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let encoding = Encoding::from_content_type(content_type).ok_or_else(|| {
        ApiError::UnsupportedMediaType(
            "OTLP/HTTP bodies are application/x-protobuf or application/json".into(),
        )
    })?;
    let mut request = IngestRequest::take(&app, &s, &headers, body).await?;
    let catalog = s.catalog_arc();
    let limits = app.ingest_limits();
    let parsed = request
        .parse(&app, move |body| {
            let spans = otlp::read(encoding, body, limits)?;
            tracing::debug!(skipped = spans.skipped, "OTLP spans read");
            Ok::<_, OtlpError>(price_batch(spans.batch, &catalog, limits))
        })
        .await?
        .map_err(|e| match e {
            OtlpError::TooManySpans(e) => ApiError::PayloadTooLarge(e.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        })?;
    let (summary, parsed) = store_parsed(&app, &s, parsed).await?;
    tracing::debug!(
        accepted = summary.accepted,
        duplicates = summary.duplicates,
        rejected = parsed.rejected_count,
        "OTLP spans ingested"
    );
    Ok((
        [(header::CONTENT_TYPE, encoding.content_type())],
        otlp::response(encoding, &parsed.rejected, parsed.rejected_count),
    )
        .into_response())
}
