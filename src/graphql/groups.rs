//! Groups of users to share conversations with: their creator manages them, their
//! members see them, nobody else learns they exist.

use async_graphql::connection::Connection;
use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};

use super::collaboration::Person;
use super::pagination::{decode_cursor, encode_cursor, page, page_size};
use super::{ApiResult, ContextExt, parse_id};
use crate::app::App;
use crate::auth::Viewer;
use crate::chat;
use crate::domain::group::Command;
use crate::domain::ids::{GroupId, UserId};
use crate::domain::values::GroupName;
use crate::error::{AppError, AppResult};
use crate::storage::projections::groups::{self, GroupRow};
use crate::storage::projections::users;

/// A named set of users that conversations can be shared with.
#[derive(Clone)]
pub struct Group(pub GroupRow);

#[Object]
impl Group {
    async fn id(&self) -> ID {
        ID(self.0.group_id().to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Who manages it.
    async fn creator(&self, ctx: &Context<'_>) -> ApiResult<Option<Person>> {
        super::collaboration::person(ctx, self.0.creator()).await
    }

    /// Its members, in the order they joined (the creator is a member only if added).
    async fn members(&self, ctx: &Context<'_>) -> ApiResult<Vec<Person>> {
        let mut conn = ctx.app().db.conn().await?;
        let ids = groups::members(&mut conn, self.0.group_id()).await?;
        let mut found = users::find_many(&mut conn, &ids).await?;
        found.sort_by_key(|user| ids.iter().position(|id| *id == user.user_id()));
        Ok(found.into_iter().map(Person::from).collect())
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at.0
    }

    /// The identity provider's group its membership follows, if linked: each single
    /// sign-on adds the user if the provider lists them in it, and removes them if not.
    async fn provider_group(&self) -> Option<&str> {
        self.0.provider_group.as_deref()
    }
}

/// The group, if the viewer created it or belongs to it; NOT_FOUND otherwise.
pub(super) async fn visible(app: &App, viewer: &Viewer, id: GroupId) -> AppResult<GroupRow> {
    let mut conn = app.db.conn().await?;
    match groups::find(&mut conn, id).await? {
        Some(row) if row.creator() == viewer.user_id => Ok(row),
        Some(row) if groups::members(&mut conn, id).await?.contains(&viewer.user_id) => Ok(row),
        _ => Err(AppError::NotFound("group")),
    }
}

/// A user who exists, to add to a group.
pub(super) async fn existing_user(app: &App, user: UserId) -> AppResult<UserId> {
    match users::find(&mut app.db.conn().await?, user).await? {
        Some(row) if !row.disabled => Ok(user),
        _ => Err(AppError::NotFound("user")),
    }
}

fn group_id(id: &ID) -> AppResult<GroupId> {
    parse_id("groupId", id, GroupId::parse)
}

#[derive(InputObject)]
pub struct GroupMemberInput {
    pub group_id: ID,
    pub user_id: ID,
}

#[derive(Default)]
pub struct GroupsQuery;

#[Object]
impl GroupsQuery {
    /// The groups the viewer created or belongs to, by name.
    async fn groups(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, Group>> {
        let viewer = ctx.viewer()?;
        let limit = page_size(first, ctx.max_page_size())?;
        let after_key = after
            .as_deref()
            .map(|cursor| {
                let inner = decode_cursor(cursor)?;
                inner
                    .rsplit_once('|')
                    .and_then(|(name, id)| Some((name.to_owned(), uuid::Uuid::parse_str(id).ok()?)))
                    .ok_or_else(|| AppError::bad_input("after", "is not a cursor from this server"))
            })
            .transpose()?;
        let has_previous = after_key.is_some();
        let mut conn = ctx.app().db.conn().await?;
        let rows = groups::of_user(&mut conn, viewer.user_id, after_key, limit as i64 + 1).await?;
        Ok(page(rows, limit, has_previous, |row| encode_cursor(&format!("{}|{}", row.name, row.id.0)), Group))
    }

    async fn group(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Group> {
        let viewer = ctx.viewer()?;
        Ok(Group(visible(ctx.app(), viewer, group_id(&id)?).await?))
    }
}

#[derive(Default)]
pub struct GroupsMutation;

#[Object]
impl GroupsMutation {
    async fn create_group(&self, ctx: &Context<'_>, name: String) -> ApiResult<Group> {
        let viewer = ctx.viewer()?;
        let name = GroupName::parse(&name)?;
        let id = GroupId::new();
        chat::run_on_group(ctx.app(), viewer.actor(), id, Command::Create { name }).await?;
        Ok(Group(visible(ctx.app(), viewer, id).await?))
    }

    /// Deletes a group; what was shared with it is no longer shared with its members.
    /// Returns its id.
    async fn delete_group(&self, ctx: &Context<'_>, id: ID) -> ApiResult<ID> {
        let viewer = ctx.viewer()?;
        chat::run_on_group(ctx.app(), viewer.actor(), group_id(&id)?, Command::Delete).await?;
        Ok(id)
    }

    async fn add_group_member(&self, ctx: &Context<'_>, input: GroupMemberInput) -> ApiResult<Group> {
        let viewer = ctx.viewer()?;
        let id = group_id(&input.group_id)?;
        visible(ctx.app(), viewer, id).await?;
        let user_id = existing_user(ctx.app(), parse_id("userId", &input.user_id, UserId::parse)?).await?;
        chat::run_on_group(ctx.app(), viewer.actor(), id, Command::AddMember { user_id }).await?;
        Ok(Group(visible(ctx.app(), viewer, id).await?))
    }

    /// Links a group the administrator created to the identity provider's group named
    /// `providerGroup` (as the `OIDC_GROUPS_CLAIM` claim lists it), or unlinks it (null).
    async fn link_group_to_provider(
        &self,
        ctx: &Context<'_>,
        group_id: ID,
        provider_group: Option<String>,
    ) -> ApiResult<Group> {
        let viewer = super::admin::admin(ctx)?;
        let id = self::group_id(&group_id)?;
        let provider_group = provider_group.map(|name| name.trim().to_owned());
        if provider_group.as_ref().is_some_and(|name| name.is_empty() || name.chars().count() > 256) {
            return Err(AppError::bad_input("providerGroup", "must be 1 to 256 characters").into());
        }
        chat::run_on_group(ctx.app(), viewer.actor(), id, Command::LinkProvider { provider_group }).await?;
        Ok(Group(visible(ctx.app(), viewer, id).await?))
    }

    async fn remove_group_member(&self, ctx: &Context<'_>, input: GroupMemberInput) -> ApiResult<Group> {
        let viewer = ctx.viewer()?;
        let id = group_id(&input.group_id)?;
        let user_id = parse_id("userId", &input.user_id, UserId::parse)?;
        chat::run_on_group(ctx.app(), viewer.actor(), id, Command::RemoveMember { user_id }).await?;
        Ok(Group(visible(ctx.app(), viewer, id).await?))
    }
}
