-- Assistant replies: how each message ended and what it cost.
ALTER TABLE messages ADD COLUMN status TEXT NOT NULL DEFAULT 'completed';
ALTER TABLE messages ADD COLUMN model_id TEXT;
ALTER TABLE messages ADD COLUMN stop_reason TEXT;
ALTER TABLE messages ADD COLUMN error TEXT;
ALTER TABLE messages ADD COLUMN input_tokens BIGINT;
ALTER TABLE messages ADD COLUMN output_tokens BIGINT;
ALTER TABLE messages ADD COLUMN time_to_first_token_ms BIGINT;
ALTER TABLE messages ADD COLUMN duration_ms BIGINT;

-- State, not a projection: the text of replies being streamed, saved as it grows, so a
-- reply cut off by a crash is closed with the text it had. `heartbeat_at` tells a live
-- stream from one whose server died.
CREATE TABLE reply_checkpoints (
    message_id      UUID PRIMARY KEY,
    conversation_id UUID NOT NULL,
    text            TEXT NOT NULL,
    heartbeat_at    TIMESTAMPTZ NOT NULL
);
