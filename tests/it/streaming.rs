//! Replies streaming from a model (the fake OpenAI endpoint, over real HTTP) to
//! subscribers over real websockets.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_llm::{BOTH, FakeLlm, Script, Wire, token};
use crate::support::ws::{Protocol, WsClient};
use crate::support::{TestApp, on_both_backends};

const EVENTS: &str = "subscription($id: ID!, $after: String) {
    conversationEvents(conversationId: $id, after: $after) {
        __typename
        ... on HistoryEvent { cursor type version data }
        ... on MessageDelta { cursor messageId seq offset text }
    } }";

const MESSAGES: &str = "query($id: ID!) { conversation(id: $id) { status messages { edges { node {
    id seq role content status error modelId stopReason inputTokens outputTokens timeToFirstTokenMs durationMs } } } } }";

/// An app whose only model is a fake endpoint's, and a signed-in user with a conversation.
async fn with_fake(app: TestApp, wire: Wire, script: Script) -> (TestApp, FakeLlm, String, String) {
    let fake = FakeLlm::start(wire, script).await;
    let settings = fake.settings(None);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = app.restart(&settings).await;
    let (token, _) = app.register(&format!("{wire:?}@example.com").to_lowercase()).await;
    let conversation = app.create_conversation(&token, "Streaming").await;
    (app, fake, token, conversation)
}

async fn subscriber(app: &TestApp, token: &str, conversation: &str, after: Option<&str>) -> WsClient {
    let url = format!("ws://{}/graphql/ws", app.address);
    let (mut client, ack) = WsClient::connect(&url, Protocol::TransportWs, json!({ "token": token })).await;
    assert_eq!(ack, Ok(()));
    client.start("events", EVENTS, json!({ "id": conversation, "after": after })).await;
    client
}

/// Reads events until the reply in flight ends (or `stop` says so).
async fn collect(client: &mut WsClient, mut stop: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
    let mut events = vec![];
    while let Some(result) = client.next_result().await {
        assert!(result.get("errors").is_none(), "{result:#}");
        events.push(result["data"]["conversationEvents"].clone());
        let ended = matches!(
            events.last().and_then(|e| e["type"].as_str()),
            Some("AssistantMessageCompleted" | "AssistantMessageFailed" | "AssistantMessageCancelled")
        );
        if ended || stop(&events) {
            break;
        }
    }
    events
}

fn deltas(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["__typename"] == "MessageDelta").collect()
}

/// The reply text the deltas add up to. Each piece must start exactly where the text so
/// far ends, with a higher number than the last: no gap, no overlap, no duplicate.
fn stitched(events: &[Value]) -> String {
    let mut text = String::new();
    let mut last_seq = 0;
    for delta in deltas(events) {
        let offset = delta["offset"].as_u64().expect("offset") as usize;
        assert_eq!(offset, text.chars().count(), "piece starts where the text ends: {delta}");
        let seq = delta["seq"].as_u64().expect("seq");
        assert!(seq > last_seq, "pieces arrive in order: {delta}");
        last_seq = seq;
        text.push_str(delta["text"].as_str().expect("text"));
    }
    text
}

fn full_reply(tokens: usize) -> String {
    (0..tokens).map(token).collect()
}

async fn reply(app: &TestApp, token: &str, conversation: &str) -> Value {
    let data = app.ok(Some(token), MESSAGES, json!({ "id": conversation })).await;
    let edges = data["conversation"]["messages"]["edges"].as_array().expect("edges").clone();
    edges.last().expect("a reply")["node"].clone()
}

async fn two_devices_see_the_same_stream_on(app: TestApp, wire: Wire) -> TestApp {
    let (app, fake, token, conversation) =
        with_fake(app, wire, Script { tokens: 30, delay: Duration::from_millis(5), ..Script::default() }).await;
    let mut phone = subscriber(&app, &token, &conversation, None).await;
    let mut laptop = subscriber(&app, &token, &conversation, None).await;
    // Both have replayed the conversation's creation before anything new happens.
    let created = |events: &[Value]| events.iter().any(|e| e["type"] == "ConversationCreated");
    collect(&mut phone, created).await;
    collect(&mut laptop, created).await;

    let sent = app.send_message(&token, &conversation, "Tell me a story").await;
    assert!(sent.get("errors").is_none(), "{sent:#}");
    let on_phone = collect(&mut phone, |_| false).await;
    let on_laptop = collect(&mut laptop, |_| false).await;
    assert_eq!(on_phone, on_laptop, "both devices see the same events in the same order");

    let types: Vec<&str> = on_phone.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["UserMessageAdded", "AssistantMessageStarted", "AssistantMessageCompleted"]);
    assert_eq!(deltas(&on_phone).len(), 30);
    let seqs: Vec<u64> = deltas(&on_phone).iter().map(|d| d["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
    assert_eq!(stitched(&on_phone), full_reply(30));

    app.wait_until_idle(&token, &conversation).await;
    let stored = reply(&app, &token, &conversation).await;
    assert_eq!(stored["content"], full_reply(30), "the stored reply is the deltas joined");
    assert_eq!(stored["status"], "COMPLETED");
    assert_eq!(stored["modelId"], "fake-model");
    assert_eq!(stored["stopReason"], if wire == Wire::OpenAi { "stop" } else { "end_turn" });
    assert_eq!((stored["inputTokens"].clone(), stored["outputTokens"].clone()), (json!(11), json!(30)));
    assert!(stored["timeToFirstTokenMs"].as_i64().is_some() && stored["durationMs"].as_i64().is_some());

    let request = &fake.requests()[0];
    assert_eq!(request["model"], "fake-model");
    assert_eq!(request["stream"], true);
    if wire == Wire::Bedrock {
        assert_eq!(request["authorization"], "Bearer bedrock-api-key", "the Bedrock API key is a bearer token");
    }
    assert_eq!(request["messages"], json!([{ "role": "user", "content": "Tell me a story" }]));

    // The next turn sends the whole conversation.
    app.send_and_wait(&token, &conversation, "And then?").await;
    let history = &fake.requests()[1]["messages"];
    assert_eq!(history.as_array().map(Vec::len), Some(3));
    assert_eq!(history[1], json!({ "role": "assistant", "content": full_reply(30) }));
    app
}

async fn resuming_from_a_cursor_delivers_exactly_what_was_missed_on(app: TestApp, wire: Wire) -> TestApp {
    let (app, _fake, token, conversation) =
        with_fake(app, wire, Script { tokens: 40, delay: Duration::from_millis(15), ..Script::default() }).await;
    let mut watcher = subscriber(&app, &token, &conversation, None).await;
    collect(&mut watcher, |events| events.iter().any(|e| e["type"] == "ConversationCreated")).await;
    let mut flaky = subscriber(&app, &token, &conversation, None).await;
    collect(&mut flaky, |events| events.iter().any(|e| e["type"] == "ConversationCreated")).await;

    app.send_message(&token, &conversation, "Count for me").await;
    let before = collect(&mut flaky, |events| deltas(events).len() >= 5).await;
    let cursor = before.last().expect("an event")["cursor"].as_str().expect("cursor").to_owned();
    drop(flaky);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A device joining mid-stream gets the text so far in one piece, then the rest.
    let mut late = subscriber(&app, &token, &conversation, None).await;
    let mut resumed = subscriber(&app, &token, &conversation, Some(&cursor)).await;
    let after = collect(&mut resumed, |_| false).await;
    let everything = collect(&mut watcher, |_| false).await;
    let joined = collect(&mut late, |_| false).await;

    let recorded = |events: &[Value]| -> Vec<Value> {
        events.iter().filter(|e| e["__typename"] == "HistoryEvent").map(|e| e["version"].clone()).collect()
    };
    let mut seen = before.clone();
    seen.extend(after.iter().cloned());
    assert_eq!(recorded(&seen), recorded(&everything), "every recorded event once, in order");
    assert_eq!(stitched(&seen), full_reply(40), "the resumed device has the whole reply");
    assert!(
        deltas(&after).first().is_some_and(|d| d["offset"].as_u64() > Some(0)),
        "it resumed where it left off, not from the start"
    );

    assert_eq!(stitched(&joined), full_reply(40));
    let first = deltas(&joined)[0];
    assert_eq!(first["offset"], 0);
    assert!(first["seq"].as_u64() > Some(1), "the text so far came as one piece: {first}");
    app
}

/// A device that stops reading (a stalled network) while a long reply streams falls
/// behind the channel; when it reads again it is caught up from the log, with no error,
/// no gap and no duplicate, while the device that kept up saw every piece.
async fn a_stalled_subscriber_catches_up_without_holding_anyone_back(app: TestApp) {
    // 12 MB: more than the socket buffers between server and client hold.
    let script = Script { tokens: 3_000, delay: Duration::from_millis(1), padding: 4_000, ..Script::default() };
    let (app, _fake, token, conversation) = with_fake(app, Wire::OpenAi, script.clone()).await;
    let mut stalled = subscriber(&app, &token, &conversation, None).await;
    let mut reader = subscriber(&app, &token, &conversation, None).await;
    let created = |events: &[Value]| events.iter().any(|e| e["type"] == "ConversationCreated");
    collect(&mut stalled, created).await;
    collect(&mut reader, created).await;

    app.send_message(&token, &conversation, "A long one, please").await;
    let kept_up = collect(&mut reader, |_| false).await;
    assert_eq!(stitched(&kept_up), script.reply(), "the reader saw every piece");
    app.wait_until_idle(&token, &conversation).await;

    let caught_up = collect(&mut stalled, |_| false).await;
    let recorded: Vec<&Value> = caught_up.iter().filter(|e| e["__typename"] == "HistoryEvent").collect();
    let types: Vec<&str> = recorded.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["UserMessageAdded", "AssistantMessageStarted", "AssistantMessageCompleted"]);
    assert!(deltas(&caught_up).len() < 3_000, "it did fall behind: {} pieces", deltas(&caught_up).len());
    assert!(script.reply().starts_with(&stitched(&caught_up)), "the pieces it got have no gap");
    assert_eq!(recorded[2]["data"]["text"], script.reply(), "the end event holds the whole reply");
}

async fn cancelling_keeps_the_partial_text_on(app: TestApp, wire: Wire) -> TestApp {
    let (app, fake, token, conversation) =
        with_fake(app, wire, Script { tokens: 500, delay: Duration::from_millis(10), ..Script::default() }).await;
    let mut device = subscriber(&app, &token, &conversation, None).await;
    app.send_message(&token, &conversation, "Go on forever").await;
    collect(&mut device, |events| deltas(events).len() >= 3).await;

    let cancelled = app
        .ok(
            Some(&token),
            "mutation($id: ID!) { cancelStream(conversationId: $id) { status } }",
            json!({ "id": conversation }),
        )
        .await;
    assert_eq!(cancelled["cancelStream"]["status"], "ACTIVE");
    let rest = collect(&mut device, |_| false).await;
    assert_eq!(rest.last().expect("end")["type"], "AssistantMessageCancelled");

    let stored = reply(&app, &token, &conversation).await;
    assert_eq!(stored["status"], "CANCELLED");
    let partial = stored["content"].as_str().expect("content");
    assert!(!partial.is_empty() && full_reply(500).starts_with(partial) && partial.len() < full_reply(500).len());

    fake.set_script(Script { tokens: 3, ..Script::default() });
    app.send_and_wait(&token, &conversation, "Shorter, please").await;
    assert_eq!(reply(&app, &token, &conversation).await["content"], full_reply(3), "usable after a cancel");
    app
}

async fn an_upstream_failure_keeps_the_partial_text_on(app: TestApp, wire: Wire) -> TestApp {
    let (app, fake, token, conversation) =
        with_fake(app, wire, Script { tokens: 50, cut_after: Some(7), ..Script::default() }).await;
    app.send_and_wait(&token, &conversation, "Hello").await;
    let stored = reply(&app, &token, &conversation).await;
    assert_eq!(stored["status"], "FAILED");
    assert_eq!(stored["content"], full_reply(7));
    assert!(stored["error"].as_str().is_some_and(|e| !e.is_empty()), "{stored}");

    fake.set_script(Script { tokens: 2, fail_first: Some((1, 401)), ..Script::default() });
    app.send_and_wait(&token, &conversation, "Again").await;
    let stored = reply(&app, &token, &conversation).await;
    assert_eq!(stored["status"], "FAILED", "a 401 is not retried");
    assert!(stored["error"].as_str().is_some_and(|e| e.contains("401")), "{stored}");
    assert_eq!(stored["content"], "");
    app
}

async fn transient_failures_before_the_first_token_are_retried_on(app: TestApp, wire: Wire) -> TestApp {
    let (app, fake, token, conversation) =
        with_fake(app, wire, Script { tokens: 4, fail_first: Some((2, 503)), ..Script::default() }).await;
    app.send_and_wait(&token, &conversation, "Hello").await;
    let stored = reply(&app, &token, &conversation).await;
    assert_eq!(stored["status"], "COMPLETED", "{stored}");
    assert_eq!(stored["content"], full_reply(4));
    assert_eq!(fake.requests().len(), 3, "two failures, then success");
    app
}

async fn strangers_cannot_subscribe(app: TestApp) {
    let (owner, _) = app.register("owner@example.com").await;
    let (stranger, _) = app.register("stranger@example.com").await;
    let conversation = app.create_conversation(&owner, "Private").await;
    let mut client = subscriber(&app, &stranger, &conversation, None).await;
    let result = client.next_result().await.expect("an answer");
    assert_eq!(result["errors"][0]["extensions"]["code"], "NOT_FOUND", "{result:#}");
    let bad = app.graphql(Some(&owner), EVENTS, json!({ "id": conversation })).await;
    assert!(bad.get("errors").is_some(), "subscriptions need a websocket");
}

/// Runs a server process mid-reply and stops it with `signal`; returns the app restarted
/// on the same database (with `REPLY_STALE_SECS=1`), the fake, the user's token and the
/// conversation.
async fn stop_mid_reply(app: TestApp, wire: Wire, signal: &str) -> (TestApp, FakeLlm, String, String) {
    let fake =
        FakeLlm::start(wire, Script { tokens: 1000, delay: Duration::from_millis(10), ..Script::default() }).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("address").port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_liteskill"))
        .envs(fake.settings(None))
        .env("DATABASE_URL", app.database().url())
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start liteskill");
    let graphql = |token: Option<String>, query: &'static str, variables: Value| {
        let request = app
            .http
            .post(format!("http://127.0.0.1:{port}/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await?.json::<Value>().await }
    };
    let email = format!("stop-{signal}-{wire:?}@example.com").to_lowercase();
    let register = "mutation($email: String!) { register(input: { email: $email, password: \"correct horse battery\", name: \"Ada\" }) { token } }";
    let mut registered = None;
    for _ in 0..100 {
        if let Ok(body) = graphql(None, register, json!({ "email": email })).await {
            registered = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token =
        registered.expect("the server answers")["data"]["register"]["token"].as_str().expect("token").to_owned();
    let created = graphql(Some(token.clone()), "mutation { createConversation(input: {}) { id } }", json!({}))
        .await
        .expect("create");
    let conversation = created["data"]["createConversation"]["id"].as_str().expect("id").to_owned();
    let send = "mutation($id: ID!) { sendMessage(input: { conversationId: $id, content: \"Talk\" }) { id } }";
    graphql(Some(token.clone()), send, json!({ "id": conversation })).await.expect("send");
    // Long enough for a few tokens and a checkpoint.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let signalled = std::process::Command::new("kill").args([signal, &server.id().to_string()]).status().expect("kill");
    assert!(signalled.success());
    let _ = server.wait();

    let mut settings = fake.settings(None);
    settings.push(("REPLY_STALE_SECS", "1".to_owned()));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (app.restart(&settings).await, fake, token, conversation)
}

/// A server killed mid-reply leaves the conversation streaming; the next server closes
/// the reply as failed with the text that was saved, and the conversation is usable.
async fn a_reply_cut_off_by_a_crash_is_closed_with_its_text_on(app: TestApp, wire: Wire) -> TestApp {
    let (app, fake, token, conversation) = stop_mid_reply(app, wire, "-KILL").await;
    app.wait_until_idle(&token, &conversation).await;
    let stored = reply(&app, &token, &conversation).await;
    assert_eq!(stored["status"], "FAILED", "{stored}");
    assert!(stored["error"].as_str().is_some_and(|e| e.contains("interrupted")), "{stored}");
    let partial = stored["content"].as_str().expect("content");
    assert!(!partial.is_empty() && full_reply(1000).starts_with(partial), "the saved text is kept: {partial:?}");

    fake.set_script(Script { tokens: 3, ..Script::default() });
    app.send_and_wait(&token, &conversation, "Are you back?").await;
    assert_eq!(reply(&app, &token, &conversation).await["content"], full_reply(3), "usable again");
    app
}

/// Each scenario runs against both wire protocols in turn, on one database.
macro_rules! on_each_wire {
    ($($name:ident => $scenario:ident),* $(,)?) => {$(
        async fn $name(app: TestApp) {
            let mut app = app;
            for wire in BOTH {
                app = $scenario(app, wire).await;
            }
        }
    )*};
}

/// A server told to stop (SIGTERM) closes the reply it was streaming itself, with all
/// the text it had, before it exits.
async fn a_reply_streaming_at_shutdown_is_closed_with_its_text_on(app: TestApp, wire: Wire) -> TestApp {
    let (app, _fake, token, conversation) = stop_mid_reply(app, wire, "-TERM").await;
    let stored = reply(&app, &token, &conversation).await;
    assert_eq!(stored["status"], "FAILED", "closed before the server exited: {stored}");
    assert!(stored["error"].as_str().is_some_and(|e| e.contains("shut down")), "{stored}");
    let partial = stored["content"].as_str().expect("content");
    assert!(!partial.is_empty() && full_reply(1000).starts_with(partial), "{partial:?}");
    app
}

on_each_wire!(
    a_reply_streaming_at_shutdown_is_closed_with_its_text => a_reply_streaming_at_shutdown_is_closed_with_its_text_on,
    two_devices_see_the_same_stream => two_devices_see_the_same_stream_on,
    resuming_from_a_cursor_delivers_exactly_what_was_missed => resuming_from_a_cursor_delivers_exactly_what_was_missed_on,
    cancelling_keeps_the_partial_text => cancelling_keeps_the_partial_text_on,
    an_upstream_failure_keeps_the_partial_text => an_upstream_failure_keeps_the_partial_text_on,
    transient_failures_before_the_first_token_are_retried => transient_failures_before_the_first_token_are_retried_on,
    a_reply_cut_off_by_a_crash_is_closed_with_its_text => a_reply_cut_off_by_a_crash_is_closed_with_its_text_on,
);

on_both_backends!(
    a_reply_cut_off_by_a_crash_is_closed_with_its_text,
    a_reply_streaming_at_shutdown_is_closed_with_its_text,
    two_devices_see_the_same_stream,
    resuming_from_a_cursor_delivers_exactly_what_was_missed,
    cancelling_keeps_the_partial_text,
    an_upstream_failure_keeps_the_partial_text,
    transient_failures_before_the_first_token_are_retried,
    strangers_cannot_subscribe,
    viewer_events_follow_the_conversation_list,
    a_stalled_subscriber_catches_up_without_holding_anyone_back,
);

const VIEWER_EVENTS: &str =
    "subscription($after: String) { viewerEvents(after: $after) { cursor type conversationId data } }";

async fn viewer_events_follow_the_conversation_list(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let (other, _) = app.register("bob@example.com").await;
    let url = format!("ws://{}/graphql/ws", app.address);
    let (mut device, ack) = WsClient::connect(&url, Protocol::TransportWs, json!({ "token": token })).await;
    assert_eq!(ack, Ok(()));
    device.start("list", VIEWER_EVENTS, json!({})).await;
    // The subscription is live once the server has acknowledged it; give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let first = app.create_conversation(&token, "First").await;
    app.create_conversation(&other, "Not yours").await;
    let rename = "mutation($id: ID!, $title: String!) { renameConversation(id: $id, title: $title) { id } }";
    app.ok(Some(&token), rename, json!({ "id": first, "title": "Renamed" })).await;

    let created = device.next_result().await.expect("an event")["data"]["viewerEvents"].clone();
    assert_eq!(
        (created["type"].as_str(), created["conversationId"].as_str()),
        (Some("ConversationCreated"), Some(first.as_str()))
    );
    let renamed = device.next_result().await.expect("an event")["data"]["viewerEvents"].clone();
    assert_eq!(renamed["type"], "ConversationRenamed", "the other user's conversation never shows: {renamed}");
    let cursor = renamed["cursor"].as_str().expect("cursor").to_owned();
    drop(device);

    // Changes made while disconnected arrive on resuming from the last cursor.
    app.ok(Some(&token), "mutation($id: ID!) { archiveConversation(id: $id) { id } }", json!({ "id": first })).await;
    let second = app.create_conversation(&token, "Second").await;
    let (mut device, _) = WsClient::connect(&url, Protocol::TransportWs, json!({ "token": token })).await;
    device.start("list", VIEWER_EVENTS, json!({ "after": cursor })).await;
    let mut missed = vec![];
    for _ in 0..2 {
        let event = device.next_result().await.expect("an event")["data"]["viewerEvents"].clone();
        missed.push((event["type"].as_str().map(str::to_owned), event["conversationId"].as_str().map(str::to_owned)));
    }
    assert_eq!(
        missed,
        [
            (Some("ConversationArchived".to_owned()), Some(first.clone())),
            (Some("ConversationCreated".to_owned()), Some(second.clone()))
        ]
    );
}

/// On PostgreSQL the readable end of the log waits for every transaction still running
/// on the server, in any database. Subscribing "from now" meanwhile must not replay what
/// had already committed. (SQLite has a single writer: nothing to hold back.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_now_replays_nothing_while_another_transaction_runs() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let Some(database) = crate::support::TestDb::postgres().await else { return };
    let app = TestApp::start(database).await;
    let (token, _) = app.register("ada@example.com").await;
    let server = std::env::var("TEST_DATABASE_URL").expect("set, or there would be no database");
    let mut elsewhere = AsyncPgConnection::establish(&server).await.expect("connect");
    elsewhere.batch_execute("BEGIN; SELECT pg_current_xact_id();").await.expect("a running transaction");
    let id = app.create_conversation(&token, "Before").await;

    let url = format!("ws://{}/graphql/ws", app.address);
    let (mut device, _) = WsClient::connect(&url, Protocol::TransportWs, json!({ "token": token })).await;
    device.start("list", VIEWER_EVENTS, json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    elsewhere.batch_execute("COMMIT").await.expect("commit");
    let rename = "mutation($id: ID!) { renameConversation(id: $id, title: \"After\") { id } }";
    app.ok(Some(&token), rename, json!({ "id": id })).await;
    let first = device.next_result().await.expect("an event")["data"]["viewerEvents"].clone();
    assert_eq!(first["type"], "ConversationRenamed", "the creation had committed before subscribing: {first}");
}

/// Two instances A and B on one PostgreSQL database (none without `TEST_DATABASE_URL`),
/// a fake model scripted by `script`, a user's token and conversation, and a device on B
/// that has replayed the conversation's creation and whose instance listens to A.
async fn two_instances(script: Script) -> Option<(FakeLlm, TestApp, TestApp, String, String, WsClient)> {
    let database = crate::support::TestDb::postgres().await?;
    let fake = FakeLlm::start(Wire::OpenAi, script).await;
    let settings = fake.settings(None);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = TestApp::start_with(database, &settings).await;
    let b = a.another_instance(&settings).await;
    let (token, _) = a.register("ada@example.com").await;
    let conversation = a.create_conversation(&token, "Across").await;
    let mut on_b = subscriber(&b, &token, &conversation, None).await;
    collect(&mut on_b, |events| events.iter().any(|e| e["type"] == "ConversationCreated")).await;
    // LISTEN takes effect asynchronously on B; give it a moment before producing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Some((fake, a, b, token, conversation, on_b))
}

/// Two instances share one PostgreSQL database: a device on one sees a reply streamed
/// by the other, every recorded event and every piece.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_relay_streams_to_each_other() {
    let script = Script { tokens: 30, delay: Duration::from_millis(5), ..Script::default() };
    let Some((_fake, a, _b, token, conversation, mut on_b)) = two_instances(script).await else { return };
    a.send_message(&token, &conversation, "Hello from A").await;
    let seen = collect(&mut on_b, |_| false).await;
    let types: Vec<&str> = seen.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["UserMessageAdded", "AssistantMessageStarted", "AssistantMessageCompleted"]);
    assert_eq!(stitched(&seen), full_reply(30), "every piece crossed over");
}

/// A device joins, on another instance, a reply already streaming: it gets the text so
/// far (from the saved checkpoint), then every later piece, with no gap and no overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_mid_stream_on_another_instance_misses_nothing() {
    let script = Script { tokens: 50, delay: Duration::from_millis(50), ..Script::default() };
    let Some((_fake, a, b, token, conversation, mut on_b)) = two_instances(script).await else { return };
    a.send_message(&token, &conversation, "Hello from A").await;
    // Join after at least one checkpoint (saved every second), between two of them.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let mut late = subscriber(&b, &token, &conversation, None).await;
    let seen = collect(&mut late, |_| false).await;
    let first = deltas(&seen).first().map(|d| d["seq"].as_u64().expect("seq")).expect("a delta");
    assert!(first > 1, "the first delta catches up on the text so far: {seen:#?}");
    assert_eq!(stitched(&seen), full_reply(50));
    let early = collect(&mut on_b, |_| false).await;
    assert_eq!(stitched(&early), full_reply(50), "the device there from the start saw every piece");
}
