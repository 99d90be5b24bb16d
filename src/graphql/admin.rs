//! Account administration, for administrators only.

use async_graphql::{Context, ID, Object};

use super::account::User;
use super::{ApiResult, ContextExt, parse_id};
use crate::auth::{Viewer, accounts};
use crate::domain::ids::UserId;
use crate::domain::user::Role;
use crate::domain::values::ModelMask;
use crate::error::AppError;

fn admin<'a>(ctx: &'a Context<'_>) -> Result<&'a Viewer, AppError> {
    let viewer = ctx.viewer()?;
    match viewer.role {
        Role::Admin => Ok(viewer),
        Role::User => Err(AppError::Forbidden("only an administrator may do this")),
    }
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Limits the models a user may use to those whose id matches `mask` entirely (a
    /// regular expression); no mask allows every model.
    async fn set_user_model_mask(&self, ctx: &Context<'_>, user_id: ID, mask: Option<String>) -> ApiResult<User> {
        let viewer = admin(ctx)?;
        let user = parse_id("userId", &user_id, UserId::parse)?;
        let mask = mask.as_deref().map(ModelMask::parse).transpose()?;
        Ok(accounts::set_model_mask(&ctx.app().db, viewer.actor(), user, mask).await?.into())
    }
}
