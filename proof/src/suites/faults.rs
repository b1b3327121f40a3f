//! `faults`: payments flow while each dependency is made unreachable and brought back: Daraja
//! (the simulator as its own process, killed and restarted), SMTP, Telegram and the webhook
//! receiver (behind a proxy that is cut), and PostgreSQL (behind a proxy that is cut: the server
//! is shared and cannot be stopped).
//!
//! Asserts, per outage: the API answers quickly with a clear error instead of hanging
//! (Daraja: 502/503/504 with an error body; database: 5xx), `/health` names the failing
//! dependency (and is 503 with `database: unreachable` without the database), and after
//! recovery nothing is lost: every payment reaches a final state, every outbox event is
//! delivered and reached its receiver.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mpesa_harness::database::{Backend, Db, TestDatabase};
use mpesa_harness::process::{ManagedProcess, ProcessSpec, free_port};
use serde_json::{Value, json};

use crate::common::*;
use crate::ensure_guarantee;
use crate::proxy::TcpProxy;
use crate::receivers::{SmtpServer, TelegramFake, WebhookReceiver};
use crate::suites::duplicates::{ADMIN_CHAT_ID, BOT_TOKEN};

const CONSUMER_KEY: &str = "proof-consumer-key";
const CONSUMER_SECRET: &str = "proof-consumer-secret";
/// The longest the API may take to answer while a dependency is down.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

struct Harness {
    client: reqwest::Client,
    base: String,
    api_key: String,
    next_phone: u32,
    created: Vec<String>,
}

impl Harness {
    /// POST /api/v1/payments for a fresh number (the simulator locks a number while its prompt
    /// is open); returns the status, the body and how long the answer took.
    async fn create_payment(&mut self) -> anyhow::Result<(u16, Value, Duration)> {
        self.next_phone += 1;
        let started = Instant::now();
        let response = self
            .client
            .post(format!("{}/api/v1/payments", self.base))
            .bearer_auth(&self.api_key)
            .json(&json!({
                "phone": format!("2547{:08}", 20_000_000 + self.next_phone),
                "amount": 10,
                "reference": "PROOF",
                "customer_email": format!("customer{}@example.com", self.next_phone),
            }))
            .send()
            .await
            .context("POST /api/v1/payments got no answer")?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if let Some(id) = body["id"]
            .as_str()
            .or_else(|| body["error"]["payment"]["id"].as_str())
        {
            self.created.push(id.to_owned());
        }
        Ok((status, body, started.elapsed()))
    }

    async fn health(&self) -> anyhow::Result<(u16, Value)> {
        let r = self
            .client
            .get(format!("{}/health", self.base))
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
    }

    /// Waits (30 s) until `/health` shows `dependency` with `status` ("ok" or "failing").
    async fn health_shows(&self, dependency: &str, status: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = match self.health().await {
                Ok((_, body)) if body[dependency]["status"] == status => return Ok(body),
                Ok((_, body)) => body.to_string(),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "GUARANTEE BROKEN: /health did not show {dependency}: {status} within 30 s; it said {last}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What the simulator sent (`/simulator/callbacks`), newest first.
async fn sent_callbacks(client: &reqwest::Client, sim_base: &str) -> anyhow::Result<Vec<Value>> {
    let sent: Value = client
        .get(format!("{sim_base}/simulator/callbacks?limit=1000"))
        .send()
        .await?
        .json()
        .await?;
    Ok(sent.as_array().cloned().unwrap_or_default())
}

pub async fn run(gateway: &Path) -> anyhow::Result<()> {
    section("faults on postgres: Daraja, SMTP, Telegram, webhook receiver, database down and back");
    let dir = run_dir("faults")?;
    let database =
        TestDatabase::create(Backend::Postgres, "mpesa_proof_faults", Some(&dir)).await?;
    let direct: url_parts::PgAddress = url_parts::parse(database.url())?;
    let db_proxy = TcpProxy::start(direct.addr).await?;
    let proxied_database_url = direct.with_addr(db_proxy.addr);
    let webhook = WebhookReceiver::start().await?;
    let smtp = SmtpServer::start().await?;
    let telegram = TelegramFake::start().await?;
    let webhook_proxy = TcpProxy::start(webhook.addr).await?;
    let smtp_proxy = TcpProxy::start(smtp.addr).await?;
    let telegram_proxy = TcpProxy::start(telegram.addr).await?;

    // Daraja: the simulator as its own process.
    let sim_port = free_port()?;
    let sim_spec = ProcessSpec::new(
        gateway,
        &dir,
        &["sandbox", "--listen", &format!("127.0.0.1:{sim_port}")],
    )
    .env("MPESA_CONSUMER_KEY", CONSUMER_KEY)
    .env("MPESA_CONSUMER_SECRET", CONSUMER_SECRET)
    .env("DARAJA_SIM_CALLBACK_DELAY_MS", "300")
    .env("RUST_LOG", "warn")
    .log_to(dir.join("simulator.log"));
    let mut sim = ManagedProcess::spawn(sim_spec, sim_port)?;
    sim.wait_ready("/simulator", Duration::from_secs(30))
        .await?;

    // The gateway: migrated and given an API key with the CLI, then `serve`.
    let cli = |args: &[&str]| -> anyhow::Result<String> {
        let out = std::process::Command::new(gateway)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database.url())
            .current_dir(&dir)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "mpesa-gateway {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    cli(&["migrate"])?;
    let api_key = cli(&["api-keys", "create", "--name", "proof"])?;
    let gateway_port = free_port()?;
    let mut spec = gateway_spec(gateway, &dir, &proxied_database_url, "gateway.log")
        .env("MPESA_API_BASE_URL", format!("http://127.0.0.1:{sim_port}"))
        .env("MPESA_CONSUMER_KEY", CONSUMER_KEY)
        .env("MPESA_CONSUMER_SECRET", CONSUMER_SECRET)
        .env(
            "MPESA_CALLBACK_URL",
            format!("http://127.0.0.1:{gateway_port}"),
        )
        .env("MPESA_TIMEOUT_SECS", "5")
        .env("RECONCILE_AFTER_SECS", "3")
        .env("PAYMENT_EXPIRES_AFTER_SECS", "600")
        .env(
            "WEBHOOK_URL",
            format!("http://{}/hooks/mpesa", webhook_proxy.addr),
        )
        .env("SMTP_URL", format!("smtp://{}?tls=none", smtp_proxy.addr))
        .env("SMTP_TIMEOUT", "3s")
        .env("WEBHOOK_TIMEOUT", "3s")
        .env("EMAIL_FROM", "shop@example.com")
        .env("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
        .env(
            "TELEGRAM_API_BASE",
            format!("http://{}", telegram_proxy.addr),
        )
        .env("ADMIN_CHAT_ID", ADMIN_CHAT_ID);
    spec.args = vec!["serve".into()];
    let process = ManagedProcess::gateway(spec, gateway_port).await?;
    let db = Db::connect(database.url()).await?;
    let mut h = Harness {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        base: process.base.clone(),
        api_key,
        next_phone: 0,
        created: Vec::new(),
    };

    // Baseline.
    for _ in 0..3 {
        let (status, body, _) = h.create_payment().await?;
        ensure_guarantee!(status == 201, "baseline payment: {status} {body}");
    }
    eventually("baseline payments final", Duration::from_secs(30), || {
        all_final(&db)
    })
    .await?;
    h.health_shows("daraja", "ok").await?;
    progress("baseline: 3 payments completed");

    // 1. Daraja down.
    sim.kill9()?;
    let (status, body, took) = h.create_payment().await?;
    figure(
        "Daraja down: POST /payments",
        format!("{status} in {} ms: {body}", took.as_millis()),
    );
    ensure_guarantee!(
        matches!(status, 502..=504) && body["error"]["message"].is_string() && took < ANSWER_WITHIN,
        "with Daraja down the API answered {status} after {took:?}: {body}"
    );
    let health = h.health_shows("daraja", "failing").await?;
    figure("Daraja down: /health daraja", &health["daraja"]);
    sim.restart()?;
    sim.wait_ready("/simulator", Duration::from_secs(30))
        .await?;
    let mut recovered = false;
    for _ in 0..20 {
        let (status, _, _) = h.create_payment().await?;
        if status == 201 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure_guarantee!(
        recovered,
        "payments are still refused after Daraja came back"
    );
    h.health_shows("daraja", "ok").await?;
    eventually(
        "payments final after Daraja came back",
        Duration::from_secs(30),
        || all_final(&db),
    )
    .await?;
    progress("Daraja: down, clear 5xx, back");

    // 2-4. SMTP, Telegram, webhook receiver down.
    for (name, proxy, dependency) in [
        ("SMTP", &smtp_proxy, "smtp"),
        ("Telegram", &telegram_proxy, "telegram"),
        ("webhook receiver", &webhook_proxy, "webhook"),
    ] {
        proxy.cut();
        for _ in 0..3 {
            let (status, body, _) = h.create_payment().await?;
            ensure_guarantee!(
                status == 201,
                "with {name} down a payment was refused: {status} {body}"
            );
        }
        let health = h.health_shows(dependency, "failing").await?;
        figure(
            &format!("{name} down: /health {dependency}"),
            &health[dependency],
        );
        let (code, _) = h.health().await?;
        ensure_guarantee!(code == 200, "/health is {code} with only {name} down");
        proxy.restore();
        h.health_shows(dependency, "ok").await?;
        progress(format!("{name}: down, /health failing, back"));
    }

    // 5. The database down, with callbacks on their way.
    let mut on_their_way = Vec::new();
    for _ in 0..3 {
        let (status, body, _) = h.create_payment().await?;
        ensure_guarantee!(status == 201, "before the database outage: {status} {body}");
        if let Some(checkout) = body["checkout_request_id"].as_str() {
            on_their_way.push(checkout.to_owned());
        }
    }
    db_proxy.cut();
    let (status, health, took_health) = {
        let t = Instant::now();
        let (s, b) = h.health().await?;
        (s, b, t.elapsed())
    };
    figure(
        "database down: /health",
        format!(
            "{status} in {} ms: database={}",
            took_health.as_millis(),
            health["database"]
        ),
    );
    ensure_guarantee!(
        status == 503 && health["database"] == "unreachable" && took_health < ANSWER_WITHIN,
        "with the database down /health answered {status} after {took_health:?}: {health}"
    );
    let (status, body, took) = h.create_payment().await?;
    figure(
        "database down: POST /payments",
        format!("{status} in {} ms: {body}", took.as_millis()),
    );
    ensure_guarantee!(
        (500..=599).contains(&status) && took < ANSWER_WITHIN,
        "with the database down the API answered {status} after {took:?}: {body}"
    );
    // Keep it down until the simulator has sent the callbacks of those payments (awaited in its
    // own log: they arrive while the database is down, and fail or not).
    eventually(
        "the simulator sent the callbacks of the payments made before the outage",
        Duration::from_secs(30),
        || async {
            let sent = sent_callbacks(&h.client, &sim.base).await?;
            let sent: BTreeSet<&str> = sent
                .iter()
                .filter_map(|c| c["reference"].as_str())
                .collect();
            Ok(on_their_way.iter().all(|c| sent.contains(c.as_str())))
        },
    )
    .await?;
    db_proxy.restore();
    eventually(
        "/health 200 after the database came back",
        Duration::from_secs(60),
        || async { Ok(h.health().await?.0 == 200) },
    )
    .await?;
    let (status, body, _) = h.create_payment().await?;
    ensure_guarantee!(
        status == 201,
        "after the database came back: {status} {body}"
    );
    progress("database: down, 503, back");

    // Nothing lost.
    let settle = Instant::now();
    let finals = eventually("every payment final", Duration::from_secs(90), || {
        all_final(&db)
    })
    .await;
    let delivered =
        outbox_drained(&db, "every outbox event delivered", Duration::from_secs(90)).await;
    let statuses = db.text_pairs("SELECT id, status FROM payments").await?;
    let events = db
        .text_pairs("SELECT id, channel FROM outbox_events")
        .await?;
    let received: BTreeSet<String> = webhook
        .log
        .counts()
        .into_keys()
        .chain(smtp.log.counts().into_keys())
        .collect();
    let missing: Vec<&(String, String)> = events
        .iter()
        .filter(|(id, channel)| channel != "telegram" && !received.contains(id))
        .collect();
    // What the simulator (since its restart) sent: every callback answered 2xx must be stored;
    // those refused during the database outage must have been resolved by STK Query.
    let sent = sent_callbacks(&h.client, &sim.base).await?;
    let stored_callbacks: BTreeSet<String> = db
        .text_pairs("SELECT checkout_request_id, outcome FROM callbacks WHERE checkout_request_id IS NOT NULL")
        .await?
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    let answered_2xx: Vec<&str> = sent
        .iter()
        .filter(|c| c["outcome"] == "delivered")
        .filter_map(|c| c["reference"].as_str())
        .collect();
    let refused: Vec<&str> = sent
        .iter()
        .filter(|c| c["outcome"] != "delivered")
        .filter_map(|c| c["reference"].as_str())
        .collect();
    let lost: Vec<&&str> = answered_2xx
        .iter()
        .filter(|c| !stored_callbacks.contains(**c))
        .collect();
    let resolved_by_query = db
        .count("SELECT COUNT(DISTINCT payment_id) FROM payment_events WHERE kind = 'query'")
        .await?;
    figure(
        "simulator callbacks answered 2xx / not (database down)",
        format!("{} / {}", answered_2xx.len(), refused.len()),
    );
    figure(
        "what the gateway answered the refused ones",
        format!(
            "{:?}",
            sent.iter()
                .filter(|c| c["outcome"] != "delivered")
                .map(|c| format!(
                    "{} {}",
                    c["outcome"].as_str().unwrap_or("?"),
                    c["http_status"]
                ))
                .collect::<Vec<_>>()
        ),
    );
    figure("payments resolved by STK Query", resolved_by_query);
    ensure_guarantee!(
        lost.is_empty(),
        "{} callbacks answered 2xx are not stored (e.g. {:?}) — guarantee 1",
        lost.len(),
        lost.first()
    );
    ensure_guarantee!(
        refused.is_empty() || resolved_by_query >= 1,
        "{} callbacks were refused during the outage but no payment was resolved by STK Query — guarantee 4",
        refused.len()
    );
    let telegram_events = events.iter().filter(|(_, c)| c == "telegram").count();
    let count = |s: &str| statuses.iter().filter(|(_, x)| x == s).count();
    figure("payments", statuses.len());
    figure(
        "final states",
        format!(
            "completed {}, rejected {}, failed {}, other {}",
            count("completed"),
            count("rejected"),
            count("failed"),
            statuses.len() - count("completed") - count("rejected") - count("failed")
        ),
    );
    figure("outbox events", events.len());
    figure(
        "delivered to receivers: webhooks / emails / telegram messages",
        format!(
            "{} / {} / {}",
            webhook.log.counts().len(),
            smtp.log.counts().len(),
            telegram.log.len()
        ),
    );
    figure(
        "settled after the last outage in",
        format!("{} ms", settle.elapsed().as_millis()),
    );
    ensure_guarantee!(
        finals.is_ok(),
        "payments not final after the outages: {:?}",
        statuses
            .iter()
            .filter(|(_, s)| s == "pending" || s == "initiated")
            .collect::<Vec<_>>()
    );
    ensure_guarantee!(
        delivered.is_ok(),
        "outbox events still undelivered 90 s after the outages — guarantee 6"
    );
    ensure_guarantee!(
        missing.is_empty(),
        "{} events marked delivered never reached their receiver (e.g. {:?})",
        missing.len(),
        missing.first()
    );
    ensure_guarantee!(
        telegram.log.len() >= telegram_events,
        "{telegram_events} Telegram events but {} messages received",
        telegram.log.len()
    );
    db.close().await;
    drop(process);
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
    println!("  PASS");
    Ok(())
}

/// The host:port of a `postgres://user@host:port/db` URL, to put a proxy in between.
mod url_parts {
    use std::net::SocketAddr;

    use anyhow::Context;

    pub struct PgAddress {
        pub addr: SocketAddr,
        before: String,
        after: String,
    }

    impl PgAddress {
        pub fn with_addr(&self, addr: SocketAddr) -> String {
            format!("{}{addr}{}", self.before, self.after)
        }
    }

    pub fn parse(url: &str) -> anyhow::Result<PgAddress> {
        let scheme_end = url.find("://").context("a URL")? + 3;
        let host_start = url[scheme_end..]
            .find('@')
            .map(|i| scheme_end + i + 1)
            .unwrap_or(scheme_end);
        let host_end = url[host_start..]
            .find('/')
            .map(|i| host_start + i)
            .unwrap_or(url.len());
        let host = &url[host_start..host_end];
        let host = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:5432")
        };
        let host = host.replace("localhost", "127.0.0.1");
        Ok(PgAddress {
            addr: host
                .parse()
                .with_context(|| format!("{host} is not an IP:port"))?,
            before: url[..host_start].to_owned(),
            after: url[host_end..].to_owned(),
        })
    }
}

async fn all_final(db: &Db) -> anyhow::Result<bool> {
    Ok(db
        .count("SELECT COUNT(*) FROM payments WHERE status IN ('initiated', 'pending')")
        .await?
        == 0)
}
