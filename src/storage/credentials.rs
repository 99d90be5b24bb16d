//! Password hashes, kept out of the event log in their own table.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::schema::password_credentials as creds;
use super::sql_types::{DbTime, DbUuid};
use super::{DbConn, StoreResult, with_conn};
use crate::domain::ids::UserId;

pub async fn set_password_hash(conn: &mut DbConn, user: UserId, hash: &str, at: DateTime<Utc>) -> StoreResult<()> {
    let row = (creds::user_id.eq(DbUuid(user.uuid())), creds::password_hash.eq(hash), creds::updated_at.eq(DbTime(at)));
    with_conn!(conn, |c| {
        diesel::insert_into(creds::table)
            .values(row)
            .on_conflict(creds::user_id)
            .do_update()
            .set((
                creds::password_hash.eq(excluded(creds::password_hash)),
                creds::updated_at.eq(excluded(creds::updated_at)),
            ))
            .execute(c)
            .await
    })?;
    Ok(())
}

pub async fn password_hash(conn: &mut DbConn, user: UserId) -> StoreResult<Option<String>> {
    let user = DbUuid(user.uuid());
    Ok(with_conn!(conn, |c| creds::table.find(user).select(creds::password_hash).first(c).await.optional())?)
}
