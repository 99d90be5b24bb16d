//! Who may create an account: the registration policy administrators set, and the
//! invites they hand out. One stream for the whole server, so that redeeming an invite
//! and changing the policy are ordered, and an invite is redeemed at most once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ids::{InviteId, UserId};
use super::user::Role;
use super::values::Email;
use super::{Actor, Aggregate, DomainEvent};

/// The one stream of this aggregate.
pub const STREAM_ID: Uuid = Uuid::from_u128(0x4c53_7265_6769_7374_7261_7469_6f6e_0001);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Anyone may create an account.
    Open,
    /// Only with an invite from an administrator.
    InviteOnly,
    /// Only administrators (and the operator's CLI) create accounts.
    Closed,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Open => "open",
            Policy::InviteOnly => "invite_only",
            Policy::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Policy> {
        match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "open" => Some(Policy::Open),
            "invite_only" => Some(Policy::InviteOnly),
            "closed" => Some(Policy::Closed),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub enum Command {
    SetPolicy {
        policy: Policy,
    },
    CreateInvite {
        invite_id: InviteId,
        /// SHA-256 of the code, in hex: the code itself is shown once and never stored.
        code_hash: String,
        email: Option<Email>,
        role: Role,
        expires_at: DateTime<Utc>,
    },
    Redeem {
        invite_id: InviteId,
        user_id: UserId,
        email: Email,
        now: DateTime<Utc>,
    },
    RevokeInvite {
        invite_id: InviteId,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    RegistrationPolicyChanged {
        policy: Policy,
    },
    InviteCreated {
        invite_id: InviteId,
        code_hash: String,
        email: Option<String>,
        role: Role,
        expires_at: DateTime<Utc>,
    },
    InviteRedeemed {
        invite_id: InviteId,
        user_id: UserId,
    },
    InviteRevoked {
        invite_id: InviteId,
    },
}

impl DomainEvent for Event {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("only an administrator may do this")]
    Forbidden,
    #[error("invite not found")]
    NoSuchInvite,
    /// Redeemed, revoked or expired: to whoever holds the code, all the same.
    #[error("this invite is no longer valid")]
    InviteInvalid,
    #[error("this invite is for another email address")]
    WrongEmail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Open {
    id: InviteId,
    email: Option<String>,
    expires_at: DateTime<Utc>,
}

// Snapshots of an older shape must fail to load rather than read as something else.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    policy: Option<Policy>,
    /// Invites not yet redeemed or revoked (expired ones too: time is not an event).
    open: Vec<Open>,
}

impl Aggregate for Registration {
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, actor: Actor, command: Command) -> Result<Vec<Event>, Rejection> {
        let operator = matches!(actor, Actor::System | Actor::Admin(_));
        match command {
            Command::Redeem { invite_id, user_id, email, now } => {
                let invite = self.open.iter().find(|invite| invite.id == invite_id).ok_or(Rejection::InviteInvalid)?;
                if invite.expires_at <= now {
                    return Err(Rejection::InviteInvalid);
                }
                if invite.email.as_deref().is_some_and(|wanted| wanted != email.as_str()) {
                    return Err(Rejection::WrongEmail);
                }
                Ok(vec![Event::InviteRedeemed { invite_id, user_id }])
            }
            _ if !operator => Err(Rejection::Forbidden),
            Command::SetPolicy { policy } => {
                Ok(if self.policy == Some(policy) { vec![] } else { vec![Event::RegistrationPolicyChanged { policy }] })
            }
            Command::CreateInvite { invite_id, code_hash, email, role, expires_at } => Ok(vec![Event::InviteCreated {
                invite_id,
                code_hash,
                email: email.map(|e| e.as_str().to_owned()),
                role,
                expires_at,
            }]),
            Command::RevokeInvite { invite_id } => {
                if !self.open.iter().any(|invite| invite.id == invite_id) {
                    return Err(Rejection::NoSuchInvite);
                }
                Ok(vec![Event::InviteRevoked { invite_id }])
            }
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::RegistrationPolicyChanged { policy } => self.policy = Some(*policy),
            Event::InviteCreated { invite_id, email, expires_at, .. } => {
                self.open.push(Open { id: *invite_id, email: email.clone(), expires_at: *expires_at })
            }
            Event::InviteRedeemed { invite_id, .. } | Event::InviteRevoked { invite_id } => {
                self.open.retain(|invite| invite.id != *invite_id)
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn with_invite(email: Option<&str>, expires_at: DateTime<Utc>) -> (Registration, InviteId) {
        let invite_id = InviteId::new();
        let created = Event::InviteCreated {
            invite_id,
            code_hash: "00".into(),
            email: email.map(str::to_owned),
            role: Role::User,
            expires_at,
        };
        (Registration::default().evolve(&created), invite_id)
    }

    fn redeem(invite_id: InviteId, email: &str, now: DateTime<Utc>) -> Command {
        Command::Redeem { invite_id, user_id: UserId::new(), email: Email::parse(email).expect("email"), now }
    }

    #[test]
    fn an_invite_is_redeemed_once_before_it_expires() {
        let now = Utc::now();
        let (state, id) = with_invite(None, now + Duration::hours(1));
        let events = state.decide(Actor::System, redeem(id, "a@b.c", now)).expect("redeemed");
        let state = events.iter().fold(state, Registration::evolve);
        assert_eq!(state.decide(Actor::System, redeem(id, "d@e.f", now)), Err(Rejection::InviteInvalid));
        let (state, id) = with_invite(None, now);
        assert_eq!(state.decide(Actor::System, redeem(id, "a@b.c", now)), Err(Rejection::InviteInvalid));
    }

    #[test]
    fn an_invite_for_an_address_is_for_that_address_only() {
        let now = Utc::now();
        let (state, id) = with_invite(Some("a@b.c"), now + Duration::hours(1));
        assert_eq!(state.decide(Actor::System, redeem(id, "x@b.c", now)), Err(Rejection::WrongEmail));
        assert!(state.decide(Actor::System, redeem(id, "a@b.c", now)).is_ok());
    }

    #[test]
    fn only_administrators_set_the_policy_and_invite() {
        let user = Actor::User(UserId::new());
        let set = || Command::SetPolicy { policy: Policy::Closed };
        assert_eq!(Registration::default().decide(user, set()), Err(Rejection::Forbidden));
        assert_eq!(Registration::default().decide(Actor::Admin(UserId::new()), set()).map(|e| e.len()), Ok(1));
    }
}
