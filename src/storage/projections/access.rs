//! Projection `conversation_access`: who each conversation is shared with, and the
//! queries that decide who may read what. A row per (conversation, user or group), its
//! id derived from the pair so that a new grant replaces the old; a revoked grant stays
//! as `revoked`, a user who left as `left` (which keeps their groups' grants from
//! letting them back in).

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::{RowChange, Table, conversations, derived_id, groups};
use crate::bus::Audience;
use crate::domain::access::{self, Grantee, Role};
use crate::domain::conversation::Event;
use crate::domain::ids::{ConversationId, GroupId, UserId};
use crate::domain::{self, group};
use crate::storage::event_store::RecordedEvent;
use crate::storage::schema::{conversation_access, group_members, user_groups};
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{DbConn, StoreResult, with_conn};

/// The ids of the conversations `{viewer}` may read: owns, holds a grant for, or belongs
/// to a group holding one (unless they left it). Every query that lists what a user may
/// see uses it, so that they all agree.
pub(crate) const READABLE: &str = "SELECT id FROM conversations WHERE owner_id = {viewer} \
    UNION SELECT conversation_id FROM conversation_access \
    WHERE role IN ('viewer', 'editor') AND user_id = {viewer} \
    UNION SELECT a.conversation_id FROM conversation_access a \
    JOIN group_members m ON m.group_id = a.group_id JOIN user_groups g ON g.id = a.group_id \
    WHERE a.role IN ('viewer', 'editor') AND m.active AND NOT g.deleted AND m.user_id = {viewer} \
    AND NOT EXISTS (SELECT 1 FROM conversation_access l WHERE l.conversation_id = a.conversation_id \
    AND l.role = 'left' AND l.user_id = {viewer})";

/// A filter on `conversations.id`: [`READABLE`] by `$viewer` (a `UserId`).
macro_rules! readable_by {
    ($viewer:expr) => {{
        use $crate::storage::sql_types::{DbUuid, Uuid};
        let viewer = DbUuid($viewer.uuid());
        let parts: Vec<&str> = $crate::storage::projections::access::READABLE.split("{viewer}").collect();
        diesel::dsl::sql::<diesel::sql_types::Bool>(&format!("conversations.id IN ({}", parts[0]))
            .bind::<Uuid, _>(viewer)
            .sql(parts[1])
            .bind::<Uuid, _>(viewer)
            .sql(parts[2])
            .bind::<Uuid, _>(viewer)
            .sql(parts[3])
            .bind::<Uuid, _>(viewer)
            .sql(&format!("{})", parts[4]))
    }};
}
pub(crate) use readable_by;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = conversation_access)]
pub struct AccessRow {
    pub id: DbUuid,
    pub conversation_id: DbUuid,
    pub user_id: Option<DbUuid>,
    pub group_id: Option<DbUuid>,
    /// `viewer`, `editor`, `revoked` or `left`.
    pub role: String,
    pub granted_by: Option<DbUuid>,
    pub updated_at: DbTime,
}

impl AccessRow {
    pub fn grantee(&self) -> Option<Grantee> {
        match (self.user_id, self.group_id) {
            (Some(user), _) => Some(Grantee::User(UserId::from_uuid(user.0))),
            (None, Some(group)) => Some(Grantee::Group(GroupId::from_uuid(group.0))),
            (None, None) => None,
        }
    }

    /// The role it grants, if it still grants one.
    pub fn role(&self) -> Option<Role> {
        Role::parse(&self.role).filter(|role| *role != Role::Owner)
    }
}

fn row_id(conversation: uuid::Uuid, grantee: Grantee) -> DbUuid {
    match grantee {
        Grantee::User(user) => derived_id(&[b"user", conversation.as_bytes(), user.uuid().as_bytes()]),
        Grantee::Group(group) => derived_id(&[b"group", conversation.as_bytes(), group.uuid().as_bytes()]),
    }
}

pub struct Access;

impl Table for Access {
    type Row = AccessRow;
    /// The new `role`.
    type Update = String;

    fn id(row: &AccessRow) -> DbUuid {
        row.id
    }

    fn merge(role: String, row: &mut AccessRow) {
        row.role = role;
    }

    async fn insert(conn: &mut DbConn, rows: &[AccessRow]) -> StoreResult<()> {
        for row in rows {
            with_conn!(conn, |c| {
                diesel::insert_into(conversation_access::table)
                    .values(row)
                    .on_conflict(conversation_access::id)
                    .do_update()
                    .set((
                        conversation_access::role.eq(excluded(conversation_access::role)),
                        conversation_access::granted_by.eq(excluded(conversation_access::granted_by)),
                        conversation_access::updated_at.eq(excluded(conversation_access::updated_at)),
                    ))
                    .execute(c)
                    .await
            })?;
        }
        Ok(())
    }

    async fn update(conn: &mut DbConn, id: DbUuid, role: &String) -> StoreResult<()> {
        with_conn!(conn, |c| {
            diesel::update(conversation_access::table.find(id)).set(conversation_access::role.eq(role)).execute(c).await
        })?;
        Ok(())
    }

    async fn clear(conn: &mut DbConn) -> StoreResult<()> {
        with_conn!(conn, |c| diesel::delete(conversation_access::table).execute(c).await)?;
        Ok(())
    }
}

pub(super) fn change(stored: &RecordedEvent, event: &Event) -> Option<RowChange<Access>> {
    let conversation = stored.stream_id.0;
    let row = |grantee: Grantee, role: &str| {
        let (user_id, group_id) = match grantee {
            Grantee::User(user) => (Some(DbUuid(user.uuid())), None),
            Grantee::Group(group) => (None, Some(DbUuid(group.uuid()))),
        };
        AccessRow {
            id: row_id(conversation, grantee),
            conversation_id: stored.stream_id,
            user_id,
            group_id,
            role: role.to_owned(),
            granted_by: stored.actor_id,
            updated_at: stored.occurred_at,
        }
    };
    match event {
        Event::AccessGranted { grantee, role } => Some(RowChange::Insert(row(*grantee, role.as_str()))),
        Event::AccessRevoked { grantee } => Some(RowChange::Update(row_id(conversation, *grantee), "revoked".into())),
        Event::MemberLeft { user_id } => Some(RowChange::Insert(row(Grantee::User(*user_id), "left"))),
        _ => None,
    }
}

/// The grants of a conversation that still give access, oldest first.
pub async fn grants_of(conn: &mut DbConn, conversation: ConversationId) -> StoreResult<Vec<AccessRow>> {
    let conversation = DbUuid(conversation.uuid());
    Ok(with_conn!(conn, |c| {
        conversation_access::table
            .filter(conversation_access::conversation_id.eq(conversation))
            .filter(conversation_access::role.eq_any(["viewer", "editor"]))
            .order((conversation_access::updated_at.asc(), conversation_access::id.asc()))
            .select(AccessRow::as_select())
            .load(c)
            .await
    })?)
}

/// `user`'s role in a conversation owned by `owner`, if they may read it.
pub async fn role_of(
    conn: &mut DbConn,
    conversation: ConversationId,
    owner: UserId,
    user: UserId,
) -> StoreResult<Option<Role>> {
    if user == owner {
        return Ok(Some(Role::Owner));
    }
    let own_id = row_id(conversation.uuid(), Grantee::User(user));
    let own: Option<String> = with_conn!(conn, |c| {
        conversation_access::table.find(own_id).select(conversation_access::role).first(c).await.optional()
    })?;
    let own = own.filter(|role| role != "revoked").map(|role| Role::parse(&role));
    if own.is_some() {
        return Ok(access::effective_role(false, own, []));
    }
    let (conversation, user) = (DbUuid(conversation.uuid()), DbUuid(user.uuid()));
    let through_groups: Vec<String> = with_conn!(conn, |c| {
        conversation_access::table
            .inner_join(group_members::table.on(group_members::group_id.nullable().eq(conversation_access::group_id)))
            .inner_join(user_groups::table.on(user_groups::id.eq(group_members::group_id)))
            .filter(conversation_access::conversation_id.eq(conversation))
            .filter(conversation_access::role.eq_any(["viewer", "editor"]))
            .filter(group_members::user_id.eq(user))
            .filter(group_members::active.eq(true))
            .filter(user_groups::deleted.eq(false))
            .select(conversation_access::role)
            .load(c)
            .await
    })?;
    Ok(access::effective_role(false, None, through_groups.iter().filter_map(|role| Role::parse(role))))
}

/// Everyone who may read a conversation now: its owner, its grantees, and the members of
/// its groups (minus those who left).
pub async fn readers(conn: &mut DbConn, conversation: ConversationId, owner: UserId) -> StoreResult<Vec<UserId>> {
    let conversation = DbUuid(conversation.uuid());
    let direct: Vec<AccessRow> = with_conn!(conn, |c| {
        conversation_access::table
            .filter(conversation_access::conversation_id.eq(conversation))
            .select(AccessRow::as_select())
            .load(c)
            .await
    })?;
    let groups: Vec<DbUuid> = direct.iter().filter(|row| row.role().is_some()).filter_map(|row| row.group_id).collect();
    let members: Vec<DbUuid> = if groups.is_empty() {
        vec![]
    } else {
        with_conn!(conn, |c| {
            group_members::table
                .inner_join(user_groups::table.on(user_groups::id.eq(group_members::group_id)))
                .filter(group_members::group_id.eq_any(&groups))
                .filter(group_members::active.eq(true))
                .filter(user_groups::deleted.eq(false))
                .select(group_members::user_id)
                .load(c)
                .await
        })?
    };
    let left: Vec<DbUuid> = direct.iter().filter(|row| row.role == "left").filter_map(|row| row.user_id).collect();
    let mut readers: Vec<UserId> = std::iter::once(owner)
        .chain(
            direct
                .iter()
                .filter(|row| row.role().is_some())
                .filter_map(|row| row.user_id)
                .map(|id| UserId::from_uuid(id.0)),
        )
        .chain(members.into_iter().filter(|id| !left.contains(id)).map(|id| UserId::from_uuid(id.0)))
        .collect();
    readers.sort();
    readers.dedup();
    Ok(readers)
}

/// Every row, in id order (used to compare projections).
pub async fn all(conn: &mut DbConn) -> StoreResult<Vec<AccessRow>> {
    Ok(with_conn!(conn, |c| {
        conversation_access::table.order(conversation_access::id.asc()).select(AccessRow::as_select()).load(c).await
    })?)
}

/// Who hears of `events` (from one stream): for a conversation, everyone who may read it
/// and anyone the events shut out; for a group, its creator and members, and the
/// conversations shared with it, whose subscribers may have lost access.
pub async fn audience(conn: &mut DbConn, events: &[RecordedEvent]) -> StoreResult<Audience> {
    let Some(first) = events.first() else { return Ok(Audience::default()) };
    let mut audience = Audience::default();
    let mut groups: Vec<GroupId> = vec![];
    for event in events {
        match event.decode()? {
            domain::Event::Conversation(Event::AccessRevoked { grantee: Grantee::User(user) })
            | domain::Event::Conversation(Event::MemberLeft { user_id: user }) => audience.viewers.push(user),
            domain::Event::Conversation(Event::AccessRevoked { grantee: Grantee::Group(group) })
            | domain::Event::Conversation(Event::AccessGranted { grantee: Grantee::Group(group), .. }) => {
                groups.push(group)
            }
            domain::Event::Group(event) => {
                let group = GroupId::from_uuid(first.stream_id.0);
                groups.push(group);
                if let group::Event::GroupMemberRemoved { user_id } = event {
                    audience.viewers.push(user_id);
                }
                if matches!(event, group::Event::GroupMemberRemoved { .. } | group::Event::GroupDeleted {}) {
                    audience.access_changed.extend(shared_with(conn, group).await?);
                }
                if let Some(row) = groups::find_any(conn, group).await? {
                    audience.viewers.push(row.creator());
                }
            }
            _ => {}
        }
    }
    for group in groups {
        audience.viewers.extend(groups::members(conn, group).await?);
    }
    let conversation = ConversationId::from_uuid(first.stream_id.0);
    if let Some(row) = conversations::find(conn, conversation).await? {
        audience.viewers.extend(readers(conn, conversation, row.owner()).await?);
    }
    audience.viewers.sort();
    audience.viewers.dedup();
    Ok(audience)
}

/// The conversations a group holds a grant for.
async fn shared_with(conn: &mut DbConn, group: GroupId) -> StoreResult<Vec<ConversationId>> {
    let group = DbUuid(group.uuid());
    let rows: Vec<DbUuid> = with_conn!(conn, |c| {
        conversation_access::table
            .filter(conversation_access::group_id.eq(group))
            .filter(conversation_access::role.eq_any(["viewer", "editor"]))
            .select(conversation_access::conversation_id)
            .load(c)
            .await
    })?;
    Ok(rows.into_iter().map(|id| ConversationId::from_uuid(id.0)).collect())
}
