//! Browser, OS and device from the User-Agent (woothee, behind a bounded cache) and client hints.
//!
//! User-agent parsing is the most expensive enrichment step, and a site sees few distinct
//! agents, so results are cached by the full string. Woothee reads `HeadlessChrome` as Chrome
//! and knows nothing of HTTP libraries, so those are detected here.

use std::sync::Arc;

use quick_cache::sync::Cache;

use super::trim_quotes;

/// What the user agent says, normalised for the `events` columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agent {
    pub browser: compact_str::CompactString,
    pub browser_version: compact_str::CompactString,
    pub os: compact_str::CompactString,
    pub os_version: compact_str::CompactString,
    /// `desktop`, `mobile`, `tablet`, `appliance`, `bot` or `unknown`.
    pub device: compact_str::CompactString,
    pub vendor: compact_str::CompactString,
    /// The UA names a headless browser (`HeadlessChrome`, `PhantomJS`, ...).
    pub headless: bool,
    /// The UA is an HTTP library or tool, not a browser.
    pub non_browser: bool,
    /// The OS family, worked out once here because every consistency check compares it.
    pub os_family: Option<crate::enrich::consistency::OsFamily>,
}

/// User agents longer than this are not cached.
pub const MAX_CACHED_UA_BYTES: usize = 1024;

/// Woothee behind a bounded concurrent cache.
pub struct AgentParser {
    parser: woothee::parser::Parser,
    cache: Cache<String, Arc<Agent>>,
}

/// Tokens of HTTP clients that are not browsers (woothee returns nothing for most of them).
const NON_BROWSER_TOKENS: &[&str] = &[
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "go-http-client",
    "curl/",
    "wget/",
    "okhttp",
    "java/",
    "apache-httpclient",
    "node-fetch",
    "axios/",
    "undici",
    "libwww-perl",
    "ruby",
    "php/",
    "postmanruntime",
    "insomnia",
    "scrapy",
    "httpie",
    "reqwest",
];

/// Tokens that name a headless or scripted browser.
const HEADLESS_TOKENS: &[&str] = &[
    "headlesschrome",
    "phantomjs",
    "slimerjs",
    "electron/",
    "puppeteer",
    "playwright",
];

impl AgentParser {
    pub fn new(capacity: usize) -> Self {
        Self {
            parser: woothee::parser::Parser::new(),
            cache: Cache::new(capacity.max(1)),
        }
    }

    /// The parsed agent for `ua`, from the cache when seen before.
    pub fn parse(&self, ua: &str) -> Arc<Agent> {
        // Real user agents are a few hundred bytes. Longer ones are parsed but not kept: the cache
        // bounds entries, not bytes, and 16k distinct 100 KiB headers would hold 1.6 GiB (found by
        // the hostile-request test).
        if ua.len() > MAX_CACHED_UA_BYTES {
            return Arc::new(self.parse_uncached(ua));
        }
        if let Some(hit) = self.cache.get(ua) {
            return hit;
        }
        let agent = Arc::new(self.parse_uncached(ua));
        self.cache.insert(ua.to_owned(), agent.clone());
        agent
    }

    fn parse_uncached(&self, ua: &str) -> Agent {
        let lower = ua.to_ascii_lowercase();
        let headless = HEADLESS_TOKENS.iter().any(|t| lower.contains(t));
        let non_browser =
            ua.trim().is_empty() || NON_BROWSER_TOKENS.iter().any(|t| lower.contains(t));
        let known = |s: &str| {
            if s == woothee::woothee::VALUE_UNKNOWN {
                String::new()
            } else {
                s.to_owned()
            }
        };
        let mut agent = match self.parser.parse(ua) {
            Some(r) => Agent {
                browser: known(r.name).into(),
                browser_version: known(r.version).into(),
                os: known(r.os).into(),
                os_version: known(&r.os_version).into(),
                device: device_from(r.category, &lower).into(),
                vendor: known(r.vendor).into(),
                headless,
                non_browser,
                os_family: None,
            },
            None => Agent {
                device: if non_browser {
                    "bot".into()
                } else {
                    "unknown".into()
                },
                headless,
                non_browser,
                ..Agent::default()
            },
        };
        if non_browser {
            agent.device = "bot".into();
        }
        if non_browser && !ua.trim().is_empty() {
            // Name the tool by its product token so analysts can see what it was.
            agent.browser = ua
                .split(['/', ' '])
                .next()
                .unwrap_or("")
                .chars()
                .take(32)
                .collect();
        }
        if lower.contains("headlesschrome") {
            agent.browser = "HeadlessChrome".into();
        }
        agent.os_family = crate::enrich::consistency::os_family(&agent.os);
        agent
    }
}

fn device_from(category: &str, lower_ua: &str) -> String {
    match category {
        "pc" => "desktop",
        "smartphone" if lower_ua.contains("ipad") || lower_ua.contains("tablet") => "tablet",
        "smartphone" if lower_ua.contains("android") && !lower_ua.contains("mobile") => "tablet",
        "smartphone" | "mobilephone" => "mobile",
        "appliance" => "appliance",
        "crawler" => "bot",
        _ => "unknown",
    }
    .into()
}

/// A parsed `Sec-CH-UA` brand list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Brand<'a> {
    pub name: &'a str,
    pub major: &'a str,
}

/// The brands of a `Sec-CH-UA` header (`"Chromium";v="156", "Not?A_Brand";v="24"`), in order,
/// GREASE brands skipped, read as they are asked for: no allocation.
/// Brand names are quoted and GREASE ones contain `;` and `,`, so the split respects quotes.
#[derive(Debug, Clone)]
pub struct SecChUa<'a> {
    header: &'a str,
    /// Where the next brand's search starts.
    at: usize,
}

/// The brands of a `Sec-CH-UA` header value.
pub fn parse_sec_ch_ua(header: &str) -> SecChUa<'_> {
    SecChUa { header, at: 0 }
}

impl<'a> Iterator for SecChUa<'a> {
    type Item = Brand<'a>;

    fn next(&mut self) -> Option<Brand<'a>> {
        let header = self.header;
        let b = header.as_bytes();
        // Plain byte loops: `str` searches, and even `memchr`'s, cost more to set up than these
        // few bytes take to read.
        let find = |byte: u8, from: usize, to: usize| {
            let part = b.get(from..to)?;
            part.iter().position(|&c| c == byte).map(|p| from + p)
        };
        loop {
            let quote = |from: usize| find(b'"', from, b.len());
            let Some((open, close)) = quote(self.at).and_then(|o| Some((o, quote(o + 1)?))) else {
                self.at = b.len();
                return None;
            };
            // Parameters run to the next comma that starts a new quoted brand (or to the end).
            let mut from = close + 1;
            let end = loop {
                let Some(comma) = find(b',', from, b.len()) else {
                    break b.len();
                };
                let next = b[comma + 1..].iter().position(|&c| c != b' ');
                if next.is_none_or(|n| b[comma + 1 + n] == b'"') {
                    break comma;
                }
                from = comma + 1;
            };
            self.at = end;
            // Every index here sits next to an ASCII byte, so on a character boundary.
            let name = header.get(open + 1..close).unwrap_or("");
            if name.is_empty() || is_grease(name) {
                continue;
            }
            let major = version_param(header, close + 1, end);
            return Some(Brand { name, major });
        }
    }
}

/// The unquoted value of the first `v=` parameter in `header[from..to]` (`;v="156"` -> `156`).
fn version_param(header: &str, from: usize, to: usize) -> &str {
    let b = header.as_bytes();
    let mut start = from;
    while start < to {
        let stop = b[start..to]
            .iter()
            .position(|&c| c == b';')
            .map_or(to, |p| start + p);
        // Parameters are separated by `;` with optional spaces around them.
        let param = b[start..stop].trim_ascii();
        if let Some(value) = param.strip_prefix(b"v=") {
            return trim_quotes(super::within(header, value));
        }
        start = stop + 1;
    }
    ""
}

/// Parses the tracker's `"Brand/major"` form.
pub fn parse_beacon_brand(item: &str) -> Option<Brand<'_>> {
    let (name, version) = item.rsplit_once('/').unwrap_or((item, ""));
    // The tracker may send full versions (`156.0.8078.79`); brands compare by major version.
    let major = version.split('.').next().unwrap_or("");
    (!name.is_empty() && !is_grease(name)).then_some(Brand { name, major })
}

/// The client-hint brands of a request: the `Sec-CH-UA` header, else what the tracker read from
/// `navigator.userAgentData`.
pub fn brands<'a>(
    header: Option<&'a str>,
    uach: Option<&'a crate::beacon::ClientHints<'a>>,
) -> Brands<'a> {
    if let Some(mut from_header) = header.map(|h| parse_sec_ch_ua(h).peekable()) {
        if from_header.peek().is_some() {
            return Brands::Header(from_header);
        }
    }
    match uach {
        Some(ch) => Brands::Beacon(ch.brands.iter()),
        None => Brands::None,
    }
}

/// The brands [`brands`] chose, read lazily.
pub enum Brands<'a> {
    Header(std::iter::Peekable<SecChUa<'a>>),
    Beacon(std::slice::Iter<'a, std::borrow::Cow<'a, str>>),
    None,
}

impl<'a> Iterator for Brands<'a> {
    type Item = Brand<'a>;

    fn next(&mut self) -> Option<Brand<'a>> {
        match self {
            Brands::Header(h) => h.next(),
            Brands::Beacon(items) => items.find_map(|b| parse_beacon_brand(b)),
            Brands::None => None,
        }
    }
}

/// What the row and the consistency checks need from a brand list, read in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrandSummary<'a> {
    /// The most specific brand: a product brand over the engine brand "Chromium".
    pub main: Option<Brand<'a>>,
    /// A brand names a headless browser (`HeadlessChrome`).
    pub headless: bool,
}

impl<'a> BrandSummary<'a> {
    pub fn of(brands: impl Iterator<Item = Brand<'a>>) -> Self {
        let mut summary = BrandSummary::default();
        let mut first = None;
        for brand in brands {
            summary.headless |= brand.name.as_bytes().windows(8).any(|w| w == b"Headless");
            if summary.main.is_none() && brand.name != "Chromium" {
                summary.main = Some(brand);
            }
            first.get_or_insert(brand);
        }
        summary.main = summary.main.or(first);
        summary
    }
}

/// GREASE brands are deliberate noise ("Not?A_Brand", "Not)A;Brand", ...).
fn is_grease(name: &str) -> bool {
    // A window compare: a `str` search sets up a searcher that costs more than these short names.
    name.starts_with("Not")
        && name
            .as_bytes()
            .windows(5)
            .any(|w| w[1..] == *b"rand" && matches!(w[0], b'B' | b'b'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
    const HEADLESS: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const FIREFOX_WIN: &str =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    #[test]
    fn desktop_chrome() {
        let a = AgentParser::new(8).parse(CHROME_LINUX);
        assert_eq!(a.browser, "Chrome");
        assert_eq!(a.browser_version, "156.0.0.0");
        assert_eq!(a.os, "Linux");
        assert_eq!(a.device, "desktop");
        assert_eq!(a.vendor, "Google");
        assert!(!a.headless && !a.non_browser);
    }

    #[test]
    fn headless_chrome_is_detected_although_woothee_says_chrome() {
        let a = AgentParser::new(8).parse(HEADLESS);
        assert!(a.headless);
        assert_eq!(a.browser, "HeadlessChrome");
        assert_eq!(a.browser_version, "156.0.0.0");
    }

    #[test]
    fn phones_tablets_and_bots() {
        let p = AgentParser::new(8);
        let iphone = p.parse(IPHONE);
        assert_eq!(
            (
                iphone.browser.as_str(),
                iphone.os.as_str(),
                iphone.device.as_str()
            ),
            ("Safari", "iPhone", "mobile")
        );
        assert_eq!(p.parse(IPAD).device, "tablet");
        let ff = p.parse(FIREFOX_WIN);
        assert_eq!(
            (ff.browser.as_str(), ff.os.as_str(), ff.os_version.as_str()),
            ("Firefox", "Windows 10", "NT 10.0")
        );
        assert_eq!(p.parse(GOOGLEBOT).device, "bot");
    }

    #[test]
    fn http_libraries_are_named_and_flagged() {
        let p = AgentParser::new(8);
        for (ua, name) in [
            ("python-requests/2.31.0", "python-requests"),
            ("Go-http-client/1.1", "Go-http-client"),
            ("curl/8.5.0", "curl"),
        ] {
            let a = p.parse(ua);
            assert!(a.non_browser, "{ua}");
            assert_eq!(a.browser, name);
            assert_eq!(a.device, "bot");
        }
        let empty = p.parse("");
        assert!(empty.non_browser);
    }

    #[test]
    fn cache_returns_the_same_parse() {
        let p = AgentParser::new(8);
        let a = p.parse(CHROME_LINUX);
        let b = p.parse(CHROME_LINUX);
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn huge_user_agents_are_parsed_but_not_cached() {
        let p = AgentParser::new(32);
        let huge = format!("{}{}", CHROME_LINUX, " x".repeat(60_000));
        assert_eq!(p.parse(&huge).browser, p.parse(CHROME_LINUX).browser);
        assert_eq!(p.cache.len(), 1, "only the normal one is kept");
    }

    #[test]
    fn cache_is_bounded() {
        let p = AgentParser::new(16);
        for i in 0..1000 {
            p.parse(&format!("Agent/{i}"));
        }
        assert!(p.cache.len() <= 32, "cache grew to {}", p.cache.len());
    }

    /// Every non-empty string of up to `max_len` characters from `alphabet`.
    fn every_string(alphabet: &[char], max_len: usize) -> Vec<String> {
        let mut all = Vec::new();
        let mut level = vec![String::new()];
        for _ in 0..max_len {
            level = level
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(level.iter().cloned());
        }
        all
    }

    #[test]
    fn byte_wise_quote_trim_and_grease_test_agree_with_the_str_ones() {
        let mut cases: Vec<String> = [
            "",
            "\"",
            "\"\"",
            "156",
            "\"156\"",
            "\"\"156\"\"",
            "\"15\"6\"",
            "Not",
            "NotBrand",
            "Not?A_Brand",
            "Not)A;Brand",
            "Not_A Brand",
            "Not A brand",
            "Not-A.Brand",
            "NotA_Bran",
            "Nobrand",
            "Chromium",
            "Not;A=Brand",
            "Brand Not",
            "Not\"Brand",
        ]
        .map(String::from)
        .to_vec();
        // Every string of up to five characters over the letters that matter.
        cases.extend(every_string(
            &['"', 'N', 'o', 't', 'B', 'b', 'r', 'a', 'n', 'd', '1'],
            5,
        ));
        for s in &cases {
            assert_eq!(trim_quotes(s), s.trim_matches('"'), "{s:?}");
            let grease = s.starts_with("Not") && (s.contains("Brand") || s.contains("brand"));
            assert_eq!(is_grease(s), grease, "{s:?}");
        }
    }

    #[test]
    fn client_hint_brands_skip_grease() {
        let b: Vec<_> =
            parse_sec_ch_ua(r#""Chromium";v="156", "Not?A_Brand";v="24", "Google Chrome";v="156""#)
                .collect();
        assert_eq!(b.len(), 2);
        assert_eq!(
            BrandSummary::of(b.into_iter()).main,
            Some(Brand {
                name: "Google Chrome",
                major: "156"
            })
        );
        let only = parse_sec_ch_ua(r#""Not)A;Brand";v="8", "Chromium";v="156""#);
        assert_eq!(BrandSummary::of(only).main.unwrap().name, "Chromium");
        assert_eq!(parse_sec_ch_ua("").next(), None);
        assert_eq!(
            parse_beacon_brand("HeadlessChrome/156"),
            Some(Brand {
                name: "HeadlessChrome",
                major: "156"
            })
        );
        assert_eq!(
            parse_beacon_brand("Chromium/156.0.8078.79"),
            Some(Brand {
                name: "Chromium",
                major: "156"
            })
        );
        let spaced: Vec<_> =
            parse_sec_ch_ua(r#""Not_A Brand";v="8","Chromium";v="120" , "Opera";v="106""#)
                .collect();
        assert_eq!(
            spaced,
            vec![
                Brand {
                    name: "Chromium",
                    major: "120"
                },
                Brand {
                    name: "Opera",
                    major: "106"
                }
            ]
        );
        assert_eq!(parse_beacon_brand("Not_A Brand/8"), None);
    }

    #[test]
    fn the_header_wins_over_the_beacon_brands_unless_it_names_none() {
        use crate::beacon::ClientHints;
        let uach = ClientHints {
            brands: vec!["Not_A Brand/8".into(), "HeadlessChrome/156".into()],
            ..Default::default()
        };
        let header = r#""Chromium";v="150", "Google Chrome";v="150""#;
        fn from<'a>(h: Option<&'a str>, uach: &'a ClientHints<'a>) -> BrandSummary<'a> {
            BrandSummary::of(brands(h, Some(uach)))
        }
        let chosen = from(Some(header), &uach);
        assert_eq!(
            chosen.main.map(|b| (b.name, b.major)),
            Some(("Google Chrome", "150"))
        );
        assert!(!chosen.headless);
        for nothing in [None, Some(""), Some(r#""Not)A;Brand";v="8""#)] {
            let beacon = from(nothing, &uach);
            assert_eq!(
                beacon.main.map(|b| b.name),
                Some("HeadlessChrome"),
                "{nothing:?}"
            );
            assert!(beacon.headless, "{nothing:?}");
        }
        assert_eq!(
            BrandSummary::of(brands(None, None)),
            BrandSummary::default()
        );
    }

    /// The header's brands as first written, with `str` searches and splits: the byte-wise
    /// iterator must read every header the same way.
    fn brands_by_str_searches(header: &str) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        let mut rest = header;
        while let Some(open) = rest.find('"') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('"') else {
                break;
            };
            let name = &after[..close];
            let tail = &after[close + 1..];
            // The entry ends at a comma followed (after spaces) by a quote or by nothing.
            let end = tail
                .match_indices(',')
                .map(|(i, _)| i)
                .find(|&i| {
                    let next = tail[i + 1..].trim_start_matches(' ');
                    next.is_empty() || next.starts_with('"')
                })
                .unwrap_or(tail.len());
            let major = tail[..end]
                .split(';')
                .find_map(|p| p.trim().strip_prefix("v="))
                .map_or("", |v| v.trim_matches('"'));
            let grease =
                name.starts_with("Not") && (name.contains("Brand") || name.contains("brand"));
            if !name.is_empty() && !grease {
                out.push((name, major));
            }
            rest = &tail[end..];
        }
        out
    }

    #[test]
    fn byte_wise_header_parse_agrees_with_str_searches() {
        let mut headers: Vec<String> = [
            r#""Chromium";v="156", "Google Chrome";v="156", "Not?A_Brand";v="24""#,
            r#""Not)A;Brand";v="8", "Chromium";v="156""#,
            r#""Not_A Brand";v="8","Chromium";v="120" , "Opera";v="106""#,
            r#""Brave";v="131", "Chromium";v="131", "Not_A Brand";v="24""#,
            r#""Microsoft Edge";v="131";q=1, "Chromium" ; v="131""#,
            r#""HeadlessChrome";v="156""#,
            r#"  "A";x=1;v=""2"";y, , "B""#,
            "\"unterminated",
            "",
        ]
        .map(String::from)
        .to_vec();
        // Every string of up to six characters over the bytes the parser looks at.
        headers.extend(every_string(&['"', ',', ';', ' ', 'v', '=', '1', 'C'], 6));
        for h in &headers {
            let ours: Vec<_> = parse_sec_ch_ua(h).map(|b| (b.name, b.major)).collect();
            assert_eq!(ours, brands_by_str_searches(h), "{h:?}");
        }
    }
}
