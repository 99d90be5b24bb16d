//! GraphQL over websockets, authenticated by the `connection_init` payload or the cookie.

use serde_json::json;

use crate::support::ws::{Protocol, WsClient};
use crate::support::{TestApp, on_both_backends};

async fn both_protocols_authenticate_through_connection_init(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let url = format!("ws://{}/graphql/ws", app.address);
    for protocol in [Protocol::TransportWs, Protocol::Legacy] {
        let (mut client, ack) = WsClient::connect(&url, protocol, json!({ "token": token })).await;
        assert_eq!(ack, Ok(()), "{protocol:?}");
        let result = client.execute("1", "{ me { email } }").await;
        assert_eq!(result["data"]["me"]["email"], "ada@example.com", "{protocol:?}: {result:#}");

        let (mut client, ack) =
            WsClient::connect(&url, protocol, json!({ "Authorization": format!("Bearer {token}") })).await;
        assert_eq!(ack, Ok(()));
        assert_eq!(client.execute("1", "{ me { email } }").await["data"]["me"]["email"], "ada@example.com");

        let (mut anonymous, ack) = WsClient::connect(&url, protocol, json!({})).await;
        assert_eq!(ack, Ok(()));
        let result = anonymous.execute("1", "{ me { email } }").await;
        assert_eq!(result["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{result:#}");
    }
}

async fn a_session_ended_elsewhere_stops_working_on_an_open_socket(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let url = format!("ws://{}/graphql/ws", app.address);
    let (mut client, ack) = WsClient::connect(&url, Protocol::TransportWs, json!({ "token": token })).await;
    assert_eq!(ack, Ok(()));
    assert_eq!(client.execute("1", "{ me { email } }").await["data"]["me"]["email"], "ada@example.com");
    app.ok(Some(&token), "mutation { logout }", json!({})).await;
    assert_eq!(closed_with(&mut client).await, Some(4401));
}

/// Reads until the server closes the socket; returns the close code.
pub async fn closed_with(client: &mut WsClient) -> Option<u64> {
    loop {
        let message = client.next().await?;
        if message["type"] == "close" {
            return message["code"].as_u64();
        }
    }
}

/// Reads until each of the operations `ids` has ended, and returns the error code each
/// ended with.
async fn ended_with(client: &mut WsClient, ids: &[&str]) -> Vec<(String, String)> {
    let mut ended = vec![];
    while ended.len() < ids.len() {
        let message = client.next().await.expect("the socket stays open");
        let id = message["id"].as_str().unwrap_or_default().to_owned();
        if let Some(code) = message["payload"]["errors"][0]["extensions"]["code"].as_str() {
            ended.push((id, code.to_owned()));
        }
    }
    ended.sort();
    ended
}

async fn subscriptions_end_with_their_session(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let other = app.login("ada@example.com", "correct horse battery").await["data"]["login"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let conversation = app.create_conversation(&token, "Mine").await;
    let url = format!("ws://{}/graphql/ws", app.address);
    let events = "subscription($id: ID!) { conversationEvents(conversationId: $id) { __typename } }";
    let viewer = "subscription { viewerEvents { type } }";
    let (mut phone, _) = WsClient::connect(&url, Protocol::TransportWs, json!({ "token": token })).await;
    phone.start("events", events, json!({ "id": conversation })).await;
    phone.start("viewer", viewer, json!({})).await;
    let replayed = phone.next_result().await.expect("the replayed creation");
    assert_eq!(replayed["data"]["conversationEvents"]["__typename"], "HistoryEvent");
    let (mut laptop, _) = WsClient::connect(&url, Protocol::TransportWs, json!({ "token": other })).await;
    laptop.start("events", events, json!({ "id": conversation })).await;
    laptop.next_result().await.expect("the replayed creation");

    // Signing out ends that session's subscriptions at once; the other device's live on.
    app.ok(Some(&token), "mutation { logout }", json!({})).await;
    let expected =
        |ids: &[&str]| ids.iter().map(|id| (id.to_string(), "UNAUTHENTICATED".to_owned())).collect::<Vec<_>>();
    assert_eq!(ended_with(&mut phone, &["events", "viewer"]).await, expected(&["events", "viewer"]));
    app.ok(
        Some(&other),
        "mutation($id: ID!) { renameConversation(id: $id, title: \"Still here\") { id } }",
        json!({ "id": conversation }),
    )
    .await;
    let renamed = laptop.next_result().await.expect("the rename");
    assert_eq!(renamed["data"]["conversationEvents"]["__typename"], "HistoryEvent", "{renamed:#}");

    // Disabled from the command line, another process: the check finds it.
    let (ok, out) = app.cli(&["user", "disable", "ada@example.com"], "");
    assert!(ok, "{out}");
    assert_eq!(ended_with(&mut laptop, &["events"]).await, expected(&["events"]));
    // Then the sockets of the ended sessions close.
    assert_eq!(closed_with(&mut phone).await, Some(4401));
    assert_eq!(closed_with(&mut laptop).await, Some(4401));
}

async fn an_invalid_token_is_refused_at_connection_init(app: TestApp) {
    let url = format!("ws://{}/graphql/ws", app.address);
    let (_, ack) = WsClient::connect(&url, Protocol::TransportWs, json!({ "token": "forged" })).await;
    assert!(ack.is_err(), "a forged token must not be acknowledged");
}

on_both_backends!(
    both_protocols_authenticate_through_connection_init,
    a_session_ended_elsewhere_stops_working_on_an_open_socket,
    an_invalid_token_is_refused_at_connection_init,
    subscriptions_end_with_their_session,
);
