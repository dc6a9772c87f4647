-- The data version of each org's usage: bumped in every transaction that changes the org's
-- usage records (and so its rollups), so cached analyses know when they are out of date.
CREATE TABLE usage_versions (
    org_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
