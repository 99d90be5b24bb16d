//! Identity: password hashing, sessions, accounts, and the [`Viewer`] a request acts as.

pub mod accounts;
pub mod password;
pub mod session;

use crate::domain::Actor;
use crate::domain::ids::{SessionId, UserId};
use crate::domain::user::Role;

/// The signed-in user behind a request or websocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub role: Role,
}

impl Viewer {
    pub fn actor(&self) -> Actor {
        Actor::User(self.user_id)
    }
}
