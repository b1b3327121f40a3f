//! The simulator driven by a client nobody here wrote: the `mpesa` crate (c12i/mpesa-rust 1.1)
//! from crates.io. Its requests differ from Daraja's documented shapes in places (`Amount` as a
//! float such as `10.0`, B2C v1 with `Occasion`, a password from the host's local time). Daraja
//! takes "only whole numbers" (stk.md), so by default the simulator refuses the float with
//! `Invalid Amount`, as this test shows first; the rest runs with `lenient_amounts`.
//!
//! Where the crate cannot read Daraja's *answer*, the simulator still answers like Daraja: C2B
//! Register URL and simulate answer with `OriginatorCoversationID` (Daraja's own misspelling),
//! while mpesa 1.1 expects `OriginatorConverstionID` (register) and `OriginatorConversationID`
//! (simulate), so the crate reports a decoding error for a call that succeeded. The tests prove
//! the success on the simulator's side and pin down that the failure is only the decoding.

mod common;

use common::*;
use daraja::wire::{ResultEnvelope, StkCallback};
use daraja_sim::{
    CallbackKind, CredentialMode, SANDBOX_INITIATOR_PASSWORD, SIMULATOR_CERTIFICATE_PEM, SimConfig,
};
use mpesa::{ApiEnvironment, CommandId, Mpesa, MpesaError};
use serde_json::json;

/// The crate's way of pointing at another Daraja: a base URL and the certificate it encrypts
/// initiator passwords with (the simulator's TEST certificate).
#[derive(Debug, Clone)]
struct Simulated {
    base_url: String,
}

impl ApiEnvironment for Simulated {
    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn get_certificate(&self) -> &str {
        SIMULATOR_CERTIFICATE_PEM
    }
}

fn decoding_failure(result: &Result<impl std::fmt::Debug, MpesaError>) -> bool {
    matches!(result, Err(MpesaError::NetworkError(e)) if e.is_decode())
}

#[tokio::test]
async fn the_mpesa_crate_runs_oauth_stk_c2b_and_b2c_against_the_simulator() {
    // Daraja's rule: the crate's `"Amount": 10.0` is not a whole number as written.
    // (Another key: the crate keeps one cached token, keyed by consumer key, for all clients.)
    let strict =
        start(SimConfig::for_tests().accept_credentials("mpesa-rs-strict", "mpesa-rs-secret"))
            .await;
    let refused = Mpesa::new(
        "mpesa-rs-strict",
        "mpesa-rs-secret",
        Simulated {
            base_url: strict.base_url.clone(),
        },
    )
    .express_request(SHORTCODE)
    .phone_number("254708374149")
    .amount(10)
    .callback_url("http://127.0.0.1:9/hooks/stk")
    .account_ref("INV42")
    .send()
    .await;
    assert!(
        format!("{refused:?}").contains("Bad Request - Invalid Amount"),
        "{refused:?}"
    );

    let config = SimConfig {
        credential_mode: CredentialMode::Strict,
        lenient_amounts: true,
        ..SimConfig::for_tests()
    }
    .accept_credentials("mpesa-rs-key", "mpesa-rs-secret");
    let server = start(config).await;
    let receiver = Receiver::start().await;
    let client = Mpesa::new(
        "mpesa-rs-key",
        "mpesa-rs-secret",
        Simulated {
            base_url: server.base_url.clone(),
        },
    );

    // OAuth: Basic credentials, `expires_in` as the string "3599".
    assert!(client.is_connected().await, "the crate gets a token");

    // STK Push (`express_request`): accepted, then the callback.
    let stk_url = receiver.url("stk");
    let pushed = client
        .express_request(SHORTCODE)
        .phone_number("254708374149")
        .amount(10)
        .callback_url(&stk_url)
        .account_ref("INV42")
        .transaction_desc("Order 42")
        .send()
        .await
        .expect("STK push accepted");
    assert_eq!(pushed.response_code, "0");
    assert_eq!(
        pushed.response_description,
        "Success. Request accepted for processing"
    );
    let callback = StkCallback::parse(
        &receiver
            .stk_callback(&pushed.checkout_request_id)
            .await
            .body,
    )
    .unwrap();
    assert!(callback.result_code().is_success());
    assert_eq!(callback.metadata_value("Amount").unwrap().json(), "10.00");
    let sent = server
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/mpesa/stkpush/v1/processrequest")
        .unwrap();
    let sent_body: serde_json::Value = serde_json::from_str(sent.body.get()).unwrap();
    assert_eq!(
        sent_body["Amount"],
        json!(10.0),
        "the crate sends a float; Daraja accepts a whole one"
    );

    // C2B Register URL (v1): registered; the crate cannot read Daraja's misspelt answer.
    let registered = client
        .c2b_register()
        .short_code("600000")
        .confirmation_url(&receiver.url("confirm"))
        .validation_url(&receiver.url("validate"))
        .send()
        .await;
    let registration = server
        .sim
        .c2b_registrations()
        .into_iter()
        .find(|r| r.short_code == "600000")
        .expect("registered");
    assert_eq!(registration.confirmation_url, receiver.url("confirm"));
    assert_eq!(registration.response_type, "Completed");
    let answer = server
        .sim
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/mpesa/c2b/v1/registerurl")
        .unwrap();
    assert_eq!(answer.status, 200);
    assert!(
        answer.answer.get().contains("\"OriginatorCoversationID\""),
        "Daraja's own spelling: {}",
        answer.answer.get()
    );
    assert!(
        decoding_failure(&registered),
        "mpesa 1.1 expects OriginatorConverstionID: {registered:?}"
    );

    // C2B simulate (v1): the confirmation is delivered; again only the answer's key trips the crate.
    let simulated = client
        .c2b_simulate()
        .short_code("600000")
        .msisdn("254708374149")
        .amount(15)
        .bill_ref_number("ACC-RS")
        .command_id(CommandId::CustomerPayBillOnline)
        .send()
        .await;
    let confirmation = receiver
        .wait_for(1, |r| {
            r.path == "/hooks/confirm" && r.json()["BillRefNumber"] == "ACC-RS"
        })
        .await
        .remove(0);
    let payment = daraja::wire::C2bPayment::parse(&confirmation.body).unwrap();
    assert_eq!(payment.amount(), Some(mpesa_domain::Cents(1_500)));
    let answer = server
        .sim
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/mpesa/c2b/v1/simulate")
        .unwrap();
    assert_eq!(answer.status, 200);
    assert!(
        decoding_failure(&simulated),
        "mpesa 1.1 expects OriginatorConversationID: {simulated:?}"
    );

    // B2C (v1, the crate's version): the credential is encrypted with openssl under the
    // simulator's certificate, decrypted in strict mode, and the payout succeeds.
    client.set_initiator_password(SANDBOX_INITIATOR_PASSWORD);
    let paid = client
        .b2c("testapi")
        .party_a("600000")
        .party_b("254708374149")
        .amount(100)
        .result_url(&receiver.url("result"))
        .timeout_url(&receiver.url("timeout"))
        .remarks("Refund")
        .occasion("Refund")
        .command_id(CommandId::BusinessPayment)
        .send()
        .await
        .expect("B2C accepted");
    assert_eq!(paid.response_code, "0");
    assert_eq!(
        paid.response_description,
        "Accept the service request successfully."
    );
    let result = server
        .sim
        .wait_for_result(&paid.conversation_id, WAIT)
        .await
        .unwrap();
    assert_eq!(result.kind, CallbackKind::Result);
    let envelope = ResultEnvelope::parse(result.body_text().as_bytes()).unwrap();
    assert!(
        envelope.is_success(),
        "the openssl-made credential is valid: {}",
        result.body_text()
    );
    assert_eq!(
        envelope.b2c().unwrap().unwrap().amount,
        Some(mpesa_domain::Cents(10_000))
    );
    assert_eq!(
        envelope.result.originator_conversation_id,
        paid.originator_conversation_id
    );

    // The crate's default initiator password is not ours: 2001 in strict mode.
    let other = Mpesa::new(
        "mpesa-rs-key",
        "mpesa-rs-secret",
        Simulated {
            base_url: server.base_url.clone(),
        },
    );
    let refused = other
        .b2c("testapi")
        .party_a("600000")
        .party_b("254708374149")
        .amount(100)
        .result_url(&receiver.url("result"))
        .timeout_url(&receiver.url("timeout"))
        .send()
        .await
        .expect("acknowledged: Daraja checks the credential later");
    let result = server
        .sim
        .wait_for_result(&refused.conversation_id, WAIT)
        .await
        .unwrap();
    assert_eq!(
        ResultEnvelope::parse(result.body_text().as_bytes())
            .unwrap()
            .result_code()
            .as_str(),
        "2001"
    );
}
