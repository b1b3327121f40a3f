//! PostgreSQL: several gateway instances may share one database.
//!
//! Transactions run at READ COMMITTED (the default). A decision about a payment is made on the
//! row locked with `SELECT … FOR UPDATE`, so an instance that waits for the lock re-reads the
//! row as the other left it; work rows are claimed with `FOR UPDATE SKIP LOCKED`, so instances
//! never wait for each other's claims. Migrations take sqlx's advisory lock.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::error::DatabaseError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Row};

use crate::db::{Dialect, Driver, SeveralStatements, WriteTx, as_written, impl_conn, standard_sql};
use crate::error::{DbError, DbResult, ServerErrorClass, map_sqlx_error, unique_rule_by_name};
use crate::{Backend, ConnectOptions, Result, StorageError, migrations, server_version};

const DIALECT: Dialect = Dialect {
    for_update: " FOR UPDATE",
    for_update_skip_locked: " FOR UPDATE SKIP LOCKED",
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
    several_statements: SeveralStatements::WritableCtes,
};

impl_conn!(PgConnection, Postgres, &DIALECT, as_written, map_error);

fn map_error(e: sqlx::Error) -> DbError {
    map_sqlx_error(e, classify, |db| {
        unique_rule_by_name(db.constraint().unwrap_or("unknown"))
    })
}

fn classify(e: &dyn DatabaseError) -> ServerErrorClass {
    let Some(pg) = e.try_downcast_ref::<PgDatabaseError>() else {
        return ServerErrorClass::Other;
    };
    match pg.code() {
        // serialization_failure, deadlock_detected, lock_not_available
        "40001" | "40P01" | "55P03" => ServerErrorClass::Transient,
        // admin_shutdown, crash_shutdown, cannot_connect_now
        "57P01" | "57P02" | "57P03" => ServerErrorClass::Unavailable,
        // connection exceptions, insufficient resources (too many connections, disk full)
        code if code.starts_with("08") || code.starts_with("53") => ServerErrorClass::Unavailable,
        _ => ServerErrorClass::Other,
    }
}

pub(crate) struct PostgresDriver {
    pool: PgPool,
}

impl PostgresDriver {
    pub(crate) async fn connect(url: &str, options: &ConnectOptions) -> Result<Self> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|_| StorageError::Unsupported("invalid PostgreSQL URL".into()))?
            .application_name("mpesa-gateway");
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| StorageError::from(map_error(e)))?;
        Ok(PostgresDriver { pool })
    }
}

#[async_trait]
impl Driver for PostgresDriver {
    type Conn = PgConnection;
    type Tx = WriteTx<Postgres>;
    type Reader = PoolConnection<Postgres>;

    const BACKEND: Backend = Backend::Postgres;

    async fn begin(&self) -> DbResult<Self::Tx> {
        WriteTx::begin(&self.pool, "BEGIN", map_error).await
    }

    async fn commit(tx: Self::Tx) -> DbResult<()> {
        tx.commit().await
    }

    async fn rollback(tx: Self::Tx) {
        tx.rollback().await
    }

    async fn reader(&self) -> DbResult<Self::Reader> {
        self.pool.acquire().await.map_err(map_error)
    }

    async fn migrate(&self) -> Result<()> {
        migrations::migrator(migrations::POSTGRES)
            .run(&self.pool)
            .await
            .map_err(|e| migrations::map_migrate_error(e, map_error))
    }

    async fn check_server(&self) -> Result<String> {
        let row = sqlx::query(
            "SELECT current_setting('server_version_num') AS num, current_setting('server_version') AS text",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StorageError::from(map_error(e)))?;
        let (num, text): (String, String) = (
            row.try_get("num")
                .map_err(|e| StorageError::from(map_error(e)))?,
            row.try_get("text")
                .map_err(|e| StorageError::from(map_error(e)))?,
        );
        server_version::check_postgres(&num, &text)?;
        Ok(format!("PostgreSQL {text}"))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
