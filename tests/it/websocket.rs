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
    let result = client.execute("2", "{ me { email } }").await;
    assert_eq!(result["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{result:#}");
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
);
