//! Daraja's rules for the URLs it calls back (`CallBackURL`, `ConfirmationURL`, `ValidationURL`,
//! `ResultURL`, `QueueTimeOutURL`), checked before anything is sent:
//! * http or https with a host; https in production;
//! * no whitespace anywhere;
//! * none of the words `M-PESA`, `mpesa`, `Safaricom`, `exe`, `exec`, `cmd`, `sql`, `query` in any
//!   letter case, anywhere in the URL (note `query` also matches `/stkquery`);
//! * in production, a public host (not `localhost` or a private address) and no tunnelling or
//!   request-bin service (ngrok, mockbin, requestbin).
//!
//! A secret path segment made of hex digits can never contain a forbidden word.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Words Daraja refuses in callback URLs, compared in lower case. `exec` comes before `exe` so
/// the message names the longer word.
pub const FORBIDDEN_URL_WORDS: &[&str] = &[
    "m-pesa",
    "mpesa",
    "safaricom",
    "exec",
    "exe",
    "cmd",
    "sql",
    "query",
];

/// Services Daraja usually blocks in production.
const TUNNEL_SERVICES: &[&str] = &["ngrok", "mockbin", "requestbin"];

/// Why a callback URL would be refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    #[error("is not a valid URL")]
    NotAUrl,
    #[error("must not contain whitespace")]
    Whitespace,
    #[error("must be an http or https URL")]
    Scheme,
    #[error("must use https in production")]
    HttpsRequired,
    #[error("must have a host")]
    NoHost,
    #[error("must not contain \"{0}\" in any letter case (Daraja refuses such URLs)")]
    ForbiddenWord(&'static str),
    #[error("must be publicly reachable in production, not localhost or a private address")]
    NotPublic,
    #[error("must not use a tunnelling or request-bin service ({0}) in production")]
    TunnelService(&'static str),
}

/// Parses and checks a callback URL written as text (whitespace is checked on the text itself,
/// before URL parsing would trim or encode it).
pub fn parse_callback_url(text: &str, production: bool) -> Result<Url, UrlProblem> {
    if text.chars().any(char::is_whitespace) {
        return Err(UrlProblem::Whitespace);
    }
    // URL parsers repair `https:my_app.example.com/cb` and `https:/127.0.0.1/cb` into valid
    // URLs; Daraja refuses them (`Invalid CallBackURL`, problems.md #6), so the text itself
    // must read `http://host…` or `https://host…`.
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &text[8..]
    } else if lower.starts_with("http://") {
        &text[7..]
    } else if lower.starts_with("http:") || lower.starts_with("https:") {
        return Err(UrlProblem::NotAUrl);
    } else if Url::parse(text).is_ok() {
        return Err(UrlProblem::Scheme);
    } else {
        return Err(UrlProblem::NotAUrl);
    };
    if rest.is_empty() || rest.starts_with(['/', '\\', '?', '#']) {
        return Err(UrlProblem::NoHost);
    }
    let url = Url::parse(text).map_err(|_| UrlProblem::NotAUrl)?;
    check_callback_url(&url, production)?;
    Ok(url)
}

/// Checks a parsed callback URL against Daraja's rules.
pub fn check_callback_url(url: &Url, production: bool) -> Result<(), UrlProblem> {
    match url.scheme() {
        "https" => {}
        "http" if production => return Err(UrlProblem::HttpsRequired),
        "http" => {}
        _ => return Err(UrlProblem::Scheme),
    }
    let host = url.host().ok_or(UrlProblem::NoHost)?;
    let text = url.as_str().to_ascii_lowercase();
    // A parsed URL percent-encodes whitespace; Daraja refuses it either way.
    if text.chars().any(char::is_whitespace)
        || ["%20", "%09", "%0a", "%0d", "%0b", "%0c"]
            .iter()
            .any(|w| text.contains(w))
    {
        return Err(UrlProblem::Whitespace);
    }
    if let Some(word) = FORBIDDEN_URL_WORDS.iter().find(|w| text.contains(*w)) {
        return Err(UrlProblem::ForbiddenWord(word));
    }
    if production {
        if !is_public_host(&host) {
            return Err(UrlProblem::NotPublic);
        }
        let host_text = host.to_string().to_ascii_lowercase();
        if let Some(service) = TUNNEL_SERVICES.iter().find(|s| host_text.contains(*s)) {
            return Err(UrlProblem::TunnelService(service));
        }
    }
    Ok(())
}

fn is_public_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d.contains('.')
                && d != "localhost"
                && !d.ends_with(".localhost")
                && !d.ends_with(".local")
        }
        Host::Ipv4(ip) => is_public_ip(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => is_public_ip(IpAddr::V6(*ip)),
    }
}

fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || is_shared_v4(v4))
        }
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unspecified() || is_local_v6(v6)),
    }
}

// 100.64.0.0/10, carrier-grade NAT: not reachable from Safaricom.
fn is_shared_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 100 && (64..128).contains(&b)
}

// fc00::/7 unique local and fe80::/10 link local.
fn is_local_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_neutral_urls() {
        for url in [
            "https://example.com/hooks/stk/3f9c1d",
            "https://pay.example.co.ke:8443/callbacks/abc123/stk",
            "http://127.0.0.1:8000/callbacks/abc/stk",
        ] {
            assert_eq!(parse_callback_url(url, false).map(|_| ()), Ok(()), "{url}");
        }
        assert!(parse_callback_url("https://example.com/callbacks/0f3a/stk", true).is_ok());
    }

    #[test]
    fn refuses_forbidden_words_in_any_case() {
        let cases = [
            ("https://example.com/mpesa/callback", "mpesa"),
            ("https://example.com/M-PESA/cb", "m-pesa"),
            ("https://SAFARICOM.example.com/cb", "safaricom"),
            ("https://example.com/stkquery", "query"),
            ("https://example.com/run.exe", "exe"),
            ("https://example.com/exec", "exec"),
            ("https://example.com/cmd", "cmd"),
            ("https://example.com/cb?x=SQL", "sql"),
            ("https://example.com/MPesa", "mpesa"),
        ];
        for (url, word) in cases {
            assert_eq!(
                parse_callback_url(url, false),
                Err(UrlProblem::ForbiddenWord(word)),
                "{url}"
            );
        }
    }

    #[test]
    fn refuses_whitespace_and_bad_schemes() {
        assert_eq!(
            parse_callback_url("https://example.com/cb ", false),
            Err(UrlProblem::Whitespace)
        );
        assert_eq!(
            parse_callback_url(" https://example.com/cb", false),
            Err(UrlProblem::Whitespace)
        );
        assert_eq!(
            parse_callback_url("https://example.com/a b", false),
            Err(UrlProblem::Whitespace)
        );
        let encoded = Url::parse("https://example.com/a%20b").unwrap();
        assert_eq!(
            check_callback_url(&encoded, false),
            Err(UrlProblem::Whitespace)
        );
        assert_eq!(
            parse_callback_url("ftp://example.com/cb", false),
            Err(UrlProblem::Scheme)
        );
        // Forms a URL parser silently repairs, which Daraja refuses (problems.md #6).
        for repaired in [
            "https:my_app.example.com/cb",
            "https:/127.0.0.1:8000/cb",
            "http:/example.com/cb",
            "https:///example.com/cb",
            "https://",
        ] {
            assert!(
                Url::parse(repaired).is_ok() || repaired == "https://",
                "{repaired} parses"
            );
            assert!(
                parse_callback_url(repaired, false).is_err(),
                "{repaired} is refused"
            );
        }
        assert!(parse_callback_url("HTTPS://example.com/cb", false).is_ok());
        // `https:my_app` is not repaired into the host `my_app`: Daraja refuses the text.
        assert_eq!(
            parse_callback_url("https:my_app", true),
            Err(UrlProblem::NotAUrl)
        );
        assert_eq!(
            parse_callback_url("not a url", false),
            Err(UrlProblem::Whitespace)
        );
        assert_eq!(
            parse_callback_url("nonsense", false),
            Err(UrlProblem::NotAUrl)
        );
    }

    #[test]
    fn production_needs_public_https() {
        assert_eq!(
            parse_callback_url("http://example.com/cb", true),
            Err(UrlProblem::HttpsRequired)
        );
        assert_eq!(
            parse_callback_url("https://localhost/cb", true),
            Err(UrlProblem::NotPublic)
        );
        assert_eq!(
            parse_callback_url("https://192.168.1.10/cb", true),
            Err(UrlProblem::NotPublic)
        );
        assert_eq!(
            parse_callback_url("https://10.0.0.1/cb", true),
            Err(UrlProblem::NotPublic)
        );
        assert_eq!(
            parse_callback_url("https://[::1]/cb", true),
            Err(UrlProblem::NotPublic)
        );
        assert_eq!(
            parse_callback_url("https://abc.ngrok.io/cb", true),
            Err(UrlProblem::TunnelService("ngrok"))
        );
        assert!(parse_callback_url("https://abc.ngrok.io/cb", false).is_ok());
        assert!(parse_callback_url("https://196.201.214.200/cb", true).is_ok());
    }
}
