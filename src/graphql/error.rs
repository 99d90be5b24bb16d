//! How errors reach GraphQL clients: every error carries `extensions.code`.
//!
//! Resolvers return [`ApiResult`]; [`ApiError`] turns an [`AppError`] into a GraphQL error
//! with its code (and `reason` / `field` where they help), logging internal failures
//! instead of showing them. The [`ErrorCodes`] extension gives codes to errors raised by
//! the engine itself: syntax, validation, depth and complexity limits.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Variables};

use crate::error::AppError;

/// An [`AppError`] on its way to the client. It deliberately has no `Display`, so it can
/// convert into `async_graphql::Error` by this impl and not by the engine's generic one,
/// which would drop the code.
#[derive(Debug, Clone)]
pub struct ApiError(Arc<AppError>);

pub type ApiResult<T> = Result<T, ApiError>;

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(error: E) -> Self {
        ApiError(Arc::new(error.into()))
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(ApiError(error): ApiError) -> Self {
        if let AppError::Internal(source) = error.as_ref() {
            tracing::error!(error = ?source, "request failed");
        }
        let mut gql = async_graphql::Error::new(error.to_string());
        let extensions = gql.extensions.get_or_insert_with(Default::default);
        extensions.set("code", error.code());
        match error.as_ref() {
            AppError::Conflict { reason, .. } => extensions.set("reason", *reason),
            AppError::BadInput { field: Some(field), .. } => extensions.set("field", *field),
            AppError::RateLimited { retry_after: Some(after), .. } => {
                extensions.set("retryAfterSeconds", after.as_secs_f64().ceil() as u64)
            }
            _ => {}
        }
        gql
    }
}

fn with_code(mut error: ServerError, code: &str) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
    error
}

/// Gives a code to an error raised while executing that has none yet: an argument that
/// failed to coerce is the client's; anything else is ours, and is logged, not shown.
fn engine_error(error: ServerError) -> ServerError {
    if error.extensions.as_ref().is_some_and(|e| e.get("code").is_some()) {
        return error;
    }
    if error.message.starts_with("Failed to parse") || error.message.starts_with("Invalid value") {
        return with_code(error, "BAD_USER_INPUT");
    }
    tracing::error!(message = %error.message, path = ?error.path, "GraphQL engine error");
    let mut internal = ServerError::new("internal error", error.locations.first().copied());
    internal.path = error.path;
    with_code(internal, "INTERNAL_SERVER_ERROR")
}

/// Adds `extensions.code` to the errors the GraphQL engine raises on its own.
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension)
    }
}

struct ErrorCodesExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        response.errors = response.errors.into_iter().map(engine_error).collect();
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|e| with_code(e, "GRAPHQL_PARSE_FAILED"))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx)
            .await
            .map_err(|errors| errors.into_iter().map(|e| with_code(e, "GRAPHQL_VALIDATION_FAILED")).collect())
    }
}
