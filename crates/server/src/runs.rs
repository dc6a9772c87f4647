//! The run registry: which runs are executing, whose they are, their cancellation, the
//! per-user limit on runs in flight, and the task that drives each run to its end — also when
//! the agents panic, in which case the run is closed so every start keeps its end.
//!
//! Fairness: a user's runs execute one at a time, in the order they were sent (a FIFO lane
//! per user), while different users' runs execute side by side. A user with several runs in
//! flight so takes one run's share of the machine, never several: the others' questions are
//! not slowed by how many one user asks. A queued run can be cancelled before it starts.
//! Across users the node executes at most `max_executing` runs at once; a run whose turn in
//! its lane has come waits for one of those places in arrival order (one waiter per user at
//! most, so the order is round-robin across users). A thousand questions at once then take
//! the store's connections and the cores in turns instead of all waiting on them together
//! until their reads time out.
//!
//! Ownership: every run is on the registry's [`TaskTracker`] from the moment its slot is
//! reserved ([`Reservation`] holds a tracker token), through the start (its message and
//! thread events, [`RunRegistry::spawn`]) to its recorded end. So [`RunRegistry::drain`]
//! waits for a run whose message was acknowledged but which has not started yet, and once
//! draining begins no slot is given out: a message then is refused, never half-started.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use apogee_agents::{OrgBudgets, RunContext};
use apogee_analytics::{OrgUsageQueries, PriceCatalog};
use apogee_protocol::AgentStatus;
use apogee_store::{RunRecord, Store, UserKey};
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::hub::UserStream;
use crate::metrics::{Metrics, StatusLabels};
use crate::recovery;
use crate::sink::StreamSink;

/// Everything needed to start one run.
pub struct RunSpec {
    pub run_id: String,
    /// The run's message opened its thread: there is no earlier turn or plan to read.
    pub new_thread: bool,
    pub thread_id: String,
    pub question: String,
    pub stream: Arc<UserStream>,
    pub store: Store,
    pub usage: Arc<dyn OrgUsageQueries>,
    pub catalog: Arc<PriceCatalog>,
    /// The org's budgets, for budget commands (the same code as `/api/budgets`).
    pub budgets: Arc<dyn OrgBudgets>,
    /// The run's slot and cancellation, held until the run has been recorded.
    pub reservation: Reservation,
}

struct LiveRun {
    user: UserKey,
    cancel: CancellationToken,
}

/// Why [`RunRegistry::reserve`] gave no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The user has this many runs in flight already.
    Busy(usize),
    /// The node is shutting down and takes no new run.
    Draining,
}

/// A run's slot, from before its message is stored until the run ended. Keeps shutdown
/// waiting for it ([`RunRegistry::drain`]) even before its task exists.
pub struct Reservation {
    pub cancel: CancellationToken,
    _owner: TaskTrackerToken,
}

/// How long interrupted runs get to close their steps after being cancelled at shutdown.
const INTERRUPT_WAIT: Duration = Duration::from_secs(5);

pub struct RunRegistry {
    live: Mutex<HashMap<String, LiveRun>>,
    /// Each user's lane: one permit, taken by the run executing; the user's other runs wait
    /// for it in order. Removed when the user has no run in flight.
    lanes: Mutex<HashMap<UserKey, Arc<tokio::sync::Semaphore>>>,
    /// Runs cancelled by shutdown rather than by their user: recorded as `interrupted`.
    interrupted: Mutex<std::collections::HashSet<String>>,
    /// Set under the `live` lock by [`RunRegistry::drain`]: no slot is given out after it.
    draining: std::sync::atomic::AtomicBool,
    tracker: TaskTracker,
    max_per_user: usize,
    /// One permit per run executing on this node (after its turn in its user's lane).
    executing: Arc<tokio::sync::Semaphore>,
    metrics: Arc<Metrics>,
    /// The LLM the planner asks first, when configured.
    llm: Option<Arc<apogee_llm::LlmClient>>,
}

pub fn status_name(status: AgentStatus) -> &'static str {
    match status {
        AgentStatus::Ok => "ok",
        AgentStatus::Error => "error",
        AgentStatus::Cancelled => "cancelled",
    }
}

impl RunRegistry {
    pub fn new(
        max_per_user: usize,
        max_executing: usize,
        metrics: Arc<Metrics>,
        llm: Option<Arc<apogee_llm::LlmClient>>,
    ) -> Arc<RunRegistry> {
        Arc::new(RunRegistry {
            live: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            interrupted: Mutex::new(std::collections::HashSet::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
            tracker: TaskTracker::new(),
            max_per_user,
            executing: Arc::new(tokio::sync::Semaphore::new(max_executing.max(1))),
            metrics,
            llm,
        })
    }

    fn live(&self) -> MutexGuard<'_, HashMap<String, LiveRun>> {
        crate::sync::lock(&self.live)
    }

    /// Takes one of `user`'s run slots for `run_id`; refused when all are in use or the node
    /// is draining.
    pub fn reserve(&self, run_id: &str, user: &UserKey) -> Result<Reservation, Refused> {
        let mut live = self.live();
        // Read under the `live` lock, which `drain` sets it under: a reservation either comes
        // before the drain (and its token keeps the drain waiting) or is refused.
        if self.draining.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Refused::Draining);
        }
        if live.values().filter(|r| &r.user == user).count() >= self.max_per_user {
            return Err(Refused::Busy(self.max_per_user));
        }
        let cancel = CancellationToken::new();
        live.insert(
            run_id.to_string(),
            LiveRun {
                user: user.clone(),
                cancel: cancel.clone(),
            },
        );
        Ok(Reservation {
            cancel,
            _owner: self.tracker.token(),
        })
    }

    /// Runs `task` (a run's start) on the registry's tracker, so shutdown waits for it.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    pub fn release(&self, run_id: &str) {
        let mut live = self.live();
        if let Some(run) = live.remove(run_id)
            && !live.values().any(|r| r.user == run.user)
        {
            self.lanes().remove(&run.user);
        }
    }

    fn lanes(&self) -> MutexGuard<'_, HashMap<UserKey, Arc<tokio::sync::Semaphore>>> {
        crate::sync::lock(&self.lanes)
    }

    /// The lane `user`'s runs execute in, one at a time.
    fn lane(&self, user: &UserKey) -> Arc<tokio::sync::Semaphore> {
        Arc::clone(
            self.lanes()
                .entry(user.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1))),
        )
    }

    /// Cancels `run_id` if it is running and belongs to `user`.
    pub fn cancel(&self, run_id: &str, user: &UserKey) -> bool {
        match self.live().get(run_id) {
            Some(r) if &r.user == user => {
                r.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Drives the run on its own task until it has ended and been recorded.
    pub fn start(self: &Arc<Self>, spec: RunSpec) {
        let registry = Arc::clone(self);
        let lane = self.lane(spec.stream.key());
        let executing = Arc::clone(&self.executing);
        self.metrics.runs_started.inc();
        self.metrics.runs_in_flight.inc();
        self.tracker.spawn(async move {
            let run_id = spec.run_id.clone();
            // Its turn in the user's lane, then a place on the node; a run cancelled while
            // waiting for either goes at once (it only records that it was cancelled).
            registry.metrics.runs_waiting.inc();
            let turn = tokio::select! {
                permit = lane.acquire_owned() => permit.ok(),
                _ = spec.reservation.cancel.cancelled() => None,
            };
            let place = match turn {
                Some(_) => tokio::select! {
                    permit = executing.acquire_owned() => permit.ok(),
                    _ = spec.reservation.cancel.cancelled() => None,
                },
                None => None,
            };
            registry.metrics.runs_waiting.dec();
            let status = registry.drive(spec).await;
            drop((place, turn));
            registry
                .metrics
                .runs_finished
                .get_or_create(&StatusLabels { status })
                .inc();
            registry.metrics.runs_in_flight.dec();
            registry.release(&run_id);
        });
    }

    async fn drive(&self, spec: RunSpec) -> &'static str {
        let sink = Arc::new(StreamSink::new(
            Arc::clone(&spec.stream),
            spec.store.clone(),
            spec.thread_id.clone(),
            spec.run_id.clone(),
            Arc::clone(&spec.catalog),
        ));
        let previous_plan = match spec.new_thread {
            true => None,
            false => thread_plan(&spec).await,
        };
        // Only the LLM planner reads the thread's earlier turns.
        let history = match &self.llm {
            Some(_) if !spec.new_thread => thread_history(&spec).await,
            _ => Vec::new(),
        };
        let ctx = RunContext {
            run_id: spec.run_id.clone(),
            question: spec.question,
            now: chrono::Utc::now(),
            usage: spec.usage,
            catalog: spec.catalog,
            sink: Arc::clone(&sink) as Arc<dyn apogee_agents::EventSink>,
            cancel: spec.reservation.cancel.clone(),
            previous_plan,
            budgets: Some(spec.budgets),
            llm: self.llm.clone(),
            history,
        };
        let outcome = std::panic::AssertUnwindSafe(apogee_agents::run(ctx))
            .catch_unwind()
            .await;
        // Every step's event stored (and sent) before the run is recorded as ended; a write
        // that failed breaks the run as a failed step would.
        let flushed = sink.flush().await;
        let plan = match &outcome {
            Ok(o) => thread_plan_json(&spec.run_id, o.thread_plan.as_ref()),
            Err(_) => None,
        };
        let ended_at = apogee_protocol::time::record_time(chrono::Utc::now());
        // A panic, or a sink failure (the stream could not be written), leaves steps open:
        // close them so every start keeps its end.
        let broken = match (&outcome, flushed) {
            (Ok(o), flushed) => o.sink_error.clone().or(flushed.err().map(|e| e.0)),
            (Err(_), _) => Some("the run panicked".to_string()),
        };
        let status = match (&outcome, &broken) {
            (Ok(o), None) => status_name(o.status),
            _ => "error",
        };
        if let Some(why) = broken {
            tracing::error!(run_id = %spec.run_id, reason = %why, "run broke off; closing its open steps");
            if let Err(e) = recovery::close_run(
                &spec.stream,
                &spec.store,
                &spec.run_id,
                &spec.thread_id,
                "the run failed unexpectedly",
                None,
            )
            .await
            {
                tracing::error!(run_id = %spec.run_id, error = %e, "could not close the failed run; it is closed at the next start");
                return "error";
            }
        }
        let status = if crate::sync::lock(&self.interrupted).remove(&spec.run_id) {
            "interrupted"
        } else {
            status
        };
        // The end (with the plan) goes into the committer's next batch, after the run's events:
        // no transaction of its own, and a run recorded as ended has all its events stored.
        let end = RunRecord::End {
            run_id: spec.run_id.clone(),
            status: status.to_string(),
            ended_at,
            plan,
        };
        if let Err(e) = spec.store.record_run(spec.stream.key(), end).await {
            tracing::error!(run_id = %spec.run_id, error = %e, "could not record the end of a run");
        }
        status
    }

    /// Stops taking runs and waits up to `grace` for those in flight; runs still going then
    /// are cancelled (their steps end `cancelled`) and recorded as interrupted. Returns how
    /// many did not even finish that way (the next start closes them).
    pub async fn drain(&self, grace: Duration) -> usize {
        {
            let _live = self.live();
            self.draining
                .store(true, std::sync::atomic::Ordering::Release);
        }
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let interrupted: Vec<String> = {
            let live = self.live();
            for run in live.values() {
                run.cancel.cancel();
            }
            live.keys().cloned().collect()
        };
        {
            let mut marked = crate::sync::lock(&self.interrupted);
            marked.extend(interrupted.iter().cloned());
        }
        tracing::warn!(
            runs = interrupted.len(),
            "shutdown grace period over: interrupting runs"
        );
        if tokio::time::timeout(INTERRUPT_WAIT, self.tracker.wait())
            .await
            .is_err()
        {
            return self.live().len();
        }
        0
    }
}

/// The plan the thread's previous question left, for a follow-up to refine. A plan that cannot
/// be read (a store error, a plan of an older shape) only means the question is read afresh.
async fn thread_plan(spec: &RunSpec) -> Option<apogee_agents::QuestionPlan> {
    let stored = spec
        .store
        .thread_plan(spec.stream.key(), &spec.thread_id, &spec.run_id)
        .await
        .inspect_err(|e| tracing::warn!(run_id = %spec.run_id, error = %e, "could not read the thread's plan"))
        .ok()??;
    serde_json::from_str(&stored)
        .inspect_err(|e| tracing::warn!(run_id = %spec.run_id, error = %e, "the thread's plan does not parse"))
        .ok()
}

/// Earlier turns the LLM planner sees, oldest first.
const HISTORY_TURNS: usize = 6;

/// The thread's turns before this run's question.
async fn thread_history(spec: &RunSpec) -> Vec<apogee_agents::Turn> {
    let messages = match spec
        .store
        .thread_messages(spec.stream.key(), &spec.thread_id)
        .await
    {
        Ok(Some(m)) => m,
        Ok(None) => return Vec::new(),
        Err(e) => {
            tracing::warn!(run_id = %spec.run_id, error = %e, "could not read the thread's turns");
            return Vec::new();
        }
    };
    let mut turns: Vec<apogee_agents::Turn> = messages
        .into_iter()
        .filter(|m| m.run_id.as_deref() != Some(spec.run_id.as_str()))
        .filter_map(|m| {
            let role = match m.role.as_str() {
                "user" => apogee_agents::TurnRole::User,
                "assistant" => apogee_agents::TurnRole::Assistant,
                _ => return None,
            };
            Some(apogee_agents::Turn {
                role,
                content: m.content,
            })
        })
        .collect();
    let start = turns.len().saturating_sub(HISTORY_TURNS);
    turns.drain(..start);
    turns
}

/// The plan the next question of the run's thread refines, as recorded with the run's end.
fn thread_plan_json(run_id: &str, plan: Option<&apogee_agents::QuestionPlan>) -> Option<String> {
    serde_json::to_string(plan?)
        .inspect_err(|e| tracing::warn!(%run_id, error = %e, "could not record the run's plan"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserKey {
        UserKey {
            org_id: "org".into(),
            user_id: name.into(),
        }
    }

    #[tokio::test]
    async fn a_run_reserved_before_the_drain_keeps_it_waiting_until_the_run_has_ended() {
        let registry = RunRegistry::new(4, 8, Arc::new(Metrics::new()), None);
        // Its message acknowledged, its start not yet begun.
        let reservation = registry.reserve("run_1", &user("ann")).expect("a slot");
        let drain = tokio::spawn({
            let registry = Arc::clone(&registry);
            async move { registry.drain(Duration::from_secs(60)).await }
        });
        // Once the drain has begun, no slot is given out.
        for _ in 0..1_000 {
            match registry.reserve("run_2", &user("ben")) {
                Ok(_) => {
                    registry.release("run_2");
                    tokio::task::yield_now().await;
                }
                Err(refused) => {
                    assert_eq!(refused, Refused::Draining);
                    break;
                }
            }
        }
        assert_eq!(
            registry.reserve("run_3", &user("ann")).err(),
            Some(Refused::Draining)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!drain.is_finished(), "the drain waits for the reserved run");
        // The run starts late (after the drain began) and ends: the drain is then done.
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        registry.spawn(async move {
            tokio::task::yield_now().await;
            drop(reservation);
            let _ = ended_tx.send(());
        });
        assert_eq!(drain.await.expect("drain"), 0, "nothing left in flight");
        assert!(ended.await.is_ok(), "the run ended before the drain did");
    }

    #[tokio::test]
    async fn slots_are_per_user_and_freed_on_release() {
        let registry = RunRegistry::new(1, 8, Arc::new(Metrics::new()), None);
        let _ann = registry.reserve("run_1", &user("ann")).expect("a slot");
        assert_eq!(
            registry.reserve("run_2", &user("ann")).err(),
            Some(Refused::Busy(1))
        );
        assert!(registry.reserve("run_3", &user("ben")).is_ok());
        registry.release("run_1");
        assert!(registry.reserve("run_4", &user("ann")).is_ok());
    }
}
