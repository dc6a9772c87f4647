-- Apogee schema v5: node leases. Each server node registers itself and heartbeats; a run
-- records the node executing it, so when a node stops heartbeating another can claim its
-- runs ("runs survive their node"). Written in the SQL common to SQLite and PostgreSQL.

CREATE TABLE nodes (
    node_id      TEXT   PRIMARY KEY,
    started_ms   BIGINT NOT NULL,
    -- Unix milliseconds of the node's last heartbeat: it is live while this is recent.
    heartbeat_ms BIGINT NOT NULL
);

-- The node executing the run; NULL for runs stored before this migration.
ALTER TABLE runs ADD COLUMN node_id TEXT;
