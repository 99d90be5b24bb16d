//! The HTTP surface around GraphQL.

use serde_json::{Value, json};

use crate::support::{TestApp, on_both_backends};

async fn health_probes_and_graphiql(app: TestApp) {
    let live = app.http.get(app.url("/healthz")).send().await.expect("healthz");
    assert_eq!(live.status(), 200);
    let ready = app.http.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.expect("body"), "ready");
    let page = app.http.get(app.url("/graphiql")).send().await.expect("graphiql");
    let page = page.text().await.expect("body");
    assert!(page.contains("GraphiQL") && page.contains("/graphql/ws"));
}

async fn get_runs_queries_but_never_mutations(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let query: Value = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "{ me { email } }")])
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET query")
        .json()
        .await
        .expect("json");
    assert_eq!(query["data"]["me"]["email"], "ada@example.com");

    let before = app.event_count().await;
    let mutation = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "mutation { createConversation(input: {}) { id } }")])
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET mutation");
    assert_eq!(mutation.status(), 405);
    assert_eq!(app.event_count().await, before);
}

async fn post_needs_json_and_a_bounded_body(app: TestApp) {
    let form = app
        .http
        .post(app.url("/graphql"))
        .header("Content-Type", "text/plain")
        .body(json!({ "query": "{ me { id } }" }).to_string())
        .send()
        .await
        .expect("text/plain post");
    assert_eq!(form.status(), 415, "a cross-site form cannot post GraphQL");

    let malformed = app
        .http
        .post(app.url("/graphql"))
        .header("Content-Type", "application/json")
        .body("{ not json")
        .send()
        .await
        .expect("malformed post");
    assert_eq!(malformed.status(), 400);

    // Last: the server closes the connection after refusing a body this large.
    let huge = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({ "query": "{ me { id } }", "variables": { "pad": "x".repeat(3 * 1024 * 1024) } }))
        .send()
        .await
        .expect("huge post");
    assert_eq!(huge.status(), 413);
}

on_both_backends!(health_probes_and_graphiql, get_runs_queries_but_never_mutations, post_needs_json_and_a_bounded_body);
