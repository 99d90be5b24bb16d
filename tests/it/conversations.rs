//! Conversations and messages through the GraphQL API.

use serde_json::{Value, json};

use crate::support::{TestApp, error_code, on_both_backends};

const MESSAGES: &str = "query($id: ID!, $first: Int, $after: String) { conversation(id: $id) {
    id title messageCount status
    messages(first: $first, after: $after) { edges { cursor node { seq role content authorId status modelId } } pageInfo { hasNextPage endCursor } }
} }";

async fn messages_come_back_in_order_with_cursors(app: TestApp) {
    let (token, user_id) = app.register("ada@example.com").await;
    let id = app.create_conversation(&token, "Plans").await;
    for text in ["first", "second", "third"] {
        let sent = app.send_and_wait(&token, &id, text).await;
        assert_eq!(sent["data"]["sendMessage"]["content"], text, "{sent:#}");
    }
    let data = app.ok(Some(&token), MESSAGES, json!({ "id": id })).await;
    let conversation = &data["conversation"];
    assert_eq!(conversation["messageCount"], 6, "each message has its reply");
    let edges = conversation["messages"]["edges"].as_array().expect("edges");
    let user_messages: Vec<&str> = edges
        .iter()
        .filter(|e| e["node"]["role"] == "USER")
        .map(|e| e["node"]["content"].as_str().expect("content"))
        .collect();
    assert_eq!(user_messages, ["first", "second", "third"]);
    assert_eq!(edges[0]["node"]["authorId"], user_id.as_str());
    for (n, edge) in edges.iter().enumerate() {
        assert_eq!(edge["node"]["seq"], n + 1);
        let role = if n % 2 == 0 { "USER" } else { "ASSISTANT" };
        assert_eq!(edge["node"]["role"], role);
        assert_eq!(edge["node"]["status"], "COMPLETED");
    }
    assert_eq!(edges[1]["node"]["modelId"], "demo");
    assert!(edges[1]["node"]["content"].as_str().is_some_and(|c| c.contains("demo") && c.contains("first")));

    let page = app.ok(Some(&token), MESSAGES, json!({ "id": id, "first": 4 })).await;
    let messages = &page["conversation"]["messages"];
    assert_eq!(messages["edges"].as_array().map(Vec::len), Some(4));
    assert_eq!(messages["pageInfo"]["hasNextPage"], true);
    let rest = app
        .ok(Some(&token), MESSAGES, json!({ "id": id, "first": 4, "after": messages["pageInfo"]["endCursor"] }))
        .await;
    let rest = &rest["conversation"]["messages"];
    assert_eq!(rest["edges"][0]["node"]["content"], "third");
    assert_eq!(rest["edges"].as_array().map(Vec::len), Some(2));
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);
}

fn titles(page: &Value) -> Vec<String> {
    page["conversations"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["title"].as_str().expect("title").to_owned())
        .collect()
}

const LIST: &str = "query($first: Int, $after: String, $archived: Boolean) {
    conversations(first: $first, after: $after, archived: $archived) {
        edges { node { title } } pageInfo { hasNextPage endCursor }
    } }";

async fn conversations_paginate_newest_first(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let mut ids = vec![];
    for n in 1..=5 {
        ids.push(app.create_conversation(&token, &format!("c{n}")).await);
    }
    let mut seen = vec![];
    let mut after = Value::Null;
    loop {
        let page = app.ok(Some(&token), LIST, json!({ "first": 2, "after": after })).await;
        seen.extend(titles(&page));
        if page["conversations"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["conversations"]["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ["c5", "c4", "c3", "c2", "c1"]);

    // Activity moves a conversation to the top.
    app.send_and_wait(&token, &ids[0], "bump").await;
    let first = app.ok(Some(&token), LIST, json!({ "first": 2 })).await;
    assert_eq!(titles(&first), ["c1", "c5"]);
}

async fn rename_archive_and_unarchive(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let id = app.create_conversation(&token, "Draft").await;
    let renamed = app
        .ok(
            Some(&token),
            "mutation($id: ID!) { renameConversation(id: $id, title: \"Final\") { title } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(renamed["renameConversation"]["title"], "Final");

    let archived = app
        .ok(
            Some(&token),
            "mutation($id: ID!) { archiveConversation(id: $id) { status archived } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(archived["archiveConversation"]["status"], "ARCHIVED");
    assert_eq!(titles(&app.ok(Some(&token), LIST, json!({})).await), Vec::<String>::new());
    assert_eq!(titles(&app.ok(Some(&token), LIST, json!({ "archived": true })).await), ["Final"]);

    let before = app.event_count().await;
    let refused = app.send_message(&token, &id, "hello?").await;
    assert_eq!(error_code(&refused), "CONFLICT");
    assert_eq!(refused["errors"][0]["extensions"]["reason"], "ARCHIVED");
    assert_eq!(app.event_count().await, before, "a refused message writes nothing");

    let unarchived = app
        .ok(Some(&token), "mutation($id: ID!) { unarchiveConversation(id: $id) { status } }", json!({ "id": id }))
        .await;
    assert_eq!(unarchived["unarchiveConversation"]["status"], "ACTIVE");
    let sent = app.send_and_wait(&token, &id, "hello again").await;
    assert_eq!(sent["data"]["sendMessage"]["seq"], 1, "{sent:#}");
}

async fn history_lists_every_event_with_its_actor(app: TestApp) {
    let (token, user_id) = app.register("ada@example.com").await;
    let id = app.create_conversation(&token, "Plans").await;
    app.send_and_wait(&token, &id, "hello").await;
    app.ok(
        Some(&token),
        "mutation($id: ID!) { renameConversation(id: $id, title: \"Trips\") { id } }",
        json!({ "id": id }),
    )
    .await;
    app.ok(Some(&token), "mutation($id: ID!) { archiveConversation(id: $id) { id } }", json!({ "id": id })).await;
    let history = app
        .ok(
            Some(&token),
            "query($id: ID!) { conversationHistory(conversationId: $id) { edges { node { type version occurredAt data actor { id name } } } } }",
            json!({ "id": id }),
        )
        .await;
    let events = history["conversationHistory"]["edges"].as_array().expect("edges");
    let types: Vec<&str> = events.iter().map(|e| e["node"]["type"].as_str().expect("type")).collect();
    assert_eq!(
        types,
        [
            "ConversationCreated",
            "UserMessageAdded",
            "AssistantMessageStarted",
            "AssistantMessageCompleted",
            "ConversationRenamed",
            "ConversationArchived"
        ]
    );
    for (version, event) in (1..).zip(events) {
        assert_eq!(event["node"]["version"], version);
        assert!(event["node"]["occurredAt"].is_string());
        let by_server = event["node"]["type"] == "AssistantMessageCompleted";
        let actor = if by_server { json!(null) } else { json!(user_id) };
        assert_eq!(event["node"]["actor"]["id"], actor, "{event}");
    }
    assert_eq!(events[1]["node"]["data"]["content"], "hello");
}

async fn concurrent_sends_lose_and_duplicate_nothing(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let id = app.create_conversation(&token, "Busy").await;
    let sends = (0..12).map(|n| {
        let (app, token, id) = (&app, token.clone(), id.clone());
        async move { app.send_message(&token, &id, &format!("message {n}")).await }
    });
    let results = futures_util::future::join_all(sends).await;
    let mut accepted = 0;
    for result in &results {
        match result.get("errors") {
            None => accepted += 1,
            Some(_) => assert_eq!(error_code(result), "CONFLICT", "only a lost race may fail: {result:#}"),
        }
    }
    assert!(accepted >= 1);
    app.wait_until_idle(&token, &id).await;
    let data = app.ok(Some(&token), MESSAGES, json!({ "id": id, "first": 100 })).await;
    let edges = data["conversation"]["messages"]["edges"].as_array().expect("edges").clone();
    let seqs: Vec<i64> = edges.iter().map(|e| e["node"]["seq"].as_i64().expect("seq")).collect();
    assert_eq!(seqs, (1..=accepted * 2).collect::<Vec<_>>(), "every accepted message stored once, with its reply");
    assert_eq!(edges.iter().filter(|e| e["node"]["role"] == "USER").count() as i64, accepted);
}

async fn sending_while_a_reply_streams_is_a_conflict(app: TestApp) {
    let app = app.restart(&[("LITESKILL_DEMO_DELAY_MS", "50")]).await;
    let (token, _) = app.register("ada@example.com").await;
    let id = app.create_conversation(&token, "Busy").await;
    assert!(app.send_message(&token, &id, "first").await.get("errors").is_none());
    let second = app.send_message(&token, &id, "second").await;
    assert_eq!(error_code(&second), "CONFLICT");
    assert_eq!(second["errors"][0]["extensions"]["reason"], "STREAMING");
    let archive = app
        .graphql(Some(&token), "mutation($id: ID!) { archiveConversation(id: $id) { id } }", json!({ "id": id }))
        .await;
    assert_eq!(error_code(&archive), "CONFLICT");
    app.wait_until_idle(&token, &id).await;
    assert!(app.send_message(&token, &id, "second").await.get("errors").is_none());
}

on_both_backends!(
    messages_come_back_in_order_with_cursors,
    conversations_paginate_newest_first,
    rename_archive_and_unarchive,
    history_lists_every_event_with_its_actor,
    concurrent_sends_lose_and_duplicate_nothing,
    sending_while_a_reply_streams_is_a_conflict,
);
