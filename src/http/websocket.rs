//! GraphQL over websockets (graphql-transport-ws and the legacy graphql-ws).
//!
//! The connection loop is ours rather than the adapter's so that it can close the socket
//! itself: when `connection_init` does not come in time, and when the session it signed
//! in with ends (signed out, revoked, expired, or its account disabled).

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocket, WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket as Socket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, SinkExt, StreamExt, future};
use tokio::sync::watch;

use super::{Client, origin};
use crate::app::{App, Served};
use crate::auth::accounts::{self, Origin};
use crate::auth::session;
use crate::domain::ids::SessionId;
use crate::graphql::{ConnectionSlots, Credentials};

/// How long the subscriptions of a session that ended have to send their last error
/// before the socket closes.
const SUBSCRIPTIONS_SAY_WHY: Duration = Duration::from_millis(100);

/// Close codes of graphql-transport-ws.
const INIT_TIMEOUT: u16 = 4408;
const UNAUTHORIZED: u16 = 4401;

/// Token from a `connection_init` payload: `{"token": …}` or `{"Authorization": "Bearer …"}`.
fn token_from_init(payload: &serde_json::Value) -> Option<String> {
    let field = |name: &str| payload.get(name).and_then(|v| v.as_str());
    field("token").map(str::to_owned).or_else(|| {
        field("Authorization").or_else(|| field("authorization")).and_then(session::bearer).map(str::to_owned)
    })
}

/// Whether a websocket handshake comes from our own pages (or from no browser at all).
/// Only then may the session cookie stand in for a token: a page elsewhere must not
/// borrow a signed-in browser's session.
fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let expected = public_url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    origin.eq_ignore_ascii_case(&expected)
}

pub async fn upgrade(
    State(served): State<Served>,
    client: Client,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| offered.split(',').find_map(|p| WebSocketProtocols::from_str(p.trim()).ok()));
    let Some(protocol) = protocol else {
        return (StatusCode::BAD_REQUEST, "offer the graphql-transport-ws or graphql-ws subprotocol").into_response();
    };
    let cookie_token = same_origin(&headers, &served.app.config.public_url)
        .then(|| headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(session::from_cookie_header))
        .flatten()
        .map(str::to_owned);
    let origin = origin(&headers, client, &served.app.config);
    let max_message = served.app.config.max_body_bytes;
    // Small buffers: most sockets sit idle, and each message is sent as soon as it is ready.
    let upgrade = upgrade.read_buffer_size(4 * 1024).write_buffer_size(0).max_message_size(max_message);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(served, socket, protocol, cookie_token, origin))
}

/// Resolves when the session watched ends; never without one.
async fn ended(session: &mut Option<watch::Receiver<bool>>) {
    match session {
        Some(receiver) => {
            let _ = receiver.changed().await;
        }
        None => future::pending().await,
    }
}

fn is_ack(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|message| message["type"] == "connection_ack")
}

/// Signs the connection in with the token of its `connection_init` payload, else the
/// cookie, and notes the session in `signed_in` for the connection loop to watch.
fn connection_init(
    app: Arc<App>,
    cookie: Option<String>,
    origin: Origin,
    signed_in: Arc<OnceLock<SessionId>>,
) -> impl FnOnce(serde_json::Value) -> BoxFuture<'static, async_graphql::Result<Data>> {
    move |payload| {
        async move {
            // A token in the payload must be valid now; a stale cookie just signs nobody in.
            let (token, from_payload) = match token_from_init(&payload) {
                Some(token) => (Some(token), true),
                None => (cookie, false),
            };
            let viewer = match &token {
                Some(token) => accounts::authenticate(&app.db, token).await.ok().flatten(),
                None => None,
            };
            if from_payload && viewer.is_none() {
                return Err(async_graphql::Error::new("invalid or expired session token"));
            }
            if let Some(viewer) = &viewer {
                let _ = signed_in.set(viewer.session_id);
            }
            let mut data = Data::default();
            data.insert(Credentials { token: token.filter(|_| viewer.is_some()), origin });
            data.insert(ConnectionSlots::new(app.config.limits.subscriptions_per_connection));
            Ok(data)
        }
        .boxed()
    }
}

async fn serve(served: Served, socket: Socket, protocol: WebSocketProtocols, cookie: Option<String>, origin: Origin) {
    let app = served.app.clone();
    let limits = app.config.limits;
    let (mut sink, stream) = socket.split();
    let input = stream.take_while(|message| future::ready(message.is_ok())).filter_map(|message| {
        future::ready(match message {
            Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
            Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
            _ => None,
        })
    });
    let signed_in: Arc<OnceLock<SessionId>> = Arc::default();
    let on_init = connection_init(app.clone(), cookie, origin, signed_in.clone());
    let mut messages =
        std::pin::pin!(WebSocket::new(served.schema.clone(), input, protocol).on_connection_init(on_init));
    let mut init_deadline = std::pin::pin!(tokio::time::sleep(limits.websocket_init_timeout));
    let mut initialized = false;
    let mut session: Option<watch::Receiver<bool>> = None;
    let mut closing = std::pin::pin!(tokio::time::sleep(Duration::MAX));
    let mut session_over = false;
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            () = &mut init_deadline, if !initialized => {
                Some(WsMessage::Close(INIT_TIMEOUT, "Connection initialisation timeout".into()))
            }
            () = ended(&mut session), if !session_over => {
                // The subscriptions end on the same signal: their errors go out first.
                session_over = true;
                closing.as_mut().reset(tokio::time::Instant::now() + SUBSCRIPTIONS_SAY_WHY);
                continue;
            }
            () = &mut closing => Some(WsMessage::Close(UNAUTHORIZED, "Session ended".into())),
        };
        let Some(message) = message else { break };
        let (frame, last) = match message {
            WsMessage::Text(text) => {
                if !initialized && is_ack(&text) {
                    initialized = true;
                    session = signed_in.get().map(|id| app.sessions.watch(*id));
                }
                (Message::Text(text.into()), false)
            }
            WsMessage::Close(code, reason) => (Message::Close(Some(CloseFrame { code, reason: reason.into() })), true),
        };
        if sink.send(frame).await.is_err() || last {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_on_websockets_need_our_origin() {
        let mut headers = HeaderMap::new();
        assert!(same_origin(&headers, "https://chat.example.com/"), "no Origin: not a browser");
        headers.insert(header::ORIGIN, "https://chat.example.com".parse().expect("header"));
        assert!(same_origin(&headers, "https://chat.example.com"));
        headers.insert(header::ORIGIN, "https://evil.example".parse().expect("header"));
        assert!(!same_origin(&headers, "https://chat.example.com"));
    }

    #[test]
    fn init_payload_token_forms() {
        assert_eq!(token_from_init(&serde_json::json!({"token": "t"})).as_deref(), Some("t"));
        assert_eq!(token_from_init(&serde_json::json!({"Authorization": "Bearer t"})).as_deref(), Some("t"));
        assert_eq!(token_from_init(&serde_json::json!({})), None);
    }
}
