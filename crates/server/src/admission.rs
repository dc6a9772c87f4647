//! WebSocket admission: the node's limit on open WebSocket connections (HTTP 503 beyond) and
//! each user's (HTTP 429 beyond), both checked after authentication and before the upgrade.
//! A [`ConnectionSlot`] holds the connection's place in both until it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use apogee_store::UserKey;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The node has `websockets` connections open.
    NodeFull,
    /// The user has `per_user` connections open on this node.
    UserFull(usize),
}

#[derive(Default)]
struct Counts {
    open: usize,
    /// Keyed by the key its slots share: one copy of a user's key however many connections.
    by_user: HashMap<Arc<UserKey>, usize>,
}

/// Open WebSocket connections, in all and per user.
pub struct Admission {
    max: usize,
    per_user: usize,
    counts: Arc<Mutex<Counts>>,
}

fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    // Plain counters: whatever panicked while holding the lock left them usable.
    crate::sync::lock(counts)
}

impl Admission {
    pub fn new(max: usize, per_user: usize) -> Admission {
        Admission {
            max,
            per_user,
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

    /// Takes a place for one of `user`'s connections.
    pub fn admit(&self, user: &Arc<UserKey>) -> Result<ConnectionSlot, Refused> {
        let mut counts = lock(&self.counts);
        if counts.open >= self.max {
            return Err(Refused::NodeFull);
        }
        let user = match counts.by_user.get_key_value(user) {
            Some((_, &mine)) if mine >= self.per_user => {
                return Err(Refused::UserFull(self.per_user));
            }
            Some((key, _)) => Arc::clone(key),
            None => Arc::clone(user),
        };
        counts.open += 1;
        *counts.by_user.entry(Arc::clone(&user)).or_insert(0) += 1;
        Ok(ConnectionSlot {
            counts: Arc::clone(&self.counts),
            user,
        })
    }
}

/// One admitted connection; gives its places back when dropped.
pub struct ConnectionSlot {
    counts: Arc<Mutex<Counts>>,
    user: Arc<UserKey>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.open = counts.open.saturating_sub(1);
        if let Some(n) = counts.by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.by_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Arc<UserKey> {
        Arc::new(UserKey {
            org_id: "acme".into(),
            user_id: name.into(),
        })
    }

    #[test]
    fn a_user_gets_their_share_and_the_node_its_total() {
        let a = Admission::new(3, 2);
        let first = a.admit(&user("alice")).unwrap();
        let _second = a.admit(&user("alice")).unwrap();
        assert_eq!(a.admit(&user("alice")).err(), Some(Refused::UserFull(2)));
        let _bob = a.admit(&user("bob")).unwrap();
        assert_eq!(a.admit(&user("carol")).err(), Some(Refused::NodeFull));
        drop(first);
        assert!(
            a.admit(&user("alice")).is_ok(),
            "a closed connection frees both places"
        );
        assert_eq!(lock(&a.counts).by_user.len(), 2);
        let _again = a.admit(&user("bob")).unwrap();
        assert_eq!(
            Arc::strong_count(
                lock(&a.counts)
                    .by_user
                    .get_key_value(&user("bob"))
                    .unwrap()
                    .0
            ),
            3,
            "a user's connections share the table's one copy of their key"
        );
    }
}
