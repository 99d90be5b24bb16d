//! The pure core: ids, validated values, events and aggregates. No IO happens here;
//! the write path loads an aggregate, asks it to `decide` on a command and stores the
//! events it returns.

pub mod access;
pub mod conversation;
pub mod group;
pub mod ids;
pub mod mcp_server;
pub mod registration;
pub mod user;
pub mod values;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use ids::UserId;

/// Who performs a command: a signed-in user (an administrator may manage accounts), a
/// user acting in a conversation shared with them, with the role the read side found,
/// or the operator through the CLI and the server itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    Admin(UserId),
    Member { user: UserId, role: access::Role },
    System,
}

impl Actor {
    pub fn user_id(self) -> Option<UserId> {
        match self {
            Actor::User(id) | Actor::Admin(id) | Actor::Member { user: id, .. } => Some(id),
            Actor::System => None,
        }
    }
}

/// An event-sourced entity: state rebuilt by folding its events, changed only by
/// events that `decide` returns. The state serializes so that it can be snapshotted.
pub trait Aggregate: Default + Send + Serialize + DeserializeOwned {
    type Command: Send;
    type Event: DomainEvent;
    type Rejection: Send;

    fn decide(&self, actor: Actor, command: Self::Command) -> Result<Vec<Self::Event>, Self::Rejection>;
    fn evolve(self, event: &Self::Event) -> Self;
}

/// An event payload: serialized as `{"type": …, "data": …}` so its type name is stored
/// beside the data. `VERSION` is bumped when a payload's shape changes.
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync + Clone + std::fmt::Debug {
    const VERSION: i16 = 1;
}

/// Any event the system records, decoded from its stored type name and payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Conversation(conversation::Event),
    User(user::Event),
    McpServer(mcp_server::Event),
    Group(group::Event),
    Registration(registration::Event),
}

/// The current time, truncated to the microsecond precision both databases store.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    let micros = now.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(now)
}

/// An event split into what the store keeps: its type name, schema version and data.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedEvent {
    pub event_type: String,
    pub event_version: i16,
    pub payload: serde_json::Value,
}

/// Why a stored event could not be turned back into an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("`{event_type}` v{version} is newer than this server understands")]
    FutureVersion { event_type: String, version: i16 },
    #[error("malformed `{event_type}`: {source}")]
    Malformed { event_type: String, source: serde_json::Error },
}

pub fn encode<E: DomainEvent>(event: &E) -> EncodedEvent {
    // Events are plain data (strings, numbers, ids): serializing them cannot fail.
    let tagged = serde_json::to_value(event).unwrap_or_default();
    let (event_type, payload) = match tagged {
        serde_json::Value::Object(mut map) => (
            map.remove("type").and_then(|t| t.as_str().map(str::to_owned)).unwrap_or_default(),
            map.remove("data").unwrap_or_else(|| serde_json::json!({})),
        ),
        _ => (String::new(), serde_json::Value::Null),
    };
    EncodedEvent { event_type, event_version: E::VERSION, payload }
}

/// Reads a stored event as one family of events (one aggregate's).
pub fn decode_as<E: DomainEvent>(
    event_type: &str,
    event_version: i16,
    payload: &serde_json::Value,
) -> Result<E, DecodeError> {
    let tagged = serde_json::json!({ "type": event_type, "data": payload });
    match E::deserialize(&tagged) {
        // serde reports a tag outside the enum as an unknown variant: not this family.
        Err(source) if source.to_string().starts_with("unknown variant") => {
            Err(DecodeError::UnknownType(event_type.to_owned()))
        }
        _ if event_version > E::VERSION => {
            Err(DecodeError::FutureVersion { event_type: event_type.to_owned(), version: event_version })
        }
        Ok(event) => Ok(event),
        Err(source) => Err(DecodeError::Malformed { event_type: event_type.to_owned(), source }),
    }
}

impl Event {
    pub fn decode(event_type: &str, event_version: i16, payload: &serde_json::Value) -> Result<Event, DecodeError> {
        match decode_as(event_type, event_version, payload) {
            Err(DecodeError::UnknownType(_)) => {}
            other => return other.map(Event::Conversation),
        }
        match decode_as(event_type, event_version, payload) {
            Err(DecodeError::UnknownType(_)) => {}
            other => return other.map(Event::User),
        }
        match decode_as(event_type, event_version, payload) {
            Err(DecodeError::UnknownType(_)) => {}
            other => return other.map(Event::McpServer),
        }
        match decode_as(event_type, event_version, payload) {
            Err(DecodeError::UnknownType(_)) => {}
            other => return other.map(Event::Group),
        }
        decode_as(event_type, event_version, payload).map(Event::Registration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let events = [
            Event::Conversation(conversation::Event::ConversationArchived {}),
            Event::Conversation(conversation::Event::ConversationRenamed { title: "x".into() }),
            Event::User(user::Event::UserRoleChanged { role: user::Role::Admin }),
        ];
        for event in events {
            let encoded = match &event {
                Event::Conversation(e) => encode(e),
                Event::User(e) => encode(e),
                Event::McpServer(e) => encode(e),
                Event::Group(e) => encode(e),
                Event::Registration(e) => encode(e),
            };
            let decoded = Event::decode(&encoded.event_type, encoded.event_version, &encoded.payload);
            assert_eq!(decoded.ok(), Some(event), "{encoded:?}");
        }
    }

    #[test]
    fn a_family_rejects_other_families_by_type_before_version() {
        let payload = serde_json::json!({ "role": "admin" });
        assert!(matches!(
            decode_as::<conversation::Event>("UserRoleChanged", 2, &payload),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            decode_as::<user::Event>("UserRoleChanged", 2, &payload),
            Err(DecodeError::FutureVersion { .. })
        ));
    }

    #[test]
    fn unknown_and_future_events_are_reported() {
        assert!(matches!(Event::decode("SomethingElse", 1, &serde_json::json!({})), Err(DecodeError::UnknownType(_))));
        assert!(matches!(
            Event::decode("ConversationArchived", 99, &serde_json::json!({})),
            Err(DecodeError::FutureVersion { .. })
        ));
    }
}
