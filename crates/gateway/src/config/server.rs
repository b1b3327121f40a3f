//! The HTTP server's address and the log format.

use std::net::SocketAddr;

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
