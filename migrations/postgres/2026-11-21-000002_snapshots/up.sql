-- A cache of aggregate state, so a command on a long stream does not replay it all.
-- Derived from the events: safe to delete at any time.
CREATE TABLE snapshots (
    stream_id  UUID PRIMARY KEY,
    version    BIGINT NOT NULL,
    state      JSONB NOT NULL
);
