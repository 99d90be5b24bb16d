//! Tools on MCP servers: connecting (streamable HTTP or a child process over stdio),
//! listing tools, and calling one, each within a time limit; and which addresses users
//! may register.

pub mod address;
pub mod registry;

use std::collections::HashMap;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, ClientConfig, JsonObject};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use secrecy::{ExposeSecret, SecretString};

/// Where an MCP server is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// Streamable HTTP, with headers such as an API key.
    Http { url: String, headers: Vec<(String, SecretString)> },
    /// A command this server runs, speaking over its standard input and output.
    Stdio { command: String, args: Vec<String> },
}

/// A tool as its server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInfo {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of its arguments.
    pub input_schema: serde_json::Value,
}

/// What a call returned: its text, and whether the tool reported an error.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    pub is_error: bool,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum McpError {
    #[error("cannot reach the MCP server: {0}")]
    Connect(String),
    #[error("the MCP server did not answer within {0}s")]
    Timeout(u64),
    #[error("the MCP server answered with an error: {0}")]
    Protocol(String),
    #[error("a header for the MCP server is invalid: {0}")]
    Header(String),
}

/// An open session with an MCP server; dropping it closes the session.
pub struct Session {
    service: RunningService<RoleClient, ClientConfig>,
    limit: Duration,
}

async fn within<T>(limit: Duration, work: impl Future<Output = Result<T, McpError>>) -> Result<T, McpError> {
    tokio::time::timeout(limit, work).await.map_err(|_| McpError::Timeout(limit.as_secs()))?
}

impl Session {
    /// Connects and completes the handshake, within `limit`; later requests get the same.
    pub async fn open(endpoint: &Endpoint, limit: Duration) -> Result<Session, McpError> {
        let client = ClientConfig::default();
        let service = within(limit, async {
            match endpoint {
                Endpoint::Http { url, headers } => {
                    let mut custom = HashMap::new();
                    for (name, value) in headers {
                        let name = axum::http::HeaderName::try_from(name.as_str())
                            .map_err(|e| McpError::Header(e.to_string()))?;
                        let mut value = axum::http::HeaderValue::try_from(value.expose_secret())
                            .map_err(|_| McpError::Header(format!("the value of {name}")))?;
                        value.set_sensitive(true);
                        custom.insert(name, value);
                    }
                    let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                    config.custom_headers = custom;
                    let transport = StreamableHttpClientTransport::from_config(config);
                    client.serve(transport).await.map_err(|e| McpError::Connect(e.to_string()))
                }
                Endpoint::Stdio { command, args } => {
                    let mut process = tokio::process::Command::new(command);
                    process.args(args).kill_on_drop(true);
                    let transport = TokioChildProcess::new(process).map_err(|e| McpError::Connect(e.to_string()))?;
                    client.serve(transport).await.map_err(|e| McpError::Connect(e.to_string()))
                }
            }
        })
        .await?;
        Ok(Session { service, limit })
    }

    pub async fn tools(&self) -> Result<Vec<ToolInfo>, McpError> {
        let tools = within(self.limit, async {
            self.service.list_all_tools().await.map_err(|e| McpError::Protocol(e.to_string()))
        })
        .await?;
        Ok(tools
            .into_iter()
            .map(|tool| ToolInfo {
                name: tool.name.to_string(),
                description: tool.description.map(|d| d.to_string()),
                input_schema: serde_json::Value::Object((*tool.input_schema).clone()),
            })
            .collect())
    }

    /// Calls a tool, within `limit`.
    pub async fn call(&self, name: &str, arguments: JsonObject, limit: Duration) -> Result<ToolOutput, McpError> {
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        let result = within(limit, async {
            self.service.call_tool(params).await.map_err(|e| McpError::Protocol(e.to_string()))
        })
        .await?;
        let text =
            result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.as_str())).collect::<Vec<_>>().join("\n");
        Ok(ToolOutput { text, is_error: result.is_error.unwrap_or(false) })
    }
}
