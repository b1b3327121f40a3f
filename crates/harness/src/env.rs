//! The harness's settings: one set of names for the storage contract tests, the gateway's
//! tests, `proof/` and `bench/`. Each is optional; the defaults are the local servers
//! `./scripts/test` sets up.

/// The PostgreSQL server fresh databases are made on (a URL with a database to connect to).
pub const POSTGRES_URL: &str = "MPESA_TEST_POSTGRES_URL";
/// The MySQL or MariaDB server fresh databases are made on.
pub const MYSQL_URL: &str = "MPESA_TEST_MYSQL_URL";
/// `RUST_LOG` of the gateway processes the proof suites and benchmarks start.
pub const GATEWAY_LOG: &str = "MPESA_TEST_GATEWAY_LOG";

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/mysql";
pub const DEFAULT_GATEWAY_LOG: &str = "warn";

/// The variable's value, or `default` when it is unset or blank.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub fn postgres_url() -> String {
    setting(POSTGRES_URL, DEFAULT_POSTGRES_URL)
}

pub fn mysql_url() -> String {
    setting(MYSQL_URL, DEFAULT_MYSQL_URL)
}

pub fn gateway_log() -> String {
    setting(GATEWAY_LOG, DEFAULT_GATEWAY_LOG)
}
