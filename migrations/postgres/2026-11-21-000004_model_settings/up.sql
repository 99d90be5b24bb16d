-- Which models a user may use (a regular expression), and each conversation's sampling settings.
ALTER TABLE users ADD COLUMN model_mask TEXT;
ALTER TABLE conversations ADD COLUMN temperature DOUBLE PRECISION;
ALTER TABLE conversations ADD COLUMN max_tokens BIGINT;
