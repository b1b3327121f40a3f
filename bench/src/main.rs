//! `mpesa-bench`: how fast mpesa-gateway takes Safaricom's callbacks durably and starts
//! payments, measured against a floor in the same run. See bench/README.md.

mod load;
mod process;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use sqlx::Connection;

use crate::load::{LoadReport, run_load};
use crate::process::{Child, peak_rss_kib};

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
    },
    /// Payment initiation through the API against the in-process simulator.
    Initiate {
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
    },
    /// Everything: ingestion on SQLite and PostgreSQL, then initiation.
    All {
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
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
        Command::Ingest { backend, requests } => {
            rows.extend(ingest(&cli, backend, requests).await?)
        }
        Command::Initiate { requests } => rows.extend(initiate(&cli, requests).await?),
        Command::All { requests } => {
            rows.extend(ingest(&cli, Backend::Sqlite, requests).await?);
            rows.extend(ingest(&cli, Backend::Postgres, requests).await?);
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

async fn ingest(cli: &Cli, backend: Backend, requests: usize) -> anyhow::Result<Vec<Row>> {
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    eprintln!(
        "== ingestion on {name}: {requests} callbacks over {} connections",
        cli.connections
    );
    let dir = tempfile_dir()?;
    let log_filter = std::env::var("MPESA_BENCH_GATEWAY_LOG").unwrap_or_else(|_| "warn".into());
    let (database_url, _guard) = match backend {
        Backend::Sqlite => (format!("sqlite://{}/bench.db", dir.display()), None),
        Backend::Postgres => {
            let (url, guard) = fresh_postgres_database().await?;
            (url, Some(guard))
        }
    };
    let gateway = Child::gateway(
        &cli.gateway,
        &dir,
        &[
            ("DATABASE_URL", database_url.as_str()),
            ("MPESA_CALLBACK_SECRET", CALLBACK_SECRET),
            ("RECONCILE_AFTER_SECS", "86400"),
            ("PAYMENT_EXPIRES_AFTER_SECS", "172800"),
            ("RUST_LOG", log_filter.as_str()),
        ],
    )
    .await?;
    let warmup = 1_000;
    let payments = requests + warmup;
    seed_pending_payments(&database_url, payments).await?;
    let bodies: Vec<Vec<u8>> = (0..payments).map(stk_success_body).collect();
    let (warm, measured) = bodies.split_at(warmup);

    let floor = Child::floor(&cli.floor).await?;
    let path = format!("/callbacks/{CALLBACK_SECRET}/stk");
    run_load(&floor.base, &path, warm, cli.connections, None).await?;
    let floor_report = run_load(&floor.base, &path, measured, cli.connections, None).await?;
    let floor_rss = peak_rss_kib(floor.pid());
    drop(floor);

    run_load(&gateway.base, &path, warm, cli.connections, None).await?;
    let report = run_load(&gateway.base, &path, measured, cli.connections, None).await?;
    let rss = peak_rss_kib(gateway.pid());

    // Nothing acknowledged is lost: count what is in the database against the 200s.
    let stored = count_applied(&database_url).await?;
    let acknowledged = report.ok + warm.len() as u64;
    let note =
        format!("{stored} callbacks applied in the database for {acknowledged} answered 200");
    if stored < acknowledged {
        bail!("LOST: {note}");
    }
    drop(gateway);
    let ratio = report.throughput() / floor_report.throughput();
    Ok(vec![
        Row {
            scenario: "floor: bare axum, parse JSON".into(),
            report: floor_report,
            peak_rss_kib: floor_rss,
            ratio_to_floor: Some(1.0),
            note: String::new(),
        },
        Row {
            scenario: format!("gateway: durable ingestion, {name}"),
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
    let env = [
        ("DATABASE_URL", database_url.as_str()),
        ("RECONCILE_AFTER_SECS", "86400"),
        ("PAYMENT_EXPIRES_AFTER_SECS", "172800"),
        // The push is what is measured: no callbacks competing for the same two cores.
        ("DARAJA_SIM_NO_CALLBACKS", "true"),
        ("RUST_LOG", "warn"),
    ];
    let gateway = Child::gateway(&cli.gateway, &dir, &env).await?;
    let key = std::fs::read_to_string(dir.join("mpesa-gateway.sandbox-key"))
        .context("the sandbox API key")?
        .trim()
        .to_owned();
    // A different number per payment: M-Pesa (and the simulator) lock a number while its prompt is open.
    let bodies: Vec<Vec<u8>> = (0..requests + 500)
        .map(|i| serde_json::to_vec(&json!({ "phone": format!("2547{:08}", 10_000_000 + i), "amount": 10, "reference": "BENCH" })).unwrap())
        .collect();
    let (warm, measured) = bodies.split_at(500);
    let floor = Child::floor(&cli.floor).await?;
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
    let rss = peak_rss_kib(gateway.pid());
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

fn stk_success_body(i: usize) -> Vec<u8> {
    format!(
        r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"bench-{i}","CheckoutRequestID":"ws_CO_bench{i:09}","ResultCode":0,"ResultDesc":"The service request is processed successfully.","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":10.00}},{{"Name":"MpesaReceiptNumber","Value":"B{i:09}"}},{{"Name":"Balance"}},{{"Name":"TransactionDate","Value":20261122101500}},{{"Name":"PhoneNumber","Value":254708374149}}]}}}}}}}}"#
    )
    .into_bytes()
}

/// Payments waiting for their callback, written in bulk (the gateway's own create path costs a
/// commit each, and is not what this measures).
async fn seed_pending_payments(database_url: &str, n: usize) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let mut statements = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "('pay_bench{i:09}','pending','254708374149',10,'BENCH','bench','ws_CO_bench{i:09}','bench-{i}','api',{next},{now},{now},FALSE,1,0)",
                    next = now + 86_400_000
                )
            })
            .collect();
        statements.push(format!(
            "INSERT INTO payments (id,status,phone,amount,reference,description,checkout_request_id,merchant_request_id,source,next_check_at,created_at,updated_at,needs_review,version,query_attempts) VALUES {}",
            values.join(",")
        ));
    }
    if database_url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await?;
        for s in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(s))
                .execute(&mut conn)
                .await?;
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url).await?;
        for s in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(s))
                .execute(&mut conn)
                .await?;
        }
    }
    Ok(())
}

async fn count_applied(database_url: &str) -> anyhow::Result<u64> {
    let sql = "SELECT COUNT(*) FROM callbacks WHERE outcome = 'applied'";
    let n: i64 = if database_url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await?;
        sqlx::query_scalar(sql).fetch_one(&mut conn).await?
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url).await?;
        sqlx::query_scalar(sql).fetch_one(&mut conn).await?
    };
    Ok(n as u64)
}

/// A fresh PostgreSQL database on `MPESA_BENCH_POSTGRES_URL` (default the local server), dropped
/// afterwards.
async fn fresh_postgres_database() -> anyhow::Result<(String, DropDatabase)> {
    let admin = std::env::var("MPESA_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("mpesa_bench_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .context("PostgreSQL for the benchmark")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => bail!("MPESA_BENCH_POSTGRES_URL needs a database path"),
    };
    Ok((url, DropDatabase { admin, name }))
}

struct DropDatabase {
    admin: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
    }
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
