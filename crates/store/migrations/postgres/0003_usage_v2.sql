-- Apogee schema v3: usage records v2. Version 2 is kept for another migration; the runner
-- applies every version that is missing, in order, so either may land first.
-- Token columns follow the canonical convention (docs/protocol-notes.md): cache reads and
-- writes are parts of input_tokens, reasoning tokens a part of output_tokens.

ALTER TABLE usage_records ADD COLUMN cache_creation_input_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN reasoning_tokens BIGINT;
ALTER TABLE usage_records ADD COLUMN stream BOOLEAN;
ALTER TABLE usage_records ADD COLUMN finish_reason TEXT;
ALTER TABLE usage_records ADD COLUMN max_tokens BIGINT;
-- A JSON object of string tags, or NULL.
ALTER TABLE usage_records ADD COLUMN tags TEXT;
-- Calls the row stands for: 1, or more for an aggregate such as an OpenAI usage bucket.
ALTER TABLE usage_records ADD COLUMN request_count BIGINT NOT NULL DEFAULT 1;
