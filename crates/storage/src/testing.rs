//! Test support (cargo feature `testing`): a fresh, empty, migrated database per test, on each
//! backend.
//!
//! ```no_run
//! # async fn demo() {
//! use mpesa_storage::testing::TestDatabase;
//! let db = TestDatabase::postgres().await; // or ::sqlite(), ::mysql(), ::new(backend)
//! let storage = db.storage(); // Arc<dyn Storage>, migrated
//! let second_instance = db.connect_another().await; // another pool on the same database
//! # drop((storage, second_instance));
//! # }
//! ```
//!
//! * SQLite: a file in a temporary directory.
//! * PostgreSQL: `CREATE DATABASE mpesa_test_<random>` on the server that
//!   `MPESA_TEST_POSTGRES_URL` names (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! * MySQL/MariaDB: `CREATE DATABASE mpesa_test_<random>` on the server that
//!   `MPESA_TEST_MYSQL_URL` names (default `mysql://root@127.0.0.1:3306/mysql`).
//!
//! The database is dropped when the [`TestDatabase`] is dropped (best effort: a killed test
//! run leaves `mpesa_test_*` databases behind). A server that cannot be reached makes the test
//! FAIL with a message naming the variable: no backend is ever skipped silently.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, MySqlConnection, PgConnection};
use url::Url;

use crate::{Backend, ConnectOptions, Storage, connect};

pub const POSTGRES_URL_VAR: &str = "MPESA_TEST_POSTGRES_URL";
pub const MYSQL_URL_VAR: &str = "MPESA_TEST_MYSQL_URL";
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/mysql";

/// Pools are kept small: many tests run at once against one server.
fn test_connect_options() -> ConnectOptions {
    ConnectOptions {
        max_connections: 6,
        acquire_timeout: Duration::from_secs(30),
    }
}

/// A fresh migrated database for one test; dropped with it.
pub struct TestDatabase {
    backend: Backend,
    url: String,
    storage: Arc<dyn Storage>,
    cleanup: Cleanup,
}

enum Cleanup {
    /// Removing the directory removes the SQLite file.
    TempDir(#[allow(dead_code)] tempfile::TempDir),
    DropDatabase {
        admin_url: String,
        name: String,
    },
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => Self::sqlite().await,
            Backend::Postgres => Self::postgres().await,
            Backend::MySql => Self::mysql().await,
        }
    }

    pub async fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("a temporary directory for the SQLite test database");
        let url = format!("sqlite://{}", dir.path().join("mpesa-gateway.db").display());
        Self::open(Backend::Sqlite, url, Cleanup::TempDir(dir)).await
    }

    pub async fn postgres() -> TestDatabase {
        let admin_url = server_url(POSTGRES_URL_VAR, DEFAULT_POSTGRES_URL);
        let name = database_name();
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| unreachable_server("PostgreSQL", POSTGRES_URL_VAR, &admin_url, e));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create the PostgreSQL test database {name}: {e}"));
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Self::open(
            Backend::Postgres,
            url,
            Cleanup::DropDatabase { admin_url, name },
        )
        .await
    }

    pub async fn mysql() -> TestDatabase {
        let admin_url = server_url(MYSQL_URL_VAR, DEFAULT_MYSQL_URL);
        let name = database_name();
        let mut admin = MySqlConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| unreachable_server("MySQL/MariaDB", MYSQL_URL_VAR, &admin_url, e));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create the MySQL test database {name}: {e}"));
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Self::open(
            Backend::MySql,
            url,
            Cleanup::DropDatabase { admin_url, name },
        )
        .await
    }

    async fn open(backend: Backend, url: String, cleanup: Cleanup) -> TestDatabase {
        let storage = connect(&url, &test_connect_options())
            .await
            .unwrap_or_else(|e| panic!("cannot open the {} test database: {e}", backend.as_str()));
        storage.migrate().await.unwrap_or_else(|e| {
            panic!("cannot migrate the {} test database: {e}", backend.as_str())
        });
        TestDatabase {
            backend,
            url,
            storage,
            cleanup,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The migrated storage.
    pub fn storage(&self) -> Arc<dyn Storage> {
        Arc::clone(&self.storage)
    }

    /// The database URL, e.g. to run the gateway binary against it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Another storage (its own pools) on the same database: a second gateway instance.
    pub async fn connect_another(&self) -> Arc<dyn Storage> {
        connect(&self.url, &test_connect_options())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot open the {} test database again: {e}",
                    self.backend.as_str()
                )
            })
    }
}

impl TestDatabase {
    /// PostgreSQL only: makes the database unreachable (new connections refused, open ones
    /// cut), as in an outage, until [`TestDatabase::allow_connections`].
    pub async fn block_connections(&self) {
        let (admin_url, name) = self.postgres_admin("block_connections");
        let mut admin = PgConnection::connect(admin_url)
            .await
            .expect("PostgreSQL admin connection");
        for sql in [
            format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .expect("outage statement");
        }
        let _ = admin.close().await;
    }

    /// Ends [`TestDatabase::block_connections`].
    pub async fn allow_connections(&self) {
        let (admin_url, name) = self.postgres_admin("allow_connections");
        let mut admin = PgConnection::connect(admin_url)
            .await
            .expect("PostgreSQL admin connection");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS true"
        )))
        .execute(&mut admin)
        .await
        .expect("end of outage");
        let _ = admin.close().await;
    }

    fn postgres_admin(&self, what: &str) -> (&str, &str) {
        match (&self.cleanup, self.backend) {
            (Cleanup::DropDatabase { admin_url, name }, Backend::Postgres) => (admin_url, name),
            _ => panic!("{what} is only available on PostgreSQL test databases"),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Cleanup::DropDatabase { admin_url, name } = &self.cleanup else {
            return;
        };
        let (backend, admin_url, name) = (self.backend, admin_url.clone(), name.clone());
        // Drop cannot await, and the test's runtime may be a single thread that is busy running
        // this very drop: use a runtime of our own on a thread of our own.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(drop_database(backend, &admin_url, &name))
        });
        match dropper.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: test database left behind: {e}"),
            Err(_) => eprintln!("warning: test database left behind: the dropping thread panicked"),
        }
    }
}

async fn drop_database(
    backend: Backend,
    admin_url: &str,
    name: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match backend {
        Backend::Postgres => {
            let mut admin = PgConnection::connect(admin_url).await?;
            // FORCE (PostgreSQL 13+) ends the test's own pooled connections.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await?;
            admin.close().await?;
        }
        Backend::MySql => {
            let mut admin = MySqlConnection::connect(admin_url).await?;
            // Do not hang on a connection that a failed test left inside a transaction.
            sqlx::raw_sql("SET SESSION lock_wait_timeout = 5")
                .execute(&mut admin)
                .await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .execute(&mut admin)
            .await?;
            admin.close().await?;
        }
        Backend::Sqlite => {}
    }
    Ok(())
}

fn server_url(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// `mpesa_test_` and 32 random hex digits: a valid unquoted name on both servers.
fn database_name() -> String {
    format!("mpesa_test_{}", uuid::Uuid::now_v7().simple())
}

/// The server URL with its database replaced by `name`.
fn with_database(server_url: &str, name: &str) -> String {
    let mut url = Url::parse(server_url).unwrap_or_else(|e| panic!("invalid test server URL: {e}"));
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn unreachable_server(product: &str, var: &str, url: &str, e: sqlx::Error) -> ! {
    let shown = match Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_owned(),
    };
    panic!(
        "the {product} test server at {shown} is unreachable ({e}). Start it, or point {var} at one. \
         The storage contract is tested on every backend; none is skipped."
    )
}
