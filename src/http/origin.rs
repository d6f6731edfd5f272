//! Allowed origins per site: `scheme://host[:port]` patterns where the port may be `*`.

use std::collections::HashMap;

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    https: bool,
    /// Lowercased.
    host: String,
    /// `None` means any port.
    port: Option<u16>,
}

fn default_port(https: bool) -> u16 {
    if https {
        443
    } else {
        80
    }
}

/// An `Origin` value or a pattern split without copying: requests are read on every event, so
/// nothing is allocated.
struct Parts<'a> {
    https: bool,
    /// As sent: compared without regard to ASCII case.
    host: &'a str,
    port: Option<&'a str>,
}

/// Splits `scheme://host[:port]` (an `Origin` header value); `None` for anything else.
fn split_origin(s: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = s.trim().split_once("://")?;
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return None;
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    // IPv6 hosts are bracketed: [::1]:8080
    let (host, port) = if let Some(end) = rest.find(']') {
        let host = &rest[..=end];
        let port = rest[end + 1..].strip_prefix(':');
        (host, port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(Parts { https, host, port })
}

impl OriginPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let Parts { https, host, port } = split_origin(s)
            .ok_or_else(|| format!("origin {s:?} is not of the form http(s)://host[:port|:*]"))?;
        let port = match port {
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| format!("origin {s:?} has an invalid port"))?,
            ),
            None => Some(default_port(https)),
        };
        Ok(Self {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Does the `Origin` header value `origin` match?
    pub fn matches(&self, origin: &str) -> bool {
        Requested::parse(origin).is_some_and(|o| self.matches_requested(&o))
    }

    fn matches_requested(&self, origin: &Requested<'_>) -> bool {
        origin.https == self.https
            && origin.host.eq_ignore_ascii_case(&self.host)
            && self.port.is_none_or(|want| want == origin.port)
    }
}

/// A request's origin, read once and then compared with every allowed pattern.
struct Requested<'a> {
    https: bool,
    host: &'a str,
    /// Explicit, or the scheme's default.
    port: u16,
}

impl<'a> Requested<'a> {
    /// `None` when the value is no origin or its port is not a number (`*` is for patterns).
    fn parse(s: &'a str) -> Option<Self> {
        let Parts { https, host, port } = split_origin(s)?;
        let port = match port {
            Some(p) => p.parse().ok()?,
            None => default_port(https),
        };
        Some(Self { https, host, port })
    }
}

/// The origin part of a full URL (a `Referer` header), for browsers that send no `Origin`.
pub fn origin_of_url(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")? + 3;
    let end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map(|i| scheme_end + i)
        .unwrap_or(url.len());
    Some(&url[..end])
}

/// Site id -> allowed origins.
#[derive(Debug, Clone, Default)]
pub struct Sites {
    sites: HashMap<String, Vec<OriginPattern>>,
    /// Site ids in configuration order.
    ids: Vec<String>,
}

impl Sites {
    pub fn new(sites: &[(String, Vec<String>)]) -> Result<Self, String> {
        let mut map = HashMap::new();
        let mut ids = Vec::new();
        for (id, origins) in sites {
            let patterns = origins
                .iter()
                .map(|o| OriginPattern::parse(o))
                .collect::<Result<Vec<_>, _>>()?;
            if map.insert(id.clone(), patterns).is_none() {
                ids.push(id.clone());
            }
        }
        Ok(Self { sites: map, ids })
    }

    /// The configured site ids, in configuration order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// True when `site` is configured.
    pub fn contains(&self, site: &str) -> bool {
        self.sites.contains_key(site)
    }

    /// True when `site` is configured and `origin` is one of its origins.
    pub fn allows(&self, site: &str, origin: &str) -> bool {
        let (Some(patterns), Some(origin)) = (self.sites.get(site), Requested::parse(origin))
        else {
            return false;
        };
        patterns.iter().any(|p| p.matches_requested(&origin))
    }

    /// True when any site allows `origin` (CORS preflights do not carry the site id).
    pub fn any_allows(&self, origin: &str) -> bool {
        Requested::parse(origin).is_some_and(|origin| {
            self.sites
                .values()
                .flatten()
                .any(|p| p.matches_requested(&origin))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_origin() {
        let p = OriginPattern::parse("https://shop.example").unwrap();
        assert!(p.matches("https://shop.example"));
        assert!(p.matches("https://SHOP.example:443"));
        assert!(!p.matches("http://shop.example"));
        assert!(!p.matches("https://shop.example:8443"));
        assert!(!p.matches("https://evil-shop.example"));
        assert!(!p.matches("https://shop.example.evil.com"));
        assert!(!p.matches("null"));
    }

    #[test]
    fn any_port() {
        let p = OriginPattern::parse("http://localhost:*").unwrap();
        assert!(p.matches("http://localhost:5173"));
        assert!(p.matches("http://localhost"));
        assert!(!p.matches("http://localhost.evil.com:80"));
        let v6 = OriginPattern::parse("http://[::1]:*").unwrap();
        assert!(v6.matches("http://[::1]:8080"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "shop.example",
            "ftp://a",
            "https://a/path",
            "https://a:99999",
            "https://",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn referer_gives_an_origin() {
        assert_eq!(
            origin_of_url("https://a.example:8080/p?q#f"),
            Some("https://a.example:8080")
        );
        assert_eq!(
            origin_of_url("https://a.example"),
            Some("https://a.example")
        );
        assert_eq!(origin_of_url("nonsense"), None);
    }

    #[test]
    fn sites_table() {
        let s = Sites::new(&[
            ("demo".into(), vec!["http://localhost:*".into()]),
            ("shop".into(), vec!["https://shop.example".into()]),
        ])
        .unwrap();
        assert!(s.allows("shop", "https://shop.example"));
        assert!(!s.allows("shop", "http://localhost:3000"));
        assert!(!s.allows("nope", "https://shop.example"));
        assert!(s.any_allows("http://localhost:3000"));
        assert!(!s.any_allows("https://evil.example"));
    }

    #[test]
    fn request_origins_are_compared_without_regard_to_case_and_never_half_parsed() {
        let s = Sites::new(&[(
            "shop".into(),
            vec!["HTTPS://Shop.Example".into(), "http://[::1]:8080".into()],
        )])
        .unwrap();
        for ok in [
            "https://shop.example",
            "HTTPS://SHOP.EXAMPLE:443",
            " Https://shop.Example/ ",
            "http://[::1]:8080",
        ] {
            assert!(s.allows("shop", ok), "{ok}");
            assert!(s.any_allows(ok), "{ok}");
        }
        for bad in [
            "https://shop.example:",
            "https://shop.example:4430000",
            "https://shop.example:-1",
            "httpss://shop.example",
            "https://user@shop.example",
            "https://shop.example/path",
            "http://[::1]",
            "http://[::2]:8080",
            "",
        ] {
            assert!(!s.allows("shop", bad), "{bad}");
            assert!(!s.any_allows(bad), "{bad}");
        }
    }
}
