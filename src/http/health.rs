//! Probes for orchestrators: liveness never touches the database, readiness does.

use axum::extract::State;
use axum::http::StatusCode;

use crate::app::Served;

pub async fn live() -> &'static str {
    "ok"
}

pub async fn ready(State(served): State<Served>) -> (StatusCode, &'static str) {
    match served.app.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
