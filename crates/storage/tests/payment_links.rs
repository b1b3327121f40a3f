//! Payment links in storage, on SQLite, PostgreSQL and MySQL/MariaDB: account numbers unique
//! among open links, a single-use link settled once by the payment that pays it (a second one,
//! by any write path, held for review with its alert), and the pay page's rate limits counted
//! by every instance together.

mod support;

use mpesa_domain::{Lang, LinkStatus, PaymentStatus, ReviewChange, ReviewReason, TransitionKind};
use mpesa_harness::database::TestDatabase;
use mpesa_storage::*;
use support::*;

macro_rules! on_every_backend {
    ($($case:ident),+ $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() { super::$case(mpesa_harness::database::TestDatabase::sqlite().await).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() { super::$case(mpesa_harness::database::TestDatabase::postgres().await).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mysql() { super::$case(mpesa_harness::database::TestDatabase::mysql().await).await }
            }
        )+
    };
}

on_every_backend!(
    account_numbers_are_unique_among_open_links_only,
    a_single_use_link_is_paid_once_and_a_second_payment_is_held,
    a_second_payment_through_the_callback_batch_is_held_too,
    rate_limits_are_shared_by_instances_and_refusals_do_not_count,
    start_rules_hold_in_the_storing_transaction,
    a_single_use_link_takes_one_prompt_at_a_time_and_none_once_paid,
);

fn new_link(id: &str, candidates: &[&str], single_use: bool, now: Millis) -> NewPaymentLink {
    NewPaymentLink {
        id: id.into(),
        slug: format!("slug{id}"),
        account_candidates: candidates.iter().map(|c| (*c).to_owned()).collect(),
        title: "Term 2 <fees>".into(),
        amount: Some(100),
        amount_min: None,
        amount_max: None,
        reference: None,
        description: Some("line one\nline two".into()),
        single_use,
        expires_at: None,
        language: Some(Lang::Sw),
        created_at: now,
    }
}

async fn account_numbers_are_unique_among_open_links_only(db: TestDatabase) {
    let s = db.storage();
    let a = s
        .create_payment_link(&new_link("pl_1", &["AAAAAAA", "CCCCCCC"], false, T0))
        .await
        .unwrap();
    assert_eq!(a.account_number, "AAAAAAA");
    assert_eq!(a.status, LinkStatus::Active);
    assert_eq!(a.language, Some(Lang::Sw));
    assert_eq!(a.description.as_deref(), Some("line one\nline two"));
    // The first candidate is held by an open link: the next one is taken.
    let b = s
        .create_payment_link(&new_link("pl_2", &["AAAAAAA", "CCCCCCC"], false, T0))
        .await
        .unwrap();
    assert_eq!(b.account_number, "CCCCCCC");
    let refused = s
        .create_payment_link(&new_link("pl_3", &["AAAAAAA", "CCCCCCC"], false, T0))
        .await;
    assert!(
        matches!(refused, Err(StorageError::Conflict(_))),
        "{refused:?}"
    );

    assert_eq!(
        s.find_payment_link_by_slug("slugpl_1")
            .await
            .unwrap()
            .unwrap()
            .id,
        "pl_1"
    );
    assert!(s.find_payment_link_by_slug("nope").await.unwrap().is_none());
    assert_eq!(
        s.find_open_payment_link_by_account("AAAAAAA", T0)
            .await
            .unwrap()
            .unwrap()
            .id,
        "pl_1"
    );

    // Disabled: the account number is free again, and pays the old link no more.
    let disabled = s
        .disable_payment_link("pl_1", T0 + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(disabled.status, LinkStatus::Disabled);
    assert!(
        s.find_open_payment_link_by_account("AAAAAAA", T0 + 1)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.disable_payment_link("pl_none", T0)
            .await
            .unwrap()
            .is_none()
    );
    let c = s
        .create_payment_link(&new_link("pl_3", &["AAAAAAA"], false, T0 + 2))
        .await
        .unwrap();
    assert_eq!(c.account_number, "AAAAAAA");

    // Expired: read as expired at once, and its number goes back when the next link is made.
    let mut expiring = new_link("pl_4", &["EEEEEEE"], false, T0);
    expiring.expires_at = Some(T0 + 10);
    s.create_payment_link(&expiring).await.unwrap();
    let read = s.get_payment_link("pl_4").await.unwrap().unwrap();
    assert_eq!(read.status_at(T0 + 9), LinkStatus::Active);
    assert_eq!(read.status_at(T0 + 10), LinkStatus::Expired);
    assert!(
        s.find_open_payment_link_by_account("EEEEEEE", T0 + 10)
            .await
            .unwrap()
            .is_none()
    );
    let e = s
        .create_payment_link(&new_link("pl_5", &["EEEEEEE"], false, T0 + 11))
        .await
        .unwrap();
    assert_eq!(e.account_number, "EEEEEEE");
    assert_eq!(
        s.get_payment_link("pl_4").await.unwrap().unwrap().status,
        LinkStatus::Expired
    );

    // Newest first, in pages.
    let first = s
        .list_payment_links(&PageRequest {
            limit: 2,
            cursor: None,
        })
        .await
        .unwrap();
    let ids: Vec<_> = first.items.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["pl_5", "pl_4"]);
    let rest = s
        .list_payment_links(&PageRequest {
            limit: 10,
            cursor: first.next_cursor,
        })
        .await
        .unwrap();
    let ids: Vec<_> = rest.items.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["pl_3", "pl_2", "pl_1"]);
}

/// A payment of `pl_1` made from a fresh `new_payment`, pushed (pending with a checkout id).
async fn link_payment(s: &dyn Storage, n: u32, link: &str) -> Payment {
    let mut p = new_payment(&pay_id(n), T0 + i64::from(n));
    p.payment_link_id = Some(link.into());
    let created = create(s, p).await;
    assert_eq!(created.payment_link_id.as_deref(), Some(link));
    set(s, &created.id, T0 + 20, accepted(&format!("ws_CO_{n}"))).await
}

/// A completion whose update carries its "completed" webhook and, for when the link turns out
/// to be paid already, the "held" one that replaces it.
fn completion(receipt: &str, payment_id: &str) -> PaymentUpdate {
    let mut u = PaymentUpdate::new(Some(completed(receipt)));
    u.outbox = vec![outbox_event(
        &format!("evt_done_{payment_id}"),
        Some(payment_id),
        &format!("{payment_id}:completed"),
        T0 + 30,
    )];
    let mut held = outbox_event(
        &format!("evt_held_{payment_id}"),
        Some(payment_id),
        &format!("{payment_id}:held:link"),
        T0 + 30,
    );
    held.payload = format!(
        r#"{{"type":"payment.held_for_review","reason":"paid by {}"}}"#,
        mpesa_domain::link::PAID_BY_MARK
    );
    u.if_link_already_paid = vec![held];
    u
}

async fn a_single_use_link_is_paid_once_and_a_second_payment_is_held(db: TestDatabase) {
    let s = db.storage();
    s.create_payment_link(&new_link("pl_1", &["KKKKKKK"], true, T0))
        .await
        .unwrap();
    let first = link_payment(s.as_ref(), 1, "pl_1").await;
    let second = link_payment(s.as_ref(), 2, "pl_1").await;

    let (paid, _) = apply(
        s.as_ref(),
        &first.id,
        T0 + 30,
        completion("RCPT1", &first.id),
    )
    .await;
    assert!(!paid.needs_review);
    let link = s.get_payment_link("pl_1").await.unwrap().unwrap();
    assert_eq!(link.status, LinkStatus::Paid);
    assert_eq!(link.paid_payment_id.as_deref(), Some(first.id.as_str()));
    assert!(
        s.find_open_payment_link_by_account("KKKKKKK", T0 + 30)
            .await
            .unwrap()
            .is_none(),
        "a paid link's account number pays nothing more"
    );
    assert!(
        s.find_paid_payment_link_by_account("AAAAAAA")
            .await
            .unwrap()
            .is_none(),
        "no link with that number was paid"
    );
    assert_eq!(
        s.find_paid_payment_link_by_account("KKKKKKK")
            .await
            .unwrap()
            .map(|l| l.id),
        Some("pl_1".to_owned()),
        "but it names the paid link, whose second payment it would be"
    );
    let first_rows = s.outbox_for_payment(&first.id).await.unwrap();
    assert_eq!(
        first_rows.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [format!("evt_done_{}", first.id)],
        "the first payment's own rows, not the conditional ones"
    );

    // The customer paid again (say at the paybill after the prompt): held, never accepted.
    let (held, _) = apply(
        s.as_ref(),
        &second.id,
        T0 + 40,
        completion("RCPT2", &second.id),
    )
    .await;
    assert_eq!(held.status, PaymentStatus::Completed);
    assert!(held.needs_review);
    let reason = held.review_reason.clone().unwrap();
    assert!(
        reason.contains("pl_1") && reason.contains(&first.id) && reason.contains("refund"),
        "{reason}"
    );
    let stored = s.get_payment(&second.id).await.unwrap().unwrap();
    assert!(stored.needs_review);
    let events = s.payment_events(&second.id).await.unwrap();
    let hold = events
        .iter()
        .find(|e| e.kind == "held_for_review")
        .expect("a hold on the timeline");
    assert!(
        hold.detail.contains("refund") && hold.detail.contains(&first.id),
        "{}",
        hold.detail
    );
    let alerts = s.outbox_for_payment(&second.id).await.unwrap();
    assert_eq!(
        alerts.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [format!("evt_held_{}", second.id)],
        "the hold's rows are written instead of the completion's: nobody hears it completed"
    );
    assert_eq!(
        alerts[0].payload,
        format!(
            r#"{{"type":"payment.held_for_review","reason":"paid by {}"}}"#,
            first.id
        ),
        "naming the payment that paid the link"
    );
    let link = s.get_payment_link("pl_1").await.unwrap().unwrap();
    assert_eq!(
        link.paid_payment_id.as_deref(),
        Some(first.id.as_str()),
        "still paid by the first"
    );

    let totals = s.payment_link_totals("pl_1").await.unwrap();
    assert_eq!(
        (
            totals.payment_count,
            totals.completed_count,
            totals.completed_amount
        ),
        (2, 2, 200)
    );

    // A reusable link collects many, and holds none.
    s.create_payment_link(&new_link("pl_2", &["RRRRRRR"], false, T0))
        .await
        .unwrap();
    for n in [3, 4] {
        let p = link_payment(s.as_ref(), n, "pl_2").await;
        let (done, _) = apply(
            s.as_ref(),
            &p.id,
            T0 + 50,
            completion(&format!("RCPT{n}"), &p.id),
        )
        .await;
        assert!(!done.needs_review);
    }
    let link = s.get_payment_link("pl_2").await.unwrap().unwrap();
    assert_eq!(
        (link.status, link.paid_payment_id),
        (LinkStatus::Active, None)
    );

    // The link's payments are found by it.
    let filter = PaymentFilter {
        payment_link_id: Some("pl_1".into()),
        ..PaymentFilter::default()
    };
    let of_link = s
        .list_payments(&filter, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(of_link.items.len(), 2);
}

async fn a_second_payment_through_the_callback_batch_is_held_too(db: TestDatabase) {
    let s = db.storage();
    s.create_payment_link(&new_link("pl_1", &["KKKKKKK"], true, T0))
        .await
        .unwrap();
    let first = link_payment(s.as_ref(), 1, "pl_1").await;
    let second = link_payment(s.as_ref(), 2, "pl_1").await;
    // Both successes in one batch (the fast path decides both in memory, in order).
    let batch = vec![
        stk_callback("cb_1", "ws_CO_1", &success_report("RCPTA")),
        stk_callback("cb_2", "ws_CO_2", &success_report("RCPTB")),
    ];
    let decide = |item: &IncomingCallback, p: Option<&Payment>| {
        let mut d = decide(item, p);
        if let (Some(update), Some(p)) = (d.update.as_mut(), p) {
            update.if_link_already_paid = vec![outbox_event(
                &format!("evt_held_{}", p.id),
                Some(&p.id),
                &format!("{}:held:link", p.id),
                T0 + 30,
            )];
        }
        d
    };
    let results = s.ingest_callbacks(&batch, T0 + 50, &decide).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let (a, b) = (
        s.get_payment(&first.id).await.unwrap().unwrap(),
        s.get_payment(&second.id).await.unwrap().unwrap(),
    );
    assert_eq!(
        (a.status, b.status),
        (PaymentStatus::Completed, PaymentStatus::Completed)
    );
    assert!(!a.needs_review, "the first in the batch pays the link");
    assert!(b.needs_review, "the second is held");
    let link = s.get_payment_link("pl_1").await.unwrap().unwrap();
    assert_eq!(link.paid_payment_id.as_deref(), Some(first.id.as_str()));
    assert!(
        s.outbox_for_payment(&second.id)
            .await
            .unwrap()
            .iter()
            .any(|e| e.id == format!("evt_held_{}", second.id))
    );
    assert!(
        s.outbox_for_payment(&first.id)
            .await
            .unwrap()
            .iter()
            .all(|e| !e.id.starts_with("evt_held_"))
    );
    assert!(
        s.payment_events(&second.id)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "held_for_review")
    );
}

async fn rate_limits_are_shared_by_instances_and_refusals_do_not_count(db: TestDatabase) {
    let one = db.storage();
    let two = db.connect_another().await;
    let window = 60_000;
    let limits = |phone_limit: i64| {
        vec![
            RateLimit {
                bucket: "pay:phone:254708374149".into(),
                limit: phone_limit,
                window_ms: window,
            },
            RateLimit {
                bucket: "pay:link:pl_1".into(),
                limit: 100,
                window_ms: window,
            },
        ]
    };
    let start = T0 + 5_000; // 5 s into a window
    assert_eq!(one.hit_rate_limits(&limits(3), start).await.unwrap(), None);
    assert_eq!(
        two.hit_rate_limits(&limits(3), start + 1).await.unwrap(),
        None
    );
    assert_eq!(
        one.hit_rate_limits(&limits(3), start + 2).await.unwrap(),
        None
    );
    // The fourth, from either instance, waits for the window's end.
    assert_eq!(
        two.hit_rate_limits(&limits(3), start + 3).await.unwrap(),
        Some(start + window)
    );
    assert_eq!(
        one.hit_rate_limits(&limits(3), start + 4).await.unwrap(),
        Some(start + window)
    );
    // Refused hits counted nothing, not even on the link's counter: 3 of 100 used there.
    let link_only = vec![RateLimit {
        bucket: "pay:link:pl_1".into(),
        limit: 4,
        window_ms: window,
    }];
    assert_eq!(
        one.hit_rate_limits(&link_only, start + 5).await.unwrap(),
        None
    );
    assert_eq!(
        one.hit_rate_limits(&link_only, start + 6).await.unwrap(),
        Some(start + window)
    );
    // The next window starts afresh.
    assert_eq!(
        one.hit_rate_limits(&limits(3), start + window)
            .await
            .unwrap(),
        None
    );
    // Concurrent hits from both instances never pass more than the limit.
    let limit = vec![RateLimit {
        bucket: "pay:address:192.0.2.7".into(),
        limit: 5,
        window_ms: window,
    }];
    let now = T0 + 3 * window;
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let s = if i % 2 == 0 { one.clone() } else { two.clone() };
            let limit = limit.clone();
            tokio::spawn(async move { s.hit_rate_limits(&limit, now).await.unwrap() })
        })
        .collect();
    let mut passed = 0;
    for t in tasks {
        if t.await.unwrap().is_none() {
            passed += 1;
        }
    }
    assert_eq!(passed, 5, "exactly the limit passed");
    assert_eq!(one.delete_rate_limits_before(now).await.unwrap(), 2);
}

/// A new payment's rules are checked as it is stored: one open payment per phone, even with
/// two instances storing at once, then the limits; nothing is written when one refuses.
async fn start_rules_hold_in_the_storing_transaction(db: TestDatabase) {
    let one = db.storage();
    let two = db.connect_another().await;
    let ruled = |n: u32, phone_text: &str, limits: Vec<RateLimit>| {
        let mut p = new_payment(&pay_id(n), T0 + i64::from(n));
        p.phone = phone(phone_text);
        p.customer_language = Some(Lang::Sw);
        p.rules = StartRules {
            one_open_per_phone: true,
            limits,
            ..StartRules::default()
        };
        p
    };
    // Many phones, each asked for twice at once through both instances: one each.
    let mut tasks = Vec::new();
    for i in 0..6u32 {
        for (k, s) in [one.clone(), two.clone()].into_iter().enumerate() {
            let p = ruled(
                100 + i * 2 + k as u32,
                &format!("07110006{i:02}"),
                Vec::new(),
            );
            tasks.push(tokio::spawn(async move {
                s.create_payment(p, None).await.unwrap()
            }));
        }
    }
    let (mut created, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            CreatePaymentResult::Created(p) => {
                assert_eq!(p.customer_language, Some(Lang::Sw));
                created += 1;
            }
            CreatePaymentResult::OpenPayment(open) => {
                assert_eq!(open.status, PaymentStatus::Initiated);
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((created, refused), (6, 6));
    assert_eq!(
        list_all(one.as_ref()).await.len(),
        6,
        "one payment per phone"
    );
    let stored = one.get_payment(&pay_id(100)).await.unwrap();
    let stored = stored
        .or(one.get_payment(&pay_id(101)).await.unwrap())
        .unwrap();
    assert_eq!(stored.customer_language, Some(Lang::Sw), "read back");

    // Another phone, under a limit of one: the first is stored, the second (after the first
    // is final) refused by the limit, and stores nothing.
    let limit = || {
        vec![RateLimit {
            bucket: "pay:phone:254711000700".into(),
            limit: 1,
            window_ms: 60_000,
        }]
    };
    let first = create(one.as_ref(), ruled(200, "0711000700", limit())).await;
    set(one.as_ref(), &first.id, T0 + 300, accepted("ws_CO_200")).await;
    let refused = one
        .create_payment(ruled(201, "0711000700", limit()), None)
        .await
        .unwrap();
    assert!(
        matches!(refused, CreatePaymentResult::OpenPayment(ref open) if open.id == first.id),
        "still open: {refused:?}"
    );
    set(one.as_ref(), &first.id, T0 + 400, completed("RCPT200")).await;
    let limited = one
        .create_payment(ruled(202, "0711000700", limit()), None)
        .await
        .unwrap();
    assert!(
        matches!(limited, CreatePaymentResult::Limited { .. }),
        "{limited:?}"
    );
    assert!(one.get_payment(&pay_id(202)).await.unwrap().is_none());

    // A payment held for a person at its expiry, still `initiated` (its push's answer never
    // came), is not an open prompt: the phone can be asked again.
    let lost = create(one.as_ref(), ruled(300, "0711000800", Vec::new())).await;
    let held = set(one.as_ref(), &lost.id, T0 + 500, {
        let mut t = transition(TransitionKind::Expired, PaymentStatus::Initiated);
        t.review = ReviewChange::Hold(ReviewReason::PushOutcomeUnknown);
        t
    })
    .await;
    assert!(held.needs_review && held.status == PaymentStatus::Initiated);
    let again = one
        .create_payment(ruled(301, "0711000800", Vec::new()), None)
        .await
        .unwrap();
    assert!(
        matches!(again, CreatePaymentResult::Created(_)),
        "{again:?}"
    );
}

/// A single-use link takes one open payment at a time, whichever instance stores it, and none
/// once it is paid: prompts to two phones at once could both be paid. A reusable link takes any.
async fn a_single_use_link_takes_one_prompt_at_a_time_and_none_once_paid(db: TestDatabase) {
    let one = db.storage();
    let two = db.connect_another().await;
    one.create_payment_link(&new_link("pl_su", &["SSSSSSS"], true, T0))
        .await
        .unwrap();
    one.create_payment_link(&new_link("pl_many", &["MMMMMMM"], false, T0))
        .await
        .unwrap();
    let through = |n: u32, link: &str, phone_text: &str| {
        let mut p = new_payment(&pay_id(n), T0 + i64::from(n));
        p.phone = phone(phone_text);
        p.payment_link_id = Some(link.into());
        p.rules = StartRules {
            one_open_per_phone: true,
            one_open_per_link: true,
            ..StartRules::default()
        };
        p
    };
    // Eight phones at once through both instances: one prompt.
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let s = if i % 2 == 0 { one.clone() } else { two.clone() };
        let p = through(400 + i, "pl_su", &format!("07110009{i:02}"));
        tasks.push(tokio::spawn(async move {
            s.create_payment(p, None).await.unwrap()
        }));
    }
    let mut created = Vec::new();
    let mut taken = 0;
    for t in tasks {
        match t.await.unwrap() {
            CreatePaymentResult::Created(p) => created.push(p),
            CreatePaymentResult::LinkTaken(Some(open)) => {
                assert_eq!(open.payment_link_id.as_deref(), Some("pl_su"));
                taken += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((created.len(), taken), (1, 7));
    // Still open once pushed; then paid: closed to new prompts.
    let first = created.pop().unwrap();
    set(one.as_ref(), &first.id, T0 + 500, accepted("ws_CO_400")).await;
    assert!(matches!(
        one.create_payment(through(410, "pl_su", "0711000950"), None)
            .await
            .unwrap(),
        CreatePaymentResult::LinkTaken(Some(_))
    ));
    // Once it has been open longer than a prompt lives (Daraja not answering, say), the link
    // is not kept from every other payer meanwhile.
    let mut later = through(412, "pl_su", "0711000952");
    later.created_at = first.created_at + 3 * 60_000 + 1;
    create(one.as_ref(), later).await;
    apply(
        one.as_ref(),
        &first.id,
        T0 + 600,
        completion("RCPT400", &first.id),
    )
    .await;
    assert_eq!(
        one.get_payment_link("pl_su").await.unwrap().unwrap().status,
        LinkStatus::Paid
    );
    assert!(matches!(
        one.create_payment(through(411, "pl_su", "0711000951"), None)
            .await
            .unwrap(),
        CreatePaymentResult::LinkTaken(None)
    ));
    // A reusable link is not held to one prompt (the rule is the door's to ask for).
    let mut reusable = through(420, "pl_many", "0711000960");
    reusable.rules.one_open_per_link = false;
    create(one.as_ref(), reusable).await;
    let mut again = through(421, "pl_many", "0711000961");
    again.rules.one_open_per_link = false;
    create(one.as_ref(), again).await;
}
