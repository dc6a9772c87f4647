//! Ingest shared by every path (`POST /api/usage`, `POST /v1/traces`, `apogee ingest`):
//! parsed records are priced with the server's catalog and their provider resolved, ready for
//! the store. Parsing lives in `apogee_analytics::formats` (pure) and [`otlp`] (OTLP/HTTP).
//!
//! Bounds ([`IngestGate`]): a user has at most `max_ingests_per_user` requests in flight
//! (429 beyond), each body read only after its caller is authenticated; the node parses and
//! stores at most `max_concurrent_ingests` bodies at once (the rest wait their turn, bodies
//! read), on blocking threads so a large body never holds up the async workers.

pub mod file;
pub mod otlp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use apogee_analytics::formats::{self, Format, FormatError, Limits, ParsedBatch, Rejection};
use apogee_analytics::{PriceCatalog, PricedRecord, UsageRecord};
use apogee_store::UserKey;

/// The records that passed, priced, with their resolved provider and source index, and the
/// rejections (the first [`Limits::max_rejections`], all of them counted).
#[derive(Default)]
pub struct Parsed {
    pub accepted: Vec<(PricedRecord, String)>,
    /// `indexes[i]` is the source index of `accepted[i]`.
    pub indexes: Vec<usize>,
    pub rejected: Vec<Rejection>,
    pub rejected_count: usize,
    /// How many rejections to report.
    max_rejections: usize,
}

impl Parsed {
    /// Adds a rejection found after parsing (a cost out of range, a record the store could not
    /// add), keeping the reported ones in index order.
    pub fn reject(&mut self, index: usize, error: String) {
        self.rejected_count += 1;
        let at = self.rejected.partition_point(|r| r.index < index);
        self.rejected.insert(at, Rejection { index, error });
        self.rejected.truncate(self.max_rejections);
    }

    /// Takes the accepted records at `positions` (ascending) out, as rejections with `error`.
    pub fn reject_accepted(&mut self, rejected: &[(usize, String)]) {
        if rejected.is_empty() {
            return;
        }
        let mut gone = rejected.iter().peekable();
        let mut kept = Vec::with_capacity(self.accepted.len());
        let mut kept_indexes = Vec::with_capacity(self.indexes.len());
        let accepted = std::mem::take(&mut self.accepted);
        let indexes = std::mem::take(&mut self.indexes);
        for (position, (record, index)) in accepted.into_iter().zip(indexes).enumerate() {
            match gone.next_if(|(p, _)| *p == position) {
                Some((_, error)) => self.reject(index, error.clone()),
                None => {
                    kept.push(record);
                    kept_indexes.push(index);
                }
            }
        }
        self.accepted = kept;
        self.indexes = kept_indexes;
    }
}

/// Prices a record and resolves its provider (given, else the catalog's, else `unknown`).
pub fn price(record: UsageRecord, catalog: &PriceCatalog) -> (PricedRecord, String) {
    let priced = PricedRecord::price(record, catalog);
    let provider = priced.provider(catalog);
    (priced, provider)
}

/// Prices every record of a parsed batch; a record whose cost is out of range is rejected.
/// `limits` is what the batch was parsed with (how many rejections to report).
pub fn price_batch(batch: ParsedBatch, catalog: &PriceCatalog, limits: Limits) -> Parsed {
    let mut parsed = Parsed {
        accepted: Vec::with_capacity(batch.records.len()),
        indexes: Vec::with_capacity(batch.records.len()),
        rejected: batch.rejected,
        rejected_count: batch.rejected_count,
        max_rejections: limits.max_rejections,
    };
    for (record, index) in batch.records.into_iter().zip(batch.indexes) {
        let (priced, provider) = price(record, catalog);
        match priced.check_cost() {
            Ok(()) => {
                parsed.accepted.push((priced, provider));
                parsed.indexes.push(index);
            }
            Err(e) => parsed.reject(index, e.to_string()),
        }
    }
    parsed
}

/// Parses and prices a body or file of `format`.
pub fn parse_body(
    format: Format,
    body: &[u8],
    catalog: &PriceCatalog,
    limits: Limits,
) -> Result<Parsed, FormatError> {
    Ok(price_batch(
        formats::parse_with(format, body, limits)?,
        catalog,
        limits,
    ))
}

/// The format of a `POST /api/usage` body: `?format=` when given, else `text/csv` is CSV, else
/// §8 JSON/NDJSON.
pub fn body_format(query: Option<&str>, content_type: Option<&str>) -> Result<Format, String> {
    if let Some(name) = query {
        return Format::parse_name(name).ok_or_else(|| {
            format!("unknown format `{name}`: use ndjson, json, csv, litellm or openai")
        });
    }
    let csv = content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("text/csv"));
    Ok(if csv { Format::Csv } else { Format::Usage })
}

/// Who may ingest now: each user's requests in flight, and the node's parsing turns.
pub struct IngestGate {
    per_user: usize,
    in_flight: Arc<Mutex<HashMap<UserKey, usize>>>,
    turns: Arc<tokio::sync::Semaphore>,
}

/// One of a user's ingest requests in flight; gives its place back when dropped.
pub struct InFlight {
    in_flight: Arc<Mutex<HashMap<UserKey, usize>>>,
    user: UserKey,
}

fn lock(m: &Mutex<HashMap<UserKey, usize>>) -> MutexGuard<'_, HashMap<UserKey, usize>> {
    // Plain counters: usable whatever panicked while holding the lock.
    crate::sync::lock(m)
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = lock(&self.in_flight);
        if let Some(n) = map.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

impl IngestGate {
    pub fn new(per_user: usize, concurrent: usize) -> IngestGate {
        IngestGate {
            per_user,
            in_flight: Arc::default(),
            turns: Arc::new(tokio::sync::Semaphore::new(concurrent.max(1))),
        }
    }

    /// Takes one of `user`'s places; `Err(max)` when all are in use.
    pub fn enter(&self, user: &UserKey) -> Result<InFlight, usize> {
        let mut map = lock(&self.in_flight);
        let n = map.entry(user.clone()).or_default();
        if *n >= self.per_user {
            return Err(self.per_user);
        }
        *n += 1;
        Ok(InFlight {
            in_flight: Arc::clone(&self.in_flight),
            user: user.clone(),
        })
    }

    /// Waits for a parsing turn (first come, first served).
    pub async fn turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        // The semaphore is never closed.
        Arc::clone(&self.turns)
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the ingest semaphore is never closed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_good_records_and_keeps_rejections() {
        let catalog = PriceCatalog::builtin().unwrap();
        let body = b"{\"ts\":\"2026-11-20T08:15:02Z\",\"model\":\"gpt-4o\",\"input_tokens\":10,\"output_tokens\":5}\n\nnot json\n{\"ts\":\"2026-11-20T08:15:02Z\",\"model\":\"mystery\",\"input_tokens\":1,\"output_tokens\":1}\n";
        let p = parse_body(Format::Usage, body, &catalog, Limits::default()).unwrap();
        assert_eq!(p.accepted.len(), 2);
        assert_eq!(p.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [1]);
        assert_eq!(p.accepted[0].1, "openai");
        assert_eq!(
            p.accepted[1].0.cost, None,
            "unknown models are unpriced, not $0"
        );
        assert_eq!(p.accepted[1].1, "unknown");
    }

    #[test]
    fn a_record_priced_beyond_the_limit_is_rejected_with_its_index() {
        let catalog = PriceCatalog::builtin().unwrap();
        // 10^17 tokens in a bucket of 10^9 calls: valid counts, a cost no one pays.
        let body = b"{\"ts\":\"2026-11-20T08:15:02Z\",\"model\":\"gpt-4o\",\"input_tokens\":1,\"output_tokens\":1}\n{\"ts\":\"2026-11-20T08:15:02Z\",\"model\":\"gpt-4o\",\"input_tokens\":100000000000000000,\"output_tokens\":100000000000000000,\"request_count\":1000000000}\n";
        let p = parse_body(Format::Usage, body, &catalog, Limits::default()).unwrap();
        assert_eq!((p.accepted.len(), p.indexes.as_slice()), (1, &[0][..]));
        assert_eq!(p.rejected[0].index, 1);
        assert!(p.rejected[0].error.contains("cost"), "{:?}", p.rejected);
    }

    #[test]
    fn rejections_after_parsing_keep_index_order_and_the_cap() {
        let mut p = Parsed {
            max_rejections: 2,
            ..Parsed::default()
        };
        p.reject(5, "e5".into());
        p.reject(1, "e1".into());
        p.reject(3, "e3".into());
        let idx: Vec<usize> = p.rejected.iter().map(|r| r.index).collect();
        assert_eq!((idx, p.rejected_count), (vec![1, 3], 3));
    }

    #[test]
    fn a_user_has_a_bounded_number_of_ingests_in_flight() {
        let gate = IngestGate::new(2, 4);
        let user = UserKey {
            org_id: "o".into(),
            user_id: "u".into(),
        };
        let a = gate.enter(&user).unwrap();
        let _b = gate.enter(&user).unwrap();
        assert_eq!(gate.enter(&user).err(), Some(2));
        drop(a);
        assert!(gate.enter(&user).is_ok());
    }

    #[test]
    fn body_format_follows_query_then_content_type() {
        assert_eq!(
            body_format(None, Some("text/csv; charset=utf-8")),
            Ok(Format::Csv)
        );
        assert_eq!(
            body_format(None, Some("application/x-ndjson")),
            Ok(Format::Usage)
        );
        assert_eq!(
            body_format(Some("litellm"), Some("text/csv")),
            Ok(Format::Litellm)
        );
        assert!(body_format(Some("xml"), None).is_err());
    }
}
