//! Sealed credentials (see the `secrets` migration and `crate::crypto`).

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::schema::secrets;
use super::sql_types::{DbTime, DbUuid};
use super::{DbConn, StoreResult, with_conn};
use crate::crypto::{Binding, SecretBox};
use crate::domain::ids::SecretId;
use crate::error::AppError;
use secrecy::ExposeSecret;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = secrets)]
pub struct SecretRow {
    pub id: DbUuid,
    pub purpose: String,
    /// As [`crate::crypto::SecretBox::seal`] wrote it.
    pub sealed: String,
    pub updated_at: DbTime,
}

/// Stores or replaces a sealed value.
pub async fn put(conn: &mut DbConn, row: &SecretRow) -> StoreResult<()> {
    with_conn!(conn, |c| {
        diesel::insert_into(secrets::table)
            .values(row)
            .on_conflict(secrets::id)
            .do_update()
            .set((secrets::sealed.eq(excluded(secrets::sealed)), secrets::updated_at.eq(excluded(secrets::updated_at))))
            .execute(c)
            .await
    })?;
    Ok(())
}

pub async fn all(conn: &mut DbConn) -> StoreResult<Vec<SecretRow>> {
    Ok(with_conn!(conn, |c| secrets::table.order(secrets::id).select(SecretRow::as_select()).load(c).await)?)
}

/// Re-seals every value not under the current key; returns how many it re-sealed, and
/// how many there are. Fails, writing nothing when run in one transaction, if a value
/// does not open with any configured key.
pub async fn reseal_all(conn: &mut DbConn, secret_box: &SecretBox) -> Result<(usize, usize), AppError> {
    let rows = all(conn).await?;
    let total = rows.len();
    let mut resealed = 0;
    for row in rows.into_iter().filter(|row| !secret_box.is_current(&row.sealed)) {
        let id = row.id.0.to_string();
        let binding = Binding { row: &id, purpose: &row.purpose };
        let plaintext = secret_box
            .open(binding, &row.sealed)
            .map_err(|error| AppError::Internal(anyhow::anyhow!("secret {id} ({}): {error}", row.purpose)))?;
        let sealed = secret_box.seal(binding, plaintext.expose_secret());
        put(conn, &SecretRow { sealed, updated_at: DbTime(crate::domain::now()), ..row }).await?;
        resealed += 1;
    }
    Ok((resealed, total))
}

pub async fn find(conn: &mut DbConn, id: SecretId) -> StoreResult<Option<SecretRow>> {
    let id = DbUuid(id.uuid());
    Ok(with_conn!(conn, |c| secrets::table.find(id).select(SecretRow::as_select()).first(c).await.optional())?)
}

/// Destroys a value: events that named it keep only its id.
pub async fn delete(conn: &mut DbConn, id: SecretId) -> StoreResult<()> {
    let id = DbUuid(id.uuid());
    with_conn!(conn, |c| diesel::delete(secrets::table.find(id)).execute(c).await)?;
    Ok(())
}
