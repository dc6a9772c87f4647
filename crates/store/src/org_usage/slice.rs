//! The SQL of a [`UsageQuery`]: a scope's filters, a grouping's key, and the engine's four
//! queries over them ([`aggregate`], [`latency`], [`model_mix`], [`tags`]), with the
//! semantics of `MemoryUsage` (its module doc), which `tests/matches_reference.rs` and
//! `tests/rollups_equal_raw.rs` check on both backends.
//!
//! Where each is answered from (ARCHITECTURE.md "Reading usage" says why):
//! - `aggregate` reads the hourly rollups for the period's whole hours and raw rows only for
//!   its edges ([`Split`]): `usage_hourly` keeps provider, model, user and feature, so those
//!   filters and groupings, days and weeks cost ~720 hour rows × dimensions for 30 days, not a
//!   read of every call. A query naming one tag key reads that key's rows of
//!   `usage_hourly_tags` as its values and, when records without the tag can be in the answer,
//!   every `usage_hourly` row as `(none)` less the key's rows as `(none)` ([`one_tag_rows`]);
//!   `row_count` drops a group that nets to no records. Two tag keys in one query read the
//!   raw rows of the period and their `tags` JSON ([`RAW_ROWS`]).
//! - `latency` and `model_mix` need per-call columns (latency, batch, price source), so they
//!   read raw rows; `tags` reads the tag rollup plus the edges' raw tags.
//! - Grouped answers are bounded by `MAX_GROUPS` in SQL (`LIMIT`), days before they are
//!   merged into weeks here.
//!
//! Every value from a query (filter values, tag keys) is a bound parameter, never SQL text. In
//! raw rows a tag's value is looked up with its key bound — PostgreSQL's `->>`, SQLite's
//! `json_extract` with a bound path quoting the key, or `json_each` matched on the key when it
//! holds a quote or backslash a path cannot quote — so keys holding dots, `$` or brackets are
//! just keys. Days and weeks are grouped as UTC day starts, hours of the day as the UTC hour
//! (0–23) whatever the day, weekdays as 0 (Monday) to 6 (integers, the same arithmetic on both
//! backends), and named, and days merged into weeks, here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use apogee_analytics::queries::{sort_group_rows, sort_latency_rows};
use apogee_analytics::{
    Dimension, Filter, GroupTotals, Grouping, LatencyRow, LatencySlice, LatencyStats, MAX_GROUPS,
    MAX_TAG_VALUES, ModelMix, NONE_KEY, Nanos, Period, QueryError, TagCount, TokenMix, UsageQuery,
    UsageSlice, UsageTotals, WEEKDAYS,
};
use chrono::{DateTime, Datelike, Duration};
use futures_util::TryStreamExt;

use super::recommender_inputs::{FROM_CATALOG, mix, mix_columns};
use super::{Split, backend, bytewise};
use crate::db::{Cols, Db, Sums, on_read};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// The measures of a rollup row, in the order every row source gives them. `row_count` (raw
/// records) tells a group that nets to no records, which the signed rows of
/// [`one_tag_rows`] can leave, from one whose records add up to nothing.
const MEASURES: &str = "row_count, calls, input_tokens, output_tokens, cached_input_tokens, \
     cost_nanos, unpriced_calls, unpriced_tokens, error_calls";

/// [`MEASURES`] negated: rows that take away what another branch added.
const NEGATED_MEASURES: &str = "-row_count, -calls, -input_tokens, -output_tokens, \
     -cached_input_tokens, -cost_nanos, -unpriced_calls, -unpriced_tokens, -error_calls";

/// The dimensions of raw rows, shaped like rollup rows (`hour_ms` is the row's own time,
/// which lands on the same day as its hour).
const RAW_DIMENSIONS: &str = "ts_ms AS hour_ms, provider, model,
    COALESCE(user_name, '(none)') AS user_key, COALESCE(feature, '(none)') AS feature_key";

/// The [`MEASURES`] of raw rows.
const RAW_MEASURES: &str =
    "1 AS row_count, request_count AS calls, input_tokens, output_tokens, cached_input_tokens,
    COALESCE(cost_nanos, 0) AS cost_nanos,
    CASE WHEN cost_nanos IS NULL THEN request_count ELSE 0 END AS unpriced_calls,
    CASE WHEN cost_nanos IS NULL THEN input_tokens + output_tokens ELSE 0 END AS unpriced_tokens,
    CASE WHEN status <> 'ok' THEN request_count ELSE 0 END AS error_calls";

/// Raw rows of the period's edges ([`Split`]): binds $1 org, $4/$5 and $6/$7.
const EDGES: &str = "FROM usage_records
    WHERE org_id = $1 AND ((ts_ms >= $4 AND ts_ms < $5) OR (ts_ms >= $6 AND ts_ms < $7))";

/// Rollup rows of the whole hours ($1 org, $2/$3 the hours), then the raw rows of the edges.
fn rollup_rows() -> String {
    format!(
        "SELECT hour_ms, provider, model, user_key, feature_key, {MEASURES}
         FROM usage_hourly WHERE org_id = $1 AND hour_ms >= $2 AND hour_ms < $3
         UNION ALL
         SELECT {RAW_DIMENSIONS}, {RAW_MEASURES} {EDGES}"
    )
}

/// Like [`rollup_rows`], with the value of one tag (`key`, a placeholder) as `tag_value`: the
/// tag rollup's rows for the records carrying it and — when `(none)` can matter — every
/// rollup row as `(none)` less the tag rollup's rows as `(none)`, which leaves the records
/// without it. `edge_value` is the edges' raw lookup of the same key.
fn one_tag_rows(key: &str, edge_value: &str, with_none: bool) -> String {
    let tag_rows = |value: &str, measures: &str| {
        format!(
            "SELECT hour_ms, provider, model, user_key, feature_key, {value} AS tag_value, {measures}
             FROM usage_hourly_tags
             WHERE org_id = $1 AND tag_key = {key} AND hour_ms >= $2 AND hour_ms < $3"
        )
    };
    let mut parts = vec![tag_rows("tag_value", MEASURES)];
    if with_none {
        parts.push(format!(
            "SELECT hour_ms, provider, model, user_key, feature_key, '(none)' AS tag_value, {MEASURES}
             FROM usage_hourly WHERE org_id = $1 AND hour_ms >= $2 AND hour_ms < $3"
        ));
        parts.push(tag_rows("'(none)'", NEGATED_MEASURES));
    }
    parts.push(format!(
        "SELECT {RAW_DIMENSIONS}, COALESCE({edge_value}, '(none)') AS tag_value, {RAW_MEASURES}
         {EDGES}"
    ));
    parts.join(" UNION ALL ")
}

/// Raw rows of `[$2, $3)` shaped like rollup rows, with the per-call columns the rollups drop.
/// Binds: $1 org, $2/$3 the period.
const RAW_ROWS: &str = "
    SELECT ts_ms AS hour_ms, provider, model,
           COALESCE(user_name, '(none)') AS user_key, COALESCE(feature, '(none)') AS feature_key,
           1 AS row_count, request_count AS calls, input_tokens, output_tokens, cached_input_tokens,
           COALESCE(cost_nanos, 0) AS cost_nanos,
           CASE WHEN cost_nanos IS NULL THEN request_count ELSE 0 END AS unpriced_calls,
           CASE WHEN cost_nanos IS NULL THEN input_tokens + output_tokens ELSE 0 END AS unpriced_tokens,
           CASE WHEN status <> 'ok' THEN request_count ELSE 0 END AS error_calls,
           tags, latency_ms, batch, price_source, request_count
    FROM usage_records
    WHERE org_id = $1 AND ts_ms >= $2 AND ts_ms < $3";

/// A value bound to a query.
enum Arg {
    Int(i64),
    Text(String),
}

/// Where a tag's value comes from in the rows a query reads.
#[derive(Clone, Copy)]
enum TagValues {
    /// The `tag_value` column of [`one_tag_rows`].
    Column,
    /// Each raw row's `tags` JSON.
    Json,
}

/// A query's bound values (`$1…` in order) and how it reads tags.
struct Sql {
    args: Vec<Arg>,
    tags: TagValues,
}

impl Sql {
    /// Binds `value` and returns its placeholder.
    fn text(&mut self, value: &str) -> String {
        self.args.push(Arg::Text(value.to_string()));
        format!("${}", self.args.len())
    }

    /// The value of tag `key` in a raw row's `tags` (NULL without it). On SQLite a key free of
    /// `"` and `\` is looked up through a bound JSON path that quotes it (`$."a.b"`), ~3× faster
    /// than `json_each`; any other key is matched by `json_each` on the key itself. PostgreSQL's
    /// `->>` takes the key as it is.
    fn json_tag(&mut self, db: &Db, key: &str) -> String {
        match db {
            Db::Sqlite { .. } if !key.contains(['"', '\\']) => {
                let path = self.text(&format!("$.\"{key}\""));
                format!("json_extract(tags, {path})")
            }
            Db::Sqlite { .. } => {
                let key = self.text(key);
                format!("(SELECT je.value FROM json_each(tags) AS je WHERE je.key = {key})")
            }
            Db::Postgres(_) => {
                let key = self.text(key);
                format!("(CAST(tags AS json) ->> {key})")
            }
        }
    }

    /// The value of `dimension` in the rows read.
    fn dimension(&mut self, db: &Db, dimension: &Dimension) -> String {
        match dimension {
            Dimension::Model => "model".into(),
            Dimension::Provider => "provider".into(),
            Dimension::User => "user_key".into(),
            Dimension::Feature => "feature_key".into(),
            Dimension::Tag(key) => match self.tags {
                TagValues::Column => "tag_value".into(),
                TagValues::Json => format!("COALESCE({}, '(none)')", self.json_tag(db, key)),
            },
        }
    }

    /// `TRUE`, or the scope's filters AND'd.
    fn filters(&mut self, db: &Db, filters: &[Filter]) -> String {
        let mut out = vec!["TRUE".to_string()];
        for f in filters {
            let column = self.dimension(db, &f.dimension);
            let values: Vec<String> = f.values.iter().map(|v| self.text(v)).collect();
            let not = if f.exclude { "NOT " } else { "" };
            out.push(format!("{column} {not}IN ({})", values.join(", ")));
        }
        out.join(" AND ")
    }

    /// The group key: a dimension's text (compared byte-wise), the UTC day's start in ms, the
    /// UTC hour of the day (0–23) or the UTC weekday (0: Monday … 6). A source's `hour_ms` is
    /// an hour's start, or an edge row's exact time: both fall in the same day and hour.
    fn group_key(&mut self, db: &Db, by: &Grouping) -> String {
        match by {
            Grouping::By(d) => format!("{}{}", self.dimension(db, d), bytewise(db)),
            Grouping::Day | Grouping::Week => {
                format!("hour_ms - (((hour_ms % {DAY_MS}) + {DAY_MS}) % {DAY_MS})")
            }
            Grouping::HourOfDay => {
                format!("(((hour_ms % {DAY_MS}) + {DAY_MS}) % {DAY_MS}) / {HOUR_MS}")
            }
            // Whole days since 1970-01-01 (a Thursday: 3 days after a Monday), floored.
            Grouping::DayOfWeek => format!(
                "((((hour_ms - (((hour_ms % {DAY_MS}) + {DAY_MS}) % {DAY_MS})) / {DAY_MS}) % 7) + 10) % 7"
            ),
        }
    }
}

/// Binds a [`Sql`]'s values, in order, to a query of either backend.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Int(i) => q.bind(*i),
                Arg::Text(t) => q.bind(t.as_str()),
            };
        }
        q
    }};
}

/// The tag keys `q` filters or groups by.
fn tag_keys(q: &UsageQuery) -> BTreeSet<&str> {
    let grouped = match &q.group_by {
        Some(Grouping::By(Dimension::Tag(k))) => Some(k.as_str()),
        _ => None,
    };
    q.scope
        .filters
        .iter()
        .filter_map(|f| match &f.dimension {
            Dimension::Tag(k) => Some(k.as_str()),
            _ => None,
        })
        .chain(grouped)
        .collect()
}

/// Whether records without tag `key` can be in `q`'s answer: not when an including filter on
/// the key leaves `(none)` out.
fn none_matters(q: &UsageQuery, key: &str) -> bool {
    !q.scope.filters.iter().any(|f| {
        matches!(&f.dimension, Dimension::Tag(k) if k == key)
            && !f.exclude
            && !f.values.iter().any(|v| v == NONE_KEY)
    })
}

/// The rows `q` reads and its binds so far: the rollups plus raw edges when it names at most
/// one tag key, else — or when `raw` — the raw rows of the period.
fn source(db: &Db, org_id: &str, q: &UsageQuery, raw: bool) -> (String, Sql) {
    let keys = tag_keys(q);
    if raw || keys.len() > 1 {
        let args = vec![
            Arg::Text(org_id.into()),
            Arg::Int(q.period.from_ms()),
            Arg::Int(q.period.to_ms()),
        ];
        let sql = Sql {
            args,
            tags: TagValues::Json,
        };
        return (RAW_ROWS.to_string(), sql);
    }
    let s = Split::of(&q.period);
    let args = vec![
        Arg::Text(org_id.into()),
        Arg::Int(s.hours_from),
        Arg::Int(s.hours_to),
        Arg::Int(s.from),
        Arg::Int(s.edge1_to),
        Arg::Int(s.edge2_from),
        Arg::Int(s.to),
    ];
    let mut sql = Sql {
        args,
        tags: TagValues::Column,
    };
    let rows = match keys.first() {
        None => rollup_rows(),
        Some(key) => {
            let placeholder = sql.text(key);
            let edge_value = sql.json_tag(db, key);
            one_tag_rows(&placeholder, &edge_value, none_matters(q, key))
        }
    };
    (rows, sql)
}

/// A time grouping's key as read ([`Sql::group_key`]) named: the UTC day starting at `key` ms
/// as `YYYY-MM-DD`, or the Monday starting its week; the hour of the day `key` (0–23) as
/// `HH:00`; the weekday `key` (0: Monday) by its name.
fn time_key(key: i64, by: &Grouping) -> Result<String, QueryError> {
    let out_of_range = |what: &str| QueryError::Backend(format!("{what} {key} is out of range"));
    match by {
        Grouping::HourOfDay if (0..=23).contains(&key) => return Ok(format!("{key:02}:00")),
        Grouping::HourOfDay => return Err(out_of_range("hour of the day")),
        Grouping::DayOfWeek => {
            return usize::try_from(key)
                .ok()
                .and_then(|i| WEEKDAYS.get(i))
                .map(|d| d.to_string())
                .ok_or_else(|| out_of_range("weekday"));
        }
        _ => {}
    }
    let day = DateTime::from_timestamp_millis(key)
        .ok_or_else(|| QueryError::Backend(format!("day {key} is out of range")))?
        .date_naive();
    let day = match by {
        Grouping::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        _ => day,
    };
    Ok(day.format("%Y-%m-%d").to_string())
}

const TOTALS_COLUMNS: [(&str, &str); 8] = [
    ("calls", "calls"),
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cached_input_tokens", "cached"),
    ("cost_nanos", "cost"),
    ("unpriced_calls", "unpriced_calls"),
    ("unpriced_tokens", "unpriced_tokens"),
    ("error_calls", "error_calls"),
];

fn totals_columns(sums: Sums) -> String {
    TOTALS_COLUMNS
        .iter()
        .map(|(column, name)| format!("{} AS {name}", sums.sum(column)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn totals_of(r: &impl Cols) -> Result<UsageTotals, sqlx::Error> {
    Ok(UsageTotals {
        calls: r.wide_count("calls")?,
        input_tokens: r.wide_count("input_tokens")?,
        output_tokens: r.wide_count("output_tokens")?,
        cached_input_tokens: r.wide_count("cached")?,
        cost: Nanos(r.wide("cost")?),
        unpriced_calls: r.wide_count("unpriced_calls")?,
        unpriced_tokens: r.wide_count("unpriced_tokens")?,
        error_calls: r.wide_count("error_calls")?,
    })
}

/// A group key as read: a dimension's text, or a time grouping's integer ([`time_key`]).
enum Key {
    Text(String),
    Time(i64),
}

fn key_of(r: &impl Cols, by: &Grouping) -> Result<Key, sqlx::Error> {
    Ok(if by.is_time() {
        Key::Time(r.int("k")?)
    } else {
        Key::Text(r.text("k")?)
    })
}

impl Key {
    fn name(self, by: &Grouping) -> Result<String, QueryError> {
        match self {
            Key::Text(t) => Ok(t),
            Key::Time(ms) => time_key(ms, by),
        }
    }
}

pub(super) async fn aggregate(
    db: &Db,
    org_id: &str,
    q: &UsageQuery,
    sums: Sums,
) -> Result<UsageSlice, QueryError> {
    q.scope.validate()?;
    let Some(by) = &q.group_by else {
        return Ok(UsageSlice {
            totals: slice_totals(db, org_id, q, sums).await?,
            ..UsageSlice::default()
        });
    };
    let (src, mut sql) = source(db, org_id, q, false);
    let key = sql.group_key(db, by);
    let filters = sql.filters(db, &q.scope.filters);
    // Dimension groups come ranked and bounded; days are few and are merged into weeks here.
    let tail = if by.is_time() {
        String::new()
    } else {
        format!(
            "ORDER BY {} DESC, k ASC LIMIT {}",
            sums.rank("cost_nanos"),
            MAX_GROUPS + 1
        )
    };
    let text = format!(
        "SELECT {key} AS k, {columns} FROM ({src}) AS u WHERE {filters}
         GROUP BY k HAVING SUM(row_count) > 0 {tail}",
        columns = totals_columns(sums),
    );
    let groups: Vec<(Key, UsageTotals)> = on_read!(db, pool => {
        bind_args!(sqlx::query(&text), &sql.args)
            .fetch_all(pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|r| Ok((key_of(r, by)?, totals_of(r)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)?
    });
    let mut merged: HashMap<String, UsageTotals> = HashMap::with_capacity(groups.len());
    for (key, totals) in groups {
        merged.entry(key.name(by)?).or_default().add(&totals);
    }
    let mut rows: Vec<GroupTotals> = merged
        .into_iter()
        .map(|(key, totals)| GroupTotals { key, totals })
        .collect();
    sort_group_rows(&mut rows, by);
    let truncated = rows.len() > MAX_GROUPS;
    let totals = if truncated {
        rows.truncate(MAX_GROUPS);
        slice_totals(db, org_id, q, sums).await?
    } else {
        // The groups partition the slice.
        let mut t = UsageTotals::default();
        rows.iter().for_each(|r| t.add(&r.totals));
        t
    };
    Ok(UsageSlice {
        totals,
        rows,
        truncated,
    })
}

async fn slice_totals(
    db: &Db,
    org_id: &str,
    q: &UsageQuery,
    sums: Sums,
) -> Result<UsageTotals, QueryError> {
    let (src, mut sql) = source(db, org_id, q, false);
    let filters = sql.filters(db, &q.scope.filters);
    let text = format!(
        "SELECT {columns} FROM ({src}) AS u WHERE {filters}",
        columns = totals_columns(sums),
    );
    on_read!(db, pool => {
        let r = bind_args!(sqlx::query(&text), &sql.args)
            .fetch_one(pool)
            .await
            .map_err(backend)?;
        totals_of(&r).map_err(backend)
    })
}

/// Calls, errors and a latency histogram (`latency_ms` → records) of a slice or a group.
#[derive(Default)]
struct LatencySample {
    calls: i64,
    errors: i64,
    histogram: BTreeMap<i64, i64>,
}

impl LatencySample {
    fn add(&mut self, calls: i64, errors: i64, latency: Option<i64>, records: i64) {
        self.calls += calls;
        self.errors += errors;
        if let Some(l) = latency {
            *self.histogram.entry(l).or_default() += records;
        }
    }

    fn stats(&self) -> LatencyStats {
        let histogram: Vec<(i64, i64)> = self.histogram.iter().map(|(l, n)| (*l, *n)).collect();
        LatencyStats::from_histogram(self.calls, self.errors, &histogram)
    }
}

pub(super) async fn latency(
    db: &Db,
    org_id: &str,
    q: &UsageQuery,
    sums: Sums,
) -> Result<LatencySlice, QueryError> {
    q.scope.validate()?;
    let (src, mut sql) = source(db, org_id, q, true);
    let key = match &q.group_by {
        Some(by) => sql.group_key(db, by),
        None => "0".into(),
    };
    let filters = sql.filters(db, &q.scope.filters);
    // One row per group and distinct latency (NULL: records without one): the percentiles
    // are exact from these counts, and far fewer rows travel than calls.
    let text = format!(
        "SELECT {key} AS k, latency_ms AS latency, COUNT(*) AS records,
                {calls} AS calls, {errors} AS errors
         FROM ({src}) AS u WHERE {filters} GROUP BY k, latency_ms",
        calls = sums.sum("calls"),
        errors = sums.sum("error_calls"),
    );
    let mut all = LatencySample::default();
    let mut groups: HashMap<String, LatencySample> = HashMap::new();
    let by_time = q.group_by.as_ref().is_some_and(Grouping::is_time);
    on_read!(db, pool => {
        let mut rows = bind_args!(sqlx::query(&text), &sql.args).fetch(pool);
        while let Some(r) = rows.try_next().await.map_err(backend)? {
            let latency = r.opt_int("latency").map_err(backend)?;
            let records = r.int("records").map_err(backend)?;
            let calls = r.wide_count("calls").map_err(backend)?;
            let errors = r.wide_count("errors").map_err(backend)?;
            all.add(calls, errors, latency, records);
            if let Some(by) = &q.group_by {
                let key = if by_time {
                    Key::Time(r.int("k").map_err(backend)?)
                } else {
                    Key::Text(r.text("k").map_err(backend)?)
                };
                groups
                    .entry(key.name(by)?)
                    .or_default()
                    .add(calls, errors, latency, records);
            }
        }
    });
    let mut slice = LatencySlice {
        totals: all.stats(),
        ..LatencySlice::default()
    };
    if let Some(by) = &q.group_by {
        let mut rows: Vec<LatencyRow> = groups
            .iter()
            .map(|(key, s)| LatencyRow {
                key: key.clone(),
                stats: s.stats(),
            })
            .collect();
        sort_latency_rows(&mut rows, by);
        slice.truncated = rows.len() > MAX_GROUPS;
        rows.truncate(MAX_GROUPS);
        slice.rows = rows;
    }
    Ok(slice)
}

pub(super) async fn model_mix(
    db: &Db,
    org_id: &str,
    q: &UsageQuery,
    sums: Sums,
) -> Result<Vec<ModelMix>, QueryError> {
    q.scope.validate()?;
    let (src, mut sql) = source(db, org_id, q, true);
    let key = match &q.group_by {
        Some(by) => sql.group_key(db, by),
        None => "0".into(),
    };
    let filters = sql.filters(db, &q.scope.filters);
    // Days merge into weeks here, so only dimension groups are bounded in SQL.
    let limit = match &q.group_by {
        Some(by) if by.is_time() => String::new(),
        _ => format!("LIMIT {}", MAX_GROUPS + 1),
    };
    let text = format!(
        "SELECT {key} AS k, model, {interactive}, {batch}
         FROM ({src}) AS u WHERE {FROM_CATALOG} AND {filters}
         GROUP BY k, model {limit}",
        interactive = mix_columns(sums, "batch = FALSE", "i_"),
        batch = mix_columns(sums, "batch = TRUE", "b_"),
    );
    let found: Vec<(Option<Key>, String, TokenMix, TokenMix)> = on_read!(db, pool => {
        bind_args!(sqlx::query(&text), &sql.args)
            .fetch_all(pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|r| {
                let key = q.group_by.as_ref().map(|by| key_of(r, by)).transpose()?;
                Ok((key, r.text("model")?, mix(r, "i_")?, mix(r, "b_")?))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)?
    });
    let mut merged: BTreeMap<(Option<String>, String), (TokenMix, TokenMix)> = BTreeMap::new();
    for (key, model, interactive, batch) in found {
        let key = match (key, &q.group_by) {
            (Some(k), Some(by)) => Some(k.name(by)?),
            _ => None,
        };
        let m = merged.entry((key, model)).or_default();
        add_mix(&mut m.0, &interactive);
        add_mix(&mut m.1, &batch);
    }
    if merged.len() > MAX_GROUPS {
        return Err(QueryError::model_mix_too_large());
    }
    Ok(merged
        .into_iter()
        .map(|((key, model), (interactive, batch))| ModelMix {
            key,
            model,
            interactive,
            batch,
        })
        .collect())
}

fn add_mix(to: &mut TokenMix, m: &TokenMix) {
    to.calls += m.calls;
    to.fresh_input_tokens += m.fresh_input_tokens;
    to.cached_input_tokens += m.cached_input_tokens;
    to.output_tokens += m.output_tokens;
    to.cost = to.cost + m.cost;
}

pub(super) async fn tags(
    db: &Db,
    org_id: &str,
    period: &Period,
    sums: Sums,
) -> Result<Vec<TagCount>, QueryError> {
    // The tag rollup's whole hours, and the edges' raw tags.
    let pairs = db.pick(
        "json_each(r.tags) AS je",
        "json_each_text(CAST(r.tags AS json)) AS je",
    );
    let text = format!(
        "SELECT k{b} AS k, v{b} AS v, {calls} AS calls FROM (
             SELECT tag_key AS k, tag_value AS v, calls FROM usage_hourly_tags
             WHERE org_id = $1 AND hour_ms >= $2 AND hour_ms < $3
             UNION ALL
             SELECT je.key AS k, je.value AS v, r.request_count AS calls
             FROM usage_records AS r, {pairs}
             WHERE r.org_id = $1 AND r.tags IS NOT NULL
               AND ((r.ts_ms >= $4 AND r.ts_ms < $5) OR (r.ts_ms >= $6 AND r.ts_ms < $7))
         ) AS t
         GROUP BY 1, 2 ORDER BY {rank} DESC, k ASC, v ASC LIMIT {MAX_TAG_VALUES}",
        b = bytewise(db),
        calls = sums.sum("calls"),
        rank = sums.rank("calls"),
    );
    let split = Split::of(period);
    on_read!(db, pool => {
        sqlx::query(&text)
            .bind(org_id)
            .bind(split.hours_from)
            .bind(split.hours_to)
            .bind(split.from)
            .bind(split.edge1_to)
            .bind(split.edge2_from)
            .bind(split.to)
            .fetch_all(pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|r| {
                Ok(TagCount {
                    key: r.text("k")?,
                    value: r.text("v")?,
                    calls: r.wide_count("calls")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)
    })
}
