//! The Telegram bot end to end: a gateway polling a Bot API on loopback (`telegram_fake`),
//! paying through the in-process Daraja simulator. Customers link their number, pay with
//! `/pay`, and watch one status message move to its final state.

use std::time::Duration;

use mpesa_storage::{Backend, Channel, OutboxFilter, OutboxStatus, PageRequest, Storage};
use serde_json::Value;

use crate::on_every_backend;
use crate::support::*;
use crate::telegram_fake::*;

pub const ADMIN_CHAT: i64 = -100_555_000;

/// A gateway with the bot on, polling `tg` with one-second long polls.
pub fn bot_options(backend: Backend, tg: &FakeTelegram) -> Options {
    Options::new(backend)
        .env("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
        .env("TELEGRAM_API_BASE", &tg.url)
        .env("ADMIN_CHAT_ID", &ADMIN_CHAT.to_string())
        .env("TELEGRAM_POLL_TIMEOUT", "1s")
        .env("TELEGRAM_POLL_LEASE", "2s")
        .env("OUTBOX_LEASE", "2s")
        .env("OUTBOX_POLL_INTERVAL", "50ms")
}

/// `/start`, then the user shares their own contact; waits for "Linked".
pub async fn link(tg: &FakeTelegram, user: &User, phone: &str) {
    let before = tg.sent_to(user.id).len();
    tg.text(user.id, user, "/start");
    tg.wait_for_messages(user.id, before + 1).await;
    tg.contact(user.id, user, phone, Some(user.id));
    let texts = tg.wait_for_messages(user.id, before + 2).await;
    assert!(texts[before + 1].starts_with("✅ Linked to"), "{texts:?}");
}

/// The status message of the payment a `/pay` started: its message id, payment id and body.
pub async fn status_message(tg: &FakeTelegram, chat: i64) -> (i64, String, Value) {
    tg.wait_until(Duration::from_secs(10), "a status message", |f| {
        f.sent_with_ids(chat).iter().any(|(_, b)| {
            b["text"]
                .as_str()
                .unwrap_or("")
                .contains("Sending the payment request")
        })
    })
    .await;
    let (id, body) = tg
        .sent_with_ids(chat)
        .into_iter()
        .rfind(|(_, b)| {
            b["text"]
                .as_str()
                .unwrap_or("")
                .contains("Sending the payment request")
        })
        .unwrap();
    let payment_id = body["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        .as_str()
        .and_then(|d| d.strip_prefix("status:"))
        .expect("the status message has a check-status button")
        .to_owned();
    (id, payment_id, body)
}

/// Waits until a message shows a text containing `what`; returns the text.
pub async fn wait_for_text(tg: &FakeTelegram, chat: i64, message_id: i64, what: &str) -> String {
    tg.wait_until(
        Duration::from_secs(15),
        &format!("message {message_id} to show {what:?}"),
        |f| {
            f.current(chat, message_id)
                .is_some_and(|(t, _)| t.contains(what))
        },
    )
    .await;
    tg.current(chat, message_id).unwrap().0
}

pub fn stk_pushes(sim: &daraja_sim::Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path.contains("stkpush/v1/processrequest"))
        .count()
}

/// The bot's stored long-polling offset (the fake Bot API's bot id is 7001).
pub const OFFSET_KEY: &str = "telegram_update_offset:7001";

/// Waits until the stored offset has moved past `update_id` (the update is confirmed).
pub async fn wait_for_offset_past(gw: &TestGateway, update_id: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let offset = gw.storage().get_setting(OFFSET_KEY).await.unwrap();
        if offset
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|o| o > update_id)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "update {update_id} never confirmed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the outbox has nothing left to deliver.
pub async fn outbox_settled(storage: &dyn Storage) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while storage.outbox_counts().await.unwrap().pending > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox did not settle"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn edit_texts(tg: &FakeTelegram, chat: i64, message_id: i64) -> Vec<String> {
    tg.edits_of(chat, message_id)
        .iter()
        .map(|b| b["text"].as_str().unwrap().to_owned())
        .collect()
}

async fn pay_from_a_chat_and_see_the_receipt(backend: Backend) {
    let tg = FakeTelegram::start().await;
    let mut options = bot_options(backend, &tg);
    // Time to see the prompt stage before the callback settles the payment.
    options.sim.callback_delay = Duration::from_millis(1000);
    let gw = spawn_with(options).await;
    let user = User::new(4242, "Wanjiru");

    tg.text(user.id, &user, "/start");
    tg.wait_for_messages(user.id, 1).await;
    let welcome = &tg.sent_to(user.id)[0];
    assert_eq!(welcome["parse_mode"], "HTML");
    assert!(
        welcome["text"]
            .as_str()
            .unwrap()
            .contains("Share my phone number")
    );
    assert_eq!(
        welcome["reply_markup"]["keyboard"][0][0],
        serde_json::json!({ "text": "📱 Share my phone number", "request_contact": true })
    );

    tg.contact(user.id, &user, "+254708374149", Some(user.id));
    let texts = tg.wait_for_messages(user.id, 2).await;
    assert!(
        texts[1].starts_with("✅ Linked to <b>+254 708 374 149</b>"),
        "{}",
        texts[1]
    );
    assert_eq!(
        tg.sent_to(user.id)[1]["reply_markup"],
        serde_json::json!({ "remove_keyboard": true })
    );
    let linked = gw
        .storage()
        .find_telegram_link(user.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((linked.phone.as_str(), linked.user_id), (SUCCESS, user.id));

    tg.text(user.id, &user, "/pay 100 INV42");
    let (message_id, payment_id, first) = status_message(&tg, user.id).await;
    let first_text = first["text"].as_str().unwrap();
    assert!(
        first_text.starts_with("⏳ <b>Sending the payment request…</b>"),
        "{first_text}"
    );
    assert!(
        first_text.contains("Amount: <b>KSh 100</b>\nReference: INV42"),
        "{first_text}"
    );

    let shown = wait_for_text(&tg, user.id, message_id, "Payment completed").await;
    let payment = gw
        .wait_for_status(&payment_id, "completed", Duration::from_secs(5))
        .await;
    let receipt = payment.mpesa_receipt_number.clone().unwrap();
    assert!(
        shown
            .starts_with("✅ <b>Payment completed</b>\nAmount: <b>KSh 100</b>\nReference: INV42\n"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("M-Pesa receipt: <code>{receipt}</code>")),
        "{shown}"
    );
    let (_, keyboard) = tg.current(user.id, message_id).unwrap();
    assert_eq!(
        keyboard,
        Value::Null,
        "a final status message has no button"
    );

    // The message moved: sent, then "check your phone", then completed; nothing else.
    let edits = edit_texts(&tg, user.id, message_id);
    assert!(
        edits
            .first()
            .unwrap()
            .starts_with("📲 <b>Check your phone</b>"),
        "{edits:?}"
    );
    assert!(
        edits
            .last()
            .unwrap()
            .starts_with("✅ <b>Payment completed</b>"),
        "{edits:?}"
    );
    assert!(
        edits
            .iter()
            .all(|e| e.starts_with("📲") || e.starts_with("✅")),
        "{edits:?}"
    );

    // The payment went the same way as an API one.
    assert_eq!(payment.source, mpesa_storage::PaymentSource::Telegram);
    assert_eq!(payment.telegram_chat_id, Some(user.id));
    assert_eq!(
        (payment.amount.shillings(), payment.reference.as_str()),
        (100, "INV42")
    );
    assert_eq!(payment.description, "Telegram: Wanjiru");
    assert_eq!(stk_pushes(gw.sim()), 1);

    // The admin chat hears of it; the customer gets no second message (the edit is the receipt).
    outbox_settled(gw.storage().as_ref()).await;
    let admin = tg.texts_to(ADMIN_CHAT);
    assert_eq!(admin.len(), 1, "{admin:?}");
    assert!(
        admin[0].starts_with("✅ <b>Payment completed</b>"),
        "{}",
        admin[0]
    );
    assert_eq!(tg.sent_to(user.id).len(), 3, "{:?}", tg.texts_to(user.id));
    let rows = gw
        .storage()
        .list_outbox(
            &OutboxFilter {
                channel: Some(Channel::Telegram),
                status: None,
            },
            &PageRequest::default(),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(rows.len(), 2, "an admin alert and the status message edit");
    assert!(rows.iter().all(|r| r.status == OutboxStatus::Delivered));
    assert!(
        rows.iter()
            .any(|r| r.destination == user.id.to_string()
                && r.payload.contains("\"status_message\""))
    );
    assert!(tg.refused().is_empty(), "{:?}", tg.refused());
    gw.stop().await;
}

on_every_backend!(pay_from_a_chat_and_see_the_receipt);

/// A payment the customer cancelled, whose success came after all (held for review) and which
/// a person then settled: the chat's status message moves on from "cancelled" to "completed".
/// Its edit used to be keyed like the first one's and dropped as a copy of it, so the customer
/// was left reading "cancelled… Send /pay to try again" for a payment that went through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_settled_by_a_person_after_its_end_is_shown_completed() {
    let tg = FakeTelegram::start().await;
    let gw = spawn_with(bot_options(Backend::Sqlite, &tg)).await;
    let user = User::new(5160, "Wanjiru");
    link(&tg, &user, CANCELLED).await;
    tg.text(user.id, &user, "/pay 50");
    let (message_id, payment_id, _) = status_message(&tg, user.id).await;
    wait_for_text(&tg, user.id, message_id, "Payment cancelled").await;
    let cancelled = gw
        .wait_for_status(&payment_id, "cancelled", Duration::from_secs(5))
        .await;
    let (status, _) = gw
        .post_stk_callback(&stk_success(
            cancelled.checkout_request_id.as_deref().unwrap(),
            "50.00",
            CANCELLED,
            "SGL8TE5C0M",
        ))
        .await;
    assert_eq!(status, 200);
    let held = gw
        .wait_for_payment(
            &payment_id,
            "held for review",
            Duration::from_secs(5),
            |p| p.needs_review,
            |_| false,
        )
        .await;
    assert_eq!(held.status.as_str(), "cancelled");
    let settled = gw
        .state
        .payments
        .admin_decide(
            &payment_id,
            mpesa_gateway::payments::AdminDecision::Settle,
            "on the statement",
            Some("SGL8TE5C0M"),
            "amina",
        )
        .await
        .unwrap()
        .expect("held, so decided");
    assert_eq!(settled.status.as_str(), "completed");
    wait_for_text(&tg, user.id, message_id, "Payment completed").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_payment_says_why() {
    let tg = FakeTelegram::start().await;
    let gw = spawn_with(bot_options(Backend::Sqlite, &tg)).await;
    let user = User::new(5150, "Otieno");
    link(&tg, &user, CANCELLED).await;
    tg.text(user.id, &user, "/pay 50");
    let (message_id, payment_id, first) = status_message(&tg, user.id).await;
    assert!(
        first["text"].as_str().unwrap().contains("Reference: PAY"),
        "a generated reference"
    );
    let shown = wait_for_text(&tg, user.id, message_id, "Payment cancelled").await;
    let payment = gw
        .wait_for_status(&payment_id, "cancelled", Duration::from_secs(5))
        .await;
    let why = payment.result_desc.clone().unwrap();
    assert!(
        shown.starts_with("🚫 <b>Payment cancelled</b>\nAmount: <b>KSh 50</b>\n"),
        "{shown}"
    );
    assert!(shown.contains(&format!(
        "Why: {}",
        mpesa_gateway::telegram::escape_html(&why)
    )));
    assert!(shown.ends_with("Send /pay to try again."), "{shown}");
    assert!(!shown.contains("receipt"), "{shown}");
    outbox_settled(gw.storage().as_ref()).await;
    assert_eq!(
        tg.sent_to(user.id).len(),
        3,
        "no message besides the status message"
    );
    let admin = tg.texts_to(ADMIN_CHAT);
    assert!(
        admin.len() == 1 && admin[0].starts_with("🚫 <b>Payment cancelled</b>"),
        "{admin:?}"
    );
    assert!(tg.refused().is_empty(), "{:?}", tg.refused());
    gw.stop().await;
}

/// References, names and commands full of markup reach Telegram escaped; refused references
/// are quoted back escaped. The fake refuses any HTML Telegram could not parse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_cannot_break_the_formatting() {
    let tg = FakeTelegram::start().await;
    let gw = spawn_with(bot_options(Backend::Sqlite, &tg)).await;
    let hostile_name = "<b>x</b> &amp; </code> 🙂 *_[`";
    let user = User::new(6060, hostile_name);
    link(&tg, &user, SUCCESS).await;

    // Each in its own chat (refused before the link is looked at), clear of the rate limit.
    for (n, (reference, echoed)) in [
        ("<b>x</b>", "&lt;b&gt;x&lt;/b&gt;"),
        ("&amp;", "&amp;amp;"),
        ("</code>", "&lt;/code&gt;"),
        ("🙂", "🙂"),
        ("*bold* [x](y)", "*bold* [x](y)"),
    ]
    .into_iter()
    .enumerate()
    {
        let other = User::new(6100 + n as i64, hostile_name);
        tg.text(other.id, &other, &format!("/pay 10 {reference}"));
        let reply = tg.wait_for_messages(other.id, 1).await.remove(0);
        assert!(reply.starts_with("That reference can't be used"), "{reply}");
        assert!(
            reply.ends_with(&format!("You sent: <code>{echoed}</code>")),
            "{reply}"
        );
    }
    tg.text(user.id, &user, "/<b>hi</b>");
    let texts = tg.wait_for_messages(user.id, 3).await;
    assert_eq!(
        texts[2],
        "I don't know /&lt;b&gt;hi&lt;/b&gt;. Send /help to see what I can do."
    );

    // Markdown characters are fine in a reference, and shown as they are.
    tg.text(user.id, &user, "/pay 10 INV_1.2/3:4+");
    let (message_id, payment_id, first) = status_message(&tg, user.id).await;
    assert!(
        first["text"]
            .as_str()
            .unwrap()
            .contains("Reference: INV_1.2/3:4+")
    );
    wait_for_text(&tg, user.id, message_id, "Payment completed").await;
    let payment = gw
        .storage()
        .get_payment(&payment_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payment.description, format!("Telegram: {hostile_name}"));
    // The hostile name reaches the admin chat escaped.
    tg.wait_until(Duration::from_secs(10), "the admin alert", |f| {
        !f.texts_to(ADMIN_CHAT).is_empty()
    })
    .await;
    let alert = &tg.texts_to(ADMIN_CHAT)[0];
    assert!(
        alert.contains(
            "Description: Telegram: &lt;b&gt;x&lt;/b&gt; &amp;amp; &lt;/code&gt; 🙂 *_[`"
        ),
        "{alert}"
    );
    assert!(
        tg.refused().is_empty(),
        "Telegram would have refused: {:?}",
        tg.refused()
    );
    gw.stop().await;
}

/// Every wrong request gets a clear answer, and a chat that floods is told once, then ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_replies_to_everything_wrong() {
    let tg = FakeTelegram::start().await;
    let gw = spawn_with(
        bot_options(Backend::Sqlite, &tg)
            .env("AMOUNT_MIN", "10")
            .env("AMOUNT_MAX", "70000")
            .env("RECONCILE_AFTER_SECS", "3600"),
    )
    .await;
    // Each case in its own chat, so the rate limit does not mix in.
    let ask = |id: i64, text: &'static str| {
        let tg = &tg;
        async move {
            let user = User::new(id, "Amina");
            let before = tg.sent_to(id).len();
            tg.text(id, &user, text);
            tg.wait_for_messages(id, before + 1).await[before].clone()
        }
    };
    assert!(
        ask(7001, "/pay 100")
            .await
            .starts_with("No phone number is linked to this chat yet.")
    );
    assert!(ask(7002, "/pay").await.starts_with("How much?"));
    assert!(
        ask(7003, "/pay abc")
            .await
            .starts_with("“abc” is not an amount.")
    );
    assert!(
        ask(7004, "/pay 10.50")
            .await
            .starts_with("M-Pesa takes whole shillings only")
    );
    assert_eq!(
        ask(7005, "/pay 5").await,
        "The smallest amount is <b>KSh 10</b>."
    );
    assert_eq!(
        ask(7006, "/pay 70001").await,
        "The largest amount is <b>KSh 70,000</b>."
    );
    assert!(
        ask(7007, "/refund 10")
            .await
            .starts_with("I don't know /refund.")
    );
    assert!(
        ask(7008, "hello")
            .await
            .starts_with("Send <code>/pay AMOUNT</code>")
    );
    assert_eq!(
        ask(7009, "/stats").await,
        "⛔ That command is for the shop's admin chat only."
    );
    assert_eq!(
        ask(7010, "/pending").await,
        "⛔ That command is for the shop's admin chat only."
    );
    assert_eq!(
        ask(-7011, "/pay 100").await,
        "Please message me in a private chat to link your number and pay."
    );

    // Someone else's contact, or a number M-Pesa cannot take: nothing is linked.
    let user = User::new(7020, "Baraka");
    tg.contact(user.id, &user, SUCCESS, Some(999));
    let texts = tg.wait_for_messages(user.id, 1).await;
    assert!(
        texts[0].starts_with("That is someone else's contact."),
        "{}",
        texts[0]
    );
    tg.contact(user.id, &user, SUCCESS, None);
    let texts = tg.wait_for_messages(user.id, 2).await;
    assert!(
        texts[1].starts_with("That is someone else's contact."),
        "{}",
        texts[1]
    );
    tg.contact(user.id, &user, "+447700900123", Some(user.id));
    let texts = tg.wait_for_messages(user.id, 3).await;
    assert!(
        texts[2].starts_with("M-Pesa needs a Kenyan Safaricom number"),
        "{}",
        texts[2]
    );
    assert_eq!(
        gw.storage().find_telegram_link(user.id).await.unwrap(),
        None
    );

    // One payment at a time: a second /pay while the first waits for its PIN is refused.
    let user = User::new(7030, "Chebet");
    link(&tg, &user, NO_CALLBACK).await;
    tg.text(user.id, &user, "/pay 100 FIRST");
    let (message_id, payment_id, _) = status_message(&tg, user.id).await;
    wait_for_text(&tg, user.id, message_id, "Check your phone").await;
    tg.text(user.id, &user, "/pay 200 SECOND");
    let texts = tg.wait_for_messages(user.id, 4).await;
    assert_eq!(
        texts[3],
        "⏳ A payment is already in progress: <b>KSh 100</b>, reference FIRST.\n\
         Finish it on your phone (or let it expire) before starting another one."
    );
    assert_eq!(stk_pushes(gw.sim()), 1);
    assert_eq!(
        gw.storage()
            .get_payment(&payment_id)
            .await
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "pending"
    );

    // A /pay sent long ago (the bot was down) starts nothing.
    let late = User::new(7035, "Late");
    link(&tg, &late, SUCCESS).await;
    tg.text_sent_ago(late.id, &late, "/pay 100", Duration::from_secs(3600));
    let texts = tg.wait_for_messages(late.id, 3).await;
    assert!(
        texts[2].starts_with("⌛ That /pay was sent a while ago and was not started."),
        "{}",
        texts[2]
    );
    assert_eq!(stk_pushes(gw.sim()), 1);

    // A chat that blocked the bot is recorded; writing to the bot again lifts it.
    tg.block(late.id);
    tg.text(late.id, &late, "/status");
    tg.wait_until(Duration::from_secs(10), "the refused answer", |f| {
        f.refused().iter().any(|c| c.body["chat_id"] == late.id)
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gw
        .storage()
        .find_telegram_link(late.id)
        .await
        .unwrap()
        .unwrap()
        .blocked_at
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the block was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tg.unblock(late.id);
    tg.text(late.id, &late, "/help");
    let texts = tg.wait_for_messages(late.id, 4).await;
    assert!(texts[3].starts_with("<b>What I can do</b>"));
    assert_eq!(
        gw.storage()
            .find_telegram_link(late.id)
            .await
            .unwrap()
            .unwrap()
            .blocked_at,
        None
    );

    // A flood: five messages pass, the sixth is told to wait, the rest are ignored.
    let user = User::new(7040, "Flood");
    let mut last = 0;
    for _ in 0..9 {
        last = tg.text(user.id, &user, "/help");
    }
    let texts = tg.wait_for_messages(user.id, 6).await;
    assert!(
        texts[..5]
            .iter()
            .all(|t| t.starts_with("<b>What I can do</b>"))
    );
    assert!(
        texts[5].starts_with("⏱ Too many messages. Please wait"),
        "{}",
        texts[5]
    );
    // Every update of the flood handled (its offset stored): anything it would answer is sent.
    wait_for_offset_past(&gw, last).await;
    assert_eq!(
        tg.sent_to(user.id).len(),
        6,
        "the rest of the flood is not answered"
    );

    let refused = tg.refused();
    assert!(
        refused.iter().all(|c| c.body["chat_id"] == late.id),
        "{refused:?}"
    );
    gw.stop().await;
}

/// `/status`, `/history`, `/unlink` for customers; `/stats` and `/pending` in the admin chat;
/// the check-status button answers its callback query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_history_unlink_button_and_admin_commands() {
    let tg = FakeTelegram::start().await;
    let mut options = bot_options(Backend::Sqlite, &tg).env("RECONCILE_AFTER_SECS", "3600");
    options.sim.prompt_timeout = Duration::from_secs(60);
    let gw = spawn_with(options).await;
    let user = User::new(8080, "Njeri");
    link(&tg, &user, SUCCESS).await;
    tg.text(user.id, &user, "/pay 150 SHOES");
    let (message_id, payment_id, _) = status_message(&tg, user.id).await;
    wait_for_text(&tg, user.id, message_id, "Payment completed").await;
    let receipt = gw
        .storage()
        .get_payment(&payment_id)
        .await
        .unwrap()
        .unwrap()
        .mpesa_receipt_number
        .unwrap();

    tg.text(user.id, &user, "/status");
    let texts = tg.wait_for_messages(user.id, 4).await;
    assert!(texts[3].starts_with("📱 Linked number: <b>+254 708 374 149</b>\n\nYour latest payment:\n✅ <b>KSh 150</b> · SHOES · completed · "), "{}", texts[3]);
    tg.text(user.id, &user, "/history");
    let texts = tg.wait_for_messages(user.id, 5).await;
    assert!(
        texts[4].starts_with("<b>Your last 1 payments</b>\n✅ <b>KSh 150</b> · SHOES"),
        "{}",
        texts[4]
    );
    assert!(
        texts[4].ends_with(&format!("<code>{receipt}</code>")),
        "{}",
        texts[4]
    );

    // A second customer whose prompt is still open presses "check status".
    let waiting = User::new(8081, "Kamau");
    link(&tg, &waiting, NO_ANSWER).await;
    tg.text(waiting.id, &waiting, "/pay 75 BAG");
    let (waiting_message, waiting_payment, _) = status_message(&tg, waiting.id).await;
    wait_for_text(&tg, waiting.id, waiting_message, "Check your phone").await;
    let query_id = tg.button(
        waiting.id,
        &waiting,
        waiting_message,
        &format!("status:{waiting_payment}"),
    );
    tg.wait_until(Duration::from_secs(10), "the button's answer", |f| {
        !f.calls_of("answerCallbackQuery").is_empty()
    })
    .await;
    let answer = &tg.calls_of("answerCallbackQuery")[0];
    assert_eq!(
        *answer,
        serde_json::json!({ "callback_query_id": query_id, "text": "Waiting for your PIN" })
    );
    // Another customer's payment is not this chat's to look at.
    let stranger = User::new(8082, "Stranger");
    tg.button(
        stranger.id,
        &stranger,
        1,
        &format!("status:{waiting_payment}"),
    );
    tg.wait_until(Duration::from_secs(10), "the second answer", |f| {
        f.calls_of("answerCallbackQuery").len() == 2
    })
    .await;
    assert_eq!(
        tg.calls_of("answerCallbackQuery")[1]["text"],
        "This payment belongs to another chat."
    );

    // The admin chat (a group).
    let admin = User::new(1, "Admin");
    tg.text(ADMIN_CHAT, &admin, "/stats");
    tg.wait_until(Duration::from_secs(10), "/stats' answer", |f| {
        f.texts_to(ADMIN_CHAT).iter().any(|t| t.starts_with("📊"))
    })
    .await;
    let texts = tg.texts_to(ADMIN_CHAT);
    let stats = texts.iter().find(|t| t.starts_with("📊")).unwrap();
    assert!(
        stats.contains("Payments: 2\n✅ Completed: 1 · <b>KSh 150</b>\n"),
        "{stats}"
    );
    assert!(
        stats
            .contains("⏳ In progress: 1\nSuccess rate: 100% of 1 finished\n🔎 Held for review: 0"),
        "{stats}"
    );
    tg.text(ADMIN_CHAT, &admin, "/pending");
    tg.wait_until(Duration::from_secs(10), "/pending's answer", |f| {
        f.texts_to(ADMIN_CHAT)
            .iter()
            .any(|t| t.starts_with("⏳ <b>Waiting"))
    })
    .await;
    let pending = tg
        .texts_to(ADMIN_CHAT)
        .into_iter()
        .find(|t| t.starts_with("⏳ <b>Waiting"))
        .unwrap();
    assert!(
        pending.contains(&format!(
            "• <b>KSh 75</b> · BAG · {NO_ANSWER} · pending since "
        )),
        "{pending}"
    );
    assert!(
        pending.contains(&format!("<code>{waiting_payment}</code>")),
        "{pending}"
    );
    assert!(!pending.contains("SHOES"), "{pending}");
    tg.text(ADMIN_CHAT, &admin, "/help");
    tg.wait_until(Duration::from_secs(10), "admin help", |f| {
        f.texts_to(ADMIN_CHAT)
            .iter()
            .any(|t| t.contains("<b>Admin</b>\n/stats"))
    })
    .await;

    // Unlinking: the chat can no longer pay.
    let leaving = User::new(8083, "Leaving");
    link(&tg, &leaving, WRONG_PIN).await;
    tg.text(leaving.id, &leaving, "/unlink");
    let texts = tg.wait_for_messages(leaving.id, 3).await;
    assert_eq!(
        texts[2],
        "Your number is no longer linked to this chat. Send /start to link it again."
    );
    assert_eq!(
        gw.storage().find_telegram_link(leaving.id).await.unwrap(),
        None
    );
    tg.text(leaving.id, &leaving, "/pay 10");
    let texts = tg.wait_for_messages(leaving.id, 4).await;
    assert!(
        texts[3].starts_with("No phone number is linked"),
        "{}",
        texts[3]
    );
    assert!(tg.refused().is_empty(), "{:?}", tg.refused());
    gw.stop().await;
}
