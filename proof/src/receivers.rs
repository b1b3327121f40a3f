//! The gateway's outbound dependencies, played on loopback by this process: a webhook receiver
//! that records event ids, a plain SMTP server that records messages, and a fake Telegram Bot
//! API that records `sendMessage` calls. Each records when it answered, so duplicates can be
//! placed before or after a crash.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One delivery the receiver answered with 2xx: what and when.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The webhook's event id, or the email's Message-ID local part, or the Telegram text.
    pub key: String,
    pub answered_at: Instant,
}

#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Delivery>>>);

impl Log {
    fn push(&self, key: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Delivery {
                key,
                answered_at: Instant::now(),
            });
    }

    pub fn all(&self) -> Vec<Delivery> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Deliveries per key.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for d in self.all() {
            *counts.entry(d.key).or_insert(0) += 1;
        }
        counts
    }
}

// ---- webhooks ---------------------------------------------------------------------------------

pub struct WebhookReceiver {
    pub addr: SocketAddr,
    pub log: Log,
}

impl WebhookReceiver {
    /// Answers every POST with 200 and records its `Mpesa-Gateway-Event-Id` (or the body's id).
    pub async fn start() -> anyhow::Result<WebhookReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = Log::default();
        let handler_log = log.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: bytes::Bytes| {
            let log = handler_log.clone();
            async move {
                let id = headers
                    .get("mpesa-gateway-event-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .or_else(|| {
                        serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["id"].as_str().map(str::to_owned))
                    })
                    .unwrap_or_default();
                log.push(id);
                "ok"
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(WebhookReceiver { addr, log })
    }
}

// ---- SMTP -------------------------------------------------------------------------------------

/// Plain SMTP (no TLS, no AUTH): the gateway's `SMTP_URL=smtp://127.0.0.1:PORT?tls=none`.
/// Each accepted message is recorded by its Message-ID (the gateway makes it from the event id).
pub struct SmtpServer {
    pub addr: SocketAddr,
    pub log: Log,
}

impl SmtpServer {
    pub async fn start() -> anyhow::Result<SmtpServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = Log::default();
        let accept_log = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = accept_log.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(stream, log).await;
                });
            }
        });
        Ok(SmtpServer { addr, log })
    }
}

async fn smtp_session(stream: tokio::net::TcpStream, log: Log) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 proof.local ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                write
                    .write_all(b"250-proof.local\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                    .await?
            }
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => write.write_all(b"250 OK\r\n").await?,
            "DATA" => {
                write.write_all(b"354 go ahead\r\n").await?;
                let mut message = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    message.push_str(&line);
                }
                let id = message
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("message-id")
                            .then(|| value.trim().trim_start_matches('<').to_owned())
                    })
                    .and_then(|v| v.split('@').next().map(str::to_owned))
                    .unwrap_or_default();
                log.push(id);
                write.write_all(b"250 accepted\r\n").await?;
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => write.write_all(b"502 not implemented\r\n").await?,
        }
    }
}

// ---- Telegram ---------------------------------------------------------------------------------

/// A fake Bot API at `http://addr` (the gateway's `TELEGRAM_API_BASE`): `sendMessage` is
/// recorded by its text; `getUpdates` holds a second and returns nothing; everything else is ok.
pub struct TelegramFake {
    pub addr: SocketAddr,
    pub log: Log,
}

impl TelegramFake {
    pub async fn start() -> anyhow::Result<TelegramFake> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = Log::default();
        let handler_log = log.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, body: bytes::Bytes| {
                let log = handler_log.clone();
                async move {
                    let method = uri.path().rsplit('/').next().unwrap_or("").to_owned();
                    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let result = match method.as_str() {
                        "getMe" => {
                            json!({"id": 1, "is_bot": true, "first_name": "Proof", "username": "proof_bot"})
                        }
                        "getUpdates" => {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            json!([])
                        }
                        "sendMessage" => {
                            log.push(request["text"].as_str().unwrap_or("").to_owned());
                            json!({"message_id": 1, "chat": {"id": request["chat_id"], "type": "private"}, "date": 0, "text": request["text"]})
                        }
                        _ => json!(true),
                    };
                    axum::Json(json!({"ok": true, "result": result}))
                }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(TelegramFake { addr, log })
    }
}
