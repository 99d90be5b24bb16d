//! Projection `users`: one row per account.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{RowChange, Table};
use crate::domain::ids::UserId;
use crate::domain::user::{Event, Role};
use crate::domain::values::ModelMask;
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::users;
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{DbConn, StoreResult, insert_rows, on_unique_violation, with_conn};

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
    pub model_mask: Option<String>,
}

impl UserRow {
    pub fn user_id(&self) -> UserId {
        UserId::from_uuid(self.id.0)
    }

    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::User)
    }

    pub fn model_mask(&self) -> Option<ModelMask> {
        self.model_mask.as_deref().map(ModelMask::stored)
    }
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserUpdate {
    email: Option<String>,
    name: Option<String>,
    role: Option<String>,
    disabled: Option<bool>,
    updated_at: Option<DbTime>,
    model_mask: Option<Option<String>>,
}

pub struct Users;

impl Table for Users {
    type Row = UserRow;
    type Update = UserUpdate;

    fn id(row: &UserRow) -> DbUuid {
        row.id
    }

    fn merge(update: UserUpdate, row: &mut UserRow) {
        if let Some(email) = update.email {
            row.email = email;
        }
        if let Some(name) = update.name {
            row.name = name;
        }
        if let Some(role) = update.role {
            row.role = role;
        }
        if let Some(mask) = update.model_mask {
            row.model_mask = mask;
        }
        row.disabled = update.disabled.unwrap_or(row.disabled);
        row.updated_at = update.updated_at.unwrap_or(row.updated_at);
    }

    async fn insert(conn: &mut DbConn, rows: &[UserRow]) -> StoreResult<()> {
        insert_rows!(conn, users::table, rows).map_err(on_unique_violation)?;
        Ok(())
    }

    async fn update(conn: &mut DbConn, id: DbUuid, update: &UserUpdate) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::update(users::table.find(id)).set(update).execute(c).await)?;
        Ok(())
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(users::table).execute(c).await)?;
        Ok(())
    }
}

pub(super) fn change(stored: &RecordedEvent, event: &Event) -> Option<RowChange<Users>> {
    let at = Some(stored.occurred_at);
    let update = match event {
        Event::UserRegistered { email, name, role } => {
            return Some(RowChange::Insert(UserRow {
                id: stored.stream_id,
                email: email.clone(),
                name: name.clone(),
                role: role.as_str().to_owned(),
                disabled: false,
                created_at: stored.occurred_at,
                updated_at: stored.occurred_at,
                model_mask: None,
            }));
        }
        Event::UserRoleChanged { role } => {
            UserUpdate { role: Some(role.as_str().to_owned()), updated_at: at, ..Default::default() }
        }
        Event::UserPasswordChanged {} => UserUpdate { updated_at: at, ..Default::default() },
        Event::UserDisabled {} => UserUpdate { disabled: Some(true), updated_at: at, ..Default::default() },
        Event::UserEnabled {} => UserUpdate { disabled: Some(false), updated_at: at, ..Default::default() },
        Event::UserModelMaskChanged { mask } => {
            UserUpdate { model_mask: Some(mask.clone()), updated_at: at, ..Default::default() }
        }
        Event::UserProfileChanged { name, email } => {
            UserUpdate { name: name.clone(), email: email.clone(), updated_at: at, ..Default::default() }
        }
        Event::ToolPolicyChanged { .. } | Event::UserIdentityLinked { .. } => return None,
    };
    Some(RowChange::Update(stored.stream_id, update))
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

/// Every account, oldest first (for the operator's CLI and projection checks).
pub async fn all(conn: &mut DbConn) -> StoreResult<Vec<UserRow>> {
    Ok(with_conn!(conn, |c| {
        users::table.order((users::created_at.asc(), users::id.asc())).select(UserRow::as_select()).load(c).await
    })?)
}

pub async fn count(conn: &mut DbConn) -> StoreResult<i64> {
    Ok(with_conn!(conn, |c| users::table.count().get_result(c).await)?)
}

/// Enabled administrators.
pub async fn count_admins(conn: &mut DbConn) -> StoreResult<i64> {
    Ok(with_conn!(conn, |c| {
        users::table
            .filter(users::role.eq(Role::Admin.as_str()))
            .filter(users::disabled.eq(false))
            .count()
            .get_result(c)
            .await
    })?)
}

/// Accounts in creation order, after `after` (a creation time and id) if given.
pub async fn page(
    conn: &mut DbConn,
    after: Option<(chrono::DateTime<chrono::Utc>, DbUuid)>,
    limit: i64,
) -> StoreResult<Vec<UserRow>> {
    Ok(with_conn!(conn, |c| {
        let mut query = users::table
            .order((users::created_at.asc(), users::id.asc()))
            .limit(limit)
            .select(UserRow::as_select())
            .into_boxed();
        if let Some((at, id)) = after {
            query = query
                .filter(users::created_at.gt(DbTime(at)).or(users::created_at.eq(DbTime(at)).and(users::id.gt(id))));
        }
        query.load(c).await
    })?)
}
