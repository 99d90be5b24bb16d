//! The demo model: works offline, streams a canned reply that says it is one, so a
//! fresh install can be tried without any credentials.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use super::{ChatRequest, LlmError, Model, Provider, Speaker, StreamEvent, TokenStream};

pub struct Demo {
    token_delay: Duration,
}

pub fn model(token_delay: Duration) -> Model {
    Model {
        id: "demo".to_owned(),
        display_name: "Demo (canned replies, no model configured)".to_owned(),
        provider_kind: "demo",
        upstream_id: "demo".to_owned(),
        temperature: None,
        max_tokens: None,
        provider: Arc::new(Demo { token_delay }),
    }
}

fn reply_to(request: &ChatRequest) -> String {
    let said = request.messages.iter().rev().find(|m| m.speaker == Speaker::User).map_or("", |m| m.content.as_str());
    let said: String = said.chars().take(200).collect();
    format!(
        "This is the Liteskill demo model: no language model is configured, so this reply is canned. \
         Set OPENAI_BASE_URL to use a real model. You said: \"{said}\""
    )
}

impl Provider for Demo {
    fn stream(&self, request: ChatRequest) -> BoxFuture<'static, Result<TokenStream, LlmError>> {
        let reply = reply_to(&request);
        let delay = self.token_delay;
        let input_tokens = request.messages.iter().map(|m| m.content.split_whitespace().count() as i64).sum();
        async move {
            // Words with their following space, so the pieces join back into the reply.
            let words: Vec<String> = reply.split_inclusive(' ').map(str::to_owned).collect();
            let output_tokens = words.len() as i64;
            let text = futures_util::stream::iter(words).then(move |word| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok(StreamEvent::Text(word))
            });
            let finished = futures_util::stream::once(async move {
                Ok(StreamEvent::Finished {
                    stop_reason: "end_turn".to_owned(),
                    input_tokens: Some(input_tokens),
                    output_tokens: Some(output_tokens),
                })
            });
            Ok(text.chain(finished).boxed())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ChatMessage;

    #[tokio::test]
    async fn streams_a_reply_that_says_it_is_a_demo() {
        let model = model(Duration::ZERO);
        let request = ChatRequest {
            model: "demo".into(),
            system: None,
            messages: vec![ChatMessage { speaker: Speaker::User, content: "hello there".into(), ..Default::default() }],
            temperature: None,
            max_tokens: None,
            tools: vec![],
        };
        let events: Vec<_> = model.provider.stream(request).await.expect("stream").collect().await;
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::Text(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert!(text.contains("demo") && text.contains("hello there"), "{text}");
        assert!(matches!(events.last(), Some(Ok(StreamEvent::Finished { .. }))));
    }
}
