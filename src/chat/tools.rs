//! The tools a turn offers the model, what the user's policies make of the calls it
//! asks for, and running the approved calls on their MCP servers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};

use super::{Next, Reply, Stop, model_of, record, register, retrying, unregister};
use crate::app::App;
use crate::domain::Actor;
use crate::domain::conversation::{Command, Decision, NextRound, ToolOutcome, ToolRequest};
use crate::domain::ids::{ConversationId, McpServerId, MessageId, ToolCallId, UserId};
use crate::domain::mcp_server::ToolPolicy;
use crate::error::AppResult;
use crate::llm::{ToolSpec, ToolUse};
use crate::storage::projections::tool_calls::{self, ToolCallRow};
use crate::storage::projections::{conversations, tool_policies};

/// The longest tool result kept and shown to the model, in characters.
const MAX_RESULT_CHARS: usize = 100_000;

/// The id under which a turn's approved calls hold their lease while they run: saved
/// like a reply's checkpoint, so that if the server running them dies, another one
/// sees the lease go stale and moves the turn on.
pub fn lease_id(conversation: ConversationId) -> MessageId {
    MessageId::from_uuid(conversation.uuid())
}

/// The name a tool goes by with the model: its server's name and its own.
pub fn model_name(server: &str, tool: &str) -> String {
    format!("{server}__{tool}")
}

/// Providers accept tool names of up to 64 letters, digits, `_` and `-`.
fn acceptable(name: &str) -> bool {
    name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[derive(Debug, Clone)]
struct OfferedTool {
    server_id: McpServerId,
    server_name: String,
    tool: String,
    policy: ToolPolicy,
}

/// The tools of a turn: what the model is offered, and every tool it might name.
#[derive(Debug, Default)]
pub struct Offered {
    pub specs: Vec<ToolSpec>,
    by_name: HashMap<String, OfferedTool>,
}

impl Offered {
    /// The tools of every server `owner` may use, with `owner`'s policies; denied tools
    /// are not offered. A server that cannot be reached offers nothing this turn.
    pub async fn of(app: &App, owner: UserId) -> AppResult<Offered> {
        let servers = {
            let mut conn = app.db.conn().await?;
            app.mcp.usable(&mut conn, &app.secrets, owner).await?
        };
        let listings = futures_util::future::join_all(servers.iter().map(|s| app.mcp.listing(s, false))).await;
        let mut offered = Offered::default();
        let mut conn = app.db.conn().await?;
        for (server, listing) in servers.iter().zip(listings) {
            let policies = tool_policies::of_server(&mut conn, owner, server.id).await?;
            for tool in &listing.tools {
                let name = model_name(&server.name, &tool.name);
                if !acceptable(&name) || offered.by_name.contains_key(&name) {
                    tracing::debug!(%name, "a tool's name is not one models accept; not offered");
                    continue;
                }
                let policy = policies.of(&tool.name);
                if policy != ToolPolicy::Deny {
                    offered.specs.push(ToolSpec {
                        name: name.clone(),
                        description: tool.description.clone(),
                        input_schema: tool.input_schema.clone(),
                    });
                }
                let tool = OfferedTool {
                    server_id: server.id,
                    server_name: server.name.clone(),
                    tool: tool.name.clone(),
                    policy,
                };
                offered.by_name.insert(name, tool);
            }
        }
        Ok(offered)
    }

    /// The calls the model asked for, each with what the policy decided (`None`: ask).
    pub fn requests(&self, uses: Vec<ToolUse>) -> Vec<ToolRequest> {
        uses.into_iter()
            .map(|call| {
                let known = self.by_name.get(&call.name);
                let decision = match known.map(|t| t.policy) {
                    None => Some(Decision::Reject { reason: format!("there is no tool named `{}`", call.name) }),
                    Some(ToolPolicy::Deny) => {
                        Some(Decision::Reject { reason: "the user's policy denies this tool".into() })
                    }
                    Some(ToolPolicy::Allow) => Some(Decision::Approve { remembered: None }),
                    Some(ToolPolicy::Ask) => None,
                };
                ToolRequest {
                    call_id: ToolCallId::new(),
                    provider_call_id: call.id,
                    server_id: known.map(|t| t.server_id),
                    server_name: known.map(|t| t.server_name.clone()),
                    tool_name: known.map_or(call.name, |t| t.tool.clone()),
                    arguments: call.arguments,
                    decision,
                }
            })
            .collect()
    }
}

/// Calls a tool, turning every failure into an error result the model reads.
async fn call(app: &App, owner: UserId, row: &ToolCallRow) -> ToolOutcome {
    let started = Instant::now();
    let output = async {
        let server_id = row.server().ok_or_else(|| "the tool's server is unknown".to_owned())?;
        let server = {
            let mut conn = app.db.conn().await.map_err(|e| e.to_string())?;
            app.mcp
                .find(&mut conn, &app.secrets, owner, server_id)
                .await
                .map_err(|_| "the tool's MCP server is no longer available".to_owned())?
        };
        let serde_json::Value::Object(arguments) = row.arguments() else {
            return Err("the arguments must be a JSON object".to_owned());
        };
        app.mcp.call(&server, &row.tool_name, arguments).await.map_err(|e| e.to_string())
    }
    .await;
    let (mut result, is_error) = match output {
        Ok(output) => (output.text, output.is_error),
        Err(error) => (error, true),
    };
    if let Some((cut, _)) = result.char_indices().nth(MAX_RESULT_CHARS) {
        result.truncate(cut);
        result.push_str("\n[the rest of the result was cut]");
    }
    tracing::info!(tool = %row.tool_name, is_error, elapsed_ms = started.elapsed().as_millis() as u64, "tool call ended");
    ToolOutcome { result, is_error, duration_ms: started.elapsed().as_millis() as i64 }
}

/// Runs the turn's approved calls side by side, recording each result as it comes; the
/// last one starts the next reply. A cancel rejects what still runs.
pub(super) async fn run(app: &Arc<App>, reply: &Reply) -> Option<Next> {
    let id = reply.conversation;
    let prepared = async {
        let mut conn = app.db.conn().await?;
        let row = conversations::find(&mut conn, id).await?.ok_or(crate::error::AppError::NotFound("conversation"))?;
        let approved = tool_calls::with_status(&mut conn, id, "approved").await?;
        AppResult::Ok((row, approved))
    }
    .await;
    let (row, approved) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            tracing::error!(%error, "could not load the tool calls to run");
            return None;
        }
    };
    let model_id = model_of(app, &row).ok().map(|m| m.id.clone());
    let owner = row.owner();
    let mut running: FuturesUnordered<_> = approved
        .iter()
        .map(|call_row| call(app, owner, call_row).map(move |outcome| (call_row.call_id(), outcome)))
        .collect();
    let mut stopped = reply.stop.subscribe();
    let mut next = None;
    loop {
        tokio::select! {
            done = running.next() => {
                let Some((call_id, output)) = done else { return next };
                let recorded = retrying(|| {
                    let next = model_id.clone().map(|model_id| NextRound { reply_id: MessageId::new(), model_id });
                    let complete = Command::CompleteToolCall { call_id, output: output.clone(), next };
                    record(app, Actor::System, id, complete, None)
                })
                .await;
                match recorded {
                    Ok((_, step)) => next = step,
                    Err(error) => {
                        // Cancelled meanwhile, from another server: nothing more to do.
                        tracing::warn!(%error, "could not record a tool call's result");
                        return None;
                    }
                }
            }
            stop = async { stopped.wait_for(Option::is_some).await.ok().and_then(|stop| *stop) } => {
                let Some(Stop::Cancel(actor)) = stop else {
                    // Shutting down: the lease goes stale and the next server moves the turn on.
                    return None;
                };
                let cancel = || Command::CancelToolCalls { reason: "cancelled while it ran".into() };
                if let Err(error) = retrying(|| record(app, actor, id, cancel(), None)).await {
                    tracing::warn!(%error, "could not record the cancellation of tool calls");
                }
                return None;
            }
        }
    }
}

/// Moves on a turn whose server died while its tool calls ran: the calls are recorded
/// as interrupted (they may or may not have taken effect) and the model is told so.
pub(super) async fn recover(app: &Arc<App>, id: ConversationId) -> AppResult<bool> {
    let (row, approved) = {
        let mut conn = app.db.conn().await?;
        let Some(row) = conversations::find(&mut conn, id).await? else { return Ok(false) };
        (row, tool_calls::with_status(&mut conn, id, "approved").await?)
    };
    if approved.is_empty() {
        return Ok(false);
    }
    let model_id = model_of(app, &row).ok().map(|m| m.id.clone());
    let reply = register(app, id, row.status(), lease_id(id)).await?;
    let mut next = None;
    for call in approved {
        let output = ToolOutcome {
            result: "interrupted: the server stopped while the tool ran; it may or may not have taken effect".into(),
            is_error: true,
            duration_ms: 0,
        };
        let recorded = retrying(|| {
            let next = model_id.clone().map(|model_id| NextRound { reply_id: MessageId::new(), model_id });
            record(
                app,
                Actor::System,
                id,
                Command::CompleteToolCall { call_id: call.call_id(), output: output.clone(), next },
                None,
            )
        })
        .await;
        match recorded {
            Ok((_, step)) => next = step,
            Err(error) => {
                unregister(app, &reply);
                return Err(error);
            }
        }
    }
    match next {
        Some(next) => {
            tokio::spawn(super::reply::run(app.clone(), reply, next));
        }
        None => unregister(app, &reply),
    }
    Ok(true)
}
