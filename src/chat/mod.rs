//! A turn of conversation: the user's message is recorded with the start of the
//! assistant's reply, the reply streams from the model to every subscriber, and ends
//! as completed, failed or cancelled. Replies running on this server are tracked here.

pub mod branching;
pub mod membership;
mod recovery;
mod reply;
mod running;
pub mod tools;

use std::sync::{Arc, Mutex};

use futures_util::FutureExt;

pub use membership::{Membership, publish, run_on_group};
pub use recovery::{keep_sweeping, sweep_stale_replies};
pub use running::{Replies, keep_checkpointing};

use crate::app::App;
use crate::auth::Viewer;
use crate::bus::Delta;
use crate::domain::access::Role;
use crate::domain::conversation::{Command, Conversation, Decision, NextRound, ReplyOutcome, ToolRequest};
use crate::domain::ids::{ConversationId, MessageId, ToolCallId, UserId};
use crate::domain::mcp_server::ToolPolicy;
use crate::domain::user;
use crate::domain::values::MessageContent;
use crate::domain::{self, Actor};
use crate::error::{AppError, AppResult};
use crate::limits::Slot;
use crate::llm::Model;
use crate::storage::checkpoints::{self, Checkpoint};
use crate::storage::event_store::execute;
use crate::storage::projections::conversations::{self, ConversationRow};
use crate::storage::projections::messages::{self, MessageRow};
use crate::storage::projections::tool_calls::{self, ToolCallRow};

/// Why a reply stops before the model finished.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// Someone cancelled it.
    Cancel(Actor),
    /// This server is shutting down.
    Shutdown,
}

/// A turn running on this server: the reply streaming in it, or its tool calls running
/// (then it stands for the turn's lease, see [`tools::lease_id`]).
pub struct Reply {
    pub conversation: ConversationId,
    text: Mutex<ReplyText>,
    /// Set when the reply must stop early.
    stop: tokio::sync::watch::Sender<Option<Stop>>,
    finished: tokio::sync::watch::Sender<bool>,
}

struct ReplyText {
    message_id: MessageId,
    pieces: Vec<String>,
    chars: usize,
}

impl Reply {
    fn new(conversation: ConversationId, message_id: MessageId) -> Reply {
        Reply {
            conversation,
            text: Mutex::new(ReplyText { message_id, pieces: vec![], chars: 0 }),
            stop: tokio::sync::watch::channel(None).0,
            finished: tokio::sync::watch::channel(false).0,
        }
    }

    fn text(&self) -> std::sync::MutexGuard<'_, ReplyText> {
        self.text.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The message streaming, or the lease of the tool calls running.
    pub fn message_id(&self) -> MessageId {
        self.text().message_id
    }

    /// Moves the turn on to another message, with no text yet.
    fn begin(&self, message_id: MessageId) {
        *self.text() = ReplyText { message_id, pieces: vec![], chars: 0 };
    }

    /// Adds a piece of text and returns it as a delta.
    fn push(&self, piece: String) -> Delta {
        let mut text = self.text();
        let delta = Delta {
            message_id: text.message_id,
            seq: text.pieces.len() as u64 + 1,
            offset: text.chars,
            text: piece.clone(),
        };
        text.chars += piece.chars().count();
        text.pieces.push(piece);
        delta
    }

    /// The text so far.
    pub fn so_far(&self) -> String {
        self.text().pieces.concat()
    }

    /// Its checkpoint as it stands.
    fn checkpoint(&self, at: chrono::DateTime<chrono::Utc>) -> Checkpoint {
        let text = self.text();
        Checkpoint {
            pieces: text.pieces.len() as i64,
            text: text.pieces.concat(),
            ..Checkpoint::start(self.conversation, text.message_id, at)
        }
    }

    /// Everything after piece `after_seq`, as one delta (none if nothing is new).
    pub fn catch_up(&self, after_seq: u64) -> Option<Delta> {
        let text = self.text();
        let seq = text.pieces.len() as u64;
        if seq <= after_seq {
            return None;
        }
        let skipped = &text.pieces[..after_seq as usize];
        Some(Delta {
            message_id: text.message_id,
            seq,
            offset: skipped.iter().map(|p| p.chars().count()).sum(),
            text: text.pieces[after_seq as usize..].concat(),
        })
    }
}

/// Runs a conversation command and publishes what it recorded.
pub async fn command(app: &App, actor: Actor, id: ConversationId, command: Command) -> AppResult<ConversationRow> {
    Ok(record(app, actor, id, command, None).await?.0)
}

/// Runs a conversation command on behalf of a viewer, with their role in it.
pub async fn act(app: &App, viewer: &Viewer, id: ConversationId, command: Command) -> AppResult<ConversationRow> {
    let member = membership::of(&mut app.db.conn().await?, viewer, id).await?;
    self::command(app, member.actor(), id, command).await
}

/// What a turn does next, after a command recorded its events.
#[derive(Debug, Clone, PartialEq)]
enum Next {
    /// Stream this reply.
    Reply { message_id: MessageId, model_id: String },
    /// Run the approved tool calls.
    Tools,
}

/// The turn's next step from the events a command recorded, if it has one.
fn next_step(events: &[domain::conversation::Event]) -> Option<Next> {
    use domain::conversation::{Event, Status};
    if let Some((message_id, model_id)) = events.iter().find_map(|e| match e {
        Event::AssistantMessageStarted { message_id, model_id, .. } => Some((*message_id, model_id.clone())),
        _ => None,
    }) {
        return Some(Next::Reply { message_id, model_id });
    }
    let running = events.iter().rev().find_map(|e| match e {
        Event::ToolCallRequested { status, .. }
        | Event::ToolCallApproved { status, .. }
        | Event::ToolCallRejected { status, .. }
        | Event::ToolCallCompleted { status, .. } => Some(*status == Status::Streaming),
        _ => None,
    })?;
    running.then_some(Next::Tools)
}

/// Runs a command, and publishes what it recorded. In the same transaction: forgets a
/// finished reply's checkpoint (`forget`), saves one for a reply it starts, and keeps
/// the turn's lease while (and only while) approved tool calls are to run.
async fn record(
    app: &App,
    actor: Actor,
    id: ConversationId,
    command: Command,
    forget: Option<MessageId>,
) -> AppResult<(ConversationRow, Option<Next>)> {
    record_with(app, actor, id, command, forget, None).await
}

/// [`record`], also running a command on a user's account in the same transaction.
async fn record_with(
    app: &App,
    actor: Actor,
    id: ConversationId,
    command: Command,
    forget: Option<MessageId>,
    account: Option<(UserId, user::Command)>,
) -> AppResult<(ConversationRow, Option<Next>)> {
    let (row, events, next) = app
        .db
        .write(|conn| {
            async move {
                let events = execute::<Conversation>(conn, id.uuid(), actor, command).await?;
                if let Some((user_id, command)) = account {
                    execute::<user::User>(conn, user_id.uuid(), actor, command).await?;
                }
                if let Some(message_id) = forget {
                    checkpoints::delete(conn, message_id).await?;
                }
                let decoded: Vec<domain::conversation::Event> = events
                    .iter()
                    .filter_map(|e| match e.decode() {
                        Ok(domain::Event::Conversation(event)) => Some(event),
                        _ => None,
                    })
                    .collect();
                let next = next_step(&decoded);
                let touches_tools = decoded.iter().any(|e| {
                    use domain::conversation::Event::*;
                    matches!(
                        e,
                        ToolCallRequested { .. }
                            | ToolCallApproved { .. }
                            | ToolCallRejected { .. }
                            | ToolCallCompleted { .. }
                    )
                });
                let lease = tools::lease_id(id);
                match &next {
                    Some(Next::Reply { message_id, .. }) => {
                        let at = checkpoints::clock(conn).await?;
                        checkpoints::save(conn, &Checkpoint::start(id, *message_id, at)).await?;
                        checkpoints::delete(conn, lease).await?;
                    }
                    Some(Next::Tools) => {
                        let at = checkpoints::clock(conn).await?;
                        checkpoints::save(conn, &Checkpoint::start(id, lease, at)).await?;
                    }
                    None if touches_tools => checkpoints::delete(conn, lease).await?,
                    None => {}
                }
                let row = conversations::find(conn, id).await?.ok_or(AppError::NotFound("conversation"))?;
                Ok::<_, AppError>((row, events, next))
            }
            .boxed()
        })
        .await?;
    publish(app, events).await;
    Ok((row, next))
}

/// The model a conversation's turns use, if it is still offered to `viewer`'s account.
fn model_of<'a>(app: &'a App, conversation: &ConversationRow) -> AppResult<&'a Model> {
    match &conversation.model_id {
        Some(id) => app
            .catalog
            .get(id)
            .ok_or_else(|| AppError::bad_input("modelId", format!("model `{id}` is no longer offered"))),
        None => Ok(app.catalog.default_model()),
    }
}

/// Registers a turn about to start here, unless one runs in its conversation; one that
/// is just finishing is waited for (a second at most).
async fn register(
    app: &App,
    id: ConversationId,
    status: domain::conversation::Status,
    message_id: MessageId,
) -> AppResult<Arc<Reply>> {
    let reply = Arc::new(Reply::new(id, message_id));
    while !app.replies.try_insert(reply.clone()) {
        // The turn there may have recorded its end and be about to go.
        let Some(running) = app.replies.get(id) else { continue };
        if status != domain::conversation::Status::Active && status != domain::conversation::Status::AwaitingApproval {
            return Err(domain::conversation::Rejection::Busy.into());
        }
        let mut finished = running.finished.subscribe();
        let gone = tokio::time::timeout(std::time::Duration::from_secs(1), finished.wait_for(|done| *done));
        if gone.await.is_err() {
            return Err(domain::conversation::Rejection::Busy.into());
        }
    }
    Ok(reply)
}

/// Forgets a registered turn that did not start.
fn unregister(app: &App, reply: &Reply) {
    app.replies.remove(reply);
    reply.finished.send_replace(true);
}

/// Records the user's message, starts the reply, and returns the user's message.
pub async fn send_message(
    app: &Arc<App>,
    viewer: &Viewer,
    id: ConversationId,
    content: MessageContent,
) -> AppResult<MessageRow> {
    let member = membership::of(&mut app.db.conn().await?, viewer, id).await?;
    member.require(Role::Editor)?;
    let (actor, conversation) = (member.actor(), member.conversation);
    let model = model_of(app, &conversation)?;
    if !viewer.may_use(&model.id) {
        return Err(AppError::Forbidden("your account may not use this conversation's model"));
    }
    let (message_id, reply_id) = (MessageId::new(), MessageId::new());
    let send = Command::SendMessage { message_id, content, reply_id, model_id: model.id.clone() };
    let turn = Turn { id, status: conversation.status(), actor, reply_id, model_id: model.id.clone() };
    begin(app, turn, vec![send]).await?;
    let mut conn = app.db.conn().await?;
    messages::find(&mut conn, message_id).await?.ok_or(AppError::NotFound("message"))
}

/// A turn about to start: where, by whom, and the reply it streams.
struct Turn {
    id: ConversationId,
    status: domain::conversation::Status,
    actor: Actor,
    reply_id: MessageId,
    model_id: String,
}

/// Runs `commands`, the last of which starts `turn`'s reply, in one transaction with the
/// reply's checkpoint, then streams the reply.
async fn begin(app: &Arc<App>, turn: Turn, commands: Vec<Command>) -> AppResult<()> {
    let Turn { id, status, actor, reply_id, model_id } = turn;
    // Registered before its start is recorded, so a cancel that comes right after the
    // start finds it here.
    let reply = register(app, id, status, reply_id).await?;
    let slot = match stream_slot(app, actor) {
        Ok(slot) => slot,
        Err(error) => {
            unregister(app, &reply);
            return Err(error);
        }
    };
    let recorded = app
        .db
        .write(|conn| {
            async move {
                let mut events = vec![];
                for command in commands {
                    events.extend(execute::<Conversation>(conn, id.uuid(), actor, command).await?);
                }
                // Saved with the start of the reply, so a crash from here on is recoverable.
                let at = checkpoints::clock(conn).await?;
                checkpoints::save(conn, &Checkpoint::start(id, reply_id, at)).await?;
                Ok::<_, AppError>(events)
            }
            .boxed()
        })
        .await;
    let events = match recorded {
        Ok(events) => events,
        Err(error) => {
            unregister(app, &reply);
            return Err(error);
        }
    };
    publish(app, events).await;
    spawn_run(app, reply, Next::Reply { message_id: reply_id, model_id }, slot);
    Ok(())
}

/// One of the replies `actor` may have streaming at once, taken until it is dropped.
fn stream_slot(app: &App, actor: Actor) -> AppResult<Option<Slot<UserId>>> {
    let Some(user) = actor.user_id() else { return Ok(None) };
    let slot = app.streams.take(user).ok_or_else(|| AppError::RateLimited {
        message: format!(
            "you already have {} replies streaming; wait for one to finish, or cancel one",
            app.streams.max()
        ),
        retry_after: None,
    })?;
    Ok(Some(slot))
}

/// Runs a turn from `next` in the background, holding `slot` until it stops.
fn spawn_run(app: &Arc<App>, reply: Arc<Reply>, next: Next, slot: Option<Slot<UserId>>) {
    let run = reply::run(app.clone(), reply, next);
    tokio::spawn(async move {
        run.await;
        drop(slot);
    });
}

/// Approves or rejects a tool call waiting for a decision, on behalf of someone who may
/// write in its conversation, and carries the turn on here if that settles it. An
/// approval the owner asks to remember also sets their policy.
pub async fn decide_tool_call(
    app: &Arc<App>,
    viewer: &Viewer,
    call_id: ToolCallId,
    decision: Decision,
) -> AppResult<ToolCallRow> {
    let mut conn = app.db.conn().await?;
    let call = tool_calls::find(&mut conn, call_id).await?.ok_or(AppError::NotFound("tool call"))?;
    let member = match membership::of(&mut conn, viewer, call.conversation()).await {
        Err(AppError::NotFound(_)) => return Err(AppError::NotFound("tool call")),
        other => other?,
    };
    drop(conn);
    member.require(Role::Editor)?;
    let (actor, conversation) = (member.actor(), member.conversation);
    if call.status != "waiting" {
        return Err(domain::conversation::Rejection::CallSettled.into());
    }
    let account = match &decision {
        Decision::Approve { remembered: Some(scope) } => {
            if conversation.owner() != viewer.user_id {
                return Err(AppError::Forbidden("only the conversation's owner may remember an approval"));
            }
            let server_id = call.server().ok_or(AppError::bad_input("remember", "the tool's server is unknown"))?;
            let tool = (scope == "tool").then(|| call.tool_name.clone());
            Some((viewer.user_id, user::Command::SetToolPolicy { server_id, tool, policy: ToolPolicy::Allow }))
        }
        _ => None,
    };
    let model_id = model_of(app, &conversation).ok().map(|m| m.id.clone());
    retrying(|| {
        let next = model_id.clone().map(|model_id| NextRound { reply_id: MessageId::new(), model_id });
        let command = Command::DecideToolCall { call_id, decision: decision.clone(), next };
        advance(app, actor, &conversation, command, account.clone())
    })
    .await?;
    let mut conn = app.db.conn().await?;
    tool_calls::find(&mut conn, call_id).await?.ok_or(AppError::NotFound("tool call"))
}

/// Runs a command that may move a turn on (a decision on a tool call), and carries the
/// turn on here if it does.
async fn advance(
    app: &Arc<App>,
    actor: Actor,
    conversation: &ConversationRow,
    command: Command,
    account: Option<(UserId, user::Command)>,
) -> AppResult<ConversationRow> {
    let id = conversation.conversation_id();
    let reply = register(app, id, conversation.status(), tools::lease_id(id)).await?;
    // Taken before the decision is recorded: a decision that cannot go on is refused whole.
    let slot = match stream_slot(app, actor) {
        Ok(slot) => slot,
        Err(error) => {
            unregister(app, &reply);
            return Err(error);
        }
    };
    match record_with(app, actor, id, command, None, account).await {
        Ok((row, Some(next))) => {
            spawn_run(app, reply, next, slot);
            Ok(row)
        }
        Ok((row, None)) => {
            unregister(app, &reply);
            Ok(row)
        }
        Err(error) => {
            unregister(app, &reply);
            Err(error)
        }
    }
}

/// Closes every reply still streaming on this server as failed, keeping its text, when
/// the server shuts down; waits a few seconds at most for them to be recorded.
pub async fn stop_all(app: &App) {
    let replies: Vec<Arc<Reply>> = app.replies.map().values().cloned().collect();
    let recorded = replies.iter().map(|reply| {
        let mut finished = reply.finished.subscribe();
        reply.stop.send_replace(Some(Stop::Shutdown));
        async move {
            let _ = finished.wait_for(|done| *done).await;
        }
    });
    if tokio::time::timeout(std::time::Duration::from_secs(5), futures_util::future::join_all(recorded)).await.is_err()
    {
        tracing::warn!("some replies were not closed before shutdown; the next start closes them");
    }
}

/// Stops the turn in a conversation: the reply streaming keeps the text it had; tool
/// calls waiting or running are rejected.
pub async fn cancel(app: &App, viewer: &Viewer, id: ConversationId) -> AppResult<ConversationRow> {
    let mut conn = app.db.conn().await?;
    let member = membership::of(&mut conn, viewer, id).await?;
    member.require(Role::Editor)?;
    let (actor, row) = (member.actor(), member.conversation);
    if let Some(reply) = app.replies.get(id) {
        drop(conn);
        // The turn's task records the cancellation; wait for it.
        let mut finished = reply.finished.subscribe();
        reply.stop.send_replace(Some(Stop::Cancel(actor)));
        let _ = finished.wait_for(|done| *done).await;
        let mut conn = app.db.conn().await?;
        return conversations::find(&mut conn, id).await?.ok_or(AppError::NotFound("conversation"));
    }
    // Streaming on another server, or on one that died: cancel from the saved text.
    let Some(message) = messages::streaming(&mut conn, id).await? else {
        drop(conn);
        if row.status() == domain::conversation::Status::Active {
            return Err(domain::conversation::Rejection::NotStreaming.into());
        }
        let reason = "cancelled before it ran".to_owned();
        return Ok(record(app, actor, id, Command::CancelToolCalls { reason }, None).await?.0);
    };
    let partial_text = checkpoints::find(&mut conn, message.message_id()).await?.map(|c| c.text).unwrap_or_default();
    drop(conn);
    finish(app, actor, id, message.message_id(), ReplyOutcome::Cancelled { partial_text }, vec![], None)
        .await
        .map(|r| r.0)
}

/// Records how a reply ended, with the tool calls it asked for, forgetting its
/// checkpoint in the same transaction.
async fn finish(
    app: &App,
    actor: Actor,
    id: ConversationId,
    message_id: MessageId,
    outcome: ReplyOutcome,
    tool_calls: Vec<ToolRequest>,
    next: Option<NextRound>,
) -> AppResult<(ConversationRow, Option<Next>)> {
    let max_rounds = app.mcp.max_rounds();
    retrying(|| {
        let finish = Command::FinishReply {
            message_id,
            outcome: outcome.clone(),
            tool_calls: tool_calls.clone(),
            max_rounds,
            next: next.clone(),
        };
        record(app, actor, id, finish, Some(message_id))
    })
    .await
}

/// Runs `attempt` again when another command on the conversation committed first (a
/// rename, or another tool call's decision).
async fn retrying<T, F: Future<Output = AppResult<T>>>(mut attempt: impl FnMut() -> F) -> AppResult<T> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt().await {
            Err(AppError::Conflict { reason: "CONCURRENT_UPDATE", .. }) if attempts < 5 => continue,
            other => return other,
        }
    }
}
