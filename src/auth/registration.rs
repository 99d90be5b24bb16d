//! Who may create an account: the registration policy and invites. Every write to the
//! registration stream takes the registration lock, so writes queue instead of failing
//! on each other's stream versions.

use chrono::Duration;
use futures_util::FutureExt;

use super::session;
use crate::domain::ids::{InviteId, UserId};
use crate::domain::registration::{Command, Policy, Registration, STREAM_ID};
use crate::domain::user::Role;
use crate::domain::values::Email;
use crate::domain::{self, Actor};
use crate::error::{AppError, AppResult};
use crate::storage::event_store::execute;
use crate::storage::projections::registration::{self as invites, InviteRow};
use crate::storage::{Db, DbConn, LockKey};

/// The policy in force: an administrator's, else the configured `default`.
pub async fn policy(conn: &mut DbConn, default: Policy) -> AppResult<Policy> {
    Ok(invites::policy(conn).await?.unwrap_or(default))
}

/// Records `command` on the registration stream, under the registration lock.
async fn record(db: &Db, actor: Actor, command: Command) -> AppResult<()> {
    db.write(|conn| {
        async move {
            conn.lock(LockKey::Registration).await?;
            execute::<Registration>(conn, STREAM_ID, actor, command).await?;
            Ok(())
        }
        .boxed()
    })
    .await
}

pub async fn set_policy(db: &Db, actor: Actor, policy: Policy) -> AppResult<()> {
    record(db, actor, Command::SetPolicy { policy }).await
}

/// An invite just created; its code is shown this once.
pub struct NewInvite {
    pub code: String,
    pub invite: InviteRow,
}

pub async fn create_invite(
    db: &Db,
    actor: Actor,
    email: Option<Email>,
    role: Role,
    valid_for: Duration,
) -> AppResult<NewInvite> {
    let code = session::new_token();
    let invite_id = InviteId::new();
    let expires_at = domain::now() + valid_for;
    let command = Command::CreateInvite { invite_id, code_hash: code_hash(&code), email, role, expires_at };
    record(db, actor, command).await?;
    let invite = invites::find(&mut db.conn().await?, invite_id).await?.ok_or(AppError::NotFound("invite"))?;
    Ok(NewInvite { code, invite })
}

pub async fn revoke_invite(db: &Db, actor: Actor, invite_id: InviteId) -> AppResult<()> {
    record(db, actor, Command::RevokeInvite { invite_id }).await
}

/// Inside the transaction that creates the account `user` for `email`: whether the
/// policy lets it be created, redeeming `invite_code` when one is given. Returns the
/// role the invite grants.
pub async fn admit(
    conn: &mut DbConn,
    default: Policy,
    user: UserId,
    email: &Email,
    invite_code: Option<&str>,
) -> AppResult<Option<Role>> {
    match (policy(conn, default).await?, invite_code) {
        (Policy::Closed, _) => Err(AppError::Forbidden("registration is closed; ask an administrator for an account")),
        (Policy::InviteOnly, None) => {
            Err(AppError::Forbidden("registration is by invite only; ask an administrator for an invite"))
        }
        (Policy::Open, None) => Ok(None),
        (_, Some(code)) => {
            let invalid = || AppError::bad_input("inviteCode", "this invite is no longer valid");
            let invite = invites::by_code_hash(conn, &code_hash(code)).await?.ok_or_else(invalid)?;
            let now = domain::now();
            let redeem = Command::Redeem { invite_id: invite.invite_id(), user_id: user, email: email.clone(), now };
            execute::<Registration>(conn, STREAM_ID, Actor::User(user), redeem).await?;
            Ok(Some(invite.role()))
        }
    }
}

/// Only an invite code's SHA-256 is stored, in hex.
fn code_hash(code: &str) -> String {
    session::token_hash(code).iter().map(|b| format!("{b:02x}")).collect()
}
