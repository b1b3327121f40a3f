//! SQLite: the embedded default, for one gateway instance.
//!
//! * WAL journal and `synchronous = FULL`: every commit is fsynced, so what the gateway
//!   acknowledged survives a power cut.
//! * One writer connection (a pool of one) whose write transactions start with
//!   `BEGIN IMMEDIATE`: writers queue in the pool instead of failing with `SQLITE_BUSY`
//!   half-way, and the single writer is the lock that other backends get from `FOR UPDATE`.
//! * A small pool of readers, which WAL lets read while the writer writes.
//! * `busy_timeout` for other processes on the same file (the CLI next to a running server),
//!   foreign keys on, the file created if missing.
//! * `sqlite::memory:` gets one connection for everything (each connection would otherwise
//!   see its own empty database).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool};

use crate::db::{
    Dialect, Driver, SeveralStatements, WriteTx, impl_conn, standard_sql, to_question_marks,
};
use crate::error::{
    DbError, DbResult, ServerErrorClass, map_sqlx_error, unique_rule_from_sqlite_message,
};
use crate::{Backend, ConnectOptions, Result, StorageError, migrations, server_version};

const DIALECT: Dialect = Dialect {
    // No row locks: the one write transaction at a time is the lock.
    for_update: "",
    for_update_skip_locked: "",
    insert_idempotency_claim: standard_sql::INSERT_IDEMPOTENCY_CLAIM,
    skip_taken_dedupe_key: standard_sql::SKIP_TAKEN_DEDUPE_KEY,
    outbox_rows_per_statement: 256,
    insert_admin_user_if_absent: standard_sql::INSERT_ADMIN_USER_IF_ABSENT,
    insert_setting_if_absent: standard_sql::INSERT_SETTING_IF_ABSENT,
    insert_lease_if_absent: standard_sql::INSERT_LEASE_IF_ABSENT,
    insert_rate_limit_if_absent: standard_sql::INSERT_RATE_LIMIT_IF_ABSENT,
    insert_payout_day_if_absent: standard_sql::INSERT_PAYOUT_DAY_IF_ABSENT,
    insert_skipping_taken_keys: " ON CONFLICT DO NOTHING",
    upsert_setting: standard_sql::UPSERT_SETTING,
    upsert_health_probe: standard_sql::UPSERT_HEALTH_PROBE,
    count_sign_in_failure: standard_sql::COUNT_SIGN_IN_FAILURE,
    upsert_telegram_link: standard_sql::UPSERT_TELEGRAM_LINK,
    payment_totals_by_status: standard_sql::PAYMENT_TOTALS_BY_STATUS,
    completed_totals_by_channel: standard_sql::COMPLETED_TOTALS_BY_CHANNEL,
    daily_volume: standard_sql::DAILY_VOLUME,
    update_from_values: true,
    several_statements: SeveralStatements::Joined,
};

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_READERS: u32 = 4;

impl_conn!(
    SqliteConnection,
    Sqlite,
    &DIALECT,
    to_question_marks,
    map_error
);

fn map_error(e: sqlx::Error) -> DbError {
    map_sqlx_error(e, classify, |db| {
        unique_rule_from_sqlite_message(db.message())
    })
}

fn classify(e: &dyn DatabaseError) -> ServerErrorClass {
    // Extended result codes; the primary code is the low byte.
    let code = e.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0) & 0xff;
    match code {
        5 | 6 => ServerErrorClass::Transient, // SQLITE_BUSY, SQLITE_LOCKED
        10 | 13 | 14 => ServerErrorClass::Unavailable, // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN
        _ => ServerErrorClass::Other,
    }
}

pub(crate) struct SqliteDriver {
    writer: SqlitePool,
    readers: SqlitePool,
    /// Stops the background checkpointer when the storage closes.
    checkpointer: Option<tokio::task::JoinHandle<()>>,
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// WAL frames (pages) after which the checkpointer also restarts the WAL: ~64 MiB at 4 KiB pages.
const WAL_RESTART_FRAMES: i64 = 16_384;

/// Copies the WAL into the database file off the commit path. With SQLite's automatic
/// checkpoints the committing transaction does that work (and its fsync) itself every ~1000
/// pages, which shows as latency spikes on callbacks. A PASSIVE checkpoint never blocks the
/// writer or readers.
///
/// But a PASSIVE checkpoint never lets the WAL start over: under a steady stream of writes some
/// reader always holds a snapshot with frames in the WAL, so the file (and its index, mapped in
/// memory) grew without bound (gigabytes after minutes at a few hundred callbacks a second; found
/// by the proof suite's soak). Once the WAL holds more than `restart_after_frames`, a RESTART
/// checkpoint on the writer's connection (so no write of ours is in progress) waits, within the
/// busy timeout, for readers to leave the WAL, after which the next write starts it from the
/// beginning. Writers wait for that moment; readers do not.
async fn checkpoint_forever(writer: SqlitePool, readers: SqlitePool, restart_after_frames: i64) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if readers.is_closed() || writer.is_closed() {
            break;
        }
        checkpoint_once(&writer, &readers, restart_after_frames).await;
    }
}

/// One round of [`checkpoint_forever`]: a PASSIVE checkpoint, and a RESTART when the WAL is long.
async fn checkpoint_once(writer: &SqlitePool, readers: &SqlitePool, restart_after_frames: i64) {
    let frames = match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(readers)
        .await
    {
        Ok((_busy, frames, _checkpointed)) => frames,
        Err(e) => {
            tracing::debug!(error = %e, "WAL checkpoint failed; trying again later");
            return;
        }
    };
    if frames > restart_after_frames
        && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
            .execute(writer)
            .await
    {
        tracing::debug!(error = %e, frames, "WAL restart failed; trying again later");
    }
}

impl SqliteDriver {
    pub(crate) async fn connect(url: &str, options: &ConnectOptions) -> Result<Self> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let base = SqliteConnectOptions::from_str(url)
            .map_err(|_| StorageError::Unsupported("invalid SQLite URL".into()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // The writer's statement journals (a multi-row INSERT or UPDATE inside a batch keeps the
        // pages it changes, to undo just that statement) stay in memory: on disk, each batch's
        // journal outgrew SQLite's 64 KiB and became a temporary file, opened, written, unlinked
        // and closed per commit. They are as large as the pages one statement changes; the
        // readers keep SQLite's default, so a large sort for a page does not grow in memory.
        let writer_options = base.clone().pragma("temp_store", "memory");
        // Checkpoints run in the background (see `checkpoint_forever`), except in memory.
        let writer_options = if in_memory {
            writer_options
        } else {
            writer_options.pragma("wal_autocheckpoint", "0")
        };
        // The writer keeps its connection open for the life of the pool.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(writer_options)
            .await
            .map_err(|e| StorageError::from(map_error(e)))?;
        let readers = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(options.max_connections.clamp(1, MAX_READERS))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(base)
                .await
                .map_err(|e| StorageError::from(map_error(e)))?
        };
        let checkpointer = (!in_memory).then(|| {
            tokio::spawn(checkpoint_forever(
                writer.clone(),
                readers.clone(),
                WAL_RESTART_FRAMES,
            ))
        });
        Ok(SqliteDriver {
            writer,
            readers,
            checkpointer,
        })
    }
}

#[async_trait]
impl Driver for SqliteDriver {
    type Conn = SqliteConnection;
    type Tx = WriteTx<Sqlite>;
    type Reader = PoolConnection<Sqlite>;

    const BACKEND: Backend = Backend::Sqlite;

    async fn begin(&self) -> DbResult<Self::Tx> {
        WriteTx::begin(&self.writer, "BEGIN IMMEDIATE", map_error).await
    }

    async fn commit(tx: Self::Tx) -> DbResult<()> {
        tx.commit().await
    }

    async fn rollback(tx: Self::Tx) {
        tx.rollback().await
    }

    async fn reader(&self) -> DbResult<Self::Reader> {
        self.readers.acquire().await.map_err(map_error)
    }

    async fn migrate(&self) -> Result<()> {
        migrations::migrator(migrations::SQLITE)
            .run(&self.writer)
            .await
            .map_err(|e| migrations::map_migrate_error(e, map_error))
    }

    async fn check_server(&self) -> Result<String> {
        let version: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(&self.readers)
            .await
            .map_err(|e| StorageError::from(map_error(e)))?;
        server_version::check_sqlite(&version)?;
        Ok(format!("SQLite {version}"))
    }

    async fn close(&self) {
        if let Some(task) = &self.checkpointer {
            task.abort();
        }
        self.readers.close().await;
        // A last checkpoint so the file is whole without its WAL.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await;
        self.writer.close().await;
    }
}

#[cfg(test)]
mod wal_tests {
    use super::*;

    /// The writer's statement journals are kept in memory (`temp_store`): on disk, a batch's
    /// multi-row statements outgrew SQLite's 64 KiB in memory and each commit opened, wrote,
    /// unlinked and closed a temporary file. The readers keep the default.
    #[tokio::test]
    async fn the_writer_keeps_its_statement_journals_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let driver = SqliteDriver::connect(&url, &ConnectOptions::default())
            .await
            .unwrap();
        let temp_store = |pool: SqlitePool| async move {
            sqlx::query_scalar::<_, i64>("PRAGMA temp_store")
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        // 2 is MEMORY, 0 the default (a file unless SQLite was built otherwise).
        assert_eq!(temp_store(driver.writer.clone()).await, 2);
        assert_eq!(temp_store(driver.readers.clone()).await, 0);
    }

    /// Regression: with writes that never pause and a reader always at work, the WAL stays
    /// bounded (it grew without bound when only PASSIVE checkpoints ran).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_under_continuous_writes_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let base = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Off)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone().pragma("wal_autocheckpoint", "0"))
            .await
            .unwrap();
        let readers = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(base)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&writer)
            .await
            .unwrap();
        let restart_after = 200;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (readers, stop) = (readers.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
                        .fetch_one(&readers)
                        .await
                        .unwrap();
                }
            })
        };
        let body = "x".repeat(4000);
        // The largest WAL seen in the first and in the second half of the rows.
        let mut largest = [0u64; 2];
        let mut inserted = 0u64;
        while inserted < 8_000 {
            inserted += 1;
            sqlx::query("INSERT INTO t (body) VALUES (?)")
                .bind(&body)
                .execute(&writer)
                .await
                .unwrap();
            let wal = std::fs::metadata(dir.path().join("wal.db-wal"))
                .map(|m| m.len())
                .unwrap_or(0);
            // What the background task does every CHECKPOINT_EVERY, here every 100 rows so that
            // the test does not depend on the machine's speed.
            if inserted.is_multiple_of(100) {
                checkpoint_once(&writer, &readers, restart_after).await;
            }
            let half = usize::from(inserted > 4_000);
            largest[half] = largest[half].max(wal);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.await.unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&writer)
            .await
            .unwrap();
        // Each row takes at least one 4 KiB page: without restarts the WAL holds a frame per row
        // at least and grows all along. With them, the file is reused from its start: it stops
        // growing once it holds what the writer adds while a restart waits for the readers.
        assert_eq!(rows, 8_000);
        // Without restarts the WAL holds every row written (50 MB after 4,000 rows, 100 MB after
        // 8,000 here; 11 MB when a PASSIVE checkpoint every 100 rows sometimes finds no reader);
        // with them, at most 2.6 MB (about 600 frames) was seen.
        let frame = 4096 + 24;
        assert!(
            largest[0].max(largest[1]) < 1_000 * frame,
            "the WAL grew: {} bytes after 4,000 rows, {} after 8,000",
            largest[0],
            largest[1]
        );
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    /// Regression: filtering callbacks by outcome and kind (the orphan pass, the dashboard) used
    /// the (kind, id) index and walked every callback of that kind.
    #[tokio::test]
    async fn callbacks_by_outcome_and_kind_use_their_index() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        for (_, sql) in migrations::SQLITE {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                .execute(&pool)
                .await
                .unwrap();
        }
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "EXPLAIN QUERY PLAN SELECT id FROM callbacks WHERE 1 = 1 AND outcome = ? AND kind = ? \
             ORDER BY id DESC LIMIT ?",
        )
        .bind("unmatched")
        .bind("stk")
        .bind(51)
        .fetch_all(&pool)
        .await
        .unwrap();
        let detail: Vec<&str> = plan.iter().map(|r| r.3.as_str()).collect();
        assert!(
            detail
                .iter()
                .any(|d| d.contains("ix_callbacks_outcome_kind_id")),
            "{detail:?}"
        );
        assert!(
            !detail.iter().any(|d| d.contains("TEMP B-TREE")),
            "no sort: {detail:?}"
        );
    }
}
