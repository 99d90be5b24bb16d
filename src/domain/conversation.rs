//! The conversation aggregate: who owns it, whether it accepts messages, how many it has.
//!
//! States: `active <-> streaming` while the assistant answers (`awaiting_approval` while a
//! tool call waits), `active <-> archived`. An archived conversation is read-only until
//! unarchived; sending while an answer streams is a conflict.

use serde::{Deserialize, Serialize};

use super::access::{self, Grantee, Role};
use super::ids::{ConversationId, McpServerId, MessageId, ToolCallId, UserId};
use super::values::{MessageContent, ModelId, Sampling, SystemPrompt, Title};
use super::{Actor, Aggregate, DomainEvent};

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
        /// Set for a fork: the history it inherits.
        fork: Option<ForkOrigin>,
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
    /// Starts a new reply to the history as it stands (in a fork made to regenerate one).
    Regenerate {
        reply_id: MessageId,
        model_id: String,
    },
    /// Shares the conversation, or changes the role of whom it is shared with.
    Grant {
        grantee: Grantee,
        role: Role,
    },
    Revoke {
        grantee: Grantee,
    },
    /// A grantee gives up their access.
    Leave,
    /// Ends the reply being streamed, with the tool calls the model asked for in it.
    FinishReply {
        message_id: MessageId,
        outcome: ReplyOutcome,
        tool_calls: Vec<ToolRequest>,
        /// Tool rounds a turn may have; calls beyond are refused and the turn ends.
        max_rounds: u32,
        next: Option<NextRound>,
    },
    /// A person approves or rejects a call waiting for a decision.
    DecideToolCall {
        call_id: ToolCallId,
        decision: Decision,
        next: Option<NextRound>,
    },
    /// Records what an approved call returned.
    CompleteToolCall {
        call_id: ToolCallId,
        output: ToolOutcome,
        next: Option<NextRound>,
    },
    /// Rejects every call not yet settled (waiting, or approved and maybe running),
    /// ending the turn.
    CancelToolCalls {
        reason: String,
    },
}

/// Where a fork comes from: the conversation it was forked from, at which message
/// (`None`: before the first), and every conversation whose messages it inherits with
/// the last sequence number inherited from each, so that reading its history needs no
/// walk up the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForkOrigin {
    pub conversation_id: ConversationId,
    pub message_id: Option<MessageId>,
    /// Messages inherited: the fork's own are numbered after them.
    pub seq: i64,
    pub inherits: Vec<Inherited>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inherited {
    pub conversation_id: ConversationId,
    pub until_seq: i64,
}

/// The reply that continues a turn once its tool calls are settled.
#[derive(Debug, Clone, PartialEq)]
pub struct NextRound {
    pub reply_id: MessageId,
    pub model_id: String,
}

/// A tool call the model asked for, with what the user's policy decided (`None`: ask).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest {
    pub call_id: ToolCallId,
    pub provider_call_id: String,
    /// `None` when the model named a tool no server offers.
    pub server_id: Option<McpServerId>,
    pub server_name: Option<String>,
    pub tool_name: String,
    pub arguments: serde_json::Value,
    pub decision: Option<Decision>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// `remembered`: the policy the approval also set (`tool` or `server`).
    Approve {
        remembered: Option<String>,
    },
    Reject {
        reason: String,
    },
}

/// What a tool call returned, or the error the model is told instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolOutcome {
    pub result: String,
    pub is_error: bool,
    pub duration_ms: i64,
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forked_from: Option<ForkOrigin>,
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
    /// The model asked, in reply `message_id`, for a tool call. `status` is the
    /// conversation's after this event, here and in the tool events below.
    ToolCallRequested {
        call_id: ToolCallId,
        message_id: MessageId,
        provider_call_id: String,
        server_id: Option<McpServerId>,
        server_name: Option<String>,
        tool_name: String,
        arguments: serde_json::Value,
        status: Status,
    },
    /// `by_policy`: the user's policy decided, not a person just now.
    ToolCallApproved {
        call_id: ToolCallId,
        by_policy: bool,
        remembered: Option<String>,
        status: Status,
    },
    ToolCallRejected {
        call_id: ToolCallId,
        by_policy: bool,
        reason: String,
        status: Status,
    },
    ToolCallCompleted {
        call_id: ToolCallId,
        #[serde(flatten)]
        outcome: ToolOutcome,
        status: Status,
    },
    AccessGranted {
        #[serde(flatten)]
        grantee: Grantee,
        role: Role,
    },
    AccessRevoked {
        #[serde(flatten)]
        grantee: Grantee,
    },
    MemberLeft {
        user_id: UserId,
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
    #[error("tool call not found")]
    NoSuchCall,
    #[error("this tool call is not waiting for that")]
    CallSettled,
    #[error("only the conversation's owner may do this")]
    OwnerOnly,
    #[error("you may read this conversation (and fork it), not write in it")]
    ReadOnly,
    #[error("this conversation is not shared with them")]
    NoSuchGrant,
    #[error("the owner cannot leave their own conversation")]
    OwnerCannotLeave,
}

/// Where a tool call of the current turn is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    Waiting,
    Approved,
    Settled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    id: ToolCallId,
    phase: Phase,
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
    /// The tool calls of the turn's last round.
    #[serde(default)]
    calls: Vec<Call>,
    /// Tool rounds so far in the current turn.
    #[serde(default)]
    rounds: u32,
    #[serde(default)]
    grants: Vec<(Grantee, Role)>,
}

impl State {
    /// The status the calls leave the conversation in, no reply streaming.
    fn status_of_calls(&self) -> Status {
        if self.calls.iter().any(|c| c.phase == Phase::Waiting) {
            Status::AwaitingApproval
        } else if self.calls.iter().any(|c| c.phase == Phase::Approved) {
            Status::Streaming
        } else {
            Status::Active
        }
    }

    fn set_phase(&mut self, call: ToolCallId, phase: Phase) {
        if let Some(c) = self.calls.iter_mut().find(|c| c.id == call) {
            c.phase = phase;
        }
    }

    fn phase(&self, call: ToolCallId) -> Option<Phase> {
        self.calls.iter().find(|c| c.id == call).map(|c| c.phase)
    }
}

/// Records tool events in order, tracking the status each leaves behind, and starts
/// the next round when the last call settles.
struct ToolEvents {
    state: State,
    events: Vec<Event>,
}

impl ToolEvents {
    fn new(state: State, events: Vec<Event>) -> ToolEvents {
        ToolEvents { state, events }
    }

    fn request(&mut self, message_id: MessageId, request: ToolRequest) {
        let ToolRequest { call_id, provider_call_id, server_id, server_name, tool_name, arguments, decision } = request;
        self.state.calls.push(Call { id: call_id, phase: Phase::Waiting });
        let status = self.state.status_of_calls();
        self.events.push(Event::ToolCallRequested {
            call_id,
            message_id,
            provider_call_id,
            server_id,
            server_name,
            tool_name,
            arguments,
            status,
        });
        if let Some(decision) = decision {
            self.decide(call_id, decision, true);
        }
    }

    fn decide(&mut self, call_id: ToolCallId, decision: Decision, by_policy: bool) {
        match decision {
            Decision::Approve { remembered } => {
                self.state.set_phase(call_id, Phase::Approved);
                let status = self.state.status_of_calls();
                self.events.push(Event::ToolCallApproved { call_id, by_policy, remembered, status });
            }
            Decision::Reject { reason } => {
                self.state.set_phase(call_id, Phase::Settled);
                let status = self.state.status_of_calls();
                self.events.push(Event::ToolCallRejected { call_id, by_policy, reason, status });
            }
        }
    }

    fn complete(&mut self, call_id: ToolCallId, outcome: ToolOutcome) {
        self.state.set_phase(call_id, Phase::Settled);
        let status = self.state.status_of_calls();
        self.events.push(Event::ToolCallCompleted { call_id, outcome, status });
    }

    /// The events, with the start of the next reply if every call has settled.
    fn finish(mut self, next: Option<NextRound>) -> Vec<Event> {
        let settled = !self.state.calls.is_empty() && self.state.calls.iter().all(|c| c.phase == Phase::Settled);
        if let (true, Some(NextRound { reply_id, model_id })) = (settled, next) {
            self.events.push(Event::AssistantMessageStarted {
                message_id: reply_id,
                seq: self.state.message_count + 1,
                model_id,
            });
        }
        self.events
    }
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

    /// The state and `actor`'s role in it: absent when it does not exist or they may
    /// not read it.
    fn visible_to(&self, actor: Actor) -> Result<(&State, Role), Rejection> {
        let state = self.state.as_ref().ok_or(Rejection::NotFound)?;
        let role = access::role_of(actor, state.owner).ok_or(Rejection::NotFound)?;
        Ok((state, role))
    }
}

impl Aggregate for Conversation {
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, actor: Actor, command: Command) -> Result<Vec<Event>, Rejection> {
        if let Command::Create { owner, title, model_id, system_prompt, sampling, fork } = command {
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
                forked_from: fork,
            }]);
        }
        let (state, role) = self.visible_to(actor)?;
        let needs = |needed: Role| match needed {
            _ if role >= needed => Ok(()),
            Role::Owner => Err(Rejection::OwnerOnly),
            Role::Editor | Role::Viewer => Err(Rejection::ReadOnly),
        };
        needs(match &command {
            Command::Rename { .. }
            | Command::Archive
            | Command::Unarchive
            | Command::ChangeSettings { .. }
            | Command::Grant { .. }
            | Command::Revoke { .. } => Role::Owner,
            Command::Leave => Role::Viewer,
            _ => Role::Editor,
        })?;
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
            Command::Grant { grantee, role } => {
                if grantee == Grantee::User(state.owner) {
                    return Err(Rejection::OwnerCannotLeave);
                }
                let role = role.min(Role::Editor);
                if state.grants.contains(&(grantee, role)) {
                    return Ok(vec![]);
                }
                Ok(vec![Event::AccessGranted { grantee, role }])
            }
            Command::Revoke { grantee } => match state.grants.iter().any(|(g, _)| *g == grantee) {
                true => Ok(vec![Event::AccessRevoked { grantee }]),
                false => Err(Rejection::NoSuchGrant),
            },
            Command::Leave => match actor.user_id() {
                Some(user) if user == state.owner => Err(Rejection::OwnerCannotLeave),
                Some(user_id) => Ok(vec![Event::MemberLeft { user_id }]),
                None => Err(Rejection::NotFound),
            },
            Command::Regenerate { reply_id, model_id } => match state.status {
                Status::Active => Ok(vec![Event::AssistantMessageStarted {
                    message_id: reply_id,
                    seq: state.message_count + 1,
                    model_id,
                }]),
                Status::Archived => Err(Rejection::Archived),
                Status::Streaming | Status::AwaitingApproval => Err(Rejection::Busy),
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
            Command::FinishReply { message_id, outcome, tool_calls, max_rounds, next } => {
                if state.streaming != Some(message_id) {
                    return Err(Rejection::NotStreaming);
                }
                let ended = match outcome {
                    ReplyOutcome::Completed(completion) => Event::AssistantMessageCompleted { message_id, completion },
                    ReplyOutcome::Failed { partial_text, reason } => {
                        return Ok(vec![Event::AssistantMessageFailed { message_id, partial_text, reason }]);
                    }
                    ReplyOutcome::Cancelled { partial_text } => {
                        return Ok(vec![Event::AssistantMessageCancelled { message_id, partial_text }]);
                    }
                };
                let after = State { status: Status::Active, streaming: None, calls: vec![], ..state.clone() };
                let over_limit = state.rounds >= max_rounds;
                let mut tools = ToolEvents::new(after, vec![ended]);
                for mut request in tool_calls {
                    if over_limit {
                        let reason = format!("this turn reached its limit of {max_rounds} tool rounds");
                        request.decision = Some(Decision::Reject { reason });
                    }
                    tools.request(message_id, request);
                }
                Ok(tools.finish(if over_limit { None } else { next }))
            }
            Command::DecideToolCall { call_id, decision, next } => {
                match state.phase(call_id) {
                    None => return Err(Rejection::NoSuchCall),
                    Some(Phase::Waiting) => {}
                    Some(_) => return Err(Rejection::CallSettled),
                }
                let mut tools = ToolEvents::new(state.clone(), vec![]);
                tools.decide(call_id, decision, false);
                Ok(tools.finish(next))
            }
            Command::CompleteToolCall { call_id, output, next } => {
                match state.phase(call_id) {
                    None => return Err(Rejection::NoSuchCall),
                    Some(Phase::Approved) => {}
                    Some(_) => return Err(Rejection::CallSettled),
                }
                let mut tools = ToolEvents::new(state.clone(), vec![]);
                tools.complete(call_id, output);
                Ok(tools.finish(next))
            }
            Command::CancelToolCalls { reason } => {
                let open: Vec<ToolCallId> =
                    state.calls.iter().filter(|c| c.phase != Phase::Settled).map(|c| c.id).collect();
                if open.is_empty() || state.streaming.is_some() {
                    return Err(Rejection::NotStreaming);
                }
                let mut tools = ToolEvents::new(state.clone(), vec![]);
                for call_id in open {
                    tools.decide(call_id, Decision::Reject { reason: reason.clone() }, false);
                }
                Ok(tools.finish(None))
            }
        }
    }

    fn evolve(self, event: &Event) -> Self {
        let state = match (self.state, event) {
            (_, Event::ConversationCreated { owner_id, title, forked_from, .. }) => State {
                owner: *owner_id,
                title: title.clone(),
                status: Status::Active,
                message_count: forked_from.as_ref().map_or(0, |origin| origin.seq),
                streaming: None,
                calls: vec![],
                rounds: 0,
                grants: vec![],
            },
            (None, _) => return Conversation { state: None },
            (Some(state), Event::ConversationRenamed { title }) => State { title: title.clone(), ..state },
            (Some(state), Event::ConversationArchived {}) => State { status: Status::Archived, ..state },
            (Some(state), Event::ConversationUnarchived {}) => State { status: Status::Active, ..state },
            (Some(state), Event::ConversationSettingsChanged { .. }) => state,
            (Some(state), Event::UserMessageAdded { seq, .. }) => {
                State { message_count: *seq, rounds: 0, calls: vec![], ..state }
            }
            (Some(state), Event::AssistantMessageStarted { message_id, seq, .. }) => State {
                message_count: *seq,
                status: Status::Streaming,
                streaming: Some(*message_id),
                // A reply that follows tool calls is one more round of the same turn.
                rounds: state.rounds + u32::from(!state.calls.is_empty()),
                calls: vec![],
                ..state
            },
            (
                Some(state),
                Event::AssistantMessageCompleted { .. }
                | Event::AssistantMessageFailed { .. }
                | Event::AssistantMessageCancelled { .. },
            ) => State { status: Status::Active, streaming: None, ..state },
            (Some(mut state), Event::ToolCallRequested { call_id, status, .. }) => {
                state.calls.push(Call { id: *call_id, phase: Phase::Waiting });
                State { status: *status, ..state }
            }
            (Some(mut state), Event::ToolCallApproved { call_id, status, .. }) => {
                state.set_phase(*call_id, Phase::Approved);
                State { status: *status, ..state }
            }
            (
                Some(mut state),
                Event::ToolCallRejected { call_id, status, .. } | Event::ToolCallCompleted { call_id, status, .. },
            ) => {
                state.set_phase(*call_id, Phase::Settled);
                State { status: *status, ..state }
            }
            (Some(mut state), Event::AccessGranted { grantee, role }) => {
                state.grants.retain(|(g, _)| g != grantee);
                state.grants.push((*grantee, *role));
                state
            }
            (Some(mut state), Event::AccessRevoked { grantee }) => {
                state.grants.retain(|(g, _)| g != grantee);
                state
            }
            (Some(mut state), Event::MemberLeft { user_id }) => {
                state.grants.retain(|(g, _)| *g != Grantee::User(*user_id));
                state
            }
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
            forked_from: None,
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
        Command::FinishReply {
            message_id,
            outcome: ReplyOutcome::Cancelled { partial_text: "par".into() },
            tool_calls: vec![],
            max_rounds: 3,
            next: None,
        }
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
                    fork: None,
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
                fork: None,
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

    fn completed() -> ReplyOutcome {
        ReplyOutcome::Completed(Completion {
            text: String::new(),
            stop_reason: "tool_use".into(),
            input_tokens: None,
            output_tokens: None,
            time_to_first_token_ms: None,
            duration_ms: 1,
        })
    }

    fn request(decision: Option<Decision>) -> ToolRequest {
        ToolRequest {
            call_id: ToolCallId::new(),
            provider_call_id: "call_1".into(),
            server_id: Some(McpServerId::new()),
            server_name: Some("files".into()),
            tool_name: "read".into(),
            arguments: serde_json::json!({}),
            decision,
        }
    }

    fn next() -> Option<NextRound> {
        Some(NextRound { reply_id: MessageId::new(), model_id: "demo".into() })
    }

    fn apply(conversation: Conversation, events: &[Event]) -> Conversation {
        events.iter().fold(conversation, Conversation::evolve)
    }

    #[test]
    fn tool_calls_wait_for_approval_run_and_then_the_turn_continues() {
        let owner = UserId::new();
        let actor = Actor::User(owner);
        let conversation = given(&[created(owner)]);
        let events = conversation.decide(actor, message("list files")).expect("sent");
        let conversation = apply(conversation, &events);
        let reply = conversation.streaming().expect("streaming");
        let (ask, allow) = (request(None), request(Some(Decision::Approve { remembered: None })));
        let (ask_id, allow_id) = (ask.call_id, allow.call_id);
        let finish = Command::FinishReply {
            message_id: reply,
            outcome: completed(),
            tool_calls: vec![ask, allow],
            max_rounds: 2,
            next: next(),
        };
        let events = conversation.decide(actor, finish).expect("finished");
        assert_eq!(events.len(), 4, "completed, two requests, one approval by policy: {events:?}");
        let conversation = apply(conversation, &events);
        assert_eq!(conversation.status(), Some(Status::AwaitingApproval));
        assert_eq!(conversation.decide(actor, message("more")), Err(Rejection::Busy));

        let approve = |id| Command::DecideToolCall {
            call_id: id,
            decision: Decision::Approve { remembered: None },
            next: next(),
        };
        assert_eq!(conversation.decide(actor, approve(allow_id)), Err(Rejection::CallSettled));
        assert_eq!(conversation.decide(actor, approve(ToolCallId::new())), Err(Rejection::NoSuchCall));
        let conversation = apply(conversation.clone(), &conversation.decide(actor, approve(ask_id)).expect("approved"));
        assert_eq!(conversation.status(), Some(Status::Streaming), "the approved calls run");

        let output = || ToolOutcome { result: "a.txt".into(), is_error: false, duration_ms: 3 };
        let complete = |id| Command::CompleteToolCall { call_id: id, output: output(), next: next() };
        let events = conversation.decide(actor, complete(ask_id)).expect("completed");
        assert_eq!(events.len(), 1, "one call still runs");
        let conversation = apply(conversation, &events);
        let events = conversation.decide(actor, complete(allow_id)).expect("completed");
        assert!(matches!(events.last(), Some(Event::AssistantMessageStarted { seq: 3, .. })), "{events:?}");
        let conversation = apply(conversation, &events);
        assert_eq!(conversation.status(), Some(Status::Streaming));
        assert_eq!(conversation.decide(actor, complete(allow_id)), Err(Rejection::NoSuchCall));
    }

    /// A conversation streaming a reply, its owner, and the command finishing the reply
    /// with these tool calls.
    fn asking(tool_calls: Vec<ToolRequest>, max_rounds: u32) -> (Conversation, Actor, Command) {
        let owner = UserId::new();
        let actor = Actor::User(owner);
        let conversation = given(&[created(owner)]);
        let conversation = apply(conversation.clone(), &conversation.decide(actor, message("go")).expect("sent"));
        let message_id = conversation.streaming().expect("streaming");
        let finish = Command::FinishReply { message_id, outcome: completed(), tool_calls, max_rounds, next: next() };
        (conversation, actor, finish)
    }

    #[test]
    fn calls_beyond_the_round_limit_are_refused_and_the_turn_ends() {
        let (conversation, actor, finish) = asking(vec![request(None)], 0);
        let events = conversation.decide(actor, finish).expect("finished");
        assert!(
            matches!(&events[2], Event::ToolCallRejected { by_policy: true, status: Status::Active, .. }),
            "{events:?}"
        );
        assert_eq!(apply(conversation, &events).status(), Some(Status::Active));
    }

    #[test]
    fn waiting_calls_can_all_be_rejected() {
        let (conversation, actor, finish) = asking(vec![request(None), request(None)], 5);
        let conversation = apply(conversation.clone(), &conversation.decide(actor, finish).expect("finished"));
        let events =
            conversation.decide(actor, Command::CancelToolCalls { reason: "cancelled".into() }).expect("rejected");
        assert_eq!(events.len(), 2);
        assert_eq!(apply(conversation, &events).status(), Some(Status::Active));
    }

    #[test]
    fn status_names_round_trip() {
        for status in [Status::Active, Status::Streaming, Status::AwaitingApproval, Status::Archived] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }
}
