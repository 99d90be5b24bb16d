//! Projection `conversations`: one row per conversation, newest activity first.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;

use super::access::readable_by;
use super::{RowChange, Table};
use crate::domain::conversation::{Event, Status};
use crate::domain::ids::{ConversationId, UserId};
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::conversations;
use crate::storage::sql_types::{DbTime, DbUuid, UtcTime, Uuid};
use crate::storage::{DbConn, StoreResult, insert_rows, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = conversations)]
pub struct ConversationRow {
    pub id: DbUuid,
    pub owner_id: DbUuid,
    pub title: String,
    pub model_id: Option<String>,
    pub system_prompt: Option<String>,
    pub status: String,
    pub archived: bool,
    pub message_count: i64,
    pub version: i64,
    pub created_at: DbTime,
    pub updated_at: DbTime,
    pub temperature: Option<f64>,
    pub max_tokens: Option<i64>,
    pub forked_from_id: Option<DbUuid>,
    pub fork_message_id: Option<DbUuid>,
}

impl ConversationRow {
    pub fn conversation_id(&self) -> ConversationId {
        ConversationId::from_uuid(self.id.0)
    }

    pub fn owner(&self) -> UserId {
        UserId::from_uuid(self.owner_id.0)
    }

    pub fn forked_from(&self) -> Option<ConversationId> {
        self.forked_from_id.map(|id| ConversationId::from_uuid(id.0))
    }

    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Active)
    }

    /// Position in the owner's list, for keyset pagination.
    pub fn list_key(&self) -> ListKey {
        ListKey { updated_at: self.updated_at.0, id: self.id.0 }
    }
}

/// Sort key of the conversation list: most recent activity first, id breaking ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListKey {
    pub updated_at: DateTime<Utc>,
    pub id: uuid::Uuid,
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = conversations)]
pub struct ConversationUpdate {
    title: Option<String>,
    // Twice optional: `Some(None)` clears the column.
    model_id: Option<Option<String>>,
    system_prompt: Option<Option<String>>,
    temperature: Option<Option<f64>>,
    max_tokens: Option<Option<i64>>,
    status: Option<String>,
    archived: Option<bool>,
    message_count: Option<i64>,
    version: Option<i64>,
    updated_at: Option<DbTime>,
}

pub struct Conversations;

impl Table for Conversations {
    type Row = ConversationRow;
    type Update = ConversationUpdate;

    fn id(row: &ConversationRow) -> DbUuid {
        row.id
    }

    fn merge(update: ConversationUpdate, row: &mut ConversationRow) {
        if let Some(title) = update.title {
            row.title = title;
        }
        if let Some(status) = update.status {
            row.status = status;
        }
        row.model_id = update.model_id.unwrap_or(row.model_id.take());
        row.system_prompt = update.system_prompt.unwrap_or(row.system_prompt.take());
        row.temperature = update.temperature.unwrap_or(row.temperature);
        row.max_tokens = update.max_tokens.unwrap_or(row.max_tokens);
        row.archived = update.archived.unwrap_or(row.archived);
        row.message_count = update.message_count.unwrap_or(row.message_count);
        row.version = update.version.unwrap_or(row.version);
        row.updated_at = update.updated_at.unwrap_or(row.updated_at);
    }

    async fn insert(conn: &mut DbConn, rows: &[ConversationRow]) -> StoreResult<()> {
        insert_rows!(conn, conversations::table, rows)?;
        Ok(())
    }

    async fn update(conn: &mut DbConn, id: DbUuid, update: &ConversationUpdate) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::update(conversations::table.find(id)).set(update).execute(c).await)?;
        Ok(())
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(conversations::table).execute(c).await)?;
        Ok(())
    }
}

pub(super) fn change(stored: &RecordedEvent, event: &Event) -> Option<RowChange<Conversations>> {
    let version = Some(stored.stream_version);
    let update = match event {
        Event::ConversationCreated {
            owner_id,
            title,
            model_id,
            system_prompt,
            temperature,
            max_tokens,
            forked_from,
        } => {
            return Some(RowChange::Insert(ConversationRow {
                id: stored.stream_id,
                owner_id: DbUuid(owner_id.uuid()),
                title: title.clone(),
                model_id: model_id.clone(),
                system_prompt: system_prompt.clone(),
                status: Status::Active.as_str().to_owned(),
                archived: false,
                message_count: forked_from.as_ref().map_or(0, |origin| origin.seq),
                version: stored.stream_version,
                created_at: stored.occurred_at,
                updated_at: stored.occurred_at,
                temperature: *temperature,
                max_tokens: *max_tokens,
                forked_from_id: forked_from.as_ref().map(|origin| DbUuid(origin.conversation_id.uuid())),
                fork_message_id: forked_from.as_ref().and_then(|origin| origin.message_id).map(|m| DbUuid(m.uuid())),
            }));
        }
        Event::ConversationRenamed { title } => ConversationUpdate {
            title: Some(title.clone()),
            version,
            updated_at: Some(stored.occurred_at),
            ..Default::default()
        },
        Event::ConversationSettingsChanged { model_id, system_prompt, temperature, max_tokens } => ConversationUpdate {
            model_id: Some(model_id.clone()),
            system_prompt: Some(system_prompt.clone()),
            temperature: Some(*temperature),
            max_tokens: Some(*max_tokens),
            version,
            updated_at: Some(stored.occurred_at),
            ..Default::default()
        },
        Event::ConversationArchived {} => ConversationUpdate {
            status: Some(Status::Archived.as_str().to_owned()),
            archived: Some(true),
            version,
            ..Default::default()
        },
        Event::ConversationUnarchived {} => ConversationUpdate {
            status: Some(Status::Active.as_str().to_owned()),
            archived: Some(false),
            version,
            ..Default::default()
        },
        Event::UserMessageAdded { seq, .. } => ConversationUpdate {
            message_count: Some(*seq),
            version,
            updated_at: Some(stored.occurred_at),
            ..Default::default()
        },
        Event::AssistantMessageStarted { seq, .. } => ConversationUpdate {
            status: Some(Status::Streaming.as_str().to_owned()),
            message_count: Some(*seq),
            version,
            updated_at: Some(stored.occurred_at),
            ..Default::default()
        },
        Event::AssistantMessageCompleted { .. }
        | Event::AssistantMessageFailed { .. }
        | Event::AssistantMessageCancelled { .. } => {
            ConversationUpdate { status: Some(Status::Active.as_str().to_owned()), version, ..Default::default() }
        }
        Event::ToolCallRequested { status, .. }
        | Event::ToolCallApproved { status, .. }
        | Event::ToolCallRejected { status, .. }
        | Event::ToolCallCompleted { status, .. } => {
            ConversationUpdate { status: Some(status.as_str().to_owned()), version, ..Default::default() }
        }
        Event::AccessGranted { .. } | Event::AccessRevoked { .. } | Event::MemberLeft { .. } => {
            ConversationUpdate { version, ..Default::default() }
        }
    };
    Some(RowChange::Update(stored.stream_id, update))
}

pub async fn find(conn: &mut DbConn, id: ConversationId) -> StoreResult<Option<ConversationRow>> {
    let id = DbUuid(id.uuid());
    Ok(with_conn!(conn, |c| {
        conversations::table.find(id).select(ConversationRow::as_select()).first(c).await.optional()
    })?)
}

/// The conversations with these ids, in no particular order.
pub async fn find_many(conn: &mut DbConn, ids: &[ConversationId]) -> StoreResult<Vec<ConversationRow>> {
    let ids: Vec<DbUuid> = ids.iter().map(|id| DbUuid(id.uuid())).collect();
    Ok(with_conn!(conn, |c| {
        conversations::table.filter(conversations::id.eq_any(&ids)).select(ConversationRow::as_select()).load(c).await
    })?)
}

/// Which conversations a list holds.
#[derive(Debug, Clone, Copy)]
pub enum Listing {
    /// Every conversation `viewer` may read, archived or not.
    Readable { viewer: UserId, archived: bool },
    /// The forks of a conversation that `viewer` may read.
    ForksOf { source: ConversationId, viewer: UserId },
}

/// Up to `limit` conversations of a listing after `after` in list order.
pub async fn list(
    conn: &mut DbConn,
    listing: Listing,
    after: Option<ListKey>,
    limit: i64,
) -> StoreResult<Vec<ConversationRow>> {
    Ok(with_conn!(conn, |c| {
        let mut query = conversations::table
            .filter(match listing {
                Listing::Readable { viewer, .. } | Listing::ForksOf { viewer, .. } => readable_by!(viewer),
            })
            .order((conversations::updated_at.desc(), conversations::id.desc()))
            .limit(limit)
            .select(ConversationRow::as_select())
            .into_boxed();
        query = match listing {
            Listing::Readable { archived, .. } => query.filter(conversations::archived.eq(archived)),
            Listing::ForksOf { source, .. } => query.filter(conversations::forked_from_id.eq(DbUuid(source.uuid()))),
        };
        if let Some(key) = after {
            // A row-value comparison lets both databases seek the list index directly.
            query = query.filter(
                sql::<Bool>("(updated_at, id) < (")
                    .bind::<UtcTime, _>(DbTime(key.updated_at))
                    .sql(", ")
                    .bind::<Uuid, _>(DbUuid(key.id))
                    .sql(")"),
            );
        }
        query.load(c).await
    })?)
}

/// Every row, in id order (used to compare projections).
pub async fn all(conn: &mut DbConn) -> StoreResult<Vec<ConversationRow>> {
    Ok(with_conn!(conn, |c| {
        conversations::table.order(conversations::id.asc()).select(ConversationRow::as_select()).load(c).await
    })?)
}
