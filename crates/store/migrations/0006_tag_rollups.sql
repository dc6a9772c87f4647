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
) WITHOUT ROWID;
-- The key leads with the tag key: a question reads one key's hours as one range.

-- Backfill from the raw rows already stored (each record's tags, one row per key).
INSERT INTO usage_hourly_tags
SELECT r.org_id, je.key,
       r.ts_ms - (((r.ts_ms % 3600000) + 3600000) % 3600000),
       je.value, r.provider, r.model,
       COALESCE(r.user_name, '(none)'), COALESCE(r.feature, '(none)'),
       COUNT(*),
       SUM(r.request_count), SUM(r.input_tokens), SUM(r.output_tokens), SUM(r.cached_input_tokens),
       COALESCE(SUM(r.cost_nanos), 0),
       SUM(CASE WHEN r.cost_nanos IS NULL THEN r.request_count ELSE 0 END),
       SUM(CASE WHEN r.cost_nanos IS NULL THEN r.input_tokens + r.output_tokens ELSE 0 END),
       SUM(CASE WHEN r.status <> 'ok' THEN r.request_count ELSE 0 END)
FROM usage_records AS r, json_each(r.tags) AS je
WHERE r.tags IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
