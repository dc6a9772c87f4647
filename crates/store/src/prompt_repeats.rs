//! The repeated-prompt summaries (migration 18), which the response-cache recommender reads
//! instead of every call's `prompt_hash`:
//!
//! - `usage_prompts`: every (org, model, prompt_hash) with its number of records and, while
//!   that is 1, the lone call itself;
//! - `usage_repeats_hourly`: the records of prompts seen at least twice, per hour, model,
//!   prompt and feature: sums, the row's first call (time, tokens, cost) and its second call's
//!   time — enough to find any period's first and second call of each prompt;
//! - `usage_repeats_daily` (migration 22): the same per UTC day, what a period's whole days
//!   are read from (a day's token and cost sums in two parts, `_hi` and `_lo`: 24 hours of
//!   64-bit sums may pass 64 bits).
//!
//! Ingest keeps them in its transaction ([`apply_prompts!`], after the org's data-version bump,
//! whose row lock serialises concurrent ingests of one org on PostgreSQL): it reads the
//! batch's prompts' counts, and when a prompt's second call arrives moves the lone call into
//! the hourly rows. Calls of one prompt in the same millisecond are ordered by insertion (the
//! order `RETURNING` gives them). A delete rebuilds the org's rows from its remaining raw
//! rows with migrations 18's and 22's own statements: deletes are an operator's rare action,
//! and a prompt's first call can only be found again in the raw rows.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::db::{Cols, on_sqlite_handle, sqlite_error};
use crate::rollup::hour_floor;
use crate::summaries::day_floor;

/// A daily sum is kept as `hi * SPLIT + lo` with `0 ≤ lo < SPLIT` (migration 22).
pub(crate) const SPLIT: i128 = 1_000_000_000;

/// One inserted record with a prompt hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PromptCall {
    pub(crate) model: String,
    pub(crate) prompt_hash: String,
    pub(crate) ts_ms: i64,
    pub(crate) feature: String,
    pub(crate) input_tokens: i64,
    pub(crate) output_tokens: i64,
    /// `None` when unpriced.
    pub(crate) cost_nanos: Option<i64>,
}

/// A stored `usage_prompts` row: the count and, when it is 1, the lone call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PromptState {
    pub(crate) count: i64,
    pub(crate) lone: Option<PromptCall>,
}

/// A repeat row's key: `bucket_ms` is the hour (`usage_repeats_hourly`) or the UTC day
/// (`usage_repeats_daily`) it starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RepeatKey {
    pub(crate) bucket_ms: i64,
    pub(crate) model: String,
    pub(crate) prompt_hash: String,
    pub(crate) feature: String,
}

/// What a batch adds to one `usage_repeats_hourly` row. Calls are ordered by time, then by
/// insertion (`seq`: the lone call read from the table comes before the batch's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepeatSums {
    pub(crate) rows: i64,
    pub(crate) input_tokens: i128,
    pub(crate) output_tokens: i128,
    pub(crate) cost_nanos: i128,
    pub(crate) unpriced_rows: i64,
    first: (i64, i64),
    pub(crate) first_input_tokens: i64,
    pub(crate) first_output_tokens: i64,
    pub(crate) first_cost_nanos: Option<i64>,
    second: Option<(i64, i64)>,
}

impl RepeatSums {
    pub(crate) fn first_ts_ms(&self) -> i64 {
        self.first.0
    }

    pub(crate) fn second_ts_ms(&self) -> Option<i64> {
        self.second.map(|s| s.0)
    }
}

/// A sum of an hourly row, which fits 64 bits: its records passed `HourSums::add`.
pub(crate) fn hourly_sum(v: i128) -> Result<i64, sqlx::Error> {
    i64::try_from(v).map_err(|_| overflow())
}

/// A sum of a daily row in its two parts (`hi`, `lo`); sums are never negative.
pub(crate) fn daily_parts(v: i128) -> Result<(i64, i64), sqlx::Error> {
    let hi = i64::try_from(v.div_euclid(SPLIT)).map_err(|_| overflow())?;
    let lo = i64::try_from(v.rem_euclid(SPLIT)).map_err(|_| overflow())?;
    Ok((hi, lo))
}

fn overflow() -> sqlx::Error {
    sqlx::Error::Decode("repeated-prompt sums out of the 64-bit range".into())
}

fn add_call(
    repeats: &mut BTreeMap<RepeatKey, RepeatSums>,
    bucket: fn(i64) -> i64,
    c: &PromptCall,
    seq: i64,
) -> Result<(), sqlx::Error> {
    let key = RepeatKey {
        bucket_ms: bucket(c.ts_ms),
        model: c.model.clone(),
        prompt_hash: c.prompt_hash.clone(),
        feature: c.feature.clone(),
    };
    let at = (c.ts_ms, seq);
    let Some(s) = repeats.get_mut(&key) else {
        repeats.insert(
            key,
            RepeatSums {
                rows: 1,
                input_tokens: i128::from(c.input_tokens),
                output_tokens: i128::from(c.output_tokens),
                cost_nanos: i128::from(c.cost_nanos.unwrap_or(0)),
                unpriced_rows: i64::from(c.cost_nanos.is_none()),
                first: at,
                first_input_tokens: c.input_tokens,
                first_output_tokens: c.output_tokens,
                first_cost_nanos: c.cost_nanos,
                second: None,
            },
        );
        return Ok(());
    };
    s.rows = s.rows.checked_add(1).ok_or_else(overflow)?;
    s.input_tokens += i128::from(c.input_tokens);
    s.output_tokens += i128::from(c.output_tokens);
    s.cost_nanos += i128::from(c.cost_nanos.unwrap_or(0));
    s.unpriced_rows += i64::from(c.cost_nanos.is_none());
    if at < s.first {
        s.second = Some(s.first);
        s.first = at;
        s.first_input_tokens = c.input_tokens;
        s.first_output_tokens = c.output_tokens;
        s.first_cost_nanos = c.cost_nanos;
    } else if s.second.is_none_or(|second| at < second) {
        s.second = Some(at);
    }
    Ok(())
}

/// What a batch adds to the repeat rows, per hour and per UTC day.
#[derive(Debug, Default)]
pub(crate) struct Repeats {
    pub(crate) hourly: BTreeMap<RepeatKey, RepeatSums>,
    pub(crate) daily: BTreeMap<RepeatKey, RepeatSums>,
}

impl Repeats {
    fn add(&mut self, c: &PromptCall, seq: i64) -> Result<(), sqlx::Error> {
        add_call(&mut self.hourly, hour_floor, c, seq)?;
        add_call(&mut self.daily, day_floor, c, seq)
    }
}

/// Folds a batch's `calls` (in insertion order) into the stored states of their prompts
/// (`states`, which gains every prompt of the batch): returns the repeat rows to add. A
/// prompt's first call stays lone; its second moves the lone call into the repeat rows with
/// itself; later calls are added as they come.
pub(crate) fn fold_calls(
    states: &mut HashMap<PromptKey, PromptState>,
    calls: &[PromptCall],
) -> Result<Repeats, sqlx::Error> {
    let mut repeats = Repeats::default();
    for (seq, c) in (0i64..).zip(calls) {
        let state = states
            .entry((c.model.clone(), c.prompt_hash.clone()))
            .or_insert(PromptState {
                count: 0,
                lone: None,
            });
        match state.count {
            0 => state.lone = Some(c.clone()),
            1 => {
                if let Some(lone) = state.lone.take() {
                    // Stored before the batch: earlier in insertion order than any of it.
                    repeats.add(&lone, -1)?;
                }
                repeats.add(c, seq)?;
            }
            _ => repeats.add(c, seq)?,
        }
        state.count = state.count.checked_add(1).ok_or_else(overflow)?;
    }
    Ok(repeats)
}

/// Repeat rows written per statement (15 or 18 binds each).
pub(crate) const KEYS_PER_STATEMENT: usize = 1_000;

const STATE_COLUMNS: &str = "p.model, p.prompt_hash, p.row_count, p.lone_ts_ms,
     p.lone_feature_key, p.lone_input_tokens, p.lone_output_tokens, p.lone_cost_nanos";

const STATE_UPSERT_HEAD: &str = "INSERT INTO usage_prompts (org_id, model, prompt_hash,
     row_count, lone_ts_ms, lone_feature_key, lone_input_tokens, lone_output_tokens,
     lone_cost_nanos) ";

/// The new state is computed from the stored one read in the same transaction: written whole.
const STATE_UPSERT_TAIL: &str = " ON CONFLICT (org_id, model, prompt_hash) DO UPDATE SET
      row_count = excluded.row_count, lone_ts_ms = excluded.lone_ts_ms,
      lone_feature_key = excluded.lone_feature_key,
      lone_input_tokens = excluded.lone_input_tokens,
      lone_output_tokens = excluded.lone_output_tokens,
      lone_cost_nanos = excluded.lone_cost_nanos";

/// A prompt's key in `usage_prompts` (model, prompt hash) and its state.
pub(crate) type PromptKey = (String, String);

/// A `usage_prompts` row read (columns in [`STATE_COLUMNS`]' order) as its key and state.
fn read_state(r: &impl Cols) -> Result<(PromptKey, PromptState), sqlx::Error> {
    let (model, hash) = (r.str_at(0)?.to_owned(), r.str_at(1)?.to_owned());
    let lone = match r.opt_int_at(3)? {
        Some(ts_ms) => Some(PromptCall {
            model: model.clone(),
            prompt_hash: hash.clone(),
            ts_ms,
            feature: r.opt_text("lone_feature_key")?.unwrap_or_default(),
            input_tokens: r.opt_int_at(5)?.unwrap_or(0),
            output_tokens: r.opt_int_at(6)?.unwrap_or(0),
            cost_nanos: r.opt_int_at(7)?,
        }),
        None => None,
    };
    Ok((
        (model, hash),
        PromptState {
            count: r.int_at(2)?,
            lone,
        },
    ))
}

/// The stored lone call of a state written back (none once the prompt is seen twice).
fn lone_of(s: &PromptState) -> Option<&PromptCall> {
    s.lone.as_ref().filter(|_| s.count == 1)
}

/// The reads and writes of a batch's prompt states, per backend: each in as few statements as
/// the backend allows (a batch touches about as many prompts as it has calls, so per-statement
/// costs dominate otherwise).
pub(crate) trait PromptStates {
    /// The stored states of the prompts `keys` (sorted, distinct); prompts not stored yet are
    /// absent.
    async fn read_states(
        &mut self,
        org_id: &str,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<PromptKey, PromptState>, sqlx::Error>;

    /// Writes `states` (sorted by key: the order rows are locked in) whole; `stored` are the
    /// keys [`PromptStates::read_states`] found (the others are new to the table, and no
    /// other transaction adds them meanwhile: the org's data-version row lock is held).
    async fn write_states(
        &mut self,
        org_id: &str,
        states: &[(&PromptKey, &PromptState)],
        stored: &HashSet<PromptKey>,
    ) -> Result<(), sqlx::Error>;
}

/// On SQLite one prepared single-row statement stepped per prompt through the writer
/// connection's own handle ([`on_sqlite_handle`]), inside the transaction sqlx began: no
/// bound value copied to sqlx's worker thread, no row decoded by sqlx.
impl PromptStates for sqlx::SqliteConnection {
    async fn read_states(
        &mut self,
        org_id: &str,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<PromptKey, PromptState>, sqlx::Error> {
        on_sqlite_handle(self, |conn| sqlite_read_states(conn, org_id, keys)).await
    }

    async fn write_states(
        &mut self,
        org_id: &str,
        states: &[(&PromptKey, &PromptState)],
        _stored: &HashSet<PromptKey>,
    ) -> Result<(), sqlx::Error> {
        on_sqlite_handle(self, |conn| {
            sqlite_write_states(conn, org_id, states).map_err(sqlite_error)
        })
        .await
    }
}

/// SQLite's read of the stored states of the prompts `keys` ([`PromptStates::read_states`]).
fn sqlite_read_states(
    conn: &rusqlite::Connection,
    org_id: &str,
    keys: &[(&str, &str)],
) -> Result<HashMap<PromptKey, PromptState>, sqlx::Error> {
    let mut read = conn
        .prepare(&format!(
            "SELECT {STATE_COLUMNS} FROM usage_prompts p
             WHERE p.org_id = ?1 AND p.model = ?2 AND p.prompt_hash = ?3"
        ))
        .map_err(sqlite_error)?;
    let mut states = HashMap::new();
    for (model, hash) in keys {
        let mut rows = read
            .query(rusqlite::params![org_id, model, hash])
            .map_err(sqlite_error)?;
        if let Some(r) = rows.next().map_err(sqlite_error)? {
            let (key, state) = read_state(r)?;
            states.insert(key, state);
        }
    }
    Ok(states)
}

/// SQLite's write of prompt states, whole ([`PromptStates::write_states`]).
fn sqlite_write_states(
    conn: &rusqlite::Connection,
    org_id: &str,
    states: &[(&PromptKey, &PromptState)],
) -> rusqlite::Result<()> {
    let mut write = conn.prepare(&format!(
        "{STATE_UPSERT_HEAD} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         {STATE_UPSERT_TAIL}"
    ))?;
    for ((model, hash), s) in states {
        let lone = lone_of(s);
        write.execute(rusqlite::params![
            org_id,
            model,
            hash,
            s.count,
            lone.map(|c| c.ts_ms),
            lone.map(|c| c.feature.as_str()),
            lone.map(|c| c.input_tokens),
            lone.map(|c| c.output_tokens),
            lone.and_then(|c| c.cost_nanos),
        ])?;
    }
    Ok(())
}

/// SQLite's [`apply_prompts!`] for an ingest, all of it on the writer's own handle (inside the
/// ingest's transaction, after the data-version bump): the batch's prompt states read, its
/// calls folded in, the states and the repeat rows written by prepared single-row statements.
pub(crate) fn sqlite_add_prompts(
    conn: &rusqlite::Connection,
    delta: &crate::summaries::SummaryDelta<'_>,
    org_id: &str,
) -> Result<(), sqlx::Error> {
    let calls = delta.prompt_calls();
    if calls.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.model.as_str(), c.prompt_hash.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut states = sqlite_read_states(conn, org_id, &keys)?;
    let repeats = fold_calls(&mut states, calls)?;
    let mut touched: Vec<_> = states.iter().collect();
    touched.sort_by(|a, b| a.0.cmp(b.0));
    sqlite_write_states(conn, org_id, &touched).map_err(sqlite_error)?;
    let mut upsert = conn
        .prepare(&format!(
            "{REPEAT_UPSERT_HEAD}{}{REPEAT_UPSERT_TAIL}",
            crate::db::sqlite_values(15)
        ))
        .map_err(sqlite_error)?;
    for (k, s) in &repeats.hourly {
        upsert
            .execute(rusqlite::params![
                org_id,
                k.bucket_ms,
                k.model,
                k.prompt_hash,
                k.feature,
                s.rows,
                hourly_sum(s.input_tokens)?,
                hourly_sum(s.output_tokens)?,
                hourly_sum(s.cost_nanos)?,
                s.unpriced_rows,
                s.first_ts_ms(),
                s.first_input_tokens,
                s.first_output_tokens,
                s.first_cost_nanos,
                s.second_ts_ms(),
            ])
            .map_err(sqlite_error)?;
    }
    let mut upsert = conn
        .prepare(&format!(
            "{DAILY_UPSERT_HEAD}{}{}",
            crate::db::sqlite_values(18),
            daily_upsert_tail()
        ))
        .map_err(sqlite_error)?;
    for (k, s) in &repeats.daily {
        let (input, output, cost) = (
            daily_parts(s.input_tokens)?,
            daily_parts(s.output_tokens)?,
            daily_parts(s.cost_nanos)?,
        );
        upsert
            .execute(rusqlite::params![
                org_id,
                k.bucket_ms,
                k.model,
                k.prompt_hash,
                k.feature,
                s.rows,
                input.0,
                input.1,
                output.0,
                output.1,
                cost.0,
                cost.1,
                s.unpriced_rows,
                s.first_ts_ms(),
                s.first_input_tokens,
                s.first_output_tokens,
                s.first_cost_nanos,
                s.second_ts_ms(),
            ])
            .map_err(sqlite_error)?;
    }
    Ok(())
}

/// On PostgreSQL one statement each way per batch: the keys (or the states) as column arrays,
/// unnested into rows (no bind limit, one parse, one round trip; the read is an index lookup
/// per key rather than a `VALUES` list matched per statement).
impl PromptStates for sqlx::PgConnection {
    async fn read_states(
        &mut self,
        org_id: &str,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<PromptKey, PromptState>, sqlx::Error> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let (models, hashes): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
        let sql = format!(
            "SELECT {STATE_COLUMNS} FROM UNNEST($2::text[], $3::text[]) AS k(model, prompt_hash)
             JOIN usage_prompts p
               ON p.org_id = $1 AND p.model = k.model AND p.prompt_hash = k.prompt_hash"
        );
        let rows = sqlx::query(&sql)
            .bind(org_id)
            .bind(models)
            .bind(hashes)
            .fetch_all(&mut *self)
            .await?;
        rows.iter().map(read_state).collect()
    }

    /// The prompts new to the table by a plain insert (nearly all of a batch's: most prompts
    /// are seen once), the few stored before by the upsert.
    async fn write_states(
        &mut self,
        org_id: &str,
        states: &[(&PromptKey, &PromptState)],
        stored: &HashSet<PromptKey>,
    ) -> Result<(), sqlx::Error> {
        let (seen, new): (Vec<_>, Vec<_>) = states.iter().partition(|(k, _)| stored.contains(*k));
        pg_write_states(self, org_id, &new, "").await?;
        pg_write_states(self, org_id, &seen, STATE_UPSERT_TAIL).await
    }
}

/// PostgreSQL's insert of `states` as column arrays, `tail` after it.
async fn pg_write_states(
    conn: &mut sqlx::PgConnection,
    org_id: &str,
    states: &[(&PromptKey, &PromptState)],
    tail: &str,
) -> Result<(), sqlx::Error> {
    if states.is_empty() {
        return Ok(());
    }
    fn col<'a, T>(
        states: &[(&'a PromptKey, &'a PromptState)],
        f: impl Fn(&'a PromptKey, &'a PromptState) -> T,
    ) -> Vec<T> {
        states.iter().map(|(k, s)| f(k, s)).collect()
    }
    let sql = format!(
        "{STATE_UPSERT_HEAD} SELECT $1, u.* FROM UNNEST($2::text[], $3::text[], $4::int8[],
         $5::int8[], $6::text[], $7::int8[], $8::int8[], $9::int8[]) AS u {tail}"
    );
    sqlx::query(&sql)
        .bind(org_id)
        .bind(col(states, |(model, _), _| model.as_str()))
        .bind(col(states, |(_, hash), _| hash.as_str()))
        .bind(col(states, |_, s| s.count))
        .bind(col(states, |_, s| lone_of(s).map(|c| c.ts_ms)))
        .bind(col(states, |_, s| lone_of(s).map(|c| c.feature.as_str())))
        .bind(col(states, |_, s| lone_of(s).map(|c| c.input_tokens)))
        .bind(col(states, |_, s| lone_of(s).map(|c| c.output_tokens)))
        .bind(col(states, |_, s| lone_of(s).and_then(|c| c.cost_nanos)))
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) const REPEAT_UPSERT_HEAD: &str = "INSERT INTO usage_repeats_hourly (org_id, hour_ms,
     model, prompt_hash, feature_key, row_count, input_tokens, output_tokens, cost_nanos,
     unpriced_rows, first_ts_ms, first_input_tokens, first_output_tokens, first_cost_nanos,
     second_ts_ms) ";

/// Adds to a stored row; the stored calls were inserted earlier, so they win ties in time.
/// Every `SET` expression reads the row as it was before the update.
pub(crate) const REPEAT_UPSERT_TAIL: &str = " ON CONFLICT (org_id, hour_ms, model, prompt_hash,
      feature_key)
    DO UPDATE SET
      row_count = usage_repeats_hourly.row_count + excluded.row_count,
      input_tokens = usage_repeats_hourly.input_tokens + excluded.input_tokens,
      output_tokens = usage_repeats_hourly.output_tokens + excluded.output_tokens,
      cost_nanos = usage_repeats_hourly.cost_nanos + excluded.cost_nanos,
      unpriced_rows = usage_repeats_hourly.unpriced_rows + excluded.unpriced_rows,
      first_ts_ms = CASE WHEN excluded.first_ts_ms < usage_repeats_hourly.first_ts_ms
        THEN excluded.first_ts_ms ELSE usage_repeats_hourly.first_ts_ms END,
      first_input_tokens = CASE WHEN excluded.first_ts_ms < usage_repeats_hourly.first_ts_ms
        THEN excluded.first_input_tokens ELSE usage_repeats_hourly.first_input_tokens END,
      first_output_tokens = CASE WHEN excluded.first_ts_ms < usage_repeats_hourly.first_ts_ms
        THEN excluded.first_output_tokens ELSE usage_repeats_hourly.first_output_tokens END,
      first_cost_nanos = CASE WHEN excluded.first_ts_ms < usage_repeats_hourly.first_ts_ms
        THEN excluded.first_cost_nanos ELSE usage_repeats_hourly.first_cost_nanos END,
      second_ts_ms = CASE
        WHEN excluded.first_ts_ms < usage_repeats_hourly.first_ts_ms THEN
          CASE WHEN excluded.second_ts_ms IS NOT NULL
                AND excluded.second_ts_ms < usage_repeats_hourly.first_ts_ms
            THEN excluded.second_ts_ms ELSE usage_repeats_hourly.first_ts_ms END
        WHEN usage_repeats_hourly.second_ts_ms IS NULL
          OR excluded.first_ts_ms < usage_repeats_hourly.second_ts_ms
          THEN excluded.first_ts_ms
        ELSE usage_repeats_hourly.second_ts_ms END";

pub(crate) const DAILY_UPSERT_HEAD: &str = "INSERT INTO usage_repeats_daily (org_id, day_ms,
     model, prompt_hash, feature_key, row_count, input_tokens_hi, input_tokens_lo,
     output_tokens_hi, output_tokens_lo, cost_nanos_hi, cost_nanos_lo, unpriced_rows,
     first_ts_ms, first_input_tokens, first_output_tokens, first_cost_nanos, second_ts_ms) ";

/// [`REPEAT_UPSERT_TAIL`] for the daily rows: each two-part sum adds its parts and carries
/// the low part's excess into the high one, so `0 ≤ lo < 10⁹` stays true.
pub(crate) fn daily_upsert_tail() -> String {
    let carry = |col: &str| {
        format!(
            "{col}_hi = usage_repeats_daily.{col}_hi + excluded.{col}_hi
               + (usage_repeats_daily.{col}_lo + excluded.{col}_lo) / {SPLIT},
             {col}_lo = (usage_repeats_daily.{col}_lo + excluded.{col}_lo) % {SPLIT},"
        )
    };
    let tail = REPEAT_UPSERT_TAIL
        .replace("usage_repeats_hourly", "usage_repeats_daily")
        .replace("(org_id, hour_ms,", "(org_id, day_ms,");
    let mut out = String::new();
    for line in tail.lines() {
        let sum = ["input_tokens", "output_tokens", "cost_nanos"]
            .into_iter()
            .find(|col| line.trim_start().starts_with(&format!("{col} =")));
        match sum {
            Some(col) => out.push_str(&carry(col)),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Whether a transaction is SQLite's (the rebuild's statements differ by dialect).
pub(crate) fn is_sqlite<DB: sqlx::Database>(_: &sqlx::Transaction<'_, DB>) -> bool {
    DB::NAME == "SQLite"
}

/// The tables a delete clears and rebuilds.
pub(crate) const TABLES: [&str; 3] = [
    "usage_prompts",
    "usage_repeats_hourly",
    "usage_repeats_daily",
];

/// Migrations 18's and 22's backfill statements, each limited to one org (`$1`): what a
/// delete runs after clearing the org's rows.
pub(crate) fn rebuild_statements(sqlite: bool) -> Vec<String> {
    let files = if sqlite {
        [
            (
                include_str!("../migrations/0018_prompt_repeats.sql"),
                "INSERT INTO usage_prompts",
            ),
            (
                include_str!("../migrations/0022_prompt_repeats_daily.sql"),
                "INSERT INTO usage_repeats_daily",
            ),
        ]
    } else {
        [
            (
                include_str!("../migrations/postgres/0018_prompt_repeats.sql"),
                "INSERT INTO usage_prompts",
            ),
            (
                include_str!("../migrations/postgres/0022_prompt_repeats_daily.sql"),
                "INSERT INTO usage_repeats_daily",
            ),
        ]
    };
    files
        .into_iter()
        .flat_map(|(sql, first)| sql.find(first).map_or("", |at| &sql[at..]).split(';'))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.replace(
                "WHERE prompt_hash IS NOT NULL",
                "WHERE prompt_hash IS NOT NULL AND org_id = $1",
            )
        })
        .collect()
}

/// Keeps the repeated-prompt summaries for the rows of `delta` (a `RollupDelta`) inside the
/// transaction `tx`: an ingest (`sign` 1) folds its calls in; a delete (`sign` -1) that
/// touched rows with a prompt rebuilds the org's. Called by `rollup::apply_delta!`.
macro_rules! apply_prompts {
    ($tx:expr, $delta:expr, $org_id:expr, $sign:expr, $sqlite:expr) => {{
        let (tx, delta, org_id, sign): (_, &$crate::summaries::SummaryDelta<'_>, &str, i64) =
            ($tx, $delta, $org_id, $sign);
        let calls = delta.prompt_calls();
        if sign > 0 && !calls.is_empty() {
            let mut keys: Vec<(&str, &str)> = calls
                .iter()
                .map(|c| (c.model.as_str(), c.prompt_hash.as_str()))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            let mut states =
                $crate::prompt_repeats::PromptStates::read_states(&mut **tx, org_id, &keys).await?;
            let stored: std::collections::HashSet<_> = states.keys().cloned().collect();
            let repeats = $crate::prompt_repeats::fold_calls(&mut states, calls)?;
            let mut touched: Vec<_> = states.iter().collect();
            touched.sort_by(|a, b| a.0.cmp(b.0));
            $crate::prompt_repeats::PromptStates::write_states(
                &mut **tx, org_id, &touched, &stored,
            )
            .await?;
            use $crate::prompt_repeats::{daily_parts, hourly_sum};
            let hourly = repeats
                .hourly
                .iter()
                .map(|(k, s)| {
                    let sums = (
                        hourly_sum(s.input_tokens)?,
                        hourly_sum(s.output_tokens)?,
                        hourly_sum(s.cost_nanos)?,
                    );
                    Ok((k, s, sums))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            for chunk in hourly.chunks($crate::prompt_repeats::KEYS_PER_STATEMENT) {
                let mut qb = sqlx::QueryBuilder::new($crate::prompt_repeats::REPEAT_UPSERT_HEAD);
                qb.push_values(chunk, |mut b, (k, s, (input, output, cost))| {
                    b.push_bind(org_id)
                        .push_bind(k.bucket_ms)
                        .push_bind(k.model.as_str())
                        .push_bind(k.prompt_hash.as_str())
                        .push_bind(k.feature.as_str())
                        .push_bind(s.rows)
                        .push_bind(*input)
                        .push_bind(*output)
                        .push_bind(*cost)
                        .push_bind(s.unpriced_rows)
                        .push_bind(s.first_ts_ms())
                        .push_bind(s.first_input_tokens)
                        .push_bind(s.first_output_tokens)
                        .push_bind(s.first_cost_nanos)
                        .push_bind(s.second_ts_ms());
                });
                qb.push($crate::prompt_repeats::REPEAT_UPSERT_TAIL);
                qb.build().execute(&mut **tx).await?;
            }
            let daily = repeats
                .daily
                .iter()
                .map(|(k, s)| {
                    let sums = (
                        daily_parts(s.input_tokens)?,
                        daily_parts(s.output_tokens)?,
                        daily_parts(s.cost_nanos)?,
                    );
                    Ok((k, s, sums))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let daily_tail = $crate::prompt_repeats::daily_upsert_tail();
            for chunk in daily.chunks($crate::prompt_repeats::KEYS_PER_STATEMENT) {
                let mut qb = sqlx::QueryBuilder::new($crate::prompt_repeats::DAILY_UPSERT_HEAD);
                qb.push_values(chunk, |mut b, (k, s, (input, output, cost))| {
                    b.push_bind(org_id)
                        .push_bind(k.bucket_ms)
                        .push_bind(k.model.as_str())
                        .push_bind(k.prompt_hash.as_str())
                        .push_bind(k.feature.as_str())
                        .push_bind(s.rows)
                        .push_bind(input.0)
                        .push_bind(input.1)
                        .push_bind(output.0)
                        .push_bind(output.1)
                        .push_bind(cost.0)
                        .push_bind(cost.1)
                        .push_bind(s.unpriced_rows)
                        .push_bind(s.first_ts_ms())
                        .push_bind(s.first_input_tokens)
                        .push_bind(s.first_output_tokens)
                        .push_bind(s.first_cost_nanos)
                        .push_bind(s.second_ts_ms());
                });
                qb.push(&daily_tail);
                qb.build().execute(&mut **tx).await?;
            }
        }
        if sign < 0 && delta.prompts_touched() {
            for table in $crate::prompt_repeats::TABLES {
                sqlx::query(&format!("DELETE FROM {table} WHERE org_id = $1"))
                    .bind(org_id)
                    .execute(&mut **tx)
                    .await?;
            }
            for statement in $crate::prompt_repeats::rebuild_statements($sqlite) {
                sqlx::query(&statement)
                    .bind(org_id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }};
}

pub(crate) use apply_prompts;

#[cfg(test)]
mod tests {
    use super::*;

    fn call(hash: &str, ts_ms: i64, feature: &str, cost: Option<i64>) -> PromptCall {
        PromptCall {
            model: "m".into(),
            prompt_hash: hash.into(),
            ts_ms,
            feature: feature.into(),
            input_tokens: ts_ms,
            output_tokens: 1,
            cost_nanos: cost,
        }
    }

    #[test]
    fn a_second_call_moves_the_lone_one_into_the_repeat_rows() {
        let mut states = HashMap::new();
        // Batch 1: one call of `a`, two of `b` (out of time order).
        let r = fold_calls(
            &mut states,
            &[
                call("a", 100, "x", Some(5)),
                call("b", 300, "x", Some(7)),
                call("b", 200, "x", None),
            ],
        )
        .unwrap()
        .hourly;
        assert_eq!(states[&("m".into(), "a".into())].count, 1);
        assert!(states[&("m".into(), "a".into())].lone.is_some());
        assert_eq!(r.len(), 1);
        let b = r.values().next().unwrap();
        assert_eq!((b.rows, b.cost_nanos, b.unpriced_rows), (2, 7, 1));
        assert_eq!((b.first_ts_ms(), b.second_ts_ms()), (200, Some(300)));
        assert_eq!((b.first_input_tokens, b.first_cost_nanos), (200, None));
        // Batch 2: `a` again, at the same millisecond as the lone call and in another hour
        // under another feature: the lone call comes first (stored earlier).
        let r = fold_calls(
            &mut states,
            &[
                call("a", 100, "x", Some(9)),
                call("a", 3_600_100, "y", None),
            ],
        )
        .unwrap()
        .hourly;
        assert_eq!(states[&("m".into(), "a".into())].count, 3);
        let rows: Vec<_> = r.iter().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].0.feature.as_str(), rows[0].1.rows), ("x", 2));
        assert_eq!(
            rows[0].1.first_cost_nanos,
            Some(5),
            "the lone call is first"
        );
        assert_eq!(rows[0].1.second_ts_ms(), Some(100));
        assert_eq!((rows[1].0.feature.as_str(), rows[1].1.rows), ("y", 1));
    }

    #[test]
    fn the_rebuild_runs_the_migrations_statements_for_one_org() {
        for sqlite in [true, false] {
            let statements = rebuild_statements(sqlite);
            assert_eq!(statements.len(), 3);
            for s in &statements {
                assert!(s.contains("AND org_id = $1"), "{s}");
            }
        }
    }
}
