//! The user account aggregate. Credentials are not part of it: a password hash never
//! enters an event, only the fact that the password changed.

use serde::{Deserialize, Serialize};

use super::ids::McpServerId;
use super::mcp_server::ToolPolicy;
use super::values::{DisplayName, Email, ModelMask};
use super::{Actor, Aggregate, DomainEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Command {
    Register {
        email: Email,
        name: DisplayName,
        role: Role,
        /// The identity provider's account it signs in with, if any.
        identity: Option<Identity>,
    },
    /// Lets the account sign in with an identity provider's account too.
    LinkIdentity {
        identity: Identity,
    },
    /// New name or email, as the identity provider now has them.
    UpdateProfile {
        name: Option<DisplayName>,
        email: Option<Email>,
    },
    SetRole {
        role: Role,
    },
    ChangePassword,
    Disable,
    Enable,
    /// Limits the models the user may use; `None` allows all.
    SetModelMask {
        mask: Option<ModelMask>,
    },
    /// The user's own policy for a server's tools (`tool: None`) or for one tool.
    SetToolPolicy {
        server_id: McpServerId,
        tool: Option<String>,
        policy: ToolPolicy,
    },
}

/// An account at an OpenID Connect provider: its issuer and subject identify it for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    UserRegistered { email: String, name: String, role: Role },
    UserIdentityLinked { issuer: String, subject: String },
    UserProfileChanged { name: Option<String>, email: Option<String> },
    UserRoleChanged { role: Role },
    UserPasswordChanged {},
    UserDisabled {},
    UserEnabled {},
    UserModelMaskChanged { mask: Option<String> },
    ToolPolicyChanged { server_id: McpServerId, tool: Option<String>, policy: ToolPolicy },
}

impl DomainEvent for Event {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("user not found")]
    NotFound,
    #[error("user already exists")]
    AlreadyExists,
    #[error("only an administrator may do this")]
    Forbidden,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    role: Role,
    disabled: bool,
    #[serde(default)]
    model_mask: Option<String>,
}

// Snapshots of an older shape must fail to load rather than read as something else.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    state: Option<State>,
}

impl Aggregate for User {
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, actor: Actor, command: Command) -> Result<Vec<Event>, Rejection> {
        if let Command::Register { email, name, role, identity } = command {
            if self.state.is_some() {
                return Err(Rejection::AlreadyExists);
            }
            let registered = Event::UserRegistered { email: email.as_str().to_owned(), name: name.into_inner(), role };
            let linked = identity.map(|Identity { issuer, subject }| Event::UserIdentityLinked { issuer, subject });
            return Ok(std::iter::once(registered).chain(linked).collect());
        }
        let state = self.state.as_ref().ok_or(Rejection::NotFound)?;
        let operator = matches!(actor, Actor::System | Actor::Admin(_));
        match command {
            Command::Register { .. } => unreachable!("handled above"),
            // The caller has verified the provider's token for this account.
            Command::LinkIdentity { identity: Identity { issuer, subject } } => {
                Ok(vec![Event::UserIdentityLinked { issuer, subject }])
            }
            Command::UpdateProfile { name: None, email: None } => Ok(vec![]),
            Command::UpdateProfile { name, email } => Ok(vec![Event::UserProfileChanged {
                name: name.map(DisplayName::into_inner),
                email: email.map(|email| email.as_str().to_owned()),
            }]),
            Command::SetRole { role } if operator => {
                Ok(if state.role == role { vec![] } else { vec![Event::UserRoleChanged { role }] })
            }
            Command::ChangePassword if operator => Ok(vec![Event::UserPasswordChanged {}]),
            Command::Disable if operator => Ok(if state.disabled { vec![] } else { vec![Event::UserDisabled {}] }),
            Command::Enable if operator => Ok(if state.disabled { vec![Event::UserEnabled {}] } else { vec![] }),
            Command::SetModelMask { mask } if operator => {
                let mask = mask.map(|m| m.as_str().to_owned());
                Ok(if state.model_mask == mask { vec![] } else { vec![Event::UserModelMaskChanged { mask }] })
            }
            // Everyone sets their own; the caller addresses the actor's own stream.
            Command::SetToolPolicy { server_id, tool, policy } => {
                Ok(vec![Event::ToolPolicyChanged { server_id, tool, policy }])
            }
            Command::SetRole { .. }
            | Command::ChangePassword
            | Command::Disable
            | Command::Enable
            | Command::SetModelMask { .. } => Err(Rejection::Forbidden),
        }
    }

    fn evolve(self, event: &Event) -> Self {
        let state = match (self.state, event) {
            (_, Event::UserRegistered { role, .. }) => State { role: *role, disabled: false, model_mask: None },
            (None, _) => return User { state: None },
            (Some(state), Event::UserRoleChanged { role }) => State { role: *role, ..state },
            (
                Some(state),
                Event::UserPasswordChanged {} | Event::UserIdentityLinked { .. } | Event::UserProfileChanged { .. },
            ) => state,
            (Some(state), Event::UserDisabled {}) => State { disabled: true, ..state },
            (Some(state), Event::UserEnabled {}) => State { disabled: false, ..state },
            (Some(state), Event::UserModelMaskChanged { mask }) => State { model_mask: mask.clone(), ..state },
            (Some(state), Event::ToolPolicyChanged { .. }) => state,
        };
        User { state: Some(state) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::UserId;

    fn registered() -> User {
        User::default().evolve(&Event::UserRegistered { email: "a@b.c".into(), name: "A".into(), role: Role::User })
    }

    #[test]
    fn register_once() {
        let command = || Command::Register {
            email: Email::parse("a@b.c").expect("valid"),
            name: DisplayName::parse("A").expect("valid"),
            role: Role::User,
            identity: None,
        };
        assert_eq!(User::default().decide(Actor::System, command()).map(|e| e.len()), Ok(1));
        assert_eq!(registered().decide(Actor::System, command()), Err(Rejection::AlreadyExists));
    }

    #[test]
    fn only_the_operator_changes_roles_and_disables() {
        let user = Actor::User(UserId::new());
        assert_eq!(registered().decide(user, Command::SetRole { role: Role::Admin }), Err(Rejection::Forbidden));
        assert_eq!(registered().decide(user, Command::Disable), Err(Rejection::Forbidden));
        assert_eq!(registered().decide(user, Command::ChangePassword), Err(Rejection::Forbidden));
        assert_eq!(
            registered().decide(Actor::System, Command::SetRole { role: Role::Admin }),
            Ok(vec![Event::UserRoleChanged { role: Role::Admin }])
        );
    }

    #[test]
    fn administrators_set_model_masks() {
        let mask = || Some(ModelMask::parse("gpt-.*").expect("mask"));
        let admin = Actor::Admin(UserId::new());
        assert_eq!(
            registered().decide(admin, Command::SetModelMask { mask: mask() }),
            Ok(vec![Event::UserModelMaskChanged { mask: Some("gpt-.*".into()) }])
        );
        assert_eq!(
            registered().decide(Actor::User(UserId::new()), Command::SetModelMask { mask: mask() }),
            Err(Rejection::Forbidden)
        );
        let masked = registered().evolve(&Event::UserModelMaskChanged { mask: Some("gpt-.*".into()) });
        assert_eq!(masked.decide(admin, Command::SetModelMask { mask: mask() }), Ok(vec![]));
    }

    #[test]
    fn disabling_twice_records_once() {
        let disabled = registered().evolve(&Event::UserDisabled {});
        assert_eq!(disabled.decide(Actor::System, Command::Disable), Ok(vec![]));
        assert_eq!(disabled.decide(Actor::System, Command::Enable), Ok(vec![Event::UserEnabled {}]));
    }

    #[test]
    fn registering_through_a_provider_links_its_account() {
        let identity = Identity { issuer: "https://idp.example".into(), subject: "42".into() };
        let command = Command::Register {
            email: Email::parse("a@b.c").expect("valid"),
            name: DisplayName::parse("A").expect("valid"),
            role: Role::User,
            identity: Some(identity),
        };
        let events = User::default().decide(Actor::System, command).expect("registered");
        assert_eq!(events[1], Event::UserIdentityLinked { issuer: "https://idp.example".into(), subject: "42".into() });
    }

    #[test]
    fn unknown_user_is_not_found() {
        assert_eq!(User::default().decide(Actor::System, Command::ChangePassword), Err(Rejection::NotFound));
    }
}
