//! Which address the request came from: the peer, or a forwarded one only when the peer is a trusted proxy.
//!
//! The result is used for geo, provider, rate limiting and hashing, and then dropped: it is
//! never logged, spooled or stored.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The client address for a request from `peer` with the given forwarding headers.
///
/// `X-Forwarded-For` is walked from the right (the hop nearest to us) past every trusted
/// proxy; the first untrusted address is the client. A chain of only trusted hops yields the
/// leftmost. Without `X-Forwarded-For`, `X-Real-IP` is used. Unparseable entries stop the walk,
/// since anything to their left could have been written by the client.
pub fn client_ip(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    real_ip: Option<&str>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    // Byte-wise splits and trims: header values are visible ASCII, and the `char` versions set up
    // searchers that cost more than this whole step otherwise does.
    if let Some(xff) = forwarded_for.filter(|v| !v.trim_ascii().is_empty()) {
        let mut last = peer;
        for hop in xff.as_bytes().rsplit(|&c| c == b',') {
            let Some(ip) = parse_hop(super::within(xff, hop)) else {
                return last;
            };
            if !is_trusted(ip, trusted) {
                return ip;
            }
            last = ip;
        }
        return last;
    }
    real_ip.and_then(parse_hop).unwrap_or(peer)
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are treated as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// One hop of a forwarding header: an address, optionally with a port or in brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = super::trim_quotes(hop.trim_ascii());
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let got = client_ip(
            ip("203.0.113.9"),
            Some("1.1.1.1"),
            Some("2.2.2.2"),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn no_trusted_proxies_means_peer_always() {
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("1.1.1.1"), None, &[]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trusted_peer_forwarded_for_is_believed() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("198.51.100.7"), None, &t),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn spoofed_left_entries_are_skipped() {
        // The client wrote "6.6.6.6" itself; our proxy appended the real address.
        let t = nets(&["10.0.0.0/8"]);
        let got = client_ip(ip("10.0.0.1"), Some("6.6.6.6, 198.51.100.7"), None, &t);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn chains_of_trusted_proxies_are_walked() {
        let t = nets(&["10.0.0.0/8", "192.168.0.0/16"]);
        let got = client_ip(
            ip("10.0.0.1"),
            Some("198.51.100.7, 192.168.1.1, 10.1.1.1"),
            None,
            &t,
        );
        assert_eq!(got, ip("198.51.100.7"));
        let all_trusted = client_ip(ip("10.0.0.1"), Some("192.168.1.1, 10.1.1.1"), None, &t);
        assert_eq!(all_trusted, ip("192.168.1.1"));
    }

    #[test]
    fn garbage_stops_the_walk() {
        let t = nets(&["10.0.0.0/8"]);
        let got = client_ip(ip("10.0.0.1"), Some("1.2.3.4, not-an-ip"), None, &t);
        assert_eq!(got, ip("10.0.0.1"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("198.51.100.7:4321"), None, &t),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("[2001:db8::1]:80"), None, &t),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("[2001:db8::2]"), None, &t),
            ip("2001:db8::2")
        );
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), Some("198.51.100.7"), None, &t),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.1"), None, None, &t),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn real_ip_is_the_fallback() {
        let t = nets(&["127.0.0.1/32"]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), None, Some("198.51.100.8"), &t),
            ip("198.51.100.8")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some(" "), Some("junk"), &t),
            ip("127.0.0.1")
        );
    }
}
