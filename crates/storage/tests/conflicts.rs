//! A callback batch that the database aborts for a conflict is stored raw (`received`),
//! acknowledged, and applied afterwards, once: on PostgreSQL and MySQL/MariaDB, where other
//! instances' transactions can deadlock with a batch (on Galera, certification failures play
//! that part; see `galera.rs`). SQLite has one writer and no such conflicts.
//!
//! The conflict is made on purpose: a transaction of the test's own holds the second payment
//! of the batch, waits until the batch holds the first and waits for the second, then asks for
//! the first. The database breaks the cycle by aborting the batch: PostgreSQL because the
//! batch's deadlock check runs first (the test's session waits 10 s before checking), InnoDB
//! because it aborts the transaction that changed fewer rows (the test's has inserted 50).

mod support;

use std::time::Duration;

use mpesa_domain::PaymentStatus;
use mpesa_harness::database::TestDatabase;
use mpesa_storage::*;
use sqlx::Connection as _;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conflicting_batch_is_stored_raw_then_applied_once() {
    conflicting_batch_is_stored_raw_then_applied_once(TestDatabase::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_conflicting_batch_is_stored_raw_then_applied_once() {
    conflicting_batch_is_stored_raw_then_applied_once(TestDatabase::mysql().await).await;
}

/// The test's side of the deadlock: holds payment `ws_CO_B`, then (once the batch waits for it)
/// asks for `ws_CO_A`, which the batch holds.
enum Holder {
    Postgres(sqlx::PgConnection),
    MySql(sqlx::MySqlConnection),
}

impl Holder {
    async fn hold_second(db: &TestDatabase) -> Holder {
        match db.backend() {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
                for sql in [
                    "SET deadlock_timeout = '10s'",
                    "BEGIN",
                    "SELECT id FROM payments WHERE checkout_request_id = 'ws_CO_B' FOR UPDATE",
                ] {
                    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
                }
                Holder::Postgres(c)
            }
            Backend::MySql => {
                let mut c = sqlx::MySqlConnection::connect(db.url()).await.unwrap();
                for sql in [
                    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                    "BEGIN",
                    "SELECT id FROM payments WHERE checkout_request_id = 'ws_CO_B' FOR UPDATE",
                ] {
                    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
                }
                // Heavier than the batch, so that InnoDB picks the batch to abort.
                for n in 0..50 {
                    sqlx::query(
                        "INSERT INTO settings (name, value, updated_at) VALUES (?, 'x', 0)",
                    )
                    .bind(format!("weight_{n}"))
                    .execute(&mut c)
                    .await
                    .unwrap();
                }
                Holder::MySql(c)
            }
            Backend::Sqlite => unreachable!("SQLite has one writer"),
        }
    }

    /// Whether another session of this database is waiting for a row lock (asked on a
    /// connection of its own: InnoDB does not list other transactions to one inside its own).
    async fn someone_waits(&self, db: &TestDatabase) -> bool {
        match self {
            Holder::Postgres(_) => {
                let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
                )
                .fetch_one(&mut c)
                .await
                .unwrap();
                n > 0
            }
            Holder::MySql(_) => {
                let mut c = sqlx::MySqlConnection::connect(db.url()).await.unwrap();
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.innodb_trx t \
                     JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id \
                     WHERE t.trx_state = 'LOCK WAIT' AND p.db = DATABASE()",
                )
                .fetch_one(&mut c)
                .await
                .unwrap();
                n > 0
            }
        }
    }

    /// Asks for the first payment (closing the cycle), then ends its transaction.
    async fn take_first_and_finish(self) {
        let sql = "SELECT id FROM payments WHERE checkout_request_id = 'ws_CO_A' FOR UPDATE";
        match self {
            Holder::Postgres(mut c) => {
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
                sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
            }
            Holder::MySql(mut c) => {
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
                sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
            }
        }
    }
}

async fn conflicting_batch_is_stored_raw_then_applied_once(db: TestDatabase) {
    let s = db.storage();
    for (n, checkout) in [(1, "ws_CO_A"), (2, "ws_CO_B")] {
        create(&*s, new_payment(&pay_id(n), T0)).await;
        set(&*s, &pay_id(n), T0 + 1, accepted(checkout)).await;
    }
    let holder = Holder::hold_second(&db).await;
    let batch = vec![
        stk_callback("cb_a", "ws_CO_A", &success_report("RCPT_A")),
        stk_callback("cb_b", "ws_CO_B", &success_report("RCPT_B")),
    ];
    let ingest = {
        let s = s.clone();
        tokio::spawn(async move { s.ingest_callbacks(&batch, T0 + 10, &decide).await })
    };
    // The batch now holds ws_CO_A and waits for ws_CO_B. On a loaded machine the batch's own
    // lock wait (10 s on MariaDB) can run out before this watcher sees it wait: the batch is
    // then aborted by the timeout instead of the deadlock, which must end the same way.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ingest.is_finished() && !holder.someone_waits(&db).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never waited for the held payment"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder.take_first_and_finish().await;
    let results = ingest.await.unwrap().expect("stored, not refused");

    let outcomes: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().unwrap().outcome)
        .collect();
    assert_eq!(
        outcomes,
        [CallbackOutcome::Received, CallbackOutcome::Received],
        "both acknowledged as stored, not applied yet"
    );
    for n in [1, 2] {
        let p = s.get_payment(&pay_id(n)).await.unwrap().unwrap();
        assert_eq!(p.status, PaymentStatus::Pending, "not applied yet");
    }
    let stored = s.get_callback("cb_a").await.unwrap().unwrap();
    assert_eq!(
        (stored.outcome, stored.payment_id.as_deref()),
        (CallbackOutcome::Received, None)
    );
    assert_eq!(
        stored.body,
        serde_json::to_vec(&success_report("RCPT_A")).unwrap(),
        "the raw body kept"
    );
    let waiting: Vec<String> = s
        .received_callbacks(T0 + 50, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(waiting, ["cb_a", "cb_b"]);
    assert!(
        s.received_callbacks(T0 + 49, 10).await.unwrap().is_empty(),
        "only those received by then"
    );

    // Two instances apply them at once (the one that stored them, and another's sweep).
    let other = db.connect_another().await;
    for (id, n) in [("cb_a", 1), ("cb_b", 2)] {
        let (a, b) = tokio::join!(
            s.reapply_callback(id, T0 + 100, &decide),
            other.reapply_callback(id, T0 + 100, &decide)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(
            (a.outcome, b.outcome),
            (CallbackOutcome::Applied, CallbackOutcome::Applied)
        );
        assert_eq!(
            [a.update.is_some(), b.update.is_some()]
                .iter()
                .filter(|x| **x)
                .count(),
            1,
            "applied once"
        );
        let p = s.get_payment(&pay_id(n)).await.unwrap().unwrap();
        assert_eq!(p.status, PaymentStatus::Completed);
        assert_eq!(s.outbox_for_payment(&pay_id(n)).await.unwrap().len(), 1);
        let stored = s.get_callback(id).await.unwrap().unwrap();
        assert_eq!(
            (stored.outcome, stored.payment_id),
            (CallbackOutcome::Applied, Some(pay_id(n)))
        );
    }
    assert!(
        s.received_callbacks(T0 + 1_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
