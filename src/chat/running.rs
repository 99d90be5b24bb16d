//! The replies running on this server, and the saving of their progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;

use super::Reply;
use crate::app::App;
use crate::domain::{self, ids::ConversationId};
use crate::storage::checkpoints::{self, Checkpoint};

/// The replies streaming on this server, by conversation.
#[derive(Default)]
pub struct Replies {
    running: Mutex<HashMap<ConversationId, Arc<Reply>>>,
}

impl Replies {
    pub(super) fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, Arc<Reply>>> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, conversation: ConversationId) -> Option<Arc<Reply>> {
        self.map().get(&conversation).cloned()
    }

    /// Registers a reply about to start, unless one runs in its conversation.
    pub(super) fn try_insert(&self, reply: Arc<Reply>) -> bool {
        match self.map().entry(reply.conversation) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(reply);
                true
            }
        }
    }

    /// Checkpoints of every reply streaming here, as they stand.
    pub(super) fn checkpoints(&self) -> Vec<Checkpoint> {
        let now = domain::now();
        self.map().values().map(|r| r.checkpoint(now)).collect()
    }

    pub(super) fn remove(&self, reply: &Reply) {
        let mut running = self.map();
        if running.get(&reply.conversation).is_some_and(|r| std::ptr::eq(r.as_ref(), reply)) {
            running.remove(&reply.conversation);
        }
    }
}

/// How often the text of streaming replies is saved.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Saves the text of every reply streaming on this server, in one transaction a second,
/// which also tells other servers this one is alive; for as long as the application lives.
pub async fn keep_checkpointing(app: std::sync::Weak<App>) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    loop {
        every.tick().await;
        let Some(app) = app.upgrade() else { return };
        let saving = app.replies.checkpoints();
        if saving.is_empty() {
            continue;
        }
        let saved = app.db.write(move |conn| checkpoints::refresh_all(conn, saving).boxed()).await;
        if let Err(error) = saved {
            tracing::warn!(%error, "could not save the progress of streaming replies");
        }
    }
}
