//! GraphQL over HTTP, with the viewer resolved from the session token.
//!
//! The token comes from `Authorization: Bearer` or the session cookie. Mutations are
//! refused over GET: a link must never change anything, since browsers send the cookie
//! with top-level navigations.

use async_graphql::BatchRequest;
use async_graphql::parser::types::OperationType;
use async_graphql_axum::GraphQLResponse;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::{Client, origin};
use crate::app::Served;
use crate::auth::session;
use crate::graphql::Credentials;

/// The session token a request carries: the Authorization header wins over the cookie.
fn token_from(headers: &HeaderMap) -> Option<&str> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    header(header::AUTHORIZATION)
        .and_then(session::bearer)
        .or_else(|| header(header::COOKIE).and_then(session::from_cookie_header))
}

fn credentials(served: &Served, headers: &HeaderMap, client: Client) -> Credentials {
    Credentials { token: token_from(headers).map(str::to_owned), origin: origin(headers, client, &served.app.config) }
}

async fn execute(served: &Served, credentials: Credentials, request: BatchRequest) -> Response {
    GraphQLResponse::from(served.schema.execute_batch(request.data(credentials)).await).into_response()
}

pub async fn post(State(served): State<Served>, client: Client, headers: HeaderMap, body: Bytes) -> Response {
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
    execute(&served, credentials(&served, &headers, client), request).await
}

pub async fn get(
    State(served): State<Served>,
    client: Client,
    headers: HeaderMap,
    Query(request): Query<async_graphql::Request>,
) -> Response {
    let mutates = async_graphql::parser::parse_query(&request.query)
        .map(|doc| doc.operations.iter().any(|(_, op)| op.node.ty != OperationType::Query))
        .unwrap_or(false);
    if mutates {
        return (StatusCode::METHOD_NOT_ALLOWED, "only queries may be sent with GET; use POST").into_response();
    }
    execute(&served, credentials(&served, &headers, client), BatchRequest::Single(request)).await
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
