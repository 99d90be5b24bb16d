-- Projection: MCP servers users registered (those from configuration are not here).
CREATE TABLE mcp_servers (
    id           TEXT PRIMARY KEY NOT NULL,
    owner_id     TEXT,
    name         TEXT NOT NULL,
    url          TEXT NOT NULL,
    header_names TEXT NOT NULL,
    secret_id    TEXT,
    removed      BOOLEAN NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX mcp_servers_owner_idx ON mcp_servers (owner_id);

-- Projection: the tool calls models asked for, and what became of them.
CREATE TABLE tool_calls (
    id               TEXT PRIMARY KEY NOT NULL,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_id       TEXT NOT NULL,
    provider_call_id TEXT NOT NULL,
    server_id        TEXT,
    server_name      TEXT,
    tool_name        TEXT NOT NULL,
    arguments        TEXT NOT NULL,
    status           TEXT NOT NULL,
    by_policy        BOOLEAN NOT NULL,
    decided_by       TEXT,
    reason           TEXT,
    result           TEXT,
    is_error         BOOLEAN NOT NULL,
    duration_ms      BIGINT,
    created_at       TEXT NOT NULL
);
CREATE INDEX tool_calls_message_idx ON tool_calls (message_id);
CREATE INDEX tool_calls_conversation_idx ON tool_calls (conversation_id);

-- Projection: each user's policy for a server's tools (tool_name NULL) or one tool.
-- The id is derived from (user, server, tool), so a change replaces the row.
CREATE TABLE tool_policies (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL,
    server_id  TEXT NOT NULL,
    tool_name  TEXT,
    policy     TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX tool_policies_user_idx ON tool_policies (user_id, server_id);
