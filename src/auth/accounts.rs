//! Accounts and sessions: registration, sign-in and sign-out, and the operator's
//! account administration. Used by the GraphQL API and the CLI alike.

use chrono::Duration;
use futures_util::FutureExt;

use super::{Viewer, password, session};
use crate::config::{Config, Registration};
use crate::domain::ids::{SessionId, UserId};
use crate::domain::user::{self, Role, User};
use crate::domain::values::{DisplayName, Email, ModelMask, Password};
use crate::domain::{self, Actor};
use crate::error::{AppError, AppResult};
use crate::storage::event_store::{ExecuteError, execute};
use crate::storage::projections::users::{self, UserRow};
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{Db, LockKey, StoreError, credentials, sessions};

/// A session just created: the token is shown to the client once.
pub struct SignedIn {
    pub token: String,
    pub user: UserRow,
}

/// How long a session's last-seen time may lag before a request refreshes it.
const LAST_SEEN_RESOLUTION: Duration = Duration::minutes(5);

fn email_taken() -> AppError {
    AppError::Conflict { reason: "EMAIL_TAKEN", message: "an account with this email already exists".into() }
}

/// Everything written when an account is created, in one transaction.
struct NewAccount {
    id: UserId,
    actor: Actor,
    email: Email,
    name: DisplayName,
    password_hash: String,
    /// `None`: the first account becomes the administrator, every later one a user.
    role: Option<Role>,
    /// A session to sign the new account in with.
    session: Option<sessions::SessionRow>,
}

async fn insert_account(db: &Db, account: NewAccount) -> AppResult<UserRow> {
    db.write(|conn| {
        async move {
            let NewAccount { id, actor, email, name, password_hash, role, session } = account;
            conn.lock(LockKey::Registration).await?;
            if users::find_by_email(conn, email.as_str()).await?.is_some() {
                return Err(email_taken());
            }
            let role = match role {
                Some(role) => role,
                None if users::count(conn).await? == 0 => Role::Admin,
                None => Role::User,
            };
            let command = user::Command::Register { email, name, role };
            execute::<User>(conn, id.uuid(), actor, command).await.map_err(|e| match e {
                ExecuteError::Store(StoreError::Conflict(_)) => email_taken(),
                other => other.into(),
            })?;
            credentials::set_password_hash(conn, id, &password_hash, domain::now()).await?;
            if let Some(session) = session {
                sessions::insert(conn, &session).await?;
            }
            users::find(conn, id).await?.ok_or(AppError::NotFound("user"))
        }
        .boxed()
    })
    .await
}

/// Creates an account for the operator (CLI). Without a role, the first account
/// becomes the administrator.
pub async fn create_account(
    db: &Db,
    email: Email,
    name: DisplayName,
    password: &Password,
    role: Option<Role>,
) -> AppResult<UserRow> {
    let password_hash = password::hash(password).await.map_err(AppError::internal)?;
    let account =
        NewAccount { id: UserId::new(), actor: Actor::System, email, name, password_hash, role, session: None };
    insert_account(db, account).await
}

/// Self-service registration through the API, subject to the registration policy. The
/// account and its first session are created together.
pub async fn register(
    db: &Db,
    config: &Config,
    email: Email,
    name: DisplayName,
    password: &Password,
    user_agent: Option<String>,
) -> AppResult<SignedIn> {
    if config.registration == Registration::Closed {
        return Err(AppError::Forbidden("registration is closed; ask an administrator for an account"));
    }
    let password_hash = password::hash(password).await.map_err(AppError::internal)?;
    let id = UserId::new();
    let (token, session) = new_session(config, id, user_agent)?;
    let account =
        NewAccount { id, actor: Actor::User(id), email, name, password_hash, role: None, session: Some(session) };
    let user = insert_account(db, account).await?;
    Ok(SignedIn { token, user })
}

pub async fn login(
    db: &Db,
    config: &Config,
    email: &str,
    candidate: &str,
    user_agent: Option<String>,
) -> AppResult<SignedIn> {
    let mut conn = db.conn().await?;
    let user = match Email::parse(email) {
        Ok(email) => users::find_by_email(&mut conn, email.as_str()).await?,
        Err(_) => None,
    };
    let stored = match &user {
        Some(user) => credentials::password_hash(&mut conn, user.user_id()).await?,
        None => None,
    };
    drop(conn);
    if !password::verify(candidate, stored).await {
        return Err(AppError::InvalidCredentials);
    }
    let user = user.ok_or(AppError::InvalidCredentials)?;
    if user.disabled {
        return Err(AppError::Forbidden("this account is disabled"));
    }
    let (token, session) = new_session(config, user.user_id(), user_agent)?;
    db.write(move |conn| async move { sessions::insert(conn, &session).await }.boxed()).await?;
    Ok(SignedIn { token, user })
}

/// A new session token and the row that stores its hash.
fn new_session(config: &Config, user: UserId, user_agent: Option<String>) -> AppResult<(String, sessions::SessionRow)> {
    let token = session::new_token();
    let now = domain::now();
    let ttl = Duration::from_std(config.session_ttl).map_err(AppError::internal)?;
    let row = sessions::SessionRow {
        id: DbUuid(SessionId::new().uuid()),
        user_id: DbUuid(user.uuid()),
        token_hash: session::token_hash(&token),
        user_agent: user_agent.map(|ua| ua.chars().take(512).collect()),
        created_at: DbTime(now),
        last_seen_at: DbTime(now),
        expires_at: DbTime(now + ttl),
    };
    Ok((token, row))
}

/// The viewer a session token stands for, if the session is live and the user enabled.
pub async fn authenticate(db: &Db, token: &str) -> AppResult<Option<Viewer>> {
    let now = domain::now();
    let mut conn = db.conn().await?;
    let Some((session, user)) = sessions::find_active(&mut conn, &session::token_hash(token), now).await? else {
        return Ok(None);
    };
    if user.disabled {
        return Ok(None);
    }
    if now - session.last_seen_at.0 > LAST_SEEN_RESOLUTION {
        drop(conn);
        let id = session.session_id();
        db.write(move |conn| sessions::touch(conn, id, now).boxed()).await?;
    }
    Ok(Some(Viewer {
        user_id: user.user_id(),
        session_id: session.session_id(),
        role: user.role(),
        model_mask: user.model_mask(),
    }))
}

/// Deletes expired sessions every hour, for as long as the server runs.
pub async fn purge_expired_sessions(db: Db) {
    let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        let purged = db.write(|conn| sessions::delete_expired(conn, domain::now()).boxed());
        match purged.await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "expired sessions deleted"),
            Err(error) => tracing::warn!(%error, "could not delete expired sessions"),
        }
    }
}

pub async fn logout(db: &Db, viewer: &Viewer) -> AppResult<()> {
    let id = viewer.session_id;
    db.write(move |conn| sessions::delete(conn, id).boxed()).await?;
    Ok(())
}

async fn user_by_email(db: &Db, email: &str) -> AppResult<UserRow> {
    let email = Email::parse(email)?;
    let mut conn = db.conn().await?;
    users::find_by_email(&mut conn, email.as_str()).await?.ok_or(AppError::NotFound("user"))
}

/// What else an operator command changes, in the same transaction.
#[derive(Default)]
struct Effects {
    end_sessions: bool,
    password_hash: Option<String>,
}

/// Runs an operator command on the account with this email.
async fn administer(db: &Db, email: &str, command: user::Command, effects: Effects) -> AppResult<UserRow> {
    let user_id = user_by_email(db, email).await?.user_id();
    db.write(|conn| {
        async move {
            execute::<User>(conn, user_id.uuid(), Actor::System, command).await?;
            if let Some(hash) = effects.password_hash {
                credentials::set_password_hash(conn, user_id, &hash, domain::now()).await?;
            }
            if effects.end_sessions {
                sessions::delete_for_user(conn, user_id).await?;
            }
            users::find(conn, user_id).await?.ok_or(AppError::NotFound("user"))
        }
        .boxed()
    })
    .await
}

/// Limits the models a user may use (`None`: all), as the operator or an administrator.
pub async fn set_model_mask(db: &Db, actor: Actor, user: UserId, mask: Option<ModelMask>) -> AppResult<UserRow> {
    db.write(|conn| {
        async move {
            execute::<User>(conn, user.uuid(), actor, user::Command::SetModelMask { mask }).await?;
            users::find(conn, user).await?.ok_or(AppError::NotFound("user"))
        }
        .boxed()
    })
    .await
}

/// The id of the account with this email.
pub async fn find_by_email(db: &Db, email: &str) -> AppResult<UserRow> {
    user_by_email(db, email).await
}

pub async fn set_role(db: &Db, email: &str, role: Role) -> AppResult<UserRow> {
    administer(db, email, user::Command::SetRole { role }, Effects::default()).await
}

pub async fn disable(db: &Db, email: &str) -> AppResult<UserRow> {
    administer(db, email, user::Command::Disable, Effects { end_sessions: true, ..Effects::default() }).await
}

pub async fn enable(db: &Db, email: &str) -> AppResult<UserRow> {
    administer(db, email, user::Command::Enable, Effects::default()).await
}

/// Sets a new password and ends the user's sessions.
pub async fn set_password(db: &Db, email: &str, password: &Password) -> AppResult<UserRow> {
    let hash = password::hash(password).await.map_err(AppError::internal)?;
    let effects = Effects { end_sessions: true, password_hash: Some(hash) };
    administer(db, email, user::Command::ChangePassword, effects).await
}
