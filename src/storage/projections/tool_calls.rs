//! Projection `tool_calls`: what models asked tools to do, and what became of it.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{RowChange, Table};
use crate::domain::conversation::Event;
use crate::domain::ids::{ConversationId, McpServerId, MessageId, ToolCallId};
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::tool_calls;
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{DbConn, StoreResult, insert_rows, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = tool_calls)]
pub struct ToolCallRow {
    pub id: DbUuid,
    pub conversation_id: DbUuid,
    /// The assistant message that asked for it.
    pub message_id: DbUuid,
    pub provider_call_id: String,
    pub server_id: Option<DbUuid>,
    pub server_name: Option<String>,
    pub tool_name: String,
    /// JSON object.
    pub arguments: String,
    /// `waiting`, `approved`, `rejected` or `completed`.
    pub status: String,
    pub by_policy: bool,
    pub decided_by: Option<DbUuid>,
    pub reason: Option<String>,
    pub result: Option<String>,
    pub is_error: bool,
    pub duration_ms: Option<i64>,
    pub created_at: DbTime,
}

impl ToolCallRow {
    pub fn call_id(&self) -> ToolCallId {
        ToolCallId::from_uuid(self.id.0)
    }

    pub fn conversation(&self) -> ConversationId {
        ConversationId::from_uuid(self.conversation_id.0)
    }

    pub fn message(&self) -> MessageId {
        MessageId::from_uuid(self.message_id.0)
    }

    pub fn server(&self) -> Option<McpServerId> {
        self.server_id.map(|id| McpServerId::from_uuid(id.0))
    }

    pub fn arguments(&self) -> serde_json::Value {
        serde_json::from_str(&self.arguments).unwrap_or_default()
    }
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = tool_calls)]
pub struct ToolCallUpdate {
    status: Option<String>,
    by_policy: Option<bool>,
    decided_by: Option<Option<DbUuid>>,
    reason: Option<String>,
    result: Option<String>,
    is_error: Option<bool>,
    duration_ms: Option<i64>,
}

pub struct ToolCalls;

impl Table for ToolCalls {
    type Row = ToolCallRow;
    type Update = ToolCallUpdate;

    fn id(row: &ToolCallRow) -> DbUuid {
        row.id
    }

    fn merge(update: ToolCallUpdate, row: &mut ToolCallRow) {
        row.status = update.status.unwrap_or(std::mem::take(&mut row.status));
        row.by_policy = update.by_policy.unwrap_or(row.by_policy);
        row.decided_by = update.decided_by.unwrap_or(row.decided_by);
        row.reason = update.reason.or(row.reason.take());
        row.result = update.result.or(row.result.take());
        row.is_error = update.is_error.unwrap_or(row.is_error);
        row.duration_ms = update.duration_ms.or(row.duration_ms);
    }

    async fn insert(conn: &mut DbConn, rows: &[ToolCallRow]) -> StoreResult<()> {
        insert_rows!(conn, tool_calls::table, rows)?;
        Ok(())
    }

    async fn update(conn: &mut DbConn, id: DbUuid, update: &ToolCallUpdate) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::update(tool_calls::table.find(id)).set(update).execute(c).await)?;
        Ok(())
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(tool_calls::table).execute(c).await)?;
        Ok(())
    }
}

pub(super) fn change(stored: &RecordedEvent, event: &Event) -> Option<RowChange<ToolCalls>> {
    let (call_id, update) = match event {
        Event::ToolCallRequested {
            call_id,
            message_id,
            provider_call_id,
            server_id,
            server_name,
            tool_name,
            arguments,
            ..
        } => {
            return Some(RowChange::Insert(ToolCallRow {
                id: DbUuid(call_id.uuid()),
                conversation_id: stored.stream_id,
                message_id: DbUuid(message_id.uuid()),
                provider_call_id: provider_call_id.clone(),
                server_id: server_id.map(|id| DbUuid(id.uuid())),
                server_name: server_name.clone(),
                tool_name: tool_name.clone(),
                arguments: arguments.to_string(),
                status: "waiting".into(),
                by_policy: false,
                decided_by: None,
                reason: None,
                result: None,
                is_error: false,
                duration_ms: None,
                created_at: stored.occurred_at,
            }));
        }
        Event::ToolCallApproved { call_id, by_policy, .. } => (
            call_id,
            ToolCallUpdate {
                status: Some("approved".into()),
                by_policy: Some(*by_policy),
                decided_by: Some(stored.actor_id),
                ..Default::default()
            },
        ),
        Event::ToolCallRejected { call_id, by_policy, reason, .. } => (
            call_id,
            ToolCallUpdate {
                status: Some("rejected".into()),
                by_policy: Some(*by_policy),
                decided_by: Some(stored.actor_id),
                reason: Some(reason.clone()),
                ..Default::default()
            },
        ),
        Event::ToolCallCompleted { call_id, outcome, .. } => (
            call_id,
            ToolCallUpdate {
                status: Some("completed".into()),
                result: Some(outcome.result.clone()),
                is_error: Some(outcome.is_error),
                duration_ms: Some(outcome.duration_ms),
                ..Default::default()
            },
        ),
        _ => return None,
    };
    Some(RowChange::Update(DbUuid(call_id.uuid()), update))
}

pub async fn find(conn: &mut DbConn, id: ToolCallId) -> StoreResult<Option<ToolCallRow>> {
    let id = DbUuid(id.uuid());
    Ok(with_conn!(conn, |c| tool_calls::table.find(id).select(ToolCallRow::as_select()).first(c).await.optional())?)
}

/// The calls asked for in these messages, in the order they were asked.
pub async fn of_messages(conn: &mut DbConn, messages: &[MessageId]) -> StoreResult<Vec<ToolCallRow>> {
    let ids: Vec<DbUuid> = messages.iter().map(|m| DbUuid(m.uuid())).collect();
    Ok(with_conn!(conn, |c| {
        tool_calls::table
            .filter(tool_calls::message_id.eq_any(&ids))
            .order((tool_calls::created_at.asc(), tool_calls::id.asc()))
            .select(ToolCallRow::as_select())
            .load(c)
            .await
    })?)
}

/// A conversation's calls with this status, in the order they were asked.
pub async fn with_status(
    conn: &mut DbConn,
    conversation: ConversationId,
    status: &str,
) -> StoreResult<Vec<ToolCallRow>> {
    let conversation = DbUuid(conversation.uuid());
    let status = status.to_owned();
    Ok(with_conn!(conn, |c| {
        tool_calls::table
            .filter(tool_calls::conversation_id.eq(conversation))
            .filter(tool_calls::status.eq(&status))
            .order((tool_calls::created_at.asc(), tool_calls::id.asc()))
            .select(ToolCallRow::as_select())
            .load(c)
            .await
    })?)
}

pub async fn all(conn: &mut DbConn) -> StoreResult<Vec<ToolCallRow>> {
    Ok(with_conn!(conn, |c| {
        tool_calls::table.order(tool_calls::id.asc()).select(ToolCallRow::as_select()).load(c).await
    })?)
}
