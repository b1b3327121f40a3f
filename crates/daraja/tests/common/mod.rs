//! Shared test helpers: a client pointed at a wiremock server, token mocks, and a responder
//! that counts requests so tests can await "N requests arrived" instead of sleeping.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, TimeZone as _, Utc};
use daraja::{DarajaClient, DarajaConfig, ManualClock};
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::watch;
use url::Url;
use wiremock::matchers::{basic_auth, method, path, query_param};
use wiremock::{Mock, MockBuilder, MockServer, Request, Respond, ResponseTemplate};

pub const CONSUMER_KEY: &str = "ck-test-0123456789";
pub const CONSUMER_SECRET: &str = "cs-test-9876543210-never-printed";
pub const PASSKEY: &str = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919";
pub const PHONE: &str = "254708374149";

/// 2021-06-28 06:24:08 UTC = 20210628092408 in Nairobi: the instant of a published test vector.
pub fn vector_instant() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2021, 6, 28, 6, 24, 8).unwrap()
}

pub fn config(server: &MockServer) -> DarajaConfig {
    DarajaConfig::sandbox(
        SecretString::from(CONSUMER_KEY),
        SecretString::from(CONSUMER_SECRET),
    )
    .with_base_url(Url::parse(&server.uri()).unwrap())
}

pub fn client(server: &MockServer) -> DarajaClient {
    DarajaClient::new(config(server)).unwrap()
}

pub fn client_with_clock(config: DarajaConfig, clock: Arc<ManualClock>) -> DarajaClient {
    DarajaClient::with_clock(config, clock).unwrap()
}

/// A token request as Daraja wants it: GET, the grant, the Basic header.
pub fn token_request() -> MockBuilder {
    Mock::given(method("GET"))
        .and(path("/oauth/v1/generate"))
        .and(query_param("grant_type", "client_credentials"))
        .and(basic_auth(CONSUMER_KEY, CONSUMER_SECRET))
}

pub fn token_answer(token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"access_token": token, "expires_in": "3599"}))
}

/// A token endpoint that checks the request and hands out `token`.
pub fn token_mock(token: &str) -> Mock {
    token_request().respond_with(token_answer(token))
}

/// A token endpoint that hands out `tok-1`, `tok-2`, … in order.
pub fn numbered_token_mock() -> Mock {
    token_request().respond_with(NumberedTokens::default())
}

#[derive(Default)]
pub struct NumberedTokens(AtomicUsize);

impl Respond for NumberedTokens {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200)
            .set_body_json(json!({"access_token": format!("tok-{n}"), "expires_in": "3599"}))
    }
}

/// Answers with `template` and counts requests into a watch channel that tests can await.
pub struct Counting {
    template: ResponseTemplate,
    seen: watch::Sender<usize>,
}

impl Counting {
    pub fn new(template: ResponseTemplate) -> (Self, watch::Receiver<usize>) {
        let (seen, rx) = watch::channel(0);
        (Counting { template, seen }, rx)
    }
}

impl Respond for Counting {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.seen.send_modify(|n| *n += 1);
        self.template.clone()
    }
}

pub fn stk_accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "MerchantRequestID": "2654-4b64-97ff-b827b542881d3130",
        "CheckoutRequestID": "ws_CO_10072024091526171708374149",
        "ResponseCode": "0",
        "ResponseDescription": "Success. Request accepted for processing",
        "CustomerMessage": "Success. Request accepted for processing"
    }))
}

pub fn query_result(code: &str, desc: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": "22205-34066-1",
        "CheckoutRequestID": "ws_CO_13012021093521236557",
        "ResultCode": code,
        "ResultDesc": desc
    }))
}

pub fn envelope(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "requestId": "1c5b-4ba8-815c-ac45c57a3db01495926",
        "errorCode": code,
        "errorMessage": message
    }))
}

/// Requests the server received on `request_path`.
pub async fn requests_to(server: &MockServer, request_path: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == request_path)
        .collect()
}

/// Checks the mocks' expectations, then drops the server with a fresh tokio budget. wiremock's
/// `Drop` verifies once more inside `futures::executor::block_on`, where tokio's cooperative
/// budget is never renewed: after a test that awaited a thousand tasks the budget can be spent,
/// the server's lock answers `Pending` for ever, and the drop spins at 100% CPU (a test ran 16
/// minutes so on a loaded machine). Yielding once gives the drop a whole budget.
pub async fn verify_and_drop(server: wiremock::MockServer) {
    server.verify().await;
    tokio::task::yield_now().await;
    drop(server);
}
