//! Persistence on PostgreSQL or SQLite through one code base.
//!
//! [`Db`] is the pool, [`DbConn`] one pooled connection of either backend. Query code is
//! written once inside [`with_conn!`], which expands the same body for each backend's
//! connection type; the few places where SQL really differs use its two-armed form.
//! Functions take a `&mut DbConn`, so the caller decides whether they run in a transaction.

pub mod checkpoints;
pub mod credentials;
pub mod event_store;
pub mod login_attempts;
pub mod projections;
pub mod schema;
pub mod search;
pub mod secrets;
pub mod sessions;
pub mod snapshots;
pub mod sql_types;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::result::DatabaseErrorKind;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection, TransactionManager};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

pub use sqlite::SqliteConn;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Expands a query body once per backend. `$c` is bound to the concrete connection.
///
/// `with_conn!(conn, |c| body)` shares one body; `with_conn!(conn, pg: |c| a, sqlite: |c| b)`
/// is for the places where the SQL differs.
macro_rules! with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        with_conn!($conn, pg: |$c| $body, sqlite: |$c| $body)
    };
    ($conn:expr, pg: |$pc:ident| $pg:expr, sqlite: |$sc:ident| $sqlite:expr) => {
        match $conn {
            $crate::storage::DbConn::Pg(conn) => {
                let $pc: &mut ::diesel_async::AsyncPgConnection = conn;
                $pg
            }
            $crate::storage::DbConn::Sqlite(conn) => {
                let $sc: &mut $crate::storage::SqliteConn = conn;
                $sqlite
            }
        }
    };
}
pub(crate) use with_conn;

/// Inserts a slice of rows: one multi-row statement on PostgreSQL, one blocking call on
/// SQLite (its async wrapper cannot batch, but the synchronous driver can, in-process).
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        $crate::storage::with_conn!($conn,
            pg: |c| diesel_async::RunQueryDsl::execute(diesel::insert_into($table).values($rows), c).await,
            sqlite: |c| {
                let rows = $rows.to_vec();
                c.spawn_blocking(move |c| diesel::RunQueryDsl::execute(diesel::insert_into($table).values(&rows), c)).await
            }
        )
    };
}
pub(crate) use insert_rows;

/// Lets query code shared by both backends add what only PostgreSQL needs.
pub(crate) trait Dialect {
    fn is_postgres(&self) -> bool;
}

impl Dialect for AsyncPgConnection {
    fn is_postgres(&self) -> bool {
        true
    }
}

impl Dialect for SqliteConn {
    fn is_postgres(&self) -> bool {
        false
    }
}

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Failures of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer got there first: a stream version or a unique key is taken.
    #[error("conflict on {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("no database connection: {0}")]
    Pool(String),
    #[error("stored event cannot be read: {0}")]
    Decode(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Turns a unique violation into [`StoreError::Conflict`] naming the constraint.
pub(crate) fn on_unique_violation(err: diesel::result::Error) -> StoreError {
    match &err {
        diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            // PostgreSQL names the constraint; SQLite only puts the columns in the message.
            let what = info.constraint_name().unwrap_or(info.message());
            StoreError::Conflict(what.to_owned())
        }
        _ => StoreError::Database(err),
    }
}

/// The connection pool.
#[derive(Clone)]
pub enum Db {
    Pg(Pool<AsyncPgConnection>),
    /// SQLite admits one writer at a time; `writer` queues this process's writers.
    Sqlite {
        pool: Pool<SqliteConn>,
        writer: Arc<tokio::sync::Mutex<()>>,
    },
}

/// One pooled connection.
#[expect(
    clippy::large_enum_variant,
    reason = "checked out once per request and used in place; boxing would add an allocation"
)]
pub enum DbConn {
    Pg(Object<AsyncPgConnection>),
    Sqlite(Object<SqliteConn>),
}

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite://path`), creating the SQLite file if
    /// needed. Migrations are not run here: see [`Db::migrate`].
    pub async fn connect(url: &str, max_connections: usize) -> anyhow::Result<Db> {
        let timeouts = deadpool::managed::Timeouts {
            wait: Some(Duration::from_secs(10)),
            create: Some(Duration::from_secs(10)),
            recycle: Some(Duration::from_secs(10)),
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut config = ManagerConfig::<AsyncPgConnection>::default();
            // A checkout still drops connections whose socket closed (`is_broken`); a
            // liveness query on top would cost a round trip per request.
            config.recycling_method = RecyclingMethod::Fast;
            let manager = AsyncDieselConnectionManager::new_with_config(url, config);
            let pool = Pool::builder(manager)
                .max_size(max_connections)
                .timeouts(timeouts)
                .runtime(deadpool::Runtime::Tokio1)
                .build()?;
            Ok(Db::Pg(pool))
        } else {
            let path = sqlite::path(url)?;
            let mut config = ManagerConfig::<SqliteConn>::default();
            config.recycling_method = RecyclingMethod::Fast;
            config.custom_setup = Box::new(|path| sqlite::open(path.to_owned()).boxed());
            let manager = AsyncDieselConnectionManager::new_with_config(path, config);
            let pool = Pool::builder(manager)
                .max_size(max_connections)
                .timeouts(timeouts)
                .runtime(deadpool::Runtime::Tokio1)
                .build()?;
            Ok(Db::Sqlite { pool, writer: Arc::new(tokio::sync::Mutex::new(())) })
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Pg(_) => Backend::Postgres,
            Db::Sqlite { .. } => Backend::Sqlite,
        }
    }

    pub async fn conn(&self) -> StoreResult<DbConn> {
        let pool_error = |e: deadpool::managed::PoolError<_>| StoreError::Pool(e.to_string());
        Ok(match self {
            Db::Pg(pool) => DbConn::Pg(pool.get().await.map_err(pool_error)?),
            Db::Sqlite { pool, .. } => DbConn::Sqlite(pool.get().await.map_err(pool_error)?),
        })
    }

    /// Applies pending migrations of this backend.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let conn = self.conn().await?;
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            // diesel_migrations is synchronous: drive the async connection from this
            // blocking thread through the wrapper.
            match conn {
                DbConn::Pg(conn) => {
                    let mut conn: AsyncConnectionWrapper<AsyncPgConnection> = Object::take(conn).into();
                    // Replicas starting together take turns; the lock ends with the connection.
                    let lock = format!("SELECT pg_advisory_lock({})", LockKey::Migrations as i64);
                    SimpleConnection::batch_execute(&mut conn, &lock)?;
                    conn.run_pending_migrations(PG_MIGRATIONS).map_err(anyhow::Error::msg)?;
                }
                DbConn::Sqlite(conn) => {
                    let mut conn: AsyncConnectionWrapper<SqliteConn> = Object::take(conn).into();
                    conn.run_pending_migrations(SQLITE_MIGRATIONS).map_err(anyhow::Error::msg)?;
                }
            }
            Ok(())
        })
        .await??;
        Ok(())
    }

    /// Runs `f` in a write transaction, committed when it returns `Ok`. Every write goes
    /// through here, even a single statement: on SQLite this is what keeps writers from
    /// waiting on each other's locks (see `sqlite`).
    ///
    /// On SQLite the transaction is `BEGIN IMMEDIATE`, taking the write lock up front so
    /// that writers queue instead of failing to upgrade a read lock.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut DbConn) -> futures_util::future::BoxFuture<'c, Result<T, E>>,
        E: From<StoreError>,
    {
        let _queued = match self {
            Db::Sqlite { writer, .. } => Some(writer.lock().await),
            Db::Pg(_) => None,
        };
        let mut transaction = OpenTransaction(Some(self.conn().await?));
        let conn = transaction.0.as_mut().ok_or_else(|| StoreError::Pool("no connection".into()))?;
        conn.begin().await?;
        let outcome = Self::finish(conn, f).await;
        // Finished either way: the connection may go back to the pool.
        drop(transaction.0.take());
        outcome
    }

    /// Runs the body of a begun transaction and commits or rolls back.
    async fn finish<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut DbConn) -> futures_util::future::BoxFuture<'c, Result<T, E>>,
        E: From<StoreError>,
    {
        match f(conn).await {
            Ok(value) => {
                conn.commit().await?;
                Ok(value)
            }
            Err(err) => {
                // A failed rollback leaves the connection marked broken; the pool drops it.
                if let Err(rollback) = conn.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(err)
            }
        }
    }

    /// Is the database reachable?
    pub async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        with_conn!(&mut conn, |c| c.batch_execute("SELECT 1").await)?;
        Ok(())
    }
}

/// A connection between `BEGIN` and `COMMIT`/`ROLLBACK`. Dropped while still open (the
/// request was cancelled), it closes the connection rather than returning it to the pool,
/// so the database rolls back and releases the transaction's locks at once.
struct OpenTransaction(Option<DbConn>);

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        match self.0.take() {
            Some(DbConn::Pg(conn)) => drop(Object::take(conn)),
            Some(DbConn::Sqlite(conn)) => drop(Object::take(conn)),
            None => {}
        }
    }
}

impl DbConn {
    async fn begin(&mut self) -> StoreResult<()> {
        match self {
            DbConn::Pg(c) => begin_on::<AsyncPgConnection>(c).await?,
            DbConn::Sqlite(c) => {
                sqlite::may_wait(c.spawn_blocking(|c| {
                    diesel::connection::AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
                }))
                .await?
            }
        }
        Ok(())
    }

    async fn commit(&mut self) -> StoreResult<()> {
        let committed = match self {
            DbConn::Pg(c) => commit_on::<AsyncPgConnection>(c).await,
            // Committing may checkpoint the write-ahead log (disk writes, fsync): off the
            // async workers.
            DbConn::Sqlite(c) => sqlite::may_wait(commit_on::<SqliteConn>(c)).await,
        };
        // A deferred constraint can fail at commit: that too is a conflict.
        committed.map_err(on_unique_violation)
    }

    async fn rollback(&mut self) -> StoreResult<()> {
        with_conn!(self, |c| rollback_on(c).await)?;
        Ok(())
    }
}

async fn begin_on<C: AsyncConnection>(c: &mut C) -> diesel::QueryResult<()> {
    C::TransactionManager::begin_transaction(c).await
}

async fn commit_on<C: AsyncConnection>(c: &mut C) -> diesel::QueryResult<()> {
    C::TransactionManager::commit_transaction(c).await
}

async fn rollback_on<C: AsyncConnection>(c: &mut C) -> diesel::QueryResult<()> {
    C::TransactionManager::rollback_transaction(c).await
}

/// Keys of the transaction-scoped locks that serialize rare, racy operations.
#[derive(Debug, Clone, Copy)]
#[repr(i64)]
pub enum LockKey {
    /// Deciding whether a new account is the first (and so the administrator).
    Registration = 0x4c53_0001,
    /// Applying migrations (held for the session, not a transaction).
    Migrations = 0x4c53_0002,
    /// Counting sign-in attempts.
    LoginAttempts = 0x4c53_0003,
}

impl DbConn {
    /// Holds `key` until the transaction ends. SQLite's write transactions are already
    /// exclusive (`BEGIN IMMEDIATE`), so only PostgreSQL needs an advisory lock.
    pub async fn lock(&mut self, key: LockKey) -> StoreResult<()> {
        use diesel::sql_types::BigInt;
        use diesel_async::RunQueryDsl;
        with_conn!(self,
            pg: |c| {
                diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                    .bind::<BigInt, _>(key as i64)
                    .execute(c)
                    .await?;
            },
            sqlite: |_c| {}
        );
        Ok(())
    }
}
