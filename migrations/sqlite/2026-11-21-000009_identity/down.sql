ALTER TABLE user_groups DROP COLUMN provider_group;
DROP TABLE login_attempts;
DROP TABLE invites;
DROP TABLE registration_settings;
DROP TABLE user_identities;
ALTER TABLE sessions DROP COLUMN client_address;
ALTER TABLE sessions DROP COLUMN method;
