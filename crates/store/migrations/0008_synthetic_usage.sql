-- Apogee schema v8: synthetic usage is marked by the demo loader, never by a client. Only the
-- loader sets `synthetic`; ingest of client records (REST, OTLP, `apogee ingest`) leaves it
-- FALSE, so reloading the demo history deletes only what a loader stored, whatever a
-- client's request ids look like. Written in the SQL common to SQLite and PostgreSQL.

ALTER TABLE usage_records ADD COLUMN synthetic BOOLEAN NOT NULL DEFAULT FALSE;

-- Rows stored before this version: those shaped like the demo generator's output (request id
-- `demo-{seed}-{index}`, user `demo-user-NN` or none) were stored by the loader. The loader
-- before this version replaced every `demo-` request id, so this marks no row it would have
-- spared, and without it a reload would keep the old history as "duplicates".
UPDATE usage_records SET synthetic = TRUE
 WHERE request_id LIKE 'demo-%-%'
   AND (user_name IS NULL OR user_name LIKE 'demo-user-%');

-- Finds an org's synthetic rows for a reload without touching its real ones.
CREATE INDEX usage_synthetic_by_org ON usage_records (org_id) WHERE synthetic;
