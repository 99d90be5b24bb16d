//! The models file (`LITESKILL_MODELS_FILE`) and the system-prompt presets file
//! (`LITESKILL_PRESETS_FILE`), both YAML; README.md shows their shape.

use std::collections::BTreeMap;
use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;

use super::{BedrockSettings, ConfigError, OpenAiEndpoint};
use crate::domain::values::Sampling;

/// A model to offer, as configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "ModelEntry")]
pub struct ModelSpec {
    /// The id users and the API see.
    pub id: String,
    pub display_name: Option<String>,
    /// The id the provider knows the model by; the `id` when absent.
    pub upstream_id: Option<String>,
    /// Sampling for conversations that set none.
    pub temperature: Option<f64>,
    pub max_tokens: Option<i64>,
}

impl ModelSpec {
    pub fn named(id: String) -> ModelSpec {
        ModelSpec { id, display_name: None, upstream_id: None, temperature: None, max_tokens: None }
    }
}

/// A model is a bare id, or an id with settings.
#[derive(Deserialize)]
#[serde(untagged)]
enum ModelEntry {
    Id(String),
    Full {
        id: String,
        display_name: Option<String>,
        upstream_id: Option<String>,
        temperature: Option<f64>,
        max_tokens: Option<i64>,
    },
}

impl From<ModelEntry> for ModelSpec {
    fn from(entry: ModelEntry) -> ModelSpec {
        match entry {
            ModelEntry::Id(id) => ModelSpec::named(id),
            ModelEntry::Full { id, display_name, upstream_id, temperature, max_tokens } => {
                ModelSpec { id, display_name, upstream_id, temperature, max_tokens }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    #[serde(default)]
    openai: Vec<OpenAiEntry>,
    bedrock: Option<BedrockEntry>,
    default_model: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenAiEntry {
    name: String,
    base_url: String,
    /// The environment variable holding the key: secrets stay out of the file.
    api_key_env: Option<String>,
    models: Option<Vec<ModelSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BedrockEntry {
    region: Option<String>,
    endpoint_url: Option<String>,
    models: Vec<ModelSpec>,
}

/// What a models file adds to the configuration.
#[derive(Debug, Default)]
pub struct Models {
    pub openai: Vec<OpenAiEndpoint>,
    pub bedrock: Option<BedrockSettings>,
    pub default_model: Option<String>,
}

/// A system prompt users may start a conversation with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    #[serde(skip)]
    pub key: String,
    pub content: String,
    pub description: Option<String>,
}

fn read(variable: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{variable}: cannot read {}: {e}", path.display())))
}

/// Reads a models file; `var` resolves the environment variables holding keys.
pub fn models(path: &Path, var: &impl Fn(&str) -> Option<String>) -> Result<Models, ConfigError> {
    let invalid = |e: String| ConfigError(format!("LITESKILL_MODELS_FILE {}: {e}", path.display()));
    let file: ModelsFile =
        serde_yaml::from_str(&read("LITESKILL_MODELS_FILE", path)?).map_err(|e| invalid(e.to_string()))?;
    let specs =
        file.openai.iter().flat_map(|e| e.models.iter().flatten()).chain(file.bedrock.iter().flat_map(|b| &b.models));
    for spec in specs {
        Sampling::parse(spec.temperature, spec.max_tokens).map_err(|e| invalid(format!("model `{}`: {e}", spec.id)))?;
    }
    let openai = file
        .openai
        .into_iter()
        .map(|entry| {
            let api_key = match &entry.api_key_env {
                Some(name) => Some(var(name).map(SecretString::from).ok_or_else(|| {
                    invalid(format!("endpoint `{}`: the environment variable {name} is not set", entry.name))
                })?),
                None => None,
            };
            Ok(OpenAiEndpoint { name: entry.name, base_url: entry.base_url, api_key, models: entry.models })
        })
        .collect::<Result<_, ConfigError>>()?;
    let bedrock = file.bedrock.map(|entry| BedrockSettings {
        models: entry.models,
        region: entry.region,
        endpoint_url: entry.endpoint_url,
        bearer_token: None,
    });
    Ok(Models { openai, bedrock, default_model: file.default_model })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct McpFile {
    servers: Vec<McpEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct McpEntry {
    name: String,
    url: Option<String>,
    /// Header name to the environment variable holding its value.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
}

/// An MCP server the operator shares with every user.
#[derive(Debug, Clone)]
pub struct ConfiguredMcpServer {
    pub name: String,
    pub endpoint: crate::mcp::Endpoint,
}

/// Reads an MCP servers file; `var` resolves the environment variables holding headers.
pub fn mcp_servers(
    path: &Path,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<ConfiguredMcpServer>, ConfigError> {
    let invalid = |e: String| ConfigError(format!("MCP_SERVERS_FILE {}: {e}", path.display()));
    let file: McpFile = serde_yaml::from_str(&read("MCP_SERVERS_FILE", path)?).map_err(|e| invalid(e.to_string()))?;
    let mut servers: Vec<ConfiguredMcpServer> = vec![];
    for entry in file.servers {
        let name = crate::domain::mcp_server::ServerName::parse(&entry.name)
            .map_err(|e| invalid(format!("server `{}`: {e}", entry.name)))?;
        if servers.iter().any(|s| s.name == name.as_str()) {
            return Err(invalid(format!("two servers are named `{}`", entry.name)));
        }
        let endpoint = match (entry.url, entry.command) {
            (Some(url), None) => {
                let headers = entry
                    .headers
                    .into_iter()
                    .map(|(header, variable)| {
                        let value = var(&variable).ok_or_else(|| {
                            invalid(format!("server `{}`: the environment variable {variable} is not set", entry.name))
                        })?;
                        Ok((header, SecretString::from(value)))
                    })
                    .collect::<Result<_, ConfigError>>()?;
                crate::mcp::Endpoint::Http { url, headers }
            }
            (None, Some(command)) if entry.headers.is_empty() => {
                crate::mcp::Endpoint::Stdio { command, args: entry.args }
            }
            _ => {
                return Err(invalid(format!(
                    "server `{}` needs either `url` (and `headers`) or `command`",
                    entry.name
                )));
            }
        };
        servers.push(ConfiguredMcpServer { name: name.as_str().to_owned(), endpoint });
    }
    Ok(servers)
}

/// Reads a presets file: `key: { content, description }`, listed by key.
pub fn presets(path: &Path) -> Result<Vec<Preset>, ConfigError> {
    let invalid = |e: String| ConfigError(format!("LITESKILL_PRESETS_FILE {}: {e}", path.display()));
    let presets: BTreeMap<String, Preset> =
        serde_yaml::from_str(&read("LITESKILL_PRESETS_FILE", path)?).map_err(|e| invalid(e.to_string()))?;
    Ok(presets.into_iter().map(|(key, preset)| Preset { key, ..preset }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write");
        file
    }

    #[test]
    fn a_models_file_lists_endpoints_and_their_models() {
        let yaml = "
default_model: fast
openai:
  - name: litellm
    base_url: http://litellm:4000/v1
    api_key_env: LITELLM_KEY
    models:
      - fast
      - id: smart
        display_name: Smart one
        upstream_id: openai/gpt-4o
        temperature: 0.2
        max_tokens: 2048
  - name: ollama
    base_url: http://localhost:11434/v1
bedrock:
  region: eu-west-1
  models: [anthropic.claude-3-haiku-20240307-v1:0]
";
        let f = file(yaml);
        let models = models(f.path(), &|name| (name == "LITELLM_KEY").then(|| "sk-1".to_owned())).expect("valid");
        assert_eq!(models.default_model.as_deref(), Some("fast"));
        assert_eq!(models.openai.len(), 2);
        let litellm = &models.openai[0];
        assert!(litellm.api_key.is_some());
        let listed = litellm.models.as_ref().expect("listed");
        assert_eq!(listed[0], ModelSpec::named("fast".into()));
        assert_eq!(listed[1].upstream_id.as_deref(), Some("openai/gpt-4o"));
        assert_eq!(listed[1].temperature, Some(0.2));
        assert_eq!(models.openai[1].models, None, "discovered");
        assert_eq!(models.bedrock.map(|b| b.models.len()), Some(1));
    }

    #[test]
    fn mistakes_in_a_models_file_are_named() {
        let missing_key = file("openai: [{name: a, base_url: http://a, api_key_env: NOPE}]");
        let error = models(missing_key.path(), &|_| None).expect_err("unset key variable");
        assert!(error.to_string().contains("NOPE"), "{error}");
        let typo = file("openai: [{name: a, base_ulr: http://a}]");
        assert!(models(typo.path(), &|_| None).is_err());
        let hot = file("openai: [{name: a, base_url: http://a, models: [{id: m, temperature: 9}]}]");
        let error = models(hot.path(), &|_| None).expect_err("temperature out of range");
        assert!(error.to_string().contains("temperature"), "{error}");
    }

    #[test]
    fn presets_are_read_by_key() {
        let f = file(
            "concise:\n  content: Answer briefly.\n  description: Short answers\nbard:\n  content: Answer in verse.\n",
        );
        let presets = presets(f.path()).expect("valid");
        let keys: Vec<&str> = presets.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["bard", "concise"]);
        assert_eq!(presets[1].content, "Answer briefly.");
        assert_eq!(presets[0].description, None);
        assert!(super::presets(file("concise: {text: oops}").path()).is_err());
    }
}
