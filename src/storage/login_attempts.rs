//! Sign-in attempts, counted in the database so that every server sharing it throttles
//! together. A row is an attempt that failed or is still running: one that succeeds is
//! deleted, and rows leave once their window has passed.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::schema::login_attempts;
use super::sql_types::{DbTime, DbUuid};
use super::{DbConn, LockKey, StoreResult, insert_rows, with_conn};

#[derive(Clone, Insertable)]
#[diesel(table_name = login_attempts)]
struct Row {
    id: DbUuid,
    key: String,
    attempted_at: DbTime,
}

/// Counts an attempt under each `(key, max)`, or under none if a key already has `max`
/// attempts within `window`: the rows made, or how long until the refusing key has room.
/// Run it in a write transaction, which it holds the throttle's lock for.
pub async fn attempt(
    conn: &mut DbConn,
    limits: &[(String, usize)],
    window: Duration,
    now: DateTime<Utc>,
) -> StoreResult<Result<Vec<DbUuid>, Duration>> {
    // Counting and adding must not interleave with another server's, or concurrent
    // guesses could all pass. The transaction is short: the password is checked after.
    conn.lock(LockKey::LoginAttempts).await?;
    let since = TimeDelta::from_std(window).ok().and_then(|window| now.checked_sub_signed(window));
    let since = DbTime(since.unwrap_or(DateTime::<Utc>::MIN_UTC));
    with_conn!(conn, |c| {
        diesel::delete(login_attempts::table.filter(login_attempts::attempted_at.lt(since))).execute(c).await
    })?;
    for (key, max) in limits {
        let times: Vec<DbTime> = with_conn!(conn, |c| {
            login_attempts::table
                .filter(login_attempts::key.eq(key))
                .order(login_attempts::attempted_at.asc())
                .select(login_attempts::attempted_at)
                .load(c)
                .await
        })?;
        if let Some(oldest) = <[_]>::first(&times).filter(|_| times.len() >= *max) {
            // Room comes when the oldest attempt leaves the window.
            return Ok(Err((oldest.0 - since.0).to_std().unwrap_or_default()));
        }
    }
    let rows: Vec<Row> = limits
        .iter()
        .map(|(key, _)| Row { id: DbUuid(Uuid::now_v7()), key: key.clone(), attempted_at: DbTime(now) })
        .collect();
    insert_rows!(conn, login_attempts::table, &rows)?;
    Ok(Ok(rows.into_iter().map(|row| row.id).collect()))
}

/// Forgets the attempts that turned out right (`rows`), and every attempt under `key`.
pub async fn forget(conn: &mut DbConn, rows: &[DbUuid], key: &str) -> StoreResult<()> {
    let rows = login_attempts::id.eq_any(rows).or(login_attempts::key.eq(key));
    with_conn!(conn, |c| diesel::delete(login_attempts::table.filter(rows)).execute(c).await)?;
    Ok(())
}
