//! An MCP server a user registered: where it is and which sealed secret holds its
//! headers. Servers the operator configures live in configuration, not here.

use serde::{Deserialize, Serialize};

use super::ids::{SecretId, UserId};
use super::values::Invalid;
use super::{Actor, Aggregate, DomainEvent};

/// Longest server name: it prefixes the names of its tools, which models limit to 64.
const MAX_SERVER_NAME_CHARS: usize = 32;

/// A server's name: letters, digits, `_` and `-`, so that `<server>__<tool>` is a tool
/// name every provider accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServerName(String);

impl ServerName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > MAX_SERVER_NAME_CHARS {
            return Err(Invalid::new("name", format!("must be 1 to {MAX_SERVER_NAME_CHARS} characters")));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || name.contains("__") {
            return Err(Invalid::new("name", "may hold only letters, digits, `-` and single `_`"));
        }
        Ok(ServerName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What happens when the model calls a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ToolPolicy {
    /// A person approves or rejects each call.
    #[default]
    Ask,
    Allow,
    Deny,
}

impl ToolPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolPolicy::Ask => "ask",
            ToolPolicy::Allow => "allow",
            ToolPolicy::Deny => "deny",
        }
    }

    pub fn parse(text: &str) -> Option<ToolPolicy> {
        [ToolPolicy::Ask, ToolPolicy::Allow, ToolPolicy::Deny].into_iter().find(|p| p.as_str() == text)
    }
}

/// Where the server is. Header values are not here: they are sealed in `secret_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSettings {
    pub name: String,
    pub url: String,
    /// The names of the headers sent with every request (values sealed).
    pub header_names: Vec<String>,
    pub secret_id: Option<SecretId>,
}

#[derive(Debug)]
pub enum Command {
    /// `owner` is `None` for a server an administrator shares with everyone.
    Register {
        owner: Option<UserId>,
        settings: ServerSettings,
    },
    Update {
        settings: ServerSettings,
    },
    Remove,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    McpServerRegistered {
        owner_id: Option<UserId>,
        #[serde(flatten)]
        settings: ServerSettings,
    },
    McpServerUpdated {
        #[serde(flatten)]
        settings: ServerSettings,
    },
    McpServerRemoved {},
}

impl DomainEvent for Event {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Does not exist, was removed, or is someone else's.
    #[error("MCP server not found")]
    NotFound,
    #[error("MCP server already exists")]
    AlreadyExists,
    #[error("only an administrator may manage a shared MCP server")]
    Forbidden,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    owner: Option<UserId>,
    removed: bool,
}

// Snapshots of an older shape must fail to load rather than read as something else.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    state: Option<State>,
}

/// Whether `actor` manages a server owned by `owner` (`None`: shared with everyone).
pub fn manages(actor: Actor, owner: Option<UserId>) -> bool {
    match (actor, owner) {
        (Actor::System, _) | (Actor::Admin(_), None) => true,
        (Actor::User(me) | Actor::Admin(me) | Actor::Member { user: me, .. }, Some(owner)) => me == owner,
        (Actor::User(_) | Actor::Member { .. }, None) => false,
    }
}

impl Aggregate for McpServer {
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, actor: Actor, command: Command) -> Result<Vec<Event>, Rejection> {
        if let Command::Register { owner, settings } = command {
            if self.state.is_some() {
                return Err(Rejection::AlreadyExists);
            }
            if !manages(actor, owner) {
                return Err(Rejection::Forbidden);
            }
            return Ok(vec![Event::McpServerRegistered { owner_id: owner, settings }]);
        }
        let state = match &self.state {
            Some(state) if !state.removed && (manages(actor, state.owner) || state.owner.is_none()) => state,
            _ => return Err(Rejection::NotFound),
        };
        if !manages(actor, state.owner) {
            return Err(Rejection::Forbidden);
        }
        match command {
            Command::Register { .. } => unreachable!("handled above"),
            Command::Update { settings } => Ok(vec![Event::McpServerUpdated { settings }]),
            Command::Remove => Ok(vec![Event::McpServerRemoved {}]),
        }
    }

    fn evolve(self, event: &Event) -> Self {
        let state = match (self.state, event) {
            (_, Event::McpServerRegistered { owner_id, .. }) => State { owner: *owner_id, removed: false },
            (None, _) => return McpServer { state: None },
            (Some(state), Event::McpServerUpdated { .. }) => state,
            (Some(state), Event::McpServerRemoved {}) => State { removed: true, ..state },
        };
        McpServer { state: Some(state) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ServerSettings {
        ServerSettings {
            name: "files".into(),
            url: "https://tools.example/mcp".into(),
            header_names: vec![],
            secret_id: None,
        }
    }

    #[test]
    fn only_the_owner_manages_a_server_and_others_do_not_see_it() {
        let owner = UserId::new();
        let server =
            McpServer::default().evolve(&Event::McpServerRegistered { owner_id: Some(owner), settings: settings() });
        assert!(server.decide(Actor::User(owner), Command::Remove).is_ok());
        assert_eq!(server.decide(Actor::User(UserId::new()), Command::Remove), Err(Rejection::NotFound));
        assert_eq!(server.decide(Actor::Admin(UserId::new()), Command::Remove), Err(Rejection::NotFound));
        let removed = server.evolve(&Event::McpServerRemoved {});
        assert_eq!(removed.decide(Actor::User(owner), Command::Remove), Err(Rejection::NotFound));
    }

    #[test]
    fn shared_servers_belong_to_administrators() {
        let register = || Command::Register { owner: None, settings: settings() };
        assert_eq!(McpServer::default().decide(Actor::User(UserId::new()), register()), Err(Rejection::Forbidden));
        let shared = McpServer::default().evolve(&Event::McpServerRegistered { owner_id: None, settings: settings() });
        assert_eq!(shared.decide(Actor::User(UserId::new()), Command::Remove), Err(Rejection::Forbidden));
        assert!(shared.decide(Actor::Admin(UserId::new()), Command::Remove).is_ok());
    }

    #[test]
    fn server_names_fit_in_tool_names() {
        assert!(ServerName::parse("my-files_2").is_ok());
        for bad in ["", "a b", "a__b", "ünï", &"x".repeat(33)] {
            assert!(ServerName::parse(bad).is_err(), "{bad}");
        }
    }
}
