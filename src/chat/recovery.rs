//! Closing replies whose server stopped while they streamed, so that no conversation
//! stays `streaming`: their last saved text is kept in a failed message.

use futures_util::FutureExt;

use std::sync::Arc;

use super::{finish, tools};
use crate::app::App;
use crate::domain::Actor;
use crate::domain::conversation::ReplyOutcome;
use crate::error::{AppError, AppResult};
use crate::storage::checkpoints;

/// Fails every reply whose checkpoint is older than the configured staleness, and moves
/// on turns whose tool calls were running on a server that stopped.
pub async fn sweep_stale_replies(app: &Arc<App>) -> AppResult<usize> {
    let stale_after = chrono::Duration::from_std(app.config.llm.reply_stale_after).unwrap_or(chrono::Duration::MAX);
    let stale = {
        let mut conn = app.db.conn().await?;
        checkpoints::stale(&mut conn, stale_after).await?
    };
    let mut closed = 0;
    for checkpoint in stale {
        if app.replies.get(checkpoint.conversation()).is_some_and(|r| r.message_id() == checkpoint.message()) {
            continue;
        }
        if checkpoint.message() == tools::lease_id(checkpoint.conversation()) {
            match tools::recover(app, checkpoint.conversation()).await {
                Ok(true) => closed += 1,
                Ok(false) => {
                    let lease = checkpoint.message();
                    if let Err(error) = app.db.write(move |conn| checkpoints::delete(conn, lease).boxed()).await {
                        tracing::warn!(%error, "could not forget a stale tool lease");
                    }
                }
                Err(error) => tracing::warn!(%error, "moving on a turn whose tools were interrupted failed"),
            }
            continue;
        }
        let outcome = ReplyOutcome::Failed {
            partial_text: checkpoint.text.clone(),
            reason: "interrupted: the server stopped while the reply was streaming".to_owned(),
        };
        match finish(app, Actor::System, checkpoint.conversation(), checkpoint.message(), outcome, vec![], None).await {
            Ok(_) => closed += 1,
            // Already ended or gone: the checkpoint is all that is left; forget it.
            Err(AppError::Conflict { reason: "NOT_STREAMING", .. } | AppError::NotFound(_)) => {
                let message = checkpoint.message();
                if let Err(error) = app.db.write(move |conn| checkpoints::delete(conn, message).boxed()).await {
                    tracing::warn!(%error, "could not forget the checkpoint of an ended reply");
                }
            }
            // Keep the checkpoint: the next sweep tries again.
            Err(error) => {
                tracing::warn!(%error, message = %checkpoint.message(), "closing an interrupted reply failed")
            }
        }
    }
    if closed > 0 {
        tracing::warn!(closed, "closed replies interrupted by a server stop");
    }
    Ok(closed)
}

/// Sweeps now and then periodically, for as long as the application lives.
pub async fn keep_sweeping(app: std::sync::Weak<App>) {
    loop {
        let Some(app) = app.upgrade() else { return };
        if let Err(error) = sweep_stale_replies(&app).await {
            tracing::warn!(%error, "sweeping interrupted replies failed");
        }
        let pause = app.config.llm.reply_stale_after / 2;
        drop(app);
        tokio::time::sleep(pause.max(std::time::Duration::from_millis(200))).await;
    }
}
