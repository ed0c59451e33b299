-- Users, sessions, one-time passwords, contacts and blocks. Times are Unix milliseconds (BIGINT) so that
-- both backends store them the same way; the application formats them as RFC 3339.

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    phone          TEXT UNIQUE,                 -- E.164; NULL once the account is deleted
    display_name   TEXT NOT NULL DEFAULT '',
    avatar_version BIGINT,                      -- NULL: no avatar; else bumps on every upload (cache busting)
    created_at     BIGINT NOT NULL,
    deleted_at     BIGINT
);

CREATE TABLE avatars (
    user_id      TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    content_type TEXT NOT NULL,
    data         BYTEA NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE otp_codes (
    phone      TEXT PRIMARY KEY,
    code_hash  BYTEA NOT NULL,                   -- HMAC-SHA256(server key, phone || code): never the code
    expires_at BIGINT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    sent_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    revoked_at   BIGINT,
    user_agent   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,                -- SHA-256 of the opaque token
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    used_at    BIGINT                           -- set on rotation; presenting it again revokes the session
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE contacts (
    id         TEXT PRIMARY KEY,
    owner_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    phone      TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (owner_id, phone)
);
CREATE INDEX contacts_phone ON contacts (phone);

CREATE TABLE blocks (
    blocker_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    blocked_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id);
