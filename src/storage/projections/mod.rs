//! Read tables kept by applying events, one module per table.
//!
//! Each table module says, as a pure function, which row change an event makes
//! (`change`). Two writers carry the changes out: [`apply`] writes them one by one in the
//! transaction that appends the event, and [`rebuild`] replays the whole log, merging
//! changes in memory and writing rows in bulk. Both run the same projection logic, so a
//! rebuild reproduces exactly what the write path built.

pub mod conversations;
pub mod messages;
pub mod users;

use std::collections::HashMap;
use std::future::Future;

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
}

/// The row changes an event makes, in order.
pub fn changes(stored: &RecordedEvent, event: &Event) -> Vec<Change> {
    match event {
        Event::User(event) => users::change(stored, event).map(Change::User).into_iter().collect(),
        Event::Conversation(event) => conversations::change(stored, event)
            .map(Change::Conversation)
            .into_iter()
            .chain(messages::change(stored, event).map(Change::Message))
            .collect(),
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
            RowChange::Insert(row) => {
                self.index.insert(T::id(&row), self.rows.len());
                self.rows.push(row);
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
    messages::Messages::clear(conn).await?;
    conversations::Conversations::clear(conn).await?;
    users::Users::clear(conn).await?;

    let mut users = Pending::<users::Users>::default();
    let mut conversations = Pending::<conversations::Conversations>::default();
    let mut messages = Pending::<messages::Messages>::default();
    let mut position = 0;
    let mut replayed = 0;
    loop {
        let batch = event_store::read_all(conn, position, 5_000).await?;
        let Some(last) = batch.last() else { break };
        position = last.position;
        replayed += batch.len() as u64;
        for stored in &batch {
            for change in changes(stored, &stored.decode()?) {
                match change {
                    Change::User(change) => users.stage_or_write(conn, change).await?,
                    Change::Conversation(change) => conversations.stage_or_write(conn, change).await?,
                    Change::Message(change) => messages.stage_or_write(conn, change).await?,
                }
            }
            if users.rows.len() + conversations.rows.len() + messages.rows.len() >= buffer_rows {
                flush(conn, &mut users, &mut conversations, &mut messages).await?;
            }
        }
    }
    flush(conn, &mut users, &mut conversations, &mut messages).await?;
    Ok(replayed)
}

async fn flush(
    conn: &mut DbConn,
    users: &mut Pending<users::Users>,
    conversations: &mut Pending<conversations::Conversations>,
    messages: &mut Pending<messages::Messages>,
) -> StoreResult<()> {
    // Parents before children, for the foreign keys.
    users.flush(conn).await?;
    conversations.flush(conn).await?;
    messages.flush(conn).await
}
