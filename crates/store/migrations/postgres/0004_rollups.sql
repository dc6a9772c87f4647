-- Apogee schema v4: hourly usage rollups, kept at ingest in the same transaction as the raw
-- insert (and decremented by deletes), so period breakdowns read hours instead of raw rows.
-- One row per org × UTC hour × provider × model × user × feature. A missing user or feature
-- is stored as its breakdown key `(none)`, which is what every breakdown groups it under.
-- Sums follow the queries' semantics (crates/analytics/src/memory.rs): `calls` is the sum of
-- request_count; cost sums priced rows only; unpriced calls and tokens are counted apart.

CREATE TABLE usage_hourly (
    org_id              TEXT    NOT NULL,
    hour_ms             BIGINT  NOT NULL,
    provider            TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    user_key            TEXT    NOT NULL,
    feature_key         TEXT    NOT NULL,
    -- Raw rows folded in; the rollup row is removed when deletes bring it to 0.
    row_count           BIGINT  NOT NULL,
    calls               BIGINT  NOT NULL,
    input_tokens        BIGINT  NOT NULL,
    output_tokens       BIGINT  NOT NULL,
    cached_input_tokens BIGINT  NOT NULL,
    cost_nanos          BIGINT  NOT NULL,
    unpriced_calls      BIGINT  NOT NULL,
    unpriced_tokens     BIGINT  NOT NULL,
    error_calls         BIGINT  NOT NULL,
    PRIMARY KEY (org_id, hour_ms, provider, model, user_key, feature_key)
);
-- (The SQLite version is WITHOUT ROWID; PostgreSQL has no such table layout.)

-- Backfill from the raw rows already stored. `%` truncates toward zero (as in SQLite), so the
-- hour floor is written to be right for any sign of ts_ms. SUM of BIGINT is NUMERIC here,
-- hence the casts.
INSERT INTO usage_hourly
SELECT org_id,
       ts_ms - (((ts_ms % 3600000) + 3600000) % 3600000) AS hour_ms,
       provider, model,
       COALESCE(user_name, '(none)'), COALESCE(feature, '(none)'),
       COUNT(*),
       CAST(SUM(request_count) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT),
       CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(cached_input_tokens) AS BIGINT),
       CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT),
       CAST(SUM(CASE WHEN cost_nanos IS NULL THEN request_count ELSE 0 END) AS BIGINT),
       CAST(SUM(CASE WHEN cost_nanos IS NULL THEN input_tokens + output_tokens ELSE 0 END) AS BIGINT),
       CAST(SUM(CASE WHEN status <> 'ok' THEN request_count ELSE 0 END) AS BIGINT)
FROM usage_records
GROUP BY 1, 2, 3, 4, 5, 6;
