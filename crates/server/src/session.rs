//! The per-user session: everything a connection or REST call may do, bound to one
//! authenticated identity. A [`UserSession`] can only be created by [`SessionFactory::open`]
//! from an [`Identity`], so every stream, thread, run and usage query it touches is the
//! caller's own.

use std::sync::Arc;

use apogee_analytics::PriceCatalog;
use apogee_protocol::{EventBody, MessageInfo, Role, ThreadInfo};
use apogee_store::{
    AckRecord, IngestSummary, MessageRow, NewTurn, OrgUsage, Store, StoreError, StoredEvent,
    ThreadRow, TurnOutcome, UserKey,
};

use crate::auth::Identity;
use crate::hub::{Hub, Subscription, UserStream};
use crate::runs::{RunRegistry, RunSpec};

/// Longest thread title derived from the first message.
const TITLE_CHARS: usize = 60;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("not found")]
    NotFound,
    #[error("too many runs in flight (at most {0} per user)")]
    Busy(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The answer to a `user_message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub record: AckRecord,
    pub duplicate: bool,
}

/// Builds sessions; shared by the whole server.
pub struct SessionFactory {
    store: Store,
    hub: Arc<Hub>,
    runs: Arc<RunRegistry>,
    catalog: Arc<PriceCatalog>,
}

impl SessionFactory {
    pub fn new(
        store: Store,
        hub: Arc<Hub>,
        runs: Arc<RunRegistry>,
        catalog: Arc<PriceCatalog>,
    ) -> Self {
        Self {
            store,
            hub,
            runs,
            catalog,
        }
    }

    /// The only way to obtain a [`UserSession`].
    pub fn open(&self, identity: &Identity) -> UserSession {
        let key = UserKey {
            org_id: identity.org_id().to_string(),
            user_id: identity.user_id().to_string(),
        };
        UserSession {
            identity: identity.clone(),
            stream: self.hub.stream(&key),
            usage: self.store.org_usage(&key.org_id),
            key,
            store: self.store.clone(),
            runs: Arc::clone(&self.runs),
            catalog: Arc::clone(&self.catalog),
        }
    }
}

/// One user's view of the server.
///
/// ```compile_fail
/// // Sessions cannot be built by hand, only from an authenticated identity.
/// let s = apogee_server::session::UserSession { identity: todo!(), key: todo!(), stream: todo!(),
///     usage: todo!(), store: todo!(), runs: todo!(), catalog: todo!() };
/// ```
pub struct UserSession {
    identity: Identity,
    key: UserKey,
    stream: Arc<UserStream>,
    usage: OrgUsage,
    store: Store,
    runs: Arc<RunRegistry>,
    catalog: Arc<PriceCatalog>,
}

fn now() -> (String, i64) {
    let now = chrono::Utc::now();
    (
        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
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
        &self.usage
    }

    pub fn catalog(&self) -> &PriceCatalog {
        &self.catalog
    }

    pub async fn subscribe(
        &self,
        connection: u64,
        queue: usize,
    ) -> Result<Subscription, StoreError> {
        self.stream.subscribe(connection, queue).await
    }

    /// Stored events with `after < seq <= upto`.
    pub async fn replay(&self, after: u64, upto: u64) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.events_between(&self.key, after, upto).await
    }

    /// The oldest event still stored, to tell whether a resume point is still covered.
    pub async fn oldest_seq(&self) -> Result<Option<u64>, StoreError> {
        self.store.oldest_seq(&self.key).await
    }

    /// Stores the message (idempotent on `client_msg_id`), emits `thread_created` /
    /// `message_created`, and starts its run.
    pub async fn submit_message(
        &self,
        client_msg_id: &str,
        content: &str,
        thread_id: Option<&str>,
    ) -> Result<Ack, SessionError> {
        if let Some(record) = self.store.find_ack(&self.key, client_msg_id).await? {
            return Ok(Ack {
                record,
                duplicate: true,
            });
        }
        let run_id = new_id("run");
        let cancel = self
            .runs
            .reserve(&run_id, &self.key)
            .map_err(SessionError::Busy)?;
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
        };
        let outcome = match self.store.create_turn(&self.key, &turn).await {
            Ok(o) => o,
            Err(e) => {
                self.runs.release(&run_id);
                return Err(e.into());
            }
        };
        match outcome {
            TurnOutcome::Created => {}
            TurnOutcome::Duplicate(record) => {
                self.runs.release(&run_id);
                return Ok(Ack {
                    record,
                    duplicate: true,
                });
            }
            TurnOutcome::ThreadNotFound => {
                self.runs.release(&run_id);
                return Err(SessionError::NotFound);
            }
        }
        let published = self.publish_turn(&turn).await;
        if let Err(e) = published {
            // The message is stored; the run cannot report, so it is closed as failed.
            self.runs.release(&run_id);
            let _ = self.store.finish_run(&run_id, "error", &now().0).await;
            return Err(e.into());
        }
        self.runs.start(RunSpec {
            run_id: run_id.clone(),
            thread_id: turn.thread_id.clone(),
            question: turn.content.clone(),
            stream: Arc::clone(&self.stream),
            store: self.store.clone(),
            usage: Arc::new(self.usage.clone()),
            catalog: Arc::clone(&self.catalog),
            cancel,
        });
        Ok(Ack {
            record: AckRecord {
                message_id: turn.message_id,
                thread_id: turn.thread_id,
                run_id,
            },
            duplicate: false,
        })
    }

    async fn publish_turn(&self, turn: &NewTurn) -> Result<(), StoreError> {
        let run = Some(turn.run_id.as_str());
        if let Some(title) = &turn.new_thread_title {
            let thread = ThreadInfo {
                id: turn.thread_id.clone(),
                title: title.clone(),
                created_at: turn.created_at.clone(),
            };
            self.stream
                .publish(&turn.thread_id, run, EventBody::ThreadCreated { thread })
                .await?;
        }
        let message = MessageInfo {
            id: turn.message_id.clone(),
            role: Role::User,
            content: turn.content.clone(),
            created_at: turn.created_at.clone(),
            client_msg_id: Some(turn.client_msg_id.clone()),
            run_id: Some(turn.run_id.clone()),
        };
        self.stream
            .publish(&turn.thread_id, run, EventBody::MessageCreated { message })
            .await?;
        Ok(())
    }

    /// Cancels one of the caller's runs; a finished run of theirs is left as it ended.
    pub async fn cancel_run(&self, run_id: &str) -> Result<(), SessionError> {
        if self.runs.cancel(run_id, &self.key) {
            return Ok(());
        }
        if self.store.run_owned(&self.key, run_id).await? {
            Ok(())
        } else {
            Err(SessionError::NotFound)
        }
    }

    pub async fn threads(&self) -> Result<Vec<ThreadRow>, StoreError> {
        self.store.list_threads(&self.key).await
    }

    pub async fn thread_messages(&self, thread_id: &str) -> Result<Vec<MessageRow>, SessionError> {
        self.store
            .thread_messages(&self.key, thread_id)
            .await?
            .ok_or(SessionError::NotFound)
    }

    pub async fn run_events(&self, run_id: &str) -> Result<Vec<StoredEvent>, SessionError> {
        if !self.store.run_owned(&self.key, run_id).await? {
            return Err(SessionError::NotFound);
        }
        Ok(self.store.run_events(&self.key, run_id).await?)
    }

    pub async fn ingest_usage(
        &self,
        records: &[(apogee_analytics::PricedRecord, String)],
    ) -> Result<IngestSummary, StoreError> {
        self.store.ingest_usage(&self.key.org_id, records).await
    }
}
