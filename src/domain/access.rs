//! Who may see a conversation. Whoever may not, must not learn that it exists.

use super::Actor;
use super::ids::UserId;

/// Whether `viewer` may read a conversation owned by `owner`.
pub fn can_read(viewer: UserId, owner: UserId) -> bool {
    viewer == owner
}

/// [`can_read`] for any actor: the server itself reads everything.
pub fn actor_can_read(actor: Actor, owner: UserId) -> bool {
    match actor {
        // Administrators manage accounts, not other people's conversations.
        Actor::User(viewer) | Actor::Admin(viewer) => can_read(viewer, owner),
        Actor::System => true,
    }
}
