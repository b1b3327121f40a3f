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

/// More callbacks left `received` than one sweep takes, the first of them waiting for good (C2B
/// confirmations that an open STK payment could be, which a person has yet to settle): the
/// sweeps page on through them, and a callback behind them is applied. Each sweep used to take
/// the same first ones, and the one behind them was acknowledged and never applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_behind_a_sweep_of_waiting_ones_are_applied() {
    let backend = Backend::Sqlite;
    let options = || {
        let mut o = Options::new(backend)
            .env("RECONCILE_AFTER_SECS", "3600")
            .env("PAYMENT_EXPIRES_AFTER_SECS", "7200");
        // Both pushes go to the one no-callback number while the first prompt is open.
        o.sim.lock_subscriber = false;
        o
    };
    let first = spawn_with(options()).await;
    let open = |amount: i64, reference: &'static str| {
        let first = &first;
        async move {
            let (status, body) = first
                .create_payment(serde_json::json!({ "phone": NO_CALLBACK, "amount": amount, "reference": reference }))
                .await;
            assert_eq!(status, 201, "{body}");
            let id = body["id"].as_str().unwrap().to_owned();
            let p = first
                .wait_for_status(&id, "pending", Duration::from_secs(10))
                .await;
            (id, p.checkout_request_id.unwrap())
        }
    };
    // The confirmations wait for this one; the other is paid by the callback behind them.
    open(25, "WAIT").await;
    let (late, checkout) = open(26, "LATE").await;
    let database = first.database.clone();
    first.stop().await;
    for n in 0..201 {
        let receipt = format!("TXWAIT{n:04}");
        plant_received(
            backend,
            database.url(),
            &format!("cb_a{n:04}"),
            Names::Receipt(&receipt),
            &crate::c2b::confirmation(&receipt, "600000", "WAIT", "25.00", "2547 ***** 000", "ANN"),
        )
        .await;
    }
    plant_received(
        backend,
        database.url(),
        "cb_z_behind",
        Names::Checkout(&checkout),
        &stk_success(&checkout, "26.00", "254700000000", "SGR7L2QX2Z"),
    )
    .await;

    let mut options = options();
    options.database = Some(database);
    let second = spawn_with(options).await;
    let paid = second
        .wait_for_status(&late, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(paid.mpesa_receipt_number.as_deref(), Some("SGR7L2QX2Z"));
    let waiting = second
        .storage()
        .get_callback("cb_a0000")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.outcome, CallbackOutcome::Received, "still waiting");
    second.stop().await;
}
