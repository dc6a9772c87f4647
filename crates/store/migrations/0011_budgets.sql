-- Budgets and their alerts (docs/protocol-notes.md, "Budgets and alerts").
--
-- A budget is an amount of spend per calendar month, week or day for the org or one slice of
-- its usage (`scope`: the engine's filters as JSON). `revision` moves when what the budget
-- measures changes (amount, period, scope, thresholds), so a changed budget alerts afresh.
CREATE TABLE budgets (
    id             TEXT   PRIMARY KEY,
    org_id         TEXT   NOT NULL,
    name           TEXT   NOT NULL,
    amount_nanos   BIGINT NOT NULL,
    -- `month`, `week` (Monday 00:00 UTC) or `day`, UTC calendar periods.
    period         TEXT   NOT NULL,
    scope          TEXT   NOT NULL,
    -- JSON array of whole percents, ascending, e.g. [50, 80, 100].
    thresholds     TEXT   NOT NULL,
    -- 1: also alert once a period when the forecast for its end exceeds the amount.
    forecast_alert BIGINT NOT NULL,
    revision       BIGINT NOT NULL,
    created_by     TEXT   NOT NULL,
    created_at     TEXT   NOT NULL,
    updated_at     TEXT   NOT NULL
);
CREATE INDEX budgets_by_org ON budgets (org_id, created_at);

-- One row per crossing that fired. The primary key is what makes a crossing fire exactly
-- once, whichever node sees it first and however often it is evaluated: the row is inserted
-- with ON CONFLICT DO NOTHING in the same transaction as the alert's events.
CREATE TABLE budget_alerts (
    budget_id    TEXT   NOT NULL,
    revision     BIGINT NOT NULL,
    -- First day of the calendar period, YYYY-MM-DD (UTC).
    period_start TEXT   NOT NULL,
    -- A percent (`50`, `80`, `100`) or `forecast`.
    crossing     TEXT   NOT NULL,
    org_id       TEXT   NOT NULL,
    fired_ms     BIGINT NOT NULL,
    -- The alert as sent in `budget_alert` events (JSON).
    alert        TEXT   NOT NULL,
    PRIMARY KEY (budget_id, revision, period_start, crossing)
);
CREATE INDEX budget_alerts_by_org ON budget_alerts (org_id, fired_ms);

-- The people of an org, as far as the server knows them: users recorded when they open a
-- live connection or manage budgets. Alerts go to each member's stream.
CREATE TABLE org_members (
    org_id        TEXT   NOT NULL,
    user_id       TEXT   NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
