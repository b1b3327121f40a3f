//! A Bot API on loopback for the bot's tests, written by hand (long polling needs an answer
//! held until an update comes, which a static mock cannot do): `getUpdates` with offsets and
//! long polling, `sendMessage` and `editMessageText` that keep each message's current text,
//! `answerCallbackQuery`, `getMe`, `setWebhook`, `deleteWebhook`.
//!
//! Like Telegram it refuses HTML it cannot parse ("can't parse entities") and edits that change
//! nothing ("message is not modified"), so escaping mistakes fail the tests. Methods can be held
//! (the request waits until released), to stop a gateway in the middle of its work.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

pub const BOT_TOKEN: &str = "7001:bot-token-for-tests-0123456789";
pub const BOT_USERNAME: &str = "duka_bot";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    /// Refused as Telegram would (unparseable HTML…).
    pub refused: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// Every update queued, in order.
    updates: Vec<Value>,
    next_update_id: i64,
    next_message_id: i64,
    calls: Vec<Call>,
    /// (chat, message id) → (text, reply markup).
    messages: BTreeMap<(i64, i64), (String, Value)>,
    /// Accepted sendMessage requests: (chat, message id given, body).
    sends: Vec<(i64, i64, Value)>,
    held: HashSet<String>,
    /// Methods whose requests wait until released, then are answered as usual.
    delayed: HashSet<String>,
    blocked: HashSet<i64>,
    polls_in_flight: usize,
    max_polls_in_flight: usize,
}

struct Shared {
    inner: Mutex<Inner>,
    new_update: Notify,
    /// Bumped whenever holds are released.
    released: watch::Sender<u64>,
}

pub struct FakeTelegram {
    pub url: String,
    shared: Arc<Shared>,
}

impl FakeTelegram {
    pub async fn start() -> FakeTelegram {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                next_update_id: 1000,
                next_message_id: 1,
                ..Inner::default()
            }),
            new_update: Notify::new(),
            released: watch::channel(0).0,
        });
        let app = axum::Router::new()
            .route("/{bot}/{method}", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeTelegram { url, shared }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    /// Queues an update (its `update_id` is assigned); returns the id.
    pub fn push(&self, mut update: Value) -> i64 {
        let id = {
            let mut inner = self.inner();
            inner.next_update_id += 1;
            let id = inner.next_update_id;
            update["update_id"] = json!(id);
            inner.updates.push(update);
            id
        };
        self.shared.new_update.notify_waiters();
        id
    }

    pub fn text(&self, chat: i64, from: &User, text: &str) -> i64 {
        self.push(json!({ "message": message(chat, from, json!({ "text": text })) }))
    }

    /// A text message sent `ago` before now.
    pub fn text_sent_ago(&self, chat: i64, from: &User, text: &str, ago: Duration) -> i64 {
        let mut m = message(chat, from, json!({ "text": text }));
        m["date"] = json!(m["date"].as_u64().unwrap() - ago.as_secs());
        self.push(json!({ "message": m }))
    }

    pub fn unblock(&self, chat: i64) {
        self.inner().blocked.remove(&chat);
    }

    pub fn contact(
        &self,
        chat: i64,
        from: &User,
        phone: &str,
        contact_user_id: Option<i64>,
    ) -> i64 {
        let mut contact = json!({ "phone_number": phone, "first_name": from.first_name });
        if let Some(id) = contact_user_id {
            contact["user_id"] = json!(id);
        }
        self.push(json!({ "message": message(chat, from, json!({ "contact": contact })) }))
    }

    /// A press on an inline button; returns the callback query's id.
    pub fn button(&self, chat: i64, from: &User, message_id: i64, data: &str) -> String {
        let id = format!("cq{}", rand_suffix());
        self.push(json!({ "callback_query": {
            "id": id,
            "from": { "id": from.id, "is_bot": false, "first_name": from.first_name },
            "message": { "message_id": message_id, "date": 0, "chat": { "id": chat, "type": "private" } },
            "chat_instance": "1",
            "data": data,
        }}));
        id
    }

    pub fn hold(&self, method: &str) {
        self.inner().held.insert(method.to_owned());
    }

    /// Requests of `method` wait until [`FakeTelegram::release_all`], then are answered as
    /// usual (a slow Telegram, to keep two handlers in the middle of their work at once).
    pub fn delay(&self, method: &str) {
        self.inner().delayed.insert(method.to_owned());
    }

    pub fn release_all(&self) {
        self.inner().held.clear();
        self.inner().delayed.clear();
        self.shared.released.send_modify(|n| *n += 1);
    }

    pub fn block(&self, chat: i64) {
        self.inner().blocked.insert(chat);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .map(|c| c.body)
            .collect()
    }

    /// Accepted `sendMessage` bodies to a chat, in order.
    pub fn sent_to(&self, chat: i64) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "sendMessage" && c.refused.is_none())
            .map(|c| c.body)
            .filter(|b| b["chat_id"].as_i64() == Some(chat))
            .collect()
    }

    /// Texts of the accepted messages sent to a chat.
    pub fn texts_to(&self, chat: i64) -> Vec<String> {
        self.sent_to(chat)
            .iter()
            .map(|b| b["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Accepted `editMessageText` bodies for a message, in order.
    pub fn edits_of(&self, chat: i64, message_id: i64) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "editMessageText" && c.refused.is_none())
            .map(|c| c.body)
            .filter(|b| {
                b["chat_id"].as_i64() == Some(chat) && b["message_id"].as_i64() == Some(message_id)
            })
            .collect()
    }

    /// What a message shows now.
    pub fn current(&self, chat: i64, message_id: i64) -> Option<(String, Value)> {
        self.inner().messages.get(&(chat, message_id)).cloned()
    }

    /// Requests refused as Telegram would refuse them (bad HTML, a blocked chat…), but for
    /// edits that changed nothing (racing editors make those on purpose).
    pub fn refused(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| {
                c.refused
                    .as_deref()
                    .is_some_and(|r| !r.contains("not modified"))
            })
            .collect()
    }

    /// Accepted messages to a chat with the id the fake gave each.
    pub fn sent_with_ids(&self, chat: i64) -> Vec<(i64, Value)> {
        self.inner()
            .sends
            .iter()
            .filter(|(c, _, _)| *c == chat)
            .map(|(_, id, body)| (*id, body.clone()))
            .collect()
    }

    /// The most `getUpdates` requests that were open at the same time.
    pub fn max_polls_in_flight(&self) -> usize {
        self.inner().max_polls_in_flight
    }

    /// The `getUpdates` requests open now (one whose client went away is closed).
    pub fn polls_in_flight(&self) -> usize {
        self.inner().polls_in_flight
    }

    pub fn polls(&self) -> usize {
        self.calls_of("getUpdates").len()
    }

    /// Waits (up to `within`) until `done` holds for the fake's state.
    pub async fn wait_until(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&FakeTelegram) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if done(self) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "waited {within:?} for {what}; the fake received:\n{}",
                    self.calls()
                        .iter()
                        .map(|c| format!("{} {} {:?}", c.method, c.body, c.refused))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `n` accepted messages went to `chat`; returns their texts.
    pub async fn wait_for_messages(&self, chat: i64, n: usize) -> Vec<String> {
        self.wait_until(
            Duration::from_secs(10),
            &format!("{n} messages to chat {chat}"),
            |f| f.sent_to(chat).len() >= n,
        )
        .await;
        self.texts_to(chat)
    }
}

/// A Telegram user (also their private chat's id).
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub first_name: String,
}

impl User {
    pub fn new(id: i64, first_name: &str) -> User {
        User {
            id,
            first_name: first_name.into(),
        }
    }
}

fn message(chat: i64, from: &User, content: Value) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut m = json!({
        "message_id": 1, "date": now,
        "chat": { "id": chat, "type": if chat > 0 { "private" } else { "group" } },
        "from": { "id": from.id, "is_bot": false, "first_name": from.first_name, "language_code": "en" },
    });
    for (k, v) in content.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::SeqCst)
}

fn ok(result: Value) -> Json<Value> {
    Json(json!({ "ok": true, "result": result }))
}

fn error(code: u16, description: &str) -> (axum::http::StatusCode, Json<Value>) {
    (
        axum::http::StatusCode::from_u16(code).unwrap(),
        Json(json!({ "ok": false, "error_code": code, "description": description })),
    )
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if bot != format!("bot{BOT_TOKEN}") {
        return error(404, "Not Found").into_response();
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let refused = refusal(&method, &body, &shared);
    shared.inner.lock().unwrap().calls.push(Call {
        method: method.clone(),
        body: body.clone(),
        refused: refused.clone(),
    });
    // A held request waits until released, then fails without effect: as if it never reached
    // Telegram (the gateway that sent it may be gone by then).
    let mut released = shared.released.subscribe();
    let mut was_held = false;
    while shared.inner.lock().unwrap().held.contains(&method) {
        was_held = true;
        let _ = tokio::time::timeout(Duration::from_millis(50), released.changed()).await;
    }
    if was_held {
        return error(502, "Bad Gateway").into_response();
    }
    while shared.inner.lock().unwrap().delayed.contains(&method) {
        let _ = tokio::time::timeout(Duration::from_millis(50), released.changed()).await;
    }
    if let Some(description) = refused {
        let code = if description.starts_with("Forbidden") {
            403
        } else {
            400
        };
        return error(code, &description).into_response();
    }
    match method.as_str() {
        "getMe" => ok(
            json!({ "id": 7001, "is_bot": true, "first_name": "Duka", "username": BOT_USERNAME }),
        )
        .into_response(),
        "setWebhook" | "deleteWebhook" | "answerCallbackQuery" => ok(json!(true)).into_response(),
        "getUpdates" => get_updates(&shared, &body).await.into_response(),
        "sendMessage" => {
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            let mut inner = shared.inner.lock().unwrap();
            let id = inner.next_message_id;
            inner.next_message_id += 1;
            let text = body["text"].as_str().unwrap_or_default().to_owned();
            inner
                .messages
                .insert((chat, id), (text.clone(), body["reply_markup"].clone()));
            inner.sends.push((chat, id, body.clone()));
            ok(json!({ "message_id": id, "date": 0, "chat": { "id": chat, "type": "private" }, "text": text }))
                .into_response()
        }
        "editMessageText" => {
            let key = (
                body["chat_id"].as_i64().unwrap_or(0),
                body["message_id"].as_i64().unwrap_or(0),
            );
            let mut inner = shared.inner.lock().unwrap();
            let text = body["text"].as_str().unwrap_or_default().to_owned();
            inner
                .messages
                .insert(key, (text.clone(), body["reply_markup"].clone()));
            ok(json!({ "message_id": key.1, "date": 0, "chat": { "id": key.0, "type": "private" }, "text": text }))
                .into_response()
        }
        _ => error(404, "Not Found: method not found").into_response(),
    }
}

/// What Telegram would refuse this request for, checked before answering.
fn refusal(method: &str, body: &Value, shared: &Shared) -> Option<String> {
    let inner = shared.inner.lock().unwrap();
    if matches!(method, "sendMessage" | "editMessageText") {
        let chat = body["chat_id"].as_i64().unwrap_or(0);
        if inner.blocked.contains(&chat) {
            return Some("Forbidden: bot was blocked by the user".into());
        }
        let text = body["text"].as_str().unwrap_or_default();
        if body["parse_mode"] == "HTML"
            && let Err(why) = check_telegram_html(text)
        {
            return Some(format!("Bad Request: can't parse entities: {why}"));
        }
        if text.chars().count() > 4096 {
            return Some("Bad Request: message is too long".into());
        }
    }
    if method == "editMessageText" {
        let key = (
            body["chat_id"].as_i64().unwrap_or(0),
            body["message_id"].as_i64().unwrap_or(0),
        );
        match inner.messages.get(&key) {
            None => return Some("Bad Request: message to edit not found".into()),
            Some((text, markup))
                if text == body["text"].as_str().unwrap_or_default()
                    && *markup == body["reply_markup"] =>
            {
                return Some("Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message".into());
            }
            Some(_) => {}
        }
    }
    None
}

async fn get_updates(shared: &Shared, body: &Value) -> Json<Value> {
    let offset = body["offset"].as_i64().unwrap_or(0);
    let timeout = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0));
    let limit = body["limit"].as_u64().unwrap_or(100) as usize;
    {
        let mut inner = shared.inner.lock().unwrap();
        inner.polls_in_flight += 1;
        inner.max_polls_in_flight = inner.max_polls_in_flight.max(inner.polls_in_flight);
    }
    struct Leaving<'a>(&'a Shared);
    impl Drop for Leaving<'_> {
        fn drop(&mut self) {
            self.0.inner.lock().unwrap().polls_in_flight -= 1;
        }
    }
    let _leaving = Leaving(shared);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = shared.new_update.notified();
        let ready: Vec<Value> = {
            let mut inner = shared.inner.lock().unwrap();
            // Asking for an offset confirms every update before it: Telegram forgets them.
            inner
                .updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            inner.updates.iter().take(limit).cloned().collect()
        };
        if !ready.is_empty() || tokio::time::Instant::now() >= deadline {
            return ok(Value::Array(ready));
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

/// Telegram's HTML: only its tags, balanced, and `<`, `>`, `&` only as tags or entities.
pub fn check_telegram_html(text: &str) -> Result<(), String> {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "code",
        "pre",
        "a",
        "tg-spoiler",
        "span",
        "blockquote",
    ];
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['<', '>', '&']) {
        let c = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        match c {
            b'<' => {
                let end = after.find('>').ok_or("unclosed start tag")?;
                let tag = &after[..end];
                let (closing, tag) = match tag.strip_prefix('/') {
                    Some(t) => (true, t),
                    None => (false, tag),
                };
                let name: String = tag
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if !TAGS.contains(&name.as_str()) {
                    return Err(format!("unsupported start tag \"{name}\""));
                }
                if closing {
                    if open.pop().as_deref() != Some(name.as_str()) {
                        return Err(format!("unmatched end tag \"{name}\""));
                    }
                } else {
                    open.push(name);
                }
                rest = &after[end + 1..];
            }
            b'&' => {
                let end = after.find(';').ok_or("unterminated entity")?;
                let entity = &after[..end];
                let known = matches!(entity, "lt" | "gt" | "amp" | "quot")
                    || entity
                        .strip_prefix('#')
                        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
                if !known || end > 10 {
                    return Err(format!("unsupported entity \"&{entity};\""));
                }
                rest = &after[end + 1..];
            }
            _ => return Err("a bare \">\"".into()),
        }
    }
    if let Some(tag) = open.pop() {
        return Err(format!("unclosed tag \"{tag}\""));
    }
    Ok(())
}

#[test]
fn the_html_check_is_as_strict_as_telegram() {
    assert!(check_telegram_html("<b>KSh 1</b> &amp; <code>x</code> 🙂 *_[").is_ok());
    for bad in [
        "<b>x",
        "</code>",
        "a < b",
        "a > b",
        "&nbsp;",
        "AT&T",
        "<script>x</script>",
        "<b><i>x</b></i>",
    ] {
        assert!(check_telegram_html(bad).is_err(), "{bad}");
    }
}
