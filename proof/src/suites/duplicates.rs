//! `duplicates`: two gateway processes on one database, 1,000 copies of one success callback
//! spread over both at once.
//!
//! Asserts: all 1,000 answered 200 and stored raw; one applied, the rest recorded as
//! duplicates; the payment completed once (one webhook event, one state change); exactly one
//! webhook, one receipt email and one Telegram admin alert delivered.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use mpesa_harness::callbacks_to_send::stk_success;
use mpesa_harness::database::{
    Backend, Db, TestDatabase, seed_pending_payments, seeded_checkout_id,
};
use mpesa_harness::process::{ManagedProcess, free_port};

use crate::common::*;
use crate::ensure_guarantee;
use crate::receivers::{SmtpServer, TelegramFake, WebhookReceiver};

pub const ADMIN_CHAT_ID: &str = "4242";

/// A gateway that sends webhooks, receipt emails (to customers with an address) and Telegram
/// admin alerts to the suite's own receivers.
pub fn with_receivers(
    spec: mpesa_harness::process::ProcessSpec,
    webhook: &WebhookReceiver,
    smtp: &SmtpServer,
    telegram: &TelegramFake,
) -> mpesa_harness::process::ProcessSpec {
    spec.env(
        "WEBHOOK_URL",
        format!("http://{}/hooks/mpesa", webhook.addr),
    )
    .env("SMTP_URL", format!("smtp://{}?tls=none", smtp.addr))
    .env("EMAIL_FROM", "shop@example.com")
    .env("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    .env("TELEGRAM_API_BASE", format!("http://{}", telegram.addr))
    .env("ADMIN_CHAT_ID", ADMIN_CHAT_ID)
}
pub const BOT_TOKEN: &str = "123456:proof-bot-token";

pub async fn run(
    gateway: &Path,
    backend: Backend,
    copies: usize,
    clients: usize,
) -> anyhow::Result<()> {
    section(&format!(
        "duplicates on {}: {copies} copies of one callback over 2 instances, {clients} clients",
        backend.as_str()
    ));
    let dir = run_dir(&format!("duplicates-{}", backend.as_str()))?;
    let database = TestDatabase::create(backend, "mpesa_proof_dup", Some(&dir)).await?;
    let webhook = WebhookReceiver::start().await?;
    let smtp = SmtpServer::start().await?;
    let telegram = TelegramFake::start().await?;
    let spec = |log: &str| {
        with_receivers(
            gateway_spec(gateway, &dir, database.url(), log),
            &webhook,
            &smtp,
            &telegram,
        )
    };
    // One after the other: the first applies the migrations.
    let first = ManagedProcess::gateway(spec("gateway-a.log"), free_port()?).await?;
    let second = ManagedProcess::gateway(spec("gateway-b.log"), free_port()?).await?;
    let db = Db::connect(database.url()).await?;
    seed_pending_payments(&db, 0..1, Some("customer@example.com")).await?;
    let checkout = seeded_checkout_id(0);

    let started = Instant::now();
    let bodies = Arc::new(vec![stk_success(0); copies]);
    let outcomes = stream_callbacks(
        vec![first.base.clone(), second.base.clone()],
        bodies,
        clients,
        (Arc::new(AtomicUsize::new(0)), Default::default()),
        Duration::from_secs(60),
    )
    .await?;
    let elapsed = started.elapsed();
    let refused = outcomes.iter().filter(|c| c.failed_attempts > 0).count();
    ensure_guarantee!(
        refused == 0,
        "{refused} of {copies} copies were not answered 200 at the first attempt"
    );

    eventually(
        "the payment's notifications all delivered",
        Duration::from_secs(60),
        || async {
            let undelivered = db
                .count("SELECT COUNT(*) FROM outbox_events WHERE status <> 'delivered'")
                .await?;
            let total = db.count("SELECT COUNT(*) FROM outbox_events").await?;
            Ok(total > 0 && undelivered == 0)
        },
    )
    .await?;
    // A late second delivery would come from a second event row or a second claim. Stop both
    // gateways (SIGTERM, awaited: in-flight deliveries finish first): after that nothing more can
    // reach the receivers, and what they logged is final.
    let (mut first, mut second) = (first, second);
    first.terminate();
    second.terminate();

    let stored = db
        .count(&format!(
            "SELECT COUNT(*) FROM callbacks WHERE checkout_request_id = '{checkout}'"
        ))
        .await?;
    let applied = db
        .count("SELECT COUNT(*) FROM callbacks WHERE outcome = 'applied'")
        .await?;
    let status = db
        .text_pairs(&format!(
            "SELECT status, COALESCE(mpesa_receipt_number, '') FROM payments WHERE checkout_request_id = '{checkout}'"
        ))
        .await?;
    let events_by_channel = db
        .text_pairs("SELECT channel, event_type FROM outbox_events")
        .await?;
    let state_changes = db
        .count("SELECT COUNT(*) FROM payment_events WHERE kind = 'callback'")
        .await?;

    let mut latencies: Vec<Duration> = outcomes.iter().map(|c| c.latency).collect();
    latencies.sort_unstable();
    figure("copies answered 200", outcomes.len() - refused);
    figure("raw callbacks stored", stored);
    figure("applied", applied);
    figure("elapsed", format!("{} ms", elapsed.as_millis()));
    figure(
        "latency p50 / p99",
        format!(
            "{:.1} / {:.1} ms",
            percentile_ms(&latencies, 50.0),
            percentile_ms(&latencies, 99.0)
        ),
    );
    figure("payment", format!("{status:?}"));
    figure("outbox events", format!("{events_by_channel:?}"));
    figure("state-change events (payment_events)", state_changes);
    figure("webhooks delivered", webhook.log.len());
    figure("emails delivered", smtp.log.len());
    figure("telegram messages delivered", telegram.log.len());

    ensure_guarantee!(
        stored == copies as i64,
        "{stored} raw callbacks stored for {copies} answered 200 — guarantee 1"
    );
    ensure_guarantee!(
        applied == 1,
        "{applied} callbacks applied, expected 1 — guarantee 2"
    );
    ensure_guarantee!(
        status.len() == 1 && status[0].0 == "completed",
        "the payment is {status:?}, expected completed"
    );
    let count = |channel: &str| {
        events_by_channel
            .iter()
            .filter(|(c, _)| c == channel)
            .count()
    };
    ensure_guarantee!(
        count("webhook") == 1 && count("email") == 1 && count("telegram") == 1,
        "outbox events {events_by_channel:?}: expected one webhook, one email, one telegram — guarantee 2"
    );
    ensure_guarantee!(
        webhook.log.len() == 1,
        "{} webhooks delivered, expected 1 — guarantee 2",
        webhook.log.len()
    );
    ensure_guarantee!(
        smtp.log.len() == 1,
        "{} emails delivered, expected 1 — guarantee 2",
        smtp.log.len()
    );
    ensure_guarantee!(
        telegram.log.len() == 1,
        "{} Telegram messages delivered, expected 1 — guarantee 2",
        telegram.log.len()
    );
    db.close().await;
    drop((first, second));
    let _ = std::fs::remove_dir_all(&dir);
    println!("  PASS");
    Ok(())
}
