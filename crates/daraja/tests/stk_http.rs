//! STK Push and STK Query against wiremock: the exact requests, and every kind of answer.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use daraja::{
    Api, DarajaClient, DarajaError, ManualClock, StkPushParams, StkQueryAnswer, TransactionType,
};
use mpesa_domain::{AccountReference, Amount, AmountBounds, Msisdn, QueryVerdict, TransactionDesc};
use serde_json::json;
use url::Url;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const VECTOR_PASSWORD: &str = "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMjEwNjI4MDkyNDA4";

fn push_params() -> StkPushParams {
    StkPushParams {
        phone: Msisdn::parse("0708 374 149").unwrap(),
        amount: Amount::new(1, AmountBounds::default()).unwrap(),
        account_reference: AccountReference::parse("INV0042").unwrap(),
        transaction_desc: TransactionDesc::derive_from("Order 42"),
        callback_url: Url::parse("https://example.com/hooks/stk/3f9c1d").unwrap(),
    }
}

async fn server_with_token() -> MockServer {
    let server = MockServer::start().await;
    token_mock("tok").mount(&server).await;
    server
}

fn pinned_client(server: &MockServer) -> DarajaClient {
    client_with_clock(config(server), Arc::new(ManualClock::new(vector_instant())))
}

#[tokio::test]
async fn stk_push_sends_exactly_what_daraja_documents() {
    let server = server_with_token().await;
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpush/v1/processrequest"))
        .and(header("authorization", "Bearer tok"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "BusinessShortCode": "174379",
            "Password": VECTOR_PASSWORD,
            "Timestamp": "20210628092408",
            "TransactionType": "CustomerPayBillOnline",
            "Amount": 1,
            "PartyA": "254708374149",
            "PartyB": "174379",
            "PhoneNumber": "254708374149",
            "CallBackURL": "https://example.com/hooks/stk/3f9c1d",
            "AccountReference": "INV0042",
            "TransactionDesc": "Order 42"
        })))
        .respond_with(stk_accepted())
        .expect(1)
        .mount(&server)
        .await;
    let accepted = pinned_client(&server)
        .stk_push(&push_params())
        .await
        .unwrap();
    assert_eq!(
        accepted.merchant_request_id,
        "2654-4b64-97ff-b827b542881d3130"
    );
    assert_eq!(
        accepted.checkout_request_id,
        "ws_CO_10072024091526171708374149"
    );
    assert_eq!(accepted.response_code, "0");
    assert_eq!(
        accepted.customer_message,
        "Success. Request accepted for processing"
    );
    server.verify().await;
}

#[tokio::test]
async fn buy_goods_sends_the_till_as_party_b() {
    let server = server_with_token().await;
    let mut config = config(&server);
    config.transaction_type = TransactionType::CustomerBuyGoodsOnline;
    config.party_b = Some("5432109".into());
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpush/v1/processrequest"))
        .respond_with(stk_accepted())
        .expect(1)
        .mount(&server)
        .await;
    DarajaClient::new(config)
        .unwrap()
        .stk_push(&push_params())
        .await
        .unwrap();
    let sent: serde_json::Value = requests_to(&server, "/mpesa/stkpush/v1/processrequest").await[0]
        .body_json()
        .unwrap();
    assert_eq!(sent["TransactionType"], "CustomerBuyGoodsOnline");
    assert_eq!(sent["BusinessShortCode"], "174379");
    assert_eq!(sent["PartyB"], "5432109");
    // The password is made from the BusinessShortCode, never the till.
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(sent["Password"].as_str().unwrap())
        .unwrap();
    assert!(
        String::from_utf8(decoded)
            .unwrap()
            .starts_with("174379bfb279")
    );
}

#[tokio::test]
async fn a_timed_out_push_is_an_unknown_outcome_and_is_not_retried() {
    let server = server_with_token().await;
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpush/v1/processrequest"))
        .respond_with(stk_accepted().set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.request_timeout = Duration::from_millis(300);
    let client = DarajaClient::new(config).unwrap();
    let err = client.stk_push(&push_params()).await.unwrap_err();
    assert!(
        matches!(
            err,
            DarajaError::Timeout {
                api: Api::StkPush,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.may_have_been_processed());
    assert!(!err.is_not_sent());
    assert_eq!(
        requests_to(&server, "/mpesa/stkpush/v1/processrequest")
            .await
            .len(),
        1
    );
    assert_eq!(client.metrics().count(Api::StkPush, "timeout"), 1);
    server.verify().await;
}

#[tokio::test]
async fn error_answers_are_told_apart_and_never_retried() {
    struct Case {
        answer: ResponseTemplate,
        check: fn(&DarajaError),
    }
    let cases = [
        Case {
            answer: envelope(500, "500.001.1001", "Wrong credentials"),
            check: |e| {
                assert!(matches!(e, DarajaError::Refused { status: 500, .. }));
                assert_eq!(e.error_code(), Some("500.001.1001"));
                assert_eq!(e.error_message(), Some("Wrong credentials"));
                assert!(
                    !e.may_have_been_processed(),
                    "Daraja answered with its envelope: refused"
                );
            },
        },
        Case {
            answer: envelope(400, "400.002.02", "Bad Request - Invalid PhoneNumber"),
            check: |e| {
                assert_eq!(e.http_status(), Some(400));
                assert!(!e.may_have_been_processed());
            },
        },
        Case {
            answer: ResponseTemplate::new(503),
            check: |e| {
                assert!(matches!(
                    e,
                    DarajaError::UnexpectedStatus { status: 503, .. }
                ));
                assert!(
                    e.may_have_been_processed(),
                    "a 5xx without Daraja's envelope is an unknown outcome"
                );
            },
        },
        Case {
            answer: ResponseTemplate::new(500)
                .set_body_string(r#"{"Envelope":{"Body":{"Fault":{"faultcode":"soap:Server"}}}}"#),
            check: |e| {
                assert!(matches!(
                    e,
                    DarajaError::UnexpectedStatus { status: 500, .. }
                ));
                assert!(e.may_have_been_processed());
            },
        },
        Case {
            answer: ResponseTemplate::new(429),
            check: |e| {
                assert!(e.is_throttled());
                assert!(!e.may_have_been_processed());
            },
        },
        Case {
            answer: envelope(500, "500.003.02", "Error Occurred: Spike Arrest Violation"),
            check: |e| {
                assert!(e.is_throttled());
                assert!(!e.may_have_been_processed());
            },
        },
        Case {
            answer: ResponseTemplate::new(200).set_body_string("{\"MerchantRequestID\": \"x\", "),
            check: |e| {
                assert!(matches!(e, DarajaError::Malformed { status: 200, .. }));
                assert!(
                    e.may_have_been_processed(),
                    "a 200 we cannot read may be an accepted push"
                );
            },
        },
        Case {
            answer: ResponseTemplate::new(200)
                .set_body_raw("<html><body>Daraja portal</body></html>", "text/html"),
            check: |e| assert!(matches!(e, DarajaError::Malformed { .. })),
        },
        Case {
            answer: ResponseTemplate::new(200).set_body_json(json!({"ResponseCode": "0"})),
            check: |e| {
                assert!(
                    matches!(e, DarajaError::Malformed { .. }),
                    "no CheckoutRequestID"
                )
            },
        },
        Case {
            answer: ResponseTemplate::new(200).set_body_json(json!({
                "MerchantRequestID": "m", "CheckoutRequestID": "ws_CO_1", "ResponseCode": "1",
                "ResponseDescription": "Rejected"
            })),
            check: |e| {
                assert_eq!(e.error_code(), Some("1"));
                assert!(!e.may_have_been_processed());
            },
        },
    ];
    for case in cases {
        let server = server_with_token().await;
        Mock::given(method("POST"))
            .and(path("/mpesa/stkpush/v1/processrequest"))
            .respond_with(case.answer)
            .expect(1)
            .mount(&server)
            .await;
        let err = client(&server).stk_push(&push_params()).await.unwrap_err();
        (case.check)(&err);
        assert_eq!(err.api(), Some(Api::StkPush));
        server.verify().await;
    }
}

#[tokio::test]
async fn a_connection_never_made_is_not_sent() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = daraja::DarajaConfig::sandbox(CONSUMER_KEY.into(), CONSUMER_SECRET.into());
    config.base_url = Some(Url::parse(&format!("http://127.0.0.1:{port}")).unwrap());
    let err = DarajaClient::new(config)
        .unwrap()
        .stk_push(&push_params())
        .await
        .unwrap_err();
    assert!(matches!(err, DarajaError::NotSent { .. }), "{err:?}");
    assert!(err.is_not_sent());
    assert!(!err.may_have_been_processed());
}

#[tokio::test]
async fn stk_query_sends_password_and_reads_every_answer() {
    let server = server_with_token().await;
    let query = |id: &str, answer: ResponseTemplate| {
        Mock::given(method("POST"))
            .and(path("/mpesa/stkpushquery/v1/query"))
            .and(header("authorization", "Bearer tok"))
            .and(body_json(json!({
                "BusinessShortCode": "174379",
                "Password": VECTOR_PASSWORD,
                "Timestamp": "20210628092408",
                "CheckoutRequestID": id
            })))
            .respond_with(answer)
            .expect(1)
    };
    query(
        "ws_paid",
        query_result("0", "The service request is processed successfully."),
    )
    .mount(&server)
    .await;
    query(
        "ws_cancel",
        query_result("1032", "Request cancelled by user"),
    )
    .mount(&server)
    .await;
    query(
        "ws_4999",
        query_result("4999", "The transaction is still under processing"),
    )
    .mount(&server)
    .await;
    query(
        "ws_busy",
        envelope(500, "500.001.1001", "The transaction is being processed"),
    )
    .mount(&server)
    .await;
    query("ws_empty", envelope(500, "500.001.1001", ""))
        .mount(&server)
        .await;
    query(
        "ws_none",
        envelope(500, "500.001.1001", "The transaction does not Exist"),
    )
    .mount(&server)
    .await;
    query(
        "ws_bad",
        ResponseTemplate::new(200).set_body_json(json!({"ResponseCode": "0"})),
    )
    .mount(&server)
    .await;
    let client = pinned_client(&server);

    let StkQueryAnswer::Result(paid) = client.stk_query("ws_paid").await.unwrap() else {
        panic!("a result")
    };
    assert!(paid.result_code.is_success());
    assert_eq!(paid.merchant_request_id.as_deref(), Some("22205-34066-1"));

    let cancelled = client.stk_query("ws_cancel").await.unwrap();
    assert_eq!(cancelled.to_report().result_code.as_str(), "1032");
    assert_eq!(
        cancelled.to_report().result_code.query_verdict(),
        QueryVerdict::Final(mpesa_domain::FinalOutcome::Cancelled)
    );

    // 4999 is a result code; the domain decides it means "still processing".
    let StkQueryAnswer::Result(pending) = client.stk_query("ws_4999").await.unwrap() else {
        panic!("a result")
    };
    assert_eq!(pending.result_code.as_str(), "4999");
    assert_eq!(
        pending.result_code.query_verdict(),
        QueryVerdict::StillProcessing
    );

    for id in ["ws_busy", "ws_empty"] {
        let answer = client.stk_query(id).await.unwrap();
        assert!(
            matches!(answer, StkQueryAnswer::StillProcessing { .. }),
            "{id}: {answer:?}"
        );
        assert_eq!(
            answer.to_report().result_code.query_verdict(),
            QueryVerdict::StillProcessing
        );
    }

    let missing = client.stk_query("ws_none").await.unwrap_err();
    assert_eq!(
        missing.error_message(),
        Some("The transaction does not Exist")
    );

    assert!(matches!(
        client.stk_query("ws_bad").await.unwrap_err(),
        DarajaError::Malformed { .. }
    ));
    server.verify().await;
}

#[tokio::test]
async fn refused_requests_never_reach_daraja() {
    let server = MockServer::start().await;
    let client = client(&server);
    let mut too_much = push_params();
    too_much.amount = Amount::from_stored(250_001);
    let err = client.stk_push(&too_much).await.unwrap_err();
    assert!(
        matches!(err, DarajaError::Invalid(daraja::InvalidRequest::Amount(_))),
        "{err:?}"
    );

    let mut forbidden = push_params();
    forbidden.callback_url = Url::parse("https://example.com/mpesa/callback").unwrap();
    let err = client.stk_push(&forbidden).await.unwrap_err();
    let DarajaError::Invalid(invalid) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(invalid.field(), Some("CallBackURL"));
    assert!(err.to_string().contains("mpesa"), "{err}");
    assert!(err.is_not_sent());

    assert!(client.stk_query("  ").await.is_err());
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "not even a token request"
    );
}

#[tokio::test]
async fn production_refuses_plain_http_callbacks_before_sending() {
    let server = MockServer::start().await;
    let mut config = config(&server);
    config.environment = daraja::Environment::Production;
    config.shortcode = "600000".into();
    config.passkey = secrecy::SecretString::from("a-production-passkey");
    let client = DarajaClient::new(config).unwrap();
    let mut params = push_params();
    params.callback_url = Url::parse("http://example.com/hooks/stk/3f9c1d").unwrap();
    let err = client.stk_push(&params).await.unwrap_err();
    assert!(matches!(
        err,
        DarajaError::Invalid(daraja::InvalidRequest::Url {
            problem: daraja::UrlProblem::HttpsRequired,
            ..
        })
    ));
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// A server that answers the token request, then reads the push and hangs up without a word.
async fn hang_up_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let posts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = posts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                if request.starts_with(b"GET /oauth/v1/generate") {
                    let body = r#"{"access_token":"tok","expires_in":"3599"}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                } else {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Drop the connection: the request arrived, no answer leaves.
                }
            });
        }
    });
    (base, posts)
}

#[tokio::test]
async fn a_connection_broken_after_sending_is_an_unknown_outcome() {
    let (base, posts) = hang_up_server().await;
    let mut config = daraja::DarajaConfig::sandbox(CONSUMER_KEY.into(), CONSUMER_SECRET.into());
    config.base_url = Some(Url::parse(&base).unwrap());
    let err = DarajaClient::new(config)
        .unwrap()
        .stk_push(&push_params())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DarajaError::Transport {
                api: Api::StkPush,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.may_have_been_processed());
    assert_eq!(
        posts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "sent once, never again"
    );
}
