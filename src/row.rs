//! The `events` row: one typed column per collected or derived field, in `schema/` order.
//!
//! There is deliberately no column that could hold an IP address: the client address is used
//! during enrichment and dropped with the request.

use clickhouse::Row;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// One event as stored in ClickHouse. Empty strings and zeros mean "not reported".
///
/// Strings are `CompactString`s: most values (country, browser, hashes, hosts, UTM values) fit in
/// its 24 inline bytes, so building a row costs a handful of allocations instead of ~40. They
/// serialize exactly as `String` does (spool records and ClickHouse rows are unchanged).
#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct EventRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    pub site: CompactString,
    pub kind: CompactString,
    /// Server receive time, seconds since the epoch (`DateTime`, UTC).
    pub received_at: u32,
    /// Client clock, milliseconds since the epoch (0 when not sent).
    pub client_ts: i64,

    // Navigation and session.
    pub session_id: CompactString,
    pub seq: u32,
    pub url: CompactString,
    pub host: CompactString,
    pub path: CompactString,
    pub title: CompactString,
    pub referrer: CompactString,
    pub referrer_host: CompactString,
    pub prev_url: CompactString,
    pub prev_path: CompactString,
    pub utm_source: CompactString,
    pub utm_medium: CompactString,
    pub utm_campaign: CompactString,
    pub utm_term: CompactString,
    pub utm_content: CompactString,
    pub engaged_ms: u32,
    pub wall_ms: u32,
    pub target_url: CompactString,
    pub target_host: CompactString,
    pub event_name: CompactString,
    /// Custom-event properties as a JSON object.
    pub event_props: CompactString,

    // Identity (pseudonymous).
    pub user_id: CompactString,
    pub client_id: CompactString,
    pub visitor_id: [u8; 16],
    pub fingerprint_id: [u8; 16],
    pub fingerprint_version: u8,
    pub consent: CompactString,
    pub gpc: u8,
    pub dnt: u8,

    // Derived at ingest from the client address (which is not stored).
    pub country: CompactString,
    pub region_code: CompactString,
    pub region_name: CompactString,
    pub city: CompactString,
    pub asn: u32,
    pub as_org: CompactString,
    pub isp: CompactString,

    // Derived from the user agent and client hints.
    pub browser: CompactString,
    pub browser_version: CompactString,
    pub os: CompactString,
    pub os_version: CompactString,
    pub device: CompactString,
    pub vendor: CompactString,

    // Device signals from the beacon.
    pub timezone: CompactString,
    pub tz_offset: i16,
    pub languages: Vec<CompactString>,
    pub screen_w: u16,
    pub screen_h: u16,
    pub avail_w: u16,
    pub avail_h: u16,
    pub color_depth: u8,
    pub pixel_ratio: f32,
    pub viewport_w: u16,
    pub viewport_h: u16,
    pub window_x: i32,
    pub window_y: i32,
    pub outer_w: u16,
    pub outer_h: u16,
    pub platform: CompactString,
    pub arch: CompactString,
    pub bitness: CompactString,
    pub arch_source: CompactString,
    pub cores: u16,
    pub memory_gb: f32,
    pub touch_points: u8,
    pub canvas_hash: CompactString,
    pub canvas_stable: u8,
    pub webgl_vendor: CompactString,
    pub webgl_renderer: CompactString,
    pub webgl_hash: CompactString,
    pub fonts_hash: CompactString,
    pub fonts_count: u16,
    pub fonts: Vec<CompactString>,
    pub plugins: Vec<CompactString>,
    pub media_known: u8,
    pub media_audioinput: u8,
    pub media_videoinput: u8,
    pub media_audiooutput: u8,
    pub activex: u8,

    // Automation: the browser's findings and the server's.
    pub webdriver: u8,
    pub automation_headless: Vec<CompactString>,
    pub automation_globals: Vec<CompactString>,
    pub automation_flags: Vec<CompactString>,
    pub server_flags: Vec<CompactString>,
    pub automated: u8,

    /// Fields the collector had to cut to their documented limits.
    pub truncated_fields: Vec<CompactString>,
}
