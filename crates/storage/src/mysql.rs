//! MySQL 8 and MariaDB: several gateway instances may share one database.
//!
//! * Sessions run at READ COMMITTED: InnoDB's default REPEATABLE READ takes gap locks when
//!   `SELECT … FOR UPDATE` finds no row (a callback for an unknown CheckoutRequestID), which
//!   deadlocks concurrent inserts.
//! * A decision about a payment is made on the row locked with `SELECT … FOR UPDATE`; work rows
//!   are claimed with `FOR UPDATE SKIP LOCKED` and then updated in the same transaction (no
//!   `UPDATE … RETURNING` here).
//! * Upserts are `ON DUPLICATE KEY UPDATE key = key`, never `INSERT IGNORE`, which would also
//!   swallow other errors (truncation, bad foreign keys).
//! * Placeholders are `?`: the shared `$N` statements are rewritten before they are sent.
//! * DDL commits implicitly, so migrations cannot roll back half-way. Ours are written to be
//!   re-run safely, and one that a crash left marked as failed is run again.
//! * A node of a MariaDB Galera cluster is recognised (`wsrep_on`) and handled as `galera.rs`
//!   says: settings and state checked at start, state watched, causal reads.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, MySql, MySqlConnection, MySqlPool};

use crate::db::{Dialect, Driver, SeveralStatements, WriteTx, impl_conn, to_question_marks};
use crate::error::{
    DbError, DbResult, ServerErrorClass, map_sqlx_error, unique_rule_from_mysql_message,
};
use crate::galera::{self, ClusterStatus, GaleraWatch};
use crate::{Backend, ConnectOptions, Result, StorageError, migrations, server_version};

const DIALECT: Dialect = Dialect {
    for_update: " FOR UPDATE",
    for_update_skip_locked: " FOR UPDATE SKIP LOCKED",
    insert_idempotency_claim: "INSERT INTO idempotency_keys \
        (api_key_id, idem_key, request_hash, payment_id, created_at) VALUES ($1, $2, $3, $4, $5) \
        ON DUPLICATE KEY UPDATE api_key_id = api_key_id",
    skip_taken_dedupe_key: " ON DUPLICATE KEY UPDATE id = id",
    outbox_rows_per_statement: 1,
    insert_admin_user_if_absent: "INSERT INTO admin_users (id, username, password_hash, created_at) \
        VALUES ($1, $2, $3, $4) ON DUPLICATE KEY UPDATE id = id",
    insert_setting_if_absent: "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3) \
        ON DUPLICATE KEY UPDATE name = name",
    insert_lease_if_absent: "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3) \
        ON DUPLICATE KEY UPDATE name = name",
    insert_rate_limit_if_absent: "INSERT INTO rate_limits (bucket, window_start, hits) \
        VALUES ($1, $2, 0) ON DUPLICATE KEY UPDATE bucket = bucket",
    insert_payout_day_if_absent: "INSERT INTO payout_days (day, reserved) VALUES ($1, 0) \
        ON DUPLICATE KEY UPDATE day = day",
    insert_skipping_taken_keys: " ON DUPLICATE KEY UPDATE created_at = created_at",
    upsert_setting: "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3) \
        ON DUPLICATE KEY UPDATE value = VALUES(value), updated_at = VALUES(updated_at)",
    upsert_health_probe: "INSERT INTO health_probes (instance_id, written_at) VALUES ($1, $2) \
        ON DUPLICATE KEY UPDATE written_at = VALUES(written_at)",
    count_sign_in_failure: "INSERT INTO sign_in_failures \
        (username, address, failures, last_failed_at) VALUES ($1, $2, 1, $3) \
        ON DUPLICATE KEY UPDATE failures = failures + 1, last_failed_at = VALUES(last_failed_at)",
    upsert_telegram_link: "INSERT INTO telegram_links (chat_id, user_id, phone, linked_at, blocked_at) \
        VALUES ($1, $2, $3, $4, NULL) \
        ON DUPLICATE KEY UPDATE user_id = VALUES(user_id), phone = VALUES(phone), \
        linked_at = VALUES(linked_at), blocked_at = NULL",
    // SUM over integers is DECIMAL here; CAST … AS SIGNED makes it a BIGINT again.
    payment_totals_by_status: "SELECT status, COUNT(*) AS count, CAST(SUM(amount) AS SIGNED) AS amount \
        FROM payments WHERE created_at >= $1 AND created_at < $2 GROUP BY status",
    completed_totals_by_channel: "SELECT channel, COUNT(*) AS count, CAST(SUM(amount) AS SIGNED) AS amount \
        FROM payments WHERE created_at >= $1 AND created_at < $2 AND status = 'completed' GROUP BY channel",
    // `/` is decimal division here; DIV is integer division.
    daily_volume: "SELECT (created_at + $3) DIV 86400000 AS day, COUNT(*) AS total_count, \
        CAST(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS SIGNED) AS completed_count, \
        CAST(SUM(CASE WHEN status = 'completed' THEN amount ELSE 0 END) AS SIGNED) AS completed_amount \
        FROM payments WHERE created_at >= $1 AND created_at < $2 \
        GROUP BY day ORDER BY day",
    update_from_values: false,
    several_statements: SeveralStatements::OneByOne,
};

/// Seconds a statement waits for a row lock before the transaction is run again.
const LOCK_WAIT_TIMEOUT_SECS: u32 = 10;

/// Serialises migrations of instances starting together (on top of sqlx's own lock, so that
/// clearing a failed migration's mark happens under it too).
const MIGRATION_LOCK: &str = "mpesa_gateway_migrations";

impl_conn!(
    MySqlConnection,
    MySql,
    &DIALECT,
    to_question_marks,
    map_error
);

fn map_error(e: sqlx::Error) -> DbError {
    map_sqlx_error(e, classify, |db| {
        unique_rule_from_mysql_message(db.message())
    })
}

fn classify(e: &dyn DatabaseError) -> ServerErrorClass {
    let Some(my) = e.try_downcast_ref::<MySqlDatabaseError>() else {
        return ServerErrorClass::Other;
    };
    match my.number() {
        // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT, ER_CHECKREAD (MariaDB snapshot isolation)
        1213 | 1205 | 1020 => ServerErrorClass::Transient,
        // too many connections, server shutdown, disk full, table full, connection killed
        1040 | 1053 | 1021 | 1114 | 1927 => ServerErrorClass::Unavailable,
        _ => ServerErrorClass::Other,
    }
}

/// Distinguishes migrators of one process id on different hosts.
fn galera_owner_salt() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub(crate) struct MySqlDriver {
    pool: MySqlPool,
    /// Set when the server is a node of a Galera cluster.
    galera: Option<GaleraWatch>,
}

impl MySqlDriver {
    /// Connects, in a task of its own: a server that is starting (a Galera node joining) can
    /// answer with a packet that is not a handshake, and sqlx's MySQL driver panics decoding
    /// it. That is an unavailable server, said as such, not a crash of the process.
    pub(crate) async fn connect(url: &str, options: &ConnectOptions) -> Result<Self> {
        let (url, options) = (url.to_owned(), options.clone());
        tokio::spawn(async move { Self::connect_here(&url, &options).await })
            .await
            .map_err(|failed| {
                StorageError::Unavailable(format!(
                    "the MySQL driver failed on the server's answer ({failed})"
                ))
            })?
    }

    async fn connect_here(url: &str, options: &ConnectOptions) -> Result<Self> {
        let url = match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_owned(),
        };
        let connect = MySqlConnectOptions::from_str(&url)
            .map_err(|_| StorageError::Unsupported("invalid MySQL URL".into()))?
            .charset("utf8mb4");
        // Galera or not decides how every session is set up.
        let cluster = {
            let mut conn = MySqlConnection::connect_with(&connect)
                .await
                .map_err(|e| StorageError::from(map_error(e)))?;
            let checked = galera::check_settings(&mut conn).await;
            let _ = conn.close().await;
            checked?
        };
        let causal_reads = cluster.is_some();
        let pool = MySqlPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    sqlx::raw_sql("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("SET SESSION innodb_lock_wait_timeout = ?")
                        .bind(LOCK_WAIT_TIMEOUT_SECS)
                        .execute(&mut *conn)
                        .await?;
                    if causal_reads {
                        // Reads and BEGIN wait until this node has applied every write the
                        // cluster committed before them (a lease, a claim, a payment another
                        // instance created a moment ago on another node).
                        sqlx::raw_sql("SET SESSION wsrep_sync_wait = 1")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect.clone())
            .await
            .map_err(|e| StorageError::from(map_error(e)))?;
        let galera = cluster.map(|status| {
            tracing::info!(node = %status.node, cluster_size = status.cluster_size, "MariaDB Galera node, Synced");
            GaleraWatch::start(connect, status)
        });
        Ok(MySqlDriver { pool, galera })
    }

    /// Takes a connection from the pool in a task of its own, for the reason `connect` does: a
    /// new connection reads the server's handshake, on which the driver can panic. The request
    /// is then told the database is unavailable (503), not failed by a bug (500).
    async fn acquire(&self) -> DbResult<PoolConnection<MySql>> {
        let pool = self.pool.clone();
        tokio::spawn(async move { pool.acquire().await })
            .await
            .map_err(|failed| DbError {
                error: StorageError::Unavailable(format!(
                    "the MySQL driver failed on the server's answer ({failed})"
                )),
                transient: false,
            })?
            .map_err(map_error)
    }

    fn check_galera(&self) -> DbResult<()> {
        match &self.galera {
            Some(watch) => watch.check(),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Driver for MySqlDriver {
    type Conn = MySqlConnection;
    type Tx = WriteTx<MySql>;
    type Reader = PoolConnection<MySql>;

    const BACKEND: Backend = Backend::MySql;

    async fn begin(&self) -> DbResult<Self::Tx> {
        self.check_galera()?;
        WriteTx::begin_on(self.acquire().await?, "BEGIN").await
    }

    async fn commit(tx: Self::Tx) -> DbResult<()> {
        tx.commit().await
    }

    async fn rollback(tx: Self::Tx) {
        tx.rollback().await
    }

    async fn reader(&self) -> DbResult<Self::Reader> {
        self.check_galera()?;
        self.acquire().await
    }

    fn cluster_status(&self) -> Option<ClusterStatus> {
        self.galera.as_ref().map(GaleraWatch::status)
    }

    async fn migrate(&self) -> Result<()> {
        let to_storage = |e: sqlx::Error| StorageError::from(map_error(e));
        let mut conn = self.pool.acquire().await.map_err(to_storage)?;
        let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 60)")
            .bind(MIGRATION_LOCK)
            .fetch_one(&mut *conn)
            .await
            .map_err(to_storage)?;
        if locked != Some(1) {
            return Err(StorageError::Unavailable(
                "another instance has been migrating for a minute".into(),
            ));
        }
        // GET_LOCK is local to a Galera node: the cluster needs a lock of its own.
        let owner = format!("{:x}", std::process::id() as u64 ^ galera_owner_salt());
        if self.galera.is_some() {
            galera::lock_migrations(&mut conn, &owner).await?;
        }
        let result = async {
            let has_table: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = '_sqlx_migrations'",
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(to_storage)?;
            if has_table > 0 {
                let cleared = sqlx::query("DELETE FROM _sqlx_migrations WHERE success = FALSE")
                    .execute(&mut *conn)
                    .await
                    .map_err(to_storage)?
                    .rows_affected();
                if cleared > 0 {
                    tracing::warn!(
                        cleared,
                        "re-running MySQL migrations that a crash interrupted"
                    );
                }
            }
            // `run_direct` takes the connection itself (`run` trips over a lifetime bound on
            // `&mut MySqlConnection` inside an async trait method).
            migrations::migrator(migrations::MYSQL)
                .run_direct(None, &mut *conn, false)
                .await
                .map_err(|e| migrations::map_migrate_error(e, map_error))?;
            if self.galera.is_some() {
                galera::check_primary_keys(&mut conn).await?;
            }
            Ok(())
        }
        .await;
        if self.galera.is_some() {
            galera::unlock_migrations(&mut conn, &owner).await;
        }
        let released = sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "could not release the migration lock; it ends with the connection");
            conn.detach();
        }
        result
    }

    async fn check_server(&self) -> Result<String> {
        let version: String = sqlx::query_scalar("SELECT VERSION()")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StorageError::from(map_error(e)))?;
        server_version::check_mysql(&version)?;
        let product = if version.contains("MariaDB") {
            "MariaDB"
        } else {
            "MySQL"
        };
        match &self.galera {
            Some(watch) => {
                let status = watch.status();
                if !status.serving {
                    return Err(StorageError::Unavailable(status.refusal()));
                }
                Ok(format!(
                    "{product} {version}, Galera node {} of {} ({})",
                    status.node, status.cluster_size, status.state
                ))
            }
            None => Ok(format!("{product} {version}")),
        }
    }

    async fn close(&self) {
        if let Some(watch) = &self.galera {
            watch.stop();
        }
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A request that opens a new connection (the pool's were closed, the node restarted) to a
    /// server answering garbage is told the database is unavailable, as at start: the driver's
    /// panic is caught in the connection's own task.
    #[tokio::test]
    async fn a_request_whose_new_connection_gets_garbage_is_unavailable() {
        let (port, server) = crate::galera::tests::truncated_handshakes().await;
        let options =
            MySqlConnectOptions::from_str(&format!("mysql://root@127.0.0.1:{port}/mpesa")).unwrap();
        let driver = MySqlDriver {
            pool: MySqlPoolOptions::new()
                .acquire_timeout(Duration::from_secs(5))
                .connect_lazy_with(options),
            galera: None,
        };
        let failures = [
            ("a read", driver.reader().await.err()),
            ("a write", driver.begin().await.err()),
        ];
        for (what, failed) in failures {
            match failed.map(|e| e.error) {
                Some(StorageError::Unavailable(why)) => {
                    assert!(why.contains("the MySQL driver failed"), "{what}: {why}")
                }
                other => panic!("{what}: expected Unavailable, got {other:?}"),
            }
        }
        server.abort();
    }
}
