-- Apogee schema v24 (PostgreSQL; the SQLite version is 0024_daily_rollups.sql): daily usage rollups, so a period's whole UTC days read one row per
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
);

-- Backfill from the hourly rollup (SUM of BIGINT is NUMERIC here: cast back). `%` truncates toward zero, so the day floor is written to
-- be right for any sign of hour_ms.
INSERT INTO usage_daily
SELECT org_id, hour_ms - (((hour_ms % 86400000) + 86400000) % 86400000),
       provider, model, user_key, feature_key,
       SUM(row_count)::BIGINT, SUM(calls)::BIGINT, SUM(input_tokens)::BIGINT,
       SUM(output_tokens)::BIGINT, SUM(cached_input_tokens)::BIGINT, SUM(cost_nanos)::BIGINT,
       SUM(unpriced_calls)::BIGINT, SUM(unpriced_tokens)::BIGINT, SUM(error_calls)::BIGINT
FROM usage_hourly
GROUP BY 1, 2, 3, 4, 5, 6;

-- One trigger function for every change to an hourly row: an insert adds the row to its day,
-- an update adds its delta (ingest adds, a delete subtracts), a removal takes what the row
-- still held (nothing, when deletes brought it to 0 first) and drops the day row once no
-- record is left in it.
CREATE FUNCTION usage_daily_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d usage_hourly%ROWTYPE;
    sign BIGINT := 1;
BEGIN
    IF TG_OP = 'DELETE' THEN
        d := OLD;
        sign := -1;
    ELSE
        d := NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        d.row_count := NEW.row_count - OLD.row_count;
        d.calls := NEW.calls - OLD.calls;
        d.input_tokens := NEW.input_tokens - OLD.input_tokens;
        d.output_tokens := NEW.output_tokens - OLD.output_tokens;
        d.cached_input_tokens := NEW.cached_input_tokens - OLD.cached_input_tokens;
        d.cost_nanos := NEW.cost_nanos - OLD.cost_nanos;
        d.unpriced_calls := NEW.unpriced_calls - OLD.unpriced_calls;
        d.unpriced_tokens := NEW.unpriced_tokens - OLD.unpriced_tokens;
        d.error_calls := NEW.error_calls - OLD.error_calls;
    END IF;
    INSERT INTO usage_daily AS u
    VALUES (d.org_id, d.hour_ms - (((d.hour_ms % 86400000) + 86400000) % 86400000),
            d.provider, d.model, d.user_key, d.feature_key,
            sign * d.row_count, sign * d.calls, sign * d.input_tokens, sign * d.output_tokens,
            sign * d.cached_input_tokens, sign * d.cost_nanos, sign * d.unpriced_calls,
            sign * d.unpriced_tokens, sign * d.error_calls)
    ON CONFLICT (org_id, day_ms, provider, model, user_key, feature_key) DO UPDATE SET
        row_count = u.row_count + excluded.row_count,
        calls = u.calls + excluded.calls,
        input_tokens = u.input_tokens + excluded.input_tokens,
        output_tokens = u.output_tokens + excluded.output_tokens,
        cached_input_tokens = u.cached_input_tokens + excluded.cached_input_tokens,
        cost_nanos = u.cost_nanos + excluded.cost_nanos,
        unpriced_calls = u.unpriced_calls + excluded.unpriced_calls,
        unpriced_tokens = u.unpriced_tokens + excluded.unpriced_tokens,
        error_calls = u.error_calls + excluded.error_calls;
    IF TG_OP = 'DELETE' THEN
        DELETE FROM usage_daily
        WHERE org_id = d.org_id
          AND day_ms = d.hour_ms - (((d.hour_ms % 86400000) + 86400000) % 86400000)
          AND provider = d.provider AND model = d.model
          AND user_key = d.user_key AND feature_key = d.feature_key
          AND row_count <= 0;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER usage_daily_kept AFTER INSERT OR UPDATE OR DELETE ON usage_hourly
    FOR EACH ROW EXECUTE FUNCTION usage_daily_apply();
