//! Secrets, tokens and full phone numbers never show: not in `Debug` output, not in errors,
//! not in the log lines of a whole session (captured at TRACE, dependencies included).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use daraja::{B2cCommand, B2cParams, CertificateSource, DarajaClient, StkPushParams};
use mpesa_domain::{AccountReference, Amount, Msisdn, TransactionDesc};
use secrecy::SecretString;
use serde_json::json;
use url::Url;
use wiremock::matchers::{bearer_token, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const INITIATOR_PASSWORD: &str = "InitiatorPw#2024-never-printed";
const STK_PASSWORD_PREFIX: &str = "MTc0Mzc5YmZiMjc5"; // base64 of "174379bfb279…"

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn forbidden() -> Vec<&'static str> {
    vec![
        CONSUMER_KEY,
        CONSUMER_SECRET,
        PASSKEY,
        INITIATOR_PASSWORD,
        STK_PASSWORD_PREFIX,
        "tok-1",
        "tok-2",
        "254708374149",
        "708374149",
        // base64 of "ck-test-0123456789:cs-test-…", the Basic header.
        "Y2stdGVzdC0wMTIzNDU2Nzg5",
        // The secret path token of the callback URLs.
        "3f9c1d",
    ]
}

fn assert_clean(what: &str, text: &str) {
    for secret in forbidden() {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

fn push_params() -> StkPushParams {
    StkPushParams {
        phone: Msisdn::parse(PHONE).unwrap(),
        amount: Amount::from_stored(1),
        account_reference: AccountReference::parse("INV0042").unwrap(),
        transaction_desc: TransactionDesc::parse("Order 42").unwrap(),
        callback_url: Url::parse("https://example.com/hooks/stk/3f9c1d").unwrap(),
    }
}

#[tokio::test]
async fn a_whole_session_logs_no_secret_and_no_full_phone_number() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    numbered_token_mock().mount(&server).await;
    // tok-1 is refused with Daraja's message that quotes the token; tok-2 works.
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpush/v1/processrequest"))
        .and(bearer_token("tok-1"))
        .respond_with(envelope(
            401,
            "401.002.01",
            "Error Occurred - Invalid Access Token - tok-1",
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpush/v1/processrequest"))
        .and(bearer_token("tok-2"))
        .respond_with(stk_accepted())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpushquery/v1/query"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mpesa/b2c/v3/paymentrequest"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "OriginatorConversationID": "p-1", "ConversationID": "AG_1", "ResponseCode": "0",
            "ResponseDescription": "Accept the service request successfully."
        })))
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.request_timeout = Duration::from_millis(500);
    config.initiator_name = Some("testapi".into());
    config.initiator_password = Some(SecretString::from(INITIATOR_PASSWORD));
    config.certificate = CertificateSource::Sandbox;
    let client = DarajaClient::new(config.clone()).unwrap();

    client.stk_push(&push_params()).await.unwrap();
    let timeout = client.stk_query("ws_CO_1").await.unwrap_err();
    let credential = client.security_credential().unwrap();
    client
        .b2c(&B2cParams {
            originator_conversation_id: "p-1".into(),
            command: B2cCommand::BusinessPayment,
            amount: Amount::from_stored(10),
            phone: Msisdn::parse(PHONE).unwrap(),
            remarks: "Refund order 42".into(),
            occasion: None,
            result_url: Url::parse("https://example.com/hooks/b2c/r").unwrap(),
            queue_timeout_url: Url::parse("https://example.com/hooks/b2c/t").unwrap(),
        })
        .await
        .unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("stk_push") && logs.contains("duration_ms"),
        "calls are logged:\n{logs}"
    );
    assert!(
        logs.contains("2547*****149"),
        "phones appear masked:\n{logs}"
    );
    assert!(
        logs.contains("401.002.01"),
        "the refusal is logged:\n{logs}"
    );
    assert_clean("the logs", &logs);
    assert!(
        !logs.contains(credential.expose()),
        "the SecurityCredential is logged"
    );

    assert_clean("Debug of the config", &format!("{config:?}"));
    assert_clean("Debug of the client", &format!("{client:?}"));
    assert_clean("the timeout error", &format!("{timeout} {timeout:?}"));
    assert_clean("Debug of the credential", &format!("{credential:?}"));
    assert_clean(
        "Debug of the push parameters",
        &format!("{:?}", push_params()),
    );
}

#[test]
fn wire_requests_print_without_secrets() {
    use daraja::wire::{LooseString, StkPushRequest, WireValue};
    let request = StkPushRequest {
        business_short_code: "174379".into(),
        password: format!("{STK_PASSWORD_PREFIX}rest"),
        timestamp: "20210628092408".into(),
        transaction_type: "CustomerPayBillOnline".into(),
        amount: WireValue::integer(1),
        party_a: LooseString::from(PHONE),
        party_b: "174379".into(),
        phone_number: LooseString::from(PHONE),
        callback_url: "https://example.com/hooks/stk/3f9c1d".into(),
        account_reference: "INV0042".into(),
        transaction_desc: Some("Order 42".into()),
    };
    let printed = format!("{request:?}");
    assert_clean("Debug of StkPushRequest", &printed);
    assert!(printed.contains("2547*****149"));
    assert!(printed.contains("https://example.com/…"), "{printed}");
}
