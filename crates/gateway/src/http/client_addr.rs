//! Who is asking: the client's address, read from `X-Forwarded-For` / `Forwarded` only when the
//! direct peer is a proxy the operator trusts (`TRUSTED_PROXIES`). Anyone can send those
//! headers; believed from an untrusted peer, they would let a client pick its own address (and
//! dodge the sign-in limits, or pass for loopback).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

pub use crate::config::TrustedProxies;

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the nearest
    /// address in the forwarding chain that is not itself a trusted proxy (each proxy appends
    /// the address it got the request from, so everything left of the first untrusted hop may
    /// have been written by the client). An unreadable hop stops the walk at the proxy before it.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let chain = forwarded_chain(headers);
        let mut client = peer;
        for hop in chain.iter().rev() {
            match hop {
                Some(ip) if self.contains(*ip) => client = *ip,
                Some(ip) => return *ip,
                None => return client,
            }
        }
        client
    }

    /// Whether the request comes from this machine itself, not forwarded for someone else: a
    /// loopback client address, and no forwarding header that a trusted proxy did not vouch for
    /// (a proxy on this machine forwards other people's requests from loopback).
    pub fn is_local(&self, peer: SocketAddr, headers: &HeaderMap) -> bool {
        let peer_ip = canonical(peer.ip());
        if !self.contains(peer_ip) && has_forwarding_headers(headers) {
            return false;
        }
        self.client_address(peer_ip, headers).is_loopback()
    }
}

fn has_forwarding_headers(headers: &HeaderMap) -> bool {
    headers.contains_key("x-forwarded-for")
        || headers.contains_key("forwarded")
        || headers.contains_key("x-real-ip")
}

/// A client as rate limits count it: an IPv4 address whole; an IPv6 address by its /64, the
/// block one subscriber (a home, a server) is given and can draw fresh addresses from at will,
/// so that a limit per address cannot be walked around one address at a time.
pub fn rate_limit_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:192.0.2.1`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The forwarding chain, client first: `X-Forwarded-For` (all its headers, in order), or else
/// the `for=` parameters of `Forwarded`. `None` for a hop that is not an address (`unknown`,
/// an obfuscated name, garbage).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().map(str::to_owned).unwrap_or_default())
            .collect()
    };
    let xff = values("x-forwarded-for");
    if !xff.is_empty() {
        return xff
            .iter()
            .flat_map(|v| v.split(','))
            .map(|hop| parse_hop(hop.trim()))
            .collect();
    }
    values("forwarded")
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_hop(value.trim().trim_matches('"')))
            })
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn rate_limits_count_an_ipv6_client_by_its_64() {
        let key = |s: &str| rate_limit_key(ip(s));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:1:2:3"), key("2001:db8:1:2::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_ne!(key("192.0.2.8"), key("192.0.2.7"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn lists_parse_and_bad_entries_are_named() {
        let t = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8 ::1  fd00::/8").unwrap();
        assert!(t.contains(ip("127.0.0.1")));
        assert!(t.contains(ip("10.20.30.40")));
        assert!(t.contains(ip("::ffff:10.1.1.1")), "IPv4 seen through IPv6");
        assert!(t.contains(ip("fd00::5")));
        assert!(!t.contains(ip("127.0.0.2")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        let err = TrustedProxies::parse("127.0.0.1, proxy.local").unwrap_err();
        assert!(err.contains("proxy.local"), "{err}");
    }

    /// Issue 11, item 5: the headers are believed only from a trusted proxy.
    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let none = TrustedProxies::default();
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            none.client_address(ip("198.51.100.1"), &h),
            ip("198.51.100.1")
        );
        let t = TrustedProxies::parse("127.0.0.1").unwrap();
        assert_eq!(t.client_address(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        assert_eq!(t.client_address(ip("127.0.0.1"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let t = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        // The client wrote a fake first hop; the proxies appended the real ones.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 203.0.113.9"),
            ("x-forwarded-for", "10.0.0.7"),
        ]);
        assert_eq!(t.client_address(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        // Everything trusted: the farthest proxy.
        let h = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.7")]);
        assert_eq!(t.client_address(ip("127.0.0.1"), &h), ip("10.0.0.9"));
        // Garbage in the chain: stop at the proxy before it.
        let h = headers(&[("x-forwarded-for", "203.0.113.9, nonsense, 10.0.0.7")]);
        assert_eq!(t.client_address(ip("127.0.0.1"), &h), ip("10.0.0.7"));
        // No header: the proxy itself.
        assert_eq!(
            t.client_address(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn forwarded_is_read_when_x_forwarded_for_is_absent() {
        let t = TrustedProxies::parse("127.0.0.1").unwrap();
        let h = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=https, for="[2001:db8::7]:4711""#,
        )]);
        assert_eq!(t.client_address(ip("127.0.0.1"), &h), ip("2001:db8::7"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(t.client_address(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }

    #[test]
    fn local_means_loopback_and_not_forwarded_for_someone_else() {
        let none = TrustedProxies::default();
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let far: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        assert!(none.is_local(lo, &HeaderMap::new()));
        assert!(!none.is_local(far, &HeaderMap::new()));
        // A proxy on this machine, not declared: its requests are somebody else's.
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert!(!none.is_local(lo, &h));
        // A declared proxy: the client it names decides.
        let t = TrustedProxies::parse("127.0.0.1").unwrap();
        assert!(!t.is_local(lo, &h));
        let h = headers(&[("x-forwarded-for", "127.0.0.1")]);
        assert!(t.is_local(lo, &h));
        // A remote client cannot claim to be local.
        assert!(!t.is_local(far, &h));
    }
}
