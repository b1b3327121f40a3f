//! `mpesa-bench`: how fast mpesa-gateway takes Safaricom's callbacks durably and starts
//! payments, measured against a floor in the same run. See bench/README.md.

mod load;
mod process;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::load::{LoadReport, run_load, run_load_at};
use crate::process::Floor;
use mpesa_harness::database::{Backend as DbBackend, Db, TestDatabase, seed_pending_payments};
use mpesa_harness::galera::GaleraCluster;
use mpesa_harness::process::{ManagedProcess, proc_status_kib};

const CALLBACK_SECRET: &str = "0123456789abcdef0123456789abcdef";

#[derive(Parser)]
#[command(about = "Benchmarks of mpesa-gateway (release builds; see bench/README.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The gateway binary to measure.
    #[arg(long, global = true, default_value = "target/release/mpesa-gateway")]
    gateway: PathBuf,
    /// The floor binary (a bare axum endpoint).
    #[arg(long, global = true, default_value = "target/release/bench-floor")]
    floor: PathBuf,
    /// Concurrent connections.
    #[arg(long, global = true, default_value_t = 32)]
    connections: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Durable STK callback ingestion (store raw, match, transition, commit, answer).
    Ingest {
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: Backend,
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// A webhook is configured, as most businesses have one: each payment settled also
        /// writes a webhook row, which the gateway's outbox delivers to a receiver on loopback
        /// (a second floor process) while the callbacks come in.
        #[arg(long)]
        webhook: bool,
        /// Open loop: callbacks sent at this many a second whatever the answers, as Safaricom
        /// sends them, each one's latency counted from when it was due (the floor at the same
        /// rate). Throughput then only says whether the rate was kept up; read the latencies.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// C2B: durable confirmation ingestion (each booked as a payment) and validation answers
    /// (rules: account pattern, amount bounds and a known account read from the database).
    C2b {
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: Backend,
        #[arg(long, default_value_t = 10_000)]
        requests: usize,
    },
    /// Payment initiation through the API against the in-process simulator.
    Initiate {
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
    },
    /// Everything: ingestion on SQLite, PostgreSQL, MariaDB and a 3-node Galera cluster, then
    /// initiation.
    All {
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
    /// The MariaDB server at `MPESA_TEST_MYSQL_URL` (default 127.0.0.1:3306).
    Mariadb,
    /// A 3-node MariaDB Galera cluster made for the run on loopback; the gateway on node 1.
    Galera,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mariadb => "mariadb",
            Backend::Galera => "galera (node 1 of 3)",
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    daraja::install_crypto_provider();
    let mut cli = Cli::parse();
    for bin in [&mut cli.gateway, &mut cli.floor] {
        // The gateway runs in a temporary directory: the path must not be relative.
        *bin = bin.canonicalize().with_context(|| {
            format!("{} not found: build first with `cargo build --release -p mpesa-gateway -p mpesa-bench`", bin.display())
        })?;
    }
    let mut rows = Vec::new();
    match cli.command {
        Command::Ingest {
            backend,
            requests,
            webhook,
            rate,
        } => rows.extend(ingest(&cli, backend, requests, webhook, rate).await?),
        Command::C2b { backend, requests } => rows.extend(c2b(&cli, backend, requests).await?),
        Command::Initiate { requests } => rows.extend(initiate(&cli, requests).await?),
        Command::All { requests } => {
            for backend in [
                Backend::Sqlite,
                Backend::Postgres,
                Backend::Mariadb,
                Backend::Galera,
            ] {
                rows.extend(ingest(&cli, backend, requests, false, None).await?);
            }
            for backend in [Backend::Sqlite, Backend::Postgres, Backend::Mariadb] {
                rows.extend(ingest(&cli, backend, requests, true, None).await?);
            }
            rows.extend(c2b(&cli, Backend::Sqlite, requests / 2).await?);
            rows.extend(initiate(&cli, requests / 4).await?);
        }
    }
    print_table(&rows, cli.connections);
    save(&rows)?;
    Ok(())
}

/// One line of the results table.
struct Row {
    scenario: String,
    report: LoadReport,
    peak_rss_kib: Option<u64>,
    /// Throughput as a share of the floor measured in the same run.
    ratio_to_floor: Option<f64>,
    note: String,
}

async fn ingest(
    cli: &Cli,
    backend: Backend,
    requests: usize,
    webhook: bool,
    rate: Option<f64>,
) -> anyhow::Result<Vec<Row>> {
    let name = backend.name();
    let with = match (webhook, rate) {
        (true, Some(rate)) => format!(", with a webhook, open loop at {rate}/s"),
        (true, None) => ", with a webhook".to_owned(),
        (false, Some(rate)) => format!(", open loop at {rate}/s"),
        (false, None) => String::new(),
    };
    eprintln!(
        "== ingestion on {name}{with}: {requests} callbacks over {} connections",
        cli.connections
    );
    let dir = tempfile_dir()?;
    let log_filter = mpesa_harness::env::gateway_log();
    // Kept until the end of the run: dropping them removes the database (and the cluster).
    let (database_url, made) = fresh_database(backend, &dir).await?;
    // The webhook's receiver answers 200 to every delivery, as the floor answers callbacks.
    let receiver = match webhook {
        true => Some(Floor::start(&cli.floor).await?),
        false => None,
    };
    let webhook_url = receiver.as_ref().map(|r| format!("{}/hook", r.base));
    let mut env = vec![
        ("DATABASE_URL", database_url.as_str()),
        ("MPESA_CALLBACK_SECRET", CALLBACK_SECRET),
        ("RECONCILE_AFTER_SECS", "86400"),
        ("PAYMENT_EXPIRES_AFTER_SECS", "172800"),
        ("RUST_LOG", log_filter.as_str()),
    ];
    if let Some(url) = &webhook_url {
        env.extend([
            ("WEBHOOK_URL", url.as_str()),
            ("WEBHOOK_SECRET", "whsec_bench_0123456789abcdef"),
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ]);
    }
    let gateway = ManagedProcess::sandbox_gateway(&cli.gateway, &dir, &env).await?;
    let warmup = 1_000;
    let payments = requests + warmup;
    let db = Db::connect(&database_url).await?;
    seed_pending_payments(&db, 0..payments, None).await?;
    let bodies: Vec<Vec<u8>> = (0..payments)
        .map(mpesa_harness::callbacks_to_send::stk_success)
        .collect();
    let (warm, measured) = bodies.split_at(warmup);

    // The floor is measured before and after the gateway, each time on twice the bodies: a
    // short run of a few hundred milliseconds on a shared machine varied by a third from one
    // run to the next, and the machine's speed drifts over the minute a run takes.
    let floor = Floor::start(&cli.floor).await?;
    let path = format!("/callbacks/{CALLBACK_SECRET}/stk");
    // At a fixed rate, as many as the gateway's run: twice would only take twice as long.
    let floor_requests = if rate.is_some() {
        requests
    } else {
        2 * requests
    };
    let floor_bodies: Vec<Vec<u8>> = measured
        .iter()
        .cycle()
        .take(floor_requests)
        .cloned()
        .collect();
    let connections = cli.connections;
    run_load(&floor.base, &path, warm, connections, None).await?;
    let floor_before =
        run_load_at(&floor.base, &path, &floor_bodies, connections, None, rate).await?;

    run_load(&gateway.base, &path, warm, connections, None).await?;
    let report = run_load_at(&gateway.base, &path, measured, connections, None, rate).await?;
    let rss = gateway.peak_rss_kib();

    // Nothing acknowledged is lost: count what is in the database against the 200s.
    let stored = db
        .count("SELECT COUNT(*) FROM callbacks WHERE outcome = 'applied'")
        .await? as u64;
    // Delivery runs beside ingestion and behind it: how far it had come by the last answer,
    // and how long it took to deliver the rest.
    let delivered = match webhook {
        true => {
            const DELIVERED: &str = "SELECT COUNT(*) FROM outbox_events WHERE status = 'delivered'";
            let by_last_answer = db.count(DELIVERED).await?;
            let rows = db.count("SELECT COUNT(*) FROM outbox_events").await?;
            let ended = std::time::Instant::now();
            while db.count(DELIVERED).await? < rows {
                if ended.elapsed() > Duration::from_secs(300) {
                    bail!("webhooks still undelivered 300 s after the last answer");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Some((by_last_answer, rows, ended.elapsed()))
        }
        false => None,
    };
    db.close().await;
    let floor_after =
        run_load_at(&floor.base, &path, &floor_bodies, connections, None, rate).await?;
    let floor_rss = proc_status_kib(floor.pid(), "VmHWM:");
    drop(floor);
    let floor_note = format!(
        "{:.0}/s before the gateway's run, {:.0}/s after",
        floor_before.throughput(),
        floor_after.throughput()
    );
    let floor_report = LoadReport::combined(floor_before, floor_after);
    let acknowledged = report.ok + warm.len() as u64;
    let note =
        format!("{stored} callbacks applied in the database for {acknowledged} answered 200");
    if stored < acknowledged {
        bail!("LOST: {note}");
    }
    let note = match delivered {
        Some((by_last_answer, rows, rest)) => format!(
            "{note}; {by_last_answer} of {rows} webhooks delivered by then, the rest in {:.1} s",
            rest.as_secs_f64()
        ),
        None => note,
    };
    drop(receiver);
    drop(gateway);
    drop(made);
    let _ = std::fs::remove_dir_all(&dir);
    let ratio = report.throughput() / floor_report.throughput();
    Ok(vec![
        Row {
            scenario: "floor: bare axum, parse JSON".into(),
            report: floor_report,
            peak_rss_kib: floor_rss,
            ratio_to_floor: Some(1.0),
            note: floor_note,
        },
        Row {
            scenario: format!("gateway: durable ingestion, {name}{with}"),
            report,
            peak_rss_kib: rss,
            ratio_to_floor: Some(ratio),
            note,
        },
    ])
}

async fn initiate(cli: &Cli, requests: usize) -> anyhow::Result<Vec<Row>> {
    eprintln!(
        "== initiation: {requests} payments over {} connections, in-process simulator",
        cli.connections
    );
    let dir = tempfile_dir()?;
    let database_url = format!("sqlite://{}/bench.db", dir.display());
    let log_filter = mpesa_harness::env::gateway_log();
    let env = [
        ("DATABASE_URL", database_url.as_str()),
        ("RECONCILE_AFTER_SECS", "86400"),
        ("PAYMENT_EXPIRES_AFTER_SECS", "172800"),
        // The push is what is measured: no callbacks competing for the same two cores.
        ("DARAJA_SIM_NO_CALLBACKS", "true"),
        ("RUST_LOG", log_filter.as_str()),
    ];
    let gateway = ManagedProcess::sandbox_gateway(&cli.gateway, &dir, &env).await?;
    let key = std::fs::read_to_string(dir.join("mpesa-gateway.sandbox-key"))
        .context("the sandbox API key")?
        .trim()
        .to_owned();
    // A different number per payment: M-Pesa (and the simulator) lock a number while its prompt is open.
    let bodies: Vec<Vec<u8>> = (0..requests + 500)
        .map(|i| serde_json::to_vec(&json!({ "phone": format!("2547{:08}", 10_000_000 + i), "amount": 10, "reference": "BENCH" })).unwrap())
        .collect();
    let (warm, measured) = bodies.split_at(500);
    let floor = Floor::start(&cli.floor).await?;
    run_load(&floor.base, "/api/v1/payments", warm, cli.connections, None).await?;
    let floor_report = run_load(
        &floor.base,
        "/api/v1/payments",
        measured,
        cli.connections,
        None,
    )
    .await?;
    drop(floor);
    run_load(
        &gateway.base,
        "/api/v1/payments",
        warm,
        cli.connections,
        Some(&key),
    )
    .await?;
    let report = run_load(
        &gateway.base,
        "/api/v1/payments",
        measured,
        cli.connections,
        Some(&key),
    )
    .await?;
    let rss = gateway.peak_rss_kib();
    let metrics = reqwest::get(format!("{}/metrics", gateway.base))
        .await?
        .text()
        .await?;
    let tokens = metrics
        .lines()
        .find(|l| l.starts_with("mpesa_gateway_daraja_token_requests_total "))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or("?")
        .to_owned();
    drop(gateway);
    let ratio = report.throughput() / floor_report.throughput();
    Ok(vec![
        Row {
            scenario: "floor: bare axum, parse JSON".into(),
            report: floor_report,
            peak_rss_kib: None,
            ratio_to_floor: Some(1.0),
            note: String::new(),
        },
        Row {
            scenario: "gateway: create payment + STK push to the simulator".into(),
            report,
            peak_rss_kib: rss,
            ratio_to_floor: Some(ratio),
            note: format!(
                "{tokens} OAuth token request(s) for {} payments",
                requests + 500
            ),
        },
    ])
}

/// A fresh database (or Galera cluster) for a run, and its URL.
async fn fresh_database(
    backend: Backend,
    dir: &std::path::Path,
) -> anyhow::Result<(String, Fresh)> {
    Ok(match backend {
        Backend::Sqlite | Backend::Postgres | Backend::Mariadb => {
            let kind = match backend {
                Backend::Sqlite => DbBackend::Sqlite,
                Backend::Postgres => DbBackend::Postgres,
                _ => DbBackend::MySql,
            };
            let db = TestDatabase::create(kind, "mpesa_bench", Some(dir)).await?;
            (db.url().to_owned(), Fresh::Database(db))
        }
        Backend::Galera => {
            let cluster = GaleraCluster::start(3, &dir.join("cluster")).await?;
            let name = cluster.create_database("mpesa_bench").await?;
            (cluster.nodes[0].url(&name), Fresh::Cluster(cluster))
        }
    })
}

/// C2B on `backend`: confirmations (each a new receipt, each booked as a `completed` payment
/// with its webhook row) and validation answers, each against the floor in the same run.
async fn c2b(cli: &Cli, backend: Backend, requests: usize) -> anyhow::Result<Vec<Row>> {
    let name = backend.name();
    eprintln!(
        "== C2B on {name}: {requests} confirmations and {requests} validations over {} connections",
        cli.connections
    );
    let dir = tempfile_dir()?;
    let log_filter = mpesa_harness::env::gateway_log();
    let (database_url, made) = fresh_database(backend, &dir).await?;
    let gateway = ManagedProcess::sandbox_gateway(
        &cli.gateway,
        &dir,
        &[
            ("DATABASE_URL", database_url.as_str()),
            ("MPESA_CALLBACK_SECRET", CALLBACK_SECRET),
            ("WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ("WEBHOOK_SECRET", "whsec_bench_0123456789abcdef"),
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
            ("OUTBOX_POLL_INTERVAL", "1h"),
            ("C2B_VALIDATION", "rules"),
            ("C2B_ACCOUNT_PATTERN", "BENCH[0-9]+"),
            ("C2B_REQUIRE_KNOWN_ACCOUNT", "true"),
            ("RUST_LOG", log_filter.as_str()),
        ],
    )
    .await?;
    let key = std::fs::read_to_string(dir.join("mpesa-gateway.sandbox-key"))
        .context("the sandbox API key")?
        .trim()
        .to_owned();
    let added = reqwest::Client::new()
        .post(format!("{}/api/v1/c2b/accounts", gateway.base))
        .bearer_auth(&key)
        .json(&json!({ "account": "BENCH1" }))
        .send()
        .await?;
    if !added.status().is_success() {
        bail!("could not register the bench account: {}", added.status());
    }
    let warmup = 1_000;
    let bodies: Vec<Vec<u8>> = (0..requests + warmup)
        .map(|i| mpesa_harness::callbacks_to_send::c2b_payment(i, "BENCH1"))
        .collect();
    let (warm, measured) = bodies.split_at(warmup);
    let confirm = format!("/callbacks/{CALLBACK_SECRET}/c2b/confirmation");
    let validate = format!("/callbacks/{CALLBACK_SECRET}/c2b/validation");

    let floor = Floor::start(&cli.floor).await?;
    run_load(&floor.base, &confirm, warm, cli.connections, None).await?;
    let floor_confirm = run_load(&floor.base, &confirm, measured, cli.connections, None).await?;
    let floor_validate = run_load(&floor.base, &validate, measured, cli.connections, None).await?;
    drop(floor);

    run_load(&gateway.base, &confirm, warm, cli.connections, None).await?;
    let confirmations = run_load(&gateway.base, &confirm, measured, cli.connections, None).await?;
    run_load(&gateway.base, &validate, warm, cli.connections, None).await?;
    let validations = run_load(&gateway.base, &validate, measured, cli.connections, None).await?;
    let rss = gateway.peak_rss_kib();

    // Every acknowledged confirmation is one payment.
    let db = Db::connect(&database_url).await?;
    let booked = db
        .count("SELECT COUNT(*) FROM payments WHERE channel = 'c2b' AND status = 'completed'")
        .await? as u64;
    db.close().await;
    let acknowledged = confirmations.ok + warm.len() as u64;
    let note = format!(
        "{booked} C2B payments in the database for {acknowledged} confirmations answered 200"
    );
    if booked < acknowledged {
        bail!("LOST: {note}");
    }
    drop(gateway);
    drop(made);
    let _ = std::fs::remove_dir_all(&dir);
    let confirm_ratio = confirmations.throughput() / floor_confirm.throughput();
    let validate_ratio = validations.throughput() / floor_validate.throughput();
    Ok(vec![
        Row {
            scenario: "floor: bare axum, parse JSON".into(),
            report: floor_confirm,
            peak_rss_kib: None,
            ratio_to_floor: Some(1.0),
            note: String::new(),
        },
        Row {
            scenario: format!("gateway: C2B confirmation booked, {name}"),
            report: confirmations,
            peak_rss_kib: rss,
            ratio_to_floor: Some(confirm_ratio),
            note,
        },
        Row {
            scenario: "floor: bare axum, parse JSON".into(),
            report: floor_validate,
            peak_rss_kib: None,
            ratio_to_floor: Some(1.0),
            note: String::new(),
        },
        Row {
            scenario: format!("gateway: C2B validation answered (rules, known account), {name}"),
            report: validations,
            peak_rss_kib: None,
            ratio_to_floor: Some(validate_ratio),
            note: "decided by the rules within 2 s, else by the fallback".into(),
        },
    ])
}

/// What a run made for its database, removed when dropped.
enum Fresh {
    Database(#[allow(dead_code)] TestDatabase),
    Cluster(#[allow(dead_code)] GaleraCluster),
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("mpesa-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn print_table(rows: &[Row], connections: usize) {
    println!(
        "\n{connections} connections; throughput in requests/s; latency in ms; ratio = throughput / floor's in the same run\n"
    );
    println!(
        "| scenario | requests | ok | throughput | p50 | p99 | max | peak RSS | ratio to floor | note |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            r.scenario,
            r.report.sent,
            r.report.ok,
            r.report.throughput(),
            r.report.percentile_ms(50.0),
            r.report.percentile_ms(99.0),
            r.report.percentile_ms(100.0),
            r.peak_rss_kib
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into()),
            r.ratio_to_floor
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.note
        );
    }
}

fn save(rows: &[Row]) -> anyhow::Result<()> {
    let dir = PathBuf::from("bench/results");
    std::fs::create_dir_all(&dir)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "scenario": r.scenario, "requests": r.report.sent, "ok": r.report.ok, "errors": r.report.errors,
                "throughput_per_s": r.report.throughput(), "p50_ms": r.report.percentile_ms(50.0),
                "p99_ms": r.report.percentile_ms(99.0), "max_ms": r.report.percentile_ms(100.0),
                "peak_rss_kib": r.peak_rss_kib, "ratio_to_floor": r.ratio_to_floor, "note": r.note,
            })
        })
        .collect();
    let path = dir.join(format!("{stamp}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    eprintln!("results saved to {}", path.display());
    Ok(())
}
