//! Group commit of stream events. Every append goes through one background task that takes
//! whatever appends are waiting (up to a batch) and stores them in a single transaction, so
//! under load the cost of a transaction, and of each round trip to the database, is shared by
//! many events — of many users — instead of paid by each. An append is answered only once its
//! event is durable in the database (persist, then send). Works alike on both backends; on
//! PostgreSQL each node has its own committer, and `append_batch` keeps seqs contiguous across
//! them.
//!
//! An append may carry a hook ([`Store::queue_event`](crate::Store::queue_event)): it is called
//! on the committer's task right after the commit, in the order the appends were queued, before
//! any later batch is stored. So a caller that queues a user's events in order sees them stored
//! in order without waiting for each one: the hook hands each to its connections, in `seq`
//! order, the moment it is durable.

use tokio::sync::{mpsc, oneshot};

use crate::StoreError;
use crate::db::Db;
use crate::events::{NewEvent, StoredEvent, append_batch};

/// Appends stored together at most; bounds one transaction's size and latency.
const MAX_BATCH: usize = 1024;
/// Appends waiting for the writer at most; callers wait for room beyond it.
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<StoredEvent, StoreError>>;

/// Called with the stored event right after its batch committed, on the committer's task: it
/// must not block.
pub(crate) type StoredHook = Box<dyn FnOnce(StoredEvent) + Send>;

/// What is done once an append's batch committed (or failed).
enum Done {
    /// Answer the caller with the stored event.
    Reply(Reply),
    /// Hand the stored event to the hook, then tell the caller its seq.
    Hook(StoredHook, oneshot::Sender<Result<u64, StoreError>>),
}

/// An append the committer has taken: resolves once its event is stored (or its batch failed).
#[must_use = "an append is only known to be stored once awaited"]
pub struct QueuedEvent(oneshot::Receiver<Result<u64, StoreError>>);

impl QueuedEvent {
    /// The event's seq, once its batch committed.
    pub async fn stored(self) -> Result<u64, StoreError> {
        self.0.await.map_err(|_| StoreError::Closed)?
    }

    /// [`QueuedEvent::stored`] without waiting: `None` while its batch is not done.
    pub fn try_stored(&mut self) -> Option<Result<u64, StoreError>> {
        match self.0.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(StoreError::Closed)),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Committer {
    tx: mpsc::Sender<(NewEvent, Done)>,
}

impl Committer {
    /// Starts the writer task. It holds only the pools, so it ends when every store handle
    /// (and with it every sender) is gone.
    pub(crate) fn start(db: Db) -> Committer {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, rx));
        Committer { tx }
    }

    /// Queues an append (waiting only for room in the queue); appends are stored, and their
    /// hooks called, in the order they were queued.
    pub(crate) async fn queue(
        &self,
        event: NewEvent,
        hook: StoredHook,
    ) -> Result<QueuedEvent, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, Done::Hook(hook, reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(QueuedEvent(answer))
    }

    pub(crate) async fn append(&self, event: NewEvent) -> Result<StoredEvent, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, Done::Reply(reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<(NewEvent, Done)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, done): (Vec<NewEvent>, Vec<Done>) = batch.drain(..).unzip();
        match append_batch(&db, events).await {
            Ok(stored) => {
                for (done, event) in done.into_iter().zip(stored) {
                    match done {
                        Done::Reply(reply) => {
                            let _ = reply.send(Ok(event));
                        }
                        Done::Hook(hook, reply) => {
                            let seq = event.seq;
                            hook(event);
                            let _ = reply.send(Ok(seq));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = done.len(), "could not store a batch of events");
                let message = e.to_string();
                for done in done {
                    let error = StoreError::Batch(message.clone());
                    match done {
                        Done::Reply(reply) => {
                            let _ = reply.send(Err(error));
                        }
                        Done::Hook(_, reply) => {
                            let _ = reply.send(Err(error));
                        }
                    }
                }
            }
        }
    }
}
