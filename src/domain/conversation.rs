//! The conversation aggregate: who owns it, whether it accepts messages, how many it has.
//!
//! States: `active <-> streaming` while the assistant answers (`awaiting_approval` while a
//! tool call waits), `active <-> archived`. An archived conversation is read-only until
//! unarchived; sending while an answer streams is a conflict.

use serde::{Deserialize, Serialize};

use super::ids::{MessageId, UserId};
use super::values::{MessageContent, ModelId, Sampling, SystemPrompt, Title};
use super::{Actor, Aggregate, DomainEvent, access};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Streaming,
    AwaitingApproval,
    Archived,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Streaming => "streaming",
            Status::AwaitingApproval => "awaiting_approval",
            Status::Archived => "archived",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [Status::Active, Status::Streaming, Status::AwaitingApproval, Status::Archived]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

#[derive(Debug)]
pub enum Command {
    Create {
        owner: UserId,
        title: Title,
        model_id: Option<ModelId>,
        system_prompt: Option<SystemPrompt>,
        sampling: Sampling,
    },
    Rename {
        title: Title,
    },
    Archive,
    Unarchive,
    /// Replaces the model and sampling settings the next turns use.
    ChangeSettings {
        model_id: Option<ModelId>,
        system_prompt: Option<SystemPrompt>,
        sampling: Sampling,
    },
    /// Records the user's message and starts the assistant's reply to it.
    SendMessage {
        message_id: MessageId,
        content: MessageContent,
        reply_id: MessageId,
        model_id: String,
    },
    /// Ends the reply being streamed.
    FinishReply {
        message_id: MessageId,
        outcome: ReplyOutcome,
    },
}

/// How a streamed reply ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyOutcome {
    Completed(Completion),
    Failed { partial_text: String, reason: String },
    Cancelled { partial_text: String },
}

/// A reply the model finished, with what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub stop_reason: String,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub time_to_first_token_ms: Option<i64>,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    ConversationCreated {
        owner_id: UserId,
        title: String,
        model_id: Option<String>,
        system_prompt: Option<String>,
        #[serde(default)]
        temperature: Option<f64>,
        #[serde(default)]
        max_tokens: Option<i64>,
    },
    ConversationRenamed {
        title: String,
    },
    ConversationArchived {},
    ConversationUnarchived {},
    /// The settings of the turns to come, whole.
    ConversationSettingsChanged {
        model_id: Option<String>,
        system_prompt: Option<String>,
        temperature: Option<f64>,
        max_tokens: Option<i64>,
    },
    UserMessageAdded {
        message_id: MessageId,
        /// 1-based place of the message in the conversation.
        seq: i64,
        content: String,
    },
    AssistantMessageStarted {
        message_id: MessageId,
        seq: i64,
        model_id: String,
    },
    AssistantMessageCompleted {
        message_id: MessageId,
        #[serde(flatten)]
        completion: Completion,
    },
    AssistantMessageFailed {
        message_id: MessageId,
        partial_text: String,
        reason: String,
    },
    AssistantMessageCancelled {
        message_id: MessageId,
        partial_text: String,
    },
}

impl DomainEvent for Event {}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Does not exist, or the actor may not see it: the two look the same.
    #[error("conversation not found")]
    NotFound,
    #[error("conversation already exists")]
    AlreadyExists,
    #[error("conversation is archived; unarchive it to change it")]
    Archived,
    #[error("an answer is still streaming in this conversation")]
    Busy,
    #[error("no answer is streaming in this conversation")]
    NotStreaming,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    owner: UserId,
    title: String,
    status: Status,
    message_count: i64,
    /// The assistant message being streamed, while the status is `streaming`.
    streaming: Option<MessageId>,
}

/// A conversation as far as deciding commands needs it.
// Snapshots of an older shape must fail to load rather than read as something else.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conversation {
    state: Option<State>,
}

impl Conversation {
    pub fn status(&self) -> Option<Status> {
        self.state.as_ref().map(|s| s.status)
    }

    /// The assistant message being streamed, if any.
    pub fn streaming(&self) -> Option<MessageId> {
        self.state.as_ref().and_then(|s| s.streaming)
    }

    /// The state as seen by `actor`: absent when it does not exist or is not theirs.
    fn visible_to(&self, actor: Actor) -> Result<&State, Rejection> {
        match (&self.state, actor) {
            (Some(state), actor) if access::actor_can_read(actor, state.owner) => Ok(state),
            _ => Err(Rejection::NotFound),
        }
    }
}

impl Aggregate for Conversation {
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, actor: Actor, command: Command) -> Result<Vec<Event>, Rejection> {
        if let Command::Create { owner, title, model_id, system_prompt, sampling } = command {
            if self.state.is_some() {
                return Err(Rejection::AlreadyExists);
            }
            return Ok(vec![Event::ConversationCreated {
                owner_id: owner,
                title: title.into_inner(),
                model_id: model_id.map(ModelId::into_inner),
                system_prompt: system_prompt.map(SystemPrompt::into_inner),
                temperature: sampling.temperature,
                max_tokens: sampling.max_tokens,
            }]);
        }
        let state = self.visible_to(actor)?;
        let writable = || match state.status {
            Status::Archived => Err(Rejection::Archived),
            _ => Ok(()),
        };
        match command {
            Command::Create { .. } => unreachable!("handled above"),
            Command::Rename { title } => {
                writable()?;
                if title.as_str() == state.title {
                    return Ok(vec![]);
                }
                Ok(vec![Event::ConversationRenamed { title: title.into_inner() }])
            }
            Command::ChangeSettings { model_id, system_prompt, sampling } => {
                writable()?;
                Ok(vec![Event::ConversationSettingsChanged {
                    model_id: model_id.map(ModelId::into_inner),
                    system_prompt: system_prompt.map(SystemPrompt::into_inner),
                    temperature: sampling.temperature,
                    max_tokens: sampling.max_tokens,
                }])
            }
            Command::Archive => match state.status {
                Status::Archived => Ok(vec![]),
                Status::Active => Ok(vec![Event::ConversationArchived {}]),
                Status::Streaming | Status::AwaitingApproval => Err(Rejection::Busy),
            },
            Command::Unarchive => match state.status {
                Status::Archived => Ok(vec![Event::ConversationUnarchived {}]),
                _ => Ok(vec![]),
            },
            Command::SendMessage { message_id, content, reply_id, model_id } => match state.status {
                Status::Active => Ok(vec![
                    Event::UserMessageAdded {
                        message_id,
                        seq: state.message_count + 1,
                        content: content.as_str().to_owned(),
                    },
                    Event::AssistantMessageStarted { message_id: reply_id, seq: state.message_count + 2, model_id },
                ]),
                Status::Archived => Err(Rejection::Archived),
                Status::Streaming | Status::AwaitingApproval => Err(Rejection::Busy),
            },
            Command::FinishReply { message_id, outcome } => {
                if state.streaming != Some(message_id) {
                    return Err(Rejection::NotStreaming);
                }
                Ok(vec![match outcome {
                    ReplyOutcome::Completed(completion) => Event::AssistantMessageCompleted { message_id, completion },
                    ReplyOutcome::Failed { partial_text, reason } => {
                        Event::AssistantMessageFailed { message_id, partial_text, reason }
                    }
                    ReplyOutcome::Cancelled { partial_text } => {
                        Event::AssistantMessageCancelled { message_id, partial_text }
                    }
                }])
            }
        }
    }

    fn evolve(self, event: &Event) -> Self {
        let state = match (self.state, event) {
            (_, Event::ConversationCreated { owner_id, title, .. }) => State {
                owner: *owner_id,
                title: title.clone(),
                status: Status::Active,
                message_count: 0,
                streaming: None,
            },
            (None, _) => return Conversation { state: None },
            (Some(state), Event::ConversationRenamed { title }) => State { title: title.clone(), ..state },
            (Some(state), Event::ConversationArchived {}) => State { status: Status::Archived, ..state },
            (Some(state), Event::ConversationUnarchived {}) => State { status: Status::Active, ..state },
            (Some(state), Event::ConversationSettingsChanged { .. }) => state,
            (Some(state), Event::UserMessageAdded { seq, .. }) => State { message_count: *seq, ..state },
            (Some(state), Event::AssistantMessageStarted { message_id, seq, .. }) => {
                State { message_count: *seq, status: Status::Streaming, streaming: Some(*message_id), ..state }
            }
            (
                Some(state),
                Event::AssistantMessageCompleted { .. }
                | Event::AssistantMessageFailed { .. }
                | Event::AssistantMessageCancelled { .. },
            ) => State { status: Status::Active, streaming: None, ..state },
        };
        Conversation { state: Some(state) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Given these past events, when `actor` sends `command`, then expect this outcome.
    fn given(events: &[Event]) -> Conversation {
        events.iter().fold(Conversation::default(), Conversation::evolve)
    }

    fn created(owner: UserId) -> Event {
        Event::ConversationCreated {
            owner_id: owner,
            title: "Plans".into(),
            model_id: None,
            system_prompt: None,
            temperature: None,
            max_tokens: None,
        }
    }

    fn message(text: &str) -> Command {
        Command::SendMessage {
            message_id: MessageId::new(),
            content: MessageContent::parse(text).expect("valid content"),
            reply_id: MessageId::new(),
            model_id: "demo".into(),
        }
    }

    fn finish(message_id: MessageId) -> Command {
        Command::FinishReply { message_id, outcome: ReplyOutcome::Cancelled { partial_text: "par".into() } }
    }

    fn title(text: &str) -> Title {
        Title::parse(text).expect("valid title")
    }

    #[test]
    fn create_records_the_owner() {
        let owner = UserId::new();
        let events = given(&[])
            .decide(
                Actor::User(owner),
                Command::Create {
                    owner,
                    title: title("Plans"),
                    model_id: None,
                    system_prompt: None,
                    sampling: Sampling::default(),
                },
            )
            .expect("created");
        assert_eq!(events, vec![created(owner)]);
    }

    #[test]
    fn create_twice_is_refused() {
        let owner = UserId::new();
        let outcome = given(&[created(owner)]).decide(
            Actor::User(owner),
            Command::Create {
                owner,
                title: title("Again"),
                model_id: None,
                system_prompt: None,
                sampling: Sampling::default(),
            },
        );
        assert_eq!(outcome, Err(Rejection::AlreadyExists));
    }

    #[test]
    fn a_message_starts_a_reply_and_both_are_numbered() {
        let owner = UserId::new();
        let actor = Actor::User(owner);
        let mut conversation = given(&[created(owner)]);
        for round in 0..3 {
            let events = conversation.decide(actor, message("hello")).expect("accepted");
            let reply = match &events[..] {
                [
                    Event::UserMessageAdded { seq, .. },
                    Event::AssistantMessageStarted { seq: reply_seq, message_id, .. },
                ] => {
                    assert_eq!((*seq, *reply_seq), (round * 2 + 1, round * 2 + 2));
                    *message_id
                }
                other => panic!("unexpected {other:?}"),
            };
            conversation = events.iter().fold(conversation, Conversation::evolve);
            assert_eq!(conversation.status(), Some(Status::Streaming));
            assert_eq!(conversation.decide(actor, message("again")), Err(Rejection::Busy), "one reply at a time");
            assert_eq!(conversation.decide(actor, Command::Archive), Err(Rejection::Busy));
            let events = conversation.decide(actor, finish(reply)).expect("finished");
            conversation = events.iter().fold(conversation, Conversation::evolve);
            assert_eq!(conversation.status(), Some(Status::Active));
        }
    }

    #[test]
    fn only_the_streaming_reply_can_be_finished() {
        let owner = UserId::new();
        let actor = Actor::User(owner);
        let conversation = given(&[created(owner)]);
        assert_eq!(conversation.decide(actor, finish(MessageId::new())), Err(Rejection::NotStreaming));
        let events = conversation.decide(actor, message("hi")).expect("accepted");
        let conversation = events.iter().fold(conversation, Conversation::evolve);
        assert_eq!(conversation.decide(actor, finish(MessageId::new())), Err(Rejection::NotStreaming));
        let stranger = Actor::User(UserId::new());
        let streaming = conversation.streaming().expect("streaming");
        assert_eq!(conversation.decide(stranger, finish(streaming)), Err(Rejection::NotFound));
    }

    #[test]
    fn someone_else_sees_nothing() {
        let stranger = Actor::User(UserId::new());
        let conversation = given(&[created(UserId::new())]);
        assert_eq!(conversation.decide(stranger, message("hi")), Err(Rejection::NotFound));
        assert_eq!(conversation.decide(stranger, Command::Archive), Err(Rejection::NotFound));
        assert_eq!(conversation.decide(stranger, Command::Rename { title: title("x") }), Err(Rejection::NotFound));
    }

    #[test]
    fn missing_conversation_is_not_found() {
        assert_eq!(given(&[]).decide(Actor::User(UserId::new()), Command::Archive), Err(Rejection::NotFound));
    }

    #[test]
    fn archived_is_read_only_until_unarchived() {
        let owner = UserId::new();
        let actor = Actor::User(owner);
        let archived = given(&[created(owner), Event::ConversationArchived {}]);
        assert_eq!(archived.status(), Some(Status::Archived));
        assert_eq!(archived.decide(actor, message("hi")), Err(Rejection::Archived));
        assert_eq!(archived.decide(actor, Command::Rename { title: title("New") }), Err(Rejection::Archived));
        assert_eq!(archived.decide(actor, Command::Archive), Ok(vec![]));
        assert_eq!(archived.decide(actor, Command::Unarchive), Ok(vec![Event::ConversationUnarchived {}]));

        let unarchived = archived.evolve(&Event::ConversationUnarchived {});
        assert_eq!(unarchived.status(), Some(Status::Active));
        assert!(unarchived.decide(actor, message("hi")).is_ok());
    }

    #[test]
    fn renaming_to_the_same_title_records_nothing() {
        let owner = UserId::new();
        let conversation = given(&[created(owner)]);
        assert_eq!(conversation.decide(Actor::User(owner), Command::Rename { title: title("Plans") }), Ok(vec![]));
        assert_eq!(
            conversation.decide(Actor::User(owner), Command::Rename { title: title("Trips") }),
            Ok(vec![Event::ConversationRenamed { title: "Trips".into() }])
        );
    }

    #[test]
    fn status_names_round_trip() {
        for status in [Status::Active, Status::Streaming, Status::AwaitingApproval, Status::Archived] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }
}
