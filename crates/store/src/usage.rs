//! Ingest of priced usage records (all columns of usage records v2), idempotent per org by
//! `request_id`, and their deletion by an operator; both keep the hourly rollups equal to the
//! raw rows in the same transaction.
//!
//! Ingest checks every record against the rollup row it adds to before inserting anything: a
//! record that would take a 64-bit sum past its limit is refused with its position (the rest of
//! the batch is stored), so no batch ever fails on an overflowing bucket. On PostgreSQL the rows
//! read are locked (`FOR UPDATE`) until the transaction ends, and a race on a bucket created
//! meanwhile by another node (out of range, deadlock) runs the transaction again.
//!
//! The raw rows go in as cheaply as the backend allows (one prepared single-row `INSERT`
//! stepped per row through SQLite's own handle; on PostgreSQL a binary `COPY` into a staging
//! table, then one `INSERT … SELECT` from it),
//! and only whether each row was inserted comes back: the rollups and summaries are folded
//! from the records themselves, which is what the rows hold, rather than decoded from the rows
//! (allocation dominated the profile of the earlier `RETURNING` of every column).
//!
//! On SQLite the whole transaction runs on the writer's own handle ([`on_sqlite_handle`], one
//! hand-off per batch): the batch's rollup rows read, the raw rows inserted, the rollups,
//! summaries, data version and prompt summaries written, each by a prepared single-row
//! statement, while another core folds the rows (keys borrowed from the records).

use std::collections::HashSet;

use apogee_analytics::PricedRecord;
use futures_util::StreamExt;
use sqlx::QueryBuilder;

use crate::db::{Cols, Db, on_sqlite_handle, on_write, sqlite_error};
use crate::pg_copy::BinaryRows;
use crate::rollup::{
    HourKey, HourSums, NONE_KEY, RAW_COLUMNS, RawRow, RollupDelta, RowSums, apply_delta, hour_floor,
};
use crate::{Store, StoreError};

/// Rollup rows read per query when checking a batch: 5 binds each.
const KEYS_PER_READ: usize = 1_000;
/// Times an ingest transaction runs before its failure is returned.
const ATTEMPTS: usize = 3;
/// Why a record that would overflow its bucket was not stored.
const BUCKET_FULL: &str = "not stored: its hourly sums (org, hour, provider, model, user, \
     feature) would overflow; check its token counts and cost";

/// What an ingest stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub accepted: u64,
    /// Records whose `request_id` was already stored for the org (or repeated in the batch).
    pub duplicates: u64,
    /// Records not stored, by position in the input, with the reason (ascending positions):
    /// records whose hourly sums would overflow.
    pub rejected: Vec<(usize, String)>,
}

/// Tags as a JSON object (`NULL` when there are none).
fn tags_json(r: &apogee_analytics::UsageRecord) -> Option<String> {
    r.tags
        .as_ref()
        .filter(|t| !t.is_empty())
        .and_then(|t| serde_json::to_string(t).ok())
}

/// What one record adds to its bucket; `None` when its cost cannot be stored at all.
fn row_sums(p: &PricedRecord) -> Option<RowSums> {
    let r = &p.record;
    Some(RowSums {
        calls: r.request_count(),
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cached_input_tokens: r.cached_tokens(),
        cost_nanos: match p.cost {
            Some(c) => Some(c.to_i64()?),
            None => None,
        },
        error: r.status.as_deref().unwrap_or("ok") != "ok",
    })
}

/// A record as the raw row ingest stores for it, for the rollups and summaries.
fn raw_row<'a>(p: &'a PricedRecord, provider: &'a str) -> RawRow<'a> {
    let r = &p.record;
    RawRow {
        ts_ms: r.ts.timestamp_millis(),
        provider,
        model: &r.model,
        user: r.user.as_deref(),
        feature: r.feature.as_deref(),
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cached_input_tokens: r.cached_tokens(),
        // Checked before the insert: every admitted cost fits.
        cost_nanos: p.cost.and_then(|c| c.to_i64()),
        status: r.status.as_deref().unwrap_or("ok"),
        request_count: r.request_count(),
        tags: r.tags.as_ref().filter(|t| !t.is_empty()),
        batch: r.is_batch(),
        price_source: p.price_source.as_deref(),
        bucket_seconds: r.bucket_seconds,
        prompt_hash: r.prompt_hash.as_deref(),
    }
}

/// The columns ingest writes, in the order both inserts give them.
const INSERT_COLUMNS: &str = "INSERT INTO usage_records (org_id, synthetic, request_id, ts_ms,
     provider, model, input_tokens, output_tokens, cached_input_tokens, latency_ms, user_name,
     feature, prompt_hash, batch, status, cost_nanos, price_source, cache_creation_input_tokens,
     reasoning_tokens, stream, finish_reason, max_tokens, tags, request_count, service_tier,
     cache_creation_1h_input_tokens, bucket_seconds) ";

/// PostgreSQL's: `RETURNING` yields only the rows inserted, not those skipped as duplicates.
const INSERT_TAIL: &str = " ON CONFLICT (org_id, request_id) DO NOTHING RETURNING request_id";

/// The raw rows' insert, per backend: one prepared single-row statement run per row on SQLite,
/// a `COPY` and one statement on PostgreSQL. Returns, for each row, whether it was
/// inserted (`false`: its request id was already stored for the org).
trait InsertRaw {
    async fn insert_raw(
        &mut self,
        org_id: &str,
        rows: &[&(PricedRecord, String)],
        synthetic: bool,
    ) -> Result<Vec<bool>, sqlx::Error>;
}

/// SQLite's insert of one raw row, prepared once per batch and run for each of its rows.
const SQLITE_INSERT_ROW: &str = " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
     ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)
     ON CONFLICT (org_id, request_id) DO NOTHING";

/// On SQLite the rows go through the connection's own handle (inside the transaction sqlx
/// began on it), one prepared statement stepped per row: sqlx's multi-row statements cost
/// more than SQLite's insert itself (every bound value copied to reach its worker thread,
/// thousands of bindings cleared per statement, a row decoded per `RETURNING` value), and a
/// single-row insert says by its change count whether the row was a duplicate. The handle is
/// held for the batch's inserts only (the writer connection is the only one that writes).
impl InsertRaw for sqlx::SqliteConnection {
    async fn insert_raw(
        &mut self,
        org_id: &str,
        rows: &[&(PricedRecord, String)],
        synthetic: bool,
    ) -> Result<Vec<bool>, sqlx::Error> {
        on_sqlite_handle(self, |conn| {
            sqlite_insert_rows(conn, org_id, rows, synthetic).map_err(sqlite_error)
        })
        .await
    }
}

/// Inserts `rows` through `conn` (sqlx's own connection, [`on_sqlite_handle`]), one prepared
/// statement stepped per row; whether each was inserted (its change count).
fn sqlite_insert_rows(
    conn: &rusqlite::Connection,
    org_id: &str,
    rows: &[&(PricedRecord, String)],
    synthetic: bool,
) -> Result<Vec<bool>, rusqlite::Error> {
    let mut insert = conn.prepare(&format!("{INSERT_COLUMNS}{SQLITE_INSERT_ROW}"))?;
    let mut inserted = Vec::with_capacity(rows.len());
    for (p, provider) in rows {
        let r = &p.record;
        let changed = insert.execute(rusqlite::params![
            org_id,
            synthetic,
            r.request_id.as_deref(),
            r.ts.timestamp_millis(),
            provider.as_str(),
            r.model.as_str(),
            r.input_tokens,
            r.output_tokens,
            r.cached_tokens(),
            r.latency_ms,
            r.user.as_deref(),
            r.feature.as_deref(),
            r.prompt_hash.as_deref(),
            r.is_batch(),
            r.status.as_deref().unwrap_or("ok"),
            p.cost.and_then(|c| c.to_i64()),
            p.price_source.as_deref(),
            r.cache_write_tokens(),
            r.reasoning_tokens,
            r.stream,
            r.finish_reason.as_deref(),
            r.max_tokens,
            tags_json(r),
            r.request_count(),
            r.service_tier.as_deref(),
            r.cache_write_1h_tokens(),
            r.bucket_seconds,
        ])?;
        inserted.push(changed == 1);
    }
    Ok(inserted)
}

/// PostgreSQL's staging table of a batch's raw rows: the columns of [`INSERT_COLUMNS`] after
/// `org_id` and `synthetic`, in that order. Temporary (one per session, created by the first
/// ingest on it) and emptied at every commit.
const PG_STAGING: &str = "SET LOCAL client_min_messages = warning;
     CREATE TEMP TABLE IF NOT EXISTS usage_staging (request_id text, ts_ms int8,
     provider text, model text, input_tokens int8, output_tokens int8, cached_input_tokens int8,
     latency_ms int8, user_name text, feature text, prompt_hash text, batch bool, status text,
     cost_nanos int8, price_source text, cache_creation_input_tokens int8, reasoning_tokens int8,
     stream bool, finish_reason text, max_tokens int8, tags text, request_count int8,
     service_tier text, cache_creation_1h_input_tokens int8, bucket_seconds int8)
     ON COMMIT DELETE ROWS";

/// The staged rows into `usage_records`, in the order they were copied: a temporary table
/// fresh in this transaction is read back in insertion order (local buffers: no synchronized
/// scan, no parallel worker), and that order is what later ties in time are broken by
/// (`ctid` in migration 18's rebuild).
const PG_INSERT_STAGED: &str = "SELECT $1, $2, request_id, ts_ms, provider, model,
     input_tokens, output_tokens, cached_input_tokens, latency_ms, user_name, feature,
     prompt_hash, batch, status, cost_nanos, price_source, cache_creation_input_tokens,
     reasoning_tokens, stream, finish_reason, max_tokens, tags, request_count, service_tier,
     cache_creation_1h_input_tokens, bucket_seconds FROM usage_staging";

/// On PostgreSQL the batch is streamed by `COPY … FROM STDIN (FORMAT binary)` into the
/// session's staging table, then moved by one `INSERT … SELECT … ON CONFLICT DO NOTHING`:
/// `COPY` parses a row for a fraction of what unnesting 25 column arrays costs (and its
/// binary rows need no escaping), and only the staged rows' move pays for the conflict check.
impl InsertRaw for sqlx::PgConnection {
    async fn insert_raw(
        &mut self,
        org_id: &str,
        rows: &[&(PricedRecord, String)],
        synthetic: bool,
    ) -> Result<Vec<bool>, sqlx::Error> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // Without arguments: sent as a simple query, both statements in one round trip.
        // (Not `sqlx::raw_sql`, whose future rustc cannot prove `Send` for every lifetime.)
        sqlx::Executor::execute(&mut *self, PG_STAGING).await?;
        let mut copy = self
            .copy_in_raw("COPY usage_staging FROM STDIN (FORMAT binary)")
            .await?;
        let mut data = BinaryRows::new();
        let mut next = 0;
        while next < rows.len() {
            next = copy_rows(&mut data, rows, next);
            if next == rows.len() {
                data.end();
            }
            copy.send(data.take()).await?;
        }
        copy.finish().await?;
        let sql = format!("{INSERT_COLUMNS}{PG_INSERT_STAGED}{INSERT_TAIL}");
        let returned: Vec<Option<String>> = sqlx::query_scalar(&sql)
            .bind(org_id)
            .bind(synthetic)
            .fetch_all(&mut *self)
            .await?;
        // Only the request ids of the rows inserted come back (not those of the rows skipped
        // as duplicates of stored ones); rows without one are always inserted.
        let inserted: HashSet<&str> = returned.iter().flatten().map(String::as_str).collect();
        Ok(rows
            .iter()
            .map(|(p, _)| {
                p.record
                    .request_id
                    .as_deref()
                    .is_none_or(|id| inserted.contains(id))
            })
            .collect())
    }
}

/// Fields of a staged row.
const STAGED_FIELDS: i16 = 25;

/// Appends `rows` from `from` on, as `usage_staging`'s rows, until the data is worth sending
/// or none is left; returns the position of the next row to append.
fn copy_rows(data: &mut BinaryRows, rows: &[&(PricedRecord, String)], from: usize) -> usize {
    let mut next = from;
    while let Some((p, provider)) = rows.get(next) {
        let r = &p.record;
        data.row(STAGED_FIELDS);
        data.text(r.request_id.as_deref());
        data.int8(Some(r.ts.timestamp_millis()));
        data.text(Some(provider));
        data.text(Some(&r.model));
        data.int8(Some(r.input_tokens));
        data.int8(Some(r.output_tokens));
        data.int8(Some(r.cached_tokens()));
        data.int8(r.latency_ms);
        data.text(r.user.as_deref());
        data.text(r.feature.as_deref());
        data.text(r.prompt_hash.as_deref());
        data.bool(Some(r.is_batch()));
        data.text(Some(r.status.as_deref().unwrap_or("ok")));
        data.int8(p.cost.and_then(|c| c.to_i64()));
        data.text(p.price_source.as_deref());
        data.int8(Some(r.cache_write_tokens()));
        data.int8(r.reasoning_tokens);
        data.bool(r.stream);
        data.text(r.finish_reason.as_deref());
        data.int8(r.max_tokens);
        data.text(tags_json(r).as_deref());
        data.int8(Some(r.request_count()));
        data.text(r.service_tier.as_deref());
        data.int8(Some(r.cache_write_1h_tokens()));
        data.int8(r.bucket_seconds);
        next += 1;
        if data.full() {
            break;
        }
    }
    next
}

/// Whether a PostgreSQL error may go away by running the transaction again: a deadlock, a
/// serialization failure, or a value out of range (a bucket another transaction grew between
/// this one's check and its write).
fn worth_retrying(e: &StoreError) -> bool {
    let StoreError::Db(e) = e else { return false };
    crate::db::is_retryable(e)
        || matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("22003"))
}

/// A rollup row's key borrowed from the record it comes from; ordered like [`HourKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct BucketRef<'a> {
    hour_ms: i64,
    provider: &'a str,
    model: &'a str,
    user: &'a str,
    feature: &'a str,
}

impl<'a> BucketRef<'a> {
    fn of(p: &'a PricedRecord, provider: &'a str) -> BucketRef<'a> {
        let r = &p.record;
        BucketRef {
            hour_ms: hour_floor(r.ts.timestamp_millis()),
            provider,
            model: &r.model,
            user: r.user.as_deref().unwrap_or(NONE_KEY),
            feature: r.feature.as_deref().unwrap_or(NONE_KEY),
        }
    }
}

impl<'a> From<&'a HourKey<'_>> for BucketRef<'a> {
    fn from(k: &'a HourKey<'_>) -> BucketRef<'a> {
        BucketRef {
            hour_ms: k.hour_ms,
            provider: &k.provider,
            model: &k.model,
            user: &k.user,
            feature: &k.feature,
        }
    }
}

/// The head of the read of a batch's rollup rows; the keys follow as a `VALUES` list.
const READ_SUMS: &str = "SELECT hour_ms, provider, model, user_key, feature_key, row_count, calls,
     input_tokens, output_tokens, cached_input_tokens, cost_nanos, unpriced_calls, unpriced_tokens,
     error_calls FROM usage_hourly WHERE org_id = ";

fn hour_key(r: &impl Cols) -> Result<HourKey<'static>, sqlx::Error> {
    Ok(HourKey {
        hour_ms: r.int("hour_ms")?,
        provider: r.text("provider")?.into(),
        model: r.text("model")?.into(),
        user: r.text("user_key")?.into(),
        feature: r.text("feature_key")?.into(),
    })
}

/// Where stored usage came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A client's records (REST, OTLP, `apogee ingest`).
    Client,
    /// The demo loader's synthetic history: the only rows [`Store::delete_synthetic_usage`]
    /// removes.
    Synthetic,
}

impl Store {
    /// Stores a client's `records` for `org_id` in one transaction, together with the hourly
    /// rollups of the rows actually inserted (a duplicate adds nothing). `records[i].1` is the
    /// provider of `records[i].0` as resolved by the caller (given, or the catalog's). A
    /// record whose hourly sums would overflow is not stored and is named in
    /// [`IngestSummary::rejected`].
    pub async fn ingest_usage(
        &self,
        org_id: &str,
        records: &[(PricedRecord, String)],
    ) -> Result<IngestSummary, StoreError> {
        self.insert_usage(org_id, records, Origin::Client).await
    }

    /// Like [`Store::ingest_usage`], for the demo loader's synthetic history: the rows are
    /// marked synthetic (a mark no client input can set), so a reload replaces them and
    /// nothing else.
    pub async fn ingest_synthetic_usage(
        &self,
        org_id: &str,
        records: &[(PricedRecord, String)],
    ) -> Result<IngestSummary, StoreError> {
        self.insert_usage(org_id, records, Origin::Synthetic).await
    }

    async fn insert_usage(
        &self,
        org_id: &str,
        records: &[(PricedRecord, String)],
        origin: Origin,
    ) -> Result<IngestSummary, StoreError> {
        let batch = BatchBuckets::of(records);
        let mut attempt = 1;
        loop {
            match self.try_ingest(org_id, records, origin, &batch).await {
                Err(e) if attempt < ATTEMPTS && worth_retrying(&e) => attempt += 1,
                other => return other,
            }
        }
    }

    async fn try_ingest(
        &self,
        org_id: &str,
        records: &[(PricedRecord, String)],
        origin: Origin,
        batch: &BatchBuckets<'_>,
    ) -> Result<IngestSummary, StoreError> {
        let synthetic = origin == Origin::Synthetic;
        if let Db::Sqlite { write, .. } = &self.db {
            return sqlite_try_ingest(write, org_id, records, synthetic, batch).await;
        }
        let BatchBuckets {
            rows,
            buckets,
            bucket_of,
        } = batch;
        // Held to the end of the transaction, so no other ingest grows these rows between the
        // check and the write; in key order, as the upserts. (Only PostgreSQL gets here.)
        let lock = " ORDER BY hour_ms, provider, model, user_key, feature_key FOR UPDATE";
        let (delta, rejected) = on_write!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let mut sums = vec![HourSums::default(); buckets.len()];
            for chunk in buckets.chunks(KEYS_PER_READ) {
                let mut qb = QueryBuilder::new(READ_SUMS);
                qb.push_bind(org_id);
                qb.push(" AND (hour_ms, provider, model, user_key, feature_key) IN (");
                qb.push_values(chunk, |mut b, k| {
                    b.push_bind(k.hour_ms)
                        .push_bind(k.provider)
                        .push_bind(k.model)
                        .push_bind(k.user)
                        .push_bind(k.feature);
                });
                qb.push(")");
                qb.push(lock);
                for row in qb.build().fetch_all(&mut *tx).await? {
                    let key = hour_key(&row)?;
                    if let Ok(i) = buckets.binary_search(&BucketRef::from(&key)) {
                        sums[i] = HourSums::read(&row)?;
                    }
                }
            }
            let (admitted, rejected) = admit(records, rows, bucket_of, &mut sums);
            let inserted = tx.insert_raw(org_id, &admitted, synthetic).await?;
            let delta = fold_inserted(&admitted, &inserted)?;
            apply_delta!(&mut tx, &delta, org_id, 1);
            tx.commit().await?;
            (delta, rejected)
        });
        Ok(ingest_summary(records.len(), delta.rows(), rejected))
    }
}

/// What an ingest of `records` stored: `accepted` rows inserted, `rejected` refused.
fn ingest_summary(records: usize, accepted: u64, rejected: Vec<(usize, String)>) -> IngestSummary {
    IngestSummary {
        accepted,
        duplicates: (records - rejected.len()) as u64 - accepted,
        rejected,
    }
}

/// Records not stored, by position in the batch, with the reason.
type Refused = Vec<(usize, String)>;

/// The records of a batch to insert, and those refused: each record in order against its
/// bucket's `sums` (grown as it goes) as it would stand with the records before it
/// (duplicates counted too: they are known only once inserted). A request id repeated in the
/// batch keeps its first record (as the database would); the others are duplicates and are
/// not sent.
fn admit<'r>(
    records: &'r [(PricedRecord, String)],
    rows: &[(BucketRef<'_>, Option<RowSums>)],
    bucket_of: &[usize],
    sums: &mut [HourSums],
) -> (Vec<&'r (PricedRecord, String)>, Refused) {
    let mut rejected = Vec::new();
    let mut admitted = Vec::with_capacity(records.len());
    for (position, (_, row)) in rows.iter().enumerate() {
        let bucket = &mut sums[bucket_of[position]];
        match row.as_ref().and_then(|r| bucket.add(r)) {
            Some(grown) => {
                *bucket = grown;
                admitted.push(&records[position]);
            }
            None => rejected.push((position, BUCKET_FULL.to_string())),
        }
    }
    let mut seen = HashSet::with_capacity(admitted.len());
    admitted.retain(|(p, _)| {
        p.record
            .request_id
            .as_deref()
            .is_none_or(|id| seen.insert(id))
    });
    (admitted, rejected)
}

/// The rollups and summaries of the `admitted` records that were `inserted`.
fn fold_inserted<'r>(
    admitted: &[&'r (PricedRecord, String)],
    inserted: &[bool],
) -> Result<RollupDelta<'r>, sqlx::Error> {
    let mut delta = RollupDelta::for_ingest();
    for ((p, provider), inserted) in admitted.iter().copied().zip(inserted) {
        if *inserted {
            delta.add(&raw_row(p, provider))?;
        }
    }
    Ok(delta)
}

/// A batch's rollup buckets, borrowed from its records (a batch may touch as many as it has
/// records).
struct BatchBuckets<'a> {
    /// Each record's bucket and what it adds to it.
    rows: Vec<(BucketRef<'a>, Option<RowSums>)>,
    /// The distinct buckets, sorted: the order rollup rows are read, locked and written in.
    buckets: Vec<BucketRef<'a>>,
    /// Each record's place in `buckets`.
    bucket_of: Vec<usize>,
}

impl<'a> BatchBuckets<'a> {
    fn of(records: &'a [(PricedRecord, String)]) -> BatchBuckets<'a> {
        let rows: Vec<(BucketRef<'_>, Option<RowSums>)> = records
            .iter()
            .map(|(p, provider)| (BucketRef::of(p, provider), row_sums(p)))
            .collect();
        let mut buckets: Vec<BucketRef<'_>> = rows.iter().map(|(b, _)| *b).collect();
        buckets.sort_unstable();
        buckets.dedup();
        let bucket_of: Vec<usize> = rows
            .iter()
            .map(|(b, _)| buckets.binary_search(b).unwrap_or_default())
            .collect();
        BatchBuckets {
            rows,
            buckets,
            bucket_of,
        }
    }
}

/// SQLite's ingest transaction: between sqlx's `BEGIN` and `COMMIT`, everything on the writer
/// connection's own handle ([`on_sqlite_handle`], one hand-off for the batch) — the batch's
/// rollup rows read, the records admitted, the raw rows inserted, the rollups, summaries,
/// data version and prompt summaries written — each by a prepared single-row statement. What
/// it stores is what the backend-neutral path (`apply_delta!`) stores.
async fn sqlite_try_ingest(
    pool: &sqlx::SqlitePool,
    org_id: &str,
    records: &[(PricedRecord, String)],
    synthetic: bool,
    batch: &BatchBuckets<'_>,
) -> Result<IngestSummary, StoreError> {
    let mut tx = pool.begin().await?;
    let summary = sqlite_ingest_in(&mut tx, org_id, records, synthetic, batch).await?;
    tx.commit().await?;
    Ok(summary)
}

/// [`Store::ingest_usage`]'s work on SQLite, inside the transaction open on `tx`.
async fn sqlite_ingest_in(
    tx: &mut sqlx::SqliteConnection,
    org_id: &str,
    records: &[(PricedRecord, String)],
    synthetic: bool,
    batch: &BatchBuckets<'_>,
) -> Result<IngestSummary, StoreError> {
    let BatchBuckets {
        rows,
        buckets,
        bucket_of,
    } = batch;
    let (accepted, rejected) = on_sqlite_handle(tx, |conn| {
        let mut sums = sqlite_read_sums(conn, org_id, buckets)?;
        let (admitted, rejected) = admit(records, rows, bucket_of, &mut sums);
        // The rows are folded on another core while SQLite inserts them, as if all were new
        // (as they are in a first ingest); when some were duplicates, the rows inserted are
        // folded again here.
        let fold_all = || fold_inserted(&admitted, &vec![true; admitted.len()]);
        let (inserted, all_new) = std::thread::scope(|scope| {
            // Without a thread to spare (the system refused one), the fold runs here after.
            let fold = std::thread::Builder::new().spawn_scoped(scope, fold_all);
            let inserted = sqlite_insert_rows(conn, org_id, &admitted, synthetic);
            let all_new = match fold {
                Ok(fold) => fold
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => fold_all(),
            };
            (inserted, all_new)
        });
        let inserted = inserted.map_err(sqlite_error)?;
        let delta = if inserted.iter().all(|i| *i) {
            all_new?
        } else {
            fold_inserted(&admitted, &inserted)?
        };
        if delta.rows() > 0 {
            crate::rollup::sqlite_add_delta(conn, &delta, org_id).map_err(sqlite_error)?;
            // The org's usage changed: cached reads of it are out of date (`usage_cache`).
            conn.execute(crate::usage_cache::BUMP_VERSION, [org_id])
                .map_err(sqlite_error)?;
            crate::prompt_repeats::sqlite_add_prompts(conn, delta.summaries(), org_id)?;
        }
        Ok::<_, sqlx::Error>((delta.rows(), rejected))
    })
    .await?;
    Ok(ingest_summary(records.len(), accepted, rejected))
}

/// A load of many batches of one org's records (`apogee ingest` of a file), stored as
/// [`Store::ingest_usage`] stores each, in fewer transactions: on SQLite the batches added
/// share one transaction until [`UsageLoad::commit`]. A commit writes every page the
/// transaction dirtied to the WAL and checkpoints it, and a batch's inserts at random places
/// (the request-id index, the prompt states) dirty most pages of those b-trees, so five
/// batches of 20,000 in one transaction cost far less than five transactions, while memory
/// holds one batch. The writer is held from the first batch to the commit. On PostgreSQL
/// each batch is its own transaction (the backend's index work is the cost there, not the
/// commit), retried as [`Store::ingest_usage`]'s. What is not committed is rolled back when
/// the load is dropped.
pub struct UsageLoad<'s> {
    store: &'s Store,
    org_id: String,
    open: Option<sqlx::Transaction<'static, sqlx::Sqlite>>,
}

impl Store {
    /// Starts a load of `org_id`'s records; see [`UsageLoad`].
    pub fn usage_load(&self, org_id: &str) -> UsageLoad<'_> {
        UsageLoad {
            store: self,
            org_id: org_id.to_string(),
            open: None,
        }
    }
}

impl UsageLoad<'_> {
    /// Stores `records` as [`Store::ingest_usage`] would; on SQLite inside the load's open
    /// transaction (begun by the first batch after a commit), so they are durable only once
    /// [`UsageLoad::commit`] returns. On SQLite an error rolls back every batch added since
    /// the last commit, not only this one: none of them is stored.
    pub async fn add(
        &mut self,
        records: &[(PricedRecord, String)],
    ) -> Result<IngestSummary, StoreError> {
        let Db::Sqlite { write, .. } = &self.store.db else {
            return self.store.ingest_usage(&self.org_id, records).await;
        };
        let tx = match &mut self.open {
            Some(tx) => tx,
            None => self.open.insert(write.begin().await?),
        };
        // A client's records: never synthetic.
        let batch = BatchBuckets::of(records);
        let added = sqlite_ingest_in(tx, &self.org_id, records, false, &batch).await;
        if added.is_err() {
            // Part of the batch may be in the transaction: nothing of it may be committed.
            self.open = None;
        }
        added
    }

    /// Commits the batches added since the last commit (nothing to do on PostgreSQL, where
    /// each was committed as it was added).
    pub async fn commit(&mut self) -> Result<(), StoreError> {
        if let Some(tx) = self.open.take() {
            tx.commit().await?;
        }
        Ok(())
    }
}

/// The stored sums of the rollup rows `buckets` (zero for those not stored yet), read by one
/// prepared statement per row through the writer's own handle.
fn sqlite_read_sums(
    conn: &rusqlite::Connection,
    org_id: &str,
    buckets: &[BucketRef<'_>],
) -> Result<Vec<HourSums>, sqlx::Error> {
    let mut read = conn
        .prepare(&format!(
            "{READ_SUMS} ?1 AND hour_ms = ?2 AND provider = ?3 AND model = ?4 AND user_key = ?5
             AND feature_key = ?6"
        ))
        .map_err(sqlite_error)?;
    let mut sums = Vec::with_capacity(buckets.len());
    for k in buckets {
        let mut rows = read
            .query(rusqlite::params![
                org_id, k.hour_ms, k.provider, k.model, k.user, k.feature
            ])
            .map_err(sqlite_error)?;
        sums.push(match rows.next().map_err(sqlite_error)? {
            Some(row) => HourSums::read(row)?,
            None => HourSums::default(),
        });
    }
    Ok(sums)
}

/// Which of an org's records to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageSelection {
    /// Records with these `request_id`s.
    Ids(Vec<String>),
    /// Records whose `request_id` starts with this.
    Prefix(String),
    /// Records with `from_ms <= ts < to_ms` (Unix milliseconds).
    Between { from_ms: i64, to_ms: i64 },
    /// The demo loader's synthetic records ([`Store::ingest_synthetic_usage`]); no client
    /// input can mark a record so.
    Synthetic,
}

/// `request_id`s deleted per statement.
const IDS_PER_DELETE: usize = 1_000;

impl Store {
    /// Deletes the org's synthetic records (those stored by [`Store::ingest_synthetic_usage`],
    /// to refresh the demo history), and their share of the rollups, in one transaction;
    /// returns how many were removed. A client's records are never touched, whatever their
    /// request ids.
    pub async fn delete_synthetic_usage(&self, org_id: &str) -> Result<u64, StoreError> {
        self.delete_usage(org_id, &UsageSelection::Synthetic).await
    }

    /// Deletes the org's records in `selection`, and their share of the rollups, in one
    /// transaction; returns how many were removed. The deleted rows are folded into the
    /// rollup change as they stream back, so memory follows the hours touched, not the rows.
    pub async fn delete_usage(
        &self,
        org_id: &str,
        selection: &UsageSelection,
    ) -> Result<u64, StoreError> {
        let returning = format!(" RETURNING {RAW_COLUMNS}");
        let delta = on_write!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let mut delta = RollupDelta::default();
            match selection {
                UsageSelection::Ids(ids) => {
                    for chunk in ids.chunks(IDS_PER_DELETE) {
                        let mut qb = QueryBuilder::new("DELETE FROM usage_records WHERE org_id = ");
                        qb.push_bind(org_id);
                        qb.push(" AND request_id IN (");
                        let mut list = qb.separated(", ");
                        for id in chunk {
                            list.push_bind(id.as_str());
                        }
                        qb.push(")");
                        qb.push(&returning);
                        let mut rows = qb.build().fetch(&mut *tx);
                        while let Some(row) = rows.next().await {
                            delta.add_row(&row?)?;
                        }
                    }
                }
                UsageSelection::Prefix(prefix) => {
                    let pattern = format!(
                        "{}%",
                        prefix
                            .replace('\\', "\\\\")
                            .replace('%', "\\%")
                            .replace('_', "\\_")
                    );
                    let sql = format!(
                        "DELETE FROM usage_records WHERE org_id = $1 AND request_id LIKE $2 ESCAPE '\\'{returning}"
                    );
                    let mut rows = sqlx::query(&sql).bind(org_id).bind(pattern).fetch(&mut *tx);
                    while let Some(row) = rows.next().await {
                        delta.add_row(&row?)?;
                    }
                }
                UsageSelection::Synthetic => {
                    let sql = format!(
                        "DELETE FROM usage_records WHERE org_id = $1 AND synthetic{returning}"
                    );
                    let mut rows = sqlx::query(&sql).bind(org_id).fetch(&mut *tx);
                    while let Some(row) = rows.next().await {
                        delta.add_row(&row?)?;
                    }
                }
                UsageSelection::Between { from_ms, to_ms } => {
                    let sql = format!(
                        "DELETE FROM usage_records WHERE org_id = $1 AND ts_ms >= $2 AND ts_ms < $3{returning}"
                    );
                    let mut rows = sqlx::query(&sql)
                        .bind(org_id)
                        .bind(from_ms)
                        .bind(to_ms)
                        .fetch(&mut *tx);
                    while let Some(row) = rows.next().await {
                        delta.add_row(&row?)?;
                    }
                }
            }
            apply_delta!(&mut tx, &delta, org_id, -1);
            tx.commit().await?;
            delta
        });
        Ok(delta.rows())
    }
}

#[cfg(test)]
mod tests {
    use apogee_analytics::{PriceCatalog, PricedRecord, UsageRecord};
    use chrono::{TimeZone, Utc};

    use crate::db::on_read;

    fn record(id: Option<&str>, input: i64) -> (PricedRecord, String) {
        let catalog = PriceCatalog::builtin().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap();
        let mut u = UsageRecord::new(t0, "gpt-4o".into(), input, 10);
        u.request_id = id.map(String::from);
        let p = PricedRecord::price(u, &catalog);
        let provider = p.provider(&catalog);
        (p, provider)
    }

    /// Every column of the stored rows, as text, in insertion order within a timestamp.
    async fn stored_rows(db: &crate::db::Db) -> Vec<String> {
        use crate::db::Cols;
        let sql = "SELECT org_id, request_id, ts_ms, provider, model, input_tokens,
                output_tokens, cached_input_tokens, latency_ms, user_name, feature, prompt_hash,
                CAST(CASE WHEN batch THEN 1 ELSE 0 END AS BIGINT) AS batch_flag, status,
                cost_nanos, price_source, cache_creation_input_tokens, reasoning_tokens,
                CAST(CASE WHEN stream IS NULL THEN NULL WHEN stream THEN 1 ELSE 0 END AS BIGINT)
                  AS stream_flag, finish_reason, max_tokens, tags, request_count, service_tier,
                cache_creation_1h_input_tokens, bucket_seconds,
                CAST(CASE WHEN synthetic THEN 1 ELSE 0 END AS BIGINT) AS synthetic_flag
             FROM usage_records ORDER BY ts_ms, input_tokens";
        let texts = [
            "org_id",
            "request_id",
            "provider",
            "model",
            "user_name",
            "feature",
            "prompt_hash",
            "status",
            "price_source",
            "finish_reason",
            "tags",
            "service_tier",
        ];
        let ints = [
            "ts_ms",
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "latency_ms",
            "batch_flag",
            "cost_nanos",
            "cache_creation_input_tokens",
            "reasoning_tokens",
            "stream_flag",
            "max_tokens",
            "request_count",
            "cache_creation_1h_input_tokens",
            "bucket_seconds",
            "synthetic_flag",
        ];
        on_read!(db, pool => {
            sqlx::query(sql)
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    let t: Vec<_> = texts.iter().map(|c| r.opt_text(c).unwrap()).collect();
                    let i: Vec<_> = ints.iter().map(|c| r.opt_int(c).unwrap()).collect();
                    format!("{t:?} {i:?}")
                })
                .collect()
        })
    }

    #[tokio::test]
    async fn every_column_is_stored_as_given_on_both_backends() {
        let catalog = PriceCatalog::builtin().unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap();
        // Text a text-format copy would have to escape (backslashes, `\N`, quotes,
        // separators), text beyond ASCII, empty text, and every optional column set and not.
        let odd = [
            "back\\slash \\N",
            "quote\"s, comma; semi|pipe",
            "ünïcødé ✓ 日本語 🚀",
            "",
        ];
        let mut records = Vec::new();
        for (i, text) in (0i64..).zip(odd.iter().cycle().take(12)) {
            let mut u = UsageRecord::new(
                t0,
                ["gpt-4o", "no-such-model"][i as usize % 2].into(),
                1_000 + i,
                i,
            );
            u.request_id = (i % 5 != 4).then(|| format!("{text}#{i}"));
            u.user = (i % 2 == 0).then(|| text.to_string());
            u.feature = (i % 3 != 0).then(|| format!("f {text}"));
            u.prompt_hash = (i % 2 == 1).then(|| format!("h{}", i % 3));
            u.latency_ms = (i % 2 == 0).then_some(i * 7);
            u.cached_input_tokens = (i % 3 == 1).then_some(i);
            u.cache_creation_input_tokens = (i % 4 == 1).then_some(2 * i);
            u.cache_creation_1h_input_tokens = (i % 4 == 2).then_some(i);
            u.reasoning_tokens = (i % 3 == 2).then_some(-i);
            u.batch = (i % 4 != 3).then_some(i % 2 == 0);
            u.stream = (i % 3 != 0).then_some(i % 2 == 1);
            u.status = (i % 4 == 0).then(|| "error".to_string());
            u.cost_usd = (i % 5 == 0).then_some(0.125);
            u.finish_reason = (i % 2 == 1).then(|| text.to_string());
            u.max_tokens = (i % 3 == 0).then_some(i64::MAX - i);
            u.request_count = (i % 6 == 5).then_some(3);
            u.bucket_seconds = (i % 6 == 5).then_some(60);
            u.service_tier = (i % 4 == 2).then(|| "priority".to_string());
            u.tags = (i % 3 != 2).then(|| {
                [
                    ("team".to_string(), text.to_string()),
                    (format!("k{i}"), "v\"\\".into()),
                ]
                .into_iter()
                .collect()
            });
            let p = PricedRecord::price(u, &catalog);
            let provider = p.provider(&catalog);
            records.push((p, provider));
        }
        let mut seen = Vec::new();
        for t in crate::test_support::stores().await {
            // Twice, in two batches: the second all duplicates.
            t.store.ingest_usage("acme", &records[..5]).await.unwrap();
            t.store.ingest_usage("acme", &records).await.unwrap();
            let s = t.store.ingest_usage("acme", &records).await.unwrap();
            assert_eq!((s.accepted, s.duplicates), (2, 10), "{:?}", t.backend);
            seen.push((t.backend, stored_rows(&t.store.db).await));
            t.store.close().await;
        }
        let (_, sqlite) = &seen[0];
        assert_eq!(sqlite.len(), 5 + 8 + 2);
        assert!(
            sqlite[0].contains("\"back\\\\slash \\\\N#0\""),
            "{}",
            sqlite[0]
        );
        for (backend, rows) in &seen[1..] {
            assert_eq!(rows, sqlite, "{backend:?}");
        }
    }

    #[tokio::test]
    async fn a_request_id_repeated_in_a_batch_stores_its_first_record_once() {
        for t in crate::test_support::stores().await {
            let first = [record(Some("a"), 100), record(None, 7)];
            let s = t.store.ingest_usage("acme", &first).await.unwrap();
            assert_eq!((s.accepted, s.duplicates), (2, 0));
            // `a` again (stored before), `b` twice in the batch, and two without an id.
            let batch = [
                record(Some("a"), 1_000),
                record(Some("b"), 20),
                record(None, 7),
                record(Some("b"), 30_000),
                record(None, 7),
            ];
            let s = t.store.ingest_usage("acme", &batch).await.unwrap();
            assert_eq!((s.accepted, s.duplicates), (3, 2), "{:?}", t.backend);
            let (raw, rolled): (i64, i64) = on_read!(&t.store.db, pool => (
                sqlx::query_scalar("SELECT CAST(SUM(input_tokens) AS BIGINT) FROM usage_records")
                    .fetch_one(pool)
                    .await
                    .unwrap(),
                sqlx::query_scalar("SELECT CAST(SUM(input_tokens) AS BIGINT) FROM usage_hourly")
                    .fetch_one(pool)
                    .await
                    .unwrap(),
            ));
            // 100 + 7 stored first; then `b`'s first record (20) and the two without an id.
            assert_eq!(
                (raw, rolled),
                (100 + 7 + 20 + 7 + 7, raw),
                "{:?}",
                t.backend
            );
            t.store.close().await;
        }
    }
}
