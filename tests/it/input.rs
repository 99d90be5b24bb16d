//! Bad input is refused with a precise code and writes nothing.

use serde_json::json;

use crate::support::{TestApp, error_code, on_both_backends};

async fn bad_input_gets_precise_codes_and_writes_nothing(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let id = app.create_conversation(&token, "Plans").await;
    let before = app.event_count().await;
    let send = "mutation($id: ID!, $content: String!) { sendMessage(input: { conversationId: $id, content: $content }) { id } }";

    let cases = [
        ("empty message", send, json!({ "id": id, "content": "  " }), "BAD_USER_INPUT"),
        ("oversized message", send, json!({ "id": id, "content": "x".repeat(100_001) }), "BAD_USER_INPUT"),
        ("malformed id", send, json!({ "id": "not-an-id", "content": "hi" }), "BAD_USER_INPUT"),
        ("huge page", "query { conversations(first: 1000000) { edges { node { id } } } }", json!({}), "BAD_USER_INPUT"),
        ("negative page", "query { conversations(first: -1) { edges { node { id } } } }", json!({}), "BAD_USER_INPUT"),
        (
            "forged cursor",
            "query { conversations(after: \"bm9wZQ\") { edges { node { id } } } }",
            json!({}),
            "BAD_USER_INPUT",
        ),
        (
            "empty title",
            "mutation($id: ID!) { renameConversation(id: $id, title: \"\") { id } }",
            json!({ "id": id }),
            "BAD_USER_INPUT",
        ),
        (
            "wrong argument type",
            "query { conversations(first: \"ten\") { edges { node { id } } } }",
            json!({}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        ("syntax error", "query { conversations( ", json!({}), "GRAPHQL_PARSE_FAILED"),
        ("unknown field", "query { nothingHere }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
    ];
    for (name, query, variables, code) in cases {
        let body = app.graphql(Some(&token), query, variables).await;
        assert_eq!(error_code(&body), code, "{name}: {body:#}");
        assert!(body["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name} explains itself");
    }
    assert_eq!(app.event_count().await, before, "nothing was written");
}

async fn deep_and_complex_queries_are_refused(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let nested = |levels: usize| {
        let mut selection = String::from("name");
        for _ in 0..levels {
            selection = format!("ofType {{ {selection} }}");
        }
        format!("{{ __type(name: \"User\") {{ {selection} }} }}")
    };
    // Past the depth limit: refused before anything runs.
    let body = app.graphql(Some(&token), &nested(20), json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body:#}");
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("nested too deep")));
    // 50 deep is refused by the parser already.
    let body = app.graphql(Some(&token), &nested(50), json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_PARSE_FAILED", "{body:#}");

    let complex = "{ conversations(first: 100) { edges { node { messages(first: 100) { edges { node { id content seq role createdAt } } } } } } }";
    let body = app.graphql(Some(&token), complex, json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body:#}");
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("too complex")));
}

on_both_backends!(bad_input_gets_precise_codes_and_writes_nothing, deep_and_complex_queries_are_refused);
