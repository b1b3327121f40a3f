//! C2B as customers pay (issue 13, "The simulator"), recovery of what never came (Pull
//! Transactions, Transaction Status), and the initiator failures money-out needs (issue 14):
//! each path driven through the simulator's Rust and HTTP controls.

mod common;

use common::*;
use daraja::wire::{C2bPayment, ResultEnvelope};
use daraja::{
    C2bResponseType, C2bVersion, IdentifierType, PullQueryParams, PullRegisterParams,
    ReversalParams, TransactionStatusParams,
};
use daraja_sim::{
    Balances, C2bMsisdnModes, C2bStatus, CallbackFaults, CallbackKind, CustomerPayment,
    DeliveryOutcome, Flow, MsisdnMode, SimConfig, UNREGISTERED_RECIPIENT_NUMBER,
};
use mpesa_domain::{Amount, AmountBounds, Cents, Msisdn};
use serde_json::{Value, json};
use url::Url;

const PAYBILL: &str = "600000";

async fn registered(server: &SimServer, receiver: &Receiver, version: C2bVersion) {
    client(server)
        .c2b_register_urls(&daraja::C2bRegisterParams {
            short_code: Some(PAYBILL.into()),
            response_type: C2bResponseType::Completed,
            confirmation_url: Url::parse(&receiver.url("confirm")).unwrap(),
            validation_url: Url::parse(&receiver.url("validate")).unwrap(),
            version: Some(version),
        })
        .await
        .expect("registered");
}

fn confirmations(receiver: &Receiver, trans_id: &str) -> Vec<Value> {
    receiver
        .received()
        .into_iter()
        .filter(|r| r.path == "/hooks/confirm" && r.json()["TransID"] == trans_id)
        .map(|r| r.json())
        .collect()
}

/// c2b.md "Confirmation" and "C2B simulate": a paybill payment carries its account, a till
/// payment none; v2 masks the MSISDN, v1 hashes it (2025 FAQ), full on request.
#[tokio::test]
async fn paybill_and_till_payments_are_confirmed_with_the_msisdn_form_of_the_version() {
    let server = start(SimConfig::for_tests()).await;
    let receiver = Receiver::start().await;
    registered(&server, &receiver, C2bVersion::V2).await;

    let paid = server
        .sim
        .pay_c2b(CustomerPayment::paybill(PAYBILL, "ACC1", 100))
        .await
        .unwrap();
    assert_eq!(paid.status, C2bStatus::Completed);
    let c = receiver
        .wait_for(1, |r| r.path == "/hooks/confirm")
        .await
        .remove(0);
    let parsed = C2bPayment::parse(&c.body).unwrap();
    assert_eq!(parsed.trans_id, paid.trans_id);
    let c = c.json();
    assert_eq!(c["TransactionType"], "Pay Bill");
    assert_eq!(c["BillRefNumber"], "ACC1");
    assert_eq!(c["TransAmount"], "100.00");
    assert_eq!(c["MSISDN"], "2547 ***** 149");
    assert_eq!(c["BusinessShortCode"], PAYBILL);

    let till = server
        .sim
        .pay_c2b(CustomerPayment::till(PAYBILL, 40).from_phone("0711000001"))
        .await
        .unwrap();
    let t = receiver
        .wait_for(1, |r| {
            r.path == "/hooks/confirm" && r.json()["TransID"] == till.trans_id.as_str()
        })
        .await
        .remove(0)
        .json();
    assert_eq!(t["TransactionType"], "Buy Goods");
    assert_eq!(t["BillRefNumber"], "");

    registered(&server, &receiver, C2bVersion::V1).await;
    let v1 = server
        .sim
        .pay_c2b(CustomerPayment {
            version: Some(daraja_sim::C2bApiVersion::V1),
            ..CustomerPayment::paybill(PAYBILL, "ACC2", 10)
        })
        .await
        .unwrap();
    let hashed = &confirmations(&receiver, &v1.trans_id)[0]["MSISDN"];
    let phone = Msisdn::parse("254708374149").unwrap();
    assert_eq!(hashed.as_str().unwrap().len(), 64);
    assert_eq!(phone.matches_reported(hashed.as_str().unwrap()), Some(true));

    server.sim.set_c2b_msisdn(C2bMsisdnModes {
        v1: MsisdnMode::Full,
        v2: MsisdnMode::Full,
    });
    let full = server
        .sim
        .pay_c2b(CustomerPayment::paybill(PAYBILL, "ACC3", 10))
        .await
        .unwrap();
    receiver
        .wait_for(1, |r| {
            r.path == "/hooks/confirm" && r.json()["TransID"] == full.trans_id.as_str()
        })
        .await;
    assert_eq!(
        confirmations(&receiver, &full.trans_id)[0]["MSISDN"],
        "254708374149"
    );

    // Bad input is refused, as M-Pesa would not let the customer send it.
    assert!(
        server
            .sim
            .pay_c2b(CustomerPayment::paybill(PAYBILL, "A", 0))
            .await
            .is_err()
    );
    assert!(
        server
            .sim
            .pay_c2b(CustomerPayment::paybill(PAYBILL, "A", 1).from_phone("12345"))
            .await
            .is_err()
    );
}

/// c2b.md "Flow" steps 2–3 and the simulator's faults (line 482): validation decides, a
/// confirmation can be dropped, doubled, or lose its names.
#[tokio::test]
async fn validation_and_confirmation_faults_per_payment_and_per_flow() {
    let server = start(SimConfig::for_tests()).await;
    let receiver = Receiver::start().await;
    registered(&server, &receiver, C2bVersion::V2).await;
    server.sim.set_c2b_validation(PAYBILL, true);

    receiver.set_validation(ValidationReply::Reject("C2B00012"));
    let refused = server
        .sim
        .pay_c2b(CustomerPayment::paybill(PAYBILL, "NOPE", 10))
        .await
        .unwrap();
    assert_eq!(
        refused.status,
        C2bStatus::Rejected {
            result_code: "C2B00012".into()
        }
    );
    assert!(server.sim.payment(&refused.trans_id).is_none());

    receiver.set_validation(ValidationReply::Accept {
        reference: Some("ORD-7".into()),
    });
    let twice = server
        .sim
        .pay_c2b(
            CustomerPayment::paybill(PAYBILL, "ACC1", 10).with_faults(CallbackFaults {
                copies: 2,
                omit_c2b_names: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let copies = confirmations(&receiver, &twice.trans_id);
    assert_eq!(copies.len(), 2, "delivered twice");
    assert_eq!(copies[0], copies[1]);
    assert_eq!(copies[0]["ThirdPartyTransID"], "ORD-7");
    assert!(copies[0].get("MiddleName").is_none() && copies[0].get("LastName").is_none());

    // Every C2B confirmation suppressed, from Rust (HTTP: {"flows": {"c2b": {"suppress": true}}}).
    server.sim.set_c2b_validation(PAYBILL, false);
    server.sim.update_faults(|f| {
        f.flows.insert(
            Flow::C2b,
            CallbackFaults {
                suppress: true,
                ..Default::default()
            },
        );
    });
    let lost = server
        .sim
        .pay_c2b(CustomerPayment::paybill(PAYBILL, "LOST1", 25))
        .await
        .unwrap();
    assert!(lost.is_completed());
    assert!(confirmations(&receiver, &lost.trans_id).is_empty());
    let record = server
        .sim
        .callbacks()
        .into_iter()
        .find(|c| c.kind == CallbackKind::C2bConfirmation && c.reference == lost.trans_id)
        .unwrap();
    assert_eq!(record.outcome, DeliveryOutcome::Suppressed);
    assert!(
        server.sim.payment(&lost.trans_id).is_some(),
        "the money moved"
    );
}

/// c2b.md "Pull Transactions": register (1000, then 1001), query a window page by page, and
/// find the payment whose confirmation never came; Transaction Status finds it too
/// (b2c-and-results.md "Transaction Status").
#[tokio::test]
async fn a_lost_confirmation_is_found_by_pull_transactions_and_by_transaction_status() {
    let server = start(SimConfig {
        pull_page_size: 2,
        ..SimConfig::for_tests()
    })
    .await;
    let receiver = Receiver::start().await;
    let client = client(&server);
    registered(&server, &receiver, C2bVersion::V2).await;
    let start_time = chrono::Utc::now() - chrono::Duration::seconds(5);
    let mut receipts = Vec::new();
    for (i, account) in ["A1", "A2", "A3"].iter().enumerate() {
        let faults = CallbackFaults {
            suppress: i == 1,
            ..Default::default()
        };
        let paid = server
            .sim
            .pay_c2b(CustomerPayment::paybill(PAYBILL, *account, 10 + i as i64).with_faults(faults))
            .await
            .unwrap();
        receipts.push(paid.trans_id);
    }
    assert!(confirmations(&receiver, &receipts[1]).is_empty());

    let query = |offset| PullQueryParams {
        short_code: Some(PAYBILL.into()),
        start: start_time,
        end: chrono::Utc::now() + chrono::Duration::seconds(5),
        offset,
    };
    // Not registered yet: refused.
    let refused = client.pull_query(&query(0)).await.unwrap_err();
    assert_eq!(refused.error_code(), Some("401.001"));
    let register = PullRegisterParams {
        short_code: Some(PAYBILL.into()),
        nominated_number: Msisdn::parse("254708374149").unwrap(),
        callback_url: Url::parse(&receiver.url("pull")).unwrap(),
    };
    assert!(
        !client
            .pull_register(&register)
            .await
            .unwrap()
            .already_registered
    );
    assert!(
        client
            .pull_register(&register)
            .await
            .unwrap()
            .already_registered
    );

    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = client.pull_query(&query(offset)).await.unwrap();
        if page.transactions.is_empty() {
            break;
        }
        assert!(page.transactions.len() <= 2, "pages of pull_page_size");
        offset += page.transactions.len() as u32;
        seen.extend(page.transactions);
    }
    let ids: Vec<_> = seen.iter().map(|t| t.transaction_id.clone()).collect();
    assert_eq!(
        ids, receipts,
        "every payment, in order, the suppressed one included"
    );
    let lost = &seen[1];
    assert_eq!(lost.bill_reference, "A2");
    assert_eq!(lost.amount_cents(), Some(Cents(1100)));
    assert_eq!(lost.transaction_type, "c2b-pay-bill-debit");
    assert!(lost.trx_date.ends_with('Z'));
    // A window before the payments: nothing (1001).
    let empty = client
        .pull_query(&PullQueryParams {
            end: start_time,
            start: start_time - chrono::Duration::hours(1),
            ..query(0)
        })
        .await
        .unwrap();
    assert!(empty.transactions.is_empty());

    // Transaction Status by the receipt of the lost payment.
    let accepted = client
        .transaction_status(&TransactionStatusParams {
            transaction_id: Some(receipts[1].clone()),
            original_conversation_id: None,
            party_a: Some(PAYBILL.into()),
            identifier_type: IdentifierType::ShortCode,
            remarks: "check".into(),
            occasion: None,
            result_url: Url::parse(&receiver.url("result")).unwrap(),
            queue_timeout_url: Url::parse(&receiver.url("timeout")).unwrap(),
        })
        .await
        .unwrap();
    let result = server
        .sim
        .wait_for_result(&accepted.conversation_id, WAIT)
        .await
        .unwrap();
    let envelope = ResultEnvelope::parse(result.body_text().as_bytes()).unwrap();
    let body: Value = serde_json::from_str(result.body_text()).unwrap();
    assert!(envelope.result.result_code.is_success(), "{body}");
    let params = body["Result"]["ResultParameters"]["ResultParameter"].to_string();
    assert!(
        params.contains(&receipts[1]) && params.contains("Completed"),
        "{params}"
    );
}

/// b2c-and-results.md "B2C result codes" and "Reversal" (codes `1`, `2040`, `SFC_IC0003`,
/// `R000001`) and "QueueTimeOutURL": each failure by scenario, and results that come twice,
/// late or never, per API.
#[tokio::test]
async fn initiator_failures_by_scenario_and_results_twice_late_or_never() {
    let server = start(SimConfig::for_tests()).await;
    let receiver = Receiver::start().await;
    let client = client(&server);
    let b2c = |id: &str, phone: &str, amount: i64| daraja::B2cParams {
        originator_conversation_id: id.into(),
        command: daraja::B2cCommand::BusinessPayment,
        amount: Amount::new(
            amount,
            AmountBounds {
                min: 10,
                max: 250_000,
            },
        )
        .unwrap(),
        phone: Msisdn::parse(phone).unwrap(),
        remarks: "payout".into(),
        occasion: None,
        result_url: Url::parse(&receiver.url("result")).unwrap(),
        queue_timeout_url: Url::parse(&receiver.url("timeout")).unwrap(),
    };
    let code_of = |r: &daraja_sim::CallbackRecord| {
        let v: Value = serde_json::from_str(r.body_text()).unwrap();
        v["Result"]["ResultCode"]
            .to_string()
            .trim_matches('"')
            .to_owned()
    };
    let result_of = |id: String| {
        let sim = server.sim.clone();
        async move { sim.wait_for_result(&id, WAIT).await.unwrap() }
    };

    let a = client
        .b2c(&b2c("po-1", UNREGISTERED_RECIPIENT_NUMBER, 100))
        .await
        .unwrap();
    assert_eq!(code_of(&result_of(a.conversation_id).await), "2040");
    let a = client.b2c(&b2c("po-2", "254700009003", 100)).await.unwrap();
    assert_eq!(code_of(&result_of(a.conversation_id).await), "SFC_IC0003");

    // Insufficient utility balance, set from Rust (HTTP: POST /simulator/balances).
    server.sim.set_balances(
        PAYBILL,
        Balances {
            working: Cents(0),
            utility: Cents(5_000),
            charges_paid: Cents(0),
        },
    );
    let a = client.b2c(&b2c("po-3", "254708374149", 100)).await.unwrap();
    assert_eq!(code_of(&result_of(a.conversation_id).await), "1");
    let set = http()
        .post(format!("{}/simulator/balances", server.base_url))
        .json(&json!({"short_code": PAYBILL, "utility": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(server.sim.balances(PAYBILL).utility, Cents(100_000));

    // A reversal, then the same again: R000001.
    let paid = server
        .sim
        .pay_c2b(CustomerPayment::paybill(PAYBILL, "R1", 50))
        .await
        .unwrap();
    let reverse = || ReversalParams {
        transaction_id: paid.trans_id.clone(),
        amount: Amount::new(50, AmountBounds::default()).unwrap(),
        receiver_party: Some(PAYBILL.into()),
        remarks: "refund".into(),
        occasion: None,
        result_url: Url::parse(&receiver.url("result")).unwrap(),
        queue_timeout_url: Url::parse(&receiver.url("timeout")).unwrap(),
    };
    let first = client.reversal(&reverse()).await.unwrap();
    assert_eq!(code_of(&result_of(first.conversation_id).await), "0");
    let second = client.reversal(&reverse()).await.unwrap();
    assert_eq!(code_of(&result_of(second.conversation_id).await), "R000001");

    // Results of one API twice, late, or never (queue timeout), over HTTP.
    let set_faults = |faults: Value| {
        let url = format!("{}/simulator/faults", server.base_url);
        async move {
            let r = http().post(url).json(&faults).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
    };
    set_faults(json!({"flows": {"b2c": {"copies": 2}}})).await;
    let a = client.b2c(&b2c("po-4", "254708374149", 100)).await.unwrap();
    let copies = server
        .sim
        .wait_for_callbacks(WAIT, 2, |c| c.reference == a.conversation_id)
        .await
        .unwrap();
    assert!(
        copies
            .iter()
            .all(|c| c.kind == CallbackKind::Result && c.delivered())
    );
    set_faults(json!({"flows": {"b2c": {"queue_timeout": true}}})).await;
    let a = client.b2c(&b2c("po-5", "254708374149", 100)).await.unwrap();
    let timeout = result_of(a.conversation_id.clone()).await;
    assert_eq!(timeout.kind, CallbackKind::QueueTimeout);
    assert!(timeout.url.ends_with("/hooks/timeout"));
    // The payout still happened: Transaction Status finds it by its OriginatorConversationID.
    set_faults(json!({"flows": {"b2c": {"suppress": true}}})).await;
    let a = client.b2c(&b2c("po-6", "254708374149", 100)).await.unwrap();
    let never = result_of(a.conversation_id).await;
    assert_eq!(never.outcome, DeliveryOutcome::Suppressed);
    let status = client
        .transaction_status(&TransactionStatusParams {
            transaction_id: None,
            original_conversation_id: Some("po-6".into()),
            party_a: Some(PAYBILL.into()),
            identifier_type: IdentifierType::ShortCode,
            remarks: "where is it".into(),
            occasion: None,
            result_url: Url::parse(&receiver.url("result")).unwrap(),
            queue_timeout_url: Url::parse(&receiver.url("timeout")).unwrap(),
        })
        .await
        .unwrap();
    let found = result_of(status.conversation_id).await;
    assert_eq!(code_of(&found), "0");
    assert!(found.delivered(), "only B2C results are suppressed");
    set_faults(json!({"flows": {"reversal": {"late": true}}})).await;
    let late = client.reversal(&reverse()).await.unwrap();
    let r = result_of(late.conversation_id).await;
    assert!(
        r.time - server.sim.requests().last().unwrap().time
            >= chrono::Duration::from_std(server.sim.config().late_delay).unwrap(),
        "sent after the late delay"
    );
}

/// The customer's side over HTTP: `POST /simulator/c2b/pay` (JSON) and the page's form.
#[tokio::test]
async fn customers_pay_over_http_and_from_the_page() {
    let server = start(SimConfig::for_tests()).await;
    let receiver = Receiver::start().await;
    registered(&server, &receiver, C2bVersion::V2).await;
    let paid: Value = http()
        .post(format!("{}/simulator/c2b/pay", server.base_url))
        .json(&json!({"amount": 100, "account": "ACC1", "first_name": "<b>JANE</b>"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paid["status"], "completed", "{paid}");
    let trans_id = paid["trans_id"].as_str().unwrap().to_owned();
    let c = receiver
        .wait_for(1, |r| {
            r.path == "/hooks/confirm" && r.json()["TransID"] == trans_id.as_str()
        })
        .await
        .remove(0)
        .json();
    assert_eq!(
        c["FirstName"], "<b>JANE</b>",
        "hostile names pass through, as M-Pesa's would"
    );

    let bad = http()
        .post(format!("{}/simulator/c2b/pay", server.base_url))
        .json(&json!({"amount": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);

    let page = get(&server, "/simulator/pay").await;
    let html = page.body.as_str().unwrap();
    assert!(
        html.contains("<form method=\"post\" action=\"/simulator/c2b/pay\">"),
        "{html}"
    );
    assert!(
        !html.contains("/hooks/confirm"),
        "only the origin of a callback URL is shown"
    );
    let answered = http()
        .post(format!("{}/simulator/c2b/pay", server.base_url))
        .form(&[
            ("short_code", PAYBILL),
            ("account", "<script>x</script>"),
            ("amount", "70"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answered.contains("id=\"receipt\""), "{answered}");
    assert!(!answered.contains("<script>x"), "escaped");
    let form_payment = server
        .sim
        .payments()
        .into_iter()
        .find(|p| p.amount == 70)
        .unwrap();
    assert_eq!(
        form_payment.reference.as_deref(),
        Some("<script>x</script>")
    );
}
