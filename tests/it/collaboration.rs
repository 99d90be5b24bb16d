//! Forks, edits and regenerations as branches; sharing with users and groups; search.

use serde_json::{Value, json};

use crate::rebuild::rebuild_reproduces;
use crate::support::fake_llm::{FakeLlm, Script, Wire};
use crate::support::ws::{Protocol, WsClient};
use crate::support::{TestApp, error_code, on_both_backends};

const MESSAGES: &str = "query($id: ID!) { conversation(id: $id) { messageCount forkedFrom { id } forkedAtMessageId
    messages(first: 100) { edges { node { id seq role content } } } } }";
const FORK: &str =
    "mutation($id: ID!, $at: ID!) { forkConversation(input: { conversationId: $id, atMessageId: $at }) { id } }";
pub(crate) const GRANT: &str = "mutation($id: ID!, $user: ID, $group: ID, $role: GrantRole!) {
    grantAccess(input: { conversationId: $id, userId: $user, groupId: $group, role: $role }) { id } }";
const EVENTS: &str = "subscription($id: ID!) { conversationEvents(conversationId: $id) {
    ... on HistoryEvent { type } ... on MessageDelta { text } } }";

async fn messages(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let data = app.ok(Some(token), MESSAGES, json!({ "id": id })).await;
    let edges = data["conversation"]["messages"]["edges"].as_array().expect("edges").clone();
    edges.into_iter().map(|e| e["node"].clone()).collect()
}

async fn fork(app: &TestApp, token: &str, id: &str, at: &Value) -> String {
    let data = app.ok(Some(token), FORK, json!({ "id": id, "at": at })).await;
    data["forkConversation"]["id"].as_str().expect("id").to_owned()
}

async fn forks_share_history_without_copying(app: TestApp) {
    let fake = FakeLlm::start(Wire::OpenAi, Script { tokens: 3, ..Script::default() }).await;
    let settings = fake.settings(None);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = app.restart(&settings).await;
    let (alice, _) = app.register("alice@example.com").await;
    let source = app.create_conversation(&alice, "Source").await;
    for text in ["first question", "second question", "third question"] {
        app.send_and_wait(&alice, &source, text).await;
    }
    let original = messages(&app, &alice, &source).await;
    assert_eq!(original.len(), 6);
    let events_before = app.event_count().await;

    // Fork at message 3 of 6: exactly the first three, and one event, not one per message.
    let forked = fork(&app, &alice, &source, &original[2]["id"]).await;
    assert_eq!(app.event_count().await, events_before + 1, "forking copies nothing");
    assert_eq!(messages(&app, &alice, &forked).await, original[..3]);
    let data = app.ok(Some(&alice), MESSAGES, json!({ "id": forked })).await;
    assert_eq!(data["conversation"]["forkedFrom"]["id"], json!(source));
    assert_eq!(data["conversation"]["forkedAtMessageId"], original[2]["id"]);
    assert_eq!(data["conversation"]["messageCount"], 3);
    let forks = app
        .ok(
            Some(&alice),
            "query($id: ID!) { conversation(id: $id) { forks { edges { node { id } } } } }",
            json!({ "id": source }),
        )
        .await;
    assert_eq!(forks["conversation"]["forks"]["edges"][0]["node"]["id"], json!(forked));

    // Sending in the fork leaves the source as it was; the model gets the inherited history.
    app.send_and_wait(&alice, &forked, "a different direction").await;
    let in_fork = messages(&app, &alice, &forked).await;
    assert_eq!(in_fork.len(), 5);
    assert_eq!((in_fork[3]["seq"].clone(), in_fork[3]["content"].clone()), (json!(4), json!("a different direction")));
    assert_eq!(messages(&app, &alice, &source).await, original);
    let sent = fake.requests().last().expect("a request")["messages"].to_string();
    for inherited in ["first question", "second question", "a different direction"] {
        assert!(sent.contains(inherited), "{inherited} missing from {sent}");
    }
    assert!(!sent.contains("third question"), "{sent}");

    // Forks of forks: inside the inherited part, and after it.
    let early = fork(&app, &alice, &forked, &original[1]["id"]).await;
    assert_eq!(messages(&app, &alice, &early).await, original[..2]);
    let late = fork(&app, &alice, &forked, &in_fork[3]["id"]).await;
    assert_eq!(messages(&app, &alice, &late).await, in_fork[..4]);
    let body = app.graphql(Some(&alice), FORK, json!({ "id": early, "at": original[4]["id"] })).await;
    assert_eq!(error_code(&body), "NOT_FOUND", "a message outside the history: {body:#}");

    // Edit and regenerate branch; the original stays intact.
    let edit = "mutation($m: ID!) { editMessage(input: { messageId: $m, content: \"second, rephrased\" }) {
        conversation { id forkedFrom { id } } message { seq content } } }";
    let edited = app.ok(Some(&alice), edit, json!({ "m": original[2]["id"] })).await["editMessage"].clone();
    assert_eq!(edited["message"], json!({ "seq": 3, "content": "second, rephrased" }));
    assert_eq!(edited["conversation"]["forkedFrom"]["id"], json!(source));
    let branch = edited["conversation"]["id"].as_str().expect("id").to_owned();
    app.wait_until_idle(&alice, &branch).await;
    let in_branch = messages(&app, &alice, &branch).await;
    assert_eq!(in_branch[..2], original[..2]);
    assert_eq!(in_branch.len(), 4);
    let regenerate = "mutation($m: ID!, $c: ID) { regenerateResponse(input: { messageId: $m, conversationId: $c }) {
        conversation { id } message { seq role } } }";
    // The reply as seen in the fork that inherits it.
    let again = app.ok(Some(&alice), regenerate, json!({ "m": original[1]["id"], "c": forked })).await;
    assert_eq!(again["regenerateResponse"]["message"], json!({ "seq": 2, "role": "ASSISTANT" }));
    let regenerated = again["regenerateResponse"]["conversation"]["id"].as_str().expect("id").to_owned();
    app.wait_until_idle(&alice, &regenerated).await;
    let in_regenerated = messages(&app, &alice, &regenerated).await;
    assert_eq!((in_regenerated.len(), &in_regenerated[0]), (2, &original[0]));
    assert_ne!(in_regenerated[1]["id"], original[1]["id"]);
    let body = app.graphql(Some(&alice), regenerate, json!({ "m": original[0]["id"], "c": null })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "a user's message is edited, not regenerated");
    assert_eq!(messages(&app, &alice, &source).await, original);
    assert_eq!(messages(&app, &alice, &forked).await, in_fork);
    rebuild_reproduces(&app).await;
}

async fn subscribe(app: &TestApp, token: &str, id: &str) -> WsClient {
    let url = format!("ws://{}/graphql/ws", app.address);
    let (mut client, ack) = WsClient::connect(&url, Protocol::TransportWs, json!({ "token": token })).await;
    assert_eq!(ack, Ok(()));
    client.start("events", EVENTS, json!({ "id": id })).await;
    client
}

/// Waits for the subscription to end with an error and returns its code.
async fn ended_with(client: &mut WsClient) -> String {
    loop {
        let payload = tokio::time::timeout(std::time::Duration::from_secs(10), client.next_result())
            .await
            .expect("the subscription ends in time")
            .expect("an error before the end");
        if payload.get("errors").is_some() {
            return error_code(&payload).to_owned();
        }
    }
}

const READ: &str = "query($id: ID!) { conversation(id: $id) { title viewerRole } }";

async fn sharing_with_people_and_groups(app: TestApp) {
    let (alice, _) = app.register("alice@example.com").await;
    let (bob, _) = app.register("bob@example.com").await;
    let (carol, _) = app.register("carol@example.com").await;
    let id = app.create_conversation(&alice, "Shared").await;
    app.send_and_wait(&alice, &id, "the plan").await;
    let found = app.ok(Some(&alice), "query { findUser(email: \"BOB@example.com\") { id name } }", json!({})).await;
    let bob_id = found["findUser"]["id"].clone();
    assert!(
        app.ok(Some(&alice), "query { findUser(email: \"nobody@example.com\") { id } }", json!({})).await["findUser"]
            .is_null()
    );

    // Viewer: reads, subscribes, may fork; cannot write.
    let url = format!("ws://{}/graphql/ws", app.address);
    let (mut sidebar, _) = WsClient::connect(&url, Protocol::TransportWs, json!({ "token": bob })).await;
    sidebar.start("sidebar", "subscription { viewerEvents { type conversationId } }", json!({})).await;
    // Without `after`, the subscription starts at the end of the log as it is when the
    // server first runs it; the protocol does not acknowledge that moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(error_code(&app.graphql(Some(&bob), READ, json!({ "id": id })).await), "NOT_FOUND");
    app.ok(Some(&alice), GRANT, json!({ "id": id, "user": bob_id, "role": "VIEWER" })).await;
    let shared = sidebar.next_result().await.expect("an event");
    assert_eq!(shared["data"]["viewerEvents"], json!({ "type": "AccessGranted", "conversationId": id }));
    assert_eq!(app.ok(Some(&bob), READ, json!({ "id": id })).await["conversation"]["viewerRole"], "VIEWER");
    let owner = "query($id: ID!) { conversation(id: $id) { owner { email } } }";
    assert_eq!(
        app.ok(Some(&bob), owner, json!({ "id": id })).await["conversation"]["owner"]["email"],
        "alice@example.com"
    );
    let listed = app.ok(Some(&bob), "{ conversations { edges { node { id } } } }", json!({})).await;
    assert_eq!(listed["conversations"]["edges"][0]["node"]["id"], json!(id));
    assert_eq!(error_code(&app.send_message(&bob, &id, "may I?").await), "FORBIDDEN");
    let rename = "mutation($id: ID!) { renameConversation(id: $id, title: \"Mine\") { id } }";
    assert_eq!(error_code(&app.graphql(Some(&bob), rename, json!({ "id": id })).await), "FORBIDDEN");
    let first = messages(&app, &bob, &id).await[0]["id"].clone();
    let bobs_fork = fork(&app, &bob, &id, &first).await;
    assert_eq!(error_code(&app.graphql(Some(&alice), READ, json!({ "id": bobs_fork })).await), "NOT_FOUND", "private");

    // Editor: sends.
    app.ok(Some(&alice), GRANT, json!({ "id": id, "user": bob_id, "role": "EDITOR" })).await;
    assert!(app.send_and_wait(&bob, &id, "my turn").await.get("errors").is_none());
    let access = app
        .ok(
            Some(&bob),
            "query($id: ID!) { conversation(id: $id) { access { user { email } role } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(access["conversation"]["access"], json!([{ "user": { "email": "bob@example.com" }, "role": "EDITOR" }]));

    // Revoked: the live subscription ends, reads are NOT_FOUND; the private fork stays.
    let mut watching = subscribe(&app, &bob, &id).await;
    let revoke = "mutation($id: ID!, $user: ID) { revokeAccess(input: { conversationId: $id, userId: $user }) { id } }";
    app.ok(Some(&alice), revoke, json!({ "id": id, "user": bob_id })).await;
    assert_eq!(ended_with(&mut watching).await, "NOT_FOUND");
    assert_eq!(error_code(&app.graphql(Some(&bob), READ, json!({ "id": id })).await), "NOT_FOUND");
    assert_eq!(messages(&app, &bob, &bobs_fork).await[0]["content"], "the plan");

    // Through a group: Carol reads while a member; removed, her subscription ends.
    let group = app.ok(Some(&alice), "mutation { createGroup(name: \"Team\") { id } }", json!({})).await["createGroup"]
        ["id"]
        .clone();
    let carol_id = app.ok(Some(&alice), "query { findUser(email: \"carol@example.com\") { id } }", json!({})).await["findUser"]["id"].clone();
    let member = json!({ "input": { "groupId": group, "userId": carol_id } });
    let add = "mutation($input: GroupMemberInput!) { addGroupMember(input: $input) { members { email } } }";
    let remove = "mutation($input: GroupMemberInput!) { removeGroupMember(input: $input) { id } }";
    let added = app.ok(Some(&alice), add, member.clone()).await;
    assert_eq!(added["addGroupMember"]["members"], json!([{ "email": "carol@example.com" }]));
    app.ok(Some(&alice), GRANT, json!({ "id": id, "group": group, "role": "VIEWER" })).await;
    assert_eq!(app.ok(Some(&carol), READ, json!({ "id": id })).await["conversation"]["viewerRole"], "VIEWER");
    assert_eq!(error_code(&app.send_message(&carol, &id, "hello").await), "FORBIDDEN");
    assert_eq!(error_code(&app.graphql(Some(&carol), add, member.clone()).await), "FORBIDDEN", "members do not manage");
    let group_query = "query($id: ID!) { group(id: $id) { name creator { email } createdAt } }";
    let seen = app.ok(Some(&carol), group_query, json!({ "id": group })).await;
    assert_eq!(
        (&seen["group"]["name"], &seen["group"]["creator"]["email"]),
        (&json!("Team"), &json!("alice@example.com"))
    );
    assert!(seen["group"]["createdAt"].as_str().is_some_and(|at| at.starts_with("20")), "{seen}");
    assert_eq!(error_code(&app.graphql(Some(&bob), group_query, json!({ "id": group })).await), "NOT_FOUND");
    let mut watching = subscribe(&app, &carol, &id).await;
    app.ok(Some(&alice), remove, member.clone()).await;
    assert_eq!(ended_with(&mut watching).await, "NOT_FOUND");
    assert_eq!(error_code(&app.graphql(Some(&carol), READ, json!({ "id": id })).await), "NOT_FOUND");

    // Back in the group, then leaving: out, although the group keeps its access.
    app.ok(Some(&alice), add, member.clone()).await;
    app.ok(Some(&carol), READ, json!({ "id": id })).await;
    let leave = "mutation($id: ID!) { leaveConversation(conversationId: $id) }";
    app.ok(Some(&carol), leave, json!({ "id": id })).await;
    assert_eq!(error_code(&app.graphql(Some(&carol), READ, json!({ "id": id })).await), "NOT_FOUND");
    assert_eq!(error_code(&app.graphql(Some(&alice), leave, json!({ "id": id })).await), "BAD_USER_INPUT");
    rebuild_reproduces(&app).await;
}

const SEARCH: &str = "query($q: String!) { searchMessages(query: $q) { edges { node {
    message { content } conversation { id } snippet { text highlighted } score } } } }";

async fn search(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let data = app.ok(Some(token), SEARCH, json!({ "q": query })).await;
    data["searchMessages"]["edges"].as_array().expect("edges").iter().map(|e| e["node"].clone()).collect()
}

async fn search_finds_what_the_viewer_may_read(app: TestApp) {
    let (alice, _) = app.register("alice@example.com").await;
    let (bob, bob_id) = app.register("bob@example.com").await;
    let id = app.create_conversation(&alice, "Search").await;
    app.send_and_wait(&alice, &id, "We keep running the quarterly planning meeting").await;
    app.send_and_wait(&alice, &id, "Nothing to see here").await;

    // The demo model's reply quotes the message: both match.
    let by_stem = search(&app, &alice, "runs").await;
    assert_eq!(by_stem.len(), 2, "{by_stem:#?}");
    assert_eq!(by_stem[0]["conversation"]["id"], json!(id));
    assert!(by_stem[0]["snippet"].as_array().expect("spans").iter().any(|s| s["highlighted"] == true));
    assert_eq!(search(&app, &alice, "quarter").await.len(), 2, "by prefix");
    assert_eq!(search(&app, &alice, "quarterly meetings").await.len(), 2, "every word, stemmed");
    assert!(search(&app, &alice, "quarterly elephants").await.is_empty());
    assert!(search(&app, &bob, "quarterly").await.is_empty(), "not Bob's to read");
    let body = app.graphql(Some(&alice), SEARCH, json!({ "q": " *** " })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");

    // Shared, then forked by Bob: found through the fork once the share is gone.
    app.ok(Some(&alice), GRANT, json!({ "id": id, "user": bob_id, "role": "VIEWER" })).await;
    assert_eq!(search(&app, &bob, "quarterly").await.len(), 2);
    let first = messages(&app, &bob, &id).await[0]["id"].clone();
    let bobs = fork(&app, &bob, &id, &first).await;
    let revoke = "mutation($id: ID!, $user: ID) { revokeAccess(input: { conversationId: $id, userId: $user }) { id } }";
    app.ok(Some(&alice), revoke, json!({ "id": id, "user": bob_id })).await;
    let through_fork = search(&app, &bob, "planning").await;
    assert_eq!(through_fork.len(), 1, "only the message inherited: {through_fork:#?}");
    assert_eq!(through_fork[0]["conversation"]["id"], json!(bobs));
    assert!(search(&app, &bob, "nothing").await.is_empty(), "beyond the fork point");

    let before: Vec<Vec<Value>> = vec![search(&app, &alice, "planning").await, search(&app, &bob, "planning").await];
    rebuild_reproduces(&app).await;
    let after: Vec<Vec<Value>> = vec![search(&app, &alice, "planning").await, search(&app, &bob, "planning").await];
    assert_eq!(before, after, "the index is rebuilt with the projections");
    assert_eq!(after[0].len(), 2);
}

on_both_backends!(
    forks_share_history_without_copying,
    sharing_with_people_and_groups,
    search_finds_what_the_viewer_may_read
);
