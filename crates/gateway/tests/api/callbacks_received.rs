//! Safaricom's callbacks: stored before they are acknowledged, applied once, and never trusted
//! beyond what they can prove (guarantees 1, 2, 3 and 8).

use daraja_sim::faults::CallbackFaults;
use mpesa_storage::{Backend, CallbackFilter, CallbackOutcome, PageRequest};
use serde_json::json;

use crate::on_every_backend;
use crate::support::*;

on_every_backend!(
    acknowledged_callbacks_are_committed_first,
    two_hundred_copies_settle_once,
    forged_successes_are_held_not_settled,
    hostile_bodies_get_4xx_and_lose_nothing,
);

/// A gateway whose simulator never calls back, so the test sends the callbacks itself.
async fn quiet_gateway(backend: Backend, env: &[(&str, &str)]) -> TestGateway {
    let mut options = Options::new(backend);
    options.sim.faults.global = CallbackFaults {
        suppress: true,
        ..CallbackFaults::default()
    };
    for (k, v) in env {
        options = options.env(k, v);
    }
    // The reconciler stays away during these tests.
    options = options
        .env("RECONCILE_AFTER_SECS", "3600")
        .env("PAYMENT_EXPIRES_AFTER_SECS", "7200");
    spawn_with(options).await
}

async fn pending_payment(gw: &TestGateway, phone: &str, amount: i64) -> (String, String) {
    let (status, body) = gw
        .create_payment(json!({ "phone": phone, "amount": amount, "reference": "CB1" }))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "pending");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["checkout_request_id"].as_str().unwrap().to_owned(),
    )
}

async fn acknowledged_callbacks_are_committed_first(backend: Backend) {
    let gw = quiet_gateway(backend, &[]).await;
    let (id, checkout) = pending_payment(&gw, SUCCESS, 100).await;
    let (status, answer) = gw
        .post_stk_callback(&stk_success(&checkout, "100.00", SUCCESS, "SGA1XYZ123"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({ "ResultCode": 0, "ResultDesc": "Accepted" }));
    // No waiting: what was acknowledged is already in the database, through a fresh connection.
    let other = gw.database.connect_another().await;
    let p = other.get_payment(&id).await.unwrap().unwrap();
    assert_eq!(p.status.as_str(), "completed");
    assert_eq!(p.mpesa_receipt_number.as_deref(), Some("SGA1XYZ123"));
    let stored = other.callbacks_for_payment(&id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].outcome, CallbackOutcome::Applied);
    assert!(stored[0].headers.contains("content-type"));
    gw.stop().await;
}

async fn two_hundred_copies_settle_once(backend: Backend) {
    let gw = quiet_gateway(
        backend,
        &[
            ("WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ("WEBHOOK_SECRET", "whsec_test_0123456789abcdef"),
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ],
    )
    .await;
    let (id, checkout) = pending_payment(&gw, SUCCESS, 250).await;
    let body = stk_success(&checkout, "250.00", SUCCESS, "SGB2XYZ999");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let client = gw.client.clone();
        let url = gw.url(&format!("/callbacks/{}/stk", gw.callback_secret()));
        let body = body.clone();
        tasks.spawn(async move {
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
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let storage = gw.storage();
    let stored = storage.callbacks_for_payment(&id).await.unwrap();
    assert_eq!(stored.len(), 200, "every copy is kept");
    let applied = stored
        .iter()
        .filter(|c| c.outcome == CallbackOutcome::Applied)
        .count();
    let duplicates = stored
        .iter()
        .filter(|c| c.outcome == CallbackOutcome::Duplicate)
        .count();
    assert_eq!((applied, duplicates), (1, 199));
    let events = storage.payment_events(&id).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e.kind == "callback").count(),
        1,
        "one settlement on the timeline"
    );
    let outbox = storage.outbox_for_payment(&id).await.unwrap();
    assert_eq!(outbox.len(), 1, "one webhook event, not 200: {outbox:?}");
    assert_eq!(outbox[0].event_type, "payment.completed");
    let p = storage.get_payment(&id).await.unwrap().unwrap();
    assert_eq!(p.status.as_str(), "completed");
    gw.stop().await;
}

async fn forged_successes_are_held_not_settled(backend: Backend) {
    let gw = quiet_gateway(backend, &[]).await;
    let storage = gw.storage();

    // An id we never issued: kept, unmatched, settles nothing.
    let (status, _) = gw
        .post_stk_callback(&stk_success(
            "ws_CO_forged000000000000",
            "100.00",
            SUCCESS,
            "FAKE000001",
        ))
        .await;
    assert_eq!(status, 200);
    let unmatched = storage
        .list_callbacks(
            &CallbackFilter {
                outcome: Some(CallbackOutcome::Unmatched),
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(unmatched.items.len(), 1);
    assert_eq!(unmatched.items[0].payment_id, None);

    // Our id, but another amount: held for review, still pending, nobody told.
    let (id, checkout) = pending_payment(&gw, SUCCESS, 100).await;
    let (status, _) = gw
        .post_stk_callback(&stk_success(&checkout, "1.00", SUCCESS, "FAKE000002"))
        .await;
    assert_eq!(status, 200);
    let view = gw.get_payment(&id).await;
    assert_eq!(view["status"], "pending");
    assert_eq!(view["needs_review"], true);
    assert!(
        view["review_reason"].as_str().unwrap().contains("1.00"),
        "{view}"
    );
    assert_eq!(view["mpesa_receipt_number"], serde_json::Value::Null);

    // Our id, the right amount, another phone: held. (Each payment has its own number: the
    // simulator, like M-Pesa, refuses a push while the number has a prompt open.)
    let (id2, checkout2) = pending_payment(&gw, "254711000102", 100).await;
    gw.post_stk_callback(&stk_success(
        &checkout2,
        "100.00",
        "254711111111",
        "FAKE000003",
    ))
    .await;
    let p = storage.get_payment(&id2).await.unwrap().unwrap();
    assert_eq!((p.status.as_str(), p.needs_review), ("pending", true));

    // A success reusing another payment's receipt: stored and held, the receipt stays where it was.
    let (id3, checkout3) = pending_payment(&gw, "254711000103", 100).await;
    gw.post_stk_callback(&stk_success(
        &checkout3,
        "100.00",
        "254711000103",
        "REAL000004",
    ))
    .await;
    assert_eq!(
        storage
            .get_payment(&id3)
            .await
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "completed"
    );
    let (id4, checkout4) = pending_payment(&gw, "254711000104", 100).await;
    let (status, _) = gw
        .post_stk_callback(&stk_success(
            &checkout4,
            "100.00",
            "254711000104",
            "REAL000004",
        ))
        .await;
    assert_eq!(status, 200, "stored, so acknowledged");
    let p4 = storage.get_payment(&id4).await.unwrap().unwrap();
    assert_eq!(
        (
            p4.status.as_str(),
            p4.needs_review,
            p4.mpesa_receipt_number.as_deref()
        ),
        ("pending", true, None)
    );
    assert_eq!(
        storage.callbacks_for_payment(&id4).await.unwrap()[0].outcome,
        CallbackOutcome::HeldForReview
    );

    // No notification was planned for any of them.
    for pid in [&id, &id2, &id4] {
        assert!(
            storage
                .outbox_for_payment(pid)
                .await
                .unwrap()
                .iter()
                .all(|e| e.event_type != "payment.completed")
        );
    }
    gw.stop().await;
}

async fn hostile_bodies_get_4xx_and_lose_nothing(backend: Backend) {
    let gw = quiet_gateway(backend, &[]).await;
    let storage = gw.storage();
    let (id, checkout) = pending_payment(&gw, SUCCESS, 100).await;
    gw.post_stk_callback(&stk_success(&checkout, "100.00", SUCCESS, "SGC3XYZ777"))
        .await;

    let before = storage
        .list_callbacks(
            &Default::default(),
            &PageRequest {
                limit: 500,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items
        .len();
    // A wrong secret: 404, nothing stored.
    let r = gw
        .client
        .post(gw.url("/callbacks/not-the-secret/stk"))
        .header("content-type", "application/json")
        .body(stk_success(&checkout, "100.00", SUCCESS, "X"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Too large: 413, nothing stored.
    let r = send_refused_early(|| {
        gw.client
            .post(gw.url(&format!("/callbacks/{}/stk", gw.callback_secret())))
            .header("content-type", "application/json")
            .body(vec![b' '; 200_000])
    })
    .await;
    assert_eq!(r.status(), 413);
    let after_refusals = storage
        .list_callbacks(
            &Default::default(),
            &PageRequest {
                limit: 500,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(after_refusals, before);

    // Unparseable or hostile bodies: 400, each stored as unparseable, nothing else changes.
    let hostile: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"{\"Body\":{\"stkCallback\":{\"ResultCode\":\"<script>alert(1)</script>\"}}}".to_vec(),
        format!("{{\"Body\":{{\"stkCallback\":{{\"MerchantRequestID\":\"m\",\"CheckoutRequestID\":\"{checkout}\",\"ResultCode\":0,\"ResultDesc\":\"ok\",\"CallbackMetadata\":{{\"Item\":[{{\"Name\":\"Amount\",\"Value\":100}}]}}}}}}}}").into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x01],
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
    ];
    for body in &hostile {
        let (status, answer) = gw.post_stk_callback(body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["ResultCode"], 1);
    }
    let unparseable = storage
        .list_callbacks(
            &CallbackFilter {
                outcome: Some(CallbackOutcome::Unparseable),
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(unparseable.items.len(), hostile.len());
    // The success without a receipt named our payment; it is linked, but changed nothing.
    assert!(
        unparseable
            .items
            .iter()
            .any(|c| c.payment_id.as_deref() == Some(id.as_str()))
    );
    let p = storage.get_payment(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            p.status.as_str(),
            p.mpesa_receipt_number.as_deref(),
            p.needs_review
        ),
        ("completed", Some("SGC3XYZ777"), false)
    );
    // The gateway is still healthy.
    let r = gw.client.get(gw.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    gw.stop().await;
}

/// Guarantee 1 from the other side: when the database cannot commit, Safaricom does not get
/// `Accepted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledgement_without_a_commit() {
    let gw = quiet_gateway(Backend::Postgres, &[]).await;
    let (id, checkout) = pending_payment(&gw, SUCCESS, 100).await;
    // Take the database away: no new connections, existing ones cut.
    gw.database.block_connections().await;
    let (status, answer) = gw
        .post_stk_callback(&stk_success(&checkout, "100.00", SUCCESS, "SGD4XYZ555"))
        .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["ResultCode"], 1);
    let r = gw.client.get(gw.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let health: serde_json::Value = r.json().await.unwrap();
    assert_eq!(health["database"], "unreachable");
    // Back: the same callback is accepted and applied once.
    gw.database.allow_connections().await;
    let (status, _) = gw
        .post_stk_callback(&stk_success(&checkout, "100.00", SUCCESS, "SGD4XYZ555"))
        .await;
    assert_eq!(status, 200);
    let p = gw.storage().get_payment(&id).await.unwrap().unwrap();
    assert_eq!(p.status.as_str(), "completed");
    gw.stop().await;
}
