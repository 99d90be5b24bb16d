//! Accounts: `me`, `signInOptions`, `register`, `login`, `logout`.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{ApiResult, ContextExt};
use crate::auth::{accounts, registration, session};
use crate::domain::registration::Policy;
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
    /// A disabled account cannot sign in.
    pub disabled: bool,
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
            disabled: row.disabled,
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
    /// Needed when registration is by invite.
    pub invite_code: Option<String>,
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

    /// How one may sign in and register here: for a sign-in page, before signing in.
    async fn sign_in_options(&self, ctx: &Context<'_>) -> ApiResult<SignInOptions> {
        let app = ctx.app();
        let policy = registration::policy(&mut app.db.conn().await?, app.config.registration).await?;
        Ok(SignInOptions {
            registration: policy.into(),
            single_sign_on: app.oidc.as_ref().map(|oidc| SingleSignOn {
                name: oidc.display_name().to_owned(),
                login_url: "/auth/oidc/login".into(),
            }),
        })
    }
}

#[derive(SimpleObject)]
pub struct SignInOptions {
    pub registration: RegistrationPolicy,
    /// Null when no identity provider is configured.
    pub single_sign_on: Option<SingleSignOn>,
}

/// Sign-in with the organization's identity provider: send the browser to `loginUrl`
/// (add `?invite=CODE` when registration is by invite).
#[derive(SimpleObject)]
pub struct SingleSignOn {
    pub name: String,
    pub login_url: String,
}

/// Who may create an account.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum RegistrationPolicy {
    /// Anyone.
    Open,
    /// Whoever has an invite from an administrator.
    InviteOnly,
    /// Nobody: administrators create accounts with the command line.
    Closed,
}

impl From<Policy> for RegistrationPolicy {
    fn from(policy: Policy) -> Self {
        match policy {
            Policy::Open => RegistrationPolicy::Open,
            Policy::InviteOnly => RegistrationPolicy::InviteOnly,
            Policy::Closed => RegistrationPolicy::Closed,
        }
    }
}

impl From<RegistrationPolicy> for Policy {
    fn from(policy: RegistrationPolicy) -> Self {
        match policy {
            RegistrationPolicy::Open => Policy::Open,
            RegistrationPolicy::InviteOnly => Policy::InviteOnly,
            RegistrationPolicy::Closed => Policy::Closed,
        }
    }
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates an account and signs it in. The first account becomes the administrator.
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> ApiResult<AuthPayload> {
        let registering = accounts::Registering {
            email: Email::parse(&input.email)?,
            name: DisplayName::parse(&input.name)?,
            password: Password::parse(&input.password)?,
            invite_code: input.invite_code.as_deref(),
        };
        let signed_in = accounts::register(ctx.app(), registering, ctx.request().origin.clone()).await?;
        Ok(signed_in_payload(ctx, signed_in))
    }

    /// Signs in with a password. Repeated failures for an account, or from one address,
    /// are refused for a while with `RATE_LIMITED` (`extensions.retryAfterSeconds`).
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> ApiResult<AuthPayload> {
        let origin = ctx.request().origin.clone();
        let signed_in = accounts::login(ctx.app(), &input.email, &input.password, origin).await?;
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
