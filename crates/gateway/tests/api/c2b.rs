//! C2B end to end: customers paying the paybill or till on their own become payments, through
//! the simulator (as Daraja would call) and straight to the confirmation URL (copies, forgeries,
//! other shortcodes), on every backend.

use std::sync::Arc;
use std::time::Duration;

use daraja_sim::CustomerPayment;
use daraja_sim::faults::CallbackFaults;
use mpesa_harness::database::TestDatabase;
use mpesa_storage::{
    Backend, CallbackFilter, CallbackKind, CallbackOutcome, Channel, OutboxFilter, PageRequest,
    Payment, PaymentChannel, Storage, TelegramLink,
};
use serde_json::{Value, json};

use crate::outbox::{CUSTOMER_CHAT, Destinations, wait_outbox_idle};
use crate::outbox_receivers::*;
use crate::support::*;

const PAYBILL: &str = "600000";

/// A confirmation body as Daraja sends it (v2 shape).
pub fn confirmation(
    trans_id: &str,
    short_code: &str,
    account: &str,
    amount: &str,
    msisdn: &str,
    name: &str,
) -> Vec<u8> {
    json!({
        "TransactionType": "Pay Bill",
        "TransID": trans_id,
        "TransTime": "20261206121325",
        "TransAmount": amount,
        "BusinessShortCode": short_code,
        "BillRefNumber": account,
        "InvoiceNumber": "",
        "OrgAccountBalance": "25.00",
        "ThirdPartyTransID": "",
        "MSISDN": msisdn,
        "FirstName": name,
    })
    .to_string()
    .into_bytes()
}

/// A confirmation `body` paid now (`TransTime` in East Africa Time, as Daraja writes it).
fn paid_now(body: &[u8]) -> Value {
    let mut body: Value = serde_json::from_slice(body).unwrap();
    body["TransTime"] = json!(
        (chrono::Utc::now() + chrono::Duration::hours(3))
            .format("%Y%m%d%H%M%S")
            .to_string()
    );
    body
}

impl TestGateway {
    /// POSTs a body to this gateway's C2B confirmation URL.
    pub async fn post_c2b_confirmation(&self, body: &[u8]) -> (u16, Value) {
        self.post_callback("c2b/confirmation", body).await
    }

    /// POSTs a body to this gateway's C2B validation URL.
    pub async fn post_c2b_validation(&self, body: &[u8]) -> (u16, Value) {
        self.post_callback("c2b/validation", body).await
    }

    /// `GET /api/v1/payments` with these query parameters: the items.
    pub async fn list_payments(&self, query: &str) -> Vec<Value> {
        let response = self
            .client
            .get(self.url(&format!("/api/v1/payments?{query}")))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{query}");
        let body: Value = response.json().await.unwrap();
        body["data"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the simulator holds this gateway's C2B registration (`serve --sandbox`
    /// registers by itself).
    pub async fn c2b_registered(&self) {
        eventually(
            "the gateway registered its C2B URLs",
            Duration::from_secs(10),
            || {
                let registered = self.sim().c2b_registrations().iter().any(|r| {
                    r.short_code == PAYBILL && r.confirmation_url.contains("/c2b/confirmation")
                });
                async move { registered }
            },
        )
        .await;
    }

    /// Waits for the payment holding `receipt`.
    pub async fn payment_by_receipt(&self, receipt: &str) -> Payment {
        let storage = self.storage();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = storage.find_payment_by_receipt(receipt).await.unwrap() {
                return p;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no payment with receipt {receipt} after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Outbox rows of a payment, as (channel, event type).
async fn outbox_of(storage: &dyn Storage, payment_id: &str) -> Vec<(Channel, String)> {
    let page = storage
        .list_outbox(
            &OutboxFilter::default(),
            &PageRequest {
                limit: 500,
                cursor: None,
            },
        )
        .await
        .unwrap();
    page.items
        .into_iter()
        .filter(|e| e.payment_id.as_deref() == Some(payment_id))
        .map(|e| (e.channel, e.event_type))
        .collect()
}

async fn c2b_callbacks(storage: &dyn Storage) -> Vec<mpesa_storage::RawCallback> {
    storage
        .list_callbacks(
            &CallbackFilter {
                kind: Some(CallbackKind::C2bConfirmation),
                ..CallbackFilter::default()
            },
            &PageRequest {
                limit: 500,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items
}

/// A customer pays the paybill from their phone (the simulator, as Daraja): the gateway books a
/// `completed` C2B payment with the account, shortcode and MSISDN as given, sends one
/// `payment.completed` webhook with `data.channel = "c2b"` and alerts the admin; the API finds
/// it by channel, account and receipt. The same confirmation again changes nothing.
async fn a_paybill_payment_becomes_a_completed_c2b_payment(backend: Backend) {
    let destinations = Destinations::start().await;
    let gw = spawn_with(destinations.options(backend, "50ms,100ms")).await;
    gw.c2b_registered().await;

    let outcome = gw
        .sim()
        .pay_c2b(CustomerPayment::paybill(PAYBILL, "ACC1", 100))
        .await
        .unwrap();
    let receipt = outcome.trans_id.clone();
    let p = gw.payment_by_receipt(&receipt).await;
    assert_eq!(p.status.as_str(), "completed");
    assert_eq!(p.channel, PaymentChannel::C2b);
    assert_eq!(p.amount.shillings(), 100);
    assert_eq!(p.reference, "ACC1");
    assert_eq!(p.business_short_code.as_deref(), Some(PAYBILL));
    assert_eq!(p.recovered_by, None);
    // v2 masks the number: kept as given, never taken for a phone.
    let given = p.payer_msisdn.clone().expect("the MSISDN as given");
    assert!(given.contains('*'), "{given}");
    assert_eq!(p.phone, None);
    assert!(p.transaction_date.is_some(), "TransTime is kept");

    let view = gw.get_payment(&p.id).await;
    assert_eq!(view["channel"], "c2b");
    assert_eq!(view["account_reference"], "ACC1");
    assert_eq!(view["business_short_code"], PAYBILL);
    assert_eq!(view["mpesa_receipt_number"], receipt.as_str());
    assert_eq!(view["phone"], Value::Null);
    let ids = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(gw.list_payments("channel=c2b").await),
        vec![p.id.clone()]
    );
    assert!(ids(gw.list_payments("channel=stk").await).is_empty());
    assert_eq!(
        ids(gw.list_payments("account_reference=ACC1").await),
        vec![p.id.clone()]
    );
    assert_eq!(
        ids(gw.list_payments(&format!("receipt={receipt}")).await),
        vec![p.id.clone()]
    );

    eventually("the webhook is delivered", Duration::from_secs(10), || {
        let n = destinations.webhook.delivered().len();
        async move { n >= 1 }
    })
    .await;
    let hook = destinations.webhook.delivered()[0].json();
    assert_eq!(hook["type"], "payment.completed");
    assert_eq!(hook["data"]["channel"], "c2b");
    assert_eq!(hook["data"]["id"], p.id.as_str());
    assert_eq!(hook["data"]["account_reference"], "ACC1");

    // The same confirmation again (Daraja's copy, or a replay): nothing new.
    let again = confirmation(
        &receipt,
        PAYBILL,
        "ACC1",
        "100.00",
        "2547 ***** 149",
        "JOHN",
    );
    let (status, _) = gw.post_c2b_confirmation(&again).await;
    assert_eq!(status, 200);
    wait_outbox_idle(gw.storage().as_ref()).await;
    let rows = outbox_of(gw.storage().as_ref(), &p.id).await;
    assert_eq!(
        rows.iter().filter(|(c, _)| *c == Channel::Webhook).count(),
        1,
        "one webhook: {rows:?}"
    );
    assert!(
        rows.iter()
            .any(|(c, t)| *c == Channel::Telegram && t == "payment.completed"),
        "the admin is alerted: {rows:?}"
    );
    assert_eq!(destinations.webhook.delivered().len(), 1);
    let outcomes: Vec<CallbackOutcome> = c2b_callbacks(gw.storage().as_ref())
        .await
        .iter()
        .map(|c| c.outcome)
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == CallbackOutcome::Applied)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == CallbackOutcome::Duplicate)
            .count(),
        1,
        "{outcomes:?}"
    );
    let all = gw.list_payments("channel=c2b").await;
    assert_eq!(all.len(), 1);
    gw.stop().await;
}

/// 50 copies of one confirmation, sent at once to two gateways sharing a database, make one
/// payment and one webhook: the receipt settles once across instances.
async fn fifty_copies_over_two_instances_make_one_payment(backend: Backend) {
    let database = Arc::new(TestDatabase::new(backend).await);
    let instance = |database: Arc<TestDatabase>| {
        let mut o = Options::new(backend)
            .env("WEBHOOK_URL", "http://127.0.0.1:9/hook")
            .env("WEBHOOK_SECRET", "whsec_test_0123456789abcdef")
            .env("WEBHOOK_ALLOW_PRIVATE", "true")
            .env("OUTBOX_POLL_INTERVAL", "1h");
        o.database = Some(database);
        o
    };
    let a = spawn_with(instance(database.clone())).await;
    let b = spawn_with(instance(database.clone())).await;
    let body = confirmation(
        "TXC2B50COPY",
        PAYBILL,
        "INV-50",
        "250.00",
        "2547 ***** 149",
        "JANE",
    );
    let posts = (0..50).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        gw.post_c2b_confirmation(&body)
    });
    for (status, answer) in futures::future::join_all(posts).await {
        assert_eq!(status, 200, "{answer}");
    }
    let storage = a.storage();
    let all = a.list_payments("receipt=TXC2B50COPY").await;
    assert_eq!(all.len(), 1, "{all:?}");
    let id = all[0]["id"].as_str().unwrap();
    let rows = outbox_of(storage.as_ref(), id).await;
    assert_eq!(
        rows,
        vec![(Channel::Webhook, "payment.completed".to_owned())]
    );
    let callbacks = c2b_callbacks(storage.as_ref()).await;
    assert_eq!(callbacks.len(), 50, "every copy is kept");
    // Copies still `received` (a conflict on a cluster) are applied a moment later; here every
    // copy is decided at once.
    let applied = callbacks
        .iter()
        .filter(|c| c.outcome == CallbackOutcome::Applied)
        .count();
    let duplicates = callbacks
        .iter()
        .filter(|c| c.outcome == CallbackOutcome::Duplicate)
        .count();
    assert_eq!((applied, duplicates), (1, 49));
    assert!(
        callbacks
            .iter()
            .all(|c| c.payment_id.as_deref() == Some(id))
    );
    a.stop().await;
    b.stop().await;
}

/// A confirmation for a shortcode this gateway does not serve is kept and flagged, not booked;
/// one that cannot be read is kept and answered 400.
async fn other_shortcodes_and_garbage_are_kept_not_booked(backend: Backend) {
    let gw = spawn(backend).await;
    let (status, _) = gw
        .post_c2b_confirmation(&confirmation(
            "TXOTHER001",
            "999999",
            "A1",
            "10.00",
            "2547 ***** 149",
            "X",
        ))
        .await;
    assert_eq!(status, 200);
    let (status, _) = gw.post_c2b_confirmation(br#"{"TransID": 5"#).await;
    assert_eq!(status, 400);
    // A TransID longer than a receipt can be stored: refused and kept, never taken as booked.
    let long = "T".repeat(65);
    let (status, _) = gw
        .post_c2b_confirmation(&confirmation(
            &long,
            PAYBILL,
            "A1",
            "10.00",
            "2547 ***** 149",
            "X",
        ))
        .await;
    assert_eq!(status, 400);
    let callbacks = c2b_callbacks(gw.storage().as_ref()).await;
    let mut outcomes: Vec<_> = callbacks.iter().map(|c| c.outcome).collect();
    outcomes.sort_by_key(|o| o.as_str());
    assert_eq!(
        outcomes,
        vec![
            CallbackOutcome::Flagged,
            CallbackOutcome::Unparseable,
            CallbackOutcome::Unparseable
        ]
    );
    let flagged = callbacks
        .iter()
        .find(|c| c.outcome == CallbackOutcome::Flagged)
        .unwrap();
    assert!(
        flagged.error.as_deref().unwrap_or("").contains("999999"),
        "{flagged:?}"
    );
    assert!(gw.list_payments("channel=c2b").await.is_empty());
    assert!(
        gw.storage()
            .find_payment_by_receipt("TXOTHER001")
            .await
            .unwrap()
            .is_none()
    );
    gw.stop().await;
}

/// A hashed MSISDN (C2B v1 since 2024) is matched to a phone linked to a Telegram chat: the
/// payment gets that phone and the chat its receipt. A hash of no known phone stays a hash.
async fn a_hashed_msisdn_is_matched_to_a_linked_phone(backend: Backend) {
    let destinations = Destinations::start().await;
    let gw = spawn_with(destinations.options(backend, "50ms,100ms")).await;
    gw.storage()
        .link_telegram_chat(&TelegramLink {
            chat_id: CUSTOMER_CHAT,
            user_id: 42,
            phone: SUCCESS.into(),
            linked_at: 1,
            blocked_at: None,
        })
        .await
        .unwrap();
    let hash = mpesa_domain::c2b::sha256_hex(SUCCESS);
    let (status, _) = gw
        .post_c2b_confirmation(&confirmation(
            "TXHASH0001",
            PAYBILL,
            "A1",
            "75.00",
            &hash,
            "JANE",
        ))
        .await;
    assert_eq!(status, 200);
    let p = gw.payment_by_receipt("TXHASH0001").await;
    assert_eq!(p.phone.as_ref().map(|m| m.as_str()), Some(SUCCESS));
    assert_eq!(
        p.payer_msisdn.as_deref(),
        Some(hash.as_str()),
        "kept as given"
    );
    assert_eq!(p.telegram_chat_id, Some(CUSTOMER_CHAT));
    eventually(
        "the customer's receipt arrives",
        Duration::from_secs(10),
        || {
            let telegram = &destinations.telegram;
            async move { !telegram.messages_to(CUSTOMER_CHAT).await.is_empty() }
        },
    )
    .await;
    let text = destinations.telegram.messages_to(CUSTOMER_CHAT).await[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains("TXHASH0001"), "{text}");

    let stranger = mpesa_domain::c2b::sha256_hex("254711000999");
    gw.post_c2b_confirmation(&confirmation(
        "TXHASH0002",
        PAYBILL,
        "A1",
        "75.00",
        &stranger,
        "JO",
    ))
    .await;
    let q = gw.payment_by_receipt("TXHASH0002").await;
    assert_eq!(q.phone, None, "a hash is never a phone");
    assert_eq!(q.telegram_chat_id, None);
    gw.stop().await;
}

/// A confirmation whose receipt an STK payment already holds (an STK push to a shortcode with
/// C2B URLs registered triggers both) books nothing more.
async fn a_confirmation_for_an_stk_receipt_is_a_duplicate(backend: Backend) {
    let gw = spawn(backend).await;
    let id = gw.pay(SUCCESS, 10).await;
    let p = gw
        .wait_for_status(&id, "completed", Duration::from_secs(10))
        .await;
    let receipt = p.mpesa_receipt_number.clone().unwrap();
    let (status, _) = gw
        .post_c2b_confirmation(&confirmation(
            &receipt, PAYBILL, "T1", "10.00", SUCCESS, "JOHN",
        ))
        .await;
    assert_eq!(status, 200);
    let callbacks = c2b_callbacks(gw.storage().as_ref()).await;
    assert_eq!(callbacks.len(), 1);
    assert_eq!(callbacks[0].outcome, CallbackOutcome::Duplicate);
    assert_eq!(callbacks[0].payment_id.as_deref(), Some(id.as_str()));
    assert!(gw.list_payments("channel=c2b").await.is_empty());
    gw.stop().await;
}

/// A confirmation the simulator never delivers (Safaricom does not resend it) is recovered by
/// Pull Transactions: booked once with `recovered_by: "pull"` and the admin told; a second run
/// and the late confirmation change nothing; a payment whose confirmation came is left alone.
async fn a_lost_confirmation_is_recovered_by_pull_once(backend: Backend) {
    let destinations = Destinations::start().await;
    let gw = spawn_with(destinations.options(backend, "50ms,100ms")).await;
    gw.c2b_registered().await;
    let payments = &gw.state.payments;
    payments
        .pull_register(mpesa_domain::Msisdn::parse(SUCCESS).unwrap())
        .await
        .unwrap();
    let lost = gw
        .sim()
        .pay_c2b(
            CustomerPayment::paybill(PAYBILL, "LOST1", 60).with_faults(CallbackFaults {
                suppress: true,
                ..CallbackFaults::default()
            }),
        )
        .await
        .unwrap();
    let came = gw
        .sim()
        .pay_c2b(CustomerPayment::paybill(PAYBILL, "CAME1", 70))
        .await
        .unwrap();
    let came_payment = gw.payment_by_receipt(&came.trans_id).await;
    assert!(
        gw.storage()
            .find_payment_by_receipt(&lost.trans_id)
            .await
            .unwrap()
            .is_none()
    );

    let now = chrono::Utc::now();
    let window = (
        now - chrono::Duration::hours(1),
        now + chrono::Duration::minutes(1),
    );
    let first = payments
        .pull_transactions(window.0, window.1)
        .await
        .unwrap();
    assert_eq!(first.recovered, vec![lost.trans_id.clone()], "{first:?}");
    assert_eq!(first.already_booked, 1, "{first:?}");
    let p = gw.payment_by_receipt(&lost.trans_id).await;
    assert_eq!(p.recovered_by.as_deref(), Some("pull"));
    assert_eq!(
        (p.channel, p.status.as_str()),
        (PaymentChannel::C2b, "completed")
    );
    assert_eq!((p.amount.shillings(), p.reference.as_str()), (60, "LOST1"));
    assert_eq!(gw.get_payment(&p.id).await["recovered_by"], "pull");

    let second = payments
        .pull_transactions(window.0, window.1)
        .await
        .unwrap();
    assert!(second.recovered.is_empty(), "{second:?}");
    assert_eq!(second.already_booked, 2);

    // The confirmation arrives after all: a duplicate of the recovered payment.
    let late = confirmation(
        &lost.trans_id,
        PAYBILL,
        "LOST1",
        "60.00",
        "2547 ***** 149",
        "JOHN",
    );
    let (status, _) = gw.post_c2b_confirmation(&late).await;
    assert_eq!(status, 200);
    let after = gw.payment_by_receipt(&lost.trans_id).await;
    assert_eq!(
        (after.id.as_str(), after.version),
        (p.id.as_str(), p.version)
    );
    let late_callback = c2b_callbacks(gw.storage().as_ref())
        .await
        .into_iter()
        .find(|c| c.receipt.as_deref() == Some(lost.trans_id.as_str()))
        .unwrap();
    assert_eq!(late_callback.outcome, CallbackOutcome::Duplicate);
    assert_eq!(late_callback.payment_id.as_deref(), Some(p.id.as_str()));
    assert_eq!(
        gw.storage()
            .get_payment(&came_payment.id)
            .await
            .unwrap()
            .unwrap()
            .recovered_by,
        None
    );

    wait_outbox_idle(gw.storage().as_ref()).await;
    let rows = outbox_of(gw.storage().as_ref(), &p.id).await;
    assert_eq!(
        rows.iter().filter(|(c, _)| *c == Channel::Webhook).count(),
        1,
        "{rows:?}"
    );
    let alert = destinations
        .telegram
        .messages_to(ADMIN_CHAT)
        .await
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .find(|t| t.contains(&lost.trans_id))
        .expect("the admin is alerted");
    assert!(alert.contains("Pull Transactions"), "{alert}");
    gw.stop().await;
}

/// A pulled record an open STK payment could be is decided once that payment settles: the next
/// scheduled run starts from it, not from where this run ended (it used to, and a payment left
/// open for longer than the runs' ten-minute overlap had its record never looked at again). A
/// record holding a NUL is skipped, not an end to the run. The gateway's clock is moved.
async fn a_pulled_record_waiting_for_an_stk_payment_is_looked_at_again(backend: Backend) {
    let time = Arc::new(mpesa_gateway::clock::ManualClock::new(chrono::Utc::now()));
    let clock = mpesa_gateway::clock::Clock::manual(time.clone());
    let mut options = Options::new(backend)
        .env("RECONCILE_AFTER_SECS", "36000")
        .env("PAYMENT_EXPIRES_AFTER_SECS", "72000")
        .clock(clock.clone());
    options.sim.faults.global = CallbackFaults {
        suppress: true,
        ..CallbackFaults::default()
    };
    let gw = spawn_with(options).await;
    gw.c2b_registered().await;
    let payments = &gw.state.payments;
    payments
        .pull_register(mpesa_domain::Msisdn::parse(SUCCESS).unwrap())
        .await
        .unwrap();
    // An STK payment left open, and a paybill payment with its account and amount whose
    // confirmation never came.
    let (status, stk) = gw
        .create_payment(json!({ "phone": SUCCESS, "amount": 60, "reference": "ACC9" }))
        .await;
    assert_eq!(status, 201, "{stk}");
    let lost = gw
        .sim()
        .pay_c2b(CustomerPayment::paybill(PAYBILL, "ACC9", 60))
        .await
        .unwrap();
    // And one whose account holds a NUL (PostgreSQL could store no such text).
    let nul = gw
        .sim()
        .pay_c2b(
            CustomerPayment::paybill(PAYBILL, "BAD\u{0}1", 70).with_faults(CallbackFaults {
                suppress: true,
                ..CallbackFaults::default()
            }),
        )
        .await
        .unwrap();
    time.advance(chrono::Duration::minutes(30));
    let first = payments.pull_since_last().await.unwrap();
    assert!(first.recovered.is_empty(), "{first:?}");
    assert!(
        first
            .skipped
            .iter()
            .any(|(r, why)| *r == nul.trans_id && why.contains("NUL")),
        "{first:?}"
    );
    assert!(
        first
            .skipped
            .iter()
            .any(|(r, why)| *r == lost.trans_id && why.contains("open STK payment")),
        "{first:?}"
    );
    // The STK payment ends unpaid; an hour later the next run books the paybill payment.
    let checkout = stk["checkout_request_id"].as_str().unwrap().to_owned();
    let (status, _) = gw
        .post_stk_callback(&stk_failure(&checkout, 1032, "Request cancelled by user"))
        .await;
    assert_eq!(status, 200);
    time.advance(chrono::Duration::minutes(60));
    let second = payments.pull_since_last().await.unwrap();
    assert_eq!(second.recovered, vec![lost.trans_id.clone()], "{second:?}");
    let p = gw.payment_by_receipt(&lost.trans_id).await;
    assert_eq!(p.recovered_by.as_deref(), Some("pull"));
    gw.stop().await;
}

/// With `C2B_VALIDATION=rules`, Daraja's validation requests (the simulator with external
/// validation on) are refused with its codes by the account pattern (C2B00012), the amount
/// bounds (C2B00013) and the known accounts (C2B00012), and accepted otherwise; a refused payment
/// books nothing, an accepted one is booked by its confirmation only.
async fn validation_rules_refuse_and_accept(backend: Backend) {
    let gw = spawn_with(
        Options::new(backend)
            .env("C2B_VALIDATION", "rules")
            .env("C2B_ACCOUNT_PATTERN", "inv[0-9]{1,4}")
            .env("C2B_REQUIRE_KNOWN_ACCOUNT", "true")
            .env("AMOUNT_MAX", "5000"),
    )
    .await;
    gw.c2b_registered().await;
    gw.sim().set_c2b_validation(PAYBILL, true);
    let response = gw
        .client
        .post(gw.url("/api/v1/c2b/accounts"))
        .bearer_auth(&gw.api_key)
        .json(&json!({ "account": "INV42" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let pay = |account: &str, amount: i64| {
        gw.sim()
            .pay_c2b(CustomerPayment::paybill(PAYBILL, account, amount))
    };
    let refused = |o: daraja_sim::C2bOutcome| match o.status {
        daraja_sim::C2bStatus::Rejected { result_code } => result_code,
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(
        refused(pay("BAD-1", 100).await.unwrap()),
        "C2B00012",
        "pattern"
    );
    assert_eq!(
        refused(pay("INV43", 100).await.unwrap()),
        "C2B00012",
        "not registered"
    );
    assert_eq!(
        refused(pay("INV42", 6000).await.unwrap()),
        "C2B00013",
        "amount"
    );
    // Trimmed and in any case.
    let ok = pay(" inv42 ", 100).await.unwrap();
    assert_eq!(ok.status, daraja_sim::C2bStatus::Completed);
    let p = gw.payment_by_receipt(&ok.trans_id).await;
    assert_eq!(p.channel, PaymentChannel::C2b);
    assert_eq!(
        gw.list_payments("channel=c2b").await.len(),
        1,
        "refusals book nothing"
    );

    // A validation on its own books nothing; it is kept.
    let (status, answer) = gw
        .post_c2b_validation(&confirmation(
            "TXVALONLY1",
            PAYBILL,
            "INV42",
            "10.00",
            "2547 ***** 149",
            "JO",
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["ResultCode"], "0");
    let (_, answer) = gw
        .post_c2b_validation(&confirmation(
            "TXVALONLY2",
            PAYBILL,
            "INV42",
            "10.00",
            "",
            "JO",
        ))
        .await;
    assert_eq!(answer["ResultCode"], "C2B00011", "no MSISDN");
    assert!(
        gw.storage()
            .find_payment_by_receipt("TXVALONLY1")
            .await
            .unwrap()
            .is_none()
    );
    eventually("validations are stored", Duration::from_secs(10), || {
        let storage = gw.storage();
        async move {
            storage
                .list_callbacks(
                    &CallbackFilter {
                        kind: Some(CallbackKind::C2bValidation),
                        ..CallbackFilter::default()
                    },
                    &PageRequest {
                        limit: 100,
                        cursor: None,
                    },
                )
                .await
                .unwrap()
                .items
                .len()
                >= 6
        }
    })
    .await;
    gw.stop().await;
}

/// With validation off (the default) every validation request is accepted.
async fn validation_off_accepts_everything(backend: Backend) {
    let gw = spawn(backend).await;
    let (status, answer) = gw
        .post_c2b_validation(&confirmation(
            "TXVALOFF01",
            PAYBILL,
            "ANY THING",
            "999999.00",
            "",
            "",
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({ "ResultCode": "0", "ResultDesc": "Accepted" })
    );
    gw.stop().await;
}

/// A database too slow to decide in time: the answer is the configured fallback, still well
/// inside Daraja's deadline (the rules' table is locked by another connection on PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_gets_the_fallback_answer() {
    use sqlx::Connection as _;
    let gw = spawn_with(
        Options::new(Backend::Postgres)
            .env("C2B_VALIDATION", "rules")
            .env("C2B_REQUIRE_KNOWN_ACCOUNT", "true")
            .env("C2B_VALIDATION_FALLBACK", "refuse"),
    )
    .await;
    let mut locker = sqlx::PgConnection::connect(gw.database.url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE c2b_accounts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let (status, answer) = gw
        .post_c2b_validation(&confirmation(
            "TXSLOW0001",
            PAYBILL,
            "INV1",
            "10.00",
            "2547 ***** 149",
            "JO",
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["ResultCode"], "C2B00016", "{answer}");
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let text = gw.metrics_text().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("mpesa_gateway_c2b_validations_total")
                && l.contains("by=\"fallback\"")),
        "{text}"
    );
    gw.stop().await;
}

/// A confirmation whose lookups do not answer in time (the payment links' table is locked by
/// another connection on PostgreSQL) is stored raw and acknowledged at once, and booked by the
/// re-drive once the database answers again: M-Pesa sends a confirmation once, so the error it
/// used to get lost the payment (and a lookup that hung made M-Pesa's request time out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_whose_lookups_fail_is_stored_and_booked_later() {
    use sqlx::Connection as _;
    let gw = spawn_with(Options::new(Backend::Postgres)).await;
    let mut locker = sqlx::PgConnection::connect(gw.database.url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE payment_links IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let body = serde_json::to_vec(&paid_now(&confirmation(
        "TXLOOKUP01",
        PAYBILL,
        // Could be a payment link's account number: the links are looked up.
        "ACEF347",
        "250.00",
        "2547 ***** 149",
        "JO",
    )))
    .unwrap();
    let answered = tokio::time::timeout(
        mpesa_gateway::payments::c2b::CONFIRMATION_PREPARE_WITHIN + Duration::from_secs(5),
        gw.post_c2b_confirmation(&body),
    )
    .await
    .expect("answered while the lookups hang");
    assert_eq!(answered.0, 200, "{}", answered.1);
    let stored = c2b_callbacks(gw.storage().as_ref()).await;
    assert_eq!(
        stored.iter().map(|c| c.outcome).collect::<Vec<_>>(),
        vec![CallbackOutcome::Received],
        "kept raw, to be booked"
    );
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let p = gw.payment_by_receipt("TXLOOKUP01").await;
    assert_eq!(
        (
            p.status.as_str(),
            p.amount.shillings(),
            p.reference.as_str()
        ),
        ("completed", 250, "ACEF347")
    );
    gw.stop().await;
}

/// A confirmation stored raw (`received`) whose body no longer parses when the re-drive reads it
/// again (stored by a version that parsed less strictly) is marked unparseable, not re-driven on
/// every sweep for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_confirmation_that_no_longer_parses_is_not_redriven_for_ever() {
    let gw = spawn(Backend::Sqlite).await;
    let storage = gw.storage();
    let long = "T".repeat(65);
    let stored = mpesa_storage::IncomingCallback {
        id: "cb_older_version".into(),
        kind: CallbackKind::C2bConfirmation,
        // Older than the sweep's five seconds: the sweep takes it at once.
        received_at: mpesa_gateway::ids::now_ms() - 60_000,
        remote_addr: None,
        headers: "{}".into(),
        body: confirmation(&long, PAYBILL, "A1", "10.00", "2547 ***** 149", "X"),
        checkout_request_id: None,
        receipt: None,
        parse_error: None,
    };
    storage
        .ingest_callbacks(&[stored], mpesa_gateway::ids::now_ms(), &|_, _| {
            mpesa_storage::CallbackDecision::only(CallbackOutcome::Received)
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let outcome = storage
            .get_callback("cb_older_version")
            .await
            .unwrap()
            .unwrap()
            .outcome;
        if outcome == CallbackOutcome::Unparseable {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {outcome:?}: re-driven on every sweep"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}

/// Hostile account numbers and names from a confirmation are shown as text everywhere a person
/// sees them: the payments list (filtered to C2B), the payment page, the overview, in a real
/// browser (headless Chromium), and the admin's Telegram alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_accounts_and_names_are_shown_as_text() {
    use crate::dashboard::browser::Browser;
    use crate::dashboard::{ADMIN, AdminClient, PASSWORD, add_admin};
    const ACCOUNT: &str = "<img src=x onerror=alert(1)>";
    const NAME: &str = "<script>alert('n')</script>";
    let destinations = Destinations::start().await;
    let gw = spawn_with(destinations.options(Backend::Sqlite, "50ms,100ms")).await;
    add_admin(&gw).await;
    let (status, _) = gw
        .post_c2b_confirmation(&confirmation(
            "TXHOSTILE1",
            PAYBILL,
            ACCOUNT,
            "42.00",
            "2547 ***** 149",
            NAME,
        ))
        .await;
    assert_eq!(status, 200);
    let p = gw.payment_by_receipt("TXHOSTILE1").await;
    assert_eq!(p.reference, ACCOUNT, "kept as given");

    // Over HTTP: no live markup on any page that shows it.
    let admin = AdminClient::signed_in(&gw).await;
    for path in [
        "/admin/".to_owned(),
        "/admin/payments?channel=c2b".to_owned(),
        format!("/admin/payments/{}", p.id),
        "/admin/payments?q=%3Cimg".to_owned(),
    ] {
        let page = admin.get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(!page.body.contains("<img src=x"), "{path}: {}", page.body);
        assert!(!page.body.contains("<script>alert"), "{path}");
    }
    let found = admin.get("/admin/payments?q=%3Cimg").await;
    assert!(
        found.body.contains(&crate::dashboard::escaped(ACCOUNT)),
        "searchable by account"
    );

    // In the browser: the text is there, as text.
    let b = Browser::start(&gw.base).await;
    b.goto("/admin/sign-in").await;
    b.type_into("#username", ADMIN).await;
    b.type_into("#password", PASSWORD).await;
    b.click("form[action='/admin/sign-in'] button[type=submit]")
        .await;
    b.wait_for_path("/admin/").await;
    let text = b.text().await;
    assert!(
        text.contains("Paybill/till (C2B)"),
        "totals by channel:\n{text}"
    );
    b.goto("/admin/payments?channel=c2b").await;
    let text = b.text().await;
    assert!(text.contains(ACCOUNT) && text.contains(NAME), "{text}");
    assert!(text.contains("Paybill/till"), "{text}");
    let source = b.source().await;
    assert!(
        !source.contains("<img src=\"x\""),
        "an img element was made"
    );
    assert!(
        !source.contains("<script>alert"),
        "a script element was made"
    );
    b.snap("c2b-hostile-payments").await;
    b.goto(&format!("/admin/payments/{}", p.id)).await;
    let text = b.text().await;
    assert!(
        text.contains(ACCOUNT) && text.contains("2547 ***** 149"),
        "{text}"
    );
    b.close().await;

    // The admin's Telegram alert (HTML parse mode) escapes them too.
    wait_outbox_idle(gw.storage().as_ref()).await;
    let alerts = destinations.telegram.messages_to(ADMIN_CHAT).await;
    let alert = alerts
        .iter()
        .filter_map(|m| m["text"].as_str())
        .find(|t| t.contains("TXHOSTILE1"))
        .expect("an admin alert")
        .to_owned();
    assert!(
        !alert.contains("<img") && !alert.contains("<script"),
        "{alert}"
    );
    assert!(alert.contains("&lt;img"), "{alert}");
    gw.stop().await;
}

/// Runs `mpesa-gateway c2b …` against a Daraja at `daraja_url`, on a fresh SQLite file.
async fn c2b_command(daraja_url: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mpesa-gateway"))
        .arg("c2b")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database.url())
        .env("MPESA_API_BASE_URL", daraja_url)
        .env("MPESA_CONSUMER_KEY", "sandbox-consumer-key")
        .env("MPESA_CONSUMER_SECRET", "sandbox-consumer-secret")
        .env(
            "MPESA_CALLBACK_SECRET",
            "c2b_test_secret_0123456789abcdef0123",
        )
        .envs(env.iter().copied())
        .output()
        .await
        .expect("mpesa-gateway c2b runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// `c2b register` registers the URLs and says what it sent, the secret hidden; it refuses a URL
/// with a word Daraja refuses before sending anything, naming the word; and it explains
/// Daraja's refusal of the STK-only shortcode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c2b_register_sends_explains_and_refuses() {
    let (sim, url) = crate::multi_instance::shared_simulator().await;
    let public = ("MPESA_CALLBACK_URL", "https://pay.example.com/");
    let (ok, out) = c2b_command(
        &url,
        &[public, ("MPESA_C2B_SHORT_CODE", PAYBILL)],
        &["register"],
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("https://pay.example.com/callbacks/…/c2b/confirmation"),
        "{out}"
    );
    assert!(
        !out.contains("c2b_test_secret"),
        "the secret is hidden: {out}"
    );
    let registered = sim.c2b_registrations();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].short_code, PAYBILL);
    assert!(
        registered[0]
            .confirmation_url
            .ends_with("/callbacks/c2b_test_secret_0123456789abcdef0123/c2b/confirmation")
    );

    let (ok, out) = c2b_command(
        &url,
        &[
            ("MPESA_CALLBACK_URL", "https://mpesa.example.com/"),
            ("MPESA_C2B_SHORT_CODE", "600001"),
        ],
        &["register", "--v1"],
    )
    .await;
    assert!(!ok);
    assert!(
        out.contains("not sent") && out.contains("\"mpesa\""),
        "{out}"
    );
    assert_eq!(sim.c2b_registrations().len(), 1, "nothing was sent");

    let (ok, out) = c2b_command(
        &url,
        &[public, ("MPESA_C2B_SHORT_CODE", "174379")],
        &["register"],
    )
    .await;
    assert!(!ok);
    assert!(out.contains("174379 is for STK Push only"), "{out}");
}

/// An STK push to a shortcode with C2B URLs also sends a confirmation, with the push's account
/// and the same receipt, and it may come first. While an STK payment that could be it is open,
/// the confirmation waits (stored, acknowledged, `received`); once the push completes with that
/// receipt it is a duplicate of it, and once a push fails (the customer then paid the paybill by
/// hand) it becomes its own payment: never two payments for one receipt, never one lost.
async fn a_confirmation_waits_for_an_open_stk_push_that_could_be_it(backend: Backend) {
    let mut options = Options::new(backend)
        .env("RECONCILE_AFTER_SECS", "3600")
        .env("PAYMENT_EXPIRES_AFTER_SECS", "7200");
    // Both pushes go to the one no-callback number while the first prompt is still open:
    // the simulator must not answer the second "Unable to lock subscriber".
    options.sim.lock_subscriber = false;
    let gw = spawn_with(options).await;
    let open = |reference: &'static str| {
        let gw = &gw;
        async move {
            let (status, body) = gw
                .create_payment(
                    json!({ "phone": NO_CALLBACK, "amount": 25, "reference": reference }),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            let id = body["id"].as_str().unwrap().to_owned();
            let p = gw
                .wait_for_status(&id, "pending", Duration::from_secs(10))
                .await;
            (id, p.checkout_request_id.unwrap())
        }
    };
    let (paid, paid_checkout) = open("ORD7").await;
    let (failed, failed_checkout) = open("ORD8").await;
    // `2547 ***** 000` fits the pushes' number, 254700000000.
    for (receipt, account) in [("TXSTK00007", "ORD7"), ("TXSTK00008", "ORD8")] {
        let (status, _) = gw
            .post_c2b_confirmation(&confirmation(
                receipt,
                PAYBILL,
                account,
                "25.00",
                "2547 ***** 000",
                "JOHN",
            ))
            .await;
        assert_eq!(status, 200);
    }
    let waiting = c2b_callbacks(gw.storage().as_ref()).await;
    assert!(
        waiting
            .iter()
            .all(|c| c.outcome == CallbackOutcome::Received),
        "{waiting:?}"
    );
    assert!(
        gw.list_payments("channel=c2b").await.is_empty(),
        "nothing booked yet"
    );

    // The first push completes with the confirmation's receipt; the second is cancelled.
    let (s, _) = gw
        .post_stk_callback(&stk_success(
            &paid_checkout,
            "25.00",
            NO_CALLBACK,
            "TXSTK00007",
        ))
        .await;
    assert_eq!(s, 200);
    let (s, _) = gw
        .post_stk_callback(&stk_failure(
            &failed_checkout,
            1032,
            "Request cancelled by user",
        ))
        .await;
    assert_eq!(s, 200);
    gw.wait_for_status(&paid, "completed", Duration::from_secs(10))
        .await;
    gw.wait_for_status(&failed, "cancelled", Duration::from_secs(10))
        .await;

    let booked = gw.payment_by_receipt("TXSTK00008").await;
    assert_eq!(
        (booked.channel, booked.reference.as_str()),
        (PaymentChannel::C2b, "ORD8")
    );
    let stk = gw.storage().get_payment(&paid).await.unwrap().unwrap();
    assert_eq!(stk.mpesa_receipt_number.as_deref(), Some("TXSTK00007"));
    assert!(!stk.needs_review, "the push settles normally");
    eventually(
        "both confirmations are decided",
        Duration::from_secs(20),
        || {
            let storage = gw.storage();
            async move {
                c2b_callbacks(storage.as_ref())
                    .await
                    .iter()
                    .all(|c| c.outcome != CallbackOutcome::Received)
            }
        },
    )
    .await;
    let decided = c2b_callbacks(gw.storage().as_ref()).await;
    let outcome_of = |receipt: &str| {
        let c = decided
            .iter()
            .find(|c| c.receipt.as_deref() == Some(receipt))
            .unwrap();
        (c.outcome, c.payment_id.clone())
    };
    assert_eq!(
        outcome_of("TXSTK00007"),
        (CallbackOutcome::Duplicate, Some(paid.clone()))
    );
    assert_eq!(
        outcome_of("TXSTK00008"),
        (CallbackOutcome::Applied, Some(booked.id.clone()))
    );
    assert_eq!(gw.list_payments("channel=c2b").await.len(), 1);
    gw.stop().await;
}

/// An STK push completed by STK Query has no receipt (the query does not tell it). Its
/// confirmation, coming after, has the push's account and amount and a phone that fits: booked
/// as a payment of its own, one payment would count twice (two `payment.completed` webhooks). It
/// is kept for a person, flagged, and nothing is booked.
async fn a_confirmation_of_a_push_completed_by_query_is_not_booked_twice(backend: Backend) {
    let gw = spawn_with(Options::new(backend).env("RECONCILE_AFTER_SECS", "1")).await;
    let (status, body) = gw
        .create_payment(json!({ "phone": NO_CALLBACK, "amount": 25, "reference": "ORD9" }))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let p = gw
        .wait_for_status(&id, "completed", Duration::from_secs(15))
        .await;
    assert_eq!(p.mpesa_receipt_number, None, "STK Query tells no receipt");
    // Paid while the push was out.
    let body = paid_now(&confirmation(
        "TXQRY00009",
        PAYBILL,
        "ORD9",
        "25.00",
        "2547 ***** 000",
        "JOHN",
    ));
    let (status, _) = gw.post_c2b_confirmation(body.to_string().as_bytes()).await;
    assert_eq!(status, 200);
    let kept = c2b_callbacks(gw.storage().as_ref()).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].outcome, CallbackOutcome::Flagged, "{kept:?}");
    assert!(
        gw.list_payments("channel=c2b").await.is_empty(),
        "one payment, not booked twice"
    );
    gw.stop().await;
}

/// A NUL character in a confirmation's account or payer name (no M-Pesa field holds one, and
/// PostgreSQL cannot store one in text) makes it unreadable: answered 400, its body kept, nothing
/// booked, on every backend. On PostgreSQL its lookups used to fail, and it was answered 503 and
/// never stored (Safaricom does not send a confirmation again).
async fn a_nul_in_a_confirmation_is_refused_and_its_body_kept(backend: Backend) {
    let gw = spawn(backend).await;
    for (receipt, account, name) in [
        ("TXNUL00001", "ORD\u{0}1", "JOHN"),
        ("TXNUL00002", "ORD2", "JO\u{0}HN"),
    ] {
        let body = confirmation(receipt, PAYBILL, account, "10.00", "254708374149", name);
        let (status, answer) = gw.post_c2b_confirmation(&body).await;
        assert_eq!(status, 400, "{receipt}: {answer}");
    }
    let kept = c2b_callbacks(gw.storage().as_ref()).await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        kept.iter()
            .all(|c| c.outcome == CallbackOutcome::Unparseable),
        "{kept:?}"
    );
    assert!(gw.list_payments("channel=c2b").await.is_empty());
    gw.stop().await;
}

/// A till (Buy Goods) STK push's own confirmation has no account number, and in production a
/// masked number: it waits for the push like a paybill's does, and is a duplicate of it once the
/// push completes with its receipt. Booked at once, it became a payment of its own, and the push's
/// callback then found its receipt taken and held the customer's order for review.
async fn a_till_confirmation_waits_for_an_open_stk_push_too(backend: Backend) {
    let gw = spawn_with(
        Options::new(backend)
            .env("RECONCILE_AFTER_SECS", "3600")
            .env("PAYMENT_EXPIRES_AFTER_SECS", "7200"),
    )
    .await;
    let (status, body) = gw
        .create_payment(json!({ "phone": NO_CALLBACK, "amount": 35, "reference": "TILL1" }))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let checkout = gw
        .wait_for_status(&id, "pending", Duration::from_secs(10))
        .await
        .checkout_request_id
        .unwrap();
    let mut confirmation = paid_now(&confirmation(
        "TXTIL00001",
        PAYBILL,
        "",
        "35.00",
        "2547 ***** 000",
        "JOHN",
    ));
    confirmation["TransactionType"] = json!("Buy Goods");
    let (status, _) = gw
        .post_c2b_confirmation(confirmation.to_string().as_bytes())
        .await;
    assert_eq!(status, 200);
    let waiting = c2b_callbacks(gw.storage().as_ref()).await;
    assert_eq!(
        waiting.iter().map(|c| c.outcome).collect::<Vec<_>>(),
        [CallbackOutcome::Received],
        "it waits for the push"
    );
    let (status, _) = gw
        .post_stk_callback(&stk_success(&checkout, "35.00", NO_CALLBACK, "TXTIL00001"))
        .await;
    assert_eq!(status, 200);
    let p = gw
        .wait_for_status(&id, "completed", Duration::from_secs(10))
        .await;
    assert!(!p.needs_review, "the push settles normally: {p:?}");
    eventually(
        "the confirmation is a duplicate of the push",
        Duration::from_secs(20),
        || {
            let storage = gw.storage();
            async move {
                c2b_callbacks(storage.as_ref())
                    .await
                    .iter()
                    .all(|c| c.outcome == CallbackOutcome::Duplicate)
            }
        },
    )
    .await;
    assert!(gw.list_payments("channel=c2b").await.is_empty());
    gw.stop().await;
}

crate::on_every_backend!(
    a_till_confirmation_waits_for_an_open_stk_push_too,
    a_nul_in_a_confirmation_is_refused_and_its_body_kept,
    a_confirmation_of_a_push_completed_by_query_is_not_booked_twice,
    a_confirmation_waits_for_an_open_stk_push_that_could_be_it,
    a_lost_confirmation_is_recovered_by_pull_once,
    validation_rules_refuse_and_accept,
    validation_off_accepts_everything,
    a_paybill_payment_becomes_a_completed_c2b_payment,
    other_shortcodes_and_garbage_are_kept_not_booked,
    a_pulled_record_waiting_for_an_stk_payment_is_looked_at_again,
    a_hashed_msisdn_is_matched_to_a_linked_phone,
    a_confirmation_for_an_stk_receipt_is_a_duplicate,
);

mod servers {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_copies_over_two_instances_postgres() {
        super::fifty_copies_over_two_instances_make_one_payment(mpesa_storage::Backend::Postgres)
            .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_copies_over_two_instances_mysql() {
        super::fifty_copies_over_two_instances_make_one_payment(mpesa_storage::Backend::MySql).await
    }
}
