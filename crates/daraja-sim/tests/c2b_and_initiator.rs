//! C2B (register, simulate, validation, the confirmation of an STK payment) and the initiator
//! APIs (B2C, Transaction Status, Account Balance, Reversal) driven by the project's client,
//! with every callback parsed by `daraja::wire`.

mod common;

use std::time::Duration;

use common::*;
use daraja::wire::{C2bPayment, ResultEnvelope};
use daraja::{
    AccountBalanceParams, B2cCommand, B2cParams, C2bRegisterParams, C2bResponseType,
    C2bSimulateParams, C2bVersion, DarajaError, IdentifierType, ReversalParams,
    TransactionStatusParams, TransactionType,
};
use daraja_sim::{
    CallbackFaults, CallbackKind, CredentialMode, DeliveryOutcome, MsisdnMode, ShortcodeConfig,
    SimConfig, SimEnvironment, Simulator,
};
use mpesa_domain::{Amount, AmountBounds, Cents, Msisdn};
use serde_json::{Value, json};
use url::Url;

const C2B_SHORTCODE: &str = "600000";

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn register(
    receiver: &Receiver,
    short_code: &str,
    version: C2bVersion,
    response_type: C2bResponseType,
) -> C2bRegisterParams {
    C2bRegisterParams {
        short_code: Some(short_code.into()),
        response_type,
        confirmation_url: url(&receiver.url("confirm")),
        validation_url: url(&receiver.url("validate")),
        version: Some(version),
    }
}

fn simulate(phone: &str, amount: i64, bill_ref: &str, version: C2bVersion) -> C2bSimulateParams {
    C2bSimulateParams {
        short_code: Some(C2B_SHORTCODE.into()),
        command: TransactionType::CustomerPayBillOnline,
        amount: Amount::new(amount, AmountBounds::default()).unwrap(),
        phone: Msisdn::parse(phone).unwrap(),
        bill_ref_number: Some(bill_ref.into()),
        version: Some(version),
    }
}

async fn confirmation(receiver: &Receiver, bill_ref: &str) -> (C2bPayment, Value) {
    let bill_ref = bill_ref.to_owned();
    let r = receiver
        .wait_for(1, move |r| {
            r.path == "/hooks/confirm" && r.json()["BillRefNumber"] == bill_ref.as_str()
        })
        .await
        .remove(0);
    (
        C2bPayment::parse(&r.body).expect("the wire type parses the confirmation"),
        r.json(),
    )
}

#[tokio::test]
async fn c2b_register_and_simulate_like_the_sandbox() {
    let server = start(SimConfig::for_tests()).await;
    let receiver = Receiver::start().await;
    let client = client(&server);

    // Register v2, answered with the misspelt OriginatorCoversationID.
    let token = token(&server).await;
    let raw = post_json(
        &server,
        "/mpesa/c2b/v2/registerurl",
        &token,
        &json!({"ShortCode": C2B_SHORTCODE, "ResponseType": "Completed", "ConfirmationURL": receiver.url("confirm"), "ValidationURL": receiver.url("validate")}),
    )
    .await;
    assert_eq!(raw.status, 200);
    assert!(
        raw.body.get("OriginatorCoversationID").is_some()
            && raw.body.get("OriginatorConversationID").is_none(),
        "{}",
        raw.body
    );
    assert_eq!(
        (
            raw.body["ResponseCode"].clone(),
            raw.body["ResponseDescription"].clone()
        ),
        (json!("0"), json!("Success"))
    );
    let accepted = client
        .c2b_register_urls(&register(
            &receiver,
            C2B_SHORTCODE,
            C2bVersion::V2,
            C2bResponseType::Completed,
        ))
        .await
        .unwrap();
    assert!(
        accepted.originator_conversation_id.is_some(),
        "the client reads the misspelt key"
    );

    // ResponseType is checked exactly; the STK-only shortcode answers an Apigee fault. (The
    // client's token request invalidated ours: take a new one.)
    let token = common::token(&server).await;
    let lower = post_json(
        &server,
        "/mpesa/c2b/v1/registerurl",
        &token,
        &json!({"ShortCode": C2B_SHORTCODE, "ResponseType": "completed", "ConfirmationURL": receiver.url("confirm"), "ValidationURL": receiver.url("validate")}),
    )
    .await;
    assert_eq!(lower.error(), (400, "400.003.02", "Bad Request"));
    let stk_only = client
        .c2b_register_urls(&register(
            &receiver,
            SHORTCODE,
            C2bVersion::V2,
            C2bResponseType::Completed,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(stk_only, DarajaError::UnexpectedStatus { status: 500, ref body_excerpt, .. } if body_excerpt.contains("SCO-AddURLVault")),
        "{stk_only:?}"
    );

    // Simulate v2: a confirmation shaped like Safaricom's, MSISDN masked, balance from the ledger.
    let before = server.sim.balances(C2B_SHORTCODE).utility;
    let sim_answer = client
        .c2b_simulate(&simulate("254708374149", 25, "ACC-V2", C2bVersion::V2))
        .await
        .unwrap();
    assert_eq!(
        sim_answer.response_description,
        "Accept the service request successfully."
    );
    let (payment, raw) = confirmation(&receiver, "ACC-V2").await;
    assert_eq!(raw["TransactionType"], "Pay Bill");
    assert_eq!(raw["TransAmount"], json!("25.00"), "a decimal string");
    assert_eq!(raw["MSISDN"], "2547 ***** 149");
    assert_eq!(raw["BusinessShortCode"], json!(C2B_SHORTCODE));
    assert!(
        raw["TransTime"].is_string()
            && daraja::parse_eat_timestamp(raw["TransTime"].as_str().unwrap()).is_some()
    );
    assert_eq!(payment.trans_id.len(), 10);
    assert_eq!(payment.amount(), Some(Cents(2_500)));
    assert_eq!(payment.org_account_balance(), Some(Cents(before.0 + 2_500)));
    assert_eq!(
        server.sim.balances(C2B_SHORTCODE).utility,
        Cents(before.0 + 2_500)
    );
    assert_eq!(server.sim.payment(&payment.trans_id).unwrap().amount, 25);

    // v1 reports the SHA-256 of the number (2025 C2B FAQ).
    client
        .c2b_register_urls(&register(
            &receiver,
            C2B_SHORTCODE,
            C2bVersion::V1,
            C2bResponseType::Completed,
        ))
        .await
        .unwrap();
    client
        .c2b_simulate(&simulate("254708374149", 5, "ACC-V1", C2bVersion::V1))
        .await
        .unwrap();
    let (payment, _) = confirmation(&receiver, "ACC-V1").await;
    assert_eq!(payment.reported_msisdn().len(), 64);
    assert_eq!(
        Msisdn::parse("254708374149")
            .unwrap()
            .matches_reported(payment.reported_msisdn()),
        Some(true)
    );

    // A fault per number: no MiddleName/LastName.
    server.sim.update_faults(|f| {
        f.numbers.insert(
            "254708374150".into(),
            CallbackFaults {
                omit_c2b_names: true,
                ..Default::default()
            },
        );
    });
    client
        .c2b_simulate(&simulate("254708374150", 5, "ACC-SHORT", C2bVersion::V2))
        .await
        .unwrap();
    let (_, raw) = confirmation(&receiver, "ACC-SHORT").await;
    assert!(
        raw.get("MiddleName").is_none()
            && raw.get("LastName").is_none()
            && raw["FirstName"] == "JOHN",
        "{raw}"
    );

    // Production: URLs are registered once, and there is no simulate.
    let production = start(SimConfig {
        environment: SimEnvironment::Production,
        ..SimConfig::for_tests()
    })
    .await;
    let t = common::token(&production).await;
    let body = json!({"ShortCode": C2B_SHORTCODE, "ResponseType": "Completed", "ConfirmationURL": "https://127.0.0.1:9/hooks/confirm", "ValidationURL": "https://127.0.0.1:9/hooks/validate"});
    assert_eq!(
        post_json(&production, "/mpesa/c2b/v2/registerurl", &t, &body)
            .await
            .status,
        200
    );
    assert_eq!(
        post_json(&production, "/mpesa/c2b/v2/registerurl", &t, &body)
            .await
            .error(),
        (500, "500.003.1001", "Urls are already registered.")
    );
    let http_urls = json!({"ShortCode": "600001", "ResponseType": "Completed", "ConfirmationURL": receiver.url("confirm"), "ValidationURL": receiver.url("validate")});
    assert_eq!(
        post_json(&production, "/mpesa/c2b/v2/registerurl", &t, &http_urls)
            .await
            .error()
            .1,
        "400.003.02"
    );
    assert_eq!(
        post_json(&production, "/mpesa/c2b/v1/simulate", &t, &json!({}))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn c2b_validation_accepts_rejects_and_falls_back_to_the_response_type() {
    let config = SimConfig {
        c2b_validation_deadline: Duration::from_millis(500),
        c2b_msisdn: daraja_sim::C2bMsisdnModes {
            v1: MsisdnMode::Full,
            v2: MsisdnMode::Full,
        },
        ..SimConfig::for_tests()
    }
    .with_shortcode(ShortcodeConfig {
        external_validation: true,
        ..ShortcodeConfig::new(C2B_SHORTCODE, None)
    });
    let server = start(config).await;
    let receiver = Receiver::start().await;
    let client = client(&server);
    client
        .c2b_register_urls(&register(
            &receiver,
            C2B_SHORTCODE,
            C2bVersion::V2,
            C2bResponseType::Completed,
        ))
        .await
        .unwrap();

    // Accepted with our reference: it comes back as ThirdPartyTransID.
    receiver.set_validation(ValidationReply::Accept {
        reference: Some("ORD-7".into()),
    });
    client
        .c2b_simulate(&simulate("254708374149", 5, "VAL-OK", C2bVersion::V2))
        .await
        .unwrap();
    let validation = receiver
        .wait_for(1, |r| {
            r.path == "/hooks/validate" && r.json()["BillRefNumber"] == "VAL-OK"
        })
        .await
        .remove(0);
    assert_eq!(
        validation.json()["OrgAccountBalance"],
        json!(""),
        "empty at validation"
    );
    assert_eq!(
        validation.json()["MSISDN"],
        json!("254708374149"),
        "full MSISDN when configured"
    );
    let (payment, _) = confirmation(&receiver, "VAL-OK").await;
    assert_eq!(payment.third_party_trans_id.as_deref(), Some("ORD-7"));
    assert_eq!(
        payment.trans_id,
        validation.json()["TransID"].as_str().unwrap()
    );

    // Rejected: no payment, no confirmation.
    receiver.set_validation(ValidationReply::Reject("C2B00012"));
    client
        .c2b_simulate(&simulate("254708374149", 5, "VAL-NO", C2bVersion::V2))
        .await
        .unwrap();
    let rejected = receiver
        .wait_for(1, |r| {
            r.path == "/hooks/validate" && r.json()["BillRefNumber"] == "VAL-NO"
        })
        .await
        .remove(0);
    let trans_id = rejected.json()["TransID"].as_str().unwrap().to_owned();
    let confirmed = server
        .sim
        .wait_for_callback(Duration::from_millis(700), |c| {
            c.kind == CallbackKind::C2bConfirmation && c.reference == trans_id
        })
        .await;
    assert!(confirmed.is_err(), "a rejected payment is not confirmed");
    assert!(server.sim.payment(&trans_id).is_none());

    // No answer within the deadline: ResponseType Completed completes the payment anyway.
    receiver.set_validation(ValidationReply::Slow(Duration::from_millis(1_500)));
    client
        .c2b_simulate(&simulate("254708374149", 5, "VAL-SLOW", C2bVersion::V2))
        .await
        .unwrap();
    let (payment, _) = confirmation(&receiver, "VAL-SLOW").await;
    let validation = server
        .sim
        .callbacks()
        .into_iter()
        .find(|c| c.kind == CallbackKind::C2bValidation && c.reference == payment.trans_id)
        .unwrap();
    assert_eq!(validation.outcome, DeliveryOutcome::Failed);

    // ... and ResponseType Cancelled cancels it.
    client
        .c2b_register_urls(&register(
            &receiver,
            C2B_SHORTCODE,
            C2bVersion::V2,
            C2bResponseType::Cancelled,
        ))
        .await
        .unwrap();
    client
        .c2b_simulate(&simulate("254708374149", 5, "VAL-SLOW2", C2bVersion::V2))
        .await
        .unwrap();
    let timed_out = server
        .sim
        .wait_for_callback(WAIT, |c| {
            c.kind == CallbackKind::C2bValidation && c.body_text().contains("VAL-SLOW2")
        })
        .await
        .unwrap();
    assert_eq!(timed_out.outcome, DeliveryOutcome::Failed);
    let confirmed = server
        .sim
        .wait_for_callback(Duration::from_millis(700), |c| {
            c.kind == CallbackKind::C2bConfirmation && c.reference == timed_out.reference
        })
        .await;
    assert!(confirmed.is_err(), "Cancelled: no confirmation");
    assert!(server.sim.payment(&timed_out.reference).is_none());
}

#[tokio::test]
async fn an_stk_payment_to_a_shortcode_with_c2b_urls_is_also_confirmed_over_c2b() {
    let config = SimConfig::for_tests()
        .with_shortcode(ShortcodeConfig::new("5432100", Some("till-passkey")));
    let server = start(config).await;
    let receiver = Receiver::start().await;
    let client = client_with(
        &server,
        daraja_sim::SANDBOX_CONSUMER_KEY,
        daraja_sim::SANDBOX_CONSUMER_SECRET,
        |c| {
            c.shortcode = "5432100".into();
            c.passkey = secrecy::SecretString::from("till-passkey");
        },
    );
    client
        .c2b_register_urls(&register(
            &receiver,
            "5432100",
            C2bVersion::V2,
            C2bResponseType::Completed,
        ))
        .await
        .unwrap();
    let accepted = client
        .stk_push(&push_params("254708374149", 40, &receiver.url("stk")))
        .await
        .unwrap();
    let stk = daraja::wire::StkCallback::parse(
        &receiver
            .stk_callback(&accepted.checkout_request_id)
            .await
            .body,
    )
    .unwrap();
    let receipt = stk
        .metadata_value("MpesaReceiptNumber")
        .unwrap()
        .as_text()
        .unwrap()
        .into_owned();
    let (payment, _) = confirmation(&receiver, "INV0042").await;
    assert_eq!(payment.trans_id, receipt, "the same receipt");
    assert_eq!(
        payment.bill_ref_number.as_deref(),
        Some("INV0042"),
        "BillRefNumber = AccountReference"
    );
    assert_eq!(payment.amount(), Some(Cents(4_000)));
    assert_eq!(payment.business_short_code.as_str(), "5432100");
}

fn b2c(id: &str, phone: &str, amount: i64, receiver: &Receiver) -> B2cParams {
    B2cParams {
        originator_conversation_id: id.into(),
        command: B2cCommand::BusinessPayment,
        amount: Amount::new(
            amount,
            AmountBounds {
                min: 1,
                max: 250_000,
            },
        )
        .unwrap(),
        phone: Msisdn::parse(phone).unwrap(),
        remarks: "Refund order 42".into(),
        occasion: Some("Refund".into()),
        result_url: url(&receiver.url("result")),
        queue_timeout_url: url(&receiver.url("timeout")),
    }
}

async fn result_for(receiver: &Receiver, conversation_id: &str) -> (ResultEnvelope, Value) {
    let id = conversation_id.to_owned();
    let r = receiver
        .wait_for(1, move |r| {
            r.path == "/hooks/result" && r.json()["Result"]["ConversationID"] == id.as_str()
        })
        .await
        .remove(0);
    (
        ResultEnvelope::parse(&r.body).expect("the wire type parses the result"),
        r.json(),
    )
}

#[tokio::test]
async fn b2c_status_balance_and_reversal_keep_one_ledger() {
    let server = start(SimConfig {
        credential_mode: CredentialMode::Strict,
        ..SimConfig::for_tests()
    })
    .await;
    let receiver = Receiver::start().await;
    let client = client(&server);
    let start_balance = server.sim.balances(C2B_SHORTCODE).utility;

    // B2C v3: acknowledged, then paid; the result carries the ledger's balances.
    let ack = client
        .b2c(&b2c("payout-1", "254708374149", 150, &receiver))
        .await
        .unwrap();
    assert_eq!(ack.response_code, "0");
    assert_eq!(ack.originator_conversation_id, "payout-1");
    assert!(ack.conversation_id.starts_with("AG_"));
    let (result, raw) = result_for(&receiver, &ack.conversation_id).await;
    assert!(raw["Result"]["ResultCode"].is_number() && raw["Result"]["ResultType"] == 0);
    let payout = result.b2c().unwrap().expect("a successful payout");
    assert_eq!(payout.amount, Some(Cents(15_000)));
    assert_eq!(
        payout.utility_account_available_funds,
        Some(Cents(start_balance.0 - 15_000))
    );
    assert_eq!(
        result.result.transaction_id.as_deref(),
        Some(payout.receipt.as_str())
    );
    assert_eq!(
        raw["Result"]["ReferenceData"]["ReferenceItem"]["Key"], "QueueTimeoutURL",
        "a single object"
    );
    assert!(
        payout.completed_at_ms.is_some(),
        "DD.MM.YYYY HH:mm:ss parses"
    );

    // The same OriginatorConversationID again: refused synchronously.
    let dup = client
        .b2c(&b2c("payout-1", "254708374149", 150, &receiver))
        .await
        .unwrap_err();
    assert_eq!(
        (dup.http_status(), dup.error_code(), dup.error_message()),
        (
            Some(500),
            Some("500.002.1001"),
            Some("Duplicate OriginatorConversationID.")
        )
    );

    // Account Balance agrees, with string codes as Safaricom sends them.
    let params = AccountBalanceParams {
        party_a: None,
        identifier_type: IdentifierType::ShortCode,
        remarks: "daily balance".into(),
        result_url: url(&receiver.url("result")),
        queue_timeout_url: url(&receiver.url("timeout")),
    };
    let ack = client.account_balance(&params).await.unwrap();
    let (result, raw) = result_for(&receiver, &ack.conversation_id).await;
    assert_eq!(
        (
            raw["Result"]["ResultCode"].clone(),
            raw["Result"]["ResultType"].clone()
        ),
        (json!("0"), json!("0"))
    );
    let balances = result.account_balance().unwrap().unwrap();
    assert_eq!(
        balances.account("Utility Account").unwrap().available,
        Cents(start_balance.0 - 15_000)
    );
    assert_eq!(balances.accounts.len(), 5);

    // Transaction Status finds the B2C payout by its OriginatorConversationID...
    let status = |receipt: Option<&str>, original: Option<&str>| TransactionStatusParams {
        transaction_id: receipt.map(str::to_owned),
        original_conversation_id: original.map(str::to_owned),
        party_a: None,
        identifier_type: IdentifierType::ShortCode,
        remarks: "Status check".into(),
        occasion: Some("OK".into()),
        result_url: url(&receiver.url("result")),
        queue_timeout_url: url(&receiver.url("timeout")),
    };
    let ack = client
        .transaction_status(&status(None, Some("payout-1")))
        .await
        .unwrap();
    let (result, raw) = result_for(&receiver, &ack.conversation_id).await;
    let found = result.transaction_status().unwrap().unwrap();
    assert_eq!(found.receipt_no.as_deref(), Some(payout.receipt.as_str()));
    assert_eq!(found.amount, Some(Cents(15_000)));
    assert_eq!(found.transaction_status.as_deref(), Some("Completed"));
    assert_eq!(
        raw["Result"]["ReferenceData"]["ReferenceItem"],
        json!({"Key": "Occasion", "Value": "OK"})
    );
    assert!(
        raw["Result"]["ResultParameters"]["ResultParameter"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == &json!({"Key": "TransactionReason"}))
    );

    // ... and an STK receipt, which Reversal then flips, once.
    let stk = client
        .stk_push(&push_params("254708374149", 70, &receiver.url("stk")))
        .await
        .unwrap();
    let receipt = server
        .sim
        .wait_for_stk_outcome(&stk.checkout_request_id, WAIT)
        .await
        .unwrap()
        .receipt()
        .unwrap()
        .to_owned();
    let ack = client
        .transaction_status(&status(Some(&receipt), None))
        .await
        .unwrap();
    let found = result_for(&receiver, &ack.conversation_id)
        .await
        .0
        .transaction_status()
        .unwrap()
        .unwrap();
    assert_eq!(found.receipt_no.as_deref(), Some(receipt.as_str()));
    assert_eq!(found.amount, Some(Cents(7_000)));

    let reversal = ReversalParams {
        transaction_id: receipt.clone(),
        amount: Amount::new(70, AmountBounds::default()).unwrap(),
        receiver_party: Some(SHORTCODE.into()),
        remarks: "Payment reversal".into(),
        occasion: None,
        result_url: url(&receiver.url("result")),
        queue_timeout_url: url(&receiver.url("timeout")),
    };
    let stk_balance = server.sim.balances(SHORTCODE).utility;
    let ack = client.reversal(&reversal).await.unwrap();
    let (result, _) = result_for(&receiver, &ack.conversation_id).await;
    let reversed = result.reversal().unwrap().expect("reversed");
    assert_eq!(
        reversed.original_transaction_id.as_deref(),
        Some(receipt.as_str())
    );
    assert_eq!(reversed.amount, Some(Cents(7_000)));
    assert_eq!(
        reversed.debit_account_balance[0].available,
        Cents(stk_balance.0 - 7_000)
    );
    let ack = client.reversal(&reversal).await.unwrap();
    let (again, raw) = result_for(&receiver, &ack.conversation_id).await;
    assert_eq!(
        raw["Result"]["ResultCode"],
        json!("R000001"),
        "a string code"
    );
    assert_eq!(
        again.result.result_desc,
        "The transaction has already been reversed"
    );
    assert!(again.reversal().unwrap().is_none());
    let ack = client
        .transaction_status(&status(Some(&receipt), None))
        .await
        .unwrap();
    let found = result_for(&receiver, &ack.conversation_id)
        .await
        .0
        .transaction_status()
        .unwrap()
        .unwrap();
    assert_eq!(found.transaction_status.as_deref(), Some("Reversed"));
    let ack = client
        .reversal(&ReversalParams {
            transaction_id: "UKM0NOSUCH".into(),
            ..reversal
        })
        .await
        .unwrap();
    assert_eq!(
        result_for(&receiver, &ack.conversation_id).await.1["Result"]["ResultCode"],
        json!("R000002")
    );

    // An unknown receipt.
    let ack = client
        .transaction_status(&status(Some("UKM9XXXXXX"), None))
        .await
        .unwrap();
    assert_eq!(
        result_for(&receiver, &ack.conversation_id)
            .await
            .0
            .result_code()
            .as_str(),
        "2032"
    );
}

#[tokio::test]
async fn strict_credentials_lock_after_repeated_failures_and_results_can_time_out() {
    let server = start(SimConfig {
        credential_mode: CredentialMode::Strict,
        lock_initiator_after: 2,
        ..SimConfig::for_tests()
    })
    .await;
    let receiver = Receiver::start().await;
    // A client that encrypts with Safaricom's sandbox certificate: the simulator cannot read it.
    let wrong_cert = client_with(
        &server,
        daraja_sim::SANDBOX_CONSUMER_KEY,
        daraja_sim::SANDBOX_CONSUMER_SECRET,
        |c| {
            c.certificate = daraja::CertificateSource::Sandbox;
        },
    );
    for (n, expected) in [(1, 2001), (2, 2001), (3, 8006)] {
        let ack = wrong_cert
            .b2c(&b2c(&format!("bad-{n}"), "254708374149", 10, &receiver))
            .await
            .unwrap();
        let (result, raw) = result_for(&receiver, &ack.conversation_id).await;
        assert_eq!(raw["Result"]["ResultCode"], json!(expected), "attempt {n}");
        assert!(result.b2c().unwrap().is_none());
        assert!(raw["Result"].get("ResultParameters").is_none());
    }
    // Locked: even the right credential is refused until reset.
    let good = client(&server);
    let ack = good
        .b2c(&b2c("good-1", "254708374149", 10, &receiver))
        .await
        .unwrap();
    assert_eq!(
        result_for(&receiver, &ack.conversation_id).await.1["Result"]["ResultCode"],
        json!(8006)
    );
    server.sim.reset();
    let ack = good
        .b2c(&b2c("good-2", "254708374149", 10, &receiver))
        .await
        .unwrap();
    assert!(
        result_for(&receiver, &ack.conversation_id)
            .await
            .0
            .is_success()
    );
    // The simulator makes credentials too.
    let own = server
        .sim
        .security_credential(daraja_sim::SANDBOX_INITIATOR_PASSWORD);
    assert_eq!(own.len(), 344);

    // A queue timeout instead of a result: the payout still executes.
    server.sim.update_faults(|f| {
        f.numbers.insert(
            "254708374149".into(),
            CallbackFaults {
                queue_timeout: true,
                ..Default::default()
            },
        );
    });
    let before = server.sim.balances(C2B_SHORTCODE).utility;
    let ack = good
        .b2c(&b2c("good-3", "254708374149", 10, &receiver))
        .await
        .unwrap();
    let record = server
        .sim
        .wait_for_result(&ack.conversation_id, WAIT)
        .await
        .unwrap();
    assert_eq!(record.kind, CallbackKind::QueueTimeout);
    assert_eq!(record.url, receiver.url("timeout"));
    assert!(record.delivered());
    assert_eq!(
        server.sim.balances(C2B_SHORTCODE).utility,
        Cents(before.0 - 1_000)
    );

    // Sync field errors of the initiator APIs.
    let token = token(&server).await;
    let reversal = json!({
        "Initiator": "testapi", "SecurityCredential": own, "CommandID": "TransactionReversal", "TransactionID": "UKM4AB12CD",
        "Amount": "1", "ReceiverParty": SHORTCODE, "ReceiverIdentifierType": "11", "ResultURL": receiver.url("result"),
        "QueueTimeOutURL": receiver.url("timeout"), "Remarks": "Payment reversal"
    });
    let a = post_json(&server, "/mpesa/reversal/v1/request", &token, &reversal).await;
    assert_eq!(
        a.error(),
        (
            400,
            "400.002.02",
            "Bad Request - Invalid RecieverIdentifierType"
        ),
        "the correct spelling is refused"
    );
    let a = post_raw(
        &server,
        "/mpesa/b2c/v3/paymentrequest",
        Some(&token),
        "application/x-www-form-urlencoded",
        "InitiatorName=testapi",
    )
    .await;
    assert_eq!(
        a.error(),
        (400, "400.002.02", "Bad Request - Invalid InitiatorName")
    );
    let a = post_json(
        &server,
        "/mpesa/b2c/v3/paymentrequest",
        &token,
        &json!({"InitiatorName": "testapi"}),
    )
    .await;
    assert_eq!(
        a.error(),
        (
            400,
            "400.002.02",
            "Bad Request - Invalid OriginatorConversationID"
        )
    );
}

#[tokio::test]
async fn nested_under_a_prefix_and_inspectable_with_bounded_logs() {
    let sim = Simulator::new(
        SimConfig {
            log_capacity: 4,
            ..SimConfig::for_tests()
        }
        .accept_credentials("real-key", "real-secret-value"),
    )
    .unwrap();
    let server = start_with(sim, Some("/sandbox")).await;
    let receiver = Receiver::start().await;
    let client = client(&server);
    let accepted = client
        .stk_push(&push_params("254708374149", 1, &receiver.url("stk")))
        .await
        .unwrap();
    receiver.stk_callback(&accepted.checkout_request_id).await;

    let overview = get(&server, "/simulator").await.body;
    assert_eq!(overview["links"]["requests"], "/sandbox/simulator/requests");
    assert_eq!(
        overview["links"]["callbacks"],
        "/sandbox/simulator/callbacks"
    );
    let credentials = overview["accepted_credentials"].as_array().unwrap();
    assert!(credentials.contains(&json!({"consumer_key": "sandbox-consumer-key", "consumer_secret": "sandbox-consumer-secret"})));
    assert!(
        credentials.contains(&json!({"consumer_key": "real-key", "consumer_secret": "[REDACTED]"}))
    );
    assert!(!overview.to_string().contains("real-secret-value"));
    let scenarios = overview["scenarios"].as_array().unwrap();
    for number in [
        "254708374149",
        "254700000001",
        "254700001032",
        "254700001037",
        "254700002001",
        "254700000000",
        "254700000002",
        "254700000003",
    ] {
        assert!(
            scenarios.iter().any(|s| s["msisdn"] == number),
            "{number} listed"
        );
    }

    let requests = get(&server, "/simulator/requests").await.body;
    let push = requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "/mpesa/stkpush/v1/processrequest")
        .unwrap();
    assert_eq!(push["status"], 200);
    assert_eq!(push["body"]["PhoneNumber"], "254708374149");
    assert_eq!(
        push["body"]["Password"], "[REDACTED]",
        "the passkey never leaves through the log"
    );
    assert_eq!(
        push["answer"]["CheckoutRequestID"],
        json!(accepted.checkout_request_id)
    );
    let callbacks = get(&server, "/simulator/callbacks").await.body;
    let sent = &callbacks.as_array().unwrap()[0];
    assert_eq!(
        (
            sent["kind"].clone(),
            sent["outcome"].clone(),
            sent["http_status"].clone()
        ),
        (json!("stk_callback"), json!("delivered"), json!(200))
    );
    assert_eq!(
        sent["body"]["Body"]["stkCallback"]["CheckoutRequestID"],
        json!(accepted.checkout_request_id)
    );
    let transactions = get(&server, "/simulator/transactions").await.body;
    assert_eq!(transactions["stk"][0]["status"]["state"], "final");
    assert_eq!(transactions["payments"][0]["kind"], "stk");

    // The logs keep only the newest `log_capacity` records.
    for _ in 0..6 {
        post_json(&server, "/mpesa/stkpushquery/v1/query", "nope", &json!({})).await;
    }
    let log = server.sim.requests();
    assert_eq!(log.len(), 4);
    assert!(log.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert!(log[0].seq > 4);

    let reset = http()
        .post(format!("{}/simulator/reset", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert!(
        server.sim.requests().is_empty()
            && server.sim.callbacks().is_empty()
            && server.sim.stk_transactions().is_empty()
    );
    // Tokens survive a reset.
    client
        .stk_push(&push_params("254708374149", 1, &receiver.url("stk")))
        .await
        .unwrap();
    assert_eq!(server.sim.requests().last().unwrap().status, 200);
}
