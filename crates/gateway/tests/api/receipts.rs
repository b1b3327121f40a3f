//! Checking a receipt code with Safaricom (Transaction Status) end to end, against the
//! simulator: a payment whose C2B confirmation never came is booked once by a check
//! (`recovered_by: "status"`) and a late confirmation changes nothing; a receipt we hold is
//! linked, another shortcode's or an unknown one is shown and never booked; one check in flight
//! per code; the initiator and a plausible code are required; the dashboard's form and the
//! Telegram bot's `/paid` go through the same service.

use std::time::Duration;

use daraja_sim::faults::CallbackFaults;
use daraja_sim::{CustomerPayment, Flow};
use mpesa_gateway::clock::{Clock, ManualClock};
use mpesa_gateway::money_out::Requester;
use mpesa_storage::{
    Backend, CallbackFilter, CallbackKind, CallbackOutcome, PageRequest, ReceiptCheck,
};
use serde_json::Value;

use crate::c2b::confirmation;
use crate::dashboard::{AdminClient, add_admin};
use crate::money_out::{deliver_late, hold_back_results};
use crate::on_every_backend;
use crate::outbox::{Destinations, wait_outbox_idle};
use crate::outbox_receivers::{ADMIN_CHAT, eventually};
use crate::support::*;
use crate::telegram_bot::bot_options;
use crate::telegram_fake::{FakeTelegram, User};

on_every_backend!(
    a_lost_confirmation_is_recovered_by_a_status_check_once,
    other_short_codes_and_unknown_receipts_are_shown_never_booked,
    a_late_answer_to_a_given_up_check_books_the_payment_once,
    a_late_answer_after_a_newer_check_booked_the_payment_links_it,
    a_late_not_found_answer_to_a_given_up_check_books_nothing,
);

const PAYBILL: &str = "600000";
const STATUS: &str = "/mpesa/transactionstatus/v1/query";
const WAIT: Duration = Duration::from_secs(20);

impl TestGateway {
    async fn receipt_call(&self, method: reqwest::Method, path: &str, auth: bool) -> (u16, Value) {
        let mut r = self.client.request(method, self.url(path));
        if auth {
            r = r.bearer_auth(&self.api_key);
        }
        let response = r.send().await.expect("gateway answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST /api/v1/receipts/{code}/check`.
    async fn check_receipt(&self, code: &str) -> (u16, Value) {
        self.receipt_call(
            reqwest::Method::POST,
            &format!("/api/v1/receipts/{code}/check"),
            true,
        )
        .await
    }

    /// `GET /api/v1/receipts/{code}`.
    async fn receipt(&self, code: &str) -> (u16, Value) {
        self.receipt_call(
            reqwest::Method::GET,
            &format!("/api/v1/receipts/{code}"),
            true,
        )
        .await
    }

    /// Waits until the latest check of `code` is no longer pending.
    async fn receipt_final(&self, code: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body) = self.receipt(code).await;
            assert_eq!(status, 200, "{body}");
            if body["status"] != "pending" {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the check of {code} is still pending after {WAIT:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Transaction Status requests the simulator received.
    fn status_requests(&self) -> usize {
        self.sim()
            .requests()
            .iter()
            .filter(|r| r.path == STATUS)
            .count()
    }

    /// A paybill payment whose confirmation the simulator never delivers: its receipt.
    async fn lost_c2b_payment(&self, account: &str, amount: i64) -> String {
        let lost = self
            .sim()
            .pay_c2b(
                CustomerPayment::paybill(PAYBILL, account, amount).with_faults(CallbackFaults {
                    suppress: true,
                    ..CallbackFaults::default()
                }),
            )
            .await
            .unwrap();
        assert!(lost.is_completed());
        assert!(
            self.storage()
                .find_payment_by_receipt(&lost.trans_id)
                .await
                .unwrap()
                .is_none(),
            "the confirmation was lost"
        );
        lost.trans_id
    }
}

/// A payment whose confirmation never came is booked by a status check, once, with
/// `recovered_by: "status"`, one webhook and the admin told; asking again links the same
/// payment; the confirmation arriving late changes nothing.
async fn a_lost_confirmation_is_recovered_by_a_status_check_once(backend: Backend) {
    let destinations = Destinations::start().await;
    let gw = spawn_with(destinations.options(backend, "50ms,100ms")).await;
    gw.c2b_registered().await;
    let code = gw.lost_c2b_payment("LOST2", 60).await;

    let (status, first) = gw.check_receipt(&code).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["code"], code.as_str());
    assert!(
        first["status"] == "pending" || first["status"] == "answered",
        "{first}"
    );
    let answered = gw.receipt_final(&code).await;
    assert_eq!(answered["id"], first["id"], "{answered}");
    assert_eq!(
        (
            answered["status"].as_str(),
            answered["finding"].as_str(),
            answered["outcome"].as_str()
        ),
        (Some("answered"), Some("completed"), Some("booked")),
        "{answered}"
    );
    assert_eq!(answered["amount"], 60.0);
    assert_eq!(answered["short_code"], PAYBILL);
    assert_eq!(answered["transaction_status"], "Completed");
    let payment = &answered["payment"];
    assert_eq!(payment["recovered_by"], "status", "{answered}");
    assert_eq!(payment["channel"], "c2b");
    assert_eq!(payment["status"], "completed");
    assert_eq!(payment["amount"], 60);
    assert_eq!(payment["mpesa_receipt_number"], code.as_str());
    let p = gw.payment_by_receipt(&code).await;
    assert_eq!(answered["payment_id"], p.id.as_str());
    assert_eq!(p.recovered_by.as_deref(), Some("status"));
    assert_eq!(gw.status_requests(), 1);

    // Asked again: a new check, answered the same; the payment is linked, not booked again.
    let (status, second) = gw.check_receipt(&code).await;
    assert_eq!(status, 202, "{second}");
    assert_ne!(second["id"], first["id"]);
    let again = gw.receipt_final(&code).await;
    assert_eq!(again["id"], second["id"]);
    assert_eq!(again["outcome"], "already_booked", "{again}");
    assert_eq!(again["payment_id"], p.id.as_str());
    assert_eq!(gw.status_requests(), 2);

    // The confirmation arrives after all: a duplicate of the recovered payment.
    let late = confirmation(&code, PAYBILL, "LOST2", "60.00", "2547 ***** 149", "JOHN");
    let (status, _) = gw.post_c2b_confirmation(&late).await;
    assert_eq!(status, 200);
    let after = gw.payment_by_receipt(&code).await;
    assert_eq!(
        (after.id.as_str(), after.version),
        (p.id.as_str(), p.version)
    );
    let callbacks = gw
        .storage()
        .list_callbacks(
            &CallbackFilter {
                kind: Some(CallbackKind::C2bConfirmation),
                ..CallbackFilter::default()
            },
            &PageRequest {
                limit: 100,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items;
    let late_callback = callbacks
        .iter()
        .find(|c| c.receipt.as_deref() == Some(code.as_str()))
        .expect("the late confirmation is stored");
    assert_eq!(late_callback.outcome, CallbackOutcome::Duplicate);
    assert_eq!(late_callback.payment_id.as_deref(), Some(p.id.as_str()));
    assert_eq!(gw.list_payments("channel=c2b").await.len(), 1);

    // One payment.completed webhook, and the admin is told how it was found.
    wait_outbox_idle(gw.storage().as_ref()).await;
    let completed = completed_webhooks(&destinations, &p.id);
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["data"]["recovered_by"], "status");
    let alert = destinations
        .telegram
        .messages_to(ADMIN_CHAT)
        .await
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .find(|t| t.contains(&code))
        .expect("the admin is alerted");
    assert!(alert.contains("Transaction Status"), "{alert}");
    gw.stop().await;
}

/// A gateway on a clock the test moves, a paybill payment whose confirmation was lost, and a
/// `/paid` check of it from `chat` given up: Safaricom's answer was held back past the two
/// minutes, and the chat was told Safaricom did not answer.
struct GivenUp {
    gw: TestGateway,
    destinations: Destinations,
    time: std::sync::Arc<ManualClock>,
    clock: Clock,
    code: String,
    check: ReceiptCheck,
    chat: i64,
}

impl GivenUp {
    async fn start(backend: Backend, account: &str, amount: i64, chat: i64) -> Self {
        Self::start_with(backend, Some((account, amount)), chat).await
    }

    /// `lost`: the paybill payment whose confirmation was lost (account, amount) and whose
    /// receipt is checked; `None` checks a receipt Safaricom does not know.
    async fn start_with(backend: Backend, lost: Option<(&str, i64)>, chat: i64) -> Self {
        let destinations = Destinations::start().await;
        let time = std::sync::Arc::new(ManualClock::new(chrono::Utc::now()));
        let clock = Clock::manual(time.clone());
        let gw = spawn_with(
            destinations
                .options(backend, "50ms,100ms")
                .clock(clock.clone()),
        )
        .await;
        gw.c2b_registered().await;
        let code = match lost {
            Some((account, amount)) => gw.lost_c2b_payment(account, amount).await,
            None => format!("SZZ{chat:07}"),
        };
        hold_back_results(&gw, &[Flow::TransactionStatus]);
        let check = gw
            .state
            .money_out
            .receipts
            .check(&code, &Requester::telegram(chat), Some(chat))
            .await
            .unwrap();
        time.advance(chrono::Duration::seconds(121));
        let given_up = gw.receipt_final(&code).await;
        assert_eq!(
            (given_up["id"].as_str(), given_up["status"].as_str()),
            (Some(check.id.as_str()), Some("failed")),
            "{given_up}"
        );
        assert!(given_up["finding"].is_null(), "{given_up}");
        let up = GivenUp {
            gw,
            destinations,
            time,
            clock,
            code,
            check,
            chat,
        };
        eventually("the chat is told no answer came", WAIT, || async {
            up.told().await.len() == 1
        })
        .await;
        let told = up.told().await;
        assert!(told[0].contains("did not answer"), "{told:?}");
        up
    }

    /// What the chat was sent, oldest first.
    async fn told(&self) -> Vec<String> {
        self.destinations
            .telegram
            .messages_to(self.chat)
            .await
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect()
    }

    /// The admins' Telegram messages about the code.
    async fn admin_alerts(&self) -> usize {
        self.destinations
            .telegram
            .messages_to(ADMIN_CHAT)
            .await
            .iter()
            .filter(|m| m["text"].as_str().is_some_and(|t| t.contains(&self.code)))
            .count()
    }

    /// Delivers Safaricom's held-back answer to the check's question now, twice.
    async fn answer_late_twice(&self) {
        let question = self
            .gw
            .storage()
            .get_initiator_request(self.check.request_id.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap();
        for _ in 0..2 {
            assert_eq!(deliver_late(&self.gw, &question).await, 200);
        }
    }
}

/// The `payment.completed` webhooks delivered for `payment_id`.
fn completed_webhooks(destinations: &Destinations, payment_id: &str) -> Vec<Value> {
    destinations
        .webhook
        .delivered()
        .iter()
        .map(|h| h.json())
        .filter(|j| j["type"] == "payment.completed" && j["data"]["id"] == payment_id)
        .collect()
}

/// A `/paid` check given up (no answer within the two minutes: the chat is told Safaricom did
/// not answer) whose answer comes after all, delivered twice: the payment is booked once
/// (`recovered_by: "status"`, one webhook, the admin told once), the check becomes answered and
/// `booked` with the time the answer came, and the chat is told what was found, once. Nothing is
/// asked again. Without the fix the late answer is kept and ignored: nothing is booked.
async fn a_late_answer_to_a_given_up_check_books_the_payment_once(backend: Backend) {
    let up = GivenUp::start(backend, "LATE1", 70, 4343).await;
    let (gw, code) = (&up.gw, up.code.as_str());

    // M-Pesa's answer comes a minute later, twice.
    up.time.advance(chrono::Duration::seconds(60));
    let answered_at = up.clock.now_ms();
    up.answer_late_twice().await;

    assert_eq!(
        gw.list_payments("channel=c2b").await.len(),
        1,
        "payments booked from the late answer"
    );
    let p = gw.payment_by_receipt(code).await;
    assert_eq!(p.recovered_by.as_deref(), Some("status"));
    let (status, shown) = gw.receipt(code).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        (
            shown["id"].as_str(),
            shown["status"].as_str(),
            shown["finding"].as_str(),
            shown["outcome"].as_str(),
            shown["payment_id"].as_str(),
        ),
        (
            Some(up.check.id.as_str()),
            Some("answered"),
            Some("completed"),
            Some("booked"),
            Some(p.id.as_str())
        ),
        "{shown}"
    );
    assert_eq!(
        shown["answered_at"].as_str(),
        Some(mpesa_gateway::ids::rfc3339(answered_at).as_str()),
        "the time the answer came, not the give-up's: {shown}"
    );
    assert_eq!(gw.status_requests(), 1, "nothing asked again");

    // The chat is told what was found, once; one webhook; the admin told once.
    wait_outbox_idle(gw.storage().as_ref()).await;
    let told = up.told().await;
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(
        told[1].contains("Safaricom confirms your payment of KSh 70") && told[1].contains(code),
        "{told:?}"
    );
    let completed = completed_webhooks(&up.destinations, &p.id);
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(up.admin_alerts().await, 1);
    up.gw.stop().await;
}

/// A `/paid` check of a receipt Safaricom does not know, given up (the chat told Safaricom did
/// not answer), whose answer ("not found", result code 2032) comes after all, twice: nothing is
/// booked or linked, the check becomes answered with the finding `not_found`, the result code and
/// the time the answer came, and the chat is told once that Safaricom does not know the code.
/// Nothing is asked again and the admins are not told.
async fn a_late_not_found_answer_to_a_given_up_check_books_nothing(backend: Backend) {
    let up = GivenUp::start_with(backend, None, 4345).await;
    let (gw, code) = (&up.gw, up.code.as_str());

    up.time.advance(chrono::Duration::seconds(60));
    let answered_at = up.clock.now_ms();
    up.answer_late_twice().await;

    let late = gw.state.money_out.receipts.get(&up.check.id).await.unwrap();
    let late = late.check;
    assert_eq!(
        (
            late.status.as_str(),
            late.finding.as_deref(),
            late.outcome.as_deref(),
            late.result_code.as_deref(),
            late.payment_id.as_deref(),
        ),
        (
            "answered",
            Some("not_found"),
            Some("not_booked"),
            Some("2032"),
            None
        ),
        "{late:?}"
    );
    let (status, shown) = gw.receipt(code).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        (shown["id"].as_str(), shown["answered_at"].as_str()),
        (
            Some(up.check.id.as_str()),
            Some(mpesa_gateway::ids::rfc3339(answered_at).as_str())
        ),
        "the time the answer came, not the give-up's: {shown}"
    );
    assert!(shown["payment"].is_null(), "{shown}");
    assert!(gw.list_payments("channel=c2b").await.is_empty());
    assert_eq!(gw.status_requests(), 1, "nothing asked again");

    // No answer, then "not found", once.
    wait_outbox_idle(gw.storage().as_ref()).await;
    let told = up.told().await;
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(
        told[1].contains("Safaricom does not know receipt") && told[1].contains(code),
        "{told:?}"
    );
    assert_eq!(up.admin_alerts().await, 0, "nothing for the admins");
    up.gw.stop().await;
}

/// A check given up, then the customer asks again and the newer check books the payment; the
/// first check's answer comes after all, twice: it links the same payment (`already_booked`, not
/// `booked`: the newer check booked it), nothing is booked again, and its chat is told once.
async fn a_late_answer_after_a_newer_check_booked_the_payment_links_it(backend: Backend) {
    let up = GivenUp::start(backend, "LATE2", 80, 4344).await;
    let (gw, code) = (&up.gw, up.code.as_str());
    let receipts = &gw.state.money_out.receipts;

    // Asked again, answered in time: the newer check books the payment.
    gw.sim().update_faults(|f| {
        f.flows.remove(&Flow::TransactionStatus);
    });
    up.time.advance(chrono::Duration::seconds(30));
    let second = receipts
        .check(code, &Requester::telegram(up.chat), Some(up.chat))
        .await
        .unwrap();
    assert_ne!(second.id, up.check.id);
    let answered = gw.receipt_final(code).await;
    assert_eq!(
        (answered["id"].as_str(), answered["outcome"].as_str()),
        (Some(second.id.as_str()), Some("booked")),
        "{answered}"
    );
    let p = gw.payment_by_receipt(code).await;

    up.time.advance(chrono::Duration::seconds(30));
    up.answer_late_twice().await;
    let late = receipts.get(&up.check.id).await.unwrap().check;
    assert_eq!(
        (
            late.status.as_str(),
            late.outcome.as_deref(),
            late.payment_id.as_deref()
        ),
        ("answered", Some("already_booked"), Some(p.id.as_str())),
        "{late:?}"
    );
    assert_eq!(gw.list_payments("channel=c2b").await.len(), 1);
    wait_outbox_idle(gw.storage().as_ref()).await;
    // No answer, then each check's answer once.
    let told = up.told().await;
    assert_eq!(told.len(), 3, "{told:?}");
    assert_eq!(
        told.iter()
            .filter(|t| t.contains("Safaricom confirms your payment of KSh 80"))
            .count(),
        2,
        "{told:?}"
    );
    assert_eq!(gw.status_requests(), 2);
    up.gw.stop().await;
}

/// A completed payment to another shortcode, and a receipt Safaricom does not know, are shown
/// as Safaricom said and never booked.
async fn other_short_codes_and_unknown_receipts_are_shown_never_booked(backend: Backend) {
    let gw = spawn(backend).await;
    gw.c2b_registered().await;
    let elsewhere = gw
        .sim()
        .pay_c2b(CustomerPayment::paybill("600111", "ELSE", 75))
        .await
        .unwrap();
    assert!(elsewhere.is_completed());
    let (status, body) = gw.check_receipt(&elsewhere.trans_id).await;
    assert_eq!(status, 202, "{body}");
    let answered = gw.receipt_final(&elsewhere.trans_id).await;
    assert_eq!(
        (
            answered["finding"].as_str(),
            answered["outcome"].as_str(),
            answered["short_code"].as_str()
        ),
        (Some("completed"), Some("other_short_code"), Some("600111")),
        "{answered}"
    );
    assert_eq!(answered["amount"], 75.0);
    assert!(answered["payment"].is_null(), "{answered}");
    assert!(
        answered["note"]
            .as_str()
            .is_some_and(|n| n.contains("600111"))
    );

    let (status, body) = gw.check_receipt("SZZ0000000").await;
    assert_eq!(status, 202, "{body}");
    let unknown = gw.receipt_final("SZZ0000000").await;
    assert_eq!(
        (
            unknown["status"].as_str(),
            unknown["finding"].as_str(),
            unknown["result_code"].as_str()
        ),
        (Some("answered"), Some("not_found"), Some("2032")),
        "{unknown}"
    );
    assert!(unknown["payment"].is_null());

    assert!(gw.list_payments("channel=c2b").await.is_empty());
    assert!(
        gw.storage()
            .find_payment_by_receipt(&elsewhere.trans_id)
            .await
            .unwrap()
            .is_none()
    );
    gw.stop().await;
}

/// While a check of a code waits for Safaricom, asking again returns that check and sends
/// nothing; with no answer in time (the real two minutes, on the gateway's clock, which the test
/// moves) it fails, and a queue-timeout notice fails the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_check_in_flight_per_code_and_no_answer_fails_it() {
    let time = std::sync::Arc::new(ManualClock::new(chrono::Utc::now()));
    let gw = spawn_with(Options::new(Backend::Sqlite).clock(Clock::manual(time.clone()))).await;
    gw.sim().update_faults(|f| {
        f.flows.insert(
            Flow::TransactionStatus,
            CallbackFaults {
                suppress: true,
                ..Default::default()
            },
        );
    });
    let code = "SGA1XYZ123";
    let (status, first) = gw.check_receipt(code).await;
    assert_eq!(
        (status, first["status"].as_str()),
        (202, Some("pending")),
        "{first}"
    );
    let (status, second) = gw.check_receipt(code).await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(
        second["id"], first["id"],
        "the check in flight, not a new one"
    );
    let (status, shown) = gw.receipt(code).await;
    assert_eq!((status, &shown["id"]), (200, &first["id"]));
    assert_eq!(gw.status_requests(), 1, "sent once");
    time.advance(chrono::Duration::seconds(119));
    let (_, waiting) = gw.check_receipt(code).await;
    assert_eq!(
        (&waiting["id"], waiting["status"].as_str()),
        (&first["id"], Some("pending")),
        "still within the result wait: {waiting}"
    );
    time.advance(chrono::Duration::seconds(2));

    let failed = gw.receipt_final(code).await;
    assert_eq!(failed["id"], first["id"]);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["finding"].is_null());

    gw.sim().update_faults(|f| {
        f.flows.insert(
            Flow::TransactionStatus,
            CallbackFaults {
                queue_timeout: true,
                ..Default::default()
            },
        );
    });
    let (status, third) = gw.check_receipt(code).await;
    assert_eq!(status, 202, "{third}");
    assert_ne!(third["id"], first["id"]);
    let timed_out = gw.receipt_final(code).await;
    assert_eq!(timed_out["id"], third["id"]);
    assert_eq!(timed_out["status"], "failed", "{timed_out}");
    assert!(
        timed_out["result_desc"]
            .as_str()
            .is_some_and(|d| d.contains("queue")),
        "{timed_out}"
    );
    assert_eq!(gw.status_requests(), 2);
    gw.stop().await;
}

/// A check whose instance stopped before it stored its Transaction Status request held its
/// code for ever: every later check of the code was given that one, and nothing answered it.
/// After two minutes without a request it ends (`failed`, "not asked") and a new check asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_abandoned_before_it_asked_is_ended_and_asked_anew() {
    let time = std::sync::Arc::new(ManualClock::new(chrono::Utc::now()));
    let clock = Clock::manual(time.clone());
    let gw = spawn_with(Options::new(Backend::Sqlite).clock(clock.clone())).await;
    let code = "SGA1XYZ124";
    let storage = gw.storage();
    let abandoned = storage
        .create_receipt_check(mpesa_storage::NewReceiptCheck {
            id: "rchk_abandoned".into(),
            code: code.into(),
            requested_by: "api:gone".into(),
            source: "api".into(),
            telegram_chat: None,
            created_at: clock.now_ms(),
        })
        .await
        .unwrap();
    // Within the grace, it may be its instance's still: given as the check in flight.
    let (status, body) = gw.check_receipt(code).await;
    assert_eq!((status, &body["id"]), (202, &Value::from("rchk_abandoned")));
    assert_eq!(gw.status_requests(), 0);
    time.advance(chrono::Duration::seconds(121));
    let (status, body) = gw.check_receipt(code).await;
    assert_eq!(status, 202, "{body}");
    assert_ne!(body["id"], Value::from("rchk_abandoned"), "a new check");
    assert_eq!(gw.status_requests(), 1, "and it asked");
    let ended = storage
        .get_receipt_check(&abandoned.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.status.as_str(), "failed");
    assert!(
        ended
            .result_desc
            .as_deref()
            .is_some_and(|d| d.contains("not asked")),
        "{ended:?}"
    );
    gw.stop().await;
}

/// Without an initiator a check is refused with 409 naming the variables; a code that is not
/// 10 upper-case letters or digits is 422; a code never checked is 404; no key is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_needs_an_initiator_and_a_plausible_code() {
    // A Daraja of its own (not `serve --sandbox`, which brings the simulator's initiator) and
    // no MPESA_INITIATOR_NAME/PASSWORD.
    let sim = daraja_sim::Simulator::new(
        daraja_sim::SimConfig::for_tests()
            .accept_credentials("sandbox-consumer-key", "sandbox-consumer-secret"),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_url = format!("http://{}/", listener.local_addr().unwrap());
    let serving = sim.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    let gw = spawn_with(Options {
        daraja_url: Some(sim_url),
        ..Options::new(Backend::Sqlite)
    })
    .await;
    let status_requests = || sim.requests().iter().filter(|r| r.path == STATUS).count();
    let (status, body) = gw.check_receipt("SGA1XYZ123").await;
    assert_eq!(status, 409, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("MPESA_INITIATOR_NAME") && message.contains("MPESA_INITIATOR_PASSWORD"),
        "{body}"
    );
    for bad in [
        "sga1xyz123",
        "SGA1XYZ12",
        "SGA1XYZ1234",
        "SGA1-XYZ12",
        "SGA1XYZ12%C3%A9",
        "%20SGA1XYZ12",
    ] {
        let (status, body) = gw.check_receipt(bad).await;
        assert_eq!(status, 422, "POST {bad}: {body}");
        assert_eq!(body["error"]["field"], "code", "{body}");
        let (status, body) = gw.receipt(bad).await;
        assert_eq!(status, 422, "GET {bad}: {body}");
    }
    let (status, body) = gw.receipt("SGA1XYZ123").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = gw
        .receipt_call(
            reqwest::Method::POST,
            "/api/v1/receipts/SGA1XYZ123/check",
            false,
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(status_requests(), 0, "nothing was asked");
    assert!(
        gw.storage()
            .receipt_checks_for("SGA1XYZ123", 10)
            .await
            .unwrap()
            .is_empty()
    );
    gw.stop().await;
}

/// The payments page's "Check a receipt" form asks Safaricom and shows the check's page, which
/// shows the payment the check booked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_checks_a_receipt_and_shows_its_payment() {
    let gw = spawn(Backend::Sqlite).await;
    add_admin(&gw).await;
    gw.c2b_registered().await;
    let code = gw.lost_c2b_payment("DASH1", 45).await;
    let admin = AdminClient::signed_in(&gw).await;
    let page = admin.get("/admin/payments").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(r#"action="/admin/receipts/check""#),
        "the payments page has the form"
    );
    let refused = admin
        .post("/admin/receipts/check", &[("code", code.as_str())])
        .await;
    assert_eq!(refused.status, 403, "no CSRF token");
    let typo = admin
        .post(
            "/admin/receipts/check",
            &[("csrf", page.csrf().as_str()), ("code", "NOT-A-CODE")],
        )
        .await;
    assert_eq!(typo.status, 400, "{}", typo.body);
    assert_eq!(gw.status_requests(), 0);

    // Typed in lower case, with spaces, as people do.
    let typed = format!(" {} ", code.to_lowercase());
    let asked = admin
        .post(
            "/admin/receipts/check",
            &[("csrf", page.csrf().as_str()), ("code", typed.as_str())],
        )
        .await;
    assert_eq!(asked.status, 303, "{}", asked.body);
    assert_eq!(
        asked.location(),
        format!("/admin/receipts/{code}?notice=receipt_asked")
    );
    let p = gw.payment_by_receipt(&code).await;
    assert_eq!(p.recovered_by.as_deref(), Some("status"));
    gw.receipt_final(&code).await;
    let shown = admin.get(asked.location()).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body.contains("Safaricom was asked"), "the notice");
    assert!(
        shown
            .body
            .contains("recorded now (recovered by Transaction Status)"),
        "{}",
        shown.body
    );
    assert!(
        shown.body.contains(&format!("/admin/payments/{}", p.id)),
        "the check's page links its payment"
    );
    assert_eq!(gw.status_requests(), 1);
    gw.stop().await;
}

/// `/paid CODE` from a customer whose receipt did not come: "asking Safaricom" at once, then
/// what Safaricom found, through the outbox; the code books one payment, and sending it again
/// says it is recorded without asking again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_asks_safaricom_and_tells_the_customer() {
    let tg = FakeTelegram::start().await;
    let gw = spawn_with(bot_options(Backend::Sqlite, &tg)).await;
    gw.c2b_registered().await;
    let code = gw.lost_c2b_payment("BOT1", 40).await;
    let user = User::new(4242, "Akinyi");

    tg.text(user.id, &user, "/paid");
    let texts = tg.wait_for_messages(user.id, 1).await;
    assert!(texts[0].contains("/paid SGA1XYZ123"), "{texts:?}");
    tg.text(user.id, &user, "/paid <b>nope</b>");
    let texts = tg.wait_for_messages(user.id, 2).await;
    assert!(texts[1].contains("is not an M-Pesa code"), "{texts:?}");
    assert!(texts[1].contains("&lt;b&gt;"), "{texts:?}");
    assert_eq!(gw.status_requests(), 0);

    tg.text(user.id, &user, &format!("/paid {}", code.to_lowercase()));
    // "Asking" is the bot's answer; what Safaricom found comes through the outbox, in either
    // order when Safaricom is quick.
    let texts = tg.wait_for_messages(user.id, 4).await;
    let fresh = &texts[2..];
    assert!(
        fresh.iter().any(|t| t.contains("Asking Safaricom")),
        "{texts:?}"
    );
    assert!(
        fresh
            .iter()
            .any(|t| t.contains("Safaricom confirms your payment of KSh 40")
                && t.contains(&format!("(receipt <code>{code}</code>)"))),
        "{texts:?}"
    );
    let p = gw.payment_by_receipt(&code).await;
    assert_eq!(p.recovered_by.as_deref(), Some("status"));

    tg.text(user.id, &user, &format!("/paid {code}"));
    let texts = tg.wait_for_messages(user.id, 5).await;
    assert!(texts[4].contains("already recorded"), "{texts:?}");
    assert_eq!(
        gw.status_requests(),
        1,
        "a recorded code is not asked about again"
    );
    assert_eq!(gw.list_payments("channel=c2b").await.len(), 1);
    eventually("the admin is alerted", WAIT, || {
        let n = tg
            .texts_to(crate::telegram_bot::ADMIN_CHAT)
            .iter()
            .filter(|t| t.contains(&code))
            .count();
        async move { n == 1 }
    })
    .await;
    wait_outbox_idle(gw.storage().as_ref()).await;
    assert_eq!(tg.texts_to(user.id).len(), 5, "{:?}", tg.texts_to(user.id));
    gw.stop().await;
}
