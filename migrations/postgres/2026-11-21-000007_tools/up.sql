-- Projection: MCP servers users registered (those from configuration are not here).
CREATE TABLE mcp_servers (
    id           UUID PRIMARY KEY,
    owner_id     UUID,
    name         TEXT NOT NULL,
    url          TEXT NOT NULL,
    header_names TEXT NOT NULL,
    secret_id    UUID,
    removed      BOOLEAN NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX mcp_servers_owner_idx ON mcp_servers (owner_id);

-- Projection: the tool calls models asked for, and what became of them.
CREATE TABLE tool_calls (
    id               UUID PRIMARY KEY,
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_id       UUID NOT NULL,
    provider_call_id TEXT NOT NULL,
    server_id        UUID,
    server_name      TEXT,
    tool_name        TEXT NOT NULL,
    arguments        TEXT NOT NULL,
    status           TEXT NOT NULL,
    by_policy        BOOLEAN NOT NULL,
    decided_by       UUID,
    reason           TEXT,
    result           TEXT,
    is_error         BOOLEAN NOT NULL,
    duration_ms      BIGINT,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX tool_calls_message_idx ON tool_calls (message_id);
CREATE INDEX tool_calls_conversation_idx ON tool_calls (conversation_id);

-- Projection: each user's policy for a server's tools (tool_name NULL) or one tool.
-- The id is derived from (user, server, tool), so a change replaces the row.
CREATE TABLE tool_policies (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL,
    server_id  UUID NOT NULL,
    tool_name  TEXT,
    policy     TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX tool_policies_user_idx ON tool_policies (user_id, server_id);
