//! A fresh database per test: a SQLite file in a temporary directory, or a PostgreSQL
//! database created on the server named by `TEST_DATABASE_URL` and dropped afterwards.

use std::io::Write;
use std::sync::Once;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

pub enum TestDb {
    Sqlite { _dir: tempfile::TempDir, url: String },
    Postgres { admin_url: String, name: String, url: String },
}

static SKIP_WARNING: Once = Once::new();

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("liteskill.db").display());
        TestDb::Sqlite { _dir: dir, url }
    }

    /// A new PostgreSQL database, or `None` (with a loud warning) without `TEST_DATABASE_URL`.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            SKIP_WARNING.call_once(|| {
                // Written past the test harness's capture so it shows in every run.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!!! TEST_DATABASE_URL is not set: PostgreSQL tests are SKIPPED (SQLite only) !!!\n"
                );
            });
            return None;
        };
        let name = format!("liteskill_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&admin_url).await.expect("connect to TEST_DATABASE_URL");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let url = with_database(&admin_url, &name);
        Some(TestDb::Postgres { admin_url, name, url })
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url, .. } => url,
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name, .. } = self {
            let (admin_url, db_name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime: use a thread with a runtime of its own.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(async {
                    let mut admin = AsyncPgConnection::establish(&admin_url).await?;
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")).await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test database {name}");
            }
        }
    }
}

#[test]
fn database_name_is_replaced() {
    assert_eq!(with_database("postgres://u@h:5432/postgres", "t"), "postgres://u@h:5432/t");
    assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "t"), "postgres://u@h/t?sslmode=disable");
    assert_eq!(with_database("postgres://h", "t"), "postgres://h/t");
}
