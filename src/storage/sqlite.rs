//! SQLite specifics: opening a connection, and where its synchronous driver runs.
//!
//! diesel-async would run each SQLite statement on tokio's blocking pool: two thread
//! hand-offs per statement, more than most statements take, and a connection whose
//! query future is dropped goes back to the pool with its statement still running,
//! which the pool then cannot recycle. Statements therefore run inline on the calling
//! task. That is safe because none of them waits: in WAL mode readers never wait for
//! the writer, and every write goes through [`super::Db::write`], whose writers queue on
//! an async mutex and then take the write lock with `BEGIN IMMEDIATE`. That one
//! statement, the only one that may wait (for another process), runs on the blocking pool.

use std::error::Error;
use std::future::Future;

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use diesel_async::sync_connection_wrapper::{SpawnBlocking, SyncConnectionWrapper};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

/// An async SQLite connection.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection, Runtime>;

tokio::task_local! {
    static MAY_WAIT: ();
}

/// Runs `future` with its SQLite statements on the blocking pool, for statements that
/// may wait on another process's lock.
pub(super) fn may_wait<F: Future>(future: F) -> impl Future<Output = F::Output> {
    MAY_WAIT.scope((), future)
}

/// Where the wrapper runs the synchronous driver: inline, or on tokio's blocking pool
/// within [`may_wait`].
pub struct Runtime(tokio::runtime::Handle);

impl SpawnBlocking for Runtime {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, Box<dyn Error + Send + Sync + 'static>>>
    where
        R: Send + 'static,
    {
        if MAY_WAIT.try_with(|_| ()).is_err() {
            return futures_util::future::ready(Ok(task())).boxed();
        }
        let handle = self.0.spawn_blocking(task);
        async move { handle.await.map_err(|e| Box::new(e) as Box<dyn Error + Send + Sync>) }.boxed()
    }

    fn get_runtime() -> Self {
        Runtime(tokio::runtime::Handle::current())
    }
}

/// The file path of a `sqlite://path` URL.
pub(super) fn path(url: &str) -> anyhow::Result<String> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL must start with postgres:// or sqlite://"))?;
    anyhow::ensure!(
        !path.is_empty() && !path.contains(":memory:"),
        "DATABASE_URL needs a SQLite file path (an in-memory database is not shared between connections)"
    );
    Ok(path.to_owned())
}

/// Opens the file (creating it) in WAL mode with foreign keys enforced.
pub(super) async fn open(path: String) -> diesel::ConnectionResult<SqliteConn> {
    let runtime = Runtime(tokio::runtime::Handle::current());
    tokio::task::spawn_blocking(move || {
        let mut conn = SqliteConnection::establish(&path)?;
        // The timeout first: switching to WAL waits for other connections' locks too.
        conn.batch_execute(
            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
        Ok(SyncConnectionWrapper::with_runtime(conn, runtime))
    })
    .await
    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_name_a_file() {
        assert_eq!(super::path("sqlite://liteskill.db").ok().as_deref(), Some("liteskill.db"));
        assert_eq!(super::path("sqlite:///var/lib/l.db").ok().as_deref(), Some("/var/lib/l.db"));
        assert!(super::path("sqlite://:memory:").is_err());
        assert!(super::path("mysql://x").is_err());
    }
}
