-- State, not a projection: credentials sealed by the secret box (src/crypto.rs). Events
-- refer to a secret by id, so it can be re-encrypted or destroyed while events stay as
-- they are.
CREATE TABLE secrets (
    id         TEXT PRIMARY KEY NOT NULL,
    purpose    TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
