//! Following one user's stream across connections and nodes: every event recorded by `seq`,
//! a duplicate fails the test, and helpers check what a complete stream looks like.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Client;

/// Every seq from 1 to the highest seen exactly once.
pub fn assert_contiguous(user: &str, seen: &BTreeMap<u64, Value>) {
    let seqs: Vec<u64> = seen.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{user}: gap in the stream"
    );
}

/// A client that records every stream event by seq and fails on a duplicate.
pub struct Tracker {
    pub user: String,
    pub seen: BTreeMap<u64, Value>,
}

impl Tracker {
    pub fn new(user: &str) -> Tracker {
        Tracker {
            user: user.to_string(),
            seen: BTreeMap::new(),
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.seen.keys().last().copied().unwrap_or(0)
    }

    pub fn record(&mut self, v: Value) -> bool {
        let Some(seq) = v["seq"].as_u64() else {
            return false;
        };
        let done = v["type"] == "agent_completed" && v["agent"] == "supervisor";
        assert!(
            self.seen.insert(seq, v).is_none(),
            "{}: seq {seq} delivered twice",
            self.user
        );
        done
    }

    /// Reads `c` until `runs` runs have completed in this user's stream (bounded).
    pub async fn take_until(&mut self, c: &mut Client, runs: usize) {
        for _ in 0..20_000 {
            if self.completed_runs() >= runs {
                return;
            }
            let v = c.next().await.expect("stream ended before the runs did");
            self.record(v);
        }
    }

    pub fn completed_runs(&self) -> usize {
        self.seen
            .values()
            .filter(|v| v["type"] == "agent_completed" && v["agent"] == "supervisor")
            .count()
    }

    pub async fn resume(&self, addr: &str) -> Client {
        let mut c = Client::connect(
            addr,
            &format!("?user={}&last_seq={}", self.user, self.last_seq()),
            &[],
        )
        .await
        .unwrap();
        let ready = c.ready().await;
        assert_eq!(ready["resync_required"], false, "{ready}");
        assert_eq!(ready["user_id"], self.user.as_str());
        c
    }
}

/// A user's events grouped by run (the run's own events, in order).
pub fn split_runs(events: &[Value]) -> Vec<Vec<Value>> {
    let mut by_run: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in events {
        if let Some(r) = e["run_id"].as_str()
            && e["type"] != "message_created"
        {
            by_run.entry(r.to_string()).or_default().push(e.clone());
        }
    }
    by_run.into_values().collect()
}
