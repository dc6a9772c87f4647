//! A bounded single-consumer queue that allocates nothing until used and gives memory back
//! when drained: per-connection queues sit idle most of the time, and tens of thousands of
//! them must cost little (a tokio `mpsc` channel allocates a block of slots up front). The
//! receiver waits by polling ([`Receiver::poll_pop`]), so a task that waits on it alongside
//! other things holds no wait future of its own: the queue keeps the one waker.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Capacity kept after a drain; larger buffers are released.
const KEEP_CAPACITY: usize = 8;

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// The receiver's task, when it found the queue empty.
    waiting: Option<Waker>,
}

struct Inner<T> {
    state: Mutex<State<T>>,
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
            waiting: None,
        }),
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
        let mut state = self.inner.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        if state.items.len() >= self.inner.capacity {
            return Err(PushError::Full);
        }
        state.items.push_back(item);
        let waiting = state.waiting.take();
        drop(state);
        if let Some(w) = waiting {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        state.closed = true;
        let waiting = state.waiting.take();
        drop(state);
        if let Some(w) = waiting {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once the sender is gone and the queue is empty.
    pub async fn pop(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_pop(cx)).await
    }

    /// [`Self::pop`] as a poll: when nothing is queued, `cx`'s task is woken by the next push
    /// (or the sender's drop).
    pub fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.inner.lock();
        if let Some(item) = Self::take(&mut state) {
            return Poll::Ready(Some(item));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &mut state.waiting {
            Some(w) => w.clone_from(cx.waker()),
            slot @ None => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Receiver<T> {
    /// The next item if one is queued, without waiting (a connection drains what is queued
    /// into one write).
    pub fn try_pop(&mut self) -> Option<T> {
        Self::take(&mut self.inner.lock())
    }

    /// Pops the front item; an emptied queue gives back what it grew beyond its usual size.
    fn take(state: &mut State<T>) -> Option<T> {
        let item = state.items.pop_front()?;
        if state.items.is_empty() && state.items.capacity() > KEEP_CAPACITY {
            state.items.shrink_to(KEEP_CAPACITY);
        }
        Some(item)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        state.closed = true;
        state.items.clear();
        state.waiting = None;
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
    async fn a_waiting_receiver_wakes_on_push_and_on_the_senders_drop() {
        let (tx, mut rx) = bounded(4);
        let waiter = tokio::spawn(async move {
            let first = rx.pop().await;
            let then = rx.pop().await;
            (first, then)
        });
        tokio::task::yield_now().await;
        tx.try_push(7).unwrap();
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(waiter.await.unwrap(), (Some(7), None));
    }

    #[test]
    fn pushing_to_a_dropped_receiver_fails() {
        let (tx, rx) = bounded::<u8>(4);
        drop(rx);
        assert_eq!(tx.try_push(1), Err(PushError::Closed));
    }
}
