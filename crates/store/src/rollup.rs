//! The hourly rollups (`usage_hourly`, migration 4, and per tag `usage_hourly_tags`, migration
//! 6): folding raw rows into per-hour sums and applying them in the transaction that inserted
//! or deleted those rows, so the rollups always equal the raw rows they summarise. The
//! recommender summaries (`summaries.rs`, migration 17) ride along in the same delta.
//!
//! A rollup row's sums are 64-bit (BIGINT) and every addition to them is checked: ingest reads
//! the sums of the rows a batch adds to and refuses, with its index, a record that would take
//! one past the limit ([`HourSums::add`]), so a bucket never overflows and later batches keep
//! landing. A tag rollup row sums a subset of one hourly row's records, so it stays within the
//! same limit. Sums across buckets are read wide (`db::Sums`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use foldhash::HashMap;

use crate::db::Cols;

pub(crate) const HOUR_MS: i64 = 3_600_000;

/// The raw columns the rollups and the recommender summaries (`summaries.rs`) need, for
/// `RETURNING` after an insert or a delete.
pub(crate) const RAW_COLUMNS: &str = "ts_ms, provider, model, user_name, feature, input_tokens, \
     output_tokens, cached_input_tokens, cost_nanos, status, request_count, tags, \
     CAST(CASE WHEN batch THEN 1 ELSE 0 END AS BIGINT) AS batch_flag, price_source, bucket_seconds, \
     prompt_hash";

/// Rollup rows per multi-row upsert: 17 binds each stays far below SQLite's variable limit.
pub(crate) const ROWS_PER_UPSERT: usize = 1_000;

/// The head of the rollup upsert; [`apply_delta`] pushes the values.
pub(crate) const UPSERT_HEAD: &str = "INSERT INTO usage_hourly (org_id, hour_ms, provider, model,
     user_key, feature_key, row_count, calls, input_tokens, output_tokens, cached_input_tokens,
     cost_nanos, unpriced_calls, unpriced_tokens, error_calls) ";

/// Adds to an existing rollup row. Qualified with the table name: PostgreSQL finds a bare
/// column name ambiguous next to `excluded`.
pub(crate) const UPSERT_TAIL: &str =
    " ON CONFLICT (org_id, hour_ms, provider, model, user_key, feature_key)
    DO UPDATE SET
      row_count = usage_hourly.row_count + excluded.row_count,
      calls = usage_hourly.calls + excluded.calls,
      input_tokens = usage_hourly.input_tokens + excluded.input_tokens,
      output_tokens = usage_hourly.output_tokens + excluded.output_tokens,
      cached_input_tokens = usage_hourly.cached_input_tokens + excluded.cached_input_tokens,
      cost_nanos = usage_hourly.cost_nanos + excluded.cost_nanos,
      unpriced_calls = usage_hourly.unpriced_calls + excluded.unpriced_calls,
      unpriced_tokens = usage_hourly.unpriced_tokens + excluded.unpriced_tokens,
      error_calls = usage_hourly.error_calls + excluded.error_calls";

/// The head of the tag rollup upsert; [`apply_delta`] pushes the values.
pub(crate) const TAG_UPSERT_HEAD: &str = "INSERT INTO usage_hourly_tags (org_id, tag_key, hour_ms,
     tag_value, provider, model, user_key, feature_key, row_count, calls, input_tokens,
     output_tokens, cached_input_tokens, cost_nanos, unpriced_calls, unpriced_tokens, error_calls) ";

pub(crate) const TAG_UPSERT_TAIL: &str = " ON CONFLICT (org_id, tag_key, hour_ms, tag_value,
      provider, model, user_key, feature_key)
    DO UPDATE SET
      row_count = usage_hourly_tags.row_count + excluded.row_count,
      calls = usage_hourly_tags.calls + excluded.calls,
      input_tokens = usage_hourly_tags.input_tokens + excluded.input_tokens,
      output_tokens = usage_hourly_tags.output_tokens + excluded.output_tokens,
      cached_input_tokens = usage_hourly_tags.cached_input_tokens + excluded.cached_input_tokens,
      cost_nanos = usage_hourly_tags.cost_nanos + excluded.cost_nanos,
      unpriced_calls = usage_hourly_tags.unpriced_calls + excluded.unpriced_calls,
      unpriced_tokens = usage_hourly_tags.unpriced_tokens + excluded.unpriced_tokens,
      error_calls = usage_hourly_tags.error_calls + excluded.error_calls";

/// Key of records without a user or a feature; the same key every breakdown reports.
pub(crate) const NONE_KEY: &str = apogee_analytics::NONE_KEY;

/// The start of the UTC hour holding `ts_ms`.
pub(crate) fn hour_floor(ts_ms: i64) -> i64 {
    ts_ms - ts_ms.rem_euclid(HOUR_MS)
}

/// A rollup row's key. Its text is borrowed from the records an ingest folds (no allocation
/// per record) or owned when folded from rows read back (a delete's `RETURNING`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct HourKey<'a> {
    pub(crate) hour_ms: i64,
    pub(crate) provider: Cow<'a, str>,
    pub(crate) model: Cow<'a, str>,
    pub(crate) user: Cow<'a, str>,
    pub(crate) feature: Cow<'a, str>,
}

/// A tag rollup row's key: one tag of the records of an [`HourKey`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TagHourKey<'a> {
    pub(crate) tag_key: Cow<'a, str>,
    pub(crate) hour: HourKey<'a>,
    pub(crate) tag_value: Cow<'a, str>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HourSums {
    pub(crate) rows: i64,
    pub(crate) calls: i64,
    pub(crate) input_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) cached_input_tokens: i64,
    pub(crate) cost_nanos: i64,
    pub(crate) unpriced_calls: i64,
    pub(crate) unpriced_tokens: i64,
    pub(crate) error_calls: i64,
}

/// One raw row's contribution to its hour's sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowSums {
    pub(crate) calls: i64,
    pub(crate) input_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) cached_input_tokens: i64,
    /// `None` when the row is unpriced.
    pub(crate) cost_nanos: Option<i64>,
    pub(crate) error: bool,
}

impl HourSums {
    /// These sums with one more row, or `None` when any of them would overflow.
    pub(crate) fn add(&self, r: &RowSums) -> Option<HourSums> {
        let (cost, unpriced_calls, unpriced_tokens) = match r.cost_nanos {
            Some(c) => (c, 0, 0),
            None => (0, r.calls, r.input_tokens.checked_add(r.output_tokens)?),
        };
        Some(HourSums {
            rows: self.rows.checked_add(1)?,
            calls: self.calls.checked_add(r.calls)?,
            input_tokens: self.input_tokens.checked_add(r.input_tokens)?,
            output_tokens: self.output_tokens.checked_add(r.output_tokens)?,
            cached_input_tokens: self
                .cached_input_tokens
                .checked_add(r.cached_input_tokens)?,
            cost_nanos: self.cost_nanos.checked_add(cost)?,
            unpriced_calls: self.unpriced_calls.checked_add(unpriced_calls)?,
            unpriced_tokens: self.unpriced_tokens.checked_add(unpriced_tokens)?,
            error_calls: self
                .error_calls
                .checked_add(if r.error { r.calls } else { 0 })?,
        })
    }

    /// A stored rollup row's sums.
    pub(crate) fn read(r: &impl Cols) -> Result<HourSums, sqlx::Error> {
        Ok(HourSums {
            rows: r.int("row_count")?,
            calls: r.int("calls")?,
            input_tokens: r.int("input_tokens")?,
            output_tokens: r.int("output_tokens")?,
            cached_input_tokens: r.int("cached_input_tokens")?,
            cost_nanos: r.int("cost_nanos")?,
            unpriced_calls: r.int("unpriced_calls")?,
            unpriced_tokens: r.int("unpriced_tokens")?,
            error_calls: r.int("error_calls")?,
        })
    }
}

/// How a fold keeps a row's text in its keys: borrowed from rows that outlive the delta (an
/// ingest's records), or copied from rows that do not (a delete's, read one at a time).
pub(crate) trait KeyText<'r, 'a> {
    fn key(&self, text: &'r str) -> Cow<'a, str>;
}

/// Keys borrow the rows' text.
pub(crate) struct Borrowed;

impl<'a> KeyText<'a, 'a> for Borrowed {
    fn key(&self, text: &'a str) -> Cow<'a, str> {
        Cow::Borrowed(text)
    }
}

/// Keys own a copy of the rows' text.
pub(crate) struct Owned;

impl<'r, 'a> KeyText<'r, 'a> for Owned {
    fn key(&self, text: &'r str) -> Cow<'a, str> {
        Cow::Owned(text.to_owned())
    }
}

/// Sums of raw rows by hour and dimensions, to add to (or subtract from) the rollups. `'a` is
/// the life of the rows an ingest folds (their text is borrowed, not copied, into the keys).
#[derive(Debug, Default)]
pub(crate) struct RollupDelta<'a> {
    sums: HashMap<HourKey<'a>, HourSums>,
    tag_sums: HashMap<TagHourKey<'a>, HourSums>,
    summaries: crate::summaries::SummaryDelta<'a>,
    rows: u64,
}

impl<'a> RollupDelta<'a> {
    /// A delta for an ingest (see `SummaryDelta::for_ingest`).
    pub(crate) fn for_ingest() -> RollupDelta<'a> {
        RollupDelta {
            summaries: crate::summaries::SummaryDelta::for_ingest(),
            ..RollupDelta::default()
        }
    }

    /// Raw rows folded in so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// The sums by hour and dimensions, in key order: upserts then lock rollup rows in the
    /// same order in every transaction, so concurrent ingests (PostgreSQL) cannot deadlock.
    pub(crate) fn entries(&self) -> Vec<(&HourKey<'a>, &HourSums)> {
        let mut entries: Vec<_> = self.sums.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
    }

    /// The recommender summaries of the same rows.
    pub(crate) fn summaries(&self) -> &crate::summaries::SummaryDelta<'a> {
        &self.summaries
    }

    /// The sums by tag, hour and dimensions, in key order (for the same reason).
    pub(crate) fn tag_entries(&self) -> Vec<(&TagHourKey<'a>, &HourSums)> {
        let mut entries: Vec<_> = self.tag_sums.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
    }

    /// Folds in one raw row read back through [`RAW_COLUMNS`] (a delete's `RETURNING`).
    pub(crate) fn add_row(&mut self, r: &impl Cols) -> Result<(), sqlx::Error> {
        let stored = StoredRow::read(r)?;
        self.fold(&stored.as_raw(), &Owned)
    }

    /// Folds in one raw row that outlives the delta (an ingest's record), its text borrowed.
    pub(crate) fn add(&mut self, r: &RawRow<'a>) -> Result<(), sqlx::Error> {
        self.fold(r, &Borrowed)
    }

    /// Folds in one raw row. The row's sums were checked against its bucket before it was
    /// inserted, and a delete takes away part of what a bucket holds, so an overflow here
    /// means the data is inconsistent: an error, not a wrap.
    fn fold<'r>(&mut self, r: &RawRow<'r>, text: &impl KeyText<'r, 'a>) -> Result<(), sqlx::Error> {
        let key = HourKey {
            hour_ms: hour_floor(r.ts_ms),
            provider: text.key(r.provider),
            model: text.key(r.model),
            user: text.key(r.user.unwrap_or(NONE_KEY)),
            feature: text.key(r.feature.unwrap_or(NONE_KEY)),
        };
        let row = RowSums {
            calls: r.request_count,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cached_input_tokens: r.cached_input_tokens,
            cost_nanos: r.cost_nanos,
            error: r.status != "ok",
        };
        let overflow = || sqlx::Error::Decode("hourly usage sums out of the 64-bit range".into());
        if let Some(tags) = r.tags {
            for (tag_key, tag_value) in tags {
                let k = TagHourKey {
                    tag_key: text.key(tag_key),
                    hour: key.clone(),
                    tag_value: text.key(tag_value),
                };
                let sums = self.tag_sums.entry(k).or_default();
                *sums = sums.add(&row).ok_or_else(overflow)?;
            }
        }
        let sums = self.sums.entry(key).or_default();
        *sums = sums.add(&row).ok_or_else(overflow)?;
        self.summaries.fold(r, text)?;
        self.rows += 1;
        Ok(())
    }
}

/// One raw row as the rollups and the summaries see it: taken from a record as ingest stores
/// it, or read back from the table ([`StoredRow`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRow<'a> {
    pub(crate) ts_ms: i64,
    pub(crate) provider: &'a str,
    pub(crate) model: &'a str,
    pub(crate) user: Option<&'a str>,
    pub(crate) feature: Option<&'a str>,
    pub(crate) input_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) cached_input_tokens: i64,
    /// `None` when unpriced.
    pub(crate) cost_nanos: Option<i64>,
    pub(crate) status: &'a str,
    pub(crate) request_count: i64,
    /// `None` when the row has no tags.
    pub(crate) tags: Option<&'a BTreeMap<String, String>>,
    pub(crate) batch: bool,
    pub(crate) price_source: Option<&'a str>,
    pub(crate) bucket_seconds: Option<i64>,
    pub(crate) prompt_hash: Option<&'a str>,
}

/// A raw row decoded from [`RAW_COLUMNS`], owning its text.
#[derive(Debug)]
pub(crate) struct StoredRow {
    ts_ms: i64,
    provider: String,
    model: String,
    user: Option<String>,
    feature: Option<String>,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    cost_nanos: Option<i64>,
    status: String,
    request_count: i64,
    tags: Option<BTreeMap<String, String>>,
    batch: bool,
    price_source: Option<String>,
    bucket_seconds: Option<i64>,
    prompt_hash: Option<String>,
}

impl StoredRow {
    pub(crate) fn read(r: &impl Cols) -> Result<StoredRow, sqlx::Error> {
        // Tags were stored as a JSON object of strings by ingest; anything else is not ours.
        let tags = match r.opt_text("tags")? {
            Some(json) => Some(
                serde_json::from_str::<BTreeMap<String, String>>(&json)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            ),
            None => None,
        };
        Ok(StoredRow {
            ts_ms: r.int("ts_ms")?,
            provider: r.text("provider")?,
            model: r.text("model")?,
            user: r.opt_text("user_name")?,
            feature: r.opt_text("feature")?,
            input_tokens: r.int("input_tokens")?,
            output_tokens: r.int("output_tokens")?,
            cached_input_tokens: r.int("cached_input_tokens")?,
            cost_nanos: r.opt_int("cost_nanos")?,
            status: r.text("status")?,
            request_count: r.int("request_count")?,
            tags,
            batch: r.int("batch_flag")? != 0,
            price_source: r.opt_text("price_source")?,
            bucket_seconds: r.opt_int("bucket_seconds")?,
            prompt_hash: r.opt_text("prompt_hash")?,
        })
    }

    pub(crate) fn as_raw(&self) -> RawRow<'_> {
        RawRow {
            ts_ms: self.ts_ms,
            provider: &self.provider,
            model: &self.model,
            user: self.user.as_deref(),
            feature: self.feature.as_deref(),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
            cost_nanos: self.cost_nanos,
            status: &self.status,
            request_count: self.request_count,
            tags: self.tags.as_ref(),
            batch: self.batch,
            price_source: self.price_source.as_deref(),
            bucket_seconds: self.bucket_seconds,
            prompt_hash: self.prompt_hash.as_deref(),
        }
    }
}

/// SQLite's write of an ingest's [`RollupDelta`] (its rollups, tag rollups and recommender
/// summaries; `apply_delta!` does the same for either backend through sqlx): one prepared
/// single-row upsert stepped per row on the writer's own handle (`db::on_sqlite_handle`,
/// inside the ingest's transaction), in key order, so no bound value is copied to sqlx's
/// worker thread and no multi-row statement is parsed per batch.
pub(crate) fn sqlite_add_delta(
    conn: &rusqlite::Connection,
    delta: &RollupDelta<'_>,
    org_id: &str,
) -> rusqlite::Result<()> {
    use crate::db::sqlite_values;
    let mut upsert = conn.prepare(&format!("{UPSERT_HEAD}{}{UPSERT_TAIL}", sqlite_values(15)))?;
    for (k, s) in delta.entries() {
        upsert.execute(rusqlite::params![
            org_id,
            k.hour_ms,
            &*k.provider,
            &*k.model,
            &*k.user,
            &*k.feature,
            s.rows,
            s.calls,
            s.input_tokens,
            s.output_tokens,
            s.cached_input_tokens,
            s.cost_nanos,
            s.unpriced_calls,
            s.unpriced_tokens,
            s.error_calls,
        ])?;
    }
    let mut upsert = conn.prepare(&format!(
        "{TAG_UPSERT_HEAD}{}{TAG_UPSERT_TAIL}",
        sqlite_values(17)
    ))?;
    for (k, s) in delta.tag_entries() {
        upsert.execute(rusqlite::params![
            org_id,
            &*k.tag_key,
            k.hour.hour_ms,
            &*k.tag_value,
            &*k.hour.provider,
            &*k.hour.model,
            &*k.hour.user,
            &*k.hour.feature,
            s.rows,
            s.calls,
            s.input_tokens,
            s.output_tokens,
            s.cached_input_tokens,
            s.cost_nanos,
            s.unpriced_calls,
            s.unpriced_tokens,
            s.error_calls,
        ])?;
    }
    crate::summaries::sqlite_add_summaries(conn, delta.summaries(), org_id)
}

/// Adds a [`RollupDelta`]'s sums to the org's rollups (`sign` 1) or takes them away (`sign`
/// -1, after a delete), then drops rollup rows no raw row backs any more, and bumps the org's
/// data version; inside the transaction `tx` (`&mut Transaction` of either backend) that
/// inserted or deleted the rows. A macro so one text serves both backends' transaction types.
macro_rules! apply_delta {
    ($tx:expr, $delta:expr, $org_id:expr, $sign:expr) => {{
        let (tx, delta, org_id, sign): (_, &$crate::rollup::RollupDelta<'_>, &str, i64) =
            ($tx, $delta, $org_id, $sign);
        let entries = delta.entries();
        for chunk in entries.chunks($crate::rollup::ROWS_PER_UPSERT) {
            let mut qb = sqlx::QueryBuilder::new($crate::rollup::UPSERT_HEAD);
            qb.push_values(chunk, |mut b, (k, s)| {
                b.push_bind(org_id)
                    .push_bind(k.hour_ms)
                    .push_bind(&*k.provider)
                    .push_bind(&*k.model)
                    .push_bind(&*k.user)
                    .push_bind(&*k.feature)
                    .push_bind(sign * s.rows)
                    .push_bind(sign * s.calls)
                    .push_bind(sign * s.input_tokens)
                    .push_bind(sign * s.output_tokens)
                    .push_bind(sign * s.cached_input_tokens)
                    .push_bind(sign * s.cost_nanos)
                    .push_bind(sign * s.unpriced_calls)
                    .push_bind(sign * s.unpriced_tokens)
                    .push_bind(sign * s.error_calls);
            });
            qb.push($crate::rollup::UPSERT_TAIL);
            qb.build().execute(&mut **tx).await?;
        }
        let tag_entries = delta.tag_entries();
        for chunk in tag_entries.chunks($crate::rollup::ROWS_PER_UPSERT) {
            let mut qb = sqlx::QueryBuilder::new($crate::rollup::TAG_UPSERT_HEAD);
            qb.push_values(chunk, |mut b, (k, s)| {
                b.push_bind(org_id)
                    .push_bind(&*k.tag_key)
                    .push_bind(k.hour.hour_ms)
                    .push_bind(&*k.tag_value)
                    .push_bind(&*k.hour.provider)
                    .push_bind(&*k.hour.model)
                    .push_bind(&*k.hour.user)
                    .push_bind(&*k.hour.feature)
                    .push_bind(sign * s.rows)
                    .push_bind(sign * s.calls)
                    .push_bind(sign * s.input_tokens)
                    .push_bind(sign * s.output_tokens)
                    .push_bind(sign * s.cached_input_tokens)
                    .push_bind(sign * s.cost_nanos)
                    .push_bind(sign * s.unpriced_calls)
                    .push_bind(sign * s.unpriced_tokens)
                    .push_bind(sign * s.error_calls);
            });
            qb.push($crate::rollup::TAG_UPSERT_TAIL);
            qb.build().execute(&mut **tx).await?;
        }
        if sign < 0 && !entries.is_empty() {
            sqlx::query("DELETE FROM usage_hourly WHERE org_id = $1 AND row_count <= 0")
                .bind(org_id)
                .execute(&mut **tx)
                .await?;
        }
        if sign < 0 && !tag_entries.is_empty() {
            sqlx::query("DELETE FROM usage_hourly_tags WHERE org_id = $1 AND row_count <= 0")
                .bind(org_id)
                .execute(&mut **tx)
                .await?;
        }
        $crate::summaries::apply_summaries!(&mut *tx, delta.summaries(), org_id, sign);
        // The org's usage changed: cached reads of it are out of date (`usage_cache`). Last,
        // so concurrent ingests (PostgreSQL) take this row's lock after their rollup rows'.
        if delta.rows() > 0 {
            sqlx::query($crate::usage_cache::BUMP_VERSION)
                .bind(org_id)
                .execute(&mut **tx)
                .await?;
            // After the bump: its row lock serialises this org's prompt counts.
            let sqlite = $crate::prompt_repeats::is_sqlite(&*tx);
            $crate::prompt_repeats::apply_prompts!(
                &mut *tx,
                delta.summaries(),
                org_id,
                sign,
                sqlite
            );
        }
    }};
}

pub(crate) use apply_delta;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_refuse_a_row_that_would_overflow_them() {
        let row = |cost: Option<i64>, tokens: i64| RowSums {
            calls: 1,
            input_tokens: tokens,
            output_tokens: 0,
            cached_input_tokens: 0,
            cost_nanos: cost,
            error: true,
        };
        let s = HourSums::default().add(&row(Some(5), 7)).unwrap();
        assert_eq!(
            (s.rows, s.cost_nanos, s.error_calls, s.unpriced_calls),
            (1, 5, 1, 0)
        );
        let s = s.add(&row(None, 3)).unwrap();
        assert_eq!(
            (s.unpriced_calls, s.unpriced_tokens, s.input_tokens),
            (1, 3, 10)
        );
        let full = HourSums {
            cost_nanos: i64::MAX - 4,
            ..s
        };
        assert!(full.add(&row(Some(4), 0)).is_some());
        assert!(
            full.add(&row(Some(5), 0)).is_none(),
            "one nano-dollar past the limit"
        );
        assert!(s.add(&row(None, i64::MAX)).is_none(), "tokens too");
    }

    #[test]
    fn hours_floor_for_any_sign() {
        assert_eq!(hour_floor(0), 0);
        assert_eq!(hour_floor(HOUR_MS - 1), 0);
        assert_eq!(hour_floor(HOUR_MS), HOUR_MS);
        assert_eq!(hour_floor(-1), -HOUR_MS);
    }
}
