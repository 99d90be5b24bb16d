//! SQLite specifics: opening a connection, and where its synchronous driver runs.
//!
//! diesel-async runs each SQLite statement on tokio's blocking pool, which costs two
//! thread hand-offs per statement, more than most statements take. Inside a write
//! transaction (see [`super::Db::write`]) statements therefore run inline on the
//! calling task: the write lock is already held (`BEGIN IMMEDIATE` went through the
//! blocking pool, where waiting is harmless), WAL readers never block a writer, and
//! writers of this process queue on an async mutex before `BEGIN`, so nothing inside can
//! wait on a lock. Everything else, reads included, keeps using the blocking pool.

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
    static INLINE: ();
}

/// Runs `future` with its SQLite statements executed inline (see the module docs).
pub(super) fn inline<F: Future>(future: F) -> impl Future<Output = F::Output> {
    INLINE.scope((), future)
}

/// Where the wrapper runs the synchronous driver: inline within [`inline`], on tokio's
/// blocking pool otherwise.
pub struct Runtime(tokio::runtime::Handle);

impl SpawnBlocking for Runtime {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, Box<dyn Error + Send + Sync + 'static>>>
    where
        R: Send + 'static,
    {
        if INLINE.try_with(|_| ()).is_ok() {
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
