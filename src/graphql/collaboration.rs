//! Working together: forks, edits and regenerations as branches, sharing with users and
//! groups, and finding a person to share with by exact email.

use std::collections::HashMap;

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::conversation::{Conversation, Message};
use super::groups::Group;
use super::{ApiResult, ContextExt, parse_id};
use crate::chat::{self, branching};
use crate::domain::access::{Grantee, Role};
use crate::domain::conversation::Command;
use crate::domain::ids::{ConversationId, GroupId, MessageId, UserId};
use crate::domain::values::{Email, MessageContent, Title};
use crate::error::AppError;
use crate::storage::projections::access;
use crate::storage::projections::conversations::{self, ConversationRow};
use crate::storage::projections::{groups, messages, users};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum AccessRole {
    Viewer,
    Editor,
    Owner,
}

impl From<Role> for AccessRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Viewer => AccessRole::Viewer,
            Role::Editor => AccessRole::Editor,
            Role::Owner => AccessRole::Owner,
        }
    }
}

/// A role that can be granted.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum GrantRole {
    /// Reads, and may fork into a private copy.
    Viewer,
    /// Reads, sends, forks and decides tool calls.
    Editor,
}

/// Someone else with an account, as collaborators see them.
#[derive(SimpleObject, Clone)]
pub struct Person {
    pub id: ID,
    pub name: String,
    pub email: String,
}

impl From<users::UserRow> for Person {
    fn from(row: users::UserRow) -> Self {
        Person { id: ID(row.user_id().to_string()), name: row.name, email: row.email }
    }
}

/// A share of a conversation with a user or a group.
#[derive(SimpleObject)]
pub struct AccessGrant {
    pub user: Option<Person>,
    pub group: Option<Group>,
    pub role: AccessRole,
    pub granted_at: DateTime<Utc>,
}

pub(super) async fn person(ctx: &Context<'_>, id: UserId) -> ApiResult<Option<Person>> {
    let mut conn = ctx.app().db.conn().await?;
    Ok(users::find(&mut conn, id).await?.map(Person::from))
}

pub(super) async fn forked_from(ctx: &Context<'_>, row: &ConversationRow) -> ApiResult<Option<Conversation>> {
    let Some(source) = row.forked_from() else { return Ok(None) };
    match chat::membership::of(&mut ctx.app().db.conn().await?, ctx.viewer()?, source).await {
        Ok(member) => Ok(Some(Conversation(member.conversation))),
        Err(AppError::NotFound(_)) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

pub(super) async fn grants(ctx: &Context<'_>, id: ConversationId) -> ApiResult<Vec<AccessGrant>> {
    let mut conn = ctx.app().db.conn().await?;
    let rows = access::grants_of(&mut conn, id).await?;
    let grantees: Vec<UserId> = rows
        .iter()
        .filter_map(|row| match row.grantee() {
            Some(Grantee::User(user)) => Some(user),
            _ => None,
        })
        .collect();
    let mut people: HashMap<UserId, Person> = users::find_many(&mut conn, &grantees)
        .await?
        .into_iter()
        .map(|row| (row.user_id(), Person::from(row)))
        .collect();
    let mut grants = Vec::with_capacity(rows.len());
    for row in rows {
        let (Some(grantee), Some(role)) = (row.grantee(), row.role()) else { continue };
        let (user, group) = match grantee {
            Grantee::User(user) => (people.remove(&user), None),
            Grantee::Group(group) => (None, groups::find(&mut conn, group).await?.map(Group)),
        };
        if user.is_some() || group.is_some() {
            grants.push(AccessGrant { user, group, role: role.into(), granted_at: row.updated_at.0 });
        }
    }
    Ok(grants)
}

#[derive(InputObject)]
pub struct ForkConversationInput {
    pub conversation_id: ID,
    /// The last message the fork inherits.
    pub at_message_id: ID,
    /// Defaults to the source's title.
    pub title: Option<String>,
}

#[derive(InputObject)]
pub struct EditMessageInput {
    /// A user's message.
    pub message_id: ID,
    pub content: String,
    /// The conversation the message is seen in, when that is a fork inheriting it;
    /// defaults to the one it was written in.
    pub conversation_id: Option<ID>,
}

#[derive(InputObject)]
pub struct RegenerateResponseInput {
    /// An assistant's message.
    pub message_id: ID,
    /// As in `editMessage`.
    pub conversation_id: Option<ID>,
}

/// A new branch: the fork, and the message that starts it (the edited message, or the
/// reply being regenerated, which streams through `conversationEvents`).
#[derive(SimpleObject)]
pub struct Branch {
    pub conversation: Conversation,
    pub message: Message,
}

/// A user or a group, exactly one of them.
#[derive(InputObject)]
pub struct GrantAccessInput {
    pub conversation_id: ID,
    pub user_id: Option<ID>,
    pub group_id: Option<ID>,
    pub role: GrantRole,
}

#[derive(InputObject)]
pub struct RevokeAccessInput {
    pub conversation_id: ID,
    pub user_id: Option<ID>,
    pub group_id: Option<ID>,
}

fn grantee(user_id: Option<ID>, group_id: Option<ID>) -> Result<Grantee, AppError> {
    match (user_id, group_id) {
        (Some(user), None) => Ok(Grantee::User(parse_id("userId", &user, UserId::parse)?)),
        (None, Some(group)) => Ok(Grantee::Group(parse_id("groupId", &group, GroupId::parse)?)),
        _ => Err(AppError::bad_input("userId", "give exactly one of userId and groupId")),
    }
}

async fn branch(ctx: &Context<'_>, made: branching::Branch) -> ApiResult<Branch> {
    let mut conn = ctx.app().db.conn().await?;
    let conversation =
        conversations::find(&mut conn, made.conversation).await?.ok_or(AppError::NotFound("conversation"))?;
    let message = messages::find(&mut conn, made.message).await?.ok_or(AppError::NotFound("message"))?;
    Ok(Branch { conversation: Conversation(conversation), message: Message(message) })
}

fn optional_conversation(id: Option<ID>) -> Result<Option<ConversationId>, AppError> {
    id.map(|id| parse_id("conversationId", &id, ConversationId::parse)).transpose()
}

#[derive(Default)]
pub struct CollaborationQuery;

#[Object]
impl CollaborationQuery {
    /// The person with exactly this email address, to share with; null if there is none.
    /// People are found this way only, never listed.
    async fn find_user(&self, ctx: &Context<'_>, email: String) -> ApiResult<Option<Person>> {
        ctx.viewer()?;
        let email = Email::parse(&email)?;
        let mut conn = ctx.app().db.conn().await?;
        Ok(users::find_by_email(&mut conn, email.as_str()).await?.filter(|u| !u.disabled).map(Person::from))
    }
}

#[derive(Default)]
pub struct CollaborationMutation;

#[Object]
impl CollaborationMutation {
    /// A private copy of a conversation the viewer may read, owned by them, whose history
    /// is the source's up to `atMessageId`. Nothing is copied: the fork shows the
    /// source's messages, which never change once written.
    async fn fork_conversation(&self, ctx: &Context<'_>, input: ForkConversationInput) -> ApiResult<Conversation> {
        let viewer = ctx.viewer()?;
        let source = parse_id("conversationId", &input.conversation_id, ConversationId::parse)?;
        let at = parse_id("atMessageId", &input.at_message_id, MessageId::parse)?;
        let title = input.title.as_deref().map(Title::parse).transpose()?;
        Ok(Conversation(branching::fork(ctx.app(), viewer, source, at, title).await?))
    }

    /// Forks just before a user's message and sends the new text in the fork; the
    /// original stays as it was.
    async fn edit_message(&self, ctx: &Context<'_>, input: EditMessageInput) -> ApiResult<Branch> {
        let viewer = ctx.viewer()?;
        let message = parse_id("messageId", &input.message_id, MessageId::parse)?;
        let content = MessageContent::parse(&input.content)?;
        let conversation = optional_conversation(input.conversation_id)?;
        let made = branching::edit(ctx.app(), viewer, message, content, conversation).await?;
        branch(ctx, made).await
    }

    /// Forks just before an assistant's message and has the model answer again; the
    /// original stays as it was.
    async fn regenerate_response(&self, ctx: &Context<'_>, input: RegenerateResponseInput) -> ApiResult<Branch> {
        let viewer = ctx.viewer()?;
        let message = parse_id("messageId", &input.message_id, MessageId::parse)?;
        let conversation = optional_conversation(input.conversation_id)?;
        let made = branching::regenerate(ctx.app(), viewer, message, conversation).await?;
        branch(ctx, made).await
    }

    /// Shares a conversation with a user or a group, or changes their role. Owner only.
    async fn grant_access(&self, ctx: &Context<'_>, input: GrantAccessInput) -> ApiResult<Conversation> {
        let viewer = ctx.viewer()?;
        let id = parse_id("conversationId", &input.conversation_id, ConversationId::parse)?;
        let grantee = grantee(input.user_id, input.group_id)?;
        let role = match input.role {
            GrantRole::Viewer => Role::Viewer,
            GrantRole::Editor => Role::Editor,
        };
        let member = chat::membership::of(&mut ctx.app().db.conn().await?, viewer, id).await?;
        member.require(Role::Owner)?;
        match grantee {
            Grantee::User(user) => drop(super::groups::existing_user(ctx.app(), user).await?),
            // Only a group the owner can see: one they created or belong to.
            Grantee::Group(group) => drop(super::groups::visible(ctx.app(), viewer, group).await?),
        }
        Ok(Conversation(chat::command(ctx.app(), member.actor(), id, Command::Grant { grantee, role }).await?))
    }

    /// Takes a user's or a group's access away. Owner only.
    async fn revoke_access(&self, ctx: &Context<'_>, input: RevokeAccessInput) -> ApiResult<Conversation> {
        let viewer = ctx.viewer()?;
        let id = parse_id("conversationId", &input.conversation_id, ConversationId::parse)?;
        let grantee = grantee(input.user_id, input.group_id)?;
        Ok(Conversation(chat::act(ctx.app(), viewer, id, Command::Revoke { grantee }).await?))
    }

    /// Gives up the viewer's access to a conversation shared with them, also where it
    /// came through a group. Returns the conversation's id.
    async fn leave_conversation(&self, ctx: &Context<'_>, conversation_id: ID) -> ApiResult<ID> {
        let viewer = ctx.viewer()?;
        let id = parse_id("conversationId", &conversation_id, ConversationId::parse)?;
        chat::act(ctx.app(), viewer, id, Command::Leave).await?;
        Ok(conversation_id)
    }
}
