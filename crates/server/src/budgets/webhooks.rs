//! Webhooks per org: `GET/POST /api/webhooks`, `DELETE /api/webhooks/{id}`, and the delivery
//! of budget alerts to them ([`deliver`]). Each crossing's deliveries are queued in the store
//! with its claim (once per webhook, whatever the nodes); every node takes due ones under a
//! lease, posts them signed, and retries failures with exponential backoff until
//! [`MAX_ATTEMPTS`]. What deliveries came to shows in the API (`pending`, `delivered`,
//! `failed`, `last_error`) and in `/metrics` (`apogee_webhook_deliveries_total{outcome}`).
//!
//! Bodies: `slack` is `{"text": …}` (Slack incoming webhooks), `teams` a `MessageCard`
//! (Microsoft Teams incoming webhooks), `json` the alert itself with a `text`. Every request
//! carries `X-Apogee-Signature: sha256=HEX`, the HMAC-SHA256 of `{timestamp}.{body}` under the
//! webhook's secret, with `X-Apogee-Timestamp` (unix seconds) and `X-Apogee-Delivery` (the
//! delivery's id, the same on every retry: receivers drop repeats by it).

use std::sync::Arc;
use std::time::Duration;

use apogee_protocol::BudgetAlert;
use apogee_store::{BudgetError, DueDelivery, Store, WebhookRow};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::http_error::ApiError;
use crate::metrics::Metrics;
use crate::session::UserSession;
use crate::state::AppState;

/// Webhooks one org may have.
pub const MAX_WEBHOOKS_PER_ORG: usize = 10;
/// Attempts of one delivery before it is given up (`failed`).
pub const MAX_ATTEMPTS: i64 = 8;
/// Wait before the second attempt; doubled for each further one, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// One attempt's bound; the lease outlasts it, so no other node takes the delivery meanwhile.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const LEASE: Duration = Duration::from_secs(30);
/// Deliveries taken per round, and how often due ones are looked for without a wake-up.
const BATCH: usize = 16;
const POLL: Duration = Duration::from_millis(500);
/// Longest URL accepted.
const MAX_URL_CHARS: usize = 2_048;

/// The wait before attempt `attempts + 1`.
pub fn backoff(attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(MAX_BACKOFF)
}

/// The body a webhook of `format` gets for `alert`.
pub fn body(format: &str, alert: &BudgetAlert) -> Value {
    match format {
        "slack" => json!({"text": format!(":rotating_light: {}", alert.message)}),
        "teams" => json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": alert.message,
            "themeColor": "D93F0B",
            "title": format!("Budget alert: {}", alert.budget.name),
            "text": alert.message,
        }),
        _ => json!({"type": "budget_alert", "text": alert.message, "alert": alert}),
    }
}

/// `sha256=HEX` of HMAC-SHA256(`secret`, `{timestamp}.{body}`).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes a key of any length; this arm is unreachable.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Posts due deliveries until `shutdown`; `wake` says an alert was just queued.
pub async fn deliver(
    store: Store,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; webhooks are not delivered");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
        loop {
            let now = Utc::now().timestamp_millis();
            let lease = now.saturating_add(LEASE.as_millis() as i64);
            let due = match store.take_due_deliveries(now, lease, BATCH).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read due webhook deliveries");
                    break;
                }
            };
            let n = due.len();
            futures_util::future::join_all(
                due.into_iter()
                    .map(|d| attempt(&client, &store, &metrics, d)),
            )
            .await;
            if n < BATCH || shutdown.is_cancelled() {
                break;
            }
        }
    }
}

/// One attempt of one delivery, and its outcome recorded.
async fn attempt(client: &reqwest::Client, store: &Store, metrics: &Metrics, d: DueDelivery) {
    let outcome = post(client, &d).await;
    let now = Utc::now();
    let (error, retry_at, label) = match &outcome {
        Ok(()) => (None, None, "delivered"),
        Err(e) if d.attempts < MAX_ATTEMPTS => (
            Some(e.as_str()),
            Some(now.timestamp_millis() + backoff(d.attempts).as_millis() as i64),
            "retry",
        ),
        Err(e) => (Some(e.as_str()), None, "failed"),
    };
    metrics
        .webhook_deliveries
        .get_or_create(&crate::metrics::OutcomeLabels { outcome: label })
        .inc();
    if let Some(e) = error {
        tracing::info!(delivery = %d.id, attempts = d.attempts, error = %e, outcome = label, "webhook delivery failed");
    }
    if let Err(e) = store
        .delivery_attempted(&d.id, now.timestamp_millis(), error, retry_at)
        .await
    {
        // The lease runs out and the delivery is tried again: at least once, not lost.
        tracing::warn!(delivery = %d.id, error = %e, "could not record a webhook attempt");
    }
}

async fn post(client: &reqwest::Client, d: &DueDelivery) -> Result<(), String> {
    let alert: BudgetAlert =
        serde_json::from_str(&d.alert).map_err(|e| format!("stored alert: {e}"))?;
    let body =
        serde_json::to_vec(&body(&d.webhook.format, &alert)).map_err(|e| format!("body: {e}"))?;
    let ts = Utc::now().timestamp();
    let response = client
        .post(&d.webhook.url)
        .header("Content-Type", "application/json")
        .header("User-Agent", "apogee-webhooks")
        .header("X-Apogee-Event", "budget_alert")
        .header("X-Apogee-Delivery", &d.id)
        .header("X-Apogee-Timestamp", ts.to_string())
        .header(
            "X-Apogee-Signature",
            signature(&d.webhook.secret, ts, &body),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    url: String,
    format: Option<String>,
}

fn checked(body: &[u8]) -> Result<(String, String), String> {
    let b: NewWebhook =
        serde_json::from_slice(body).map_err(|e| format!("the body is not a webhook: {e}"))?;
    let format = b.format.unwrap_or_else(|| "json".into());
    if !["slack", "teams", "json"].contains(&format.as_str()) {
        return Err(format!(
            "unknown format `{format}`: use slack, teams or json"
        ));
    }
    if b.url.chars().count() > MAX_URL_CHARS {
        return Err(format!("`url` is at most {MAX_URL_CHARS} characters"));
    }
    let url = url::Url::parse(&b.url).map_err(|e| format!("`url` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("`url` must be an http or https URL with a host".into());
    }
    Ok((url.to_string(), format))
}

fn shown(hook: &WebhookRow, stats: Option<&apogee_store::DeliveryStats>) -> Value {
    let mut v = json!({
        "id": hook.id,
        "url": hook.url,
        "format": hook.format,
        "created_by": hook.created_by,
        "created_at": hook.created_at,
    });
    if let Some(s) = stats {
        v["deliveries"] = json!({
            "pending": s.pending,
            "delivered": s.delivered,
            "failed": s.failed,
            "last_error": s.last_error,
        });
    }
    v
}

/// `GET /api/webhooks`: the org's webhooks with what their deliveries came to (secrets are
/// not shown again).
pub async fn list(State(app): State<AppState>, s: UserSession) -> Result<Json<Value>, ApiError> {
    let hooks = app.store.webhooks(&s.key().org_id).await?;
    Ok(Json(json!({
        "webhooks": hooks.iter().map(|(h, st)| shown(h, Some(st))).collect::<Vec<_>>(),
    })))
}

/// `POST /api/webhooks` `{url, format?}`: 201 with the webhook and its `secret`, shown once.
pub async fn create(
    State(app): State<AppState>,
    s: UserSession,
    body: Bytes,
) -> Result<Response, ApiError> {
    app.budgets.member_seen(s.key()).await;
    let (url, format) = checked(&body).map_err(ApiError::BadRequest)?;
    let secret: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    let hook = WebhookRow {
        id: format!("whk_{}", uuid::Uuid::now_v7().simple()),
        org_id: s.key().org_id.clone(),
        url,
        format,
        secret,
        created_by: s.key().user_id.clone(),
        created_at: apogee_protocol::time::record_time(Utc::now()),
    };
    app.store
        .create_webhook(&hook, MAX_WEBHOOKS_PER_ORG)
        .await
        .map_err(|e| match e {
            BudgetError::TooMany(..) => ApiError::LimitReached(e.to_string()),
            BudgetError::Store(e) => ApiError::internal(e),
        })?;
    let mut v = shown(&hook, None);
    v["secret"] = json!(hook.secret);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `DELETE /api/webhooks/{id}`: 204, its pending deliveries dropped.
pub async fn delete(
    State(app): State<AppState>,
    s: UserSession,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if app.store.delete_webhook(&s.key().org_id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_bound() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_and_body() {
        // Computed apart from `signature`: the MAC of exactly `{timestamp}.{body}`.
        let key = "Jefe";
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(b"1700000000.{}");
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            signature(key, 1_700_000_000, b"{}"),
            format!("sha256={expected}")
        );
        assert_ne!(
            signature("other", 1_700_000_000, b"{}"),
            signature(key, 1_700_000_000, b"{}")
        );
    }

    #[test]
    fn urls_and_formats_are_checked() {
        assert!(
            checked(br#"{"url": "https://hooks.slack.com/services/T/B/x", "format": "slack"}"#)
                .is_ok()
        );
        for (body, says) in [
            (r#"{"url": "ftp://x/y"}"#, "http or https"),
            (r#"{"url": "not a url"}"#, "not a URL"),
            (
                r#"{"url": "https://x/y", "format": "discord"}"#,
                "unknown format",
            ),
            (
                r#"{"url": "https://x/y", "secret": "s"}"#,
                "unknown field `secret`",
            ),
        ] {
            let e = checked(body.as_bytes()).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
    }
}
