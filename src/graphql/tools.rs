//! MCP servers, the user's tool policies, and decisions on the tool calls models ask for.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, InputObject, Json, MaybeUndefined, Object};
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use secrecy::SecretString;
use tokio::sync::OnceCell;

use super::{ApiResult, ContextExt, parse_id};
use crate::app::App;
use crate::auth::Viewer;
use crate::chat;
use crate::domain::conversation::Decision;
use crate::domain::ids::{McpServerId, SecretId, ToolCallId};
use crate::domain::mcp_server::{self, ServerName, ServerSettings, ToolPolicy};
use crate::domain::user;
use crate::domain::{Actor, ids::UserId};
use crate::error::{AppError, AppResult};
use crate::mcp::address;
use crate::mcp::registry::{self, Listing, Server};
use crate::storage::event_store::execute;
use crate::storage::projections::mcp_servers;
use crate::storage::projections::tool_calls::ToolCallRow;
use crate::storage::projections::tool_policies::{self, Policies};
use crate::storage::secrets::{self, SecretRow};
use crate::storage::sql_types::{DbTime, DbUuid};

/// Headers a server may be given.
const MAX_HEADERS: usize = 20;
const MAX_URL_CHARS: usize = 2_000;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "ToolPolicy")]
pub enum PolicyValue {
    /// A person approves or rejects each call (the default).
    Ask,
    /// Calls run without asking.
    Allow,
    /// Calls are refused; the model is told so.
    Deny,
}

impl From<ToolPolicy> for PolicyValue {
    fn from(policy: ToolPolicy) -> Self {
        match policy {
            ToolPolicy::Ask => PolicyValue::Ask,
            ToolPolicy::Allow => PolicyValue::Allow,
            ToolPolicy::Deny => PolicyValue::Deny,
        }
    }
}

impl From<PolicyValue> for ToolPolicy {
    fn from(policy: PolicyValue) -> Self {
        match policy {
            PolicyValue::Ask => ToolPolicy::Ask,
            PolicyValue::Allow => ToolPolicy::Allow,
            PolicyValue::Deny => ToolPolicy::Deny,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum McpServerStatus {
    /// Not contacted yet by this server.
    Unchecked,
    /// Its tools are listed.
    Ready,
    /// The last attempt to list its tools failed; see `error`.
    Error,
}

/// An MCP server the viewer may use: their own, or one shared with everyone.
pub struct McpServer {
    server: Server,
    policies: Policies,
    listing: OnceCell<Arc<Listing>>,
}

impl McpServer {
    async fn load(app: &App, viewer: UserId, server: Server) -> AppResult<McpServer> {
        let mut conn = app.db.conn().await?;
        let policies = tool_policies::of_server(&mut conn, viewer, server.id).await?;
        let listing = OnceCell::new_with(app.mcp.cached(&server));
        Ok(McpServer { server, policies, listing })
    }

    /// Its tools, listed (and cached) if nobody has yet.
    async fn listing(&self, ctx: &Context<'_>) -> Arc<Listing> {
        self.listing.get_or_init(|| ctx.app().mcp.listing(&self.server, false)).await.clone()
    }
}

/// A tool of an MCP server.
pub struct McpTool {
    server_name: String,
    name: String,
    description: Option<String>,
    input_schema: serde_json::Value,
    policy: ToolPolicy,
}

#[Object]
impl McpTool {
    async fn name(&self) -> &str {
        &self.name
    }

    /// The name the model calls it by: `<server>__<tool>`.
    async fn model_name(&self) -> String {
        chat::tools::model_name(&self.server_name, &self.name)
    }

    async fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// JSON Schema of its arguments.
    async fn input_schema(&self) -> Json<&serde_json::Value> {
        Json(&self.input_schema)
    }

    /// What happens when the model calls it, for the viewer.
    async fn policy(&self) -> PolicyValue {
        self.policy.into()
    }
}

#[Object]
impl McpServer {
    async fn id(&self) -> ID {
        ID(self.server.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.server.name
    }

    /// Null for a server that runs as a command (configured by the operator).
    async fn url(&self) -> Option<&str> {
        self.server.url()
    }

    /// Shared with every user (by an administrator or the server's configuration).
    async fn shared(&self) -> bool {
        self.server.owner.is_none()
    }

    /// Comes from the server's configuration file, not the API.
    async fn configured(&self) -> bool {
        self.server.configured
    }

    /// The headers sent with every request; their values are never shown.
    async fn header_names(&self) -> &[String] {
        &self.server.header_names
    }

    async fn status(&self) -> McpServerStatus {
        match self.listing.get() {
            None => McpServerStatus::Unchecked,
            Some(listing) if listing.error.is_some() => McpServerStatus::Error,
            Some(_) => McpServerStatus::Ready,
        }
    }

    /// Why its tools could not be listed.
    async fn error(&self) -> Option<String> {
        self.listing.get().and_then(|l| l.error.clone())
    }

    /// When its tools were last listed.
    async fn tools_checked_at(&self) -> Option<DateTime<Utc>> {
        self.listing.get().map(|l| l.checked_at)
    }

    /// Its tools; listed now if they have not been (`status` then says how it went).
    async fn tools(&self, ctx: &Context<'_>) -> Vec<McpTool> {
        self.listing(ctx)
            .await
            .tools
            .iter()
            .map(|tool| McpTool {
                server_name: self.server.name.clone(),
                name: tool.name.clone(),
                description: tool.description.clone(),
                input_schema: tool.input_schema.clone(),
                policy: self.policies.of(&tool.name),
            })
            .collect()
    }

    /// The viewer's policy for its tools that have none of their own.
    async fn policy(&self) -> PolicyValue {
        self.policies.server.unwrap_or_default().into()
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum ToolCallStatus {
    /// Waiting for `approveToolCall` or `rejectToolCall`.
    Waiting,
    /// Approved; running, or about to.
    Approved,
    Rejected,
    /// Ran; `result` holds what it returned (`isError` if it failed).
    Completed,
}

/// A tool call a model asked for.
pub struct ToolCall(pub ToolCallRow);

#[Object]
impl ToolCall {
    async fn id(&self) -> ID {
        ID(self.0.call_id().to_string())
    }

    async fn conversation_id(&self) -> ID {
        ID(self.0.conversation().to_string())
    }

    /// The assistant message that asked for it.
    async fn message_id(&self) -> ID {
        ID(self.0.message().to_string())
    }

    /// Null when the model named a tool no server offers.
    async fn server_id(&self) -> Option<ID> {
        self.0.server().map(|id| ID(id.to_string()))
    }

    async fn server_name(&self) -> Option<&str> {
        self.0.server_name.as_deref()
    }

    async fn tool_name(&self) -> &str {
        &self.0.tool_name
    }

    async fn arguments(&self) -> Json<serde_json::Value> {
        Json(self.0.arguments())
    }

    async fn status(&self) -> ToolCallStatus {
        match self.0.status.as_str() {
            "approved" => ToolCallStatus::Approved,
            "rejected" => ToolCallStatus::Rejected,
            "completed" => ToolCallStatus::Completed,
            _ => ToolCallStatus::Waiting,
        }
    }

    /// Decided by the user's policy rather than by a person just now.
    async fn decided_by_policy(&self) -> bool {
        self.0.by_policy
    }

    /// Why it was rejected.
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }

    async fn result(&self) -> Option<&str> {
        self.0.result.as_deref()
    }

    async fn is_error(&self) -> bool {
        self.0.is_error
    }

    async fn duration_ms(&self) -> Option<i64> {
        self.0.duration_ms
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at.0
    }
}

#[derive(InputObject)]
pub struct HeaderInput {
    pub name: String,
    pub value: String,
}

#[derive(InputObject)]
pub struct RegisterMcpServerInput {
    /// Letters, digits, `-` and `_`; prefixes its tools' names (`<name>__<tool>`).
    pub name: String,
    /// Streamable HTTP endpoint, such as `https://tools.example.com/mcp`.
    pub url: String,
    /// Sent with every request; stored encrypted.
    pub headers: Option<Vec<HeaderInput>>,
    /// Sent as `Authorization: Bearer <apiKey>`; stored encrypted.
    pub api_key: Option<String>,
    /// Shares the server with every user; administrators only.
    pub shared: Option<bool>,
}

/// A field left out stays as it is.
#[derive(InputObject)]
pub struct UpdateMcpServerInput {
    pub name: Option<String>,
    pub url: Option<String>,
    /// Replaces every header (and the API key).
    pub headers: Option<Vec<HeaderInput>>,
    /// Replaces the API key; `null` removes it.
    pub api_key: MaybeUndefined<String>,
}

#[derive(InputObject)]
pub struct ToolPolicyInput {
    pub server_id: ID,
    /// The tool; absent for every tool of the server without a policy of its own.
    pub tool_name: Option<String>,
    pub policy: PolicyValue,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum RememberApproval {
    /// Approve this call only.
    Once,
    /// Also allow this tool from now on.
    Tool,
    /// Also allow every tool of this server from now on.
    Server,
}

/// Headers as given, checked, with the API key as `Authorization`.
fn headers(given: Vec<HeaderInput>, api_key: Option<String>) -> AppResult<Vec<(String, SecretString)>> {
    let mut headers = vec![];
    for header in given {
        let name = header.name.trim().to_ascii_lowercase();
        if axum::http::HeaderName::try_from(name.as_str()).is_err() || name.is_empty() {
            return Err(AppError::bad_input("headers", format!("`{}` is not a header name", header.name)));
        }
        if axum::http::HeaderValue::try_from(header.value.as_str()).is_err() {
            return Err(AppError::bad_input("headers", format!("the value of `{name}` is not a header value")));
        }
        if headers.iter().any(|(n, _)| *n == name) {
            return Err(AppError::bad_input("headers", format!("`{name}` is given twice")));
        }
        headers.push((name, SecretString::from(header.value)));
    }
    if let Some(key) = api_key {
        if headers.iter().any(|(n, _)| n == "authorization") {
            return Err(AppError::bad_input("apiKey", "give either apiKey or an Authorization header"));
        }
        let value = format!("Bearer {}", key.trim());
        if key.trim().is_empty() || axum::http::HeaderValue::try_from(value.as_str()).is_err() {
            return Err(AppError::bad_input("apiKey", "is not a usable key"));
        }
        headers.push(("authorization".to_owned(), SecretString::from(value)));
    }
    if headers.len() > MAX_HEADERS {
        return Err(AppError::bad_input("headers", format!("at most {MAX_HEADERS} are allowed")));
    }
    Ok(headers)
}

async fn checked_url(app: &App, url: &str) -> AppResult<String> {
    let url = url.trim();
    if url.chars().count() > MAX_URL_CHARS {
        return Err(AppError::bad_input("url", format!("must be at most {MAX_URL_CHARS} characters")));
    }
    address::check(url, app.mcp.allows_private_networks())
        .await
        .map_err(|e| AppError::bad_input("url", e.to_string()))?;
    Ok(url.to_owned())
}

/// Refuses a name another server the owner may use already has.
async fn unique_name(app: &App, viewer: &Viewer, name: &ServerName, except: Option<McpServerId>) -> AppResult<()> {
    let mut conn = app.db.conn().await?;
    let registered = mcp_servers::usable(&mut conn, viewer.user_id).await?;
    let taken = registered.iter().map(|row| (row.server_id(), row.name.as_str()));
    let mut taken = taken.chain(app.mcp.configured().iter().map(|s| (s.id, s.name.as_str())));
    if taken.any(|(id, taken)| taken == name.as_str() && Some(id) != except) {
        return Err(AppError::Conflict {
            reason: "ALREADY_EXISTS",
            message: format!("you already have an MCP server named `{}`", name.as_str()),
        });
    }
    Ok(())
}

fn server_id(id: &ID) -> AppResult<McpServerId> {
    parse_id("id", id, McpServerId::parse)
}

/// Seals headers into a new secret row, if there are any.
fn sealed(app: &App, headers: &[(String, SecretString)]) -> Option<SecretRow> {
    if headers.is_empty() {
        return None;
    }
    let id = SecretId::new();
    Some(SecretRow {
        id: DbUuid(id.uuid()),
        purpose: registry::HEADERS_PURPOSE.to_owned(),
        sealed: registry::seal_headers(&app.secrets, id, headers),
        updated_at: DbTime(crate::domain::now()),
    })
}

/// A registered server the viewer manages, as stored.
async fn managed(app: &App, viewer: &Viewer, id: McpServerId) -> AppResult<mcp_servers::McpServerRow> {
    let mut conn = app.db.conn().await?;
    match mcp_servers::find_usable(&mut conn, id, viewer.user_id).await? {
        Some(row) if mcp_server::manages(viewer.actor(), row.owner()) => Ok(row),
        Some(_) => Err(AppError::Forbidden("only an administrator may manage a shared MCP server")),
        None if app.mcp.configured().iter().any(|s| s.id == id) => {
            Err(AppError::Forbidden("servers from the configuration file are managed there"))
        }
        None => Err(AppError::NotFound("MCP server")),
    }
}

async fn view(app: &App, viewer: &Viewer, id: McpServerId, refresh: bool) -> AppResult<McpServer> {
    let server = {
        let mut conn = app.db.conn().await?;
        app.mcp.find(&mut conn, &app.secrets, viewer.user_id, id).await?
    };
    if refresh {
        app.mcp.listing(&server, true).await;
    }
    McpServer::load(app, viewer.user_id, server).await
}

#[derive(Default)]
pub struct ToolsQuery;

#[Object]
impl ToolsQuery {
    /// The MCP servers the viewer may use: shared ones and their own.
    async fn mcp_servers(&self, ctx: &Context<'_>) -> ApiResult<Vec<McpServer>> {
        let viewer = ctx.viewer()?;
        let app = ctx.app();
        let servers = {
            let mut conn = app.db.conn().await?;
            app.mcp.usable(&mut conn, &app.secrets, viewer.user_id).await?
        };
        let mut views = vec![];
        for server in servers {
            views.push(McpServer::load(app, viewer.user_id, server).await?);
        }
        Ok(views)
    }

    async fn mcp_server(&self, ctx: &Context<'_>, id: ID) -> ApiResult<McpServer> {
        let viewer = ctx.viewer()?;
        Ok(view(ctx.app(), viewer, server_id(&id)?, false).await?)
    }
}

#[derive(Default)]
pub struct ToolsMutation;

#[Object]
impl ToolsMutation {
    /// Registers an MCP server (streamable HTTP) and lists its tools.
    async fn register_mcp_server(&self, ctx: &Context<'_>, input: RegisterMcpServerInput) -> ApiResult<McpServer> {
        let viewer = ctx.viewer()?;
        let app = ctx.app();
        let name = ServerName::parse(&input.name)?;
        let shared = input.shared.unwrap_or(false);
        if shared && viewer.role != user::Role::Admin {
            return Err(AppError::Forbidden("only an administrator may share an MCP server").into());
        }
        let headers = headers(input.headers.unwrap_or_default(), input.api_key)?;
        let url = checked_url(app, &input.url).await?;
        unique_name(app, viewer, &name, None).await?;
        let secret = sealed(app, &headers);
        let settings = ServerSettings {
            name: name.as_str().to_owned(),
            url,
            header_names: headers.iter().map(|(n, _)| n.clone()).collect(),
            secret_id: secret.as_ref().map(|s| SecretId::from_uuid(s.id.0)),
        };
        let id = McpServerId::new();
        let owner = (!shared).then_some(viewer.user_id);
        let actor = viewer.actor();
        app.db
            .write(|conn| {
                async move {
                    let command = mcp_server::Command::Register { owner, settings };
                    execute::<mcp_server::McpServer>(conn, id.uuid(), actor, command).await?;
                    if let Some(secret) = &secret {
                        secrets::put(conn, secret).await?;
                    }
                    Ok::<_, AppError>(())
                }
                .boxed()
            })
            .await?;
        Ok(view(app, viewer, id, true).await?)
    }

    /// Changes a server's name, address or headers; its tools are listed again.
    async fn update_mcp_server(&self, ctx: &Context<'_>, id: ID, input: UpdateMcpServerInput) -> ApiResult<McpServer> {
        let viewer = ctx.viewer()?;
        let app = ctx.app();
        let id = server_id(&id)?;
        let row = managed(app, viewer, id).await?;
        let name = match &input.name {
            Some(name) => ServerName::parse(name)?,
            None => ServerName::parse(&row.name)?,
        };
        unique_name(app, viewer, &name, Some(id)).await?;
        let url = match &input.url {
            Some(url) => checked_url(app, url).await?,
            None => row.url.clone(),
        };
        let replace_headers = input.headers.is_some() || !input.api_key.is_undefined();
        let (secret, header_names, old_secret) = if replace_headers {
            let given = match input.headers {
                Some(given) => given,
                None => {
                    let mut kept = {
                        let mut conn = app.db.conn().await?;
                        registry::open_headers(&mut conn, &app.secrets, row.secret()).await?
                    };
                    kept.retain(|(n, _)| n != "authorization");
                    kept.into_iter()
                        .map(|(name, value)| HeaderInput {
                            name,
                            value: secrecy::ExposeSecret::expose_secret(&value).to_owned(),
                        })
                        .collect()
                }
            };
            let api_key = match input.api_key {
                MaybeUndefined::Value(key) => Some(key),
                _ => None,
            };
            let headers = headers(given, api_key)?;
            let names = headers.iter().map(|(n, _)| n.clone()).collect();
            (sealed(app, &headers), names, row.secret())
        } else {
            (None, row.header_names(), None)
        };
        let secret_id =
            if replace_headers { secret.as_ref().map(|s| SecretId::from_uuid(s.id.0)) } else { row.secret() };
        let settings = ServerSettings { name: name.as_str().to_owned(), url, header_names, secret_id };
        let actor = viewer.actor();
        app.db
            .write(|conn| {
                async move {
                    // The event first: its append must open the transaction (see `event_store`).
                    execute::<mcp_server::McpServer>(conn, id.uuid(), actor, mcp_server::Command::Update { settings })
                        .await?;
                    if let Some(secret) = &secret {
                        secrets::put(conn, secret).await?;
                    }
                    if let Some(old) = old_secret {
                        secrets::delete(conn, old).await?;
                    }
                    Ok::<_, AppError>(())
                }
                .boxed()
            })
            .await?;
        app.mcp.forget(id);
        Ok(view(app, viewer, id, true).await?)
    }

    /// Removes a server; its stored headers are destroyed. Returns its id.
    async fn remove_mcp_server(&self, ctx: &Context<'_>, id: ID) -> ApiResult<ID> {
        let viewer = ctx.viewer()?;
        let app = ctx.app();
        let server = server_id(&id)?;
        let row = managed(app, viewer, server).await?;
        let actor = viewer.actor();
        app.db
            .write(|conn| {
                async move {
                    execute::<mcp_server::McpServer>(conn, server.uuid(), actor, mcp_server::Command::Remove).await?;
                    if let Some(secret) = row.secret() {
                        secrets::delete(conn, secret).await?;
                    }
                    Ok::<_, AppError>(())
                }
                .boxed()
            })
            .await?;
        app.mcp.forget(server);
        Ok(id)
    }

    /// Lists a server's tools again.
    async fn refresh_mcp_server(&self, ctx: &Context<'_>, id: ID) -> ApiResult<McpServer> {
        let viewer = ctx.viewer()?;
        Ok(view(ctx.app(), viewer, server_id(&id)?, true).await?)
    }

    /// Sets the viewer's policy for a server's tools, or for one of them.
    async fn set_tool_policy(&self, ctx: &Context<'_>, input: ToolPolicyInput) -> ApiResult<McpServer> {
        let viewer = ctx.viewer()?;
        let app = ctx.app();
        let id = parse_id("serverId", &input.server_id, McpServerId::parse)?;
        let server = view(app, viewer, id, false).await?;
        let tool = match input.tool_name.as_deref().map(str::trim) {
            Some("") => return Err(AppError::bad_input("toolName", "must not be empty").into()),
            Some(tool) if tool.chars().count() > 200 => {
                return Err(AppError::bad_input("toolName", "must be at most 200 characters").into());
            }
            other => other.map(str::to_owned),
        };
        let command = user::Command::SetToolPolicy { server_id: server.server.id, tool, policy: input.policy.into() };
        let (me, actor) = (viewer.user_id, Actor::User(viewer.user_id));
        app.db
            .write(|conn| {
                async move {
                    execute::<user::User>(conn, me.uuid(), actor, command).await?;
                    Ok::<_, AppError>(())
                }
                .boxed()
            })
            .await?;
        Ok(view(app, viewer, id, false).await?)
    }

    /// Approves a tool call waiting for a decision; with `remember`, also allows the
    /// tool (or the whole server) from now on.
    async fn approve_tool_call(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default_with = "RememberApproval::Once")] remember: RememberApproval,
    ) -> ApiResult<ToolCall> {
        let viewer = ctx.viewer()?;
        let call = parse_id("id", &id, ToolCallId::parse)?;
        let remembered = match remember {
            RememberApproval::Once => None,
            RememberApproval::Tool => Some("tool".to_owned()),
            RememberApproval::Server => Some("server".to_owned()),
        };
        Ok(ToolCall(chat::decide_tool_call(ctx.app(), viewer, call, Decision::Approve { remembered }).await?))
    }

    /// Rejects a tool call waiting for a decision; the model is told `reason`.
    async fn reject_tool_call(&self, ctx: &Context<'_>, id: ID, reason: Option<String>) -> ApiResult<ToolCall> {
        let viewer = ctx.viewer()?;
        let call = parse_id("id", &id, ToolCallId::parse)?;
        let reason = reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
        if reason.as_ref().is_some_and(|r| r.chars().count() > 2_000) {
            return Err(AppError::bad_input("reason", "must be at most 2000 characters").into());
        }
        let reason = reason.unwrap_or_else(|| "the user rejected the call".to_owned());
        Ok(ToolCall(chat::decide_tool_call(ctx.app(), viewer, call, Decision::Reject { reason }).await?))
    }
}
