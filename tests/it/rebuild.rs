//! `liteskill projections rebuild` reproduces the read tables exactly.

use liteskill::storage::projections::{conversations, messages, users};
use serde_json::json;

use crate::support::{TestApp, on_both_backends};

async fn snapshot(app: &TestApp) -> String {
    let mut conn = app.db().conn().await.expect("connection");
    format!(
        "{:?}\n{:?}\n{:?}",
        users::all(&mut conn).await.expect("users"),
        conversations::all(&mut conn).await.expect("conversations"),
        messages::all(&mut conn).await.expect("messages"),
    )
}

async fn rebuild_leaves_projections_identical(app: TestApp) {
    let (ada, _) = app.register("ada@example.com").await;
    let (bob, _) = app.register("bob@example.com").await;
    for (token, n) in [(&ada, 3), (&bob, 2)] {
        for c in 0..n {
            let id = app.create_conversation(token, &format!("conversation {c}")).await;
            for m in 0..c + 1 {
                app.send_message(token, &id, &format!("message {m}")).await;
            }
            if c == 1 {
                app.ok(
                    Some(token),
                    "mutation($id: ID!) { renameConversation(id: $id, title: \"renamed\") { id } }",
                    json!({ "id": id }),
                )
                .await;
                app.ok(Some(token), "mutation($id: ID!) { archiveConversation(id: $id) { id } }", json!({ "id": id }))
                    .await;
            }
        }
    }
    let before = snapshot(&app).await;
    assert!(before.contains("renamed") && before.contains("message 2"));

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_liteskill"))
        .args(["projections", "rebuild"])
        .env("DATABASE_URL", app.database.url())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run liteskill");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let events = app.event_count().await;
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("from {events} events")));

    assert_eq!(snapshot(&app).await, before);
}

on_both_backends!(rebuild_leaves_projections_identical);
