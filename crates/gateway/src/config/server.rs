//! The HTTP server's address, its limits, the proxies it trusts, and the log format.

use std::net::SocketAddr;
use std::time::Duration;

use crate::http::client_addr::TrustedProxies;
use crate::http::server::ServerLimits;

use super::reader::{Reader, parse};
use super::{ConfigError, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub(super) fn listen<S: Source>(r: &Reader<S>) -> Result<SocketAddr, ConfigError> {
    r.read_or_default(
        "GATEWAY_LISTEN",
        parse::from_str("an address like 127.0.0.1:8000"),
    )
}

pub(super) fn log_format<S: Source>(r: &Reader<S>) -> Result<LogFormat, ConfigError> {
    r.read_or_default("LOG_FORMAT", |v| match v.to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("expected text or json, got {v:?}")),
    })
}

/// The HTTP server's limits (see `http::server`).
pub(super) fn limits<S: Source>(r: &Reader<S>) -> Result<ServerLimits, ConfigError> {
    Ok(ServerLimits {
        header_read_timeout: r.read_or_default(
            "HTTP_HEADER_READ_TIMEOUT",
            parse::duration_within(Duration::from_millis(100)..=Duration::from_secs(600)),
        )?,
        idle_timeout: r.read_or_default(
            "HTTP_IDLE_TIMEOUT",
            parse::duration_within(Duration::from_millis(100)..=Duration::from_secs(3600)),
        )?,
        max_connections: r.read_or_default("HTTP_MAX_CONNECTIONS", |v| {
            match parse::from_str::<usize>("a number of connections")(v)? {
                0 => Err("must be above 0".to_owned()),
                n => Ok(n),
            }
        })?,
        shutdown_grace: r.read_or_default(
            "HTTP_SHUTDOWN_GRACE",
            parse::duration_within(Duration::ZERO..=Duration::from_secs(3600)),
        )?,
    })
}

/// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` / `Forwarded` name the client.
pub(super) fn trusted_proxies<S: Source>(r: &Reader<S>) -> Result<TrustedProxies, ConfigError> {
    Ok(r.read("TRUSTED_PROXIES", TrustedProxies::parse)?
        .unwrap_or_default())
}
