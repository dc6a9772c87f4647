-- Webhooks per org and their delivery outbox (docs/protocol-notes.md, "Webhooks").
--
-- A delivery row is inserted in the same transaction that claims a budget crossing, so each
-- crossing is delivered to each webhook exactly once: nodes take due rows with a lease
-- (`leased_until_ms`), post them, and mark them delivered, or retry later with backoff.
CREATE TABLE webhooks (
    id         TEXT   PRIMARY KEY,
    org_id     TEXT   NOT NULL,
    url        TEXT   NOT NULL,
    -- `slack`, `teams` or `json`: the body's shape.
    format     TEXT   NOT NULL,
    -- Key of the HMAC-SHA256 signature header; shown once, at creation.
    secret     TEXT   NOT NULL,
    created_by TEXT   NOT NULL,
    created_at TEXT   NOT NULL
);
CREATE INDEX webhooks_by_org ON webhooks (org_id, created_at);

CREATE TABLE webhook_deliveries (
    id              TEXT   PRIMARY KEY,
    webhook_id      TEXT   NOT NULL,
    org_id          TEXT   NOT NULL,
    -- The `budget_alert`'s `id`.
    alert_id        TEXT   NOT NULL,
    -- The alert as JSON; the body is rendered for the webhook's format when posted.
    alert           TEXT   NOT NULL,
    -- `pending`, `delivered` or `failed` (gave up after the last attempt).
    status          TEXT   NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    leased_until_ms BIGINT NOT NULL,
    last_error      TEXT,
    created_ms      BIGINT NOT NULL,
    done_ms         BIGINT,
    UNIQUE (webhook_id, alert_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_ms);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_ms);
