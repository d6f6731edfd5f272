//! The `events` row: one typed column per collected or derived field, in `schema/` order.
//!
//! There is deliberately no column that could hold an IP address: the client address is used
//! during enrichment and dropped with the request.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

/// One event as stored in ClickHouse. Empty strings and zeros mean "not reported".
#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct EventRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: uuid::Uuid,
    pub site: String,
    pub kind: String,
    /// Server receive time, seconds since the epoch (`DateTime`, UTC).
    pub received_at: u32,
    /// Client clock, milliseconds since the epoch (0 when not sent).
    pub client_ts: i64,

    // Navigation and session.
    pub session_id: String,
    pub seq: u32,
    pub url: String,
    pub host: String,
    pub path: String,
    pub title: String,
    pub referrer: String,
    pub referrer_host: String,
    pub prev_url: String,
    pub prev_path: String,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub utm_term: String,
    pub utm_content: String,
    pub engaged_ms: u32,
    pub wall_ms: u32,
    pub target_url: String,
    pub target_host: String,
    pub event_name: String,
    /// Custom-event properties as a JSON object.
    pub event_props: String,

    // Identity (pseudonymous).
    pub user_id: String,
    pub client_id: String,
    pub visitor_id: [u8; 16],
    pub fingerprint_id: [u8; 16],
    pub fingerprint_version: u8,
    pub consent: String,
    pub gpc: u8,
    pub dnt: u8,

    // Derived at ingest from the client address (which is not stored).
    pub country: String,
    pub region_code: String,
    pub region_name: String,
    pub city: String,
    pub asn: u32,
    pub as_org: String,
    pub isp: String,

    // Derived from the user agent and client hints.
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    pub device: String,
    pub vendor: String,

    // Device signals from the beacon.
    pub timezone: String,
    pub tz_offset: i16,
    pub languages: Vec<String>,
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
    pub platform: String,
    pub arch: String,
    pub bitness: String,
    pub arch_source: String,
    pub cores: u16,
    pub memory_gb: f32,
    pub touch_points: u8,
    pub canvas_hash: String,
    pub canvas_stable: u8,
    pub webgl_vendor: String,
    pub webgl_renderer: String,
    pub webgl_hash: String,
    pub fonts_hash: String,
    pub fonts_count: u16,
    pub fonts: Vec<String>,
    pub plugins: Vec<String>,
    pub media_known: u8,
    pub media_audioinput: u8,
    pub media_videoinput: u8,
    pub media_audiooutput: u8,
    pub activex: u8,

    // Automation: the browser's findings and the server's.
    pub webdriver: u8,
    pub automation_headless: Vec<String>,
    pub automation_globals: Vec<String>,
    pub automation_flags: Vec<String>,
    pub server_flags: Vec<String>,
    pub automated: u8,

    /// Fields the collector had to cut to their documented limits.
    pub truncated_fields: Vec<String>,
}
