//! OpenAI-compatible chat completions with server-sent events: OpenAI, LiteLLM, vLLM,
//! Ollama, OpenRouter.

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{ChatRequest, LlmError, Provider, Speaker, StreamEvent, TokenStream, ToolUse};
use crate::config::OpenAiEndpoint;

pub struct OpenAi {
    endpoint: OpenAiEndpoint,
    http: reqwest::Client,
}

impl OpenAi {
    pub fn new(endpoint: OpenAiEndpoint) -> anyhow::Result<OpenAi> {
        let http = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10)).build()?;
        Ok(OpenAi { endpoint, http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.endpoint.base_url.trim_end_matches('/'))
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.endpoint.api_key {
            Some(key) => request.bearer_auth(key.expose_secret()),
            None => request,
        }
    }

    /// The model ids the endpoint serves (`GET /models`).
    pub async fn list_models(&self) -> anyhow::Result<Vec<String>> {
        let request = self.http.get(self.url("models")).timeout(std::time::Duration::from_secs(15));
        let response = self.authorized(request).send().await?.error_for_status()?;
        let body: Value = response.json().await?;
        let mut ids: Vec<String> = body["data"]
            .as_array()
            .map(|models| models.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        ids.sort();
        anyhow::ensure!(!ids.is_empty(), "{} lists no models", self.url("models"));
        Ok(ids)
    }
}

fn body(request: &ChatRequest) -> Value {
    let mut messages = vec![];
    if let Some(system) = &request.system {
        messages.push(json!({ "role": "system", "content": system }));
    }
    for m in &request.messages {
        match m.speaker {
            Speaker::User => {
                // Results answer the calls of the message before, one `tool` message each.
                messages.extend(
                    m.tool_results
                        .iter()
                        .map(|r| json!({ "role": "tool", "tool_call_id": r.id, "content": r.content })),
                );
                if !m.content.is_empty() {
                    messages.push(json!({ "role": "user", "content": m.content }));
                }
            }
            Speaker::Assistant if m.tool_uses.is_empty() => {
                messages.push(json!({ "role": "assistant", "content": m.content }));
            }
            Speaker::Assistant => {
                let calls: Vec<Value> = m
                    .tool_uses
                    .iter()
                    .map(|t| {
                        json!({
                            "id": t.id,
                            "type": "function",
                            "function": { "name": t.name, "arguments": t.arguments.to_string() },
                        })
                    })
                    .collect();
                let content = if m.content.is_empty() { Value::Null } else { json!(m.content) };
                messages.push(json!({ "role": "assistant", "content": content, "tool_calls": calls }));
            }
        }
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    if let Some(temperature) = request.temperature {
        body["temperature"] = json!(temperature);
    }
    if let Some(max_tokens) = request.max_tokens {
        body["max_tokens"] = json!(max_tokens);
    }
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": { "name": t.name, "description": t.description, "parameters": t.input_schema },
                })
            })
            .collect();
        body["tools"] = json!(tools);
    }
    body
}

impl Provider for OpenAi {
    fn stream(&self, request: ChatRequest) -> BoxFuture<'static, Result<TokenStream, LlmError>> {
        let sent = self.authorized(self.http.post(self.url("chat/completions"))).json(&body(&request)).send();
        async move {
            let response = sent.await.map_err(|e| LlmError::Transport(e.to_string()))?;
            let status = response.status();
            if !status.is_success() {
                let body = response.text().await.unwrap_or_default();
                return Err(LlmError::Status { status: status.as_u16(), body: body.chars().take(500).collect() });
            }
            Ok(events(response.bytes_stream()).boxed())
        }
        .boxed()
    }
}

/// Reads completion chunks from an SSE byte stream until `data: [DONE]`.
fn events(
    bytes: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<StreamEvent, LlmError>> + Send + 'static {
    async_stream::try_stream! {
        let mut bytes = std::pin::pin!(bytes);
        let mut buffer = Vec::new();
        let mut chunks = ChunkReader::default();
        loop {
            let Some(received) = bytes.next().await else {
                // Closed without `[DONE]`: complete only if the model said it had finished.
                match chunks.finish() {
                    Some(finished) => {
                        for call in chunks.tool_uses()? {
                            yield StreamEvent::ToolUse(call);
                        }
                        yield finished;
                    }
                    None => Err(LlmError::Transport("the connection closed in the middle of the reply".into()))?,
                }
                break;
            };
            buffer.extend_from_slice(&received.map_err(|e| LlmError::Transport(e.to_string()))?);
            if buffer.len() > MAX_LINE {
                Err(LlmError::Malformed("a line of the stream is too long".into()))?;
            }
            let mut done = false;
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let line = String::from_utf8(line).map_err(|_| LlmError::Malformed("not UTF-8".into()))?;
                match chunks.line(line.trim_end())? {
                    Line::Text(text) => yield StreamEvent::Text(text),
                    Line::Done => { done = true; break; }
                    Line::Nothing => {}
                }
            }
            if done {
                for call in chunks.tool_uses()? {
                    yield StreamEvent::ToolUse(call);
                }
                yield chunks.finish().unwrap_or(StreamEvent::Finished {
                    stop_reason: "stop".into(), input_tokens: None, output_tokens: None,
                });
                break;
            }
        }
    }
}

/// The longest line a stream may send (a chunk of JSON).
const MAX_LINE: usize = 1024 * 1024;

enum Line {
    Text(String),
    Done,
    Nothing,
}

/// What the stream has said so far besides text: why it stopped, what it used, and the
/// tool calls it is assembling (their arguments arrive in pieces).
#[derive(Default)]
struct ChunkReader {
    stop_reason: Option<String>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    /// By index: id, name, arguments so far.
    calls: Vec<(String, String, String)>,
}

impl ChunkReader {
    fn line(&mut self, line: &str) -> Result<Line, LlmError> {
        let Some(data) = line.strip_prefix("data:") else { return Ok(Line::Nothing) };
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(Line::Done);
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| LlmError::Malformed(e.to_string()))?;
        if let Some(error) = chunk.get("error") {
            return Err(LlmError::Status { status: 500, body: error.to_string() });
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.input_tokens = usage["prompt_tokens"].as_i64();
            self.output_tokens = usage["completion_tokens"].as_i64();
        }
        let choice = &chunk["choices"][0];
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.stop_reason = Some(reason.to_owned());
        }
        for piece in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let index = piece["index"].as_u64().unwrap_or(0) as usize;
            if index > 127 {
                return Err(LlmError::Malformed("too many tool calls".into()));
            }
            if self.calls.len() <= index {
                self.calls.resize(index + 1, Default::default());
            }
            let call = &mut self.calls[index];
            if let Some(id) = piece["id"].as_str() {
                call.0 = id.to_owned();
            }
            if let Some(name) = piece["function"]["name"].as_str() {
                call.1.push_str(name);
            }
            if let Some(arguments) = piece["function"]["arguments"].as_str() {
                call.2.push_str(arguments);
            }
        }
        match choice["delta"]["content"].as_str() {
            Some(text) if !text.is_empty() => Ok(Line::Text(text.to_owned())),
            _ => Ok(Line::Nothing),
        }
    }

    /// The tool calls, whole; arguments that are not a JSON object are an error.
    fn tool_uses(&mut self) -> Result<Vec<ToolUse>, LlmError> {
        std::mem::take(&mut self.calls)
            .into_iter()
            .filter(|(_, name, _)| !name.is_empty())
            .map(|(id, name, arguments)| {
                let arguments = if arguments.trim().is_empty() { "{}" } else { arguments.as_str() };
                let arguments: Value = serde_json::from_str(arguments)
                    .map_err(|e| LlmError::Malformed(format!("arguments of tool call `{name}`: {e}")))?;
                Ok(ToolUse { id, name, arguments })
            })
            .collect()
    }

    fn finish(&mut self) -> Option<StreamEvent> {
        let stop_reason = self.stop_reason.take()?;
        Some(StreamEvent::Finished { stop_reason, input_tokens: self.input_tokens, output_tokens: self.output_tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(sse: &'static str) -> Vec<Result<StreamEvent, LlmError>> {
        let bytes = futures_util::stream::iter(sse.as_bytes().chunks(7).map(|c| Ok(bytes::Bytes::copy_from_slice(c))));
        events(bytes).collect().await
    }

    #[tokio::test]
    async fn reads_text_usage_and_stop_reason_across_chunk_boundaries() {
        let events = read(concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            ": keep-alive\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n",
        ))
        .await;
        assert_eq!(
            events.into_iter().map(Result::ok).collect::<Vec<_>>(),
            vec![
                Some(StreamEvent::Text("Hel".into())),
                Some(StreamEvent::Text("lo".into())),
                Some(StreamEvent::Finished {
                    stop_reason: "stop".into(),
                    input_tokens: Some(5),
                    output_tokens: Some(2)
                }),
            ]
        );
    }

    #[tokio::test]
    async fn assembles_tool_calls_from_pieces() {
        let events = read(concat!(
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"files__read\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"path\\\":\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"a.txt\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: [DONE]\n\n",
        ))
        .await;
        assert_eq!(
            events.into_iter().map(Result::ok).collect::<Vec<_>>(),
            vec![
                Some(StreamEvent::ToolUse(ToolUse {
                    id: "call_1".into(),
                    name: "files__read".into(),
                    arguments: json!({ "path": "a.txt" }),
                })),
                Some(StreamEvent::Finished {
                    stop_reason: "tool_calls".into(),
                    input_tokens: None,
                    output_tokens: None
                }),
            ]
        );
    }

    #[tokio::test]
    async fn a_cut_stream_and_garbage_are_errors() {
        let cut = read("data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n").await;
        assert!(matches!(cut.last(), Some(Err(LlmError::Transport(_)))));
        let garbage = read("data: {not json\n\n").await;
        assert!(matches!(garbage.last(), Some(Err(LlmError::Malformed(_)))));
    }
}
