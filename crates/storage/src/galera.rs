//! MariaDB Galera: what the MySQL backend does differently when its server is a node of a
//! Galera cluster (`wsrep_on`), see `docs/galera.md`.
//!
//! * **Checked at start**: the settings Galera needs (`binlog_format=ROW`,
//!   `innodb_autoinc_lock_mode=2`, InnoDB as the default engine, DDL in total order `TOI`) and
//!   the node's state: a node that is not `Synced` in a `Primary` component is refused.
//! * **Watched while running**: a task asks the node for its state every half second; while it
//!   is not `Synced` (joining, donating a state transfer, cut off from the others, frozen) every
//!   transaction and read is refused at once with `Unavailable`, and `/health` says why.
//! * **Causal reads**: sessions run with `wsrep_sync_wait = 1`, so a read (and a transaction's
//!   `BEGIN`) first waits until this node has applied everything committed anywhere in the
//!   cluster before it. `SELECT … FOR UPDATE` locks only on the node it runs on; two nodes that
//!   write the same row concurrently are told apart at commit by certification (one gets
//!   `ER_LOCK_DEADLOCK` and its transaction is run again, like a deadlock on one server).
//! * **Migrations** take a cluster-wide lock (a row in `_mpesa_migration_lock`, which
//!   certification makes exclusive): `GET_LOCK` is local to a node.
//! * **Primary keys** on every table are checked after migrating (Galera certifies rows by key).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{Connection as _, MySqlConnection, Row as _};

use crate::error::{DbError, DbResult};
use crate::{Millis, Result, StorageError};

/// What a Galera node says of itself, as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// `wsrep_node_name`.
    pub node: String,
    /// `wsrep_local_state_comment`: `Synced`, `Donor/Desynced`, `Joining`, `Joined`…
    pub state: String,
    /// `wsrep_cluster_status`: `Primary`, `non-Primary` or `Disconnected`.
    pub cluster_status: String,
    /// `wsrep_cluster_size`.
    pub cluster_size: u32,
    /// Whether this gateway serves from the node now (`Synced`, `Primary`, `wsrep_ready`).
    pub serving: bool,
    /// When it was last asked (Unix ms).
    pub checked_at: Millis,
    /// Why the node could not be asked, when it could not.
    pub error: Option<String>,
}

impl ClusterStatus {
    fn unreachable(node: &str, error: String) -> Self {
        ClusterStatus {
            node: node.to_owned(),
            state: "unknown".into(),
            cluster_status: "unknown".into(),
            cluster_size: 0,
            serving: false,
            checked_at: now_ms(),
            error: Some(error),
        }
    }

    /// Why this node is not served from (for errors and logs).
    pub fn refusal(&self) -> String {
        match &self.error {
            Some(e) => format!(
                "the Galera node {} does not answer ({e}); refusing to serve from it",
                self.node
            ),
            None => format!(
                "the Galera node {} is {} in a {} component, not Synced in a Primary one; refusing to serve from it",
                self.node, self.state, self.cluster_status
            ),
        }
    }
}

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The settings a gateway instance on this node needs; `Ok(None)` when the server is not a
/// Galera node at all.
pub(crate) async fn check_settings(conn: &mut MySqlConnection) -> Result<Option<ClusterStatus>> {
    let vars = variables(
        conn,
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('wsrep_on', 'wsrep_provider', \
         'binlog_format', 'innodb_autoinc_lock_mode', 'default_storage_engine', \
         'wsrep_osu_method', 'wsrep_node_name')",
    )
    .await?;
    let get = |name: &str| vars.get(name).map(String::as_str).unwrap_or("");
    let on = get("wsrep_on").eq_ignore_ascii_case("ON")
        && !get("wsrep_provider").is_empty()
        && !get("wsrep_provider").eq_ignore_ascii_case("none");
    if !on {
        return Ok(None);
    }
    let mut wrong = Vec::new();
    for (name, wanted) in [
        ("binlog_format", "ROW"),
        ("innodb_autoinc_lock_mode", "2"),
        ("default_storage_engine", "InnoDB"),
        ("wsrep_osu_method", "TOI"),
    ] {
        if !get(name).eq_ignore_ascii_case(wanted) {
            wrong.push(format!("{name}={wanted} (it is {:?})", get(name)));
        }
    }
    if !wrong.is_empty() {
        return Err(StorageError::Unsupported(format!(
            "this Galera node needs {} (see docs/galera.md)",
            wrong.join(", ")
        )));
    }
    let status = node_status(conn, get("wsrep_node_name")).await?;
    if !status.serving {
        return Err(StorageError::Unavailable(status.refusal()));
    }
    Ok(Some(status))
}

/// Asks the node for its state.
async fn node_status(conn: &mut MySqlConnection, node: &str) -> Result<ClusterStatus> {
    let vars = variables(
        conn,
        "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment', \
         'wsrep_cluster_status', 'wsrep_cluster_size', 'wsrep_ready')",
    )
    .await?;
    let get = |name: &str| vars.get(name).cloned().unwrap_or_default();
    let state = get("wsrep_local_state_comment");
    let cluster_status = get("wsrep_cluster_status");
    let serving = state == "Synced"
        && cluster_status == "Primary"
        && get("wsrep_ready").eq_ignore_ascii_case("ON");
    Ok(ClusterStatus {
        node: node.to_owned(),
        state,
        cluster_status,
        cluster_size: get("wsrep_cluster_size").parse().unwrap_or(0),
        serving,
        checked_at: now_ms(),
        error: None,
    })
}

async fn variables(
    conn: &mut MySqlConnection,
    sql: &'static str,
) -> Result<std::collections::HashMap<String, String>> {
    let rows = sqlx::raw_sql(sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| StorageError::Unavailable(format!("cannot read the server's state: {e}")))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some((
                r.try_get::<String, _>(0).ok()?.to_ascii_lowercase(),
                r.try_get::<String, _>(1).ok()?,
            ))
        })
        .collect())
}

/// How often the node is asked for its state, and how long an answer may take.
const WATCH_EVERY: Duration = Duration::from_millis(500);
const WATCH_TIMEOUT: Duration = Duration::from_secs(2);

/// The node's state as last seen, kept fresh by a task of its own connection.
pub(crate) struct GaleraWatch {
    status: Arc<Mutex<ClusterStatus>>,
    task: tokio::task::JoinHandle<()>,
}

impl GaleraWatch {
    pub(crate) fn start(options: MySqlConnectOptions, first: ClusterStatus) -> Self {
        let status = Arc::new(Mutex::new(first));
        let task = tokio::spawn(watch(options, status.clone()));
        GaleraWatch { status, task }
    }

    pub(crate) fn status(&self) -> ClusterStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `Unavailable` at once while the node is not one to serve from.
    pub(crate) fn check(&self) -> DbResult<()> {
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if status.serving {
            Ok(())
        } else {
            Err(DbError::from(StorageError::Unavailable(status.refusal())))
        }
    }

    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for GaleraWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch(options: MySqlConnectOptions, status: Arc<Mutex<ClusterStatus>>) {
    let node = status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .node
        .clone();
    let mut conn: Option<MySqlConnection> = None;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let (kept, seen) = poll(&options, conn.take(), &node).await;
        conn = kept;
        let mut current = status.lock().unwrap_or_else(|e| e.into_inner());
        if current.serving != seen.serving {
            if seen.serving {
                tracing::info!(node = %seen.node, "the Galera node is Synced again; serving from it");
            } else {
                tracing::warn!(reason = %seen.refusal(), "Galera node not served from");
            }
        }
        *current = seen;
    }
}

/// One look at the node, on `conn` (opened if `None`); the connection to keep for the next.
///
/// In a task of its own: a node that is starting or joining can answer with a packet that is
/// not a handshake, and sqlx's MySQL driver panics decoding it. A panic here would end the
/// watch and leave the node's last state standing for ever (a node seen down never served from
/// again, whatever it did next); it means "unreachable" instead, like a refused connection.
async fn poll(
    options: &MySqlConnectOptions,
    conn: Option<MySqlConnection>,
    node: &str,
) -> (Option<MySqlConnection>, ClusterStatus) {
    let (options, name) = (options.clone(), node.to_owned());
    let mut asked = tokio::spawn(async move {
        let mut conn = match conn {
            Some(conn) => conn,
            None => MySqlConnection::connect_with(&options)
                .await
                .map_err(|e| StorageError::Unavailable(e.to_string()))?,
        };
        let status = node_status(&mut conn, &name).await?;
        Ok::<_, StorageError>((conn, status))
    });
    match tokio::time::timeout(WATCH_TIMEOUT, &mut asked).await {
        Ok(Ok(Ok((conn, status)))) => (Some(conn), status),
        Ok(Ok(Err(e))) => (None, ClusterStatus::unreachable(node, e.to_string())),
        Ok(Err(failed)) => (
            None,
            ClusterStatus::unreachable(
                node,
                format!("the MySQL driver failed on the node's answer ({failed})"),
            ),
        ),
        Err(_) => {
            // A frozen node keeps the connection open and never answers: start over.
            asked.abort();
            (
                None,
                ClusterStatus::unreachable(node, format!("no answer within {WATCH_TIMEOUT:?}")),
            )
        }
    }
}

/// The cluster-wide lock that migrations run under: a row whose concurrent insertion from two
/// nodes fails certification for one of them. Expires after two minutes (a crashed migrator).
const LOCK_TABLE: &str = "CREATE TABLE IF NOT EXISTS _mpesa_migration_lock (\
    name VARCHAR(64) NOT NULL, owner VARCHAR(64) NOT NULL, expires_at BIGINT NOT NULL, \
    PRIMARY KEY (name)) ENGINE=InnoDB";
const LOCK_FOR_MS: Millis = 120_000;

pub(crate) async fn lock_migrations(conn: &mut MySqlConnection, owner: &str) -> Result<()> {
    let to_storage = |e: sqlx::Error| StorageError::Unavailable(format!("migration lock: {e}"));
    sqlx::raw_sql(LOCK_TABLE)
        .execute(&mut *conn)
        .await
        .map_err(to_storage)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = now_ms();
        // `owner` is assigned first, so the second assignment sees whether we hold it now.
        let taken = sqlx::query(
            "INSERT INTO _mpesa_migration_lock (name, owner, expires_at) VALUES ('migrations', ?, ?) \
             ON DUPLICATE KEY UPDATE owner = IF(expires_at < ?, VALUES(owner), owner), \
             expires_at = IF(owner = VALUES(owner), VALUES(expires_at), expires_at)",
        )
        .bind(owner)
        .bind(now + LOCK_FOR_MS)
        .bind(now)
        .execute(&mut *conn)
        .await;
        // A certification conflict means another node took it in the same moment.
        if taken.is_ok() {
            let holder: Option<String> = sqlx::query_scalar(
                "SELECT owner FROM _mpesa_migration_lock WHERE name = 'migrations'",
            )
            .fetch_optional(&mut *conn)
            .await
            .map_err(to_storage)?;
            if holder.as_deref() == Some(owner) {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(StorageError::Unavailable(
                "another instance has been migrating the cluster for a minute".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn unlock_migrations(conn: &mut MySqlConnection, owner: &str) {
    let released =
        sqlx::query("DELETE FROM _mpesa_migration_lock WHERE name = 'migrations' AND owner = ?")
            .bind(owner)
            .execute(&mut *conn)
            .await;
    if let Err(e) = released {
        tracing::warn!(error = %e, "could not release the cluster's migration lock; it expires by itself");
    }
}

/// Galera certifies rows by their primary key: a table without one cannot be replicated safely.
pub(crate) async fn check_primary_keys(conn: &mut MySqlConnection) -> Result<()> {
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(t.table_name AS CHAR) FROM information_schema.tables t \
         WHERE t.table_schema = DATABASE() AND t.table_type = 'BASE TABLE' AND NOT EXISTS (\
           SELECT 1 FROM information_schema.table_constraints c \
           WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name \
             AND c.constraint_type = 'PRIMARY KEY') ORDER BY t.table_name",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| StorageError::Database(e.to_string()))?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StorageError::Unsupported(format!(
            "tables without a primary key cannot be replicated by Galera: {}",
            missing.join(", ")
        )))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! A server that answers every connection with a truncated handshake (protocol 10, a
    //! version, nothing else), as a starting node once did in CI: sqlx's MySQL driver panics
    //! decoding it.

    use std::str::FromStr as _;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    pub(crate) async fn truncated_handshakes() -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let payload = b"\x0a5.5\x00";
                    let mut packet = vec![payload.len() as u8, 0, 0, 0];
                    packet.extend_from_slice(payload);
                    let _ = socket.write_all(&packet).await;
                    let _ = socket.read(&mut [0u8; 64]).await;
                });
            }
        });
        (port, server)
    }

    #[tokio::test]
    async fn a_server_that_answers_garbage_is_unavailable_not_a_crash() {
        let (port, server) = truncated_handshakes().await;
        let connected = crate::connect(
            &format!("mysql://root@127.0.0.1:{port}/mpesa"),
            &crate::ConnectOptions::default(),
        )
        .await;
        match connected {
            Err(StorageError::Unavailable(why)) => {
                assert!(why.contains("the MySQL driver failed"), "{why}")
            }
            Err(other) => panic!("expected Unavailable, got {other:?}"),
            Ok(_) => panic!("connected to a server that sent no handshake"),
        }
        server.abort();
    }

    /// The watch goes on after the driver panics: the node is unreachable, and asked again.
    #[tokio::test]
    async fn the_watch_survives_a_node_that_answers_garbage() {
        let (port, server) = truncated_handshakes().await;
        let options =
            MySqlConnectOptions::from_str(&format!("mysql://root@127.0.0.1:{port}/mysql")).unwrap();
        let serving = ClusterStatus {
            node: "node1".into(),
            state: "Synced".into(),
            cluster_status: "Primary".into(),
            cluster_size: 3,
            serving: true,
            checked_at: 0,
            error: None,
        };
        let watch = GaleraWatch::start(options, serving);
        // Two looks after the first: each one that panicked and was caught stamps a new time.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while seen.len() < 2 {
            assert!(
                Instant::now() < deadline,
                "the watch stopped looking: {:?} (task finished: {})",
                watch.status(),
                watch.task.is_finished()
            );
            let status = watch.status();
            if !status.serving && !seen.contains(&status.checked_at) {
                let why = status.error.clone().unwrap_or_default();
                assert!(why.contains("the MySQL driver failed"), "{why}");
                seen.push(status.checked_at);
            }
            tokio::time::sleep(WATCH_EVERY / 5).await;
        }
        assert!(watch.check().is_err(), "not served from while unreachable");
        server.abort();
    }
}
