//! A viewer's place in a conversation: the role they hold (as owner, grantee, or through a
//! group), resolved from the read side, since group membership lives in other streams.
//! The aggregate then enforces what that role may do.

use futures_util::FutureExt;

use crate::app::App;
use crate::auth::Viewer;
use crate::domain::Actor;
use crate::domain::access::Role;
use crate::domain::group::{self, Group};
use crate::domain::ids::{ConversationId, GroupId};
use crate::error::{AppError, AppResult};
use crate::storage::DbConn;
use crate::storage::event_store::{RecordedEvent, execute};
use crate::storage::projections::access;
use crate::storage::projections::conversations::{self, ConversationRow};

/// A conversation as a viewer who may read it sees it.
#[derive(Debug, Clone)]
pub struct Membership {
    pub conversation: ConversationRow,
    pub role: Role,
    actor: Actor,
}

impl Membership {
    /// The actor that carries the viewer's role into commands.
    pub fn actor(&self) -> Actor {
        self.actor
    }

    /// Refuses (FORBIDDEN) a viewer whose role is below `needed`.
    pub fn require(&self, needed: Role) -> AppResult<()> {
        match needed {
            _ if self.role >= needed => Ok(()),
            Role::Owner => Err(AppError::Forbidden("only the conversation's owner may do this")),
            Role::Editor | Role::Viewer => {
                Err(AppError::Forbidden("you may read this conversation (and fork it), not write in it"))
            }
        }
    }
}

/// The conversation and the viewer's role in it; NOT_FOUND, as if it did not exist, when
/// they may not read it.
pub async fn of(conn: &mut DbConn, viewer: &Viewer, id: ConversationId) -> AppResult<Membership> {
    let not_found = || AppError::NotFound("conversation");
    let conversation = conversations::find(conn, id).await?.ok_or_else(not_found)?;
    let role = access::role_of(conn, id, conversation.owner(), viewer.user_id).await?.ok_or_else(not_found)?;
    Ok(Membership { conversation, role, actor: Actor::Member { user: viewer.user_id, role } })
}

/// Publishes committed events to everyone they concern, here and on other instances.
pub async fn publish(app: &App, events: Vec<RecordedEvent>) {
    let audience = async { access::audience(&mut app.db.conn().await?, &events).await };
    match audience.await {
        Ok(audience) => app.bus.publish_events(&audience, events),
        Err(error) => {
            // The stream's own subscribers still hear of them; viewers catch up on their next event.
            tracing::warn!(%error, "could not work out who to tell of new events");
            app.bus.publish_events(&Default::default(), events);
        }
    }
}

/// Runs a command on a group and tells everyone it concerns.
pub async fn run_on_group(app: &App, actor: Actor, id: GroupId, command: group::Command) -> AppResult<()> {
    let recorded = app.db.write(|conn| {
        async move { Ok::<_, AppError>(execute::<Group>(conn, id.uuid(), actor, command).await?) }.boxed()
    });
    publish(app, recorded.await?).await;
    Ok(())
}
