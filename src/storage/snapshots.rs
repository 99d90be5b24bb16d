//! Cached aggregate state. A command loads the latest snapshot and replays only the
//! events after it; the cache is derived from the log and may be dropped at any time.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::schema::snapshots;
use super::sql_types::DbUuid;
use super::{DbConn, StoreResult, with_conn};

/// The latest snapshot of a stream: (version, state).
pub async fn load(conn: &mut DbConn, stream_id: Uuid) -> StoreResult<Option<(i64, serde_json::Value)>> {
    let stream_id = DbUuid(stream_id);
    Ok(with_conn!(conn, |c| {
        snapshots::table.find(stream_id).select((snapshots::version, snapshots::state)).first(c).await.optional()
    })?)
}

pub async fn save(conn: &mut DbConn, stream_id: Uuid, version: i64, state: serde_json::Value) -> StoreResult<()> {
    let row = (snapshots::stream_id.eq(DbUuid(stream_id)), snapshots::version.eq(version), snapshots::state.eq(state));
    with_conn!(conn, |c| {
        diesel::insert_into(snapshots::table)
            .values(row)
            .on_conflict(snapshots::stream_id)
            .do_update()
            .set((snapshots::version.eq(excluded(snapshots::version)), snapshots::state.eq(excluded(snapshots::state))))
            .execute(c)
            .await
    })?;
    Ok(())
}

pub async fn clear(conn: &mut DbConn) -> StoreResult<()> {
    with_conn!(conn, |c| diesel::delete(snapshots::table).execute(c).await)?;
    Ok(())
}
