//! A callback stored raw (`received`) and acknowledged, whose instance crashed before applying
//! it (the window between the two transactions when a batch conflicted): the next instance to
//! run applies it by itself, once.

use std::time::Duration;

use mpesa_storage::{Backend, CallbackOutcome};
use sqlx::Connection as _;

use crate::on_every_backend;
use crate::support::*;

on_every_backend!(
    a_callback_left_received_by_a_crash_is_applied_after_restart,
    a_c2b_confirmation_left_received_is_booked_after_restart,
);

/// What a planted row names: an STK callback's CheckoutRequestID or a confirmation's receipt.
enum Names<'a> {
    Checkout(&'a str),
    Receipt(&'a str),
}

/// Inserts the raw row exactly as storage's raw-store transaction writes it.
async fn plant_received(backend: Backend, url: &str, id: &str, names: Names<'_>, body: &[u8]) {
    let received_at = mpesa_gateway::ids::now_ms() - 10_000;
    let (kind, checkout, receipt) = match names {
        Names::Checkout(c) => ("stk", Some(c), None),
        Names::Receipt(r) => ("c2b_confirmation", None, Some(r)),
    };
    macro_rules! plant {
        ($conn:ty, $sql:expr) => {{
            let mut c = <$conn>::connect(url).await.unwrap();
            sqlx::query($sql)
                .bind(id)
                .bind(kind)
                .bind(received_at)
                .bind(body.to_vec())
                .bind(checkout)
                .bind(receipt)
                .execute(&mut c)
                .await
                .unwrap();
        }};
    }
    match backend {
        Backend::Sqlite => plant!(
            sqlx::SqliteConnection,
            "INSERT INTO callbacks (id, kind, received_at, headers, body, checkout_request_id, receipt, outcome) \
             VALUES (?, ?, ?, '{}', ?, ?, ?, 'received')"
        ),
        Backend::Postgres => plant!(
            sqlx::PgConnection,
            "INSERT INTO callbacks (id, kind, received_at, headers, body, checkout_request_id, receipt, outcome) \
             VALUES ($1, $2, $3, '{}', $4, $5, $6, 'received')"
        ),
        Backend::MySql => plant!(
            sqlx::MySqlConnection,
            "INSERT INTO callbacks (id, kind, received_at, headers, body, checkout_request_id, receipt, outcome) \
             VALUES (?, ?, ?, '{}', ?, ?, ?, 'received')"
        ),
    }
}

/// A C2B confirmation stored raw and acknowledged (a batch that conflicted on a Galera
/// cluster), whose instance died before booking it: the next instance books it, once.
async fn a_c2b_confirmation_left_received_is_booked_after_restart(backend: Backend) {
    let first = spawn(backend).await;
    let database = first.database.clone();
    first.stop().await;
    plant_received(
        backend,
        database.url(),
        "cb_c2b_left_by_a_crash",
        Names::Receipt("TXLEFT0001"),
        &crate::c2b::confirmation(
            "TXLEFT0001",
            "600000",
            "ACC9",
            "90.00",
            "2547 ***** 149",
            "ANN",
        ),
    )
    .await;
    let mut options = Options::new(backend);
    options.database = Some(database);
    let second = spawn_with(options).await;
    let p = second.payment_by_receipt("TXLEFT0001").await;
    assert_eq!((p.amount.shillings(), p.reference.as_str()), (90, "ACC9"));
    let stored = second
        .storage()
        .get_callback("cb_c2b_left_by_a_crash")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.outcome, stored.payment_id.as_deref()),
        (CallbackOutcome::Applied, Some(p.id.as_str()))
    );
    second.stop().await;
}

async fn a_callback_left_received_by_a_crash_is_applied_after_restart(backend: Backend) {
    let first = spawn(backend).await;
    let id = first.pay(NO_CALLBACK, 25).await;
    let payment = first
        .wait_for_status(&id, "pending", Duration::from_secs(10))
        .await;
    let checkout = payment.checkout_request_id.clone().unwrap();
    let database = first.database.clone();
    // Stopped for good before the row appears: only the next instance can apply it.
    first.stop().await;
    plant_received(
        backend,
        database.url(),
        "cb_left_by_a_crash",
        Names::Checkout(&checkout),
        &stk_success(&checkout, "25.00", "254700000000", "SGR7L2QX1Z"),
    )
    .await;

    let mut options = Options::new(backend);
    options.database = Some(database);
    let second = spawn_with(options).await;
    let paid = second
        .wait_for_status(&id, "completed", Duration::from_secs(20))
        .await;
    assert_eq!(paid.mpesa_receipt_number.as_deref(), Some("SGR7L2QX1Z"));
    let stored = second
        .storage()
        .get_callback("cb_left_by_a_crash")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.outcome, stored.payment_id.as_deref()),
        (CallbackOutcome::Applied, Some(id.as_str()))
    );
    let events = second.storage().payment_events(&id).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e.kind == "callback").count(),
        1,
        "applied once"
    );
    second.stop().await;
}
