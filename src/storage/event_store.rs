//! The append-only event log: append with an expected version, load a stream, and read
//! everything after a cursor.
//!
//! Cursor safety: on PostgreSQL a sequence value is taken when a row is inserted, not
//! when its transaction commits, so positions become visible out of order. Each event
//! therefore records its writing transaction id, and a reader only returns events of
//! transactions older than the oldest one still running (`pg_snapshot_xmin`), ordered by
//! (transaction id, position). Everything that commits later sorts after the cursor.
//! SQLite has a single writer, so commit order is position order and `tx_id` is 0.
//!
//! Transaction ids are assigned at a transaction's first write, so on PostgreSQL the
//! append must be the first write of its transaction: a transaction that wrote earlier
//! could hold an older id than the one that appended the version it read, and tailing
//! readers would see a stream out of order. [`execute`] appends before anything else it
//! writes; debug builds check the rule in [`append`].

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use uuid::Uuid;

use super::schema::events;
use super::sql_types::{DbTime, DbUuid};
use super::{DbConn, Dialect, StoreError, StoreResult, on_unique_violation, projections, snapshots, with_conn};
use crate::domain::{self, Actor, Aggregate, EncodedEvent, Event};

/// Where a reader is in the log: after the event with this (transaction, position).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub tx_id: i64,
    pub position: i64,
}

impl Cursor {
    /// The beginning of the log.
    pub const START: Cursor = Cursor { tx_id: -1, position: 0 };

    pub fn encode(self) -> String {
        format!("{}.{}", self.tx_id, self.position)
    }

    pub fn parse(text: &str) -> Option<Cursor> {
        let (tx, position) = text.split_once('.')?;
        Some(Cursor { tx_id: tx.parse().ok()?, position: position.parse().ok()? })
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct RecordedEvent {
    pub position: i64,
    pub tx_id: i64,
    pub stream_id: DbUuid,
    pub stream_version: i64,
    pub event_type: String,
    pub event_version: i16,
    pub payload: serde_json::Value,
    pub actor_id: Option<DbUuid>,
    pub occurred_at: DbTime,
}

impl RecordedEvent {
    pub fn cursor(&self) -> Cursor {
        Cursor { tx_id: self.tx_id, position: self.position }
    }

    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.occurred_at.0
    }

    pub fn decode(&self) -> StoreResult<Event> {
        Event::decode(&self.event_type, self.event_version, &self.payload).map_err(|e| self.undecodable(e))
    }

    fn undecodable(&self, error: domain::DecodeError) -> StoreError {
        StoreError::Decode(format!("event {}: {error}", self.position))
    }
}

#[derive(Insertable)]
#[diesel(table_name = events)]
struct NewEventRow {
    stream_id: DbUuid,
    stream_version: i64,
    event_type: String,
    event_version: i16,
    payload: serde_json::Value,
    actor_id: Option<DbUuid>,
    occurred_at: DbTime,
}

/// Appends `new` to a stream whose last version must be `expected_version` (0 for a new
/// stream). A writer that lost the race gets [`StoreError::Conflict`].
pub async fn append(
    conn: &mut DbConn,
    stream_id: Uuid,
    expected_version: i64,
    actor: Actor,
    occurred_at: DateTime<Utc>,
    new: Vec<EncodedEvent>,
) -> StoreResult<Vec<RecordedEvent>> {
    if cfg!(debug_assertions) {
        assert_append_comes_first(conn).await?;
    }
    let mut recorded = Vec::with_capacity(new.len());
    for (version, event) in (expected_version + 1..).zip(new) {
        let row = NewEventRow {
            stream_id: stream_id.into(),
            stream_version: version,
            event_type: event.event_type,
            event_version: event.event_version,
            payload: event.payload,
            actor_id: actor.user_id().map(|id| id.uuid().into()),
            occurred_at: occurred_at.into(),
        };
        // One row at a time: SQLite cannot batch rows that leave columns to defaults.
        let stored = with_conn!(&mut *conn, |c| {
            diesel::insert_into(events::table).values(&row).returning(RecordedEvent::as_returning()).get_result(c).await
        })
        .map_err(on_unique_violation)?;
        recorded.push(stored);
    }
    Ok(recorded)
}

/// Panics if this PostgreSQL transaction wrote something other than events before
/// appending (see the module docs).
async fn assert_append_comes_first(conn: &mut DbConn) -> StoreResult<()> {
    #[derive(QueryableByName)]
    struct Check {
        #[diesel(sql_type = Bool)]
        ok: bool,
    }
    let first = with_conn!(conn,
        pg: |c| {
            diesel::sql_query(
                "SELECT pg_current_xact_id_if_assigned() IS NULL OR EXISTS \
                 (SELECT 1 FROM events WHERE tx_id = pg_current_xact_id_if_assigned()::text::bigint) AS ok",
            )
            .get_result::<Check>(c)
            .await?
            .ok
        },
        sqlite: |_c| true
    );
    assert!(first, "the event append must be the first write of its transaction");
    Ok(())
}

/// Every event of one stream, oldest first.
pub async fn load_stream(conn: &mut DbConn, stream_id: Uuid) -> StoreResult<Vec<RecordedEvent>> {
    let stream_id = DbUuid(stream_id);
    Ok(with_conn!(conn, |c| {
        events::table
            .filter(events::stream_id.eq(stream_id))
            .order(events::stream_version.asc())
            .select(RecordedEvent::as_select())
            .load(c)
            .await
    })?)
}

/// Up to `limit` events of one stream after `after_version`, oldest first.
pub async fn load_stream_page(
    conn: &mut DbConn,
    stream_id: Uuid,
    after_version: i64,
    limit: i64,
) -> StoreResult<Vec<RecordedEvent>> {
    let stream_id = DbUuid(stream_id);
    Ok(with_conn!(conn, |c| {
        events::table
            .filter(events::stream_id.eq(stream_id))
            .filter(events::stream_version.gt(after_version))
            .order(events::stream_version.asc())
            .limit(limit)
            .select(RecordedEvent::as_select())
            .load(c)
            .await
    })?)
}

/// Which events a reader of the log follows.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    All,
    /// What changes this user's conversation list: the events of every conversation
    /// they may read and of their groups, and those that shut them out of one.
    Viewer(domain::ids::UserId),
}

/// Up to `limit` events in `scope` after `cursor`, in log order, never skipping one that
/// commits later.
pub async fn read_after(
    conn: &mut DbConn,
    scope: Scope,
    cursor: Cursor,
    limit: i64,
) -> StoreResult<Vec<RecordedEvent>> {
    use super::projections::access::readable_by;
    use super::schema::{conversations, group_members, user_groups};
    Ok(with_conn!(conn, |c| {
        let mut query = events::table
            .filter(
                sql::<Bool>("(tx_id, position) > (")
                    .bind::<BigInt, _>(cursor.tx_id)
                    .sql(", ")
                    .bind::<BigInt, _>(cursor.position)
                    .sql(")"),
            )
            .order((events::tx_id.asc(), events::position.asc()))
            .limit(limit)
            .select(RecordedEvent::as_select())
            .into_boxed();
        if let Scope::Viewer(viewer) = scope {
            let user = DbUuid(viewer.uuid());
            let readable = conversations::table.filter(readable_by!(viewer)).select(conversations::id);
            let member_of = group_members::table
                .filter(group_members::user_id.eq(user))
                .filter(group_members::active.eq(true))
                .select(group_members::group_id);
            let created = user_groups::table.filter(user_groups::creator_id.eq(user)).select(user_groups::id);
            let field = |name: &str| match c.is_postgres() {
                true => format!("payload->>'{name}'"),
                false => format!("json_extract(payload, '$.{name}')"),
            };
            // Events that shut the viewer out, which they can no longer read otherwise.
            let shut_out = sql::<Bool>(&format!(
                "((event_type IN ('AccessRevoked', 'MemberLeft', 'GroupMemberRemoved') AND {} = ",
                field("user_id")
            ))
            .bind::<diesel::sql_types::Text, _>(viewer.to_string())
            .sql(&format!(
                ") OR (event_type = 'AccessRevoked' AND {} IN (SELECT CAST(group_id AS TEXT) FROM group_members \
                 WHERE active AND user_id = ",
                field("group_id")
            ))
            .bind::<super::sql_types::Uuid, _>(user)
            .sql(")))");
            query = query.filter(
                events::stream_id
                    .eq_any(readable)
                    .or(events::stream_id.eq_any(member_of))
                    .or(events::stream_id.eq_any(created))
                    .or(shut_out),
            );
        }
        if c.is_postgres() {
            // Only transactions older than every one still running (see the module docs).
            query = query.filter(sql::<Bool>("tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"));
        }
        query.load(c).await
    })?)
}

/// Keeps other writers out of the log until this transaction ends, so that
/// [`read_all`] sees everything. SQLite's `BEGIN IMMEDIATE` already does.
pub async fn exclude_writers(conn: &mut DbConn) -> StoreResult<()> {
    with_conn!(conn,
        pg: |c| c.batch_execute("LOCK TABLE events IN EXCLUSIVE MODE").await?,
        sqlite: |_c| {}
    );
    Ok(())
}

/// Up to `limit` events after `position`, in position order (each stream in version
/// order). Only complete under [`exclude_writers`]; live readers use [`read_after`].
pub async fn read_all(conn: &mut DbConn, after_position: i64, limit: i64) -> StoreResult<Vec<RecordedEvent>> {
    Ok(with_conn!(conn, |c| {
        events::table
            .filter(events::position.gt(after_position))
            .order(events::position.asc())
            .limit(limit)
            .select(RecordedEvent::as_select())
            .load(c)
            .await
    })?)
}

/// Where a reader that wants only what commits from now on starts.
pub struct Now {
    /// The last event readable now.
    pub cursor: Cursor,
    /// Transactions after `cursor` that have already committed, to skip rather than
    /// replay: on PostgreSQL the readable end waits for every transaction still running
    /// on the server, in any database.
    pub committed: HashSet<i64>,
}

/// Where the log stands now, for a reader starting from now.
pub async fn now(conn: &mut DbConn) -> StoreResult<Now> {
    let (before, committed) = with_conn!(conn,
        pg: |c| {
            let oldest_running: i64 =
                diesel::select(sql::<BigInt>("pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))
                    .get_result(c)
                    .await?;
            // Read after the bound was taken: whatever commits later is not in the set.
            let committed = events::table
                .filter(events::tx_id.ge(oldest_running))
                .select(events::tx_id)
                .distinct()
                .load::<i64>(c)
                .await?;
            (Some(oldest_running), committed)
        },
        sqlite: |_c| (None, vec![])
    );
    let last = with_conn!(conn, |c| {
        let mut query = events::table
            .order((events::tx_id.desc(), events::position.desc()))
            .limit(1)
            .select(RecordedEvent::as_select())
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(events::tx_id.lt(before));
        }
        query.first(c).await.optional()
    })?;
    let cursor = last.map_or(Cursor::START, |event| event.cursor());
    Ok(Now { cursor, committed: committed.into_iter().collect() })
}

/// Number of events in the log.
pub async fn count(conn: &mut DbConn) -> StoreResult<i64> {
    Ok(with_conn!(conn, |c| events::table.count().get_result(c).await)?)
}

/// A command refused by the domain, or a storage failure while carrying it out.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<R> {
    #[error("rejected: {0:?}")]
    Rejected(R),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stream's state is snapshotted each time its version crosses a multiple of this.
const SNAPSHOT_EVERY: i64 = 50;

/// The write path of one command: load the aggregate (latest snapshot plus the events
/// after it), decide, append the events and apply them to the projections. Run it
/// inside [`super::Db::write`] so that all of it commits together.
pub async fn execute<A: Aggregate>(
    conn: &mut DbConn,
    stream_id: Uuid,
    actor: Actor,
    command: A::Command,
) -> Result<Vec<RecordedEvent>, ExecuteError<A::Rejection>> {
    // A snapshot that no longer deserializes (the state's shape changed) is ignored.
    let (mut state, snapshot_version) = match snapshots::load(conn, stream_id).await? {
        Some((version, state)) => serde_json::from_value(state).map_or((A::default(), 0), |state| (state, version)),
        None => (A::default(), 0),
    };
    let mut version = snapshot_version;
    for stored in load_stream_page(conn, stream_id, snapshot_version, i64::MAX).await? {
        let event = domain::decode_as(&stored.event_type, stored.event_version, &stored.payload)
            .map_err(|e| stored.undecodable(e))?;
        state = state.evolve(&event);
        version = stored.stream_version;
    }
    let decided = state.decide(actor, command).map_err(ExecuteError::Rejected)?;
    if decided.is_empty() {
        return Ok(vec![]);
    }
    let encoded = decided.iter().map(domain::encode).collect();
    let recorded = append(conn, stream_id, version, actor, domain::now(), encoded).await?;
    for stored in &recorded {
        projections::apply(conn, stored, &stored.decode()?).await?;
    }
    let new_version = version + recorded.len() as i64;
    if new_version / SNAPSHOT_EVERY > snapshot_version / SNAPSHOT_EVERY {
        let state = decided.iter().fold(state, A::evolve);
        let state = serde_json::to_value(&state).map_err(|e| StoreError::Decode(e.to_string()))?;
        snapshots::save(conn, stream_id, new_version, state).await?;
    }
    Ok(recorded)
}
