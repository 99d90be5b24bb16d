//! AWS Bedrock through the Converse streaming API. Credentials come from the standard AWS
//! chain, or a Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`) sent as a bearer token.

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::Token;
use aws_sdk_bedrockruntime::config::http::HttpResponse;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ContentBlockStart, ConversationRole, ConverseStreamOutput, InferenceConfiguration,
    Message, SystemContentBlock, Tool, ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock,
    ToolResultStatus, ToolSpecification, ToolUseBlock,
};
use aws_smithy_runtime_api::client::auth::http::HTTP_BEARER_AUTH_SCHEME_ID;
use aws_smithy_types::{Document, Number};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use secrecy::ExposeSecret;

use super::{ChatRequest, LlmError, Provider, Speaker, StreamEvent, TokenStream, ToolUse};
use crate::config::BedrockSettings;

pub struct Bedrock {
    client: Client,
}

impl Bedrock {
    pub async fn new(settings: &BedrockSettings) -> Bedrock {
        let mut shared = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            shared = shared.region(aws_config::Region::new(region.clone()));
        }
        let shared = shared.load().await;
        // Retrying is the reply's job (before the first token only), for every provider alike.
        let mut config = aws_sdk_bedrockruntime::config::Builder::from(&shared)
            .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled());
        if let Some(url) = &settings.endpoint_url {
            config = config.endpoint_url(url);
        }
        if let Some(token) = &settings.bearer_token {
            config = config
                .bearer_token(Token::new(token.expose_secret(), None))
                .auth_scheme_preference([HTTP_BEARER_AUTH_SCHEME_ID]);
        }
        Bedrock { client: Client::from_conf(config.build()) }
    }
}

/// What went wrong, in the service's words when it said anything.
fn describe<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> String
where
    SdkError<E, R>: std::error::Error,
{
    use std::error::Error;
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("error");
            format!("{code}: {}", service.err().message().unwrap_or_default())
        }
        _ => error.source().map_or_else(|| error.to_string(), |source| source.to_string()),
    }
}

fn send_error<E: ProvideErrorMetadata>(error: SdkError<E, HttpResponse>) -> LlmError
where
    SdkError<E, HttpResponse>: std::error::Error,
{
    match error.raw_response().map(|r| r.status().as_u16()) {
        Some(status) if status >= 400 => LlmError::Status { status, body: describe(&error) },
        _ => LlmError::Transport(describe(&error)),
    }
}

/// An error inside the event stream: exceptions arrive as events, without an HTTP status.
fn stream_error<E: ProvideErrorMetadata, R>(error: SdkError<E, R>) -> LlmError
where
    SdkError<E, R>: std::error::Error,
{
    let status = match &error {
        SdkError::ServiceError(service) => match service.err().code() {
            Some("throttlingException") => 429,
            Some("validationException") => 400,
            _ => 500,
        },
        _ => return LlmError::Transport(describe(&error)),
    };
    LlmError::Status { status, body: describe(&error) }
}

/// JSON as the SDK's document type.
fn document(value: &serde_json::Value) -> Document {
    use serde_json::Value;
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Number::PosInt(u),
            (None, Some(i)) => Number::NegInt(i),
            _ => Number::Float(n.as_f64().unwrap_or_default()),
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(document).collect()),
        Value::Object(map) => Document::Object(map.iter().map(|(k, v)| (k.clone(), document(v))).collect()),
    }
}

fn malformed(error: impl std::fmt::Display) -> LlmError {
    LlmError::Malformed(error.to_string())
}

fn messages(request: &ChatRequest) -> Result<Vec<Message>, LlmError> {
    request
        .messages
        .iter()
        .map(|m| {
            let role = match m.speaker {
                Speaker::User => ConversationRole::User,
                Speaker::Assistant => ConversationRole::Assistant,
            };
            let mut message = Message::builder().role(role);
            for result in &m.tool_results {
                let block = ToolResultBlock::builder()
                    .tool_use_id(&result.id)
                    .content(ToolResultContentBlock::Text(result.content.clone()))
                    .status(if result.is_error { ToolResultStatus::Error } else { ToolResultStatus::Success })
                    .build()
                    .map_err(malformed)?;
                message = message.content(ContentBlock::ToolResult(block));
            }
            if !m.content.is_empty() {
                message = message.content(ContentBlock::Text(m.content.clone()));
            }
            for call in &m.tool_uses {
                let block = ToolUseBlock::builder()
                    .tool_use_id(&call.id)
                    .name(&call.name)
                    .input(document(&call.arguments))
                    .build()
                    .map_err(malformed)?;
                message = message.content(ContentBlock::ToolUse(block));
            }
            message.build().map_err(malformed)
        })
        .collect()
}

fn tool_config(request: &ChatRequest) -> Result<Option<ToolConfiguration>, LlmError> {
    if request.tools.is_empty() {
        return Ok(None);
    }
    let mut config = ToolConfiguration::builder();
    for tool in &request.tools {
        let spec = ToolSpecification::builder()
            .name(&tool.name)
            .set_description(tool.description.clone())
            .input_schema(ToolInputSchema::Json(document(&tool.input_schema)))
            .build()
            .map_err(malformed)?;
        config = config.tools(Tool::ToolSpec(spec));
    }
    config.build().map(Some).map_err(malformed)
}

impl Provider for Bedrock {
    fn stream(&self, request: ChatRequest) -> BoxFuture<'static, Result<TokenStream, LlmError>> {
        let client = self.client.clone();
        async move {
            let mut call = client.converse_stream().model_id(&request.model).set_messages(Some(messages(&request)?));
            if let Some(system) = &request.system {
                call = call.system(SystemContentBlock::Text(system.clone()));
            }
            call = call.set_tool_config(tool_config(&request)?);
            if request.temperature.is_some() || request.max_tokens.is_some() {
                let max_tokens = request.max_tokens.and_then(|n| i32::try_from(n).ok());
                let config = InferenceConfiguration::builder()
                    .set_temperature(request.temperature)
                    .set_max_tokens(max_tokens)
                    .build();
                call = call.inference_config(config);
            }
            let output = call.send().await.map_err(send_error)?;
            let events = async_stream::try_stream! {
                let mut stream = output.stream;
                let mut stop_reason = None;
                let mut usage = (None, None);
                // The tool call being received: id, name, arguments so far.
                let mut call: Option<(String, String, String)> = None;
                loop {
                    match stream.recv().await.map_err(stream_error)? {
                        Some(ConverseStreamOutput::ContentBlockStart(event)) => {
                            if let Some(ContentBlockStart::ToolUse(start)) = event.start {
                                call = Some((start.tool_use_id, start.name, String::new()));
                            }
                        }
                        Some(ConverseStreamOutput::ContentBlockDelta(event)) => match event.delta {
                            Some(ContentBlockDelta::Text(text)) => yield StreamEvent::Text(text),
                            Some(ContentBlockDelta::ToolUse(delta)) => {
                                if let Some((_, _, arguments)) = call.as_mut() {
                                    arguments.push_str(&delta.input);
                                }
                            }
                            _ => {}
                        },
                        Some(ConverseStreamOutput::ContentBlockStop(_)) => {
                            if let Some((id, name, arguments)) = call.take() {
                                let arguments = if arguments.trim().is_empty() { "{}" } else { arguments.as_str() };
                                let arguments = serde_json::from_str(arguments)
                                    .map_err(|e| malformed(format!("arguments of tool call `{name}`: {e}")))?;
                                yield StreamEvent::ToolUse(ToolUse { id, name, arguments });
                            }
                        }
                        Some(ConverseStreamOutput::MessageStop(event)) => {
                            stop_reason = Some(event.stop_reason.as_str().to_owned());
                        }
                        Some(ConverseStreamOutput::Metadata(event)) => {
                            if let Some(tokens) = event.usage {
                                usage = (Some(i64::from(tokens.input_tokens)), Some(i64::from(tokens.output_tokens)));
                            }
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
                let stop_reason = stop_reason
                    .ok_or_else(|| LlmError::Transport("the stream ended before the model finished".into()))?;
                yield StreamEvent::Finished { stop_reason, input_tokens: usage.0, output_tokens: usage.1 };
            };
            Ok(events.boxed())
        }
        .boxed()
    }
}
