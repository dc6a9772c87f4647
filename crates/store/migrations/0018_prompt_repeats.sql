-- Apogee schema v18: what the duplicate-prompt recommender (a response cache) needs, kept at
-- ingest so it reads the repeated prompts' hours instead of every call's prompt_hash
-- (crates/store/src/summaries.rs, "Repeated prompts"; ARCHITECTURE.md "Reading usage").
--
-- usage_prompts: every (org, model, prompt_hash) seen, with its number of records; while
-- that number is 1, the lone call itself (its time, feature, tokens and cost), which ingest
-- moves into usage_repeats_hourly when a second call of the prompt arrives.
CREATE TABLE usage_prompts (
    org_id              TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    prompt_hash         TEXT    NOT NULL,
    row_count           BIGINT  NOT NULL,
    lone_ts_ms          BIGINT,
    lone_feature_key    TEXT,
    lone_input_tokens   BIGINT,
    lone_output_tokens  BIGINT,
    lone_cost_nanos     BIGINT,
    PRIMARY KEY (org_id, model, prompt_hash)
) WITHOUT ROWID;

-- usage_repeats_hourly: the records of prompts seen at least twice (ever), per org × UTC hour
-- × model × prompt_hash × feature: their sums, and the row's first call (by time, then
-- insertion) with its tokens and cost, and the time of its second call, so a period's first
-- and second call of each prompt are known without the raw rows.
CREATE TABLE usage_repeats_hourly (
    org_id              TEXT    NOT NULL,
    hour_ms             BIGINT  NOT NULL,
    model               TEXT    NOT NULL,
    prompt_hash         TEXT    NOT NULL,
    feature_key         TEXT    NOT NULL,
    row_count           BIGINT  NOT NULL,
    input_tokens        BIGINT  NOT NULL,
    output_tokens       BIGINT  NOT NULL,
    cost_nanos          BIGINT  NOT NULL,
    unpriced_rows       BIGINT  NOT NULL,
    first_ts_ms         BIGINT  NOT NULL,
    first_input_tokens  BIGINT  NOT NULL,
    first_output_tokens BIGINT  NOT NULL,
    first_cost_nanos    BIGINT,
    second_ts_ms        BIGINT,
    PRIMARY KEY (org_id, hour_ms, model, prompt_hash, feature_key)
) WITHOUT ROWID;

-- Backfill from the raw rows already stored. The same two statements rebuild one org's rows
-- after a delete of its usage (with `AND org_id = $1` after `WHERE prompt_hash IS NOT NULL`).
INSERT INTO usage_prompts
SELECT org_id, model, prompt_hash, COUNT(*),
       CASE WHEN COUNT(*) = 1 THEN MIN(ts_ms) END,
       CASE WHEN COUNT(*) = 1 THEN MIN(COALESCE(feature, '(none)')) END,
       CASE WHEN COUNT(*) = 1 THEN MIN(input_tokens) END,
       CASE WHEN COUNT(*) = 1 THEN MIN(output_tokens) END,
       CASE WHEN COUNT(*) = 1 THEN MIN(cost_nanos) END
FROM usage_records
WHERE prompt_hash IS NOT NULL
GROUP BY org_id, model, prompt_hash;

INSERT INTO usage_repeats_hourly
SELECT org_id, hour_ms, model, prompt_hash, f,
       COUNT(*), SUM(input_tokens), SUM(output_tokens), COALESCE(SUM(cost_nanos), 0),
       SUM(CASE WHEN cost_nanos IS NULL THEN 1 ELSE 0 END),
       MIN(CASE WHEN rn = 1 THEN ts_ms END), MIN(CASE WHEN rn = 1 THEN input_tokens END),
       MIN(CASE WHEN rn = 1 THEN output_tokens END), MIN(CASE WHEN rn = 1 THEN cost_nanos END),
       MIN(CASE WHEN rn = 2 THEN ts_ms END)
FROM (SELECT org_id, model, prompt_hash, ts_ms - (((ts_ms % 3600000) + 3600000) % 3600000) AS hour_ms,
             COALESCE(feature, '(none)') AS f, ts_ms, input_tokens, output_tokens, cost_nanos,
             ROW_NUMBER() OVER (PARTITION BY org_id, model, prompt_hash, ts_ms - (((ts_ms % 3600000) + 3600000) % 3600000),
                                             COALESCE(feature, '(none)')
                                ORDER BY ts_ms, rowid) AS rn
      FROM usage_records
      WHERE prompt_hash IS NOT NULL
        AND (org_id, model, prompt_hash) IN
            (SELECT org_id, model, prompt_hash FROM usage_prompts WHERE row_count >= 2)) AS numbered
GROUP BY org_id, hour_ms, model, prompt_hash, f;
