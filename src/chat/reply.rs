//! A turn's task: stream a reply (ask the model, relay its text, record how it ended
//! and the tool calls it asked for), run approved calls, and go on while there is more.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::tools::{self, Offered};
use super::{Next, Reply, Stop, finish};
use crate::app::App;
use crate::domain::Actor;
use crate::domain::conversation::{Completion, NextRound, ReplyOutcome};
use crate::domain::ids::MessageId;
use crate::error::{AppError, AppResult};
use crate::llm::{ChatMessage, ChatRequest, LlmError, Model, Speaker, StreamEvent, TokenStream, ToolResult, ToolUse};
use crate::storage::projections::conversations;
use crate::storage::projections::messages::{self, MessageRow};
use crate::storage::projections::tool_calls::{self, ToolCallRow};

/// Attempts at opening a stream when the endpoint fails before any text.
const ATTEMPTS: u32 = 3;

/// Forgets a turn on this server when its task ends, however it ends (a panic too), so
/// that it is no longer checkpointed and whoever waits for it stops waiting.
struct Forget<'a>(&'a App, &'a Arc<Reply>);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.replies.remove(self.1);
        self.1.finished.send_replace(true);
    }
}

/// Carries a turn on from `first` until it ends or waits for a person: replies stream,
/// approved tool calls run, and each step's record says what comes next.
pub(super) async fn run(app: Arc<App>, reply: Arc<Reply>, first: Next) {
    let _forget = Forget(&app, &reply);
    let mut step = Some(first);
    while let Some(next) = step.take() {
        step = match next {
            Next::Reply { message_id, model_id } => {
                reply.begin(message_id);
                round(&app, &reply, &model_id).await
            }
            Next::Tools => {
                reply.begin(tools::lease_id(reply.conversation));
                tools::run(&app, &reply).await
            }
        };
    }
}

/// Streams one reply and records how it ended, with the tool calls it asked for.
async fn round(app: &Arc<App>, reply: &Reply, model_id: &str) -> Option<Next> {
    let started = Instant::now();
    let message_id = reply.message_id();
    let (actor, outcome, calls, model) = match app.catalog.get(model_id) {
        None => (Actor::System, failed(reply, format!("model `{model_id}` is no longer offered")), vec![], None),
        Some(model) => match context(app, reply, model).await {
            Ok((request, offered)) => {
                let (actor, outcome, mut uses) = stream(app, reply, model, request, started).await;
                if !matches!(outcome, ReplyOutcome::Completed(_)) {
                    uses.clear();
                }
                (actor, outcome, offered.requests(uses), Some(model))
            }
            Err(error) => {
                (Actor::System, failed(reply, format!("could not prepare the request: {error}")), vec![], None)
            }
        },
    };
    let kind = match &outcome {
        ReplyOutcome::Completed(_) => "completed",
        ReplyOutcome::Failed { .. } => "failed",
        ReplyOutcome::Cancelled { .. } => "cancelled",
    };
    tracing::info!(
        model = model_id,
        outcome = kind,
        tool_calls = calls.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "reply ended"
    );
    let next =
        model.filter(|_| !calls.is_empty()).map(|m| NextRound { reply_id: MessageId::new(), model_id: m.id.clone() });
    match finish(app, actor, reply.conversation, message_id, outcome, calls, next).await {
        Ok((_, step)) => step,
        Err(error) => {
            // Its checkpoint stays, so the sweeper closes it with the saved text.
            tracing::error!(%error, "could not record the end of a reply");
            None
        }
    }
}

/// The conversation so far, in the model's terms, with the tools it may call.
async fn context(app: &App, reply: &Reply, model: &Model) -> AppResult<(ChatRequest, Offered)> {
    let mut conn = app.db.conn().await?;
    let conversation =
        conversations::find(&mut conn, reply.conversation).await?.ok_or(AppError::NotFound("conversation"))?;
    let current = reply.message_id();
    let history: Vec<MessageRow> = messages::list(&mut conn, reply.conversation, 0, i64::MAX)
        .await?
        .into_iter()
        .filter(|m| m.message_id() != current)
        .collect();
    let asked: Vec<MessageId> = history.iter().filter(|m| m.role == "assistant").map(MessageRow::message_id).collect();
    let mut calls: HashMap<MessageId, Vec<ToolCallRow>> = HashMap::new();
    for call in tool_calls::of_messages(&mut conn, &asked).await? {
        calls.entry(call.message()).or_default().push(call);
    }
    drop(conn);
    // Tool rounds since the user last spoke: at the limit, the model must answer.
    let rounds = history
        .iter()
        .rev()
        .take_while(|m| m.role == "assistant")
        .filter(|m| calls.contains_key(&m.message_id()))
        .count();
    let offered = Offered::of(app, conversation.owner()).await?;
    let tools = if rounds < app.mcp.max_rounds() as usize { offered.specs.clone() } else { vec![] };
    // Turns alternate (Bedrock insists): a reply that failed empty leaves two user
    // messages in a row, which are sent as one.
    let mut messages: Vec<ChatMessage> = vec![];
    for message in history {
        let speaker = if message.role == "assistant" { Speaker::Assistant } else { Speaker::User };
        let asked = calls.remove(&message.message_id()).unwrap_or_default();
        if message.content.is_empty() && asked.is_empty() {
            continue;
        }
        let uses = asked.iter().map(|call| ToolUse {
            id: call.provider_call_id.clone(),
            name: call
                .server_name
                .as_deref()
                .map_or_else(|| call.tool_name.clone(), |s| tools::model_name(s, &call.tool_name)),
            arguments: call.arguments(),
        });
        push(
            &mut messages,
            ChatMessage { speaker, content: message.content, tool_uses: uses.collect(), tool_results: vec![] },
        );
        if !asked.is_empty() {
            let results = asked.iter().map(|call| ToolResult {
                id: call.provider_call_id.clone(),
                content: match (&call.result, &call.reason) {
                    (Some(result), _) => result.clone(),
                    (None, Some(reason)) => format!("the call was rejected: {reason}"),
                    (None, None) => "the call did not run".to_owned(),
                },
                is_error: call.is_error || call.status != "completed",
            });
            push(
                &mut messages,
                ChatMessage { speaker: Speaker::User, tool_results: results.collect(), ..Default::default() },
            );
        }
    }
    let request = ChatRequest {
        model: model.upstream_id.clone(),
        system: conversation.system_prompt,
        messages,
        temperature: conversation.temperature.or(model.temperature).map(|t| t as f32),
        max_tokens: conversation.max_tokens.or(model.max_tokens).and_then(|n| u32::try_from(n).ok()),
        tools,
    };
    Ok((request, offered))
}

/// Adds a message to the context, joining it to the last one when the same side spoke.
fn push(messages: &mut Vec<ChatMessage>, message: ChatMessage) {
    match messages.last_mut() {
        Some(last) if last.speaker == message.speaker => {
            if !last.content.is_empty() && !message.content.is_empty() {
                last.content.push_str("\n\n");
            }
            last.content.push_str(&message.content);
            last.tool_uses.extend(message.tool_uses);
            last.tool_results.extend(message.tool_results);
        }
        _ => messages.push(message),
    }
}

fn stopped_early(reply: &Reply, stop: Stop) -> (Actor, ReplyOutcome) {
    match stop {
        Stop::Cancel(actor) => (actor, ReplyOutcome::Cancelled { partial_text: reply.so_far() }),
        Stop::Shutdown => (Actor::System, failed(reply, "the server shut down while the reply was streaming".into())),
    }
}

fn failed(reply: &Reply, reason: String) -> ReplyOutcome {
    ReplyOutcome::Failed { partial_text: reply.so_far(), reason }
}

/// Opens the model's stream, retrying failures that happen before any text.
async fn open(app: &App, model: &Model, request: &ChatRequest) -> Result<(TokenStream, Option<StreamEvent>), String> {
    let timeout = app.config.llm.first_token_timeout;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let first = tokio::time::timeout(timeout, async {
            let mut stream = model.provider.stream(request.clone()).await?;
            let first = stream.next().await.transpose()?;
            Ok::<_, LlmError>((stream, first))
        })
        .await;
        match first {
            Ok(Ok(opened)) => return Ok(opened),
            Ok(Err(error)) if error.is_transient() && attempt < ATTEMPTS => {
                tracing::warn!(%error, attempt, "model endpoint failed before replying; retrying");
                tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt - 1))).await;
            }
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err(format!("the model did not start replying within {}s", timeout.as_secs())),
        }
    }
}

/// Streams the model's reply; returns who ended it, how, and the tool calls it asked for.
async fn stream(
    app: &App,
    reply: &Reply,
    model: &Model,
    request: ChatRequest,
    started: Instant,
) -> (Actor, ReplyOutcome, Vec<ToolUse>) {
    let mut uses = vec![];
    let mut stopped = reply.stop.subscribe();
    let opened = tokio::select! {
        opened = open(app, model, &request) => opened,
        _ = stopped.wait_for(Option::is_some) => Err(String::new()),
    };
    let early = *stopped.borrow();
    if let Some(stop) = early {
        let (actor, outcome) = stopped_early(reply, stop);
        return (actor, outcome, uses);
    }
    let (mut stream, mut next) = match opened {
        Ok(opened) => opened,
        Err(reason) => return (Actor::System, failed(reply, reason), uses),
    };
    let mut first_token = None;
    let idle = app.config.llm.first_token_timeout;
    loop {
        match next.take() {
            Some(StreamEvent::Text(text)) => {
                first_token.get_or_insert_with(|| started.elapsed());
                let delta = reply.push(text);
                app.bus.publish_delta(reply.conversation, delta);
            }
            Some(StreamEvent::ToolUse(call)) => uses.push(call),
            Some(StreamEvent::Finished { stop_reason, input_tokens, output_tokens }) => {
                let completion = Completion {
                    text: reply.so_far(),
                    stop_reason,
                    input_tokens,
                    output_tokens,
                    time_to_first_token_ms: first_token.map(|t| t.as_millis() as i64),
                    duration_ms: started.elapsed().as_millis() as i64,
                };
                return (Actor::System, ReplyOutcome::Completed(completion), uses);
            }
            None => {}
        }
        tokio::select! {
            received = tokio::time::timeout(idle, stream.next()) => match received {
                Ok(Some(Ok(event))) => next = Some(event),
                Ok(Some(Err(error))) => return (Actor::System, failed(reply, error.to_string()), uses),
                Ok(None) => return (Actor::System, failed(reply, "the model's stream ended without finishing".into()), uses),
                Err(_) => return (Actor::System, failed(reply, format!("the model sent nothing for {}s", idle.as_secs())), uses),
            },
            stop = async { stopped.wait_for(Option::is_some).await.ok().and_then(|stop| *stop) } => {
                let (actor, outcome) = stopped_early(reply, stop.unwrap_or(Stop::Shutdown));
                return (actor, outcome, uses);
            }
        }
    }
}
