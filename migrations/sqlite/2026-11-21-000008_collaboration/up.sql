-- Forks: where a conversation was forked from.
ALTER TABLE conversations ADD COLUMN forked_from_id TEXT;
ALTER TABLE conversations ADD COLUMN fork_message_id TEXT;
CREATE INDEX conversations_forked_from_idx ON conversations (forked_from_id);

-- Projection: the conversations whose messages each conversation shows, itself
-- included, with the last sequence number it shows of each. A fork inherits its
-- history through these rows instead of copies of the messages.
CREATE TABLE conversation_lineage (
    id              TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL,
    ancestor_id     TEXT NOT NULL,
    until_seq       BIGINT NOT NULL
);
CREATE INDEX conversation_lineage_conversation_idx ON conversation_lineage (conversation_id);
CREATE INDEX conversation_lineage_ancestor_idx ON conversation_lineage (ancestor_id);
INSERT INTO conversation_lineage (id, conversation_id, ancestor_id, until_seq)
    SELECT id, id, id, 9223372036854775807 FROM conversations;

-- Projection: who each conversation is shared with. One row per (conversation, user or
-- group); `role` is `viewer`, `editor`, `revoked`, or `left` (a user who left).
CREATE TABLE conversation_access (
    id              TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id         TEXT,
    group_id        TEXT,
    role            TEXT NOT NULL,
    granted_by      TEXT,
    updated_at      TEXT NOT NULL
);
CREATE INDEX conversation_access_conversation_idx ON conversation_access (conversation_id);
CREATE INDEX conversation_access_user_idx ON conversation_access (user_id);
CREATE INDEX conversation_access_group_idx ON conversation_access (group_id);

-- Projections: groups and their members (`active` false once removed).
CREATE TABLE user_groups (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    creator_id TEXT NOT NULL,
    deleted    BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX user_groups_creator_idx ON user_groups (creator_id);
CREATE TABLE group_members (
    id         TEXT PRIMARY KEY NOT NULL,
    group_id   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    active     BOOLEAN NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX group_members_group_idx ON group_members (group_id);
CREATE INDEX group_members_user_idx ON group_members (user_id);

-- Full-text search over messages (FTS5, Porter stemming). Its rows point at messages
-- by a stable integer key, so the table is rebuilt with one; triggers keep the index
-- as the projection writes messages.
CREATE TABLE messages_keyed (
    key                    INTEGER PRIMARY KEY,
    id                     TEXT NOT NULL UNIQUE,
    conversation_id        TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq                    BIGINT NOT NULL,
    role                   TEXT NOT NULL,
    content                TEXT NOT NULL,
    author_id              TEXT,
    created_at             TEXT NOT NULL,
    status                 TEXT NOT NULL DEFAULT 'completed',
    model_id               TEXT,
    stop_reason            TEXT,
    error                  TEXT,
    input_tokens           BIGINT,
    output_tokens          BIGINT,
    time_to_first_token_ms BIGINT,
    duration_ms            BIGINT,
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq)
);
INSERT INTO messages_keyed (id, conversation_id, seq, role, content, author_id, created_at, status, model_id,
        stop_reason, error, input_tokens, output_tokens, time_to_first_token_ms, duration_ms)
    SELECT id, conversation_id, seq, role, content, author_id, created_at, status, model_id,
        stop_reason, error, input_tokens, output_tokens, time_to_first_token_ms, duration_ms
    FROM messages ORDER BY conversation_id, seq;
DROP TABLE messages;
ALTER TABLE messages_keyed RENAME TO messages;

CREATE VIRTUAL TABLE message_search USING fts5(
    content, content='messages', content_rowid='key', tokenize='porter unicode61 remove_diacritics 2'
);
INSERT INTO message_search (message_search) VALUES ('rebuild');
CREATE TRIGGER messages_search_insert AFTER INSERT ON messages BEGIN
    INSERT INTO message_search (rowid, content) VALUES (new.key, new.content);
END;
CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
    INSERT INTO message_search (message_search, rowid, content) VALUES ('delete', old.key, old.content);
END;
CREATE TRIGGER messages_search_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO message_search (message_search, rowid, content) VALUES ('delete', old.key, old.content);
    INSERT INTO message_search (rowid, content) VALUES (new.key, new.content);
END;
