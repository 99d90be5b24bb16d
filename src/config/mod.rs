//! Typed configuration from environment variables (README lists them all), and the
//! files they name. Secrets are held in `secrecy` types so they never reach a log
//! through `Debug`.

mod files;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngExt;
use secrecy::{ExposeSecret, SecretString};

pub use files::{ConfiguredMcpServer, ModelSpec, Preset};

use crate::domain::registration::Policy;

/// Development generates missing secrets; production refuses to start without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// Sign-in with an OpenID Connect provider.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    /// `$PUBLIC_URL/auth/oidc/callback`.
    pub redirect_url: String,
    pub scopes: Vec<String>,
    /// Signs a provider account into the existing account with its email, when the
    /// provider says the email is verified.
    pub link_verified_email: bool,
    /// Shown on the sign-in button.
    pub display_name: String,
    /// The ID token claim that lists the provider groups a user is in.
    pub groups_claim: Option<String>,
}

/// Limits that keep one client from exhausting the server.
#[derive(Debug, Clone, Copy)]
pub struct AbuseLimits {
    /// Failed sign-ins per account within `login_window` before it is throttled.
    pub login_failures_per_account: usize,
    /// Failed sign-ins per client address within `login_window`.
    pub login_failures_per_address: usize,
    pub login_window: Duration,
    /// Replies one user may have streaming at once (on each server).
    pub streams_per_user: usize,
    /// A websocket that has not sent `connection_init` within this long is closed.
    pub websocket_init_timeout: Duration,
    pub subscriptions_per_connection: usize,
    /// Takes the client's address from the last `X-Forwarded-For` entry (behind a proxy).
    pub trust_forwarded_for: bool,
}

/// Limits that keep one GraphQL request cheap.
#[derive(Debug, Clone, Copy)]
pub struct GraphqlLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_page_size: usize,
}

/// An OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiEndpoint {
    /// Names the endpoint in logs and errors.
    pub name: String,
    pub base_url: String,
    pub api_key: Option<SecretString>,
    /// The models to offer; `None` asks the endpoint (`GET /models`).
    pub models: Option<Vec<ModelSpec>>,
}

/// AWS Bedrock. Credentials not given here come from the standard AWS chain.
#[derive(Debug, Clone)]
pub struct BedrockSettings {
    /// The Bedrock models (or inference profiles) to offer.
    pub models: Vec<ModelSpec>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// A Bedrock API key, sent as a bearer token instead of signing with credentials.
    pub bearer_token: Option<SecretString>,
}

/// Language models and how replies are streamed.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub bedrock: Option<BedrockSettings>,
    pub openai: Vec<OpenAiEndpoint>,
    pub default_model: Option<String>,
    pub presets: Vec<Preset>,
    /// Pause between the demo model's words.
    pub demo_token_delay: Duration,
    /// A reply that has not started within this long fails.
    pub first_token_timeout: Duration,
    /// A streaming reply whose server has not saved its progress for this long is
    /// considered cut off by a crash, and closed as failed.
    pub reply_stale_after: Duration,
}

/// Tools on MCP servers.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// Lets users register servers on loopback, private and link-local addresses.
    pub allow_private_networks: bool,
    /// Connecting and listing tools.
    pub connect_timeout: Duration,
    /// One tool call.
    pub call_timeout: Duration,
    /// Tool rounds one turn may take before the model must answer.
    pub max_rounds: u32,
    /// Servers every user may use, from `MCP_SERVERS_FILE`.
    pub servers: Vec<ConfiguredMcpServer>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub database_url: String,
    pub database_pool_size: usize,
    pub host: IpAddr,
    pub port: u16,
    pub public_url: String,
    pub secret_key_base: SecretString,
    pub encryption_key: SecretString,
    /// Keys values sealed before a rotation still open with (`ENCRYPTION_KEYS_PREVIOUS`).
    pub previous_encryption_keys: Vec<SecretString>,
    /// The registration policy until an administrator sets one.
    pub registration: Policy,
    pub session_ttl: Duration,
    pub oidc: Option<OidcSettings>,
    pub limits: AbuseLimits,
    pub graphql: GraphqlLimits,
    pub max_body_bytes: usize,
    pub llm: LlmConfig,
    pub mcp: McpConfig,
    /// Secrets that were missing and generated for this run (development only).
    pub generated_secrets: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// The largest `GRAPHQL_MAX_PAGE_SIZE` allowed: query complexity prices pages up to it.
pub const MAX_PAGE_SIZE_LIMIT: usize = 1_000;

const DEFAULT_SECRET_PLACEHOLDERS: &[&str] = &["changeme", "change-me", "secret", "development"];

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads configuration through `var`, which returns a variable's value if set.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let environment = match var("LITESKILL_ENV").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                return Err(ConfigError(format!("LITESKILL_ENV must be development or production, not {other}")));
            }
        };
        let port: u16 = parse(&var, "PORT", 4000)?;
        let public_url = var("PUBLIC_URL").unwrap_or_else(|| format!("http://localhost:{port}"));
        if environment == Environment::Production && var("PUBLIC_URL").is_none() {
            return Err(ConfigError("PUBLIC_URL must be set in production".into()));
        }
        let registration = match var("REGISTRATION") {
            None => Policy::Open,
            Some(text) => Policy::parse(&text)
                .ok_or_else(|| ConfigError(format!("REGISTRATION must be open, invite-only or closed, not {text}")))?,
        };
        let max_page_size = parse(&var, "GRAPHQL_MAX_PAGE_SIZE", 100)?;
        if !(1..=MAX_PAGE_SIZE_LIMIT).contains(&max_page_size) {
            return Err(ConfigError(format!("GRAPHQL_MAX_PAGE_SIZE must be between 1 and {MAX_PAGE_SIZE_LIMIT}")));
        }
        let oidc = oidc(&var, &public_url)?;
        let mut generated_secrets = vec![];
        let secret_key_base = secret_key_base(environment, var("SECRET_KEY_BASE"), &mut generated_secrets)?;
        let encryption_key = encryption_key(environment, var("ENCRYPTION_KEY"), &mut generated_secrets)?;
        let from_file = match var("LITESKILL_MODELS_FILE") {
            Some(path) => files::models(path.as_ref(), &var)?,
            None => files::Models::default(),
        };
        let presets = match var("LITESKILL_PRESETS_FILE") {
            Some(path) => files::presets(path.as_ref())?,
            None => vec![],
        };
        Ok(Config {
            environment,
            database_url: var("DATABASE_URL").unwrap_or_else(|| "sqlite://liteskill.db".to_owned()),
            database_pool_size: parse(&var, "DATABASE_POOL_SIZE", 16)?,
            host: parse(&var, "HOST", IpAddr::from([127, 0, 0, 1]))?,
            port,
            public_url,
            secret_key_base,
            encryption_key,
            previous_encryption_keys: match var("ENCRYPTION_KEYS_PREVIOUS") {
                Some(list) => list
                    .split(',')
                    .map(str::trim)
                    .filter(|key| !key.is_empty())
                    .map(|key| {
                        key_bytes(key).map(|_| SecretString::from(key)).ok_or_else(|| {
                            ConfigError("ENCRYPTION_KEYS_PREVIOUS must list keys of 32 bytes in base64".into())
                        })
                    })
                    .collect::<Result<_, _>>()?,
                None => vec![],
            },
            registration,
            session_ttl: Duration::from_secs(3600 * parse::<u64>(&var, "SESSION_TTL_HOURS", 24 * 30)?),
            oidc,
            limits: AbuseLimits {
                login_failures_per_account: parse(&var, "LOGIN_MAX_FAILURES", 10)?,
                login_failures_per_address: parse(&var, "LOGIN_MAX_FAILURES_PER_ADDRESS", 50)?,
                login_window: login_window(&var)?,
                streams_per_user: parse(&var, "MAX_STREAMS_PER_USER", 4)?,
                websocket_init_timeout: Duration::from_secs(parse(&var, "WS_INIT_TIMEOUT_SECS", 10)?),
                subscriptions_per_connection: parse(&var, "WS_MAX_SUBSCRIPTIONS", 100)?,
                trust_forwarded_for: parse(&var, "TRUST_X_FORWARDED_FOR", false)?,
            },
            graphql: GraphqlLimits {
                max_depth: parse(&var, "GRAPHQL_MAX_DEPTH", 12)?,
                max_complexity: parse(&var, "GRAPHQL_MAX_COMPLEXITY", 5_000)?,
                max_page_size,
            },
            max_body_bytes: parse(&var, "MAX_BODY_BYTES", 2 * 1024 * 1024)?,
            llm: LlmConfig {
                bedrock: bedrock(&var, from_file.bedrock),
                openai: var("OPENAI_BASE_URL")
                    .map(|base_url| OpenAiEndpoint {
                        name: "openai".to_owned(),
                        base_url,
                        api_key: var("OPENAI_API_KEY").map(SecretString::from),
                        models: var("OPENAI_MODELS").map(|list| split_list(&list)),
                    })
                    .into_iter()
                    .chain(from_file.openai)
                    .collect(),
                default_model: var("LITESKILL_DEFAULT_MODEL").or(from_file.default_model),
                presets,
                demo_token_delay: Duration::from_millis(parse(&var, "LITESKILL_DEMO_DELAY_MS", 30)?),
                first_token_timeout: Duration::from_secs(parse(&var, "LLM_FIRST_TOKEN_TIMEOUT_SECS", 60)?),
                reply_stale_after: Duration::from_secs(parse(&var, "REPLY_STALE_SECS", 30)?),
            },
            mcp: McpConfig {
                allow_private_networks: parse(&var, "MCP_ALLOW_PRIVATE_NETWORKS", false)?,
                connect_timeout: Duration::from_secs(parse(&var, "MCP_TIMEOUT_SECS", 15)?),
                call_timeout: Duration::from_secs(parse(&var, "TOOL_CALL_TIMEOUT_SECS", 60)?),
                max_rounds: parse(&var, "TOOL_MAX_ROUNDS", 8)?,
                servers: match var("MCP_SERVERS_FILE") {
                    Some(path) => files::mcp_servers(path.as_ref(), &var)?,
                    None => vec![],
                },
            },
            generated_secrets,
        })
    }

    /// Cookies get `Secure` when users reach the server over HTTPS.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// OpenID Connect, when `OIDC_ISSUER` is set.
fn oidc(var: &impl Fn(&str) -> Option<String>, public_url: &str) -> Result<Option<OidcSettings>, ConfigError> {
    let Some(issuer) = var("OIDC_ISSUER") else { return Ok(None) };
    let client_id = var("OIDC_CLIENT_ID").ok_or_else(|| ConfigError("OIDC_ISSUER needs OIDC_CLIENT_ID".into()))?;
    let scopes = var("OIDC_SCOPES").unwrap_or_else(|| "openid email profile".into());
    Ok(Some(OidcSettings {
        issuer,
        client_id,
        client_secret: var("OIDC_CLIENT_SECRET").map(SecretString::from),
        redirect_url: format!("{}/auth/oidc/callback", public_url.trim_end_matches('/')),
        scopes: scopes.split([' ', ',']).filter(|s| !s.is_empty() && *s != "openid").map(str::to_owned).collect(),
        link_verified_email: parse(var, "OIDC_LINK_VERIFIED_EMAIL", false)?,
        display_name: var("OIDC_DISPLAY_NAME").unwrap_or_else(|| "single sign-on".into()),
        groups_claim: var("OIDC_GROUPS_CLAIM").filter(|claim| !claim.trim().is_empty()),
    }))
}

/// The models of a comma-separated list of ids.
fn split_list(list: &str) -> Vec<ModelSpec> {
    list.split(',').map(str::trim).filter(|item| !item.is_empty()).map(|id| ModelSpec::named(id.to_owned())).collect()
}

/// Bedrock as the models file and the environment set it up; the environment's
/// settings win, and its credentials are the only ones.
fn bedrock(var: &impl Fn(&str) -> Option<String>, from_file: Option<BedrockSettings>) -> Option<BedrockSettings> {
    let listed = var("BEDROCK_MODELS").map(|list| split_list(&list));
    if listed.is_none() && from_file.is_none() {
        return None;
    }
    let from_file =
        from_file.unwrap_or(BedrockSettings { models: vec![], region: None, endpoint_url: None, bearer_token: None });
    Some(BedrockSettings {
        models: from_file.models.into_iter().chain(listed.into_iter().flatten()).collect(),
        region: var("AWS_REGION").or(from_file.region),
        endpoint_url: var("AWS_ENDPOINT_URL_BEDROCK_RUNTIME").or(from_file.endpoint_url),
        bearer_token: var("AWS_BEARER_TOKEN_BEDROCK").map(SecretString::from),
    })
}

/// `LOGIN_WINDOW_SECS`: at most 30 days, so the window's start is a time every database
/// can store.
fn login_window(var: &impl Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    match parse(var, "LOGIN_WINDOW_SECS", 900)? {
        seconds @ 1..=2_592_000 => Ok(Duration::from_secs(seconds)),
        _ => Err(ConfigError("LOGIN_WINDOW_SECS must be between 1 and 2592000 (30 days)".into())),
    }
}

fn parse<T: std::str::FromStr>(var: &impl Fn(&str) -> Option<String>, key: &str, default: T) -> Result<T, ConfigError> {
    match var(key) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| ConfigError(format!("{key} has an invalid value `{raw}`"))),
    }
}

fn secret_key_base(
    environment: Environment,
    value: Option<String>,
    generated: &mut Vec<&'static str>,
) -> Result<SecretString, ConfigError> {
    match value {
        Some(key) if key.len() >= 64 && !DEFAULT_SECRET_PLACEHOLDERS.contains(&key.to_ascii_lowercase().as_str()) => {
            Ok(key.into())
        }
        Some(_) if environment == Environment::Production => {
            Err(ConfigError("SECRET_KEY_BASE must be at least 64 random characters".into()))
        }
        None if environment == Environment::Production => Err(ConfigError(
            "SECRET_KEY_BASE must be set in production (generate one with `liteskill key generate`)".into(),
        )),
        _ => {
            generated.push("SECRET_KEY_BASE");
            Ok(random_base64(48).into())
        }
    }
}

fn encryption_key(
    environment: Environment,
    value: Option<String>,
    generated: &mut Vec<&'static str>,
) -> Result<SecretString, ConfigError> {
    match value {
        Some(key) if key_bytes(&key).is_some() => Ok(key.into()),
        Some(_) => {
            Err(ConfigError("ENCRYPTION_KEY must be 32 random bytes in base64 (`liteskill key generate`)".into()))
        }
        None if environment == Environment::Production => {
            Err(ConfigError("ENCRYPTION_KEY must be set in production (`liteskill key generate`)".into()))
        }
        None => {
            generated.push("ENCRYPTION_KEY");
            Ok(random_base64(32).into())
        }
    }
}

/// The bytes of a 32-byte key in base64; none for anything else, or for all zeros.
fn key_bytes(key: &str) -> Option<[u8; 32]> {
    let bytes: [u8; 32] = STANDARD.decode(key.trim()).ok()?.try_into().ok()?;
    bytes.iter().any(|b| *b != 0).then_some(bytes)
}

/// `len` random bytes in standard base64: the format of `ENCRYPTION_KEY`.
pub fn random_base64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rng().fill(&mut bytes[..]);
    STANDARD.encode(bytes)
}

impl Config {
    /// The encryption key's bytes (validated when the configuration was read).
    pub fn encryption_key_bytes(&self) -> Vec<u8> {
        STANDARD.decode(self.encryption_key.expose_secret().trim()).unwrap_or_default()
    }

    /// The secret box of the configured keys (validated when the configuration was read).
    pub fn secret_box(&self) -> crate::crypto::SecretBox {
        let key = |key: &SecretString| key_bytes(key.expose_secret()).unwrap_or([0; 32]);
        let previous: Vec<[u8; 32]> = self.previous_encryption_keys.iter().map(key).collect();
        crate::crypto::SecretBox::new(&key(&self.encryption_key), &previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn development_defaults_need_nothing() {
        let config = config(&[]).expect("defaults");
        assert_eq!(config.database_url, "sqlite://liteskill.db");
        assert_eq!(config.port, 4000);
        assert_eq!(config.encryption_key_bytes().len(), 32);
        assert_eq!(config.generated_secrets, ["SECRET_KEY_BASE", "ENCRYPTION_KEY"]);
    }

    #[test]
    fn production_refuses_missing_or_default_secrets() {
        let key = random_base64(32);
        let base = "x".repeat(64);
        assert!(config(&[("LITESKILL_ENV", "production"), ("PUBLIC_URL", "https://chat.example")]).is_err());
        assert!(
            config(&[
                ("LITESKILL_ENV", "production"),
                ("PUBLIC_URL", "https://chat.example"),
                ("SECRET_KEY_BASE", "changeme"),
                ("ENCRYPTION_KEY", &key)
            ])
            .is_err()
        );
        assert!(
            config(&[
                ("LITESKILL_ENV", "production"),
                ("PUBLIC_URL", "https://chat.example"),
                ("SECRET_KEY_BASE", &base),
                ("ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            ])
            .is_err()
        );
        let ok = config(&[
            ("LITESKILL_ENV", "production"),
            ("PUBLIC_URL", "https://chat.example"),
            ("SECRET_KEY_BASE", &base),
            ("ENCRYPTION_KEY", &key),
        ])
        .expect("complete production config");
        assert!(ok.secure_cookies());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let key = random_base64(32);
        let config = config(&[("ENCRYPTION_KEY", &key)]).expect("config");
        assert!(!format!("{config:?}").contains(&key));
    }

    #[test]
    fn bad_values_are_named() {
        let err = config(&[("PORT", "eighty")]).expect_err("invalid port");
        assert!(err.to_string().contains("PORT"));
        assert!(config(&[("GRAPHQL_MAX_PAGE_SIZE", "5000")]).is_err());
        for window in ["0", "2592001"] {
            let err = config(&[("LOGIN_WINDOW_SECS", window)]).expect_err("a window out of range");
            assert!(err.to_string().contains("LOGIN_WINDOW_SECS"), "{err}");
        }
    }
}
