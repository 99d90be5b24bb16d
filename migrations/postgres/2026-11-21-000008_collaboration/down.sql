DROP INDEX messages_search_idx;
ALTER TABLE messages DROP COLUMN search;
DROP TABLE group_members;
DROP TABLE user_groups;
DROP TABLE conversation_access;
DROP TABLE conversation_lineage;
DROP INDEX conversations_forked_from_idx;
ALTER TABLE conversations DROP COLUMN fork_message_id;
ALTER TABLE conversations DROP COLUMN forked_from_id;
