ALTER TABLE conversations DROP COLUMN max_tokens;
ALTER TABLE conversations DROP COLUMN temperature;
ALTER TABLE users DROP COLUMN model_mask;
