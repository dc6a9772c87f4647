-- Browser sign-in through OpenID Connect (docs/security.md, "Browser sessions").
--
-- A signed-in browser holds a random secret in an HttpOnly cookie; the row is keyed by the
-- secret's SHA-256, so reading this table does not hand out usable cookies. Rows live in the
-- database, not in process memory, so every node sharing it accepts the cookie, and deleting
-- the row (sign-out, sign-out everywhere) ends the session on all of them.
CREATE TABLE web_sessions (
    id         TEXT   PRIMARY KEY,
    org_id     TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    -- What the top bar shows: the provider's `name` (or the best claim there was), and email.
    name       TEXT   NOT NULL,
    email      TEXT,
    -- Sent back in `X-CSRF-Token` on every API call made with the cookie.
    csrf_token TEXT   NOT NULL,
    created_ms BIGINT NOT NULL,
    -- Unix milliseconds after which the cookie is refused, whatever the browser still holds.
    expires_ms BIGINT NOT NULL
);
CREATE INDEX web_sessions_by_user ON web_sessions (org_id, user_id, created_ms);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_ms);

-- Sign-ins in progress: between the redirect to the provider and its redirect back. Keyed by
-- the SHA-256 of a random value kept in the browser's short-lived login cookie, so the
-- callback only completes in the browser that started it (no login CSRF); taken once.
CREATE TABLE oidc_logins (
    id            TEXT   PRIMARY KEY,
    state         TEXT   NOT NULL,
    nonce         TEXT   NOT NULL,
    pkce_verifier TEXT   NOT NULL,
    expires_ms    BIGINT NOT NULL
);
CREATE INDEX oidc_logins_by_expiry ON oidc_logins (expires_ms);

-- A ticket bought with a browser session remembers it, so signing that session out also
-- ends the WebSocket connection the ticket opened.
ALTER TABLE ws_tickets ADD COLUMN web_session TEXT;
