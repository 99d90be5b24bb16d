//! `liteskill projections rebuild` reproduces the read tables exactly.

use futures_util::FutureExt;
use liteskill::storage::projections::{
    self, access, conversations, groups, identities, lineage, mcp_servers, messages, registration, tool_calls,
    tool_policies, users,
};
use serde_json::json;

use crate::support::{TestApp, on_both_backends};

async fn snapshot(app: &TestApp) -> String {
    let mut conn = app.db().conn().await.expect("connection");
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        users::all(&mut conn).await.expect("users"),
        conversations::all(&mut conn).await.expect("conversations"),
        messages::all(&mut conn).await.expect("messages"),
        mcp_servers::all(&mut conn).await.expect("servers"),
        tool_calls::all(&mut conn).await.expect("calls"),
        tool_policies::all(&mut conn).await.expect("policies"),
        lineage::all(&mut conn).await.expect("lineage"),
        access::all(&mut conn).await.expect("access"),
        groups::all(&mut conn).await.expect("groups"),
        identities::all(&mut conn).await.expect("identities"),
        registration::policy(&mut conn).await.expect("policy"),
        registration::all(&mut conn).await.expect("invites"),
    )
}

async fn rebuild_leaves_projections_identical(app: TestApp) {
    let (ada, _) = app.register("ada@example.com").await;
    let (bob, _) = app.register("bob@example.com").await;
    for (token, n) in [(&ada, 3), (&bob, 2)] {
        for c in 0..n {
            let id = app.create_conversation(token, &format!("conversation {c}")).await;
            for m in 0..c + 1 {
                app.send_and_wait(token, &id, &format!("message {m}")).await;
            }
            if c == 1 {
                app.ok(
                    Some(token),
                    "mutation($id: ID!) { renameConversation(id: $id, title: \"renamed\") { id } }",
                    json!({ "id": id }),
                )
                .await;
                let settings = "mutation($id: ID!) { updateConversationSettings(id: $id, input: { systemPrompt: \"Be terse.\", maxTokens: 77 }) { id } }";
                app.ok(Some(token), settings, json!({ "id": id })).await;
                app.ok(Some(token), "mutation($id: ID!) { archiveConversation(id: $id) { id } }", json!({ "id": id }))
                    .await;
            }
        }
    }
    let before = snapshot(&app).await;
    assert!(before.contains("renamed") && before.contains("message 2") && before.contains("Be terse."));
    rebuild_reproduces(&app).await;
}

/// Rebuilds the projections, from the CLI and with small write buffers; every time,
/// they must come out as they were.
pub async fn rebuild_reproduces(app: &TestApp) {
    let before = snapshot(app).await;
    let (ok, out) = app.cli(&["projections", "rebuild"], "");
    assert!(ok, "{out}");
    let events = app.event_count().await;
    assert!(out.contains(&format!("from {events} events")), "{out}");
    assert_eq!(snapshot(app).await, before);

    // Writing rows out every few rows takes the paths that merge updates into rows
    // already written; the result must not change.
    for buffer_rows in [1, 2, 3, 7] {
        let replayed =
            app.db().write(|conn| projections::rebuild_buffering(conn, buffer_rows).boxed()).await.expect("rebuild");
        assert_eq!(replayed as i64, events);
        assert_eq!(snapshot(app).await, before, "buffer of {buffer_rows} rows");
    }
}

on_both_backends!(rebuild_leaves_projections_identical);
