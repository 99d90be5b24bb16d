//! Language models: one [`Provider`] trait, with a wire client per kind of endpoint,
//! and the catalog of models users may choose from.

pub mod bedrock;
pub mod demo;
pub mod openai;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use anyhow::Context;

use crate::config::{LlmConfig, ModelSpec, Preset};

/// Who said a message in the context sent to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Speaker {
    #[default]
    User,
    Assistant,
}

/// A message of the context: its text, and the tool calls (assistant) or tool results
/// (user) it carries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatMessage {
    pub speaker: Speaker,
    pub content: String,
    pub tool_uses: Vec<ToolUse>,
    pub tool_results: Vec<ToolResult>,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    /// The provider's id for the call, which its result must quote.
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

/// What a tool call returned, as sent back to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub id: String,
    pub content: String,
    pub is_error: bool,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of its arguments.
    pub input_schema: serde_json::Value,
}

/// Everything a provider needs for one completion.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The model's id at the provider.
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub tools: Vec<ToolSpec>,
}

/// What a streaming completion yields.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Text(String),
    /// A whole tool call, once its arguments have all arrived.
    ToolUse(ToolUse),
    Finished {
        stop_reason: String,
        input_tokens: Option<i64>,
        output_tokens: Option<i64>,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("the model endpoint answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("could not reach the model endpoint: {0}")]
    Transport(String),
    #[error("the model endpoint sent something unreadable: {0}")]
    Malformed(String),
}

impl LlmError {
    /// Worth retrying (before any text arrived): overload, server errors, network trouble.
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::Status { status, .. } => *status == 429 || *status >= 500,
            LlmError::Transport(_) => true,
            LlmError::Malformed(_) => false,
        }
    }
}

pub type TokenStream = BoxStream<'static, Result<StreamEvent, LlmError>>;

/// A kind of model endpoint.
pub trait Provider: Send + Sync {
    /// Starts a streaming completion.
    fn stream(&self, request: ChatRequest) -> BoxFuture<'static, Result<TokenStream, LlmError>>;
}

/// A model users may pick.
#[derive(Clone)]
pub struct Model {
    /// The id users and the API see.
    pub id: String,
    pub display_name: String,
    /// `bedrock`, `openai` or `demo`.
    pub provider_kind: &'static str,
    /// The id the provider knows the model by.
    pub upstream_id: String,
    /// Sampling for conversations that set none.
    pub temperature: Option<f64>,
    pub max_tokens: Option<i64>,
    pub provider: Arc<dyn Provider>,
}

impl Model {
    fn configured(spec: ModelSpec, provider_kind: &'static str, provider: Arc<dyn Provider>) -> Model {
        Model {
            display_name: spec.display_name.unwrap_or_else(|| spec.id.clone()),
            upstream_id: spec.upstream_id.unwrap_or_else(|| spec.id.clone()),
            id: spec.id,
            provider_kind,
            temperature: spec.temperature,
            max_tokens: spec.max_tokens,
            provider,
        }
    }
}

/// The models and system-prompt presets this server offers; the first model is the
/// default unless configured otherwise.
pub struct Catalog {
    models: Vec<Model>,
    default: usize,
    presets: Vec<Preset>,
}

impl Catalog {
    /// Builds the catalog from configuration, asking OpenAI-compatible endpoints for their
    /// models when none are listed. Without any endpoint, the demo model is offered.
    pub async fn from_config(config: &LlmConfig) -> anyhow::Result<Catalog> {
        let mut models = vec![];
        if let Some(settings) = &config.bedrock {
            let provider: Arc<dyn Provider> = Arc::new(bedrock::Bedrock::new(settings).await);
            models.extend(
                settings.models.iter().map(|spec| Model::configured(spec.clone(), "bedrock", provider.clone())),
            );
        }
        for endpoint in &config.openai {
            let provider = Arc::new(openai::OpenAi::new(endpoint.clone())?);
            let specs = match &endpoint.models {
                Some(specs) => specs.clone(),
                None => provider
                    .list_models()
                    .await
                    .with_context(|| format!("listing the models of endpoint `{}`", endpoint.name))?
                    .into_iter()
                    .map(ModelSpec::named)
                    .collect(),
            };
            models.extend(specs.into_iter().map(|spec| Model::configured(spec, "openai", provider.clone())));
        }
        if models.is_empty() {
            models.push(demo::model(config.demo_token_delay));
        }
        for (i, model) in models.iter().enumerate() {
            if models[..i].iter().any(|m| m.id == model.id) {
                anyhow::bail!("two configured models have the id `{}`; give one another id", model.id);
            }
        }
        let default = match &config.default_model {
            Some(id) => models
                .iter()
                .position(|m| &m.id == id)
                .ok_or_else(|| anyhow::anyhow!("the default model `{id}` is not among the models"))?,
            None => 0,
        };
        Ok(Catalog { models, default, presets: config.presets.clone() })
    }

    pub fn models(&self) -> &[Model] {
        &self.models
    }

    pub fn get(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.id == id)
    }

    pub fn default_model(&self) -> &Model {
        &self.models[self.default]
    }

    pub fn presets(&self) -> &[Preset] {
        &self.presets
    }

    pub fn preset(&self, key: &str) -> Option<&Preset> {
        self.presets.iter().find(|p| p.key == key)
    }
}
