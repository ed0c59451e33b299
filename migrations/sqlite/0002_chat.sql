-- 1:1 conversations and their messages. A conversation is one row per user pair (user_a < user_b);
-- `last_seq` is bumped inside the inserting transaction, which both serializes concurrent senders and
-- makes `seq` gap-free: a rolled-back insert rolls its bump back too.

ALTER TABLE users ADD COLUMN last_seen_at BIGINT;

CREATE TABLE conversations (
    id            TEXT PRIMARY KEY,
    user_a        TEXT NOT NULL REFERENCES users(id),
    user_b        TEXT NOT NULL REFERENCES users(id),
    last_seq      BIGINT NOT NULL DEFAULT 0,
    last_activity BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    UNIQUE (user_a, user_b),
    CHECK (user_a < user_b)
);
CREATE INDEX conversations_user_b ON conversations (user_b);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq             BIGINT NOT NULL,
    sender_id       TEXT NOT NULL REFERENCES users(id),
    recipient_id    TEXT NOT NULL REFERENCES users(id),
    client_id       TEXT NOT NULL,
    body            BLOB NOT NULL,              -- AES-256-GCM sealed (src/crypto.rs); never plaintext
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    read_at         BIGINT,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, client_id)
);
-- Receipts touch only what is still unmarked, so these partial indexes keep marking O(new messages)
-- instead of scanning a conversation's whole history; the unread one also counts the badges.
CREATE INDEX messages_undelivered ON messages (conversation_id, recipient_id, seq) WHERE delivered_at IS NULL;
CREATE INDEX messages_unread ON messages (conversation_id, recipient_id, seq) WHERE read_at IS NULL;
