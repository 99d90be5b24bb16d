//! Branches: a fork of a conversation at one of its messages, and the edits and
//! regenerations that make a fork instead of changing history.
//!
//! A fork copies no message: its `ConversationCreated` names every conversation it
//! inherits from and up to which message, and the `conversation_lineage` projection
//! turns that into rows, so forking costs the same however long the history.

use std::sync::Arc;

use super::{Turn, begin, membership, model_of};
use crate::app::App;
use crate::auth::Viewer;
use crate::domain::conversation::{Command, ForkOrigin, Inherited};
use crate::domain::ids::{ConversationId, MessageId};
use crate::domain::values::{MessageContent, ModelId, Sampling, SystemPrompt, Title};
use crate::error::{AppError, AppResult};
use crate::storage::DbConn;
use crate::storage::projections::conversations::ConversationRow;
use crate::storage::projections::lineage;
use crate::storage::projections::messages::{self, MessageRow};

/// A new branch: the fork, and the message that starts it (the edited message, or the
/// regenerated reply).
pub struct Branch {
    pub conversation: ConversationId,
    pub message: MessageId,
}

/// Forks `source` after message `at`, for the viewer: a new private conversation whose
/// history is the source's up to that message.
pub async fn fork(
    app: &App,
    viewer: &Viewer,
    source: ConversationId,
    at: MessageId,
    title: Option<Title>,
) -> AppResult<ConversationRow> {
    let mut conn = app.db.conn().await?;
    let member = membership::of(&mut conn, viewer, source).await?;
    let message = messages::in_history(&mut conn, source, at).await?.ok_or(AppError::NotFound("message"))?;
    if message.status == "streaming" {
        return Err(AppError::Conflict {
            reason: "STREAMING",
            message: "this reply is still streaming; fork once it has finished".into(),
        });
    }
    let create = create_fork(&mut conn, viewer, &member.conversation, Some(&message), title).await?;
    drop(conn);
    super::command(app, viewer.actor(), ConversationId::new(), create).await
}

/// Forks just before a user message and sends `content` in its place. `conversation`
/// names the conversation the message is seen in (a fork showing it as inherited
/// history); by default, the one it was written in.
pub async fn edit(
    app: &Arc<App>,
    viewer: &Viewer,
    message: MessageId,
    content: MessageContent,
    conversation: Option<ConversationId>,
) -> AppResult<Branch> {
    let (source, edited) = branch_point(app, viewer, message, conversation).await?;
    if edited.role != "user" {
        return Err(AppError::bad_input("messageId", "only a user's message can be edited"));
    }
    let (message_id, reply_id) = (MessageId::new(), MessageId::new());
    start(app, viewer, &source, &edited, reply_id, |model_id| Command::SendMessage {
        message_id,
        content,
        reply_id,
        model_id,
    })
    .await
    .map(|conversation| Branch { conversation, message: message_id })
}

/// Forks just before an assistant message and has the model answer again.
pub async fn regenerate(
    app: &Arc<App>,
    viewer: &Viewer,
    message: MessageId,
    conversation: Option<ConversationId>,
) -> AppResult<Branch> {
    let (source, replaced) = branch_point(app, viewer, message, conversation).await?;
    if replaced.role != "assistant" {
        return Err(AppError::bad_input("messageId", "only an assistant's message can be regenerated"));
    }
    if replaced.status == "streaming" {
        return Err(AppError::Conflict {
            reason: "STREAMING",
            message: "this reply is still streaming; cancel it or wait for it to finish".into(),
        });
    }
    let reply_id = MessageId::new();
    start(app, viewer, &source, &replaced, reply_id, |model_id| Command::Regenerate { reply_id, model_id })
        .await
        .map(|conversation| Branch { conversation, message: reply_id })
}

/// The conversation a message is branched from (which the viewer must be able to read)
/// and the message itself, which must be in its history.
async fn branch_point(
    app: &App,
    viewer: &Viewer,
    message: MessageId,
    conversation: Option<ConversationId>,
) -> AppResult<(ConversationRow, MessageRow)> {
    let not_found = || AppError::NotFound("message");
    let mut conn = app.db.conn().await?;
    let conversation = match conversation {
        Some(id) => id,
        None => {
            let row = messages::find(&mut conn, message).await?.ok_or_else(not_found)?;
            ConversationId::from_uuid(row.conversation_id.0)
        }
    };
    let member = match membership::of(&mut conn, viewer, conversation).await {
        Err(AppError::NotFound(_)) => return Err(not_found()),
        other => other?,
    };
    let message = messages::in_history(&mut conn, conversation, message).await?.ok_or_else(not_found)?;
    Ok((member.conversation, message))
}

/// Creates the fork just before `replaced` and runs `first` (built with the model's id),
/// which starts reply `reply_id`, in it, in one transaction; then streams the reply.
async fn start(
    app: &Arc<App>,
    viewer: &Viewer,
    source: &ConversationRow,
    replaced: &MessageRow,
    reply_id: MessageId,
    first: impl FnOnce(String) -> Command,
) -> AppResult<ConversationId> {
    let model = model_of(app, source)?;
    if !viewer.may_use(&model.id) {
        return Err(AppError::Forbidden("your account may not use this conversation's model"));
    }
    let mut conn = app.db.conn().await?;
    let before = match replaced.seq {
        1 => None,
        seq => messages::list(&mut conn, source.conversation_id(), seq - 2, 1).await?.pop(),
    };
    let create = create_fork(&mut conn, viewer, source, before.as_ref(), None).await?;
    drop(conn);
    let id = ConversationId::new();
    let status = crate::domain::conversation::Status::Active;
    let turn = Turn { id, status, actor: viewer.actor(), reply_id, model_id: model.id.clone() };
    begin(app, turn, vec![create, first(model.id.clone())]).await?;
    Ok(id)
}

/// The command that creates a fork of `source` after message `at` (`None`: before the
/// first), with the source's settings.
async fn create_fork(
    conn: &mut DbConn,
    viewer: &Viewer,
    source: &ConversationRow,
    at: Option<&MessageRow>,
    title: Option<Title>,
) -> AppResult<Command> {
    let seq = at.map_or(0, |m| m.seq);
    let inherits = lineage::of(conn, source.conversation_id())
        .await?
        .into_iter()
        .map(|row| Inherited {
            conversation_id: ConversationId::from_uuid(row.ancestor_id.0),
            until_seq: row.until_seq.min(seq),
        })
        .filter(|inherited| inherited.until_seq > 0)
        .collect();
    let origin = ForkOrigin {
        conversation_id: source.conversation_id(),
        message_id: at.map(MessageRow::message_id),
        seq,
        inherits,
    };
    Ok(Command::Create {
        owner: viewer.user_id,
        title: match title {
            Some(title) => title,
            None => Title::parse(&source.title)?,
        },
        model_id: source.model_id.as_deref().map(ModelId::parse).transpose()?,
        system_prompt: source.system_prompt.as_deref().map(SystemPrompt::parse).transpose()?,
        sampling: Sampling::parse(source.temperature, source.max_tokens)?,
        fork: Some(origin),
    })
}
