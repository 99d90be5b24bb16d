DROP TABLE tool_policies;
DROP TABLE tool_calls;
DROP TABLE mcp_servers;
