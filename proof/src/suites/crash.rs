//! `crash`: SIGKILL in the middle of a callback stream, restart on the same database. On SQLite
//! a round under strace comes first (`wal_order.rs`): a kill does not lose what the page cache
//! holds, so it cannot show an answer sent before the fsync; the system calls can.
//!
//! Asserts: every callback answered 200 is stored and its payment completed; each completed
//! payment has exactly one webhook event and that event reached the receiver; an event delivered
//! twice is tolerated (at-least-once) only when its first 2xx came before the kill and the second after it, i.e. the
//! crash could have lost the record of it. Any other duplicate fails the suite.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mpesa_harness::callbacks_to_send::stk_success;
use mpesa_harness::database::{Backend, Db, TestDatabase, seed_pending_payments};
use mpesa_harness::process::{ManagedProcess, free_port};

use crate::common::*;
use crate::ensure_guarantee;
use crate::receivers::WebhookReceiver;

pub struct CrashOptions {
    pub payments: usize,
    pub clients: usize,
    /// Kill when this share of the callbacks has been answered 200.
    pub kill_at: f64,
}

pub async fn run(gateway: &Path, backend: Backend, o: &CrashOptions) -> anyhow::Result<()> {
    // A kill cannot show an answer sent before the fsync; strace can.
    if backend == Backend::Sqlite {
        super::wal_order::run(gateway).await?;
    }
    section(&format!(
        "crash on {}: {} callbacks from {} clients, kill -9 at {:.0}%",
        backend.as_str(),
        o.payments,
        o.clients,
        o.kill_at * 100.0
    ));
    let dir = run_dir(&format!("crash-{}", backend.as_str()))?;
    let database = TestDatabase::create(backend, "mpesa_proof_crash", Some(&dir)).await?;
    let receiver = WebhookReceiver::start().await?;
    let spec = gateway_spec(gateway, &dir, database.url(), "gateway.log").env(
        "WEBHOOK_URL",
        format!("http://{}/hooks/mpesa", receiver.addr),
    );
    let mut process = ManagedProcess::gateway(spec, free_port()?).await?;
    let db = Db::connect(database.url()).await?;
    seed_pending_payments(&db, 0..o.payments, None).await?;
    progress(format!(
        "{} pending payments seeded; streaming callbacks",
        o.payments
    ));

    let bodies = Arc::new((0..o.payments).map(stk_success).collect::<Vec<_>>());
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let stream = tokio::spawn(stream_callbacks(
        vec![process.base.clone()],
        bodies,
        o.clients,
        (acknowledged.clone(), Default::default()),
        Duration::from_secs(120),
    ));
    let kill_after = ((o.payments as f64) * o.kill_at) as usize;
    eventually(
        "callbacks to be acknowledged before the kill",
        Duration::from_secs(120),
        || {
            let n = acknowledged.load(Ordering::Relaxed);
            async move { Ok(n >= kill_after) }
        },
    )
    .await?;
    process.kill9()?;
    let killed_at = Instant::now();
    let acknowledged_before_kill = acknowledged.load(Ordering::Relaxed);
    progress(format!(
        "kill -9 after {acknowledged_before_kill} acknowledged; restarting"
    ));
    process.restart()?;
    process
        .wait_ready("/health", Duration::from_secs(60))
        .await?;
    let downtime = killed_at.elapsed();
    let outcomes = stream.await??;
    let stream_done = Instant::now();

    // Every 200 stored and applied.
    let unacknowledged: Vec<usize> = outcomes
        .iter()
        .filter(|c| c.acknowledged_at.is_none())
        .map(|c| c.index)
        .collect();
    ensure_guarantee!(
        unacknowledged.is_empty(),
        "{} callbacks never got a 200 after the restart (first: {:?})",
        unacknowledged.len(),
        unacknowledged.first()
    );
    acknowledged_are_stored_and_applied(&db, &outcomes, 0).await?;
    let acked_before_kill = outcomes
        .iter()
        .filter(|c| c.acknowledged_at.is_some_and(|t| t < killed_at))
        .count();

    // Every completed payment's webhook delivered; one event per payment.
    let event_ids = one_webhook_event_per_payment(&db, o.payments).await?;
    let drain = all_delivered(&receiver, &event_ids).await;
    let delivered = receiver.log.counts();
    let missing: Vec<&String> = event_ids
        .iter()
        .filter(|id| !delivered.contains_key(*id))
        .collect();
    ensure_guarantee!(
        drain.is_ok() && missing.is_empty(),
        "{} webhook events never delivered (e.g. {:?}) — guarantee 6",
        missing.len(),
        missing.first()
    );
    let drained_in = stream_done.elapsed();
    let strangers: Vec<&String> = delivered
        .keys()
        .filter(|k| !event_ids.contains(*k))
        .collect();
    ensure_guarantee!(
        strangers.is_empty(),
        "the receiver got {} event ids the database does not have (e.g. {:?})",
        strangers.len(),
        strangers.first()
    );
    // A duplicate is explained by the one crash only if the event was answered exactly twice,
    // the first 2xx before the kill (the gateway may have died between the receiver's answer
    // and recording it) and the second after it (the restarted instance, once the lease lapsed).
    let mut answers: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    for d in receiver.log.all() {
        answers.entry(d.key).or_default().push(d.answered_at);
    }
    let duplicated: Vec<(&String, usize)> = delivered
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, n)| (k, *n))
        .collect();
    let explained_by_crash =
        |times: &[Instant]| times.len() == 2 && times[0] < killed_at && times[1] >= killed_at;
    let unexplained: Vec<&(&String, usize)> = duplicated
        .iter()
        .filter(|(k, _)| !explained_by_crash(&answers[*k]))
        .collect();
    let state_events = db
        .count("SELECT COUNT(*) FROM outbox_events WHERE channel = 'webhook' AND status <> 'delivered'")
        .await?;

    let latencies = {
        let mut l: Vec<Duration> = outcomes.iter().map(|c| c.latency).collect();
        l.sort_unstable();
        l
    };
    figure("callbacks acknowledged (200)", outcomes.len());
    figure("acknowledged before the kill", acked_before_kill);
    figure(
        "attempts refused or failed while down (then re-sent)",
        outcomes
            .iter()
            .map(|c| c.failed_attempts as u64)
            .sum::<u64>(),
    );
    figure(
        "raw callback rows stored",
        db.count("SELECT COUNT(*) FROM callbacks").await?,
    );
    figure(
        "downtime (kill to healthy)",
        format!("{} ms", downtime.as_millis()),
    );
    figure(
        "callback latency p50 / p99",
        format!(
            "{:.1} / {:.1} ms",
            percentile_ms(&latencies, 50.0),
            percentile_ms(&latencies, 99.0)
        ),
    );
    figure("webhook events", event_ids.len());
    figure(
        "webhook deliveries (2xx)",
        delivered.values().sum::<usize>(),
    );
    figure(
        "events delivered twice across the kill (allowed)",
        duplicated.len() - unexplained.len(),
    );
    figure(
        "events delivered more than once otherwise",
        unexplained.len(),
    );
    figure("events not marked delivered in the database", state_events);
    figure(
        "outbox drained after the stream ended in",
        format!("{} ms", drained_in.as_millis()),
    );
    ensure_guarantee!(
        unexplained.is_empty(),
        "{} webhook events delivered more than once with the first delivery after the restart (e.g. {:?}) — guarantee 6",
        unexplained.len(),
        unexplained.first()
    );
    db.close().await;
    drop(process);
    let _ = std::fs::remove_dir_all(&dir);
    println!("  PASS");
    Ok(())
}

/// Every callback answered 200 is stored (guarantee 1) and its payment completed. Outcome `i`
/// is seeded payment `first + i`.
pub(crate) async fn acknowledged_are_stored_and_applied(
    db: &Db,
    outcomes: &[CallbackOutcome],
    first: usize,
) -> anyhow::Result<()> {
    let stored: BTreeSet<String> = db
        .text_pairs("SELECT checkout_request_id, outcome FROM callbacks WHERE checkout_request_id IS NOT NULL")
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let status: BTreeMap<String, String> = db
        .text_pairs("SELECT checkout_request_id, status FROM payments")
        .await?
        .into_iter()
        .collect();
    let mut lost = Vec::new();
    let mut not_applied = Vec::new();
    for c in outcomes.iter().filter(|c| c.acknowledged_at.is_some()) {
        let checkout = mpesa_harness::database::seeded_checkout_id(first + c.index);
        if !stored.contains(&checkout) {
            lost.push(checkout.clone());
        }
        if status.get(&checkout).map(String::as_str) != Some("completed") {
            not_applied.push(checkout);
        }
    }
    ensure_guarantee!(
        lost.is_empty(),
        "{} callbacks answered 200 are not stored (e.g. {:?}) — guarantee 1",
        lost.len(),
        lost.first()
    );
    ensure_guarantee!(
        not_applied.is_empty(),
        "{} payments whose callback was answered 200 are not completed (e.g. {:?})",
        not_applied.len(),
        not_applied.first()
    );
    Ok(())
}

/// Each of the `payments` has exactly one webhook event (guarantee 2); their ids.
async fn one_webhook_event_per_payment(
    db: &Db,
    payments: usize,
) -> anyhow::Result<BTreeSet<String>> {
    let events = db
        .text_pairs("SELECT id, payment_id FROM outbox_events WHERE channel = 'webhook'")
        .await?;
    let mut per_payment: BTreeMap<String, usize> = BTreeMap::new();
    for (_, p) in &events {
        *per_payment.entry(p.clone()).or_default() += 1;
    }
    ensure_guarantee!(
        per_payment.len() == payments && per_payment.values().all(|n| *n == 1),
        "expected one webhook event for each of {payments} payments; {} payments have events, {} have more than one — guarantee 2",
        per_payment.len(),
        per_payment.values().filter(|n| **n > 1).count()
    );
    Ok(events.into_iter().map(|(id, _)| id).collect())
}

/// Waits until the receiver has every one of `event_ids`.
async fn all_delivered(
    receiver: &WebhookReceiver,
    event_ids: &BTreeSet<String>,
) -> anyhow::Result<()> {
    eventually(
        "every webhook event delivered to the receiver",
        Duration::from_secs(120),
        || {
            let delivered: BTreeSet<String> = receiver.log.counts().into_keys().collect();
            let missing = event_ids.difference(&delivered).count();
            async move { Ok(missing == 0) }
        },
    )
    .await
}

/// Sets the soft file-size limit (`RLIMIT_FSIZE`) of a running process with `prlimit`
/// (util-linux): `Some(bytes)` is a full disk for files that would grow past it, `None` room
/// again.
fn set_file_size_limit(pid: u32, bytes: Option<u64>) -> anyhow::Result<()> {
    let limit = bytes.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")])
        .status()
        .map_err(|e| anyhow::anyhow!("prlimit (util-linux) did not run: {e}"))?;
    anyhow::ensure!(status.success(), "prlimit --fsize={limit} failed: {status}");
    Ok(())
}

/// `crash`'s disk-full round, SQLite only: the disk fills up mid-stream of callbacks and empties
/// again, without a restart.
///
/// The full disk is a file-size limit (`RLIMIT_FSIZE`, set on the running gateway with
/// `prlimit`; the gateway runs under a shell that ignores SIGXFSZ, so a write past it fails
/// with EFBIG as on a full disk): no root, no mount, and the same limit on every file the
/// gateway writes. Asserts: while full, callbacks are refused (never a 200 for one not stored)
/// and `/health` answers 503 naming the database writes; when space returns the gateway recovers
/// by itself (`/health` 200, every callback answered 200 in the end); every callback answered
/// 200 is stored and its payment completed, with one webhook event, delivered.
pub async fn disk_full(gateway: &Path, payments: usize, clients: usize) -> anyhow::Result<()> {
    section(&format!(
        "disk full on sqlite: {payments} callbacks from {clients} clients, the disk fills at 25% and empties again"
    ));
    let dir = run_dir("diskfull-sqlite")?;
    let database =
        TestDatabase::create(Backend::Sqlite, "mpesa_proof_diskfull", Some(&dir)).await?;
    let receiver = WebhookReceiver::start().await?;
    // `trap '' XFSZ` then exec: an ignored signal stays ignored in the gateway.
    let spec = gateway_spec(gateway, &dir, database.url(), "gateway.log")
        .env(
            "WEBHOOK_URL",
            format!("http://{}/hooks/mpesa", receiver.addr),
        )
        .under(&["sh", "-c", "trap '' XFSZ; exec \"$0\" \"$@\""]);
    let process = ManagedProcess::gateway(spec, free_port()?).await?;
    let pid = process
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the gateway has no pid"))?;
    let db = Db::connect(database.url()).await?;
    seed_pending_payments(&db, 0..payments, None).await?;

    let bodies = Arc::new((0..payments).map(stk_success).collect::<Vec<_>>());
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stream = tokio::spawn(stream_callbacks(
        vec![process.base.clone()],
        bodies,
        clients,
        (acknowledged.clone(), refused.clone()),
        Duration::from_secs(120),
    ));
    let fill_after = payments / 4;
    eventually(
        "callbacks acknowledged before the disk fills",
        Duration::from_secs(120),
        || {
            let n = acknowledged.load(Ordering::Relaxed);
            async move { Ok(n >= fill_after) }
        },
    )
    .await?;
    // Full: no write past the first byte of any file succeeds.
    set_file_size_limit(pid, Some(1))?;
    let filled_at = Instant::now();
    let acknowledged_at_fill = acknowledged.load(Ordering::Relaxed);
    progress(format!(
        "the disk is full after {acknowledged_at_fill} acknowledged; waiting for /health to say so"
    ));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let health = || async {
        let r = client
            .get(format!("{}/health", process.base))
            .send()
            .await?;
        let status = r.status().as_u16();
        anyhow::Ok((status, r.json::<serde_json::Value>().await?))
    };
    let refused_before = refused.load(Ordering::Relaxed);
    let seen = std::sync::Mutex::new(serde_json::Value::Null);
    // Full until a callback has been refused and /health has said so.
    let reported = eventually(
        "a callback refused and /health 503 naming the database writes",
        Duration::from_secs(60),
        || async {
            if refused.load(Ordering::Relaxed) == refused_before {
                return Ok(false);
            }
            let (status, body) = health().await?;
            let failing = status == 503 && body["database_writes"]["status"] == "failing";
            if failing {
                *seen.lock().unwrap() = body;
            }
            Ok(failing)
        },
    )
    .await;
    let seen = seen.into_inner().unwrap();
    let detected_in = filled_at.elapsed();
    let acknowledged_while_full = acknowledged.load(Ordering::Relaxed) - acknowledged_at_fill;
    // Space returns: the gateway must recover by itself.
    set_file_size_limit(pid, None)?;
    let emptied_at = Instant::now();
    ensure_guarantee!(
        reported.is_ok(),
        "with the disk full, no callback was refused or /health never said so: {reported:?}"
    );
    ensure_guarantee!(
        seen["database"] == "connected",
        "/health while full: reads should still work: {seen}"
    );
    // The callbacks go through again (the clients re-send what was refused), then /health.
    let outcomes = stream.await??;
    let callbacks_back_in = emptied_at.elapsed();

    let unacknowledged = outcomes
        .iter()
        .filter(|c| c.acknowledged_at.is_none())
        .count();
    ensure_guarantee!(
        unacknowledged == 0,
        "{unacknowledged} callbacks never got a 200 after space returned"
    );
    let refused_while_full: u64 = outcomes.iter().map(|c| c.failed_attempts as u64).sum();
    ensure_guarantee!(
        refused_while_full > 0,
        "no callback was refused while the disk was full: the round proved nothing"
    );
    acknowledged_are_stored_and_applied(&db, &outcomes, 0).await?;
    let event_ids = one_webhook_event_per_payment(&db, payments).await?;
    let drained = all_delivered(&receiver, &event_ids).await;
    ensure_guarantee!(
        drained.is_ok(),
        "webhook events were not all delivered after the disk emptied — guarantee 6"
    );
    let recovered = eventually(
        "/health 200 after space returned, without a restart",
        Duration::from_secs(60),
        || async { Ok(health().await?.0 == 200) },
    )
    .await;
    let recovered_in = emptied_at.elapsed();
    ensure_guarantee!(
        recovered.is_ok(),
        "the gateway did not recover by itself after space returned"
    );

    figure("callbacks acknowledged (200)", outcomes.len());
    figure("acknowledged before the disk filled", acknowledged_at_fill);
    figure(
        "acknowledged while full (until /health said so)",
        acknowledged_while_full,
    );
    figure(
        "attempts refused while full (then re-sent)",
        refused_while_full,
    );
    figure(
        "disk full to /health 503",
        format!("{} ms", detected_in.as_millis()),
    );
    figure(
        "space back to the last callback answered 200",
        format!("{} ms", callbacks_back_in.as_millis()),
    );
    figure(
        "space back to /health 200 (it fails for 5 s after a failed write)",
        format!("{} ms", recovered_in.as_millis()),
    );
    figure(
        "/health while full: database_writes",
        &seen["database_writes"],
    );
    db.close().await;
    drop(process);
    let _ = std::fs::remove_dir_all(&dir);
    println!("  PASS");
    Ok(())
}
