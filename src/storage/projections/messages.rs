//! Projection `messages`: the messages of each conversation in order.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{RowChange, Table};
use crate::domain::conversation::Event;
use crate::domain::ids::{ConversationId, MessageId, UserId};
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::messages;
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{DbConn, StoreResult, insert_rows, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: DbUuid,
    pub conversation_id: DbUuid,
    pub seq: i64,
    pub role: String,
    pub content: String,
    pub author_id: Option<DbUuid>,
    pub created_at: DbTime,
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
    /// Messages are written once; nothing updates them yet.
    type Update = std::convert::Infallible;

    fn id(row: &MessageRow) -> DbUuid {
        row.id
    }

    fn merge(update: std::convert::Infallible, _: &mut MessageRow) {
        match update {}
    }

    async fn insert(conn: &mut DbConn, rows: &[MessageRow]) -> StoreResult<()> {
        insert_rows!(conn, messages::table, rows)?;
        Ok(())
    }

    async fn update(_: &mut DbConn, _: DbUuid, update: &std::convert::Infallible) -> StoreResult<()> {
        match *update {}
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(messages::table).execute(c).await)?;
        Ok(())
    }
}

pub(super) fn change(stored: &RecordedEvent, event: &Event) -> Option<RowChange<Messages>> {
    match event {
        Event::UserMessageAdded { message_id, seq, content } => Some(RowChange::Insert(MessageRow {
            id: DbUuid(message_id.uuid()),
            conversation_id: stored.stream_id,
            seq: *seq,
            role: "user".to_owned(),
            content: content.clone(),
            author_id: stored.actor_id,
            created_at: stored.occurred_at,
        })),
        _ => None,
    }
}

/// Up to `limit` messages of a conversation after sequence number `after_seq`, in order.
pub async fn list(
    conn: &mut DbConn,
    conversation: ConversationId,
    after_seq: i64,
    limit: i64,
) -> StoreResult<Vec<MessageRow>> {
    let conversation = DbUuid(conversation.uuid());
    Ok(with_conn!(conn, |c| {
        messages::table
            .filter(messages::conversation_id.eq(conversation))
            .filter(messages::seq.gt(after_seq))
            .order(messages::seq.asc())
            .limit(limit)
            .select(MessageRow::as_select())
            .load(c)
            .await
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
