//! Money going out, end to end against the simulator on every backend: refunds and payouts each
//! reach their end with exactly one Daraja request (counted in the simulator's own log), one
//! webhook and a timeline that tells the story; a lost result is found out by Transaction
//! Status, never by sending again, and one that stays lost is held for a person; the guardrails
//! hold, across instances and East Africa Time days too. Waits of minutes or a day are not
//! waited: the gateway reads a `ManualClock` that the test moves, with the real settings.

use std::sync::Arc;
use std::time::Duration;

use daraja_sim::{CallbackFaults, Flow};
use mpesa_domain::RequestStatus;
use mpesa_gateway::clock::{Clock, ManualClock};
use mpesa_gateway::money_out::payouts::PayoutCreated;
use mpesa_gateway::money_out::refunds::RefundCreated;
use mpesa_gateway::money_out::{
    HandOutcome, PayoutError, PayoutPurpose, PayoutRequest, RefundError, Requester,
};
use mpesa_harness::database::TestDatabase;
use mpesa_storage::{Backend, InitiatorRequest, PayoutStatus};
use serde_json::{Value, json};

use crate::on_every_backend;
use crate::outbox_receivers::{
    ADMIN_CHAT, BOT_TOKEN, TelegramDouble, WEBHOOK_SECRET, WebhookReceiver, eventually,
};
use crate::support::*;

on_every_backend!(
    a_refund_completes_with_one_reversal_one_webhook_and_is_not_repeated,
    a_payout_completes_with_one_b2c_request_and_its_key_replays_it,
    lost_results_are_found_by_transaction_status_never_by_sending_again,
    a_payout_whose_result_never_comes_is_held_for_a_person_after_a_day_of_asking,
    payout_guardrails_refuse_cap_and_wait_for_another_admin,
    the_daily_payout_limit_starts_again_at_midnight_east_africa_time,
    a_c2b_payment_is_refunded_from_the_paybill_it_was_paid_to,
    a_held_payout_and_refund_are_settled_by_a_person_once_and_a_late_contradiction_holds_them_again,
    transaction_status_that_contradicts_a_settlement_by_hand_alerts_the_admins_once,
    a_late_transaction_status_answer_settles_a_held_payout_or_refund_once,
    a_late_result_settles_a_held_payout_or_refund_once,
    a_late_transaction_status_answer_that_contradicts_a_settlement_by_hand_alerts_once,
    a_receipt_recorded_by_hand_on_one_request_is_not_booked_on_another,
    a_late_account_balance_answer_is_shown_with_the_time_it_came,
    a_refund_or_payout_left_without_its_request_is_sent_once_by_the_sweep,
);

const WAIT: Duration = Duration::from_secs(20);

async fn gateway(
    backend: Backend,
    webhook: &WebhookReceiver,
    extra: &[(&str, &str)],
) -> TestGateway {
    spawn_with(options(backend, webhook, extra)).await
}

fn options(backend: Backend, webhook: &WebhookReceiver, extra: &[(&str, &str)]) -> Options {
    let mut o = Options::new(backend)
        .env("WEBHOOK_URL", &webhook.url)
        .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("WEBHOOK_ALLOW_PRIVATE", "true")
        .env("OUTBOX_POLL_INTERVAL", "50ms");
    for (k, v) in extra {
        o = o.env(k, v);
    }
    o
}

/// A clock that stands at `start` until the test moves it, and the gateway's handle on it.
fn manual_clock(start: chrono::DateTime<chrono::Utc>) -> (Arc<ManualClock>, Clock) {
    let time = Arc::new(ManualClock::new(start));
    (time.clone(), Clock::manual(time))
}

impl TestGateway {
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value, bool) {
        let mut r = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.api_key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        let response = r.send().await.expect("gateway answers");
        let status = response.status().as_u16();
        let replayed = response.headers().get("idempotent-replayed").is_some();
        (
            status,
            response.json().await.unwrap_or(Value::Null),
            replayed,
        )
    }

    async fn wait_for_json(&self, path: &str, field: &str, want: &str) -> Value {
        let mut last = Value::Null;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body, _) = self.call(reqwest::Method::GET, path, None, None).await;
            assert_eq!(status, 200, "{body}");
            if body[field] == want {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path}: {field} is {} after {WAIT:?}, waiting for {want}: {last}",
                body[field]
            );
            last = body;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the stored initiator request satisfies `done`; returns it.
    async fn wait_for_request(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&InitiatorRequest) -> bool,
    ) -> InitiatorRequest {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let request = self
                .storage()
                .get_initiator_request(id)
                .await
                .unwrap()
                .expect("the request is stored");
            if done(&request) {
                return request;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "request {id}: not {what} after {WAIT:?}: {request:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `POST /api/v1/payouts` of `amount` to the simulator's paying number.
    async fn payout(&self, amount: i64) -> (u16, Value) {
        let (status, body, _) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/payouts",
                Some(json!({"phone": "0708374149", "amount": amount, "purpose": "business", "remarks": "Rider"})),
                None,
            )
            .await;
        (status, body)
    }

    /// `GET` on the merchant API, answered 200: its JSON.
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let (status, body, _) = self.call(reqwest::Method::GET, path, None, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// Posts M-Pesa's `Result` for `request` to `result/{api}` (`b2c`, `reversal`): `code`, with
    /// `receipt` as its TransactionID. It is stored, so answered 200.
    pub(crate) async fn post_result(
        &self,
        api: &str,
        request: &InitiatorRequest,
        code: i64,
        receipt: &str,
    ) {
        let body = json!({"Result": {
            "ResultType": 0,
            "ResultCode": code,
            "ResultDesc": format!("M-Pesa's result {code}"),
            "OriginatorConversationID": request.originator_conversation_id,
            "ConversationID": request.conversation_id,
            "TransactionID": receipt,
        }});
        let (status, answer) = self
            .post_callback(&format!("result/{api}"), body.to_string().as_bytes())
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    /// `POST /api/v1/payments/{payment_id}/refund` (out of stock), accepted; the refund's id.
    async fn refund_out_of_stock(&self, payment_id: &str) -> String {
        let (status, refund, _) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/payments/{payment_id}/refund"),
                Some(json!({"reason": "Out of stock"})),
                None,
            )
            .await;
        assert_eq!(status, 202, "{refund}");
        refund["id"].as_str().unwrap().to_owned()
    }

    /// The id of a payout's B2C request.
    async fn payout_request(&self, payout_id: &str) -> String {
        self.storage()
            .get_payout(payout_id)
            .await
            .unwrap()
            .unwrap()
            .request_id
            .unwrap()
    }

    /// How many requests the simulator received on a Daraja path.
    fn daraja_requests(&self, path: &str) -> usize {
        self.sim()
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }
}

const REVERSAL: &str = "/mpesa/reversal/v1/request";
const B2C: &str = "/mpesa/b2c/v3/paymentrequest";
const STATUS: &str = "/mpesa/transactionstatus/v1/query";

async fn completed_payment(gw: &TestGateway, phone: &str, amount: i64) -> String {
    let id = gw.pay(phone, amount).await;
    gw.wait_for_status(&id, "completed", WAIT).await;
    id
}

async fn outbox_rows(gw: &TestGateway) -> Vec<mpesa_storage::OutboxEvent> {
    gw.storage()
        .list_outbox(
            &mpesa_storage::OutboxFilter::default(),
            &mpesa_storage::PageRequest {
                limit: 200,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items
}

/// The event types of the payout and refund webhooks in the outbox, sorted. Outbox rows are
/// written with the change they announce: the stored ones are all there is.
async fn money_out_webhooks(gw: &TestGateway) -> Vec<String> {
    let mut rows: Vec<String> = outbox_rows(gw)
        .await
        .into_iter()
        .filter(|e| e.channel == mpesa_storage::Channel::Webhook)
        .map(|e| e.event_type)
        .filter(|t| t.starts_with("payout.") || t.starts_with("refund."))
        .collect();
    rows.sort();
    rows
}

/// Waits until the admins' Telegram chat got a message containing `text`.
async fn told_in_telegram(telegram: &TelegramDouble, text: &str) {
    eventually("the admins' alert in Telegram", WAIT, || async {
        telegram
            .messages_to(ADMIN_CHAT)
            .await
            .iter()
            .any(|m| m["text"].as_str().unwrap_or("").contains(text))
    })
    .await;
}

fn delivered(webhook: &WebhookReceiver, event_type: &str) -> Vec<Value> {
    webhook
        .delivered()
        .iter()
        .map(|h| h.json())
        .filter(|j| j["type"] == event_type)
        .collect()
}

async fn a_refund_completes_with_one_reversal_one_webhook_and_is_not_repeated(backend: Backend) {
    let webhook = WebhookReceiver::start().await;
    let gw = gateway(backend, &webhook, &[]).await;
    let payment_id = completed_payment(&gw, SUCCESS, 150).await;
    let path = format!("/api/v1/payments/{payment_id}/refund");
    let (status, refund, _) = gw
        .call(
            reqwest::Method::POST,
            &path,
            Some(json!({"reason": "Returned goods"})),
            Some("refund-1"),
        )
        .await;
    assert_eq!(status, 202, "{refund}");
    let refund_id = refund["id"].as_str().unwrap().to_owned();
    assert!(refund_id.starts_with("rfd_"), "{refund}");
    assert_eq!(refund["amount"], 150);
    assert_eq!(refund["payment_id"], payment_id.as_str());
    // The same key: the same refund, not a second Reversal.
    let (status, again, replayed) = gw
        .call(
            reqwest::Method::POST,
            &path,
            Some(json!({"reason": "Returned goods"})),
            Some("refund-1"),
        )
        .await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again["id"], refund_id.as_str());

    let done = gw
        .wait_for_json(
            &format!("/api/v1/refunds/{refund_id}"),
            "status",
            "completed",
        )
        .await;
    assert!(
        done["reversal_receipt"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{done}"
    );
    assert_eq!(
        gw.daraja_requests(REVERSAL),
        1,
        "exactly one Reversal reached Daraja"
    );
    let payment = gw.get_payment(&payment_id).await;
    assert_eq!(payment["refund_status"], "completed");
    assert_eq!(
        payment["status"], "completed",
        "the payment itself stays completed"
    );

    // A second refund, with another key or none: refused, and nothing sent.
    let (status, second, _) = gw
        .call(
            reqwest::Method::POST,
            &path,
            Some(json!({"reason": "Again"})),
            Some("refund-2"),
        )
        .await;
    assert_eq!(status, 409, "{second}");
    assert!(
        second["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already refunded"),
        "{second}"
    );
    assert_eq!(gw.daraja_requests(REVERSAL), 1);

    eventually("one refund.completed webhook", WAIT, || async {
        delivered(&webhook, "refund.completed").len() == 1
    })
    .await;
    let hook = &delivered(&webhook, "refund.completed")[0];
    assert_eq!(hook["data"]["id"], refund_id.as_str());
    assert!(delivered(&webhook, "refund.failed").is_empty());

    // The payment's timeline tells the story.
    let kinds: Vec<String> = gw
        .storage()
        .payment_events(&payment_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    let story: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .filter(|k| k.starts_with("refund") || *k == "reversal_sent")
        .collect();
    assert_eq!(
        story,
        ["refund_requested", "reversal_sent", "refund_completed"],
        "{kinds:?}"
    );

    // Refunding what did not complete is refused with a clear 409; an unknown payment is 404.
    let failed = gw.pay(INSUFFICIENT_FUNDS, 120).await;
    gw.wait_for_status(&failed, "failed", WAIT).await;
    let (status, body, _) = gw
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/payments/{failed}/refund"),
            Some(json!({"reason": "x y"})),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only a completed payment"),
        "{body}"
    );
    let (status, _, _) = gw
        .call(
            reqwest::Method::POST,
            "/api/v1/payments/pay_nope/refund",
            Some(json!({"reason": "x y"})),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, body, _) = gw
        .call(
            reqwest::Method::POST,
            &path,
            Some(json!({"reason": "x", "amount": 5})),
            None,
        )
        .await;
    assert_eq!(status, 422, "unknown fields are refused: {body}");
    assert_eq!(gw.daraja_requests(REVERSAL), 1);
    gw.stop().await;
}

async fn a_payout_completes_with_one_b2c_request_and_its_key_replays_it(backend: Backend) {
    let webhook = WebhookReceiver::start().await;
    let gw = gateway(backend, &webhook, &[]).await;
    let body = json!({"phone": "0708374149", "amount": 500, "purpose": "salary", "remarks": "March salary"});
    let (status, payout, _) = gw
        .call(
            reqwest::Method::POST,
            "/api/v1/payouts",
            Some(body.clone()),
            Some("po-1"),
        )
        .await;
    assert_eq!(status, 202, "{payout}");
    let id = payout["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("po_"));
    assert_eq!(payout["purpose"], "salary");
    let (status, again, replayed) = gw
        .call(
            reqwest::Method::POST,
            "/api/v1/payouts",
            Some(body.clone()),
            Some("po-1"),
        )
        .await;
    assert_eq!((status, replayed), (202, true));
    assert_eq!(again["id"], id.as_str());
    let (status, _, _) = gw
        .call(reqwest::Method::POST, "/api/v1/payouts", Some(json!({"phone": "0708374149", "amount": 501, "purpose": "salary", "remarks": "March salary"})), Some("po-1"))
        .await;
    assert_eq!(status, 409, "the same key with another body is refused");

    let done = gw
        .wait_for_json(&format!("/api/v1/payouts/{id}"), "status", "completed")
        .await;
    assert!(
        done["receipt"].as_str().is_some_and(|r| !r.is_empty()),
        "{done}"
    );
    assert!(
        done["recipient_name"]
            .as_str()
            .is_some_and(|n| n.contains("254708374149")),
        "{done}"
    );
    assert!(done["utility_balance_cents"].as_i64().is_some(), "{done}");
    assert_eq!(done["request_status"], "completed");
    assert_eq!(
        gw.daraja_requests(B2C),
        1,
        "exactly one B2C request reached Daraja"
    );
    let sent = gw
        .sim()
        .requests()
        .into_iter()
        .find(|r| r.path == B2C)
        .unwrap();
    let sent: Value = serde_json::from_str(sent.body.get()).unwrap();
    assert_eq!(sent["CommandID"], "SalaryPayment");
    assert!(
        sent["OriginatorConversationID"]
            .as_str()
            .unwrap()
            .starts_with("ireq_")
    );

    eventually("one payout.completed webhook", WAIT, || async {
        delivered(&webhook, "payout.completed").len() == 1
    })
    .await;
    let (status, list, _) = gw
        .call(
            reqwest::Method::GET,
            "/api/v1/payouts?status=completed&phone=0708374149",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let story: Vec<String> = gw
        .storage()
        .money_out_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(story, ["requested", "sent", "completed"]);

    // A recipient who is not a registered customer: failed with Daraja's code, one request more.
    let (status, unregistered, _) = gw
        .call(reqwest::Method::POST, "/api/v1/payouts", Some(json!({"phone": "254700002040", "amount": 100, "purpose": "business", "remarks": "Rider"})), None)
        .await;
    assert_eq!(status, 202);
    let failed = gw
        .wait_for_json(
            &format!("/api/v1/payouts/{}", unregistered["id"].as_str().unwrap()),
            "status",
            "failed",
        )
        .await;
    assert_eq!(failed["result_code"], "2040", "{failed}");
    assert_eq!(gw.daraja_requests(B2C), 2);
    eventually("one payout.failed webhook", WAIT, || async {
        delivered(&webhook, "payout.failed").len() == 1
    })
    .await;
    gw.stop().await;
}

/// With the real result wait (two minutes, `INITIATOR_RESULT_WAIT_SECS` unset), on the
/// gateway's clock: the test moves it past the wait instead of configuring a second.
async fn lost_results_are_found_by_transaction_status_never_by_sending_again(backend: Backend) {
    let webhook = WebhookReceiver::start().await;
    let (time, clock) = manual_clock(chrono::Utc::now());
    let gw = spawn_with(options(backend, &webhook, &[]).clock(clock)).await;
    // The payout's result never comes; the refund's request expires in the queue (the money
    // still moves). Both are found out by asking.
    gw.sim().update_faults(|f| {
        f.flows.insert(
            Flow::B2c,
            CallbackFaults {
                suppress: true,
                ..Default::default()
            },
        );
        f.flows.insert(
            Flow::Reversal,
            CallbackFaults {
                queue_timeout: true,
                ..Default::default()
            },
        );
    });
    let (status, payout, _) = gw
        .call(reqwest::Method::POST, "/api/v1/payouts", Some(json!({"phone": "0711222333", "amount": 300, "purpose": "business", "remarks": "Rider"})), None)
        .await;
    assert_eq!(status, 202, "{payout}");
    let payment_id = completed_payment(&gw, SUCCESS, 99).await;
    let (status, refund, _) = gw
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/payments/{payment_id}/refund"),
            Some(json!({"reason": "Out of stock"})),
            None,
        )
        .await;
    assert_eq!(status, 202, "{refund}");
    // The reversal's queue-timeout notice came (on the clock before it moves).
    let reversal = gw
        .storage()
        .get_refund(refund["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap()
        .request_id
        .unwrap();
    gw.wait_for_request(&reversal, "timed out in the queue", |r| {
        r.status == RequestStatus::Unknown
    })
    .await;
    // Nothing is asked within the result wait, however long the resolver runs on its own.
    let initiator = &gw.state.money_out.initiator;
    assert_eq!(initiator.resolve_due(60_000, 50).await.unwrap(), 0);
    assert_eq!(gw.daraja_requests(STATUS), 0, "not asked before the wait");
    time.advance(chrono::Duration::seconds(121));

    let done = gw
        .wait_for_json(
            &format!("/api/v1/payouts/{}", payout["id"].as_str().unwrap()),
            "status",
            "completed",
        )
        .await;
    assert!(
        done["receipt"].as_str().is_some_and(|r| !r.is_empty()),
        "{done}"
    );
    gw.wait_for_json(
        &format!("/api/v1/refunds/{}", refund["id"].as_str().unwrap()),
        "status",
        "completed",
    )
    .await;
    assert_eq!(
        gw.daraja_requests(B2C),
        1,
        "the payout was never sent again"
    );
    assert_eq!(
        gw.daraja_requests(REVERSAL),
        1,
        "the reversal was never sent again"
    );
    assert!(
        gw.daraja_requests(STATUS) >= 2,
        "Transaction Status was asked"
    );
    let story: Vec<String> = gw
        .storage()
        .money_out_events(done["id"].as_str().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(story, ["requested", "sent", "completed"]);
    eventually("one webhook each", WAIT, || async {
        delivered(&webhook, "payout.completed").len() == 1
            && delivered(&webhook, "refund.completed").len() == 1
    })
    .await;
    gw.stop().await;
}

/// A payout whose result never comes, and which Transaction Status cannot find either: asked
/// about once the result wait has passed, again with backoff, and after
/// `INITIATOR_KEEP_ASKING_SECS` (a day, the default) held for a person — never sent again,
/// never called failed. The day is not waited: the gateway's clock is moved.
async fn a_payout_whose_result_never_comes_is_held_for_a_person_after_a_day_of_asking(
    backend: Backend,
) {
    let (time, clock) = manual_clock(chrono::Utc::now());
    let gw = spawn_with(Options::new(backend).clock(clock)).await;
    hold_back_results(&gw, &[Flow::B2c, Flow::TransactionStatus]);
    let (status, payout) = gw.payout(300).await;
    assert_eq!(status, 202, "{payout}");
    let payout_id = payout["id"].as_str().unwrap();
    let request_id = gw
        .storage()
        .get_payout(payout_id)
        .await
        .unwrap()
        .unwrap()
        .request_id
        .expect("the B2C request is recorded on the payout");
    let sent = gw
        .wait_for_request(&request_id, "accepted", |r| {
            r.status == RequestStatus::Accepted
        })
        .await;
    assert_eq!(sent.attempts, 0);
    assert_eq!(gw.daraja_requests(STATUS), 0);

    // Two minutes on: its result is late, Transaction Status is asked.
    time.advance(chrono::Duration::seconds(121));
    let asked = gw
        .wait_for_request(&request_id, "asked about", |r| r.attempts >= 1)
        .await;
    assert!(!asked.needs_review, "{asked:?}");
    assert_eq!(gw.daraja_requests(STATUS), 1);
    let shown = gw.get_json(&format!("/api/v1/payouts/{payout_id}")).await;
    assert_eq!(shown["needs_review"], false, "{shown}");

    // A minute short of a day since it was made: still asked, not held.
    time.advance(chrono::Duration::seconds(86_400 - 121 - 60));
    let again = gw
        .wait_for_request(&request_id, "asked again", |r| r.attempts >= 2)
        .await;
    assert!(
        !again.needs_review,
        "not held before the day is over: {again:?}"
    );
    assert_eq!(again.status, RequestStatus::Accepted);

    // Past the day (and the backoff's next look): held for a person.
    time.advance(chrono::Duration::minutes(10));
    let held = gw
        .wait_for_request(&request_id, "held", |r| r.needs_review)
        .await;
    assert_eq!(
        held.status,
        RequestStatus::Accepted,
        "not final: nobody knows"
    );
    assert_eq!(held.next_check_at, None, "nobody asks any more");
    let story: Vec<String> = gw
        .storage()
        .money_out_events(&request_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        story.iter().filter(|k| *k == "status_asked").count(),
        2,
        "{story:?}"
    );
    assert!(story.iter().any(|k| k == "held_for_review"), "{story:?}");
    assert_eq!(
        gw.daraja_requests(B2C),
        1,
        "the payout was never sent again"
    );
    assert_eq!(gw.daraja_requests(STATUS), 2);
    let (status, shown, _) = gw
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/payouts/{payout_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["status"], "pending", "{shown}");
    assert_eq!(
        shown["needs_review"], true,
        "the merchant sees that a person must look: {shown}"
    );
    gw.stop().await;
}

async fn payout_guardrails_refuse_cap_and_wait_for_another_admin(backend: Backend) {
    let webhook = WebhookReceiver::start().await;
    let gw = gateway(
        backend,
        &webhook,
        &[
            ("PAYOUT_MAX_AMOUNT", "5000"),
            ("PAYOUT_APPROVAL_ABOVE", "1000"),
        ],
    )
    .await;
    let (status, body, _) = gw
        .call(reqwest::Method::POST, "/api/v1/payouts", Some(json!({"phone": "0708374149", "amount": 6000, "purpose": "business", "remarks": "Too much"})), None)
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "amount");
    let (status, body, _) = gw
        .call(
            reqwest::Method::POST,
            "/api/v1/payouts",
            Some(
                json!({"phone": "0708374149", "amount": 600, "purpose": "gift", "remarks": "x y"}),
            ),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("purpose"))
    );

    // Above the approval line: it waits, nothing is sent.
    let payouts = &gw.state.money_out.payouts;
    let request = PayoutRequest {
        phone: mpesa_domain::Msisdn::parse("0708374149").unwrap(),
        amount: 2000,
        purpose: PayoutPurpose::Business,
        remarks: "Supplier".into(),
        occasion: None,
    };
    let PayoutCreated::Created(waiting) = payouts
        .create(request, &Requester::admin("amina"), None)
        .await
        .unwrap()
    else {
        panic!("created")
    };
    let waiting = *waiting;
    assert_eq!(waiting.status, PayoutStatus::AwaitingApproval);
    assert_eq!(gw.daraja_requests(B2C), 0);
    // The admin who asked cannot approve it.
    let own = payouts.approve(&waiting.id, "amina").await;
    assert!(
        matches!(&own, Err(mpesa_gateway::money_out::PayoutError::Refused(m)) if m.contains("own")),
        "{own:?}"
    );
    assert_eq!(gw.daraja_requests(B2C), 0);
    let approved = payouts.approve(&waiting.id, "baraka").await.unwrap();
    assert_eq!(approved.decided_by.as_deref(), Some("admin:baraka"));
    gw.wait_for_json(
        &format!("/api/v1/payouts/{}", waiting.id),
        "status",
        "completed",
    )
    .await;
    assert_eq!(gw.daraja_requests(B2C), 1);
    // Approving twice does nothing more.
    assert!(payouts.approve(&waiting.id, "chebet").await.is_err());
    assert_eq!(gw.daraja_requests(B2C), 1);
    let story: Vec<String> = gw
        .storage()
        .money_out_events(&waiting.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(story, ["requested", "approved", "sent", "completed"]);

    // An API payout above the line waits for one admin; a rejection sends nothing.
    let (status, api_waiting, _) = gw
        .call(reqwest::Method::POST, "/api/v1/payouts", Some(json!({"phone": "0708374149", "amount": 1500, "purpose": "promotion", "remarks": "Prize"})), None)
        .await;
    assert_eq!(
        (status, api_waiting["status"].as_str()),
        (202, Some("awaiting_approval"))
    );
    let rejected = payouts
        .reject(
            api_waiting["id"].as_str().unwrap(),
            "amina",
            "not this week",
        )
        .await
        .unwrap();
    assert_eq!(rejected.status, PayoutStatus::Rejected);
    assert_eq!(gw.daraja_requests(B2C), 1);

    // One asked for with an API key that an admin made on the dashboard is that admin's: they
    // cannot approve it (else one admin alone could make a key, ask, and approve).
    let (key, _) = gw
        .state
        .accounts
        .create_api_key("amina-tool", Some("admin:amina".into()))
        .await
        .unwrap();
    let response = gw
        .client
        .post(gw.url("/api/v1/payouts"))
        .bearer_auth(&key)
        .json(&json!({"phone": "0708374149", "amount": 1200, "purpose": "business", "remarks": "Via her key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let by_key: Value = response.json().await.unwrap();
    let by_key = by_key["id"].as_str().unwrap();
    let own = payouts.approve(by_key, "amina").await;
    assert!(
        matches!(&own, Err(mpesa_gateway::money_out::PayoutError::Refused(m)) if m.contains("API key they made")),
        "{own:?}"
    );
    assert_eq!(gw.daraja_requests(B2C), 1);
    let approved = payouts.approve(by_key, "baraka").await.unwrap();
    assert_eq!(approved.status, PayoutStatus::Pending);
    gw.stop().await;
}

/// `PAYOUT_DAILY_LIMIT` is per East Africa Time day: a payout refused for the day's limit at
/// 23:59 in Nairobi is accepted at 00:01, though it is still the same day in UTC (21:01). The
/// clock is moved across midnight, not waited for.
async fn the_daily_payout_limit_starts_again_at_midnight_east_africa_time(backend: Backend) {
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-10T23:50:00+03:00")
        .unwrap()
        .to_utc();
    let (time, clock) = manual_clock(start);
    let gw = spawn_with(
        Options::new(backend)
            .env("PAYOUT_DAILY_LIMIT", "1000")
            .clock(clock),
    )
    .await;
    let over_the_limit = |(status, body): (u16, Value)| {
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["field"], "amount");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("PAYOUT_DAILY_LIMIT"), "{message}");
    };
    let (status, first) = gw.payout(600).await;
    assert_eq!(status, 202, "{first}");
    over_the_limit(gw.payout(600).await);
    time.advance(chrono::Duration::minutes(9));
    over_the_limit(gw.payout(600).await);
    time.advance(chrono::Duration::minutes(2));
    let (status, next_day) = gw.payout(600).await;
    assert_eq!(status, 202, "a new day in Nairobi: {next_day}");
    let day = |id: &Value| {
        let storage = gw.storage();
        let id = id.as_str().unwrap().to_owned();
        async move { storage.get_payout(&id).await.unwrap().unwrap().eat_day }
    };
    let (d1, d2) = (day(&first["id"]).await, day(&next_day["id"]).await);
    assert_eq!(
        d1,
        mpesa_gateway::money_out::eat_day(start.timestamp_millis())
    );
    assert_eq!(d2, d1 + 1);
    assert_eq!(gw.daraja_requests(B2C), 2);
    gw.stop().await;
}

/// Two instances on one PostgreSQL database: two payouts that together pass the day's limit,
/// sent at the same moment, one to each. One is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_limit_holds_across_two_instances_on_postgres() {
    the_daily_limit_holds_across_two_instances(Backend::Postgres).await
}

/// The same on MariaDB (instances may share a MySQL/MariaDB database too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_limit_holds_across_two_instances_on_mariadb() {
    the_daily_limit_holds_across_two_instances(Backend::MySql).await
}

async fn the_daily_limit_holds_across_two_instances(backend: Backend) {
    let database = Arc::new(TestDatabase::new(backend).await);
    let instance = |database: Arc<TestDatabase>| {
        let mut o = Options::new(backend).env("PAYOUT_DAILY_LIMIT", "1000");
        o.database = Some(database);
        o
    };
    let a = spawn_with(instance(database.clone())).await;
    let b = spawn_with(instance(database.clone())).await;
    let body =
        json!({"phone": "0708374149", "amount": 600, "purpose": "business", "remarks": "Rider"});
    let (ra, rb) = tokio::join!(
        a.call(
            reqwest::Method::POST,
            "/api/v1/payouts",
            Some(body.clone()),
            None
        ),
        b.call(
            reqwest::Method::POST,
            "/api/v1/payouts",
            Some(body.clone()),
            None
        ),
    );
    let mut statuses = [ra.0, rb.0];
    statuses.sort();
    assert_eq!(statuses, [202, 422], "{ra:?} {rb:?}");
    let refused = if ra.0 == 422 { &ra.1 } else { &rb.1 };
    assert_eq!(refused["error"]["field"], "amount");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PAYOUT_DAILY_LIMIT"),
        "{refused}"
    );
    assert_eq!(a.daraja_requests(B2C) + b.daraja_requests(B2C), 1);
    a.stop().await;
    b.stop().await;
}

/// A customer paid the paybill on their own (C2B): the Reversal names that paybill as the
/// receiver, and the refund completes.
async fn a_c2b_payment_is_refunded_from_the_paybill_it_was_paid_to(backend: Backend) {
    let webhook = WebhookReceiver::start().await;
    let gw = gateway(backend, &webhook, &[]).await;
    gw.c2b_registered().await;
    let paid = gw
        .sim()
        .pay_c2b(daraja_sim::CustomerPayment::paybill("600000", "ACC9", 80))
        .await
        .unwrap();
    let payment = gw.payment_by_receipt(&paid.trans_id).await;
    let (status, refund, _) = gw
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/payments/{}/refund", payment.id),
            Some(json!({"reason": "Paid twice"})),
            None,
        )
        .await;
    assert_eq!(status, 202, "{refund}");
    gw.wait_for_json(
        &format!("/api/v1/refunds/{}", refund["id"].as_str().unwrap()),
        "status",
        "completed",
    )
    .await;
    let sent = gw
        .sim()
        .requests()
        .into_iter()
        .find(|r| r.path == REVERSAL)
        .unwrap();
    let sent: Value = serde_json::from_str(sent.body.get()).unwrap();
    assert_eq!(sent["ReceiverParty"], "600000");
    assert_eq!(sent["TransactionID"], paid.trans_id.as_str());
    assert_eq!(gw.daraja_requests(REVERSAL), 1);
    gw.stop().await;
}

/// A gateway on a clock the test moves, with webhooks to `webhook` and the admins' alerts to
/// `telegram`'s chat [`ADMIN_CHAT`].
async fn alerting_gateway(
    backend: Backend,
    webhook: &WebhookReceiver,
    telegram: &TelegramDouble,
) -> (TestGateway, Arc<ManualClock>) {
    let (time, clock) = manual_clock(chrono::Utc::now());
    let admin_chat = ADMIN_CHAT.to_string();
    let alerts = [
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
        ("TELEGRAM_API_BASE", &telegram.uri()),
        ("ADMIN_CHAT_ID", &admin_chat),
    ];
    (
        spawn_with(options(backend, webhook, &alerts).clock(clock)).await,
        time,
    )
}

/// The simulator still moves the money of `flows`, but holds their result callbacks back.
pub(crate) fn hold_back_results(gw: &TestGateway, flows: &[Flow]) {
    gw.sim().update_faults(|f| {
        for flow in flows {
            f.flows.insert(
                *flow,
                CallbackFaults {
                    suppress: true,
                    ..Default::default()
                },
            );
        }
    });
}

/// Moves the clock through a day of asking until every request in `ids` is held for a person
/// (as the day-of-asking test does, step by step: the resolver looks when each check is due).
async fn hold_for_a_person(gw: &TestGateway, time: &ManualClock, ids: &[&str]) {
    time.advance(chrono::Duration::seconds(121));
    for id in ids {
        gw.wait_for_request(id, "asked about", |r| r.attempts >= 1)
            .await;
    }
    time.advance(chrono::Duration::seconds(86_400 - 121 - 60));
    for id in ids {
        gw.wait_for_request(id, "asked again", |r| r.attempts >= 2)
            .await;
    }
    time.advance(chrono::Duration::minutes(10));
    for id in ids {
        gw.wait_for_request(id, "held", |r| r.needs_review).await;
    }
}

/// A payout and two refunds whose results never come are held for a person; a person records
/// what they found (not the admin who asked for the payout or the refund, though any admin for an
/// API key's refund; not with a receipt recorded elsewhere; only while held): each becomes final
/// once, through the same path as Daraja's result (one webhook), and the resolver stops.
/// M-Pesa's own result that comes later and agrees changes nothing; one that disagrees books
/// nothing again, holds the payout for a person once more and alerts the admins, once.
async fn a_held_payout_and_refund_are_settled_by_a_person_once_and_a_late_contradiction_holds_them_again(
    backend: Backend,
) {
    let webhook = WebhookReceiver::start().await;
    let telegram = TelegramDouble::start(&[]).await;
    let (gw, time) = alerting_gateway(backend, &webhook, &telegram).await;
    let admin_chat = ADMIN_CHAT.to_string();
    let payment_id = completed_payment(&gw, SUCCESS, 99).await;
    let second_payment = completed_payment(&gw, SUCCESS, 98).await;
    let payment_receipt = gw
        .storage()
        .get_payment(&payment_id)
        .await
        .unwrap()
        .unwrap()
        .mpesa_receipt_number
        .unwrap();
    hold_back_results(&gw, &[Flow::B2c, Flow::Reversal, Flow::TransactionStatus]);
    let payouts = &gw.state.money_out.payouts;
    let refunds = &gw.state.money_out.refunds;
    let created = payouts
        .create(
            PayoutRequest {
                phone: mpesa_domain::Msisdn::parse("0711222333").unwrap(),
                amount: 300,
                purpose: PayoutPurpose::Business,
                remarks: "Rider".into(),
                occasion: None,
            },
            &Requester::admin("amina"),
            None,
        )
        .await
        .unwrap();
    let PayoutCreated::Created(payout) = created else {
        panic!("a new payout")
    };
    let payout_request = payout.request_id.clone().unwrap();
    let refund_id = gw.refund_out_of_stock(&payment_id).await;
    let refund_request = gw
        .storage()
        .get_refund(&refund_id)
        .await
        .unwrap()
        .unwrap()
        .request_id
        .unwrap();
    // A refund an admin asked for on the dashboard.
    let RefundCreated::Created(admin_refund) = refunds
        .request(
            &second_payment,
            "Wrong size",
            &Requester::admin("baraka"),
            None,
        )
        .await
        .unwrap()
    else {
        panic!("a new refund")
    };
    let admin_refund_request = admin_refund.request_id.clone().unwrap();
    for request in [&payout_request, &refund_request, &admin_refund_request] {
        gw.wait_for_request(request, "accepted", |r| r.status == RequestStatus::Accepted)
            .await;
    }
    let refund_path = format!("/api/v1/refunds/{refund_id}");
    let payout_path = format!("/api/v1/payouts/{}", payout.id);
    let shown = gw.get_json(&refund_path).await;
    assert_eq!(shown["needs_review"], false, "{shown}");

    // Not held yet: nobody settles it by hand.
    let paid = || HandOutcome::Completed {
        receipt: " sgb2paid01 ".into(),
    };
    match payouts
        .settle_by_hand(&payout.id, paid(), "seen in the portal", "baraka")
        .await
    {
        Err(PayoutError::Refused(why)) => assert!(why.contains("held for a person"), "{why}"),
        other => panic!("settled a payout that is not held: {other:?}"),
    }
    match refunds
        .settle_by_hand(
            &refund_id,
            HandOutcome::Failed,
            "not in the portal",
            "amina",
        )
        .await
    {
        Err(RefundError::Refused(why)) => assert!(why.contains("held for a person"), "{why}"),
        other => panic!("settled a refund that is not held: {other:?}"),
    }

    hold_for_a_person(
        &gw,
        &time,
        &[&payout_request, &refund_request, &admin_refund_request],
    )
    .await;
    let shown = gw.get_json(&refund_path).await;
    assert_eq!(
        (shown["status"].as_str(), shown["needs_review"].as_bool()),
        (Some("pending"), Some(true)),
        "the refund says a person must look: {shown}"
    );

    // The admin who asked for the payout may not settle it; nor without a note or with a
    // receipt that is not one; nor with a receipt recorded on a payment.
    match payouts
        .settle_by_hand(&payout.id, paid(), "seen in the portal", "amina")
        .await
    {
        Err(PayoutError::Refused(why)) => assert!(why.contains("their own payout"), "{why}"),
        other => panic!("the admin who asked settled it: {other:?}"),
    }
    assert!(matches!(
        payouts
            .settle_by_hand(&payout.id, paid(), "  ", "baraka")
            .await,
        Err(PayoutError::Invalid { field: "note", .. })
    ));
    assert!(matches!(
        payouts
            .settle_by_hand(
                &payout.id,
                HandOutcome::Completed {
                    receipt: "SG-1".into()
                },
                "seen",
                "baraka"
            )
            .await,
        Err(PayoutError::Invalid {
            field: "receipt",
            ..
        })
    ));
    match payouts
        .settle_by_hand(
            &payout.id,
            HandOutcome::Completed {
                receipt: payment_receipt.clone(),
            },
            "seen in the portal",
            "baraka",
        )
        .await
    {
        Err(PayoutError::Refused(why)) => {
            assert!(why.contains("already recorded"), "{why}")
        }
        other => panic!("a receipt was recorded twice: {other:?}"),
    }
    let still = gw.storage().get_payout(&payout.id).await.unwrap().unwrap();
    assert_eq!(
        (still.status, still.receipt),
        (PayoutStatus::Pending, None),
        "a refused settlement writes nothing"
    );

    // Another admin records it: paid, with the receipt they saw.
    let settled = payouts
        .settle_by_hand(&payout.id, paid(), "Seen in the org portal", "baraka")
        .await
        .unwrap();
    assert_eq!(settled.status, PayoutStatus::Completed);
    assert_eq!(settled.receipt.as_deref(), Some("SGB2PAID01"));
    let request = gw
        .storage()
        .get_initiator_request(&payout_request)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.status, RequestStatus::Completed);
    assert!(
        !request.needs_review && request.settled_by_hand(),
        "{request:?}"
    );
    assert_eq!(request.next_check_at, None, "the resolver stops asking");
    assert!(request.owner_notified_at.is_some());
    let story = gw.storage().money_out_events(&payout.id).await.unwrap();
    let last = story.last().unwrap();
    assert_eq!(last.kind, "completed");
    let detail: Value = serde_json::from_str(&last.detail).unwrap();
    assert_eq!(
        (detail["by"].as_str(), detail["note"].as_str()),
        (Some("admin:baraka"), Some("Seen in the org portal"))
    );
    let shown = gw.get_json(&payout_path).await;
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["needs_review"].as_bool(),
            shown["receipt"].as_str()
        ),
        (Some("completed"), Some(false), Some("SGB2PAID01")),
        "{shown}"
    );
    // Once: settling again is refused.
    assert!(matches!(
        payouts
            .settle_by_hand(&payout.id, HandOutcome::Failed, "again", "baraka")
            .await,
        Err(PayoutError::Refused(_))
    ));

    // The refund: not reversed, by any admin.
    let r = refunds
        .settle_by_hand(
            &refund_id,
            HandOutcome::Failed,
            "Not on the statement",
            "amina",
        )
        .await
        .unwrap();
    assert_eq!(r.status, mpesa_storage::RefundStatus::Failed);
    let shown = gw.get_json(&refund_path).await;
    assert_eq!(
        (shown["status"].as_str(), shown["needs_review"].as_bool()),
        (Some("failed"), Some(false)),
        "{shown}"
    );
    // The admin who asked for a refund may not settle it; another admin may.
    match refunds
        .settle_by_hand(
            &admin_refund.id,
            HandOutcome::Failed,
            "not in the portal",
            "baraka",
        )
        .await
    {
        Err(RefundError::Refused(why)) => assert!(why.contains("their own refund"), "{why}"),
        other => panic!("the admin who asked settled it: {other:?}"),
    }
    assert_eq!(
        gw.storage()
            .get_refund(&admin_refund.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        mpesa_storage::RefundStatus::Pending,
        "a refused settlement writes nothing"
    );
    let r = refunds
        .settle_by_hand(
            &admin_refund.id,
            HandOutcome::Failed,
            "Not on the statement either",
            "amina",
        )
        .await
        .unwrap();
    assert_eq!(r.status, mpesa_storage::RefundStatus::Failed);
    eventually("one webhook each", WAIT, || async {
        delivered(&webhook, "payout.completed").len() == 1
            && delivered(&webhook, "refund.failed").len() == 2
    })
    .await;

    let contradicted = || async {
        outbox_rows(&gw)
            .await
            .into_iter()
            .filter(|e| e.event_type == "payout.contradicted")
            .collect::<Vec<_>>()
    };
    // M-Pesa's own result comes at last and agrees: nothing changes, nobody is alerted.
    let agrees = json!({"Result": {
        "ResultType": 0,
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "OriginatorConversationID": request.originator_conversation_id,
        "ConversationID": request.conversation_id,
        "TransactionID": "SGB2PAID01",
    }});
    let (status, _) = gw
        .post_callback("result/b2c", agrees.to_string().as_bytes())
        .await;
    assert_eq!(status, 200);
    let agreed = gw
        .storage()
        .get_initiator_request(&payout_request)
        .await
        .unwrap()
        .unwrap();
    assert!(!agreed.needs_review, "{agreed:?}");
    assert!(
        contradicted().await.is_empty(),
        "an agreeing result alerts nobody"
    );

    // Then another says the payout failed: it is kept, nothing is booked again, the payout is
    // held for a person once more and the admins are told, once.
    let body = json!({"Result": {
        "ResultType": 0,
        "ResultCode": 2001,
        "ResultDesc": "The initiator information is invalid.",
        "OriginatorConversationID": request.originator_conversation_id,
        "ConversationID": request.conversation_id,
        "TransactionID": "SKE0000000",
    }});
    let (status, _) = gw
        .post_callback("result/b2c", body.to_string().as_bytes())
        .await;
    assert_eq!(status, 200);
    let held = gw
        .wait_for_request(&payout_request, "held again", |r| r.needs_review)
        .await;
    assert_eq!(
        held.status,
        RequestStatus::Completed,
        "what the person recorded stays"
    );
    assert_eq!(held.receipt.as_deref(), Some("SGB2PAID01"));
    let kinds: Vec<String> = gw
        .storage()
        .money_out_events(&payout_request)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.iter().any(|k| k == "settled_by_hand"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "contradicted"), "{kinds:?}");
    let shown = gw.get_json(&payout_path).await;
    assert_eq!(
        (shown["status"].as_str(), shown["needs_review"].as_bool()),
        (Some("completed"), Some(true)),
        "{shown}"
    );
    let p = gw.storage().get_payout(&payout.id).await.unwrap().unwrap();
    assert_eq!(p.status, PayoutStatus::Completed);
    assert_eq!(gw.daraja_requests(B2C), 1, "never sent again");
    assert_eq!(gw.daraja_requests(REVERSAL), 2, "never sent again");
    // The same result again changes nothing more, and alerts nobody again.
    let (status, _) = gw
        .post_callback("result/b2c", body.to_string().as_bytes())
        .await;
    assert_eq!(status, 200);
    gw.state
        .money_out
        .initiator
        .resolve_due(60_000, 50)
        .await
        .unwrap();
    let alert = contradicted().await;
    assert_eq!(alert.len(), 1, "one alert per contradiction: {alert:?}");
    assert_eq!(
        (alert[0].channel, alert[0].destination.as_str()),
        (mpesa_storage::Channel::Telegram, admin_chat.as_str())
    );
    let text: Value = serde_json::from_str(&alert[0].payload).unwrap();
    let text = text["message"].as_str().unwrap();
    for part in [
        format!(
            "Payout {}: M-Pesa's result contradicts the settlement recorded by baraka.",
            payout.id
        ),
        "Recorded by hand: completed, receipt SGB2PAID01".to_owned(),
        "M-Pesa: failed, result code 2001".to_owned(),
        format!(
            "The payout: {}",
            gw.url(&format!("/admin/payouts/{}", payout.id))
        ),
    ] {
        assert!(text.contains(&part), "{part:?} not in {text:?}");
    }
    told_in_telegram(&telegram, "contradicts the settlement").await;
    // Outbox rows are written with the change they announce: the stored ones are all there is.
    assert_eq!(
        money_out_webhooks(&gw).await,
        ["payout.completed", "refund.failed", "refund.failed"],
        "nothing twice"
    );
    gw.stop().await;
}

/// The alerts about a payout or refund settled by hand, by event type.
async fn contradiction_alerts(
    gw: &TestGateway,
    event_type: &str,
) -> Vec<mpesa_storage::OutboxEvent> {
    outbox_rows(gw)
        .await
        .into_iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

/// Transaction Status asked about a request settled by hand: an answer that agrees changes
/// nothing and alerts nobody; one that contradicts it (a payout recorded as not paid that
/// M-Pesa paid; a refund recorded as not reversed that M-Pesa reversed) books nothing again,
/// holds it for a person once more and alerts the admins once, however often it is asked; the
/// refund's alert names its payment and links to its dashboard page. The resolver gives up its
/// last question before it holds a request and asks nothing once it is held, so the test asks
/// as the resolver does (`Initiator::ask_status`) after the settlement; the simulator answers
/// with its own result callbacks, from what it really did.
async fn transaction_status_that_contradicts_a_settlement_by_hand_alerts_the_admins_once(
    backend: Backend,
) {
    let webhook = WebhookReceiver::start().await;
    let telegram = TelegramDouble::start(&[]).await;
    let (gw, time) = alerting_gateway(backend, &webhook, &telegram).await;
    let admin_chat = ADMIN_CHAT.to_string();
    let payment_id = completed_payment(&gw, SUCCESS, 97).await;
    // The money moves in the simulator, but no result comes and Transaction Status is not
    // answered: all three are held for a person.
    hold_back_results(&gw, &[Flow::B2c, Flow::Reversal, Flow::TransactionStatus]);
    let mut payouts = Vec::new();
    for amount in [300, 200] {
        let (status, payout) = gw.payout(amount).await;
        assert_eq!(status, 202, "{payout}");
        payouts.push(payout["id"].as_str().unwrap().to_owned());
    }
    let (agreeing, contradicted) = (payouts[0].clone(), payouts[1].clone());
    let refund_id = gw.refund_out_of_stock(&payment_id).await;
    let storage = gw.storage();
    let agreeing_request = gw.payout_request(&agreeing).await;
    let contradicted_request = gw.payout_request(&contradicted).await;
    let refund_request = storage
        .get_refund(&refund_id)
        .await
        .unwrap()
        .unwrap()
        .request_id
        .unwrap();
    let requests = [
        agreeing_request.as_str(),
        contradicted_request.as_str(),
        refund_request.as_str(),
    ];
    for request in requests {
        gw.wait_for_request(request, "accepted", |r| r.status == RequestStatus::Accepted)
            .await;
    }
    hold_for_a_person(&gw, &time, &requests).await;

    let g = &gw;
    // What M-Pesa really paid: the simulator's books.
    let paid_receipt = |request_id: String| async move {
        g.sim()
            .wait_until(WAIT, |sim| {
                sim.payments()
                    .into_iter()
                    .find(|p| p.originator_conversation_id == request_id)
                    .map(|p| p.receipt)
            })
            .await
            .expect("the simulator paid the payout")
    };
    let agreeing_receipt = paid_receipt(agreeing_request.clone()).await;
    let contradicted_receipt = paid_receipt(contradicted_request.clone()).await;

    // A person records each: one payout paid with the receipt M-Pesa gave (true), the other
    // not paid (false), and the refund not reversed (false).
    let money_out = &gw.state.money_out;
    let settled = money_out
        .payouts
        .settle_by_hand(
            &agreeing,
            HandOutcome::Completed {
                receipt: agreeing_receipt.clone(),
            },
            "Seen in the org portal",
            "baraka",
        )
        .await
        .unwrap();
    assert_eq!(settled.status, PayoutStatus::Completed);
    let settled = money_out
        .payouts
        .settle_by_hand(
            &contradicted,
            HandOutcome::Failed,
            "Not in the org portal",
            "baraka",
        )
        .await
        .unwrap();
    assert_eq!(settled.status, PayoutStatus::Failed);
    let settled = money_out
        .refunds
        .settle_by_hand(
            &refund_id,
            HandOutcome::Failed,
            "Not on the statement",
            "amina",
        )
        .await
        .unwrap();
    assert_eq!(settled.status, mpesa_storage::RefundStatus::Failed);

    // Transaction Status answers from now on.
    gw.sim().update_faults(|f| {
        f.flows.remove(&Flow::TransactionStatus);
    });
    let initiator = &money_out.initiator;
    // Asks about `request_id` and waits until the answer was applied to it; returns what
    // Transaction Status said (the question's stored result).
    let ask = |request_id: String| async move {
        let request = g
            .storage()
            .get_initiator_request(&request_id)
            .await
            .unwrap()
            .unwrap();
        let question = initiator
            .ask_status(&request)
            .await
            .expect("a payout or reversal has a question")
            .expect("Transaction Status is asked");
        let answered = g
            .wait_for_request(&question.id, "answered and applied", |q| {
                q.owner_notified_at.is_some()
            })
            .await;
        assert_eq!(answered.status, RequestStatus::Completed, "{answered:?}");
        serde_json::from_str::<Value>(answered.result.as_deref().unwrap()).unwrap()
    };
    let events = |request_id: String| async move {
        g.storage()
            .money_out_events(&request_id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.detail))
            .collect::<Vec<_>>()
    };

    // The answer that agrees: nothing changes, nobody is alerted.
    let found = ask(agreeing_request.clone()).await;
    assert_eq!(
        (
            found["transaction_status"].as_str(),
            found["receipt_no"].as_str()
        ),
        (Some("Completed"), Some(agreeing_receipt.as_str())),
        "{found}"
    );
    let request = storage
        .get_initiator_request(&agreeing_request)
        .await
        .unwrap()
        .unwrap();
    assert!(!request.needs_review, "{request:?}");
    assert!(
        events(agreeing_request.clone())
            .await
            .iter()
            .any(|(kind, detail)| kind == "status_not_settling" && detail.contains("agrees")),
        "the answer was applied and agreed"
    );
    assert!(
        contradiction_alerts(&gw, "payout.contradicted")
            .await
            .is_empty(),
        "an agreeing answer alerts nobody"
    );

    // The answer that contradicts, asked twice: held again once, one alert.
    for _ in 0..2 {
        let found = ask(contradicted_request.clone()).await;
        assert_eq!(
            found["receipt_no"].as_str(),
            Some(contradicted_receipt.as_str())
        );
        let held = storage
            .get_initiator_request(&contradicted_request)
            .await
            .unwrap()
            .unwrap();
        assert!(held.needs_review, "held for a person again: {held:?}");
        assert_eq!(
            held.status,
            RequestStatus::Failed,
            "what the person recorded stays"
        );
    }
    let story = events(contradicted_request.clone()).await;
    assert_eq!(
        story
            .iter()
            .filter(|(kind, _)| kind == "contradicted")
            .count(),
        1,
        "{story:?}"
    );
    let shown = gw
        .get_json(&format!("/api/v1/payouts/{contradicted}"))
        .await;
    assert_eq!(
        (shown["status"].as_str(), shown["needs_review"].as_bool()),
        (Some("failed"), Some(true)),
        "{shown}"
    );
    let alert = contradiction_alerts(&gw, "payout.contradicted").await;
    assert_eq!(alert.len(), 1, "one alert per contradiction: {alert:?}");
    assert_eq!(
        (alert[0].channel, alert[0].destination.as_str()),
        (mpesa_storage::Channel::Telegram, admin_chat.as_str())
    );
    let payout_text = serde_json::from_str::<Value>(&alert[0].payload).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    for part in [
        format!(
            "Payout {contradicted}: Transaction Status contradicts the settlement recorded by baraka."
        ),
        "Recorded by hand: failed.".to_owned(),
        format!("M-Pesa: completed, receipt {contradicted_receipt}."),
        format!(
            "The payout: {}",
            gw.url(&format!("/admin/payouts/{contradicted}"))
        ),
    ] {
        assert!(
            payout_text.contains(&part),
            "{part:?} not in {payout_text:?}"
        );
    }

    // The refund M-Pesa reversed after all: held again, and the alert names its payment.
    let found = ask(refund_request.clone()).await;
    assert_eq!(
        found["transaction_status"].as_str(),
        Some("Reversed"),
        "{found}"
    );
    let shown = gw.get_json(&format!("/api/v1/refunds/{refund_id}")).await;
    assert_eq!(
        (shown["status"].as_str(), shown["needs_review"].as_bool()),
        (Some("failed"), Some(true)),
        "{shown}"
    );
    let alert = contradiction_alerts(&gw, "refund.contradicted").await;
    assert_eq!(alert.len(), 1, "{alert:?}");
    assert_eq!(
        (
            alert[0].channel,
            alert[0].destination.as_str(),
            alert[0].payment_id.as_deref()
        ),
        (
            mpesa_storage::Channel::Telegram,
            admin_chat.as_str(),
            Some(payment_id.as_str())
        ),
        "the alert is on the payment's record"
    );
    let refund_text = serde_json::from_str::<Value>(&alert[0].payload).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    for part in [
        format!(
            "Refund {refund_id} of payment {payment_id}: Transaction Status contradicts the settlement recorded by amina."
        ),
        "Recorded by hand: failed.".to_owned(),
        "M-Pesa: completed.".to_owned(),
        format!(
            "The payment: {}",
            gw.url(&format!("/admin/payments/{payment_id}"))
        ),
    ] {
        assert!(
            refund_text.contains(&part),
            "{part:?} not in {refund_text:?}"
        );
    }

    // Both alerts reach the admins' chat; nothing is sent to Daraja again, and no webhook
    // announces a contradiction.
    eventually("both alerts in the admins' Telegram chat", WAIT, || async {
        let texts: Vec<String> = telegram
            .messages_to(ADMIN_CHAT)
            .await
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect();
        [&payout_text, &refund_text].iter().all(|alert| {
            texts
                .iter()
                .any(|t| t.contains(alert.lines().next().unwrap()))
        })
    })
    .await;
    assert_eq!(gw.daraja_requests(B2C), 2, "never sent again");
    assert_eq!(gw.daraja_requests(REVERSAL), 1, "never sent again");
    assert!(
        outbox_rows(&gw)
            .await
            .iter()
            .all(|e| !(e.channel == mpesa_storage::Channel::Webhook
                && e.event_type.ends_with(".contradicted"))),
        "no webhook for a contradiction"
    );
    gw.stop().await;
}

/// The Transaction Status questions the resolver asked about `request_id`, oldest first.
async fn questions(gw: &TestGateway, request_id: &str) -> Vec<InitiatorRequest> {
    gw.state
        .money_out
        .initiator
        .requests_for(mpesa_gateway::money_out::initiator::RESOLVE, request_id)
        .await
        .unwrap()
}

/// Delivers now the answer to `question` that the simulator held back (suppressed): M-Pesa's
/// answer arriving late, as it was made then. Returns the gateway's HTTP status.
pub(crate) async fn deliver_late(gw: &TestGateway, question: &InitiatorRequest) -> u16 {
    let conversation_id = question
        .conversation_id
        .as_deref()
        .expect("Daraja accepted the question");
    let held_back = gw
        .sim()
        .callbacks()
        .into_iter()
        .find(|c| {
            c.reference == conversation_id && c.outcome == daraja_sim::DeliveryOutcome::Suppressed
        })
        .expect("the simulator answered the question, and held the answer back");
    reqwest::Client::new()
        .post(&held_back.url)
        .header("content-type", "application/json")
        .body(held_back.body.get().to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn event_kinds(gw: &TestGateway, subject_id: &str) -> Vec<(String, String)> {
    gw.storage()
        .money_out_events(subject_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.detail))
        .collect()
}

/// A payout, a payout M-Pesa did not make, and a refund are held for a person after every
/// Transaction Status question about them was given up (no answer in time); then M-Pesa's
/// answers arrive late, each twice. The paid payout becomes completed with the receipt M-Pesa
/// gave and the reversed refund completed, each no longer held, with the late answer on the
/// timeline and one webhook; the answer that finds nothing leaves its payout held (Transaction
/// Status never fails money). Nothing is sent to Daraja again. Without the fix the late answers
/// are kept and ignored: all three stay held.
async fn a_late_transaction_status_answer_settles_a_held_payout_or_refund_once(backend: Backend) {
    let webhook = WebhookReceiver::start().await;
    let (time, clock) = manual_clock(chrono::Utc::now());
    let gw = spawn_with(options(backend, &webhook, &[]).clock(clock)).await;
    let payment_id = completed_payment(&gw, SUCCESS, 96).await;
    hold_back_results(&gw, &[Flow::B2c, Flow::Reversal, Flow::TransactionStatus]);
    let (status, paid) = gw.payout(300).await;
    assert_eq!(status, 202, "{paid}");
    let paid = paid["id"].as_str().unwrap().to_owned();
    // M-Pesa refuses this recipient (2040): nothing is paid, so nothing is found.
    let (status, unpaid, _) = gw
        .call(
            reqwest::Method::POST,
            "/api/v1/payouts",
            Some(json!({"phone": daraja_sim::UNREGISTERED_RECIPIENT_NUMBER, "amount": 200, "purpose": "business", "remarks": "Rider"})),
            None,
        )
        .await;
    assert_eq!(status, 202, "{unpaid}");
    let unpaid = unpaid["id"].as_str().unwrap().to_owned();
    let refund_id = gw.refund_out_of_stock(&payment_id).await;
    let storage = gw.storage();
    let paid_request = storage
        .get_payout(&paid)
        .await
        .unwrap()
        .unwrap()
        .request_id
        .unwrap();
    let unpaid_request = storage
        .get_payout(&unpaid)
        .await
        .unwrap()
        .unwrap()
        .request_id
        .unwrap();
    let refund_request = storage
        .get_refund(&refund_id)
        .await
        .unwrap()
        .unwrap()
        .request_id
        .unwrap();
    let requests = [
        paid_request.as_str(),
        unpaid_request.as_str(),
        refund_request.as_str(),
    ];
    for request in requests {
        gw.wait_for_request(request, "accepted", |r| r.status == RequestStatus::Accepted)
            .await;
    }
    hold_for_a_person(&gw, &time, &requests).await;
    // Every question was given up before the hold (no answer within the wait).
    for request in requests {
        let asked = questions(&gw, request).await;
        assert_eq!(asked.len(), 2, "{asked:?}");
        for q in &asked {
            let q = gw
                .wait_for_request(&q.id, "given up", |q| q.owner_notified_at.is_some())
                .await;
            assert_eq!(
                (q.status, q.result_code.as_deref()),
                (RequestStatus::Failed, None)
            );
        }
    }
    let receipt = gw
        .sim()
        .payments()
        .into_iter()
        .find(|p| p.originator_conversation_id == paid_request)
        .expect("the simulator paid the payout")
        .receipt;
    let webhooks = |event_type: &'static str| {
        let gw = &gw;
        async move {
            outbox_rows(gw)
                .await
                .into_iter()
                .filter(|e| e.channel == mpesa_storage::Channel::Webhook)
                .filter(|e| e.event_type == event_type)
                .count()
        }
    };

    // Each late answer, twice (and the other question's too): applied once. The gateway
    // answers 200 once the answer is applied, and what it settles with it.
    for request in requests {
        for q in questions(&gw, request).await {
            for _ in 0..2 {
                assert_eq!(deliver_late(&gw, &q).await, 200);
            }
        }
    }

    // The paid payout: completed with M-Pesa's receipt, no longer held.
    let request = storage
        .get_initiator_request(&paid_request)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            request.status,
            request.receipt.as_deref(),
            request.needs_review
        ),
        (RequestStatus::Completed, Some(receipt.as_str()), false),
        "{request:?}"
    );
    let shown = gw.get_json(&format!("/api/v1/payouts/{paid}")).await;
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["receipt"].as_str(),
            shown["needs_review"].as_bool()
        ),
        (Some("completed"), Some(receipt.as_str()), Some(false)),
        "{shown}"
    );
    let story = event_kinds(&gw, &paid_request).await;
    let settled: Vec<_> = story
        .iter()
        .filter(|(kind, _)| kind == "settled_by_late_answer")
        .collect();
    assert_eq!(settled.len(), 1, "settled once, on the timeline: {story:?}");
    assert!(
        settled[0].1.contains("after the request was held"),
        "{settled:?}"
    );

    // The refund M-Pesa reversed: completed, no longer held.
    let request = storage
        .get_initiator_request(&refund_request)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (request.status, request.needs_review),
        (RequestStatus::Completed, false),
        "{request:?}"
    );
    let shown = gw.get_json(&format!("/api/v1/refunds/{refund_id}")).await;
    assert_eq!(
        (shown["status"].as_str(), shown["needs_review"].as_bool()),
        (Some("completed"), Some(false)),
        "{shown}"
    );
    let story = event_kinds(&gw, &refund_request).await;
    assert_eq!(
        story
            .iter()
            .filter(|(kind, _)| kind == "settled_by_late_answer")
            .count(),
        1,
        "{story:?}"
    );

    // The payout M-Pesa never made: "not found" (2032) proves nothing, so it stays held and
    // pending for a person; the late answer is on its timeline.
    let request = storage
        .get_initiator_request(&unpaid_request)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (request.status.is_final(), request.needs_review),
        (false, true)
    );
    let story = event_kinds(&gw, &unpaid_request).await;
    assert!(
        story
            .iter()
            .any(|(kind, detail)| kind == "status_not_settling" && detail.contains("2032")),
        "{story:?}"
    );
    let shown = gw.get_json(&format!("/api/v1/payouts/{unpaid}")).await;
    assert_eq!(
        (shown["status"].as_str(), shown["needs_review"].as_bool()),
        (Some("pending"), Some(true)),
        "{shown}"
    );

    // Each question took its answer, and its owner (the resolver) was told.
    for request in requests {
        for q in questions(&gw, request).await {
            assert!(
                q.result_code.is_some() && q.owner_notified_at.is_some(),
                "{q:?}"
            );
        }
    }

    // The usual final notifications, once each; nothing sent again.
    eventually("the final webhooks are written", WAIT, || async {
        webhooks("payout.completed").await >= 1 && webhooks("refund.completed").await >= 1
    })
    .await;
    assert_eq!(webhooks("payout.completed").await, 1);
    assert_eq!(webhooks("refund.completed").await, 1);
    assert_eq!(webhooks("payout.failed").await, 0);
    assert_eq!(gw.daraja_requests(B2C), 2, "never sent again");
    assert_eq!(gw.daraja_requests(REVERSAL), 1, "never sent again");
    gw.stop().await;
}

/// A payout and a refund whose results were held back are held for a person after a day of
/// asking; then M-Pesa's own results (B2C, Reversal) arrive, each twice. Each is settled once by
/// its result, no longer held (a person has nothing left to decide), with one webhook and the
/// late result on its timeline; nothing is sent again. Without the fix both end final and still
/// held: "needs a person" with nothing a person can do.
async fn a_late_result_settles_a_held_payout_or_refund_once(backend: Backend) {
    let webhook = WebhookReceiver::start().await;
    let (time, clock) = manual_clock(chrono::Utc::now());
    let gw = spawn_with(options(backend, &webhook, &[]).clock(clock)).await;
    let payment_id = completed_payment(&gw, SUCCESS, 96).await;
    hold_back_results(&gw, &[Flow::B2c, Flow::Reversal, Flow::TransactionStatus]);
    let (status, paid) = gw.payout(300).await;
    assert_eq!(status, 202, "{paid}");
    let paid = paid["id"].as_str().unwrap().to_owned();
    let refund_id = gw.refund_out_of_stock(&payment_id).await;
    let storage = gw.storage();
    let paid_request = gw.payout_request(&paid).await;
    let refund_request = storage
        .get_refund(&refund_id)
        .await
        .unwrap()
        .unwrap()
        .request_id
        .unwrap();
    let requests = [paid_request.as_str(), refund_request.as_str()];
    for request in requests {
        gw.wait_for_request(request, "accepted", |r| r.status == RequestStatus::Accepted)
            .await;
    }
    hold_for_a_person(&gw, &time, &requests).await;
    let receipt = gw
        .sim()
        .payments()
        .into_iter()
        .find(|p| p.originator_conversation_id == paid_request)
        .expect("the simulator paid the payout")
        .receipt;

    for request in requests {
        let row = storage
            .get_initiator_request(request)
            .await
            .unwrap()
            .unwrap();
        for _ in 0..2 {
            assert_eq!(deliver_late(&gw, &row).await, 200);
        }
    }

    let request = storage
        .get_initiator_request(&paid_request)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            request.status,
            request.receipt.as_deref(),
            request.needs_review
        ),
        (RequestStatus::Completed, Some(receipt.as_str()), false),
        "{request:?}"
    );
    let shown = gw.get_json(&format!("/api/v1/payouts/{paid}")).await;
    assert_eq!(
        (shown["status"].as_str(), shown["needs_review"].as_bool()),
        (Some("completed"), Some(false)),
        "{shown}"
    );
    let shown = gw.get_json(&format!("/api/v1/refunds/{refund_id}")).await;
    assert_eq!(
        (shown["status"].as_str(), shown["needs_review"].as_bool()),
        (Some("completed"), Some(false)),
        "{shown}"
    );
    for request in requests {
        let story = event_kinds(&gw, request).await;
        let settled: Vec<_> = story
            .iter()
            .filter(|(kind, _)| kind == "settled_by_late_answer")
            .collect();
        assert_eq!(settled.len(), 1, "settled once: {story:?}");
        assert!(
            settled[0].1.contains("Daraja's result came after"),
            "{settled:?}"
        );
    }

    let webhooks = |event_type: &'static str| {
        let gw = &gw;
        async move {
            outbox_rows(gw)
                .await
                .into_iter()
                .filter(|e| e.channel == mpesa_storage::Channel::Webhook)
                .filter(|e| e.event_type == event_type)
                .count()
        }
    };
    eventually("the final webhooks are written", WAIT, || async {
        webhooks("payout.completed").await >= 1 && webhooks("refund.completed").await >= 1
    })
    .await;
    assert_eq!(webhooks("payout.completed").await, 1);
    assert_eq!(webhooks("refund.completed").await, 1);
    assert_eq!(gw.daraja_requests(B2C), 1, "never sent again");
    assert_eq!(gw.daraja_requests(REVERSAL), 1, "never sent again");
    gw.stop().await;
}

/// A payout held after its questions were given up and settled by hand as not paid; then
/// M-Pesa's late answer (it was paid) arrives, twice: held again with one alert to the admins,
/// through the contradiction path. Without the fix the late answer is ignored: no alert.
async fn a_late_transaction_status_answer_that_contradicts_a_settlement_by_hand_alerts_once(
    backend: Backend,
) {
    let webhook = WebhookReceiver::start().await;
    let telegram = TelegramDouble::start(&[]).await;
    let (gw, time) = alerting_gateway(backend, &webhook, &telegram).await;
    hold_back_results(&gw, &[Flow::B2c, Flow::TransactionStatus]);
    let (status, payout) = gw.payout(300).await;
    assert_eq!(status, 202, "{payout}");
    let payout = payout["id"].as_str().unwrap().to_owned();
    let request_id = gw
        .storage()
        .get_payout(&payout)
        .await
        .unwrap()
        .unwrap()
        .request_id
        .unwrap();
    gw.wait_for_request(&request_id, "accepted", |r| {
        r.status == RequestStatus::Accepted
    })
    .await;
    hold_for_a_person(&gw, &time, &[&request_id]).await;
    let settled = gw
        .state
        .money_out
        .payouts
        .settle_by_hand(
            &payout,
            HandOutcome::Failed,
            "Not in the org portal",
            "baraka",
        )
        .await
        .unwrap();
    assert_eq!(settled.status, PayoutStatus::Failed);

    let asked = questions(&gw, &request_id).await;
    let late = asked.first().expect("asked at least once");
    for _ in 0..2 {
        // 200 once the answer is applied.
        assert_eq!(deliver_late(&gw, late).await, 200);
    }
    let held = gw
        .storage()
        .get_initiator_request(&request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (held.status, held.needs_review),
        (RequestStatus::Failed, true),
        "held again, with what the person recorded: {held:?}"
    );
    let alert = contradiction_alerts(&gw, "payout.contradicted").await;
    assert_eq!(alert.len(), 1, "one alert: {alert:?}");
    let text = serde_json::from_str::<Value>(&alert[0].payload).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.contains(&format!(
            "Payout {payout}: Transaction Status contradicts the settlement recorded by baraka."
        )),
        "{text}"
    );
    assert_eq!(gw.daraja_requests(B2C), 1, "never sent again");
    gw.stop().await;
}

/// A person records payout X as paid with the receipt M-Pesa really gave payout V (a mistake:
/// V was held too). Then M-Pesa's own answers bring that receipt for other requests: the late
/// Transaction Status answer about V, a B2C result for a new payout Y and a Reversal result for
/// a new refund, each delivered twice. None of them books it: each request keeps its state and
/// is held for a person (`needs_review`), its payout or refund stays pending with no receipt,
/// nothing goes to the merchant, and the admins get one alert per request naming both. Without
/// the fix the receipt is booked on X and on the others too (V and Y completed, the refund
/// completed), silently.
async fn a_receipt_recorded_by_hand_on_one_request_is_not_booked_on_another(backend: Backend) {
    let webhook = WebhookReceiver::start().await;
    let telegram = TelegramDouble::start(&[]).await;
    let (gw, time) = alerting_gateway(backend, &webhook, &telegram).await;
    let payment_id = completed_payment(&gw, SUCCESS, 95).await;
    hold_back_results(&gw, &[Flow::B2c, Flow::Reversal, Flow::TransactionStatus]);
    let storage = gw.storage();
    let mut created = Vec::new();
    for amount in [300, 200] {
        let (status, payout) = gw.payout(amount).await;
        assert_eq!(status, 202, "{payout}");
        created.push(payout["id"].as_str().unwrap().to_owned());
    }
    let (x, v) = (created[0].clone(), created[1].clone());
    let (x_request, v_request) = (gw.payout_request(&x).await, gw.payout_request(&v).await);
    for request in [&x_request, &v_request] {
        gw.wait_for_request(request, "accepted", |r| r.status == RequestStatus::Accepted)
            .await;
    }
    hold_for_a_person(&gw, &time, &[&x_request, &v_request]).await;
    let v_receipt = gw
        .sim()
        .wait_until(WAIT, |sim| {
            sim.payments()
                .into_iter()
                .find(|p| p.originator_conversation_id == v_request)
                .map(|p| p.receipt)
        })
        .await
        .expect("the simulator paid V");
    let settled = gw
        .state
        .money_out
        .payouts
        .settle_by_hand(
            &x,
            HandOutcome::Completed {
                receipt: v_receipt.clone(),
            },
            "Seen in the org portal",
            "baraka",
        )
        .await
        .unwrap();
    assert_eq!(
        (settled.status, settled.receipt.as_deref()),
        (PayoutStatus::Completed, Some(v_receipt.as_str()))
    );

    // Then a payout Y and a refund, sent and accepted, not held.
    let (status, y) = gw.payout(250).await;
    assert_eq!(status, 202, "{y}");
    let y = y["id"].as_str().unwrap().to_owned();
    let y_request = gw.payout_request(&y).await;
    let refund_id = gw.refund_out_of_stock(&payment_id).await;
    let refund_request = storage
        .get_refund(&refund_id)
        .await
        .unwrap()
        .unwrap()
        .request_id
        .unwrap();
    let mut accepted = Vec::new();
    for request in [&y_request, &refund_request] {
        accepted.push(
            gw.wait_for_request(request, "accepted", |r| r.status == RequestStatus::Accepted)
                .await,
        );
    }
    assert!(accepted.iter().all(|r| !r.needs_review));

    // Transaction Status's late answer about V: paid, with the receipt recorded on X.
    let asked = questions(&gw, &v_request).await;
    let late = asked.first().expect("V was asked about");
    // M-Pesa's results for Y and for the refund bring that receipt too.
    for _ in 0..2 {
        assert_eq!(deliver_late(&gw, late).await, 200);
        gw.post_result("b2c", &accepted[0], 0, &v_receipt).await;
        gw.post_result("reversal", &accepted[1], 0, &v_receipt)
            .await;
    }
    for request in [&v_request, &y_request, &refund_request] {
        let held = gw
            .wait_for_request(request, "held", |r| r.needs_review)
            .await;
        assert!(
            !held.status.is_final() && held.receipt.is_none(),
            "nothing is booked on {request}: {held:?}"
        );
        assert!(
            event_kinds(&gw, request)
                .await
                .iter()
                .any(|(kind, detail)| kind == "receipt_in_use" && detail.contains(&x_request)),
            "the timeline of {request} says why"
        );
    }
    for payout in [&v, &y] {
        let shown = gw.get_json(&format!("/api/v1/payouts/{payout}")).await;
        assert_eq!(
            (
                shown["status"].as_str(),
                shown["needs_review"].as_bool(),
                &shown["receipt"]
            ),
            (Some("pending"), Some(true), &Value::Null),
            "{shown}"
        );
    }
    let shown = gw.get_json(&format!("/api/v1/refunds/{refund_id}")).await;
    assert_eq!(
        (shown["status"].as_str(), shown["needs_review"].as_bool()),
        (Some("pending"), Some(true)),
        "{shown}"
    );
    // Held open: a person records its outcome; there is no contradiction to acknowledge.
    match gw
        .state
        .money_out
        .payouts
        .acknowledge(&y, "Seen", "baraka")
        .await
    {
        Err(PayoutError::Refused(why)) => assert!(why.contains("contradicted"), "{why}"),
        other => panic!("acknowledged a payout held open: {other:?}"),
    }

    // One alert per held request, naming both; however often the answer came.
    let payout_alerts = contradiction_alerts(&gw, "payout.receipt_in_use").await;
    let refund_alerts = contradiction_alerts(&gw, "refund.receipt_in_use").await;
    assert_eq!(
        (payout_alerts.len(), refund_alerts.len()),
        (2, 1),
        "{payout_alerts:?} {refund_alerts:?}"
    );
    let message = |e: &mpesa_storage::OutboxEvent| {
        serde_json::from_str::<Value>(&e.payload).unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for (held, what) in [
        (format!("Payout {v}: "), "Transaction Status"),
        (format!("Payout {y}: "), "M-Pesa's result"),
        (
            format!("Refund {refund_id} of payment {payment_id}: "),
            "M-Pesa's result",
        ),
    ] {
        let texts: Vec<String> = payout_alerts
            .iter()
            .chain(&refund_alerts)
            .map(message)
            .filter(|t| t.starts_with(&held))
            .collect();
        assert_eq!(texts.len(), 1, "one alert for {held}: {texts:?}");
        assert!(
            texts[0].contains(&format!(
                "{what} brings receipt {v_receipt}, already recorded by hand by baraka on payout {x}."
            )),
            "{}",
            texts[0]
        );
    }
    // The refund's alert lets the admin act: it is on the payment's record and links to it.
    let refund_text = message(&refund_alerts[0]);
    assert!(
        refund_text.contains(&format!(
            "The payment: {}",
            gw.url(&format!("/admin/payments/{payment_id}"))
        )),
        "{refund_text}"
    );
    assert_eq!(
        refund_alerts[0].payment_id.as_deref(),
        Some(payment_id.as_str()),
        "the alert is on the payment's record"
    );
    told_in_telegram(&telegram, "already recorded by hand").await;
    // Nothing went to the merchant but X's own completion, and nothing was sent again.
    assert_eq!(
        money_out_webhooks(&gw).await,
        ["payout.completed"],
        "only X's"
    );
    assert_eq!(gw.daraja_requests(B2C), 3, "never sent again");
    assert_eq!(gw.daraja_requests(REVERSAL), 1, "never sent again");
    gw.stop().await;
}

/// Account Balance questions given up (no answer within the two minutes), then M-Pesa's answers
/// five minutes later, each twice (the second half a minute after): the balance shows the
/// accounts with `answered_at` the time the first delivery came, not the give-up time, and the
/// repeated answer moves nothing. Without the fix `answered_at` is the give-up time.
async fn a_late_account_balance_answer_is_shown_with_the_time_it_came(backend: Backend) {
    let webhook = WebhookReceiver::start().await;
    let (time, clock) = manual_clock(chrono::Utc::now());
    let gw = spawn_with(options(backend, &webhook, &[]).clock(clock.clone())).await;
    hold_back_results(&gw, &[Flow::AccountBalance]);
    let (status, asked, _) = gw
        .call(reqwest::Method::POST, "/api/v1/balance", None, None)
        .await;
    assert_eq!(status, 202, "{asked}");
    let mut asked = Vec::new();
    for code in gw.state.money_out.balances.short_codes() {
        let requests = gw
            .state
            .money_out
            .initiator
            .requests_for(mpesa_gateway::money_out::balance::PURPOSE, code)
            .await
            .unwrap();
        assert_eq!(requests.len(), 1, "{requests:?}");
        asked.push(
            gw.wait_for_request(&requests[0].id, "accepted", |r| {
                r.status == RequestStatus::Accepted
            })
            .await,
        );
    }
    assert!(!asked.is_empty());
    time.advance(chrono::Duration::seconds(121));
    let given_up_at = clock.now_ms();
    for q in &asked {
        let q = gw
            .wait_for_request(&q.id, "given up", |q| q.owner_notified_at.is_some())
            .await;
        assert_eq!(
            (q.status, q.result_code.as_deref(), q.finalized_at),
            (RequestStatus::Failed, None, Some(given_up_at)),
            "{q:?}"
        );
    }

    time.advance(chrono::Duration::minutes(5));
    let answered_at = clock.now_ms();
    for q in &asked {
        assert_eq!(deliver_late(&gw, q).await, 200);
    }
    time.advance(chrono::Duration::seconds(30));
    for q in &asked {
        assert_eq!(deliver_late(&gw, q).await, 200);
    }

    let (status, shown, _) = gw
        .call(reqwest::Method::GET, "/api/v1/balance", None, None)
        .await;
    assert_eq!(status, 200, "{shown}");
    let shown = shown["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(shown.len(), asked.len(), "{shown:?}");
    let when = mpesa_gateway::ids::rfc3339(answered_at);
    for b in &shown {
        assert!(
            b["accounts"].as_array().is_some_and(|a| !a.is_empty()),
            "{b}"
        );
        assert_eq!(
            (b["answered_at"].as_str(), b["last_request_status"].as_str()),
            (Some(when.as_str()), Some("completed")),
            "the time the answer came ({when}), not the give-up's ({}): {b}",
            mpesa_gateway::ids::rfc3339(given_up_at)
        );
    }
    gw.stop().await;
}

/// Daraja answers a payout's B2C with an HTTP 500 envelope. "System internal error" does not say
/// that nothing happened: the payout is not failed (which would invite paying it again) but its
/// outcome is unknown, to be asked. The API gateway's throttling ("Spike Arrest Violation") is
/// answered before anything reaches M-Pesa: that payout fails at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_on_a_payout_is_asked_about_and_throttling_fails_it() {
    let webhook = WebhookReceiver::start().await;
    let gw = gateway(Backend::Sqlite, &webhook, &[]).await;
    let payout = |remarks: &'static str| {
        let gw = &gw;
        async move {
            let (status, body, _) = gw
                .call(
                    reqwest::Method::POST,
                    "/api/v1/payouts",
                    Some(json!({"phone": "0711222333", "amount": 300, "purpose": "business", "remarks": remarks})),
                    None,
                )
                .await;
            assert_eq!(status, 202, "{body}");
            gw.storage()
                .get_payout(body["id"].as_str().unwrap())
                .await
                .unwrap()
                .unwrap()
        }
    };
    gw.sim().update_faults(|f| {
        *f = std::mem::take(f).fail_next(
            daraja::endpoint::Api::B2c,
            1,
            daraja_sim::faults::FailureAnswer::Custom {
                status: 500,
                error_code: "500.002.1001".into(),
                error_message: "System internal error.".into(),
            },
        )
    });
    let unknown = payout("Rider one").await;
    assert_eq!(unknown.status, PayoutStatus::Pending, "{unknown:?}");
    let request = gw
        .storage()
        .get_initiator_request(unknown.request_id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.status, RequestStatus::Unknown, "{request:?}");

    gw.sim().update_faults(|f| {
        *f = std::mem::take(f).fail_next(
            daraja::endpoint::Api::B2c,
            1,
            daraja_sim::faults::FailureAnswer::SpikeArrest,
        )
    });
    let throttled = payout("Rider two").await;
    assert_eq!(throttled.status, PayoutStatus::Failed, "{throttled:?}");
    assert_eq!(gw.daraja_requests(B2C), 2, "each sent once");
    gw.stop().await;
}

/// A process that stops between a refund's (or payout's) commit and the storing of its Daraja
/// request left it pending with nothing sent, for ever: a refund refused every later refund of
/// its payment, a payout held its share of the day's limit. The sweep sends each such one, once
/// even when two instances sweep at the same moment, and keeps an id that was recorded on it.
async fn a_refund_or_payout_left_without_its_request_is_sent_once_by_the_sweep(backend: Backend) {
    use mpesa_gateway::money_out::resolver::ORPHAN_GRACE_MS;
    use mpesa_storage::{
        CreatePayoutResult, CreateRefundResult, NewPayout, NewRefund, PayoutUpdate,
    };
    let webhook = WebhookReceiver::start().await;
    let (time, clock) = manual_clock(chrono::Utc::now());
    let gw = spawn_with(options(backend, &webhook, &[]).clock(clock.clone())).await;
    let storage = gw.storage();
    let money_out = &gw.state.money_out;
    // What a crash right after the commit leaves: the rows, and no request.
    let left_refund = |payment_id: String| {
        let storage = storage.clone();
        let now = clock.now_ms();
        async move {
            let created = storage
                .create_refund(
                    NewRefund {
                        id: mpesa_gateway::ids::new_id("rfd"),
                        payment_id,
                        reason: "Out of stock".into(),
                        requested_by: "admin:amina".into(),
                        source: "dashboard".into(),
                        api_key_id: None,
                        created_at: now,
                    },
                    None,
                    &|p, _| {
                        Ok((
                            p.amount.shillings(),
                            p.mpesa_receipt_number.clone().unwrap_or_default(),
                        ))
                    },
                )
                .await
                .unwrap();
            match created {
                CreateRefundResult::Created(r) => r.id,
                _ => panic!("the refund is stored"),
            }
        }
    };
    let left_payout = |amount: i64| {
        let storage = storage.clone();
        let now = clock.now_ms();
        async move {
            let created = storage
                .create_payout(
                    NewPayout {
                        id: mpesa_gateway::ids::new_id("po"),
                        status: PayoutStatus::Pending,
                        phone: "254708374149".into(),
                        amount,
                        command: "BusinessPayment".into(),
                        remarks: "Rider".into(),
                        occasion: None,
                        requested_by: "admin:amina".into(),
                        source: "dashboard".into(),
                        api_key_id: None,
                        eat_day: mpesa_gateway::money_out::eat_day(now),
                        created_at: now,
                    },
                    None,
                    None,
                )
                .await
                .unwrap();
            match created {
                CreatePayoutResult::Created(p) => p.id,
                _ => panic!("the payout is stored"),
            }
        }
    };
    let payment_id = completed_payment(&gw, SUCCESS, 120).await;
    let refund_id = left_refund(payment_id.clone()).await;
    let payout_id = left_payout(300).await;
    // This one stopped after recording its request's id, before storing the request.
    let recorded_id = left_payout(400).await;
    let recorded = "ireq_recordednotstored".to_owned();
    storage
        .update_payout(&recorded_id, clock.now_ms(), &|_| {
            Some(PayoutUpdate {
                request_id: Some(recorded.clone()),
                ..Default::default()
            })
        })
        .await
        .unwrap();
    // Not before the grace: its own process may still be storing it.
    assert_eq!(
        money_out
            .refunds
            .send_orphans(ORPHAN_GRACE_MS)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        money_out
            .payouts
            .send_orphans(ORPHAN_GRACE_MS)
            .await
            .unwrap(),
        0
    );

    // Two instances' sweeps at the same moment.
    let (a, b, c, d) = tokio::join!(
        money_out.refunds.send_orphans(0),
        money_out.refunds.send_orphans(0),
        money_out.payouts.send_orphans(0),
        money_out.payouts.send_orphans(0),
    );
    assert!(a.unwrap() + b.unwrap() >= 1, "the refund was not found");
    assert!(c.unwrap() + d.unwrap() >= 2, "the payouts were not found");
    for id in [&payout_id, &recorded_id] {
        gw.wait_for_json(&format!("/api/v1/payouts/{id}"), "status", "completed")
            .await;
    }
    gw.wait_for_json(
        &format!("/api/v1/refunds/{refund_id}"),
        "status",
        "completed",
    )
    .await;
    assert_eq!(gw.daraja_requests(REVERSAL), 1, "one Reversal");
    assert_eq!(gw.daraja_requests(B2C), 2, "one B2C request per payout");
    assert_eq!(gw.payout_request(&recorded_id).await, recorded);
    let request = storage
        .get_initiator_request(&recorded)
        .await
        .unwrap()
        .expect("stored under the recorded id");
    assert_eq!(request.originator_conversation_id, Some(recorded.clone()));
    // Sent: nothing is left for a sweep.
    assert_eq!(money_out.refunds.send_orphans(0).await.unwrap(), 0);
    assert_eq!(money_out.payouts.send_orphans(0).await.unwrap(), 0);

    // The gateway's own sweep, once the grace is over on its clock.
    let second_payment = completed_payment(&gw, SUCCESS, 130).await;
    let second_refund = left_refund(second_payment).await;
    time.advance(chrono::Duration::milliseconds(ORPHAN_GRACE_MS + 1_000));
    gw.wait_for_json(
        &format!("/api/v1/refunds/{second_refund}"),
        "status",
        "completed",
    )
    .await;
    assert_eq!(gw.daraja_requests(REVERSAL), 2);
    assert_eq!(gw.daraja_requests(B2C), 2);

    // One left for more than a day is not sent: a person may have settled it by hand meanwhile.
    let third_payment = completed_payment(&gw, SUCCESS, 140).await;
    let old_refund = left_refund(third_payment).await;
    time.advance(chrono::Duration::hours(25));
    assert_eq!(money_out.refunds.send_orphans(0).await.unwrap(), 0);
    let refund = storage.get_refund(&old_refund).await.unwrap().unwrap();
    assert_eq!(
        (refund.status, refund.request_id),
        (mpesa_storage::RefundStatus::Pending, None)
    );
    assert_eq!(gw.daraja_requests(REVERSAL), 2);
}
