//! The errors a user can see, with the stable code each carries to the client
//! (`extensions.code`). Every layer's failures are mapped here, in one place; internal
//! details are logged and never shown.

use crate::domain::values::Invalid;
use crate::domain::{conversation, group, mcp_server, registration, user};
use crate::storage::StoreError;
use crate::storage::event_store::ExecuteError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("sign in to do this")]
    Unauthenticated,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    BadInput { field: Option<&'static str>, message: String },
    #[error("{message}")]
    Conflict { reason: &'static str, message: String },
    /// Too many attempts or too much at once; `retry_after` says when to try again, if known.
    #[error("{message}")]
    RateLimited { message: String, retry_after: Option<std::time::Duration> },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated | AppError::InvalidCredentials => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::BadInput { .. } => "BAD_USER_INPUT",
            AppError::Conflict { .. } => "CONFLICT",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    pub fn bad_input(field: &'static str, message: impl Into<String>) -> AppError {
        AppError::BadInput { field: Some(field), message: format!("{field}: {}", message.into()) }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> AppError {
        AppError::Internal(error.into())
    }
}

pub type AppResult<T> = Result<T, AppError>;

impl From<Invalid> for AppError {
    fn from(invalid: Invalid) -> Self {
        AppError::BadInput { field: Some(invalid.field), message: invalid.to_string() }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(_) => AppError::Conflict {
                reason: "CONCURRENT_UPDATE",
                message: "changed by another request at the same time; try again".into(),
            },
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<conversation::Rejection> for AppError {
    fn from(rejection: conversation::Rejection) -> Self {
        use conversation::Rejection::*;
        let message = rejection.to_string();
        match rejection {
            NotFound => AppError::NotFound("conversation"),
            AlreadyExists => AppError::Conflict { reason: "ALREADY_EXISTS", message },
            Archived => AppError::Conflict { reason: "ARCHIVED", message },
            Busy => AppError::Conflict { reason: "STREAMING", message },
            NotStreaming => AppError::Conflict { reason: "NOT_STREAMING", message },
            NoSuchCall => AppError::NotFound("tool call"),
            CallSettled => AppError::Conflict { reason: "TOOL_CALL_SETTLED", message },
            OwnerOnly => AppError::Forbidden("only the conversation's owner may do this"),
            ReadOnly => AppError::Forbidden("you may read this conversation (and fork it), not write in it"),
            NoSuchGrant => AppError::NotFound("grant"),
            OwnerCannotLeave => AppError::bad_input("conversationId", message),
        }
    }
}

impl From<user::Rejection> for AppError {
    fn from(rejection: user::Rejection) -> Self {
        match rejection {
            user::Rejection::NotFound => AppError::NotFound("user"),
            user::Rejection::AlreadyExists => {
                AppError::Conflict { reason: "ALREADY_EXISTS", message: rejection.to_string() }
            }
            user::Rejection::Forbidden => AppError::Forbidden("only an administrator may do this"),
        }
    }
}

impl From<group::Rejection> for AppError {
    fn from(rejection: group::Rejection) -> Self {
        match rejection {
            group::Rejection::NotFound => AppError::NotFound("group"),
            group::Rejection::AlreadyExists => {
                AppError::Conflict { reason: "ALREADY_EXISTS", message: rejection.to_string() }
            }
            group::Rejection::Forbidden => AppError::Forbidden("only the group's creator may change it"),
            group::Rejection::NotAMember => AppError::NotFound("group member"),
        }
    }
}

impl From<registration::Rejection> for AppError {
    fn from(rejection: registration::Rejection) -> Self {
        use registration::Rejection::*;
        match rejection {
            Forbidden => AppError::Forbidden("only an administrator may do this"),
            NoSuchInvite => AppError::NotFound("invite"),
            InviteInvalid | WrongEmail => AppError::bad_input("inviteCode", rejection.to_string()),
        }
    }
}

impl From<mcp_server::Rejection> for AppError {
    fn from(rejection: mcp_server::Rejection) -> Self {
        match rejection {
            mcp_server::Rejection::NotFound => AppError::NotFound("MCP server"),
            mcp_server::Rejection::AlreadyExists => {
                AppError::Conflict { reason: "ALREADY_EXISTS", message: rejection.to_string() }
            }
            mcp_server::Rejection::Forbidden => {
                AppError::Forbidden("only an administrator may manage a shared MCP server")
            }
        }
    }
}

impl<R: Into<AppError>> From<ExecuteError<R>> for AppError {
    fn from(error: ExecuteError<R>) -> Self {
        match error {
            ExecuteError::Rejected(rejection) => rejection.into(),
            ExecuteError::Store(store) => store.into(),
        }
    }
}
