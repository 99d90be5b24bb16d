//! The one shared state of a running server, handed to every handler and resolver.

use std::sync::Arc;

use crate::auth::oidc::Oidc;
use crate::auth::watch::SessionWatch;
use crate::bus::Bus;
use crate::chat::Replies;
use crate::config::Config;
use crate::crypto::SecretBox;
use crate::domain::ids::UserId;
use crate::graphql::{self, AppSchema};
use crate::limits::{Refusals, Slots};
use crate::llm::Catalog;
use crate::mcp::registry::Registry;
use crate::storage::Db;

pub struct App {
    pub config: Config,
    pub db: Db,
    pub catalog: Catalog,
    pub bus: Bus,
    pub replies: Replies,
    pub sessions: SessionWatch,
    pub mcp: Registry,
    /// Seals and opens stored credentials.
    pub secrets: SecretBox,
    /// Sign-in keys this server has seen throttled.
    pub refusals: Refusals,
    /// Replies each user has streaming on this server.
    pub streams: Slots<UserId>,
    /// Sign-in with the configured OpenID Connect provider.
    pub oidc: Option<Oidc>,
}

/// What the HTTP layer serves: the application and its schema.
#[derive(Clone)]
pub struct Served {
    pub app: Arc<App>,
    pub schema: AppSchema,
}

impl App {
    /// Ends the subscriptions and websockets of sessions, here and on the other servers.
    pub fn end_sessions(&self, sessions: impl IntoIterator<Item = crate::domain::ids::SessionId>) {
        sessions.into_iter().for_each(|session| self.end_session(session));
    }

    /// Ends a session's subscriptions, here and on the other servers.
    pub fn end_session(&self, session: crate::domain::ids::SessionId) {
        self.sessions.end(session);
        self.bus.relay_session_end(session);
    }

    /// Connects to the database, brings its schema up to date, loads the model catalog,
    /// and starts closing replies that a previous run left streaming.
    pub async fn start(config: Config) -> anyhow::Result<Served> {
        let db = Db::connect(&config.database_url, config.database_pool_size).await?;
        db.migrate().await?;
        let catalog = Catalog::from_config(&config.llm).await?;
        let app = Arc::new(App {
            mcp: Registry::new(&config.mcp),
            secrets: config.secret_box(),
            refusals: Refusals::default(),
            streams: Slots::new(config.limits.streams_per_user),
            oidc: config.oidc.clone().map(Oidc::new).transpose()?,
            config,
            db,
            catalog,
            bus: Bus::default(),
            replies: Replies::default(),
            sessions: SessionWatch::default(),
        });
        tokio::spawn(crate::auth::watch::keep_checking(Arc::downgrade(&app)));
        tokio::spawn(crate::chat::keep_sweeping(Arc::downgrade(&app)));
        tokio::spawn(crate::chat::keep_checkpointing(Arc::downgrade(&app)));
        if app.db.backend() == crate::storage::Backend::Postgres {
            app.bus.relay_to(crate::relay::start(&app, app.config.database_url.clone()));
        }
        let schema = graphql::build_schema(app.clone());
        Ok(Served { app, schema })
    }
}
