//! `connect` itself: URL forms, refusals, and SQLite's durability. The per-backend contract is
//! in `contract.rs`.

mod support;

use mpesa_harness::database::TestDatabase;
use mpesa_storage::{ConnectOptions, StorageError, connect};
use sqlx::Connection;
use support::*;

#[tokio::test]
async fn unknown_schemes_are_unsupported() {
    for url in ["oracle://db/x", "", "mongodb://x", "sqlserver://a"] {
        let err = connect(url, &ConnectOptions::default())
            .await
            .err()
            .expect(url);
        assert!(
            matches!(err, StorageError::Unsupported(_)),
            "{url}: {err:?}"
        );
    }
}

#[tokio::test]
async fn unreachable_servers_are_unavailable_and_never_quote_the_password() {
    // sqlx retries a refused connection until the acquire timeout: try both at once.
    let options = ConnectOptions {
        max_connections: 1,
        acquire_timeout: std::time::Duration::from_secs(2),
    };
    let urls = [
        "postgres://gateway:s3cr3t-pw@127.0.0.1:1/pay",
        "mysql://gateway:s3cr3t-pw@127.0.0.1:1/pay",
    ];
    let (pg, my) = tokio::join!(connect(urls[0], &options), connect(urls[1], &options));
    for (url, result) in urls.iter().zip([pg, my]) {
        let err = result.err().expect(url);
        assert!(
            matches!(err, StorageError::Unavailable(_)),
            "{url}: {err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("s3cr3t"), "{err:?}");
    }
}

#[tokio::test]
async fn sqlite_in_memory_works_on_one_connection() {
    let s = connect("sqlite::memory:", &ConnectOptions::default())
        .await
        .unwrap();
    s.migrate().await.unwrap();
    create(&*s, new_payment(&pay_id(1), T0)).await;
    set(&*s, &pay_id(1), T0 + 1, accepted("ws_CO_1")).await;
    assert_eq!(
        s.get_payment(&pay_id(1))
            .await
            .unwrap()
            .unwrap()
            .checkout_request_id
            .as_deref(),
        Some("ws_CO_1")
    );
    assert_eq!(list_all(&*s).await.len(), 1);
}

#[tokio::test]
async fn sqlite_relative_paths_are_created() {
    // Relative to the working directory (the crate, under `cargo test`): put it in target/.
    let name = format!(
        "mpesa-storage-relative-{}.db",
        uuid::Uuid::now_v7().simple()
    );
    let relative = format!("../../target/{name}");
    let s = connect(&format!("sqlite://{relative}"), &ConnectOptions::default())
        .await
        .unwrap();
    s.migrate().await.unwrap();
    create(&*s, new_payment(&pay_id(1), T0)).await;
    s.close().await;
    let path = std::path::Path::new(&relative);
    assert!(path.exists(), "created at {}", path.display());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{relative}{suffix}"));
    }
}

#[tokio::test]
async fn sqlite_commits_are_durable_and_the_file_is_in_wal_mode() {
    let db = TestDatabase::sqlite().await;
    let s = db.storage();
    create(&*s, new_payment(&pay_id(1), T0)).await;
    set(&*s, &pay_id(1), T0 + 1, accepted("ws_CO_1")).await;
    s.close().await;
    assert!(s.get_payment(&pay_id(1)).await.is_err(), "closed");

    // A fresh connection, not through storage's pools, sees the committed rows.
    let mut raw = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM payments WHERE id = 'pay_00000001'")
            .fetch_one(&mut raw)
            .await
            .unwrap();
    assert_eq!(status, "pending");
    raw.close().await.unwrap();

    let reopened = db.connect_another().await;
    assert_eq!(
        reopened
            .get_payment(&pay_id(1))
            .await
            .unwrap()
            .unwrap()
            .status,
        mpesa_domain::PaymentStatus::Pending
    );
}

#[tokio::test]
async fn mysql_reruns_a_migration_that_a_crash_left_marked_failed() {
    // MySQL commits DDL as it goes, so a crash mid-migration leaves `success = FALSE` behind,
    // which sqlx refuses to go past. Our MySQL migrations are re-runnable: storage re-runs it.
    let db = TestDatabase::mysql().await;
    let mut raw = sqlx::MySqlConnection::connect(db.url()).await.unwrap();
    sqlx::raw_sql("UPDATE _sqlx_migrations SET success = FALSE WHERE version = 1")
        .execute(&mut raw)
        .await
        .unwrap();
    sqlx::raw_sql("DROP TABLE leases")
        .execute(&mut raw)
        .await
        .unwrap(); // the part the crash did not reach
    db.storage().migrate().await.unwrap();
    let (success,): (bool,) =
        sqlx::query_as("SELECT success FROM _sqlx_migrations WHERE version = 1")
            .fetch_one(&mut raw)
            .await
            .unwrap();
    assert!(success);
    raw.close().await.unwrap();
    assert!(
        db.storage()
            .acquire_lease("l", "me", T0, T0 + 1)
            .await
            .unwrap(),
        "the missing table is back"
    );
    create(&*db.storage(), new_payment(&pay_id(1), T0)).await;
}

#[tokio::test]
async fn mysql_reruns_the_index_migration_whether_or_not_its_index_was_made() {
    // 0003 adds an index, which MySQL 8 cannot do with IF NOT EXISTS: the migration checks
    // information_schema itself, so a rerun works with the index present and with it missing.
    let db = TestDatabase::mysql().await;
    let mut raw = sqlx::MySqlConnection::connect(db.url()).await.unwrap();
    async fn index_count(raw: &mut sqlx::MySqlConnection) -> Result<i64, sqlx::Error> {
        let sql = "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() \
                   AND table_name = 'callbacks' AND index_name = 'ix_callbacks_outcome_kind_id'";
        sqlx::query_scalar::<_, i64>(sql).fetch_one(raw).await
    }
    for drop_it in [false, true] {
        sqlx::raw_sql("UPDATE _sqlx_migrations SET success = FALSE WHERE version = 3")
            .execute(&mut raw)
            .await
            .unwrap();
        if drop_it {
            sqlx::raw_sql("ALTER TABLE callbacks DROP INDEX ix_callbacks_outcome_kind_id")
                .execute(&mut raw)
                .await
                .unwrap();
            assert_eq!(index_count(&mut raw).await.unwrap(), 0);
        }
        db.storage().migrate().await.unwrap();
        let (success,): (bool,) =
            sqlx::query_as("SELECT success FROM _sqlx_migrations WHERE version = 3")
                .fetch_one(&mut raw)
                .await
                .unwrap();
        assert!(success, "rerun with the index dropped: {drop_it}");
        assert!(index_count(&mut raw).await.unwrap() > 0);
    }
    raw.close().await.unwrap();
}
