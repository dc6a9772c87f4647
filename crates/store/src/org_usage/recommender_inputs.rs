//! The usage queries behind the newer recommenders and change attribution (feature × model
//! spend, output tails, prompt-length bands), one org at a time; the trait impl in `mod.rs`
//! delegates here.
//!
//! The SQL is written for both SQLite and PostgreSQL: `$n` placeholders, sums that cannot
//! overflow (`db::Sums`; counts of rows, which cannot, cast to `BIGINT`), booleans compared
//! with `TRUE`/`FALSE`, and no SQLite-only functions. Semantics are `MemoryUsage`'s (see its
//! module docs), which `tests/matches_reference.rs` checks.

use apogee_analytics::memory::nearest_rank_index;
use apogee_analytics::{
    FeatureModelCost, InputBand, Nanos, OutputTail, Period, QueryError, TokenMix,
};

use super::bytewise;
use crate::db::{Cols, Db, Sums, on_read};

fn backend(e: sqlx::Error) -> QueryError {
    QueryError::Backend(e.to_string())
}

/// Calls priced from the catalog: a client-sent cost says nothing about catalog prices.
pub(super) const FROM_CATALOG: &str = "price_source IS NOT NULL AND price_source <> 'client'";

/// The five columns of a [`TokenMix`] over the records matching `cond`, named `{p}calls`,
/// `{p}fresh`, `{p}cached`, `{p}output`, `{p}cost`.
pub(super) fn mix_columns(sums: Sums, cond: &str, p: &str) -> String {
    let sum = |expr: &str, name: &str| {
        format!(
            "{} AS {p}{name}",
            sums.sum(&format!("CASE WHEN {cond} THEN {expr} ELSE 0 END"))
        )
    };
    [
        sum("request_count", "calls"),
        sum("input_tokens - cached_input_tokens", "fresh"),
        sum("cached_input_tokens", "cached"),
        sum("output_tokens", "output"),
        sum("COALESCE(cost_nanos, 0)", "cost"),
    ]
    .join(", ")
}

pub(super) fn mix(r: &impl Cols, p: &str) -> Result<TokenMix, sqlx::Error> {
    let get = |name: &str| r.wide_count(format!("{p}{name}").as_str());
    Ok(TokenMix {
        calls: get("calls")?,
        fresh_input_tokens: get("fresh")?,
        cached_input_tokens: get("cached")?,
        output_tokens: get("output")?,
        cost: Nanos(r.wide(format!("{p}cost").as_str())?),
    })
}

pub(crate) async fn breakdown_feature_model(
    db: &Db,
    org_id: &str,
    period: &Period,
    sums: Sums,
) -> Result<Vec<FeatureModelCost>, QueryError> {
    let sql = format!(
        "SELECT COALESCE(feature, '(none)'){b} AS f, model{b} AS model,
                {calls} AS calls, {cost} AS cost
         FROM usage_records
         WHERE org_id = $1 AND ts_ms >= $2 AND ts_ms < $3
         GROUP BY COALESCE(feature, '(none)'), model",
        b = bytewise(db),
        calls = sums.sum("request_count"),
        cost = sums.sum("cost_nanos"),
    );
    let mut rows: Vec<FeatureModelCost> = on_read!(db, pool => {
        sqlx::query(&sql)
            .bind(org_id)
            .bind(period.from_ms())
            .bind(period.to_ms())
            .fetch_all(pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|r| {
                Ok(FeatureModelCost {
                    feature: r.text("f")?,
                    model: r.text("model")?,
                    calls: r.wide_count("calls")?,
                    cost: Nanos(r.wide("cost")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)?
    });
    // Cost descending, then feature and model (byte-wise, as the keys compare in SQL).
    rows.sort_by(|a, b| {
        b.cost
            .cmp(&a.cost)
            .then_with(|| a.feature.cmp(&b.feature))
            .then_with(|| a.model.cmp(&b.model))
    });
    Ok(rows)
}

/// One feature × model's calls of one output length, interactive and batch apart:
/// `(feature, model, output, interactive calls, batch calls)`.
pub(super) type OutputCount = (String, String, i64, i64, i64);

pub(crate) async fn output_tails(
    db: &Db,
    org_id: &str,
    period: &Period,
    percentile: i64,
) -> Result<Vec<OutputTail>, QueryError> {
    Ok(tails_of(
        &output_histogram(db, org_id, period).await?,
        percentile,
    ))
}

/// The tail of each feature × model of `histogram` (sorted by feature, model and length).
pub(super) fn tails_of(histogram: &[OutputCount], percentile: i64) -> Vec<OutputTail> {
    let mut tails = Vec::new();
    let mut rest = histogram;
    while let Some(first) = rest.first() {
        let len = rest
            .iter()
            .take_while(|h| h.0 == first.0 && h.1 == first.1)
            .count();
        let (group, after) = rest.split_at(len);
        tails.push(tail_of(group, percentile));
        rest = after;
    }
    tails
}

/// Single calls priced from the catalog per feature × model × output length, sorted by those.
pub(super) async fn output_histogram(
    db: &Db,
    org_id: &str,
    period: &Period,
) -> Result<Vec<OutputCount>, QueryError> {
    // A histogram per feature × model (calls per distinct output length, interactive and
    // batch apart) is one plain aggregate; the nearest-rank cap and the excess over it are
    // then exact integer folds here, as in `MemoryUsage`. Window functions ranking every row
    // took several times longer on both backends.
    let sql = format!(
        "SELECT COALESCE(feature, '(none)'){b} AS f, model{b} AS model, output_tokens AS output,
                CAST(SUM(CASE WHEN batch = FALSE THEN 1 ELSE 0 END) AS BIGINT) AS n_i,
                CAST(SUM(CASE WHEN batch = TRUE THEN 1 ELSE 0 END) AS BIGINT) AS n_b
         FROM usage_records
         WHERE org_id = $1 AND ts_ms >= $2 AND ts_ms < $3 AND request_count = 1
           AND {FROM_CATALOG}
         GROUP BY COALESCE(feature, '(none)'), model, output_tokens
         ORDER BY f, model, output",
        b = bytewise(db),
    );
    Ok(on_read!(db, pool => {
        sqlx::query(&sql)
            .bind(org_id)
            .bind(period.from_ms())
            .bind(period.to_ms())
            .fetch_all(pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|r| {
                Ok((
                    r.text("f")?,
                    r.text("model")?,
                    r.int("output")?,
                    r.int("n_i")?,
                    r.int("n_b")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)?
    }))
}

/// The tail of one feature × model from its histogram `(feature, model, output, n_i, n_b)`,
/// sorted by output length.
fn tail_of(group: &[(String, String, i64, i64, i64)], percentile: i64) -> OutputTail {
    let calls: i64 = group.iter().map(|h| h.3 + h.4).sum();
    let rank = nearest_rank_index(percentile, calls).clamp(1, calls.max(1));
    let mut seen = 0;
    let cap = group
        .iter()
        .find(|h| {
            seen += h.3 + h.4;
            seen >= rank
        })
        .map_or(0, |h| h.2);
    let mut tail = OutputTail {
        feature: group[0].0.clone(),
        model: group[0].1.clone(),
        calls,
        cap,
        over_calls: 0,
        excess_interactive_tokens: 0,
        excess_batch_tokens: 0,
    };
    for &(_, _, output, n_i, n_b) in group.iter().filter(|h| h.2 > cap) {
        tail.over_calls += n_i + n_b;
        tail.excess_interactive_tokens += (output - cap) * n_i;
        tail.excess_batch_tokens += (output - cap) * n_b;
    }
    tail
}

pub(crate) async fn input_band(
    db: &Db,
    org_id: &str,
    period: &Period,
    model: &str,
    above_input_tokens: i64,
    up_to_input_tokens: i64,
    sums: Sums,
) -> Result<InputBand, QueryError> {
    let in_band = "input_tokens / request_count > $5 AND input_tokens / request_count <= $6";
    let sql = format!(
        "SELECT {interactive}, {batch}
         FROM usage_records
         WHERE org_id = $1 AND model = $2 AND ts_ms >= $3 AND ts_ms < $4 AND {FROM_CATALOG}",
        interactive = mix_columns(sums, &format!("{in_band} AND batch = FALSE"), "i_"),
        batch = mix_columns(sums, &format!("{in_band} AND batch = TRUE"), "b_"),
    );
    let (interactive, batch) = on_read!(db, pool => {
        let r = sqlx::query(&sql)
            .bind(org_id)
            .bind(model)
            .bind(period.from_ms())
            .bind(period.to_ms())
            .bind(above_input_tokens)
            .bind(up_to_input_tokens)
            .fetch_one(pool)
            .await
            .map_err(backend)?;
        (
            mix(&r, "i_").map_err(backend)?,
            mix(&r, "b_").map_err(backend)?,
        )
    });
    Ok(InputBand {
        model: model.to_string(),
        above_input_tokens,
        up_to_input_tokens,
        interactive,
        batch,
    })
}
