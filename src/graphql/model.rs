//! The model catalog and system-prompt presets.

use async_graphql::{Context, Object, SimpleObject};

use super::{ApiResult, ContextExt};

/// A model that can answer in a conversation.
#[derive(SimpleObject)]
pub struct Model {
    /// Pass as `modelId` to `createConversation`.
    pub id: String,
    pub display_name: String,
    /// `bedrock`, `openai` or `demo`.
    pub provider: String,
    /// Used by conversations that name no model.
    pub is_default: bool,
    /// Sampling temperature of conversations that set none (the provider's when null).
    pub temperature: Option<f64>,
    /// Longest reply of conversations that set none (the provider's when null).
    pub max_tokens: Option<i64>,
}

/// A system prompt to start a conversation with.
#[derive(SimpleObject)]
pub struct SystemPromptPreset {
    /// Pass as `systemPromptPreset` to `createConversation`.
    pub key: String,
    pub description: Option<String>,
    pub content: String,
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
                temperature: m.temperature,
                max_tokens: m.max_tokens,
            })
            .collect())
    }

    /// The system prompts this server suggests, by key.
    async fn system_prompt_presets(&self, ctx: &Context<'_>) -> ApiResult<Vec<SystemPromptPreset>> {
        ctx.viewer()?;
        Ok(ctx
            .app()
            .catalog
            .presets()
            .iter()
            .map(|p| SystemPromptPreset {
                key: p.key.clone(),
                description: p.description.clone(),
                content: p.content.clone(),
            })
            .collect())
    }
}
