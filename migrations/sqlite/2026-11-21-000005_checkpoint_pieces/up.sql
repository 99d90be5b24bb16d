-- How many pieces a checkpoint's text holds, so a device connected to another server
-- can join a reply mid-stream from the checkpoint and continue with the live pieces.
ALTER TABLE reply_checkpoints ADD COLUMN pieces BIGINT NOT NULL DEFAULT 0;
CREATE INDEX reply_checkpoints_conversation ON reply_checkpoints (conversation_id);
