//! Signed webhooks to the merchant's app.
//!
//! The body is the stored event JSON, byte for byte. Each attempt is signed afresh:
//! `Mpesa-Gateway-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. A 2xx is a
//! delivery; anything else (a redirect is not followed) is retried. Unless
//! `WEBHOOK_ALLOW_PRIVATE` is set, destinations on loopback, private, link-local, unique-local,
//! multicast or unspecified addresses are refused, checked on the addresses the connection is
//! actually made to (a resolver of our own), so a DNS answer that changes cannot get around it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, Mac};
use mpesa_storage::OutboxEvent;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use url::Url;

use super::Delivery;

pub const SIGNATURE_HEADER: &str = "Mpesa-Gateway-Signature";
pub const EVENT_ID_HEADER: &str = "Mpesa-Gateway-Event-Id";
const USER_AGENT: &str = concat!("mpesa-gateway/", env!("CARGO_PKG_VERSION"), " (webhooks)");

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature_header(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookSetupError {
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

/// A destination the SSRF guard refuses.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "refused to send to {host}: it resolves to {ip}, a {kind} address (set WEBHOOK_ALLOW_PRIVATE=true to allow)"
)]
pub struct RefusedDestination {
    pub host: String,
    pub ip: IpAddr,
    pub kind: &'static str,
}

/// Why an address is not a public destination, or `None` when it is.
pub fn non_public_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_kind(v4);
            }
            let s = v6.segments();
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
                Some("unique-local")
            } else if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                // NAT64: the IPv4 address it carries decides.
                let v4 =
                    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                v4_kind(v4)
            } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
                // NAT64 for local use (64:ff9b:1::/48): a translator inside someone's network.
                Some("private")
            } else if s[0] == 0x2002 {
                // 6to4: the IPv4 address it carries decides.
                let v4 =
                    Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
                v4_kind(v4)
            } else {
                None
            }
        }
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() || (o[0] == 100 && o[1] & 0xc0 == 64) {
        // 10/8, 172.16/12, 192.168/16 and carrier-grade NAT 100.64/10.
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast()
        || o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && o[1] & 0xfe == 18)
    {
        // 240/4, IETF protocol assignments 192.0.0/24 and benchmarking 198.18/15: never a
        // public endpoint, sometimes a network's own.
        Some("reserved")
    } else {
        None
    }
}

/// Resolves like the system does, then refuses the whole answer if any address is not public.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(refused) = addrs.iter().find_map(|a| {
                non_public_kind(a.ip()).map(|kind| RefusedDestination {
                    host: host.clone(),
                    ip: a.ip(),
                    kind,
                })
            }) {
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

pub struct WebhookSender {
    client: reqwest::Client,
    url: Url,
    secret: SecretString,
    allow_private: bool,
    timeout: Duration,
}

impl WebhookSender {
    /// `url` is the configured `WEBHOOK_URL`: events go where the merchant's app is now, even
    /// if it moved since they were written.
    pub fn new(
        url: Url,
        secret: SecretString,
        allow_private: bool,
        timeout: Duration,
    ) -> Result<Self, WebhookSetupError> {
        daraja::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect on our behalf, out of the guard's sight.
            .no_proxy()
            .user_agent(USER_AGENT);
        if !allow_private {
            builder = builder.dns_resolver(GuardedResolver);
        }
        let client = builder
            .build()
            .map_err(|e| WebhookSetupError::Client(e.to_string()))?;
        Ok(WebhookSender {
            client,
            url,
            secret,
            allow_private,
            timeout,
        })
    }

    /// Checks the destination without sending anything (`config check`): resolves it and
    /// applies the guard. Returns the addresses it would connect to.
    pub async fn check_destination(&self) -> Result<Vec<SocketAddr>, String> {
        let host = self
            .url
            .host_str()
            .ok_or("WEBHOOK_URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = self.url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if !self.allow_private {
            for a in &addrs {
                if let Some(kind) = non_public_kind(a.ip()) {
                    return Err(RefusedDestination {
                        host: host.clone(),
                        ip: a.ip(),
                        kind,
                    }
                    .to_string());
                }
            }
        }
        Ok(addrs)
    }

    /// An address literal in the URL is connected to without any lookup: check it here.
    fn refuse_literal(&self) -> Option<RefusedDestination> {
        if self.allow_private {
            return None;
        }
        let ip = match self.url.host()? {
            url::Host::Ipv4(ip) => IpAddr::V4(ip),
            url::Host::Ipv6(ip) => IpAddr::V6(ip),
            url::Host::Domain(_) => return None,
        };
        non_public_kind(ip).map(|kind| RefusedDestination {
            host: ip.to_string(),
            ip,
            kind,
        })
    }

    /// Sends `body` signed at `timestamp` (seconds).
    pub async fn post(&self, event_id: &str, body: &[u8], timestamp: i64) -> Delivery {
        if let Some(refused) = self.refuse_literal() {
            return Delivery::Failed {
                error: refused.to_string(),
                code: None,
                after: None,
            };
        }
        let signature = signature_header(self.secret.expose_secret().as_bytes(), timestamp, body);
        let result = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, event_id)
            .body(body.to_vec())
            .send()
            .await;
        let mut response = match result {
            Ok(r) => r,
            Err(e) => {
                return Delivery::Failed {
                    error: self.describe_error(e),
                    code: None,
                    after: None,
                };
            }
        };
        let status = response.status();
        let code = Some(i32::from(status.as_u16()));
        if status.is_success() {
            return Delivery::Delivered { code };
        }
        let error = if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(crate::config::mask_url)
                .unwrap_or_else(|| "nowhere".into());
            format!(
                "HTTP {status}: a redirect (to {to}) is not followed; point WEBHOOK_URL at the final address"
            )
        } else {
            // The start of the answer helps the merchant see what their app said.
            let mut excerpt = Vec::new();
            while excerpt.len() < 300 {
                match response.chunk().await {
                    Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            excerpt.truncate(300);
            let text = String::from_utf8_lossy(&excerpt).trim().to_owned();
            if text.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {text}")
            }
        };
        Delivery::Failed {
            error,
            code,
            after: None,
        }
    }

    fn describe_error(&self, error: reqwest::Error) -> String {
        let error = error.without_url();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            if let Some(refused) = cause.downcast_ref::<RefusedDestination>() {
                return refused.to_string();
            }
            source = cause.source();
        }
        if error.is_timeout() {
            return format!("no answer within {:?}", self.timeout);
        }
        daraja::error_chain(&error)
    }
}

impl super::Sender for WebhookSender {
    async fn send(&self, event: &OutboxEvent) -> Delivery {
        // The wall clock, not the gateway's `Clock`: the merchant checks `t` against their own
        // clock (a few minutes' tolerance, README), so it must be the real time of sending.
        let timestamp = crate::ids::now_ms() / 1000;
        self.post(&event.id, event.payload.as_bytes(), timestamp)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature_header(b"whsec_test", 1_700_000_000, br#"{"id":"evt_1"}"#),
            "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
    }

    #[test]
    fn refuses_non_public_addresses() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.20.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00::1", "unique-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b:1::a00:1", "private"),
            ("2002:a00:1::1", "private"),
            ("2002:7f00:1::1", "loopback"),
            ("192.0.0.8", "reserved"),
            ("198.18.0.1", "reserved"),
            ("198.19.255.1", "reserved"),
        ] {
            assert_eq!(non_public_kind(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "41.90.1.1",
            "2001:4860:4860::8888",
            "172.32.0.1",
            "198.20.0.1",
            "192.0.1.1",
            "2002:2959:101::1",
        ] {
            assert_eq!(non_public_kind(ip.parse().unwrap()), None, "{ip}");
        }
    }
}
