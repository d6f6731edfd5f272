//! URL and text scrubbing: personal data that pages leak into URLs and titles is removed before storage.
//!
//! Query and fragment parameters are dropped when their name is a configured sensitive name (or
//! contains `token`, `password`, `secret` or `email`), or when their value looks like an email
//! address, a phone number or a token. Path segments and titles keep their shape, with email
//! addresses and tokens replaced by a marker. Everything is a pure function of the input, so the
//! same page always gives the same stored URL.

use std::borrow::Cow;

/// Parameter names removed by default (compared case-insensitively).
pub const DEFAULT_SCRUB_PARAMS: [&str; 32] = [
    "email",
    "e-mail",
    "mail",
    "phone",
    "tel",
    "mobile",
    "msisdn",
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "auth",
    "authorization",
    "code",
    "state",
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "api_key",
    "apikey",
    "key",
    "session",
    "sessionid",
    "jsessionid",
    "phpsessid",
    "card",
    "pan",
    "iin",
    "iban",
    "otp",
];

/// Name parts that make any parameter sensitive.
const SENSITIVE_PARTS: [&str; 4] = ["token", "password", "secret", "email"];

/// What replaces an email address in a path segment or text.
pub const EMAIL_MARK: &str = "[email]";
/// What replaces a token in a path segment.
pub const TOKEN_MARK: &str = "[token]";

#[derive(Debug, Clone)]
pub struct Scrubber {
    names: Vec<String>,
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::new(&DEFAULT_SCRUB_PARAMS)
    }
}

impl Scrubber {
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        Self {
            names: names
                .iter()
                .map(|n| n.as_ref().trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect(),
        }
    }

    fn sensitive_name(&self, name: &str) -> bool {
        let name: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        // Lengths first: most names differ in length from most sensitive names. Parameter names
        // are short, so a plain window scan beats setting up a substring searcher per lookup.
        let bytes = name.as_bytes();
        self.names
            .iter()
            .any(|n| n.len() == name.len() && *n == name)
            || SENSITIVE_PARTS
                .iter()
                .any(|p| bytes.windows(p.len()).any(|w| w == p.as_bytes()))
    }

    /// `url` without sensitive parameters and with emails and tokens masked in its path.
    pub fn url<'a>(&self, url: &'a str) -> Cow<'a, str> {
        // Fast path: nothing that could carry personal data.
        if !url.contains(['?', '#', '@', '%']) && !has_long_run(url) {
            return Cow::Borrowed(url);
        }
        let (before_fragment, fragment) = match url.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (url, None),
        };
        let (base, query) = match before_fragment.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (before_fragment, None),
        };
        let path = self.path(base);
        let query = query.map(|q| self.params(q));
        let fragment = fragment.map(|f| {
            if f.contains('=') {
                self.params(f)
            } else {
                mask_segment(f)
            }
        });
        let changed = |c: &Option<Cow<'_, str>>| matches!(c, Some(Cow::Owned(_)));
        // Most URLs keep everything: no allocation then.
        if matches!(path, Cow::Borrowed(_)) && !changed(&query) && !changed(&fragment) {
            return Cow::Borrowed(url);
        }
        let mut out = String::with_capacity(url.len());
        out.push_str(&path);
        for (mark, part) in [('?', query), ('#', fragment)] {
            if let Some(part) = part.filter(|p| !p.is_empty()) {
                out.push(mark);
                out.push_str(&part);
            }
        }
        Cow::Owned(out)
    }

    /// The path part with each segment masked (the scheme and host are left alone).
    fn path<'a>(&self, base: &'a str) -> Cow<'a, str> {
        let path_start = base
            .find("://")
            .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(base.len());
        let (origin, path) = base.split_at(path_start);
        // Checked first without building anything: almost every path is kept as it is.
        if !path
            .split('/')
            .any(|seg| matches!(mask_segment(seg), Cow::Owned(_)))
        {
            return Cow::Borrowed(base);
        }
        let masked: Vec<Cow<'_, str>> = path.split('/').map(mask_segment).collect();
        Cow::Owned(format!("{origin}{}", masked.join("/")))
    }

    /// `k=v&k=v` without the sensitive pairs (borrowed when every pair stays).
    fn params<'a>(&self, q: &'a str) -> Cow<'a, str> {
        let keep = |pair: &&str| {
            if pair.is_empty() {
                return false;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            !(self.sensitive_name(&percent_decode(name)) || sensitive_value(&percent_decode(value)))
        };
        if q.split('&').all(|p| keep(&p)) {
            return Cow::Borrowed(q);
        }
        Cow::Owned(q.split('&').filter(keep).collect::<Vec<_>>().join("&"))
    }

    /// Free text (titles, custom-event values) with email addresses masked.
    pub fn text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        if !s.contains('@') {
            return Cow::Borrowed(s);
        }
        let mut out = String::with_capacity(s.len());
        let mut changed = false;
        let mut rest = s;
        while !rest.is_empty() {
            let end = rest
                .find(|c: char| c.is_whitespace() || "<>()[]{}\"',;".contains(c))
                .unwrap_or(rest.len());
            let (word, tail) = rest.split_at(end);
            let trimmed = word.trim_end_matches(['.', '!', '?', ':']);
            if looks_like_email(trimmed) {
                out.push_str(EMAIL_MARK);
                out.push_str(&word[trimmed.len()..]);
                changed = true;
            } else {
                out.push_str(word);
            }
            let sep_len = tail.chars().next().map_or(0, char::len_utf8);
            out.push_str(&tail[..sep_len]);
            rest = &tail[sep_len..];
        }
        if changed {
            Cow::Owned(out)
        } else {
            Cow::Borrowed(s)
        }
    }
}

fn has_long_run(s: &str) -> bool {
    let mut run = 0;
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            run += 1;
            if run >= 24 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// A path segment with an email or token replaced by a marker.
fn mask_segment(seg: &str) -> Cow<'_, str> {
    let decoded = percent_decode(seg);
    if looks_like_email(&decoded) {
        Cow::Owned(EMAIL_MARK.to_owned())
    } else if looks_like_token(&decoded) {
        Cow::Owned(TOKEN_MARK.to_owned())
    } else {
        Cow::Borrowed(seg)
    }
}

fn sensitive_value(v: &str) -> bool {
    looks_like_email(v) || looks_like_phone(v) || looks_like_token(v)
}

/// `local@domain.tld` with a plausible local part and a dotted domain.
pub fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-!#$&'*/=?^`{|}~".contains(&b))
        && domain.len() >= 3
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// An international number (`+` and 7-15 digits) or a grouped national one (9-15 digits with
/// separators). Plain digit strings are left alone: they are far more often order or page ids.
pub fn looks_like_phone(s: &str) -> bool {
    let s = s.trim();
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b" +-().".contains(&b))
    {
        return false;
    }
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    let grouped = s.bytes().any(|b| b" -().".contains(&b));
    (s.starts_with('+') && (7..=15).contains(&digits)) || (grouped && (9..=15).contains(&digits))
}

/// A long opaque string: a JWT, or 24+ characters of a token alphabet mixing letters and digits
/// (UUIDs are ids of things, not secrets, and are kept).
pub fn looks_like_token(s: &str) -> bool {
    if s.starts_with("eyJ") && s.matches('.').count() == 2 {
        return true;
    }
    if s.len() < 24 || is_uuid(s) {
        return false;
    }
    let alphabet = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~+/=".contains(&b));
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    let letters = s.bytes().filter(u8::is_ascii_alphabetic).count();
    alphabet && digits >= 2 && letters >= 2
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// `%XX` decoding (not `+`: it means a space only in form bodies, and a leading `+` matters for
/// phone numbers). Invalid escapes are kept as they are.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(url: &str) -> String {
        Scrubber::default().url(url).into_owned()
    }

    #[test]
    fn sensitive_parameters_are_removed_by_name() {
        assert_eq!(
            scrub("https://a.example/p?id=7&email=x&Token=abc&utm_source=news"),
            "https://a.example/p?id=7&utm_source=news"
        );
        assert_eq!(
            scrub("https://a.example/p?reset_token=1"),
            "https://a.example/p"
        );
        assert_eq!(
            scrub("https://a.example/cb?code=abc&state=xyz#access_token=eyJ.x.y&x=1"),
            "https://a.example/cb#x=1"
        );
        let custom = Scrubber::new(&["member"]);
        assert_eq!(
            custom.url("https://a.example/?member=42&page=2"),
            "https://a.example/?page=2"
        );
    }

    #[test]
    fn sensitive_values_are_removed_whatever_the_name() {
        assert_eq!(
            scrub("https://a.example/?q=alice%40example.com&page=2"),
            "https://a.example/?page=2"
        );
        assert_eq!(
            scrub("https://a.example/?who=alice@example.kz"),
            "https://a.example/"
        );
        assert_eq!(
            scrub("https://a.example/?n=%2B77011234567"),
            "https://a.example/"
        );
        assert_eq!(
            scrub("https://a.example/?n=+7 701 123 45 67"),
            "https://a.example/"
        );
        assert_eq!(
            scrub("https://a.example/?n=(701) 123-4567"),
            "https://a.example/"
        );
        assert_eq!(
            scrub("https://a.example/?r=AbCdEf0123456789GhIjKlMn"),
            "https://a.example/"
        );
    }

    #[test]
    fn ordinary_urls_are_left_alone() {
        for url in [
            "https://a.example/",
            "https://a.example/products/42?page=2&sort=price",
            "https://a.example/order/12345678901",
            "https://a.example/item/550e8400-e29b-41d4-a716-446655440000",
            "https://a.example/search?q=red+shoes",
            "https://a.example/docs#section-2",
        ] {
            assert!(
                matches!(Scrubber::default().url(url), Cow::Borrowed(_)),
                "{url} was changed to {}",
                scrub(url)
            );
        }
    }

    #[test]
    fn emails_and_tokens_in_paths_are_masked() {
        assert_eq!(
            scrub("https://a.example/users/alice@example.com/settings"),
            "https://a.example/users/[email]/settings"
        );
        assert_eq!(
            scrub("https://a.example/reset/9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
            "https://a.example/reset/[token]"
        );
        assert_eq!(
            scrub("https://a.example/u/alice%40example.com"),
            "https://a.example/u/[email]"
        );
    }

    #[test]
    fn emails_in_text_are_masked() {
        let s = Scrubber::default();
        assert_eq!(
            s.text("Inbox (3) - alice@example.com."),
            "Inbox (3) - [email]."
        );
        assert_eq!(s.text("Write to <bob@shop.kz>"), "Write to <[email]>");
        assert!(matches!(s.text("@home, no address"), Cow::Borrowed(_)));
        assert!(matches!(s.text("Plain title"), Cow::Borrowed(_)));
    }

    #[test]
    fn heuristics() {
        assert!(looks_like_email("a.b+c@d.kz"));
        assert!(
            !looks_like_email("@d.kz") && !looks_like_email("a@b") && !looks_like_email("a@.b")
        );
        assert!(looks_like_phone("+77011234567") && looks_like_phone("8 (701) 123-45-67"));
        assert!(!looks_like_phone("12345678901") && !looks_like_phone("2026-11-25"));
        assert!(looks_like_token("eyJhbGciOi.eyJzdWIi.sig"));
        assert!(!looks_like_token("550e8400-e29b-41d4-a716-446655440000"));
        assert!(!looks_like_token("a-very-long-slug-about-shoes-and-bags"));
        assert_eq!(percent_decode("a%40b%zz%4"), "a@b%zz%4");
    }
}
