//! A fake OpenAI-compatible endpoint speaking the real wire protocol (chat completions
//! as server-sent events), so the production client runs unchanged in tests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// How the fake answers.
#[derive(Debug, Clone)]
pub struct Script {
    pub tokens: usize,
    pub delay: Duration,
    /// Answer this status to the first `n` requests.
    pub fail_first: Option<(usize, u16)>,
    /// Close the stream after this many tokens, without finishing.
    pub cut_after: Option<usize>,
}

impl Default for Script {
    fn default() -> Self {
        Script { tokens: 20, delay: Duration::from_millis(5), fail_first: None, cut_after: None }
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<Script>,
    requests: Mutex<Vec<Value>>,
}

pub struct FakeOpenAi {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

/// The `n`th token of a reply.
pub fn token(n: usize) -> String {
    format!("tok{n} ")
}

impl FakeOpenAi {
    pub async fn start(script: Script) -> FakeOpenAi {
        let shared = Arc::new(Shared { script: Mutex::new(script), requests: Mutex::default() });
        let router = axum::Router::new()
            .route("/v1/models", get(|| async { Json(json!({ "object": "list", "data": [{ "id": "fake-model" }] })) }))
            .route("/v1/chat/completions", post(completions))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeOpenAi { address, shared, server }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    pub fn set_script(&self, script: Script) {
        *self.shared.script.lock().expect("script") = script;
    }

    /// The request bodies received, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().expect("requests").clone()
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn completions(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let script = {
        let mut requests = shared.requests.lock().expect("requests");
        requests.push(body);
        let mut script = shared.script.lock().expect("script");
        if let Some((remaining, status)) = script.fail_first.as_mut()
            && *remaining > 0
        {
            *remaining -= 1;
            let status = StatusCode::from_u16(*status).expect("status");
            return (status, Json(json!({ "error": { "message": "scripted failure" } }))).into_response();
        }
        script.clone()
    };
    let chunks = async_stream::stream! {
        for n in 0..script.tokens {
            if script.cut_after == Some(n) {
                return;
            }
            tokio::time::sleep(script.delay).await;
            let chunk = json!({ "choices": [{ "index": 0, "delta": { "content": token(n) } }] });
            yield Ok::<_, std::io::Error>(Bytes::from(format!("data: {chunk}\n\n")));
        }
        let done = json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }] });
        yield Ok(Bytes::from(format!("data: {done}\n\n")));
        let usage = json!({ "choices": [], "usage": { "prompt_tokens": 11, "completion_tokens": script.tokens } });
        yield Ok(Bytes::from(format!("data: {usage}\n\ndata: [DONE]\n\n")));
    };
    Response::builder().header("Content-Type", "text/event-stream").body(Body::from_stream(chunks)).expect("response")
}
