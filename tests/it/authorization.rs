//! Every conversation operation from the outside: the owner succeeds, another user
//! gets NOT_FOUND (as if it did not exist), and a request without a session gets
//! UNAUTHENTICATED. None of the refusals writes anything.

use serde_json::json;

use crate::support::{TestApp, error_code, on_both_backends};

/// (operation, whether it writes)
const OPERATIONS: &[(&str, bool)] = &[
    ("query($id: ID!) { conversation(id: $id) { id } }", false),
    ("query($id: ID!) { conversation(id: $id) { messages { edges { node { id } } } } }", false),
    ("query($id: ID!) { conversationHistory(conversationId: $id) { edges { node { type } } } }", false),
    ("mutation($id: ID!) { renameConversation(id: $id, title: \"Mine now\") { id } }", true),
    ("mutation($id: ID!) { sendMessage(input: { conversationId: $id, content: \"hi\" }) { id } }", true),
    ("mutation($id: ID!) { archiveConversation(id: $id) { id } }", true),
    ("mutation($id: ID!) { unarchiveConversation(id: $id) { id } }", true),
];

/// Refused to strangers and anonymous callers like the others; the owner gets CONFLICT
/// (nothing is streaming) rather than success.
const CANCEL: &str = "mutation($id: ID!) { cancelStream(conversationId: $id) { id } }";

async fn strangers_get_not_found_and_anonymous_unauthenticated(app: TestApp) {
    let (owner, _) = app.register("owner@example.com").await;
    let (stranger, _) = app.register("stranger@example.com").await;
    let id = app.create_conversation(&owner, "Private").await;
    app.send_and_wait(&owner, &id, "secret").await;

    for (operation, _) in OPERATIONS {
        let before = app.event_count().await;
        let body = app.graphql(Some(&stranger), operation, json!({ "id": id })).await;
        assert_eq!(error_code(&body), "NOT_FOUND", "stranger: {operation}: {body:#}");
        assert!(!body.to_string().contains("secret"));
        let body = app.graphql(None, operation, json!({ "id": id })).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "anonymous: {operation}");
        let body = app.graphql(Some("not-a-session"), operation, json!({ "id": id })).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "bad token: {operation}");
        assert_eq!(app.event_count().await, before, "refusal wrote nothing: {operation}");
    }

    assert_eq!(error_code(&app.graphql(Some(&stranger), CANCEL, json!({ "id": id })).await), "NOT_FOUND");
    assert_eq!(error_code(&app.graphql(None, CANCEL, json!({ "id": id })).await), "UNAUTHENTICATED");
    assert_eq!(error_code(&app.graphql(Some(&owner), CANCEL, json!({ "id": id })).await), "CONFLICT");

    // An id that does not exist looks exactly like one that is not yours.
    let missing = uuid::Uuid::now_v7().to_string();
    let unknown = app.graphql(Some(&stranger), OPERATIONS[0].0, json!({ "id": missing })).await;
    let forbidden = app.graphql(Some(&stranger), OPERATIONS[0].0, json!({ "id": id })).await;
    assert_eq!(unknown["errors"][0]["message"], forbidden["errors"][0]["message"]);

    for (operation, _) in OPERATIONS {
        let body = app.graphql(Some(&owner), operation, json!({ "id": id })).await;
        assert!(body.get("errors").is_none(), "owner: {operation}: {body:#}");
        app.wait_until_idle(&owner, &id).await;
    }

    let listed = app.ok(Some(&stranger), "{ conversations { edges { node { id } } } }", json!({})).await;
    assert_eq!(listed["conversations"]["edges"], json!([]), "not in the stranger's list");
}

async fn every_operation_needs_a_session(app: TestApp) {
    for operation in [
        "{ me { id } }",
        "{ conversations { edges { node { id } } } }",
        "mutation { createConversation(input: {}) { id } }",
        "mutation { logout }",
    ] {
        let body = app.graphql(None, operation, json!({})).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{operation}");
    }
    assert_eq!(app.event_count().await, 0);
}

on_both_backends!(strangers_get_not_found_and_anonymous_unauthenticated, every_operation_needs_a_session);
