//! `GET/POST /api/budgets` and `GET/PATCH/DELETE /api/budgets/{id}`
//! (`docs/protocol-notes.md`, "Budgets and alerts"). Any member of an org manages its budgets:
//! the caller's org comes from its credentials, never from the request, so one org's budgets
//! are out of another's reach (an id of another org's budget is a 404). Every answer carries
//! the budget's current period, its spend so far, forecast and state, computed as
//! `GET /api/costs` computes them.

use apogee_store::{BudgetError, BudgetRow};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::spec::{BudgetSpec, scope_to_json};
use super::{MAX_BUDGETS_PER_ORG, manage};
use crate::http_error::ApiError;
use crate::rest::within_rate;
use crate::session::UserSession;
use crate::state::AppState;

/// Alerts of the current period listed with each budget, at most.
const ALERTS_SHOWN: usize = 50;

/// The caller's session, recorded as a member of its org (budget alerts go to members).
pub struct Member(UserSession);

impl FromRequestParts<AppState> for Member {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let s = UserSession::from_request_parts(parts, app).await?;
        app.budgets.member_seen(s.key()).await;
        Ok(Member(s))
    }
}

fn unreadable(row: &BudgetRow, e: String) -> ApiError {
    ApiError::internal(format!("budget {}: {e}", row.id))
}

/// A budget as every answer shows it.
async fn view(app: &AppState, s: &UserSession, row: &BudgetRow) -> Result<Value, ApiError> {
    let (spec, standing) = manage::read(s.usage(), row, Utc::now())
        .await
        .map_err(ApiError::internal)?;
    let period_start = standing.period.from.date_naive().to_string();
    let alerts: Vec<Value> = app
        .store
        .fired_alerts(&row.org_id, &period_start)
        .await?
        .into_iter()
        .filter(|a| {
            a.budget_id == row.id && a.revision == row.revision && a.period_start == period_start
        })
        .take(ALERTS_SHOWN)
        .map(|a| {
            json!({
                "crossing": a.crossing,
                "fired_at": chrono::DateTime::from_timestamp_millis(a.fired_ms)
                    .map(apogee_protocol::time::record_time),
            })
        })
        .collect();
    Ok(json!({
        "id": row.id,
        "name": spec.name,
        "amount_nanos": spec.amount,
        "amount_usd": spec.amount.usd(),
        "period": spec.period.as_str(),
        "scope": scope_to_json(&spec.scope),
        "thresholds": spec.thresholds,
        "forecast_alert": spec.forecast_alert,
        "revision": row.revision,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "currency": "USD",
        "current": standing.to_json(&spec),
        "alerts": alerts,
    }))
}

/// `GET /api/budgets`: the org's budgets, oldest first.
pub async fn list(State(app): State<AppState>, Member(s): Member) -> Result<Json<Value>, ApiError> {
    within_rate(&app, &app.rest_rates.costs, &s, "budgets")?;
    let rows = app.store.budgets(&s.key().org_id).await?;
    let mut budgets = Vec::with_capacity(rows.len());
    for row in &rows {
        budgets.push(view(&app, &s, row).await?);
    }
    Ok(Json(json!({
        "org_id": s.key().org_id,
        "max_budgets": MAX_BUDGETS_PER_ORG,
        "budgets": budgets,
    })))
}

/// `POST /api/budgets`: 201 with the new budget.
pub async fn create(
    State(app): State<AppState>,
    Member(s): Member,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec = BudgetSpec::from_new(&body).map_err(ApiError::BadRequest)?;
    let row = manage::create(&app.store, &app.budgets, s.key(), &spec)
        .await
        .map_err(|e| match e {
            BudgetError::TooMany(..) => ApiError::LimitReached(e.to_string()),
            BudgetError::Store(e) => ApiError::internal(e),
        })?;
    let v = view(&app, &s, &row).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn found(app: &AppState, s: &UserSession, id: &str) -> Result<BudgetRow, ApiError> {
    app.store
        .budget(&s.key().org_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// `GET /api/budgets/{id}`.
pub async fn one(
    State(app): State<AppState>,
    Member(s): Member,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    within_rate(&app, &app.rest_rates.costs, &s, "budgets")?;
    let row = found(&app, &s, &id).await?;
    Ok(Json(view(&app, &s, &row).await?))
}

/// `PATCH /api/budgets/{id}`: changes the fields given. A change of what the budget measures
/// (anything but its name) starts a new revision, whose crossings alert afresh.
pub async fn change(
    State(app): State<AppState>,
    Member(s): Member,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let row = found(&app, &s, &id).await?;
    let before = BudgetSpec::from_row(&row).map_err(|e| unreadable(&row, e))?;
    let after = before
        .clone()
        .changed(&body)
        .map_err(ApiError::BadRequest)?;
    let row = manage::change(&app.store, &app.budgets, row, &before, &after)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(view(&app, &s, &row).await?))
}

/// `DELETE /api/budgets/{id}`: 204; the alerts it fired stay in members' streams.
pub async fn delete(
    State(app): State<AppState>,
    Member(s): Member,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if app.store.delete_budget(&s.key().org_id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
