//! What the suites share: waiting on a condition with a deadline, the gateway's environment,
//! streaming callbacks from concurrent clients, and reporting figures and broken guarantees.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use mpesa_harness::process::ProcessSpec;

pub const CALLBACK_SECRET: &str = "proof0123456789abcdef0123456789ab";
pub const WEBHOOK_SECRET: &str = "whsec_proof_0123456789abcdef";

/// Polls `check` every 50 ms until it is true; an error naming `what` after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) if Instant::now() > deadline => {
                bail!("timed out after {within:?} waiting for: {what} (last error: {e:#})")
            }
            Err(_) => {}
        }
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no outbox event is left undelivered.
pub async fn outbox_drained(
    db: &mpesa_harness::database::Db,
    what: &str,
    within: Duration,
) -> anyhow::Result<()> {
    eventually(what, within, || async {
        Ok(db
            .count("SELECT COUNT(*) FROM outbox_events WHERE status <> 'delivered'")
            .await?
            == 0)
    })
    .await
}

/// A guarantee that broke: the suite stops with this message and a non-zero exit.
#[macro_export]
macro_rules! ensure_guarantee {
    ($cond:expr, $($arg:tt)+) => {
        let holds: bool = $cond;
        if !holds {
            anyhow::bail!("GUARANTEE BROKEN: {}", format!($($arg)+));
        }
    };
}

/// A figure for the report, printed as `  name: value` and collected for the summary.
pub fn figure(name: &str, value: impl std::fmt::Display) {
    println!("  {name}: {value}");
}

pub fn section(title: &str) {
    println!("\n== {title}");
}

pub fn progress(message: impl std::fmt::Display) {
    eprintln!("[{}] {message}", clock());
}

fn clock() -> String {
    let ms = now_ms();
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A directory for one suite's run (databases, logs), kept when it fails so the logs can be read.
pub fn run_dir(suite: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("mpesa-proof-{suite}-{}", now_ms()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The outbox settings the suites give the gateway, each overridable by setting the same
/// variable in `mpesa-proof`'s own environment (e.g. `OUTBOX_LEASE=5s scripts/proof crash`).
pub const OUTBOX_DEFAULTS: [(&str, &str); 5] = [
    ("OUTBOX_POLL_INTERVAL", "100ms"),
    ("OUTBOX_LEASE", "2s"),
    ("OUTBOX_RETRY_WEBHOOK", QUICK_RETRIES),
    ("OUTBOX_RETRY_EMAIL", QUICK_RETRIES),
    ("OUTBOX_RETRY_TELEGRAM", QUICK_RETRIES),
];
const QUICK_RETRIES: &str = "200ms,500ms,1s,1s,2s,2s,5s,5s,10s,10s,30s";

/// `serve --sandbox` with the settings every suite wants: the fixed callback secret, no
/// reconciliation or expiry of seeded payments, quick outbox retries, logs to `log`.
pub fn gateway_spec(binary: &Path, dir: &Path, database_url: &str, log: &str) -> ProcessSpec {
    let mut spec = ProcessSpec::new(binary, dir, &["serve", "--sandbox"])
        .env("DATABASE_URL", database_url)
        .env("MPESA_CALLBACK_SECRET", CALLBACK_SECRET)
        .env("RECONCILE_AFTER_SECS", "86400")
        .env("PAYMENT_EXPIRES_AFTER_SECS", "172800")
        .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("WEBHOOK_ALLOW_PRIVATE", "true")
        .env("RUST_LOG", mpesa_harness::env::gateway_log())
        .log_to(dir.join(log));
    for (name, default) in OUTBOX_DEFAULTS {
        spec = spec.env(name, std::env::var(name).unwrap_or_else(|_| default.into()));
    }
    // Anything else for the gateway's environment, for diagnosis: `K=V,K2=V2`.
    if let Ok(extra) = std::env::var("MPESA_PROOF_GATEWAY_ENV") {
        for pair in extra.split(',').filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once('=') {
                spec = spec.env(k.trim(), v.trim());
            }
        }
    }
    spec
}

pub fn callback_path() -> String {
    format!("/callbacks/{CALLBACK_SECRET}/stk")
}

/// What happened to one callback body streamed at the gateway.
#[derive(Debug, Clone)]
pub struct CallbackOutcome {
    pub index: usize,
    /// When a 200 came back (None: never, within the deadline).
    pub acknowledged_at: Option<Instant>,
    /// Attempts that got no 200 (connection refused or reset, 5xx) before the 200.
    pub failed_attempts: u32,
    pub latency: Duration,
}

/// Streams `bodies` at the gateways in `bases` (body `i` to `bases[i % len]`) from `clients`
/// concurrent keep-alive clients. A body that gets no 200 is sent again (as a retrying sender
/// would) until `give_up_after`. `acknowledged` counts 200s and `refused` attempts that got no
/// 200 as they come, for whoever waits on them.
pub async fn stream_callbacks(
    bases: Vec<String>,
    bodies: Arc<Vec<Vec<u8>>>,
    clients: usize,
    (acknowledged, refused): (Arc<AtomicUsize>, Arc<AtomicU64>),
    give_up_after: Duration,
) -> anyhow::Result<Vec<CallbackOutcome>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(30))
        .build()?;
    let urls: Arc<Vec<String>> = Arc::new(
        bases
            .iter()
            .map(|b| format!("{b}{}", callback_path()))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let failed_total = refused;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, urls, bodies, next, acknowledged, failed_total) = (
            client.clone(),
            urls.clone(),
            bodies.clone(),
            next.clone(),
            acknowledged.clone(),
            failed_total.clone(),
        );
        workers.spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(index) else { break };
                let url = &urls[index % urls.len()];
                let started = Instant::now();
                let mut outcome = CallbackOutcome {
                    index,
                    acknowledged_at: None,
                    failed_attempts: 0,
                    latency: Duration::ZERO,
                };
                while started.elapsed() < give_up_after {
                    let attempt = Instant::now();
                    let answer = client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status().as_u16() == 200 => {
                            let _ = r.bytes().await;
                            outcome.acknowledged_at = Some(Instant::now());
                            outcome.latency = attempt.elapsed();
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        _ => {
                            outcome.failed_attempts += 1;
                            failed_total.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                outcomes.push(outcome);
            }
            outcomes
        });
    }
    let mut all = Vec::with_capacity(bodies.len());
    while let Some(r) = workers.join_next().await {
        all.extend(r?);
    }
    all.sort_by_key(|o| o.index);
    Ok(all)
}

/// The `p`th percentile of `sorted` (ascending), in ms.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}
