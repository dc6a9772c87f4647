//! Group commit of stream events. Every append goes through one background task that takes
//! whatever appends are waiting (up to a batch) and stores them in a single transaction, so
//! under load the cost of a transaction, and of each round trip to the database, is shared by
//! many events instead of paid by each. An append still returns only once its event is durable
//! in the database (persist, then send). Works alike on both backends; on PostgreSQL each node
//! has its own committer, and `append_batch` keeps seqs contiguous across them.

use tokio::sync::{mpsc, oneshot};

use crate::StoreError;
use crate::db::Db;
use crate::events::{NewEvent, StoredEvent, append_batch};

/// Appends stored together at most; bounds one transaction's size and latency.
const MAX_BATCH: usize = 512;
/// Appends waiting for the writer at most; callers wait for room beyond it.
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<StoredEvent, StoreError>>;

#[derive(Clone)]
pub(crate) struct Committer {
    tx: mpsc::Sender<(NewEvent, Reply)>,
}

impl Committer {
    /// Starts the writer task. It holds only the pools, so it ends when every store handle
    /// (and with it every sender) is gone.
    pub(crate) fn start(db: Db) -> Committer {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, rx));
        Committer { tx }
    }

    pub(crate) async fn append(&self, event: NewEvent) -> Result<StoredEvent, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<(NewEvent, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, replies): (Vec<NewEvent>, Vec<Reply>) = batch.drain(..).unzip();
        match append_batch(&db, events).await {
            Ok(stored) => {
                for (reply, event) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(event));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = replies.len(), "could not store a batch of events");
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Batch(message.clone())));
                }
            }
        }
    }
}
