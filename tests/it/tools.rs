//! Tools: MCP servers registered through the API (the reference server from npm, over
//! streamable HTTP and stdio), tool calls from both fake providers' wire formats,
//! approved, rejected, allowed and denied, across a restart, and kept private.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_llm::{BOTH, FakeLlm, Script, Wire};
use crate::support::peers::{EverythingServer, executable};
use crate::support::ws::{Protocol, WsClient};
use crate::support::{TestApp, error_code, on_both_backends};

const API_KEY: &str = "sk-mcp-7f3a9c1e-never-shown";

const REGISTER: &str = "mutation($input: RegisterMcpServerInput!) { registerMcpServer(input: $input) {
    id name url shared configured headerNames status error tools { name modelName policy } } }";

const MESSAGES: &str = "query($id: ID!) { conversation(id: $id) { status messages { edges { node {
    id role content status toolCalls { id serverName toolName arguments status decidedByPolicy reason result isError } } } } } }";

const POLICY: &str =
    "mutation($input: ToolPolicyInput!) { setToolPolicy(input: $input) { policy tools { name policy } } }";

/// Everything the server logs, from every test in this binary, to search for secrets.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug,hyper=info,h2=info,tokio_postgres=info"))
            .with_writer(move || Writer(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
    .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every response a test saw, to search for secrets.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    async fn ok(&mut self, app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
        let data = app.ok(Some(token), query, variables).await;
        self.0.push(data.to_string());
        data
    }
}

fn echo(message: &str) -> Vec<(String, Value)> {
    vec![("everything__echo".to_owned(), json!({ "message": message }))]
}

async fn with_tools(app: TestApp, wire: Wire, script: Script, extra: &[(&str, &str)]) -> (TestApp, FakeLlm) {
    let fake = FakeLlm::start(wire, script).await;
    let mut settings = fake.settings(None);
    settings.push(("MCP_ALLOW_PRIVATE_NETWORKS", "true".to_owned()));
    settings.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (app.restart(&settings).await, fake)
}

async fn register_everything(app: &TestApp, token: &str, url: &str, seen: &mut Seen) -> String {
    let input = json!({ "name": "everything", "url": url, "apiKey": API_KEY, "headers": [{ "name": "X-Team", "value": "blue" }] });
    let server = seen.ok(app, token, REGISTER, json!({ "input": input })).await["registerMcpServer"].clone();
    assert_eq!(server["status"], "READY", "{server:#}");
    assert_eq!(server["headerNames"], json!(["x-team", "authorization"]));
    assert!(server["tools"].as_array().expect("tools").iter().any(|t| t["modelName"] == "everything__echo"));
    server["id"].as_str().expect("id").to_owned()
}

/// The tool calls of the conversation's assistant messages, in order, and its status.
async fn calls(app: &TestApp, token: &str, conversation: &str, seen: &mut Seen) -> (Vec<Value>, String) {
    let data = seen.ok(app, token, MESSAGES, json!({ "id": conversation })).await;
    let calls = data["conversation"]["messages"]["edges"]
        .as_array()
        .expect("messages")
        .iter()
        .flat_map(|e| e["node"]["toolCalls"].as_array().cloned().unwrap_or_default())
        .collect();
    (calls, data["conversation"]["status"].as_str().expect("status").to_owned())
}

/// Waits for the conversation to wait for a decision; returns the waiting call.
async fn waiting_call(app: &TestApp, token: &str, conversation: &str, seen: &mut Seen) -> Value {
    for _ in 0..300 {
        let (calls, status) = calls(app, token, conversation, seen).await;
        if status == "AWAITING_APPROVAL" {
            return calls.into_iter().find(|c| c["status"] == "WAITING").expect("a waiting call");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no call waited for approval");
}

async fn wait_until_settled(app: &TestApp, token: &str, conversation: &str) {
    for _ in 0..500 {
        let data = app
            .ok(Some(token), "query($id: ID!) { conversation(id: $id) { status } }", json!({ "id": conversation }))
            .await;
        if data["conversation"]["status"] == "ACTIVE" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the turn in {conversation} never ended");
}

fn last_request_results(fake: &FakeLlm) -> String {
    fake.requests().last().expect("a request")["tool_results"].to_string()
}

async fn tools_end_to_end_on_both_providers(app: TestApp) {
    let logs = logs();
    let everything = EverythingServer::start().await;
    let mut app = app;
    for wire in BOTH {
        let mut seen = Seen::default();
        let script = Script { tokens: 3, tool_calls: echo("hello from the model"), ..Script::default() };
        let (restarted, fake) = with_tools(app, wire, script.clone(), &[]).await;
        app = restarted;
        let (token, _) = app.register(&format!("tools-{wire:?}@example.com").to_lowercase()).await;
        let server = register_everything(&app, &token, &everything.url, &mut seen).await;
        let conversation = app.create_conversation(&token, "Tools").await;

        // Ask: every device hears of the request; approving runs the tool on the real server.
        let url = format!("ws://{}/graphql/ws", app.address);
        let (mut device, ack) = WsClient::connect(&url, Protocol::TransportWs, json!({ "token": token })).await;
        assert_eq!(ack, Ok(()));
        let events = "subscription($id: ID!) { conversationEvents(conversationId: $id) {
            ... on HistoryEvent { type data } } }";
        device.start("events", events, json!({ "id": conversation })).await;
        app.send_message(&token, &conversation, "say hello through the tool").await;
        let requested = loop {
            let event = device.next_result().await.expect("an event")["data"]["conversationEvents"].clone();
            if event["type"] == "ToolCallRequested" {
                break event;
            }
        };
        assert_eq!(requested["data"]["tool_name"], "echo", "{requested:#}");
        assert_eq!(requested["data"]["status"], "awaiting_approval");
        let call = waiting_call(&app, &token, &conversation, &mut seen).await;
        assert_eq!(call["arguments"], json!({ "message": "hello from the model" }));
        let approve = "mutation($id: ID!) { approveToolCall(id: $id) { status decidedByPolicy } }";
        let approved = seen.ok(&app, &token, approve, json!({ "id": call["id"] })).await;
        assert_eq!(approved["approveToolCall"]["decidedByPolicy"], false);
        wait_until_settled(&app, &token, &conversation).await;
        let (all, _) = calls(&app, &token, &conversation, &mut seen).await;
        assert_eq!(all[0]["status"], "COMPLETED", "{all:#?}");
        assert!(all[0]["result"].as_str().expect("result").contains("hello from the model"), "{all:#?}");
        assert!(last_request_results(&fake).contains("hello from the model"), "the model got the result");
        let data = seen.ok(&app, &token, MESSAGES, json!({ "id": conversation })).await;
        let messages = data["conversation"]["messages"]["edges"].as_array().expect("messages").clone();
        assert_eq!(messages.len(), 3, "question, tool request, answer");
        assert_eq!(messages[2]["node"]["content"], script.reply(), "the final answer streamed");
        let twice = app.graphql(Some(&token), approve, json!({ "id": call["id"] })).await;
        assert_eq!(error_code(&twice), "CONFLICT");

        // Reject: the model reads the reason.
        app.send_message(&token, &conversation, "try again").await;
        let call = waiting_call(&app, &token, &conversation, &mut seen).await;
        let reject =
            "mutation($id: ID!, $reason: String) { rejectToolCall(id: $id, reason: $reason) { status reason } }";
        let rejected = seen.ok(&app, &token, reject, json!({ "id": call["id"], "reason": "not this time" })).await;
        assert_eq!(rejected["rejectToolCall"]["status"], "REJECTED");
        wait_until_settled(&app, &token, &conversation).await;
        assert!(last_request_results(&fake).contains("not this time"), "{}", last_request_results(&fake));

        // Allow: no one is asked.
        let allow = json!({ "input": { "serverId": server, "toolName": "echo", "policy": "ALLOW" } });
        let policy = seen.ok(&app, &token, POLICY, allow).await;
        assert!(
            policy["setToolPolicy"]["tools"]
                .as_array()
                .expect("tools")
                .iter()
                .any(|t| t["name"] == "echo" && t["policy"] == "ALLOW")
        );
        app.send_message(&token, &conversation, "no need to ask").await;
        wait_until_settled(&app, &token, &conversation).await;
        let (all, _) = calls(&app, &token, &conversation, &mut seen).await;
        let last = all.last().expect("a call");
        assert_eq!(
            (last["status"].as_str(), last["decidedByPolicy"].as_bool()),
            (Some("COMPLETED"), Some(true)),
            "{last:#}"
        );

        // Deny: the tool is no longer offered, and a call the model makes anyway is refused.
        let deny = json!({ "input": { "serverId": server, "toolName": "echo", "policy": "DENY" } });
        seen.ok(&app, &token, POLICY, deny).await;
        app.send_message(&token, &conversation, "forbidden").await;
        wait_until_settled(&app, &token, &conversation).await;
        let offered = fake.requests().last().expect("request")["tools"].to_string();
        assert!(!offered.contains("everything__echo") && offered.contains("everything__get-sum"), "{offered}");
        let (all, _) = calls(&app, &token, &conversation, &mut seen).await;
        let last = all.last().expect("a call");
        assert_eq!(last["status"], "REJECTED");
        assert!(last["reason"].as_str().expect("reason").contains("policy"), "{last:#}");

        // The API key is in no event, no response and no log line.
        let mut conn = app.db().conn().await.expect("connection");
        let events = liteskill::storage::event_store::read_all(&mut conn, 0, 100_000).await.expect("events");
        assert!(events.iter().any(|e| e.event_type == "McpServerRegistered"));
        assert!(events.iter().all(|e| !e.payload.to_string().contains("sk-mcp")), "the key is in an event");
        assert!(seen.0.iter().all(|r| !r.contains("sk-mcp")), "the key is in a response");
        let logged = String::from_utf8_lossy(&logs.lock().expect("logs")).into_owned();
        assert!(logged.contains("tool call ended"), "logs are captured");
        assert!(!logged.contains("sk-mcp"), "the key is in the logs");
    }
}

async fn a_pending_approval_survives_a_restart_and_others_see_nothing(app: TestApp) {
    let everything = EverythingServer::start().await;
    let script = Script { tokens: 2, tool_calls: echo("after the restart"), ..Script::default() };
    let (app, fake) = with_tools(app, Wire::OpenAi, script.clone(), &[]).await;
    let mut seen = Seen::default();
    let (token, _) = app.register("owner@example.com").await;
    let server = register_everything(&app, &token, &everything.url, &mut seen).await;
    let conversation = app.create_conversation(&token, "Durable").await;
    app.send_message(&token, &conversation, "use the tool").await;
    let call = waiting_call(&app, &token, &conversation, &mut seen).await;

    // Strangers cannot see the server, nor decide on the call; anonymous callers neither.
    let (stranger, _) = app.register("stranger@example.com").await;
    let listed = app.ok(Some(&stranger), "{ mcpServers { id } }", json!({})).await;
    assert_eq!(listed["mcpServers"], json!([]));
    for (query, variables) in [
        ("query($id: ID!) { mcpServer(id: $id) { name } }", json!({ "id": server })),
        ("mutation($id: ID!) { removeMcpServer(id: $id) }", json!({ "id": server })),
        (
            "mutation($id: ID!) { updateMcpServer(id: $id, input: { name: \"mine\" }) { name } }",
            json!({ "id": server }),
        ),
        ("mutation($id: ID!) { refreshMcpServer(id: $id) { name } }", json!({ "id": server })),
        ("mutation($id: ID!) { approveToolCall(id: $id) { status } }", json!({ "id": call["id"] })),
        ("mutation($id: ID!) { rejectToolCall(id: $id) { status } }", json!({ "id": call["id"] })),
        (POLICY, json!({ "input": { "serverId": server, "policy": "ALLOW" } })),
    ] {
        assert_eq!(error_code(&app.graphql(Some(&stranger), query, variables.clone()).await), "NOT_FOUND", "{query}");
        assert_eq!(error_code(&app.graphql(None, query, variables).await), "UNAUTHENTICATED", "{query}");
    }
    let sharing = json!({ "input": { "name": "shared", "url": everything.url, "shared": true } });
    assert_eq!(error_code(&app.graphql(Some(&stranger), REGISTER, sharing).await), "FORBIDDEN");

    // The approval waits through a restart, and the turn completes after it.
    let mut settings = fake.settings(None);
    settings.push(("MCP_ALLOW_PRIVATE_NETWORKS", "true".to_owned()));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = app.restart(&settings).await;
    let (_, status) = calls(&app, &token, &conversation, &mut seen).await;
    assert_eq!(status, "AWAITING_APPROVAL");
    let remember = "mutation($id: ID!) { approveToolCall(id: $id, remember: TOOL) { status } }";
    seen.ok(&app, &token, remember, json!({ "id": call["id"] })).await;
    wait_until_settled(&app, &token, &conversation).await;
    let (all, _) = calls(&app, &token, &conversation, &mut seen).await;
    assert_eq!(all[0]["status"], "COMPLETED");
    assert!(all[0]["result"].as_str().expect("result").contains("after the restart"), "{all:#?}");
    let servers = app.ok(Some(&token), "{ mcpServers { name tools { name policy } } }", json!({})).await;
    let echo_policy = &servers["mcpServers"][0]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .find(|t| t["name"] == "echo")
        .expect("echo")["policy"];
    assert_eq!(*echo_policy, "ALLOW", "the approval was remembered");

    // Removing the server hides it, and its tools are no longer offered.
    app.ok(Some(&token), "mutation($id: ID!) { removeMcpServer(id: $id) }", json!({ "id": server })).await;
    let gone =
        app.graphql(Some(&token), "query($id: ID!) { mcpServer(id: $id) { name } }", json!({ "id": server })).await;
    assert_eq!(error_code(&gone), "NOT_FOUND");
}

async fn private_addresses_are_refused_unless_allowed(app: TestApp) {
    let (token, _) = app.register("ssrf@example.com").await;
    let before = app.event_count().await;
    for url in [
        "http://127.0.0.1:9/mcp",
        "http://10.1.2.3/mcp",
        "http://[::1]/mcp",
        "http://169.254.169.254/",
        "file:///etc/passwd",
    ] {
        let input = json!({ "input": { "name": "inside", "url": url } });
        let refused = app.graphql(Some(&token), REGISTER, input).await;
        assert_eq!(error_code(&refused), "BAD_USER_INPUT", "{url}: {refused:#}");
    }
    let bad_name =
        app.graphql(Some(&token), REGISTER, json!({ "input": { "name": "a b", "url": "https://example.com" } })).await;
    assert_eq!(error_code(&bad_name), "BAD_USER_INPUT");
    assert_eq!(app.event_count().await, before, "nothing was recorded");
}

async fn a_hanging_or_failing_server_becomes_a_tool_error(app: TestApp) {
    let mut everything = Some(EverythingServer::start().await);
    let calls_made =
        vec![("everything__trigger-long-running-operation".to_owned(), json!({ "duration": 30, "steps": 2 }))];
    let script = Script { tokens: 2, tool_calls: calls_made, ..Script::default() };
    let (app, fake) =
        with_tools(app, Wire::Bedrock, script, &[("TOOL_CALL_TIMEOUT_SECS", "1"), ("MCP_TIMEOUT_SECS", "2")]).await;
    let mut seen = Seen::default();
    let (token, _) = app.register("hang@example.com").await;
    let url = everything.as_ref().expect("server").url.clone();
    let server = register_everything(&app, &token, &url, &mut seen).await;
    app.ok(Some(&token), POLICY, json!({ "input": { "serverId": server, "policy": "ALLOW" } })).await;
    let conversation = app.create_conversation(&token, "Hang").await;

    // A call that outlives the limit is an error the model reads; the turn completes.
    app.send_message(&token, &conversation, "start something long").await;
    wait_until_settled(&app, &token, &conversation).await;
    let (all, _) = calls(&app, &token, &conversation, &mut seen).await;
    assert_eq!((all[0]["status"].as_str(), all[0]["isError"].as_bool()), (Some("COMPLETED"), Some(true)), "{all:#?}");
    assert!(all[0]["result"].as_str().expect("result").contains("within 1s"), "{all:#?}");
    assert!(last_request_results(&fake).contains("within 1s"));

    // A server that went away: the same.
    drop(everything.take());
    app.send_message(&token, &conversation, "again").await;
    wait_until_settled(&app, &token, &conversation).await;
    let (all, _) = calls(&app, &token, &conversation, &mut seen).await;
    let last = all.last().expect("a call");
    assert_eq!(last["isError"], true, "{last:#}");
    let refreshed = app
        .ok(Some(&token), "mutation($id: ID!) { refreshMcpServer(id: $id) { status error } }", json!({ "id": server }))
        .await;
    assert_eq!(refreshed["refreshMcpServer"]["status"], "ERROR", "{refreshed:#}");
}

async fn an_operator_shares_a_stdio_server_with_everyone(app: TestApp) {
    let file = tempfile::NamedTempFile::new().expect("file");
    let command = executable("mcp-server-everything").to_string_lossy().into_owned();
    let yaml = format!("servers:\n  - name: local\n    command: {command:?}\n    args: [stdio]\n");
    std::fs::write(file.path(), yaml).expect("write");
    let path = file.path().to_string_lossy().into_owned();
    let script = Script {
        tokens: 2,
        tool_calls: vec![("local__get-sum".to_owned(), json!({ "a": 2, "b": 40 }))],
        ..Script::default()
    };
    let (app, _fake) = with_tools(app, Wire::OpenAi, script, &[("MCP_SERVERS_FILE", &path)]).await;
    let (token, _) = app.register("anyone@example.com").await;
    let servers =
        app.ok(Some(&token), "{ mcpServers { id name url shared configured status tools { name } } }", json!({})).await;
    let local = &servers["mcpServers"][0];
    assert_eq!(
        (&local["name"], &local["shared"], &local["configured"], &local["url"]),
        (&json!("local"), &json!(true), &json!(true), &Value::Null)
    );
    let id = local["id"].clone();
    let removing =
        app.graphql(Some(&token), "mutation($id: ID!) { removeMcpServer(id: $id) }", json!({ "id": id })).await;
    assert_eq!(error_code(&removing), "FORBIDDEN");
    let conversation = app.create_conversation(&token, "Sum").await;
    app.send_message(&token, &conversation, "add").await;
    let mut seen = Seen::default();
    let call = waiting_call(&app, &token, &conversation, &mut seen).await;
    app.ok(Some(&token), "mutation($id: ID!) { approveToolCall(id: $id) { status } }", json!({ "id": call["id"] }))
        .await;
    wait_until_settled(&app, &token, &conversation).await;
    let (all, _) = calls(&app, &token, &conversation, &mut seen).await;
    assert!(all[0]["result"].as_str().expect("result").contains("42"), "{all:#?}");

    // Cancelling a turn that waits rejects its calls and ends it.
    app.send_message(&token, &conversation, "add again").await;
    let call = waiting_call(&app, &token, &conversation, &mut seen).await;
    let cancel = "mutation($id: ID!) { cancelStream(conversationId: $id) { status } }";
    let cancelled = app.ok(Some(&token), cancel, json!({ "id": conversation })).await;
    assert_eq!(cancelled["cancelStream"]["status"], "ACTIVE");
    let (all, _) = calls(&app, &token, &conversation, &mut seen).await;
    let last = all.iter().find(|c| c["id"] == call["id"]).expect("the call");
    assert_eq!(last["status"], "REJECTED", "{last:#}");
}

on_both_backends!(
    tools_end_to_end_on_both_providers,
    a_pending_approval_survives_a_restart_and_others_see_nothing,
    private_addresses_are_refused_unless_allowed,
    a_hanging_or_failing_server_becomes_a_tool_error,
    an_operator_shares_a_stdio_server_with_everyone,
);
