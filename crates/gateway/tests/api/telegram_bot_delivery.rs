//! How updates reach the bot: a restart in the middle of a `/pay` repeats no reply and no push;
//! one poller among instances sharing a database, with take-over; webhook mode with its
//! secret header.

use std::time::{Duration, Instant};

use daraja_sim::faults::{CallbackFaults, Faults};
use mpesa_storage::Backend;
use serde_json::json;

use crate::support::*;
use crate::telegram_bot::*;
use crate::telegram_fake::*;

/// Killed after the push, before its update was confirmed: the next instance gets the update
/// again and only brings the status message up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_repeats_no_reply_and_no_push() {
    let tg = FakeTelegram::start().await;
    let mut a = spawn_with(bot_options(Backend::Sqlite, &tg)).await;
    let user = User::new(9090, "Akinyi");
    link(&tg, &user, SUCCESS).await;

    // Edits never reach Telegram: instance A stops right after the push.
    tg.hold("editMessageText");
    let help = tg.text(user.id, &user, "/help");
    let pay = tg.text(user.id, &user, "/pay 100 R1");
    let (message_id, payment_id, _) = status_message(&tg, user.id).await;
    tg.wait_until(Duration::from_secs(10), "the edit after the push", |f| {
        !f.calls_of("editMessageText").is_empty()
    })
    .await;
    a.wait_for_status(&payment_id, "completed", Duration::from_secs(10))
        .await;
    let storage = a.storage();
    assert_eq!(
        storage.get_setting(OFFSET_KEY).await.unwrap(),
        Some(pay.to_string()),
        "/help (update {help}) is confirmed, /pay is not"
    );
    a.kill().await;
    tg.release_all();

    let mut options = bot_options(Backend::Sqlite, &tg);
    options.database = Some(a.database.clone());
    let b = spawn_with(options).await;
    let shown = wait_for_text(&tg, user.id, message_id, "Payment completed").await;
    assert!(shown.starts_with("✅ <b>Payment completed</b>"), "{shown}");
    wait_for_offset_past(&b, pay).await;
    outbox_settled(b.storage().as_ref()).await;

    let texts = tg.texts_to(user.id);
    let helps = texts
        .iter()
        .filter(|t| t.starts_with("<b>What I can do</b>"))
        .count();
    let statuses = texts
        .iter()
        .filter(|t| t.contains("Sending the payment request"))
        .count();
    assert_eq!((helps, statuses), (1, 1), "no reply repeated: {texts:?}");
    assert_eq!(texts.len(), 4, "welcome, linked, help, status: {texts:?}");
    assert_eq!(stk_pushes(a.sim()), 1, "one push, by the first instance");
    assert_eq!(stk_pushes(b.sim()), 0, "none by the second");
    let payments = b
        .storage()
        .list_payments(&Default::default(), &Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(payments.len(), 1);
    assert!(tg.refused().is_empty(), "{:?}", tg.refused());
    b.stop().await;
}

/// Killed while the push is at Daraja (its answer not recorded): the next instance never pushes
/// that payment again. Nothing can be asked about it (no CheckoutRequestID) and the simulator
/// took the money, so at the expiry it is held for a person, never "timed out".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_the_push_never_pushes_again() {
    let tg = FakeTelegram::start().await;
    let expiring = |o: Options| {
        o.env("RECONCILE_AFTER_SECS", "1")
            .env("PAYMENT_EXPIRES_AFTER_SECS", "3")
    };
    let mut options = expiring(bot_options(Backend::Sqlite, &tg));
    options.sim.faults = Faults::none().with_global(CallbackFaults {
        slow_answer_ms: 30_000,
        suppress: true,
        ..CallbackFaults::default()
    });
    let mut a = spawn_with(options).await;
    let user = User::new(9191, "Kiprop");
    link(&tg, &user, SUCCESS).await;
    tg.text(user.id, &user, "/pay 100 R2");
    let (message_id, payment_id, _) = status_message(&tg, user.id).await;
    let sim = a.sim().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim.stk_transactions().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the push never reached Daraja"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.kill().await;

    let mut options = expiring(bot_options(Backend::Sqlite, &tg));
    options.database = Some(a.database.clone());
    let b = spawn_with(options).await;
    let payment = b
        .wait_for_payment(
            &payment_id,
            "held for a person at the expiry",
            Duration::from_secs(20),
            |p| p.needs_review,
            |p| p.status.is_final(),
        )
        .await;
    assert_eq!(payment.status.as_str(), "initiated");
    assert!(
        edit_texts(&tg, user.id, message_id)
            .iter()
            .all(|t| !t.contains("timed out")),
        "the customer is not told a falsehood"
    );
    assert_eq!(
        payment.checkout_request_id, None,
        "its push answer was never recorded"
    );
    assert_eq!(
        sim.stk_transactions().len(),
        1,
        "one push, by the first instance"
    );
    assert_eq!(stk_pushes(b.sim()), 0, "the second instance pushed nothing");
    let statuses = tg
        .texts_to(user.id)
        .iter()
        .filter(|t| t.contains("Sending the payment request"))
        .count();
    assert_eq!(statuses, 1, "{:?}", tg.texts_to(user.id));
    assert!(tg.refused().is_empty(), "{:?}", tg.refused());
    b.stop().await;
}

/// Two instances on one database: one polls at a time. Stopped gracefully, the poller stops
/// within a long poll and releases its lease at once; killed, its lease lapses and another
/// instance takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_polls_and_another_takes_over() {
    let (sim, daraja_url) = shared_simulator().await;
    let _ = sim;
    let tg = FakeTelegram::start().await;
    let database =
        std::sync::Arc::new(mpesa_harness::database::TestDatabase::new(Backend::Postgres).await);
    let instance = || {
        let mut o = bot_options(Backend::Postgres, &tg);
        o.database = Some(database.clone());
        o.daraja_url = Some(daraja_url.clone());
        o
    };
    let a = spawn_with(instance()).await;
    let mut b = spawn_with(instance()).await;
    let user = User::new(1234, "Mwangi");
    tg.text(user.id, &user, "/help");
    tg.wait_for_messages(user.id, 1).await;
    // Several long polls go by: never two at once.
    let polls = tg.polls();
    tg.wait_until(Duration::from_secs(10), "a few more polls", |f| {
        f.polls() >= polls + 3
    })
    .await;
    assert_eq!(tg.max_polls_in_flight(), 1, "only one instance polls");

    // Which one? Stop it gracefully: the other takes over at once.
    let stopped = Instant::now();
    a.stop().await;
    let stop_took = stopped.elapsed();
    tg.text(user.id, &user, "/help");
    tg.wait_for_messages(user.id, 2).await;
    b.kill().await;
    let c = spawn_with(instance()).await;
    let killed = Instant::now();
    tg.text(user.id, &user, "/help");
    tg.wait_for_messages(user.id, 3).await;
    let takeover = killed.elapsed();
    assert!(
        stop_took < Duration::from_secs(5),
        "graceful stop took {stop_took:?}"
    );
    assert!(
        takeover < Duration::from_secs(8),
        "take-over took {takeover:?}"
    );
    assert_eq!(tg.max_polls_in_flight(), 1, "never two pollers at once");
    assert_eq!(tg.texts_to(user.id).len(), 3, "each update answered once");
    c.stop().await;
}

/// A poller whose lease cannot be renewed (its database does not answer) gives its poll up
/// before the lease can lapse, rather than keep it open while another instance, seeing the lease
/// lapsed, starts polling too; it polls again once it holds the lease again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_is_given_up_when_its_lease_cannot_be_renewed() {
    use sqlx::Connection as _;
    let tg = FakeTelegram::start().await;
    // Polls held open far longer than the lease (2 s): only a cut-off ends one early.
    let gw =
        spawn_with(bot_options(Backend::Postgres, &tg).env("TELEGRAM_POLL_TIMEOUT", "45s")).await;
    tg.wait_until(Duration::from_secs(10), "a poll held open", |f| {
        f.polls_in_flight() == 1
    })
    .await;

    // Renewing the lease now waits for this transaction.
    let mut locker = sqlx::PgConnection::connect(gw.database.url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("SELECT owner FROM leases WHERE name = 'telegram-poller' FOR UPDATE")
        .fetch_one(&mut locker)
        .await
        .unwrap();
    let polls = tg.polls();
    // Without the cut-off the poll stays open until the renewal ends (never, here) or the
    // poll's 45 s are up.
    tg.wait_until(
        Duration::from_secs(15),
        "the poll given up while the lease cannot be renewed",
        |f| f.polls_in_flight() == 0,
    )
    .await;
    assert_eq!(tg.polls(), polls, "no poll started without the lease");

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    tg.wait_until(Duration::from_secs(15), "polling again", |f| {
        f.polls() > polls && f.polls_in_flight() == 1
    })
    .await;
    assert_eq!(tg.max_polls_in_flight(), 1);
    gw.stop().await;
}

/// One update given to two instances at once (a poller that lost its lease in the middle of a
/// batch and the one that took it over, a webhook delivered again while the first delivery is
/// handled): one handles it, the other hands it back to come again. A `/pay` handled by both
/// used to send two status messages and two pushes. A claim given up on a failure is free at
/// once; one whose instance stopped is taken over when it lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_update_given_to_two_instances_at_once_is_handled_once() {
    const SECRET: &str = "tg-webhook-secret_0123456789";
    let (sim, daraja_url) = shared_simulator().await;
    let tg = FakeTelegram::start().await;
    let database =
        std::sync::Arc::new(mpesa_harness::database::TestDatabase::new(Backend::Postgres).await);
    let instance = || {
        let mut o = bot_options(Backend::Postgres, &tg)
            .env("TELEGRAM_WEBHOOK_SECRET", SECRET)
            .env("MPESA_CALLBACK_URL", "https://pay.example.com/base/");
        o.database = Some(database.clone());
        o.daraja_url = Some(daraja_url.clone());
        o
    };
    let a = spawn_with(instance()).await;
    let b = spawn_with(instance()).await;
    let storage = a.storage();
    let now = || mpesa_gateway::clock::Clock::system().now_ms();
    for (chat, phone) in [
        (4242, SUCCESS),
        (4343, INSUFFICIENT_FUNDS),
        (4444, CANCELLED),
    ] {
        storage
            .link_telegram_chat(&mpesa_storage::TelegramLink {
                chat_id: chat,
                user_id: chat,
                phone: phone.into(),
                linked_at: now(),
                blocked_at: None,
            })
            .await
            .unwrap();
    }
    let pay = |update_id: i64, chat: i64| {
        json!({
            "update_id": update_id,
            "message": { "message_id": 1, "date": 0, "chat": { "id": chat, "type": "private" },
                         "from": { "id": chat, "is_bot": false, "first_name": "Wanjiru" },
                         "text": "/pay 100 R9" }
        })
    };
    let deliver = |gw: &TestGateway, update: &serde_json::Value| {
        let request = gw
            .client
            .post(gw.url("/telegram/webhook"))
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .json(update);
        tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
    };
    // Messages Telegram accepted (a held request is not one).
    let status_messages = |chat: i64| tg.sent_with_ids(chat).len();

    // A has stored the payment and waits in the middle of sending its status message when B is
    // given the same update.
    tg.delay("sendMessage");
    let to_a = deliver(&a, &pay(900, 4242));
    tg.wait_until(
        Duration::from_secs(10),
        "A's status message on its way",
        |f| !f.calls_of("sendMessage").is_empty(),
    )
    .await;
    let to_b = deliver(&b, &pay(900, 4242));
    let waited = Instant::now();
    while !(to_b.is_finished() || tg.calls_of("sendMessage").len() >= 2) {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "B neither handed the update back nor went on to a status message"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tg.release_all();
    assert_eq!(
        (to_a.await.unwrap(), to_b.await.unwrap()),
        (200, 503),
        "A handles it; B hands it back"
    );
    // Telegram sends it again: handled, so skipped.
    assert_eq!(deliver(&b, &pay(900, 4242)).await.unwrap(), 200);
    assert_eq!(stk_pushes(&sim), 1, "one push for one /pay");
    assert_eq!(status_messages(4242), 1, "{:?}", tg.texts_to(4242));

    // A claim whose instance stopped holds the update until it lapses, then B takes it over.
    let claim = "telegram-update:7001:901";
    assert!(
        storage
            .acquire_lease(claim, "gw_gone", now(), now() + 60_000)
            .await
            .unwrap()
    );
    assert_eq!(deliver(&b, &pay(901, 4343)).await.unwrap(), 503);
    assert_eq!((stk_pushes(&sim), status_messages(4343)), (1, 0));
    // It lapses (as 60 s later).
    assert!(
        storage
            .acquire_lease(claim, "gw_gone", now(), now() - 1)
            .await
            .unwrap()
    );
    assert_eq!(deliver(&b, &pay(901, 4343)).await.unwrap(), 200);
    assert_eq!((stk_pushes(&sim), status_messages(4343)), (2, 1));

    // A fails on Telegram and gives the update up: B handles it at once.
    tg.hold("sendMessage");
    let calls = tg.calls_of("sendMessage").len();
    let to_a = deliver(&a, &pay(902, 4444));
    tg.wait_until(
        Duration::from_secs(10),
        "A's status message on its way",
        |f| f.calls_of("sendMessage").len() > calls,
    )
    .await;
    tg.release_all();
    assert_eq!(
        to_a.await.unwrap(),
        503,
        "Telegram failed A's status message"
    );
    assert_eq!(deliver(&b, &pay(902, 4444)).await.unwrap(), 200);
    assert_eq!((stk_pushes(&sim), status_messages(4444)), (3, 1));
    a.stop().await;
    b.stop().await;
}

/// A simulator on its own port shared by several gateways.
async fn shared_simulator() -> (daraja_sim::Simulator, String) {
    let sim = daraja_sim::Simulator::new(daraja_sim::SimConfig::for_tests()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sim.clone().serve(listener, std::future::pending()));
    (sim, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_checks_the_secret_token() {
    const SECRET: &str = "tg-webhook-secret_0123456789";
    let tg = FakeTelegram::start().await;
    let gw = spawn_with(
        bot_options(Backend::Sqlite, &tg)
            .env("TELEGRAM_WEBHOOK_SECRET", SECRET)
            .env("MPESA_CALLBACK_URL", "https://pay.example.com/base/"),
    )
    .await;
    tg.wait_until(Duration::from_secs(10), "setWebhook", |f| {
        !f.calls_of("setWebhook").is_empty()
    })
    .await;
    assert_eq!(
        tg.calls_of("setWebhook")[0],
        json!({
            "url": "https://pay.example.com/base/telegram/webhook",
            "secret_token": SECRET,
            "allowed_updates": ["message", "callback_query"],
            "max_connections": 1,
        })
    );

    let url = gw.url("/telegram/webhook");
    let update = json!({
        "update_id": 500,
        "message": { "message_id": 1, "date": 0, "chat": { "id": 77, "type": "private" },
                     "from": { "id": 77, "is_bot": false, "first_name": "Zawadi" }, "text": "/help" }
    });
    let post = |secret: Option<&'static str>, body: serde_json::Value| {
        let mut request = gw.client.post(&url).json(&body);
        if let Some(s) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(None, update.clone()).await, 401);
    assert_eq!(
        post(Some("tg-webhook-secret_0123456788"), update.clone()).await,
        401
    );
    assert_eq!(post(Some("short"), update.clone()).await, 401);
    assert!(tg.sent_to(77).is_empty());

    assert_eq!(post(Some(SECRET), update.clone()).await, 200);
    let texts = tg.wait_for_messages(77, 1).await;
    assert!(texts[0].starts_with("<b>What I can do</b>"));
    // Telegram sends it again (our answer was lost): handled once.
    assert_eq!(post(Some(SECRET), update.clone()).await, 200);
    assert_eq!(post(Some(SECRET), json!({ "not": "an update" })).await, 400);
    // An update is handled before its 200: the repeat's handling, if any, is already done.
    assert_eq!(tg.sent_to(77).len(), 1);
    assert_eq!(tg.polls(), 0, "no long polling in webhook mode");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_webhook_mode_the_route_does_not_exist() {
    let tg = FakeTelegram::start().await;
    let gw = spawn_with(bot_options(Backend::Sqlite, &tg)).await;
    let status = gw
        .client
        .post(gw.url("/telegram/webhook"))
        .header("X-Telegram-Bot-Api-Secret-Token", "anything")
        .json(&json!({ "update_id": 1 }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    gw.stop().await;
}
