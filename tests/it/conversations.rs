//! Conversations and messages through the GraphQL API.

use serde_json::{Value, json};

use crate::support::{TestApp, error_code, on_both_backends};

const MESSAGES: &str = "query($id: ID!, $first: Int, $after: String) { conversation(id: $id) {
    id title messageCount status
    messages(first: $first, after: $after) { edges { cursor node { seq role content authorId } } pageInfo { hasNextPage endCursor } }
} }";

async fn messages_come_back_in_order_with_cursors(app: TestApp) {
    let (token, user_id) = app.register("ada@example.com").await;
    let id = app.create_conversation(&token, "Plans").await;
    for text in ["first", "second", "third"] {
        let sent = app.send_message(&token, &id, text).await;
        assert_eq!(sent["data"]["sendMessage"]["content"], text, "{sent:#}");
    }
    let data = app.ok(Some(&token), MESSAGES, json!({ "id": id })).await;
    let conversation = &data["conversation"];
    assert_eq!(conversation["messageCount"], 3);
    let contents: Vec<&str> = conversation["messages"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["content"].as_str().expect("content"))
        .collect();
    assert_eq!(contents, ["first", "second", "third"]);
    assert_eq!(conversation["messages"]["edges"][0]["node"]["role"], "USER");
    assert_eq!(conversation["messages"]["edges"][0]["node"]["authorId"], user_id.as_str());

    let page = app.ok(Some(&token), MESSAGES, json!({ "id": id, "first": 2 })).await;
    let messages = &page["conversation"]["messages"];
    assert_eq!(messages["edges"].as_array().map(Vec::len), Some(2));
    assert_eq!(messages["pageInfo"]["hasNextPage"], true);
    let rest = app
        .ok(Some(&token), MESSAGES, json!({ "id": id, "first": 2, "after": messages["pageInfo"]["endCursor"] }))
        .await;
    let rest = &rest["conversation"]["messages"];
    assert_eq!(rest["edges"][0]["node"]["content"], "third");
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
    app.send_message(&token, &ids[0], "bump").await;
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
    let sent = app.send_message(&token, &id, "hello again").await;
    assert_eq!(sent["data"]["sendMessage"]["seq"], 1, "{sent:#}");
}

async fn history_lists_every_event_with_its_actor(app: TestApp) {
    let (token, user_id) = app.register("ada@example.com").await;
    let id = app.create_conversation(&token, "Plans").await;
    app.send_message(&token, &id, "hello").await;
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
    assert_eq!(types, ["ConversationCreated", "UserMessageAdded", "ConversationRenamed", "ConversationArchived"]);
    for (version, event) in (1..).zip(events) {
        assert_eq!(event["node"]["version"], version);
        assert_eq!(event["node"]["actor"]["id"], user_id.as_str());
        assert!(event["node"]["occurredAt"].is_string());
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
    let data = app.ok(Some(&token), MESSAGES, json!({ "id": id, "first": 100 })).await;
    let seqs: Vec<i64> = data["conversation"]["messages"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=accepted).collect::<Vec<_>>(), "every accepted message stored once, in order");
}

on_both_backends!(
    messages_come_back_in_order_with_cursors,
    conversations_paginate_newest_first,
    rename_archive_and_unarchive,
    history_lists_every_event_with_its_actor,
    concurrent_sends_lose_and_duplicate_nothing,
);
