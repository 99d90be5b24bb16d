//! Language models: one [`Provider`] trait, with a wire client per kind of endpoint,
//! and the catalog of models users may choose from.

pub mod bedrock;
pub mod demo;
pub mod openai;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::config::LlmConfig;

/// Who said a message in the context sent to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub speaker: Speaker,
    pub content: String,
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
}

/// What a streaming completion yields.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Text(String),
    Finished { stop_reason: String, input_tokens: Option<i64>, output_tokens: Option<i64> },
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
    pub provider: Arc<dyn Provider>,
}

/// The models this server offers; the first is the default unless configured otherwise.
pub struct Catalog {
    models: Vec<Model>,
    default: usize,
}

impl Catalog {
    /// Builds the catalog from configuration, asking OpenAI-compatible endpoints for their
    /// models when none are listed. Without any endpoint, the demo model is offered.
    pub async fn from_config(config: &LlmConfig) -> anyhow::Result<Catalog> {
        let mut models = vec![];
        if let Some(settings) = &config.bedrock {
            let provider: Arc<dyn Provider> = Arc::new(bedrock::Bedrock::new(settings).await);
            models.extend(settings.models.iter().map(|id| Model {
                id: id.clone(),
                display_name: id.clone(),
                provider_kind: "bedrock",
                upstream_id: id.clone(),
                provider: provider.clone(),
            }));
        }
        if let Some(endpoint) = &config.openai {
            let provider = Arc::new(openai::OpenAi::new(endpoint.clone())?);
            let ids = match &endpoint.models {
                Some(ids) => ids.clone(),
                None => provider.list_models().await?,
            };
            models.extend(ids.into_iter().map(|id| Model {
                display_name: id.clone(),
                upstream_id: id.clone(),
                id,
                provider_kind: "openai",
                provider: provider.clone(),
            }));
        }
        if models.is_empty() {
            models.push(demo::model(config.demo_token_delay));
        }
        let default = match &config.default_model {
            Some(id) => models
                .iter()
                .position(|m| &m.id == id)
                .ok_or_else(|| anyhow::anyhow!("LITESKILL_DEFAULT_MODEL `{id}` is not among the models"))?,
            None => 0,
        };
        Ok(Catalog { models, default })
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
}
