-- Apogee schema v1. Written in the SQL common to SQLite and PostgreSQL.

-- Per-user stream heads: seq assignment is an upsert on this row inside the transaction that
-- inserts the event, so seqs stay contiguous whichever process writes.
CREATE TABLE user_streams (
    org_id   TEXT    NOT NULL,
    user_id  TEXT    NOT NULL,
    head_seq BIGINT  NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE events (
    org_id    TEXT   NOT NULL,
    user_id   TEXT   NOT NULL,
    seq       BIGINT NOT NULL,
    run_id    TEXT,
    thread_id TEXT   NOT NULL,
    ts_ms     BIGINT NOT NULL,
    payload   TEXT   NOT NULL,
    PRIMARY KEY (org_id, user_id, seq)
);
CREATE INDEX events_by_run ON events (run_id, seq);

CREATE TABLE threads (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    title      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX threads_by_owner ON threads (org_id, user_id, updated_ms);

CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    thread_id     TEXT NOT NULL,
    org_id        TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    role          TEXT NOT NULL,
    content       TEXT NOT NULL,
    client_msg_id TEXT,
    run_id        TEXT,
    created_at    TEXT NOT NULL,
    created_ms    BIGINT NOT NULL
);
CREATE UNIQUE INDEX messages_by_client_id ON messages (org_id, user_id, client_msg_id);
CREATE INDEX messages_by_thread ON messages (thread_id, created_ms);

CREATE TABLE runs (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    thread_id  TEXT NOT NULL,
    message_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at   TEXT
);
CREATE INDEX runs_by_status ON runs (status);

CREATE TABLE usage_records (
    org_id              TEXT    NOT NULL,
    request_id          TEXT,
    ts_ms               BIGINT  NOT NULL,
    provider            TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    input_tokens        BIGINT  NOT NULL,
    output_tokens       BIGINT  NOT NULL,
    cached_input_tokens BIGINT  NOT NULL,
    latency_ms          BIGINT,
    user_name           TEXT,
    feature             TEXT,
    prompt_hash         TEXT,
    batch               BOOLEAN NOT NULL,
    status              TEXT    NOT NULL,
    cost_nanos          BIGINT,
    price_source        TEXT,
    UNIQUE (org_id, request_id)
);
CREATE INDEX usage_by_org_ts ON usage_records (org_id, ts_ms);
CREATE INDEX usage_by_org_model_ts ON usage_records (org_id, model, ts_ms);
