//! Budgets and their live alerts: `/api/budgets` ([`routes`]), what a budget is ([`spec`]),
//! where it stands ([`evaluate`]), creating, changing and reading budgets for the API and the
//! chat alike ([`manage`]), and [`Budgets`], which evaluates an org's budgets after
//! each ingest batch and on a timer and delivers each crossing once.
//!
//! Exactly once: a crossing is (budget, revision, calendar period, threshold or `forecast`).
//! Whichever node sees it first claims that key in the database in the same transaction that
//! appends its `budget_alert` event to every org member's stream
//! ([`apogee_store::Store::fire_alert`]); every other evaluation, on any node, before or after
//! a restart, finds the key taken and sends nothing. The events are then handed to this
//! node's connections and, through Redis, to other nodes' (`Hub::deliver_stored`); a
//! member who is offline gets them on replay like any event.
//!
//! Members: the store has no list of an org's people, so the server records the users it sees
//! — on opening a WebSocket and on calling `/api/budgets` ([`Budgets::member_seen`]). A user
//! is alerted from the first connection on.

pub mod anomaly;
pub mod evaluate;
pub mod manage;
pub mod routes;
pub mod spec;
pub mod webhooks;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apogee_analytics::{Nanos, OrgUsageQueries};
use apogee_protocol::{EventBody, StreamEvent};
use apogee_store::{AlertClaim, BudgetRow, NewEvent, Store, StoreError, UserKey};
use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::sync::lock;
use evaluate::{AlertInput, Crossing, Standing};
use spec::BudgetSpec;

/// Budgets one org may have (a clear 409 beyond).
pub const MAX_BUDGETS_PER_ORG: usize = 100;
/// Members one alert reaches at most: bounds one alert's transaction.
pub const MAX_ALERT_MEMBERS: usize = 10_000;
/// Members this node remembers having recorded, so a reconnect costs no write; forgotten all
/// at once beyond (they are then recorded again, harmlessly).
const SEEN_CACHE: usize = 100_000;
/// How long a budget's run rate is reused by evaluations (it only reads complete days; a
/// backfill of them shows within this). Rates kept at most, forgotten all at once beyond.
const RATE_FRESH: Duration = Duration::from_secs(600);
const RATE_CACHE: usize = 100_000;

/// A budget's id and revision.
type BudgetRevision = (String, i64);
/// A run rate, the UTC day it is for and when it was read.
type RateRead = (NaiveDate, Instant, Nanos);

/// Why an org's budgets could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Query(#[from] apogee_analytics::QueryError),
}

/// The budget evaluator and alert delivery of this node.
pub struct Budgets {
    store: Store,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    /// Orgs whose usage changed since their last evaluation.
    dirty: Mutex<HashSet<String>>,
    wake: Notify,
    /// Shares each user's key with their identity (one copy per user).
    seen: Mutex<HashSet<Arc<UserKey>>>,
    /// Each budget revision's daily run rate, with the UTC day and when it was read: the
    /// forecast check at every ingest batch then costs no query.
    rates: Mutex<HashMap<BudgetRevision, RateRead>>,
    /// (org, day) pairs whose anomaly alert exists (fired here or elsewhere): not checked
    /// again. Days without one are checked at every tick (a backfill may make one).
    anomalies_checked: Mutex<HashSet<(String, NaiveDate)>>,
    /// Wakes this node's webhook delivery when a crossing was queued.
    pub(crate) webhooks_due: Arc<Notify>,
}

impl Budgets {
    pub fn new(store: Store, hub: Arc<Hub>, metrics: Arc<Metrics>) -> Budgets {
        Budgets {
            store,
            hub,
            metrics,
            dirty: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            seen: Mutex::new(HashSet::new()),
            rates: Mutex::new(HashMap::new()),
            anomalies_checked: Mutex::new(HashSet::new()),
            webhooks_due: Arc::new(Notify::new()),
        }
    }

    /// An ingest batch of `org_id` was stored: its budgets are evaluated soon, off the
    /// request (batches arriving meanwhile share one evaluation).
    pub fn usage_changed(&self, org_id: &str) {
        let inserted = lock(&self.dirty).insert(org_id.to_string());
        if inserted {
            self.wake.notify_one();
        }
    }

    /// Records `user` as a member of its org, once per node; a failure is logged, not fatal
    /// (the next connection tries again).
    pub async fn member_seen(&self, user: &Arc<UserKey>) {
        if lock(&self.seen).contains(user) {
            return;
        }
        match self
            .store
            .record_member(user, Utc::now().timestamp_millis())
            .await
        {
            Ok(_) => {
                let mut seen = lock(&self.seen);
                if seen.len() >= SEEN_CACHE {
                    seen.clear();
                }
                seen.insert(Arc::clone(user));
            }
            Err(e) => tracing::warn!(error = %e, "could not record an org member"),
        }
    }

    /// Evaluates orgs whose usage changed as soon as they do, and every org with budgets every
    /// `every` (so a period's forecast and a restart are covered without ingest), until
    /// `shutdown`.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let orgs: Vec<String> = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => lock(&self.dirty).drain().collect(),
                _ = tick.tick() => {
                    self.check_anomalies(&shutdown).await;
                    match self.store.budget_orgs().await {
                        Ok(orgs) => orgs,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not list the orgs with budgets");
                            self.metrics.budget_evaluation_errors.inc();
                            continue;
                        }
                    }
                }
            };
            for org in orgs {
                if shutdown.is_cancelled() {
                    return;
                }
                if let Err(e) = self.evaluate_org(&org, Utc::now()).await {
                    tracing::warn!(org = %org, error = %e, "could not evaluate budgets");
                    self.metrics.budget_evaluation_errors.inc();
                }
            }
        }
    }

    /// The anomaly check of the latest complete day for every org with members, until one is
    /// found (the claim makes its alert once across nodes and restarts).
    async fn check_anomalies(&self, shutdown: &CancellationToken) {
        let orgs = match self.store.member_orgs().await {
            Ok(orgs) => orgs,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the orgs with members");
                return;
            }
        };
        let now = Utc::now();
        let day = anomaly::latest_complete_day(now);
        for org in orgs {
            if shutdown.is_cancelled() {
                return;
            }
            let key = (org.clone(), day);
            if lock(&self.anomalies_checked).contains(&key) {
                continue;
            }
            match self.check_anomaly(&org, now).await {
                Ok(false) => {}
                Ok(true) => {
                    let mut done = lock(&self.anomalies_checked);
                    // Yesterday's entries are never asked again.
                    done.retain(|(_, d)| *d == day);
                    done.insert(key);
                }
                Err(e) => {
                    tracing::warn!(org = %org, error = %e, "could not check for an anomaly");
                    self.metrics.budget_evaluation_errors.inc();
                }
            }
        }
    }

    /// Fires the org's `anomaly_alert` for the latest complete day if that day was anomalous
    /// and it did not fire yet; whether the day was anomalous (fired now or before).
    pub async fn check_anomaly(&self, org_id: &str, now: DateTime<Utc>) -> Result<bool, EvalError> {
        let Some(alert) = anomaly::check(&self.store.org_usage(org_id), now).await? else {
            return Ok(false);
        };
        let claim = AlertClaim {
            budget_id: format!("anomaly:{org_id}"),
            revision: 0,
            period_start: alert.day.clone(),
            crossing: "anomaly".into(),
            org_id: org_id.to_string(),
            fired_ms: now.timestamp_millis(),
            alert: serde_json::to_string(&alert).unwrap_or_default(),
            // Webhooks carry budget alerts only.
            notify: false,
        };
        self.deliver(claim, Some(EventBody::AnomalyAlert { alert }), now)
            .await?;
        Ok(true)
    }

    /// Fires every crossing of the org's budgets that is due and not fired yet; returns how
    /// many this call fired.
    pub async fn evaluate_org(&self, org_id: &str, now: DateTime<Utc>) -> Result<usize, EvalError> {
        let rows = self.store.budgets(org_id).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let budgets: Vec<(BudgetRow, BudgetSpec)> = rows
            .into_iter()
            .filter_map(|row| match BudgetSpec::from_row(&row) {
                Ok(spec) => Some((row, spec)),
                Err(e) => {
                    tracing::error!(budget = %row.id, error = %e, "a stored budget is unreadable");
                    None
                }
            })
            .collect();
        // Alerts of the earliest current period on: what "already fired" is checked against.
        let since = budgets
            .iter()
            .map(|(_, s)| s.period.around(now).from.date_naive().to_string())
            .min()
            .unwrap_or_default();
        let fired: HashSet<(String, i64, String, String)> = self
            .store
            .fired_alerts(org_id, &since)
            .await?
            .into_iter()
            .map(|a| (a.budget_id, a.revision, a.period_start, a.crossing))
            .collect();
        let usage = self.store.org_usage(org_id);
        let mut count = 0;
        for (row, spec) in &budgets {
            let period_start = spec.period.around(now).from.date_naive().to_string();
            let done = |c: Crossing| {
                fired.contains(&(row.id.clone(), row.revision, period_start.clone(), c.key()))
            };
            let pending: Vec<u32> = spec
                .thresholds
                .iter()
                .copied()
                .filter(|t| !done(Crossing::Threshold(*t)))
                .collect();
            let forecast_pending = spec.forecast_alert && !done(Crossing::Forecast);
            if pending.is_empty() && !forecast_pending {
                continue;
            }
            let (period, spent) = evaluate::spent(&usage, spec, now).await?;
            let crossed: Vec<u32> = pending
                .iter()
                .copied()
                .filter(|t| evaluate::crossed(spent, spec.amount, *t))
                .collect();
            let over = spent >= spec.amount;
            if crossed.is_empty() && (!forecast_pending || over) {
                continue;
            }
            let rate = self.run_rate(&usage, row, spec, now).await?;
            let forecast = evaluate::project(spent, rate, &period, now);
            let standing = Standing {
                period,
                spent,
                forecast,
            };
            let mut due: Vec<(Crossing, bool)> = Vec::new();
            // Crossed together, only the highest threshold speaks; the lower ones are claimed
            // silently so they never fire late.
            if let Some((highest, lower)) = crossed.split_last() {
                due.extend(lower.iter().map(|t| (Crossing::Threshold(*t), false)));
                due.push((Crossing::Threshold(*highest), true));
            }
            if forecast_pending && !over && forecast > spec.amount {
                due.push((Crossing::Forecast, true));
            }
            if due.is_empty() {
                continue;
            }
            let contributors = evaluate::contributors(&usage, spec, &standing, now).await?;
            for (crossing, speaks) in due {
                let alert = AlertInput {
                    budget_id: &row.id,
                    revision: row.revision,
                    spec,
                    standing: &standing,
                    crossing,
                    contributors: contributors.clone(),
                }
                .alert();
                if self
                    .fire(org_id, &period_start, row, crossing, alert, speaks, now)
                    .await?
                {
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// The budget's run rate, read at most every [`RATE_FRESH`] and once per UTC day.
    async fn run_rate(
        &self,
        usage: &dyn OrgUsageQueries,
        row: &BudgetRow,
        spec: &BudgetSpec,
        now: DateTime<Utc>,
    ) -> Result<Nanos, EvalError> {
        let key = (row.id.clone(), row.revision);
        let today = now.date_naive();
        if let Some((day, read, rate)) = lock(&self.rates).get(&key)
            && *day == today
            && read.elapsed() < RATE_FRESH
        {
            return Ok(*rate);
        }
        let rate = evaluate::run_rate(usage, spec, now).await?;
        let mut rates = lock(&self.rates);
        if rates.len() >= RATE_CACHE {
            rates.clear();
        }
        rates.insert(key, (today, Instant::now(), rate));
        Ok(rate)
    }

    /// Claims one budget crossing, with its events when it speaks; whether it spoke.
    #[allow(clippy::too_many_arguments)]
    async fn fire(
        &self,
        org_id: &str,
        period_start: &str,
        row: &BudgetRow,
        crossing: Crossing,
        alert: apogee_protocol::BudgetAlert,
        speaks: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, EvalError> {
        let claim = AlertClaim {
            budget_id: row.id.clone(),
            revision: row.revision,
            period_start: period_start.to_string(),
            crossing: crossing.key(),
            org_id: org_id.to_string(),
            fired_ms: now.timestamp_millis(),
            alert: serde_json::to_string(&alert).unwrap_or_default(),
            notify: speaks,
        };
        let body = speaks.then_some(EventBody::BudgetAlert { alert });
        Ok(self.deliver(claim, body, now).await? && speaks)
    }

    /// Claims `claim` together with `body` appended to every member's stream (no events when
    /// `body` is `None`), then hands the events to connections here and on other nodes and
    /// wakes webhook delivery; whether this call won the claim.
    async fn deliver(
        &self,
        claim: AlertClaim,
        body: Option<EventBody>,
        now: DateTime<Utc>,
    ) -> Result<bool, EvalError> {
        let members = match &body {
            Some(_) => {
                self.store
                    .org_members(&claim.org_id, MAX_ALERT_MEMBERS)
                    .await?
            }
            None => Vec::new(),
        };
        let kind = body.as_ref().map(EventBody::type_name);
        let ts = apogee_protocol::time::event_ts(now);
        let events = match &body {
            None => Vec::new(),
            Some(body) => members
                .iter()
                .map(|user| {
                    let mut event = StreamEvent {
                        seq: 0,
                        ts: ts.clone(),
                        thread_id: String::new(),
                        body: body.clone(),
                    };
                    NewEvent {
                        user: user.clone(),
                        run_id: None,
                        thread_id: String::new(),
                        ts_ms: now.timestamp_millis(),
                        render: Box::new(move |seq| {
                            event.seq = seq;
                            serde_json::to_string(&event).unwrap_or_default()
                        }),
                    }
                })
                .collect(),
        };
        let Some(stored) = self.store.fire_alert(&claim, events).await? else {
            return Ok(false);
        };
        if claim.notify {
            self.webhooks_due.notify_one();
        }
        if let Some(kind) = kind {
            self.metrics.budget_alerts_fired.inc();
            tracing::info!(org = %claim.org_id, key = %claim.alert_id(), kind, members = members.len(), "alert fired");
        }
        for (user, event) in members.iter().zip(stored) {
            self.hub.deliver_stored(user, event.seq, &event.payload);
        }
        Ok(true)
    }
}
