//! The one test harness of the workspace, used by the storage contract tests, the gateway's
//! tests, the proof suites and the benchmarks:
//! * [`database`]: a fresh, migrated database per test or run on SQLite, PostgreSQL or
//!   MySQL/MariaDB (dropped afterwards), plain SQL behind the storage's back, payments seeded
//!   in bulk;
//! * [`process`]: the real `mpesa-gateway` binary (or any program) as an OS process that can be
//!   waited for, stopped with SIGTERM, killed with SIGKILL and started again;
//! * [`callbacks`]: STK callbacks shaped as Safaricom sends them;
//! * [`env`]: the variables that point it at other servers.

pub mod callbacks_to_send;
pub mod database;
pub mod env;
pub mod galera;
pub mod process;
