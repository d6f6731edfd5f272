//! The beacon wire format (see `tracker-js/PROTOCOL.md`): parsing, validation and the documented limits.
//!
//! Parsing borrows from the request body wherever JSON escapes allow, and truncation cuts those
//! borrowed strings in place, so a valid beacon costs no string copies until the row is built.
//! Unknown fields are ignored, wrong types are errors, over-long strings are cut and counted.
//!
//! `parse` reads the JSON with `json::Reader` and `decode` (the shape below, read without serde's
//! generic layers: `benches/README.md` has why). The `Deserialize` derives on these types are the
//! reference it must agree with: `tests/json_differential.rs` and the fuzz targets compare the two.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

mod decode;
mod json;

/// The protocol version this collector speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Per-field limits, in bytes for strings (cut at a character boundary) and items for lists.
pub mod limits {
    pub const URL: usize = 2048;
    pub const TITLE: usize = 512;
    pub const USER_ID: usize = 256;
    pub const SESSION_ID: usize = 64;
    pub const CLIENT_ID: usize = 64;
    pub const EVENT_NAME: usize = 64;
    pub const PROPS: usize = 16;
    pub const PROP_KEY: usize = 64;
    pub const PROP_VALUE: usize = 256;
    pub const TIMEZONE: usize = 64;
    pub const LANGUAGES: usize = 32;
    pub const LANGUAGE: usize = 35;
    pub const PLATFORM: usize = 64;
    pub const ARCH: usize = 32;
    pub const WEBGL_TEXT: usize = 256;
    pub const HASH: usize = 64;
    pub const FONTS: usize = 64;
    pub const FONT: usize = 64;
    pub const PLUGINS: usize = 32;
    pub const PLUGIN: usize = 128;
    pub const SIGNALS: usize = 16;
    pub const SIGNAL: usize = 32;
    pub const BRANDS: usize = 8;
    pub const BRAND: usize = 64;
}

/// What happened in the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Pageview,
    Engagement,
    Outbound,
    Custom,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pageview => "pageview",
            Kind::Engagement => "engagement",
            Kind::Outbound => "outbound",
            Kind::Custom => "custom",
        }
    }
}

/// The visitor's consent as the site reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Consent {
    Granted,
    Denied,
    #[default]
    Unset,
}

impl Consent {
    pub fn as_str(self) -> &'static str {
        match self {
            Consent::Granted => "granted",
            Consent::Denied => "denied",
            Consent::Unset => "unset",
        }
    }
}

/// One beacon, as sent by the tracker.
#[derive(Debug, Deserialize, Default)]
pub struct Beacon<'a> {
    pub v: u32,
    #[serde(borrow)]
    pub site: Cow<'a, str>,
    #[serde(default)]
    pub kind: Kind,
    #[serde(borrow, default)]
    pub url: Cow<'a, str>,
    #[serde(borrow, default)]
    pub title: Cow<'a, str>,
    #[serde(borrow, default, rename = "ref")]
    pub referrer: Cow<'a, str>,
    #[serde(borrow, default)]
    pub prev: Cow<'a, str>,
    #[serde(borrow, default)]
    pub sid: Cow<'a, str>,
    #[serde(default)]
    pub seq: u32,
    /// Client clock, milliseconds since the epoch.
    #[serde(default)]
    pub ts: Option<i64>,
    #[serde(borrow, default)]
    pub uid: Cow<'a, str>,
    #[serde(borrow, default)]
    pub cid: Cow<'a, str>,
    #[serde(default)]
    pub engaged_ms: u64,
    #[serde(default)]
    pub wall_ms: u64,
    #[serde(borrow, default)]
    pub target: Cow<'a, str>,
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub props: Option<BTreeMap<Cow<'a, str>, PropValue<'a>>>,
    #[serde(default)]
    pub consent: Consent,
    #[serde(default)]
    pub gpc: bool,
    #[serde(default)]
    pub dnt: bool,
    #[serde(borrow, default)]
    pub device: Option<Box<Device<'a>>>,
}

/// A custom-event property value: scalars only.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PropValue<'a> {
    Bool(bool),
    Number(f64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

/// Device signals, sent with page views where consent and configuration allow.
#[derive(Debug, Deserialize, Default)]
pub struct Device<'a> {
    #[serde(borrow, default)]
    pub tz: Cow<'a, str>,
    /// Minutes east of UTC.
    #[serde(default)]
    pub tzo: i32,
    #[serde(borrow, default, deserialize_with = "strings")]
    pub langs: Vec<Cow<'a, str>>,
    #[serde(default)]
    pub screen: Screen,
    #[serde(default)]
    pub vp: Viewport,
    #[serde(default)]
    pub win: Window,
    #[serde(borrow, default)]
    pub platform: Cow<'a, str>,
    #[serde(borrow, default)]
    pub arch: Cow<'a, str>,
    #[serde(borrow, default)]
    pub bits: Cow<'a, str>,
    #[serde(borrow, default)]
    pub arch_src: Cow<'a, str>,
    #[serde(borrow, default)]
    pub uach: Option<ClientHints<'a>>,
    #[serde(default)]
    pub cores: u32,
    #[serde(default)]
    pub mem: f32,
    #[serde(default)]
    pub touch: u32,
    #[serde(borrow, default)]
    pub canvas: Option<Canvas<'a>>,
    #[serde(borrow, default)]
    pub webgl: Option<WebGl<'a>>,
    #[serde(borrow, default)]
    pub fonts: Option<Fonts<'a>>,
    #[serde(borrow, default, deserialize_with = "strings")]
    pub plugins: Vec<Cow<'a, str>>,
    #[serde(default)]
    pub media: Option<Media>,
    #[serde(default)]
    pub activex: bool,
    #[serde(borrow, default)]
    pub auto: Automation<'a>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq)]
pub struct Screen {
    #[serde(default)]
    pub w: u32,
    #[serde(default)]
    pub h: u32,
    #[serde(default)]
    pub aw: u32,
    #[serde(default)]
    pub ah: u32,
    #[serde(default)]
    pub cd: u32,
    #[serde(default)]
    pub dpr: f32,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq)]
pub struct Viewport {
    #[serde(default)]
    pub w: u32,
    #[serde(default)]
    pub h: u32,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq)]
pub struct Window {
    #[serde(default)]
    pub x: i32,
    #[serde(default)]
    pub y: i32,
    #[serde(default)]
    pub ow: u32,
    #[serde(default)]
    pub oh: u32,
}

/// User-Agent Client Hints as read by `navigator.userAgentData`.
#[derive(Debug, Deserialize, Default)]
pub struct ClientHints<'a> {
    #[serde(borrow, default, deserialize_with = "strings")]
    pub brands: Vec<Cow<'a, str>>,
    #[serde(default)]
    pub mobile: bool,
    #[serde(borrow, default)]
    pub platform: Cow<'a, str>,
    #[serde(borrow, default)]
    pub pv: Cow<'a, str>,
    #[serde(borrow, default)]
    pub model: Cow<'a, str>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Canvas<'a> {
    #[serde(borrow, default)]
    pub h: Cow<'a, str>,
    #[serde(default = "yes")]
    pub stable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, Default)]
pub struct WebGl<'a> {
    #[serde(borrow, default)]
    pub vendor: Cow<'a, str>,
    #[serde(borrow, default)]
    pub renderer: Cow<'a, str>,
    #[serde(borrow, default)]
    pub h: Cow<'a, str>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Fonts<'a> {
    #[serde(borrow, default)]
    pub h: Cow<'a, str>,
    #[serde(default)]
    pub n: u32,
    #[serde(borrow, default, deserialize_with = "strings")]
    pub list: Vec<Cow<'a, str>>,
}

/// Media device counts per kind; never labels or ids.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq)]
pub struct Media {
    #[serde(default)]
    pub ai: u32,
    #[serde(default)]
    pub vi: u32,
    #[serde(default)]
    pub ao: u32,
}

/// The browser's own automation findings.
#[derive(Debug, Deserialize, Default)]
pub struct Automation<'a> {
    #[serde(default)]
    pub webdriver: bool,
    #[serde(borrow, default, deserialize_with = "strings")]
    pub headless: Vec<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "strings")]
    pub globals: Vec<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "strings")]
    pub flags: Vec<Cow<'a, str>>,
}

/// A list of strings borrowed from the body. serde's own `Vec<Cow<str>>` copies every item into a
/// `String` (`#[serde(borrow)]` reaches only a `Cow` that is the field itself), and a desktop
/// browser's plugins, fonts and languages are two dozen strings.
fn strings<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Cow<'a, str>>, D::Error> {
    struct List<'a>(std::marker::PhantomData<&'a ()>);
    impl<'de: 'a, 'a> serde::de::Visitor<'de> for List<'a> {
        type Value = Vec<Cow<'a, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of strings")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(Text(s)) = seq.next_element()? {
                if out.is_empty() {
                    // One allocation for a typical list (growing from 4 would take two or three).
                    out.reserve(8);
                }
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(List(std::marker::PhantomData))
}

/// One string of a list: borrowed when it has no escapes, owned when it had to be unescaped.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Str<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(Str(std::marker::PhantomData))
    }
}

/// Why a beacon was refused. Every variant is a client error (HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BeaconError {
    #[error("body is empty")]
    Empty,
    #[error("body is not valid UTF-8")]
    Utf8,
    #[error("invalid beacon JSON: {0}")]
    Json(String),
    #[error("unsupported protocol version {0} (this collector speaks {PROTOCOL_VERSION})")]
    Version(u32),
    #[error("field `site` is empty")]
    NoSite,
    #[error("field `url` must be an absolute http(s) URL")]
    BadUrl,
    #[error("field `target` is required for outbound events and must be an absolute http(s) URL")]
    BadTarget,
    #[error("field `name` is required for custom events")]
    NoName,
    #[error("field `props` has more than {} properties", limits::PROPS)]
    TooManyProps,
}

/// A beacon that passed validation, with the names of the fields that had to be cut.
#[derive(Debug)]
pub struct Validated<'a> {
    pub beacon: Beacon<'a>,
    pub truncated: Vec<&'static str>,
}

/// Bytes to validated beacon. Never panics on any input.
pub fn parse(body: &[u8]) -> Result<Validated<'_>, BeaconError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BeaconError::Empty);
    }
    let stops = json::Stops::new(body);
    // Checked up front so invalid UTF-8 gets its own message rather than a JSON position.
    let mut reader = stops.reader().ok_or(BeaconError::Utf8)?;
    let beacon = decode::beacon(&mut reader)
        .and_then(|b| reader.end().map(|()| b))
        .map_err(|e| BeaconError::Json(e.to_string()))?;
    validate(beacon)
}

/// Checks required fields and cuts every string and list to its documented limit.
pub fn validate(mut b: Beacon<'_>) -> Result<Validated<'_>, BeaconError> {
    if b.v != PROTOCOL_VERSION {
        return Err(BeaconError::Version(b.v));
    }
    if b.site.is_empty() {
        return Err(BeaconError::NoSite);
    }
    if !is_http_url(&b.url) {
        return Err(BeaconError::BadUrl);
    }
    match b.kind {
        Kind::Outbound if !is_http_url(&b.target) => return Err(BeaconError::BadTarget),
        _ => {}
    }
    if b.props.as_ref().is_some_and(|p| p.len() > limits::PROPS) {
        return Err(BeaconError::TooManyProps);
    }

    let mut t = Vec::new();
    cut(&mut b.url, limits::URL, "url", &mut t);
    cut(&mut b.title, limits::TITLE, "title", &mut t);
    cut(&mut b.referrer, limits::URL, "ref", &mut t);
    cut(&mut b.prev, limits::URL, "prev", &mut t);
    cut(&mut b.target, limits::URL, "target", &mut t);
    cut(&mut b.sid, limits::SESSION_ID, "sid", &mut t);
    cut(&mut b.uid, limits::USER_ID, "uid", &mut t);
    cut(&mut b.cid, limits::CLIENT_ID, "cid", &mut t);
    cut(&mut b.name, limits::EVENT_NAME, "name", &mut t);
    // After the cut: a name whose first 64 bytes are blank would be stored blank.
    if b.kind == Kind::Custom && b.name.trim().is_empty() {
        return Err(BeaconError::NoName);
    }
    if let Some(props) = b.props.take() {
        let mut cut_any = false;
        let props = props
            .into_iter()
            .map(|(mut k, mut v)| {
                cut_any |= cut_str(&mut k, limits::PROP_KEY);
                if let PropValue::Text(s) = &mut v {
                    cut_any |= cut_str(s, limits::PROP_VALUE);
                }
                (k, v)
            })
            .collect();
        if cut_any {
            t.push("props");
        }
        b.props = Some(props);
    }
    if let Some(d) = b.device.as_mut() {
        cut(&mut d.tz, limits::TIMEZONE, "device.tz", &mut t);
        cut_list(
            &mut d.langs,
            limits::LANGUAGES,
            limits::LANGUAGE,
            "device.langs",
            &mut t,
        );
        cut(&mut d.platform, limits::PLATFORM, "device.platform", &mut t);
        cut(&mut d.arch, limits::ARCH, "device.arch", &mut t);
        cut(&mut d.bits, limits::ARCH, "device.bits", &mut t);
        cut(&mut d.arch_src, limits::ARCH, "device.arch_src", &mut t);
        if let Some(ch) = d.uach.as_mut() {
            cut_list(
                &mut ch.brands,
                limits::BRANDS,
                limits::BRAND,
                "device.uach.brands",
                &mut t,
            );
            cut(
                &mut ch.platform,
                limits::PLATFORM,
                "device.uach.platform",
                &mut t,
            );
            cut(&mut ch.pv, limits::ARCH, "device.uach.pv", &mut t);
            cut(&mut ch.model, limits::PLATFORM, "device.uach.model", &mut t);
        }
        if let Some(c) = d.canvas.as_mut() {
            cut(&mut c.h, limits::HASH, "device.canvas.h", &mut t);
        }
        if let Some(w) = d.webgl.as_mut() {
            cut(
                &mut w.vendor,
                limits::WEBGL_TEXT,
                "device.webgl.vendor",
                &mut t,
            );
            cut(
                &mut w.renderer,
                limits::WEBGL_TEXT,
                "device.webgl.renderer",
                &mut t,
            );
            cut(&mut w.h, limits::HASH, "device.webgl.h", &mut t);
        }
        if let Some(f) = d.fonts.as_mut() {
            cut(&mut f.h, limits::HASH, "device.fonts.h", &mut t);
            cut_list(
                &mut f.list,
                limits::FONTS,
                limits::FONT,
                "device.fonts.list",
                &mut t,
            );
        }
        cut_list(
            &mut d.plugins,
            limits::PLUGINS,
            limits::PLUGIN,
            "device.plugins",
            &mut t,
        );
        let a = &mut d.auto;
        cut_list(
            &mut a.headless,
            limits::SIGNALS,
            limits::SIGNAL,
            "device.auto.headless",
            &mut t,
        );
        cut_list(
            &mut a.globals,
            limits::SIGNALS,
            limits::SIGNAL,
            "device.auto.globals",
            &mut t,
        );
        cut_list(
            &mut a.flags,
            limits::SIGNALS,
            limits::SIGNAL,
            "device.auto.flags",
            &mut t,
        );
    }
    Ok(Validated {
        beacon: b,
        truncated: t,
    })
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/'))
}

/// Cuts `s` to at most `max` bytes at a character boundary; true if it was cut.
fn cut_str(s: &mut Cow<'_, str>, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    match s {
        Cow::Borrowed(b) => *b = &b[..end],
        Cow::Owned(o) => o.truncate(end),
    }
    true
}

fn cut(s: &mut Cow<'_, str>, max: usize, field: &'static str, t: &mut Vec<&'static str>) {
    if cut_str(s, max) {
        t.push(field);
    }
}

fn cut_list(
    list: &mut Vec<Cow<'_, str>>,
    max_items: usize,
    max_len: usize,
    field: &'static str,
    t: &mut Vec<&'static str>,
) {
    let mut cut_any = list.len() > max_items;
    list.truncate(max_items);
    for item in list.iter_mut() {
        cut_any |= cut_str(item, max_len);
    }
    if cut_any {
        t.push(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"v":1,"site":"demo","kind":"pageview","url":"https://a.example/x"}"#;

    #[test]
    fn a_minimal_pageview_is_valid() {
        let v = parse(MINIMAL.as_bytes()).unwrap();
        assert_eq!(v.beacon.kind, Kind::Pageview);
        assert_eq!(v.beacon.site, "demo");
        assert!(v.truncated.is_empty());
    }

    #[test]
    fn strings_borrow_from_the_body() {
        let v = parse(MINIMAL.as_bytes()).unwrap();
        assert!(matches!(v.beacon.url, Cow::Borrowed(_)));
    }

    #[test]
    fn list_items_borrow_from_the_body_unless_escaped() {
        let body = r#"{"v":1,"site":"demo","url":"https://a.example/","device":{"plugins":["PDF Viewer","Caf\u00e9"],"langs":["kk-KZ"],"fonts":{"list":["Arial"]},"auto":{"flags":["x"]},"uach":{"brands":["Chromium/156"]}}}"#;
        let v = parse(body.as_bytes()).unwrap();
        let d = v.beacon.device.unwrap();
        assert!(matches!(d.plugins[0], Cow::Borrowed("PDF Viewer")));
        assert!(matches!(&d.plugins[1], Cow::Owned(s) if s == "Café"));
        for list in [
            &d.langs,
            &d.fonts.unwrap().list,
            &d.auto.flags,
            &d.uach.unwrap().brands,
        ] {
            assert!(matches!(list[0], Cow::Borrowed(_)), "{list:?}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body = r#"{"v":1,"site":"demo","url":"https://a.example/","future":{"x":[1,2]},"device":{"newthing":1}}"#;
        assert!(parse(body.as_bytes()).is_ok());
    }

    #[test]
    fn wrong_types_are_errors() {
        for body in [
            r#"{"v":"1","site":"demo","url":"https://a.example/"}"#,
            r#"{"v":1,"site":5,"url":"https://a.example/"}"#,
            r#"{"v":1,"site":"demo","url":"https://a.example/","seq":-1}"#,
            r#"{"v":1,"site":"demo","url":"https://a.example/","device":{"screen":{"w":"big"}}}"#,
            r#"{"v":1,"site":"demo","url":"https://a.example/","device":{"langs":"en"}}"#,
            r#"{"v":1,"site":"demo","url":"https://a.example/","kind":"teleport"}"#,
            r#"{"v":1,"site":"demo","url":"https://a.example/","props":{"a":{"nested":1}}}"#,
            r#"[1,2,3]"#,
            r#""just a string""#,
        ] {
            assert!(
                matches!(parse(body.as_bytes()), Err(BeaconError::Json(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn required_fields_are_checked() {
        let cases: &[(&str, BeaconError)] = &[
            ("", BeaconError::Empty),
            ("  \n", BeaconError::Empty),
            (
                r#"{"v":2,"site":"d","url":"https://a/"}"#,
                BeaconError::Version(2),
            ),
            (
                r#"{"v":1,"site":"","url":"https://a/"}"#,
                BeaconError::NoSite,
            ),
            (
                r#"{"v":1,"site":"d","url":"javascript:alert(1)"}"#,
                BeaconError::BadUrl,
            ),
            (
                r#"{"v":1,"site":"d","url":"https:///nohost"}"#,
                BeaconError::BadUrl,
            ),
            (r#"{"v":1,"site":"d"}"#, BeaconError::BadUrl),
            (
                r#"{"v":1,"site":"d","url":"https://a/","kind":"outbound"}"#,
                BeaconError::BadTarget,
            ),
            (
                r#"{"v":1,"site":"d","url":"https://a/","kind":"custom","name":"  "}"#,
                BeaconError::NoName,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body.as_bytes()).unwrap_err(), *want, "{body}");
        }
        // Found by the fuzzer's oracle: blank within the stored length is blank.
        let padded = format!(
            r#"{{"v":1,"site":"d","url":"https://a/","kind":"custom","name":"{}x"}}"#,
            " ".repeat(limits::EVENT_NAME)
        );
        assert_eq!(parse(padded.as_bytes()).unwrap_err(), BeaconError::NoName);
    }

    #[test]
    fn invalid_utf8_is_its_own_error() {
        let mut body = MINIMAL.as_bytes().to_vec();
        body[20] = 0xff;
        assert_eq!(parse(&body).unwrap_err(), BeaconError::Utf8);
    }

    #[test]
    fn long_strings_are_cut_at_char_boundaries_and_counted() {
        let title = "ж".repeat(400); // 800 bytes
        let langs: Vec<String> = (0..40).map(|i| format!("l{i}")).collect();
        let body = serde_json::json!({
            "v": 1, "site": "d", "url": format!("https://a.example/{}", "p".repeat(3000)),
            "title": title, "device": {"langs": langs, "tz": "x".repeat(100)}
        })
        .to_string();
        let v = parse(body.as_bytes()).unwrap();
        assert_eq!(v.beacon.url.len(), limits::URL);
        assert_eq!(v.beacon.title.len(), limits::TITLE);
        assert!(v.beacon.title.chars().all(|c| c == 'ж'));
        let d = v.beacon.device.as_ref().unwrap();
        assert_eq!(d.langs.len(), limits::LANGUAGES);
        assert_eq!(d.tz.len(), limits::TIMEZONE);
        assert_eq!(
            v.truncated,
            vec!["url", "title", "device.tz", "device.langs"]
        );
    }

    #[test]
    fn escaped_strings_are_cut_too() {
        let body = format!(
            r#"{{"v":1,"site":"d","url":"https://a/","uid":"{}"}}"#,
            "\\u0041".repeat(300)
        );
        let v = parse(body.as_bytes()).unwrap();
        assert_eq!(v.beacon.uid.len(), limits::USER_ID);
        assert_eq!(v.truncated, vec!["uid"]);
    }

    #[test]
    fn props_are_bounded() {
        let many: serde_json::Map<String, serde_json::Value> =
            (0..17).map(|i| (format!("k{i}"), 1.into())).collect();
        let body = serde_json::json!({"v":1,"site":"d","url":"https://a/","kind":"custom","name":"n","props":many});
        assert_eq!(
            parse(body.to_string().as_bytes()).unwrap_err(),
            BeaconError::TooManyProps
        );
        let body = serde_json::json!({"v":1,"site":"d","url":"https://a/","kind":"custom","name":"n",
            "props":{"plan":"x".repeat(300),"n":2,"ok":true}});
        let body = body.to_string();
        let v = parse(body.as_bytes()).unwrap();
        let props = v.beacon.props.as_ref().unwrap();
        assert_eq!(props.len(), 3);
        assert_eq!(props.get("n"), Some(&PropValue::Number(2.0)));
        assert_eq!(v.truncated, vec!["props"]);
    }

    #[test]
    fn deep_nesting_never_overflows_the_stack() {
        // In an unknown field the value is skipped without recursion; in a known one serde_json's
        // recursion limit turns it into an error. Neither may crash.
        let open = "[".repeat(100_000);
        let close = "]".repeat(100_000);
        let unknown = format!(r#"{{"v":1,"site":"d","url":"https://a/","x":{open}{close}}}"#);
        assert!(matches!(
            parse(unknown.as_bytes()),
            Ok(_) | Err(BeaconError::Json(_))
        ));
        let nested_objects = format!(
            r#"{{"v":1,"site":"d","url":"https://a/","device":{}1{}}}"#,
            r#"{"a":"#.repeat(50_000),
            "}".repeat(50_000)
        );
        assert!(matches!(
            parse(nested_objects.as_bytes()),
            Ok(_) | Err(BeaconError::Json(_))
        ));
        let known = format!(
            r#"{{"v":1,"site":"d","url":"https://a/","device":{{"langs":{open}{close}}}}}"#
        );
        assert!(matches!(parse(known.as_bytes()), Err(BeaconError::Json(_))));
    }

    #[test]
    fn truncated_json_at_every_length_never_panics() {
        let full = r#"{"v":1,"site":"demo","kind":"outbound","url":"https://a.example/x","target":"https://b.example/","device":{"screen":{"w":1,"h":2},"langs":["en"],"auto":{"webdriver":true}}}"#;
        for n in 0..full.len() {
            assert!(parse(&full.as_bytes()[..n]).is_err(), "prefix {n} accepted");
        }
        assert!(parse(full.as_bytes()).is_ok());
    }
}
