//! Running the server, for administrators only: accounts, the registration policy and
//! invites.

use async_graphql::connection::Connection;
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::account::{RegistrationPolicy, User, UserRole};
use super::pagination::{page, page_size, parse_time_cursor, time_cursor};
use super::{ApiResult, ContextExt, parse_id};
use crate::auth::{Viewer, accounts, registration};
use crate::domain::ids::{InviteId, UserId};
use crate::domain::user::{self, Role};
use crate::domain::values::{Email, ModelMask};
use crate::error::AppError;
use crate::storage::projections::registration::{self as invites, InviteRow};
use crate::storage::projections::users::{self, UserRow};
use crate::storage::sql_types::DbUuid;

pub(super) fn admin<'a>(ctx: &'a Context<'_>) -> Result<&'a Viewer, AppError> {
    let viewer = ctx.viewer()?;
    match viewer.role {
        Role::Admin => Ok(viewer),
        Role::User => Err(AppError::Forbidden("only an administrator may do this")),
    }
}

fn parse_cursor(after: Option<&str>) -> Result<Option<(DateTime<Utc>, DbUuid)>, AppError> {
    Ok(after.map(parse_time_cursor).transpose()?.map(|(at, id)| (at, DbUuid(id))))
}

/// An invitation to create an account.
#[derive(SimpleObject)]
pub struct Invite {
    pub id: ID,
    /// The only address that may use it; null for anyone.
    pub email: Option<String>,
    pub role: UserRole,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// `open`, `redeemed` or `revoked` (an open invite past `expiresAt` no longer works).
    pub status: String,
}

impl From<InviteRow> for Invite {
    fn from(row: InviteRow) -> Self {
        Invite {
            id: ID(row.invite_id().to_string()),
            role: row.role().into(),
            email: row.email,
            created_at: row.created_at.0,
            expires_at: row.expires_at.0,
            status: row.status,
        }
    }
}

/// An invite just created. The code is shown only here: hand it to the person invited,
/// who registers with it (`inviteCode`) or signs in with it (`/auth/oidc/login?invite=`).
#[derive(SimpleObject)]
pub struct CreatedInvite {
    pub code: String,
    pub invite: Invite,
}

#[derive(InputObject)]
pub struct CreateInviteInput {
    /// Restricts the invite to this address.
    pub email: Option<String>,
    /// The role the new account gets; `USER` by default.
    pub role: Option<UserRole>,
    /// 1 to 720 hours; 72 by default.
    pub valid_for_hours: Option<i32>,
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Every account, oldest first.
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, User>> {
        admin(ctx)?;
        let limit = page_size(first, ctx.max_page_size())?;
        let after = parse_cursor(after.as_deref())?;
        let rows = users::page(&mut ctx.app().db.conn().await?, after, limit as i64 + 1).await?;
        Ok(page(rows, limit, after.is_some(), |row: &UserRow| time_cursor(row.created_at.0, row.id.0), User::from))
    }

    /// Invites, newest first.
    async fn invites(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, Invite>> {
        admin(ctx)?;
        let limit = page_size(first, ctx.max_page_size())?;
        let after = parse_cursor(after.as_deref())?;
        let rows = invites::list(&mut ctx.app().db.conn().await?, after, limit as i64 + 1).await?;
        Ok(page(rows, limit, after.is_some(), |row: &InviteRow| time_cursor(row.created_at.0, row.id.0), Invite::from))
    }
}

#[derive(Default)]
pub struct AdminMutation;

impl AdminMutation {
    async fn administer(&self, ctx: &Context<'_>, user_id: &ID, command: user::Command) -> ApiResult<User> {
        let viewer = admin(ctx)?;
        let user = parse_id("userId", user_id, UserId::parse)?;
        let done = accounts::administer(&ctx.app().db, viewer.actor(), user, command, None).await?;
        ctx.app().end_sessions(done.ended);
        Ok(done.user.into())
    }
}

#[Object]
impl AdminMutation {
    /// Limits the models a user may use to those whose id matches `mask` entirely (a
    /// regular expression); no mask allows every model.
    async fn set_user_model_mask(&self, ctx: &Context<'_>, user_id: ID, mask: Option<String>) -> ApiResult<User> {
        let mask = mask.as_deref().map(ModelMask::parse).transpose()?;
        self.administer(ctx, &user_id, user::Command::SetModelMask { mask }).await
    }

    /// Makes a user an administrator or a user. The last administrator cannot step
    /// down (`CONFLICT`, reason `LAST_ADMIN`).
    async fn set_user_role(&self, ctx: &Context<'_>, user_id: ID, role: UserRole) -> ApiResult<User> {
        let role = match role {
            UserRole::Admin => Role::Admin,
            UserRole::User => Role::User,
        };
        self.administer(ctx, &user_id, user::Command::SetRole { role }).await
    }

    /// Stops an account from signing in, and signs it out of every device. The last
    /// administrator cannot be disabled.
    async fn disable_user(&self, ctx: &Context<'_>, user_id: ID) -> ApiResult<User> {
        self.administer(ctx, &user_id, user::Command::Disable).await
    }

    async fn enable_user(&self, ctx: &Context<'_>, user_id: ID) -> ApiResult<User> {
        self.administer(ctx, &user_id, user::Command::Enable).await
    }

    async fn set_registration_policy(
        &self,
        ctx: &Context<'_>,
        policy: RegistrationPolicy,
    ) -> ApiResult<RegistrationPolicy> {
        let viewer = admin(ctx)?;
        registration::set_policy(&ctx.app().db, viewer.actor(), policy.into()).await?;
        Ok(policy)
    }

    async fn create_invite(&self, ctx: &Context<'_>, input: CreateInviteInput) -> ApiResult<CreatedInvite> {
        let viewer = admin(ctx)?;
        let email = input.email.as_deref().map(Email::parse).transpose()?;
        let role = match input.role {
            Some(UserRole::Admin) => Role::Admin,
            Some(UserRole::User) | None => Role::User,
        };
        let hours = input.valid_for_hours.unwrap_or(72);
        if !(1..=720).contains(&hours) {
            return Err(AppError::bad_input("validForHours", "must be between 1 and 720").into());
        }
        let valid_for = chrono::Duration::hours(i64::from(hours));
        let created = registration::create_invite(&ctx.app().db, viewer.actor(), email, role, valid_for).await?;
        Ok(CreatedInvite { code: created.code, invite: created.invite.into() })
    }

    async fn revoke_invite(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Invite> {
        let viewer = admin(ctx)?;
        let invite = parse_id("id", &id, InviteId::parse)?;
        registration::revoke_invite(&ctx.app().db, viewer.actor(), invite).await?;
        let row = invites::find(&mut ctx.app().db.conn().await?, invite).await?;
        Ok(row.ok_or(AppError::NotFound("invite"))?.into())
    }
}
