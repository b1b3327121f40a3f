//! The storage contract of money going out (initiator requests, refunds, payouts), run against
//! SQLite, PostgreSQL and MySQL/MariaDB, each on a fresh migrated database. The decisions are the
//! domain's state machine, as the gateway makes them.

mod support;

use std::sync::Arc;

use mpesa_domain::initiator::{self as rules, RequestOutcome, ResultReport};
use mpesa_domain::{RequestKind, RequestStatus, ResultCode};
use mpesa_harness::database::TestDatabase;
use mpesa_storage::*;
use support::*;

macro_rules! contract {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(mpesa_harness::database::TestDatabase::sqlite().await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(mpesa_harness::database::TestDatabase::postgres().await).await;
                }
            )+
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(mpesa_harness::database::TestDatabase::mysql().await).await;
                }
            )+
        }
    };
}

contract!(
    initiator_requests_are_matched_by_their_ids_and_results_apply_once,
    a_result_before_the_acknowledgement_is_applied_when_it_is_recorded,
    due_requests_are_claimed_by_one_instance_and_owners_told_until_recorded,
    a_payment_is_refunded_once_however_many_ask_at_once,
    the_daily_payout_limit_holds_across_instances,
    payouts_are_listed_filtered_and_updated,
    one_receipt_check_per_code_is_in_flight_across_instances,
    one_receipt_settles_one_held_request_however_many_record_it_at_once,
);

fn raw(id: &str, kind: CallbackKind) -> IncomingCallback {
    IncomingCallback {
        id: id.into(),
        kind,
        received_at: T0 + 10,
        remote_addr: None,
        headers: "{}".into(),
        body: br#"{"Result":{}}"#.to_vec(),
        checkout_request_id: None,
        receipt: None,
        parse_error: None,
    }
}

fn ids(ocid: &str, cid: &str) -> InitiatorCallbackIds {
    InitiatorCallbackIds {
        originator_conversation_id: Some(ocid.into()),
        conversation_id: Some(cid.into()),
    }
}

/// The gateway's decision for a result: the domain's `on_result`.
fn result_decision(
    report: ResultReport,
) -> impl Fn(Option<&InitiatorRequest>) -> (CallbackOutcome, Option<InitiatorUpdate>) + Send + Sync
{
    move |r| {
        let Some(r) = r else {
            return (CallbackOutcome::Unmatched, None);
        };
        match rules::on_result(&r.snapshot(), &report) {
            RequestOutcome::Changed(t) => (
                CallbackOutcome::Applied,
                Some(InitiatorUpdate {
                    event: Some(NewMoneyOutEvent {
                        kind: t.kind.as_str().into(),
                        detail: "{}".into(),
                    }),
                    result: Some(r#"{"receipt":"SG1"}"#.into()),
                    transition: Some(t),
                    ..Default::default()
                }),
            ),
            RequestOutcome::Duplicate => (CallbackOutcome::Duplicate, None),
            RequestOutcome::Unchanged(_) => (CallbackOutcome::Ignored, None),
        }
    }
}

fn success(receipt: &str) -> ResultReport {
    ResultReport {
        result_code: ResultCode::new("0"),
        result_desc: "The service request is processed successfully.".into(),
        receipt: Some(receipt.into()),
        result_type: Some("0".into()),
    }
}

async fn initiator_requests_are_matched_by_their_ids_and_results_apply_once(db: TestDatabase) {
    let s = db.storage();
    let r = s
        .create_initiator_request(
            new_request("ireq_1", RequestKind::B2c, Some("ireq_1")),
            Some(T0 + 60_000),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RequestStatus::Sending);
    assert_eq!(r.originator_conversation_id.as_deref(), Some("ireq_1"));
    // Our OriginatorConversationID is unique: Daraja's duplicate guard has its twin here.
    let again = s
        .create_initiator_request(
            new_request("ireq_2", RequestKind::B2c, Some("ireq_1")),
            None,
        )
        .await;
    assert!(
        matches!(&again, Err(StorageError::Conflict(rule)) if rule == "initiator_requests.originator_conversation_id"),
        "{again:?}"
    );
    let accepted = accept(&*s, "ireq_1", "ireq_1", "AG_1").await;
    assert_eq!(accepted.status, RequestStatus::Accepted);
    assert_eq!(accepted.conversation_id.as_deref(), Some("AG_1"));

    // Found by ConversationID alone too.
    let found = s
        .find_initiator_request(&InitiatorCallbackIds {
            originator_conversation_id: Some("someone-else".into()),
            conversation_id: Some("AG_1".into()),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, "ireq_1");

    let decide = result_decision(success("SG1"));
    let first = s
        .ingest_initiator_callback(
            raw("cb_1", CallbackKind::InitiatorResult),
            ids("ireq_1", "AG_1"),
            T0 + 20,
            &decide,
        )
        .await
        .unwrap();
    assert_eq!(first.outcome, CallbackOutcome::Applied);
    assert!(first.became_final);
    let done = first.request.unwrap();
    assert_eq!(
        (done.status, done.receipt.as_deref(), done.finalized_at),
        (RequestStatus::Completed, Some("SG1"), Some(T0 + 20))
    );
    assert_eq!(
        done.next_check_at, None,
        "a final request is never checked again"
    );
    // The same result again: stored, changes nothing, makes nothing final.
    let second = s
        .ingest_initiator_callback(
            raw("cb_2", CallbackKind::InitiatorResult),
            ids("ireq_1", "AG_1"),
            T0 + 30,
            &decide,
        )
        .await
        .unwrap();
    assert_eq!(second.outcome, CallbackOutcome::Duplicate);
    assert!(!second.became_final);
    assert_eq!(
        s.get_initiator_request("ireq_1")
            .await
            .unwrap()
            .unwrap()
            .version,
        done.version
    );
    // A result for no request of ours: kept, applied to nothing.
    let stranger = s
        .ingest_initiator_callback(
            raw("cb_3", CallbackKind::InitiatorResult),
            ids("x", "AG_X"),
            T0 + 40,
            &decide,
        )
        .await
        .unwrap();
    assert_eq!(stranger.outcome, CallbackOutcome::Unmatched);
    assert!(stranger.request.is_none());
    for (id, outcome) in [
        ("cb_1", CallbackOutcome::Applied),
        ("cb_2", CallbackOutcome::Duplicate),
        ("cb_3", CallbackOutcome::Unmatched),
    ] {
        let stored = s
            .get_callback(id)
            .await
            .unwrap()
            .expect("every callback is kept");
        assert_eq!(stored.outcome, outcome);
        assert_eq!(stored.kind, CallbackKind::InitiatorResult);
    }
    let timeline: Vec<String> = s
        .money_out_events("ireq_1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(timeline, ["stored", "result"]);
}

async fn a_result_before_the_acknowledgement_is_applied_when_it_is_recorded(db: TestDatabase) {
    let s = db.storage();
    // A Reversal: Daraja names it in its answer, so its result cannot be matched before that.
    s.create_initiator_request(new_request("ireq_r", RequestKind::Reversal, None), None)
        .await
        .unwrap();
    let decide = result_decision(success("SKE1"));
    let early = s
        .ingest_initiator_callback(
            raw("cb_early", CallbackKind::InitiatorResult),
            ids("OC_9", "AG_9"),
            T0 + 1,
            &decide,
        )
        .await
        .unwrap();
    assert_eq!(early.outcome, CallbackOutcome::Unmatched);
    accept(&*s, "ireq_r", "OC_9", "AG_9").await;
    let redecide = |raw: &RawCallback, r: &InitiatorRequest| {
        assert_eq!(raw.id, "cb_early");
        result_decision(success("SKE1"))(Some(r))
    };
    let done = s
        .rematch_initiator_callbacks("ireq_r", T0 + 6, &redecide)
        .await
        .unwrap()
        .expect("the stored result makes it final");
    assert_eq!(done.status, RequestStatus::Completed);
    assert_eq!(
        s.get_callback("cb_early").await.unwrap().unwrap().outcome,
        CallbackOutcome::Applied
    );
    // Nothing left to rematch: a second pass changes nothing.
    assert!(
        s.rematch_initiator_callbacks("ireq_r", T0 + 7, &redecide)
            .await
            .unwrap()
            .is_none()
    );
}

async fn due_requests_are_claimed_by_one_instance_and_owners_told_until_recorded(db: TestDatabase) {
    let instances = [db.storage(), db.connect_another().await];
    for n in 0..10 {
        let id = format!("ireq_{n:02}");
        instances[0]
            .create_initiator_request(
                new_request(&id, RequestKind::B2c, Some(&id)),
                Some(T0 + 1_000),
            )
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(
        instances[0].claim_due_initiator_requests(T0 + 2_000, T0 + 62_000, 10),
        instances[1].claim_due_initiator_requests(T0 + 2_000, T0 + 62_000, 10),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 10, "every due request is claimed once");
    let mut all: Vec<String> = a.iter().chain(&b).map(|r| r.id.clone()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 10, "no request is claimed by both");
    assert!(
        instances[0]
            .claim_due_initiator_requests(T0 + 2_000, T0 + 62_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed requests are hidden until their lease ends"
    );
    // A final request whose owner was not told is listed until it is recorded as told.
    let decide = result_decision(success("SG5"));
    instances[0]
        .ingest_initiator_callback(
            raw("cb_5", CallbackKind::InitiatorResult),
            ids("ireq_05", ""),
            T0 + 3_000,
            &decide,
        )
        .await
        .unwrap();
    let untold = instances[1]
        .unnotified_initiator_requests(T0 + 10_000, 10)
        .await
        .unwrap();
    assert_eq!(
        untold.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["ireq_05"]
    );
    instances[1]
        .mark_initiator_owner_notified("ireq_05", T0 + 11_000)
        .await
        .unwrap();
    assert!(
        instances[0]
            .unnotified_initiator_requests(T0 + 20_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn completed_payment(s: &dyn Storage, n: u32, receipt: &str) -> Payment {
    let p = create(s, new_payment(&pay_id(n), T0)).await;
    set(s, &p.id, T0 + 1, accepted(&format!("ws_CO_{n}"))).await;
    set(s, &p.id, T0 + 2, completed(receipt)).await
}

fn new_refund(id: &str, payment_id: &str) -> NewRefund {
    NewRefund {
        id: id.into(),
        payment_id: payment_id.into(),
        reason: "Returned goods".into(),
        requested_by: "api:shop".into(),
        source: "api".into(),
        api_key_id: Some("key_1".into()),
        created_at: T0 + 100,
    }
}

/// The rule as the gateway has it: completed, with a receipt, no refund pending or done.
fn refund_rule(p: &Payment, active: Option<&Refund>) -> Result<(i64, String), RefundRefusal> {
    if p.status != mpesa_domain::PaymentStatus::Completed {
        return Err(RefundRefusal::NotRefundable(p.status.as_str().into()));
    }
    if let Some(r) = active {
        return Err(RefundRefusal::AlreadyRefunded {
            refund_id: r.id.clone(),
            status: r.status,
        });
    }
    Ok((
        p.amount.shillings(),
        p.mpesa_receipt_number.clone().unwrap(),
    ))
}

async fn a_payment_is_refunded_once_however_many_ask_at_once(db: TestDatabase) {
    let instances = [db.storage(), db.connect_another().await];
    let p = completed_payment(&*instances[0], 1, "RCPT1").await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..12u32 {
        let s = instances[n as usize % 2].clone();
        let payment_id = p.id.clone();
        tasks.spawn(async move {
            s.create_refund(
                new_refund(&format!("rfd_{n:02}"), &payment_id),
                None,
                &refund_rule,
            )
            .await
            .unwrap()
        });
    }
    let results = tasks.join_all().await;
    let created: Vec<&Refund> = results
        .iter()
        .filter_map(|r| match r {
            CreateRefundResult::Created(r) => Some(&**r),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "{results:?}");
    let refund = created[0].clone();
    assert_eq!(
        (
            refund.status,
            refund.amount,
            refund.payment_receipt.as_str()
        ),
        (RefundStatus::Pending, 100, "RCPT1")
    );
    for r in &results {
        if let CreateRefundResult::Refused(refusal) = r {
            assert_eq!(
                refusal,
                &RefundRefusal::AlreadyRefunded {
                    refund_id: refund.id.clone(),
                    status: RefundStatus::Pending
                }
            );
        }
    }
    // A failed refund frees the payment for another; a completed one does not.
    instances[0]
        .update_refund(&refund.id, T0 + 200, &|_| {
            Some(RefundUpdate {
                status: Some(RefundStatus::Failed),
                result_code: Some("1".into()),
                event: Some(NewMoneyOutEvent {
                    kind: "refund_failed".into(),
                    detail: "{}".into(),
                }),
                ..Default::default()
            })
        })
        .await
        .unwrap();
    let retry = instances[1]
        .create_refund(
            new_refund("rfd_retry", &p.id),
            Some(claim("key_1", "k-1", "h-1")),
            &refund_rule,
        )
        .await
        .unwrap();
    let CreateRefundResult::Created(retry) = retry else {
        panic!("a refund after a failed one is allowed: {retry:?}")
    };
    let retry = *retry;
    instances[0]
        .update_refund(&retry.id, T0 + 300, &|_| {
            Some(RefundUpdate {
                status: Some(RefundStatus::Completed),
                reversal_receipt: Some("SKE1".into()),
                ..Default::default()
            })
        })
        .await
        .unwrap();
    let third = instances[0]
        .create_refund(new_refund("rfd_third", &p.id), None, &refund_rule)
        .await
        .unwrap();
    assert!(
        matches!(
            &third,
            CreateRefundResult::Refused(RefundRefusal::AlreadyRefunded {
                status: RefundStatus::Completed,
                ..
            })
        ),
        "{third:?}"
    );
    // The same key again: the first request's refund, not a new one.
    let replayed = instances[0]
        .create_refund(
            new_refund("rfd_replay", &p.id),
            Some(claim("key_1", "k-1", "h-1")),
            &refund_rule,
        )
        .await
        .unwrap();
    assert_eq!(
        replayed,
        CreateRefundResult::InProgress {
            id: retry.id.clone()
        }
    );
    // A refused request leaves its key free.
    let refused_key = instances[0]
        .create_refund(
            new_refund("rfd_k2", &p.id),
            Some(claim("key_1", "k-2", "h-2")),
            &refund_rule,
        )
        .await
        .unwrap();
    assert!(matches!(refused_key, CreateRefundResult::Refused(_)));
    let unknown = instances[0]
        .create_refund(new_refund("rfd_none", "pay_nope"), None, &refund_rule)
        .await
        .unwrap();
    assert_eq!(
        unknown,
        CreateRefundResult::Refused(RefundRefusal::PaymentNotFound)
    );
    let refunds = instances[1].refunds_for_payment(&p.id).await.unwrap();
    assert_eq!(
        refunds.iter().map(|r| r.status).collect::<Vec<_>>(),
        [RefundStatus::Failed, RefundStatus::Completed]
    );
    // The payment's own timeline tells the story.
    let kinds: Vec<String> = instances[0]
        .payment_events(&p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| k.starts_with("refund"))
        .collect();
    assert_eq!(
        kinds,
        ["refund_requested", "refund_failed", "refund_requested"]
    );
}

async fn the_daily_payout_limit_holds_across_instances(db: TestDatabase) {
    let instances = [db.storage(), db.connect_another().await];
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..16u32 {
        let s = instances[n as usize % 2].clone();
        tasks.spawn(async move {
            s.create_payout(
                new_payout(&format!("po_{n:02}"), 300, T0 + n as i64),
                None,
                Some(3_000),
            )
            .await
            .unwrap()
        });
    }
    let results = tasks.join_all().await;
    let created: Vec<&Payout> = results
        .iter()
        .filter_map(|r| match r {
            CreatePayoutResult::Created(p) => Some(&**p),
            _ => None,
        })
        .collect();
    assert_eq!(
        created.len(),
        10,
        "3,000 holds ten payouts of 300: {results:?}"
    );
    for r in &results {
        if let CreatePayoutResult::OverDailyLimit { reserved, limit } = r {
            assert_eq!((*reserved, *limit), (3_000, 3_000));
        }
    }
    // A failed payout gives its amount back; the next one fits again.
    let failed = created[0].id.clone();
    instances[1]
        .update_payout(&failed, T0 + 100, &|_| {
            Some(PayoutUpdate {
                status: Some(PayoutStatus::Failed),
                release_reservation: true,
                ..Default::default()
            })
        })
        .await
        .unwrap();
    assert!(matches!(
        instances[0]
            .create_payout(new_payout("po_after", 300, T0 + 200), None, Some(3_000))
            .await
            .unwrap(),
        CreatePayoutResult::Created(_)
    ));
    assert!(matches!(
        instances[0]
            .create_payout(new_payout("po_over", 10, T0 + 300), None, Some(3_000))
            .await
            .unwrap(),
        CreatePayoutResult::OverDailyLimit {
            reserved: 3_000,
            ..
        }
    ));
    // Another day has its own limit.
    let mut tomorrow = new_payout("po_tomorrow", 3_000, T0 + 400);
    tomorrow.eat_day += 1;
    assert!(matches!(
        instances[1]
            .create_payout(tomorrow, None, Some(3_000))
            .await
            .unwrap(),
        CreatePayoutResult::Created(_)
    ));
}

async fn payouts_are_listed_filtered_and_updated(db: TestDatabase) {
    let s = db.storage();
    for n in 0..5u32 {
        let mut p = new_payout(&format!("po_{n:02}"), 100 + n as i64, T0 + n as i64);
        if n % 2 == 0 {
            p.status = PayoutStatus::AwaitingApproval;
        }
        s.create_payout(p, Some(claim("key_1", &format!("k{n}"), "h")), None)
            .await
            .unwrap();
    }
    let waiting = s
        .list_payouts(
            &PayoutFilter {
                status: Some(PayoutStatus::AwaitingApproval),
                phone: None,
            },
            &PageRequest {
                limit: 2,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        waiting
            .items
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["po_04", "po_02"]
    );
    let rest = s
        .list_payouts(
            &PayoutFilter {
                status: Some(PayoutStatus::AwaitingApproval),
                phone: None,
            },
            &PageRequest {
                limit: 2,
                cursor: waiting.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["po_00"]
    );
    assert_eq!(
        s.payouts_awaiting_approval_total().await.unwrap(),
        100 + 102 + 104
    );
    let (approved, _) = s
        .update_payout("po_02", T0 + 50, &|p| {
            (p.status == PayoutStatus::AwaitingApproval).then(|| PayoutUpdate {
                status: Some(PayoutStatus::Pending),
                decided_by: Some("admin:amina".into()),
                event: Some(NewMoneyOutEvent {
                    kind: "approved".into(),
                    detail: r#"{"by":"admin:amina"}"#.into(),
                }),
                ..Default::default()
            })
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            approved.status,
            approved.decided_by.as_deref(),
            approved.decided_at
        ),
        (PayoutStatus::Pending, Some("admin:amina"), Some(T0 + 50))
    );
    let (done, _) = s
        .update_payout("po_02", T0 + 60, &|_| {
            Some(PayoutUpdate {
                status: Some(PayoutStatus::Completed),
                receipt: Some("SG632NMUAB".into()),
                recipient_name: Some("254708374149 - JANE DOE".into()),
                utility_balance_cents: Some(895_926_960),
                ..Default::default()
            })
        })
        .await
        .unwrap()
        .unwrap();
    let stored = s.get_payout("po_02").await.unwrap().unwrap();
    assert_eq!(stored, done);
    assert_eq!(stored.finalized_at, Some(T0 + 60));
    assert_eq!(stored.receipt.as_deref(), Some("SG632NMUAB"));
    let timeline: Vec<String> = s
        .money_out_events("po_02")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(timeline, ["requested", "approved"]);
    let _ = Arc::clone(&s);
}

/// At most one check of a receipt code is in flight, whichever instance asks (the unique
/// active code); a final check frees the code, keeps its answer and chats, and writes its
/// outbox rows with it.
async fn one_receipt_check_per_code_is_in_flight_across_instances(db: TestDatabase) {
    let instances = [db.storage(), db.connect_another().await];
    let new = |id: &str, chat: Option<i64>| NewReceiptCheck {
        id: id.into(),
        code: "SGA1XYZ123".into(),
        requested_by: "api:test".into(),
        source: "api".into(),
        telegram_chat: chat,
        created_at: 1_000,
    };
    let first = instances[0]
        .create_receipt_check(new("rchk_1", Some(77)))
        .await
        .unwrap();
    assert_eq!(first.status, ReceiptCheckStatus::Pending);
    assert_eq!(first.telegram_chats, vec![77]);
    assert!(matches!(
        instances[1].create_receipt_check(new("rchk_2", None)).await,
        Err(StorageError::Conflict(_))
    ));
    let active = instances[1]
        .active_receipt_check("SGA1XYZ123")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(active.id, "rchk_1");
    // Another chat asks; then the answer makes it final, with a message to each chat.
    instances[1]
        .update_receipt_check("rchk_1", 2_000, &|_| {
            Some(ReceiptCheckUpdate {
                add_telegram_chat: Some(88),
                ..Default::default()
            })
        })
        .await
        .unwrap();
    let (done, _) = instances[0]
        .update_receipt_check("rchk_1", 3_000, &|c| {
            Some(ReceiptCheckUpdate {
                status: Some(ReceiptCheckStatus::Answered),
                finding: Some("not_found".into()),
                result_code: Some("2032".into()),
                details: Some("{}".into()),
                outbox: c
                    .telegram_chats
                    .iter()
                    .map(|chat| NewOutboxEvent {
                        id: format!("evt_{chat}"),
                        payment_id: None,
                        channel: Channel::Telegram,
                        event_type: "receipt_check".into(),
                        destination: chat.to_string(),
                        payload: "{}".into(),
                        dedupe_key: format!("rchk_1:{chat}"),
                        created_at: 3_000,
                    })
                    .collect(),
                ..Default::default()
            })
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.telegram_chats, vec![77, 88]);
    assert_eq!(
        (done.status, done.finalized_at, done.version),
        (ReceiptCheckStatus::Answered, Some(3_000), 3)
    );
    assert_eq!(instances[0].outbox_counts().await.unwrap().pending, 2);
    assert!(
        instances[0]
            .active_receipt_check("SGA1XYZ123")
            .await
            .unwrap()
            .is_none()
    );
    // The code is free again: a new check, and the newest comes first.
    let mut second = new("rchk_2", None);
    second.created_at = 4_000;
    instances[1].create_receipt_check(second).await.unwrap();
    let all: Vec<String> = instances[0]
        .receipt_checks_for("SGA1XYZ123", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(all, ["rchk_2", "rchk_1"]);
    let stored = instances[0]
        .get_receipt_check("rchk_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, done);
}

/// Two people record one M-Pesa receipt for two held payouts at the same moment, through two
/// instances: one settlement is recorded, the other refused, every time (the receipt check
/// alone, inside each transaction, saw neither).
async fn one_receipt_settles_one_held_request_however_many_record_it_at_once(db: TestDatabase) {
    let instances = [db.storage(), db.connect_another().await];
    const ROUNDS: u32 = 40;
    let mut wrong = Vec::new();
    for round in 0..ROUNDS {
        let receipt = format!("SGR{round:07}");
        let mut requests = Vec::new();
        for (side, s) in instances.iter().enumerate() {
            requests.push(held_payout(&**s, &format!("{round}_{side}")).await.id);
        }
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let mut tasks = tokio::task::JoinSet::new();
        for (side, request) in requests.into_iter().enumerate() {
            let (s, start, receipt) = (instances[side].clone(), start.clone(), receipt.clone());
            tasks.spawn(async move {
                start.wait().await;
                settle_completed(&*s, &request, &receipt).await
            });
        }
        let results = tasks.join_all().await;
        let settled = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(StorageError::Conflict(why)) if why.starts_with("receipt_in_use")))
            .count();
        if (settled, refused) != (1, 1) {
            wrong.push(format!("round {round}: {results:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "one receipt, one settlement: {} of {ROUNDS} rounds went wrong: {wrong:#?}",
        wrong.len()
    );
}
