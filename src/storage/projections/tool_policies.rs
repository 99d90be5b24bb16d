//! Projection `tool_policies`: each user's policy for a server's tools, or for one tool.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use sha2::{Digest, Sha256};

use super::{RowChange, Table};
use crate::domain::ids::{McpServerId, UserId};
use crate::domain::mcp_server::ToolPolicy;
use crate::domain::user::Event;
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::tool_policies;
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{DbConn, StoreResult, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = tool_policies)]
pub struct ToolPolicyRow {
    /// Derived from (user, server, tool), so that setting a policy again replaces it.
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub server_id: DbUuid,
    /// `None`: every tool of the server without a policy of its own.
    pub tool_name: Option<String>,
    pub policy: String,
    pub updated_at: DbTime,
}

fn row_id(user: uuid::Uuid, server: McpServerId, tool: Option<&str>) -> DbUuid {
    let mut hash = Sha256::new();
    hash.update(user.as_bytes());
    hash.update(server.uuid().as_bytes());
    match tool {
        Some(tool) => {
            hash.update([1]);
            hash.update(tool.as_bytes());
        }
        None => hash.update([0]),
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    DbUuid(uuid::Uuid::from_bytes(bytes))
}

pub struct ToolPolicies;

impl Table for ToolPolicies {
    type Row = ToolPolicyRow;
    /// Policies are only ever replaced whole.
    type Update = std::convert::Infallible;

    fn id(row: &ToolPolicyRow) -> DbUuid {
        row.id
    }

    fn merge(update: Self::Update, _: &mut ToolPolicyRow) {
        match update {}
    }

    async fn insert(conn: &mut DbConn, rows: &[ToolPolicyRow]) -> StoreResult<()> {
        for row in rows {
            with_conn!(conn, |c| {
                diesel::insert_into(tool_policies::table)
                    .values(row)
                    .on_conflict(tool_policies::id)
                    .do_update()
                    .set((
                        tool_policies::policy.eq(excluded(tool_policies::policy)),
                        tool_policies::updated_at.eq(excluded(tool_policies::updated_at)),
                    ))
                    .execute(c)
                    .await
            })?;
        }
        Ok(())
    }

    async fn update(_: &mut DbConn, _: DbUuid, update: &Self::Update) -> StoreResult<()> {
        match *update {}
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(tool_policies::table).execute(c).await)?;
        Ok(())
    }
}

pub(super) fn change(stored: &RecordedEvent, event: &Event) -> Option<RowChange<ToolPolicies>> {
    let Event::ToolPolicyChanged { server_id, tool, policy } = event else { return None };
    Some(RowChange::Insert(ToolPolicyRow {
        id: row_id(stored.stream_id.0, *server_id, tool.as_deref()),
        user_id: stored.stream_id,
        server_id: DbUuid(server_id.uuid()),
        tool_name: tool.clone(),
        policy: policy.as_str().to_owned(),
        updated_at: stored.occurred_at,
    }))
}

/// A user's policies for a server: for the whole server, and per tool.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub server: Option<ToolPolicy>,
    pub tools: Vec<(String, ToolPolicy)>,
}

impl Policies {
    /// What applies to `tool`: its own policy, else the server's, else `ask`.
    pub fn of(&self, tool: &str) -> ToolPolicy {
        self.tools.iter().find(|(name, _)| name == tool).map(|(_, p)| *p).or(self.server).unwrap_or_default()
    }
}

pub async fn of_server(conn: &mut DbConn, user: UserId, server: McpServerId) -> StoreResult<Policies> {
    let (user, server) = (DbUuid(user.uuid()), DbUuid(server.uuid()));
    let rows: Vec<ToolPolicyRow> = with_conn!(conn, |c| {
        tool_policies::table
            .filter(tool_policies::user_id.eq(user))
            .filter(tool_policies::server_id.eq(server))
            .select(ToolPolicyRow::as_select())
            .load(c)
            .await
    })?;
    let mut policies = Policies::default();
    for row in rows {
        let Some(policy) = ToolPolicy::parse(&row.policy) else { continue };
        match row.tool_name {
            Some(tool) => policies.tools.push((tool, policy)),
            None => policies.server = Some(policy),
        }
    }
    Ok(policies)
}

pub async fn all(conn: &mut DbConn) -> StoreResult<Vec<ToolPolicyRow>> {
    Ok(with_conn!(conn, |c| {
        tool_policies::table.order(tool_policies::id.asc()).select(ToolPolicyRow::as_select()).load(c).await
    })?)
}
