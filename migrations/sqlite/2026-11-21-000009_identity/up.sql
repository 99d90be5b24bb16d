-- Sessions say how they were signed in, and from where.
ALTER TABLE sessions ADD COLUMN method TEXT NOT NULL DEFAULT 'password';
ALTER TABLE sessions ADD COLUMN client_address TEXT;

-- Projection: the identity providers' accounts each user signs in with.
CREATE TABLE user_identities (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL,
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX user_identities_user_idx ON user_identities (user_id);

-- Projection: the registration policy an administrator set (one row, once set).
CREATE TABLE registration_settings (
    id         TEXT PRIMARY KEY NOT NULL,
    policy     TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Projection: invites. `status` is `open`, `redeemed` or `revoked`; only the code's
-- SHA-256 is kept.
CREATE TABLE invites (
    id          TEXT PRIMARY KEY NOT NULL,
    code_hash   TEXT NOT NULL,
    email       TEXT,
    role        TEXT NOT NULL,
    created_by  TEXT,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    status      TEXT NOT NULL,
    redeemed_by TEXT,
    updated_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX invites_code_hash_idx ON invites (code_hash);

-- Sign-in attempts that failed or are still running, shared by every server on the
-- database so that throttling holds across them. `key` is the SHA-256 of
-- `account:<email>` or `address:<ip>`; rows past their window are swept out.
CREATE TABLE login_attempts (
    id           TEXT PRIMARY KEY NOT NULL,
    key          BLOB NOT NULL,
    attempted_at TEXT NOT NULL
);
CREATE INDEX login_attempts_key_idx ON login_attempts (key, attempted_at);
CREATE INDEX login_attempts_time_idx ON login_attempts (attempted_at);

-- The identity provider's group a group's membership follows, if any.
ALTER TABLE user_groups ADD COLUMN provider_group TEXT;
