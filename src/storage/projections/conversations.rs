//! Projection `conversations`: one row per conversation, newest activity first.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;

use crate::domain::conversation::{Event, Status};
use crate::domain::ids::{ConversationId, UserId};
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::conversations;
use crate::storage::sql_types::{DbTime, DbUuid, UtcTime, Uuid};
use crate::storage::{DbConn, StoreResult, with_conn};

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
}

impl ConversationRow {
    pub fn conversation_id(&self) -> ConversationId {
        ConversationId::from_uuid(self.id.0)
    }

    pub fn owner(&self) -> UserId {
        UserId::from_uuid(self.owner_id.0)
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

pub(super) async fn apply(conn: &mut DbConn, stored: &RecordedEvent, event: &Event) -> StoreResult<()> {
    let id = stored.stream_id;
    let version = stored.stream_version;
    let at = stored.occurred_at;
    let row = conversations::table.filter(conversations::id.eq(id));
    match event {
        Event::ConversationCreated { owner_id, title, model_id, system_prompt } => {
            let new = ConversationRow {
                id,
                owner_id: DbUuid(owner_id.uuid()),
                title: title.clone(),
                model_id: model_id.clone(),
                system_prompt: system_prompt.clone(),
                status: Status::Active.as_str().to_owned(),
                archived: false,
                message_count: 0,
                version,
                created_at: at,
                updated_at: at,
            };
            with_conn!(conn, |c| diesel::insert_into(conversations::table).values(&new).execute(c).await)?;
        }
        Event::ConversationRenamed { title } => {
            let set =
                (conversations::title.eq(title), conversations::version.eq(version), conversations::updated_at.eq(at));
            with_conn!(conn, |c| diesel::update(row).set(set).execute(c).await)?;
        }
        Event::ConversationArchived {} | Event::ConversationUnarchived {} => {
            let archived = matches!(event, Event::ConversationArchived {});
            let status = if archived { Status::Archived } else { Status::Active };
            let set = (
                conversations::status.eq(status.as_str()),
                conversations::archived.eq(archived),
                conversations::version.eq(version),
            );
            with_conn!(conn, |c| diesel::update(row).set(set).execute(c).await)?;
        }
        Event::UserMessageAdded { seq, .. } => {
            let set = (
                conversations::message_count.eq(seq),
                conversations::version.eq(version),
                conversations::updated_at.eq(at),
            );
            with_conn!(conn, |c| diesel::update(row).set(set).execute(c).await)?;
        }
    }
    Ok(())
}

pub(super) async fn clear(conn: &mut DbConn) -> StoreResult<()> {
    with_conn!(conn, |c| diesel::delete(conversations::table).execute(c).await)?;
    Ok(())
}

pub async fn find(conn: &mut DbConn, id: ConversationId) -> StoreResult<Option<ConversationRow>> {
    let id = DbUuid(id.uuid());
    Ok(with_conn!(conn, |c| {
        conversations::table.find(id).select(ConversationRow::as_select()).first(c).await.optional()
    })?)
}

/// Up to `limit` of `owner`'s conversations after `after` in list order.
pub async fn list(
    conn: &mut DbConn,
    owner: UserId,
    archived: bool,
    after: Option<ListKey>,
    limit: i64,
) -> StoreResult<Vec<ConversationRow>> {
    let owner = DbUuid(owner.uuid());
    Ok(with_conn!(conn, |c| {
        let mut query = conversations::table
            .filter(conversations::owner_id.eq(owner))
            .filter(conversations::archived.eq(archived))
            .order((conversations::updated_at.desc(), conversations::id.desc()))
            .limit(limit)
            .select(ConversationRow::as_select())
            .into_boxed();
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
