-- Apogee schema v22: the repeated-prompt summary of migration 18 per UTC day as well as per
-- hour, so the duplicate-prompt recommender reads a period's whole days as days × prompts ×
-- features (8,938 rows for the 1M demo org against 40,788 hourly ones) and only the hours at
-- its ends from usage_repeats_hourly (crates/store/src/prompt_repeats.rs).
--
-- The same columns as usage_repeats_hourly, but a day's token and cost sums may pass 64 bits
-- (24 hours of rows that each fit): each is kept in two parts, _hi (the sum divided by 10^9)
-- and _lo (its remainder, 0 ≤ _lo < 10^9), so neither overflows for any realistic count of
-- records. Tokens and costs are never negative.
CREATE TABLE usage_repeats_daily (
    org_id              TEXT    NOT NULL,
    day_ms              BIGINT  NOT NULL,
    model               TEXT    NOT NULL,
    prompt_hash         TEXT    NOT NULL,
    feature_key         TEXT    NOT NULL,
    row_count           BIGINT  NOT NULL,
    input_tokens_hi     BIGINT  NOT NULL,
    input_tokens_lo     BIGINT  NOT NULL,
    output_tokens_hi    BIGINT  NOT NULL,
    output_tokens_lo    BIGINT  NOT NULL,
    cost_nanos_hi       BIGINT  NOT NULL,
    cost_nanos_lo       BIGINT  NOT NULL,
    unpriced_rows       BIGINT  NOT NULL,
    first_ts_ms         BIGINT  NOT NULL,
    first_input_tokens  BIGINT  NOT NULL,
    first_output_tokens BIGINT  NOT NULL,
    first_cost_nanos    BIGINT,
    second_ts_ms        BIGINT,
    PRIMARY KEY (org_id, day_ms, model, prompt_hash, feature_key)
);

-- Backfill from the raw rows already stored (the prompts seen twice, as migration 18 found
-- them). The same statement rebuilds one org's rows after a delete of its usage (with
-- `AND org_id = $1` after `WHERE prompt_hash IS NOT NULL`).
INSERT INTO usage_repeats_daily
SELECT org_id, day_ms, model, prompt_hash, f, COUNT(*),
       CAST(DIV(SUM(input_tokens), 1000000000) AS BIGINT),
       CAST(MOD(SUM(input_tokens), 1000000000) AS BIGINT),
       CAST(DIV(SUM(output_tokens), 1000000000) AS BIGINT),
       CAST(MOD(SUM(output_tokens), 1000000000) AS BIGINT),
       CAST(COALESCE(DIV(SUM(cost_nanos), 1000000000), 0) AS BIGINT),
       CAST(COALESCE(MOD(SUM(cost_nanos), 1000000000), 0) AS BIGINT),
       CAST(SUM(CASE WHEN cost_nanos IS NULL THEN 1 ELSE 0 END) AS BIGINT),
       MIN(CASE WHEN rn = 1 THEN ts_ms END), MIN(CASE WHEN rn = 1 THEN input_tokens END),
       MIN(CASE WHEN rn = 1 THEN output_tokens END), MIN(CASE WHEN rn = 1 THEN cost_nanos END),
       MIN(CASE WHEN rn = 2 THEN ts_ms END)
FROM (SELECT org_id, model, prompt_hash, ts_ms - (((ts_ms % 86400000) + 86400000) % 86400000) AS day_ms,
             COALESCE(feature, '(none)') AS f, ts_ms, input_tokens, output_tokens, cost_nanos,
             ROW_NUMBER() OVER (PARTITION BY org_id, model, prompt_hash, ts_ms - (((ts_ms % 86400000) + 86400000) % 86400000),
                                             COALESCE(feature, '(none)')
                                ORDER BY ts_ms, ctid) AS rn
      FROM usage_records
      WHERE prompt_hash IS NOT NULL
        AND (org_id, model, prompt_hash) IN
            (SELECT org_id, model, prompt_hash FROM usage_prompts WHERE row_count >= 2)) AS numbered
GROUP BY org_id, day_ms, model, prompt_hash, f;
