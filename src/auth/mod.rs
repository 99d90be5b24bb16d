//! Identity: password hashing, sessions, accounts, and the [`Viewer`] a request acts as.

pub mod accounts;
pub mod oidc;
pub mod password;
pub mod registration;
pub mod session;
pub mod watch;

use crate::domain::Actor;
use crate::domain::ids::{SessionId, UserId};
use crate::domain::user::Role;
use crate::domain::values::ModelMask;

/// The signed-in user behind a request or websocket.
#[derive(Debug, Clone, PartialEq)]
pub struct Viewer {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub role: Role,
    pub model_mask: Option<ModelMask>,
}

impl Viewer {
    pub fn actor(&self) -> Actor {
        match self.role {
            Role::Admin => Actor::Admin(self.user_id),
            Role::User => Actor::User(self.user_id),
        }
    }

    /// Whether the viewer's model mask lets them use this model.
    pub fn may_use(&self, model_id: &str) -> bool {
        self.model_mask.as_ref().is_none_or(|mask| mask.allows(model_id))
    }
}
