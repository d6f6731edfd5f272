//! Splitting page URLs into the parts analysts group by: host, path and campaign (UTM) parameters.
//!
//! Credentials in a URL (`https://user:pass@host/`) are removed before anything is stored.

use std::borrow::Cow;

/// The parts of an absolute http(s) URL.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// The URL with any `user:password@` removed.
    pub clean: Cow<'a, str>,
    /// Host with port, lowercased when needed.
    pub host: Cow<'a, str>,
    /// Path without query or fragment; `/` when empty.
    pub path: &'a str,
    pub query: &'a str,
}

/// Splits `url`; anything that is not an absolute http(s) URL gives empty parts.
pub fn split(url: &str) -> UrlParts<'_> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return UrlParts::default();
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return UrlParts::default();
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let after = &rest[auth_end..];
    let (host, clean) = match authority.rfind('@') {
        Some(at) => {
            let host = &authority[at + 1..];
            (host, Cow::Owned(format!("{scheme}://{host}{after}")))
        }
        None => (authority, Cow::Borrowed(url)),
    };
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let path = &after[..path_end];
    let query = after[path_end..]
        .strip_prefix('?')
        .map(|q| q.split('#').next().unwrap_or(""))
        .unwrap_or("");
    UrlParts {
        clean,
        host,
        path: if path.is_empty() { "/" } else { path },
        query,
    }
}

/// Campaign parameters of a page URL.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Utm {
    pub source: compact_str::CompactString,
    pub medium: compact_str::CompactString,
    pub campaign: compact_str::CompactString,
    pub term: compact_str::CompactString,
    pub content: compact_str::CompactString,
}

/// Reads `utm_*` parameters (percent-decoded, cut to 256 bytes).
pub fn utm(query: &str) -> Utm {
    let mut utm = Utm::default();
    if !query.contains("utm_") {
        return utm;
    }
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "utm_source" => &mut utm.source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            "utm_term" => &mut utm.term,
            "utm_content" => &mut utm.content,
            _ => continue,
        };
        let mut v = v.into_owned();
        if v.len() > 256 {
            let mut end = 256;
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v.truncate(end);
        }
        *slot = v.into();
    }
    utm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_path_and_query() {
        let p = split("https://Shop.Example:8443/a/b?x=1&utm_source=news#top");
        assert_eq!(p.host, "shop.example:8443");
        assert_eq!(p.path, "/a/b");
        assert_eq!(p.query, "x=1&utm_source=news");
        assert!(matches!(p.clean, Cow::Borrowed(_)));
    }

    #[test]
    fn bare_host_has_root_path() {
        let p = split("http://a.example");
        assert_eq!((p.host.as_ref(), p.path, p.query), ("a.example", "/", ""));
        let p = split("http://a.example?q=1");
        assert_eq!((p.path, p.query), ("/", "q=1"));
    }

    #[test]
    fn credentials_are_removed() {
        let p = split("https://bob:hunter2@a.example/x?y=1");
        assert_eq!(p.clean, "https://a.example/x?y=1");
        assert_eq!(p.host, "a.example");
    }

    #[test]
    fn non_http_gives_nothing() {
        assert_eq!(split("javascript:alert(1)"), UrlParts::default());
        assert_eq!(split("ftp://a/b"), UrlParts::default());
        assert_eq!(split(""), UrlParts::default());
    }

    #[test]
    fn utm_parameters_are_decoded() {
        let u = utm("utm_source=news%20letter&utm_medium=email&utm_campaign=spring+sale&utm_term=t&utm_content=c&other=1");
        assert_eq!(u.source, "news letter");
        assert_eq!(u.medium, "email");
        assert_eq!(u.campaign, "spring sale");
        assert_eq!((u.term.as_str(), u.content.as_str()), ("t", "c"));
        assert_eq!(utm("a=1"), Utm::default());
        assert_eq!(
            utm(&format!("utm_source={}", "x".repeat(400))).source.len(),
            256
        );
    }
}
