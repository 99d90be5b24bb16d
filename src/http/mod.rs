//! HTTP surface: `/graphql` (POST, GET), `/graphql/ws`, `/graphiql`, `/healthz`, `/readyz`.

mod graphql;
mod health;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

use crate::app::Served;

pub fn router(served: Served) -> Router {
    let body_limit = served.app.config.max_body_bytes;
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/ws", get(graphql::websocket))
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
    let server = axum::serve(listener, router(served)).with_graceful_shutdown(async move {
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
