-- WebSocket tickets (PROTOCOL.md §1, §7): single-use, short-lived credentials for browsers,
-- which cannot set headers on a WebSocket. Kept in the database, not in process memory, so a
-- ticket issued by one node can be redeemed at another once they share storage.
CREATE TABLE ws_tickets (
    ticket     TEXT   PRIMARY KEY,
    org_id     TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    -- When the ticket stops being redeemable (unix milliseconds).
    expires_ms BIGINT NOT NULL,
    -- When the credential the ticket was issued for expires (unix seconds); NULL for demo
    -- identities. The connection opened with the ticket closes with 4001 at that time.
    token_exp  BIGINT
);
CREATE INDEX ws_tickets_by_expiry ON ws_tickets (expires_ms);
