//! The MCP client against the reference MCP server from npm, over streamable HTTP and
//! over stdio, and against a server that never answers.

use std::time::Duration;

use liteskill::mcp::{Endpoint, McpError, Session};
use serde_json::json;

use crate::support::peers::{EverythingServer, executable};

const LIMIT: Duration = Duration::from_secs(20);

fn arguments(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().cloned().expect("an object")
}

async fn lists_and_calls(endpoint: Endpoint) {
    let session = Session::open(&endpoint, LIMIT).await.expect("handshake");
    let tools = session.tools().await.expect("tools/list");
    let echo = tools.iter().find(|tool| tool.name == "echo").expect("the echo tool");
    assert_eq!(echo.input_schema["properties"]["message"]["type"], "string", "{echo:?}");
    let output = session.call("echo", arguments(json!({ "message": "hello tools" })), LIMIT).await.expect("tools/call");
    assert!(output.text.contains("hello tools") && !output.is_error, "{output:?}");
    let wrong = session.call("echo", arguments(json!({ "message": 42 })), LIMIT).await;
    assert!(wrong.is_err() || wrong.as_ref().is_ok_and(|o| o.is_error), "bad arguments are an error: {wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_server_over_streamable_http() {
    let server = EverythingServer::start().await;
    let headers = vec![("X-Api-Key".to_owned(), "sk-test".to_owned().into())];
    lists_and_calls(Endpoint::Http { url: server.url.clone(), headers }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_server_over_stdio() {
    let command = executable("mcp-server-everything").to_string_lossy().into_owned();
    lists_and_calls(Endpoint::Stdio { command, args: vec!["stdio".to_owned()] }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and reads, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = std::time::Instant::now();
    let opened = Session::open(&Endpoint::Http { url, headers: vec![] }, Duration::from_secs(1)).await;
    assert!(matches!(opened, Err(McpError::Timeout(1))), "{:?}", opened.err());
    assert!(started.elapsed() < Duration::from_secs(5));
    let refused = Session::open(&Endpoint::Http { url: "http://127.0.0.1:1/mcp".into(), headers: vec![] }, LIMIT).await;
    assert!(matches!(refused, Err(McpError::Connect(_))), "{:?}", refused.err());
}
