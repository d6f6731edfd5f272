//! Minimisation and consent: which field groups a site collects, decided per event on the server.
//!
//! Every `events` column belongs to exactly one [`Group`]. A site configures the groups it
//! collects with consent (or when consent is not needed) and the smaller set it may collect
//! before consent; Global Privacy Control and Do Not Track count as a refusal when honoured.
//! Columns outside the decided set are cleared before the row reaches the spool, so they are
//! never stored anywhere. The tracker does the same on its side, but the server does not rely on it.

pub mod blocklist;
pub mod ids;
pub mod scrub;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::beacon::Consent;
use crate::row::EventRow;

/// A named set of `events` columns that is collected or not as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// Pages, navigation, referrers, outbound links, engagement, custom events, the session and
    /// the cookieless daily visitor id (policy section 2, items 2-7). Always part of a stored event.
    Pages,
    /// Country and region from GeoIP (items 8, 9).
    Location,
    /// City from GeoIP: finer than the policy's "region", so off unless configured.
    City,
    /// Autonomous system and provider from the ASN/ISP database (item 11).
    Provider,
    /// Browser, operating system and device class from the user agent (items 12, 21).
    Software,
    /// Time zone and languages (items 10, 19).
    Locale,
    /// Screen, viewport and the page's placement on the screen (item 22).
    Screen,
    /// Platform, CPU architecture and bitness, cores, memory, touch points (item 20).
    Hardware,
    /// Canvas, WebGL, fonts, plugins, media devices, ActiveX and the fingerprint id (items 13-18).
    Fingerprint,
    /// Automation signals from the browser and the server (item 23).
    Automation,
    /// The site-assigned user id and the first-party client id, both as keyed hashes (item 1).
    Identity,
}

impl Group {
    pub const ALL: [Group; 11] = [
        Group::Pages,
        Group::Location,
        Group::City,
        Group::Provider,
        Group::Software,
        Group::Locale,
        Group::Screen,
        Group::Hardware,
        Group::Fingerprint,
        Group::Automation,
        Group::Identity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Group::Pages => "pages",
            Group::Location => "location",
            Group::City => "city",
            Group::Provider => "provider",
            Group::Software => "software",
            Group::Locale => "locale",
            Group::Screen => "screen",
            Group::Hardware => "hardware",
            Group::Fingerprint => "fingerprint",
            Group::Automation => "automation",
            Group::Identity => "identity",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// The `events` columns of this group.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Group::Pages => &[
                "event_id",
                "site",
                "kind",
                "received_at",
                "client_ts",
                "session_id",
                "seq",
                "url",
                "host",
                "path",
                "title",
                "referrer",
                "referrer_host",
                "prev_url",
                "prev_path",
                "utm_source",
                "utm_medium",
                "utm_campaign",
                "utm_term",
                "utm_content",
                "engaged_ms",
                "wall_ms",
                "target_url",
                "target_host",
                "event_name",
                "event_props",
                "visitor_id",
                "consent",
                "gpc",
                "dnt",
                "truncated_fields",
            ],
            Group::Location => &["country", "region_code", "region_name"],
            Group::City => &["city"],
            Group::Provider => &["asn", "as_org", "isp"],
            Group::Software => &[
                "browser",
                "browser_version",
                "os",
                "os_version",
                "device",
                "vendor",
            ],
            Group::Locale => &["timezone", "tz_offset", "languages"],
            Group::Screen => &[
                "screen_w",
                "screen_h",
                "avail_w",
                "avail_h",
                "color_depth",
                "pixel_ratio",
                "viewport_w",
                "viewport_h",
                "window_x",
                "window_y",
                "outer_w",
                "outer_h",
            ],
            Group::Hardware => &[
                "platform",
                "arch",
                "bitness",
                "arch_source",
                "cores",
                "memory_gb",
                "touch_points",
            ],
            Group::Fingerprint => &[
                "fingerprint_id",
                "fingerprint_version",
                "canvas_hash",
                "canvas_stable",
                "webgl_vendor",
                "webgl_renderer",
                "webgl_hash",
                "fonts_hash",
                "fonts_count",
                "fonts",
                "plugins",
                "media_known",
                "media_audioinput",
                "media_videoinput",
                "media_audiooutput",
                "activex",
            ],
            Group::Automation => &[
                "webdriver",
                "automation_headless",
                "automation_globals",
                "automation_flags",
                "server_flags",
                "automated",
            ],
            Group::Identity => &["user_id", "client_id"],
        }
    }

    /// Where the group's values come from, for subject exports.
    pub fn source(self) -> &'static str {
        match self {
            Group::Pages => "sent by the browser beacon (page, referrer, navigation, engagement); event id, receive time and the daily cookieless visitor id (keyed hash of daily salt, site, IP address and user agent; the address is not stored) derived at ingest",
            Group::Location | Group::City => "derived at ingest from the connection's IP address with the configured GeoIP City/Country database; the address is not stored",
            Group::Provider => "derived at ingest from the connection's IP address with the configured ASN/ISP database; the address is not stored",
            Group::Software => "derived at ingest from the User-Agent header and client hints (woothee)",
            Group::Locale | Group::Screen | Group::Hardware => "sent by the browser beacon",
            Group::Fingerprint => "sent by the browser beacon (hashes of canvas, WebGL, fonts); the fingerprint id is a keyed hash of these signals computed at ingest",
            Group::Automation => "sent by the browser beacon (webdriver, headless and automation globals) and derived at ingest from request headers",
            Group::Identity => "user id assigned by the site and first-party client id, sent by the beacon and stored only as keyed hashes",
        }
    }

    /// The numbered items of the policy's section 2 this group carries.
    pub fn policy_items(self) -> &'static [u8] {
        match self {
            Group::Pages => &[2, 3, 4, 5, 6, 7],
            Group::Location => &[8, 9],
            Group::City => &[9],
            Group::Provider => &[11],
            Group::Software => &[12, 21],
            Group::Locale => &[10, 19],
            Group::Screen => &[22],
            Group::Hardware => &[20],
            Group::Fingerprint => &[13, 14, 15, 16, 17, 18],
            Group::Automation => &[23],
            Group::Identity => &[1],
        }
    }
}

/// A set of groups. A non-empty set always contains [`Group::Pages`]: a stored event is a page
/// event first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Groups(u16);

impl Groups {
    pub const NONE: Groups = Groups(0);

    pub fn all() -> Groups {
        Group::ALL.iter().fold(Groups::NONE, |g, x| g.with(*x))
    }

    /// Everything the policy calls statistics, without fingerprinting, identity or city.
    pub fn statistics() -> Groups {
        [
            Group::Pages,
            Group::Location,
            Group::Provider,
            Group::Software,
            Group::Locale,
            Group::Screen,
            Group::Hardware,
            Group::Automation,
        ]
        .iter()
        .fold(Groups::NONE, |g, x| g.with(*x))
    }

    pub fn with(self, g: Group) -> Groups {
        Groups(self.0 | g.bit())
    }

    pub fn contains(self, g: Group) -> bool {
        self.0 & g.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersect(self, other: Groups) -> Groups {
        Groups(self.0 & other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Group> {
        Group::ALL.into_iter().filter(move |g| self.contains(*g))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Group::name).collect()
    }

    /// Parses group names and the presets `statistics` and `all`. An empty list is the empty set;
    /// any other set gets `pages` added.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Groups, String> {
        let mut set = Groups::NONE;
        for name in names {
            let name = name.as_ref().trim();
            set = match name {
                "statistics" => Groups(set.0 | Groups::statistics().0),
                "all" => Groups::all(),
                _ => match Group::ALL.iter().find(|g| g.name() == name) {
                    Some(g) => set.with(*g),
                    None => {
                        return Err(format!(
                            "unknown field group {name:?} (known: statistics, all, {})",
                            Group::ALL.map(Group::name).join(", ")
                        ))
                    }
                },
            };
        }
        Ok(if set.is_empty() {
            set
        } else {
            set.with(Group::Pages)
        })
    }
}

/// Whether a site needs the visitor's consent before collecting its full set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    /// Collect the full set unless the visitor refused (`consent: denied`).
    #[default]
    Optional,
    /// Collect only the before-consent set until the visitor granted consent.
    Required,
}

/// How a browser privacy signal (GPC, DNT) is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SignalMode {
    /// The signal counts as a refusal of consent: only the before-consent set is collected.
    #[default]
    Honor,
    /// The signal is recorded (`gpc`/`dnt` columns) but changes nothing.
    Ignore,
}

impl std::str::FromStr for ConsentMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "optional" => Ok(ConsentMode::Optional),
            "required" => Ok(ConsentMode::Required),
            _ => Err(format!("{s:?} is not optional or required")),
        }
    }
}

impl std::str::FromStr for SignalMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "honor" => Ok(SignalMode::Honor),
            "ignore" => Ok(SignalMode::Ignore),
            _ => Err(format!("{s:?} is not honor or ignore")),
        }
    }
}

/// One site's decided policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SitePolicy {
    pub collect: Groups,
    pub before_consent: Groups,
    pub consent: ConsentMode,
    pub gpc: SignalMode,
    pub dnt: SignalMode,
}

impl Default for SitePolicy {
    fn default() -> Self {
        Self {
            collect: Groups::all().intersect(Groups::parse(&DEFAULT_COLLECT).unwrap_or_default()),
            before_consent: Groups::statistics(),
            consent: ConsentMode::Optional,
            gpc: SignalMode::Honor,
            dnt: SignalMode::Honor,
        }
    }
}

/// The default full set: everything in section 2 except the city, which the policy does not list.
pub const DEFAULT_COLLECT: [&str; 3] = ["statistics", "fingerprint", "identity"];
/// The default before-consent set.
pub const DEFAULT_BEFORE_CONSENT: [&str; 1] = ["statistics"];

/// What the browser and the request say about the visitor's choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    pub consent: Consent,
    /// `Sec-GPC: 1` or the beacon's `gpc` flag.
    pub gpc: bool,
    /// `DNT: 1` or the beacon's `dnt` flag.
    pub dnt: bool,
}

impl SitePolicy {
    /// The groups to keep for an event with these signals; empty means the event is dropped.
    pub fn groups(&self, s: Signals) -> Groups {
        let refused = (self.gpc == SignalMode::Honor && s.gpc)
            || (self.dnt == SignalMode::Honor && s.dnt)
            || s.consent == Consent::Denied
            || (s.consent == Consent::Unset && self.consent == ConsentMode::Required);
        if refused {
            self.before_consent.intersect(self.collect)
        } else {
            self.collect
        }
    }
}

/// The policies of every site, with the default for sites without their own.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    default: SitePolicy,
    sites: BTreeMap<String, SitePolicy>,
}

impl Policies {
    pub fn new(default: SitePolicy, sites: BTreeMap<String, SitePolicy>) -> Self {
        Self { default, sites }
    }

    pub fn for_site(&self, site: &str) -> &SitePolicy {
        self.sites.get(site).unwrap_or(&self.default)
    }
}

/// Clears every column of `row` outside `keep` (the row then holds only what may be stored).
pub fn minimise(row: &mut EventRow, keep: Groups) {
    for g in Group::ALL {
        if keep.contains(g) {
            continue;
        }
        match g {
            // Never dropped from a stored row (a set without pages drops the event instead).
            Group::Pages => {}
            Group::Location => {
                row.country.clear();
                row.region_code.clear();
                row.region_name.clear();
            }
            Group::City => row.city.clear(),
            Group::Provider => {
                row.asn = 0;
                row.as_org.clear();
                row.isp.clear();
            }
            Group::Software => {
                row.browser.clear();
                row.browser_version.clear();
                row.os.clear();
                row.os_version.clear();
                row.device.clear();
                row.vendor.clear();
            }
            Group::Locale => {
                row.timezone.clear();
                row.tz_offset = 0;
                row.languages.clear();
            }
            Group::Screen => {
                row.screen_w = 0;
                row.screen_h = 0;
                row.avail_w = 0;
                row.avail_h = 0;
                row.color_depth = 0;
                row.pixel_ratio = 0.0;
                row.viewport_w = 0;
                row.viewport_h = 0;
                row.window_x = 0;
                row.window_y = 0;
                row.outer_w = 0;
                row.outer_h = 0;
            }
            Group::Hardware => {
                row.platform.clear();
                row.arch.clear();
                row.bitness.clear();
                row.arch_source.clear();
                row.cores = 0;
                row.memory_gb = 0.0;
                row.touch_points = 0;
            }
            Group::Fingerprint => {
                row.fingerprint_id = [0; 16];
                row.fingerprint_version = 0;
                row.canvas_hash.clear();
                row.canvas_stable = 0;
                row.webgl_vendor.clear();
                row.webgl_renderer.clear();
                row.webgl_hash.clear();
                row.fonts_hash.clear();
                row.fonts_count = 0;
                row.fonts.clear();
                row.plugins.clear();
                row.media_known = 0;
                row.media_audioinput = 0;
                row.media_videoinput = 0;
                row.media_audiooutput = 0;
                row.activex = 0;
            }
            Group::Automation => {
                row.webdriver = 0;
                row.automation_headless.clear();
                row.automation_globals.clear();
                row.automation_flags.clear();
                row.server_flags.clear();
                row.automated = 0;
            }
            Group::Identity => {
                row.user_id.clear();
                row.client_id.clear();
            }
        }
    }
}

/// The group a column belongs to.
pub fn group_of(column: &str) -> Option<Group> {
    Group::ALL
        .into_iter()
        .find(|g| g.columns().contains(&column))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row with every column set to something other than its default.
    fn full_row() -> EventRow {
        let s = |v: &str| compact_str::CompactString::from(v);
        EventRow {
            event_id: uuid::Uuid::from_u128(1),
            site: s("demo"),
            kind: s("pageview"),
            received_at: 1,
            client_ts: 1,
            session_id: s("sid"),
            seq: 1,
            url: s("https://a.example/x"),
            host: s("a.example"),
            path: s("/x"),
            title: s("t"),
            referrer: s("https://r.example/"),
            referrer_host: s("r.example"),
            prev_url: s("https://a.example/"),
            prev_path: s("/"),
            utm_source: s("s"),
            utm_medium: s("m"),
            utm_campaign: s("c"),
            utm_term: s("t"),
            utm_content: s("c"),
            engaged_ms: 1,
            wall_ms: 1,
            target_url: s("https://o.example/"),
            target_host: s("o.example"),
            event_name: s("e"),
            event_props: s("{}"),
            user_id: s("u"),
            client_id: s("c"),
            visitor_id: [1; 16],
            fingerprint_id: [2; 16],
            fingerprint_version: 1,
            consent: s("granted"),
            gpc: 1,
            dnt: 1,
            country: s("KZ"),
            region_code: s("ALA"),
            region_name: s("Almaty"),
            city: s("Almaty"),
            asn: 1,
            as_org: s("o"),
            isp: s("i"),
            browser: s("Chrome"),
            browser_version: s("1"),
            os: s("Linux"),
            os_version: s("1"),
            device: s("pc"),
            vendor: s("Google"),
            timezone: s("Asia/Almaty"),
            tz_offset: 1,
            languages: vec![s("kk")],
            screen_w: 1,
            screen_h: 1,
            avail_w: 1,
            avail_h: 1,
            color_depth: 1,
            pixel_ratio: 1.0,
            viewport_w: 1,
            viewport_h: 1,
            window_x: 1,
            window_y: 1,
            outer_w: 1,
            outer_h: 1,
            platform: s("Linux"),
            arch: s("x86"),
            bitness: s("64"),
            arch_source: s("uach"),
            cores: 1,
            memory_gb: 1.0,
            touch_points: 1,
            canvas_hash: s("c"),
            canvas_stable: 1,
            webgl_vendor: s("v"),
            webgl_renderer: s("r"),
            webgl_hash: s("h"),
            fonts_hash: s("h"),
            fonts_count: 1,
            fonts: vec![s("Arial")],
            plugins: vec![s("pdf")],
            media_known: 1,
            media_audioinput: 1,
            media_videoinput: 1,
            media_audiooutput: 1,
            activex: 1,
            webdriver: 1,
            automation_headless: vec![s("h")],
            automation_globals: vec![s("g")],
            automation_flags: vec![s("f")],
            server_flags: vec![s("s")],
            automated: 1,
            truncated_fields: vec![s("title")],
        }
    }

    fn columns(row: &EventRow) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(row).unwrap() {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_column_is_in_exactly_one_group() {
        let all = columns(&full_row());
        for name in all.keys() {
            let owners: Vec<_> = Group::ALL
                .iter()
                .filter(|g| g.columns().contains(&name.as_str()))
                .collect();
            assert_eq!(owners.len(), 1, "column {name} is in {owners:?}");
        }
        let listed: usize = Group::ALL.iter().map(|g| g.columns().len()).sum();
        assert_eq!(
            listed,
            all.len(),
            "a group names a column the row does not have"
        );
    }

    #[test]
    fn minimise_clears_exactly_the_groups_left_out() {
        let full = columns(&full_row());
        for left_out in Group::ALL.into_iter().filter(|g| *g != Group::Pages) {
            let keep = Group::ALL
                .into_iter()
                .filter(|g| *g != left_out)
                .fold(Groups::NONE, Groups::with);
            let mut row = full_row();
            minimise(&mut row, keep);
            let after = columns(&row);
            let default = columns(&EventRow::default());
            for (name, value) in &after {
                if left_out.columns().contains(&name.as_str()) {
                    assert_eq!(
                        value, &default[name],
                        "{name} kept though {left_out:?} is off"
                    );
                } else {
                    assert_eq!(
                        value, &full[name],
                        "{name} changed though only {left_out:?} is off"
                    );
                }
            }
        }
    }

    #[test]
    fn group_lists_parse_with_presets_and_always_include_pages() {
        let g = Groups::parse(&["statistics", "fingerprint"]).unwrap();
        assert!(g.contains(Group::Fingerprint) && g.contains(Group::Screen));
        assert!(!g.contains(Group::Identity) && !g.contains(Group::City));
        assert_eq!(
            Groups::parse(&["location"]).unwrap().names(),
            ["pages", "location"]
        );
        assert!(Groups::parse::<&str>(&[]).unwrap().is_empty());
        assert_eq!(Groups::parse(&["all"]).unwrap(), Groups::all());
        let e = Groups::parse(&["ports"]).unwrap_err();
        assert!(e.contains("unknown field group \"ports\""), "{e}");
    }

    #[test]
    fn consent_gpc_and_dnt_decide_the_set() {
        let p = SitePolicy::default();
        let sig = |consent, gpc, dnt| Signals { consent, gpc, dnt };
        assert_eq!(p.groups(sig(Consent::Unset, false, false)), p.collect);
        assert_eq!(p.groups(sig(Consent::Granted, false, false)), p.collect);
        assert_eq!(
            p.groups(sig(Consent::Denied, false, false)),
            Groups::statistics()
        );
        assert_eq!(
            p.groups(sig(Consent::Granted, true, false)),
            Groups::statistics()
        );
        assert_eq!(
            p.groups(sig(Consent::Unset, false, true)),
            Groups::statistics()
        );
        let ignoring = SitePolicy {
            gpc: SignalMode::Ignore,
            dnt: SignalMode::Ignore,
            ..p
        };
        assert_eq!(ignoring.groups(sig(Consent::Unset, true, true)), p.collect);
        let required = SitePolicy {
            consent: ConsentMode::Required,
            before_consent: Groups::NONE,
            ..p
        };
        assert!(required
            .groups(sig(Consent::Unset, false, false))
            .is_empty());
        assert_eq!(
            required.groups(sig(Consent::Granted, false, false)),
            p.collect
        );
        // The before-consent set never adds what the full set leaves out.
        let narrow = SitePolicy {
            collect: Groups::parse(&["location"]).unwrap(),
            ..p
        };
        assert_eq!(
            narrow.groups(sig(Consent::Denied, false, false)).names(),
            ["pages", "location"]
        );
    }

    #[test]
    fn defaults_leave_out_city_only() {
        let p = SitePolicy::default();
        for g in Group::ALL {
            assert_eq!(p.collect.contains(g), g != Group::City, "{g:?}");
        }
    }
}
