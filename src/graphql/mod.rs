//! The GraphQL API, assembled from one part per resource.

pub mod account;
mod admin;
mod authentication;
pub mod collaboration;
pub mod conversation;
pub mod error;
pub mod groups;
pub mod live;
pub mod model;
pub mod pagination;
pub mod search;
pub mod sessions;
pub mod tools;

use std::sync::Arc;

use async_graphql::{Context, ID, MergedObject, MergedSubscription, Schema};

use crate::app::App;
use crate::auth::Viewer;
use crate::auth::accounts::Origin;
use crate::domain::ids::InvalidId;
use crate::error::AppError;
use crate::limits::{Slot, Slots};

pub use error::{ApiError, ApiResult};

#[derive(MergedObject, Default)]
pub struct Query(
    account::AccountQuery,
    conversation::ConversationQuery,
    collaboration::CollaborationQuery,
    groups::GroupsQuery,
    search::SearchQuery,
    model::ModelQuery,
    tools::ToolsQuery,
    sessions::SessionsQuery,
    admin::AdminQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    account::AccountMutation,
    conversation::ConversationMutation,
    collaboration::CollaborationMutation,
    groups::GroupsMutation,
    admin::AdminMutation,
    tools::ToolsMutation,
    sessions::SessionsMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(live::LiveSubscription);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// What a transport knows about the caller: set per HTTP request, or per websocket
/// connection from its `connection_init`.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub token: Option<String>,
    pub origin: Origin,
}

/// The subscriptions one websocket may hold at once.
pub struct ConnectionSlots(Slots<()>);

impl ConnectionSlots {
    pub fn new(max: usize) -> Self {
        ConnectionSlots(Slots::new(max))
    }
}

/// Who is asking, resolved from the [`Credentials`] for every operation, so a session
/// ended while a websocket stays open stops working on its next operation.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub viewer: Option<Viewer>,
    pub origin: Origin,
}

/// The schema with its limits, serving `app`.
pub fn build_schema(app: Arc<App>) -> AppSchema {
    let limits = app.config.graphql;
    Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .data(app)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .extension(error::ErrorCodes)
        .extension(authentication::Authentication)
        .finish()
}

/// The schema in SDL: what `schema.graphql` holds.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), Subscription::default()).finish().sdl()
}

/// Access to the application and the viewer from a resolver.
pub trait ContextExt {
    fn app(&self) -> &Arc<App>;
    fn request(&self) -> &RequestContext;

    /// The signed-in viewer, or `UNAUTHENTICATED`.
    fn viewer(&self) -> Result<&Viewer, AppError> {
        self.request().viewer.as_ref().ok_or(AppError::Unauthenticated)
    }

    /// A place for one more subscription on this connection (HTTP has no limit: it
    /// carries no subscriptions).
    fn subscription_slot(&self) -> Result<Option<Slot<()>>, AppError>;

    /// The largest page a list may return.
    fn max_page_size(&self) -> usize {
        self.app().config.graphql.max_page_size
    }
}

impl ContextExt for Context<'_> {
    fn app(&self) -> &Arc<App> {
        self.data_unchecked::<Arc<App>>()
    }

    fn subscription_slot(&self) -> Result<Option<Slot<()>>, AppError> {
        let Some(ConnectionSlots(slots)) = self.data_opt::<ConnectionSlots>() else { return Ok(None) };
        let slot = slots.take(()).ok_or_else(|| AppError::RateLimited {
            message: format!("at most {} subscriptions may be open on one connection", slots.max()),
            retry_after: None,
        })?;
        Ok(Some(slot))
    }

    fn request(&self) -> &RequestContext {
        static ANONYMOUS: RequestContext =
            RequestContext { viewer: None, origin: Origin { user_agent: None, address: None } };
        self.data_opt::<RequestContext>().unwrap_or(&ANONYMOUS)
    }
}

/// Parses a client-supplied id, naming the argument when it is malformed.
pub fn parse_id<T>(field: &'static str, id: &ID, parse: fn(&str) -> Result<T, InvalidId>) -> Result<T, AppError> {
    parse(id.as_str()).map_err(|e| AppError::bad_input(field, e.to_string()))
}
