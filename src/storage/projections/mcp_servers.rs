//! Projection `mcp_servers`: the MCP servers users registered.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{RowChange, Table};
use crate::domain::ids::{McpServerId, SecretId, UserId};
use crate::domain::mcp_server::{Event, ServerSettings};
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::mcp_servers;
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{DbConn, StoreResult, insert_rows, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = mcp_servers)]
pub struct McpServerRow {
    pub id: DbUuid,
    /// `None`: shared with everyone by an administrator.
    pub owner_id: Option<DbUuid>,
    pub name: String,
    pub url: String,
    /// JSON array of header names.
    pub header_names: String,
    pub secret_id: Option<DbUuid>,
    pub removed: bool,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

impl McpServerRow {
    pub fn server_id(&self) -> McpServerId {
        McpServerId::from_uuid(self.id.0)
    }

    pub fn owner(&self) -> Option<UserId> {
        self.owner_id.map(|id| UserId::from_uuid(id.0))
    }

    pub fn secret(&self) -> Option<SecretId> {
        self.secret_id.map(|id| SecretId::from_uuid(id.0))
    }

    pub fn header_names(&self) -> Vec<String> {
        serde_json::from_str(&self.header_names).unwrap_or_default()
    }
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = mcp_servers)]
pub struct McpServerUpdate {
    name: Option<String>,
    url: Option<String>,
    header_names: Option<String>,
    secret_id: Option<Option<DbUuid>>,
    removed: Option<bool>,
    updated_at: Option<DbTime>,
}

pub struct McpServers;

impl Table for McpServers {
    type Row = McpServerRow;
    type Update = McpServerUpdate;

    fn id(row: &McpServerRow) -> DbUuid {
        row.id
    }

    fn merge(update: McpServerUpdate, row: &mut McpServerRow) {
        row.name = update.name.unwrap_or(std::mem::take(&mut row.name));
        row.url = update.url.unwrap_or(std::mem::take(&mut row.url));
        row.header_names = update.header_names.unwrap_or(std::mem::take(&mut row.header_names));
        row.secret_id = update.secret_id.unwrap_or(row.secret_id);
        row.removed = update.removed.unwrap_or(row.removed);
        row.updated_at = update.updated_at.unwrap_or(row.updated_at);
    }

    async fn insert(conn: &mut DbConn, rows: &[McpServerRow]) -> StoreResult<()> {
        insert_rows!(conn, mcp_servers::table, rows)?;
        Ok(())
    }

    async fn update(conn: &mut DbConn, id: DbUuid, update: &McpServerUpdate) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::update(mcp_servers::table.find(id)).set(update).execute(c).await)?;
        Ok(())
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(mcp_servers::table).execute(c).await)?;
        Ok(())
    }
}

fn names(settings: &ServerSettings) -> String {
    serde_json::to_string(&settings.header_names).unwrap_or_else(|_| "[]".into())
}

pub(super) fn change(stored: &RecordedEvent, event: &Event) -> RowChange<McpServers> {
    let update = match event {
        Event::McpServerRegistered { owner_id, settings } => {
            return RowChange::Insert(McpServerRow {
                id: stored.stream_id,
                owner_id: owner_id.map(|id| DbUuid(id.uuid())),
                name: settings.name.clone(),
                url: settings.url.clone(),
                header_names: names(settings),
                secret_id: settings.secret_id.map(|id| DbUuid(id.uuid())),
                removed: false,
                created_at: stored.occurred_at,
                updated_at: stored.occurred_at,
            });
        }
        Event::McpServerUpdated { settings } => McpServerUpdate {
            name: Some(settings.name.clone()),
            url: Some(settings.url.clone()),
            header_names: Some(names(settings)),
            secret_id: Some(settings.secret_id.map(|id| DbUuid(id.uuid()))),
            updated_at: Some(stored.occurred_at),
            ..Default::default()
        },
        Event::McpServerRemoved {} => {
            McpServerUpdate { removed: Some(true), updated_at: Some(stored.occurred_at), ..Default::default() }
        }
    };
    RowChange::Update(stored.stream_id, update)
}

/// A server `user` may use (their own or a shared one), unless removed.
pub async fn find_usable(conn: &mut DbConn, id: McpServerId, user: UserId) -> StoreResult<Option<McpServerRow>> {
    let (id, user) = (DbUuid(id.uuid()), DbUuid(user.uuid()));
    Ok(with_conn!(conn, |c| {
        mcp_servers::table
            .find(id)
            .filter(mcp_servers::removed.eq(false))
            .filter(mcp_servers::owner_id.eq(user).or(mcp_servers::owner_id.is_null()))
            .select(McpServerRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// The servers `user` may use: their own and the shared ones, by name.
pub async fn usable(conn: &mut DbConn, user: UserId) -> StoreResult<Vec<McpServerRow>> {
    let user = DbUuid(user.uuid());
    Ok(with_conn!(conn, |c| {
        mcp_servers::table
            .filter(mcp_servers::removed.eq(false))
            .filter(mcp_servers::owner_id.eq(user).or(mcp_servers::owner_id.is_null()))
            .order((mcp_servers::name.asc(), mcp_servers::id.asc()))
            .select(McpServerRow::as_select())
            .load(c)
            .await
    })?)
}

pub async fn all(conn: &mut DbConn) -> StoreResult<Vec<McpServerRow>> {
    Ok(with_conn!(conn, |c| {
        mcp_servers::table.order(mcp_servers::id.asc()).select(McpServerRow::as_select()).load(c).await
    })?)
}
