//! The HTTP server's address, its limits, the proxies it trusts, and the log format.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

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

/// The HTTP server's limits (`HTTP_*`); `http::server` says what each one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            // Longer than nginx's upstream keep-alive (60 s): the proxy closes an idle connection
            // first, and never sends a request on one the gateway is closing.
            idle_timeout: Duration::from_secs(75),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// `TRUSTED_PROXIES`: addresses and networks (`127.0.0.1`, `10.0.0.0/8`, `::1`) whose
/// forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub(crate) Vec<IpNet>);

impl TrustedProxies {
    /// A list separated by commas or spaces. An address alone is a network of one.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip.to_canonical()),
                    Err(_) => {
                        return Err(format!(
                            "{item:?} is not an address or a network like 10.0.0.0/8"
                        ));
                    }
                },
            };
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }
}

impl std::fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(", "))
    }
}
