//! Who may do what in a conversation. Whoever may not read it must not learn that it
//! exists.
//!
//! The owner may do everything; a grant to a user, or to a group they belong to, makes
//! them an editor (reads, sends, forks, decides tool calls) or a viewer (reads, forks
//! into a private copy). A user's own grant beats their groups': one who left a
//! conversation stays out of it even while a group of theirs keeps access.

use serde::{Deserialize, Serialize};

use super::Actor;
use super::ids::{GroupId, UserId};

/// What someone may do in a conversation, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Editor,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Owner => "owner",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Viewer, Role::Editor, Role::Owner].into_iter().find(|r| r.as_str() == text)
    }
}

/// Who a conversation is shared with. Stored flat in events (`{"user_id": …}` or
/// `{"group_id": …}`), so the log can be searched for what concerns a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Grantee {
    #[serde(rename = "user_id")]
    User(UserId),
    #[serde(rename = "group_id")]
    Group(GroupId),
}

/// A user's role from what they hold themselves and through their groups: `own` is their
/// own grant (`Some(None)`: they left), `through_groups` the roles their groups hold.
pub fn effective_role(
    is_owner: bool,
    own: Option<Option<Role>>,
    through_groups: impl IntoIterator<Item = Role>,
) -> Option<Role> {
    if is_owner {
        return Some(Role::Owner);
    }
    match own {
        Some(own) => own,
        None => through_groups.into_iter().max(),
    }
}

/// The role `actor` has in a conversation owned by `owner`: members carry the role the
/// read side resolved for them (group membership lives in other aggregates); the server
/// itself may do everything.
pub fn role_of(actor: Actor, owner: UserId) -> Option<Role> {
    match actor {
        Actor::System => Some(Role::Owner),
        Actor::User(user) | Actor::Admin(user) if user == owner => Some(Role::Owner),
        Actor::Member { user, .. } if user == owner => Some(Role::Owner),
        // Administrators manage accounts, not other people's conversations.
        Actor::User(_) | Actor::Admin(_) => None,
        Actor::Member { role, .. } => Some(role.min(Role::Editor)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_grants_beat_groups_and_owners_beat_all() {
        assert_eq!(effective_role(true, Some(None), []), Some(Role::Owner));
        assert_eq!(effective_role(false, None, [Role::Viewer, Role::Editor]), Some(Role::Editor));
        assert_eq!(effective_role(false, Some(Some(Role::Viewer)), [Role::Editor]), Some(Role::Viewer));
        assert_eq!(effective_role(false, Some(None), [Role::Editor]), None, "left");
        assert_eq!(effective_role(false, None, []), None);
    }

    #[test]
    fn a_member_never_passes_for_the_owner() {
        let (owner, other) = (UserId::new(), UserId::new());
        assert_eq!(role_of(Actor::Member { user: other, role: Role::Owner }, owner), Some(Role::Editor));
        assert_eq!(role_of(Actor::Admin(other), owner), None);
        assert_eq!(role_of(Actor::User(owner), owner), Some(Role::Owner));
    }

    #[test]
    fn grantees_are_stored_flat() {
        let user = UserId::new();
        let json = serde_json::to_value(Grantee::User(user)).expect("json");
        assert_eq!(json, serde_json::json!({ "user_id": user.to_string() }));
    }
}
