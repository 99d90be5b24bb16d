-- The append-only event log. `tx_id` is the writing transaction's id: readers resume
-- after a (tx_id, position) cursor and only read transactions older than every
-- transaction still in flight, so an event that commits late is never skipped.
CREATE TABLE events (
    position       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id          BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    stream_id      UUID NOT NULL,
    stream_version BIGINT NOT NULL,
    event_type     TEXT NOT NULL,
    event_version  SMALLINT NOT NULL,
    payload        JSONB NOT NULL,
    actor_id       UUID,
    occurred_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_tx_position_idx ON events (tx_id, position);

-- Projection: users.
CREATE TABLE users (
    id         UUID PRIMARY KEY,
    email      TEXT NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    disabled   BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

-- Projection: conversations.
CREATE TABLE conversations (
    id            UUID PRIMARY KEY,
    owner_id      UUID NOT NULL,
    title         TEXT NOT NULL,
    model_id      TEXT,
    system_prompt TEXT,
    status        TEXT NOT NULL,
    archived      BOOLEAN NOT NULL,
    message_count BIGINT NOT NULL,
    version       BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX conversations_owner_list_idx ON conversations (owner_id, archived, updated_at DESC, id DESC);

-- Projection: messages.
CREATE TABLE messages (
    id              UUID PRIMARY KEY,
    conversation_id UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    role            TEXT NOT NULL,
    content         TEXT NOT NULL,
    author_id       UUID,
    created_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq)
);

-- State, not projections: secrets never enter the event log.
CREATE TABLE password_credentials (
    user_id       UUID PRIMARY KEY,
    password_hash TEXT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE sessions (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL,
    token_hash   BYTEA NOT NULL,
    user_agent   TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT sessions_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
