//! Enrichment: validated beacon + request facts -> a finished `events` row, as an ordered list of named, timed steps.
//!
//! Order: client address (needed by the rate limiter before anything costly), then the geo and
//! provider lookup (cached per address), user agent (cached), fingerprint and visitor hashes, consistency flags,
//! and finally the row. The client address lives only on the stack of this call.

pub mod agent;
pub mod client_ip;
pub mod consistency;
pub mod fingerprint;
pub mod geo;
pub mod urls;
pub mod visitor;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;

use crate::beacon::{Consent, PropValue, Validated};
use crate::clock::SharedClock;
use crate::keys::Salts;
use crate::metrics::{Metrics, StepName};
use crate::privacy::ids::{IdHasher, Purpose};
use crate::privacy::scrub::Scrubber;
use crate::privacy::{Group, Groups};
use crate::row::EventRow;
use compact_str::CompactString;

use agent::AgentParser;
use consistency::HintHeaders;
use fingerprint::{FingerprintHasher, FINGERPRINT_VERSION};
use geo::{Geo, MmdbFile};
use visitor::VisitorHasher;

/// The named enrichment steps, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    ClientIp,
    Geo,
    Agent,
    Fingerprint,
    Visitor,
    Consistency,
    Row,
}

impl Step {
    pub const COUNT: usize = 7;
    pub const ALL: [Step; Self::COUNT] = [
        Step::ClientIp,
        Step::Geo,
        Step::Agent,
        Step::Fingerprint,
        Step::Visitor,
        Step::Consistency,
        Step::Row,
    ];

    pub fn label(self) -> StepName {
        match self {
            Step::ClientIp => StepName::client_ip,
            Step::Geo => StepName::geo,
            Step::Agent => StepName::agent,
            Step::Fingerprint => StepName::fingerprint,
            Step::Visitor => StepName::visitor,
            Step::Consistency => StepName::consistency,
            Step::Row => StepName::row,
        }
    }
}

/// One event in this many has its enrichment steps timed.
pub const TIMING_SAMPLE_EVERY: u32 = 16;

thread_local! {
    /// Requests seen on this thread.
    static SAMPLE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// Whether the request being enriched on this thread is timed (all its steps, or none).
    static TIMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Why an event was not stored although the request was fine. The client still gets 202.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A browser prefetch or prerender, not a visit (`Sec-Purpose`/`Purpose: prefetch`).
    Prefetch,
    /// The site collects nothing without consent, and there was none (or GPC/DNT refused it).
    NoConsent,
    /// One of the event's identifiers is on the subject block list.
    Blocked,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::Prefetch,
        DropReason::NoConsent,
        DropReason::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Prefetch => "prefetch",
            DropReason::NoConsent => "no_consent",
            DropReason::Blocked => "blocked",
        }
    }
}

/// What the HTTP layer knows about the request, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta<'a> {
    pub peer: IpAddr,
    pub forwarded_for: Option<&'a str>,
    pub real_ip: Option<&'a str>,
    pub user_agent: &'a str,
    pub hints: HintHeaders<'a>,
}

/// Everything enrichment needs, built once at start.
pub struct Enricher {
    trusted_proxies: Vec<IpNet>,
    ids: IdHasher,
    scrub: Scrubber,
    /// Descriptions of the GeoIP databases, for subject exports.
    geo_databases: (String, String),
    geo: Geo,
    agents: AgentParser,
    fingerprints: FingerprintHasher,
    visitors: VisitorHasher,
    clock: SharedClock,
    metrics: Metrics,
}

/// What enrichment found out about one event, before it becomes a row.
#[derive(Debug, Clone)]
pub struct Enriched {
    pub place: Arc<geo::Place>,
    pub agent: Arc<agent::Agent>,
    pub fingerprint: Option<[u8; 16]>,
    pub visitor_id: [u8; 16],
    pub server_flags: Vec<&'static str>,
}

/// The parts an [`Enricher`] is made of.
pub struct EnricherParts {
    pub trusted_proxies: Vec<IpNet>,
    pub city: MmdbFile,
    pub provider: MmdbFile,
    pub ua_cache_size: usize,
    pub secret: Vec<u8>,
    pub salts: Arc<Salts>,
    /// URL parameter names removed before storage (see `privacy::scrub`).
    pub scrub_params: Vec<String>,
    pub clock: SharedClock,
    pub metrics: Metrics,
}

impl Enricher {
    pub fn new(p: EnricherParts) -> Self {
        let geo_databases = (p.city.describe(), p.provider.describe());
        Self {
            trusted_proxies: p.trusted_proxies,
            ids: IdHasher::new(&p.secret),
            scrub: Scrubber::new(&p.scrub_params),
            geo_databases,
            geo: Geo::new(p.city, p.provider, 65_536),
            agents: AgentParser::new(p.ua_cache_size),
            fingerprints: FingerprintHasher::new(&p.secret),
            visitors: VisitorHasher::new(p.salts, p.clock.clone(), 100_000),
            clock: p.clock,
            metrics: p.metrics,
        }
    }

    /// Runs one step, timing it for the step-latency metric on every 16th event of a thread:
    /// reading the clock twice per step for every event would cost more than some steps do.
    #[inline]
    fn timed<T>(&self, step: Step, f: impl FnOnce() -> T) -> T {
        if step == Step::ClientIp {
            // The first step of every request decides whether this event is timed.
            SAMPLE.with(|c| {
                let n = c.get().wrapping_add(1);
                c.set(n);
                TIMED.with(|t| t.set(n % TIMING_SAMPLE_EVERY == 1));
            });
        }
        if !TIMED.with(|t| t.get()) {
            return f();
        }
        let start = Instant::now();
        let out = f();
        self.metrics
            .step(step)
            .observe(start.elapsed().as_secs_f64());
        out
    }

    /// The proxies whose forwarding headers are believed.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }

    /// What the GeoIP databases are (city/country, ASN/ISP), for subject exports.
    pub fn geo_databases(&self) -> (String, String) {
        self.geo_databases.clone()
    }

    /// Step 1: the client address (the rate limiter runs on it before the rest).
    pub fn client_ip(&self, meta: &RequestMeta<'_>) -> IpAddr {
        self.timed(Step::ClientIp, || {
            client_ip::client_ip(
                meta.peer,
                meta.forwarded_for,
                meta.real_ip,
                &self.trusted_proxies,
            )
        })
    }

    /// Steps 2..: the finished row for a validated beacon from `ip`. Work for groups outside
    /// `groups` is skipped where it is costly (the fingerprint); the caller clears the rest.
    pub fn enrich(
        &self,
        meta: &RequestMeta<'_>,
        ip: IpAddr,
        v: &Validated<'_>,
        groups: Groups,
    ) -> EventRow {
        let e = self.analyse(meta, ip, v, groups);
        self.timed(Step::Row, || self.row(meta, v, e))
    }

    /// The enrichment steps proper (geo and provider, user agent, both hashes, consistency flags),
    /// without building the owned row. Allocation-free on cache hits.
    pub fn analyse(
        &self,
        meta: &RequestMeta<'_>,
        ip: IpAddr,
        v: &Validated<'_>,
        groups: Groups,
    ) -> Enriched {
        let b = &v.beacon;
        let place = self.timed(Step::Geo, || self.geo.place(ip));
        let agent = self.timed(Step::Agent, || self.agents.parse(meta.user_agent));
        let fingerprint = self.timed(Step::Fingerprint, || {
            b.device
                .as_ref()
                .filter(|_| groups.contains(Group::Fingerprint))
                .map(|d| self.fingerprints.fingerprint(d))
        });
        let visitor_id = self.timed(Step::Visitor, || {
            self.visitors.visitor_id(&b.site, ip, meta.user_agent)
        });
        let server_flags = self.timed(Step::Consistency, || {
            consistency::server_flags(&agent, meta.hints, b.device.as_deref())
        });
        Enriched {
            place,
            agent,
            fingerprint,
            visitor_id,
            server_flags,
        }
    }

    /// The owned `events` row: the beacon's fields and the enrichment results.
    fn row(&self, meta: &RequestMeta<'_>, v: &Validated<'_>, e: Enriched) -> EventRow {
        let b = &v.beacon;
        let Enriched {
            place,
            agent,
            fingerprint,
            visitor_id,
            server_flags,
        } = e;
        // One clock reading for both the receive time and the time-ordered event id, so they agree
        // (and follow the injected clock in tests).
        let now_ms = self.clock.now_ms().max(0);
        let event_id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (now_ms / 1000) as u64,
            ((now_ms % 1000) * 1_000_000) as u32,
        ));
        // Personal data in URLs (emails, phone numbers, tokens) is removed before anything is split.
        let (url, referrer_url) = (self.scrub.url(&b.url), self.scrub.url(&b.referrer));
        let (prev_url, target_url) = (self.scrub.url(&b.prev), self.scrub.url(&b.target));
        let page = urls::split(&url);
        let utm = urls::utm(page.query);
        let referrer = urls::split(&referrer_url);
        let prev = urls::split(&prev_url);
        let target = urls::split(&target_url);
        let mut row = EventRow {
            event_id,
            site: cs(&b.site),
            kind: b.kind.as_str().into(),
            received_at: (now_ms / 1000).clamp(0, u32::MAX as i64) as u32,
            client_ts: b.ts.unwrap_or(0),
            session_id: cs(&b.sid),
            seq: b.seq,
            url: cs(&page.clean),
            host: cs(&page.host),
            path: cs(page.path),
            title: cs(&self.scrub.text(&b.title)),
            referrer: cs(&referrer.clean),
            referrer_host: cs(&referrer.host),
            prev_url: cs(&prev.clean),
            prev_path: if b.prev.is_empty() {
                CompactString::default()
            } else {
                cs(prev.path)
            },
            utm_source: utm.source,
            utm_medium: utm.medium,
            utm_campaign: utm.campaign,
            utm_term: utm.term,
            utm_content: utm.content,
            engaged_ms: clamp_u32(b.engaged_ms),
            wall_ms: clamp_u32(b.wall_ms),
            target_url: cs(&target.clean),
            target_host: cs(&target.host),
            event_name: cs(&b.name),
            event_props: props_json(b.props.as_ref(), &self.scrub).into(),
            // Identifiers are stored as keyed hashes, never as sent.
            user_id: self.ids.hash(Purpose::UserId, &b.site, &b.uid).into(),
            client_id: if b.consent == Consent::Denied {
                CompactString::default()
            } else {
                self.ids.hash(Purpose::ClientId, &b.site, &b.cid).into()
            },
            visitor_id,
            fingerprint_id: fingerprint.unwrap_or([0; 16]),
            fingerprint_version: if fingerprint.is_some() {
                FINGERPRINT_VERSION
            } else {
                0
            },
            consent: b.consent.as_str().into(),
            gpc: b.gpc as u8,
            dnt: b.dnt as u8,
            country: place.country.clone(),
            region_code: place.region_code.clone(),
            region_name: place.region_name.clone(),
            city: place.city.clone(),
            asn: place.asn,
            as_org: place.as_org.clone(),
            isp: place.isp.clone(),
            browser: agent.browser.clone(),
            browser_version: agent.browser_version.clone(),
            os: agent.os.clone(),
            os_version: agent.os_version.clone(),
            device: agent.device.clone(),
            vendor: agent.vendor.clone(),
            server_flags: server_flags.iter().map(|s| cs(s)).collect(),
            truncated_fields: v.truncated.iter().map(|s| cs(s)).collect(),
            ..EventRow::default()
        };
        if let Some(d) = &b.device {
            row.timezone = cs(&d.tz);
            row.tz_offset = d.tzo.clamp(-1440, 1440) as i16;
            row.languages = d.langs.iter().map(|s| cs(s)).collect();
            row.screen_w = clamp_u16(d.screen.w);
            row.screen_h = clamp_u16(d.screen.h);
            row.avail_w = clamp_u16(d.screen.aw);
            row.avail_h = clamp_u16(d.screen.ah);
            row.color_depth = d.screen.cd.min(255) as u8;
            row.pixel_ratio = finite(d.screen.dpr);
            row.viewport_w = clamp_u16(d.vp.w);
            row.viewport_h = clamp_u16(d.vp.h);
            row.window_x = d.win.x;
            row.window_y = d.win.y;
            row.outer_w = clamp_u16(d.win.ow);
            row.outer_h = clamp_u16(d.win.oh);
            row.platform = cs(&d.platform);
            row.arch = cs(&d.arch);
            row.bitness = cs(&d.bits);
            row.arch_source = cs(&d.arch_src);
            row.cores = clamp_u16(d.cores);
            row.memory_gb = finite(d.mem);
            row.touch_points = d.touch.min(255) as u8;
            if let Some(c) = &d.canvas {
                row.canvas_hash = cs(&c.h);
                row.canvas_stable = c.stable as u8;
            }
            if let Some(w) = &d.webgl {
                row.webgl_vendor = cs(&w.vendor);
                row.webgl_renderer = cs(&w.renderer);
                row.webgl_hash = cs(&w.h);
            }
            if let Some(f) = &d.fonts {
                row.fonts_hash = cs(&f.h);
                row.fonts_count = clamp_u16(f.n);
                row.fonts = f.list.iter().map(|s| cs(s)).collect();
            }
            row.plugins = d.plugins.iter().map(|s| cs(s)).collect();
            if let Some(m) = d.media {
                row.media_known = 1;
                row.media_audioinput = m.ai.min(255) as u8;
                row.media_videoinput = m.vi.min(255) as u8;
                row.media_audiooutput = m.ao.min(255) as u8;
            }
            row.activex = d.activex as u8;
            row.webdriver = d.auto.webdriver as u8;
            row.automation_headless = d.auto.headless.iter().map(|s| cs(s)).collect();
            row.automation_globals = d.auto.globals.iter().map(|s| cs(s)).collect();
            row.automation_flags = d.auto.flags.iter().map(|s| cs(s)).collect();
        }
        fill_from_client_hints(&mut row, meta, b.device.as_deref());
        row.automated = (row.webdriver == 1
            || !row.automation_headless.is_empty()
            || !row.automation_globals.is_empty()
            || agent.headless
            || agent.non_browser
            || row.server_flags.iter().any(|f| f.starts_with("headless")))
            as u8;
        row
    }
}

/// Client hints fill what the user-agent string does not say (unknown or frozen agents): the
/// browser from the most specific brand, the OS from the platform hint, its version from UA-CH.
fn fill_from_client_hints(
    row: &mut EventRow,
    meta: &RequestMeta<'_>,
    device: Option<&crate::beacon::Device<'_>>,
) {
    let uach = device.and_then(|d| d.uach.as_ref());
    if row.browser.is_empty() {
        let brands = agent::BrandSummary::of(agent::brands(meta.hints.sec_ch_ua, uach));
        if let Some(brand) = brands.main {
            row.browser = cs(brand.name);
            row.browser_version = cs(brand.major);
        }
    }
    if row.os.is_empty() {
        let platform = meta
            .hints
            .sec_ch_ua_platform
            .map(|p| p.trim().trim_matches('"'))
            .or_else(|| uach.map(|ch| ch.platform.as_ref()))
            .unwrap_or("");
        row.os = cs(platform);
    }
    if row.os_version.is_empty() {
        if let Some(ch) = uach {
            row.os_version = cs(&ch.pv);
        }
    }
}

/// `s` without the `"` at either end (any number of them).
pub(crate) fn trim_quotes(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b.iter().position(|&c| c != b'"').unwrap_or(b.len());
    let end = b.iter().rposition(|&c| c != b'"').map_or(start, |p| p + 1);
    // Both ends sit next to an ASCII quote or at the ends of `s`, so on character boundaries.
    s.get(start..end).unwrap_or("")
}

/// The part of `s` that `part` (a sub-slice of `s`'s bytes, cut next to ASCII bytes) covers, as a
/// `str` without validating it again; empty if `part` is not such a slice.
pub(crate) fn within<'a>(s: &'a str, part: &[u8]) -> &'a str {
    let at = (part.as_ptr() as usize).wrapping_sub(s.as_ptr() as usize);
    at.checked_add(part.len())
        .and_then(|end| s.get(at..end))
        .unwrap_or("")
}

/// A row value: inline (no allocation) up to 24 bytes.
#[inline]
fn cs(s: &str) -> CompactString {
    CompactString::new(s)
}

fn clamp_u16(v: u32) -> u16 {
    v.min(u16::MAX as u32) as u16
}

fn clamp_u32(v: u64) -> u32 {
    v.min(u32::MAX as u64) as u32
}

fn finite(v: f32) -> f32 {
    if v.is_finite() && v >= 0.0 {
        v
    } else {
        0.0
    }
}

fn props_json(
    props: Option<&std::collections::BTreeMap<std::borrow::Cow<'_, str>, PropValue<'_>>>,
    scrub: &Scrubber,
) -> String {
    let Some(props) = props.filter(|p| !p.is_empty()) else {
        return String::new();
    };
    let map: serde_json::Map<String, serde_json::Value> = props
        .iter()
        .map(|(k, v)| {
            let v = match v {
                PropValue::Bool(b) => serde_json::Value::Bool(*b),
                PropValue::Number(n) => serde_json::Number::from_f64(*n)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null),
                PropValue::Text(s) => serde_json::Value::String(scrub.text(s).into_owned()),
            };
            (k.to_string(), v)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_slice_of_bytes_is_read_back_as_the_same_text() {
        let header = r#"5.34.10.20, "10.1.2.3""#;
        let b = header.as_bytes();
        assert_eq!(within(header, &b[..10]), "5.34.10.20");
        assert_eq!(within(header, &b[12..]), r#""10.1.2.3""#);
        assert_eq!(within(header, &b[b.len()..]), "");
        // Bytes from anywhere else are not read as part of `header`.
        let elsewhere = header.to_owned();
        assert_eq!(within(header, &elsewhere.as_bytes()[..10]), "");
        // A cut inside a multi-byte character is refused, not split.
        let text = "Алматы";
        assert_eq!(within(text, &text.as_bytes()[..3]), "");
        assert_eq!(within(text, &text.as_bytes()[..4]), "Ал");
    }

    #[test]
    fn quotes_are_trimmed_at_both_ends_only() {
        assert_eq!(trim_quotes(r#""156""#), "156");
        assert_eq!(trim_quotes(r#"""a"b"""#), r#"a"b"#);
        assert_eq!(trim_quotes(r#"""""#), "");
    }
}
