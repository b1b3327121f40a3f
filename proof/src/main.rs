//! `mpesa-proof`: suites that prove mpesa-gateway's guarantees against the real binary, run as
//! OS processes on loopback. Each suite stops by itself, prints its figures, and exits non-zero
//! with a `GUARANTEE BROKEN: …` message when a guarantee does not hold. See proof/README.md.

mod common;
mod proxy;
mod receivers;
mod suites;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use mpesa_harness::database::Backend;

#[derive(Parser)]
#[command(about = "Proof suites for mpesa-gateway's guarantees (see proof/README.md)")]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
    /// The gateway binary under test.
    #[arg(long, global = true, default_value = "target/debug/mpesa-gateway")]
    gateway: PathBuf,
}

#[derive(Subcommand)]
enum Suite {
    /// kill -9 mid-stream of callbacks, restart on the same database; on SQLite also a disk
    /// that fills up mid-stream and empties again.
    Crash {
        #[arg(long, value_enum, default_value = "all")]
        backend: CrashBackend,
        #[arg(long, default_value_t = 2_000)]
        payments: usize,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Kill when this share of the callbacks is acknowledged.
        #[arg(long, default_value_t = 0.4)]
        kill_at: f64,
    },
    /// 1,000 copies of one callback over two instances sharing a database.
    Duplicates {
        #[arg(long, value_enum, default_value = "all")]
        backend: SharedBackend,
        #[arg(long, default_value_t = 1_000)]
        copies: usize,
        #[arg(long, default_value_t = 32)]
        clients: usize,
    },
    /// Each dependency unreachable and back while payments flow.
    Faults,
    /// A steady rate of callbacks for a long time; memory and latency must stay flat.
    Soak {
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// e.g. 10m, 30s.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        duration: Duration,
        /// Sampling interval (default: a thirtieth of the duration, 1 s to 20 s).
        #[arg(long, value_parser = parse_duration)]
        interval: Option<Duration>,
        #[arg(long, value_enum, default_value = "sqlite")]
        backend: CrashBackend,
    },
    /// The CI subset: crash (SQLite with its disk-full round, PostgreSQL), duplicates
    /// (PostgreSQL, MariaDB), faults, soak 30 s.
    Quick {
        /// The soak's rate in quick mode.
        #[arg(long, default_value_t = 200)]
        soak_rate: u32,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum CrashBackend {
    Sqlite,
    Postgres,
    All,
}

#[derive(Clone, Copy, ValueEnum)]
enum SharedBackend {
    Postgres,
    Mariadb,
    All,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s}: expected e.g. 30s or 10m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "ms" => Ok(Duration::from_millis(n)),
        other => Err(format!("{other}: use ms, s or m")),
    }
}

fn sampling_interval(duration: Duration) -> Duration {
    Duration::from_secs((duration.as_secs() / 30).clamp(1, 20))
}

#[tokio::main]
async fn main() -> ExitCode {
    daraja::install_crypto_provider();
    let cli = Cli::parse();
    let started = Instant::now();
    match run(cli).await {
        Ok(()) => {
            println!("\nALL PASSED in {:.0} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "\nFAILED after {:.0} s: {e:#}",
                started.elapsed().as_secs_f64()
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(mut cli: Cli) -> anyhow::Result<()> {
    cli.gateway = cli.gateway.canonicalize().with_context(|| {
        format!(
            "{} not found: build it first (scripts/proof does)",
            cli.gateway.display()
        )
    })?;
    let gateway = cli.gateway.as_path();
    let crash_backends = |b: CrashBackend| match b {
        CrashBackend::Sqlite => vec![Backend::Sqlite],
        CrashBackend::Postgres => vec![Backend::Postgres],
        CrashBackend::All => vec![Backend::Sqlite, Backend::Postgres],
    };
    match cli.suite {
        Suite::Crash {
            backend,
            payments,
            clients,
            kill_at,
        } => {
            let options = suites::crash::CrashOptions {
                payments,
                clients,
                kill_at,
            };
            for b in crash_backends(backend) {
                suites::crash::run(gateway, b, &options).await?;
                if b == Backend::Sqlite {
                    suites::crash::disk_full(gateway, payments, clients).await?;
                }
            }
        }
        Suite::Duplicates {
            backend,
            copies,
            clients,
        } => {
            let backends = match backend {
                SharedBackend::Postgres => vec![Backend::Postgres],
                SharedBackend::Mariadb => vec![Backend::MySql],
                SharedBackend::All => vec![Backend::Postgres, Backend::MySql],
            };
            for b in backends {
                suites::duplicates::run(gateway, b, copies, clients).await?;
            }
        }
        Suite::Faults => suites::faults::run(gateway).await?,
        Suite::Soak {
            rate,
            duration,
            interval,
            backend,
        } => {
            for b in crash_backends(backend) {
                let options = suites::soak::SoakOptions {
                    rate,
                    duration,
                    interval: interval.unwrap_or_else(|| sampling_interval(duration)),
                    backend: b,
                };
                suites::soak::run(gateway, &options).await?;
            }
        }
        Suite::Quick { soak_rate } => {
            let crash = suites::crash::CrashOptions {
                payments: 2_000,
                clients: 8,
                kill_at: 0.4,
            };
            suites::crash::run(gateway, Backend::Sqlite, &crash).await?;
            suites::crash::disk_full(gateway, 600, 8).await?;
            suites::crash::run(gateway, Backend::Postgres, &crash).await?;
            suites::duplicates::run(gateway, Backend::Postgres, 1_000, 32).await?;
            suites::duplicates::run(gateway, Backend::MySql, 1_000, 32).await?;
            suites::faults::run(gateway).await?;
            let duration = Duration::from_secs(30);
            suites::soak::run(
                gateway,
                &suites::soak::SoakOptions {
                    rate: soak_rate,
                    duration,
                    interval: Duration::from_secs(3),
                    backend: Backend::Sqlite,
                },
            )
            .await?;
        }
    }
    Ok(())
}
