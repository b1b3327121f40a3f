//! Databases for a gateway under test: a fresh one per run on the local PostgreSQL or MariaDB
//! server (dropped afterwards) or a SQLite file; plain SQL reads of what the gateway stored; and
//! payments seeded in bulk.

use anyhow::{Context, bail};
use sqlx::Connection;

/// The three backends the gateway supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mariadb",
        }
    }
}

/// Server URLs, overridable for other setups.
pub fn postgres_admin_url() -> String {
    std::env::var("MPESA_PROOF_POSTGRES_URL")
        .or_else(|_| std::env::var("MPESA_BENCH_POSTGRES_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn mysql_admin_url() -> String {
    std::env::var("MPESA_PROOF_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".into())
}

/// A database made for one run; dropped (with its connections) when this is dropped.
pub struct FreshDatabase {
    pub backend: Backend,
    pub url: String,
    admin_url: String,
    name: String,
}

impl FreshDatabase {
    /// A new database named `{prefix}_{uuid}` on the local server; for SQLite, a file `db.sqlite`
    /// in `dir`.
    pub async fn create(
        backend: Backend,
        prefix: &str,
        dir: &std::path::Path,
    ) -> anyhow::Result<FreshDatabase> {
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        match backend {
            Backend::Sqlite => Ok(FreshDatabase {
                backend,
                url: format!("sqlite://{}/db.sqlite", dir.display()),
                admin_url: String::new(),
                name,
            }),
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .with_context(|| format!("connecting to PostgreSQL at {admin_url}"))?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await?;
                Ok(FreshDatabase {
                    backend,
                    url: replace_database(&admin_url, &name)?,
                    admin_url,
                    name,
                })
            }
            Backend::MySql => {
                let admin_url = mysql_admin_url();
                let mut conn = sqlx::MySqlConnection::connect(&admin_url)
                    .await
                    .with_context(|| format!("connecting to MariaDB at {admin_url}"))?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {name} CHARACTER SET utf8mb4"
                )))
                .execute(&mut conn)
                .await?;
                Ok(FreshDatabase {
                    backend,
                    url: replace_database(&admin_url, &name)?,
                    admin_url,
                    name,
                })
            }
        }
    }
}

fn replace_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    match admin_url.rsplit_once('/') {
        Some((base, _)) if base.contains("://") && base.len() > base.find("://").unwrap() + 3 => {
            Ok(format!("{base}/{name}"))
        }
        _ => bail!("{admin_url}: the server URL needs a database path"),
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (backend, admin, name) = (self.backend, self.admin_url.clone(), self.name.clone());
        if backend == Backend::Sqlite {
            return;
        }
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                match backend {
                    Backend::Postgres => {
                        let mut conn = sqlx::PgConnection::connect(&admin).await?;
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await?;
                    }
                    Backend::MySql => {
                        let mut conn = sqlx::MySqlConnection::connect(&admin).await?;
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name}"
                        )))
                        .execute(&mut conn)
                        .await?;
                    }
                    Backend::Sqlite => {}
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
    }
}

/// A connection to the gateway's database for reading what it stored (and seeding).
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
        Ok(if url.starts_with("sqlite") {
            Db::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect(url)
                    .await?,
            )
        } else if url.starts_with("postgres") {
            Db::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(url)
                    .await?,
            )
        } else if url.starts_with("mysql") {
            Db::MySql(
                sqlx::mysql::MySqlPoolOptions::new()
                    .max_connections(2)
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
/// with `customer_email` when given. The gateway must have migrated the database.
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
