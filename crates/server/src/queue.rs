//! A bounded single-consumer queue that allocates nothing until used and gives memory back
//! when drained: per-connection queues sit idle most of the time, and tens of thousands of
//! them must cost little (a tokio `mpsc` channel allocates a block of slots up front).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Capacity kept after a drain; larger buffers are released.
const KEEP_CAPACITY: usize = 8;

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    ready: Notify,
    /// Signalled when an item is taken (or the receiver is gone), for a sender waiting in
    /// [`Sender::push`].
    space: Notify,
    capacity: usize,
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        crate::sync::lock(&self.state)
    }
}

/// Why an item was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    Full,
    Closed,
}

/// The producing side; the queue closes when the last sender is dropped.
pub struct Sender<T> {
    inner: Arc<Inner<T>>,
}

pub struct Receiver<T> {
    inner: Arc<Inner<T>>,
}

pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            items: VecDeque::new(),
            closed: false,
        }),
        ready: Notify::new(),
        space: Notify::new(),
        capacity: capacity.max(1),
    });
    (
        Sender {
            inner: Arc::clone(&inner),
        },
        Receiver { inner },
    )
}

impl<T> Sender<T> {
    /// Queues without waiting.
    pub fn try_push(&self, item: T) -> Result<(), PushError> {
        self.offer(item).map_err(|(e, _)| e)
    }

    /// Queues, waiting while the queue is full (bound the wait with a timeout).
    pub async fn push(&self, mut item: T) -> Result<(), PushError> {
        loop {
            // Registered before trying, so a pop between the try and the wait is seen.
            let space = self.inner.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            match self.offer(item) {
                Ok(()) => return Ok(()),
                Err((PushError::Full, back)) => item = back,
                Err((e, _)) => return Err(e),
            }
            space.await;
        }
    }

    fn offer(&self, item: T) -> Result<(), (PushError, T)> {
        let mut state = self.inner.lock();
        if state.closed {
            return Err((PushError::Closed, item));
        }
        if state.items.len() >= self.inner.capacity {
            return Err((PushError::Full, item));
        }
        state.items.push_back(item);
        drop(state);
        self.inner.ready.notify_one();
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.inner.lock().closed = true;
        self.inner.ready.notify_one();
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once the sender is gone and the queue is empty.
    pub async fn pop(&mut self) -> Option<T> {
        loop {
            // Registered before checking, so a push between the check and the wait is seen.
            let notified = self.inner.ready.notified();
            {
                let mut state = self.inner.lock();
                if let Some(item) = state.items.pop_front() {
                    if state.items.is_empty() && state.items.capacity() > KEEP_CAPACITY {
                        state.items.shrink_to(KEEP_CAPACITY);
                    }
                    drop(state);
                    self.inner.space.notify_one();
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
impl<T> Receiver<T> {
    /// The next item if one is queued (tests read queues without a runtime).
    pub fn try_pop(&mut self) -> Option<T> {
        self.inner.lock().items.pop_front()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        state.closed = true;
        state.items.clear();
        drop(state);
        self.inner.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_ordered_and_closes_with_the_sender() {
        let (tx, mut rx) = bounded(2);
        tx.try_push(1).unwrap();
        tx.try_push(2).unwrap();
        assert_eq!(tx.try_push(3), Err(PushError::Full));
        assert_eq!(rx.pop().await, Some(1));
        tx.try_push(3).unwrap();
        drop(tx);
        assert_eq!(rx.pop().await, Some(2));
        assert_eq!(rx.pop().await, Some(3));
        assert_eq!(rx.pop().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_push() {
        let (tx, mut rx) = bounded(4);
        let waiter = tokio::spawn(async move { rx.pop().await });
        tokio::task::yield_now().await;
        tx.try_push(7).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn a_waiting_sender_goes_on_when_room_is_made() {
        let (tx, mut rx) = bounded(1);
        tx.push(1).await.unwrap();
        let pusher = tokio::spawn(async move {
            tx.push(2).await.unwrap();
            tx
        });
        tokio::task::yield_now().await;
        assert_eq!(rx.pop().await, Some(1));
        let tx = pusher.await.unwrap();
        assert_eq!(rx.pop().await, Some(2));
        // A full queue whose receiver goes away fails the waiting sender.
        tx.push(3).await.unwrap();
        let waiting = tokio::spawn(async move { tx.push(4).await });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(PushError::Closed));
    }

    #[test]
    fn pushing_to_a_dropped_receiver_fails() {
        let (tx, rx) = bounded::<u8>(4);
        drop(rx);
        assert_eq!(tx.try_push(1), Err(PushError::Closed));
    }
}
