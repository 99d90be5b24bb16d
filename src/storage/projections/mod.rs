//! Read tables kept by applying events, one module per table. They are written in the
//! same transaction as the events they come from and can be rebuilt from the log at any
//! time with the same code ([`rebuild`]).

pub mod conversations;
pub mod messages;
pub mod users;

use super::event_store::{self, Cursor, RecordedEvent};
use super::{DbConn, StoreResult, snapshots};
use crate::domain::Event;

/// Applies one stored event to every projection it concerns.
pub async fn apply(conn: &mut DbConn, stored: &RecordedEvent, event: &Event) -> StoreResult<()> {
    match event {
        Event::User(event) => users::apply(conn, stored, event).await,
        Event::Conversation(event) => {
            conversations::apply(conn, stored, event).await?;
            messages::apply(conn, stored, event).await
        }
    }
}

/// Empties every projection and replays the whole log through [`apply`]. Run it in one
/// transaction so readers never see a half-built table. Returns the events replayed.
pub async fn rebuild(conn: &mut DbConn) -> StoreResult<u64> {
    // Children first: messages reference conversations. Snapshots are derived state too.
    snapshots::clear(conn).await?;
    messages::clear(conn).await?;
    conversations::clear(conn).await?;
    users::clear(conn).await?;
    let mut cursor = Cursor::START;
    let mut replayed = 0;
    loop {
        let batch = event_store::read_after(conn, cursor, 2_000).await?;
        let Some(last) = batch.last() else { break };
        cursor = last.cursor();
        for stored in &batch {
            apply(conn, stored, &stored.decode()?).await?;
        }
        replayed += batch.len() as u64;
    }
    Ok(replayed)
}
