//! `liteskill bench`: load generators that measure the server on a scratch database (a
//! temporary SQLite file, or a new database on the PostgreSQL server named by
//! `--database-url`, dropped afterwards).

mod collaboration;
mod storage;
mod stream;

use clap::Subcommand;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Event append rate, projection rebuild rate, and `conversations` latency.
    Storage(storage::StorageArgs),
    /// Replies streamed from a simulated model to websocket subscribers: added latency,
    /// throughput, server CPU and memory; then memory with many idle subscriptions.
    Stream(stream::StreamArgs),
    /// Forking a long conversation against a short one, and `searchMessages` latency.
    Collaboration(collaboration::CollaborationArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Storage(args) => storage::run(args).await,
        BenchCommand::Stream(args) => stream::run(args).await,
        BenchCommand::Collaboration(args) => collaboration::run(args).await,
    }
}

/// A database that exists for one run.
enum Scratch {
    Sqlite(std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Scratch {
    async fn create(server: Option<&str>) -> anyhow::Result<(Scratch, String)> {
        match server {
            Some(admin_url) if admin_url.starts_with("postgres") => {
                let name = format!("liteskill_bench_{}", uuid::Uuid::new_v4().simple());
                let mut admin = AsyncPgConnection::establish(admin_url).await?;
                admin.batch_execute(&format!("CREATE DATABASE {name}")).await?;
                let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
                let url = format!("{base}/{name}");
                Ok((Scratch::Postgres { admin_url: admin_url.to_owned(), name }, url))
            }
            _ => {
                let path = std::env::temp_dir().join(format!("liteskill-bench-{}.db", uuid::Uuid::new_v4().simple()));
                let url = format!("sqlite://{}", path.display());
                Ok((Scratch::Sqlite(path), url))
            }
        }
    }

    async fn remove(self) -> anyhow::Result<()> {
        match self {
            Scratch::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Scratch::Postgres { admin_url, name } => {
                let mut admin = AsyncPgConnection::establish(&admin_url).await?;
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
            }
        }
        Ok(())
    }
}

/// The value at quantile `p` (0 to 1) of a sorted, non-empty sample.
fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}
