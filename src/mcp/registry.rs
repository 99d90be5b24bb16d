//! The MCP servers a user may use (their own and the shared ones), with their tools
//! listed once and kept, and one open session per server reused for every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rmcp::model::JsonObject;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::{Endpoint, McpError, Session, ToolInfo, ToolOutput, address};
use crate::config::McpConfig;
use crate::crypto::{Binding, SecretBox};
use crate::domain::ids::{McpServerId, SecretId, UserId};
use crate::error::{AppError, AppResult};
use crate::storage::projections::mcp_servers::{self, McpServerRow};
use crate::storage::{DbConn, secrets};

/// How long a server's tools are kept before they are listed again.
const RENEW_LISTING: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// How long a failure to list them stands before the next use tries again.
const RETRY_FAILED_LISTING: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// The purpose sealed headers are bound to.
pub const HEADERS_PURPOSE: &str = "mcp_server_headers";

/// A server as the tool loop uses it.
#[derive(Debug, Clone)]
pub struct Server {
    pub id: McpServerId,
    pub name: String,
    /// `None`: shared with everyone.
    pub owner: Option<UserId>,
    /// From `MCP_SERVERS_FILE`; such servers may run commands and reach private addresses.
    pub configured: bool,
    /// The names of the headers it is sent (their values are in `endpoint`).
    pub header_names: Vec<String>,
    endpoint: Endpoint,
    /// Changes whenever the server's settings do, so cached tools and sessions are renewed.
    version: i64,
    /// Why the server cannot be used, when its stored headers do not open.
    unusable: Option<String>,
}

impl Server {
    pub fn url(&self) -> Option<&str> {
        match &self.endpoint {
            Endpoint::Http { url, .. } => Some(url),
            Endpoint::Stdio { .. } => None,
        }
    }
}

/// The tools of a server as last listed, or why listing failed.
#[derive(Debug, Clone)]
pub struct Listing {
    pub tools: Vec<ToolInfo>,
    pub error: Option<String>,
    pub checked_at: DateTime<Utc>,
    version: i64,
}

pub struct Registry {
    config: McpConfig,
    configured: Vec<Server>,
    listings: Mutex<HashMap<McpServerId, Arc<Listing>>>,
    sessions: Mutex<HashMap<McpServerId, (i64, Arc<Session>)>>,
}

/// The stable id of a configured server, from its name.
fn configured_id(name: &str) -> McpServerId {
    let digest = Sha256::digest(format!("liteskill-configured-mcp-server:{name}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    McpServerId::from_uuid(uuid::Uuid::from_bytes(bytes))
}

/// Header values sealed together, bound to their secret's id.
pub fn seal_headers(secret_box: &SecretBox, id: SecretId, headers: &[(String, SecretString)]) -> String {
    let plain: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (name.as_str(), value.expose_secret())).collect();
    let json = serde_json::to_string(&plain).unwrap_or_default();
    secret_box.seal(Binding { row: &id.to_string(), purpose: HEADERS_PURPOSE }, &json)
}

/// Opens the headers of a registered server.
pub async fn open_headers(
    conn: &mut DbConn,
    secret_box: &SecretBox,
    id: Option<SecretId>,
) -> AppResult<Vec<(String, SecretString)>> {
    let Some(id) = id else { return Ok(vec![]) };
    let row =
        secrets::find(conn, id).await?.ok_or_else(|| AppError::internal(anyhow::anyhow!("secret {id} is gone")))?;
    let json = secret_box
        .open(Binding { row: &id.to_string(), purpose: HEADERS_PURPOSE }, &row.sealed)
        .map_err(|e| AppError::internal(anyhow::anyhow!("secret {id}: {e}")))?;
    let pairs: Vec<(String, String)> = serde_json::from_str(json.expose_secret()).map_err(AppError::internal)?;
    Ok(pairs.into_iter().map(|(name, value)| (name, SecretString::from(value))).collect())
}

impl Registry {
    pub fn new(config: &McpConfig) -> Registry {
        let configured = config
            .servers
            .iter()
            .map(|server| Server {
                id: configured_id(&server.name),
                name: server.name.clone(),
                owner: None,
                configured: true,
                header_names: match &server.endpoint {
                    Endpoint::Http { headers, .. } => headers.iter().map(|(name, _)| name.clone()).collect(),
                    Endpoint::Stdio { .. } => vec![],
                },
                endpoint: server.endpoint.clone(),
                version: 0,
                unusable: None,
            })
            .collect();
        Registry { config: config.clone(), configured, listings: Mutex::default(), sessions: Mutex::default() }
    }

    pub fn allows_private_networks(&self) -> bool {
        self.config.allow_private_networks
    }

    pub fn call_timeout(&self) -> Duration {
        self.config.call_timeout
    }

    pub fn max_rounds(&self) -> u32 {
        self.config.max_rounds
    }

    /// The servers from the configuration file, shared with everyone.
    pub fn configured(&self) -> &[Server] {
        &self.configured
    }

    /// The servers `user` may use: configured ones first, then registered ones, by name.
    pub async fn usable(&self, conn: &mut DbConn, secret_box: &SecretBox, user: UserId) -> AppResult<Vec<Server>> {
        let mut servers = self.configured.clone();
        for row in mcp_servers::usable(conn, user).await? {
            servers.push(self.registered(conn, secret_box, &row).await?);
        }
        Ok(servers)
    }

    /// A server `user` may use, or `NOT_FOUND`.
    pub async fn find(
        &self,
        conn: &mut DbConn,
        secret_box: &SecretBox,
        user: UserId,
        id: McpServerId,
    ) -> AppResult<Server> {
        if let Some(server) = self.configured.iter().find(|s| s.id == id) {
            return Ok(server.clone());
        }
        match mcp_servers::find_usable(conn, id, user).await? {
            Some(row) => self.registered(conn, secret_box, &row).await,
            None => Err(AppError::NotFound("MCP server")),
        }
    }

    async fn registered(&self, conn: &mut DbConn, secret_box: &SecretBox, row: &McpServerRow) -> AppResult<Server> {
        // One server whose headers do not open must not break the others, nor the chat.
        let (headers, unusable) = match open_headers(conn, secret_box, row.secret()).await {
            Ok(headers) => (headers, None),
            Err(error) => {
                tracing::warn!(server = %row.server_id(), error = ?error, "the headers of an MCP server do not open");
                let reason = "its stored headers do not open with the configured ENCRYPTION_KEY; set them again";
                (vec![], Some(reason.to_owned()))
            }
        };
        Ok(Server {
            id: row.server_id(),
            name: row.name.clone(),
            owner: row.owner(),
            configured: false,
            header_names: row.header_names(),
            endpoint: Endpoint::Http { url: row.url.clone(), headers },
            version: row.updated_at.0.timestamp_micros(),
            unusable,
        })
    }

    fn listings(&self) -> std::sync::MutexGuard<'_, HashMap<McpServerId, Arc<Listing>>> {
        self.listings.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<McpServerId, (i64, Arc<Session>)>> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The server's tools as last listed here, if they were, recently enough, and it has
    /// not changed since. A failure is retried sooner than a list is renewed.
    pub fn cached(&self, server: &Server) -> Option<Arc<Listing>> {
        let now = crate::domain::now();
        self.listings()
            .get(&server.id)
            .filter(|l| l.version == server.version)
            .filter(|l| now - l.checked_at < if l.error.is_some() { RETRY_FAILED_LISTING } else { RENEW_LISTING })
            .cloned()
    }

    /// The server's tools, listed now unless cached (or when `refresh`).
    pub async fn listing(&self, server: &Server, refresh: bool) -> Arc<Listing> {
        if !refresh && let Some(listing) = self.cached(server) {
            return listing;
        }
        let listed = async { self.session(server).await?.tools().await }.await;
        if listed.is_err() {
            self.drop_session(server.id);
        }
        let listing = Arc::new(match listed {
            Ok(tools) => Listing { tools, error: None, checked_at: crate::domain::now(), version: server.version },
            Err(error) => {
                tracing::warn!(server = %server.name, %error, "listing the tools of an MCP server failed");
                Listing {
                    tools: vec![],
                    error: Some(error.to_string()),
                    checked_at: crate::domain::now(),
                    version: server.version,
                }
            }
        });
        self.listings().insert(server.id, listing.clone());
        listing
    }

    /// Forgets what is known of a server that changed or went.
    pub fn forget(&self, id: McpServerId) {
        self.listings().remove(&id);
        self.drop_session(id);
    }

    fn drop_session(&self, id: McpServerId) {
        self.sessions().remove(&id);
    }

    /// The open session with a server, opened if need be.
    async fn session(&self, server: &Server) -> Result<Arc<Session>, McpError> {
        if let Some((version, session)) = self.sessions().get(&server.id)
            && *version == server.version
        {
            return Ok(session.clone());
        }
        if let Some(reason) = &server.unusable {
            return Err(McpError::Connect(reason.clone()));
        }
        if let (false, Some(url)) = (server.configured, server.url()) {
            // Checked again on every connection: the name may resolve elsewhere by now.
            address::check(url, self.config.allow_private_networks)
                .await
                .map_err(|e| McpError::Connect(e.to_string()))?;
        }
        let session = Arc::new(Session::open(&server.endpoint, self.config.connect_timeout).await?);
        self.sessions().insert(server.id, (server.version, session.clone()));
        Ok(session)
    }

    /// Calls a tool within the call timeout. A failed session is dropped, so the next
    /// call reconnects.
    pub async fn call(&self, server: &Server, tool: &str, arguments: JsonObject) -> Result<ToolOutput, McpError> {
        let called = async { self.session(server).await?.call(tool, arguments, self.config.call_timeout).await }.await;
        if called.is_err() {
            self.drop_session(server.id);
        }
        called
    }
}
