//! Resolves the viewer of every operation from the caller's [`Credentials`].

use std::any::TypeId;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest};
use async_graphql::{Request, ServerError, ServerResult};

use super::{Credentials, RequestContext};
use crate::app::App;
use crate::auth::accounts;

pub struct Authentication;

impl ExtensionFactory for Authentication {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Authentication)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Authentication {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        // HTTP puts credentials on the request; websockets on the connection.
        let credentials = request
            .data
            .get(&TypeId::of::<Credentials>())
            .and_then(|data| data.downcast_ref::<Credentials>())
            .or_else(|| ctx.data_opt::<Credentials>())
            .cloned()
            .unwrap_or_default();
        let viewer = match (&credentials.token, ctx.data_opt::<Arc<App>>()) {
            (Some(token), Some(app)) => accounts::authenticate(&app.db, token).await.map_err(|error| {
                tracing::error!(%error, "session lookup failed");
                let mut error = ServerError::new("the server cannot check sessions right now", None);
                error.extensions.get_or_insert_with(Default::default).set("code", "INTERNAL_SERVER_ERROR");
                error
            })?,
            _ => None,
        };
        request.data.insert(RequestContext { viewer, origin: credentials.origin });
        next.run(ctx, request).await
    }
}
