//! Fixtures for the contract suite, and a `decide` that behaves like the gateway's: it asks the
//! domain what an STK callback does to the payment it names (`mpesa_domain::decision`), and
//! translates the answer as the gateway does, with stand-in notifications.

#![allow(dead_code)]

use mpesa_domain::decision;
use mpesa_domain::initiator as rules;
use mpesa_domain::state_machine::{CallbackReport, SuccessDetails};
use mpesa_domain::{
    Amount, Cents, Msisdn, PaymentStatus, RequestKind, ResultCode, ReviewChange, Transition,
    TransitionKind,
};
use mpesa_harness::database::TestDatabase;
use mpesa_storage::*;

/// 2026-01-01 00:00:00 UTC.
pub const T0: Millis = 1_767_225_600_000;
pub const HOUR: Millis = 3_600_000;
pub const DAY: Millis = 24 * HOUR;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as Millis
}

/// Ids that sort like the gateway's time-ordered ones: a higher number is newer.
pub fn pay_id(n: u32) -> String {
    format!("pay_{n:08}")
}

pub fn phone(text: &str) -> Msisdn {
    Msisdn::parse(text).unwrap()
}

pub fn new_payment(id: &str, created_at: Millis) -> NewPayment {
    NewPayment {
        id: id.into(),
        phone: phone("0708374149"),
        amount: Amount::from_stored(100),
        reference: "INV1".into(),
        description: "Dance class".into(),
        customer_email: Some("wanjiru@example.com".into()),
        telegram_chat_id: Some(42),
        metadata: Some(r#"{"order":1}"#.into()),
        api_key_id: Some("key_1".into()),
        source: PaymentSource::Api,
        created_at,
        next_check_at: created_at + 60_000,
        payment_link_id: None,
        customer_language: None,
        rules: Default::default(),
    }
}

pub async fn create(s: &dyn Storage, p: NewPayment) -> Payment {
    match s.create_payment(p, None).await.unwrap() {
        CreatePaymentResult::Created(p) => p,
        other => panic!("expected a new payment, got {other:?}"),
    }
}

pub async fn list_all(s: &dyn Storage) -> Vec<Payment> {
    s.list_payments(
        &PaymentFilter::default(),
        &PageRequest {
            limit: 500,
            cursor: None,
        },
    )
    .await
    .unwrap()
    .items
}

/// Applies `update` through `update_payment`.
pub async fn apply(
    s: &dyn Storage,
    id: &str,
    now: Millis,
    update: PaymentUpdate,
) -> (Payment, PaymentUpdate) {
    s.update_payment(id, now, &move |_| Some(update.clone()))
        .await
        .unwrap()
        .expect("an update was written")
}

/// Applies a transition with its timeline entry.
pub async fn set(s: &dyn Storage, id: &str, now: Millis, t: Transition) -> Payment {
    let mut update = PaymentUpdate::new(Some(t));
    update.event = Some("{}".into());
    apply(s, id, now, update).await.0
}

pub fn transition(kind: TransitionKind, status: PaymentStatus) -> Transition {
    Transition {
        kind,
        status,
        checkout_request_id: None,
        merchant_request_id: None,
        result_code: None,
        result_desc: None,
        mpesa_receipt_number: None,
        transaction_date_ms: None,
        review: ReviewChange::Keep,
        notify: None,
        note: None,
    }
}

/// Daraja accepted the push: pending, with its ids.
pub fn accepted(checkout_request_id: &str) -> Transition {
    let mut t = transition(TransitionKind::PushAccepted, PaymentStatus::Pending);
    t.checkout_request_id = Some(checkout_request_id.into());
    t.merchant_request_id = Some(format!("m-{checkout_request_id}"));
    t
}

pub fn completed(receipt: &str) -> Transition {
    let mut t = transition(TransitionKind::Callback, PaymentStatus::Completed);
    t.result_code = Some(ResultCode::from("0"));
    t.mpesa_receipt_number = Some(receipt.into());
    t
}

pub fn claim(api_key_id: &str, key: &str, request_hash: &str) -> IdempotencyClaim {
    IdempotencyClaim {
        api_key_id: api_key_id.into(),
        key: key.into(),
        request_hash: request_hash.into(),
        created_at: T0,
    }
}

pub fn outbox_event(
    id: &str,
    payment_id: Option<&str>,
    dedupe_key: &str,
    created_at: Millis,
) -> NewOutboxEvent {
    NewOutboxEvent {
        id: id.into(),
        payment_id: payment_id.map(str::to_owned),
        channel: Channel::Webhook,
        event_type: "test".into(),
        destination: "https://shop.example/hooks/mpesa".into(),
        payload: r#"{"type":"payment.completed"}"#.into(),
        dedupe_key: dedupe_key.into(),
        created_at,
    }
}

pub fn attempt(started_at: Millis, result: DeliveryResult) -> DeliveryAttempt {
    DeliveryAttempt {
        started_at,
        duration_ms: 10,
        result,
        response_code: None,
        error: None,
    }
}

// ---- callbacks ----------------------------------------------------------------------------------

/// A success for KES 100 from the payments' phone.
pub fn success_report(receipt: &str) -> CallbackReport {
    CallbackReport {
        result_code: ResultCode::from("0"),
        result_desc: "The service request is processed successfully.".into(),
        success: Some(SuccessDetails {
            receipt: receipt.into(),
            amount: Some(Cents(10_000)),
            phone: Some("254708374149".into()),
            transaction_date_ms: Some(T0 + 40),
        }),
    }
}

/// An STK callback as the gateway receives it (here the body is the report as JSON).
pub fn stk_callback(
    id: &str,
    checkout_request_id: &str,
    report: &CallbackReport,
) -> IncomingCallback {
    IncomingCallback {
        id: id.into(),
        kind: CallbackKind::Stk,
        received_at: T0 + 50,
        remote_addr: Some("196.201.214.200".into()),
        headers: r#"{"content-type":"application/json"}"#.into(),
        body: serde_json::to_vec(report).unwrap(),
        checkout_request_id: Some(checkout_request_id.into()),
        receipt: None,
        parse_error: None,
    }
}

pub fn unparseable_callback(id: &str) -> IncomingCallback {
    IncomingCallback {
        id: id.into(),
        kind: CallbackKind::Stk,
        received_at: T0 + 50,
        remote_addr: Some("196.201.214.200".into()),
        headers: r#"{"content-type":"application/json"}"#.into(),
        body: b"\xff\xfe not json {".to_vec(),
        checkout_request_id: None,
        receipt: None,
        parse_error: Some("expected value at line 1 column 1".into()),
    }
}

/// What the gateway decides about a callback: the domain judges it against the locked payment
/// (`decision::on_stk_callback`); a final state first reached notifies (one webhook, deduped
/// per payment and event); a success for no known payment raises an alert.
pub fn decide(item: &IncomingCallback, payment: Option<&Payment>) -> CallbackDecision {
    let report = match item.parse_error {
        Some(_) => None,
        None => serde_json::from_slice::<CallbackReport>(&item.body).ok(),
    };
    let decided =
        decision::on_stk_callback(report.as_ref(), payment.map(Payment::snapshot).as_ref());
    let outcome = CallbackOutcome::from(decided.class);
    let mut result = CallbackDecision::only(outcome);
    if outcome == CallbackOutcome::Unmatched
        && report.as_ref().is_some_and(|r| r.result_code.is_success())
    {
        result.outbox.push(NewOutboxEvent {
            id: format!("evt_alert_{}", item.id),
            payment_id: None,
            channel: Channel::Telegram,
            event_type: "callback.unmatched".into(),
            destination: "-100200300".into(),
            payload: "{}".into(),
            dedupe_key: format!("unmatched:{}", item.id),
            created_at: item.received_at,
        });
    }
    let (Some(change), Some(payment)) = (decided.change, payment) else {
        return result;
    };
    let notify = change.transition.notify;
    let mut update = PaymentUpdate::from_change(change);
    update.event = Some("{}".into());
    if let Some(final_outcome) = notify {
        update.outbox.push(NewOutboxEvent {
            id: format!("evt_{}", item.id),
            payment_id: Some(payment.id.clone()),
            channel: Channel::Webhook,
            event_type: final_outcome.event_type().into(),
            destination: "https://shop.example/hooks/mpesa".into(),
            payload: "{}".into(),
            dedupe_key: format!("{}:{}:webhook", payment.id, final_outcome.event_type()),
            created_at: item.received_at,
        });
    }
    result.update = Some(update);
    result
}

/// Runs SQL on the test database behind storage's back (to plant rows storage would refuse).
pub async fn execute_directly(db: &TestDatabase, sql: &'static str) {
    db.execute(sql).await.unwrap();
}

// ---- money out ----------------------------------------------------------------------------------

pub fn new_request(id: &str, kind: RequestKind, ocid: Option<&str>) -> NewInitiatorRequest {
    NewInitiatorRequest {
        id: id.into(),
        kind,
        purpose: "payout".into(),
        owner_id: Some("po_1".into()),
        originator_conversation_id: ocid.map(str::to_owned),
        params: r#"{"api":"b2c"}"#.into(),
        created_at: T0,
    }
}

pub async fn accept(s: &dyn Storage, id: &str, ocid: &str, cid: &str) -> InitiatorRequest {
    s.update_initiator_request(id, T0 + 5, &|r| {
        let t = rules::on_accepted(&r.snapshot(), ocid, cid)
            .transition()?
            .clone();
        Some(InitiatorUpdate {
            transition: Some(t),
            next_check_at: Some(Some(T0 + 60_000)),
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .unwrap()
    .0
}

pub fn new_payout(id: &str, amount: i64, at: Millis) -> NewPayout {
    NewPayout {
        id: id.into(),
        status: PayoutStatus::Pending,
        phone: "254708374149".into(),
        amount,
        command: "BusinessPayment".into(),
        remarks: "Rider payout".into(),
        occasion: None,
        requested_by: "api:shop".into(),
        source: "api".into(),
        api_key_id: Some("key_1".into()),
        eat_day: 20_454,
        created_at: at,
    }
}

/// A pending payout whose B2C request Daraja accepted and nobody answered for: held for a person.
pub async fn held_payout(s: &dyn Storage, id: &str) -> InitiatorRequest {
    let payout = format!("po_{id}");
    let request = format!("ireq_{id}");
    assert!(matches!(
        s.create_payout(new_payout(&payout, 100, T0), None, None)
            .await
            .unwrap(),
        CreatePayoutResult::Created(_)
    ));
    let mut new = new_request(&request, RequestKind::B2c, Some(&request));
    new.owner_id = Some(payout.clone());
    s.create_initiator_request(new, Some(T0 + 60_000))
        .await
        .unwrap();
    accept(s, &request, &request, &format!("AG_{id}")).await;
    s.update_payout(&payout, T0 + 5, &|_| {
        Some(PayoutUpdate {
            request_id: Some(request.clone()),
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .unwrap();
    let policy = rules::ResolvePolicy {
        result_wait_ms: 60_000,
        keep_asking_ms: DAY,
    };
    let (held, _) = s
        .update_initiator_request(&request, T0 + DAY, &|r| match rules::on_due(
            &r.snapshot(),
            T0 + DAY,
            &policy,
        ) {
            rules::DueAction::Apply(t) => Some(InitiatorUpdate {
                transition: Some(t),
                next_check_at: Some(None),
                ..Default::default()
            }),
            _ => None,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(held.needs_review);
    held
}

/// Settles a held request by hand as completed with `receipt`, with its payout, as the gateway
/// does.
pub async fn settle_completed(
    s: &dyn Storage,
    request_id: &str,
    receipt: &str,
) -> Result<Option<InitiatorRequest>> {
    let result = serde_json::json!({ rules::SETTLED_BY_HAND: {"by": "admin:amina"} }).to_string();
    s.settle_initiator_request(
        request_id,
        T0 + 2 * DAY,
        &|r| {
            let t =
                rules::on_settled_by_hand(&r.snapshot(), true, Some(receipt), "seen in the portal")
                    .transition()?
                    .clone();
            Some(InitiatorUpdate {
                event: Some(NewMoneyOutEvent {
                    kind: t.kind.as_str().into(),
                    detail: "{}".into(),
                }),
                result: Some(result.clone()),
                next_check_at: Some(None),
                transition: Some(t),
                ..Default::default()
            })
        },
        SettleOwner::Payout(&|r, p| {
            (p.status == PayoutStatus::Pending).then(|| PayoutUpdate {
                status: Some(PayoutStatus::Completed),
                receipt: r.receipt.clone(),
                ..Default::default()
            })
        }),
    )
    .await
}
