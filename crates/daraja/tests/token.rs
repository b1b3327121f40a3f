//! The OAuth token manager against wiremock: one token request however many callers wait,
//! refresh before expiry (once), never use a token after it expired, and one retry after an
//! invalid-token refusal.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use daraja::{Api, DarajaError, ManualClock, StkPushParams, StkQueryAnswer};
use mpesa_domain::{AccountReference, Amount, AmountBounds, Msisdn, TransactionDesc};
use url::Url;
use wiremock::matchers::{bearer_token, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn push_params() -> StkPushParams {
    StkPushParams {
        phone: Msisdn::parse(PHONE).unwrap(),
        amount: Amount::new(1, AmountBounds::default()).unwrap(),
        account_reference: AccountReference::parse("INV0042").unwrap(),
        transaction_desc: TransactionDesc::parse("Order 42").unwrap(),
        callback_url: Url::parse("https://example.com/hooks/stk/3f9c1d").unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_on_a_cold_cache_make_one_token_request() {
    let server = MockServer::start().await;
    // The delay keeps the token request in flight while all the callers pile up behind it.
    token_request()
        .respond_with(token_answer("tok-cold").set_delay(Duration::from_millis(300)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpushquery/v1/query"))
        .and(bearer_token("tok-cold"))
        .respond_with(query_result(
            "0",
            "The service request is processed successfully.",
        ))
        .expect(1000)
        .mount(&server)
        .await;
    let client = client(&server);

    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.stk_query("ws_CO_13012021093521236557").await })
        })
        .collect();
    for call in calls {
        assert!(matches!(
            call.await.unwrap().unwrap(),
            StkQueryAnswer::Result(_)
        ));
    }
    let metrics = client.metrics();
    assert_eq!(metrics.token_requests, 1);
    assert_eq!(metrics.count(Api::StkQuery, "ok"), 1000);
    verify_and_drop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_mid_flight_is_refreshed_once() {
    let server = MockServer::start().await;
    numbered_token_mock().expect(2).mount(&server).await;
    // Answers to the first token are slow, so they are still in flight when it expires.
    let (slow, mut first_arrived) = Counting::new(
        query_result("0", "The service request is processed successfully.")
            .set_delay(Duration::from_millis(300)),
    );
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpushquery/v1/query"))
        .and(bearer_token("tok-1"))
        .respond_with(slow)
        .expect(50)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpushquery/v1/query"))
        .and(bearer_token("tok-2"))
        .respond_with(query_result(
            "0",
            "The service request is processed successfully.",
        ))
        .expect(100)
        .mount(&server)
        .await;
    let clock = Arc::new(ManualClock::new(vector_instant()));
    let client = client_with_clock(config(&server), clock.clone());

    let first: Vec<_> = (0..50)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.stk_query("ws_CO_1").await })
        })
        .collect();
    first_arrived.wait_for(|n| *n == 50).await.unwrap();
    // 3599 s lifetime, 300 s margin: at +3400 s the token must be refreshed (it is not expired).
    clock.advance(chrono::Duration::seconds(3400));
    let second: Vec<_> = (0..100)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.stk_query("ws_CO_1").await })
        })
        .collect();
    for call in first.into_iter().chain(second) {
        call.await.unwrap().unwrap();
    }
    assert_eq!(client.metrics().token_requests, 2);
    verify_and_drop(server).await;
}

#[tokio::test]
async fn a_failed_refresh_uses_the_old_token_only_until_it_expires() {
    let server = MockServer::start().await;
    token_mock("tok-old")
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/oauth/v1/generate"))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpushquery/v1/query"))
        .and(bearer_token("tok-old"))
        .respond_with(query_result("1032", "Request cancelled by user"))
        .expect(2)
        .mount(&server)
        .await;
    let clock = Arc::new(ManualClock::new(vector_instant()));
    let client = client_with_clock(config(&server), clock.clone());

    client.stk_query("ws_CO_1").await.unwrap();
    // Inside the refresh margin: the refresh fails (503) but the token is still valid.
    clock.advance(chrono::Duration::seconds(3500));
    client.stk_query("ws_CO_1").await.unwrap();
    // Past expiry: the old token is never sent again.
    clock.advance(chrono::Duration::seconds(100));
    let err = client.stk_query("ws_CO_1").await.unwrap_err();
    assert_eq!(err.api(), Some(Api::OAuth));
    assert!(matches!(
        err,
        DarajaError::UnexpectedStatus { status: 503, .. }
    ));
    assert!(!err.may_have_been_processed(), "no query was sent");
    assert_eq!(
        requests_to(&server, "/mpesa/stkpushquery/v1/query")
            .await
            .len(),
        2
    );
    verify_and_drop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_share_a_failed_token_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/oauth/v1/generate"))
        .respond_with(
            envelope(400, "400.008.01", "Invalid Authentication passed")
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.check_credentials().await })
        })
        .collect();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.error_code(), Some("400.008.01"));
        assert_eq!(err.api(), Some(Api::OAuth));
    }
    let metrics = client.metrics();
    assert_eq!(metrics.token_requests, 1);
    assert_eq!(metrics.token_failures, 1);
    verify_and_drop(server).await;
}

#[tokio::test]
async fn an_invalid_token_answer_is_retried_once_with_a_new_token() {
    let server = MockServer::start().await;
    numbered_token_mock().expect(2).mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpush/v1/processrequest"))
        .and(bearer_token("tok-1"))
        .respond_with(envelope(404, "404.001.03", "Invalid Access Token"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpush/v1/processrequest"))
        .and(bearer_token("tok-2"))
        .respond_with(stk_accepted())
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let accepted = client.stk_push(&push_params()).await.unwrap();
    assert_eq!(
        accepted.checkout_request_id,
        "ws_CO_10072024091526171708374149"
    );
    assert_eq!(
        requests_to(&server, "/mpesa/stkpush/v1/processrequest")
            .await
            .len(),
        2
    );
    assert_eq!(requests_to(&server, "/oauth/v1/generate").await.len(), 2);
    let metrics = client.metrics();
    assert_eq!(metrics.count(Api::StkPush, "404.001.03"), 1);
    assert_eq!(metrics.count(Api::StkPush, "ok"), 1);
    verify_and_drop(server).await;
}

#[tokio::test]
async fn every_invalid_token_code_triggers_the_retry_but_only_once() {
    for (status, code, message) in [
        (
            401,
            "401.002.01",
            "Error Occurred - Invalid Access Token - ",
        ),
        (400, "400.003.01", "Invalid Access Token"),
        (
            401,
            "401.003.01",
            "Error Occurred - Invalid Access Token - Invalid API call as no apiproduct match found",
        ),
    ] {
        let server = MockServer::start().await;
        numbered_token_mock().expect(2).mount(&server).await;
        Mock::given(method("POST"))
            .and(path("/mpesa/stkpushquery/v1/query"))
            .respond_with(RefuseQuotingToken {
                status,
                code,
                message,
            })
            .expect(2)
            .mount(&server)
            .await;
        let client = client(&server);
        let err = client.stk_query("ws_CO_1").await.unwrap_err();
        assert_eq!(err.error_code(), Some(code));
        assert!(err.is_invalid_token());
        // Daraja quotes the token back in 401.002.01; it must not survive into the error.
        assert!(!err.to_string().contains("tok-"), "{err}");
        server.verify().await;
    }
}

/// Refuses the call, appending the bearer token it was sent when the message ends with "- "
/// (as Daraja's `401.002.01` does).
struct RefuseQuotingToken {
    status: u16,
    code: &'static str,
    message: &'static str,
}

impl Respond for RefuseQuotingToken {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let token = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let message = if self.message.ends_with("- ") {
            format!("{}{token}", self.message)
        } else {
            self.message.to_owned()
        };
        envelope(self.status, self.code, &message)
    }
}

#[tokio::test]
async fn a_late_rejection_does_not_drop_a_newer_token() {
    let server = MockServer::start().await;
    numbered_token_mock().expect(2).mount(&server).await;
    // tok-1 is refused everywhere; tok-2 works.
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpushquery/v1/query"))
        .and(bearer_token("tok-1"))
        .respond_with(
            envelope(404, "404.001.03", "Invalid Access Token")
                .set_delay(Duration::from_millis(100)),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpushquery/v1/query"))
        .and(bearer_token("tok-2"))
        .respond_with(query_result("0", "ok"))
        .mount(&server)
        .await;
    let client = client(&server);
    // Twenty calls all see tok-1 refused; only the first drop counts, so one new token serves all.
    client.check_credentials().await.unwrap();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.stk_query("ws_CO_1").await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(client.metrics().token_requests, 2);
    verify_and_drop(server).await;
}
