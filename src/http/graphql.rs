//! GraphQL over HTTP and websockets, with the viewer resolved from the session token.
//!
//! The token comes from `Authorization: Bearer`, the session cookie, or (websockets)
//! the `connection_init` payload. Mutations are refused over GET: a link must never
//! change anything, since browsers send the cookie with top-level navigations.

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, Data};
use async_graphql_axum::{GraphQLProtocol, GraphQLResponse, GraphQLWebSocket};
use axum::body::Bytes;
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::app::Served;
use crate::auth::{accounts, session};
use crate::graphql::Credentials;

/// The session token a request carries: the Authorization header wins over the cookie.
fn token_from(headers: &HeaderMap) -> Option<&str> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    header(header::AUTHORIZATION)
        .and_then(session::bearer)
        .or_else(|| header(header::COOKIE).and_then(session::from_cookie_header))
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn credentials(headers: &HeaderMap) -> Credentials {
    Credentials { token: token_from(headers).map(str::to_owned), user_agent: user_agent(headers) }
}

async fn execute(served: &Served, credentials: Credentials, request: BatchRequest) -> Response {
    GraphQLResponse::from(served.schema.execute_batch(request.data(credentials)).await).into_response()
}

pub async fn post(State(served): State<Served>, headers: HeaderMap, body: Bytes) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/graphql-response+json"));
    if !json {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "send GraphQL requests as application/json").into_response();
    }
    let request: BatchRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("malformed GraphQL request: {error}")).into_response(),
    };
    execute(&served, credentials(&headers), request).await
}

pub async fn get(
    State(served): State<Served>,
    headers: HeaderMap,
    Query(request): Query<async_graphql::Request>,
) -> Response {
    let mutates = async_graphql::parser::parse_query(&request.query)
        .map(|doc| doc.operations.iter().any(|(_, op)| op.node.ty != OperationType::Query))
        .unwrap_or(false);
    if mutates {
        return (StatusCode::METHOD_NOT_ALLOWED, "only queries may be sent with GET; use POST").into_response();
    }
    execute(&served, credentials(&headers), BatchRequest::Single(request)).await
}

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

pub async fn websocket(
    State(served): State<Served>,
    protocol: GraphQLProtocol,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let cookie_token = same_origin(&headers, &served.app.config.public_url)
        .then(|| headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(session::from_cookie_header))
        .flatten()
        .map(str::to_owned);
    let user_agent = user_agent(&headers);
    let max_message = served.app.config.max_body_bytes;
    // Small buffers: most sockets sit idle, and each message is sent as soon as it is ready.
    let upgrade = upgrade.read_buffer_size(4 * 1024).write_buffer_size(0).max_message_size(max_message);
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |stream| {
        let schema = served.schema.clone();
        GraphQLWebSocket::new(stream, schema, protocol)
            .on_connection_init(move |payload| async move {
                // A token in the payload must be valid now; each operation checks again.
                let token = match token_from_init(&payload) {
                    Some(token) => match accounts::authenticate(&served.app.db, &token).await {
                        Ok(Some(_)) => Some(token),
                        _ => return Err(async_graphql::Error::new("invalid or expired session token")),
                    },
                    None => cookie_token,
                };
                let mut data = Data::default();
                data.insert(Credentials { token, user_agent });
                Ok(data)
            })
            .serve()
    })
}

pub async fn graphiql() -> Html<String> {
    Html(graphiql_page("/graphql", "/graphql/ws"))
}

fn graphiql_page(endpoint: &str, subscriptions: &str) -> String {
    // The page loads GraphiQL from a CDN: the server itself ships no JavaScript for it.
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Liteskill GraphiQL</title>
  <style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
  <link rel="stylesheet" href="https://unpkg.com/graphiql@3/graphiql.min.css">
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script crossorigin src="https://unpkg.com/react@18/umd/react.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/react-dom@18/umd/react-dom.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/graphiql@3/graphiql.min.js"></script>
  <script>
    const wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "{subscriptions}";
    const fetcher = GraphiQL.createFetcher({{ url: "{endpoint}", subscriptionUrl: wsUrl }});
    ReactDOM.createRoot(document.getElementById("graphiql"))
      .render(React.createElement(GraphiQL, {{ fetcher, defaultEditorToolbarOpen: true }}));
  </script>
</body>
</html>"#
    )
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
