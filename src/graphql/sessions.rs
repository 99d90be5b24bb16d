//! The viewer's sessions, one per signed-in device: `mySessions`, `revokeSession`,
//! `revokeOtherSessions`. Ending a session closes its websockets, on every server.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use futures_util::FutureExt;

use super::{ApiResult, ContextExt, parse_id};
use crate::auth::accounts::Method;
use crate::domain;
use crate::domain::ids::SessionId;
use crate::error::AppError;
use crate::storage::sessions::{self, SessionRow};

/// A signed-in device.
#[derive(SimpleObject)]
pub struct Session {
    pub id: ID,
    /// The device's browser or client, as it named itself.
    pub user_agent: Option<String>,
    /// The address it signed in from.
    pub client_address: Option<String>,
    pub method: SignInMethod,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Whether this is the session making the request.
    pub current: bool,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum SignInMethod {
    Password,
    SingleSignOn,
}

fn session(row: SessionRow, current: SessionId) -> Session {
    Session {
        id: ID(row.session_id().to_string()),
        current: row.session_id() == current,
        method: if row.method == Method::Oidc.as_str() { SignInMethod::SingleSignOn } else { SignInMethod::Password },
        user_agent: row.user_agent,
        client_address: row.client_address,
        created_at: row.created_at.0,
        last_seen_at: row.last_seen_at.0,
        expires_at: row.expires_at.0,
    }
}

#[derive(Default)]
pub struct SessionsQuery;

#[Object]
impl SessionsQuery {
    /// The viewer's live sessions, most recently used first.
    async fn my_sessions(&self, ctx: &Context<'_>) -> ApiResult<Vec<Session>> {
        let viewer = ctx.viewer()?;
        let rows = sessions::of_user(&mut ctx.app().db.conn().await?, viewer.user_id, domain::now()).await?;
        Ok(rows.into_iter().map(|row| session(row, viewer.session_id)).collect())
    }
}

#[derive(Default)]
pub struct SessionsMutation;

#[Object]
impl SessionsMutation {
    /// Signs one of the viewer's devices out.
    async fn revoke_session(&self, ctx: &Context<'_>, id: ID) -> ApiResult<bool> {
        let viewer = ctx.viewer()?;
        let session = parse_id("id", &id, SessionId::parse)?;
        let user = viewer.user_id;
        let ended = ctx.app().db.write(move |conn| sessions::delete_of_user(conn, user, session).boxed()).await?;
        if !ended {
            return Err(AppError::NotFound("session").into());
        }
        ctx.app().end_session(session);
        Ok(true)
    }

    /// Signs every other device of the viewer out; returns how many.
    async fn revoke_other_sessions(&self, ctx: &Context<'_>) -> ApiResult<i32> {
        let viewer = ctx.viewer()?;
        let (user, keep) = (viewer.user_id, viewer.session_id);
        let ended = ctx.app().db.write(move |conn| sessions::delete_for_user(conn, user, Some(keep)).boxed()).await?;
        let count = ended.len() as i32;
        ctx.app().end_sessions(ended);
        Ok(count)
    }
}
