//! Projections `registration_settings` (the policy an administrator set: one row, once
//! set) and `invites`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::{RowChange, Table, derived_id};
use crate::domain::ids::InviteId;
use crate::domain::registration::{Event, Policy};
use crate::domain::user::Role;
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::{invites, registration_settings};
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{DbConn, StoreResult, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = registration_settings)]
pub struct SettingsRow {
    pub id: DbUuid,
    pub policy: String,
    pub updated_at: DbTime,
}

fn settings_id() -> DbUuid {
    derived_id(&[b"registration settings"])
}

pub struct Settings;

impl Table for Settings {
    type Row = SettingsRow;
    /// A new policy replaces the row.
    type Update = std::convert::Infallible;

    fn id(row: &SettingsRow) -> DbUuid {
        row.id
    }

    fn merge(update: Self::Update, _: &mut SettingsRow) {
        match update {}
    }

    async fn insert(conn: &mut DbConn, rows: &[SettingsRow]) -> StoreResult<()> {
        for row in rows {
            with_conn!(conn, |c| {
                diesel::insert_into(registration_settings::table)
                    .values(row)
                    .on_conflict(registration_settings::id)
                    .do_update()
                    .set((
                        registration_settings::policy.eq(excluded(registration_settings::policy)),
                        registration_settings::updated_at.eq(excluded(registration_settings::updated_at)),
                    ))
                    .execute(c)
                    .await
            })?;
        }
        Ok(())
    }

    async fn update(_: &mut DbConn, _: DbUuid, update: &Self::Update) -> StoreResult<()> {
        match *update {}
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(registration_settings::table).execute(c).await)?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = invites)]
pub struct InviteRow {
    pub id: DbUuid,
    pub code_hash: String,
    pub email: Option<String>,
    pub role: String,
    pub created_by: Option<DbUuid>,
    pub created_at: DbTime,
    pub expires_at: DbTime,
    pub status: String,
    pub redeemed_by: Option<DbUuid>,
    pub updated_at: DbTime,
}

impl InviteRow {
    pub fn invite_id(&self) -> InviteId {
        InviteId::from_uuid(self.id.0)
    }

    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::User)
    }
}

#[derive(Debug, AsChangeset)]
#[diesel(table_name = invites)]
pub struct InviteUpdate {
    status: String,
    redeemed_by: Option<DbUuid>,
    updated_at: DbTime,
}

pub struct Invites;

impl Table for Invites {
    type Row = InviteRow;
    type Update = InviteUpdate;

    fn id(row: &InviteRow) -> DbUuid {
        row.id
    }

    fn merge(update: InviteUpdate, row: &mut InviteRow) {
        row.status = update.status;
        row.redeemed_by = update.redeemed_by;
        row.updated_at = update.updated_at;
    }

    async fn insert(conn: &mut DbConn, rows: &[InviteRow]) -> StoreResult<()> {
        crate::storage::insert_rows!(conn, invites::table, rows)?;
        Ok(())
    }

    async fn update(conn: &mut DbConn, id: DbUuid, update: &InviteUpdate) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::update(invites::table.find(id)).set(update).execute(c).await)?;
        Ok(())
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(invites::table).execute(c).await)?;
        Ok(())
    }
}

/// What an event does to the two tables.
pub(super) enum Change {
    Settings(RowChange<Settings>),
    Invite(RowChange<Invites>),
}

pub(super) fn change(stored: &RecordedEvent, event: &Event) -> Change {
    let at = stored.occurred_at;
    match event {
        Event::RegistrationPolicyChanged { policy } => Change::Settings(RowChange::Insert(SettingsRow {
            id: settings_id(),
            policy: policy.as_str().to_owned(),
            updated_at: at,
        })),
        Event::InviteCreated { invite_id, code_hash, email, role, expires_at } => {
            Change::Invite(RowChange::Insert(InviteRow {
                id: DbUuid(invite_id.uuid()),
                code_hash: code_hash.clone(),
                email: email.clone(),
                role: role.as_str().to_owned(),
                created_by: stored.actor_id,
                created_at: at,
                expires_at: DbTime(*expires_at),
                status: "open".into(),
                redeemed_by: None,
                updated_at: at,
            }))
        }
        Event::InviteRedeemed { invite_id, user_id } => Change::Invite(RowChange::Update(
            DbUuid(invite_id.uuid()),
            InviteUpdate { status: "redeemed".into(), redeemed_by: Some(DbUuid(user_id.uuid())), updated_at: at },
        )),
        Event::InviteRevoked { invite_id } => Change::Invite(RowChange::Update(
            DbUuid(invite_id.uuid()),
            InviteUpdate { status: "revoked".into(), redeemed_by: None, updated_at: at },
        )),
    }
}

/// The policy an administrator set, if any.
pub async fn policy(conn: &mut DbConn) -> StoreResult<Option<Policy>> {
    let id = settings_id();
    let policy: Option<String> = with_conn!(conn, |c| {
        registration_settings::table.find(id).select(registration_settings::policy).first(c).await.optional()
    })?;
    Ok(policy.as_deref().and_then(Policy::parse))
}

pub async fn find(conn: &mut DbConn, id: InviteId) -> StoreResult<Option<InviteRow>> {
    let id = DbUuid(id.uuid());
    Ok(with_conn!(conn, |c| invites::table.find(id).select(InviteRow::as_select()).first(c).await.optional())?)
}

/// The invite with this code's hash.
pub async fn by_code_hash(conn: &mut DbConn, code_hash: &str) -> StoreResult<Option<InviteRow>> {
    Ok(with_conn!(conn, |c| {
        invites::table.filter(invites::code_hash.eq(code_hash)).select(InviteRow::as_select()).first(c).await.optional()
    })?)
}

/// Invites, newest first, after `before` (a creation time and id) if given.
pub async fn list(
    conn: &mut DbConn,
    before: Option<(DateTime<Utc>, DbUuid)>,
    limit: i64,
) -> StoreResult<Vec<InviteRow>> {
    Ok(with_conn!(conn, |c| {
        let mut query = invites::table
            .order((invites::created_at.desc(), invites::id.desc()))
            .limit(limit)
            .select(InviteRow::as_select())
            .into_boxed();
        if let Some((at, id)) = before {
            query = query.filter(
                invites::created_at.lt(DbTime(at)).or(invites::created_at.eq(DbTime(at)).and(invites::id.lt(id))),
            );
        }
        query.load(c).await
    })?)
}

/// Every invite, in id order (used to compare projections).
pub async fn all(conn: &mut DbConn) -> StoreResult<Vec<InviteRow>> {
    Ok(with_conn!(conn, |c| invites::table.order(invites::id.asc()).select(InviteRow::as_select()).load(c).await)?)
}
