//! Payments whose callback never comes are resolved by asking Daraja (guarantee 4).

use std::time::Duration;

use daraja::endpoint::Api;
use daraja_sim::config::PendingQueryAnswer;
use daraja_sim::faults::{CallbackFaults, FailureAnswer, Faults};
use mpesa_gateway::payments::AdminDecision;
use mpesa_storage::{Backend, CallbackOutcome, OutboxEvent, Payment};
use serde_json::json;

use crate::on_every_backend;
use crate::support::*;
use mpesa_gateway::clock::{Clock, ManualClock};
use mpesa_gateway::payments::reconciler;

on_every_backend!(
    a_lost_callback_is_resolved_by_stk_query,
    a_callback_before_the_push_answer_is_matched_later
);

/// The CheckoutRequestID of a payment, once the simulator has settled it.
async fn settled_by_the_simulator(gw: &TestGateway, id: &str) -> String {
    let checkout = gw
        .storage()
        .get_payment(id)
        .await
        .unwrap()
        .unwrap()
        .checkout_request_id
        .unwrap();
    gw.sim()
        .wait_for_stk_outcome(&checkout, Duration::from_secs(5))
        .await
        .expect("the simulator settles it");
    checkout
}

fn queries_made(gw: &TestGateway) -> usize {
    gw.sim()
        .requests()
        .iter()
        .filter(|r| r.path.contains("stkpushquery"))
        .count()
}

fn pushes_made(gw: &TestGateway) -> usize {
    gw.sim()
        .requests()
        .iter()
        .filter(|r| r.path.contains("stkpush/v1/processrequest"))
        .count()
}

async fn a_lost_callback_is_resolved_by_stk_query(backend: Backend) {
    let gw = spawn_with(Options::new(backend).env("RECONCILE_AFTER_SECS", "1")).await;
    let id = gw.pay(NO_CALLBACK, 40).await;
    let p = gw
        .wait_for_status(&id, "completed", Duration::from_secs(15))
        .await;
    assert_eq!(p.result_code.as_deref(), Some("0"));
    assert_eq!(p.mpesa_receipt_number, None, "STK Query carries no receipt");
    assert!(p.query_attempts >= 1);
    assert!(queries_made(&gw) >= 1);
    assert!(
        gw.sim().callbacks().iter().all(|c| !c.delivered()),
        "the simulator sent nothing"
    );
    let kinds: Vec<String> = gw
        .storage()
        .payment_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.last().map(String::as_str), Some("query"), "{kinds:?}");
    gw.stop().await;
}

async fn a_callback_before_the_push_answer_is_matched_later(backend: Backend) {
    let mut options = Options::new(backend)
        .env("RECONCILE_AFTER_SECS", "3600")
        .env("MPESA_TIMEOUT_SECS", "20");
    // The callback comes first and Daraja's answer to the push 8 s later, so the orphan pass
    // (every ~5 s) sees the parked callback while the push is still in flight: it must not take
    // that payment for one whose push outcome is unknown and ask Daraja about it.
    options.sim.faults = Faults::none().with_global(CallbackFaults {
        before_sync_answer: true,
        slow_answer_ms: 8000,
        ..CallbackFaults::default()
    });
    let gw = spawn_with(options).await;
    let id = gw.pay(SUCCESS, 55).await;
    // The callback was parked as unmatched; the reconciler's rematch applies it.
    let p = gw
        .wait_for_status(&id, "completed", Duration::from_secs(20))
        .await;
    assert!(p.mpesa_receipt_number.is_some());
    let stored = gw.storage().callbacks_for_payment(&id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].outcome, CallbackOutcome::Applied);
    assert_eq!(queries_made(&gw), 0, "matched without asking Daraja");
    gw.stop().await;
}

/// `4999` and "being processed" mean "ask again", never "failed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn still_processing_is_asked_again_until_final() {
    let mut options = Options::new(Backend::Sqlite).env("RECONCILE_AFTER_SECS", "1");
    options.sim.faults = Faults::none().with_global(CallbackFaults {
        suppress: true,
        ..CallbackFaults::default()
    });
    options.sim.pending_query_answer = PendingQueryAnswer::ResultCode4999;
    options.sim.prompt_timeout = Duration::from_millis(2500);
    let gw = spawn_with(options).await;
    let id = gw.pay(NO_ANSWER, 10).await;
    let p = gw
        .wait_for_status(&id, "timed_out", Duration::from_secs(20))
        .await;
    assert_eq!(
        p.result_code.as_deref(),
        Some("1037"),
        "settled by Daraja's answer, not by expiry"
    );
    let events = gw.storage().payment_events(&id).await.unwrap();
    let answers: Vec<String> = events
        .iter()
        .filter(|e| e.kind == "query")
        .map(|e| e.detail.clone())
        .collect();
    assert!(answers.len() >= 2, "{answers:?}");
    assert!(
        answers[0].contains("4999"),
        "the first answer was 4999: {answers:?}"
    );
    assert!(answers.last().unwrap().contains("1037"), "{answers:?}");
    gw.stop().await;
}

/// "Still under processing" at `PAYMENT_EXPIRES_AFTER_SECS` is no outcome to give up on (a
/// query has turned from `4999` into `1032` many minutes on, and a paid order given up on such an
/// answer was booked as failed): the payment stays `pending` and is asked about again, and ends on
/// M-Pesa's own answer, here the prompt running out (`1037`). It was given up as `timed_out` at
/// the expiry. Time is moved, not waited for: the payment service and the reconciler read a
/// `ManualClock`, so the real settings (a minute before asking, five minutes to expiry) take no
/// real minutes; the simulator's prompt runs out after three real seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn still_processing_at_expiry_is_asked_about_again_not_given_up() {
    let start = chrono::Utc::now();
    let time = std::sync::Arc::new(ManualClock::new(start));
    let mut options = Options::new(Backend::Sqlite)
        .env("RECONCILE_AFTER_SECS", "60")
        .env("PAYMENT_EXPIRES_AFTER_SECS", "300")
        .clock(Clock::manual(time.clone()));
    options.sim.faults = Faults::none().with_global(CallbackFaults {
        suppress: true,
        ..CallbackFaults::default()
    });
    options.sim.prompt_timeout = Duration::from_secs(3);
    let gw = spawn_with(options).await;
    let id = gw.pay(NO_ANSWER, 10).await;
    let created = gw.get_payment(&id).await;
    assert_eq!(created["status"], "pending");
    // Not due yet on the gateway's clock: a pass asks nothing (the reconciler's own passes
    // run every half second of real time, and find nothing either).
    assert_eq!(reconciler::pass(&gw.state.payments).await.unwrap(), 0);
    time.advance(chrono::Duration::seconds(61));
    let asked = gw
        .wait_for_payment(
            &id,
            "asked once",
            Duration::from_secs(15),
            |p| p.query_attempts >= 1,
            |p| p.status.is_final(),
        )
        .await;
    assert_eq!(
        asked.status.as_str(),
        "pending",
        "still processing is not final"
    );
    // Past the expiry: asked again, and still open, not held.
    time.advance(chrono::Duration::seconds(300));
    let mut seen = gw
        .wait_for_payment(
            &id,
            "asked again past the expiry",
            Duration::from_secs(15),
            |p| p.query_attempts > asked.query_attempts,
            |p| p.status.is_final() || p.needs_review,
        )
        .await;
    assert_eq!(seen.status.as_str(), "pending");
    // Asked on, past the expiry every quarter of an hour at most, until M-Pesa has its outcome.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let p = loop {
        time.advance(chrono::Duration::minutes(16));
        let attempts = seen.query_attempts;
        seen = gw
            .wait_for_payment(
                &id,
                "asked again",
                Duration::from_secs(15),
                |p| p.query_attempts > attempts || p.status.is_final(),
                |p| p.needs_review,
            )
            .await;
        if seen.status.is_final() {
            break seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {} after {} questions",
            seen.status,
            seen.query_attempts
        );
    };
    assert_eq!(p.status.as_str(), "timed_out");
    assert_eq!(p.result_code.as_deref(), Some("1037"));
    // The stored times are the gateway's clock's: created now, ended past the expiry.
    assert!((p.created_at - start.timestamp_millis()).abs() < 1_000);
    assert!(p.finalized_at.unwrap() - p.created_at >= 300_000);
    let kinds: Vec<String> = gw
        .storage()
        .payment_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        !kinds.iter().any(|k| k == "expired"),
        "never given up at the expiry: {kinds:?}"
    );
    gw.stop().await;
}

/// A query never downgrades a payment that a genuine callback completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_never_downgrades_a_completed_payment() {
    let mut options = Options::new(Backend::Sqlite).env("RECONCILE_AFTER_SECS", "3600");
    options.sim.faults = Faults::none().with_global(CallbackFaults {
        suppress: true,
        ..CallbackFaults::default()
    });
    let gw = spawn_with(options).await;
    // The simulator cancels this one (1032) but sends nothing; a success callback arrives on
    // the secret path (as a genuine, if surprising, Safaricom callback would).
    let id = gw.pay(CANCELLED, 70).await;
    let checkout = settled_by_the_simulator(&gw, &id).await;
    let (status, _) = gw
        .post_stk_callback(&stk_success(&checkout, "70.00", CANCELLED, "SGE5XYZ111"))
        .await;
    assert_eq!(status, 200);
    // Daraja's query now says 1032: the completed payment stays completed.
    let r = gw
        .client
        .post(gw.url(&format!("/api/v1/payments/{id}/refresh")))
        .bearer_auth(&gw.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let view: serde_json::Value = r.json().await.unwrap();
    assert_eq!(view["status"], "completed");
    assert_eq!(view["mpesa_receipt_number"], "SGE5XYZ111");
    let events = gw.storage().payment_events(&id).await.unwrap();
    let query = events
        .iter()
        .find(|e| e.kind == "query")
        .expect("the query is on the timeline");
    assert!(query.detail.contains("1032"), "{}", query.detail);
    assert_eq!(queries_made(&gw), 1);
    gw.stop().await;
}

/// `POST /api/v1/payments/{id}/refresh` asks Daraja once, now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_asks_daraja_now() {
    let gw = spawn_with(Options::new(Backend::Sqlite).env("RECONCILE_AFTER_SECS", "3600")).await;
    let id = gw.pay(NO_CALLBACK, 15).await;
    settled_by_the_simulator(&gw, &id).await;
    assert_eq!(gw.get_payment(&id).await["status"], "pending");
    let r = gw
        .client
        .post(gw.url(&format!("/api/v1/payments/{id}/refresh")))
        .bearer_auth(&gw.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let view: serde_json::Value = r.json().await.unwrap();
    assert_eq!(view["status"], "completed");
    assert_eq!(queries_made(&gw), 1);
    let r = gw
        .client
        .post(gw.url("/api/v1/payments/pay_nope/refresh"))
        .bearer_auth(&gw.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    gw.stop().await;
}

fn event_kinds(events: &[mpesa_storage::PaymentEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// The merchant's webhooks planned for a payment, by event type.
async fn webhook_types(gw: &TestGateway, id: &str) -> Vec<String> {
    gw.storage()
        .outbox_for_payment(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e: &OutboxEvent| e.channel == mpesa_storage::Channel::Webhook)
        .map(|e| e.event_type)
        .collect()
}

/// Webhooks to a port nobody listens on: the outbox rows show what the merchant is told.
fn with_webhooks(options: Options) -> Options {
    options
        .env("WEBHOOK_URL", "http://127.0.0.1:9/hooks")
        .env("WEBHOOK_SECRET", "whsec_reconcile_test_0123456789")
        .env("WEBHOOK_ALLOW_PRIVATE", "true")
}

/// Issue 11, item 2: callbacks lost and every STK Query answered `500.003.02`: the payment
/// the simulator settled was booked `timed_out` at expiry and `payment.timed_out` sent. Now it
/// stays open while Daraja is asked again, and is held for a person once Daraja's records are
/// gone (`RECONCILE_KEEP_ASKING_SECS`); nobody is told "timed out". A person settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_queries_never_time_a_payment_out() {
    let mut options = with_webhooks(
        Options::new(Backend::Sqlite)
            .env("RECONCILE_AFTER_SECS", "1")
            .env("PAYMENT_EXPIRES_AFTER_SECS", "2")
            .env("RECONCILE_KEEP_ASKING_SECS", "6"),
    );
    options.sim.faults = Faults::none()
        .with_global(CallbackFaults {
            suppress: true,
            ..CallbackFaults::default()
        })
        .fail_next(Api::StkQuery, 100_000, FailureAnswer::SystemBusy);
    let gw = spawn_with(options).await;
    let id = gw.pay(SUCCESS, 10).await;
    let p = gw
        .wait_for_payment(
            &id,
            "held for a person",
            Duration::from_secs(30),
            |p| p.needs_review,
            |p: &Payment| p.status.is_final(),
        )
        .await;
    assert_eq!(p.status.as_str(), "pending", "never timed out");
    assert!(
        p.review_reason
            .as_deref()
            .is_some_and(|r| r.contains("answered no STK Query")),
        "{:?}",
        p.review_reason
    );
    assert_eq!(
        p.next_check_at, None,
        "nothing left to ask: a person decides"
    );
    let events = gw.storage().payment_events(&id).await.unwrap();
    let kinds = event_kinds(&events);
    let queries = kinds.iter().filter(|k| **k == "query").count();
    let asked_after_expiry = events
        .iter()
        .filter(|e| e.kind == "query" && e.at >= p.created_at + 2_000)
        .count();
    assert!(
        queries >= 3 && asked_after_expiry >= 2,
        "asked again past the expiry: {kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"expired"), "{kinds:?}");
    assert!(
        webhook_types(&gw, &id).await.is_empty(),
        "the merchant was told nothing"
    );

    // A person settles it (Daraja back, its records show the payment): told once.
    let settled = gw
        .state
        .payments
        .admin_decide(
            &id,
            AdminDecision::Settle,
            "on the statement",
            Some("SGA1XYZ123"),
            "amina",
        )
        .await
        .unwrap()
        .expect("held, so decided");
    assert_eq!(settled.status.as_str(), "completed");
    assert_eq!(webhook_types(&gw, &id).await, ["payment.completed"]);
    gw.stop().await;
}

/// Issue 11, item 3: a success callback for another amount holds the payment; the next
/// reconciler pass completed it from STK Query and sent `payment.completed`, and Reject left it
/// completed. Now the reconciler only adds Daraja's answer to the timeline (and stops asking
/// once it is final); Reject ends it unpaid and the merchant hears that once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_payment_is_settled_or_rejected_by_a_person_only() {
    let mut options = with_webhooks(Options::new(Backend::Sqlite).env("RECONCILE_AFTER_SECS", "1"));
    options.sim.faults = Faults::none().with_global(CallbackFaults {
        suppress: true,
        ..CallbackFaults::default()
    });
    let gw = spawn_with(options).await;
    let id = gw.pay(SUCCESS, 500).await;
    let checkout = settled_by_the_simulator(&gw, &id).await;
    let (status, _) = gw
        .post_stk_callback(&stk_success(&checkout, "5.00", SUCCESS, "SHK9HELD02"))
        .await;
    assert_eq!(status, 200);
    // The reconciler asks Daraja, which says "paid", and then stops asking.
    let p = gw
        .wait_for_payment(
            &id,
            "the reconciler's question answered and the schedule cleared",
            Duration::from_secs(30),
            |p| p.query_attempts >= 1 && p.next_check_at.is_none(),
            |p: &Payment| p.status.is_final(),
        )
        .await;
    assert_eq!((p.status.as_str(), p.needs_review), ("pending", true));
    let events = gw.storage().payment_events(&id).await.unwrap();
    let query = events
        .iter()
        .find(|e| e.kind == "query")
        .expect("Daraja's answer is on the timeline");
    assert!(
        query.detail.contains(r#""result_code":"0""#),
        "{}",
        query.detail
    );
    assert!(
        webhook_types(&gw, &id).await.is_empty(),
        "nobody told anything"
    );

    let rejected = gw
        .state
        .payments
        .admin_decide(&id, AdminDecision::Reject, "paid 5 of 500", None, "amina")
        .await
        .unwrap()
        .expect("held, so decided");
    assert_ne!(rejected.status.as_str(), "completed");
    assert!(rejected.status.is_final() && !rejected.needs_review);
    assert_eq!(webhook_types(&gw, &id).await, ["payment.failed"]);
    // Decided once: a second decision changes nothing and tells nobody again.
    assert!(
        gw.state
            .payments
            .admin_decide(&id, AdminDecision::Reject, "again", None, "amina")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(webhook_types(&gw, &id).await, ["payment.failed"]);
    gw.stop().await;
}

/// A push whose answer was lost (timeout after sending) is never sent again; its callback,
/// matched by phone and amount and confirmed by STK Query, is tied to it and held for a person
/// (a match by phone and amount is a guess: a person settles it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_push_answer_is_never_pushed_again_and_is_resolved() {
    let mut options = Options::new(Backend::Sqlite)
        .env("MPESA_TIMEOUT_SECS", "1")
        .env("RECONCILE_AFTER_SECS", "1");
    options.sim.faults = Faults::none().with_global(CallbackFaults {
        slow_answer_ms: 2500,
        ..CallbackFaults::default()
    });
    let gw = spawn_with(options).await;
    let (status, body) = gw
        .create_payment(json!({ "phone": SUCCESS, "amount": 99, "reference": "LOST1" }))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "initiated");
    assert_eq!(body["checkout_request_id"], serde_json::Value::Null);
    let id = body["id"].as_str().unwrap().to_owned();
    let p = gw
        .wait_for_payment(
            &id,
            "tied to its callback and held",
            Duration::from_secs(20),
            |p| p.needs_review,
            |p: &Payment| p.status.is_final(),
        )
        .await;
    assert_eq!(p.status.as_str(), "pending");
    assert!(
        p.review_reason.as_deref().unwrap().contains("lost"),
        "{:?}",
        p.review_reason
    );
    assert!(p.checkout_request_id.is_some(), "the callback's ids");
    // The rematch pass that follows the adoption ties the callback to the payment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while gw.storage().callbacks_for_payment(&id).await.unwrap().len() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the callback is kept with the payment"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pushes_made(&gw), 1, "no second push");
    let kinds: Vec<String> = gw
        .storage()
        .payment_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains(&"push_outcome_unknown".into())
            && kinds.contains(&"callback_adopted".into()),
        "{kinds:?}"
    );
    gw.stop().await;
}

/// A pass claims only as many payments as it asks about at once. A claim lapses after a minute
/// whether or not its query has started: a pass that claimed 50 and asked 8 at a time left the
/// last ones waiting behind slow queries until their claims lapsed, and another instance asked
/// about them too. Here STK Query answers after 2 s; 12 payments are due at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_claims_no_more_payments_than_it_asks_about_at_once() {
    let time = std::sync::Arc::new(ManualClock::new(chrono::Utc::now()));
    let clock = Clock::manual(time.clone());
    let mut options = Options::new(Backend::Sqlite)
        .env("RECONCILE_AFTER_SECS", "60")
        .env("PAYMENT_EXPIRES_AFTER_SECS", "3600")
        .clock(clock.clone());
    options.sim.faults = Faults::none().with_global(CallbackFaults {
        suppress: true,
        slow_query_ms: 2_000,
        ..CallbackFaults::default()
    });
    let gw = spawn_with(options).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(gw.pay(&format!("2547111000{i:02}"), 10).await);
    }
    let storage = gw.storage();
    // Read in one statement (one snapshot): read one by one, a claim committing in the middle
    // of the reading is seen in part.
    let claimed = || async {
        let now = clock.now_ms();
        let page = storage
            .list_payments(
                &Default::default(),
                &mpesa_storage::PageRequest {
                    limit: 100,
                    cursor: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.items.len(), ids.len());
        page.items
            .iter()
            .filter(|p| p.next_check_at.is_some_and(|at| at > now))
            .count()
    };
    // Due (`next_check_at` passed) after this; a claim moves it a minute on.
    time.advance(chrono::Duration::seconds(61));
    // The first claim takes its batch in one transaction; its queries then take 2 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        let n = claimed().await;
        if n > 0 {
            break n;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first, 8, "claimed at once: as many as are asked at once");
    // The rest follow at once, and each payment is asked about once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut asked = Vec::new();
        for id in &ids {
            asked.push(
                storage
                    .get_payment(id)
                    .await
                    .unwrap()
                    .unwrap()
                    .query_attempts,
            );
        }
        if asked.iter().all(|&n| n >= 1) {
            assert!(asked.iter().all(|&n| n == 1), "{asked:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all asked: {asked:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}

/// The next check is scheduled from the moment the query was answered, not from before it was
/// asked: with Daraja slow, the old moment put it in the past, and the payment was asked about
/// again at once, and again, with every answer. Here the query takes 2 s while ten minutes pass
/// on the gateway's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_does_not_put_the_next_check_in_the_past() {
    let time = std::sync::Arc::new(ManualClock::new(chrono::Utc::now()));
    let clock = Clock::manual(time.clone());
    let mut options = Options::new(Backend::Sqlite)
        .env("RECONCILE_AFTER_SECS", "60")
        .env("PAYMENT_EXPIRES_AFTER_SECS", "3600")
        .clock(clock.clone());
    options.sim.faults = Faults::none().with_global(CallbackFaults {
        suppress: true,
        slow_query_ms: 2_000,
        ..CallbackFaults::default()
    });
    options.sim.pending_query_answer = PendingQueryAnswer::ResultCode4999;
    options.sim.prompt_timeout = Duration::from_secs(3600);
    let gw = spawn_with(options).await;
    let id = gw.pay(NO_ANSWER, 10).await;
    let storage = gw.storage();
    let queries = || {
        gw.sim()
            .requests()
            .iter()
            .filter(|r| r.path.contains("stkpushquery"))
            .count()
    };
    time.advance(chrono::Duration::seconds(61));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queries() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never asked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The query is at Daraja (the simulator logs it as it comes): ten minutes pass meanwhile.
    time.advance(chrono::Duration::minutes(10));
    let asked = gw
        .wait_for_payment(
            &id,
            "asked once",
            Duration::from_secs(10),
            |p| p.query_attempts >= 1,
            |p| p.status.is_final(),
        )
        .await;
    // Due again only after the answer: a check put in the past is taken at the next pass
    // (half a second) and asked at once (two seconds).
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        let p = storage.get_payment(&id).await.unwrap().unwrap();
        assert_eq!(
            p.query_attempts, asked.query_attempts,
            "asked again at once: the next check was put before the answer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = storage.get_payment(&id).await.unwrap().unwrap();
    assert!(
        p.next_check_at.is_some_and(|at| at > clock.now_ms()),
        "{:?}",
        p.next_check_at
    );
    gw.stop().await;
}

/// A callback that came before its push's answer (parked as unmatched) and carries a receipt
/// another payment holds: once the answer names its payment, that payment is held for a person,
/// as when such a callback is received. It used to fail the re-match on the unique receipt on
/// every pass, for ever, leaving the payment pending and the callback unmatched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_matched_callback_with_another_payments_receipt_holds_its_payment() {
    let mut options = Options::new(Backend::Sqlite)
        .env("RECONCILE_AFTER_SECS", "3600")
        .env("MPESA_TIMEOUT_SECS", "20");
    options.sim.faults = Faults::none().with_global(CallbackFaults {
        suppress: true,
        slow_answer_ms: 4000,
        ..CallbackFaults::default()
    });
    let gw = spawn_with(options).await;
    let first = gw.pay(SUCCESS, 20).await;
    let first_checkout = gw
        .storage()
        .get_payment(&first)
        .await
        .unwrap()
        .unwrap()
        .checkout_request_id
        .unwrap();
    let (status, _) = gw
        .post_stk_callback(&stk_success(
            &first_checkout,
            "20.00",
            SUCCESS,
            "RCPTCLASH1",
        ))
        .await;
    assert_eq!(status, 200);
    // The second push is at Daraja, its answer held back (4 s, room for a loaded machine):
    // its callback comes first.
    let pushes = || {
        gw.sim()
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("stkpush/v1/processrequest"))
            .collect::<Vec<_>>()
    };
    let second = {
        let gw_url = gw.url("/api/v1/payments");
        let (client, key) = (gw.client.clone(), gw.api_key.clone());
        tokio::spawn(async move {
            let r = client
                .post(gw_url)
                .bearer_auth(key)
                .json(&json!({ "phone": "254711000106", "amount": 20, "reference": "CB2" }))
                .send()
                .await
                .unwrap();
            let body: serde_json::Value = r.json().await.unwrap();
            body["id"].as_str().unwrap().to_owned()
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let checkout = loop {
        if let Some(r) = pushes().get(1) {
            let answer: serde_json::Value = serde_json::from_str(r.answer.get()).unwrap();
            break answer["CheckoutRequestID"].as_str().unwrap().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "no second push");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (status, _) = gw
        .post_stk_callback(&stk_success(
            &checkout,
            "20.00",
            "254711000106",
            "RCPTCLASH1",
        ))
        .await;
    assert_eq!(status, 200);
    let second = second.await.unwrap();
    let parked = gw.storage().callbacks_for_payment(&second).await.unwrap();
    assert!(
        parked.is_empty(),
        "parked as unmatched, tied to no payment yet: {parked:?}"
    );
    let held = gw
        .wait_for_payment(
            &second,
            "held for review",
            Duration::from_secs(15),
            |p| p.needs_review,
            |p| p.status.is_final(),
        )
        .await;
    assert!(
        held.review_reason
            .as_deref()
            .is_some_and(|r| r.contains("belongs to another payment")),
        "{held:?}"
    );
    let tied = gw.storage().callbacks_for_payment(&second).await.unwrap();
    assert_eq!(
        tied.iter().map(|c| c.outcome).collect::<Vec<_>>(),
        vec![CallbackOutcome::HeldForReview]
    );
    let first_after = gw.storage().get_payment(&first).await.unwrap().unwrap();
    assert_eq!(
        first_after.mpesa_receipt_number.as_deref(),
        Some("RCPTCLASH1")
    );
    gw.stop().await;
}
