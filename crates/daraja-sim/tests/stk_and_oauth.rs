//! The simulator driven by the project's own Daraja client (and raw HTTP where the client would
//! refuse to send): OAuth, STK Push for every scenario number with its callback parsed by
//! `daraja::wire`, STK Query, callback faults, token expiry and invalidation, and each
//! validation error with its exact code, message and HTTP status.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use daraja::endpoint::Api;
use daraja::wire::{StkCallback, WireCode};
use daraja::{DarajaError, ManualClock, StkQueryAnswer};
use daraja_sim::{
    CallbackFaults, CallbackKind, DeliveryOutcome, FailureAnswer, Faults, PendingQueryAnswer,
    SimConfig, SimEnvironment,
};
use mpesa_domain::Cents;
use serde_json::{Value, json};

const SUCCESS: &str = "254708374149";

fn assert_success_shape(raw: &Value, callback: &StkCallback, phone: &str, amount: i64) {
    let cb = &raw["Body"]["stkCallback"];
    assert!(
        cb["ResultCode"].is_number() && cb["ResultCode"] == 0,
        "ResultCode is the number 0: {cb}"
    );
    assert_eq!(
        cb["ResultDesc"],
        "The service request is processed successfully."
    );
    let items = cb["CallbackMetadata"]["Item"]
        .as_array()
        .expect("Item is an array");
    let names: Vec<&str> = items.iter().map(|i| i["Name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Amount",
            "MpesaReceiptNumber",
            "Balance",
            "TransactionDate",
            "PhoneNumber"
        ]
    );
    let balance = items.iter().find(|i| i["Name"] == "Balance").unwrap();
    assert!(
        balance.get("Value").is_none(),
        "Balance has no Value key: {balance}"
    );
    // Amount as a decimal number with two places, kept exactly by the wire type.
    assert_eq!(
        callback.metadata_value("Amount").unwrap().json(),
        format!("{amount}.00")
    );
    assert_eq!(
        callback.metadata_value("Amount").unwrap().cents(),
        Some(Cents(amount * 100))
    );
    let receipt = items[1]["Value"].as_str().unwrap();
    assert_eq!(receipt.len(), 10);
    assert!(
        receipt
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        "{receipt}"
    );
    let date = &items[3]["Value"];
    assert!(
        date.is_u64() && date.to_string().len() == 14,
        "TransactionDate is a 14-digit number: {date}"
    );
    assert!(daraja::parse_eat_timestamp(&date.to_string()).is_some());
    assert!(items[4]["Value"].is_u64(), "PhoneNumber is a number");
    assert_eq!(items[4]["Value"].to_string(), phone);
    let report = callback.to_report().unwrap();
    assert!(report.result_code.is_success());
    assert_eq!(report.success.unwrap().receipt, receipt);
}

fn assert_checkout_id_format(id: &str, phone: &str) {
    let rest = id.strip_prefix("ws_CO_").expect("ws_CO_ prefix");
    assert!(
        rest.ends_with(&phone[3..]),
        "{id} ends with the subscriber number"
    );
    let stamp = &rest[..rest.len() - 9];
    assert!(
        (15..=17).contains(&stamp.len()) && stamp.bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );
}

#[tokio::test]
async fn oauth_issues_tokens_like_daraja_and_refuses_like_it() {
    let server = start(SimConfig::for_tests().accept_credentials("app-key", "app-secret")).await;
    let url = format!("{}/oauth/v1/generate", server.base_url);
    let ok = http()
        .get(format!("{url}?grant_type=client_credentials"))
        .basic_auth("app-key", Some("app-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.len(), 28);
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(
        body["expires_in"],
        json!("3599"),
        "expires_in is the string \"3599\""
    );

    let cases = [
        (
            format!("{url}?grant_type=client_credentials"),
            Some(("app-key", "wrong")),
            400,
            "400.008.01",
            "Invalid Authentication passed",
        ),
        (
            format!("{url}?grant_type=client_credentials"),
            None,
            400,
            "400.008.01",
            "Invalid Authentication passed",
        ),
        (
            format!("{url}?grant_type=client_credentials%20"),
            Some(("app-key", "app-secret")),
            400,
            "400.008.02",
            "Invalid grant type passed",
        ),
        (
            url.clone(),
            Some(("app-key", "app-secret")),
            400,
            "400.008.02",
            "Invalid grant type passed",
        ),
    ];
    for (target, auth, status, code, message) in cases {
        let mut request = http().get(&target);
        if let Some((k, s)) = auth {
            request = request.basic_auth(k, Some(s));
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{target}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(
            (
                e["errorCode"].as_str().unwrap(),
                e["errorMessage"].as_str().unwrap()
            ),
            (code, message),
            "{target}"
        );
        assert!(!e["requestId"].as_str().unwrap().is_empty());
    }
    let post = http()
        .post(format!("{url}?grant_type=client_credentials"))
        .basic_auth("app-key", Some("app-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);

    // The project's client with the configured pair, and with the default sandbox pair.
    client_with(&server, "app-key", "app-secret", |_| {})
        .check_credentials()
        .await
        .unwrap();
    client(&server).check_credentials().await.unwrap();
    let refused = client_with(&server, "app-key", "nope", |_| {})
        .check_credentials()
        .await
        .unwrap_err();
    assert_eq!(refused.error_code(), Some("400.008.01"));
}

#[tokio::test]
async fn every_scenario_number_gets_its_outcome_and_callback() {
    let server = start(SimConfig::for_tests()).await;
    let receiver = Receiver::start().await;
    let client = client(&server);
    let cb_url = receiver.url("stk");

    // Success: Safaricom's test number, and any number outside the table.
    for (phone, amount) in [
        (SUCCESS, 1),
        ("254712345678", 10),
        ("254110123456", 250_000),
    ] {
        let accepted = client
            .stk_push(&push_params(phone, amount, &cb_url))
            .await
            .unwrap();
        assert_eq!(accepted.response_code, "0");
        assert_eq!(
            accepted.response_description,
            "Success. Request accepted for processing"
        );
        assert_checkout_id_format(&accepted.checkout_request_id, phone);
        assert_eq!(
            accepted.merchant_request_id.split('-').count(),
            4,
            "{}",
            accepted.merchant_request_id
        );
        let received = receiver.stk_callback(&accepted.checkout_request_id).await;
        let callback =
            StkCallback::parse(&received.body).expect("the wire type parses the callback");
        assert_eq!(callback.merchant_request_id(), accepted.merchant_request_id);
        assert_success_shape(&received.json(), &callback, phone, amount);
        let tx = server
            .sim
            .stk_transaction(&accepted.checkout_request_id)
            .unwrap();
        assert_eq!(
            tx.receipt(),
            callback
                .metadata_value("MpesaReceiptNumber")
                .unwrap()
                .as_text()
                .as_deref()
        );
    }

    // Failures: a numeric ResultCode, Safaricom's description, no CallbackMetadata.
    let failures = [
        (
            "254700000001",
            1,
            "The balance is insufficient for the transaction.",
        ),
        ("254700001032", 1032, "Request cancelled by user"),
        (
            "254700002001",
            2001,
            "The initiator information is invalid.",
        ),
        ("254700001037", 1037, "No response from user."),
        ("254700001019", 1019, "Transaction has expired."),
    ];
    for (phone, code, desc) in failures {
        let accepted = client
            .stk_push(&push_params(phone, 5, &cb_url))
            .await
            .unwrap();
        let received = receiver.stk_callback(&accepted.checkout_request_id).await;
        let raw = received.json();
        let cb = &raw["Body"]["stkCallback"];
        assert_eq!(cb["ResultCode"], json!(code), "{phone}: a JSON number");
        assert_eq!(cb["ResultDesc"], desc);
        assert!(cb.get("CallbackMetadata").is_none());
        let parsed = StkCallback::parse(&received.body).unwrap();
        assert_eq!(parsed.result_code().as_str(), code.to_string());
        assert!(
            server.sim.payments().iter().all(|p| p.msisdn != phone),
            "a failure moves no money"
        );
    }

    // A non-numeric code arrives as a string.
    let accepted = client
        .stk_push(&push_params("254700009003", 5, &cb_url))
        .await
        .unwrap();
    let raw = receiver
        .stk_callback(&accepted.checkout_request_id)
        .await
        .json();
    assert_eq!(
        raw["Body"]["stkCallback"]["ResultCode"],
        json!("SFC_IC0003")
    );
}

#[tokio::test]
async fn the_no_answer_number_waits_for_the_prompt_timeout_and_query_follows_the_state() {
    let config = SimConfig {
        prompt_timeout: Duration::from_millis(800),
        ..SimConfig::for_tests()
    };
    let server = start(config).await;
    let receiver = Receiver::start().await;
    let client = client(&server);
    let accepted = client
        .stk_push(&push_params("254700001037", 5, &receiver.url("stk")))
        .await
        .unwrap();

    // Still open: the classic HTTP 500 "being processed", which the client reads as pending.
    match client
        .stk_query(&accepted.checkout_request_id)
        .await
        .unwrap()
    {
        StkQueryAnswer::StillProcessing {
            error_code,
            error_message,
            ..
        } => {
            assert_eq!(
                (error_code.as_str(), error_message.as_str()),
                ("500.001.1001", "The transaction is being processed")
            );
        }
        other => panic!("expected still processing, got {other:?}"),
    }
    // The prompt is still open: a second push to the same phone cannot lock the subscriber.
    let locked = client
        .stk_push(&push_params("254700001037", 5, &receiver.url("stk")))
        .await
        .unwrap_err();
    assert_eq!(locked.error_code(), Some("500.001.1001"));
    assert_eq!(
        locked.error_message(),
        Some(
            "Unable to lock subscriber, a transaction is already in process for the current subscriber"
        )
    );
    assert_eq!(locked.http_status(), Some(500));

    let delivered = server
        .sim
        .wait_for_stk_callback(&accepted.checkout_request_id, WAIT)
        .await
        .unwrap();
    let tx = server
        .sim
        .stk_transaction(&accepted.checkout_request_id)
        .unwrap();
    assert!(
        delivered.time - tx.created_at >= chrono::Duration::milliseconds(800),
        "1037 comes after the prompt timeout"
    );
    match client
        .stk_query(&accepted.checkout_request_id)
        .await
        .unwrap()
    {
        StkQueryAnswer::Result(r) => {
            assert_eq!(r.result_code.as_str(), "1037");
            assert_eq!(r.result_desc, "No response from user.");
        }
        other => panic!("expected a result, got {other:?}"),
    }
    // The prompt closed: the phone can be pushed again.
    client
        .stk_push(&push_params("254700001037", 5, &receiver.url("stk")))
        .await
        .unwrap();
}

#[tokio::test]
async fn stk_query_answers_exactly_like_daraja() {
    let server = start(SimConfig {
        callback_delay: Duration::from_millis(400),
        ..SimConfig::for_tests()
    })
    .await;
    let receiver = Receiver::start().await;
    let token = token(&server).await;
    let pushed = post_json(
        &server,
        "/mpesa/stkpush/v1/processrequest",
        &token,
        &push_body(SUCCESS, 1, &receiver.url("stk")),
    )
    .await;
    assert_eq!(pushed.status, 200);
    assert_eq!(
        pushed.body["ResponseCode"],
        json!("0"),
        "ResponseCode is the string \"0\""
    );
    assert_eq!(
        pushed.body["CustomerMessage"],
        "Success. Request accepted for processing"
    );
    let id = pushed.body["CheckoutRequestID"]
        .as_str()
        .unwrap()
        .to_owned();
    let ts = "20260101120500";
    let query = |id: &str| json!({"BusinessShortCode": SHORTCODE, "Password": password(SHORTCODE, PASSKEY, ts), "Timestamp": ts, "CheckoutRequestID": id});

    let pending = post_json(&server, "/mpesa/stkpushquery/v1/query", &token, &query(&id)).await;
    assert_eq!(
        pending.error(),
        (500, "500.001.1001", "The transaction is being processed")
    );

    server.sim.wait_for_stk_callback(&id, WAIT).await.unwrap();
    let done = post_json(&server, "/mpesa/stkpushquery/v1/query", &token, &query(&id)).await;
    assert_eq!(done.status, 200);
    assert_eq!(
        done.body["ResultCode"],
        json!("0"),
        "a string in query answers"
    );
    assert_eq!(done.body["ResponseCode"], json!("0"));
    assert_eq!(
        done.body["ResponseDescription"],
        "The service request has been accepted successsfully"
    );
    assert_eq!(
        done.body["ResultDesc"],
        "The service request is processed successfully."
    );
    assert_eq!(done.body["CheckoutRequestID"], json!(id));
    assert!(done.body.get("Amount").is_none() && done.body.get("MpesaReceiptNumber").is_none());

    let unknown = post_json(
        &server,
        "/mpesa/stkpushquery/v1/query",
        &token,
        &query("ws_CO_010120261200001708374149"),
    )
    .await;
    assert_eq!(
        unknown.error(),
        (500, "500.001.1001", "The transaction does not Exist")
    );
    let wrong_password = json!({"BusinessShortCode": SHORTCODE, "Password": password(SHORTCODE, PASSKEY, "20260101120501"), "Timestamp": ts, "CheckoutRequestID": id});
    assert_eq!(
        post_json(
            &server,
            "/mpesa/stkpushquery/v1/query",
            &token,
            &wrong_password
        )
        .await
        .error(),
        (500, "500.001.1001", "Wrong credentials")
    );

    // The 4999 shape, when configured.
    let server = start(SimConfig {
        callback_delay: Duration::from_secs(30),
        pending_query_answer: PendingQueryAnswer::ResultCode4999,
        ..SimConfig::for_tests()
    })
    .await;
    let token = common::token(&server).await;
    let pushed = post_json(
        &server,
        "/mpesa/stkpush/v1/processrequest",
        &token,
        &push_body(SUCCESS, 1, &receiver.url("stk")),
    )
    .await;
    let id = pushed.body["CheckoutRequestID"].as_str().unwrap();
    let pending = post_json(&server, "/mpesa/stkpushquery/v1/query", &token, &query(id)).await;
    assert_eq!(pending.status, 200);
    assert_eq!(pending.body["ResultCode"], json!("4999"));
    assert_eq!(
        pending.body["ResultDesc"],
        "The transaction is still under processing"
    );
}

#[tokio::test]
async fn callback_faults_from_the_scenario_table() {
    let server = start(SimConfig::for_tests()).await;
    let receiver = Receiver::start().await;
    let client = client(&server);
    let cb_url = receiver.url("stk");

    // Never sent: only STK Query resolves it.
    let never = client
        .stk_push(&push_params("254700000000", 3, &cb_url))
        .await
        .unwrap();
    let tx = server
        .sim
        .wait_for_stk_outcome(&never.checkout_request_id, WAIT)
        .await
        .unwrap();
    assert_eq!(tx.result_code(), Some("0"));
    let records: Vec<_> = server
        .sim
        .callbacks()
        .into_iter()
        .filter(|c| c.reference == never.checkout_request_id)
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, DeliveryOutcome::Suppressed);
    match client.stk_query(&never.checkout_request_id).await.unwrap() {
        StkQueryAnswer::Result(r) => assert!(r.result_code.is_success()),
        other => panic!("{other:?}"),
    }

    // Twice: two identical deliveries.
    let twice = client
        .stk_push(&push_params("254700000002", 3, &cb_url))
        .await
        .unwrap();
    let id = twice.checkout_request_id.clone();
    let copies = receiver
        .wait_for(2, |r| {
            r.json()["Body"]["stkCallback"]["CheckoutRequestID"] == id.as_str()
        })
        .await;
    assert_eq!(copies[0].body, copies[1].body);
    let records = server
        .sim
        .wait_for_callbacks(WAIT, 2, |c| c.reference == id && c.delivered())
        .await
        .unwrap();
    assert_eq!((records[0].copy, records[1].copy), (1, 2));

    // Late: after the late delay.
    let late = client
        .stk_push(&push_params("254700000003", 3, &cb_url))
        .await
        .unwrap();
    let record = server
        .sim
        .wait_for_stk_callback(&late.checkout_request_id, WAIT)
        .await
        .unwrap();
    let tx = server
        .sim
        .stk_transaction(&late.checkout_request_id)
        .unwrap();
    let settled_at = match tx.status {
        daraja_sim::StkStatus::Final { completed_at, .. } => completed_at,
        _ => panic!("settled"),
    };
    assert!(
        record.time - settled_at >= chrono::Duration::milliseconds(300),
        "sent the late delay after settling"
    );
}

#[tokio::test]
async fn injected_faults_before_the_answer_slow_answers_string_codes_and_dead_receivers() {
    let server = start(SimConfig::for_tests()).await;
    let receiver = Receiver::start().await;
    let client = client(&server);
    let cb_url = receiver.url("stk");

    // Delivered before the synchronous answer: the receiver has it the moment the push returns.
    server.sim.update_faults(|f| {
        f.numbers.insert(
            "254711000001".into(),
            CallbackFaults {
                before_sync_answer: true,
                ..Default::default()
            },
        );
    });
    let early = client
        .stk_push(&push_params("254711000001", 2, &cb_url))
        .await
        .unwrap();
    assert!(
        receiver
            .received()
            .iter()
            .any(|r| r.json()["Body"]["stkCallback"]["CheckoutRequestID"]
                == early.checkout_request_id.as_str()),
        "the callback arrived before the push was answered"
    );

    // A slow answer: the client gives up (outcome unknown), the payment still happens.
    server.sim.update_faults(|f| {
        f.numbers.insert(
            "254711000002".into(),
            CallbackFaults {
                slow_answer_ms: 2_000,
                ..Default::default()
            },
        );
    });
    let impatient = client_with(
        &server,
        daraja_sim::SANDBOX_CONSUMER_KEY,
        daraja_sim::SANDBOX_CONSUMER_SECRET,
        |c| {
            c.request_timeout = Duration::from_millis(300);
        },
    );
    let err = impatient
        .stk_push(&push_params("254711000002", 2, &cb_url))
        .await
        .unwrap_err();
    assert!(matches!(err, DarajaError::Timeout { .. }), "{err:?}");
    assert!(err.may_have_been_processed());
    let record = server
        .sim
        .wait_for_callback(WAIT, |c| {
            c.kind == CallbackKind::StkCallback && c.reference.ends_with("711000002")
        })
        .await
        .unwrap();
    assert!(
        record.delivered(),
        "the callback of the push the client gave up on: {record:?}"
    );
    let logged = server
        .sim
        .requests()
        .into_iter()
        .find(|r| r.body.get().contains("254711000002"))
        .unwrap();
    assert_eq!(logged.answer_delay_ms, 2_000);

    // String ResultCode, globally.
    server
        .sim
        .update_faults(|f| f.global.string_result_code = true);
    let stringy = client
        .stk_push(&push_params("254711000003", 2, &cb_url))
        .await
        .unwrap();
    let raw = receiver.stk_callback(&stringy.checkout_request_id).await;
    assert_eq!(raw.json()["Body"]["stkCallback"]["ResultCode"], json!("0"));
    let parsed = StkCallback::parse(&raw.body).unwrap();
    assert_eq!(parsed.data().result_code, WireCode::text("0"));
    assert!(parsed.to_report().unwrap().result_code.is_success());
    server
        .sim
        .update_faults(|f| f.global.string_result_code = false);

    // The receiver "down": recorded as failed, not retried, nothing arrives.
    server.sim.update_faults(|f| {
        f.numbers.insert(
            "254711000004".into(),
            CallbackFaults {
                receiver_down: true,
                ..Default::default()
            },
        );
    });
    let down = client
        .stk_push(&push_params("254711000004", 2, &cb_url))
        .await
        .unwrap();
    let record = server
        .sim
        .wait_for_callback(WAIT, |c| c.reference == down.checkout_request_id)
        .await
        .unwrap();
    assert_eq!(record.outcome, DeliveryOutcome::ReceiverDown);
    // A receiver that is really down: one failed attempt, no retry.
    let dead_url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hooks/stk", l.local_addr().unwrap())
    };
    let dead = client
        .stk_push(&push_params("254711000005", 2, &dead_url))
        .await
        .unwrap();
    let record = server
        .sim
        .wait_for_callback(WAIT, |c| c.reference == dead.checkout_request_id)
        .await
        .unwrap();
    assert_eq!(record.outcome, DeliveryOutcome::Failed);
    assert!(
        record.error.as_deref().unwrap().contains("connect"),
        "{:?}",
        record.error
    );
    // Both pushes settled long ago; a retry would show up as a second record by now.
    let later = client
        .stk_push(&push_params("254711000006", 2, &cb_url))
        .await
        .unwrap();
    receiver.stk_callback(&later.checkout_request_id).await;
    for id in [&down.checkout_request_id, &dead.checkout_request_id] {
        assert_eq!(
            server
                .sim
                .callbacks()
                .iter()
                .filter(|c| &c.reference == id)
                .count(),
            1,
            "no retry for {id}"
        );
        assert!(
            receiver
                .received()
                .iter()
                .all(|r| r.json()["Body"]["stkCallback"]["CheckoutRequestID"] != id.as_str())
        );
    }

    // N copies, globally.
    server.sim.update_faults(|f| f.global.copies = 3);
    let thrice = client
        .stk_push(&push_params("254711000007", 2, &cb_url))
        .await
        .unwrap();
    let id = thrice.checkout_request_id.clone();
    receiver
        .wait_for(3, |r| {
            r.json()["Body"]["stkCallback"]["CheckoutRequestID"] == id.as_str()
        })
        .await;
}

#[tokio::test]
async fn endpoints_fail_on_demand_in_rust_and_over_http() {
    let server = start(SimConfig::for_tests()).await;
    let receiver = Receiver::start().await;
    let client = client(&server);
    client.check_credentials().await.unwrap();
    server
        .sim
        .set_faults(Faults::none().fail_next(Api::StkPush, 2, FailureAnswer::SpikeArrest));
    for _ in 0..2 {
        let e = client
            .stk_push(&push_params("254722000001", 1, &receiver.url("stk")))
            .await
            .unwrap_err();
        assert_eq!(
            (e.http_status(), e.error_code(), e.error_message()),
            (
                Some(500),
                Some("500.003.02"),
                Some("Error Occurred: Spike Arrest Violation")
            )
        );
        assert!(e.is_throttled());
    }
    client
        .stk_push(&push_params("254722000001", 1, &receiver.url("stk")))
        .await
        .unwrap();
    assert!(server.sim.faults().endpoints.is_empty(), "used up");

    // Over HTTP: an empty 503 on the next query; the client cannot tell what happened.
    let posted = http()
        .post(format!("{}/simulator/faults", server.base_url))
        .json(&json!({"endpoints": [{"endpoint": "stk_query", "count": 1, "answer": "empty503"}], "global": {"suppress": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let current = get(&server, "/simulator/faults").await.body;
    assert_eq!(current["global"]["suppress"], json!(true));
    let e = client
        .stk_query("ws_CO_010120261200001722000001")
        .await
        .unwrap_err();
    assert!(
        matches!(e, DarajaError::UnexpectedStatus { status: 503, .. }),
        "{e:?}"
    );
    let bad = http()
        .post(format!("{}/simulator/faults", server.base_url))
        .json(&json!({"global": {"supress": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.status(),
        422,
        "a misspelt fault is refused, not ignored"
    );

    // Global suppression over HTTP: no callback at all.
    let quiet = client
        .stk_push(&push_params("254722000002", 1, &receiver.url("stk")))
        .await
        .unwrap();
    let record = server
        .sim
        .wait_for_callback(WAIT, |c| c.reference == quiet.checkout_request_id)
        .await
        .unwrap();
    assert_eq!(record.outcome, DeliveryOutcome::Suppressed);
}

#[tokio::test]
async fn tokens_expire_and_a_new_token_invalidates_the_previous_one() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let server = start(SimConfig {
        clock: clock.clone(),
        ..SimConfig::for_tests()
    })
    .await;
    let receiver = Receiver::start().await;
    let body = push_body(SUCCESS, 1, &receiver.url("stk"));
    let push = "/mpesa/stkpush/v1/processrequest";

    let first = token(&server).await;
    assert_eq!(post_json(&server, push, &first, &body).await.status, 200);
    let second = token(&server).await;
    assert_eq!(
        post_json(&server, push, &first, &body).await.error(),
        (404, "404.001.03", "Invalid Access Token")
    );

    // Expiry after the configured lifetime (3600 s), with each product's own answer.
    clock.advance(chrono::Duration::seconds(3599));
    let valid_one_second_before =
        post_json(&server, "/mpesa/stkpushquery/v1/query", &second, &json!({})).await;
    assert_ne!(
        valid_one_second_before.body["errorCode"],
        json!("404.001.03")
    );
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(
        post_json(&server, push, &second, &body).await.error(),
        (404, "404.001.03", "Invalid Access Token")
    );
    let b2c = post_json(&server, "/mpesa/b2c/v3/paymentrequest", &second, &json!({})).await;
    assert_eq!(
        b2c.error(),
        (
            401,
            "401.002.01",
            format!("Error Occurred - Invalid Access Token - {second}").as_str()
        )
    );
    assert_eq!(
        post_json(&server, "/mpesa/c2b/v2/registerurl", &second, &json!({}))
            .await
            .error(),
        (400, "400.003.01", "Invalid Access Token")
    );
    assert_eq!(
        post_json(
            &server,
            "/mpesa/transactionstatus/v1/query",
            &second,
            &json!({})
        )
        .await
        .error(),
        (400, "400.003.01", "Invalid Access Token")
    );
    assert_eq!(
        post_json(
            &server,
            "/mpesa/accountbalance/v1/query",
            &second,
            &json!({})
        )
        .await
        .error()
        .1,
        "401.002.01"
    );
    assert_eq!(
        post_json(&server, "/mpesa/reversal/v1/request", &second, &json!({}))
            .await
            .error()
            .1,
        "404.001.03"
    );
    let missing = post_raw(&server, push, None, "application/json", "{}").await;
    assert_eq!(
        missing.error(),
        (404, "404.001.04", "Invalid Authentication Header")
    );

    // The project's client recovers: its cached token was invalidated by another client's
    // request, Daraja says 404.001.03, it fetches a new token and retries once.
    let a = client(&server);
    let b = client(&server);
    a.stk_push(&push_params("254733000001", 1, &receiver.url("stk")))
        .await
        .unwrap();
    b.check_credentials().await.unwrap();
    a.stk_push(&push_params("254733000002", 1, &receiver.url("stk")))
        .await
        .unwrap();
    let log = server.sim.requests();
    let statuses: Vec<(String, u16)> = log
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|r| (r.path.clone(), r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (push.to_owned(), 404),
            ("/oauth/v1/generate".to_owned(), 200),
            (push.to_owned(), 200)
        ],
        "refused, new token, retried"
    );

    // With invalidation off, both tokens stay valid.
    let server = start(SimConfig {
        invalidate_previous_token: false,
        ..SimConfig::for_tests()
    })
    .await;
    let one = token(&server).await;
    let two = token(&server).await;
    for (t, phone) in [(&one, "254744000001"), (&two, "254744000002")] {
        assert_eq!(
            post_json(&server, push, t, &push_body(phone, 1, &receiver.url("stk")))
                .await
                .status,
            200
        );
    }
}

#[tokio::test]
async fn each_validation_error_has_darajas_code_message_and_status() {
    let server = start(SimConfig {
        callback_delay: Duration::from_secs(30),
        ..SimConfig::for_tests()
    })
    .await;
    let token = token(&server).await;
    let cb = "http://127.0.0.1:9/hooks/stk";
    let push = "/mpesa/stkpush/v1/processrequest";
    let with = |field: &str, value: Value| {
        let mut b = push_body("254755000001", 1, cb);
        if value.is_null() {
            b.as_object_mut().unwrap().remove(field);
        } else {
            b[field] = value;
        }
        b
    };
    let invalid = |field: &str| format!("Bad Request - Invalid {field}");
    let cases: Vec<(Value, u16, &str, String)> = vec![
        (
            with("PhoneNumber", json!("0708374149")),
            400,
            "400.002.02",
            invalid("PhoneNumber"),
        ),
        (
            with("PhoneNumber", json!("+254708374149")),
            400,
            "400.002.02",
            invalid("PhoneNumber"),
        ),
        (
            with("PhoneNumber", json!("255708374149")),
            400,
            "400.002.02",
            invalid("PhoneNumber"),
        ),
        (
            with("PhoneNumber", Value::Null),
            400,
            "400.002.02",
            invalid("PhoneNumber"),
        ),
        (
            with("Amount", json!(1.5)),
            400,
            "400.002.02",
            invalid("Amount"),
        ),
        (
            with("Amount", json!("10.50")),
            400,
            "400.002.02",
            invalid("Amount"),
        ),
        (
            with("Amount", json!(0)),
            400,
            "400.002.02",
            invalid("Amount"),
        ),
        (
            with("Amount", json!(250_001)),
            400,
            "400.002.02",
            invalid("Amount"),
        ),
        (
            with("CallBackURL", json!("https://example.com/mpesa/cb")),
            400,
            "400.002.02",
            invalid("CallBackURL"),
        ),
        (
            with("CallBackURL", json!("https://example.com/stkquery")),
            400,
            "400.002.02",
            invalid("CallBackURL"),
        ),
        (
            with("CallBackURL", json!("https://example.com/cb ")),
            400,
            "400.002.02",
            invalid("CallBackURL"),
        ),
        (
            with("CallBackURL", json!("ftp://example.com/cb")),
            400,
            "400.002.02",
            invalid("CallBackURL"),
        ),
        // (Long AccountReference / TransactionDesc: see tests/fidelity.rs, item 7.)
        (
            with("Amount", json!(1.0)),
            400,
            "400.002.02",
            invalid("Amount"),
        ),
        (
            with("Timestamp", json!("2026-01-01 12:00")),
            400,
            "400.002.02",
            invalid("Timestamp"),
        ),
        (
            with("BusinessShortCode", json!("17")),
            400,
            "400.002.02",
            invalid("BusinessShortCode"),
        ),
        // Field errors come before the shortcode and password checks.
        (
            {
                let mut b = with("Amount", json!(1.5));
                b["BusinessShortCode"] = json!("999999");
                b
            },
            400,
            "400.002.02",
            invalid("Amount"),
        ),
        (
            {
                let mut b = with("BusinessShortCode", json!("999999"));
                b["Password"] = json!(password("999999", PASSKEY, "20260101120000"));
                b["PartyB"] = json!("999999");
                b
            },
            500,
            "500.001.1001",
            "Merchant does not exist".into(),
        ),
        (
            with(
                "Password",
                json!(password(SHORTCODE, PASSKEY, "20260101120001")),
            ),
            500,
            "500.001.1001",
            "Wrong credentials".into(),
        ),
        (
            with(
                "Password",
                json!(password(SHORTCODE, "not-the-passkey", "20260101120000")),
            ),
            500,
            "500.001.1001",
            "Wrong credentials".into(),
        ),
    ];
    for (body, status, code, message) in cases {
        let a = post_json(&server, push, &token, &body).await;
        assert_eq!(a.error(), (status, code, message.as_str()), "{body}");
    }
    // Numbers as strings and strings as numbers are both accepted.
    let mixed = json!({
        "BusinessShortCode": 174379, "Password": password(SHORTCODE, PASSKEY, "20260101120000"), "Timestamp": "20260101120000",
        "TransactionType": "CustomerPayBillOnline", "Amount": "1", "PartyA": 254755000002u64, "PartyB": "174379",
        "PhoneNumber": "254755000002", "CallBackURL": cb, "AccountReference": "A1", "TransactionDesc": "x"
    });
    assert_eq!(post_json(&server, push, &token, &mixed).await.status, 200);

    // Payload and transport errors.
    let not_json = post_raw(
        &server,
        push,
        Some(&token),
        "application/json",
        "{\"BusinessShortCode\": ",
    )
    .await;
    assert_eq!(
        not_json.error(),
        (400, "400.002.05", "Invalid Request Payload")
    );
    let form = post_raw(
        &server,
        push,
        Some(&token),
        "application/x-www-form-urlencoded",
        "BusinessShortCode=174379&Amount=1",
    )
    .await;
    assert_eq!(
        form.error(),
        (400, "400.002.02", "Bad Request - Invalid BusinessShortCode")
    );
    // The token is checked before the body.
    let both_wrong = post_raw(
        &server,
        push,
        Some("not-a-token"),
        "application/json",
        "{oops",
    )
    .await;
    assert_eq!(
        both_wrong.error(),
        (404, "404.001.03", "Invalid Access Token")
    );
    let wrong_path = post_json(
        &server,
        "/mpesa/stkpush/v2/processrequest",
        &token,
        &json!({}),
    )
    .await;
    assert_eq!(
        wrong_path.error(),
        (404, "404.001.01", "Resource not found")
    );
    let wrong_method = get(&server, push).await;
    assert_eq!(wrong_method.error(), (405, "405.001", "Method Not Allowed"));
    // Unlogged inspection paths aside, every Daraja request is in the log with its answer.
    let last = server.sim.requests().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str(), last.status),
        ("GET", push, 405)
    );

    // Production rules: https only.
    let production = start(SimConfig {
        environment: SimEnvironment::Production,
        ..SimConfig::for_tests()
    })
    .await;
    let t = common::token(&production).await;
    assert_eq!(
        post_json(&production, push, &t, &push_body("254755000003", 1, cb))
            .await
            .error()
            .2,
        "Bad Request - Invalid CallBackURL"
    );
    assert_eq!(
        post_json(
            &production,
            push,
            &t,
            &push_body("254755000003", 1, "https://127.0.0.1:9/hooks/stk")
        )
        .await
        .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_pushes_all_call_back_and_memory_stays_bounded() {
    let config = SimConfig {
        callback_delay: Duration::ZERO,
        log_capacity: 50,
        transaction_capacity: 200,
        ..SimConfig::for_tests()
    };
    let server = start(config).await;
    let receiver = Receiver::start().await;
    let client = client(&server);
    client.check_credentials().await.unwrap();
    let started = std::time::Instant::now();
    let mut pushes = tokio::task::JoinSet::new();
    for i in 0..600u32 {
        let (client, url) = (client.clone(), receiver.url("stk"));
        pushes.spawn(async move {
            client
                .stk_push(&push_params(&format!("2547990{i:05}"), 1, &url))
                .await
                .unwrap()
                .checkout_request_id
        });
    }
    let ids = pushes.join_all().await;
    receiver.wait_for(600, |r| r.path == "/hooks/stk").await;
    let elapsed = started.elapsed();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 600, "every CheckoutRequestID is unique");
    assert!(
        server.sim.requests().len() <= 50 && server.sim.callbacks().len() <= 50,
        "logs are ring buffers"
    );
    assert!(
        server.sim.stk_transactions().len() <= 200 && server.sim.payments().len() <= 200,
        "old transactions are evicted"
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "600 pushes and callbacks took {elapsed:?}"
    );
}
