//! A MariaDB Galera cluster of its own, on loopback, for one run: every node a `mariadbd` with
//! its own datadir under a temporary directory and its own ports (SQL, group communication,
//! IST, rsync SST), none of them the system server's 3306. The first node bootstraps the cluster
//! (`--wsrep-new-cluster`), the others join it by rsync state transfer. Nodes can be killed with
//! SIGKILL and started again (they rejoin), or frozen with SIGSTOP (to the others, a node cut
//! off by the network) and thawed. Dropping the cluster kills every node.
//!
//! Needs Debian's `mariadb-server` (10.6 or later), `galera-4` and `rsync`. Other paths: see
//! `crate::env` (`MPESA_GALERA_MARIADBD`, `MPESA_GALERA_INSTALL_DB`, `MPESA_GALERA_PROVIDER`).

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::Connection as _;

use crate::process::free_port;

/// Group-communication timeouts shorter than Galera's defaults (suspect 5 s, inactive 15 s), so
/// that a frozen node is dropped from the cluster in seconds, yet long enough that a node slowed
/// by a busy machine is not.
const PROVIDER_TIMEOUTS: &str = "evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT3S;\
     evs.inactive_timeout=PT6S;evs.install_timeout=PT5S;evs.inactive_check_period=PT0.5S";

fn mariadbd() -> PathBuf {
    env_path(
        crate::env::GALERA_MARIADBD,
        &["/usr/sbin/mariadbd", "/usr/bin/mariadbd"],
    )
}

fn install_db() -> PathBuf {
    env_path(
        crate::env::GALERA_INSTALL_DB,
        &["/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"],
    )
}

fn provider() -> PathBuf {
    env_path(
        crate::env::GALERA_PROVIDER,
        &[
            "/usr/lib/galera/libgalera_smm.so",
            "/usr/lib/libgalera_smm.so",
        ],
    )
}

fn env_path(var: &str, candidates: &[&str]) -> PathBuf {
    if let Ok(v) = std::env::var(var) {
        return PathBuf::from(v);
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(candidates[0]))
}

/// Whether this machine can run a cluster (the server, the provider and rsync are installed).
pub fn available() -> anyhow::Result<()> {
    for (what, path) in [
        ("mariadbd (mariadb-server)", mariadbd()),
        ("mariadb-install-db (mariadb-server)", install_db()),
        ("the Galera provider (galera-4)", provider()),
        ("rsync", PathBuf::from("/usr/bin/rsync")),
        (
            "wsrep_sst_rsync (mariadb-server)",
            PathBuf::from("/usr/bin/wsrep_sst_rsync"),
        ),
    ] {
        if !path.exists() {
            bail!("{what} not found at {}", path.display());
        }
    }
    Ok(())
}

/// One node: its ports, files and process.
pub struct GaleraNode {
    pub index: usize,
    /// SQL port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl GaleraNode {
    fn config(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    /// The last `lines` lines of its error log that say something (errors, warnings).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("Warning") || l.contains("Aborting"))
            .collect();
        kept[kept.len().saturating_sub(lines)..].join("\n")
    }

    /// `mysql://root@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{database}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct GaleraCluster {
    pub nodes: Vec<GaleraNode>,
    dir: PathBuf,
}

impl GaleraCluster {
    /// Makes and starts a cluster of `size` nodes under `dir` (created), each Synced when this
    /// returns. A node that dies while the cluster forms (another process took one of the ports
    /// picked for it between the pick and the bind, on a busy machine) makes it start over once,
    /// on other ports.
    pub async fn start(size: usize, dir: &Path) -> anyhow::Result<GaleraCluster> {
        match Self::start_once(size, dir).await {
            Ok(cluster) => Ok(cluster),
            Err(first) => {
                eprintln!("Galera cluster did not form ({first:#}); starting over on other ports");
                let _ = std::fs::remove_dir_all(dir);
                Self::start_once(size, dir)
                    .await
                    .map_err(|again| again.context(format!("and before that: {first:#}")))
            }
        }
    }

    async fn start_once(size: usize, dir: &Path) -> anyhow::Result<GaleraCluster> {
        available()?;
        if size == 0 {
            bail!("a cluster needs a node");
        }
        std::fs::create_dir_all(dir)?;
        // Short: Galera refuses peers whose group name is longer than 32 bytes.
        let name = format!("mpesa-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let mut ports = Vec::new();
        for _ in 0..size {
            // SQL, group communication, IST, SST.
            ports.push([free_port()?, free_port()?, free_port()?, free_port()?]);
        }
        let gcomm: Vec<String> = ports
            .iter()
            .map(|p| format!("127.0.0.1:{}", p[1]))
            .collect();
        let run_as = run_as_user();
        let mut nodes = Vec::new();
        for (i, [sql, group, ist, sst]) in ports.into_iter().enumerate() {
            let node_dir = dir.join(format!("node{}", i + 1));
            std::fs::create_dir_all(node_dir.join("data"))?;
            let user = run_as
                .as_deref()
                .map(|u| format!("user = {u}\n"))
                .unwrap_or_default();
            let config = format!(
                "[mysqld]\n{user}\
                 datadir = {data}\n\
                 socket = {dir}/mysqld.sock\n\
                 pid-file = {dir}/mysqld.pid\n\
                 log-error = {dir}/error.log\n\
                 port = {sql}\n\
                 bind-address = 127.0.0.1\n\
                 skip-name-resolve\n\
                 character-set-server = utf8mb4\n\
                 performance_schema = OFF\n\
                 max_connections = 300\n\
                 innodb_buffer_pool_size = 64M\n\
                 innodb_log_file_size = 32M\n\
                 # Galera's required settings (docs/galera.md).\n\
                 binlog_format = ROW\n\
                 default_storage_engine = InnoDB\n\
                 innodb_autoinc_lock_mode = 2\n\
                 wsrep_on = ON\n\
                 wsrep_provider = {provider}\n\
                 wsrep_cluster_name = {name}\n\
                 wsrep_cluster_address = gcomm://{gcomm}\n\
                 wsrep_node_address = 127.0.0.1:{group}\n\
                 wsrep_node_name = node{n}\n\
                 wsrep_sst_method = rsync\n\
                 wsrep_sst_receive_address = 127.0.0.1:{sst}\n\
                 wsrep_provider_options = \"gmcast.listen_addr=tcp://127.0.0.1:{group};\
                 ist.recv_addr=127.0.0.1:{ist};gcache.size=32M;{PROVIDER_TIMEOUTS}\"\n",
                data = node_dir.join("data").display(),
                dir = node_dir.display(),
                provider = provider().display(),
                gcomm = gcomm.join(","),
                n = i + 1,
            );
            std::fs::write(node_dir.join("my.cnf"), config)?;
            nodes.push(GaleraNode {
                index: i,
                port: sql,
                dir: node_dir,
                child: None,
            });
        }
        if let Some(user) = &run_as {
            // mariadbd drops to this user; the rsync daemon of a state transfer runs as it too.
            let status = Command::new("chown")
                .args(["-R", &format!("{user}:{user}")])
                .arg(dir)
                .status()?;
            if !status.success() {
                bail!("chown of {} to {user} failed", dir.display());
            }
        }
        let mut cluster = GaleraCluster {
            nodes,
            dir: dir.to_owned(),
        };
        // Only the bootstrap node needs a system database: the others receive one by SST.
        let node = &cluster.nodes[0];
        let out = Command::new(install_db())
            .arg(format!("--defaults-file={}", node.config().display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .stdin(Stdio::null())
            .output()
            .context("running mariadb-install-db")?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cluster.spawn(0, true)?;
        cluster.wait_synced(0, Duration::from_secs(60)).await?;
        for i in 1..size {
            cluster.spawn(i, false)?;
        }
        for i in 1..size {
            cluster.wait_synced(i, Duration::from_secs(120)).await?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize, bootstrap: bool) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            bail!("node {} is already running", i + 1);
        }
        let mut command = Command::new(mariadbd());
        command
            .arg(format!("--defaults-file={}", node.config().display()))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: the state-transfer scripts it starts die with it.
            .process_group(0);
        if bootstrap {
            command.arg("--wsrep-new-cluster");
        }
        node.child = Some(command.spawn().context("starting mariadbd")?);
        Ok(())
    }

    /// `mysql://root@127.0.0.1:PORT/mysql` of node `i`.
    pub fn admin_url(&self, i: usize) -> String {
        self.nodes[i].url("mysql")
    }

    /// A new database (replicated to every node), its name `{prefix}_{uuid}`.
    pub async fn create_database(&self, prefix: &str) -> anyhow::Result<String> {
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::MySqlConnection::connect(&self.admin_url(0)).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4"
        )))
        .execute(&mut conn)
        .await?;
        // Certification is synchronous, applying is not: a node may not have created the
        // database yet when a test connects to it ("Unknown database"). A read with
        // wsrep_sync_wait waits until the node has applied what the cluster committed before it.
        for i in 0..self.nodes.len() {
            let mut node = sqlx::MySqlConnection::connect(&self.admin_url(i)).await?;
            sqlx::raw_sql("SET SESSION wsrep_sync_wait = 1")
                .execute(&mut node)
                .await?;
            let (found,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            )
            .bind(&name)
            .fetch_one(&mut node)
            .await?;
            anyhow::ensure!(found == 1, "node {} does not show database {name}", i + 1);
            let _ = node.close().await;
        }
        Ok(name)
    }

    /// `wsrep_local_state_comment` of node `i` (`Synced`, `Donor/Desynced`, `Joining`…), within
    /// two seconds.
    pub async fn state(&self, i: usize) -> anyhow::Result<String> {
        read_status(self.admin_url(i), "wsrep_local_state_comment").await
    }

    /// `wsrep_cluster_size` as node `i` sees it.
    pub async fn cluster_size(&self, i: usize) -> anyhow::Result<i64> {
        Ok(read_status(self.admin_url(i), "wsrep_cluster_size")
            .await?
            .parse()?)
    }

    /// Waits until node `i` says `Synced`; fails at once if its process exited.
    pub async fn wait_synced(&mut self, i: usize, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(state) = self.state(i).await
                && state == "Synced"
            {
                return Ok(());
            }
            if let Some(child) = self.nodes[i].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.nodes[i].child = None;
                bail!(
                    "Galera node {} exited before it was Synced: {status}; the end of its log ({}):\n{}",
                    i + 1,
                    self.nodes[i].log().display(),
                    self.nodes[i].log_tail(15)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "Galera node {} not Synced within {within:?} (log: {})",
                    i + 1,
                    self.nodes[i].log().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL to node `i` (and its state-transfer helpers); waits until it is gone.
    pub fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            signal_group(child.id(), "KILL");
            child.wait()?;
        }
        Ok(())
    }

    /// Starts node `i` again after [`kill9`](Self::kill9): it rejoins the running cluster
    /// (by state transfer). Does not wait for it to be Synced.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i, false)
    }

    /// SIGSTOP: the node freezes; to the others it is a node cut off by the network.
    pub fn freeze(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "STOP")
    }

    /// SIGCONT after [`freeze`](Self::freeze).
    pub fn thaw(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "CONT")
    }

    fn signal(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let pid = self.nodes[i]
            .pid()
            .with_context(|| format!("node {} is not running", i + 1))?;
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for GaleraCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // A frozen node must be thawed to die of anything but SIGKILL; SIGKILL is enough.
                signal_group(child.id(), "KILL");
                let _ = child.wait();
            }
        }
    }
}

/// Sends `signal` to the process group that `pid` leads (its own, see `spawn`).
fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

/// When run as root, mariadbd must be told to drop to an unprivileged user (it refuses to run as
/// root), and rsync's state-transfer daemon, started as root, would write as `nobody`: both run
/// as `mysql` (Debian's server package makes it).
fn run_as_user() -> Option<String> {
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    root.then(|| "mysql".to_owned())
}

/// A connection to a node for reading what the gateways stored: every read waits until the
/// node has applied everything committed anywhere in the cluster before it (`wsrep_sync_wait`).
pub async fn causal_db(url: &str) -> anyhow::Result<crate::database::Db> {
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(2)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                sqlx::raw_sql("SET SESSION wsrep_sync_wait = 1")
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(crate::database::Db::MySql(pool))
}

/// One `SHOW STATUS` variable of the server at `url`, on a connection of its own, within two
/// seconds.
///
/// A node that is starting or joining can answer the connection with a packet that is not a
/// handshake, and sqlx's MySQL driver panics decoding it (an index out of bounds in
/// `Handshake::decode`; CI met it once while a cluster formed). The read runs in a task of its
/// own so that such a panic means "not ready yet", as a refused connection does, instead of
/// failing the suite that is waiting.
async fn read_status(url: String, variable: &'static str) -> anyhow::Result<String> {
    let mut read = tokio::spawn(async move {
        let mut conn = sqlx::MySqlConnection::connect(&url).await?;
        // Not a bound parameter: MariaDB cannot prepare `SHOW STATUS LIKE ?`.
        let row: (String, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SHOW STATUS LIKE '{variable}'"
        )))
        .fetch_one(&mut conn)
        .await?;
        let _ = conn.close().await;
        Ok::<_, anyhow::Error>(row.1)
    });
    match tokio::time::timeout(Duration::from_secs(2), &mut read).await {
        Err(_) => {
            read.abort();
            bail!("no answer within 2 s")
        }
        Ok(Err(joined)) => bail!("the MySQL driver failed reading {variable}: {joined}"),
        Ok(Ok(answer)) => answer,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    /// A server that answers with a truncated handshake (protocol 10, a server version, then
    /// nothing) makes the driver panic; reading a status from it is an error, not a panic.
    #[tokio::test]
    async fn a_truncated_handshake_is_an_error_not_a_panic() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let payload = b"\x0a5.5\x00";
            let mut packet = vec![payload.len() as u8, 0, 0, 0];
            packet.extend_from_slice(payload);
            socket.write_all(&packet).await.unwrap();
            // Held open until the client has read it and given up.
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut [0u8; 64]).await;
        });
        let answer = super::read_status(
            format!("mysql://root@127.0.0.1:{port}/mysql"),
            "wsrep_local_state_comment",
        )
        .await;
        let error = answer.expect_err("no status from a server that sent no handshake");
        assert!(
            error.to_string().contains("the MySQL driver failed"),
            "{error:#}"
        );
        server.abort();
    }

    /// The read itself, on the local MariaDB server (not a Galera node: `Uptime` is there too).
    #[tokio::test]
    async fn reads_a_status_variable() {
        let uptime = super::read_status(crate::env::mysql_url(), "Uptime")
            .await
            .expect("the local MariaDB server answers");
        assert!(uptime.parse::<u64>().is_ok(), "Uptime {uptime:?}");
    }
}
