//! `/`, `/health`, `/metrics` and `/api/openapi.json`.

use std::time::Duration;

use mpesa_storage::Backend;
use serde_json::Value;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_health_metrics_and_openapi() {
    let gw = spawn(Backend::Sqlite).await;
    let index: Value = gw
        .client
        .get(gw.url("/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index["service"], "mpesa-gateway");
    assert_eq!(index["status"], "running");

    let health = gw.client.get(gw.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["database"], "connected");
    assert!(health["timestamp"].is_string());
    for dependency in ["daraja", "telegram", "smtp", "webhook", "outbox"] {
        assert!(
            health.get(dependency).is_some(),
            "{dependency} is reported: {health}"
        );
    }
    assert_eq!(health["telegram"]["status"], "disabled");

    let id = gw.pay(SUCCESS, 12).await;
    gw.wait_for_status(&id, "completed", Duration::from_secs(10))
        .await;
    let health: Value = gw
        .client
        .get(gw.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["daraja"]["status"], "ok");

    let metrics = gw.metrics_text().await;
    for line in [
        r#"mpesa_gateway_callbacks_received_total{kind="stk",outcome="applied"} 1"#,
        r#"mpesa_gateway_payments_final_total{status="completed"} 1"#,
        r#"mpesa_gateway_payments_created_total{source="api"} 1"#,
        r#"mpesa_gateway_daraja_calls_total{api="stk_push",outcome="ok"} 1"#,
        "mpesa_gateway_daraja_token_requests_total 1",
        r#"mpesa_gateway_payment_time_to_final_seconds_count{status="completed"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    assert!(
        !metrics.contains(&gw.callback_secret()),
        "routes are counted by pattern, never by path"
    );

    let doc: Value = gw
        .client
        .get(gw.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/payments",
        "/api/v1/payments/{id}",
        "/api/v1/payments/{id}/refresh",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    let schema = &doc["components"]["schemas"]["PaymentView"]["properties"];
    for field in [
        "id",
        "status",
        "phone",
        "amount",
        "reference",
        "description",
        "checkout_request_id",
        "merchant_request_id",
        "mpesa_receipt_number",
        "result_code",
        "result_desc",
        "transaction_date",
        "created_at",
        "updated_at",
        "completed_at",
        "needs_review",
        "review_reason",
    ] {
        assert!(
            schema.get(field).is_some(),
            "PaymentView.{field} documented"
        );
    }
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    // Unknown routes answer in the API's error format.
    let r = gw.client.get(gw.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_paginates() {
    let gw = spawn(Backend::Sqlite).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(gw.pay(&format!("2547110004{i:02}"), 10 + i).await);
    }
    let list = |query: String| {
        let gw = &gw;
        async move {
            let r = gw
                .client
                .get(gw.url(&format!("/api/v1/payments{query}")))
                .bearer_auth(&gw.api_key)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, page1) = list("?limit=2".into()).await;
    assert_eq!(status, 200);
    assert_eq!(page1["data"].as_array().unwrap().len(), 2);
    assert_eq!(page1["data"][0]["id"], ids[4].as_str(), "newest first");
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = list(format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(page2["data"][0]["id"], ids[2].as_str());
    let (_, by_phone) = list("?phone=0711000401".into()).await;
    assert_eq!(by_phone["data"].as_array().unwrap().len(), 1);
    assert_eq!(by_phone["data"][0]["id"], ids[1].as_str());
    for (query, field) in [
        ("?status=paid", "status"),
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?cursor=garbage", "cursor"),
        ("?phone=123", "phone"),
        ("?colour=red", "colour"),
    ] {
        let (status, body) = list(query.into()).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}");
    }
    gw.stop().await;
}

/// Issue 11, item 8: in `serve --sandbox`, `GET /sandbox/simulator/requests` showed the
/// CallBackURLs (the callback secret with them) and `POST /sandbox/simulator/faults` was open
/// to anyone who could reach the port. Now they answer only this machine or a signed-in admin;
/// Daraja's own routes stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_inspection_routes_answer_only_this_machine_or_an_admin() {
    let gw = spawn_with(Options::new(Backend::Sqlite).env("TRUSTED_PROXIES", "127.0.0.1")).await;
    gw.pay(SUCCESS, 10).await;
    let secret = gw.callback_secret();
    let get = |path: &str, forwarded_for: Option<&str>, cookie: Option<&str>| {
        let mut r = gw.client.get(gw.url(path));
        if let Some(a) = forwarded_for {
            r = r.header("x-forwarded-for", a);
        }
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // This machine: as before.
    let (status, body) = get("/sandbox/simulator/requests", None, None).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(&secret),
        "the local view shows the CallBackURL"
    );
    // A stranger through the proxy, or a proxy on this machine that is not declared.
    for path in [
        "/sandbox/simulator",
        "/sandbox/simulator/requests",
        "/sandbox/simulator/callbacks",
        "/sandbox/simulator/faults",
        "/admin/sandbox/simulator/requests",
    ] {
        let (status, body) = get(path, Some("203.0.113.9"), None).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(!body.contains(&secret), "{path}");
    }
    let faults_before = gw.sim().faults();
    let set = gw
        .client
        .post(gw.url("/sandbox/simulator/faults"))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&serde_json::json!({ "global": { "suppress": true } }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 403);
    assert_eq!(gw.sim().faults(), faults_before, "faults unchanged");
    // Daraja's own routes stay open (the gateway's client calls them).
    let token = gw
        .client
        .get(gw.url("/sandbox/oauth/v1/generate?grant_type=client_credentials"))
        .header("x-forwarded-for", "203.0.113.9")
        .basic_auth("sandbox-consumer-key", Some("sandbox-consumer-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    // A signed-in admin, from afar, with the dashboard's session cookie.
    crate::dashboard::add_admin(&gw).await;
    let admin = crate::dashboard::AdminClient::from_address(&gw, "203.0.113.9");
    assert_eq!(
        admin
            .sign_in(crate::dashboard::ADMIN, crate::dashboard::PASSWORD)
            .await
            .status,
        303
    );
    let session = format!("mpg_session={}", admin.cookie("mpg_session").unwrap());
    for path in [
        "/sandbox/simulator/requests",
        "/admin/sandbox/simulator/requests",
    ] {
        let (status, body) = get(path, Some("203.0.113.9"), Some(&session)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, _) = get(
        "/sandbox/simulator/requests",
        Some("203.0.113.9"),
        Some("mpg_session=forged"),
    )
    .await;
    assert_eq!(status, 403);
    gw.stop().await;
}

/// Without TRUSTED_PROXIES, a request from loopback that carries forwarding headers came
/// through a proxy on this machine for someone else: not local.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_is_not_taken_for_this_machine() {
    let gw = spawn(Backend::Sqlite).await;
    let r = gw
        .client
        .get(gw.url("/sandbox/simulator/requests"))
        .header("x-forwarded-for", "127.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    gw.stop().await;
}
