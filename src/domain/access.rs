//! Who may see a conversation. Whoever may not, must not learn that it exists.

use super::ids::UserId;

/// Whether `viewer` may read a conversation owned by `owner`.
pub fn can_read(viewer: UserId, owner: UserId) -> bool {
    viewer == owner
}
