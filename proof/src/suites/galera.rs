//! `galera`: three gateway instances, each on its own node of a three-node MariaDB Galera
//! cluster that the suite makes (and removes) itself, with webhooks, email and Telegram.
//!
//! 1. **duplicates**: every pending payment's success callback, many copies of each, spread over
//!    the three instances at once. Every post answered 200 at its first attempt (certification
//!    conflicts are the gateway's to absorb); every raw body stored; each payment settled once;
//!    one webhook, one email and one Telegram message per payment.
//! 2. **kill -9 of a node** under a stream of callbacks: nothing answered 200 is lost; the node
//!    rejoins; its instance answers again by itself (no restart of the gateway).
//! 3. **a node frozen with SIGSTOP** (to the others, cut off by the network) under a stream: its
//!    instance acknowledges nothing while it is cut off, nothing answered 200 anywhere is lost,
//!    and after SIGCONT the node rejoins and its instance answers again.
//!
//! The streams' senders retry a callback that got no 200 (as the crash suite's do), each at the
//! instance it first went to, so an instance that recovers by itself is what gets them answered.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mpesa_harness::callbacks_to_send::stk_success;
use mpesa_harness::database::{Db, seed_pending_payments};
use mpesa_harness::galera::{GaleraCluster, causal_db};
use mpesa_harness::process::{ManagedProcess, free_port};

use crate::common::*;
use crate::ensure_guarantee;
use crate::receivers::{SmtpServer, TelegramFake, WebhookReceiver};
use crate::suites::duplicates::with_receivers;

pub struct GaleraOptions {
    /// Payments of the duplicates scenario, and copies of each one's callback.
    pub payments: usize,
    pub copies: usize,
    pub clients: usize,
    /// Callbacks streamed in each of the kill and freeze scenarios.
    pub stream: usize,
    /// How long the frozen node stays frozen (beyond the cluster's suspect timeout, 3 s).
    pub freeze_for: Duration,
    /// How long the killed node stays down before it is started again.
    pub down_for: Duration,
}

impl GaleraOptions {
    /// `scripts/proof quick`: about a minute with the cluster's start.
    pub fn quick() -> Self {
        GaleraOptions {
            payments: 15,
            copies: 15,
            clients: 24,
            stream: 300,
            freeze_for: Duration::from_secs(8),
            down_for: Duration::from_secs(1),
        }
    }
}

const INSTANCES: usize = 3;
/// The node that is killed, then frozen (its instance is the third).
const VICTIM: usize = 2;

struct Instances {
    gateways: Vec<ManagedProcess>,
}

impl Instances {
    fn bases(&self) -> Vec<String> {
        self.gateways.iter().map(|g| g.base.clone()).collect()
    }
}

pub async fn run(gateway: &Path, o: &GaleraOptions) -> anyhow::Result<()> {
    section(&format!(
        "galera: 3 nodes, 3 instances; {} payments × {} copies, then kill -9 and SIGSTOP of a node under {} callbacks each",
        o.payments, o.copies, o.stream
    ));
    let dir = run_dir("galera")?;
    let started = Instant::now();
    let mut cluster = GaleraCluster::start(INSTANCES, &dir.join("cluster")).await?;
    figure(
        "cluster of 3 Synced nodes made in",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );
    let database = cluster.create_database("mpesa_proof_galera").await?;
    let webhook = WebhookReceiver::start().await?;
    let smtp = SmtpServer::start().await?;
    let telegram = TelegramFake::start().await?;
    let mut gateways = Vec::new();
    // One after the other: the first applies the migrations.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let spec = with_receivers(
            gateway_spec(
                gateway,
                &dir,
                &node.url(&database),
                &format!("gateway-{}.log", i + 1),
            ),
            &webhook,
            &smtp,
            &telegram,
        );
        gateways.push(ManagedProcess::gateway(spec, free_port()?).await?);
    }
    let instances = Instances { gateways };
    // Read through a node that stays up, each read after every write committed anywhere.
    let db = causal_db(&cluster.nodes[0].url(&database)).await?;

    duplicates(&db, &instances, o, &webhook, &smtp, &telegram).await?;
    let mut next = o.payments;
    kill_a_node(&db, &mut cluster, &instances, o, next, &webhook).await?;
    next += o.stream;
    freeze_a_node(&db, &mut cluster, &instances, o, next, &webhook).await?;

    db.close().await;
    drop(instances);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    println!("  PASS");
    Ok(())
}

async fn duplicates(
    db: &Db,
    instances: &Instances,
    o: &GaleraOptions,
    webhook: &WebhookReceiver,
    smtp: &SmtpServer,
    telegram: &TelegramFake,
) -> anyhow::Result<()> {
    progress(format!(
        "duplicates: {} payments, {} copies of each callback over 3 instances",
        o.payments, o.copies
    ));
    seed_pending_payments(db, 0..o.payments, Some("customer@example.com")).await?;
    // The copies of one payment's callback are consecutive bodies: they go out together, to
    // all three instances (body i goes to instance i % 3), and contend for the same row.
    let bodies: Vec<Vec<u8>> = (0..o.payments)
        .flat_map(|p| std::iter::repeat_n(stk_success(p), o.copies))
        .collect();
    let posts = bodies.len();
    let started = Instant::now();
    let outcomes = stream_callbacks(
        instances.bases(),
        Arc::new(bodies),
        o.clients,
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU64::new(0))),
        Duration::from_secs(60),
    )
    .await?;
    let elapsed = started.elapsed();
    let refused = outcomes.iter().filter(|c| c.failed_attempts > 0).count();
    let mut latencies: Vec<Duration> = outcomes.iter().map(|c| c.latency).collect();
    latencies.sort_unstable();
    figure(
        "posts answered 200 at the first attempt",
        format!("{} of {posts}", posts - refused),
    );
    figure(
        "elapsed; latency p50 / p99",
        format!(
            "{} ms; {:.1} / {:.1} ms",
            elapsed.as_millis(),
            percentile_ms(&latencies, 50.0),
            percentile_ms(&latencies, 99.0)
        ),
    );
    ensure_guarantee!(
        refused == 0,
        "{refused} of {posts} posts were not answered 200 at the first attempt (certification conflicts reached Safaricom)"
    );

    // Applied in the background when a conflict had them stored raw first: wait for that.
    eventually(
        "every payment completed and every callback applied",
        Duration::from_secs(60),
        || async {
            Ok(db
                .count("SELECT COUNT(*) FROM callbacks WHERE outcome = 'received'")
                .await?
                == 0
                && db
                    .count("SELECT COUNT(*) FROM payments WHERE status <> 'completed'")
                    .await?
                    == 0)
        },
    )
    .await?;
    outbox_drained(db, "every notification delivered", Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stored = db.count("SELECT COUNT(*) FROM callbacks").await?;
    let applied = db
        .count("SELECT COUNT(*) FROM callbacks WHERE outcome = 'applied'")
        .await?;
    let mut raw_first = 0.0;
    for g in &instances.gateways {
        raw_first += metric_sum(
            g,
            "mpesa_gateway_callbacks_received_total",
            "outcome=\"received\"",
        )
        .await?;
    }
    let state_changes = db
        .count("SELECT COUNT(*) FROM payment_events WHERE kind = 'callback'")
        .await?;
    let events = db
        .text_pairs("SELECT channel, COALESCE(payment_id, '') FROM outbox_events")
        .await?;
    figure("raw callbacks stored", stored);
    figure(
        "applied; posts whose batch conflicted (stored raw, acknowledged, applied after)",
        format!("{applied}; {raw_first}"),
    );
    figure("state changes", state_changes);
    figure(
        "webhooks / emails / Telegram messages delivered",
        format!(
            "{} / {} / {}",
            webhook.log.len(),
            smtp.log.len(),
            telegram.log.len()
        ),
    );
    let n = o.payments as i64;
    ensure_guarantee!(
        stored == posts as i64,
        "{stored} raw callbacks stored for {posts} answered 200 — guarantee 1"
    );
    ensure_guarantee!(
        applied == n && state_changes == n,
        "{applied} callbacks applied and {state_changes} state changes for {n} payments — guarantee 2"
    );
    for channel in ["webhook", "email", "telegram"] {
        let per_payment = per_key(events.iter().filter(|(c, _)| c == channel).map(|(_, p)| p));
        ensure_guarantee!(
            per_payment.len() == o.payments && per_payment.values().all(|k| *k == 1),
            "{channel}: {} payments have events, {} more than one, for {} payments — guarantee 2",
            per_payment.len(),
            per_payment.values().filter(|k| **k > 1).count(),
            o.payments
        );
    }
    ensure_guarantee!(
        webhook.log.len() == o.payments
            && smtp.log.len() == o.payments
            && telegram.log.len() == o.payments,
        "delivered {} webhooks, {} emails, {} Telegram messages for {} payments — guarantee 2",
        webhook.log.len(),
        smtp.log.len(),
        telegram.log.len(),
        o.payments
    );
    Ok(())
}

async fn kill_a_node(
    db: &Db,
    cluster: &mut GaleraCluster,
    instances: &Instances,
    o: &GaleraOptions,
    first: usize,
    webhook: &WebhookReceiver,
) -> anyhow::Result<()> {
    let (range, stream, acknowledged) = stream_until_30_percent(
        db,
        instances,
        o,
        first,
        &format!("kill -9: node {} killed", VICTIM + 1),
    )
    .await?;
    cluster.kill9(VICTIM)?;
    let killed_at = Instant::now();
    let before = acknowledged.load(Ordering::Relaxed);
    progress(format!(
        "node {} killed after {before} acknowledged",
        VICTIM + 1
    ));
    let victim = &instances.gateways[VICTIM];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let down_health = health_of(victim).await;
    tokio::time::sleep(o.down_for.saturating_sub(Duration::from_millis(500))).await;
    cluster.restart(VICTIM)?;
    rejoin(cluster).await?;
    let rejoined = killed_at.elapsed();
    wait_healthy(victim).await?;
    let recovered = killed_at.elapsed();
    let recovered_at = Instant::now();
    let outcomes = stream.await??;
    figure("acknowledged before the kill", before);
    figure(
        "node rejoined (Synced) / its instance healthy again, after the kill",
        format!(
            "{:.1} s / {:.1} s",
            rejoined.as_secs_f64(),
            recovered.as_secs_f64()
        ),
    );
    figure(
        "its instance's /health while the node was down",
        &down_health,
    );
    ensure_guarantee!(
        down_health.starts_with("503"),
        "the instance of a killed node said {down_health} on /health"
    );
    settled(db, &outcomes, range.clone(), "kill -9 of a node").await?;
    webhooks_once(db, webhook, range, killed_at, recovered_at).await
}

async fn freeze_a_node(
    db: &Db,
    cluster: &mut GaleraCluster,
    instances: &Instances,
    o: &GaleraOptions,
    first: usize,
    webhook: &WebhookReceiver,
) -> anyhow::Result<()> {
    let (range, stream, _) = stream_until_30_percent(
        db,
        instances,
        o,
        first,
        &format!("SIGSTOP: node {} frozen for {:?}", VICTIM + 1, o.freeze_for),
    )
    .await?;
    cluster.freeze(VICTIM)?;
    let frozen_at = Instant::now();
    // While frozen, the other two must drop it and go on.
    let survivors = eventually(
        "the other nodes to drop the frozen one and stay Primary",
        o.freeze_for + Duration::from_secs(20),
        || async { Ok(cluster.cluster_size(0).await? == 2) },
    )
    .await;
    let dropped_after = frozen_at.elapsed();
    let remaining = o.freeze_for.saturating_sub(dropped_after);
    tokio::time::sleep(remaining).await;
    let victim = &instances.gateways[VICTIM];
    let frozen_health = health_of(victim).await;
    // Taken before SIGCONT is sent: a commit the node had in flight when it was frozen (its
    // write set already ordered in the cluster) completes the moment it runs again, which can be
    // before `kill` has returned here. That answer is the cluster's to give; one before SIGCONT
    // is not.
    let thaw_sent_at = Instant::now();
    cluster.thaw(VICTIM)?;
    let thawed_at = Instant::now();
    survivors?;
    rejoin(cluster).await?;
    let rejoined = thawed_at.elapsed();
    wait_healthy(victim).await?;
    let recovered = thawed_at.elapsed();
    let recovered_at = Instant::now();
    let outcomes = stream.await??;
    // Answers sent before the freeze may arrive a moment after it; a second is plenty.
    let grace = frozen_at + Duration::from_secs(1);
    let acked_while_cut_off = outcomes
        .iter()
        .filter(|c| c.index % INSTANCES == VICTIM)
        .filter(|c| {
            c.acknowledged_at
                .is_some_and(|t| t > grace && t < thaw_sent_at)
        })
        .count();
    // Acknowledged by the frozen node's instance within a second of SIGCONT: commits that were
    // waiting on the node when it froze (shown, not judged: `settled` checks they were kept).
    let acked_on_resuming = outcomes
        .iter()
        .filter(|c| c.index % INSTANCES == VICTIM)
        .filter(|c| {
            c.acknowledged_at
                .is_some_and(|t| t >= thaw_sent_at && t < thaw_sent_at + Duration::from_secs(1))
        })
        .count();
    let acked_by_others = outcomes
        .iter()
        .filter(|c| c.index % INSTANCES != VICTIM)
        .filter(|c| {
            c.acknowledged_at
                .is_some_and(|t| t > frozen_at && t < thawed_at)
        })
        .count();
    figure(
        "other nodes dropped the frozen one after",
        format!("{:.1} s", dropped_after.as_secs_f64()),
    );
    figure(
        "frozen node's instance /health while frozen",
        &frozen_health,
    );
    figure(
        "acknowledged while frozen: by its instance / by the others",
        format!("{acked_while_cut_off} / {acked_by_others}"),
    );
    figure(
        "acknowledged by its instance within 1 s of SIGCONT (commits waiting on the node)",
        acked_on_resuming,
    );
    figure(
        "after SIGCONT: node Synced / its instance healthy",
        format!(
            "{:.1} s / {:.1} s",
            rejoined.as_secs_f64(),
            recovered.as_secs_f64()
        ),
    );
    ensure_guarantee!(
        acked_while_cut_off == 0,
        "the instance of the frozen node acknowledged {acked_while_cut_off} callbacks while its node was cut off"
    );
    ensure_guarantee!(
        acked_by_others > 0,
        "the other instances acknowledged nothing while one node was frozen"
    );
    ensure_guarantee!(
        !frozen_health.starts_with("200"),
        "the instance of a frozen node said {frozen_health} on /health"
    );
    settled(db, &outcomes, range.clone(), "SIGSTOP of a node").await?;
    webhooks_once(db, webhook, range, frozen_at, recovered_at).await
}

/// Waits until the other nodes count the victim in again and it says `Synced`.
async fn rejoin(cluster: &mut GaleraCluster) -> anyhow::Result<()> {
    eventually(
        "the node to be back in the cluster",
        Duration::from_secs(120),
        || async { Ok(cluster.cluster_size(0).await? == INSTANCES as i64) },
    )
    .await?;
    cluster.wait_synced(VICTIM, Duration::from_secs(120)).await
}

type Stream = tokio::task::JoinHandle<anyhow::Result<Vec<CallbackOutcome>>>;

/// Seeds `o.stream` payments from `first`, streams their success callbacks over the three
/// instances, and returns once 30% are acknowledged (the moment of the disruption).
async fn stream_until_30_percent(
    db: &Db,
    instances: &Instances,
    o: &GaleraOptions,
    first: usize,
    what: &str,
) -> anyhow::Result<(std::ops::Range<usize>, Stream, Arc<AtomicUsize>)> {
    progress(format!(
        "{what} at 30% of {} callbacks over 3 instances",
        o.stream
    ));
    let range = first..first + o.stream;
    seed_pending_payments(db, range.clone(), None).await?;
    let (stream, acknowledged) = start_stream(instances, range.clone(), o.clients);
    wait_for(&acknowledged, o.stream * 3 / 10).await?;
    Ok((range, stream, acknowledged))
}

/// Streams the success callbacks of seeded payments `range` over the instances.
fn start_stream(
    instances: &Instances,
    range: std::ops::Range<usize>,
    clients: usize,
) -> (Stream, Arc<AtomicUsize>) {
    let bodies = Arc::new(range.map(stk_success).collect::<Vec<_>>());
    let acknowledged = Arc::new(AtomicUsize::new(0));
    // Body i of the stream goes to instance i % 3 (and is retried there).
    let stream = tokio::spawn(stream_callbacks(
        instances.bases(),
        bodies,
        clients,
        (acknowledged.clone(), Arc::new(AtomicU64::new(0))),
        Duration::from_secs(180),
    ));
    (stream, acknowledged)
}

async fn wait_for(acknowledged: &Arc<AtomicUsize>, n: usize) -> anyhow::Result<()> {
    eventually(
        "callbacks to be acknowledged",
        Duration::from_secs(120),
        || {
            let k = acknowledged.load(Ordering::Relaxed);
            async move { Ok(k >= n) }
        },
    )
    .await
}

/// The sum of a Prometheus counter's series on an instance whose labels contain `labels`.
async fn metric_sum(gateway: &ManagedProcess, name: &str, labels: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{}/metrics", gateway.base))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// `/health` of an instance: its status code and what it says of the database.
async fn health_of(gateway: &ManagedProcess) -> String {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    match client.get(format!("{}/health", gateway.base)).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            format!(
                "{status}, database {}, {}",
                body["database"],
                body.get("galera")
                    .map_or_else(String::new, |g| g.to_string())
            )
        }
        Err(e) => format!("no answer: {e}"),
    }
}

/// Waits until the instance's `/health` is 200 again.
async fn wait_healthy(gateway: &ManagedProcess) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("{}/health", gateway.base);
    eventually(
        "the instance of the node to be healthy again by itself",
        Duration::from_secs(60),
        || async { Ok(client.get(&url).send().await?.status().as_u16() == 200) },
    )
    .await
}

/// Every callback answered 200 is stored and its payment completed; every callback of the
/// stream was eventually answered 200 (the senders retried).
async fn settled(
    db: &Db,
    outcomes: &[CallbackOutcome],
    range: std::ops::Range<usize>,
    scenario: &str,
) -> anyhow::Result<()> {
    let unanswered = outcomes
        .iter()
        .filter(|c| c.acknowledged_at.is_none())
        .count();
    let retried = outcomes.iter().filter(|c| c.failed_attempts > 0).count();
    figure("callbacks that needed a retry (refused or cut)", retried);
    ensure_guarantee!(
        unanswered == 0,
        "{scenario}: {unanswered} callbacks never got a 200 once the cluster was whole again"
    );
    eventually(
        "every acknowledged callback applied",
        Duration::from_secs(60),
        || async {
            Ok(db
                .count("SELECT COUNT(*) FROM callbacks WHERE outcome = 'received'")
                .await?
                == 0)
        },
    )
    .await?;
    crate::suites::crash::acknowledged_are_stored_and_applied(db, outcomes, range.start)
        .await
        .map_err(|e| anyhow::anyhow!("{scenario}: {e}"))?;
    figure(
        "acknowledged and stored, payment completed",
        format!("{} of {}", outcomes.len(), outcomes.len()),
    );
    Ok(())
}

/// One webhook event per payment of `range` (all completed), each delivered. An event
/// delivered twice is allowed (at least once, with one id) only when the disruption, from
/// `disrupted_at` until every node was Synced and the instance healthy again at `recovered_at`
/// (plus the outbox lease), falls between the two deliveries: a node lost the record of the
/// first one, or held it past the lease.
async fn webhooks_once(
    db: &Db,
    webhook: &WebhookReceiver,
    range: std::ops::Range<usize>,
    disrupted_at: Instant,
    recovered_at: Instant,
) -> anyhow::Result<()> {
    outbox_drained(db, "every notification delivered", Duration::from_secs(120)).await?;
    let in_range = format!(
        "payment_id >= 'pay_bench{:09}' AND payment_id < 'pay_bench{:09}'",
        range.start, range.end
    );
    let events = db
        .text_pairs(&format!(
            "SELECT id, payment_id FROM outbox_events WHERE channel = 'webhook' AND {in_range}"
        ))
        .await?;
    let per_payment = per_key(events.iter().map(|(_, p)| p));
    ensure_guarantee!(
        per_payment.len() == range.len() && per_payment.values().all(|n| *n == 1),
        "{} payments completed, {} with webhook events, {} with more than one — guarantee 2",
        range.len(),
        per_payment.len(),
        per_payment.values().filter(|n| **n > 1).count()
    );
    let mut answers: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    for d in webhook.log.all() {
        answers.entry(d.key).or_default().push(d.answered_at);
    }
    let lease = Duration::from_secs(2);
    let (mut missing, mut across, mut unexplained) = (0, 0, Vec::new());
    for (id, _) in &events {
        match answers.get(id).map(Vec::as_slice) {
            None => missing += 1,
            Some([_]) => {}
            Some([first, second]) if *first < recovered_at + lease && *second >= disrupted_at => {
                across += 1
            }
            Some(times) => unexplained.push(
                times
                    .iter()
                    .map(|t| {
                        let ms = |d: Duration| d.as_millis() as i64;
                        if *t >= disrupted_at {
                            format!("+{} ms", ms(*t - disrupted_at))
                        } else {
                            format!("-{} ms", ms(disrupted_at - *t))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        }
    }
    figure(
        "webhook events / delivered twice across the disruption / otherwise",
        format!("{} / {across} / {}", events.len(), unexplained.len()),
    );
    ensure_guarantee!(
        missing == 0,
        "{missing} webhook events never delivered — guarantee 6"
    );
    ensure_guarantee!(
        unexplained.is_empty(),
        "{} webhook events delivered more than once without a disruption between (answers relative to the disruption: {:?}) — guarantee 2",
        unexplained.len(),
        unexplained
    );
    Ok(())
}

fn per_key<'a>(keys: impl Iterator<Item = &'a String>) -> BTreeMap<&'a String, usize> {
    let mut counts = BTreeMap::new();
    for k in keys {
        *counts.entry(k).or_insert(0) += 1;
    }
    counts
}
