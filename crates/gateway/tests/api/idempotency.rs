//! An STK push is never sent twice for one payment; `Idempotency-Key` makes retries safe
//! (guarantee 5).

use std::time::Duration;

use daraja_sim::faults::{CallbackFaults, Faults};
use mpesa_storage::Backend;
use serde_json::json;
use sqlx::Connection as _;

use crate::on_every_backend;
use crate::support::*;

on_every_backend!(
    same_key_same_body_gets_the_first_answer,
    concurrent_retries_make_one_payment
);

fn pushes_made(gw: &TestGateway) -> usize {
    gw.sim()
        .requests()
        .iter()
        .filter(|r| r.path.contains("stkpush/v1/processrequest"))
        .count()
}

async fn same_key_same_body_gets_the_first_answer(backend: Backend) {
    let gw = spawn(backend).await;
    let body = json!({ "phone": SUCCESS, "amount": 30, "reference": "IDEM1" });
    let (s1, first) = gw
        .create_payment_with_key(body.clone(), Some("order-1"))
        .await;
    assert_eq!(s1, 201);
    // Written differently, the same request.
    let (s2, second) = gw
        .create_payment_with_key(
            json!({ "amount": 30, "reference": "IDEM1 ", "phone": "0708374149" }),
            Some("order-1"),
        )
        .await;
    assert_eq!(s2, 201);
    assert_eq!(second, first, "the first answer, again");
    // The same key with another body.
    let (s3, conflict) = gw
        .create_payment_with_key(
            json!({ "phone": SUCCESS, "amount": 31, "reference": "IDEM1" }),
            Some("order-1"),
        )
        .await;
    assert_eq!(s3, 409);
    assert_eq!(conflict["error"]["code"], "idempotency_key_reused");
    assert_eq!(pushes_made(&gw), 1);
    // Another key is another payment.
    let (s4, other) = gw
        .create_payment_with_key(
            json!({ "phone": "254711000201", "amount": 30 }),
            Some("order-2"),
        )
        .await;
    assert_eq!(s4, 201);
    assert_ne!(other["id"], first["id"]);
    gw.stop().await;
}

async fn concurrent_retries_make_one_payment(backend: Backend) {
    let gw = spawn(backend).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let client = gw.client.clone();
        let url = gw.url("/api/v1/payments");
        let key = gw.api_key.clone();
        tasks.spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "burst-1")
                .json(&json!({ "phone": SUCCESS, "amount": 45 }))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        });
    }
    let mut ids = std::collections::BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        let (status, body) = r.unwrap();
        match status {
            201 => {
                ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(body["error"]["code"], "idempotency_in_progress", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ids.len(), 1, "one payment: {ids:?}");
    let page = gw
        .storage()
        .list_payments(&Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(pushes_made(&gw), 1);
    gw.stop().await;
}

/// A client that gives up while its push is in flight (it closes the connection, so the server
/// drops its request) does not cut the push off from its record: Daraja's answer is recorded,
/// the payment goes on to `pending`, and the same request again gets it, not "in progress".
/// Cut there, the prompt would be on the phone with nothing recorded of it until the reconciler's
/// crash path, and a retry told to wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_gives_up_mid_push_does_not_cut_it_off() {
    let mut options = Options::new(Backend::Sqlite);
    options.sim.faults = Faults::none().with_global(CallbackFaults {
        slow_answer_ms: 1500,
        suppress: true,
        ..CallbackFaults::default()
    });
    let gw = spawn_with(options).await;
    let body = json!({ "phone": SUCCESS, "amount": 45, "reference": "GIVEUP1" });
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(gw.url("/api/v1/payments"))
        .bearer_auth(&gw.api_key)
        .header("Idempotency-Key", "give-up-1")
        .json(&body)
        .send()
        .await;
    assert!(
        gave_up.as_ref().is_err_and(|e| e.is_timeout()),
        "the push must outlast the client: {gave_up:?}"
    );
    // The push is answered 1.5 s after it was sent; until then the same request is told to wait.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let (status, answer) = gw
            .create_payment_with_key(body.clone(), Some("give-up-1"))
            .await;
        if status != 409 {
            assert_eq!(status, 201, "{answer}");
            break answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in progress 10 s after a push answered in 1.5 s: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer["status"], "pending", "{answer}");
    assert!(answer["checkout_request_id"].is_string(), "{answer}");
    let id = answer["id"].as_str().unwrap();
    let kinds: Vec<String> = gw
        .storage()
        .payment_events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&"push_accepted".to_owned()), "{kinds:?}");
    assert_eq!(pushes_made(&gw), 1, "pushed once");
    gw.stop().await;
}

/// A process that died after storing a payment and sending its push, before keeping the answer
/// for its key, leaves the key "in progress"; the payment, whose push's answer never came, is
/// held for a person at its expiry. From then on the same request gets the payment (held,
/// `needs_review`), not "in progress, retry shortly" for as long as no one settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_payment_is_held_after_a_crash_gets_the_payment() {
    let mut options = Options::new(Backend::Sqlite).env("MPESA_TIMEOUT_SECS", "1");
    options.sim.faults = Faults::none().with_global(CallbackFaults {
        slow_answer_ms: 2500,
        suppress: true,
        ..CallbackFaults::default()
    });
    let gw = spawn_with(options).await;
    let body = json!({ "phone": SUCCESS, "amount": 55, "reference": "CRASH1" });
    let (status, first) = gw
        .create_payment_with_key(body.clone(), Some("crash-1"))
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "initiated", "the push's answer never came");
    let id = first["id"].as_str().unwrap().to_owned();
    // As a process that died before keeping the answer leaves the key.
    let mut db = sqlx::SqliteConnection::connect(gw.database.url())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = NULL, response_body = NULL \
         WHERE idem_key = 'crash-1'",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let (status, running) = gw
        .create_payment_with_key(body.clone(), Some("crash-1"))
        .await;
    assert_eq!(status, 409, "in progress while not held: {running}");
    // Held at its expiry, as the reconciler holds a payment it cannot ask about.
    gw.storage()
        .update_payment(&id, mpesa_gateway::ids::now_ms(), &|_| {
            let mut update = mpesa_storage::PaymentUpdate::new(Some(mpesa_domain::Transition {
                kind: mpesa_domain::TransitionKind::Expired,
                status: mpesa_domain::PaymentStatus::Initiated,
                checkout_request_id: None,
                merchant_request_id: None,
                result_code: None,
                result_desc: None,
                mpesa_receipt_number: None,
                transaction_date_ms: None,
                review: mpesa_domain::ReviewChange::Hold(
                    mpesa_domain::ReviewReason::PushOutcomeUnknown,
                ),
                notify: None,
                note: None,
            }));
            update.event = Some("{}".into());
            Some(update)
        })
        .await
        .unwrap()
        .expect("held");
    let (status, held) = gw.create_payment_with_key(body, Some("crash-1")).await;
    assert_eq!(status, 201, "{held}");
    assert_eq!(
        (held["id"].as_str(), held["needs_review"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert_eq!(pushes_made(&gw), 1, "pushed once");
    gw.stop().await;
}
