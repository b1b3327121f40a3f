//! Databases for tests, proof suites and benchmarks: a fresh, migrated one per test or run on
//! each backend (dropped afterwards), plain SQL behind the storage's back, and payments seeded
//! in bulk.
//!
//! ```no_run
//! # async fn demo() {
//! use mpesa_harness::database::{Backend, TestDatabase};
//! let db = TestDatabase::new(Backend::Postgres).await; // or ::sqlite(), ::mysql()
//! let storage = db.storage(); // Arc<dyn Storage>, migrated
//! let second_instance = db.connect_another().await; // another pool on the same database
//! let url = db.url(); // DATABASE_URL for the gateway binary
//! # drop((storage, second_instance, url));
//! # }
//! ```
//!
//! * SQLite: a file in a temporary directory (or a directory of the caller's).
//! * PostgreSQL: `CREATE DATABASE <prefix>_<uuid>` on the server [`crate::env::POSTGRES_URL`]
//!   names (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! * MySQL/MariaDB: the same on the server [`crate::env::MYSQL_URL`] names (default
//!   `mysql://root@127.0.0.1:3306/mysql`).
//!
//! The database is dropped when the [`TestDatabase`] is (best effort: a killed run leaves
//! `mpesa_test_*` databases behind). A server that cannot be reached is an error naming the
//! variable: no backend is ever skipped silently.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use url::Url;

pub use mpesa_storage::Backend;
use mpesa_storage::{ConnectOptions, Storage, connect};

use crate::env;

/// The name prefix of the databases tests make.
const TEST_PREFIX: &str = "mpesa_test";

/// Pools are kept small: many tests run at once against one server.
fn test_connect_options() -> ConnectOptions {
    ConnectOptions {
        max_connections: 6,
        acquire_timeout: Duration::from_secs(30),
    }
}

/// A fresh migrated database; dropped with it.
pub struct TestDatabase {
    backend: Backend,
    url: String,
    storage: Arc<dyn Storage>,
    cleanup: Cleanup,
}

/// What happens to the database when it is dropped.
enum Cleanup {
    /// Removing the directory removes the SQLite file.
    TempDir(#[allow(dead_code)] tempfile::TempDir),
    /// A SQLite file in the caller's directory, kept.
    Keep,
    DropDatabase {
        backend: Backend,
        admin_url: String,
        name: String,
    },
}

impl TestDatabase {
    /// For a test: a database named `mpesa_test_<uuid>`; panics (failing the test) with the
    /// reason when the server cannot be reached.
    pub async fn new(backend: Backend) -> TestDatabase {
        Self::create(backend, TEST_PREFIX, None)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub async fn sqlite() -> TestDatabase {
        Self::new(Backend::Sqlite).await
    }

    pub async fn postgres() -> TestDatabase {
        Self::new(Backend::Postgres).await
    }

    pub async fn mysql() -> TestDatabase {
        Self::new(Backend::MySql).await
    }

    /// A database named `{prefix}_{uuid}` on the server; for SQLite, `db.sqlite` in
    /// `sqlite_dir` (kept, for a proof run's record) or in a temporary directory.
    pub async fn create(
        backend: Backend,
        prefix: &str,
        sqlite_dir: Option<&Path>,
    ) -> anyhow::Result<TestDatabase> {
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        match backend {
            Backend::Sqlite => {
                let (dir, cleanup) = match sqlite_dir {
                    Some(dir) => (dir.to_owned(), Cleanup::Keep),
                    None => {
                        let temp = tempfile::tempdir()
                            .context("a temporary directory for the SQLite database")?;
                        (temp.path().to_owned(), Cleanup::TempDir(temp))
                    }
                };
                let url = format!("sqlite://{}", dir.join("db.sqlite").display());
                Self::open(backend, url, cleanup).await
            }
            Backend::Postgres | Backend::MySql => {
                let (product, var, admin_url, create) = match backend {
                    Backend::Postgres => (
                        "PostgreSQL",
                        env::POSTGRES_URL,
                        env::postgres_url(),
                        format!("CREATE DATABASE {name}"),
                    ),
                    _ => (
                        "MySQL/MariaDB",
                        env::MYSQL_URL,
                        env::mysql_url(),
                        format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
                    ),
                };
                let admin = Db::connect_one(&admin_url)
                    .await
                    .map_err(|e| unreachable_server(product, var, &admin_url, e))?;
                let created = admin.execute(&create).await;
                admin.close().await;
                created.with_context(|| format!("creating the {product} database {name}"))?;
                let url = with_database(&admin_url, &name)?;
                let cleanup = Cleanup::DropDatabase {
                    backend,
                    admin_url,
                    name,
                };
                Self::open(backend, url, cleanup).await
            }
        }
    }

    async fn open(backend: Backend, url: String, cleanup: Cleanup) -> anyhow::Result<TestDatabase> {
        // On an error below, dropping `cleanup` drops the database again.
        let storage = connect(&url, &test_connect_options())
            .await
            .with_context(|| format!("opening the {} database", backend.as_str()))?;
        storage
            .migrate()
            .await
            .with_context(|| format!("migrating the {} database", backend.as_str()))?;
        Ok(TestDatabase {
            backend,
            url,
            storage,
            cleanup,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The migrated storage.
    pub fn storage(&self) -> Arc<dyn Storage> {
        Arc::clone(&self.storage)
    }

    /// The database URL (`DATABASE_URL` for the gateway binary).
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

    /// Runs SQL behind the storage's back (to plant rows it would refuse, to read raw columns).
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        let db = Db::connect(&self.url).await?;
        let result = db.execute(sql).await;
        db.close().await;
        result
    }

    /// PostgreSQL only: makes the database unreachable (new connections refused, open ones
    /// cut), as in an outage, until [`TestDatabase::allow_connections`].
    pub async fn block_connections(&self) {
        let (admin_url, name) = self.postgres_admin("block_connections");
        admin_sql(
            admin_url,
            &format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ),
        )
        .await
        .expect("the outage's statements");
    }

    /// Ends [`TestDatabase::block_connections`].
    pub async fn allow_connections(&self) {
        let (admin_url, name) = self.postgres_admin("allow_connections");
        admin_sql(
            admin_url,
            &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
        )
        .await
        .expect("the end of the outage");
    }

    fn postgres_admin(&self, what: &str) -> (&str, &str) {
        match (&self.cleanup, self.backend) {
            (
                Cleanup::DropDatabase {
                    admin_url, name, ..
                },
                Backend::Postgres,
            ) => (admin_url, name),
            _ => panic!("{what} is only available on PostgreSQL test databases"),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Cleanup::DropDatabase {
            backend,
            admin_url,
            name,
        } = self
        else {
            return;
        };
        let (backend, admin_url, name) = (*backend, admin_url.clone(), name.clone());
        // Drop cannot await, and the caller's runtime may be a single thread that is busy
        // running this very drop: use a runtime of our own on a thread of our own.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(drop_database(backend, &admin_url, &name))
        });
        match dropper.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: test database left behind: {e:#}"),
            Err(_) => eprintln!("warning: test database left behind: the dropping thread panicked"),
        }
    }
}

async fn drop_database(backend: Backend, admin_url: &str, name: &str) -> anyhow::Result<()> {
    match backend {
        // FORCE (PostgreSQL 13+) ends the test's own pooled connections.
        Backend::Postgres => {
            admin_sql(
                admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await
        }
        // Without hanging on a connection that a failed test left inside a transaction.
        Backend::MySql => {
            admin_sql(
                admin_url,
                &format!("SET SESSION lock_wait_timeout = 5; DROP DATABASE IF EXISTS {name}"),
            )
            .await
        }
        Backend::Sqlite => Ok(()),
    }
}

/// Statements on the server's admin database, over one connection.
async fn admin_sql(admin_url: &str, sql: &str) -> anyhow::Result<()> {
    let admin = Db::connect_one(admin_url).await?;
    let result = admin.execute(sql).await;
    admin.close().await;
    result
}

/// The server URL with its database replaced by `name`.
fn with_database(server_url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = Url::parse(server_url).context("the test database server's URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

fn unreachable_server(product: &str, var: &str, url: &str, e: anyhow::Error) -> anyhow::Error {
    let shown = match Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_owned(),
    };
    anyhow::anyhow!(
        "the {product} server at {shown} is unreachable ({e}). Start it (./scripts/test starts \
         it when it is installed), or point {var} at one. Every backend is tested; none is \
         skipped."
    )
}

/// A connection to a gateway's database for reading what it stored (and seeding), with no
/// storage code in between.
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
}

macro_rules! on_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match $self {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
            Db::MySql($pool) => $body,
        }
    };
}

impl Db {
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        Self::connect_with(url, 2).await
    }

    /// One connection: statements that must share a session (`SET SESSION …; DROP …`).
    async fn connect_one(url: &str) -> anyhow::Result<Db> {
        Self::connect_with(url, 1).await
    }

    async fn connect_with(url: &str, connections: u32) -> anyhow::Result<Db> {
        Ok(if url.starts_with("sqlite") {
            Db::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(connections)
                    .connect(url)
                    .await?,
            )
        } else if url.starts_with("postgres") {
            Db::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(connections)
                    .connect(url)
                    .await?,
            )
        } else if url.starts_with("mysql") {
            Db::MySql(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(connections)
                    .connect(url)
                    .await?,
            )
        } else {
            bail!("unsupported database URL {url}")
        })
    }

    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        let sql = sql.to_owned();
        on_pool!(self, pool => { sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await?; });
        Ok(())
    }

    /// A `SELECT COUNT(*) …` (or any one integer).
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        let sql = sql.to_owned();
        Ok(
            on_pool!(self, pool => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await
            .context("counting")?),
        )
    }

    /// Rows of two text columns.
    pub async fn text_pairs(&self, sql: &str) -> anyhow::Result<Vec<(String, String)>> {
        let sql = sql.to_owned();
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?),
        )
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// The CheckoutRequestID of seeded payment `i` (see [`crate::callbacks::stk_success`]).
pub fn seeded_checkout_id(i: usize) -> String {
    format!("ws_CO_bench{i:09}")
}

/// Payments `0..n` waiting for their callback, written in bulk (the gateway's own create path
/// costs a commit and a push each, and is not what is measured). Amount 10 from 254708374149,
/// with `customer_email` when given. The database must be migrated.
pub async fn seed_pending_payments(
    db: &Db,
    range: std::ops::Range<usize>,
    customer_email: Option<&str>,
) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let email = match customer_email {
        Some(e) => format!("'{}'", e.replace('\'', "''")),
        None => "NULL".into(),
    };
    for chunk in range.collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "('pay_bench{i:09}','pending','254708374149',10,'BENCH','bench','{checkout}','bench-{i}','api',{next},{now},{now},FALSE,1,0,{email})",
                    checkout = seeded_checkout_id(*i),
                    next = now + 86_400_000
                )
            })
            .collect();
        db.execute(&format!(
            "INSERT INTO payments (id,status,phone,amount,reference,description,checkout_request_id,merchant_request_id,source,next_check_at,created_at,updated_at,needs_review,version,query_attempts,customer_email) VALUES {}",
            values.join(",")
        ))
        .await?;
    }
    Ok(())
}
