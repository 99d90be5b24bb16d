//! Subscriptions end with their session: signed out, expired, or its account disabled,
//! whether on this server, on another, or from the command line.
//!
//! Sessions ended here end their subscriptions at once (and, through the relay, on the
//! other servers); every [`CHECK_EVERY`] the sessions with open subscriptions are looked
//! up, which catches the rest.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::domain;
use crate::domain::ids::SessionId;
use crate::storage::sessions;

const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The sessions behind open subscriptions on this server.
#[derive(Default)]
pub struct SessionWatch {
    watched: Mutex<HashMap<SessionId, watch::Sender<bool>>>,
}

impl SessionWatch {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, watch::Sender<bool>>> {
        self.watched.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Turns `true` when the session ends.
    pub fn watch(&self, session: SessionId) -> watch::Receiver<bool> {
        self.map().entry(session).or_insert_with(|| watch::channel(false).0).subscribe()
    }

    /// Ends the session's subscriptions on this server.
    pub fn end(&self, session: SessionId) {
        if let Some(ended) = self.map().remove(&session) {
            ended.send_replace(true);
        }
    }

    /// The sessions someone still watches; forgets the others.
    fn watched(&self) -> Vec<SessionId> {
        let mut map = self.map();
        map.retain(|_, ended| ended.receiver_count() > 0);
        map.keys().copied().collect()
    }
}

/// Ends the subscriptions of sessions that ended elsewhere, for as long as the
/// application lives.
pub async fn keep_checking(app: Weak<App>) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    loop {
        every.tick().await;
        let Some(app) = app.upgrade() else { return };
        let watched = app.sessions.watched();
        for chunk in watched.chunks(500) {
            let active = async { sessions::active_among(&mut app.db.conn().await?, chunk, domain::now()).await };
            match active.await {
                Ok(active) => chunk.iter().filter(|id| !active.contains(id)).for_each(|id| app.sessions.end(*id)),
                Err::<_, crate::storage::StoreError>(error) => {
                    tracing::warn!(%error, "could not check the sessions of open subscriptions")
                }
            }
        }
    }
}
