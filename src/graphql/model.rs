//! The model catalog.

use async_graphql::{Context, Object, SimpleObject};

use super::{ApiResult, ContextExt};

/// A model that can answer in a conversation.
#[derive(SimpleObject)]
pub struct Model {
    /// Pass as `modelId` to `createConversation`.
    pub id: String,
    pub display_name: String,
    /// `demo` or `openai`.
    pub provider: String,
    /// Used by conversations that name no model.
    pub is_default: bool,
}

#[derive(Default)]
pub struct ModelQuery;

#[Object]
impl ModelQuery {
    /// The models this server offers the viewer (their model mask applied).
    async fn models(&self, ctx: &Context<'_>) -> ApiResult<Vec<Model>> {
        let viewer = ctx.viewer()?;
        let catalog = &ctx.app().catalog;
        let default = &catalog.default_model().id;
        Ok(catalog
            .models()
            .iter()
            .filter(|m| viewer.may_use(&m.id))
            .map(|m| Model {
                id: m.id.clone(),
                display_name: m.display_name.clone(),
                provider: m.provider_kind.to_owned(),
                is_default: &m.id == default,
            })
            .collect())
    }
}
