DROP TABLE reply_checkpoints;
ALTER TABLE messages DROP COLUMN duration_ms;
ALTER TABLE messages DROP COLUMN time_to_first_token_ms;
ALTER TABLE messages DROP COLUMN output_tokens;
ALTER TABLE messages DROP COLUMN input_tokens;
ALTER TABLE messages DROP COLUMN error;
ALTER TABLE messages DROP COLUMN stop_reason;
ALTER TABLE messages DROP COLUMN model_id;
ALTER TABLE messages DROP COLUMN status;
