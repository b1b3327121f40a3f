//! `soak`: callbacks at a steady rate (open loop: sent on a clock, not when the previous answer
//! came) for a duration, with webhooks flowing; RSS and latency sampled per interval.
//!
//! Asserts: memory flat (mean RSS of the last third of the run at most `RSS_GROWTH_FACTOR` x the
//! second third's mean + `RSS_GROWTH_SLACK_MIB`); latency steady (the p99 of all the last
//! third's callbacks at most `P99_FACTOR` x the first third's, floored at `P99_FLOOR_MS`, and no
//! interval's p99 above `STALL_MS`); the rate held (at least 95% of the target sent); nothing
//! lost (every 200 stored and its payment completed, every webhook event delivered, no non-200
//! answer).
//!
//! Drift is judged on thirds, not on single intervals: one interval slowed by something else on
//! the machine (a compiler linking next to the CI run) is not drift; a gateway that slows as it
//! runs is.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpesa_harness::callbacks_to_send::stk_success;
use mpesa_harness::database::{Backend, Db, TestDatabase, seed_pending_payments};
use mpesa_harness::process::{ManagedProcess, free_port};

use crate::common::*;
use crate::ensure_guarantee;
use crate::receivers::WebhookReceiver;

pub const RSS_GROWTH_FACTOR: f64 = 1.10;
pub const RSS_GROWTH_SLACK_MIB: f64 = 8.0;
pub const P99_FACTOR: f64 = 5.0;
pub const P99_FLOOR_MS: f64 = 50.0;
/// No interval's p99 may pass this: a stall, not noise.
pub const STALL_MS: f64 = 2000.0;

pub struct SoakOptions {
    pub rate: u32,
    pub duration: Duration,
    pub interval: Duration,
    pub backend: Backend,
}

#[derive(Default)]
struct Interval {
    latencies: Vec<Duration>,
    ok: u64,
    failed: u64,
    rss_kib: Vec<u64>,
    /// Anonymous memory (heap) within the RSS, as opposed to mapped files.
    anon_kib: Vec<u64>,
}

pub async fn run(gateway: &Path, o: &SoakOptions) -> anyhow::Result<()> {
    section(&format!(
        "soak on {}: {} callbacks/s for {:?}, sampled every {:?}, binary {}",
        o.backend.as_str(),
        o.rate,
        o.duration,
        o.interval,
        gateway.display()
    ));
    let dir = run_dir("soak")?;
    let database = TestDatabase::create(o.backend, "mpesa_proof_soak", Some(&dir)).await?;
    let receiver = WebhookReceiver::start().await?;
    let spec = gateway_spec(gateway, &dir, database.url(), "gateway.log").env(
        "WEBHOOK_URL",
        format!("http://{}/hooks/mpesa", receiver.addr),
    );
    let process = ManagedProcess::gateway(spec, free_port()?).await?;
    let pid = process.pid().unwrap_or(0);
    let db = Db::connect(database.url()).await?;
    let total = (o.rate as f64 * o.duration.as_secs_f64()).ceil() as usize;
    seed_pending_payments(&db, 0..total, None).await?;
    progress(format!("{total} pending payments seeded; soaking"));

    let intervals = (o.duration.as_secs_f64() / o.interval.as_secs_f64()).ceil() as usize;
    let buckets: Arc<Vec<Mutex<Interval>>> =
        Arc::new((0..intervals).map(|_| Mutex::default()).collect());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = Arc::new(format!("{}{}", process.base, callback_path()));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let started = Instant::now();
    let mut sampler = tokio::time::interval(o.interval / 4);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / o.rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0usize;
    let mut saturated = 0u64;
    while sent < total && started.elapsed() < o.duration {
        tokio::select! {
            _ = ticker.tick() => {
                let bucket = (started.elapsed().as_secs_f64() / o.interval.as_secs_f64()) as usize;
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    saturated += 1;
                    continue;
                };
                let (client, url, buckets) = (client.clone(), url.clone(), buckets.clone());
                let body = stk_success(sent);
                sent += 1;
                tasks.spawn(async move {
                    let t = Instant::now();
                    let ok = matches!(
                        client.post(url.as_str()).header("content-type", "application/json").body(body).send().await,
                        Ok(r) if r.status().as_u16() == 200
                    );
                    let latency = t.elapsed();
                    drop(permit);
                    if let Some(b) = buckets.get(bucket.min(buckets.len() - 1)) {
                        let mut b = b.lock().unwrap_or_else(|e| e.into_inner());
                        b.latencies.push(latency);
                        if ok { b.ok += 1 } else { b.failed += 1 }
                    }
                    ok
                });
                while tasks.try_join_next().is_some() {}
            }
            _ = sampler.tick() => {
                let bucket = (started.elapsed().as_secs_f64() / o.interval.as_secs_f64()) as usize;
                if let (Some(rss), Some(b)) = (mpesa_harness::process::proc_status_kib(pid, "VmRSS:"), buckets.get(bucket)) {
                    let mut b = b.lock().unwrap_or_else(|e| e.into_inner());
                    b.rss_kib.push(rss);
                    b.anon_kib.extend(mpesa_harness::process::proc_status_kib(pid, "RssAnon:"));
                }
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();

    let buckets: Vec<Interval> = Arc::try_unwrap(buckets)
        .map_err(|_| anyhow::anyhow!("interval buckets still shared"))?
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    let ok: u64 = buckets.iter().map(|b| b.ok).sum();
    let failed: u64 = buckets.iter().map(|b| b.failed).sum();

    // Nothing lost.
    let applied = db
        .count("SELECT COUNT(*) FROM callbacks WHERE outcome = 'applied'")
        .await?;
    let completed = db
        .count("SELECT COUNT(*) FROM payments WHERE status = 'completed'")
        .await?;
    let drain_started = Instant::now();
    let drained = outbox_drained(
        &db,
        "every webhook event delivered",
        Duration::from_secs(120),
    )
    .await;
    let events = db.count("SELECT COUNT(*) FROM outbox_events").await?;

    println!(
        "  | interval | sent | ok | p50 ms | p99 ms | max ms | RSS MiB | anonymous MiB (means of samples) |"
    );
    println!("  | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut p99s = Vec::new();
    let mut rss_means = Vec::new();
    for (i, b) in buckets.iter().enumerate() {
        let mut l = b.latencies.clone();
        l.sort_unstable();
        let rss = if b.rss_kib.is_empty() {
            f64::NAN
        } else {
            b.rss_kib.iter().sum::<u64>() as f64 / b.rss_kib.len() as f64 / 1024.0
        };
        let anon = if b.anon_kib.is_empty() {
            f64::NAN
        } else {
            b.anon_kib.iter().sum::<u64>() as f64 / b.anon_kib.len() as f64 / 1024.0
        };
        p99s.push(percentile_ms(&l, 99.0));
        rss_means.push(rss);
        println!(
            "  | {:>3}s | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            (i as u64 + 1) * o.interval.as_secs(),
            l.len(),
            b.ok,
            percentile_ms(&l, 50.0),
            percentile_ms(&l, 99.0),
            percentile_ms(&l, 100.0),
            rss,
            anon
        );
    }
    let third = |k: usize| {
        let n = rss_means.len();
        let part: Vec<f64> = rss_means[n * k / 3..n * (k + 1) / 3]
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        part.iter().sum::<f64>() / part.len().max(1) as f64
    };
    let (second, last) = (third(1), third(2));
    let rss_bound = second * RSS_GROWTH_FACTOR + RSS_GROWTH_SLACK_MIB;
    let third_p99 = |k: usize| {
        let n = buckets.len();
        let mut pooled: Vec<_> = buckets[n * k / 3..n * (k + 1) / 3]
            .iter()
            .flat_map(|b| b.latencies.iter().copied())
            .collect();
        pooled.sort_unstable();
        percentile_ms(&pooled, 99.0)
    };
    let (first_p99, last_p99) = (third_p99(0), third_p99(2));
    let p99_bound = P99_FACTOR * first_p99.max(P99_FLOOR_MS);
    let worst_p99 = p99s.iter().copied().fold(0.0, f64::max);
    let achieved = sent as f64 / elapsed.as_secs_f64();

    figure(
        "sent / answered 200 / not 200",
        format!("{sent} / {ok} / {failed}"),
    );
    figure(
        "achieved rate",
        format!("{achieved:.1}/s (target {})", o.rate),
    );
    figure("ticks skipped (512 in flight)", saturated);
    figure(
        "applied callbacks / completed payments",
        format!("{applied} / {completed}"),
    );
    figure(
        "webhook events / delivered to the receiver",
        format!(
            "{events} / {} (drained {} ms after the load)",
            receiver.log.counts().len(),
            drain_started.elapsed().as_millis()
        ),
    );
    figure(
        "RSS mean, second third -> last third",
        format!(
            "{second:.1} -> {last:.1} MiB (bound {rss_bound:.1} MiB = x{RSS_GROWTH_FACTOR} + {RSS_GROWTH_SLACK_MIB} MiB)"
        ),
    );
    figure(
        "p99 first third -> last third",
        format!(
            "{first_p99:.1} -> {last_p99:.1} ms (bound {p99_bound:.1} ms = {P99_FACTOR} x max(first, {P99_FLOOR_MS} ms))"
        ),
    );
    figure(
        "worst interval's p99",
        format!("{worst_p99:.1} ms (bound {STALL_MS} ms)"),
    );
    if let Some(peak) = process.peak_rss_kib() {
        figure("peak RSS", format!("{:.1} MiB", peak as f64 / 1024.0));
    }

    ensure_guarantee!(
        failed == 0,
        "{failed} callbacks were not answered 200 at a steady {} /s",
        o.rate
    );
    ensure_guarantee!(
        applied as u64 == ok && completed as u64 == ok,
        "{ok} callbacks answered 200 but {applied} applied and {completed} payments completed — guarantee 1"
    );
    ensure_guarantee!(
        drained.is_ok(),
        "webhook events still undelivered 120 s after the load — guarantee 6"
    );
    ensure_guarantee!(
        receiver.log.counts().len() as i64 == events,
        "{events} webhook events but {} distinct ids delivered",
        receiver.log.counts().len()
    );
    ensure_guarantee!(
        achieved >= 0.95 * o.rate as f64,
        "the rate was not held: {achieved:.1}/s for a target of {}/s",
        o.rate
    );
    ensure_guarantee!(
        last <= rss_bound,
        "memory grew: last third {last:.1} MiB > {rss_bound:.1} MiB"
    );
    ensure_guarantee!(
        last_p99 <= p99_bound,
        "latency drifted: the last third's p99 {last_p99:.1} ms > {p99_bound:.1} ms"
    );
    ensure_guarantee!(
        worst_p99 <= STALL_MS,
        "the gateway stalled: an interval's p99 {worst_p99:.1} ms > {STALL_MS} ms"
    );
    db.close().await;
    drop(process);
    let _ = std::fs::remove_dir_all(&dir);
    println!("  PASS");
    Ok(())
}
