//! Fake model endpoints speaking the real wire protocols, so the production clients run
//! unchanged in tests: OpenAI chat completions as server-sent events, and Bedrock
//! ConverseStream as AWS event-stream frames.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde_json::{Value, json};

/// Which wire protocol the fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Bedrock,
}

pub const BOTH: [Wire; 2] = [Wire::OpenAi, Wire::Bedrock];

/// How the fake answers.
#[derive(Debug, Clone)]
pub struct Script {
    pub tokens: usize,
    pub delay: Duration,
    /// Answer this status to the first `n` requests.
    pub fail_first: Option<(usize, u16)>,
    /// End the stream after this many tokens, without finishing.
    pub cut_after: Option<usize>,
    /// Characters added to every token.
    pub padding: usize,
    /// Tool calls (the tool's name for the model, and its arguments) to ask for when
    /// tools are offered and the last message is the user's, not tool results.
    pub tool_calls: Vec<(String, Value)>,
    /// Ask for `tool_calls` even right after tool results.
    pub tool_calls_every_round: bool,
}

impl Script {
    /// The `n`th token this script streams.
    pub fn token(&self, n: usize) -> String {
        format!("{}{}", token(n), "x".repeat(self.padding))
    }

    /// Everything this script streams.
    pub fn reply(&self) -> String {
        (0..self.tokens).map(|n| self.token(n)).collect()
    }
}

impl Default for Script {
    fn default() -> Self {
        Script {
            tokens: 20,
            delay: Duration::from_millis(5),
            fail_first: None,
            cut_after: None,
            padding: 0,
            tool_calls: vec![],
            tool_calls_every_round: false,
        }
    }
}

/// The `n`th token of a reply.
pub fn token(n: usize) -> String {
    format!("tok{n} ")
}

#[derive(Default)]
struct Shared {
    script: Mutex<Script>,
    /// Requests in one shape for both protocols: model, system, messages, temperature,
    /// max_tokens, authorization.
    requests: Mutex<Vec<Value>>,
}

/// The tool calls to ask for in answer to a request (in the shape of [`Shared::requests`]).
fn calls_for(script: &Script, request: &Value) -> Vec<(String, Value)> {
    let offered = request["tools"].as_array().is_some_and(|tools| !tools.is_empty());
    let after_results = request["tool_results"].as_array().is_some_and(|results| !results.is_empty());
    if offered && (script.tool_calls_every_round || !after_results) { script.tool_calls.clone() } else { vec![] }
}

impl Shared {
    /// Records the request; returns the script to follow, or the failure to answer with.
    fn receive(&self, request: Value) -> Result<Script, StatusCode> {
        self.requests.lock().expect("requests").push(request);
        let mut script = self.script.lock().expect("script");
        if let Some((remaining, status)) = script.fail_first.as_mut()
            && *remaining > 0
        {
            *remaining -= 1;
            return Err(StatusCode::from_u16(*status).expect("status"));
        }
        Ok(script.clone())
    }
}

pub struct FakeLlm {
    pub wire: Wire,
    pub address: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeLlm {
    pub async fn start(wire: Wire, script: Script) -> FakeLlm {
        let shared = Arc::new(Shared { script: Mutex::new(script), requests: Mutex::default() });
        let router = axum::Router::new()
            .route("/v1/models", get(|| async { Json(json!({ "object": "list", "data": [{ "id": "fake-model" }] })) }))
            .route("/v1/chat/completions", post(openai))
            .route("/model/{model}/converse-stream", post(bedrock))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeLlm { wire, address, shared, server }
    }

    /// Settings that make the server use this fake, with `models` offered (for OpenAI,
    /// none means "ask the endpoint", which answers `fake-model`).
    pub fn settings(&self, models: Option<&str>) -> Vec<(&'static str, String)> {
        match self.wire {
            Wire::OpenAi => {
                let mut settings = vec![("OPENAI_BASE_URL", format!("http://{}/v1", self.address))];
                settings.extend(models.map(|m| ("OPENAI_MODELS", m.to_owned())));
                settings
            }
            Wire::Bedrock => vec![
                ("BEDROCK_MODELS", models.unwrap_or("fake-model").to_owned()),
                ("AWS_REGION", "us-east-1".to_owned()),
                ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", format!("http://{}", self.address)),
                ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key".to_owned()),
            ],
        }
    }

    pub fn set_script(&self, script: Script) {
        *self.shared.script.lock().expect("script") = script;
    }

    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().expect("requests").clone()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn authorization(headers: &HeaderMap) -> Value {
    headers.get("authorization").and_then(|v| v.to_str().ok()).map_or(Value::Null, |v| json!(v))
}

async fn openai(State(shared): State<Arc<Shared>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let system = messages.iter().find(|m| m["role"] == "system").map(|m| m["content"].clone());
    let trailing_results: Vec<Value> = messages
        .iter()
        .rev()
        .take_while(|m| m["role"] == "tool")
        .map(|m| json!({ "id": m["tool_call_id"], "content": m["content"] }))
        .collect();
    let request = json!({
        "model": body["model"],
        "stream": body["stream"],
        "system": system,
        "messages": messages.iter().filter(|m| m["role"] != "system").cloned().collect::<Vec<_>>(),
        "temperature": body["temperature"],
        "max_tokens": body["max_tokens"],
        "authorization": authorization(&headers),
        "tools": body["tools"].as_array().map(|tools| tools.iter().map(|t| t["function"]["name"].clone()).collect::<Vec<_>>()),
        "tool_results": trailing_results.into_iter().rev().collect::<Vec<_>>(),
    });
    let calls = calls_for(&shared.script.lock().expect("script"), &request);
    let script = match shared.receive(request) {
        Ok(script) => script,
        Err(status) => return (status, Json(json!({ "error": { "message": "scripted failure" } }))).into_response(),
    };
    let chunks = async_stream::stream! {
        if !calls.is_empty() {
            for (index, (name, arguments)) in calls.iter().enumerate() {
                let arguments = arguments.to_string();
                let (first, rest) = arguments.split_at(arguments.len() / 2);
                let start = json!({ "index": index, "id": format!("call_{index}"), "type": "function",
                    "function": { "name": name, "arguments": first } });
                let chunk = json!({ "choices": [{ "index": 0, "delta": { "tool_calls": [start] } }] });
                yield Ok::<_, std::io::Error>(Bytes::from(format!("data: {chunk}\n\n")));
                let more = json!({ "index": index, "function": { "arguments": rest } });
                let chunk = json!({ "choices": [{ "index": 0, "delta": { "tool_calls": [more] } }] });
                yield Ok(Bytes::from(format!("data: {chunk}\n\n")));
            }
            let done = json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "tool_calls" }] });
            yield Ok(Bytes::from(format!("data: {done}\n\ndata: [DONE]\n\n")));
            return;
        }
        for n in 0..script.tokens {
            if script.cut_after == Some(n) {
                return;
            }
            tokio::time::sleep(script.delay).await;
            let chunk = json!({ "choices": [{ "index": 0, "delta": { "content": script.token(n) } }] });
            yield Ok::<_, std::io::Error>(Bytes::from(format!("data: {chunk}\n\n")));
        }
        let done = json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }] });
        yield Ok(Bytes::from(format!("data: {done}\n\n")));
        let usage = json!({ "choices": [], "usage": { "prompt_tokens": 11, "completion_tokens": script.tokens } });
        yield Ok(Bytes::from(format!("data: {usage}\n\ndata: [DONE]\n\n")));
    };
    streaming("text/event-stream", chunks)
}

fn streaming(content_type: &str, body: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static) -> Response {
    Response::builder().header("Content-Type", content_type).body(Body::from_stream(body)).expect("response")
}

/// One AWS event-stream frame carrying a Converse stream event.
fn frame(event_type: &'static str, payload: Value) -> Bytes {
    let message = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
        .add_header(Header::new(":event-type", HeaderValue::String(event_type.into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
    let mut buffer = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut buffer).expect("frame");
    Bytes::from(buffer)
}

fn text_of(content: &Value) -> Value {
    json!(content.as_array().map(|blocks| blocks.iter().filter_map(|b| b["text"].as_str()).collect::<String>()))
}

async fn bedrock(
    State(shared): State<Arc<Shared>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let messages: Vec<Value> = body["messages"]
        .as_array()
        .map(|ms| ms.iter().map(|m| json!({ "role": m["role"], "content": text_of(&m["content"]) })).collect())
        .unwrap_or_default();
    let last_results: Vec<Value> = body["messages"]
        .as_array()
        .and_then(|ms| ms.last())
        .and_then(|m| m["content"].as_array())
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b.get("toolResult"))
                .map(|r| json!({ "id": r["toolUseId"], "content": text_of(&r["content"]), "status": r["status"] }))
                .collect()
        })
        .unwrap_or_default();
    let request = json!({
        "model": model,
        "stream": true,
        "system": if body["system"].is_array() { text_of(&body["system"]) } else { Value::Null },
        "messages": messages,
        "temperature": body["inferenceConfig"]["temperature"],
        "max_tokens": body["inferenceConfig"]["maxTokens"],
        "authorization": authorization(&headers),
        "tools": body["toolConfig"]["tools"].as_array().map(|tools| tools.iter().map(|t| t["toolSpec"]["name"].clone()).collect::<Vec<_>>()),
        "tool_results": last_results,
    });
    let calls = calls_for(&shared.script.lock().expect("script"), &request);
    let script = match shared.receive(request) {
        Ok(script) => script,
        Err(status) => {
            let kind = if status.as_u16() == 429 { "ThrottlingException" } else { "ServiceUnavailableException" };
            let kind = if status.as_u16() < 429 { "AccessDeniedException" } else { kind };
            return (status, [("x-amzn-ErrorType", kind)], Json(json!({ "message": "scripted failure" })))
                .into_response();
        }
    };
    let frames = async_stream::stream! {
        yield Ok::<_, std::io::Error>(frame("messageStart", json!({ "role": "assistant" })));
        if !calls.is_empty() {
            for (index, (name, arguments)) in calls.iter().enumerate() {
                let start = json!({ "toolUse": { "toolUseId": format!("tooluse_{index}"), "name": name } });
                yield Ok(frame("contentBlockStart", json!({ "contentBlockIndex": index, "start": start })));
                let arguments = arguments.to_string();
                let (first, rest) = arguments.split_at(arguments.len() / 2);
                for piece in [first, rest] {
                    let delta = json!({ "contentBlockIndex": index, "delta": { "toolUse": { "input": piece } } });
                    yield Ok(frame("contentBlockDelta", delta));
                }
                yield Ok(frame("contentBlockStop", json!({ "contentBlockIndex": index })));
            }
            yield Ok(frame("messageStop", json!({ "stopReason": "tool_use" })));
            let usage = json!({ "inputTokens": 11, "outputTokens": 3, "totalTokens": 14 });
            yield Ok(frame("metadata", json!({ "usage": usage, "metrics": { "latencyMs": 1 } })));
            return;
        }
        for n in 0..script.tokens {
            if script.cut_after == Some(n) {
                return;
            }
            tokio::time::sleep(script.delay).await;
            yield Ok(frame("contentBlockDelta", json!({ "contentBlockIndex": 0, "delta": { "text": script.token(n) } })));
        }
        yield Ok(frame("contentBlockStop", json!({ "contentBlockIndex": 0 })));
        yield Ok(frame("messageStop", json!({ "stopReason": "end_turn" })));
        let usage = json!({ "inputTokens": 11, "outputTokens": script.tokens, "totalTokens": 11 + script.tokens });
        yield Ok(frame("metadata", json!({ "usage": usage, "metrics": { "latencyMs": 1 } })));
    };
    streaming("application/vnd.amazon.eventstream", frames)
}
