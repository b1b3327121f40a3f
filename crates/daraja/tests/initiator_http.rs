//! B2C, Transaction Status, Account Balance, Reversal and C2B against wiremock: exact request
//! shapes (misspellings included) and a SecurityCredential that decrypts to the initiator's raw
//! password with the matching private key.

mod common;

use std::sync::OnceLock;

use base64::Engine as _;
use common::*;
use daraja::{
    AccountBalanceParams, Api, B2cCommand, B2cParams, C2bRegisterParams, C2bResponseType,
    C2bSimulateParams, C2bVersion, CertificateSource, DarajaClient, DarajaConfig, DarajaError,
    EncryptionCertificate, IdentifierType, InvalidRequest, ReversalParams, TransactionStatusParams,
    TransactionType,
};
use mpesa_domain::{Amount, AmountBounds, Msisdn};
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const INITIATOR_PASSWORD: &str = "Safaricom999!*!";

/// One key pair for the whole file (2048-bit generation is the slow part).
fn key_pair() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap())
}

fn initiator_config(server: &MockServer) -> DarajaConfig {
    let public_pem = key_pair()
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let mut config = config(server);
    config.initiator_shortcode = Some("600997".into());
    config.initiator_name = Some("testapi".into());
    config.initiator_password = Some(SecretString::from(INITIATOR_PASSWORD));
    config.certificate = CertificateSource::Pem(public_pem.into_bytes());
    config
}

fn decrypt(credential: &str) -> String {
    let ciphertext = base64::engine::general_purpose::STANDARD
        .decode(credential)
        .unwrap();
    String::from_utf8(key_pair().decrypt(Pkcs1v15Encrypt, &ciphertext).unwrap()).unwrap()
}

fn acknowledged() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "OriginatorConversationID": "payout-2024-07-06-000123",
        "ConversationID": "AG_20240706_20106e9209f64bebd05b",
        "ResponseCode": "0",
        "ResponseDescription": "Accept the service request successfully."
    }))
}

async fn sent_body(server: &MockServer, request_path: &str) -> Value {
    let requests = requests_to(server, request_path).await;
    assert_eq!(requests.len(), 1, "{request_path}");
    requests[0].body_json().unwrap()
}

fn hook(name: &str) -> Url {
    Url::parse(&format!("https://example.com/hooks/{name}/3f9c1d")).unwrap()
}

#[tokio::test]
async fn b2c_v3_request_shape_and_credential() {
    let server = MockServer::start().await;
    token_mock("tok").mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/mpesa/b2c/v3/paymentrequest"))
        .and(header("authorization", "Bearer tok"))
        .respond_with(acknowledged())
        .expect(1)
        .mount(&server)
        .await;
    let client = DarajaClient::new(initiator_config(&server)).unwrap();
    let accepted = client
        .b2c(&B2cParams {
            originator_conversation_id: "payout-2024-07-06-000123".into(),
            command: B2cCommand::BusinessPayment,
            amount: Amount::new(
                10,
                AmountBounds {
                    min: 10,
                    max: 250_000,
                },
            )
            .unwrap(),
            phone: Msisdn::parse("0708374149").unwrap(),
            remarks: "Refund order 42".into(),
            occasion: Some("Refund".into()),
            result_url: hook("b2c-result"),
            queue_timeout_url: hook("b2c-timeout"),
        })
        .await
        .unwrap();
    assert_eq!(accepted.conversation_id, "AG_20240706_20106e9209f64bebd05b");
    let body = sent_body(&server, "/mpesa/b2c/v3/paymentrequest").await;
    let credential = body["SecurityCredential"].as_str().unwrap().to_owned();
    assert_eq!(credential.len(), 344);
    assert_eq!(
        decrypt(&credential),
        INITIATOR_PASSWORD,
        "the raw password, nothing appended"
    );
    let expected = json!({
        "OriginatorConversationID": "payout-2024-07-06-000123",
        "InitiatorName": "testapi",
        "SecurityCredential": credential,
        "CommandID": "BusinessPayment",
        "Amount": 10,
        "PartyA": "600997",
        "PartyB": "254708374149",
        "Remarks": "Refund order 42",
        "QueueTimeOutURL": "https://example.com/hooks/b2c-timeout/3f9c1d",
        "ResultURL": "https://example.com/hooks/b2c-result/3f9c1d",
        "Occassion": "Refund"
    });
    assert_eq!(body, expected);
    // B2C has its own bounds (KES 10 minimum): refused before sending.
    let err = client
        .b2c(&B2cParams {
            originator_conversation_id: "payout-2".into(),
            command: B2cCommand::BusinessPayment,
            amount: Amount::from_stored(9),
            phone: Msisdn::parse("0708374149").unwrap(),
            remarks: "Refund order 42".into(),
            occasion: None,
            result_url: hook("b2c-result"),
            queue_timeout_url: hook("b2c-timeout"),
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        DarajaError::Invalid(InvalidRequest::Amount(_))
    ));
    server.verify().await;
}

#[tokio::test]
async fn transaction_status_account_balance_and_reversal_shapes() {
    let server = MockServer::start().await;
    token_mock("tok").mount(&server).await;
    for p in [
        "/mpesa/transactionstatus/v1/query",
        "/mpesa/accountbalance/v1/query",
        "/mpesa/reversal/v1/request",
    ] {
        Mock::given(method("POST"))
            .and(path(p))
            .respond_with(acknowledged())
            .expect(1)
            .mount(&server)
            .await;
    }
    let client = DarajaClient::new(initiator_config(&server)).unwrap();

    client
        .transaction_status(&TransactionStatusParams {
            transaction_id: Some("SB60ABCD12".into()),
            original_conversation_id: None,
            party_a: None,
            identifier_type: IdentifierType::ShortCode,
            remarks: "Status check".into(),
            occasion: Some("OK".into()),
            result_url: hook("status-result"),
            queue_timeout_url: hook("status-timeout"),
        })
        .await
        .unwrap();
    let status = sent_body(&server, "/mpesa/transactionstatus/v1/query").await;
    assert_eq!(
        decrypt(status["SecurityCredential"].as_str().unwrap()),
        INITIATOR_PASSWORD
    );
    assert_eq!(status["Initiator"], "testapi");
    assert_eq!(status["CommandID"], "TransactionStatusQuery");
    assert_eq!(status["TransactionID"], "SB60ABCD12");
    assert!(status.get("OriginalConversationID").is_none());
    assert_eq!(status["PartyA"], "600997");
    assert_eq!(status["IdentifierType"], "4");
    assert_eq!(status["Occasion"], "OK");
    assert_eq!(
        status["ResultURL"],
        "https://example.com/hooks/status-result/3f9c1d"
    );
    assert_eq!(
        status["QueueTimeOutURL"],
        "https://example.com/hooks/status-timeout/3f9c1d"
    );

    client
        .account_balance(&AccountBalanceParams {
            party_a: None,
            identifier_type: IdentifierType::ShortCode,
            remarks: "daily balance".into(),
            result_url: hook("balance-result"),
            queue_timeout_url: hook("balance-timeout"),
        })
        .await
        .unwrap();
    let balance = sent_body(&server, "/mpesa/accountbalance/v1/query").await;
    // serde_json's map is sorted: compare the set of keys.
    let keys: Vec<&str> = balance
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "CommandID",
            "IdentifierType",
            "Initiator",
            "PartyA",
            "QueueTimeOutURL",
            "Remarks",
            "ResultURL",
            "SecurityCredential"
        ]
    );
    assert_eq!(balance["CommandID"], "AccountBalance");

    client
        .reversal(&ReversalParams {
            transaction_id: "PDU91HIVIT".into(),
            amount: Amount::from_stored(200),
            receiver_party: None,
            remarks: "Payment reversal".into(),
            occasion: None,
            result_url: hook("reversal-result"),
            queue_timeout_url: hook("reversal-timeout"),
        })
        .await
        .unwrap();
    let reversal = sent_body(&server, "/mpesa/reversal/v1/request").await;
    assert_eq!(reversal["CommandID"], "TransactionReversal");
    assert_eq!(
        reversal["RecieverIdentifierType"], "11",
        "the misspelt key Daraja insists on"
    );
    assert!(reversal.get("ReceiverIdentifierType").is_none());
    assert_eq!(reversal["ReceiverParty"], "600997");
    assert_eq!(reversal["Amount"], 200);
    server.verify().await;
}

#[tokio::test]
async fn initiator_calls_refuse_bad_input_before_sending() {
    let server = MockServer::start().await;
    let without_initiator = client(&server);
    let params = AccountBalanceParams {
        party_a: None,
        identifier_type: IdentifierType::ShortCode,
        remarks: "daily balance".into(),
        result_url: hook("balance-result"),
        queue_timeout_url: hook("balance-timeout"),
    };
    assert!(matches!(
        without_initiator.account_balance(&params).await,
        Err(DarajaError::Invalid(InvalidRequest::InitiatorNotConfigured))
    ));
    let client = DarajaClient::new(initiator_config(&server)).unwrap();
    let status = TransactionStatusParams {
        transaction_id: None,
        original_conversation_id: Some("  ".into()),
        party_a: None,
        identifier_type: IdentifierType::ShortCode,
        remarks: "Status check".into(),
        occasion: None,
        result_url: hook("status-result"),
        queue_timeout_url: hook("status-timeout"),
    };
    let err = client.transaction_status(&status).await.unwrap_err();
    assert!(matches!(
        err,
        DarajaError::Invalid(InvalidRequest::Missing {
            field: "TransactionID"
        })
    ));
    let mut short_remarks = params.clone();
    short_remarks.remarks = "x".into();
    let err = client.account_balance(&short_remarks).await.unwrap_err();
    assert!(matches!(
        err,
        DarajaError::Invalid(InvalidRequest::Length {
            field: "Remarks",
            ..
        })
    ));
    let mut bad_url = params.clone();
    bad_url.result_url = Url::parse("https://example.com/sql/result").unwrap();
    let err = client.account_balance(&bad_url).await.unwrap_err();
    assert!(matches!(
        err,
        DarajaError::Invalid(InvalidRequest::Url {
            field: "ResultURL",
            ..
        })
    ));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn c2b_register_url_follows_the_configured_version() {
    let server = MockServer::start().await;
    token_mock("tok").mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/mpesa/c2b/v2/registerurl"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "OriginatorCoversationID": "6e86-45dd-91ac-fd5d4178ab523408729",
            "ResponseCode": "0",
            "ResponseDescription": "Success"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mpesa/c2b/v1/registerurl"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ConversationID": "",
            "OriginatorCoversationID": "10028-4198443-1",
            "ResponseDescription": "success"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let mut params = C2bRegisterParams {
        short_code: Some("600984".into()),
        response_type: C2bResponseType::Completed,
        confirmation_url: hook("c2b-confirm"),
        validation_url: hook("c2b-validate"),
        version: None,
    };
    let v2 = client.c2b_register_urls(&params).await.unwrap();
    assert_eq!(
        v2.originator_conversation_id.as_deref(),
        Some("6e86-45dd-91ac-fd5d4178ab523408729")
    );
    params.version = Some(C2bVersion::V1);
    let v1 = client.c2b_register_urls(&params).await.unwrap();
    assert_eq!(
        v1.originator_conversation_id.as_deref(),
        Some("10028-4198443-1")
    );
    assert_eq!(v1.response_code, None);
    let body = sent_body(&server, "/mpesa/c2b/v2/registerurl").await;
    assert_eq!(
        body,
        json!({
            "ShortCode": "600984",
            "ResponseType": "Completed",
            "ConfirmationURL": "https://example.com/hooks/c2b-confirm/3f9c1d",
            "ValidationURL": "https://example.com/hooks/c2b-validate/3f9c1d"
        })
    );
    server.verify().await;
}

#[tokio::test]
async fn c2b_simulate_is_sandbox_only() {
    let server = MockServer::start().await;
    token_mock("tok").mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/mpesa/c2b/v2/simulate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "OriginatorCoversationID": "53e3-4aa8-9fe0-8fb5e4092cdd3405976",
            "ResponseCode": "0",
            "ResponseDescription": "Accept the service request successfully."
        })))
        .expect(1)
        .mount(&server)
        .await;
    let params = C2bSimulateParams {
        short_code: Some("600984".into()),
        command: TransactionType::CustomerPayBillOnline,
        amount: Amount::from_stored(1),
        phone: Msisdn::parse(PHONE).unwrap(),
        bill_ref_number: Some("INV0042".into()),
        version: None,
    };
    client(&server).c2b_simulate(&params).await.unwrap();
    assert_eq!(
        sent_body(&server, "/mpesa/c2b/v2/simulate").await,
        json!({"ShortCode": "600984", "CommandID": "CustomerPayBillOnline", "Amount": 1, "Msisdn": "254708374149", "BillRefNumber": "INV0042"})
    );
    let mut production = config(&server);
    production.environment = daraja::Environment::Production;
    production.shortcode = "600984".into();
    production.passkey = SecretString::from("a-production-passkey");
    let err = DarajaClient::new(production)
        .unwrap()
        .c2b_simulate(&params)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        DarajaError::Invalid(InvalidRequest::NotInProduction(Api::C2bSimulate))
    ));
    server.verify().await;
}

#[test]
fn any_certificate_or_public_key_encrypts_for_its_private_key() {
    let pem = key_pair()
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let cert = EncryptionCertificate::from_pem_or_der(pem.as_bytes()).unwrap();
    assert_eq!(cert.key_bits(), 2048);
    let credential = cert
        .security_credential(&SecretString::from("pa$$word#1"))
        .unwrap();
    assert_eq!(decrypt(credential.expose()), "pa$$word#1");
    // The same key from a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sim.pem");
    std::fs::write(&file, pem).unwrap();
    let from_file = EncryptionCertificate::from_file(&file).unwrap();
    assert_eq!(from_file.public_key(), cert.public_key());
}
