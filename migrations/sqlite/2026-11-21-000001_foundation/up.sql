-- The append-only event log. SQLite has one writer at a time, so positions commit in
-- order and `tx_id` stays 0; the (tx_id, position) cursor is shared with PostgreSQL.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id          BIGINT NOT NULL DEFAULT 0,
    stream_id      TEXT NOT NULL,
    stream_version BIGINT NOT NULL,
    event_type     TEXT NOT NULL,
    event_version  SMALLINT NOT NULL,
    payload        BLOB NOT NULL,
    actor_id       TEXT,
    occurred_at    TEXT NOT NULL,
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_tx_position_idx ON events (tx_id, position);

CREATE TABLE users (
    id         TEXT PRIMARY KEY NOT NULL,
    email      TEXT NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    disabled   BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE conversations (
    id            TEXT PRIMARY KEY NOT NULL,
    owner_id      TEXT NOT NULL,
    title         TEXT NOT NULL,
    model_id      TEXT,
    system_prompt TEXT,
    status        TEXT NOT NULL,
    archived      BOOLEAN NOT NULL,
    message_count BIGINT NOT NULL,
    version       BIGINT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX conversations_owner_list_idx ON conversations (owner_id, archived, updated_at DESC, id DESC);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    role            TEXT NOT NULL,
    content         TEXT NOT NULL,
    author_id       TEXT,
    created_at      TEXT NOT NULL,
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq)
);

CREATE TABLE password_credentials (
    user_id       TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    token_hash   BLOB NOT NULL,
    user_agent   TEXT,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    CONSTRAINT sessions_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
