-- Apogee schema v6: hourly usage rollups per tag, kept at ingest in the same transaction as
-- the raw insert (and decremented by deletes), like `usage_hourly` (v4), so a question about
-- one tag ("the growth team", `GET /api/costs?tag.team=growth`, `group_by=tag:team`) reads
-- hours instead of every call's tags JSON. One row per org × tag key × UTC hour × tag value ×
-- provider × model × user × feature, for the records carrying that tag; records without it
-- are `usage_hourly` less these rows (crates/store/src/org_usage/slice.rs).

CREATE TABLE usage_hourly_tags (
    org_id              TEXT    NOT NULL,
    tag_key             TEXT    NOT NULL,
    hour_ms             BIGINT  NOT NULL,
    tag_value           TEXT    NOT NULL,
    provider            TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    user_key            TEXT    NOT NULL,
    feature_key         TEXT    NOT NULL,
    row_count           BIGINT  NOT NULL,
    calls               BIGINT  NOT NULL,
    input_tokens        BIGINT  NOT NULL,
    output_tokens       BIGINT  NOT NULL,
    cached_input_tokens BIGINT  NOT NULL,
    cost_nanos          BIGINT  NOT NULL,
    unpriced_calls      BIGINT  NOT NULL,
    unpriced_tokens     BIGINT  NOT NULL,
    error_calls         BIGINT  NOT NULL,
    PRIMARY KEY (org_id, tag_key, hour_ms, tag_value, provider, model, user_key, feature_key)
);
-- (The SQLite version is WITHOUT ROWID.) The key leads with the tag key: a question reads one
-- key's hours as one range.

-- Backfill from the raw rows already stored (each record's tags, one row per key). SUM of
-- BIGINT is NUMERIC here, hence the casts.
INSERT INTO usage_hourly_tags
SELECT r.org_id, je.key,
       r.ts_ms - (((r.ts_ms % 3600000) + 3600000) % 3600000),
       je.value, r.provider, r.model,
       COALESCE(r.user_name, '(none)'), COALESCE(r.feature, '(none)'),
       COUNT(*),
       CAST(SUM(r.request_count) AS BIGINT), CAST(SUM(r.input_tokens) AS BIGINT),
       CAST(SUM(r.output_tokens) AS BIGINT), CAST(SUM(r.cached_input_tokens) AS BIGINT),
       CAST(COALESCE(SUM(r.cost_nanos), 0) AS BIGINT),
       CAST(SUM(CASE WHEN r.cost_nanos IS NULL THEN r.request_count ELSE 0 END) AS BIGINT),
       CAST(SUM(CASE WHEN r.cost_nanos IS NULL THEN r.input_tokens + r.output_tokens ELSE 0 END) AS BIGINT),
       CAST(SUM(CASE WHEN r.status <> 'ok' THEN r.request_count ELSE 0 END) AS BIGINT)
FROM usage_records AS r, json_each_text(CAST(r.tags AS json)) AS je
WHERE r.tags IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
