//! The queries that the partial indexes of migration 0011 were made for use them. A partial
//! index is used only when the planner can prove that the query asks for rows its predicate
//! holds: a query spelt differently (a parameter for `needs_review`, other statuses) silently
//! falls back to a scan of every payment or callback, which no functional test would notice.
//! Each query here is the one storage runs, built by the same code. (PostgreSQL's EXPLAIN plans
//! with the bound values, so a parameter in place of a spelt predicate shows only on SQLite,
//! which matches the predicate's terms as written.)

use mpesa_harness::database::{Backend, TestDatabase};
use sqlx::Connection;

use crate::cursor::Keyset;
use crate::db::{Conn, RowExt, Stmt};
use crate::model::{PageRequest, PaymentFilter};
use crate::store::{links, payments, received_callbacks};

/// (what, statement, the index its plan must name)
fn cases() -> Vec<(&'static str, Stmt, &'static str)> {
    let page = PageRequest {
        limit: 50,
        cursor: None,
    };
    let held = PaymentFilter {
        needs_review: Some(true),
        ..PaymentFilter::default()
    };
    vec![
        (
            "the reconciler's due checks",
            Stmt::new(payments::DUE_CHECKS).bind(1_000_i64).bind(50_i64),
            "ix_payments_open_next_check_at",
        ),
        (
            "the dashboard's held payments",
            payments::list_query(&held, &Keyset::new(&page).unwrap()),
            "ix_payments_needs_review_id",
        ),
        (
            "a payment link's payments",
            Stmt::new(links::PAYMENTS_OF_LINK).bind("pl_1"),
            "ix_payments_payment_link_id",
        ),
        (
            "the re-drive of callbacks stored raw",
            Stmt::new(received_callbacks::RECEIVED)
                .bind(1_000_i64)
                .bind("cb_1")
                .bind(50_i64),
            "ix_callbacks_outcome_kind_id",
        ),
    ]
}

/// The plan's text: `column` of each row of `explain`'s output, one a line.
async fn plan<C: Conn>(c: &mut C, explain: &'static str, stmt: Stmt, column: &str) -> String {
    let stmt = Stmt {
        sql: format!("{explain}{}", stmt.sql).into(),
        args: stmt.args,
    };
    c.fetch_all(stmt)
        .await
        .unwrap()
        .iter()
        .map(|row| row.text(column).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn postgres_uses_the_partial_indexes() {
    let db = TestDatabase::create(Backend::Postgres, "plans", None)
        .await
        .unwrap();
    let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
    // An empty table is cheapest to scan: forbid that, so the plan shows which index could serve.
    sqlx::raw_sql("SET enable_seqscan = off")
        .execute(&mut c)
        .await
        .unwrap();
    for (what, stmt, index) in cases() {
        let plan = plan(&mut c, "EXPLAIN ", stmt, "QUERY PLAN").await;
        assert!(plan.contains(index), "{what}: {index} not in\n{plan}");
        assert!(!plan.contains("Seq Scan"), "{what}:\n{plan}");
    }
}

#[tokio::test]
async fn sqlite_uses_the_partial_indexes() {
    let db = TestDatabase::create(Backend::Sqlite, "plans", None)
        .await
        .unwrap();
    let mut c = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
    for (what, stmt, index) in cases() {
        let plan = plan(&mut c, "EXPLAIN QUERY PLAN ", stmt, "detail").await;
        assert!(plan.contains(index), "{what}: {index} not in\n{plan}");
    }
}
