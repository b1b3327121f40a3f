//! An STK push is never sent twice for one payment; `Idempotency-Key` makes retries safe
//! (guarantee 5).

use mpesa_storage::Backend;
use serde_json::json;

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
