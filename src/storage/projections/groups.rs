//! Projections `user_groups` and `group_members`: the groups, and who is in each. A
//! member's row id is derived from (group, user), so adding them again revives it; a
//! removed member's row stays, inactive.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::{RowChange, Table, derived_id};
use crate::domain::group::Event;
use crate::domain::ids::{GroupId, UserId};
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::{group_members, user_groups};
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{DbConn, StoreResult, insert_rows, with_conn};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = user_groups)]
pub struct GroupRow {
    pub id: DbUuid,
    pub name: String,
    pub creator_id: DbUuid,
    pub deleted: bool,
    pub created_at: DbTime,
    pub updated_at: DbTime,
    /// The identity provider's group its membership follows.
    pub provider_group: Option<String>,
}

impl GroupRow {
    pub fn group_id(&self) -> GroupId {
        GroupId::from_uuid(self.id.0)
    }

    pub fn creator(&self) -> UserId {
        UserId::from_uuid(self.creator_id.0)
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = group_members)]
pub struct MemberRow {
    pub id: DbUuid,
    pub group_id: DbUuid,
    pub user_id: DbUuid,
    pub active: bool,
    pub updated_at: DbTime,
}

pub struct Groups;

/// A change to a group's row, and when.
#[derive(Clone)]
pub enum GroupUpdate {
    Deleted(DbTime),
    Linked(Option<String>, DbTime),
}

impl Table for Groups {
    type Row = GroupRow;
    type Update = GroupUpdate;

    fn id(row: &GroupRow) -> DbUuid {
        row.id
    }

    fn merge(update: GroupUpdate, row: &mut GroupRow) {
        match update {
            GroupUpdate::Deleted(at) => (row.deleted, row.updated_at) = (true, at),
            GroupUpdate::Linked(provider_group, at) => (row.provider_group, row.updated_at) = (provider_group, at),
        }
    }

    async fn insert(conn: &mut DbConn, rows: &[GroupRow]) -> StoreResult<()> {
        insert_rows!(conn, user_groups::table, rows)?;
        Ok(())
    }

    async fn update(conn: &mut DbConn, id: DbUuid, update: &GroupUpdate) -> StoreResult<()> {
        let row = user_groups::table.find(id);
        with_conn!(conn, |c| match update {
            GroupUpdate::Deleted(at) => {
                diesel::update(row)
                    .set((user_groups::deleted.eq(true), user_groups::updated_at.eq(*at)))
                    .execute(c)
                    .await
            }
            GroupUpdate::Linked(provider_group, at) => {
                diesel::update(row)
                    .set((user_groups::provider_group.eq(provider_group), user_groups::updated_at.eq(*at)))
                    .execute(c)
                    .await
            }
        })?;
        Ok(())
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(user_groups::table).execute(c).await)?;
        Ok(())
    }
}

pub struct Members;

impl Table for Members {
    type Row = MemberRow;
    /// Removal, and when.
    type Update = DbTime;

    fn id(row: &MemberRow) -> DbUuid {
        row.id
    }

    fn merge(removed_at: DbTime, row: &mut MemberRow) {
        row.active = false;
        row.updated_at = removed_at;
    }

    async fn insert(conn: &mut DbConn, rows: &[MemberRow]) -> StoreResult<()> {
        for row in rows {
            with_conn!(conn, |c| {
                diesel::insert_into(group_members::table)
                    .values(row)
                    .on_conflict(group_members::id)
                    .do_update()
                    .set((
                        group_members::active.eq(excluded(group_members::active)),
                        group_members::updated_at.eq(excluded(group_members::updated_at)),
                    ))
                    .execute(c)
                    .await
            })?;
        }
        Ok(())
    }

    async fn update(conn: &mut DbConn, id: DbUuid, removed_at: &DbTime) -> StoreResult<()> {
        with_conn!(conn, |c| {
            diesel::update(group_members::table.find(id))
                .set((group_members::active.eq(false), group_members::updated_at.eq(*removed_at)))
                .execute(c)
                .await
        })?;
        Ok(())
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(group_members::table).execute(c).await)?;
        Ok(())
    }
}

fn member_id(group: DbUuid, user: UserId) -> DbUuid {
    derived_id(&[b"member", group.0.as_bytes(), user.uuid().as_bytes()])
}

pub(super) fn group_change(stored: &RecordedEvent, event: &Event) -> Option<RowChange<Groups>> {
    match event {
        Event::GroupCreated { creator_id, name } => Some(RowChange::Insert(GroupRow {
            id: stored.stream_id,
            name: name.clone(),
            creator_id: DbUuid(creator_id.uuid()),
            deleted: false,
            created_at: stored.occurred_at,
            updated_at: stored.occurred_at,
            provider_group: None,
        })),
        Event::GroupDeleted {} => Some(RowChange::Update(stored.stream_id, GroupUpdate::Deleted(stored.occurred_at))),
        Event::GroupProviderLinked { provider_group } => {
            Some(RowChange::Update(stored.stream_id, GroupUpdate::Linked(provider_group.clone(), stored.occurred_at)))
        }
        Event::GroupMemberAdded { .. } | Event::GroupMemberRemoved { .. } => None,
    }
}

pub(super) fn member_change(stored: &RecordedEvent, event: &Event) -> Option<RowChange<Members>> {
    match event {
        Event::GroupMemberAdded { user_id } => Some(RowChange::Insert(MemberRow {
            id: member_id(stored.stream_id, *user_id),
            group_id: stored.stream_id,
            user_id: DbUuid(user_id.uuid()),
            active: true,
            updated_at: stored.occurred_at,
        })),
        Event::GroupMemberRemoved { user_id } => {
            Some(RowChange::Update(member_id(stored.stream_id, *user_id), stored.occurred_at))
        }
        Event::GroupCreated { .. } | Event::GroupDeleted {} | Event::GroupProviderLinked { .. } => None,
    }
}

/// A group that is not deleted.
pub async fn find(conn: &mut DbConn, id: GroupId) -> StoreResult<Option<GroupRow>> {
    let id = DbUuid(id.uuid());
    Ok(with_conn!(conn, |c| {
        user_groups::table
            .find(id)
            .filter(user_groups::deleted.eq(false))
            .select(GroupRow::as_select())
            .first(c)
            .await
            .optional()
    })?)
}

/// A group, deleted or not.
pub async fn find_any(conn: &mut DbConn, id: GroupId) -> StoreResult<Option<GroupRow>> {
    let id = DbUuid(id.uuid());
    Ok(with_conn!(conn, |c| user_groups::table.find(id).select(GroupRow::as_select()).first(c).await.optional())?)
}

/// The current members of a group, in the order they joined.
pub async fn members(conn: &mut DbConn, id: GroupId) -> StoreResult<Vec<UserId>> {
    let id = DbUuid(id.uuid());
    let rows: Vec<DbUuid> = with_conn!(conn, |c| {
        group_members::table
            .filter(group_members::group_id.eq(id))
            .filter(group_members::active.eq(true))
            .order((group_members::updated_at.asc(), group_members::id.asc()))
            .select(group_members::user_id)
            .load(c)
            .await
    })?;
    Ok(rows.into_iter().map(|id| UserId::from_uuid(id.0)).collect())
}

/// The groups `user` created or belongs to, by name, up to `limit` after `after` (a name
/// and id).
pub async fn of_user(
    conn: &mut DbConn,
    user: UserId,
    after: Option<(String, uuid::Uuid)>,
    limit: i64,
) -> StoreResult<Vec<GroupRow>> {
    let user = DbUuid(user.uuid());
    Ok(with_conn!(conn, |c| {
        let member_of = group_members::table
            .filter(group_members::user_id.eq(user))
            .filter(group_members::active.eq(true))
            .select(group_members::group_id);
        let mut query = user_groups::table
            .filter(user_groups::deleted.eq(false))
            .filter(user_groups::creator_id.eq(user).or(user_groups::id.eq_any(member_of)))
            .order((user_groups::name.asc(), user_groups::id.asc()))
            .limit(limit)
            .select(GroupRow::as_select())
            .into_boxed();
        if let Some((name, id)) = after {
            let id = DbUuid(id);
            query = query
                .filter(user_groups::name.gt(name.clone()).or(user_groups::name.eq(name).and(user_groups::id.gt(id))));
        }
        query.load(c).await
    })?)
}

/// The groups linked to a provider group, with its name.
pub async fn linked(conn: &mut DbConn) -> StoreResult<Vec<(GroupId, String)>> {
    let rows: Vec<(DbUuid, Option<String>)> = with_conn!(conn, |c| {
        user_groups::table
            .filter(user_groups::deleted.eq(false))
            .filter(user_groups::provider_group.is_not_null())
            .select((user_groups::id, user_groups::provider_group))
            .load(c)
            .await
    })?;
    Ok(rows.into_iter().filter_map(|(id, name)| Some((GroupId::from_uuid(id.0), name?))).collect())
}

/// The groups `user` is a member of.
pub async fn member_of(conn: &mut DbConn, user: UserId) -> StoreResult<Vec<GroupId>> {
    let user = DbUuid(user.uuid());
    let rows: Vec<DbUuid> = with_conn!(conn, |c| {
        group_members::table
            .filter(group_members::user_id.eq(user))
            .filter(group_members::active.eq(true))
            .select(group_members::group_id)
            .load(c)
            .await
    })?;
    Ok(rows.into_iter().map(|id| GroupId::from_uuid(id.0)).collect())
}

pub async fn all(conn: &mut DbConn) -> StoreResult<(Vec<GroupRow>, Vec<MemberRow>)> {
    let groups = with_conn!(conn, |c| {
        user_groups::table.order(user_groups::id.asc()).select(GroupRow::as_select()).load(c).await
    })?;
    let members = with_conn!(conn, |c| {
        group_members::table.order(group_members::id.asc()).select(MemberRow::as_select()).load(c).await
    })?;
    Ok((groups, members))
}
