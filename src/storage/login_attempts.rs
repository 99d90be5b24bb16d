//! Sign-in attempts, counted in the database so that every server sharing it throttles
//! together. A row is an attempt that failed or is still running: one that succeeds is
//! deleted, and rows past their window are swept out. Keys are kept as SHA-256, since
//! they hold whatever was typed as an email.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::schema::login_attempts;
use super::sql_types::{DbTime, DbUuid};
use super::{DbConn, LockKey, StoreResult, insert_rows, with_conn};

/// At most `max` attempts under `key` within the window.
#[derive(Clone)]
pub struct Limit {
    pub key: Vec<u8>,
    pub max: usize,
}

impl Limit {
    pub fn new(key: &str, max: usize) -> Limit {
        Limit { key: Sha256::digest(key.as_bytes()).to_vec(), max }
    }
}

#[derive(Clone, Insertable)]
#[diesel(table_name = login_attempts)]
struct Row {
    id: DbUuid,
    key: Vec<u8>,
    attempted_at: DbTime,
}

/// Counts an attempt under every limit's key, or under none if any key already has its
/// `max` within `window`: the rows made, or each refusing limit's index with how long
/// until it has room. Run it in a write transaction, which it holds the throttle's lock
/// for.
pub async fn attempt(
    conn: &mut DbConn,
    limits: &[Limit],
    window: Duration,
    now: DateTime<Utc>,
) -> StoreResult<Result<Vec<DbUuid>, Vec<(usize, Duration)>>> {
    // Counting and adding must not interleave with another server's, or concurrent
    // guesses could all pass. The lock is held briefly: the password is checked after.
    conn.lock(LockKey::LoginAttempts).await?;
    // Older rows still in the table are left to the hourly sweep.
    let since = DbTime(window_start(now, window));
    let mut refused = vec![];
    for (index, limit) in limits.iter().enumerate() {
        let times: Vec<DbTime> = with_conn!(conn, |c| {
            login_attempts::table
                .filter(login_attempts::key.eq(&limit.key))
                .filter(login_attempts::attempted_at.gt(since))
                .order(login_attempts::attempted_at.asc())
                .select(login_attempts::attempted_at)
                .load(c)
                .await
        })?;
        if let [oldest, ..] = times.as_slice()
            && times.len() >= limit.max
        {
            // Room comes when the oldest attempt leaves the window.
            refused.push((index, (oldest.0 - since.0).to_std().unwrap_or_default()));
        }
    }
    if !refused.is_empty() {
        return Ok(Err(refused));
    }
    let rows: Vec<Row> = limits
        .iter()
        .map(|limit| Row { id: DbUuid(Uuid::now_v7()), key: limit.key.clone(), attempted_at: DbTime(now) })
        .collect();
    insert_rows!(conn, login_attempts::table, &rows)?;
    Ok(Ok(rows.into_iter().map(|row| row.id).collect()))
}

/// Forgets the attempts that turned out right (`rows`), and every attempt under `key`.
pub async fn forget(conn: &mut DbConn, rows: &[DbUuid], key: &Limit) -> StoreResult<()> {
    let rows = login_attempts::id.eq_any(rows).or(login_attempts::key.eq(&key.key));
    with_conn!(conn, |c| diesel::delete(login_attempts::table.filter(rows)).execute(c).await)?;
    Ok(())
}

/// Deletes the attempts that have left their window; returns how many.
pub async fn sweep(conn: &mut DbConn, window: Duration, now: DateTime<Utc>) -> StoreResult<usize> {
    let since = DbTime(window_start(now, window));
    let old = login_attempts::attempted_at.le(since);
    Ok(with_conn!(conn, |c| diesel::delete(login_attempts::table.filter(old)).execute(c).await)?)
}

/// The configuration caps the window, so the start is always a storable time.
fn window_start(now: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(window).ok().and_then(|window| now.checked_sub_signed(window)).unwrap_or(now)
}
