//! Streaming one reply: ask the model, relay its text, record how it ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::{Reply, Stop, finish};
use crate::app::App;
use crate::domain::Actor;
use crate::domain::conversation::{Completion, ReplyOutcome};
use crate::error::AppResult;
use crate::llm::{ChatMessage, ChatRequest, LlmError, Model, Speaker, StreamEvent, TokenStream};
use crate::storage::projections::{conversations, messages};

/// Attempts at opening a stream when the endpoint fails before any text.
const ATTEMPTS: u32 = 3;

/// Streams the reply and records its end; runs as its own task.
/// Forgets a reply on this server when its task ends, however it ends (a panic too), so
/// that it is no longer checkpointed and whoever waits for it stops waiting.
struct Forget<'a>(&'a App, &'a Arc<Reply>);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.replies.remove(self.1);
        self.1.finished.send_replace(true);
    }
}

pub(super) async fn run(app: Arc<App>, reply: Arc<Reply>, model: Model) {
    let _forget = Forget(&app, &reply);
    let started = Instant::now();
    let (actor, outcome) = match context(&app, &reply, &model).await {
        Ok(request) => stream(&app, &reply, &model, request, started).await,
        Err(error) => (Actor::System, failed(&reply, format!("could not prepare the request: {error}"))),
    };
    let kind = match &outcome {
        ReplyOutcome::Completed(_) => "completed",
        ReplyOutcome::Failed { .. } => "failed",
        ReplyOutcome::Cancelled { .. } => "cancelled",
    };
    tracing::info!(model = %model.id, outcome = kind, elapsed_ms = started.elapsed().as_millis() as u64, "reply ended");
    if let Err(error) = finish(&app, actor, reply.conversation, reply.message_id, outcome).await {
        // Its checkpoint stays, so the sweeper closes it with the saved text.
        tracing::error!(%error, "could not record the end of a reply");
    }
}

/// The conversation so far, in the model's terms.
async fn context(app: &App, reply: &Reply, model: &Model) -> AppResult<ChatRequest> {
    let mut conn = app.db.conn().await?;
    let conversation = conversations::find(&mut conn, reply.conversation).await?;
    let history = messages::list(&mut conn, reply.conversation, 0, i64::MAX).await?;
    // Turns alternate (Bedrock insists): a reply that failed empty leaves two user
    // messages in a row, which are sent as one.
    let mut messages: Vec<ChatMessage> = vec![];
    for message in history.into_iter().filter(|m| m.message_id() != reply.message_id && !m.content.is_empty()) {
        let speaker = if message.role == "assistant" { Speaker::Assistant } else { Speaker::User };
        match messages.last_mut() {
            Some(last) if last.speaker == speaker => {
                last.content.push_str("\n\n");
                last.content.push_str(&message.content);
            }
            _ => messages.push(ChatMessage { speaker, content: message.content }),
        }
    }
    let (system, temperature, max_tokens) = match conversation {
        Some(c) => (c.system_prompt, c.temperature, c.max_tokens),
        None => (None, None, None),
    };
    Ok(ChatRequest {
        model: model.upstream_id.clone(),
        system,
        messages,
        temperature: temperature.or(model.temperature).map(|t| t as f32),
        max_tokens: max_tokens.or(model.max_tokens).and_then(|n| u32::try_from(n).ok()),
    })
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

async fn stream(
    app: &App,
    reply: &Reply,
    model: &Model,
    request: ChatRequest,
    started: Instant,
) -> (Actor, ReplyOutcome) {
    let mut stopped = reply.stop.subscribe();
    let opened = tokio::select! {
        opened = open(app, model, &request) => opened,
        _ = stopped.wait_for(Option::is_some) => Err(String::new()),
    };
    let early = *stopped.borrow();
    if let Some(stop) = early {
        return stopped_early(reply, stop);
    }
    let (mut stream, mut next) = match opened {
        Ok(opened) => opened,
        Err(reason) => return (Actor::System, failed(reply, reason)),
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
            Some(StreamEvent::Finished { stop_reason, input_tokens, output_tokens }) => {
                let completion = Completion {
                    text: reply.so_far(),
                    stop_reason,
                    input_tokens,
                    output_tokens,
                    time_to_first_token_ms: first_token.map(|t| t.as_millis() as i64),
                    duration_ms: started.elapsed().as_millis() as i64,
                };
                return (Actor::System, ReplyOutcome::Completed(completion));
            }
            None => {}
        }
        tokio::select! {
            received = tokio::time::timeout(idle, stream.next()) => match received {
                Ok(Some(Ok(event))) => next = Some(event),
                Ok(Some(Err(error))) => return (Actor::System, failed(reply, error.to_string())),
                Ok(None) => return (Actor::System, failed(reply, "the model's stream ended without finishing".into())),
                Err(_) => return (Actor::System, failed(reply, format!("the model sent nothing for {}s", idle.as_secs()))),
            },
            stop = async { stopped.wait_for(Option::is_some).await.ok().and_then(|stop| *stop) } => {
                return stopped_early(reply, stop.unwrap_or(Stop::Shutdown));
            }
        }
    }
}
