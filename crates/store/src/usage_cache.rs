//! Results of usage reads, computed once per org and data version.
//!
//! Every transaction that changes an org's usage (ingest, delete, demo reload: the ones that
//! change its rollups, `rollup::apply_delta!`) also bumps the org's row of `usage_versions`,
//! in the same transaction. A read through [`crate::OrgUsage`] first reads that version, then
//! looks for its call (the query method and its arguments, the period included) under it: an
//! answer cached under an older version is never returned, so no figure is stale once an
//! ingest has committed, on this node or any other sharing the database.
//!
//! Identical reads in flight share one computation (a per-entry `OnceCell`: the first caller
//! computes, the others wait for its result). The cache is bounded in entries and in bytes
//! (a result's size as JSON, plus its key), least recently used first out; seeing a newer
//! version of an org drops all of that org's older entries at once. A read that finds the
//! cache already at a newer version than its own (it read the version just before a commit)
//! is computed and not kept.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use apogee_analytics::QueryError;
use serde::Serialize;
use tokio::sync::OnceCell;

/// How much the cache may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageCacheLimits {
    /// Cached reads, in flight ones included.
    pub entries: usize,
    /// Their size, bytes (each result as JSON, plus its key).
    pub bytes: usize,
}

impl Default for UsageCacheLimits {
    /// 4,096 reads and 64 MiB: a full analysis makes a few dozen reads, most of a few KiB.
    fn default() -> Self {
        UsageCacheLimits {
            entries: 4096,
            bytes: 64 * 1024 * 1024,
        }
    }
}

/// Counters and sizes of the cache, shared with whoever exports them (the server's
/// `/metrics`). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct UsageCacheStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    shared: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
}

impl UsageCacheStats {
    /// Reads answered from a finished entry.
    pub fn hits(&self) -> u64 {
        self.0.hits.load(Ordering::Relaxed)
    }

    /// Reads that waited for an identical read in flight and took its result.
    pub fn shared(&self) -> u64 {
        self.0.shared.load(Ordering::Relaxed)
    }

    /// Reads that ran their query.
    pub fn misses(&self) -> u64 {
        self.0.misses.load(Ordering::Relaxed)
    }

    /// Entries dropped to stay within the limits or because their org's data changed.
    pub fn evictions(&self) -> u64 {
        self.0.evictions.load(Ordering::Relaxed)
    }

    /// Entries held now.
    pub fn entries(&self) -> u64 {
        self.0.entries.load(Ordering::Relaxed)
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.0.bytes.load(Ordering::Relaxed)
    }
}

/// Bumps an org's data version (`$1`); run by `rollup::apply_delta!` in the transaction that
/// changed the org's usage.
pub(crate) const BUMP_VERSION: &str = "INSERT INTO usage_versions (org_id, version) VALUES ($1, 1)
     ON CONFLICT (org_id) DO UPDATE SET version = usage_versions.version + 1";

type Value = Arc<dyn Any + Send + Sync>;

/// A version read's answer as its joiners get it.
type VersionAnswer = Option<Result<i64, String>>;

/// Reads of an org's data version that have not begun yet, which later callers join instead of
/// each reading again: with many runs asking at once, one read (on one connection) answers
/// every caller that asked before it began, instead of each cached read paying a round trip
/// of its own. Only a read that has not begun is joined, so every answer is at least as new as
/// the moment its caller asked: nothing committed before a question is missed.
#[derive(Default)]
pub(crate) struct VersionReads {
    /// Per org, the read waiting to begin: its id and where its answer comes.
    waiting: Mutex<HashMap<String, (u64, tokio::sync::watch::Receiver<VersionAnswer>)>>,
    next_id: AtomicU64,
}

/// What a caller of [`VersionReads::join_or_lead`] does.
pub(crate) enum VersionRead<'a> {
    /// Read the version, calling [`VersionLeader::begun`] right before the statement runs.
    Lead(VersionLeader<'a>),
    /// Wait for the read another caller leads ([`VersionReads::joined`]).
    Join(tokio::sync::watch::Receiver<VersionAnswer>),
}

/// The caller that reads for everyone who joins before it begins.
pub(crate) struct VersionLeader<'a> {
    reads: &'a VersionReads,
    org: String,
    id: u64,
    answer: tokio::sync::watch::Sender<VersionAnswer>,
    begun: bool,
}

impl VersionReads {
    fn lock(
        &self,
    ) -> MutexGuard<'_, HashMap<String, (u64, tokio::sync::watch::Receiver<VersionAnswer>)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the org's read that has not begun yet, or leads a new one.
    pub(crate) fn join_or_lead(&self, org: &str) -> VersionRead<'_> {
        let mut waiting = self.lock();
        if let Some((_, answer)) = waiting.get(org) {
            return VersionRead::Join(answer.clone());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, rx) = tokio::sync::watch::channel(None);
        waiting.insert(org.to_string(), (id, rx));
        VersionRead::Lead(VersionLeader {
            reads: self,
            org: org.to_string(),
            id,
            answer,
            begun: false,
        })
    }

    /// The answer of the read joined; `None` when its leader went away without one (the
    /// caller then reads for itself).
    pub(crate) async fn joined(
        mut answer: tokio::sync::watch::Receiver<VersionAnswer>,
    ) -> Option<Result<i64, QueryError>> {
        let got = answer.wait_for(Option::is_some).await.ok()?;
        got.clone().map(|r| r.map_err(QueryError::Backend))
    }
}

impl VersionLeader<'_> {
    /// The read's statement is about to run: callers from now on start a read of their own.
    pub(crate) fn begun(&mut self) {
        if !self.begun {
            self.begun = true;
            self.forget();
        }
    }

    /// Hands the answer to every caller that joined.
    pub(crate) fn finish(mut self, answer: &Result<i64, QueryError>) {
        self.begun();
        self.answer
            .send_replace(Some(answer.as_ref().map(|v| *v).map_err(|e| e.to_string())));
    }

    fn forget(&self) {
        let mut waiting = self.reads.lock();
        if waiting.get(&self.org).is_some_and(|(id, _)| *id == self.id) {
            waiting.remove(&self.org);
        }
    }
}

impl Drop for VersionLeader<'_> {
    fn drop(&mut self) {
        // Gone before it began (its run was cancelled): later callers must not join it.
        if !self.begun {
            self.forget();
        }
    }
}

struct Slot {
    cell: Arc<OnceCell<Value>>,
    /// 0 until its result is in.
    bytes: usize,
    /// Its place in [`Inner::lru`].
    tick: u64,
}

#[derive(Default)]
struct OrgEntries {
    version: i64,
    calls: HashMap<String, Slot>,
}

#[derive(Default)]
struct Inner {
    orgs: HashMap<String, OrgEntries>,
    /// (org, call) by last use, oldest first.
    lru: BTreeMap<u64, (String, String)>,
    tick: u64,
    entries: usize,
    bytes: usize,
}

/// See the module doc. One per [`crate::Store`].
pub(crate) struct UsageCache {
    limits: UsageCacheLimits,
    inner: Mutex<Inner>,
    stats: UsageCacheStats,
    /// Reads of orgs' data versions not begun yet (see [`VersionReads`]).
    pub(crate) versions: VersionReads,
}

impl UsageCache {
    pub(crate) fn new(limits: UsageCacheLimits) -> UsageCache {
        UsageCache {
            limits: UsageCacheLimits {
                entries: limits.entries.max(1),
                bytes: limits.bytes,
            },
            inner: Mutex::new(Inner::default()),
            stats: UsageCacheStats::default(),
            versions: VersionReads::default(),
        }
    }

    pub(crate) fn stats(&self) -> UsageCacheStats {
        self.stats.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change below leaves the maps consistent before anything can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The result of `call` on `org`'s usage at `version`: cached, shared with an identical
    /// read in flight, or computed by `compute` (and kept).
    pub(crate) async fn get_or_compute<T, F>(
        &self,
        org: &str,
        version: i64,
        call: String,
        compute: F,
    ) -> Result<T, QueryError>
    where
        T: Clone + Serialize + Send + Sync + 'static,
        F: Future<Output = Result<T, QueryError>>,
    {
        let Some(cell) = self.cell(org, version, &call) else {
            self.stats.0.misses.fetch_add(1, Ordering::Relaxed);
            return compute.await;
        };
        if let Some(v) = cell.get().and_then(|v| v.downcast_ref::<T>()) {
            self.stats.0.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v.clone());
        }
        let mut computed = None;
        let value = cell
            .get_or_try_init(|| async {
                let v = compute.await?;
                let bytes = serde_json::to_vec(&v).map_or(0, |j| j.len());
                computed = Some(bytes);
                Ok::<Value, QueryError>(Arc::new(v))
            })
            .await;
        let value = match value {
            Ok(v) => Arc::clone(v),
            Err(e) => {
                self.forget_empty(org, &call, &cell);
                return Err(e);
            }
        };
        match computed {
            Some(bytes) => {
                self.stats.0.misses.fetch_add(1, Ordering::Relaxed);
                self.settle(org, &call, &cell, bytes + org.len() + call.len());
            }
            None => {
                self.stats.0.shared.fetch_add(1, Ordering::Relaxed);
            }
        }
        match value.downcast_ref::<T>() {
            Some(v) => Ok(v.clone()),
            // A call's text names its method, so one call always has one type.
            None => Err(QueryError::Backend(format!(
                "usage cache: `{call}` holds another type"
            ))),
        }
    }

    /// The entry for `call` at `version`, made if needed; `None` when the cache already holds
    /// a newer version of the org (this read is late and must not be kept).
    fn cell(&self, org: &str, version: i64, call: &str) -> Option<Arc<OnceCell<Value>>> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let entries = inner.orgs.entry(org.to_string()).or_default();
        if version < entries.version {
            return None;
        }
        if version > entries.version {
            let stale = std::mem::take(&mut entries.calls);
            entries.version = version;
            for slot in stale.values() {
                inner.lru.remove(&slot.tick);
                inner.entries -= 1;
                inner.bytes -= slot.bytes;
            }
            self.stats
                .0
                .evictions
                .fetch_add(stale.len() as u64, Ordering::Relaxed);
        }
        inner.tick += 1;
        let tick = inner.tick;
        let cell = match inner.orgs.get_mut(org).and_then(|e| e.calls.get_mut(call)) {
            Some(slot) => {
                inner.lru.remove(&slot.tick);
                slot.tick = tick;
                Arc::clone(&slot.cell)
            }
            None => {
                let cell = Arc::new(OnceCell::new());
                if let Some(e) = inner.orgs.get_mut(org) {
                    e.calls.insert(
                        call.to_string(),
                        Slot {
                            cell: Arc::clone(&cell),
                            bytes: 0,
                            tick,
                        },
                    );
                }
                inner.entries += 1;
                cell
            }
        };
        inner.lru.insert(tick, (org.to_string(), call.to_string()));
        self.evict(inner);
        Some(cell)
    }

    /// Records the size of a computed entry (if it is still held) and evicts down to the
    /// limits.
    fn settle(&self, org: &str, call: &str, cell: &Arc<OnceCell<Value>>, bytes: usize) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if let Some(slot) = inner
            .orgs
            .get_mut(org)
            .and_then(|e| e.calls.get_mut(call))
            .filter(|s| Arc::ptr_eq(&s.cell, cell))
        {
            inner.bytes = inner.bytes - slot.bytes + bytes;
            slot.bytes = bytes;
        }
        self.evict(inner);
    }

    /// Drops an entry whose computation failed, so the next read tries again.
    fn forget_empty(&self, org: &str, call: &str, cell: &Arc<OnceCell<Value>>) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(entries) = inner.orgs.get_mut(org) else {
            return;
        };
        if entries
            .calls
            .get(call)
            .is_some_and(|s| Arc::ptr_eq(&s.cell, cell) && s.cell.get().is_none())
            && let Some(slot) = entries.calls.remove(call)
        {
            inner.lru.remove(&slot.tick);
            inner.entries -= 1;
            inner.bytes -= slot.bytes;
        }
        self.publish_sizes(inner);
    }

    /// Drops least recently used entries until within the limits (a read in flight whose
    /// entry goes still gets its result; it is just not kept), and orgs left without any.
    fn evict(&self, inner: &mut Inner) {
        while inner.entries > self.limits.entries || inner.bytes > self.limits.bytes {
            let Some((_, (org, call))) = inner.lru.pop_first() else {
                break;
            };
            if let Some(slot) = inner
                .orgs
                .get_mut(&org)
                .and_then(|entries| entries.calls.remove(&call))
            {
                inner.entries -= 1;
                inner.bytes -= slot.bytes;
                self.stats.0.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Orgs without entries are forgotten only when there are many: a read at an org's
        // latest version clears whatever an older one left, so forgetting is always safe.
        if inner.orgs.len() > self.limits.entries {
            inner.orgs.retain(|_, e| !e.calls.is_empty());
        }
        self.publish_sizes(inner);
    }

    fn publish_sizes(&self, inner: &Inner) {
        self.stats
            .0
            .entries
            .store(inner.entries as u64, Ordering::Relaxed);
        self.stats
            .0
            .bytes
            .store(inner.bytes as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn cache(entries: usize, bytes: usize) -> UsageCache {
        UsageCache::new(UsageCacheLimits { entries, bytes })
    }

    async fn read(c: &UsageCache, org: &str, version: i64, call: &str, value: u64) -> u64 {
        c.get_or_compute(org, version, call.to_string(), async move { Ok(value) })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_result_is_kept_per_org_call_and_version() {
        let c = cache(100, 1 << 20);
        assert_eq!(read(&c, "a", 1, "totals", 10).await, 10);
        assert_eq!(read(&c, "a", 1, "totals", 11).await, 10, "cached");
        assert_eq!(read(&c, "b", 1, "totals", 12).await, 12, "another org");
        assert_eq!(read(&c, "a", 1, "tags", 13).await, 13, "another call");
        assert_eq!((c.stats().hits(), c.stats().misses()), (1, 3));
        // New data: recomputed, and the org's older entries are gone.
        assert_eq!(read(&c, "a", 2, "totals", 20).await, 20);
        assert_eq!(c.stats().entries(), 2, "b's totals and a's new totals");
        // A reader that saw the version before the change gets a fresh result, not kept.
        assert_eq!(read(&c, "a", 1, "totals", 14).await, 14);
        assert_eq!(read(&c, "a", 2, "totals", 21).await, 20);
    }

    #[tokio::test]
    async fn identical_reads_in_flight_share_one_computation() {
        let c = Arc::new(cache(100, 1 << 20));
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (c, runs, gate) = (Arc::clone(&c), Arc::clone(&runs), Arc::clone(&gate));
            tasks.push(tokio::spawn(async move {
                c.get_or_compute("a", 1, "slow".into(), async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok(7_u64)
                })
                .await
            }));
        }
        // Every task is waiting on the one computation before it may finish.
        while c.stats().shared() + c.stats().misses() == 0 && runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(c.stats().misses(), 1);
        assert_eq!(c.stats().shared() + c.stats().hits(), 7);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept() {
        let c = cache(100, 1 << 20);
        let failed: Result<u64, _> = c
            .get_or_compute("a", 1, "totals".into(), async {
                Err(QueryError::Backend("down".into()))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(c.stats().entries(), 0);
        assert_eq!(read(&c, "a", 1, "totals", 5).await, 5);
    }

    #[tokio::test]
    async fn entries_and_bytes_stay_within_the_limits() {
        let c = cache(3, 1 << 20);
        for i in 0..10 {
            read(&c, "a", 1, &format!("call{i}"), i).await;
        }
        assert_eq!(c.stats().entries(), 3);
        // The most recent stayed; the first was evicted.
        assert_eq!(read(&c, "a", 1, "call9", 99).await, 9);
        assert_eq!(read(&c, "a", 1, "call0", 99).await, 99);
        // Each entry here is "a" + "callN" + one JSON digit = 7 bytes: 20 bytes hold two.
        let c = cache(100, 20);
        for i in 0..10 {
            read(&c, "a", 1, &format!("call{i}"), i).await;
            assert!(c.stats().bytes() <= 20, "{}", c.stats().bytes());
        }
        assert_eq!(c.stats().entries(), 2);
        // Larger than the whole budget: computed, returned, not kept.
        let big = c
            .get_or_compute("a", 1, "big".into(), async { Ok("x".repeat(100)) })
            .await
            .unwrap();
        assert_eq!(big.len(), 100);
        assert!(c.stats().bytes() <= 20);
    }
}

#[cfg(test)]
mod version_reads {
    use super::*;

    #[tokio::test]
    async fn callers_join_a_read_only_until_it_begins() {
        let reads = VersionReads::default();
        let VersionRead::Lead(mut leader) = reads.join_or_lead("org") else {
            panic!("the first caller leads");
        };
        // Asked before the read began: joins it and gets its answer.
        let VersionRead::Join(early) = reads.join_or_lead("org") else {
            panic!("a caller before the read began joins it");
        };
        // Another org's read is its own.
        assert!(matches!(reads.join_or_lead("other"), VersionRead::Lead(_)));
        leader.begun();
        // Asked after the read began: the answer might predate what it must see, so it leads
        // a read of its own.
        let late = reads.join_or_lead("org");
        assert!(matches!(late, VersionRead::Lead(_)));
        leader.finish(&Ok(7));
        assert_eq!(
            VersionReads::joined(early).await.map(Result::ok),
            Some(Some(7))
        );
    }

    #[tokio::test]
    async fn a_leader_gone_before_it_began_leaves_its_joiners_to_read_for_themselves() {
        let reads = VersionReads::default();
        let leader = reads.join_or_lead("org");
        let VersionRead::Join(joined) = reads.join_or_lead("org") else {
            panic!("joins the waiting read");
        };
        drop(leader);
        assert!(VersionReads::joined(joined).await.is_none());
        assert!(matches!(reads.join_or_lead("org"), VersionRead::Lead(_)));
    }
}
