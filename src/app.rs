//! The one shared state of a running server, handed to every handler and resolver.

use std::sync::Arc;

use crate::config::Config;
use crate::graphql::{self, AppSchema};
use crate::storage::Db;

pub struct App {
    pub config: Config,
    pub db: Db,
}

/// What the HTTP layer serves: the application and its schema.
#[derive(Clone)]
pub struct Served {
    pub app: Arc<App>,
    pub schema: AppSchema,
}

impl App {
    /// Connects to the database and brings its schema up to date.
    pub async fn start(config: Config) -> anyhow::Result<Served> {
        let db = Db::connect(&config.database_url, config.database_pool_size).await?;
        db.migrate().await?;
        let app = Arc::new(App { config, db });
        let schema = graphql::build_schema(app.clone());
        Ok(Served { app, schema })
    }
}
