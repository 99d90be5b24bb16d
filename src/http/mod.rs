//! HTTP surface: `/graphql` (POST, GET), `/graphql/ws`, `/graphiql`, `/auth/oidc/login`,
//! `/auth/oidc/callback`, `/healthz`, `/readyz`.

mod graphql;
mod health;
mod oidc;
mod websocket;

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::http::{HeaderMap, header};
use axum::routing::get;

use crate::app::Served;
use crate::auth::accounts::Origin;
use crate::config::Config;

/// The peer a request comes from.
type Client = ConnectInfo<SocketAddr>;

/// The client's address: the peer's, or behind a trusted proxy the one the proxy added
/// last to `X-Forwarded-For` (earlier entries are the client's own say).
fn client_address(headers: &HeaderMap, ConnectInfo(peer): Client, config: &Config) -> IpAddr {
    let forwarded = || {
        let header = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).next_back()?;
        header.rsplit(',').next()?.trim().parse().ok()
    };
    config.limits.trust_forwarded_for.then(forwarded).flatten().unwrap_or(peer.ip())
}

/// Where a request comes from, for the sessions it opens.
fn origin(headers: &HeaderMap, client: Client, config: &Config) -> Origin {
    Origin {
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        address: Some(client_address(headers, client, config)),
    }
}

pub fn router(served: Served) -> Router {
    let body_limit = served.app.config.max_body_bytes;
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/ws", get(websocket::upgrade))
        .route("/auth/oidc/login", get(oidc::login))
        .route("/auth/oidc/callback", get(oidc::callback))
        .route("/graphiql", get(graphql::graphiql))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(served)
}

/// Serves until `shutdown` resolves, then gives open requests and websockets
/// `grace` to finish before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    served: Served,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router(served).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        });
    tokio::select! {
        result = server.into_future() => result,
        () = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("connections still open after {grace:?}; closing them");
            Ok(())
        }
    }
}
