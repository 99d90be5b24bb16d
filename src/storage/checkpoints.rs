//! The saved text of replies being streamed (see the `reply_checkpoints` migration).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::schema::reply_checkpoints as checkpoints;
use super::sql_types::{DbTime, DbUuid};
use super::{DbConn, StoreResult, with_conn};
use crate::domain::ids::{ConversationId, MessageId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = checkpoints)]
pub struct Checkpoint {
    pub message_id: DbUuid,
    pub conversation_id: DbUuid,
    pub text: String,
    pub heartbeat_at: DbTime,
    /// Pieces of the reply in `text`.
    pub pieces: i64,
}

impl Checkpoint {
    /// The checkpoint of a reply that has just started.
    pub fn start(conversation: ConversationId, message: MessageId, at: DateTime<Utc>) -> Checkpoint {
        Checkpoint {
            message_id: DbUuid(message.uuid()),
            conversation_id: DbUuid(conversation.uuid()),
            text: String::new(),
            heartbeat_at: DbTime(at),
            pieces: 0,
        }
    }

    pub fn conversation(&self) -> ConversationId {
        ConversationId::from_uuid(self.conversation_id.0)
    }

    pub fn message(&self) -> MessageId {
        MessageId::from_uuid(self.message_id.0)
    }
}

/// Saves a reply's text so far, and that its server is alive.
pub async fn save(conn: &mut DbConn, checkpoint: &Checkpoint) -> StoreResult<()> {
    with_conn!(conn, |c| {
        diesel::insert_into(checkpoints::table)
            .values(checkpoint)
            .on_conflict(checkpoints::message_id)
            .do_update()
            .set((
                checkpoints::text.eq(excluded(checkpoints::text)),
                checkpoints::heartbeat_at.eq(excluded(checkpoints::heartbeat_at)),
                checkpoints::pieces.eq(excluded(checkpoints::pieces)),
            ))
            .execute(c)
            .await
    })?;
    Ok(())
}

/// Updates the saved text of replies still being streamed; a reply that has ended (and
/// whose checkpoint is gone) stays gone. One statement on PostgreSQL, one hand-off to
/// the blocking pool on SQLite, so that no async worker is held up by a thousand rows.
pub async fn refresh_all(conn: &mut DbConn, saving: Vec<Checkpoint>) -> StoreResult<()> {
    match conn {
        DbConn::Pg(c) => {
            let (ids, texts, pieces): (Vec<String>, Vec<String>, Vec<i64>) = saving
                .into_iter()
                .map(|checkpoint| (checkpoint.message_id.0.to_string(), checkpoint.text, checkpoint.pieces))
                .collect();
            // Heartbeats in the database's time: see [`clock`].
            diesel::sql_query(
                "UPDATE reply_checkpoints AS c SET text = v.text, pieces = v.pieces, heartbeat_at = now() \
                 FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS v(id, text, pieces) WHERE c.message_id = v.id",
            )
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<Text>, _>(texts)
            .bind::<Array<BigInt>, _>(pieces)
            .execute(&mut **c)
            .await?;
        }
        DbConn::Sqlite(c) => {
            super::sqlite::may_wait(c.spawn_blocking(move |c| {
                for checkpoint in &saving {
                    let row = checkpoints::table.find(checkpoint.message_id);
                    let update = diesel::update(row).set((
                        checkpoints::text.eq(&checkpoint.text),
                        checkpoints::heartbeat_at.eq(checkpoint.heartbeat_at),
                        checkpoints::pieces.eq(checkpoint.pieces),
                    ));
                    diesel::RunQueryDsl::execute(update, c)?;
                }
                Ok::<_, diesel::result::Error>(())
            }))
            .await?;
        }
    }
    Ok(())
}

pub async fn find(conn: &mut DbConn, message: MessageId) -> StoreResult<Option<Checkpoint>> {
    let message = DbUuid(message.uuid());
    Ok(with_conn!(conn, |c| {
        checkpoints::table.find(message).select(Checkpoint::as_select()).first(c).await.optional()
    })?)
}

/// The checkpoint of the reply streaming in a conversation, if one is.
pub async fn of_conversation(conn: &mut DbConn, conversation: ConversationId) -> StoreResult<Option<Checkpoint>> {
    let conversation = DbUuid(conversation.uuid());
    Ok(with_conn!(conn, |c| {
        checkpoints::table
            .filter(checkpoints::conversation_id.eq(conversation))
            .select(Checkpoint::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// The time heartbeats are written and compared in: the database's on PostgreSQL, where
/// servers with different clocks share the table; this machine's on SQLite.
pub async fn clock(conn: &mut DbConn) -> StoreResult<DateTime<Utc>> {
    match conn {
        DbConn::Pg(c) => Ok(diesel::select(diesel::dsl::now.into_sql::<Timestamptz>()).get_result(&mut **c).await?),
        DbConn::Sqlite(_) => Ok(crate::domain::now()),
    }
}

/// Replies whose server has not saved them for `quiet` or longer, by [`clock`].
pub async fn stale(conn: &mut DbConn, quiet: chrono::Duration) -> StoreResult<Vec<Checkpoint>> {
    let before = clock(conn).await? - quiet;
    Ok(with_conn!(conn, |c| {
        checkpoints::table
            .filter(checkpoints::heartbeat_at.lt(DbTime(before)))
            .select(Checkpoint::as_select())
            .load(c)
            .await
    })?)
}

pub async fn delete(conn: &mut DbConn, message: MessageId) -> StoreResult<()> {
    let row = checkpoints::table.filter(checkpoints::message_id.eq(DbUuid(message.uuid())));
    with_conn!(conn, |c| diesel::delete(row).execute(c).await)?;
    Ok(())
}
