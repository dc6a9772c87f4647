//! The per-user session: everything a connection or REST call may do, bound to one
//! authenticated identity. A [`UserSession`] can only be created by [`SessionFactory::open`]
//! from an [`Identity`], so every stream, thread, run and usage query it touches is the
//! caller's own.

use std::sync::{Arc, OnceLock};

use apogee_agents::OrgBudgets;
use apogee_analytics::PriceCatalog;
use apogee_protocol::{EventBody, MessageInfo, Role, ThreadInfo};
use apogee_store::{
    AckRecord, IngestSummary, MessageRow, NewTurn, OrgUsage, Store, StoreError, StoredEvent,
    ThreadRow, TurnOutcome, UserKey,
};

use crate::auth::Identity;
use crate::budgets::Budgets;
use crate::budgets::manage::MemberBudgets;
use crate::hub::{Hub, Subscription, UserStream};
use crate::recovery;
use crate::runs::{Refused, Reservation, RunRegistry, RunSpec};

/// Longest thread title derived from the first message.
const TITLE_CHARS: usize = 60;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("not found")]
    NotFound,
    #[error("too many runs in flight (at most {0} per user)")]
    Busy(usize),
    #[error("too many messages; retry later")]
    RateLimited(std::time::Duration),
    /// The node is shutting down: the message was not stored.
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The answer to a `user_message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub record: AckRecord,
    pub duplicate: bool,
}

/// A stored message: its ack, and the run to start once the ack is on its way.
pub struct Submitted {
    pub ack: Ack,
    pub pending: Option<PendingRun>,
}

impl Submitted {
    fn duplicate(record: AckRecord) -> Submitted {
        Submitted {
            ack: Ack {
                record,
                duplicate: true,
            },
            pending: None,
        }
    }
}

/// A run whose message is stored but whose events are not yet emitted. Self-contained, so
/// starting it does not depend on the connection that submitted it staying open.
pub struct PendingRun {
    turn: NewTurn,
    reservation: Reservation,
    stream: Arc<UserStream>,
    store: Store,
    runs: Arc<RunRegistry>,
    usage: Arc<OrgUsage>,
    catalog: Arc<PriceCatalog>,
    budgets: Arc<dyn OrgBudgets>,
}

impl PendingRun {
    /// Starts the run on the run registry's tracker (never waits): emits `thread_created` /
    /// `message_created`, then runs it. A run whose events cannot be written is closed as
    /// failed (or, if even that fails, at the next start).
    pub fn start(self) {
        let runs = Arc::clone(&self.runs);
        runs.spawn(self.begin());
    }

    async fn begin(self) {
        if let Err(e) = self.publish_turn().await {
            let run_id = &self.turn.run_id;
            tracing::error!(%run_id, error = %e, "could not publish a new message");
            self.runs.release(run_id);
            let closed = recovery::close_run(
                &self.stream,
                &self.store,
                run_id,
                &self.turn.thread_id,
                "the run could not start",
                None,
            )
            .await;
            if closed.is_ok() {
                let _ = self.store.finish_run(run_id, "error", &now().0).await;
            }
            return;
        }
        let turn = self.turn;
        self.runs.start(RunSpec {
            run_id: turn.run_id,
            new_thread: turn.new_thread_title.is_some(),
            thread_id: turn.thread_id,
            question: turn.content,
            stream: self.stream,
            store: self.store,
            usage: self.usage,
            catalog: self.catalog,
            budgets: self.budgets,
            reservation: self.reservation,
        });
    }

    /// Queues the new thread (when the message opens one) and the message, then waits once
    /// for both: they are in the same lane of the committer, usually in one batch.
    async fn publish_turn(&self) -> Result<(), StoreError> {
        let run = Some(self.turn.run_id.as_str());
        let thread = match &self.turn.new_thread_title {
            Some(title) => {
                let thread = ThreadInfo {
                    id: self.turn.thread_id.clone(),
                    title: title.clone(),
                    created_at: self.turn.created_at.clone(),
                };
                let queued = self
                    .stream
                    .queue(
                        &self.turn.thread_id,
                        run,
                        EventBody::ThreadCreated { thread },
                    )
                    .await?;
                Some(queued)
            }
            None => None,
        };
        let message = MessageInfo {
            id: self.turn.message_id.clone(),
            role: Role::User,
            content: self.turn.content.clone(),
            created_at: self.turn.created_at.clone(),
            client_msg_id: Some(self.turn.client_msg_id.clone()),
            run_id: Some(self.turn.run_id.clone()),
        };
        let message = self
            .stream
            .queue(
                &self.turn.thread_id,
                run,
                EventBody::MessageCreated { message },
            )
            .await?;
        if let Some(thread) = thread {
            thread.stored().await?;
        }
        message.stored().await?;
        Ok(())
    }
}

/// Builds sessions; shared by the whole server.
pub struct SessionFactory {
    /// This server process's id as a node sharing the store: recorded on every run it
    /// starts, so another node can take the run over if this one dies (`crate::lease`).
    node_id: Arc<str>,
    store: Store,
    hub: Arc<Hub>,
    runs: Arc<RunRegistry>,
    catalog: Arc<PriceCatalog>,
    budgets: Arc<Budgets>,
}

impl SessionFactory {
    pub fn new(
        store: Store,
        hub: Arc<Hub>,
        runs: Arc<RunRegistry>,
        catalog: Arc<PriceCatalog>,
        budgets: Arc<Budgets>,
        node_id: String,
    ) -> Self {
        Self {
            node_id: node_id.into(),
            store,
            hub,
            runs,
            catalog,
            budgets,
        }
    }

    /// The only way to obtain a [`UserSession`].
    pub fn open(self: &Arc<Self>, identity: &Identity) -> UserSession {
        UserSession {
            identity: identity.clone(),
            stream: self.hub.stream(identity.key()),
            usage: OnceLock::new(),
            shared: Arc::clone(self),
        }
    }
}

/// One user's view of the server.
///
/// ```compile_fail
/// // Sessions cannot be built by hand, only from an authenticated identity.
/// let s = apogee_server::session::UserSession { identity: todo!(), stream: todo!(),
///     usage: todo!(), shared: todo!() };
/// ```
///
/// One lives as long as each WebSocket connection, so it holds what a connection needs and
/// shares the rest: the user's key is its stream's, the node's handles are the factory's, and
/// the org's usage view is made (and boxed) only when a REST call or a run asks for it.
pub struct UserSession {
    identity: Identity,
    stream: Arc<UserStream>,
    usage: OnceLock<Box<OrgUsage>>,
    /// The store, runs, catalog, budget evaluator and node id, shared by every session.
    shared: Arc<SessionFactory>,
}

fn now() -> (String, i64) {
    let now = chrono::Utc::now();
    (
        apogee_protocol::time::record_time(now),
        now.timestamp_millis(),
    )
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

impl UserSession {
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// This org's usage, for REST cost queries and ingest.
    pub fn usage(&self) -> &OrgUsage {
        self.usage
            .get_or_init(|| Box::new(self.shared.store.org_usage(&self.key().org_id)))
    }

    pub fn catalog(&self) -> &PriceCatalog {
        &self.shared.catalog
    }

    /// The catalog, to price with off the async threads.
    pub fn catalog_arc(&self) -> Arc<PriceCatalog> {
        Arc::clone(&self.shared.catalog)
    }

    /// Whose session this is.
    pub fn key(&self) -> &Arc<UserKey> {
        self.stream.key()
    }

    /// Registers a connection resuming after `last_seq`; see [`UserStream::subscribe`].
    pub async fn subscribe(
        &self,
        connection: u64,
        queue: usize,
        last_seq: Option<u64>,
    ) -> Result<Subscription, StoreError> {
        self.stream.subscribe(connection, queue, last_seq).await
    }

    /// Stored events with `after < seq <= upto`.
    pub async fn replay(&self, after: u64, upto: u64) -> Result<Vec<StoredEvent>, StoreError> {
        self.shared
            .store
            .events_between(self.key(), after, upto)
            .await
    }

    /// The oldest event still stored, to tell whether a resume point is still covered.
    pub async fn oldest_seq(&self) -> Result<Option<u64>, StoreError> {
        self.shared.store.oldest_seq(self.key()).await
    }

    /// Stores the message and its run (idempotent on `client_msg_id`). The caller sends the
    /// ack, then calls [`PendingRun::start`] so the ack precedes the run's events.
    pub async fn submit_message(
        &self,
        client_msg_id: &str,
        content: &str,
        thread_id: Option<&str>,
    ) -> Result<Submitted, SessionError> {
        // Resends are answered even when over the rate: they start nothing.
        if let Some(record) = self
            .shared
            .store
            .find_ack(self.key(), client_msg_id)
            .await?
        {
            return Ok(Submitted::duplicate(record));
        }
        self.stream
            .admit_message()
            .await
            .map_err(SessionError::RateLimited)?;
        let run_id = new_id("run");
        let reservation = self
            .shared
            .runs
            .reserve(&run_id, self.key())
            .map_err(|refused| match refused {
                Refused::Busy(max) => SessionError::Busy(max),
                Refused::Draining => SessionError::ShuttingDown,
            })?;
        let (created_at, created_ms) = now();
        let turn = NewTurn {
            new_thread_title: thread_id
                .is_none()
                .then(|| content.chars().take(TITLE_CHARS).collect()),
            thread_id: thread_id.map_or_else(|| new_id("thr"), str::to_string),
            message_id: new_id("msg"),
            run_id: run_id.clone(),
            client_msg_id: client_msg_id.to_string(),
            content: content.to_string(),
            created_at,
            created_ms,
            node_id: self.shared.node_id.to_string(),
        };
        let outcome = self.shared.store.create_turn(self.key(), &turn).await;
        if !matches!(outcome, Ok(TurnOutcome::Created)) {
            self.shared.runs.release(&run_id);
        }
        match outcome? {
            TurnOutcome::Created => Ok(Submitted {
                ack: Ack {
                    record: AckRecord {
                        message_id: turn.message_id.clone(),
                        thread_id: turn.thread_id.clone(),
                        run_id,
                    },
                    duplicate: false,
                },
                pending: Some(PendingRun {
                    turn,
                    reservation,
                    stream: Arc::clone(&self.stream),
                    store: self.shared.store.clone(),
                    runs: Arc::clone(&self.shared.runs),
                    usage: Arc::new(self.usage().clone()),
                    catalog: Arc::clone(&self.shared.catalog),
                    // The org and the author come from this authenticated session only.
                    budgets: Arc::new(MemberBudgets::new(
                        self.shared.store.clone(),
                        Arc::clone(&self.shared.budgets),
                        UserKey::clone(self.key()),
                        self.usage().clone(),
                    )),
                }),
            }),
            TurnOutcome::Duplicate(record) => Ok(Submitted::duplicate(record)),
            TurnOutcome::ThreadNotFound => Err(SessionError::NotFound),
        }
    }

    /// Cancels one of the caller's runs; a finished run of theirs is left as it ended.
    pub async fn cancel_run(&self, run_id: &str) -> Result<(), SessionError> {
        if self.shared.runs.cancel(run_id, self.key()) {
            return Ok(());
        }
        if self.shared.store.run_owned(self.key(), run_id).await? {
            Ok(())
        } else {
            Err(SessionError::NotFound)
        }
    }

    pub async fn threads(&self) -> Result<Vec<ThreadRow>, StoreError> {
        self.shared.store.list_threads(self.key()).await
    }

    pub async fn thread_messages(&self, thread_id: &str) -> Result<Vec<MessageRow>, SessionError> {
        self.shared
            .store
            .thread_messages(self.key(), thread_id)
            .await?
            .ok_or(SessionError::NotFound)
    }

    pub async fn run_events(&self, run_id: &str) -> Result<Vec<StoredEvent>, SessionError> {
        if !self.shared.store.run_owned(self.key(), run_id).await? {
            return Err(SessionError::NotFound);
        }
        Ok(self.shared.store.run_events(self.key(), run_id).await?)
    }

    pub async fn ingest_usage(
        &self,
        records: &[(apogee_analytics::PricedRecord, String)],
    ) -> Result<IngestSummary, StoreError> {
        self.shared
            .store
            .ingest_usage(&self.key().org_id, records)
            .await
    }
}
