//! The group aggregate: a named set of users that conversations can be shared with.
//! Its creator manages it; members see it. A group linked to a group of the identity
//! provider also gains and loses members as their sign-ins say.

use serde::{Deserialize, Serialize};

use super::ids::UserId;
use super::values::GroupName;
use super::{Actor, Aggregate, DomainEvent};

#[derive(Debug)]
pub enum Command {
    Create {
        name: GroupName,
    },
    Delete,
    AddMember {
        user_id: UserId,
    },
    RemoveMember {
        user_id: UserId,
    },
    /// Links the group to the identity provider's group of this name, or unlinks it.
    LinkProvider {
        provider_group: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    GroupCreated { creator_id: UserId, name: String },
    GroupDeleted {},
    GroupMemberAdded { user_id: UserId },
    GroupMemberRemoved { user_id: UserId },
    GroupProviderLinked { provider_group: Option<String> },
}

impl DomainEvent for Event {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Does not exist, was deleted, or the actor is not in it: the three look the same.
    #[error("group not found")]
    NotFound,
    #[error("group already exists")]
    AlreadyExists,
    #[error("only the group's creator may change it")]
    Forbidden,
    #[error("that user is not a member of this group")]
    NotAMember,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    creator: UserId,
    members: Vec<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider_group: Option<String>,
}

// Snapshots of an older shape must fail to load rather than read as something else.
// (`provider_group` may be missing: a snapshot from before links existed has none.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    state: Option<State>,
}

impl Aggregate for Group {
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, actor: Actor, command: Command) -> Result<Vec<Event>, Rejection> {
        if let Command::Create { name } = command {
            let creator_id = actor.user_id().ok_or(Rejection::Forbidden)?;
            return match self.state {
                Some(_) => Err(Rejection::AlreadyExists),
                None => Ok(vec![Event::GroupCreated { creator_id, name: name.into_inner() }]),
            };
        }
        let state = self.state.as_ref().ok_or(Rejection::NotFound)?;
        match actor.user_id() {
            None => {}
            Some(me) if me == state.creator => {}
            Some(me) if state.members.contains(&me) => return Err(Rejection::Forbidden),
            Some(_) => return Err(Rejection::NotFound),
        }
        Ok(match command {
            Command::Create { .. } => unreachable!("handled above"),
            Command::Delete => vec![Event::GroupDeleted {}],
            Command::AddMember { user_id } if state.members.contains(&user_id) => vec![],
            Command::AddMember { user_id } => vec![Event::GroupMemberAdded { user_id }],
            Command::RemoveMember { user_id } if state.members.contains(&user_id) => {
                vec![Event::GroupMemberRemoved { user_id }]
            }
            Command::RemoveMember { .. } => return Err(Rejection::NotAMember),
            // Linking hands membership to the provider: an administrator's decision.
            Command::LinkProvider { .. } if !matches!(actor, Actor::Admin(_) | Actor::System) => {
                return Err(Rejection::Forbidden);
            }
            Command::LinkProvider { provider_group } if provider_group == state.provider_group => vec![],
            Command::LinkProvider { provider_group } => vec![Event::GroupProviderLinked { provider_group }],
        })
    }

    fn evolve(self, event: &Event) -> Self {
        let state = match (self.state, event) {
            (_, Event::GroupCreated { creator_id, .. }) => {
                Some(State { creator: *creator_id, members: vec![], provider_group: None })
            }
            (_, Event::GroupDeleted {}) | (None, _) => None,
            (Some(mut state), Event::GroupMemberAdded { user_id }) => {
                state.members.push(*user_id);
                Some(state)
            }
            (Some(mut state), Event::GroupMemberRemoved { user_id }) => {
                state.members.retain(|m| m != user_id);
                Some(state)
            }
            (Some(mut state), Event::GroupProviderLinked { provider_group }) => {
                state.provider_group = provider_group.clone();
                Some(state)
            }
        };
        Group { state }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(events: &[Event]) -> Group {
        events.iter().fold(Group::default(), Group::evolve)
    }

    #[test]
    fn the_creator_manages_members_see_others_do_not() {
        let (creator, member, stranger) = (UserId::new(), UserId::new(), UserId::new());
        let group = given(&[
            Event::GroupCreated { creator_id: creator, name: "Team".into() },
            Event::GroupMemberAdded { user_id: member },
        ]);
        let add = |user_id| Command::AddMember { user_id };
        assert_eq!(
            group.decide(Actor::User(creator), add(stranger)),
            Ok(vec![Event::GroupMemberAdded { user_id: stranger }])
        );
        assert_eq!(group.decide(Actor::User(creator), add(member)), Ok(vec![]), "already a member");
        assert_eq!(group.decide(Actor::User(member), add(stranger)), Err(Rejection::Forbidden));
        assert_eq!(group.decide(Actor::User(stranger), Command::Delete), Err(Rejection::NotFound));
        assert_eq!(group.decide(Actor::Admin(stranger), Command::Delete), Err(Rejection::NotFound));
        let removed = Command::RemoveMember { user_id: stranger };
        assert_eq!(group.decide(Actor::User(creator), removed), Err(Rejection::NotAMember));
    }

    #[test]
    fn the_creator_links_it_to_a_provider_group() {
        let (creator, member) = (UserId::new(), UserId::new());
        let group = given(&[
            Event::GroupCreated { creator_id: creator, name: "Team".into() },
            Event::GroupMemberAdded { user_id: member },
        ]);
        let link = |name: &str| Command::LinkProvider { provider_group: Some(name.into()) };
        let linked = Event::GroupProviderLinked { provider_group: Some("eng".into()) };
        assert_eq!(group.decide(Actor::User(member), link("eng")), Err(Rejection::Forbidden));
        assert_eq!(group.decide(Actor::User(creator), link("eng")), Err(Rejection::Forbidden), "administrators only");
        assert_eq!(group.decide(Actor::Admin(creator), link("eng")), Ok(vec![linked.clone()]));
        let group = group.evolve(&linked);
        assert_eq!(group.decide(Actor::Admin(creator), link("eng")), Ok(vec![]), "already linked");
        let join = Command::AddMember { user_id: UserId::new() };
        assert!(group.decide(Actor::System, join).is_ok_and(|events| events.len() == 1), "sign-ins add members");
    }

    #[test]
    fn a_deleted_group_is_gone() {
        let creator = UserId::new();
        let group = given(&[Event::GroupCreated { creator_id: creator, name: "Team".into() }, Event::GroupDeleted {}]);
        assert_eq!(group.decide(Actor::User(creator), Command::Delete), Err(Rejection::NotFound));
    }
}
