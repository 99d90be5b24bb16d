//! A minimal GraphQL-over-websocket client speaking either protocol.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Protocol {
    /// `graphql-transport-ws` (the graphql-ws library).
    TransportWs,
    /// `graphql-ws` (the legacy subscriptions-transport-ws library).
    Legacy,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::Legacy => "graphql-ws",
        }
    }
}

pub struct WsClient {
    socket: Socket,
    protocol: Protocol,
}

impl WsClient {
    /// Connects and sends `connection_init` with `payload`; returns the server's reply type
    /// (`connection_ack`, or the error that closed the connection).
    pub async fn connect(url: &str, protocol: Protocol, payload: Value) -> (WsClient, Result<(), String>) {
        let mut request = url.into_client_request().expect("websocket request");
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol.name()));
        let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("websocket connects");
        let mut client = WsClient { socket, protocol };
        client.send(json!({ "type": "connection_init", "payload": payload })).await;
        let ack = match client.next().await {
            Some(message) if message["type"] == "connection_ack" => Ok(()),
            Some(message) => Err(message.to_string()),
            None => Err("closed".to_owned()),
        };
        (client, ack)
    }

    async fn send(&mut self, message: Value) {
        self.socket.send(Message::Text(message.to_string().into())).await.expect("send");
    }

    /// The next JSON message, or `None` when the server closed the connection.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("server answered in time")?;
            match message {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON message");
                    if value["type"] == "ka" || value["type"] == "ping" {
                        continue;
                    }
                    return Some(value);
                }
                Ok(Message::Close(frame)) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    return Some(
                        json!({ "type": "close", "code": code, "reason": frame.map(|f| f.reason.to_string()) }),
                    );
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Starts an operation (a subscription, or a query or mutation).
    pub async fn start(&mut self, id: &str, query: &str, variables: Value) {
        let start = match self.protocol {
            Protocol::TransportWs => "subscribe",
            Protocol::Legacy => "start",
        };
        self.send(json!({ "id": id, "type": start, "payload": { "query": query, "variables": variables } })).await;
    }

    /// The next result of a running operation; `None` once it completed or the socket closed.
    pub async fn next_result(&mut self) -> Option<Value> {
        loop {
            let message = self.next().await?;
            match message["type"].as_str() {
                Some("next") | Some("data") => return Some(message["payload"].clone()),
                Some("error") => return Some(json!({ "errors": message["payload"] })),
                Some("complete") | Some("close") => return None,
                _ => continue,
            }
        }
    }

    /// Runs one operation and returns its result payload.
    pub async fn execute(&mut self, id: &str, query: &str) -> Value {
        self.start(id, query, json!({})).await;
        loop {
            let message = self.next().await.expect("operation result");
            match message["type"].as_str() {
                Some("next") | Some("data") => return message["payload"].clone(),
                Some("error") => return json!({ "errors": message["payload"] }),
                _ => continue,
            }
        }
    }
}
