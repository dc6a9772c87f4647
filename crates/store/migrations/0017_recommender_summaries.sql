-- Apogee schema v17: what the optimization agent's recommenders need, kept at ingest beside
-- the hourly rollups (in the same transaction as the raw insert, and taken away by deletes),
-- so a recommendation reads hours of summaries instead of every call
-- (crates/store/src/summaries.rs; ARCHITECTURE.md "Reading usage"). Both tables hold only
-- records priced from the catalog (`price_source` set and not `client`): the recommenders
-- reprice with catalog prices, so a client-sent cost says nothing to them.
--
-- usage_mix_hourly: the token mix (calls, fresh and cached input, output, cost) per org × UTC
-- hour × model × feature × batch flag × per-call class × short flag × long-prompt band.
--   per_call: 0 an aggregated record (request_count <> 1); 1 a single call in a time bucket
--     (bucket_seconds set); 2 a single call with its own timestamp.
--   short: 1 when input <= 1,000 and output <= 300 tokens per call (the right-sizing limits,
--     `ShortLimits::default()`; written `(tokens - 1) / limit < request_count`, which is the
--     same for counts >= 0 and cannot overflow), 0 otherwise.
--   long_input: 0 when the per-call prompt (input_tokens / request_count) is at most 100,000
--     tokens, otherwise that prompt length in hundreds of tokens, rounded up: context-tier
--     bands whose bounds are multiples of 100 above 100,000 tokens are read exactly.
CREATE TABLE usage_mix_hourly (
    org_id              TEXT    NOT NULL,
    hour_ms             BIGINT  NOT NULL,
    model               TEXT    NOT NULL,
    feature_key         TEXT    NOT NULL,
    batch               BIGINT  NOT NULL,
    per_call            BIGINT  NOT NULL,
    short               BIGINT  NOT NULL,
    long_input          BIGINT  NOT NULL,
    row_count           BIGINT  NOT NULL,
    calls               BIGINT  NOT NULL,
    fresh_input_tokens  BIGINT  NOT NULL,
    cached_input_tokens BIGINT  NOT NULL,
    output_tokens       BIGINT  NOT NULL,
    cost_nanos          BIGINT  NOT NULL,
    PRIMARY KEY (org_id, hour_ms, model, feature_key, batch, per_call, short, long_input)
) WITHOUT ROWID;

-- usage_output_daily: how long single-call outputs run (request_count = 1), per org × UTC day
-- × model × feature × output length, interactive and batch apart. Exact lengths, so output
-- caps are the exact percentile; by day rather than hour because lengths spread wide (a
-- day of a model and feature holds at most one row per distinct length).
CREATE TABLE usage_output_daily (
    org_id              TEXT    NOT NULL,
    day_ms              BIGINT  NOT NULL,
    model               TEXT    NOT NULL,
    feature_key         TEXT    NOT NULL,
    output_tokens       BIGINT  NOT NULL,
    interactive_calls   BIGINT  NOT NULL,
    batch_calls         BIGINT  NOT NULL,
    PRIMARY KEY (org_id, day_ms, model, feature_key, output_tokens)
) WITHOUT ROWID;
-- Backfill from the raw rows already stored. `%` truncates toward zero in SQLite, so the
-- hour and day floors are written to be right for any sign of ts_ms.
INSERT INTO usage_mix_hourly
SELECT org_id, ts_ms - (((ts_ms % 3600000) + 3600000) % 3600000),
       model, COALESCE(feature, '(none)'),
       CASE WHEN batch THEN 1 ELSE 0 END,
       CASE WHEN request_count <> 1 THEN 0 WHEN bucket_seconds IS NOT NULL THEN 1 ELSE 2 END,
       CASE WHEN (input_tokens - 1) / 1000 < request_count
             AND (output_tokens - 1) / 300 < request_count THEN 1 ELSE 0 END,
       CASE WHEN input_tokens / request_count > 100000
            THEN (input_tokens / request_count + 99) / 100 ELSE 0 END,
       COUNT(*), SUM(request_count), SUM(input_tokens - cached_input_tokens),
       SUM(cached_input_tokens), SUM(output_tokens), COALESCE(SUM(cost_nanos), 0)
FROM usage_records
WHERE price_source IS NOT NULL AND price_source <> 'client'
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;

INSERT INTO usage_output_daily
SELECT org_id, ts_ms - (((ts_ms % 86400000) + 86400000) % 86400000),
       model, COALESCE(feature, '(none)'), output_tokens,
       SUM(CASE WHEN batch THEN 0 ELSE 1 END), SUM(CASE WHEN batch THEN 1 ELSE 0 END)
FROM usage_records
WHERE price_source IS NOT NULL AND price_source <> 'client' AND request_count = 1
GROUP BY 1, 2, 3, 4, 5;
