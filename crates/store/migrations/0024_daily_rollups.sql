-- Apogee schema v24: daily usage rollups, so a period's whole UTC days read one row per
-- org × day × provider × model × user × feature (~30 × the dimension combinations for 30
-- days) instead of 24 hourly rows each. The hourly rollup (migration 4) stays the truth: the
-- daily rows are kept from it by the triggers below, in the same statement as every change to
-- an hourly row (ingest's upserts, deletes' subtractions and removals, the demo reload), so
-- whatever writes `usage_hourly` keeps the days right without knowing of them. Reads take the
-- whole days from here, the remaining whole hours from `usage_hourly`, the edges from raw rows
-- (store/src/org_usage/slice.rs). A daily sum exceeding 64 bits fails the change that would
-- make it (the hourly sums are checked before they are written, the daily ones here).

CREATE TABLE usage_daily (
    org_id              TEXT    NOT NULL,
    day_ms              BIGINT  NOT NULL,
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
    PRIMARY KEY (org_id, day_ms, provider, model, user_key, feature_key)
) WITHOUT ROWID;

-- Backfill from the hourly rollup. `%` truncates toward zero, so the day floor is written to
-- be right for any sign of hour_ms.
INSERT INTO usage_daily
SELECT org_id, hour_ms - (((hour_ms % 86400000) + 86400000) % 86400000),
       provider, model, user_key, feature_key,
       SUM(row_count), SUM(calls), SUM(input_tokens), SUM(output_tokens),
       SUM(cached_input_tokens), SUM(cost_nanos), SUM(unpriced_calls), SUM(unpriced_tokens),
       SUM(error_calls)
FROM usage_hourly
GROUP BY 1, 2, 3, 4, 5, 6;

CREATE TRIGGER usage_daily_on_insert AFTER INSERT ON usage_hourly
BEGIN
    INSERT INTO usage_daily
    VALUES (NEW.org_id, NEW.hour_ms - (((NEW.hour_ms % 86400000) + 86400000) % 86400000),
            NEW.provider, NEW.model, NEW.user_key, NEW.feature_key,
            NEW.row_count, NEW.calls, NEW.input_tokens, NEW.output_tokens,
            NEW.cached_input_tokens, NEW.cost_nanos, NEW.unpriced_calls, NEW.unpriced_tokens,
            NEW.error_calls)
    ON CONFLICT (org_id, day_ms, provider, model, user_key, feature_key) DO UPDATE SET
        row_count = usage_daily.row_count + excluded.row_count,
        calls = usage_daily.calls + excluded.calls,
        input_tokens = usage_daily.input_tokens + excluded.input_tokens,
        output_tokens = usage_daily.output_tokens + excluded.output_tokens,
        cached_input_tokens = usage_daily.cached_input_tokens + excluded.cached_input_tokens,
        cost_nanos = usage_daily.cost_nanos + excluded.cost_nanos,
        unpriced_calls = usage_daily.unpriced_calls + excluded.unpriced_calls,
        unpriced_tokens = usage_daily.unpriced_tokens + excluded.unpriced_tokens,
        error_calls = usage_daily.error_calls + excluded.error_calls;
END;

-- An hourly row changes by a delta (ingest adds, a delete subtracts); its day row exists (the
-- hourly row was counted in it when inserted) and changes by the same delta.
CREATE TRIGGER usage_daily_on_update AFTER UPDATE ON usage_hourly
BEGIN
    UPDATE usage_daily SET
        row_count = row_count + NEW.row_count - OLD.row_count,
        calls = calls + NEW.calls - OLD.calls,
        input_tokens = input_tokens + NEW.input_tokens - OLD.input_tokens,
        output_tokens = output_tokens + NEW.output_tokens - OLD.output_tokens,
        cached_input_tokens = cached_input_tokens + NEW.cached_input_tokens - OLD.cached_input_tokens,
        cost_nanos = cost_nanos + NEW.cost_nanos - OLD.cost_nanos,
        unpriced_calls = unpriced_calls + NEW.unpriced_calls - OLD.unpriced_calls,
        unpriced_tokens = unpriced_tokens + NEW.unpriced_tokens - OLD.unpriced_tokens,
        error_calls = error_calls + NEW.error_calls - OLD.error_calls
    WHERE org_id = NEW.org_id
      AND day_ms = NEW.hour_ms - (((NEW.hour_ms % 86400000) + 86400000) % 86400000)
      AND provider = NEW.provider AND model = NEW.model
      AND user_key = NEW.user_key AND feature_key = NEW.feature_key;
END;

-- A removed hourly row takes what it still holds off its day (nothing, when deletes brought
-- it to 0 first), and the day row goes once no record is left in it.
CREATE TRIGGER usage_daily_on_delete AFTER DELETE ON usage_hourly
BEGIN
    UPDATE usage_daily SET
        row_count = row_count - OLD.row_count,
        calls = calls - OLD.calls,
        input_tokens = input_tokens - OLD.input_tokens,
        output_tokens = output_tokens - OLD.output_tokens,
        cached_input_tokens = cached_input_tokens - OLD.cached_input_tokens,
        cost_nanos = cost_nanos - OLD.cost_nanos,
        unpriced_calls = unpriced_calls - OLD.unpriced_calls,
        unpriced_tokens = unpriced_tokens - OLD.unpriced_tokens,
        error_calls = error_calls - OLD.error_calls
    WHERE org_id = OLD.org_id
      AND day_ms = OLD.hour_ms - (((OLD.hour_ms % 86400000) + 86400000) % 86400000)
      AND provider = OLD.provider AND model = OLD.model
      AND user_key = OLD.user_key AND feature_key = OLD.feature_key;
    DELETE FROM usage_daily
    WHERE org_id = OLD.org_id
      AND day_ms = OLD.hour_ms - (((OLD.hour_ms % 86400000) + 86400000) % 86400000)
      AND provider = OLD.provider AND model = OLD.model
      AND user_key = OLD.user_key AND feature_key = OLD.feature_key
      AND row_count <= 0;
END;
