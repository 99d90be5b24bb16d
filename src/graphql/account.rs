//! Accounts: `me`, `register`, `login`, `logout`.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{ApiResult, ContextExt};
use crate::auth::{accounts, session};
use crate::domain::user::Role;
use crate::domain::values::{DisplayName, Email, Password};
use crate::storage::projections::users::{self, UserRow};

/// A person with an account.
#[derive(SimpleObject)]
pub struct User {
    pub id: ID,
    pub email: String,
    pub name: String,
    pub role: UserRole,
    pub created_at: DateTime<Utc>,
    /// The models the user may use, as a regular expression; null allows all.
    pub model_mask: Option<String>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: ID(row.user_id().to_string()),
            role: row.role().into(),
            email: row.email,
            name: row.name,
            created_at: row.created_at.0,
            model_mask: row.model_mask,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum UserRole {
    Admin,
    User,
}

impl From<Role> for UserRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => UserRole::Admin,
            Role::User => UserRole::User,
        }
    }
}

/// A new session. `token` goes in `Authorization: Bearer …` or the websocket's
/// `connection_init` payload; browsers also receive it as an HttpOnly cookie.
#[derive(SimpleObject)]
pub struct AuthPayload {
    pub token: String,
    pub user: User,
}

#[derive(InputObject)]
pub struct RegisterInput {
    pub email: String,
    pub password: String,
    pub name: String,
}

#[derive(InputObject)]
pub struct LoginInput {
    pub email: String,
    pub password: String,
}

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<User> {
        let viewer = ctx.viewer()?;
        let mut conn = ctx.app().db.conn().await?;
        let user = users::find(&mut conn, viewer.user_id).await?;
        Ok(user.ok_or(crate::error::AppError::Unauthenticated)?.into())
    }
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates an account and signs it in. The first account becomes the administrator.
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> ApiResult<AuthPayload> {
        let email = Email::parse(&input.email)?;
        let name = DisplayName::parse(&input.name)?;
        let password = Password::parse(&input.password)?;
        let app = ctx.app();
        let user_agent = ctx.request().user_agent.clone();
        let signed_in = accounts::register(&app.db, &app.config, email, name, &password, user_agent).await?;
        Ok(signed_in_payload(ctx, signed_in))
    }

    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> ApiResult<AuthPayload> {
        let app = ctx.app();
        let user_agent = ctx.request().user_agent.clone();
        let signed_in = accounts::login(&app.db, &app.config, &input.email, &input.password, user_agent).await?;
        Ok(signed_in_payload(ctx, signed_in))
    }

    /// Ends the current session.
    async fn logout(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let viewer = ctx.viewer()?;
        accounts::logout(&ctx.app().db, viewer).await?;
        ctx.app().end_session(viewer.session_id);
        ctx.append_http_header("Set-Cookie", session::clear_cookie(ctx.app().config.secure_cookies()));
        Ok(true)
    }
}

fn signed_in_payload(ctx: &Context<'_>, signed_in: accounts::SignedIn) -> AuthPayload {
    let config = &ctx.app().config;
    let cookie = session::set_cookie(&signed_in.token, config.session_ttl.as_secs(), config.secure_cookies());
    ctx.append_http_header("Set-Cookie", cookie);
    AuthPayload { token: signed_in.token, user: signed_in.user.into() }
}
