//! A turn of conversation: the user's message is recorded with the start of the
//! assistant's reply, the reply streams from the model to every subscriber, and ends
//! as completed, failed or cancelled. Replies running on this server are tracked here.

mod recovery;
mod reply;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;

pub use recovery::{keep_sweeping, sweep_stale_replies};

use crate::app::App;
use crate::auth::Viewer;
use crate::bus::Delta;
use crate::domain::conversation::{Command, Conversation, ReplyOutcome};
use crate::domain::ids::{ConversationId, MessageId};
use crate::domain::values::MessageContent;
use crate::domain::{self, Actor};
use crate::error::{AppError, AppResult};
use crate::storage::checkpoints::{self, Checkpoint};
use crate::storage::event_store::execute;
use crate::storage::projections::conversations::{self, ConversationRow};
use crate::storage::projections::messages::{self, MessageRow};

/// Why a reply stops before the model finished.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// Someone cancelled it.
    Cancel(Actor),
    /// This server is shutting down.
    Shutdown,
}

/// A reply streaming on this server.
pub struct Reply {
    pub conversation: ConversationId,
    pub message_id: MessageId,
    text: Mutex<ReplyText>,
    /// Set when the reply must stop early.
    stop: tokio::sync::watch::Sender<Option<Stop>>,
    finished: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct ReplyText {
    pieces: Vec<String>,
    chars: usize,
}

impl Reply {
    fn new(conversation: ConversationId, message_id: MessageId) -> Reply {
        Reply {
            conversation,
            message_id,
            text: Mutex::default(),
            stop: tokio::sync::watch::channel(None).0,
            finished: tokio::sync::watch::channel(false).0,
        }
    }

    fn text(&self) -> std::sync::MutexGuard<'_, ReplyText> {
        self.text.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a piece of text and returns it as a delta.
    fn push(&self, piece: String) -> Delta {
        let mut text = self.text();
        let delta = Delta {
            message_id: self.message_id,
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
            ..Checkpoint::start(self.conversation, self.message_id, at)
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
            message_id: self.message_id,
            seq,
            offset: skipped.iter().map(|p| p.chars().count()).sum(),
            text: text.pieces[after_seq as usize..].concat(),
        })
    }
}

/// The replies streaming on this server, by conversation.
#[derive(Default)]
pub struct Replies {
    running: Mutex<HashMap<ConversationId, Arc<Reply>>>,
}

impl Replies {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, Arc<Reply>>> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, conversation: ConversationId) -> Option<Arc<Reply>> {
        self.map().get(&conversation).cloned()
    }

    /// Registers a reply about to start, unless one runs in its conversation.
    fn try_insert(&self, reply: Arc<Reply>) -> bool {
        match self.map().entry(reply.conversation) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(reply);
                true
            }
        }
    }

    /// Checkpoints of every reply streaming here, as they stand.
    fn checkpoints(&self) -> Vec<Checkpoint> {
        let now = domain::now();
        self.map().values().map(|r| r.checkpoint(now)).collect()
    }

    fn remove(&self, reply: &Reply) {
        let mut running = self.map();
        if running.get(&reply.conversation).is_some_and(|r| r.message_id == reply.message_id) {
            running.remove(&reply.conversation);
        }
    }
}

/// How often the text of streaming replies is saved.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Saves the text of every reply streaming on this server, in one transaction a second,
/// which also tells other servers this one is alive; for as long as the application lives.
pub async fn keep_checkpointing(app: std::sync::Weak<App>) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    loop {
        every.tick().await;
        let Some(app) = app.upgrade() else { return };
        let saving = app.replies.checkpoints();
        if saving.is_empty() {
            continue;
        }
        let saved = app.db.write(move |conn| checkpoints::refresh_all(conn, saving).boxed()).await;
        if let Err(error) = saved {
            tracing::warn!(%error, "could not save the progress of streaming replies");
        }
    }
}

/// Runs a conversation command and publishes what it recorded.
pub async fn command(app: &App, actor: Actor, id: ConversationId, command: Command) -> AppResult<ConversationRow> {
    record(app, actor, id, command, None).await
}

/// Runs a command, forgetting a reply's checkpoint in the same transaction if asked,
/// and publishes what it recorded.
async fn record(
    app: &App,
    actor: Actor,
    id: ConversationId,
    command: Command,
    forget: Option<MessageId>,
) -> AppResult<ConversationRow> {
    let (row, events) = app
        .db
        .write(|conn| {
            async move {
                let events = execute::<Conversation>(conn, id.uuid(), actor, command).await?;
                if let Some(message_id) = forget {
                    checkpoints::delete(conn, message_id).await?;
                }
                let row = conversations::find(conn, id).await?.ok_or(AppError::NotFound("conversation"))?;
                Ok::<_, AppError>((row, events))
            }
            .boxed()
        })
        .await?;
    app.bus.publish_events(row.owner(), events);
    Ok(row)
}

/// Records the user's message, starts the reply, and returns the user's message.
pub async fn send_message(
    app: &Arc<App>,
    viewer: &Viewer,
    id: ConversationId,
    content: MessageContent,
) -> AppResult<MessageRow> {
    let actor = viewer.actor();
    let mut conn = app.db.conn().await?;
    let conversation = match conversations::find(&mut conn, id).await? {
        Some(row) if domain::access::actor_can_read(actor, row.owner()) => row,
        _ => return Err(AppError::NotFound("conversation")),
    };
    drop(conn);
    let model = match &conversation.model_id {
        Some(id) => app
            .catalog
            .get(id)
            .ok_or_else(|| AppError::bad_input("modelId", format!("model `{id}` is no longer offered")))?,
        None => app.catalog.default_model(),
    };
    if !viewer.may_use(&model.id) {
        return Err(AppError::Forbidden("your account may not use this conversation's model"));
    }
    let (message_id, reply_id) = (MessageId::new(), MessageId::new());
    // Registered before its start is recorded, so a cancel that comes right after the
    // start finds it here.
    let reply = Arc::new(Reply::new(id, reply_id));
    while !app.replies.try_insert(reply.clone()) {
        // The reply there may have recorded its end and be about to go.
        let Some(running) = app.replies.get(id) else { continue };
        if conversation.status() != domain::conversation::Status::Active {
            return Err(domain::conversation::Rejection::Busy.into());
        }
        let mut finished = running.finished.subscribe();
        let gone = tokio::time::timeout(std::time::Duration::from_secs(1), finished.wait_for(|done| *done));
        if gone.await.is_err() {
            return Err(domain::conversation::Rejection::Busy.into());
        }
    }
    let send = Command::SendMessage { message_id, content, reply_id, model_id: model.id.clone() };
    let recorded = app
        .db
        .write(|conn| {
            async move {
                let events = execute::<Conversation>(conn, id.uuid(), actor, send).await?;
                // Saved with the start of the reply, so a crash from here on is recoverable.
                let at = checkpoints::clock(conn).await?;
                checkpoints::save(conn, &Checkpoint::start(id, reply_id, at)).await?;
                let message = messages::find(conn, message_id).await?.ok_or(AppError::NotFound("message"))?;
                Ok::<_, AppError>((message, events))
            }
            .boxed()
        })
        .await;
    let (message, events) = match recorded {
        Ok(recorded) => recorded,
        Err(error) => {
            app.replies.remove(&reply);
            reply.finished.send_replace(true);
            return Err(error);
        }
    };
    app.bus.publish_events(conversation.owner(), events);
    tokio::spawn(reply::run(app.clone(), reply, model.clone()));
    Ok(message)
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

/// Stops the reply streaming in a conversation, keeping the text it had.
pub async fn cancel(app: &App, actor: Actor, id: ConversationId) -> AppResult<ConversationRow> {
    let mut conn = app.db.conn().await?;
    match conversations::find(&mut conn, id).await? {
        Some(row) if domain::access::actor_can_read(actor, row.owner()) => {}
        _ => return Err(AppError::NotFound("conversation")),
    }
    if let Some(reply) = app.replies.get(id) {
        drop(conn);
        // The reply task records the cancellation; wait for it.
        let mut finished = reply.finished.subscribe();
        reply.stop.send_replace(Some(Stop::Cancel(actor)));
        let _ = finished.wait_for(|done| *done).await;
        let mut conn = app.db.conn().await?;
        return conversations::find(&mut conn, id).await?.ok_or(AppError::NotFound("conversation"));
    }
    // Streaming on another server, or on one that died: cancel from the saved text.
    let Some(message) = messages::streaming(&mut conn, id).await? else {
        return Err(domain::conversation::Rejection::NotStreaming.into());
    };
    let partial_text = checkpoints::find(&mut conn, message.message_id()).await?.map(|c| c.text).unwrap_or_default();
    drop(conn);
    finish(app, actor, id, message.message_id(), ReplyOutcome::Cancelled { partial_text }).await
}

/// Records how a reply ended, forgetting its checkpoint in the same transaction.
async fn finish(
    app: &App,
    actor: Actor,
    id: ConversationId,
    message_id: MessageId,
    outcome: ReplyOutcome,
) -> AppResult<ConversationRow> {
    // A rename may commit between loading the conversation and appending: try again.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let finish = Command::FinishReply { message_id, outcome: outcome.clone() };
        match record(app, actor, id, finish, Some(message_id)).await {
            Err(AppError::Conflict { reason: "CONCURRENT_UPDATE", .. }) if attempts < 5 => continue,
            other => return other,
        }
    }
}
