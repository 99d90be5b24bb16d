//! Read tables kept by applying events, one module per table.
//!
//! Each table module says, as a pure function, which row change an event makes
//! (`change`). Two writers carry the changes out: [`apply`] writes them one by one in the
//! transaction that appends the event, and [`rebuild`] replays the whole log, merging
//! changes in memory and writing rows in bulk. Both run the same projection logic, so a
//! rebuild reproduces exactly what the write path built.

pub mod access;
pub mod conversations;
pub mod groups;
pub mod identities;
pub mod lineage;
pub mod mcp_servers;
pub mod messages;
pub mod registration;
pub mod tool_calls;
pub mod tool_policies;
pub mod users;

use std::collections::HashMap;
use std::future::Future;

use sha2::{Digest, Sha256};

use super::event_store::{self, RecordedEvent};
use super::sql_types::DbUuid;
use super::{DbConn, StoreResult, snapshots};
use crate::domain::Event;

/// A projection table, as the two writers need it.
pub trait Table {
    type Row: Send + Sync;
    /// The columns an update sets (absolute values, never increments, so that updates
    /// can be merged into a row that is not written yet).
    type Update: Send + Sync;

    fn id(row: &Self::Row) -> DbUuid;
    fn merge(update: Self::Update, row: &mut Self::Row);
    fn insert<'a>(conn: &'a mut DbConn, rows: &'a [Self::Row]) -> impl Future<Output = StoreResult<()>> + Send + 'a;
    fn update<'a>(
        conn: &'a mut DbConn,
        id: DbUuid,
        update: &'a Self::Update,
    ) -> impl Future<Output = StoreResult<()>> + Send + 'a;
    fn clear(conn: &mut DbConn) -> impl Future<Output = StoreResult<()>> + Send + '_;
}

/// A row id derived from what the row is about, so that recording the same thing again
/// replaces the row.
pub fn derived_id(parts: &[&[u8]]) -> DbUuid {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    DbUuid(uuid::Uuid::from_bytes(bytes))
}

/// What one event does to one row of table `T`.
pub enum RowChange<T: Table> {
    Insert(T::Row),
    Update(DbUuid, T::Update),
}

/// A row change in any projection table.
pub enum Change {
    User(RowChange<users::Users>),
    Conversation(RowChange<conversations::Conversations>),
    Message(RowChange<messages::Messages>),
    ToolCall(RowChange<tool_calls::ToolCalls>),
    ToolPolicy(RowChange<tool_policies::ToolPolicies>),
    McpServer(RowChange<mcp_servers::McpServers>),
    Lineage(RowChange<lineage::Lineage>),
    Access(RowChange<access::Access>),
    Group(RowChange<groups::Groups>),
    Member(RowChange<groups::Members>),
    Identity(RowChange<identities::Identities>),
    Settings(RowChange<registration::Settings>),
    Invite(RowChange<registration::Invites>),
}

/// The row changes an event makes, in order.
pub fn changes(stored: &RecordedEvent, event: &Event) -> Vec<Change> {
    match event {
        Event::User(event) => users::change(stored, event)
            .map(Change::User)
            .into_iter()
            .chain(tool_policies::change(stored, event).map(Change::ToolPolicy))
            .chain(identities::change(stored, event).map(Change::Identity))
            .collect(),
        Event::Conversation(event) => conversations::change(stored, event)
            .map(Change::Conversation)
            .into_iter()
            .chain(messages::change(stored, event).map(Change::Message))
            .chain(tool_calls::change(stored, event).map(Change::ToolCall))
            .chain(lineage::change(stored, event).into_iter().map(Change::Lineage))
            .chain(access::change(stored, event).map(Change::Access))
            .collect(),
        Event::McpServer(event) => vec![Change::McpServer(mcp_servers::change(stored, event))],
        Event::Group(event) => groups::group_change(stored, event)
            .map(Change::Group)
            .into_iter()
            .chain(groups::member_change(stored, event).map(Change::Member))
            .collect(),
        Event::Registration(event) => vec![match registration::change(stored, event) {
            registration::Change::Settings(change) => Change::Settings(change),
            registration::Change::Invite(change) => Change::Invite(change),
        }],
    }
}

async fn write<T: Table>(conn: &mut DbConn, change: RowChange<T>) -> StoreResult<()> {
    match change {
        RowChange::Insert(row) => T::insert(conn, std::slice::from_ref(&row)).await,
        RowChange::Update(id, update) => T::update(conn, id, &update).await,
    }
}

/// Applies one stored event to every projection it concerns.
pub async fn apply(conn: &mut DbConn, stored: &RecordedEvent, event: &Event) -> StoreResult<()> {
    for change in changes(stored, event) {
        match change {
            Change::User(change) => write(conn, change).await?,
            Change::Conversation(change) => write(conn, change).await?,
            Change::Message(change) => write(conn, change).await?,
            Change::ToolCall(change) => write(conn, change).await?,
            Change::ToolPolicy(change) => write(conn, change).await?,
            Change::McpServer(change) => write(conn, change).await?,
            Change::Lineage(change) => write(conn, change).await?,
            Change::Access(change) => write(conn, change).await?,
            Change::Group(change) => write(conn, change).await?,
            Change::Member(change) => write(conn, change).await?,
            Change::Identity(change) => write(conn, change).await?,
            Change::Settings(change) => write(conn, change).await?,
            Change::Invite(change) => write(conn, change).await?,
        }
    }
    Ok(())
}

/// Rows a rebuild has produced but not written yet, in the order they appeared.
struct Pending<T: Table> {
    rows: Vec<T::Row>,
    index: HashMap<DbUuid, usize>,
}

impl<T: Table> Default for Pending<T> {
    fn default() -> Self {
        Pending { rows: vec![], index: HashMap::new() }
    }
}

/// Bulk inserts stay well under both databases' limits on bound parameters.
const ROWS_PER_INSERT: usize = 1_000;

impl<T: Table> Pending<T> {
    /// Takes a change in memory where it can; returns the update to run now when its row
    /// was already written.
    fn stage(&mut self, change: RowChange<T>) -> Option<(DbUuid, T::Update)> {
        match change {
            // A row inserted again (a policy set anew) replaces the pending one.
            RowChange::Insert(row) => {
                match self.index.get(&T::id(&row)) {
                    Some(&at) => self.rows[at] = row,
                    None => {
                        self.index.insert(T::id(&row), self.rows.len());
                        self.rows.push(row);
                    }
                }
                None
            }
            RowChange::Update(id, update) => match self.index.get(&id) {
                Some(&at) => {
                    T::merge(update, &mut self.rows[at]);
                    None
                }
                None => Some((id, update)),
            },
        }
    }

    async fn stage_or_write(&mut self, conn: &mut DbConn, change: RowChange<T>) -> StoreResult<()> {
        match self.stage(change) {
            Some((id, update)) => T::update(conn, id, &update).await,
            None => Ok(()),
        }
    }

    async fn flush(&mut self, conn: &mut DbConn) -> StoreResult<()> {
        for chunk in self.rows.chunks(ROWS_PER_INSERT) {
            T::insert(conn, chunk).await?;
        }
        self.rows.clear();
        self.index.clear();
        Ok(())
    }
}

/// Rows held in memory before a rebuild writes them out.
const REBUILD_BUFFER_ROWS: usize = 50_000;

/// Empties every projection and replays the whole log into it. Run it in one
/// transaction so readers never see a half-built table; writers wait until it commits.
/// Returns the events replayed.
pub async fn rebuild(conn: &mut DbConn) -> StoreResult<u64> {
    rebuild_buffering(conn, REBUILD_BUFFER_ROWS).await
}

/// [`rebuild`], writing rows out whenever `buffer_rows` are pending.
pub async fn rebuild_buffering(conn: &mut DbConn, buffer_rows: usize) -> StoreResult<u64> {
    event_store::exclude_writers(conn).await?;
    // Children first: messages reference conversations. Snapshots are derived state too.
    snapshots::clear(conn).await?;
    tool_calls::ToolCalls::clear(conn).await?;
    identities::Identities::clear(conn).await?;
    registration::Settings::clear(conn).await?;
    registration::Invites::clear(conn).await?;
    lineage::Lineage::clear(conn).await?;
    access::Access::clear(conn).await?;
    groups::Members::clear(conn).await?;
    groups::Groups::clear(conn).await?;
    tool_policies::ToolPolicies::clear(conn).await?;
    mcp_servers::McpServers::clear(conn).await?;
    messages::Messages::clear(conn).await?;
    conversations::Conversations::clear(conn).await?;
    users::Users::clear(conn).await?;

    let mut pending = Rebuilding::default();
    let mut position = 0;
    let mut replayed = 0;
    loop {
        let batch = event_store::read_all(conn, position, 5_000).await?;
        let Some(last) = batch.last() else { break };
        position = last.position;
        replayed += batch.len() as u64;
        for stored in &batch {
            for change in changes(stored, &stored.decode()?) {
                pending.stage_or_write(conn, change).await?;
            }
            if pending.rows() >= buffer_rows {
                pending.flush(conn).await?;
            }
        }
    }
    pending.flush(conn).await?;
    Ok(replayed)
}

/// The rows of every table a rebuild has not written yet.
#[derive(Default)]
struct Rebuilding {
    users: Pending<users::Users>,
    conversations: Pending<conversations::Conversations>,
    messages: Pending<messages::Messages>,
    tool_calls: Pending<tool_calls::ToolCalls>,
    tool_policies: Pending<tool_policies::ToolPolicies>,
    mcp_servers: Pending<mcp_servers::McpServers>,
    lineage: Pending<lineage::Lineage>,
    access: Pending<access::Access>,
    groups: Pending<groups::Groups>,
    members: Pending<groups::Members>,
    identities: Pending<identities::Identities>,
    settings: Pending<registration::Settings>,
    invites: Pending<registration::Invites>,
}

impl Rebuilding {
    async fn stage_or_write(&mut self, conn: &mut DbConn, change: Change) -> StoreResult<()> {
        match change {
            Change::User(change) => self.users.stage_or_write(conn, change).await,
            Change::Conversation(change) => self.conversations.stage_or_write(conn, change).await,
            Change::Message(change) => self.messages.stage_or_write(conn, change).await,
            Change::ToolCall(change) => self.tool_calls.stage_or_write(conn, change).await,
            Change::ToolPolicy(change) => self.tool_policies.stage_or_write(conn, change).await,
            Change::McpServer(change) => self.mcp_servers.stage_or_write(conn, change).await,
            Change::Lineage(change) => self.lineage.stage_or_write(conn, change).await,
            Change::Access(change) => self.access.stage_or_write(conn, change).await,
            Change::Group(change) => self.groups.stage_or_write(conn, change).await,
            Change::Member(change) => self.members.stage_or_write(conn, change).await,
            Change::Identity(change) => self.identities.stage_or_write(conn, change).await,
            Change::Settings(change) => self.settings.stage_or_write(conn, change).await,
            Change::Invite(change) => self.invites.stage_or_write(conn, change).await,
        }
    }

    fn rows(&self) -> usize {
        self.users.rows.len()
            + self.conversations.rows.len()
            + self.messages.rows.len()
            + self.tool_calls.rows.len()
            + self.tool_policies.rows.len()
            + self.mcp_servers.rows.len()
            + self.lineage.rows.len()
            + self.access.rows.len()
            + self.groups.rows.len()
            + self.members.rows.len()
            + self.identities.rows.len()
            + self.settings.rows.len()
            + self.invites.rows.len()
    }

    async fn flush(&mut self, conn: &mut DbConn) -> StoreResult<()> {
        // Parents before children, for the foreign keys.
        self.users.flush(conn).await?;
        self.conversations.flush(conn).await?;
        self.messages.flush(conn).await?;
        self.tool_calls.flush(conn).await?;
        self.tool_policies.flush(conn).await?;
        self.mcp_servers.flush(conn).await?;
        self.lineage.flush(conn).await?;
        self.access.flush(conn).await?;
        self.groups.flush(conn).await?;
        self.members.flush(conn).await?;
        self.identities.flush(conn).await?;
        self.settings.flush(conn).await?;
        self.invites.flush(conn).await
    }
}
