-- State, not a projection: credentials sealed by the secret box (src/crypto.rs). Events
-- refer to a secret by id, so it can be re-encrypted or destroyed while events stay as
-- they are.
CREATE TABLE secrets (
    id         UUID PRIMARY KEY,
    purpose    TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
