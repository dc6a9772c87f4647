//! [`OrgUsageQueries`] over the usage table for one org, fixed at construction: every query
//! filters on that org, so a handle cannot reach another org's usage.

use apogee_analytics::{
    CostRow, GroupBy, Nanos, OrgUsageQueries, Period, QueryError, RepeatProfile, TokenMix,
    TrafficProfile, UsageTotals,
};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

/// Usage queries bound to one org. Obtained from [`crate::Store::org_usage`].
#[derive(Clone)]
pub struct OrgUsage {
    pool: SqlitePool,
    org_id: String,
}

fn backend(e: sqlx::Error) -> QueryError {
    QueryError::Backend(e.to_string())
}

fn group_key(by: GroupBy) -> &'static str {
    match by {
        GroupBy::Model => "model",
        GroupBy::Provider => "provider",
        GroupBy::User => "COALESCE(user_name, '(none)')",
        GroupBy::Feature => "COALESCE(feature, '(none)')",
        GroupBy::Day => "strftime('%Y-%m-%d', ts_ms / 1000, 'unixepoch')",
    }
}

fn cost_row(r: &SqliteRow) -> Result<CostRow, sqlx::Error> {
    Ok(CostRow {
        key: r.try_get("k")?,
        calls: r.try_get("calls")?,
        input_tokens: r.try_get("input_tokens")?,
        output_tokens: r.try_get("output_tokens")?,
        cost: Nanos(r.try_get("cost")?),
        unpriced_calls: r.try_get("unpriced_calls")?,
    })
}

fn mix(r: &SqliteRow, prefix: &str) -> Result<TokenMix, sqlx::Error> {
    Ok(TokenMix {
        calls: r.try_get(format!("{prefix}calls").as_str())?,
        fresh_input_tokens: r.try_get(format!("{prefix}fresh").as_str())?,
        cached_input_tokens: r.try_get(format!("{prefix}cached").as_str())?,
        output_tokens: r.try_get(format!("{prefix}output").as_str())?,
        cost: Nanos(r.try_get(format!("{prefix}cost").as_str())?),
    })
}

impl OrgUsage {
    pub(crate) fn new(pool: SqlitePool, org_id: String) -> Self {
        Self { pool, org_id }
    }

    pub fn org_id(&self) -> &str {
        &self.org_id
    }
}

#[async_trait]
impl OrgUsageQueries for OrgUsage {
    async fn totals(&self, period: &Period) -> Result<UsageTotals, QueryError> {
        let r = sqlx::query(
            "SELECT COALESCE(SUM(request_count), 0) AS calls,
                    COALESCE(SUM(input_tokens), 0) AS input_tokens,
                    COALESCE(SUM(output_tokens), 0) AS output_tokens,
                    COALESCE(SUM(cached_input_tokens), 0) AS cached,
                    COALESCE(SUM(cost_nanos), 0) AS cost,
                    COALESCE(SUM(CASE WHEN cost_nanos IS NULL THEN request_count ELSE 0 END), 0) AS unpriced_calls,
                    COALESCE(SUM(CASE WHEN cost_nanos IS NULL THEN input_tokens + output_tokens ELSE 0 END), 0) AS unpriced_tokens,
                    COALESCE(SUM(CASE WHEN status <> 'ok' THEN request_count ELSE 0 END), 0) AS error_calls
             FROM usage_records WHERE org_id = ? AND ts_ms >= ? AND ts_ms < ?",
        )
        .bind(&self.org_id)
        .bind(period.from_ms())
        .bind(period.to_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let get = |c: &str| r.try_get::<i64, _>(c).map_err(backend);
        Ok(UsageTotals {
            calls: get("calls")?,
            input_tokens: get("input_tokens")?,
            output_tokens: get("output_tokens")?,
            cached_input_tokens: get("cached")?,
            cost: Nanos(get("cost")?),
            unpriced_calls: get("unpriced_calls")?,
            unpriced_tokens: get("unpriced_tokens")?,
            error_calls: get("error_calls")?,
        })
    }

    async fn breakdown(&self, period: &Period, by: GroupBy) -> Result<Vec<CostRow>, QueryError> {
        let order = if by == GroupBy::Day {
            "k ASC"
        } else {
            "cost DESC, k ASC"
        };
        let sql = format!(
            "SELECT {key} AS k, COALESCE(SUM(request_count), 0) AS calls,
                    COALESCE(SUM(input_tokens), 0) AS input_tokens,
                    COALESCE(SUM(output_tokens), 0) AS output_tokens,
                    COALESCE(SUM(cost_nanos), 0) AS cost,
                    COALESCE(SUM(CASE WHEN cost_nanos IS NULL THEN request_count ELSE 0 END), 0) AS unpriced_calls
             FROM usage_records WHERE org_id = ? AND ts_ms >= ? AND ts_ms < ?
             GROUP BY k ORDER BY {order}",
            key = group_key(by)
        );
        let rows = sqlx::query(&sql)
            .bind(&self.org_id)
            .bind(period.from_ms())
            .bind(period.to_ms())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(cost_row)
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn traffic_profile(
        &self,
        period: &Period,
        model: &str,
        max_input_tokens: i64,
        max_output_tokens: i64,
    ) -> Result<TrafficProfile, QueryError> {
        let short = "input_tokens <= ?1 AND output_tokens <= ?2";
        let batch_sum = |b: &str, prefix: &str| {
            format!(
                "COALESCE(SUM(CASE WHEN {short} AND batch = {b} THEN 1 ELSE 0 END), 0) AS {prefix}calls,
                 COALESCE(SUM(CASE WHEN {short} AND batch = {b} THEN input_tokens - cached_input_tokens ELSE 0 END), 0) AS {prefix}fresh,
                 COALESCE(SUM(CASE WHEN {short} AND batch = {b} THEN cached_input_tokens ELSE 0 END), 0) AS {prefix}cached,
                 COALESCE(SUM(CASE WHEN {short} AND batch = {b} THEN output_tokens ELSE 0 END), 0) AS {prefix}output,
                 COALESCE(SUM(CASE WHEN {short} AND batch = {b} THEN cost_nanos ELSE 0 END), 0) AS {prefix}cost"
            )
        };
        let sql = format!(
            "SELECT COUNT(*) AS all_calls, COALESCE(SUM(cost_nanos), 0) AS all_cost,
                    {interactive}, {batch}
             FROM usage_records
             WHERE org_id = ?3 AND model = ?4 AND ts_ms >= ?5 AND ts_ms < ?6
               AND price_source IS NOT NULL AND price_source <> 'client'",
            interactive = batch_sum("0", "i_"),
            batch = batch_sum("1", "b_"),
        );
        let r = sqlx::query(&sql)
            .bind(max_input_tokens)
            .bind(max_output_tokens)
            .bind(&self.org_id)
            .bind(model)
            .bind(period.from_ms())
            .bind(period.to_ms())
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(TrafficProfile {
            model: model.to_string(),
            short_interactive: mix(&r, "i_").map_err(backend)?,
            short_batch: mix(&r, "b_").map_err(backend)?,
            all_calls: r.try_get("all_calls").map_err(backend)?,
            all_cost: Nanos(r.try_get("all_cost").map_err(backend)?),
        })
    }

    async fn repeated_prompts(&self, period: &Period) -> Result<RepeatProfile, QueryError> {
        // A repeat is every call after the first (by time, then insertion order) of the same
        // prompt on the same model: the calls a response cache would have answered.
        let rows = sqlx::query(
            "SELECT COALESCE(feature, '(none)') AS k, COUNT(*) AS calls,
                    COALESCE(SUM(input_tokens), 0) AS input_tokens,
                    COALESCE(SUM(output_tokens), 0) AS output_tokens,
                    COALESCE(SUM(cost_nanos), 0) AS cost,
                    COALESCE(SUM(CASE WHEN cost_nanos IS NULL THEN 1 ELSE 0 END), 0) AS unpriced_calls,
                    COALESCE(SUM(CASE WHEN rn = 2 THEN 1 ELSE 0 END), 0) AS prompts
             FROM (SELECT feature, input_tokens, output_tokens, cost_nanos,
                          ROW_NUMBER() OVER (PARTITION BY model, prompt_hash ORDER BY ts_ms, rowid) AS rn
                   FROM usage_records
                   WHERE org_id = ? AND ts_ms >= ? AND ts_ms < ? AND prompt_hash IS NOT NULL) AS numbered
             WHERE rn > 1
             GROUP BY k ORDER BY cost DESC, k ASC",
        )
        .bind(&self.org_id)
        .bind(period.from_ms())
        .bind(period.to_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut profile = RepeatProfile::default();
        for r in &rows {
            let row = cost_row(r).map_err(backend)?;
            profile.repeated_prompts += r.try_get::<i64, _>("prompts").map_err(backend)?;
            profile.repeat_calls += row.calls;
            profile.repeat_cost = profile.repeat_cost + row.cost;
            profile.top_features.push(row);
        }
        profile.top_features.truncate(5);
        Ok(profile)
    }
}
