//! The storage contract, one suite run against SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! Each case is written once against `Arc<dyn Storage>` and instantiated for every backend by
//! `contract!`, each on a fresh migrated database (`mpesa_harness::database`). A server that
//! cannot be reached fails its tests: `MPESA_TEST_POSTGRES_URL` / `MPESA_TEST_MYSQL_URL`.
//! The multi-instance cases connect a second storage to the same database; on SQLite that is a
//! second handle on the same file (SQLite is for one instance, but the file lock still makes
//! its claims exclusive, so the cases hold there too).

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mpesa_domain::{Amount, PaymentStatus, ResultCode, ReviewChange, ReviewReason, TransitionKind};
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
    migrations_are_idempotent_and_the_server_is_checked,
    payments_are_created_read_and_found_by_checkout_request_id,
    list_payments_applies_every_filter,
    keyset_pagination_has_no_gaps_and_no_duplicates,
    update_payment_applies_every_field,
    update_payment_writes_nothing_when_decide_declines,
    idempotency_keys_replay_wait_or_refuse,
    concurrent_identical_creates_make_one_payment,
    callback_batch_stores_everything_and_isolates_a_failing_item,
    callback_batch_without_a_failure_applies_each_payment_once,
    a_callback_batch_that_changes_a_checkout_request_id_still_writes_it,
    unmatched_callbacks_are_rematched_once,
    concurrent_duplicate_callbacks_apply_once,
    claims_from_two_instances_never_overlap,
    expired_leases_are_reclaimable_and_lost_leases_refused,
    outbox_deliveries_retries_and_dead_letters,
    outbox_attempts_of_several_events_are_recorded_together,
    outbox_rows_of_one_call_skip_taken_dedupe_keys,
    outbox_lists_and_counts,
    api_keys,
    admin_users_and_sessions,
    a_new_password_or_a_deletion_ends_every_session,
    sign_in_failures_are_counted_per_pair_and_shared_by_instances,
    the_write_probe_writes_each_instance_its_own_row,
    telegram_links,
    telegram_links_exclusive_and_status_messages,
    settings_agree_between_racing_instances,
    named_leases,
    statistics_and_daily_volume,
    unreadable_rows_are_corrupt_not_defaults,
);

// ---- lifecycle ----------------------------------------------------------------------------------

async fn migrations_are_idempotent_and_the_server_is_checked(db: TestDatabase) {
    let s = db.storage();
    // The test database is migrated once already; again, and from a second instance at once.
    let other = db.connect_another().await;
    let (a, b) = tokio::join!(s.migrate(), other.migrate());
    a.unwrap();
    b.unwrap();
    s.migrate().await.unwrap();
    s.ping().await.unwrap();
    let version = s.check_server().await.unwrap();
    let product = match db.backend() {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
        Backend::MySql => "M", // MySQL or MariaDB
    };
    assert!(version.starts_with(product), "{version}");
    assert_eq!(s.backend(), db.backend());
    // The schema works after all that.
    create(&*s, new_payment(&pay_id(1), T0)).await;
}

// ---- payments -----------------------------------------------------------------------------------

async fn payments_are_created_read_and_found_by_checkout_request_id(db: TestDatabase) {
    let s = db.storage();
    let new = new_payment(&pay_id(1), T0);
    let created = create(&*s, new.clone()).await;
    assert_eq!(created.status, PaymentStatus::Initiated);
    assert_eq!(created.version, 1);
    assert_eq!((created.created_at, created.updated_at), (T0, T0));
    assert_eq!(created.next_check_at, Some(new.next_check_at));
    assert_eq!(created.finalized_at, None);
    assert_eq!(created.metadata.as_deref(), Some(r#"{"order":1}"#));
    assert_eq!(created.telegram_chat_id, Some(42));
    assert_eq!(created.source, PaymentSource::Api);
    assert_eq!(
        s.get_payment(&created.id).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(s.get_payment("pay_missing").await.unwrap(), None);
    assert_eq!(
        s.find_payment_by_checkout_request_id("ws_CO_1")
            .await
            .unwrap(),
        None
    );

    let pending = set(&*s, &created.id, T0 + 10, accepted("ws_CO_1")).await;
    assert_eq!(
        s.find_payment_by_checkout_request_id("ws_CO_1")
            .await
            .unwrap(),
        Some(pending)
    );

    let events = s.payment_events(&created.id).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| (e.kind.as_str(), e.at)).collect();
    assert_eq!(kinds, [("created", T0), ("push_accepted", T0 + 10)]);

    // The same id twice is a conflict, not a second payment.
    let err = s
        .create_payment(new_payment(&pay_id(1), T0), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err:?}");
    // Every text survives the round trip unchanged, emoji included.
    let mut fancy = new_payment(&pay_id(2), T0);
    fancy.description = "Darasa la densi 💃 <b>'quoted'</b> \\ %_".into();
    let fancy_created = create(&*s, fancy.clone()).await;
    assert_eq!(
        s.get_payment(&pay_id(2))
            .await
            .unwrap()
            .unwrap()
            .description,
        fancy.description
    );
    assert_eq!(fancy_created.description, fancy.description);
}

async fn list_payments_applies_every_filter(db: TestDatabase) {
    let s = db.storage();
    // 1: pending 0708…, INV-A; 2: completed 0711…, INV-B with receipt; 3: failed, held for review;
    // 4: initiated, reference "50%_off"; 5: created a day later.
    let mut p = new_payment(&pay_id(1), T0);
    p.reference = "INV-A".into();
    create(&*s, p).await;
    set(&*s, &pay_id(1), T0 + 1, accepted("ws_CO_1")).await;

    let mut p = new_payment(&pay_id(2), T0 + 1_000);
    p.phone = phone("0711000000");
    p.reference = "INV-B".into();
    create(&*s, p).await;
    set(&*s, &pay_id(2), T0 + 2, accepted("ws_CO_2")).await;
    set(&*s, &pay_id(2), T0 + 3, completed("RCPT0002")).await;

    create(&*s, new_payment(&pay_id(3), T0 + 2_000)).await;
    let mut held = transition(TransitionKind::Callback, PaymentStatus::Failed);
    held.review = ReviewChange::Hold(ReviewReason::PhoneMismatch);
    set(&*s, &pay_id(3), T0 + 4, held).await;

    let mut p = new_payment(&pay_id(4), T0 + 3_000);
    p.reference = "50%_off".into();
    create(&*s, p).await;
    let mut p = new_payment(&pay_id(5), T0 + DAY);
    p.reference = "500ff".into();
    create(&*s, p).await;

    let ids = |filter: PaymentFilter| {
        let s = s.clone();
        async move {
            let page = s
                .list_payments(
                    &filter,
                    &PageRequest {
                        limit: 100,
                        cursor: None,
                    },
                )
                .await
                .unwrap();
            page.items.into_iter().map(|p| p.id).collect::<Vec<_>>()
        }
    };
    let all = ids(PaymentFilter::default()).await;
    assert_eq!(
        all,
        [pay_id(5), pay_id(4), pay_id(3), pay_id(2), pay_id(1)],
        "newest first"
    );
    let f = |f: fn(&mut PaymentFilter)| {
        let mut filter = PaymentFilter::default();
        f(&mut filter);
        filter
    };
    assert_eq!(
        ids(f(|f| f.status = Some(PaymentStatus::Completed))).await,
        [pay_id(2)]
    );
    assert_eq!(
        ids(f(|f| f.status = Some(PaymentStatus::Initiated))).await,
        [pay_id(5), pay_id(4)]
    );
    assert_eq!(
        ids(f(|f| f.phone = Some("254711000000".into()))).await,
        [pay_id(2)]
    );
    assert_eq!(
        ids(f(|f| f.reference = Some("INV-A".into()))).await,
        [pay_id(1)]
    );
    assert_eq!(
        ids(f(|f| f.receipt = Some("RCPT0002".into()))).await,
        [pay_id(2)]
    );
    assert_eq!(ids(f(|f| f.needs_review = Some(true))).await, [pay_id(3)]);
    assert_eq!(ids(f(|f| f.needs_review = Some(false))).await.len(), 4);
    assert_eq!(
        ids(f(|f| f.created_from = Some(T0 + 1_000))).await,
        [pay_id(5), pay_id(4), pay_id(3), pay_id(2)]
    );
    assert_eq!(
        ids(f(|f| f.created_to = Some(T0 + 1_000))).await,
        [pay_id(1)],
        "to is exclusive"
    );
    assert_eq!(
        ids(f(|f| {
            f.created_from = Some(T0 + 1_000);
            f.created_to = Some(T0 + 3_000);
        }))
        .await,
        [pay_id(3), pay_id(2)]
    );
    // Several filters at once are ANDed.
    assert_eq!(
        ids(f(|f| {
            f.status = Some(PaymentStatus::Initiated);
            f.reference = Some("500ff".into());
        }))
        .await,
        [pay_id(5)]
    );
    // Search: exact id, phone, receipt, CheckoutRequestID, reference, or a reference prefix.
    let search = |text: &'static str| {
        ids(PaymentFilter {
            search: Some(text.into()),
            ..Default::default()
        })
    };
    assert_eq!(search("pay_00000003").await, [pay_id(3)]);
    assert_eq!(search("254711000000").await, [pay_id(2)]);
    assert_eq!(search("RCPT0002").await, [pay_id(2)]);
    assert_eq!(search("ws_CO_1").await, [pay_id(1)]);
    assert_eq!(search("INV-").await, [pay_id(2), pay_id(1)]);
    // LIKE wildcards in the search are literal: "50%" matches "50%_off", not "500ff".
    assert_eq!(search("50%").await, [pay_id(4)]);
    assert_eq!(search("50_").await, Vec::<String>::new());
    assert_eq!(search("nothing-like-this").await, Vec::<String>::new());
}

async fn keyset_pagination_has_no_gaps_and_no_duplicates(db: TestDatabase) {
    let s = db.storage();
    for n in 1..=53 {
        create(&*s, new_payment(&pay_id(n), T0 + i64::from(n))).await;
        if n % 3 == 0 {
            set(&*s, &pay_id(n), T0 + 100, accepted(&format!("ws_CO_{n}"))).await;
        }
    }
    let walk = |filter: PaymentFilter, limit: u32| {
        let s = s.clone();
        async move {
            let mut seen = Vec::new();
            let mut cursor = None;
            let mut pages = 0;
            loop {
                let page = s
                    .list_payments(&filter, &PageRequest { limit, cursor })
                    .await
                    .unwrap();
                assert!(page.items.len() <= limit as usize);
                pages += 1;
                seen.extend(page.items.into_iter().map(|p| p.id));
                if pages == 1 {
                    // A payment created while someone pages does not shift later pages.
                    create(
                        &*s,
                        new_payment(&format!("pay_late_{limit}_{}", seen.len()), T0 + 1_000),
                    )
                    .await;
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            (seen, pages)
        }
    };
    let (seen, pages) = walk(PaymentFilter::default(), 10).await;
    let expected: Vec<String> = (1..=53).rev().map(pay_id).collect();
    assert_eq!(
        seen, expected,
        "every payment once, newest first, across pages"
    );
    assert_eq!(pages, 6);
    let (seen, _) = walk(
        PaymentFilter {
            status: Some(PaymentStatus::Pending),
            ..Default::default()
        },
        4,
    )
    .await;
    let expected: Vec<String> = (1..=53).rev().filter(|n| n % 3 == 0).map(pay_id).collect();
    assert_eq!(seen, expected);
    // An exact fit ends without an empty extra page.
    let page = s
        .list_payments(
            &PaymentFilter {
                status: Some(PaymentStatus::Pending),
                ..Default::default()
            },
            &PageRequest {
                limit: 17,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((page.items.len(), page.next_cursor), (17, None));
    let err = s
        .list_payments(
            &PaymentFilter::default(),
            &PageRequest {
                limit: 10,
                cursor: Some("pay_00000010".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidInput(_)), "{err:?}");
    // Limits are clamped, not refused.
    let page = s
        .list_payments(
            &PaymentFilter::default(),
            &PageRequest {
                limit: 0,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

async fn update_payment_applies_every_field(db: TestDatabase) {
    let s = db.storage();
    let id = pay_id(1);
    create(&*s, new_payment(&id, T0)).await;

    // A transition that sets every field it can, held for review, counted as a query.
    let mut t = transition(TransitionKind::Query, PaymentStatus::Pending);
    t.checkout_request_id = Some("ws_CO_9".into());
    t.merchant_request_id = Some("29115-34620561-1".into());
    t.result_code = Some(ResultCode::from("4999"));
    t.result_desc = Some("still processing".into());
    t.mpesa_receipt_number = Some("RCPT0001".into());
    t.transaction_date_ms = Some(T0 + 5);
    t.review = ReviewChange::Hold(ReviewReason::AmountMissing);
    let mut update = PaymentUpdate::new(Some(t));
    update.count_query = true;
    update.schedule = CheckSchedule::At(T0 + 90_000);
    update.event = Some(r#"{"code":"4999"}"#.into());
    update.outbox = vec![
        outbox_event("evt_1", Some(&id), "alert:1", T0 + 10),
        outbox_event("evt_2", Some(&id), "alert:2", T0 + 10),
    ];
    let (written, applied) = apply(&*s, &id, T0 + 10, update.clone()).await;
    assert_eq!(applied, update);
    assert_eq!(
        s.get_payment(&id).await.unwrap().as_ref(),
        Some(&written),
        "what is returned is what is stored"
    );
    assert_eq!(written.status, PaymentStatus::Pending);
    assert_eq!(written.checkout_request_id.as_deref(), Some("ws_CO_9"));
    assert_eq!(
        written.merchant_request_id.as_deref(),
        Some("29115-34620561-1")
    );
    assert_eq!(written.result_code.as_deref(), Some("4999"));
    assert_eq!(written.result_desc.as_deref(), Some("still processing"));
    assert_eq!(written.mpesa_receipt_number.as_deref(), Some("RCPT0001"));
    assert_eq!(written.transaction_date, Some(T0 + 5));
    assert!(written.needs_review);
    assert_eq!(
        written.review_reason,
        Some(ReviewReason::AmountMissing.describe())
    );
    assert_eq!(written.query_attempts, 1);
    assert_eq!(written.next_check_at, Some(T0 + 90_000));
    assert_eq!(
        (written.updated_at, written.version, written.finalized_at),
        (T0 + 10, 2, None)
    );

    // Fields a transition leaves `None` keep their value; a final state sets finalized_at once.
    let mut t = transition(TransitionKind::Callback, PaymentStatus::Completed);
    t.review = ReviewChange::Clear;
    let mut update = PaymentUpdate::new(Some(t));
    update.schedule = CheckSchedule::Clear;
    update.event = Some("{}".into());
    // evt_3 repeats evt_1's dedupe key: skipped.
    update.outbox = vec![
        outbox_event("evt_3", Some(&id), "alert:1", T0 + 20),
        outbox_event("evt_4", Some(&id), "done", T0 + 20),
    ];
    let (done, _) = apply(&*s, &id, T0 + 20, update).await;
    assert_eq!(done.status, PaymentStatus::Completed);
    assert_eq!(done.mpesa_receipt_number.as_deref(), Some("RCPT0001"));
    assert_eq!(done.checkout_request_id.as_deref(), Some("ws_CO_9"));
    assert!(!done.needs_review);
    assert_eq!(done.review_reason, None);
    assert_eq!(done.next_check_at, None);
    assert_eq!(done.query_attempts, 1);
    assert_eq!(
        (done.finalized_at, done.version, done.completed_at()),
        (Some(T0 + 20), 3, Some(T0 + 20))
    );

    let (later, _) = apply(
        &*s,
        &id,
        T0 + 30,
        PaymentUpdate::new(Some(transition(
            TransitionKind::AdminRejected,
            PaymentStatus::Failed,
        ))),
    )
    .await;
    assert_eq!(
        (later.finalized_at, later.version, later.updated_at),
        (Some(T0 + 20), 4, T0 + 30),
        "finalized once"
    );
    assert_eq!(s.get_payment(&id).await.unwrap(), Some(later));

    let events: Vec<_> = s
        .payment_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.at, e.detail))
        .collect();
    assert_eq!(
        events,
        [
            ("created".into(), T0, r#"{"source":"api"}"#.into()),
            ("query".into(), T0 + 10, r#"{"code":"4999"}"#.into()),
            ("callback".into(), T0 + 20, "{}".into()),
        ],
        "an update without an event adds no timeline row"
    );
    let outbox: Vec<_> = s
        .outbox_for_payment(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.dedupe_key))
        .collect();
    assert_eq!(
        outbox,
        [
            ("evt_1".into(), "alert:1".into()),
            ("evt_2".into(), "alert:2".into()),
            ("evt_4".into(), "done".into())
        ]
    );

    // A receipt another payment holds is refused, and nothing of that update is written.
    create(&*s, new_payment(&pay_id(2), T0)).await;
    let mut update = PaymentUpdate::new(Some(completed("RCPT0001")));
    update.event = Some("{}".into());
    update.outbox = vec![outbox_event("evt_5", Some(&pay_id(2)), "never", T0)];
    let err = s
        .update_payment(&pay_id(2), T0 + 40, &move |_| Some(update.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Conflict(rule) if rule == "payments.mpesa_receipt_number"),
        "{err:?}"
    );
    let untouched = s.get_payment(&pay_id(2)).await.unwrap().unwrap();
    assert_eq!(
        (untouched.status, untouched.version),
        (PaymentStatus::Initiated, 1)
    );
    assert_eq!(s.payment_events(&pay_id(2)).await.unwrap().len(), 1);
    assert_eq!(s.get_outbox_event("evt_5").await.unwrap(), None);
}

async fn update_payment_writes_nothing_when_decide_declines(db: TestDatabase) {
    let s = db.storage();
    let id = pay_id(1);
    let before = create(&*s, new_payment(&id, T0)).await;
    let seen = AtomicUsize::new(0);
    let decline = |p: &Payment| {
        assert_eq!(p.id, pay_id(1));
        seen.fetch_add(1, Ordering::SeqCst);
        None
    };
    assert_eq!(s.update_payment(&id, T0 + 1, &decline).await.unwrap(), None);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(s.get_payment(&id).await.unwrap(), Some(before));
    let err = s
        .update_payment("pay_missing", T0, &|_| Some(PaymentUpdate::new(None)))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "{err:?}");
    // No transition, but bookkeeping: the next check time and the query count move.
    let mut update = PaymentUpdate::new(None);
    update.count_query = true;
    update.schedule = CheckSchedule::At(T0 + 5_000);
    let (p, _) = apply(&*s, &id, T0 + 2, update).await;
    assert_eq!(
        (p.status, p.query_attempts, p.next_check_at, p.version),
        (PaymentStatus::Initiated, 1, Some(T0 + 5_000), 2)
    );
}

async fn idempotency_keys_replay_wait_or_refuse(db: TestDatabase) {
    let s = db.storage();
    let first = s
        .create_payment(
            new_payment(&pay_id(1), T0),
            Some(claim("key_1", "idem-1", "hash-a")),
        )
        .await
        .unwrap();
    assert!(
        matches!(&first, CreatePaymentResult::Created(p) if p.id == pay_id(1)),
        "{first:?}"
    );
    // Same key, same body, no answer saved yet: the first request is still running.
    let again = s
        .create_payment(
            new_payment(&pay_id(2), T0),
            Some(claim("key_1", "idem-1", "hash-a")),
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        CreatePaymentResult::InProgress {
            payment_id: pay_id(1)
        }
    );
    // Same key, other body.
    let reused = s
        .create_payment(
            new_payment(&pay_id(3), T0),
            Some(claim("key_1", "idem-1", "hash-b")),
        )
        .await
        .unwrap();
    assert_eq!(reused, CreatePaymentResult::KeyReused);
    // The answer is saved: a retry gets it again.
    let answer = StoredResponse {
        status: 201,
        body: r#"{"id":"pay_00000001"}"#.into(),
    };
    s.save_idempotent_response("key_1", "idem-1", &answer)
        .await
        .unwrap();
    let replay = s
        .create_payment(
            new_payment(&pay_id(4), T0),
            Some(claim("key_1", "idem-1", "hash-a")),
        )
        .await
        .unwrap();
    assert_eq!(replay, CreatePaymentResult::Replay(answer.clone()));
    // The first answer kept is the answer: a concurrent retry's, kept later, does not replace it.
    s.save_idempotent_response(
        "key_1",
        "idem-1",
        &StoredResponse {
            status: 201,
            body: r#"{"id":"pay_00000001","status":"completed"}"#.into(),
        },
    )
    .await
    .unwrap();
    let replay = s
        .create_payment(
            new_payment(&pay_id(4), T0),
            Some(claim("key_1", "idem-1", "hash-a")),
        )
        .await
        .unwrap();
    assert_eq!(replay, CreatePaymentResult::Replay(answer));
    // Keys belong to an API key: another one may use the same text.
    let other = s
        .create_payment(
            new_payment(&pay_id(5), T0),
            Some(claim("key_2", "idem-1", "hash-a")),
        )
        .await
        .unwrap();
    assert!(matches!(other, CreatePaymentResult::Created(_)));
    let ids: Vec<_> = list_all(&*s).await.into_iter().map(|p| p.id).collect();
    assert_eq!(ids, [pay_id(5), pay_id(1)], "no payment for the replays");
    let err = s
        .save_idempotent_response(
            "key_1",
            "never-claimed",
            &StoredResponse {
                status: 200,
                body: "{}".into(),
            },
        )
        .await;
    assert!(matches!(err, Err(StorageError::NotFound)), "{err:?}");
    let err = s
        .create_payment(
            new_payment(&pay_id(6), T0),
            Some(claim("key_1", &"k".repeat(256), "h")),
        )
        .await;
    assert!(matches!(err, Err(StorageError::InvalidInput(_))), "{err:?}");
}

async fn concurrent_identical_creates_make_one_payment(db: TestDatabase) {
    let instances = [db.storage(), db.connect_another().await];
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..20u32 {
        let s = instances[n as usize % 2].clone();
        tasks.spawn(async move {
            s.create_payment(
                new_payment(&pay_id(n), T0),
                Some(claim("key_1", "same-key", "same-hash")),
            )
            .await
            .unwrap()
        });
    }
    let results = tasks.join_all().await;
    let created: Vec<_> = results
        .iter()
        .filter_map(|r| match r {
            CreatePaymentResult::Created(p) => Some(p.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "{results:?}");
    for r in &results {
        match r {
            CreatePaymentResult::Created(_) => {}
            CreatePaymentResult::InProgress { payment_id } => assert_eq!(payment_id, &created[0]),
            other => panic!("unexpected {other:?}"),
        }
    }
    let stored = list_all(&*instances[0]).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, created[0]);
}

// ---- callbacks ----------------------------------------------------------------------------------

/// The fast path (no item fails): many payments, duplicates of one, a success for an unknown id
/// and garbage in one batch, each payment written once with its timeline and outbox rows.
async fn callback_batch_without_a_failure_applies_each_payment_once(db: TestDatabase) {
    let s = db.storage();
    let checkouts = ["ws_CO_D", "ws_CO_A", "ws_CO_C", "ws_CO_B"];
    for (n, checkout) in checkouts.iter().enumerate() {
        create(&*s, new_payment(&pay_id(n as u32 + 1), T0)).await;
        set(&*s, &pay_id(n as u32 + 1), T0 + 1, accepted(checkout)).await;
    }
    let mut batch = vec![
        stk_callback("cb_1", "ws_CO_A", &success_report("RCPT_A")),
        unparseable_callback("cb_2"),
        stk_callback("cb_3", "ws_CO_UNKNOWN", &success_report("RCPT_U")),
    ];
    for (n, checkout) in checkouts.iter().enumerate() {
        batch.push(stk_callback(
            &format!("cb_{}", n + 4),
            checkout,
            &success_report(&format!("RCPT_{checkout}")),
        ));
    }
    let results = s.ingest_callbacks(&batch, T0 + 100, &decide).await.unwrap();
    let outcomes: Vec<_> = results
        .iter()
        .map(|r| {
            let r = r.as_ref().unwrap();
            (r.callback_id.as_str(), r.outcome)
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("cb_1", CallbackOutcome::Applied),
            ("cb_2", CallbackOutcome::Unparseable),
            ("cb_3", CallbackOutcome::Unmatched),
            ("cb_4", CallbackOutcome::Applied),
            // ws_CO_A again, with another receipt: it contradicts the settled payment.
            ("cb_5", CallbackOutcome::HeldForReview),
            ("cb_6", CallbackOutcome::Applied),
            ("cb_7", CallbackOutcome::Applied),
        ],
        "results in the batch's order; the second callback for A saw the first's result"
    );
    for (n, checkout) in checkouts.iter().enumerate() {
        let id = pay_id(n as u32 + 1);
        let stored = s.get_payment(&id).await.unwrap().unwrap();
        assert_eq!(stored.status, PaymentStatus::Completed, "{checkout}");
        let returned = results
            .iter()
            .filter_map(|r| r.as_ref().unwrap().payment.as_ref())
            .rfind(|p| p.id == id)
            .unwrap();
        assert_eq!(&stored, returned, "what was written is what was returned");
        let outbox: Vec<_> = s
            .outbox_for_payment(&id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(outbox, ["payment.completed"], "{checkout}");
    }
    let a = s.get_payment(&pay_id(2)).await.unwrap().unwrap();
    assert_eq!(a.mpesa_receipt_number.as_deref(), Some("RCPT_A"));
    assert!(
        a.needs_review,
        "held for review by the contradicting callback"
    );
    let timeline: Vec<_> = s
        .payment_events(&pay_id(2))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.at == T0 + 100)
        .map(|e| e.kind)
        .collect();
    assert_eq!(timeline.len(), 2, "one entry per change: {timeline:?}");
    for n in 1..=7 {
        assert!(s.get_callback(&format!("cb_{n}")).await.unwrap().is_some());
    }
}

/// A batch writes its payments in one statement that leaves out the CheckoutRequestID they were
/// found by (naming it would rewrite its unique index for nothing). A decision that did change
/// it must still be written: the batch then takes the path that writes every column.
async fn a_callback_batch_that_changes_a_checkout_request_id_still_writes_it(db: TestDatabase) {
    let s = db.storage();
    for (n, checkout) in [(1, "ws_CO_X"), (2, "ws_CO_Y")] {
        create(&*s, new_payment(&pay_id(n), T0)).await;
        set(&*s, &pay_id(n), T0 + 1, accepted(checkout)).await;
    }
    let batch = [
        stk_callback("cb_x", "ws_CO_X", &success_report("RCPT_X")),
        stk_callback("cb_y", "ws_CO_Y", &success_report("RCPT_Y")),
    ];
    let moves_the_id = |item: &IncomingCallback, payment: Option<&Payment>| {
        let mut decision = decide(item, payment);
        if let Some(t) = decision.update.as_mut().and_then(|u| u.transition.as_mut()) {
            t.checkout_request_id = item.checkout_request_id.as_ref().map(|c| format!("{c}_2"));
        }
        decision
    };
    let results = s
        .ingest_callbacks(&batch, T0 + 100, &moves_the_id)
        .await
        .unwrap();
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap().outcome == CallbackOutcome::Applied)
    );
    for (n, checkout) in [(1, "ws_CO_X_2"), (2, "ws_CO_Y_2")] {
        let stored = s.get_payment(&pay_id(n)).await.unwrap().unwrap();
        assert_eq!(stored.status, PaymentStatus::Completed);
        assert_eq!(stored.checkout_request_id.as_deref(), Some(checkout));
    }
}

async fn callback_batch_stores_everything_and_isolates_a_failing_item(db: TestDatabase) {
    let s = db.storage();
    // A: pending, waiting for its callback. B: pending, but its success will carry a receipt
    // that C already holds (the receipt UNIQUE refuses it). C: completed.
    for (n, checkout) in [(1, "ws_CO_A"), (2, "ws_CO_B"), (3, "ws_CO_C")] {
        create(&*s, new_payment(&pay_id(n), T0)).await;
        set(&*s, &pay_id(n), T0 + 1, accepted(checkout)).await;
    }
    set(&*s, &pay_id(3), T0 + 2, completed("RCPT_TAKEN")).await;
    let b_before = s.get_payment(&pay_id(2)).await.unwrap().unwrap();

    let long_id = "x".repeat(300);
    let batch = vec![
        stk_callback("cb_1", "ws_CO_A", &success_report("RCPT_A")),
        stk_callback("cb_2", "ws_CO_UNKNOWN", &success_report("RCPT_U")),
        unparseable_callback("cb_3"),
        stk_callback("cb_4", "ws_CO_A", &success_report("RCPT_A")),
        stk_callback("cb_5", "ws_CO_B", &success_report("RCPT_TAKEN")),
        stk_callback("cb_6", &long_id, &success_report("RCPT_L")),
    ];
    let results = s.ingest_callbacks(&batch, T0 + 100, &decide).await.unwrap();
    assert_eq!(results.len(), 6);
    let outcomes: Vec<_> = results
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|i| (i.callback_id.as_str(), i.outcome))
                .map_err(|e| e.to_string())
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            Ok(("cb_1", CallbackOutcome::Applied)),
            Ok(("cb_2", CallbackOutcome::Unmatched)),
            Ok(("cb_3", CallbackOutcome::Unparseable)),
            Ok(("cb_4", CallbackOutcome::Duplicate)),
            Err("conflict: payments.mpesa_receipt_number".into()),
            Ok(("cb_6", CallbackOutcome::Unmatched)),
        ],
        "results in the batch's order"
    );
    let applied = results[0].as_ref().unwrap();
    let a = applied.payment.as_ref().unwrap();
    assert_eq!(
        (a.id.as_str(), a.status, a.mpesa_receipt_number.as_deref()),
        (pay_id(1).as_str(), PaymentStatus::Completed, Some("RCPT_A"))
    );
    assert!(applied.update.is_some());
    let dup = results[3].as_ref().unwrap();
    assert_eq!(dup.update, None);
    assert_eq!(
        dup.payment.as_ref().map(|p| p.version),
        Some(a.version),
        "the duplicate saw the applied row"
    );
    assert_eq!(s.get_payment(&pay_id(1)).await.unwrap().as_ref(), Some(a));

    // Every raw body is stored, duplicates and garbage included; the failed item is not.
    for (id, outcome, payment_id) in [
        ("cb_1", CallbackOutcome::Applied, Some(pay_id(1))),
        ("cb_2", CallbackOutcome::Unmatched, None),
        ("cb_3", CallbackOutcome::Unparseable, None),
        ("cb_4", CallbackOutcome::Duplicate, Some(pay_id(1))),
        ("cb_6", CallbackOutcome::Unmatched, None),
    ] {
        let stored = s
            .get_callback(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} stored"));
        assert_eq!(
            (stored.outcome, stored.payment_id),
            (outcome, payment_id),
            "{id}"
        );
    }
    let garbage = s.get_callback("cb_3").await.unwrap().unwrap();
    assert_eq!(
        garbage.body,
        b"\xff\xfe not json {".to_vec(),
        "bytes kept exactly"
    );
    assert_eq!(
        garbage.error.as_deref(),
        Some("expected value at line 1 column 1")
    );
    assert_eq!(garbage.remote_addr.as_deref(), Some("196.201.214.200"));
    assert_eq!(garbage.headers, r#"{"content-type":"application/json"}"#);
    let first = s.get_callback("cb_1").await.unwrap().unwrap();
    assert_eq!(
        (
            first.kind,
            first.received_at,
            first.checkout_request_id.as_deref()
        ),
        (CallbackKind::Stk, T0 + 50, Some("ws_CO_A"))
    );
    assert_eq!(
        s.get_callback("cb_6")
            .await
            .unwrap()
            .unwrap()
            .checkout_request_id,
        None,
        "an impossible id is not indexed"
    );
    assert_eq!(
        s.get_callback("cb_5").await.unwrap(),
        None,
        "the failed item is rolled back alone"
    );
    assert_eq!(
        s.get_payment(&pay_id(2)).await.unwrap(),
        Some(b_before),
        "B is untouched"
    );
    assert!(s.outbox_for_payment(&pay_id(2)).await.unwrap().is_empty());
    // Exactly one set of outbox rows for A, though two callbacks named it.
    let outbox: Vec<_> = s
        .outbox_for_payment(&pay_id(1))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(outbox, ["payment.completed"]);
    // The unmatched success raised its alert (an outbox row with no payment).
    let alerts = s
        .list_outbox(&OutboxFilter::default(), &PageRequest::default())
        .await
        .unwrap()
        .items;
    assert!(
        alerts
            .iter()
            .any(|e| e.dedupe_key == "unmatched:cb_2" && e.payment_id.is_none()),
        "{alerts:?}"
    );
    let by_payment: Vec<_> = s
        .callbacks_for_payment(&pay_id(1))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(by_payment, ["cb_1", "cb_4"]);
    let unmatched = s
        .list_callbacks(
            &CallbackFilter {
                outcome: Some(CallbackOutcome::Unmatched),
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        unmatched
            .items
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["cb_6", "cb_2"]
    );
    let all = s
        .list_callbacks(
            &CallbackFilter::default(),
            &PageRequest {
                limit: 2,
                cursor: None,
            },
        )
        .await
        .unwrap();
    let rest = s
        .list_callbacks(
            &CallbackFilter::default(),
            &PageRequest {
                limit: 10,
                cursor: all.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 3);
    assert_eq!(rest.next_cursor, None);
    let for_a = s
        .list_callbacks(
            &CallbackFilter {
                payment_id: Some(pay_id(1)),
                kind: Some(CallbackKind::Stk),
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(for_a.items.len(), 2);
    assert!(
        s.ingest_callbacks(&[], T0, &decide)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn unmatched_callbacks_are_rematched_once(db: TestDatabase) {
    let s = db.storage();
    create(&*s, new_payment(&pay_id(1), T0)).await;
    // The callback arrives before the push's answer was recorded.
    let results = s
        .ingest_callbacks(
            &[stk_callback(
                "cb_early",
                "ws_CO_LATE",
                &success_report("RCPT_E"),
            )],
            T0 + 5,
            &decide,
        )
        .await
        .unwrap();
    assert_eq!(
        results[0].as_ref().unwrap().outcome,
        CallbackOutcome::Unmatched
    );
    assert!(
        s.rematchable_callbacks(10).await.unwrap().is_empty(),
        "no payment has that id yet"
    );
    set(&*s, &pay_id(1), T0 + 6, accepted("ws_CO_LATE")).await;
    let rematchable: Vec<_> = s
        .rematchable_callbacks(10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(rematchable, ["cb_early"]);

    let calls = Arc::new(AtomicUsize::new(0));
    let counting = {
        let calls = calls.clone();
        move |cb: &IncomingCallback, p: Option<&Payment>| {
            calls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(cb.id, "cb_early");
            assert_eq!(
                cb.body,
                serde_json::to_vec(&success_report("RCPT_E")).unwrap(),
                "the stored body"
            );
            decide(cb, p)
        }
    };
    // Two instances reapply at once: one applies, the other finds it applied.
    let other = db.connect_another().await;
    let (a, b) = tokio::join!(
        s.reapply_callback("cb_early", T0 + 7, &counting),
        other.reapply_callback("cb_early", T0 + 7, &counting)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        (a.outcome, b.outcome),
        (CallbackOutcome::Applied, CallbackOutcome::Applied)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "decided once");
    assert_eq!(
        [a.update.is_some(), b.update.is_some()]
            .iter()
            .filter(|x| **x)
            .count(),
        1
    );
    let paid = s.get_payment(&pay_id(1)).await.unwrap().unwrap();
    assert_eq!(
        (paid.status, paid.mpesa_receipt_number.as_deref()),
        (PaymentStatus::Completed, Some("RCPT_E"))
    );
    let stored = s.get_callback("cb_early").await.unwrap().unwrap();
    assert_eq!(
        (stored.outcome, stored.payment_id),
        (CallbackOutcome::Applied, Some(pay_id(1)))
    );
    assert!(s.rematchable_callbacks(10).await.unwrap().is_empty());
    assert_eq!(s.outbox_for_payment(&pay_id(1)).await.unwrap().len(), 1);
    let err = s
        .reapply_callback("cb_missing", T0, &decide)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "{err:?}");
}

async fn concurrent_duplicate_callbacks_apply_once(db: TestDatabase) {
    let instances = [db.storage(), db.connect_another().await];
    create(&*instances[0], new_payment(&pay_id(1), T0)).await;
    set(&*instances[0], &pay_id(1), T0 + 1, accepted("ws_CO_DUP")).await;
    let report = success_report("RCPT_DUP");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200 {
        let s = instances[n % 2].clone();
        let item = stk_callback(&format!("cb_{n:03}"), "ws_CO_DUP", &report);
        tasks.spawn(async move {
            s.ingest_callbacks(&[item], T0 + 10, &decide)
                .await
                .unwrap()
                .remove(0)
                .unwrap()
                .outcome
        });
    }
    let mut outcomes: HashMap<CallbackOutcome, usize> = HashMap::new();
    for outcome in tasks.join_all().await {
        *outcomes.entry(outcome).or_default() += 1;
    }
    assert_eq!(
        outcomes,
        HashMap::from([
            (CallbackOutcome::Applied, 1),
            (CallbackOutcome::Duplicate, 199)
        ])
    );
    let s = &instances[0];
    let p = s.get_payment(&pay_id(1)).await.unwrap().unwrap();
    assert_eq!(
        (p.status, p.version),
        (PaymentStatus::Completed, 3),
        "changed exactly once"
    );
    assert_eq!(
        s.outbox_for_payment(&pay_id(1)).await.unwrap().len(),
        1,
        "one set of outbox rows"
    );
    assert_eq!(
        s.callbacks_for_payment(&pay_id(1)).await.unwrap().len(),
        200,
        "every raw callback kept"
    );
    let kinds: Vec<_> = s
        .payment_events(&pay_id(1))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["created", "push_accepted", "callback"]);
}

// ---- reconciler and outbox claims ---------------------------------------------------------------

async fn claims_from_two_instances_never_overlap(db: TestDatabase) {
    let instances = [db.storage(), db.connect_another().await];
    let s = &instances[0];
    for n in 0..40 {
        let mut p = new_payment(&pay_id(n), T0);
        p.next_check_at = T0 + i64::from(n % 7);
        create(&**s, p).await;
    }
    // Not due, and final: never claimed.
    let mut later = new_payment(&pay_id(100), T0);
    later.next_check_at = T0 + 1_000_000;
    create(&**s, later).await;
    let mut done = new_payment(&pay_id(101), T0);
    done.next_check_at = T0;
    create(&**s, done).await;
    set(
        &**s,
        &pay_id(101),
        T0,
        transition(TransitionKind::Expired, PaymentStatus::TimedOut),
    )
    .await;
    s.enqueue_outbox(
        (0..40)
            .map(|n| {
                outbox_event(
                    &format!("evt_{n:03}"),
                    None,
                    &format!("k{n}"),
                    T0 + i64::from(n % 5),
                )
            })
            .collect(),
    )
    .await
    .unwrap();
    s.enqueue_outbox(vec![outbox_event(
        "evt_future",
        None,
        "future",
        T0 + 1_000_000,
    )])
    .await
    .unwrap();

    let now = T0 + 10;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let s = instances[worker % 2].clone();
        tasks.spawn(async move {
            let (mut checks, mut events) = (Vec::new(), Vec::new());
            loop {
                let c = s.claim_due_checks(now, now + 60_000, 3).await.unwrap();
                let o = s
                    .claim_outbox(now, &format!("worker-{worker}"), now + 60_000, 3)
                    .await
                    .unwrap();
                for e in &o {
                    assert_eq!(
                        (e.lease_owner.as_deref(), e.lease_until),
                        (
                            Some(format!("worker-{worker}").as_str()),
                            Some(now + 60_000)
                        )
                    );
                }
                if c.is_empty() && o.is_empty() {
                    break;
                }
                assert!(c.len() <= 3 && o.len() <= 3);
                assert!(c.iter().all(|p| p.next_check_at == Some(now + 60_000)));
                checks.extend(c.into_iter().map(|p| p.id));
                events.extend(o.into_iter().map(|e| e.id));
            }
            (checks, events)
        });
    }
    let (mut checks, mut events) = (Vec::new(), Vec::new());
    for (c, e) in tasks.join_all().await {
        checks.extend(c);
        events.extend(e);
    }
    let unique_checks: HashSet<_> = checks.iter().cloned().collect();
    let unique_events: HashSet<_> = events.iter().cloned().collect();
    assert_eq!(
        (checks.len(), unique_checks.len()),
        (40, 40),
        "each due payment handed out once"
    );
    assert_eq!(
        (events.len(), unique_events.len()),
        (40, 40),
        "each due event handed out once"
    );
    assert!(!unique_checks.contains(&pay_id(100)) && !unique_checks.contains(&pay_id(101)));
    assert!(!unique_events.contains("evt_future"));
    // The claim moved next_check_at (and is a write: version + 1).
    let p = s.get_payment(&pay_id(0)).await.unwrap().unwrap();
    assert_eq!((p.next_check_at, p.version), (Some(now + 60_000), 2));
}

async fn expired_leases_are_reclaimable_and_lost_leases_refused(db: TestDatabase) {
    let s = db.storage();
    create(&*s, new_payment(&pay_id(1), T0)).await; // next check at T0 + 60s
    let due = T0 + 60_000;
    assert!(
        s.claim_due_checks(due - 1, due + 30_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    assert_eq!(
        s.claim_due_checks(due, due + 30_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        s.claim_due_checks(due + 29_999, due + 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    assert_eq!(
        s.claim_due_checks(due + 30_000, due + 60_000, 10)
            .await
            .unwrap()
            .len(),
        1,
        "lease expired"
    );

    s.enqueue_outbox(vec![outbox_event("evt_1", None, "k1", T0)])
        .await
        .unwrap();
    assert_eq!(
        s.claim_outbox(T0, "worker-a", T0 + 10_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        s.claim_outbox(T0 + 9_999, "worker-b", T0 + 20_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "a's lease holds"
    );
    // worker-a died: once its lease expires, worker-b takes the event over.
    let taken = s
        .claim_outbox(T0 + 10_000, "worker-b", T0 + 20_000, 10)
        .await
        .unwrap();
    assert_eq!(taken[0].lease_owner.as_deref(), Some("worker-b"));
    // worker-a comes back with a result: its lease is lost, nothing is written.
    assert!(
        !s.record_delivery(
            "evt_1",
            "worker-a",
            &attempt(T0 + 10_500, DeliveryResult::Delivered)
        )
        .await
        .unwrap()
    );
    let e = s.get_outbox_event("evt_1").await.unwrap().unwrap();
    assert_eq!(
        (e.status, e.attempts, e.lease_owner.as_deref()),
        (OutboxStatus::Pending, 0, Some("worker-b"))
    );
    assert!(s.outbox_attempts("evt_1").await.unwrap().is_empty());
    assert!(
        s.record_delivery(
            "evt_1",
            "worker-b",
            &attempt(T0 + 11_000, DeliveryResult::Delivered)
        )
        .await
        .unwrap()
    );
    assert!(
        !s.record_delivery(
            "evt_1",
            "worker-b",
            &attempt(T0 + 12_000, DeliveryResult::Delivered)
        )
        .await
        .unwrap(),
        "once"
    );
    let err = s
        .record_delivery(
            "evt_missing",
            "worker-b",
            &attempt(T0, DeliveryResult::Delivered),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound), "{err:?}");
}

/// A call's events go in one statement: a dedupe key taken in the table, or earlier in the same
/// call, skips that row and keeps the others.
async fn outbox_rows_of_one_call_skip_taken_dedupe_keys(db: TestDatabase) {
    let s = db.storage();
    s.enqueue_outbox(vec![outbox_event("evt_1", None, "k1", T0)])
        .await
        .unwrap();
    s.enqueue_outbox(vec![
        outbox_event("evt_1b", None, "k1", T0),
        outbox_event("evt_2", None, "k2", T0 + 1),
        outbox_event("evt_2b", None, "k2", T0 + 2),
        outbox_event("evt_3", None, "k3", T0 + 3),
    ])
    .await
    .unwrap();
    let mut kept = Vec::new();
    for id in ["evt_1", "evt_1b", "evt_2", "evt_2b", "evt_3"] {
        if let Some(e) = s.get_outbox_event(id).await.unwrap() {
            kept.push((e.id, e.dedupe_key, e.next_attempt_at));
        }
    }
    assert_eq!(
        kept,
        [
            ("evt_1".into(), "k1".into(), T0),
            ("evt_2".into(), "k2".into(), T0 + 1),
            ("evt_3".into(), "k3".into(), T0 + 3),
        ]
    );
}

/// `record_deliveries` records each attempt as `record_delivery` would, in one call: each event
/// whose lease the worker still holds is written (numbering its attempts over its life), and an
/// event another worker took, or that does not exist, is refused alone.
async fn outbox_attempts_of_several_events_are_recorded_together(db: TestDatabase) {
    let s = db.storage();
    s.enqueue_outbox(vec![
        outbox_event("evt_a", None, "ka", T0),
        outbox_event("evt_b", None, "kb", T0),
        outbox_event("evt_c", None, "kc", T0),
        outbox_event("evt_d", None, "kd", T0 + 5),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.claim_outbox(T0, "worker-a", T0 + 10_000, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    let taken = s
        .claim_outbox(T0 + 5, "worker-b", T0 + 20_000, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, "evt_d");

    let mut failed = attempt(T0 + 100, DeliveryResult::RetryAt(T0 + 1_000));
    failed.response_code = Some(503);
    failed.error = Some("HTTP 503".into());
    let mut refused = attempt(T0 + 100, DeliveryResult::Dead);
    refused.response_code = Some(410);
    refused.error = Some("HTTP 410".into());
    let kept = s
        .record_deliveries(
            "worker-a",
            &[
                ("evt_c".into(), attempt(T0 + 100, DeliveryResult::Delivered)),
                ("evt_a".into(), failed),
                ("evt_d".into(), attempt(T0 + 100, DeliveryResult::Delivered)),
                ("evt_missing".into(), attempt(T0, DeliveryResult::Delivered)),
                ("evt_b".into(), refused),
            ],
        )
        .await
        .unwrap();
    assert_eq!(kept, [true, true, false, false, true]);

    let state = |e: OutboxEvent| {
        (
            e.status,
            e.attempts,
            e.next_attempt_at,
            e.delivered_at,
            e.last_error,
            e.lease_owner,
        )
    };
    let event = |id: &'static str| {
        let s = s.clone();
        async move { state(s.get_outbox_event(id).await.unwrap().unwrap()) }
    };
    assert_eq!(
        event("evt_a").await,
        (
            OutboxStatus::Pending,
            1,
            T0 + 1_000,
            None,
            Some("HTTP 503".into()),
            None
        )
    );
    assert_eq!(
        event("evt_b").await,
        (
            OutboxStatus::Dead,
            1,
            T0,
            None,
            Some("HTTP 410".into()),
            None
        )
    );
    assert_eq!(
        event("evt_c").await,
        (OutboxStatus::Delivered, 1, T0, Some(T0 + 110), None, None)
    );
    // worker-b's event is as worker-b claimed it.
    assert_eq!(
        event("evt_d").await,
        (
            OutboxStatus::Pending,
            0,
            T0 + 5,
            None,
            None,
            Some("worker-b".into())
        )
    );
    assert!(s.outbox_attempts("evt_d").await.unwrap().is_empty());
    let attempts = |id: &'static str| {
        let s = s.clone();
        async move {
            s.outbox_attempts(id)
                .await
                .unwrap()
                .into_iter()
                .map(|a| (a.attempt, a.result, a.response_code))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(attempts("evt_a").await, [(1, "failed".into(), Some(503))]);
    assert_eq!(attempts("evt_b").await, [(1, "dead".into(), Some(410))]);
    assert_eq!(attempts("evt_c").await, [(1, "delivered".into(), None)]);

    // The retry is claimed again and delivered: its attempts are numbered on.
    assert_eq!(
        s.claim_outbox(T0 + 1_000, "worker-a", T0 + 30_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let kept = s
        .record_deliveries(
            "worker-a",
            &[(
                "evt_a".into(),
                attempt(T0 + 1_000, DeliveryResult::Delivered),
            )],
        )
        .await
        .unwrap();
    assert_eq!(kept, [true]);
    assert_eq!(
        attempts("evt_a").await,
        [
            (1, "failed".into(), Some(503)),
            (2, "delivered".into(), None)
        ]
    );
    assert!(
        s.record_deliveries("worker-a", &[])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn outbox_deliveries_retries_and_dead_letters(db: TestDatabase) {
    let s = db.storage();
    s.enqueue_outbox(vec![outbox_event("evt_1", None, "k1", T0)])
        .await
        .unwrap();
    // The same dedupe key again (another id) is skipped, not an error.
    s.enqueue_outbox(vec![outbox_event("evt_1b", None, "k1", T0)])
        .await
        .unwrap();
    assert_eq!(s.get_outbox_event("evt_1b").await.unwrap(), None);
    let fresh = s.get_outbox_event("evt_1").await.unwrap().unwrap();
    assert_eq!(
        (
            fresh.status,
            fresh.attempts,
            fresh.next_attempt_at,
            fresh.channel
        ),
        (OutboxStatus::Pending, 0, T0, Channel::Webhook)
    );
    assert_eq!(fresh.payload, r#"{"type":"payment.completed"}"#);

    let owner = "worker";
    s.claim_outbox(T0, owner, T0 + 30_000, 1).await.unwrap();
    let mut failed = attempt(T0 + 1, DeliveryResult::RetryAt(T0 + 5_000));
    failed.response_code = Some(503);
    failed.error = Some("HTTP 503".into());
    assert!(s.record_delivery("evt_1", owner, &failed).await.unwrap());
    let e = s.get_outbox_event("evt_1").await.unwrap().unwrap();
    assert_eq!(
        (e.status, e.attempts, e.next_attempt_at),
        (OutboxStatus::Pending, 1, T0 + 5_000)
    );
    assert_eq!(
        (e.lease_owner, e.lease_until, e.last_error.as_deref()),
        (None, None, Some("HTTP 503"))
    );
    assert!(
        s.claim_outbox(T0 + 4_999, owner, T0 + 60_000, 1)
            .await
            .unwrap()
            .is_empty(),
        "not before its retry time"
    );
    assert_eq!(
        s.claim_outbox(T0 + 5_000, owner, T0 + 60_000, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        s.record_delivery("evt_1", owner, &attempt(T0 + 5_001, DeliveryResult::Dead))
            .await
            .unwrap()
    );
    let e = s.get_outbox_event("evt_1").await.unwrap().unwrap();
    assert_eq!((e.status, e.attempts), (OutboxStatus::Dead, 2));
    assert!(
        s.claim_outbox(T0 + 999_999, owner, T0 + 1_999_999, 1)
            .await
            .unwrap()
            .is_empty(),
        "dead is not claimed"
    );

    // A person puts it back: due now, with a full retry schedule.
    assert!(s.retry_outbox_event("evt_1", T0 + 100_000).await.unwrap());
    assert!(
        !s.retry_outbox_event("evt_1", T0 + 100_000).await.unwrap(),
        "only dead or blocked events"
    );
    let e = s.get_outbox_event("evt_1").await.unwrap().unwrap();
    assert_eq!(
        (e.status, e.attempts, e.next_attempt_at),
        (OutboxStatus::Pending, 0, T0 + 100_000)
    );
    s.claim_outbox(T0 + 100_000, owner, T0 + 130_000, 1)
        .await
        .unwrap();
    let mut ok = attempt(T0 + 100_010, DeliveryResult::Delivered);
    ok.duration_ms = 25;
    ok.response_code = Some(200);
    assert!(s.record_delivery("evt_1", owner, &ok).await.unwrap());
    let e = s.get_outbox_event("evt_1").await.unwrap().unwrap();
    assert_eq!(
        (e.status, e.attempts, e.delivered_at, e.last_error),
        (OutboxStatus::Delivered, 1, Some(T0 + 100_035), None)
    );
    assert!(
        !s.retry_outbox_event("evt_1", T0).await.unwrap(),
        "a delivered event is not retried"
    );
    let log: Vec<_> = s
        .outbox_attempts("evt_1")
        .await
        .unwrap()
        .into_iter()
        .map(|a| {
            (
                a.attempt,
                a.result,
                a.response_code,
                a.error,
                a.started_at,
                a.duration_ms,
            )
        })
        .collect();
    assert_eq!(
        log,
        [
            (
                1,
                "failed".into(),
                Some(503),
                Some("HTTP 503".into()),
                T0 + 1,
                10
            ),
            (2, "dead".into(), None, None, T0 + 5_001, 10),
            (3, "delivered".into(), Some(200), None, T0 + 100_010, 25),
        ]
    );

    s.enqueue_outbox(vec![outbox_event("evt_2", None, "k2", T0)])
        .await
        .unwrap();
    s.claim_outbox(T0, owner, T0 + 1_000, 1).await.unwrap();
    assert!(
        s.record_delivery("evt_2", owner, &attempt(T0, DeliveryResult::Blocked))
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_outbox_event("evt_2").await.unwrap().unwrap().status,
        OutboxStatus::Blocked
    );
    assert!(
        s.retry_outbox_event("evt_2", T0 + 1).await.unwrap(),
        "blocked events can be retried too"
    );
}

async fn outbox_lists_and_counts(db: TestDatabase) {
    let s = db.storage();
    create(&*s, new_payment(&pay_id(1), T0)).await;
    let now = now_ms();
    let mut events: Vec<_> = (0..7)
        .map(|n| {
            outbox_event(
                &format!("evt_{n}"),
                Some(&pay_id(1)),
                &format!("k{n}"),
                now - 1_000 + n,
            )
        })
        .collect();
    events[5].channel = Channel::Email;
    events[6].channel = Channel::Telegram;
    events[6].created_at = now + 3_600_000; // not due yet
    s.enqueue_outbox(events).await.unwrap();
    for (id, result) in [
        ("evt_0", DeliveryResult::Delivered),
        ("evt_1", DeliveryResult::Dead),
        ("evt_2", DeliveryResult::Blocked),
    ] {
        let claimed = s.claim_outbox(now, "w", now + 1_000, 1).await.unwrap();
        assert_eq!(claimed[0].id, id, "oldest due first");
        assert!(
            s.record_delivery(id, "w", &attempt(now, result))
                .await
                .unwrap()
        );
    }
    let counts = s.outbox_counts().await.unwrap();
    assert_eq!(
        counts,
        OutboxCounts {
            pending: 4,
            delivered: 1,
            dead: 1,
            blocked: 1,
            due: 3
        }
    );
    let list = |filter: OutboxFilter| {
        let s = s.clone();
        async move {
            s.list_outbox(&filter, &PageRequest::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(OutboxFilter::default()).await,
        [
            "evt_6", "evt_5", "evt_4", "evt_3", "evt_2", "evt_1", "evt_0"
        ]
    );
    assert_eq!(
        list(OutboxFilter {
            status: Some(OutboxStatus::Dead),
            channel: None
        })
        .await,
        ["evt_1"]
    );
    assert_eq!(
        list(OutboxFilter {
            status: None,
            channel: Some(Channel::Email)
        })
        .await,
        ["evt_5"]
    );
    assert_eq!(
        list(OutboxFilter {
            status: Some(OutboxStatus::Pending),
            channel: Some(Channel::Webhook)
        })
        .await,
        ["evt_4", "evt_3"]
    );
    let first = s
        .list_outbox(
            &OutboxFilter::default(),
            &PageRequest {
                limit: 4,
                cursor: None,
            },
        )
        .await
        .unwrap();
    let second = s
        .list_outbox(
            &OutboxFilter::default(),
            &PageRequest {
                limit: 4,
                cursor: first.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (first.items.len(), second.items.len(), second.next_cursor),
        (4, 3, None)
    );
    assert_eq!(s.outbox_for_payment(&pay_id(1)).await.unwrap().len(), 7);
    assert_eq!(s.get_outbox_event("evt_missing").await.unwrap(), None);
}

// ---- API keys, admin, Telegram, settings, leases ------------------------------------------------

async fn api_keys(db: TestDatabase) {
    let s = db.storage();
    let key = |id: &str, name: &str, hash: &str| ApiKey {
        id: id.into(),
        name: name.into(),
        prefix: "mpk_live_ab".into(),
        hash: hash.into(),
        created_at: T0,
        revoked_at: None,
        last_used_at: None,
        // Made on the dashboard by amina (key_1), or with the command line.
        created_by: (id == "key_1").then(|| "admin:amina".to_owned()),
    };
    s.create_api_key(&key("key_1", "shop", "h1")).await.unwrap();
    s.create_api_key(&key("key_2", "bot", "h2")).await.unwrap();
    let err = s
        .create_api_key(&key("key_3", "shop", "h3"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Conflict(rule) if rule == "api_keys.name"),
        "{err:?}"
    );
    assert_eq!(
        s.find_api_key_by_hash("h1").await.unwrap(),
        Some(key("key_1", "shop", "h1"))
    );
    assert_eq!(s.find_api_key_by_hash("nope").await.unwrap(), None);
    let names: Vec<_> = s
        .list_api_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["shop", "bot"]);

    s.touch_api_key("key_1", T0 + 1_000).await.unwrap();
    assert_eq!(
        s.find_api_key_by_hash("h1")
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(T0 + 1_000)
    );
    s.touch_api_key("key_1", T0 + 2_000).await.unwrap();
    assert_eq!(
        s.find_api_key_by_hash("h1")
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(T0 + 1_000),
        "once a minute"
    );
    s.touch_api_key("key_1", T0 + 61_000).await.unwrap();
    assert_eq!(
        s.find_api_key_by_hash("h1")
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(T0 + 61_000)
    );

    assert!(s.revoke_api_key("shop", T0 + 5).await.unwrap(), "by name");
    assert!(
        !s.revoke_api_key("shop", T0 + 6).await.unwrap(),
        "already revoked"
    );
    assert_eq!(
        s.find_api_key_by_hash("h1").await.unwrap(),
        None,
        "a revoked key no longer authenticates"
    );
    assert!(s.revoke_api_key("key_2", T0 + 7).await.unwrap(), "by id");
    assert!(!s.revoke_api_key("nobody", T0).await.unwrap());
    let revoked: Vec<_> = s
        .list_api_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.revoked_at)
        .collect();
    assert_eq!(
        revoked,
        [Some(T0 + 5), Some(T0 + 7)],
        "listed with their revocation"
    );
}

async fn admin_users_and_sessions(db: TestDatabase) {
    let s = db.storage();
    let user = |id: &str, name: &str, hash: &str| AdminUser {
        id: id.into(),
        username: name.into(),
        password_hash: hash.into(),
        created_at: T0,
    };
    assert!(
        s.upsert_admin_user(&user("usr_1", "wanjiru", "$argon2id$a"))
            .await
            .unwrap(),
        "created"
    );
    assert!(
        !s.upsert_admin_user(&user("usr_2", "wanjiru", "$argon2id$b"))
            .await
            .unwrap(),
        "replaced"
    );
    assert_eq!(
        s.find_admin_user("wanjiru").await.unwrap(),
        Some(user("usr_1", "wanjiru", "$argon2id$b")),
        "same id, new password"
    );
    assert!(
        s.upsert_admin_user(&user("usr_3", "admin", "$argon2id$c"))
            .await
            .unwrap()
    );
    let names: Vec<_> = s
        .list_admin_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["admin", "wanjiru"]);
    assert_eq!(
        s.find_admin_user("Wanjiru").await.unwrap(),
        None,
        "usernames compare exactly"
    );

    let session = |token: &str, expires_at: Millis| AdminSession {
        token_hash: token.into(),
        user_id: "usr_1".into(),
        username: "wanjiru".into(),
        csrf_token: "csrf".into(),
        created_at: T0,
        expires_at,
    };
    s.create_session(&session("t1", T0 + 1_000)).await.unwrap();
    s.create_session(&session("t2", T0 + 5_000)).await.unwrap();
    s.create_session(&session("t3", T0 + 9_000)).await.unwrap();
    assert_eq!(
        s.find_session("t1", T0 + 999).await.unwrap(),
        Some(session("t1", T0 + 1_000))
    );
    assert_eq!(
        s.find_session("t1", T0 + 1_000).await.unwrap(),
        None,
        "expired at its expiry time"
    );
    s.delete_session("t3").await.unwrap();
    assert_eq!(s.find_session("t3", T0).await.unwrap(), None);
    assert_eq!(s.delete_expired_sessions(T0 + 5_000).await.unwrap(), 2);
    assert_eq!(s.delete_expired_sessions(T0 + 5_000).await.unwrap(), 0);
}

/// `admin create-user` for an existing user, `admin delete-user`, `admin sign-out-everywhere`.
async fn a_new_password_or_a_deletion_ends_every_session(db: TestDatabase) {
    let s = db.storage();
    let user = |id: &str, name: &str| AdminUser {
        id: id.into(),
        username: name.into(),
        password_hash: "$argon2id$a".into(),
        created_at: T0,
    };
    let session = |token: &str, user_id: &str, username: &str| AdminSession {
        token_hash: token.into(),
        user_id: user_id.into(),
        username: username.into(),
        csrf_token: "csrf".into(),
        created_at: T0,
        expires_at: T0 + 60_000,
    };
    s.upsert_admin_user(&user("usr_a", "amina")).await.unwrap();
    s.upsert_admin_user(&user("usr_b", "baraka")).await.unwrap();
    for (t, id, name) in [
        ("a1", "usr_a", "amina"),
        ("a2", "usr_a", "amina"),
        ("b1", "usr_b", "baraka"),
    ] {
        s.create_session(&session(t, id, name)).await.unwrap();
    }
    // A new password for amina: both her sessions end, baraka's stays.
    assert!(!s.upsert_admin_user(&user("usr_x", "amina")).await.unwrap());
    assert_eq!(s.find_session("a1", T0).await.unwrap(), None);
    assert_eq!(s.find_session("a2", T0).await.unwrap(), None);
    assert!(s.find_session("b1", T0).await.unwrap().is_some());
    // Signed out everywhere.
    s.create_session(&session("a3", "usr_a", "amina"))
        .await
        .unwrap();
    assert_eq!(s.delete_sessions_of("amina").await.unwrap(), 1);
    assert_eq!(s.find_session("a3", T0).await.unwrap(), None);
    assert_eq!(s.delete_sessions_of("nobody").await.unwrap(), 0);
    // Removed: the user and the sessions.
    assert!(s.delete_admin_user("baraka").await.unwrap());
    assert_eq!(s.find_session("b1", T0).await.unwrap(), None);
    assert_eq!(s.find_admin_user("baraka").await.unwrap(), None);
    assert!(!s.delete_admin_user("baraka").await.unwrap());
    assert!(s.find_admin_user("amina").await.unwrap().is_some());
}

/// Failures are counted per (username, address), an attempt counts until cleared, and a second
/// instance sees the first one's count.
async fn sign_in_failures_are_counted_per_pair_and_shared_by_instances(db: TestDatabase) {
    let a = db.storage();
    let b = db.connect_another().await;
    let seen = std::sync::Mutex::new(Vec::new());
    let record = |f: &SignInFailures| {
        seen.lock().unwrap().push(*f);
        None
    };
    for i in 0..3 {
        let s = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            s.begin_sign_in("amina", "192.0.2.1", T0 + i, T0 - 1, &record)
                .await
                .unwrap(),
            None
        );
    }
    a.begin_sign_in("zawadi", "192.0.2.1", T0 + 5, T0 - 1, &record)
        .await
        .unwrap();
    a.begin_sign_in("amina", "198.51.100.7", T0 + 6, T0 - 1, &record)
        .await
        .unwrap();
    let seen_now = seen.lock().unwrap().clone();
    assert_eq!(
        seen_now.iter().map(|f| f.pair_failures).collect::<Vec<_>>(),
        [0, 1, 2, 0, 0],
        "per pair, across instances"
    );
    assert_eq!(seen_now[2].pair_last_failed_at, Some(T0 + 1));
    assert_eq!(
        seen_now
            .iter()
            .map(|f| f.address_failures)
            .collect::<Vec<_>>(),
        [0, 1, 2, 3, 0],
        "per address, across usernames"
    );
    // A refused attempt is not counted.
    let refuse = |_: &SignInFailures| Some(T0 + 99);
    assert_eq!(
        b.begin_sign_in("amina", "192.0.2.1", T0 + 7, T0 - 1, &refuse)
            .await
            .unwrap(),
        Some(T0 + 99)
    );
    // Only failures since `address_since` count for the address.
    let check = |expect_pair: i64, expect_address: i64| {
        move |f: &SignInFailures| {
            assert_eq!(
                (f.pair_failures, f.address_failures),
                (expect_pair, expect_address)
            );
            Some(0)
        }
    };
    a.begin_sign_in("amina", "192.0.2.1", T0 + 8, T0 + 3, &check(3, 1))
        .await
        .unwrap();
    // Success clears the pair only.
    b.clear_sign_in_failures("amina", "192.0.2.1")
        .await
        .unwrap();
    a.begin_sign_in("amina", "192.0.2.1", T0 + 9, T0 - 1, &check(0, 1))
        .await
        .unwrap();
    a.begin_sign_in("amina", "198.51.100.7", T0 + 9, T0 - 1, &check(1, 1))
        .await
        .unwrap();
    // Old failures are forgotten.
    assert_eq!(a.delete_sign_in_failures_before(T0 + 6).await.unwrap(), 1);
    a.begin_sign_in("zawadi", "192.0.2.1", T0 + 9, T0 - 1, &check(0, 0))
        .await
        .unwrap();
    // Keys are cut to 64 characters, never refused.
    let long = "x".repeat(300);
    a.begin_sign_in(&long, &long, T0, T0, &record)
        .await
        .unwrap();
    a.clear_sign_in_failures(&long, &long).await.unwrap();
}

async fn the_write_probe_writes_each_instance_its_own_row(db: TestDatabase) {
    let a = db.storage();
    let b = db.connect_another().await;
    let week = 7 * 24 * 3_600_000;
    a.write_probe("gw_old", T0).await.unwrap();
    for i in 0..3 {
        a.write_probe("gw_a", T0 + week + i).await.unwrap();
        b.write_probe("gw_b", T0 + week + i).await.unwrap();
    }
    // Concurrently from both instances: never a conflict.
    let (x, y) = tokio::join!(
        a.write_probe("gw_a", T0 + week + 10),
        b.write_probe("gw_b", T0 + week + 10)
    );
    x.unwrap();
    y.unwrap();
    assert!(
        a.write_probe(&"i".repeat(65), T0).await.is_err(),
        "an instance id longer than its column is refused"
    );
}

async fn telegram_links(db: TestDatabase) {
    let s = db.storage();
    let link = |chat_id: i64, phone: &str, linked_at: Millis| TelegramLink {
        chat_id,
        user_id: chat_id * 10,
        phone: phone.into(),
        linked_at,
        blocked_at: None,
    };
    s.link_telegram_chat(&link(-1001, "254708374149", T0))
        .await
        .unwrap();
    s.link_telegram_chat(&link(77, "254708374149", T0 + 10))
        .await
        .unwrap();
    assert_eq!(
        s.find_telegram_link(-1001).await.unwrap(),
        Some(link(-1001, "254708374149", T0))
    );
    assert_eq!(
        s.find_telegram_chat_by_phone("254708374149")
            .await
            .unwrap()
            .map(|l| l.chat_id),
        Some(77),
        "the latest"
    );
    s.mark_telegram_chat_blocked(77, T0 + 20).await.unwrap();
    assert_eq!(
        s.find_telegram_link(77).await.unwrap().unwrap().blocked_at,
        Some(T0 + 20)
    );
    assert_eq!(
        s.find_telegram_chat_by_phone("254708374149")
            .await
            .unwrap()
            .map(|l| l.chat_id),
        Some(-1001),
        "not a blocked one"
    );
    // Linking again (a /start after unblocking) replaces the link and clears the block.
    s.link_telegram_chat(&link(77, "254711000000", T0 + 30))
        .await
        .unwrap();
    assert_eq!(
        s.find_telegram_link(77).await.unwrap(),
        Some(link(77, "254711000000", T0 + 30))
    );
    assert!(s.unlink_telegram_chat(-1001).await.unwrap());
    assert!(!s.unlink_telegram_chat(-1001).await.unwrap());
    assert_eq!(
        s.find_telegram_chat_by_phone("254708374149").await.unwrap(),
        None
    );
    s.mark_telegram_chat_blocked(12345, T0).await.unwrap(); // an unknown chat: nothing to do
}

async fn telegram_links_exclusive_and_status_messages(db: TestDatabase) {
    let s = db.storage();
    let link = |chat_id: i64, phone: &str, linked_at: Millis| TelegramLink {
        chat_id,
        user_id: chat_id,
        phone: phone.into(),
        linked_at,
        blocked_at: None,
    };
    s.link_telegram_chat(&link(1, "254708374149", T0))
        .await
        .unwrap();
    s.link_telegram_chat(&link(2, "254708374149", T0 + 1))
        .await
        .unwrap();
    s.link_telegram_chat(&link(3, "254711000000", T0 + 2))
        .await
        .unwrap();
    // Chat 4 links the number that chats 1 and 2 had: theirs go, chat 3's other number stays.
    assert_eq!(
        s.link_telegram_chat_exclusively(&link(4, "254708374149", T0 + 3))
            .await
            .unwrap(),
        2
    );
    assert_eq!(s.find_telegram_link(1).await.unwrap(), None);
    assert_eq!(s.find_telegram_link(2).await.unwrap(), None);
    assert_eq!(
        s.find_telegram_link(4).await.unwrap(),
        Some(link(4, "254708374149", T0 + 3))
    );
    assert!(s.find_telegram_link(3).await.unwrap().is_some());
    // Again, and with a new number for the same chat: nothing else to remove, the link moves.
    assert_eq!(
        s.link_telegram_chat_exclusively(&link(4, "254708374149", T0 + 4))
            .await
            .unwrap(),
        0
    );
    s.mark_telegram_chat_blocked(4, T0 + 5).await.unwrap();
    assert_eq!(
        s.link_telegram_chat_exclusively(&link(4, "254722000000", T0 + 6))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.find_telegram_link(4).await.unwrap(),
        Some(link(4, "254722000000", T0 + 6)),
        "relinking clears the block"
    );

    // Status messages: one per payment, replaced when the bot sends a new one.
    let p = create(s.as_ref(), new_payment(&pay_id(1), T0)).await;
    assert_eq!(s.find_telegram_status_message(&p.id).await.unwrap(), None);
    let message = |message_id: i64, updated_at: Millis| TelegramStatusMessage {
        payment_id: p.id.clone(),
        chat_id: -100_123_456_789,
        message_id,
        updated_at,
    };
    s.put_telegram_status_message(&message(41, T0))
        .await
        .unwrap();
    assert_eq!(
        s.find_telegram_status_message(&p.id).await.unwrap(),
        Some(message(41, T0))
    );
    s.put_telegram_status_message(&message(i64::MAX, T0 + 1))
        .await
        .unwrap();
    assert_eq!(
        s.find_telegram_status_message(&p.id).await.unwrap(),
        Some(message(i64::MAX, T0 + 1))
    );
    let unknown = TelegramStatusMessage {
        payment_id: "pay_unknown".into(),
        ..message(1, T0)
    };
    assert!(matches!(
        s.put_telegram_status_message(&unknown).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(
        s.find_telegram_status_message("pay_unknown").await.unwrap(),
        None
    );
}

async fn settings_agree_between_racing_instances(db: TestDatabase) {
    let instances = [db.storage(), db.connect_another().await];
    let s = &instances[0];
    assert_eq!(s.get_setting("callback_secret").await.unwrap(), None);
    s.put_setting("brand", "Duka", T0).await.unwrap();
    s.put_setting("brand", "Duka Letu", T0 + 1).await.unwrap();
    assert_eq!(
        s.get_setting("brand").await.unwrap().as_deref(),
        Some("Duka Letu")
    );
    assert_eq!(
        s.put_setting_if_absent("brand", "other", T0).await.unwrap(),
        "Duka Letu"
    );

    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..16 {
        let s = instances[n % 2].clone();
        tasks.spawn(async move {
            s.put_setting_if_absent("callback_secret", &format!("secret-{n}"), T0)
                .await
                .unwrap()
        });
    }
    let answers: HashSet<String> = tasks.join_all().await.into_iter().collect();
    assert_eq!(
        answers.len(),
        1,
        "every instance got the same secret: {answers:?}"
    );
    let stored = s.get_setting("callback_secret").await.unwrap().unwrap();
    assert!(answers.contains(&stored));
}

async fn named_leases(db: TestDatabase) {
    let s = db.storage();
    let lease = "telegram-poller";
    assert!(
        s.acquire_lease(lease, "a", T0, T0 + 10_000).await.unwrap(),
        "free"
    );
    assert!(
        !s.acquire_lease(lease, "b", T0 + 1, T0 + 10_001)
            .await
            .unwrap(),
        "held by a"
    );
    assert!(
        s.acquire_lease(lease, "a", T0 + 5_000, T0 + 15_000)
            .await
            .unwrap(),
        "renewed"
    );
    assert!(
        !s.acquire_lease(lease, "b", T0 + 14_999, T0 + 20_000)
            .await
            .unwrap(),
        "renewal counts"
    );
    assert!(
        s.acquire_lease(lease, "b", T0 + 15_000, T0 + 25_000)
            .await
            .unwrap(),
        "expired: stolen"
    );
    assert!(
        !s.acquire_lease(lease, "a", T0 + 15_001, T0 + 25_000)
            .await
            .unwrap(),
        "a lost it"
    );
    s.release_lease(lease, "a").await.unwrap(); // not a's: no effect
    assert!(
        !s.acquire_lease(lease, "c", T0 + 15_002, T0 + 25_000)
            .await
            .unwrap()
    );
    s.release_lease(lease, "b").await.unwrap();
    assert!(
        s.acquire_lease(lease, "c", T0 + 15_003, T0 + 25_000)
            .await
            .unwrap(),
        "released"
    );
    assert!(
        s.acquire_lease("other", "a", T0, T0 + 1).await.unwrap(),
        "leases are independent"
    );

    // Racing instances: exactly one takes a free lease.
    let instances = [s.clone(), db.connect_another().await];
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..10 {
        let s = instances[n % 2].clone();
        tasks.spawn(async move {
            s.acquire_lease("reconciler", &format!("owner-{n}"), T0, T0 + 60_000)
                .await
                .unwrap()
        });
    }
    let winners = tasks
        .join_all()
        .await
        .into_iter()
        .filter(|won| *won)
        .count();
    assert_eq!(winners, 1);
}

// ---- statistics ---------------------------------------------------------------------------------

async fn statistics_and_daily_volume(db: TestDatabase) {
    let s = db.storage();
    // T0 is 2026-01-01 00:00 UTC = 03:00 in Nairobi. 20:59:59.999 UTC is still the same day in
    // East Africa Time; 21:00 UTC is the next.
    let day2_eat = T0 + 21 * HOUR; // 2026-01-02 00:00 EAT
    let cases: [(u32, Millis, i64, PaymentStatus); 6] = [
        (1, T0, 100, PaymentStatus::Completed),
        (2, day2_eat - 1, 250, PaymentStatus::Completed),
        (3, day2_eat - 1, 40, PaymentStatus::Failed),
        (4, day2_eat, 1_000, PaymentStatus::Completed),
        (5, day2_eat + HOUR, 70, PaymentStatus::Failed),
        (6, day2_eat + 2 * HOUR, 30, PaymentStatus::Pending),
    ];
    for (n, created_at, amount, status) in cases {
        let mut p = new_payment(&pay_id(n), created_at);
        p.amount = Amount::from_stored(amount);
        create(&*s, p).await;
        let mut t = transition(TransitionKind::Callback, status);
        t.result_code = Some(ResultCode::from(if n == 5 {
            "2001"
        } else if n == 3 {
            "1"
        } else {
            "0"
        }));
        if n == 6 {
            t.review = ReviewChange::Hold(ReviewReason::PhoneMismatch);
        }
        set(&*s, &pay_id(n), created_at, t).await;
    }
    // Outside the range on both sides.
    create(&*s, new_payment(&pay_id(7), T0 - 1)).await;
    create(&*s, new_payment(&pay_id(8), T0 + 2 * DAY)).await;

    let stats = s.payment_stats(T0, T0 + 2 * DAY).await.unwrap();
    let totals = |status: PaymentStatus| stats.by_status[status.as_str()].clone();
    assert_eq!(
        totals(PaymentStatus::Completed),
        StatusTotals {
            count: 3,
            amount: 1_350
        }
    );
    assert_eq!(
        totals(PaymentStatus::Failed),
        StatusTotals {
            count: 2,
            amount: 110
        }
    );
    assert_eq!(
        totals(PaymentStatus::Pending),
        StatusTotals {
            count: 1,
            amount: 30
        }
    );
    assert_eq!(
        totals(PaymentStatus::Initiated),
        StatusTotals {
            count: 0,
            amount: 0
        },
        "to is exclusive, from inclusive"
    );
    assert_eq!(stats.by_status.len(), 7, "every status listed");
    assert_eq!(
        stats.failures_by_code,
        BTreeMap::from([("1".to_owned(), 1), ("2001".to_owned(), 1)])
    );
    assert_eq!(stats.needs_review, 1);

    let days = s.daily_volume(T0, T0 + 2 * DAY).await.unwrap();
    assert_eq!(
        days,
        [
            DailyVolume {
                day: "2026-01-01".into(),
                completed_count: 2,
                completed_amount: 350,
                total_count: 3
            },
            DailyVolume {
                day: "2026-01-02".into(),
                completed_count: 1,
                completed_amount: 1_000,
                total_count: 3
            },
        ]
    );
    assert!(
        s.daily_volume(T0 + 10 * DAY, T0 + 11 * DAY)
            .await
            .unwrap()
            .is_empty()
    );
    let empty = s.payment_stats(T0 + 10 * DAY, T0 + 11 * DAY).await.unwrap();
    assert_eq!(
        (empty.by_status["completed"].count, empty.needs_review),
        (0, 0)
    );
}

// ---- what cannot be read back -------------------------------------------------------------------

async fn unreadable_rows_are_corrupt_not_defaults(db: TestDatabase) {
    let s = db.storage();
    create(&*s, new_payment(&pay_id(1), T0)).await;
    execute_directly(
        &db,
        "UPDATE payments SET status = 'paid' WHERE id = 'pay_00000001'",
    )
    .await;
    let err = s.get_payment(&pay_id(1)).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt(m) if m.contains("paid")),
        "{err:?}"
    );
    let err = s
        .list_payments(&PaymentFilter::default(), &PageRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
}
