//! Login sessions. Only a SHA-256 of each token is stored, so a leaked table cannot be
//! replayed as logins.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::projections::users::UserRow;
use super::schema::{sessions, users};
use super::sql_types::{DbTime, DbUuid};
use super::{DbConn, StoreResult, with_conn};
use crate::domain::ids::{SessionId, UserId};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub token_hash: Vec<u8>,
    pub user_agent: Option<String>,
    pub created_at: DbTime,
    pub last_seen_at: DbTime,
    pub expires_at: DbTime,
    /// `password` or `oidc`.
    pub method: String,
    pub client_address: Option<String>,
}

impl SessionRow {
    pub fn session_id(&self) -> SessionId {
        SessionId::from_uuid(self.id.0)
    }
}

pub async fn insert(conn: &mut DbConn, session: &SessionRow) -> StoreResult<()> {
    with_conn!(conn, |c| diesel::insert_into(sessions::table).values(session).execute(c).await)?;
    Ok(())
}

/// The unexpired session with this token hash, and its user.
pub async fn find_active(
    conn: &mut DbConn,
    token_hash: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<Option<(SessionRow, UserRow)>> {
    Ok(with_conn!(conn, |c| {
        sessions::table
            .inner_join(users::table.on(users::id.eq(sessions::user_id)))
            .filter(sessions::token_hash.eq(token_hash))
            .filter(sessions::expires_at.gt(DbTime(now)))
            .select((SessionRow::as_select(), UserRow::as_select()))
            .first(c)
            .await
            .optional()
    })?)
}

/// Those of `ids` that are unexpired sessions of enabled accounts.
pub async fn active_among(conn: &mut DbConn, ids: &[SessionId], now: DateTime<Utc>) -> StoreResult<Vec<SessionId>> {
    let ids: Vec<DbUuid> = ids.iter().map(|id| DbUuid(id.uuid())).collect();
    let active: Vec<DbUuid> = with_conn!(conn, |c| {
        sessions::table
            .inner_join(users::table.on(users::id.eq(sessions::user_id)))
            .filter(sessions::id.eq_any(&ids))
            .filter(sessions::expires_at.gt(DbTime(now)))
            .filter(users::disabled.eq(false))
            .select(sessions::id)
            .load(c)
            .await
    })?;
    Ok(active.into_iter().map(|id| SessionId::from_uuid(id.0)).collect())
}

pub async fn touch(conn: &mut DbConn, id: SessionId, now: DateTime<Utc>) -> StoreResult<()> {
    let row = sessions::table.filter(sessions::id.eq(DbUuid(id.uuid())));
    with_conn!(conn, |c| diesel::update(row).set(sessions::last_seen_at.eq(DbTime(now))).execute(c).await)?;
    Ok(())
}

pub async fn delete(conn: &mut DbConn, id: SessionId) -> StoreResult<()> {
    let row = sessions::table.filter(sessions::id.eq(DbUuid(id.uuid())));
    with_conn!(conn, |c| diesel::delete(row).execute(c).await)?;
    Ok(())
}

/// Ends every session of a user but `keep`; returns the sessions ended.
pub async fn delete_for_user(conn: &mut DbConn, user: UserId, keep: Option<SessionId>) -> StoreResult<Vec<SessionId>> {
    let keep = DbUuid(keep.map_or(uuid::Uuid::nil(), |id| id.uuid()));
    let rows = sessions::table.filter(sessions::user_id.eq(DbUuid(user.uuid()))).filter(sessions::id.ne(keep));
    let ended: Vec<DbUuid> = with_conn!(conn, |c| diesel::delete(rows).returning(sessions::id).get_results(c).await)?;
    Ok(ended.into_iter().map(|id| SessionId::from_uuid(id.0)).collect())
}

/// Ends one session of a user; whether it was theirs and live.
pub async fn delete_of_user(conn: &mut DbConn, user: UserId, id: SessionId) -> StoreResult<bool> {
    let row =
        sessions::table.filter(sessions::id.eq(DbUuid(id.uuid()))).filter(sessions::user_id.eq(DbUuid(user.uuid())));
    Ok(with_conn!(conn, |c| diesel::delete(row).execute(c).await)? == 1)
}

/// A user's unexpired sessions, most recently seen first.
pub async fn of_user(conn: &mut DbConn, user: UserId, now: DateTime<Utc>) -> StoreResult<Vec<SessionRow>> {
    Ok(with_conn!(conn, |c| {
        sessions::table
            .filter(sessions::user_id.eq(DbUuid(user.uuid())))
            .filter(sessions::expires_at.gt(DbTime(now)))
            .order((sessions::last_seen_at.desc(), sessions::id.asc()))
            .select(SessionRow::as_select())
            .load(c)
            .await
    })?)
}

pub async fn delete_expired(conn: &mut DbConn, now: DateTime<Utc>) -> StoreResult<usize> {
    let rows = sessions::table.filter(sessions::expires_at.le(DbTime(now)));
    Ok(with_conn!(conn, |c| diesel::delete(rows).execute(c).await)?)
}
