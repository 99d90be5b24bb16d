//! Accounts and sessions: registration, sign-in and sign-out, and the operator's
//! account administration. Used by the GraphQL API and the CLI alike.

use chrono::Duration;
use futures_util::FutureExt;

use std::net::IpAddr;

use super::{Viewer, password, registration, session};
use crate::app::App;
use crate::config::Config;
use crate::domain::ids::{SessionId, UserId};
use crate::domain::registration::Policy;
use crate::domain::user::{self, Identity, Role, User};
use crate::domain::values::{DisplayName, Email, Password};
use crate::domain::{self, Actor};
use crate::error::{AppError, AppResult};
use crate::storage::event_store::{ExecuteError, execute};
use crate::storage::login_attempts::{self, Limit};
use crate::storage::projections::users::{self, UserRow};
use crate::storage::sql_types::{DbTime, DbUuid};
use crate::storage::{Db, LockKey, StoreError, credentials, sessions};

/// A session just created: the token is shown to the client once.
pub struct SignedIn {
    pub token: String,
    pub user: UserRow,
}

/// Where a new session comes from, shown to its user among their sessions.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub user_agent: Option<String>,
    pub address: Option<IpAddr>,
}

/// How a session was signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Password,
    Oidc,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Oidc => "oidc",
        }
    }
}

/// How long a session's last-seen time may lag before a request refreshes it.
const LAST_SEEN_RESOLUTION: Duration = Duration::minutes(5);

fn email_taken() -> AppError {
    AppError::Conflict { reason: "EMAIL_TAKEN", message: "an account with this email already exists".into() }
}

/// Self-service account creation: the registration policy applies.
pub(super) struct Admission {
    /// The policy until an administrator sets one.
    pub default: Policy,
    pub invite: Option<String>,
}

/// Everything written when an account is created, in one transaction.
pub(super) struct NewAccount {
    pub id: UserId,
    pub actor: Actor,
    pub email: Email,
    pub name: DisplayName,
    pub password_hash: Option<String>,
    /// `None`: the first account becomes the administrator, every later one a user
    /// (or what its invite says).
    pub role: Option<Role>,
    pub identity: Option<Identity>,
    pub admission: Option<Admission>,
    /// A session to sign the new account in with.
    pub session: Option<sessions::SessionRow>,
}

pub(super) async fn insert_account(db: &Db, account: NewAccount) -> AppResult<UserRow> {
    db.write(|conn| {
        async move {
            let NewAccount { id, actor, email, name, password_hash, role, identity, admission, session } = account;
            conn.lock(LockKey::Registration).await?;
            if users::find_by_email(conn, email.as_str()).await?.is_some() {
                return Err(email_taken());
            }
            let invited = match admission {
                Some(Admission { default, invite }) => {
                    registration::admit(conn, default, id, &email, invite.as_deref()).await?
                }
                None => None,
            };
            let role = match role.or(invited) {
                Some(role) => role,
                None if users::count(conn).await? == 0 => Role::Admin,
                None => Role::User,
            };
            let command = user::Command::Register { email, name, role, identity };
            execute::<User>(conn, id.uuid(), actor, command).await.map_err(|e| match e {
                ExecuteError::Store(StoreError::Conflict(_)) => email_taken(),
                other => other.into(),
            })?;
            if let Some(hash) = password_hash {
                credentials::set_password_hash(conn, id, &hash, domain::now()).await?;
            }
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
    let password_hash = Some(password::hash(password).await.map_err(AppError::internal)?);
    let account = NewAccount {
        id: UserId::new(),
        actor: Actor::System,
        email,
        name,
        password_hash,
        role,
        identity: None,
        admission: None,
        session: None,
    };
    insert_account(db, account).await
}

/// What a new account is created with through the API.
pub struct Registering<'a> {
    pub email: Email,
    pub name: DisplayName,
    pub password: Password,
    pub invite_code: Option<&'a str>,
}

/// Self-service registration through the API, subject to the registration policy. The
/// account and its first session are created together.
pub async fn register(app: &App, registering: Registering<'_>, origin: Origin) -> AppResult<SignedIn> {
    let Registering { email, name, password, invite_code } = registering;
    let password_hash = Some(password::hash(&password).await.map_err(AppError::internal)?);
    let id = UserId::new();
    let (token, session) = new_session(&app.config, id, Method::Password, origin)?;
    let account = NewAccount {
        id,
        actor: Actor::User(id),
        email,
        name,
        password_hash,
        role: None,
        identity: None,
        admission: Some(Admission { default: app.config.registration, invite: invite_code.map(str::to_owned) }),
        session: Some(session),
    };
    let user = insert_account(&app.db, account).await?;
    Ok(SignedIn { token, user })
}

fn throttled(wait: std::time::Duration) -> AppError {
    let seconds = wait.as_secs_f64().ceil().max(1.0);
    AppError::RateLimited {
        message: format!("too many failed sign-ins; try again in {seconds} seconds"),
        retry_after: Some(std::time::Duration::from_secs_f64(seconds)),
    }
}

/// The key sign-in attempts for an email are counted under: the address as parsed, or
/// for input that is no address, a bounded prefix of it.
fn account_key(email: &str) -> String {
    match Email::parse(email) {
        Ok(email) => email.as_str().to_owned(),
        Err(_) => email.trim().chars().take(320).collect::<String>().to_lowercase(),
    }
}

/// The key sign-in attempts from an address are counted under: IPv6 clients usually
/// hold a whole /64, so it counts as one address.
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            IpAddr::V6(std::net::Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1)))
        }
        other => other,
    }
}

/// Counts a sign-in attempt for `email` from `origin`, or refuses it while either is
/// throttled: the rows that counted it, and the account's limit.
async fn count_attempt(app: &App, email: &str, origin: &Origin) -> AppResult<(Vec<DbUuid>, Limit)> {
    let config = &app.config.limits;
    let account = Limit::new(&format!("account:{}", account_key(email)), config.login_failures_per_account);
    let mut limits = vec![account.clone()];
    if let Some(address) = origin.address.map(address_key) {
        limits.push(Limit::new(&format!("address:{address}"), config.login_failures_per_address));
    }
    if let Some(wait) = limits.iter().filter_map(|limit| app.refusals.wait(&limit.key)).max() {
        return Err(throttled(wait));
    }
    let (window, now, counted) = (config.login_window, domain::now(), limits.clone());
    let attempt =
        app.db.write(move |conn| async move { login_attempts::attempt(conn, &counted, window, now).await }.boxed());
    let attempt = attempt.await?;
    match attempt {
        Ok(rows) => Ok((rows, account)),
        Err(refused) => {
            for (index, wait) in &refused {
                app.refusals.refuse(limits[*index].key.clone(), *wait);
            }
            Err(throttled(refused.into_iter().map(|(_, wait)| wait).max().unwrap_or_default()))
        }
    }
}

/// Signs in with a password. Attempts are counted per account and per client address
/// before the password is checked, and given back when it is right; past the limits,
/// every attempt is refused (the right password too) until the window has passed, so
/// guessing cannot go on, however many requests run at once.
pub async fn login(app: &App, email: &str, candidate: &str, origin: Origin) -> AppResult<SignedIn> {
    let attempt = count_attempt(app, email, &origin).await?;
    let mut conn = app.db.conn().await?;
    let user = match Email::parse(email) {
        Ok(email) => users::find_by_email(&mut conn, email.as_str()).await?,
        Err(_) => None,
    };
    let stored = match &user {
        Some(user) => credentials::password_hash(&mut conn, user.user_id()).await?,
        None => None,
    };
    drop(conn);
    let user = match user {
        Some(user) if password::verify(candidate, stored).await => user,
        _ => return Err(AppError::InvalidCredentials),
    };
    // The password was right: its attempts are forgotten even if the account is disabled.
    let (rows, account) = attempt;
    let (token, session) = new_session(&app.config, user.user_id(), Method::Password, origin)?;
    let session = (!user.disabled).then_some(session);
    app.db
        .write(move |conn| {
            async move {
                login_attempts::forget(conn, &rows, &account).await?;
                if let Some(session) = &session {
                    sessions::insert(conn, session).await?;
                }
                Ok::<_, AppError>(())
            }
            .boxed()
        })
        .await?;
    if user.disabled {
        return Err(AppError::Forbidden("this account is disabled"));
    }
    Ok(SignedIn { token, user })
}

/// A new session token and the row that stores its hash.
pub(super) fn new_session(
    config: &Config,
    user: UserId,
    method: Method,
    origin: Origin,
) -> AppResult<(String, sessions::SessionRow)> {
    let token = session::new_token();
    let now = domain::now();
    let ttl = Duration::from_std(config.session_ttl).map_err(AppError::internal)?;
    let row = sessions::SessionRow {
        id: DbUuid(SessionId::new().uuid()),
        user_id: DbUuid(user.uuid()),
        token_hash: session::token_hash(&token),
        user_agent: origin.user_agent.map(|ua| ua.chars().take(512).collect()),
        created_at: DbTime(now),
        last_seen_at: DbTime(now),
        expires_at: DbTime(now + ttl),
        method: method.as_str().to_owned(),
        client_address: origin.address.map(|address| address.to_string()),
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

/// Deletes expired sessions, and sign-in attempts past their window, every hour for as
/// long as the server runs.
pub async fn purge_expired(db: Db, login_window: std::time::Duration) {
    let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        let now = domain::now();
        let purged = db.write(|conn| sessions::delete_expired(conn, now).boxed()).await;
        let swept = db.write(|conn| login_attempts::sweep(conn, login_window, now).boxed()).await;
        for (what, outcome) in [("expired sessions", purged), ("old sign-in attempts", swept)] {
            match outcome {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "{what} deleted"),
                Err(error) => tracing::warn!(%error, "could not delete {what}"),
            }
        }
    }
}

pub async fn logout(db: &Db, viewer: &Viewer) -> AppResult<()> {
    let id = viewer.session_id;
    db.write(move |conn| sessions::delete(conn, id).boxed()).await?;
    Ok(())
}

/// The account with this email.
pub async fn find_by_email(db: &Db, email: &str) -> AppResult<UserRow> {
    let email = Email::parse(email)?;
    let mut conn = db.conn().await?;
    users::find_by_email(&mut conn, email.as_str()).await?.ok_or(AppError::NotFound("user"))
}

fn last_admin() -> AppError {
    AppError::Conflict {
        reason: "LAST_ADMIN",
        message: "this is the last administrator; make another administrator first".into(),
    }
}

/// An account after an administrative command, and the sessions the command ended
/// (whose subscriptions the caller ends: see [`App::end_session`]).
pub struct Administered {
    pub user: UserRow,
    pub ended: Vec<SessionId>,
}

/// Runs an account command by an administrator or the operator, with what else it
/// changes, in one transaction. No command may leave the server without an enabled
/// administrator.
pub async fn administer(
    db: &Db,
    actor: Actor,
    user_id: UserId,
    command: user::Command,
    password_hash: Option<String>,
) -> AppResult<Administered> {
    let removes_admin = matches!(command, user::Command::Disable | user::Command::SetRole { role: Role::User });
    let ends_sessions = matches!(command, user::Command::Disable | user::Command::ChangePassword);
    db.write(|conn| {
        async move {
            conn.lock(LockKey::Registration).await?;
            // The operator (CLI) may: they can always make an administrator again.
            if removes_admin && !matches!(actor, Actor::System) {
                let before = users::find(conn, user_id).await?.ok_or(AppError::NotFound("user"))?;
                if before.role() == Role::Admin && !before.disabled && users::count_admins(conn).await? <= 1 {
                    return Err(last_admin());
                }
            }
            execute::<User>(conn, user_id.uuid(), actor, command).await?;
            if let Some(hash) = password_hash {
                credentials::set_password_hash(conn, user_id, &hash, domain::now()).await?;
            }
            let ended = if ends_sessions { sessions::delete_for_user(conn, user_id, None).await? } else { vec![] };
            let user = users::find(conn, user_id).await?.ok_or(AppError::NotFound("user"))?;
            Ok(Administered { user, ended })
        }
        .boxed()
    })
    .await
}

/// Sets a new password and ends the user's sessions.
pub async fn set_password(db: &Db, user: UserId, password: &Password) -> AppResult<Administered> {
    let hash = password::hash(password).await.map_err(AppError::internal)?;
    administer(db, Actor::System, user, user::Command::ChangePassword, Some(hash)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_per_address_and_per_ipv6_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("address");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("address");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("address");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let v4: IpAddr = "10.1.2.3".parse().expect("address");
        assert_eq!(address_key(v4), v4);
        assert_eq!(account_key(" Ann@Example.com "), account_key("ann@example.com"));
        assert_eq!(account_key(&"x".repeat(10_000)).len(), 320);
    }
}
