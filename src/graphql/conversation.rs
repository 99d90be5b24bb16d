//! Conversations and their messages: queries, mutations and the audit trail.

use std::collections::HashMap;

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ID, InputObject, Json, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::account::User;
use super::pagination::{page, page_size, parse_time_cursor, position_after, position_cursor, time_cursor};
use super::tools::ToolCall;
use super::{ApiResult, ContextExt, parse_id};
use crate::auth::Viewer;
use crate::chat;
use crate::config::MAX_PAGE_SIZE_LIMIT;
use crate::domain::conversation::{self, Command};
use crate::domain::ids::{ConversationId, UserId};
use crate::domain::values::{MessageContent, ModelId, Sampling, SystemPrompt, Title};
use crate::error::{AppError, AppResult};
use crate::llm::Catalog;
use crate::storage::DbConn;
use crate::storage::event_store;
use crate::storage::projections::conversations::{self, ConversationRow, ListKey, Listing};
use crate::storage::projections::messages::{self, MessageRow};
use crate::storage::projections::users;
use crate::storage::projections::{access, tool_calls};

const DEFAULT_TITLE: &str = "New conversation";

/// Complexity of a page: its size times the cost of one node. Sizes outside the allowed
/// range are priced as the largest page so that the resolver can refuse them by name.
fn page_cost(first: Option<i32>, node_cost: usize) -> usize {
    let size = first.map_or(super::pagination::DEFAULT_PAGE_SIZE, |n| n.clamp(1, MAX_PAGE_SIZE_LIMIT as i32) as usize);
    size * node_cost
}

/// A conversation with the assistant.
pub struct Conversation(pub ConversationRow);

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum ConversationStatus {
    Active,
    Streaming,
    AwaitingApproval,
    Archived,
}

impl From<conversation::Status> for ConversationStatus {
    fn from(status: conversation::Status) -> Self {
        use conversation::Status::*;
        match status {
            Active => ConversationStatus::Active,
            Streaming => ConversationStatus::Streaming,
            AwaitingApproval => ConversationStatus::AwaitingApproval,
            Archived => ConversationStatus::Archived,
        }
    }
}

#[Object]
impl Conversation {
    async fn id(&self) -> ID {
        ID(self.0.conversation_id().to_string())
    }

    async fn title(&self) -> &str {
        &self.0.title
    }

    /// The model that answers; null means the server's default model.
    async fn model_id(&self) -> Option<&str> {
        self.0.model_id.as_deref()
    }

    async fn system_prompt(&self) -> Option<&str> {
        self.0.system_prompt.as_deref()
    }

    async fn temperature(&self) -> Option<f64> {
        self.0.temperature
    }

    async fn max_tokens(&self) -> Option<i64> {
        self.0.max_tokens
    }

    async fn status(&self) -> ConversationStatus {
        self.0.status().into()
    }

    async fn archived(&self) -> bool {
        self.0.archived
    }

    async fn message_count(&self) -> i64 {
        self.0.message_count
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at.0
    }

    /// Time of the last message or rename: the order of the conversation list.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at.0
    }

    /// The conversation this one was forked from; null when it is not a fork, or the
    /// viewer may no longer read the source (the fork keeps its history).
    async fn forked_from(&self, ctx: &Context<'_>) -> ApiResult<Option<Conversation>> {
        super::collaboration::forked_from(ctx, &self.0).await
    }

    /// The message the fork was made after (the last it inherits); null when it is not a
    /// fork, or was forked before the first message.
    async fn forked_at_message_id(&self) -> Option<ID> {
        self.0.fork_message_id.map(|id| ID(id.0.to_string()))
    }

    /// Forks of this conversation that the viewer may read, most recent activity first.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn forks(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, Conversation>> {
        let viewer = ctx.viewer()?;
        let limit = page_size(first, ctx.max_page_size())?;
        let after_key = after.as_deref().map(parse_list_cursor).transpose()?;
        let listing = Listing::ForksOf { source: self.0.conversation_id(), viewer: viewer.user_id };
        let rows = conversations::list(&mut ctx.app().db.conn().await?, listing, after_key, limit as i64 + 1).await?;
        Ok(page(rows, limit, after_key.is_some(), |row| list_cursor(row.list_key()), Conversation))
    }

    /// Who it is shared with (the owner is not listed).
    async fn access(&self, ctx: &Context<'_>) -> ApiResult<Vec<super::collaboration::AccessGrant>> {
        super::collaboration::grants(ctx, self.0.conversation_id()).await
    }

    async fn owner(&self, ctx: &Context<'_>) -> ApiResult<Option<super::collaboration::Person>> {
        super::collaboration::person(ctx, self.0.owner()).await
    }

    /// What the viewer may do here.
    async fn viewer_role(&self, ctx: &Context<'_>) -> ApiResult<super::collaboration::AccessRole> {
        // The row is at hand: only the role needs looking up.
        let (id, viewer) = (self.0.conversation_id(), ctx.viewer()?.user_id);
        let role = access::role_of(&mut ctx.app().db.conn().await?, id, self.0.owner(), viewer).await?;
        Ok(role.ok_or(AppError::NotFound("conversation"))?.into())
    }

    /// Messages, oldest first: for a fork, the inherited history first.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, Message>> {
        let limit = page_size(first, ctx.max_page_size())?;
        let after_seq = position_after(after.as_deref())?;
        let mut conn = ctx.app().db.conn().await?;
        let rows = messages::list(&mut conn, self.0.conversation_id(), after_seq, limit as i64 + 1).await?;
        Ok(page(rows, limit, after_seq > 0, |row| position_cursor(row.seq), Message))
    }
}

/// One message of a conversation.
pub struct Message(pub MessageRow);

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum MessageRole {
    User,
    Assistant,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum MessageStatus {
    Completed,
    /// A reply still arriving.
    Streaming,
    /// A reply that broke off; `content` holds what had arrived, `error` why.
    Failed,
    /// A reply stopped with `cancelStream`; `content` holds what had arrived.
    Cancelled,
}

#[Object]
impl Message {
    async fn id(&self) -> ID {
        ID(self.0.message_id().to_string())
    }

    async fn conversation_id(&self) -> ID {
        ID(self.0.conversation_id.0.to_string())
    }

    /// 1-based place in the conversation.
    async fn seq(&self) -> i64 {
        self.0.seq
    }

    async fn role(&self) -> MessageRole {
        match self.0.role.as_str() {
            "assistant" => MessageRole::Assistant,
            _ => MessageRole::User,
        }
    }

    async fn content(&self) -> &str {
        &self.0.content
    }

    /// The user who wrote it; null for the assistant.
    async fn author_id(&self) -> Option<ID> {
        self.0.author().map(|id| ID(id.to_string()))
    }

    async fn status(&self) -> MessageStatus {
        match self.0.status.as_str() {
            "streaming" => MessageStatus::Streaming,
            "failed" => MessageStatus::Failed,
            "cancelled" => MessageStatus::Cancelled,
            _ => MessageStatus::Completed,
        }
    }

    /// The model that wrote a reply.
    async fn model_id(&self) -> Option<&str> {
        self.0.model_id.as_deref()
    }

    /// Why the model stopped (for example `end_turn`, `stop`, `max_tokens`).
    async fn stop_reason(&self) -> Option<&str> {
        self.0.stop_reason.as_deref()
    }

    /// Why a reply failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }

    async fn input_tokens(&self) -> Option<i64> {
        self.0.input_tokens
    }

    async fn output_tokens(&self) -> Option<i64> {
        self.0.output_tokens
    }

    async fn time_to_first_token_ms(&self) -> Option<i64> {
        self.0.time_to_first_token_ms
    }

    async fn duration_ms(&self) -> Option<i64> {
        self.0.duration_ms
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at.0
    }

    /// The tool calls a reply asked for, in order.
    async fn tool_calls(&self, ctx: &Context<'_>) -> ApiResult<Vec<ToolCall>> {
        if self.0.role != "assistant" {
            return Ok(vec![]);
        }
        let mut conn = ctx.app().db.conn().await?;
        let calls = tool_calls::of_messages(&mut conn, &[self.0.message_id()]).await?;
        Ok(calls.into_iter().map(ToolCall).collect())
    }
}

/// One recorded change of a conversation: the audit trail.
#[derive(SimpleObject)]
pub struct HistoryEvent {
    /// Resume the subscription that delivered this event right after it.
    pub cursor: String,
    pub conversation_id: ID,
    /// Event type, such as `UserMessageAdded`.
    #[graphql(name = "type")]
    pub event_type: String,
    /// The conversation's version after this event (1 for its creation).
    pub version: i64,
    /// Who caused it; null for the operator (CLI) or the server itself.
    pub actor: Option<User>,
    pub occurred_at: DateTime<Utc>,
    pub data: Json<serde_json::Value>,
}

#[derive(InputObject)]
pub struct CreateConversationInput {
    /// Defaults to "New conversation".
    pub title: Option<String>,
    /// Defaults to the server's default model.
    pub model_id: Option<String>,
    pub system_prompt: Option<String>,
    /// Starts from this preset's system prompt (a key from `systemPromptPresets`);
    /// not together with `systemPrompt`.
    pub system_prompt_preset: Option<String>,
    /// Sampling temperature, 0 to 2; the model's default when absent.
    pub temperature: Option<f64>,
    /// Longest reply, in tokens; the model's default when absent.
    pub max_tokens: Option<i64>,
}

/// New settings for a conversation's next turns: a field left out stays as it is.
#[derive(InputObject)]
pub struct ConversationSettingsInput {
    /// `null`: the server's default model.
    pub model_id: MaybeUndefined<String>,
    pub system_prompt: MaybeUndefined<String>,
    /// Replaces the system prompt with this preset's; not together with `systemPrompt`.
    pub system_prompt_preset: Option<String>,
    pub temperature: MaybeUndefined<f64>,
    pub max_tokens: MaybeUndefined<i64>,
}

/// A setting as it is, unless the input sets it.
fn merged<T>(input: MaybeUndefined<T>, current: Option<T>) -> Option<T> {
    match input {
        MaybeUndefined::Undefined => current,
        MaybeUndefined::Null => None,
        MaybeUndefined::Value(value) => Some(value),
    }
}

/// A model the catalog offers and the viewer may use.
fn offered_model(ctx: &Context<'_>, id: &str) -> ApiResult<ModelId> {
    let id = ModelId::parse(id)?;
    let model = ctx
        .app()
        .catalog
        .get(id.as_str())
        .ok_or_else(|| AppError::bad_input("modelId", format!("no model `{}` is offered", id.as_str())))?;
    if !ctx.viewer()?.may_use(&model.id) {
        return Err(AppError::Forbidden("your account may not use this model").into());
    }
    Ok(id)
}

/// A system prompt given as text or as a preset's key, not both.
fn system_prompt(catalog: &Catalog, text: Option<String>, preset: Option<String>) -> AppResult<Option<SystemPrompt>> {
    let text = match (text, preset) {
        (Some(_), Some(_)) => {
            return Err(AppError::bad_input("systemPromptPreset", "cannot be given with systemPrompt"));
        }
        (Some(text), None) => Some(text),
        // The preset's text as it is now: editing the file later leaves this conversation be.
        (None, Some(key)) => Some(
            catalog
                .preset(&key)
                .ok_or_else(|| AppError::bad_input("systemPromptPreset", format!("no preset `{key}` is offered")))?
                .content
                .clone(),
        ),
        (None, None) => None,
    };
    Ok(text.as_deref().map(SystemPrompt::parse).transpose()?)
}

#[derive(InputObject)]
pub struct SendMessageInput {
    pub conversation_id: ID,
    pub content: String,
}

/// The conversation if `viewer` may read it; otherwise NOT_FOUND, as if it did not exist.
pub(super) async fn readable(conn: &mut DbConn, viewer: &Viewer, id: ConversationId) -> AppResult<ConversationRow> {
    Ok(chat::membership::of(conn, viewer, id).await?.conversation)
}

/// Runs a conversation command and returns the conversation as it is afterwards.
fn conversation_id(id: &ID) -> AppResult<ConversationId> {
    parse_id("id", id, ConversationId::parse)
}

fn list_cursor(key: ListKey) -> String {
    time_cursor(key.updated_at, key.id)
}

fn parse_list_cursor(cursor: &str) -> AppResult<ListKey> {
    let (updated_at, id) = parse_time_cursor(cursor)?;
    Ok(ListKey { updated_at, id })
}

#[derive(Default)]
pub struct ConversationQuery;

#[Object]
impl ConversationQuery {
    /// The viewer's conversations, most recent activity first.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "List archived conversations instead of active ones (default false).")] archived: Option<bool>,
    ) -> ApiResult<Connection<String, Conversation>> {
        let viewer = ctx.viewer()?;
        let limit = page_size(first, ctx.max_page_size())?;
        let after_key = after.as_deref().map(parse_list_cursor).transpose()?;
        let mut conn = ctx.app().db.conn().await?;
        let archived = archived.unwrap_or(false);
        let listing = Listing::Readable { viewer: viewer.user_id, archived };
        let rows = conversations::list(&mut conn, listing, after_key, limit as i64 + 1).await?;
        Ok(page(rows, limit, after_key.is_some(), |row| list_cursor(row.list_key()), Conversation))
    }

    async fn conversation(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Conversation> {
        let viewer = ctx.viewer()?;
        let id = conversation_id(&id)?;
        let mut conn = ctx.app().db.conn().await?;
        Ok(Conversation(readable(&mut conn, viewer, id).await?))
    }

    /// Every recorded change of a conversation, oldest first, with who made it.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn conversation_history(
        &self,
        ctx: &Context<'_>,
        conversation_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, HistoryEvent>> {
        let viewer = ctx.viewer()?;
        let id = parse_id("conversationId", &conversation_id, ConversationId::parse)?;
        let limit = page_size(first, ctx.max_page_size())?;
        let after_version = position_after(after.as_deref())?;
        let mut conn = ctx.app().db.conn().await?;
        readable(&mut conn, viewer, id).await?;
        let events = event_store::load_stream_page(&mut conn, id.uuid(), after_version, limit as i64 + 1).await?;
        let mut actor_ids: Vec<UserId> =
            events.iter().filter_map(|e| e.actor_id).map(|id| UserId::from_uuid(id.0)).collect();
        actor_ids.sort();
        actor_ids.dedup();
        let actors: HashMap<UserId, users::UserRow> =
            users::find_many(&mut conn, &actor_ids).await?.into_iter().map(|u| (u.user_id(), u)).collect();
        Ok(page(
            events,
            limit,
            after_version > 0,
            |event| position_cursor(event.stream_version),
            |event| HistoryEvent {
                cursor: position_cursor(event.stream_version),
                conversation_id: ID(event.stream_id.0.to_string()),
                version: event.stream_version,
                occurred_at: event.occurred_at(),
                actor: event.actor_id.and_then(|id| actors.get(&UserId::from_uuid(id.0))).cloned().map(User::from),
                event_type: event.event_type,
                data: Json(event.payload),
            },
        ))
    }
}

#[derive(Default)]
pub struct ConversationMutation;

#[Object]
impl ConversationMutation {
    async fn create_conversation(&self, ctx: &Context<'_>, input: CreateConversationInput) -> ApiResult<Conversation> {
        let viewer = ctx.viewer()?;
        let catalog = &ctx.app().catalog;
        let model_id = input.model_id.as_deref().map(|id| offered_model(ctx, id)).transpose()?;
        if model_id.is_none() && !viewer.may_use(&catalog.default_model().id) {
            return Err(AppError::Forbidden("your account may not use this model").into());
        }
        let system_prompt = system_prompt(catalog, input.system_prompt, input.system_prompt_preset)?;
        let command = Command::Create {
            owner: viewer.user_id,
            title: Title::parse(input.title.as_deref().unwrap_or(DEFAULT_TITLE))?,
            sampling: Sampling::parse(input.temperature, input.max_tokens)?,
            model_id,
            system_prompt,
            fork: None,
        };
        Ok(Conversation(chat::command(ctx.app(), viewer.actor(), ConversationId::new(), command).await?))
    }

    /// Changes the model, system prompt or sampling of the turns to come. A field left
    /// out stays as it is; `null` returns it to the default.
    async fn update_conversation_settings(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: ConversationSettingsInput,
    ) -> ApiResult<Conversation> {
        let viewer = ctx.viewer()?;
        let id = conversation_id(&id)?;
        let catalog = &ctx.app().catalog;
        let current = readable(&mut ctx.app().db.conn().await?, viewer, id).await?;
        let model_id = match input.model_id {
            MaybeUndefined::Undefined => current.model_id.as_deref().map(ModelId::parse).transpose()?,
            MaybeUndefined::Null => None,
            MaybeUndefined::Value(id) => Some(offered_model(ctx, &id)?),
        };
        let system_prompt = match (input.system_prompt, input.system_prompt_preset) {
            (MaybeUndefined::Undefined, None) => {
                current.system_prompt.as_deref().map(SystemPrompt::parse).transpose()?
            }
            (text, preset) => system_prompt(catalog, text.take(), preset)?,
        };
        let sampling = Sampling::parse(
            merged(input.temperature, current.temperature),
            merged(input.max_tokens, current.max_tokens),
        )?;
        let command = Command::ChangeSettings { model_id, system_prompt, sampling };
        Ok(Conversation(chat::act(ctx.app(), viewer, id, command).await?))
    }

    async fn rename_conversation(&self, ctx: &Context<'_>, id: ID, title: String) -> ApiResult<Conversation> {
        let viewer = ctx.viewer()?;
        let id = conversation_id(&id)?;
        let title = Title::parse(&title)?;
        Ok(Conversation(chat::act(ctx.app(), viewer, id, Command::Rename { title }).await?))
    }

    /// Makes a conversation read-only and moves it to the archived list.
    async fn archive_conversation(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Conversation> {
        let viewer = ctx.viewer()?;
        let id = conversation_id(&id)?;
        Ok(Conversation(chat::act(ctx.app(), viewer, id, Command::Archive).await?))
    }

    async fn unarchive_conversation(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Conversation> {
        let viewer = ctx.viewer()?;
        let id = conversation_id(&id)?;
        Ok(Conversation(chat::act(ctx.app(), viewer, id, Command::Unarchive).await?))
    }

    /// Records the viewer's message and starts the assistant's reply, which streams
    /// through `conversationEvents`.
    async fn send_message(&self, ctx: &Context<'_>, input: SendMessageInput) -> ApiResult<Message> {
        let viewer = ctx.viewer()?;
        let id = parse_id("conversationId", &input.conversation_id, ConversationId::parse)?;
        let content = MessageContent::parse(&input.content)?;
        Ok(Message(chat::send_message(ctx.app(), viewer, id, content).await?))
    }

    /// Stops the reply streaming in a conversation; the text so far is kept.
    async fn cancel_stream(&self, ctx: &Context<'_>, conversation_id: ID) -> ApiResult<Conversation> {
        let viewer = ctx.viewer()?;
        let id = parse_id("conversationId", &conversation_id, ConversationId::parse)?;
        Ok(Conversation(chat::cancel(ctx.app(), viewer, id).await?))
    }
}
