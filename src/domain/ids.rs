//! Typed identifiers. Every id is a UUID (v7, so new rows append to indexes in order)
//! wrapped in its own type, so a message id can never be passed as a conversation id.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A string that is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid id")]
pub struct InvalidId(pub String);

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn parse(text: &str) -> Result<Self, InvalidId> {
                Uuid::try_parse(text.trim()).map(Self).map_err(|_| InvalidId(text.to_owned()))
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

id_type!(
    /// A user account.
    UserId
);
id_type!(
    /// A conversation, and the event stream that records it.
    ConversationId
);
id_type!(
    /// A message inside a conversation.
    MessageId
);
id_type!(
    /// A login session.
    SessionId
);
id_type!(
    /// An MCP server a user registered, or one the operator configured.
    McpServerId
);
id_type!(
    /// A call of a tool the model asked for.
    ToolCallId
);
id_type!(
    /// A sealed credential in the `secrets` table.
    SecretId
);
id_type!(
    /// A group of users that conversations can be shared with.
    GroupId
);
id_type!(
    /// An administrator's invitation to create an account.
    InviteId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints() {
        let id = ConversationId::new();
        assert_eq!(ConversationId::parse(&id.to_string()), Ok(id));
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in ["", "42", "not-a-uuid", "0000000-0000-0000-0000-000000000000"] {
            assert!(UserId::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
