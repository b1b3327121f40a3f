//! Several instances, one Daraja app: Daraja invalidates a consumer key's previous token when it
//! issues a new one (the simulator does, as Daraja's FAQ says), so instances that each keep
//! their own token knock each other's out: every other push is refused for its token, and sent
//! again. The instances share one token through their database instead: the number of token
//! requests and pushes is counted where Daraja would count them, at the simulator.

use std::collections::BTreeMap;

use mpesa_harness::database::TestDatabase;
use mpesa_storage::Backend;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::multi_instance::shared_simulator;
use crate::support::*;

/// Requests the simulator received, by path, read from `GET /simulator/requests`.
async fn requests_by_path(daraja_url: &str) -> BTreeMap<String, usize> {
    let log: Value = reqwest::get(format!("{daraja_url}/simulator/requests?limit=100000"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut counts = BTreeMap::new();
    for r in log.as_array().expect("a list of requests") {
        *counts
            .entry(r["path"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

async fn two_instances_share_one_token(backend: Backend) {
    let (sim, daraja_url) = shared_simulator().await;
    assert!(
        sim.config().invalidate_previous_token,
        "the simulator's default"
    );
    let database = Arc::new(TestDatabase::new(backend).await);
    let instance = || {
        let mut o = Options::new(backend)
            .env("RECONCILE_AFTER_SECS", "3600")
            .env("PAYMENT_EXPIRES_AFTER_SECS", "7200");
        o.database = Some(database.clone());
        o.daraja_url = Some(daraja_url.clone());
        o
    };
    let a = spawn_with(instance()).await;
    let b = spawn_with(instance()).await;

    const PAYMENTS: usize = 40;
    for i in 0..PAYMENTS {
        let gw = if i % 2 == 0 { &a } else { &b };
        let (status, body) = gw
            .create_payment(json!({ "phone": format!("2547110004{i:02}"), "amount": 10 }))
            .await;
        assert_eq!(status, 201, "payment {i}: {body}");
        assert_eq!(body["status"], "pending", "payment {i}: {body}");
    }
    let counts = requests_by_path(&daraja_url).await;
    let tokens = counts.get("/oauth/v1/generate").copied().unwrap_or(0);
    let pushes = counts
        .get("/mpesa/stkpush/v1/processrequest")
        .copied()
        .unwrap_or(0);
    eprintln!("{backend:?}: {tokens} token requests, {pushes} STK pushes for {PAYMENTS} payments");
    assert_eq!(
        (tokens, pushes),
        (1, PAYMENTS),
        "one token for both instances, one push per payment ({counts:?})"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_share_one_token() {
    two_instances_share_one_token(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_mariadb_share_one_token() {
    two_instances_share_one_token(Backend::MySql).await;
}
