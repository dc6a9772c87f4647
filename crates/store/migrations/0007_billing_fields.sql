-- Apogee schema v7: what decides a call's price beyond its tokens, kept with the raw record.
-- The runner applies every missing version in order, so this may land before or after others.

-- The service tier the provider served the call on (`default`, `priority`, `flex`, `scale`,
-- …), lower-cased as reported; NULL when not reported (standard prices).
ALTER TABLE usage_records ADD COLUMN service_tier TEXT;
-- The part of cache_creation_input_tokens written with a 1-hour TTL (the cache TTL split:
-- Anthropic bills 1-hour writes at 2 × input, 5-minute ones at 1.25 ×).
ALTER TABLE usage_records ADD COLUMN cache_creation_1h_input_tokens BIGINT NOT NULL DEFAULT 0;
-- The width in seconds of the time bucket an aggregated record sums (an OpenAI usage-export
-- bucket starting at ts_ms); NULL for a record of calls at ts_ms. Heuristics that read the
-- time of day skip records with it, or with request_count above 1.
ALTER TABLE usage_records ADD COLUMN bucket_seconds BIGINT;
