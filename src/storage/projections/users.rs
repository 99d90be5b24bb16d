//! Projection `users`: one row per account.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::domain::ids::UserId;
use crate::domain::user::{Event, Role};
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::users;
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{DbConn, StoreResult, on_unique_violation, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: DbUuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

impl UserRow {
    pub fn user_id(&self) -> UserId {
        UserId::from_uuid(self.id.0)
    }

    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::User)
    }
}

pub(super) async fn apply(conn: &mut DbConn, stored: &RecordedEvent, event: &Event) -> StoreResult<()> {
    let id = stored.stream_id;
    let at = stored.occurred_at;
    let row = users::table.filter(users::id.eq(id));
    match event {
        Event::UserRegistered { email, name, role } => {
            let new = UserRow {
                id,
                email: email.clone(),
                name: name.clone(),
                role: role.as_str().to_owned(),
                disabled: false,
                created_at: at,
                updated_at: at,
            };
            with_conn!(conn, |c| diesel::insert_into(users::table).values(&new).execute(c).await)
                .map_err(on_unique_violation)?;
        }
        Event::UserRoleChanged { role } => {
            let set = (users::role.eq(role.as_str()), users::updated_at.eq(at));
            with_conn!(conn, |c| diesel::update(row).set(set).execute(c).await)?;
        }
        Event::UserPasswordChanged {} => {
            with_conn!(conn, |c| diesel::update(row).set(users::updated_at.eq(at)).execute(c).await)?;
        }
        Event::UserDisabled {} | Event::UserEnabled {} => {
            let set = (users::disabled.eq(matches!(event, Event::UserDisabled {})), users::updated_at.eq(at));
            with_conn!(conn, |c| diesel::update(row).set(set).execute(c).await)?;
        }
    }
    Ok(())
}

pub(super) async fn clear(conn: &mut DbConn) -> StoreResult<()> {
    with_conn!(conn, |c| diesel::delete(users::table).execute(c).await)?;
    Ok(())
}

pub async fn find(conn: &mut DbConn, id: UserId) -> StoreResult<Option<UserRow>> {
    let id = DbUuid(id.uuid());
    Ok(with_conn!(conn, |c| users::table.find(id).select(UserRow::as_select()).first(c).await.optional())?)
}

pub async fn find_by_email(conn: &mut DbConn, email: &str) -> StoreResult<Option<UserRow>> {
    Ok(with_conn!(conn, |c| {
        users::table.filter(users::email.eq(email)).select(UserRow::as_select()).first(c).await.optional()
    })?)
}

/// The users with these ids, in no particular order.
pub async fn find_many(conn: &mut DbConn, ids: &[UserId]) -> StoreResult<Vec<UserRow>> {
    let ids: Vec<DbUuid> = ids.iter().map(|id| DbUuid(id.uuid())).collect();
    Ok(with_conn!(conn, |c| {
        users::table.filter(users::id.eq_any(&ids)).select(UserRow::as_select()).load(c).await
    })?)
}

/// Every account, oldest first (for the operator's CLI).
pub async fn all(conn: &mut DbConn) -> StoreResult<Vec<UserRow>> {
    Ok(with_conn!(conn, |c| {
        users::table.order((users::created_at.asc(), users::id.asc())).select(UserRow::as_select()).load(c).await
    })?)
}

pub async fn count(conn: &mut DbConn) -> StoreResult<i64> {
    Ok(with_conn!(conn, |c| users::table.count().get_result(c).await)?)
}
