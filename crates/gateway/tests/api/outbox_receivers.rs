//! The other ends of the outbox, on loopback: a webhook receiver (axum), an SMTP server
//! (plain, STARTTLS or implicit TLS, with AUTH PLAIN) whose messages are parsed with
//! mail-parser, and a Telegram Bot API double (wiremock) that can be switched down and up.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";
pub const BOT_TOKEN: &str = "123456:test-bot-token-value";
pub const ADMIN_CHAT: i64 = -100_123;
pub const SMTP_PASSWORD: &str = "smtp-pass-value-9";

/// Polls `check` until it is true; fails the test with `what` after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---- webhooks ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookMode {
    /// 200.
    Ok,
    /// Answer with this status.
    Status(u16),
    /// Never answer (until the mode changes).
    Hold,
    /// 302 to this URL.
    Redirect(String),
    /// Answer 200 after a pause.
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct WebhookHit {
    pub event_id: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status decided for it when it arrived (0 while held).
    pub answered: u16,
}

impl WebhookHit {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Checks `Mpesa-Gateway-Signature` as README.md's "Webhooks" section defines it.
    pub fn signature_is_valid(&self, secret: &str) -> bool {
        let header = self.header("mpesa-gateway-signature");
        let mut t = None;
        let mut v1 = None;
        for part in header.split(',') {
            match part.split_once('=') {
                Some(("t", x)) => t = Some(x.to_owned()),
                Some(("v1", x)) => v1 = Some(x.to_owned()),
                _ => {}
            }
        }
        let (Some(t), Some(v1)) = (t, v1) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        hex::encode(mac.finalize().into_bytes()) == v1
    }
}

#[derive(Default)]
struct ReceiverState {
    hits: Mutex<Vec<WebhookHit>>,
    mode: Mutex<Option<WebhookMode>>,
}

#[derive(Clone)]
pub struct WebhookReceiver {
    pub url: String,
    pub addr: std::net::SocketAddr,
    state: Arc<ReceiverState>,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState::default());
        *state.mode.lock().unwrap() = Some(WebhookMode::Ok);
        let handler_state = state.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let state = handler_state.clone();
            async move { receive(state, headers, body).await }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookReceiver {
            url: format!("http://{addr}/hooks/mpesa"),
            addr,
            state,
        }
    }

    pub fn set_mode(&self, mode: WebhookMode) {
        *self.state.mode.lock().unwrap() = Some(mode);
    }

    pub fn hits(&self) -> Vec<WebhookHit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Hits answered with a 2xx.
    pub fn delivered(&self) -> Vec<WebhookHit> {
        self.hits()
            .into_iter()
            .filter(|h| (200..300).contains(&h.answered))
            .collect()
    }

    /// Delivered hits per event id.
    pub fn delivered_by_event(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for h in self.delivered() {
            *counts.entry(h.event_id).or_insert(0) += 1;
        }
        counts
    }
}

async fn receive(
    state: Arc<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mode = state.mode.lock().unwrap().clone().unwrap();
    let answered = match &mode {
        WebhookMode::Ok | WebhookMode::Slow(_) => 200,
        WebhookMode::Status(s) => *s,
        WebhookMode::Redirect(_) => 302,
        WebhookMode::Hold => 0,
    };
    let event_id = headers
        .get("mpesa-gateway-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    state.hits.lock().unwrap().push(WebhookHit {
        event_id,
        headers,
        body,
        answered,
    });
    match mode {
        WebhookMode::Ok => StatusCode::OK.into_response(),
        WebhookMode::Slow(pause) => {
            tokio::time::sleep(pause).await;
            StatusCode::OK.into_response()
        }
        WebhookMode::Status(s) => (
            StatusCode::from_u16(s).unwrap(),
            format!("receiver says {s}"),
        )
            .into_response(),
        WebhookMode::Redirect(to) => {
            (StatusCode::FOUND, [("location", to)], "moved").into_response()
        }
        WebhookMode::Hold => {
            while *state.mode.lock().unwrap() == Some(WebhookMode::Hold) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            StatusCode::OK.into_response()
        }
    }
}

// ---- Telegram ---------------------------------------------------------------------------------

/// A Bot API double: `sendMessage` and `getMe` answer ok while `up`, 502 while down; chats in
/// `blocked` get Telegram's 403.
pub struct TelegramDouble {
    pub server: wiremock::MockServer,
    pub up: Arc<AtomicBool>,
}

struct BotResponder {
    up: Arc<AtomicBool>,
    blocked: Vec<i64>,
}

impl wiremock::Respond for BotResponder {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        use wiremock::ResponseTemplate;
        if !self.up.load(Ordering::SeqCst) {
            return ResponseTemplate::new(502).set_body_json(serde_json::json!({
                "ok": false, "error_code": 502, "description": "Bad Gateway"
            }));
        }
        if request.url.path().ends_with("/getMe") {
            return ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "ok": true, "result": {"id": 1, "is_bot": true, "first_name": "Shop", "username": "shop_bot"}
            }));
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let chat = body["chat_id"].as_i64().unwrap_or(0);
        if self.blocked.contains(&chat) {
            return ResponseTemplate::new(403).set_body_json(serde_json::json!({
                "ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"
            }));
        }
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "ok": true,
            "result": {"message_id": 1, "chat": {"id": chat, "type": "private"}, "date": 0, "text": body["text"]}
        }))
    }
}

impl TelegramDouble {
    pub async fn start(blocked: &[i64]) -> Self {
        let server = wiremock::MockServer::start().await;
        let up = Arc::new(AtomicBool::new(true));
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path_regex(format!(
                "^/bot{}/(sendMessage|getMe)$",
                regex_escape(BOT_TOKEN)
            )))
            .respond_with(BotResponder {
                up: up.clone(),
                blocked: blocked.to_vec(),
            })
            .mount(&server)
            .await;
        TelegramDouble { server, up }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// The JSON bodies of every sendMessage received, in order.
    pub async fn messages(&self) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().ends_with("/sendMessage"))
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    pub async fn messages_to(&self, chat: i64) -> Vec<Value> {
        self.messages()
            .await
            .into_iter()
            .filter(|m| m["chat_id"].as_i64() == Some(chat))
            .collect()
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

// ---- SMTP -------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpMode {
    Accept,
    /// `451` to every RCPT: try again later.
    TempFail,
    /// `550` to RCPT for this address.
    RejectRecipient(String),
    /// Close every connection at once, before the greeting.
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    /// Offers STARTTLS.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
    pub over_tls: bool,
    pub auth_user: Option<String>,
}

impl ReceivedMail {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("a parseable message")
    }
}

struct SmtpState {
    mail: Mutex<Vec<ReceivedMail>>,
    mode: Mutex<SmtpMode>,
    tls: SmtpTls,
    acceptor: TlsAcceptor,
    /// (user, password) required before MAIL when set.
    auth: Option<(String, String)>,
    connections: Mutex<usize>,
}

#[derive(Clone)]
pub struct SmtpServer {
    pub port: u16,
    state: Arc<SmtpState>,
}

/// The test CA and the server certificate it signed, made once per test process.
pub fn test_tls() -> &'static crate::test_tls::TestTls {
    static TLS: std::sync::OnceLock<crate::test_tls::TestTls> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        crate::test_tls::make_tls(&dir)
    })
}

fn acceptor() -> TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&test_tls().cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&test_tls().key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl SmtpServer {
    pub async fn start(tls: SmtpTls, auth: Option<(&str, &str)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(SmtpState {
            mail: Mutex::new(Vec::new()),
            mode: Mutex::new(SmtpMode::Accept),
            tls,
            acceptor: acceptor(),
            auth: auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
            connections: Mutex::new(0),
        });
        let accept_state = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = accept_state.clone();
                tokio::spawn(async move {
                    *state.connections.lock().unwrap() += 1;
                    if *state.mode.lock().unwrap() == SmtpMode::Down {
                        return;
                    }
                    let io: Box<dyn Io> = if state.tls == SmtpTls::Implicit {
                        match state.acceptor.accept(stream).await {
                            Ok(s) => Box::new(s),
                            Err(_) => return,
                        }
                    } else {
                        Box::new(stream)
                    };
                    let over_tls = state.tls == SmtpTls::Implicit;
                    let _ = session(state, io, over_tls).await;
                });
            }
        });
        SmtpServer { port, state }
    }

    pub fn set_mode(&self, mode: SmtpMode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub fn mail(&self) -> Vec<ReceivedMail> {
        self.state.mail.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        *self.state.connections.lock().unwrap()
    }
}

async fn session(
    state: Arc<SmtpState>,
    io: Box<dyn Io>,
    mut over_tls: bool,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(io);
    stream
        .get_mut()
        .write_all(b"220 localhost ESMTP test server\r\n")
        .await?;
    let mut authed: Option<String> = None;
    let mut mail_from = None::<String>;
    let mut rcpt_to = Vec::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let line = line.trim_end().to_owned();
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let mut r = String::from("250-localhost greets you\r\n");
            if state.tls == SmtpTls::StartTls && !over_tls {
                r.push_str("250-STARTTLS\r\n");
            }
            if state.auth.is_some() {
                r.push_str("250-AUTH PLAIN\r\n");
            }
            r.push_str("250 8BITMIME\r\n");
            r
        } else if upper.starts_with("HELO") {
            "250 localhost\r\n".into()
        } else if upper == "STARTTLS" && state.tls == SmtpTls::StartTls && !over_tls {
            stream.get_mut().write_all(b"220 go ahead\r\n").await?;
            let io = stream.into_inner();
            let tls = state.acceptor.accept(io).await?;
            stream = BufReader::new(Box::new(tls) as Box<dyn Io>);
            over_tls = true;
            authed = None;
            mail_from = None;
            rcpt_to.clear();
            continue;
        } else if upper.starts_with("AUTH PLAIN ") {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(line[11..].trim())
                .unwrap_or_default();
            let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
            let ok = match (&state.auth, parts.as_slice()) {
                (Some((u, p)), [_, user, pass]) => user == &u.as_bytes() && pass == &p.as_bytes(),
                _ => false,
            };
            if ok {
                authed = state.auth.as_ref().map(|(u, _)| u.clone());
                "235 2.7.0 authenticated\r\n".into()
            } else {
                "535 5.7.8 bad credentials\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM:") {
            if state.auth.is_some() && authed.is_none() {
                "530 5.7.0 authentication required\r\n".into()
            } else {
                mail_from = Some(angle(&line[10..]));
                rcpt_to.clear();
                "250 2.1.0 ok\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            let to = angle(&line[8..]);
            let mode = state.mode.lock().unwrap().clone();
            match mode {
                SmtpMode::TempFail => "451 4.3.0 mailbox busy, try again later\r\n".into(),
                SmtpMode::RejectRecipient(bad) if bad == to => {
                    "550 5.1.1 no such user here\r\n".into()
                }
                _ => {
                    rcpt_to.push(to);
                    "250 2.1.5 ok\r\n".into()
                }
            }
        } else if upper == "DATA" {
            if mail_from.is_none() || rcpt_to.is_empty() {
                "503 5.5.1 need MAIL and RCPT first\r\n".into()
            } else {
                stream
                    .get_mut()
                    .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                    .await?;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if stream.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    // Dot-stuffing: a leading dot was doubled by the client.
                    if l.starts_with(b"..") {
                        l.remove(0);
                    }
                    data.extend_from_slice(&l);
                }
                state.mail.lock().unwrap().push(ReceivedMail {
                    mail_from: mail_from.take().unwrap(),
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                    over_tls,
                    auth_user: authed.clone(),
                });
                "250 2.0.0 queued\r\n".into()
            }
        } else if upper == "RSET" {
            mail_from = None;
            rcpt_to.clear();
            "250 ok\r\n".into()
        } else if upper == "NOOP" {
            "250 ok\r\n".into()
        } else if upper == "QUIT" {
            stream.get_mut().write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 command not implemented\r\n".into()
        };
        stream.get_mut().write_all(reply.as_bytes()).await?;
    }
}

fn angle(s: &str) -> String {
    let s = s.trim();
    let s = s.split_whitespace().next().unwrap_or("");
    s.trim_start_matches('<').trim_end_matches('>').to_owned()
}
