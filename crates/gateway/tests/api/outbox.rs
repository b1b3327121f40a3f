//! The outbox end to end: payments through the simulator, and what arrives at a real SMTP
//! server, a Bot API double and a webhook receiver on loopback.

use std::time::Duration;

use mpesa_storage::{Backend, Channel, OutboxStatus, Storage, TelegramLink};
use serde_json::{Value, json};

use crate::outbox_receivers::*;
use crate::support::*;
use mpesa_gateway::clock::{Clock, ManualClock};

pub const CUSTOMER_CHAT: i64 = 777_001;
pub const CUSTOMER_EMAIL: &str = "customer@example.com";
pub const ADMIN_EMAIL: &str = "admin@example.com";
/// Outside text that would break or forge an HTML message if it were not escaped.
pub const HOSTILE_DESCRIPTION: &str = "<b>Shoes</b> & <a href=\"https://evil.example\">socks</a>";

pub struct Destinations {
    pub webhook: WebhookReceiver,
    pub smtp: SmtpServer,
    pub telegram: TelegramDouble,
}

impl Destinations {
    pub async fn start() -> Self {
        Destinations {
            webhook: WebhookReceiver::start().await,
            smtp: SmtpServer::start(SmtpTls::None, None).await,
            telegram: TelegramDouble::start(&[]).await,
        }
    }

    /// A gateway with every channel pointed here, quick retries and a quick poll.
    pub fn options(&self, backend: Backend, retries: &str) -> Options {
        Options::new(backend)
            .env("WEBHOOK_URL", &self.webhook.url)
            .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("WEBHOOK_ALLOW_PRIVATE", "true")
            .env(
                "SMTP_URL",
                &format!("smtp://127.0.0.1:{}?tls=none", self.smtp.port),
            )
            .env("EMAIL_FROM", "Duka Shop <shop@example.com>")
            .env("ADMIN_EMAIL", ADMIN_EMAIL)
            .env("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
            .env("TELEGRAM_API_BASE", &self.telegram.uri())
            .env("ADMIN_CHAT_ID", &ADMIN_CHAT.to_string())
            .env("OUTBOX_RETRY_WEBHOOK", retries)
            .env("OUTBOX_RETRY_EMAIL", retries)
            .env("OUTBOX_RETRY_TELEGRAM", retries)
            .env("OUTBOX_POLL_INTERVAL", "50ms")
            .env("RECONCILE_AFTER_SECS", "3600")
            .env("PAYMENT_EXPIRES_AFTER_SECS", "7200")
    }
}

pub async fn wait_outbox_idle(storage: &dyn Storage) {
    eventually("no pending outbox event", Duration::from_secs(20), || {
        let f = storage.outbox_counts();
        async move { f.await.unwrap().pending == 0 }
    })
    .await;
}

async fn settled_payment(gw: &TestGateway, body: Value) -> (String, mpesa_storage::Payment) {
    let (status, created) = gw.create_payment(body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let p = gw
        .wait_for_status(&id, "completed", Duration::from_secs(10))
        .await;
    (id, p)
}

fn payment_body() -> Value {
    json!({
        "phone": SUCCESS, "amount": 1250, "reference": "INV42",
        "description": HOSTILE_DESCRIPTION,
        "customer_email": CUSTOMER_EMAIL, "telegram_chat_id": CUSTOMER_CHAT
    })
}

/// One payment: one receipt email, one admin alert, one customer receipt, one signed webhook;
/// 200 copies of its callback change none of those counts.
async fn one_payment_tells_everyone_once(backend: Backend) {
    let d = Destinations::start().await;
    let gw = spawn_with(d.options(backend, "200ms,200ms,200ms")).await;
    let storage = gw.storage();
    let (id, payment) = settled_payment(&gw, payment_body()).await;
    let events = storage.outbox_for_payment(&id).await.unwrap();
    assert_eq!(
        events.len(),
        4,
        "webhook, admin alert, customer receipt, email: {events:?}"
    );
    eventually("all four delivered", Duration::from_secs(15), || {
        let s = storage.clone();
        let id = id.clone();
        async move {
            s.outbox_for_payment(&id)
                .await
                .unwrap()
                .iter()
                .all(|e| e.status == OutboxStatus::Delivered)
        }
    })
    .await;
    let by_channel = |c: Channel| {
        events
            .iter()
            .filter(|e| e.channel == c)
            .cloned()
            .collect::<Vec<_>>()
    };

    // The webhook: the stored event, byte for byte, signed.
    let webhook_event = &by_channel(Channel::Webhook)[0];
    let hits = d.webhook.hits();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.body.as_ref(), webhook_event.payload.as_bytes());
    assert!(hit.signature_is_valid(WEBHOOK_SECRET), "{:?}", hit.headers);
    assert!(!hit.signature_is_valid("another-secret-0123456789"));
    assert_eq!(hit.event_id, webhook_event.id);
    assert_eq!(hit.header("content-type"), "application/json");
    assert!(hit.header("user-agent").starts_with("mpesa-gateway/"));
    let body = hit.json();
    assert_eq!(body["id"], webhook_event.id.as_str());
    assert_eq!(body["type"], "payment.completed");
    assert_eq!(body["data"]["id"], id.as_str());
    assert_eq!(body["data"]["status"], "completed");
    assert_eq!(body["data"]["amount"], 1250);
    let t: i64 = hit.header("mpesa-gateway-signature")[2..12]
        .parse()
        .unwrap();
    assert!((t - mpesa_gateway::ids::now_ms() / 1000).abs() < 60);

    // Telegram: an alert to the admin chat and a receipt to the customer's, escaped.
    let admin = d.telegram.messages_to(ADMIN_CHAT).await;
    let customer = d.telegram.messages_to(CUSTOMER_CHAT).await;
    assert_eq!(
        (admin.len(), customer.len()),
        (1, 1),
        "{admin:?} {customer:?}"
    );
    for m in [&admin[0], &customer[0]] {
        assert_eq!(m["parse_mode"], "HTML");
        assert_eq!(m["link_preview_options"]["is_disabled"], true);
        let text = m["text"].as_str().unwrap();
        assert!(text.contains("KSh 1,250"), "{text}");
        assert!(
            text.contains("&lt;b&gt;Shoes&lt;/b&gt; &amp; &lt;a href=&quot;https://evil.example&quot;&gt;socks&lt;/a&gt;"),
            "{text}"
        );
        assert!(
            !text.contains("<a ") && !text.contains("<b>Shoes"),
            "{text}"
        );
        assert!(text.contains(payment.mpesa_receipt_number.as_deref().unwrap()));
    }
    let admin_text = admin[0]["text"].as_str().unwrap();
    assert!(
        admin_text.starts_with("✅ <b>Payment completed</b>"),
        "{admin_text}"
    );
    assert!(
        admin_text.contains(SUCCESS),
        "the admin chat sees the number"
    );
    assert!(admin_text.contains(&id));
    let customer_text = customer[0]["text"].as_str().unwrap();
    assert!(!customer_text.contains(SUCCESS), "{customer_text}");
    assert!(!customer_text.contains(&id), "{customer_text}");

    // Email: one receipt, parsed as a mail client would.
    let mail = d.smtp.mail();
    assert_eq!(mail.len(), 1, "one receipt email");
    let email_event = &by_channel(Channel::Email)[0];
    check_receipt_email(&mail[0], &email_event.id, &payment);

    // 200 copies of the callback: nothing more is written or sent.
    let callback = gw
        .sim()
        .callbacks()
        .into_iter()
        .find(|c| Some(&c.reference) == payment.checkout_request_id.as_ref())
        .expect("the simulator's callback");
    let body = callback.body.get().as_bytes().to_vec();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let client = gw.client.clone();
        let url = gw.url(&format!("/callbacks/{}/stk", gw.callback_secret()));
        let body = body.clone();
        tasks.spawn(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(storage.outbox_for_payment(&id).await.unwrap().len(), 4);
    wait_outbox_idle(storage.as_ref()).await;
    assert_eq!(d.webhook.hits().len(), 1);
    assert_eq!(d.telegram.messages().await.len(), 2);
    assert_eq!(d.smtp.mail().len(), 1);
    gw.stop().await;
}

pub fn check_receipt_email(mail: &ReceivedMail, event_id: &str, payment: &mpesa_storage::Payment) {
    assert_eq!(mail.mail_from, "shop@example.com");
    assert_eq!(mail.rcpt_to, vec![CUSTOMER_EMAIL.to_owned()]);
    let m = mail.parsed();
    assert_eq!(m.subject(), Some("Payment Complete"));
    let from = m.from().unwrap().first().unwrap();
    assert_eq!(
        (from.name(), from.address()),
        (Some("Duka Shop"), Some("shop@example.com"))
    );
    assert_eq!(
        m.to().unwrap().first().unwrap().address(),
        Some(CUSTOMER_EMAIL)
    );
    assert_eq!(
        m.message_id(),
        Some(format!("{event_id}@example.com").as_str())
    );
    let date = m.date().expect("a Date header");
    assert!((date.to_timestamp() - mpesa_gateway::ids::now_ms() / 1000).abs() < 120);
    let raw = String::from_utf8_lossy(&mail.data);
    assert!(
        raw.to_ascii_lowercase().contains("multipart/alternative"),
        "{raw}"
    );
    let text = m.body_text(0).expect("a text part").into_owned();
    let html = m.body_html(0).expect("an HTML part").into_owned();
    let receipt = payment.mpesa_receipt_number.as_deref().unwrap();
    let when = mpesa_gateway::ids::eat_display(payment.transaction_date.unwrap());
    assert!(when.ends_with("EAT"));
    for part in [&text, &html] {
        assert!(part.contains(receipt), "{part}");
        assert!(part.contains("KSh 1,250"), "{part}");
        assert!(part.contains(&when), "{part}");
        assert!(part.contains("INV42"), "{part}");
    }
    assert!(text.contains(HOSTILE_DESCRIPTION), "{text}");
    assert!(
        html.contains("&lt;b&gt;Shoes&lt;/b&gt; &amp; &lt;a href=&quot;https://evil.example&quot;&gt;socks&lt;/a&gt;"),
        "{html}"
    );
    assert!(
        !html.contains("<b>Shoes") && !html.contains("<a href"),
        "{html}"
    );
}

crate::on_every_backend!(one_payment_tells_everyone_once);

/// Every destination down for a while, then back: everything arrives once, with the ids it had
/// while failing; every attempt is on record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_down_then_back_deliver_everything_with_the_same_ids() {
    let d = Destinations::start().await;
    d.webhook.set_mode(WebhookMode::Status(503));
    d.smtp.set_mode(SmtpMode::TempFail);
    d.telegram.set_up(false);
    let gw = spawn_with(d.options(Backend::Sqlite, &["200ms"; 20].join(","))).await;
    let storage = gw.storage();
    let (id, _) = settled_payment(&gw, payment_body()).await;
    let events = storage.outbox_for_payment(&id).await.unwrap();
    assert_eq!(events.len(), 4);
    for e in &events {
        eventually(
            &format!("two failed attempts of {}", e.channel.as_str()),
            Duration::from_secs(15),
            || {
                let s = storage.clone();
                let id = e.id.clone();
                async move { s.outbox_attempts(&id).await.unwrap().len() >= 2 }
            },
        )
        .await;
    }
    let health: Value = gw
        .client
        .get(gw.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for dep in ["webhook", "smtp", "telegram"] {
        assert_eq!(health[dep]["status"], "failing", "{dep}: {health}");
    }
    assert!(d.smtp.mail().is_empty());

    d.webhook.set_mode(WebhookMode::Ok);
    d.smtp.set_mode(SmtpMode::Accept);
    d.telegram.set_up(true);
    eventually("all delivered once back", Duration::from_secs(15), || {
        let s = storage.clone();
        let id = id.clone();
        async move {
            s.outbox_for_payment(&id)
                .await
                .unwrap()
                .iter()
                .all(|e| e.status == OutboxStatus::Delivered)
        }
    })
    .await;
    for e in &events {
        let attempts = storage.outbox_attempts(&e.id).await.unwrap();
        let (last, failed) = attempts.split_last().unwrap();
        assert_eq!(last.result, "delivered", "{attempts:?}");
        assert!(failed.len() >= 2);
        for a in failed {
            assert_eq!(a.result, "failed");
            assert!(a.error.as_deref().is_some_and(|e| !e.is_empty()), "{a:?}");
            assert!(a.duration_ms >= 0);
        }
        let numbers: Vec<i32> = attempts.iter().map(|a| a.attempt).collect();
        assert_eq!(numbers, (1..=attempts.len() as i32).collect::<Vec<_>>());
    }
    let webhook_id = &events
        .iter()
        .find(|e| e.channel == Channel::Webhook)
        .unwrap()
        .id;
    let hits = d.webhook.hits();
    assert!(hits.len() >= 3);
    assert!(
        hits.iter().all(|h| &h.event_id == webhook_id),
        "same id on every attempt"
    );
    assert!(hits.iter().all(|h| h.signature_is_valid(WEBHOOK_SECRET)));
    assert_eq!(d.webhook.delivered().len(), 1);
    let webhook_attempts = storage.outbox_attempts(webhook_id).await.unwrap();
    assert_eq!(webhook_attempts[0].response_code, Some(503));
    assert!(
        webhook_attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("HTTP 503")
    );
    assert_eq!(d.smtp.mail().len(), 1, "the email arrives once");
    let email_event = events.iter().find(|e| e.channel == Channel::Email).unwrap();
    assert_eq!(
        d.smtp.mail()[0].parsed().message_id(),
        Some(format!("{}@example.com", email_event.id).as_str())
    );
    let telegram_ok: Vec<Value> = d.telegram.messages().await;
    // Every attempt went to the double; the ones after it came back succeeded, once per chat.
    let chats: Vec<i64> = telegram_ok
        .iter()
        .map(|m| m["chat_id"].as_i64().unwrap())
        .collect();
    assert!(chats.len() >= 6);
    wait_outbox_idle(storage.as_ref()).await;
    let health: Value = gw
        .client
        .get(gw.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for dep in ["webhook", "smtp", "telegram"] {
        assert_eq!(health[dep]["status"], "ok", "{dep}: {health}");
    }
    gw.stop().await;
}

/// After the last retry the event is dead, visible, and `outbox retry ID` sends it again with
/// the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_is_visible_and_retry_sends_it_again() {
    let receiver = WebhookReceiver::start().await;
    receiver.set_mode(WebhookMode::Status(500));
    let gw = spawn_with(
        Options::new(Backend::Sqlite)
            .env("WEBHOOK_URL", &receiver.url)
            .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("WEBHOOK_ALLOW_PRIVATE", "true")
            .env("OUTBOX_RETRY_WEBHOOK", "100ms,100ms")
            .env("OUTBOX_POLL_INTERVAL", "50ms"),
    )
    .await;
    let storage = gw.storage();
    let id = gw.pay(SUCCESS, 10).await;
    gw.wait_for_status(&id, "completed", Duration::from_secs(10))
        .await;
    let event = storage.outbox_for_payment(&id).await.unwrap().remove(0);
    eventually("dead-lettered", Duration::from_secs(10), || {
        let s = storage.clone();
        let id = event.id.clone();
        async move { s.get_outbox_event(&id).await.unwrap().unwrap().status == OutboxStatus::Dead }
    })
    .await;
    let attempts = storage.outbox_attempts(&event.id).await.unwrap();
    let results: Vec<&str> = attempts.iter().map(|a| a.result.as_str()).collect();
    assert_eq!(results, ["failed", "failed", "dead"]);
    assert!(attempts.iter().all(|a| a.response_code == Some(500)
        && a.error.as_deref().unwrap().contains("receiver says 500")));
    let health: Value = gw
        .client
        .get(gw.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["outbox"]["dead"], 1, "{health}");

    let cli = |args: &[&str]| gw.run_cli(args);
    let (ok, listed, err) = cli(&["outbox", "list", "--status", "dead"]);
    assert!(ok, "{err}");
    assert!(
        listed.contains(&event.id) && listed.contains("receiver says 500"),
        "{listed}"
    );
    let (ok, shown, err) = cli(&["outbox", "show", &event.id]);
    assert!(ok, "{err}");
    assert!(shown.contains("#3") && shown.contains("dead"), "{shown}");

    receiver.set_mode(WebhookMode::Ok);
    let (ok, out, err) = cli(&["outbox", "retry", &event.id]);
    assert!(ok, "{out}{err}");
    eventually("delivered after the retry", Duration::from_secs(10), || {
        let s = storage.clone();
        let id = event.id.clone();
        async move { s.get_outbox_event(&id).await.unwrap().unwrap().status == OutboxStatus::Delivered }
    })
    .await;
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].event_id, event.id);
    assert_eq!(delivered[0].body.as_ref(), event.payload.as_bytes());
    assert_eq!(receiver.hits().len(), 4);
    // A delivered event cannot be "retried".
    let (ok, _, err) = cli(&["outbox", "retry", &event.id]);
    assert!(!ok && err.contains("only dead or blocked"), "{err}");
    gw.stop().await;
}

/// A failed delivery is tried again when its backoff has passed on the gateway's clock: with a
/// real schedule (ten minutes), the test moves time instead of waiting ten minutes. The
/// retry's due time is the first attempt's time plus the backoff, both read from that clock.
/// (With the system clock this test waits ten minutes for the retry, and fails.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_comes_due_on_the_gateways_clock() {
    let time = std::sync::Arc::new(ManualClock::new(chrono::Utc::now()));
    let receiver = WebhookReceiver::start().await;
    receiver.set_mode(WebhookMode::Status(500));
    let gw = spawn_with(
        Options::new(Backend::Sqlite)
            .env("WEBHOOK_URL", &receiver.url)
            .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("WEBHOOK_ALLOW_PRIVATE", "true")
            .env("OUTBOX_RETRY_WEBHOOK", "10m,10m")
            .env("OUTBOX_POLL_INTERVAL", "50ms")
            .clock(Clock::manual(time.clone())),
    )
    .await;
    let storage = gw.storage();
    let id = gw.pay(SUCCESS, 10).await;
    gw.wait_for_status(&id, "completed", Duration::from_secs(10))
        .await;
    let event = storage.outbox_for_payment(&id).await.unwrap().remove(0);
    eventually("the first attempt failed", Duration::from_secs(10), || {
        let s = storage.clone();
        let id = event.id.clone();
        async move { s.get_outbox_event(&id).await.unwrap().unwrap().attempts == 1 }
    })
    .await;
    receiver.set_mode(WebhookMode::Ok);
    let waiting = storage.get_outbox_event(&event.id).await.unwrap().unwrap();
    let first = storage.outbox_attempts(&event.id).await.unwrap().remove(0);
    assert_eq!(waiting.status, OutboxStatus::Pending);
    // Ten minutes ±10% jitter after the attempt, on the gateway's clock (which has not moved).
    let backoff = waiting.next_attempt_at - first.started_at;
    assert!((540_000..=660_000).contains(&backoff), "{backoff} ms");
    time.advance(chrono::Duration::minutes(11));
    eventually(
        "delivered once the backoff passed",
        Duration::from_secs(10),
        || {
            let s = storage.clone();
            let id = event.id.clone();
            async move {
                s.get_outbox_event(&id).await.unwrap().unwrap().status == OutboxStatus::Delivered
            }
        },
    )
    .await;
    assert_eq!(receiver.hits().len(), 2, "one failure, one delivery");
    assert_eq!(receiver.delivered().len(), 1);
    gw.stop().await;
}

/// Telegram: a 429's retry_after sets the next attempt; a chat that blocked the bot is recorded
/// and never tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_obeys_retry_after_and_records_blocked_chats() {
    let telegram = TelegramDouble::start(&[CUSTOMER_CHAT]).await;
    // The admin chat's first message meets a 429 asking for 1 s.
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::body_partial_json(
            json!({ "chat_id": ADMIN_CHAT }),
        ))
        .respond_with(wiremock::ResponseTemplate::new(429).set_body_json(json!({
            "ok": false, "error_code": 429,
            "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&telegram.server)
        .await;
    let gw = spawn_with(
        Options::new(Backend::Sqlite)
            .env("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
            .env("TELEGRAM_API_BASE", &telegram.uri())
            .env("ADMIN_CHAT_ID", &ADMIN_CHAT.to_string())
            .env("OUTBOX_RETRY_TELEGRAM", "100ms,100ms,100ms")
            .env("OUTBOX_POLL_INTERVAL", "50ms"),
    )
    .await;
    let storage = gw.storage();
    storage
        .link_telegram_chat(&TelegramLink {
            chat_id: CUSTOMER_CHAT,
            user_id: CUSTOMER_CHAT,
            phone: SUCCESS.into(),
            linked_at: mpesa_gateway::ids::now_ms(),
            blocked_at: None,
        })
        .await
        .unwrap();
    // No telegram_chat_id given: the receipt goes to the chat linked to the phone.
    let id = gw.pay(SUCCESS, 10).await;
    gw.wait_for_status(&id, "completed", Duration::from_secs(10))
        .await;
    let events = storage.outbox_for_payment(&id).await.unwrap();
    let receipt = events
        .iter()
        .find(|e| e.destination == CUSTOMER_CHAT.to_string())
        .expect("a receipt row");
    let alert = events
        .iter()
        .find(|e| e.destination == ADMIN_CHAT.to_string())
        .expect("an alert row");
    wait_outbox_idle(storage.as_ref()).await;

    let receipt_now = storage
        .get_outbox_event(&receipt.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receipt_now.status, OutboxStatus::Blocked);
    let attempts = storage.outbox_attempts(&receipt.id).await.unwrap();
    assert_eq!(attempts.len(), 1, "blocked is not retried: {attempts:?}");
    assert_eq!(attempts[0].response_code, Some(403));
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("blocked by the user")
    );
    let link = storage
        .find_telegram_link(CUSTOMER_CHAT)
        .await
        .unwrap()
        .unwrap();
    assert!(
        link.blocked_at.is_some(),
        "the block is recorded on the chat"
    );

    let alert_attempts = storage.outbox_attempts(&alert.id).await.unwrap();
    assert_eq!(alert_attempts.len(), 2, "{alert_attempts:?}");
    assert_eq!(alert_attempts[0].response_code, Some(429));
    assert_eq!(alert_attempts[1].result, "delivered");
    let waited = alert_attempts[1].started_at - alert_attempts[0].started_at;
    assert!(
        waited >= 1000,
        "retry_after (1 s) obeyed over the 100 ms schedule: {waited} ms"
    );

    // A second payment: the blocked chat is not even asked.
    let asked_before = telegram.messages_to(CUSTOMER_CHAT).await.len();
    let second = gw.pay(SUCCESS, 11).await;
    gw.wait_for_status(&second, "completed", Duration::from_secs(10))
        .await;
    wait_outbox_idle(storage.as_ref()).await;
    assert_eq!(
        telegram.messages_to(CUSTOMER_CHAT).await.len(),
        asked_before
    );
    // The payment service skips a blocked chat when it picks one; a row, if any, is blocked.
    for e in storage.outbox_for_payment(&second).await.unwrap() {
        if e.destination == CUSTOMER_CHAT.to_string() {
            assert_eq!(e.status, OutboxStatus::Blocked);
        }
    }
    gw.stop().await;
}

/// A permanent refusal of the recipient dead-letters the email at once, with the server's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_refused_for_the_recipient_is_dead_lettered_at_once() {
    let smtp = SmtpServer::start(SmtpTls::None, None).await;
    smtp.set_mode(SmtpMode::RejectRecipient(CUSTOMER_EMAIL.into()));
    let gw = spawn_with(
        Options::new(Backend::Sqlite)
            .env(
                "SMTP_URL",
                &format!("smtp://127.0.0.1:{}?tls=none", smtp.port),
            )
            .env("EMAIL_FROM", "shop@example.com")
            .env("OUTBOX_RETRY_EMAIL", "100ms,100ms,100ms")
            .env("OUTBOX_POLL_INTERVAL", "50ms"),
    )
    .await;
    let storage = gw.storage();
    let (status, created) = gw
        .create_payment(json!({"phone": SUCCESS, "amount": 10, "reference": "R1", "customer_email": CUSTOMER_EMAIL}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    gw.wait_for_status(id, "completed", Duration::from_secs(10))
        .await;
    wait_outbox_idle(storage.as_ref()).await;
    let events = storage.outbox_for_payment(id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].status, OutboxStatus::Dead);
    let attempts = storage.outbox_attempts(&events[0].id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].response_code, Some(550));
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no such user here"),
        "{attempts:?}"
    );
    assert!(smtp.mail().is_empty());
    gw.stop().await;
}

/// Shutdown does not wait on a delivery that hangs: the worker stops claiming and abandons it
/// to its lease within a bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_with_a_delivery_in_flight() {
    let receiver = WebhookReceiver::start().await;
    receiver.set_mode(WebhookMode::Hold);
    let gw = spawn_with(
        Options::new(Backend::Sqlite)
            .env("WEBHOOK_URL", &receiver.url)
            .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("WEBHOOK_ALLOW_PRIVATE", "true")
            .env("WEBHOOK_TIMEOUT", "60s")
            .env("OUTBOX_LEASE", "60s")
            .env("OUTBOX_POLL_INTERVAL", "50ms"),
    )
    .await;
    let id = gw.pay(SUCCESS, 10).await;
    gw.wait_for_status(&id, "completed", Duration::from_secs(10))
        .await;
    eventually("the delivery is in flight", Duration::from_secs(10), || {
        let n = receiver.hits().len();
        async move { n == 1 }
    })
    .await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(20), gw.stop())
        .await
        .expect("the gateway stops within the shutdown grace");
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// The stop is bounded when a delivery has ended but its attempt cannot be recorded (the
/// database does not answer: the event's row is locked elsewhere). The attempt is left
/// unrecorded, to be delivered again once its lease lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_while_an_attempt_cannot_be_recorded() {
    use sqlx::Connection as _;
    let receiver = WebhookReceiver::start().await;
    receiver.set_mode(WebhookMode::Hold);
    let gw = spawn_with(
        Options::new(Backend::Postgres)
            .env("WEBHOOK_URL", &receiver.url)
            .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("WEBHOOK_ALLOW_PRIVATE", "true")
            .env("WEBHOOK_TIMEOUT", "60s")
            .env("OUTBOX_LEASE", "60s")
            .env("OUTBOX_POLL_INTERVAL", "50ms"),
    )
    .await;
    let id = gw.pay(SUCCESS, 10).await;
    gw.wait_for_status(&id, "completed", Duration::from_secs(10))
        .await;
    eventually("the delivery is in flight", Duration::from_secs(10), || {
        let n = receiver.hits().len();
        async move { n == 1 }
    })
    .await;
    let mut locker = sqlx::PgConnection::connect(gw.database.url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("SELECT id FROM outbox_events FOR UPDATE")
        .fetch_all(&mut locker)
        .await
        .unwrap();
    // The receiver answers; recording the attempt waits for the lock.
    receiver.set_mode(WebhookMode::Ok);
    let watcher = sqlx::PgPool::connect(gw.database.url()).await.unwrap();
    eventually(
        "the attempt's recording waits for the lock",
        Duration::from_secs(10),
        || {
            let watcher = watcher.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock' AND query LIKE '%outbox_events%'",
                )
                .fetch_one(&watcher)
                .await
                .unwrap()
                    == 1
            }
        },
    )
    .await;
    // Kept past the stop, which would drop it.
    let _database = gw.database.clone();
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(20), gw.stop())
        .await
        .expect("the gateway stops within the shutdown grace");
    assert!(started.elapsed() < Duration::from_secs(15));
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let (status, attempts): (String, i64) =
        sqlx::query_as("SELECT status, CAST(attempts AS BIGINT) FROM outbox_events")
            .fetch_one(&mut locker)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("pending", 0));
}

/// When the database stops answering mid-pass (the events' rows locked elsewhere), the outbox
/// stops delivering too: at most 16 deliveries are made and not recorded, which are what would
/// be delivered again once their leases lapsed. Then everything is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_stop_while_their_attempts_cannot_be_recorded() {
    use sqlx::Connection as _;
    const N: usize = 30;
    let receiver = WebhookReceiver::start().await;
    receiver.set_mode(WebhookMode::Hold);
    let gw = spawn_with(
        Options::new(Backend::Postgres)
            .env("WEBHOOK_URL", &receiver.url)
            .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("WEBHOOK_ALLOW_PRIVATE", "true")
            .env("WEBHOOK_TIMEOUT", "60s")
            .env("OUTBOX_LEASE", "60s")
            .env("OUTBOX_POLL_INTERVAL", "50ms"),
    )
    .await;
    // The first payments' deliveries are held, so the others' events wait to be claimed
    // together by the next pass.
    for i in 0..N {
        let id = gw.pay(&format!("2547111{i:05}"), 10).await;
        gw.wait_for_status(&id, "completed", Duration::from_secs(10))
            .await;
    }
    let held = receiver.hits().len();
    assert!(held <= 8, "{held} deliveries in flight");
    // Answers come slowly now: the next pass claims the rest and delivers them 8 at a time.
    receiver.set_mode(WebhookMode::Slow(Duration::from_millis(300)));
    eventually("the next pass delivers", Duration::from_secs(10), || {
        let n = receiver.hits().len();
        async move { n > held }
    })
    .await;
    let mut locker = sqlx::PgConnection::connect(gw.database.url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("SELECT id FROM outbox_events FOR UPDATE")
        .fetch_all(&mut locker)
        .await
        .unwrap();
    let watcher = sqlx::PgPool::connect(gw.database.url()).await.unwrap();
    eventually(
        "the attempts' recording waits for the lock",
        Duration::from_secs(10),
        || {
            let watcher = watcher.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock' AND query LIKE '%outbox_events%'",
                )
                .fetch_one(&watcher)
                .await
                .unwrap()
                    == 1
            }
        },
    )
    .await;
    // Unbounded, the pass would deliver all of its events within a few of the receiver's
    // 300 ms answers; bounded, it stops at 16 unrecorded.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let recorded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox_events WHERE status = 'delivered'")
            .fetch_one(&watcher)
            .await
            .unwrap();
    let unrecorded = receiver.hits().len() as i64 - recorded;
    assert!(
        (1..=16).contains(&unrecorded),
        "{unrecorded} deliveries made and not recorded ({recorded} recorded)"
    );
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    receiver.set_mode(WebhookMode::Ok);
    let storage = gw.storage();
    eventually("every event delivered", Duration::from_secs(30), || {
        let s = storage.clone();
        async move {
            let c = s.outbox_counts().await.unwrap();
            c.delivered == N as i64 && c.pending == 0
        }
    })
    .await;
    // Every hit (the held ones were answered 200 once released): each event once.
    let mut counts = std::collections::BTreeMap::new();
    for hit in receiver.hits() {
        *counts.entry(hit.event_id).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), N, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
}

/// Two instances on one PostgreSQL database: each event is delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_postgres_deliver_each_event_once() {
    let receiver = WebhookReceiver::start().await;
    // Slow answers keep deliveries in flight while the other instance claims.
    receiver.set_mode(WebhookMode::Slow(Duration::from_millis(30)));
    let sim = daraja_sim::Simulator::new(
        daraja_sim::SimConfig::for_tests()
            .accept_credentials("sandbox-consumer-key", "sandbox-consumer-secret"),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_url = format!("http://{}/", listener.local_addr().unwrap());
    let serving = sim.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    let database =
        std::sync::Arc::new(mpesa_harness::database::TestDatabase::new(Backend::Postgres).await);
    let options = || Options {
        database: Some(database.clone()),
        daraja_url: Some(sim_url.clone()),
        ..Options::new(Backend::Postgres)
            .env("WEBHOOK_URL", &receiver.url)
            .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("WEBHOOK_ALLOW_PRIVATE", "true")
            .env("OUTBOX_POLL_INTERVAL", "20ms")
            .env("RECONCILE_AFTER_SECS", "3600")
            .env("PAYMENT_EXPIRES_AFTER_SECS", "7200")
    };
    let a = spawn_with(options()).await;
    let b = spawn_with(options()).await;
    const N: usize = 24;
    let mut ids = Vec::new();
    for i in 0..N {
        let gw = if i % 2 == 0 { &a } else { &b };
        // One number per payment: the simulator, like M-Pesa, runs one push per subscriber.
        ids.push(gw.pay(&format!("2547111{i:05}"), 10 + i as i64).await);
    }
    for id in &ids {
        a.wait_for_status(id, "completed", Duration::from_secs(20))
            .await;
    }
    let storage = a.storage();
    eventually("every event delivered", Duration::from_secs(30), || {
        let s = storage.clone();
        async move {
            let c = s.outbox_counts().await.unwrap();
            c.delivered == N as i64 && c.pending == 0
        }
    })
    .await;
    let counts = receiver.delivered_by_event();
    assert_eq!(counts.len(), N, "{counts:?}");
    assert!(
        counts.values().all(|n| *n == 1),
        "an event was delivered twice: {counts:?}"
    );
    assert_eq!(receiver.hits().len(), N);
    a.stop().await;
    b.stop().await;
}

/// An instance without a channel's settings (here: no webhook; a dashboard-only instance, or one
/// half-way through a rolling deploy) leaves that channel's events to the instances that have it.
/// It used to claim them with the rest and dead-letter them at once ("not configured on this
/// instance"), so the webhook never went out.
#[tokio::test]
async fn an_instance_without_a_channel_leaves_its_events_to_one_with_it() {
    let receiver = WebhookReceiver::start().await;
    let smtp = SmtpServer::start(SmtpTls::None, None).await;
    let database =
        std::sync::Arc::new(mpesa_harness::database::TestDatabase::new(Backend::Postgres).await);
    let common = |options: Options| Options {
        database: Some(database.clone()),
        ..options
            .env("OUTBOX_POLL_INTERVAL", "20ms")
            .env("RECONCILE_AFTER_SECS", "3600")
            .env("PAYMENT_EXPIRES_AFTER_SECS", "7200")
    };
    // Email only.
    let without = spawn_with(common(
        Options::new(Backend::Postgres)
            .env(
                "SMTP_URL",
                &format!("smtp://127.0.0.1:{}?tls=none", smtp.port),
            )
            .env("EMAIL_FROM", "Duka Shop <shop@example.com>"),
    ))
    .await;
    let storage = without.storage();
    let now = mpesa_gateway::clock::Clock::system().now_ms();
    let new_event = |channel: Channel, destination: &str, payload: Value| {
        let id = mpesa_gateway::ids::new_id("evt");
        mpesa_storage::NewOutboxEvent {
            dedupe_key: format!("test:{id}"),
            id,
            payment_id: None,
            channel,
            event_type: "test".into(),
            destination: destination.into(),
            payload: payload.to_string(),
            created_at: now,
        }
    };
    let hook = new_event(
        Channel::Webhook,
        &receiver.url,
        json!({"id": "evt_hook", "type": "test"}),
    );
    let mail = new_event(
        Channel::Email,
        CUSTOMER_EMAIL,
        json!({"kind": "test", "message": "both due at once"}),
    );
    let (hook_id, mail_id) = (hook.id.clone(), mail.id.clone());
    // Due together: the pass that delivers the email is one that could have claimed the webhook.
    storage.enqueue_outbox(vec![hook, mail]).await.unwrap();
    eventually("the email delivered", Duration::from_secs(20), || {
        let (s, id) = (storage.clone(), mail_id.clone());
        async move {
            s.get_outbox_event(&id).await.unwrap().map(|e| e.status)
                == Some(OutboxStatus::Delivered)
        }
    })
    .await;
    let waiting = storage.get_outbox_event(&hook_id).await.unwrap().unwrap();
    assert_eq!(
        (
            waiting.status,
            waiting.attempts,
            waiting.last_error.as_deref()
        ),
        (OutboxStatus::Pending, 0, None),
        "the instance without a webhook touched the webhook event"
    );

    // An instance with the webhook delivers it.
    let with = spawn_with(common(
        Options::new(Backend::Postgres)
            .env("WEBHOOK_URL", &receiver.url)
            .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("WEBHOOK_ALLOW_PRIVATE", "true"),
    ))
    .await;
    eventually("the webhook delivered", Duration::from_secs(20), || {
        let (s, id) = (storage.clone(), hook_id.clone());
        async move {
            s.get_outbox_event(&id).await.unwrap().map(|e| e.status)
                == Some(OutboxStatus::Delivered)
        }
    })
    .await;
    assert_eq!(receiver.hits().len(), 1);
    without.stop().await;
    with.stop().await;
}
