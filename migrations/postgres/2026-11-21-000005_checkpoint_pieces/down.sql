DROP INDEX reply_checkpoints_conversation;
ALTER TABLE reply_checkpoints DROP COLUMN pieces;
