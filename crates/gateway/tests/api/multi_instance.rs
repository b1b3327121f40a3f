//! Several gateways on one PostgreSQL or MariaDB database (guarantee 9): the same callbacks
//! sent to both settle each payment once.

use std::sync::Arc;
use std::time::Duration;

use daraja_sim::faults::{CallbackFaults, Faults};
use daraja_sim::{SimConfig, Simulator};
use mpesa_harness::database::TestDatabase;
use mpesa_storage::{Backend, CallbackOutcome};
use serde_json::json;

use crate::support::*;

/// A simulator on its own port that both gateways use; it never calls back, the test does. It
/// invalidates a consumer key's previous token when it issues one (its default, as Daraja).
pub(crate) async fn shared_simulator() -> (Simulator, String) {
    let mut config = SimConfig::for_tests();
    config.faults = Faults::none().with_global(CallbackFaults {
        suppress: true,
        ..CallbackFaults::default()
    });
    let sim = Simulator::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sim.clone().serve(listener, std::future::pending()));
    (sim, url)
}

async fn two_instances_settle_each_payment_once(backend: Backend) {
    let (_sim, daraja_url) = shared_simulator().await;
    let database = Arc::new(TestDatabase::new(backend).await);
    let instance = |database: Arc<TestDatabase>| {
        let mut o = Options::new(backend)
            .env("RECONCILE_AFTER_SECS", "3600")
            .env("PAYMENT_EXPIRES_AFTER_SECS", "7200")
            .env("WEBHOOK_URL", "http://127.0.0.1:9/hook")
            .env("WEBHOOK_SECRET", "whsec_test_0123456789abcdef")
            .env("WEBHOOK_ALLOW_PRIVATE", "true");
        o.database = Some(database);
        o.daraja_url = Some(daraja_url.clone());
        o
    };
    let a = spawn_with(instance(database.clone())).await;
    let b = spawn_with(instance(database.clone())).await;
    assert_eq!(
        a.callback_secret(),
        b.callback_secret(),
        "one generated secret, shared through the database"
    );

    const PAYMENTS: usize = 12;
    const COPIES: usize = 10;
    let mut payments = Vec::new();
    for i in 0..PAYMENTS {
        let gw = if i % 2 == 0 { &a } else { &b };
        let phone = format!("2547110003{i:02}");
        let (status, body) = gw
            .create_payment(json!({ "phone": phone, "amount": 100 + i as i64 }))
            .await;
        assert_eq!(status, 201, "{body}");
        payments.push((
            body["id"].as_str().unwrap().to_owned(),
            body["checkout_request_id"].as_str().unwrap().to_owned(),
            phone,
            100 + i as i64,
        ));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (_, checkout, phone, amount)) in payments.iter().enumerate() {
        let body = stk_success(
            checkout,
            &format!("{amount}.00"),
            phone,
            &format!("SGF{i:07}"),
        );
        for copy in 0..COPIES {
            for gw in [&a, &b] {
                let client = gw.client.clone();
                let url = gw.url(&format!("/callbacks/{}/stk", gw.callback_secret()));
                let body = body.clone();
                tasks.spawn(async move {
                    let _ = copy;
                    client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                });
            }
        }
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let storage = a.storage();
    // A batch that conflicted (a deadlock between the instances) was stored raw, tied to no
    // payment yet, and acknowledged; the re-drive applies it a moment later.
    crate::outbox_receivers::eventually("no copy left unapplied", Duration::from_secs(15), || {
        let storage = storage.clone();
        async move {
            storage
                .received_callbacks(i64::MAX, 1)
                .await
                .unwrap()
                .is_empty()
        }
    })
    .await;
    for (id, _, _, _) in &payments {
        let p = storage.get_payment(id).await.unwrap().unwrap();
        assert_eq!(p.status.as_str(), "completed", "{id}");
        let callbacks = storage.callbacks_for_payment(id).await.unwrap();
        assert_eq!(callbacks.len(), 2 * COPIES, "every copy kept");
        assert_eq!(
            callbacks
                .iter()
                .filter(|c| c.outcome == CallbackOutcome::Applied)
                .count(),
            1,
            "{id}: settled once"
        );
        let completed_events = storage
            .outbox_for_payment(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event_type == "payment.completed")
            .count();
        assert_eq!(completed_events, 1, "{id}: one webhook event");
        assert_eq!(
            storage
                .payment_events(id)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.kind == "callback")
                .count(),
            1
        );
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        a.stop().await;
        b.stop().await;
    })
    .await
    .expect("both stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_settle_each_payment_once() {
    two_instances_settle_each_payment_once(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_mariadb_settle_each_payment_once() {
    two_instances_settle_each_payment_once(Backend::MySql).await;
}
