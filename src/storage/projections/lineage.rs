//! Projection `conversation_lineage`: for each conversation, the conversations whose
//! messages it shows (itself included) and the last sequence number it shows of each.
//! A fork's rows come whole from its `ConversationCreated`, so its history is one join,
//! however deep the chain of forks.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{RowChange, Table, derived_id};
use crate::domain::conversation::Event;
use crate::domain::ids::ConversationId;
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::conversation_lineage;
use crate::storage::sql_types::DbUuid;
use crate::storage::{DbConn, StoreResult, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = conversation_lineage)]
pub struct LineageRow {
    /// The conversation's own id for its own row, else derived from the pair.
    pub id: DbUuid,
    pub conversation_id: DbUuid,
    pub ancestor_id: DbUuid,
    pub until_seq: i64,
}

pub struct Lineage;

impl Table for Lineage {
    type Row = LineageRow;
    /// Rows are written once.
    type Update = std::convert::Infallible;

    fn id(row: &LineageRow) -> DbUuid {
        row.id
    }

    fn merge(update: Self::Update, _: &mut LineageRow) {
        match update {}
    }

    async fn insert(conn: &mut DbConn, rows: &[LineageRow]) -> StoreResult<()> {
        crate::storage::insert_rows!(conn, conversation_lineage::table, rows)?;
        Ok(())
    }

    async fn update(_: &mut DbConn, _: DbUuid, update: &Self::Update) -> StoreResult<()> {
        match *update {}
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(conversation_lineage::table).execute(c).await)?;
        Ok(())
    }
}

pub(super) fn change(stored: &RecordedEvent, event: &Event) -> Vec<RowChange<Lineage>> {
    let Event::ConversationCreated { forked_from, .. } = event else { return vec![] };
    let own = LineageRow {
        id: stored.stream_id,
        conversation_id: stored.stream_id,
        ancestor_id: stored.stream_id,
        until_seq: i64::MAX,
    };
    let inherited = forked_from.iter().flat_map(|origin| &origin.inherits).map(|inherited| {
        let ancestor = inherited.conversation_id.uuid();
        LineageRow {
            id: derived_id(&[b"lineage", stored.stream_id.0.as_bytes(), ancestor.as_bytes()]),
            conversation_id: stored.stream_id,
            ancestor_id: DbUuid(ancestor),
            until_seq: inherited.until_seq,
        }
    });
    std::iter::once(own).chain(inherited).map(RowChange::Insert).collect()
}

/// The conversations whose messages `conversation` shows, with the last sequence number
/// of each (itself: unbounded).
pub async fn of(conn: &mut DbConn, conversation: ConversationId) -> StoreResult<Vec<LineageRow>> {
    let conversation = DbUuid(conversation.uuid());
    Ok(with_conn!(conn, |c| {
        conversation_lineage::table
            .filter(conversation_lineage::conversation_id.eq(conversation))
            .select(LineageRow::as_select())
            .load(c)
            .await
    })?)
}

/// Every row, in id order (used to compare projections).
pub async fn all(conn: &mut DbConn) -> StoreResult<Vec<LineageRow>> {
    Ok(with_conn!(conn, |c| {
        conversation_lineage::table.order(conversation_lineage::id.asc()).select(LineageRow::as_select()).load(c).await
    })?)
}
