//! REST endpoints of PROTOCOL.md §7. Every `/api` handler takes the caller's [`UserSession`]
//! (or [`Identity`]) as an extractor (`extract.rs`), so it cannot run unauthenticated, and
//! answers through that session, so it only ever sees the caller's own data.

use apogee_analytics::formats::FormatError;
use apogee_analytics::savings::{CACHE_HIT_RATE, Recommendation, ShortLimits, recommend};
use apogee_analytics::{Nanos, Period};
use apogee_protocol::time::instant;
use apogee_store::MessageRow;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Identity;
use crate::http_error::ApiError;
use crate::ingest::{InFlight, Parsed, body_format, parse_body};
use crate::metrics::ReasonLabels;
use crate::rate::RateTable;
use crate::session::{SessionError, UserSession};
use crate::state::AppState;
use apogee_store::UserKey;

/// `POST /api/ws-ticket`: a single-use, 60 s credential for `GET /ws?ticket=` (browsers
/// cannot set headers on a WebSocket).
pub async fn ws_ticket(
    State(app): State<AppState>,
    who: Identity,
) -> Result<Json<Value>, ApiError> {
    let t = app.auth.issue_ticket(&who).await?;
    Ok(Json(
        json!({"ticket": t.ticket, "expires_in": t.expires_in}),
    ))
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::NotFound => ApiError::NotFound,
            other => ApiError::internal(other),
        }
    }
}

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 503 only when the database is unreachable: without it nothing can be stored. An
/// unreachable Redis is reported (`"status": "degraded"`) but keeps the node in rotation, since
/// it still serves its users and reads other nodes' events from the database.
pub async fn ready(State(app): State<AppState>) -> Response {
    let database = app.store.ping().await;
    let mut checks = serde_json::Map::new();
    checks.insert(
        "database".into(),
        match &database {
            Ok(()) => json!("ok"),
            Err(e) => json!(format!("error: {e}")),
        },
    );
    let redis_up = app.bus.as_ref().map(|bus| bus.connected());
    if let Some(up) = redis_up {
        checks.insert("redis".into(), json!(if up { "ok" } else { "unreachable" }));
    }
    let (status, word) = match (&database, redis_up) {
        (Err(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (Ok(()), Some(false)) => (StatusCode::OK, "degraded"),
        (Ok(()), _) => (StatusCode::OK, "ready"),
    };
    (status, Json(json!({"status": word, "checks": checks}))).into_response()
}

/// The metrics in the OpenMetrics text format.
pub fn metrics_text(metrics: &crate::metrics::Metrics) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

/// `GET /metrics` on the main listener: not there when a separate metrics address is
/// configured; behind `Authorization: Bearer <APOGEE_METRICS_TOKEN>` when a token is; not
/// there in production without either (the figures say much about a deployment); open
/// otherwise.
pub async fn metrics_on_main(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let config = &app.config;
    if config.metrics_addr.is_some() {
        return ApiError::NotFound.into_response();
    }
    match &config.metrics_token {
        Some(token) => {
            let sent = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !constant_time_eq(sent.as_bytes(), token.as_bytes()) {
                return ApiError::Unauthorized(
                    "`/metrics` needs `Authorization: Bearer <metrics token>`".into(),
                )
                .into_response();
            }
        }
        None if config.env == crate::config::Environment::Production => {
            return ApiError::NotFound.into_response();
        }
        None => {}
    }
    metrics_text(&app.metrics)
}

/// Compares without stopping at the first difference, so timing says nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn threads(s: UserSession) -> Result<Json<Value>, ApiError> {
    let rows = s.threads().await?;
    let threads: Vec<Value> = rows
        .into_iter()
        .map(|t| json!({"id": t.id, "title": t.title, "created_at": t.created_at}))
        .collect();
    Ok(Json(json!({ "threads": threads })))
}

fn message_json(m: MessageRow) -> Value {
    let mut v = json!({"id": m.id, "thread_id": m.thread_id, "role": m.role, "content": m.content, "created_at": m.created_at});
    if let Some(c) = m.client_msg_id {
        v["client_msg_id"] = c.into();
    }
    if let Some(r) = m.run_id {
        v["run_id"] = r.into();
    }
    v
}

/// An id from a path: one with a control character is no id of ours (and PostgreSQL cannot
/// even look up text holding U+0000), so it is a 400 before any lookup.
fn path_id<'a>(id: &'a str, what: &str) -> Result<&'a str, ApiError> {
    match id.chars().find(|c| c.is_control()) {
        Some(c) => Err(ApiError::BadRequest(format!(
            "the {what} id contains the control character U+{:04X}",
            u32::from(c)
        ))),
        None => Ok(id),
    }
}

pub async fn thread_messages(
    s: UserSession,
    Path(thread_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let thread_id = path_id(&thread_id, "thread")?;
    let messages: Vec<Value> = s
        .thread_messages(thread_id)
        .await?
        .into_iter()
        .map(message_json)
        .collect();
    Ok(Json(json!({ "messages": messages })))
}

pub async fn run_events(s: UserSession, Path(run_id): Path<String>) -> Result<Response, ApiError> {
    let events = s.run_events(path_id(&run_id, "run")?).await?;
    // The stored payloads are the exact frames sent on the wire; splice them in unchanged.
    let mut body = String::from("{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.payload);
    }
    body.push_str("]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// An ingest request in progress: one of its user's ingests in flight, the body, and (once
/// parsing starts) one of the node's parsing turns, held until the request is answered so the
/// parsed records of at most that many requests are in memory at once. The body is read before
/// the turn is taken: a client that sends slowly holds its own place, never a turn others wait
/// for.
pub(crate) struct IngestRequest {
    body: Bytes,
    _in_flight: InFlight,
    turn: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl IngestRequest {
    /// 429 when the user has as many ingests in flight as allowed; then reads the body: 413
    /// past `max_body_bytes`, 408 past `body_timeout_ms`.
    pub(crate) async fn take(
        app: &AppState,
        s: &UserSession,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<IngestRequest, ApiError> {
        let in_flight = app
            .ingest
            .enter(s.key())
            .map_err(|max| ApiError::TooManyRequests {
                retry_after: 1,
                message: format!("this user has {max} ingest requests in flight, the most allowed"),
            })?;
        let limit = app.config.max_body_bytes;
        let too_large =
            || ApiError::PayloadTooLarge(format!("request body too large (limit {limit} bytes)"));
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let timeout = std::time::Duration::from_millis(app.config.body_timeout_ms);
        let body = tokio::time::timeout(timeout, read_body(body, limit))
            .await
            .map_err(|_| {
                ApiError::RequestTimeout(format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs()
                ))
            })?
            .map_err(|e| match e {
                BodyError::TooLarge => too_large(),
                BodyError::Read(e) => ApiError::BadRequest(format!("cannot read the body: {e}")),
            })?;
        Ok(IngestRequest {
            body,
            _in_flight: in_flight,
            turn: None,
        })
    }

    /// Waits for a parsing turn, then runs `parse` over the body on a blocking thread: parsing
    /// a large body is seconds of CPU that must not hold up an async worker.
    pub(crate) async fn parse<T: Send + 'static>(
        &mut self,
        app: &AppState,
        parse: impl FnOnce(&[u8]) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        self.turn = Some(app.ingest.turn().await);
        let body = self.body.clone();
        tokio::task::spawn_blocking(move || parse(&body))
            .await
            .map_err(ApiError::internal)
    }
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Reads a body up to `limit` bytes (decompressed, when a layer decompresses it). Memory
/// grows with what has arrived, not with what the headers announce.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// Stores the accepted records of a parsed body for the caller's org and counts them; records
/// the store refused (their hourly sums would overflow) become rejections.
pub(crate) async fn store_parsed(
    app: &AppState,
    s: &UserSession,
    mut parsed: Parsed,
) -> Result<(apogee_store::IngestSummary, Parsed), ApiError> {
    let summary = s.ingest_usage(&parsed.accepted).await?;
    parsed.reject_accepted(&summary.rejected);
    if summary.accepted > 0 {
        app.budgets.usage_changed(&s.key().org_id);
    }
    app.metrics.usage_records_accepted.inc_by(summary.accepted);
    app.metrics
        .usage_records_rejected
        .inc_by(parsed.rejected_count as u64);
    Ok((summary, parsed))
}

#[derive(Deserialize)]
pub struct UsageQuery {
    format: Option<String>,
}

pub async fn ingest_usage(
    State(app): State<AppState>,
    s: UserSession,
    headers: HeaderMap,
    Query(q): Query<UsageQuery>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = body_format(q.format.as_deref(), content_type).map_err(ApiError::BadRequest)?;
    let mut request = IngestRequest::take(&app, &s, &headers, body).await?;
    let catalog = s.catalog_arc();
    let limits = app.ingest_limits();
    let parsed = request
        .parse(&app, move |body| parse_body(format, body, &catalog, limits))
        .await?
        .map_err(|e| match e {
            FormatError::TooManyRecords(_) => ApiError::PayloadTooLarge(e.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        })?;
    let (summary, parsed) = store_parsed(&app, &s, parsed).await?;
    Ok(Json(json!({
        "accepted": summary.accepted,
        "duplicates": summary.duplicates,
        "rejected": parsed.rejected,
        "rejected_count": parsed.rejected_count,
    })))
}

/// Counts a call against its user's rate for `endpoint`; 429 with `Retry-After` beyond.
pub(crate) fn within_rate(
    app: &AppState,
    rates: &RateTable<UserKey>,
    s: &UserSession,
    endpoint: &'static str,
) -> Result<(), ApiError> {
    rates
        .take(s.key(), std::time::Instant::now())
        .map_err(|wait| {
            app.metrics
                .rest_rate_limited
                .get_or_create(&ReasonLabels { reason: endpoint })
                .inc();
            ApiError::rate_limited(
                wait,
                format!("too many `{endpoint}` requests for this user; retry later"),
            )
        })
}

/// `2026-11-01` (a whole UTC day) or RFC 3339. A bare date as `to` includes that day.
pub(crate) fn parse_bound(text: &str, is_end: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ApiError::BadRequest(format!("`{text}` is neither YYYY-MM-DD nor RFC 3339"))
    })?;
    let start = day
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc())
        .ok_or(ApiError::Internal)?;
    Ok(if is_end {
        start + Duration::days(1)
    } else {
        start
    })
}

/// The window of `GET /api/costs` and `GET /api/recommendations`: a named `period` (default
/// `30d`), whose bounds `from` / `to` replace when given.
pub(crate) fn period_of(
    period: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Period, ApiError> {
    let default = match period {
        None => Period::last_days(Utc::now(), 30),
        Some(name) => Period::named(name, Utc::now()).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown period `{name}`: use {}",
                Period::NAMES.join(", ")
            ))
        })?,
    };
    let from = from
        .map(|t| parse_bound(t, false))
        .transpose()?
        .unwrap_or(default.from);
    let to = to
        .map(|t| parse_bound(t, true))
        .transpose()?
        .unwrap_or(default.to);
    if from >= to {
        return Err(ApiError::BadRequest("`from` must be before `to`".into()));
    }
    Ok(Period::new(from, to))
}

#[derive(Deserialize)]
pub struct RecommendationsQuery {
    period: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// `GET /api/recommendations`: the savings the period's usage backs, largest first.
pub async fn recommendations(
    State(app): State<AppState>,
    s: UserSession,
    Query(q): Query<RecommendationsQuery>,
) -> Result<Json<Value>, ApiError> {
    within_rate(&app, &app.rest_rates.recommendations, &s, "recommendations")?;
    let period = period_of(q.period.as_deref(), q.from.as_deref(), q.to.as_deref())?;
    let limits = ShortLimits::default();
    let recs = recommend(s.usage(), s.catalog(), &period, limits)
        .await
        .map_err(ApiError::internal)?;
    let total: Nanos = recs.iter().map(|r| r.monthly_saving).sum();
    Ok(Json(json!({
        "org_id": s.identity().org_id(),
        "from": instant(period.from),
        "to": instant(period.to),
        "currency": "USD",
        "limits": limits,
        "cache_hit_rate": CACHE_HIT_RATE,
        "monthly_saving_nanos": total,
        "monthly_saving_usd": total.usd(),
        "recommendations": recs.iter().map(Recommendation::to_json).collect::<Vec<_>>(),
    })))
}
