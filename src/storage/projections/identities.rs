//! Projection `user_identities`: the identity providers' accounts each user signs in
//! with, keyed by issuer and subject.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{RowChange, Table, derived_id};
use crate::domain::ids::UserId;
use crate::domain::user::Event;
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::user_identities;
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{DbConn, StoreResult, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = user_identities)]
pub struct IdentityRow {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub issuer: String,
    pub subject: String,
    pub created_at: DbTime,
}

pub struct Identities;

fn row_id(issuer: &str, subject: &str) -> DbUuid {
    derived_id(&[b"identity", issuer.as_bytes(), subject.as_bytes()])
}

impl Table for Identities {
    type Row = IdentityRow;
    /// Rows are written once.
    type Update = std::convert::Infallible;

    fn id(row: &IdentityRow) -> DbUuid {
        row.id
    }

    fn merge(update: Self::Update, _: &mut IdentityRow) {
        match update {}
    }

    async fn insert(conn: &mut DbConn, rows: &[IdentityRow]) -> StoreResult<()> {
        crate::storage::insert_rows!(conn, user_identities::table, rows)?;
        Ok(())
    }

    async fn update(_: &mut DbConn, _: DbUuid, update: &Self::Update) -> StoreResult<()> {
        match *update {}
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(user_identities::table).execute(c).await)?;
        Ok(())
    }
}

pub(super) fn change(stored: &RecordedEvent, event: &Event) -> Option<RowChange<Identities>> {
    let Event::UserIdentityLinked { issuer, subject } = event else { return None };
    Some(RowChange::Insert(IdentityRow {
        id: row_id(issuer, subject),
        user_id: stored.stream_id,
        issuer: issuer.clone(),
        subject: subject.clone(),
        created_at: stored.occurred_at,
    }))
}

/// The user who signs in with this provider account.
pub async fn user_of(conn: &mut DbConn, issuer: &str, subject: &str) -> StoreResult<Option<UserId>> {
    let id = row_id(issuer, subject);
    let user: Option<DbUuid> = with_conn!(conn, |c| {
        user_identities::table.find(id).select(user_identities::user_id).first(c).await.optional()
    })?;
    Ok(user.map(|user| UserId::from_uuid(user.0)))
}

/// Every row, in id order (used to compare projections).
pub async fn all(conn: &mut DbConn) -> StoreResult<Vec<IdentityRow>> {
    Ok(with_conn!(conn, |c| {
        user_identities::table.order(user_identities::id.asc()).select(IdentityRow::as_select()).load(c).await
    })?)
}
