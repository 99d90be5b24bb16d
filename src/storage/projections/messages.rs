//! Projection `messages`: the messages of each conversation in order.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{RowChange, Table};
use crate::domain::conversation::Event;
use crate::domain::ids::{ConversationId, MessageId, UserId};
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::{conversation_lineage, messages};
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{DbConn, StoreResult, insert_rows, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: DbUuid,
    pub conversation_id: DbUuid,
    pub seq: i64,
    pub role: String,
    pub content: String,
    pub author_id: Option<DbUuid>,
    pub created_at: DbTime,
    /// `completed`, or for a reply: `streaming`, `failed`, `cancelled`.
    pub status: String,
    pub model_id: Option<String>,
    pub stop_reason: Option<String>,
    pub error: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub time_to_first_token_ms: Option<i64>,
    pub duration_ms: Option<i64>,
}

/// How a reply ended, as stored on its row.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = messages)]
pub struct MessageUpdate {
    content: Option<String>,
    status: Option<String>,
    stop_reason: Option<String>,
    error: Option<String>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    time_to_first_token_ms: Option<i64>,
    duration_ms: Option<i64>,
}

impl MessageRow {
    pub fn message_id(&self) -> MessageId {
        MessageId::from_uuid(self.id.0)
    }

    pub fn author(&self) -> Option<UserId> {
        self.author_id.map(|id| UserId::from_uuid(id.0))
    }
}

pub struct Messages;

impl Table for Messages {
    type Row = MessageRow;
    type Update = MessageUpdate;

    fn id(row: &MessageRow) -> DbUuid {
        row.id
    }

    fn merge(update: MessageUpdate, row: &mut MessageRow) {
        if let Some(content) = update.content {
            row.content = content;
        }
        if let Some(status) = update.status {
            row.status = status;
        }
        row.stop_reason = update.stop_reason.or(row.stop_reason.take());
        row.error = update.error.or(row.error.take());
        row.input_tokens = update.input_tokens.or(row.input_tokens);
        row.output_tokens = update.output_tokens.or(row.output_tokens);
        row.time_to_first_token_ms = update.time_to_first_token_ms.or(row.time_to_first_token_ms);
        row.duration_ms = update.duration_ms.or(row.duration_ms);
    }

    async fn insert(conn: &mut DbConn, rows: &[MessageRow]) -> StoreResult<()> {
        insert_rows!(conn, messages::table, rows)?;
        Ok(())
    }

    async fn update(conn: &mut DbConn, id: DbUuid, update: &MessageUpdate) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::update(messages::table.find(id)).set(update).execute(c).await)?;
        Ok(())
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(messages::table).execute(c).await)?;
        Ok(())
    }
}

pub(super) fn change(stored: &RecordedEvent, event: &Event) -> Option<RowChange<Messages>> {
    let new = |message_id: &MessageId, seq: i64, role: &str, content: &str, status: &str| MessageRow {
        id: DbUuid(message_id.uuid()),
        conversation_id: stored.stream_id,
        seq,
        role: role.to_owned(),
        content: content.to_owned(),
        author_id: None,
        created_at: stored.occurred_at,
        status: status.to_owned(),
        model_id: None,
        stop_reason: None,
        error: None,
        input_tokens: None,
        output_tokens: None,
        time_to_first_token_ms: None,
        duration_ms: None,
    };
    let ended =
        |message_id: &MessageId, update: MessageUpdate| Some(RowChange::Update(DbUuid(message_id.uuid()), update));
    match event {
        Event::UserMessageAdded { message_id, seq, content } => Some(RowChange::Insert(MessageRow {
            author_id: stored.actor_id,
            ..new(message_id, *seq, "user", content, "completed")
        })),
        Event::AssistantMessageStarted { message_id, seq, model_id } => Some(RowChange::Insert(MessageRow {
            model_id: Some(model_id.clone()),
            ..new(message_id, *seq, "assistant", "", "streaming")
        })),
        Event::AssistantMessageCompleted { message_id, completion } => ended(
            message_id,
            MessageUpdate {
                content: Some(completion.text.clone()),
                status: Some("completed".to_owned()),
                stop_reason: Some(completion.stop_reason.clone()),
                input_tokens: completion.input_tokens,
                output_tokens: completion.output_tokens,
                time_to_first_token_ms: completion.time_to_first_token_ms,
                duration_ms: Some(completion.duration_ms),
                ..Default::default()
            },
        ),
        Event::AssistantMessageFailed { message_id, partial_text, reason } => ended(
            message_id,
            MessageUpdate {
                content: Some(partial_text.clone()),
                status: Some("failed".to_owned()),
                error: Some(reason.clone()),
                ..Default::default()
            },
        ),
        Event::AssistantMessageCancelled { message_id, partial_text } => ended(
            message_id,
            MessageUpdate {
                content: Some(partial_text.clone()),
                status: Some("cancelled".to_owned()),
                ..Default::default()
            },
        ),
        Event::ConversationCreated { .. }
        | Event::ToolCallRequested { .. }
        | Event::ToolCallApproved { .. }
        | Event::ToolCallRejected { .. }
        | Event::ToolCallCompleted { .. }
        | Event::ConversationRenamed { .. }
        | Event::ConversationSettingsChanged { .. }
        | Event::ConversationArchived {}
        | Event::ConversationUnarchived {}
        | Event::AccessGranted { .. }
        | Event::AccessRevoked { .. }
        | Event::MemberLeft { .. } => None,
    }
}

/// Up to `limit` messages of a conversation's history after sequence number
/// `after_seq`, in order: its own, and for a fork those it inherits.
pub async fn list(
    conn: &mut DbConn,
    conversation: ConversationId,
    after_seq: i64,
    limit: i64,
) -> StoreResult<Vec<MessageRow>> {
    history(conn, conversation, after_seq, None, limit).await
}

/// A message of a conversation's history (its own or inherited), if it is in it.
pub async fn in_history(
    conn: &mut DbConn,
    conversation: ConversationId,
    message: MessageId,
) -> StoreResult<Option<MessageRow>> {
    Ok(history(conn, conversation, 0, Some(message), 1).await?.pop())
}

async fn history(
    conn: &mut DbConn,
    conversation: ConversationId,
    after_seq: i64,
    only: Option<MessageId>,
    limit: i64,
) -> StoreResult<Vec<MessageRow>> {
    let conversation = DbUuid(conversation.uuid());
    Ok(with_conn!(conn, |c| {
        let shown = conversation_lineage::ancestor_id
            .eq(messages::conversation_id)
            .and(messages::seq.le(conversation_lineage::until_seq));
        let mut query = messages::table
            .inner_join(conversation_lineage::table.on(shown))
            .filter(conversation_lineage::conversation_id.eq(conversation))
            .filter(messages::seq.gt(after_seq))
            .order(messages::seq.asc())
            .limit(limit)
            .select(MessageRow::as_select())
            .into_boxed();
        if let Some(message) = only {
            query = query.filter(messages::id.eq(DbUuid(message.uuid())));
        }
        query.load(c).await
    })?)
}

/// Every row, in id order (used to compare projections).
pub async fn all(conn: &mut DbConn) -> StoreResult<Vec<MessageRow>> {
    Ok(with_conn!(conn, |c| {
        messages::table.order(messages::id.asc()).select(MessageRow::as_select()).load(c).await
    })?)
}

pub async fn find(conn: &mut DbConn, id: MessageId) -> StoreResult<Option<MessageRow>> {
    let id = DbUuid(id.uuid());
    Ok(with_conn!(conn, |c| messages::table.find(id).select(MessageRow::as_select()).first(c).await.optional())?)
}

/// The reply streaming in a conversation, if any.
pub async fn streaming(conn: &mut DbConn, conversation: ConversationId) -> StoreResult<Option<MessageRow>> {
    let conversation = DbUuid(conversation.uuid());
    Ok(with_conn!(conn, |c| {
        messages::table
            .filter(messages::conversation_id.eq(conversation))
            .filter(messages::status.eq("streaming"))
            .select(MessageRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}
