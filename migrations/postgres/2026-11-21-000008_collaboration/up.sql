-- Forks: where a conversation was forked from.
ALTER TABLE conversations ADD COLUMN forked_from_id UUID;
ALTER TABLE conversations ADD COLUMN fork_message_id UUID;
CREATE INDEX conversations_forked_from_idx ON conversations (forked_from_id);

-- Projection: the conversations whose messages each conversation shows, itself
-- included, with the last sequence number it shows of each. A fork inherits its
-- history through these rows instead of copies of the messages.
CREATE TABLE conversation_lineage (
    id              UUID PRIMARY KEY,
    conversation_id UUID NOT NULL,
    ancestor_id     UUID NOT NULL,
    until_seq       BIGINT NOT NULL
);
CREATE INDEX conversation_lineage_conversation_idx ON conversation_lineage (conversation_id);
CREATE INDEX conversation_lineage_ancestor_idx ON conversation_lineage (ancestor_id);
INSERT INTO conversation_lineage (id, conversation_id, ancestor_id, until_seq)
    SELECT id, id, id, 9223372036854775807 FROM conversations;

-- Projection: who each conversation is shared with. One row per (conversation, user or
-- group); `role` is `viewer`, `editor`, `revoked`, or `left` (a user who left).
CREATE TABLE conversation_access (
    id              UUID PRIMARY KEY,
    conversation_id UUID NOT NULL,
    user_id         UUID,
    group_id        UUID,
    role            TEXT NOT NULL,
    granted_by      UUID,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX conversation_access_conversation_idx ON conversation_access (conversation_id);
CREATE INDEX conversation_access_user_idx ON conversation_access (user_id);
CREATE INDEX conversation_access_group_idx ON conversation_access (group_id);

-- Projections: groups and their members (`active` false once removed).
CREATE TABLE user_groups (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    creator_id UUID NOT NULL,
    deleted    BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX user_groups_creator_idx ON user_groups (creator_id);
CREATE TABLE group_members (
    id         UUID PRIMARY KEY,
    group_id   UUID NOT NULL,
    user_id    UUID NOT NULL,
    active     BOOLEAN NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX group_members_group_idx ON group_members (group_id);
CREATE INDEX group_members_user_idx ON group_members (user_id);

-- Full-text search over messages: kept by the database as the projection writes them.
ALTER TABLE messages ADD COLUMN search TSVECTOR
    GENERATED ALWAYS AS (to_tsvector('english', content)) STORED;
CREATE INDEX messages_search_idx ON messages USING GIN (search);
