-- A cache of aggregate state, so a command on a long stream does not replay it all.
-- Derived from the events: safe to delete at any time.
CREATE TABLE snapshots (
    stream_id  TEXT PRIMARY KEY NOT NULL,
    version    BIGINT NOT NULL,
    state      BLOB NOT NULL
);
