//! The `events` row: one typed column per collected or derived field, in `schema/` order, and the
//! rewriting of its spool encoding (postcard) into ClickHouse's (RowBinary).
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

/// How one field is encoded: postcard in the spool, RowBinary for ClickHouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Postcard: two varints (the id's `u64` pair); RowBinary: the same two `u64`s, little-endian.
    Uuid,
    /// A length varint and the bytes in both.
    Str,
    /// A count varint and that many `Str`s in both.
    Strs,
    /// One byte in both.
    U8,
    /// Sixteen bytes in both.
    Fixed16,
    /// A `Fixed16` that is also the row's shard key ([`RowKey::visitor_id`]).
    VisitorId,
    /// Postcard: a varint; RowBinary: little-endian, fixed width.
    U16,
    U32,
    /// Postcard: a zigzag varint; RowBinary: little-endian, fixed width.
    I16,
    I32,
    I64,
    /// Four bytes, little-endian, in both.
    F32,
}

use Kind::*;

/// [`EventRow`]'s fields in order, with their kinds. Unit tests hold this to the struct: the
/// names to the row's columns, the kinds to what the `clickhouse` crate decodes from the result
/// for rows with every field set.
const FIELDS: &[(&str, Kind)] = &[
    ("event_id", Uuid),
    ("site", Str),
    ("kind", Str),
    ("received_at", U32),
    ("client_ts", I64),
    ("session_id", Str),
    ("seq", U32),
    ("url", Str),
    ("host", Str),
    ("path", Str),
    ("title", Str),
    ("referrer", Str),
    ("referrer_host", Str),
    ("prev_url", Str),
    ("prev_path", Str),
    ("utm_source", Str),
    ("utm_medium", Str),
    ("utm_campaign", Str),
    ("utm_term", Str),
    ("utm_content", Str),
    ("engaged_ms", U32),
    ("wall_ms", U32),
    ("target_url", Str),
    ("target_host", Str),
    ("event_name", Str),
    ("event_props", Str),
    ("user_id", Str),
    ("client_id", Str),
    ("visitor_id", VisitorId),
    ("fingerprint_id", Fixed16),
    ("fingerprint_version", U8),
    ("consent", Str),
    ("gpc", U8),
    ("dnt", U8),
    ("country", Str),
    ("region_code", Str),
    ("region_name", Str),
    ("city", Str),
    ("asn", U32),
    ("as_org", Str),
    ("isp", Str),
    ("browser", Str),
    ("browser_version", Str),
    ("os", Str),
    ("os_version", Str),
    ("device", Str),
    ("vendor", Str),
    ("timezone", Str),
    ("tz_offset", I16),
    ("languages", Strs),
    ("screen_w", U16),
    ("screen_h", U16),
    ("avail_w", U16),
    ("avail_h", U16),
    ("color_depth", U8),
    ("pixel_ratio", F32),
    ("viewport_w", U16),
    ("viewport_h", U16),
    ("window_x", I32),
    ("window_y", I32),
    ("outer_w", U16),
    ("outer_h", U16),
    ("platform", Str),
    ("arch", Str),
    ("bitness", Str),
    ("arch_source", Str),
    ("cores", U16),
    ("memory_gb", F32),
    ("touch_points", U8),
    ("canvas_hash", Str),
    ("canvas_stable", U8),
    ("webgl_vendor", Str),
    ("webgl_renderer", Str),
    ("webgl_hash", Str),
    ("fonts_hash", Str),
    ("fonts_count", U16),
    ("fonts", Strs),
    ("plugins", Strs),
    ("media_known", U8),
    ("media_audioinput", U8),
    ("media_videoinput", U8),
    ("media_audiooutput", U8),
    ("activex", U8),
    ("webdriver", U8),
    ("automation_headless", Strs),
    ("automation_globals", Strs),
    ("automation_flags", Strs),
    ("server_flags", Strs),
    ("automated", U8),
    ("truncated_fields", Strs),
];

/// Why a spool record could not be rewritten as a row (it was not written as one by this
/// version): such a record is set aside, as one postcard cannot decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    #[error("the record ends inside field {0}")]
    Truncated(&'static str),
    #[error("field {0} holds a number out of range")]
    BadNumber(&'static str),
    #[error("{0} bytes follow the last field")]
    Trailing(usize),
}

/// What the writer needs of a row without decoding it: the key that picks its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowKey {
    pub visitor_id: [u8; 16],
}

/// Appends to `out` the RowBinary encoding of the [`EventRow`] whose postcard encoding (what the
/// spool holds) is `record`, without building the row: what the writer sends for each event.
/// Decoding into an `EventRow` and serializing that again cost the writer ~5 % of footfall's CPU
/// under load (an allocation per long string, then copying it twice); here strings and lists are
/// copied as they are (both formats write a length varint and the bytes) and only numbers change
/// width. On error `out` is left as it was.
pub fn transcode(record: &[u8], out: &mut Vec<u8>) -> Result<RowKey, TranscodeError> {
    let start = out.len();
    let result = transcode_fields(record, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn transcode_fields(record: &[u8], out: &mut Vec<u8>) -> Result<RowKey, TranscodeError> {
    let mut input = Input { rest: record };
    let mut key = RowKey {
        visitor_id: [0; 16],
    };
    for &(name, kind) in FIELDS {
        match kind {
            Uuid => {
                for _ in 0..2 {
                    out.extend_from_slice(&input.varint(name)?.to_le_bytes());
                }
            }
            Str => out.extend_from_slice(input.string(name)?),
            Strs => {
                let (count, prefix) = input.varint_bytes(name)?;
                out.extend_from_slice(prefix);
                for _ in 0..count {
                    out.extend_from_slice(input.string(name)?);
                }
            }
            U8 => out.extend_from_slice(input.take(1, name)?),
            Fixed16 => out.extend_from_slice(input.take(16, name)?),
            VisitorId => {
                let bytes = input.take(16, name)?;
                key.visitor_id.copy_from_slice(bytes);
                out.extend_from_slice(bytes);
            }
            U16 => out.extend_from_slice(&narrow::<u16>(input.varint(name)?, name)?.to_le_bytes()),
            U32 => out.extend_from_slice(&narrow::<u32>(input.varint(name)?, name)?.to_le_bytes()),
            I16 => out.extend_from_slice(
                &narrow::<i16>(unzigzag(input.varint(name)?), name)?.to_le_bytes(),
            ),
            I32 => out.extend_from_slice(
                &narrow::<i32>(unzigzag(input.varint(name)?), name)?.to_le_bytes(),
            ),
            I64 => out.extend_from_slice(&unzigzag(input.varint(name)?).to_le_bytes()),
            F32 => out.extend_from_slice(input.take(4, name)?),
        }
    }
    match input.rest.len() {
        0 => Ok(key),
        n => Err(TranscodeError::Trailing(n)),
    }
}

fn narrow<T: TryFrom<i128>>(v: impl Into<i128>, name: &'static str) -> Result<T, TranscodeError> {
    T::try_from(v.into()).map_err(|_| TranscodeError::BadNumber(name))
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize, name: &'static str) -> Result<&'a [u8], TranscodeError> {
        if self.rest.len() < n {
            return Err(TranscodeError::Truncated(name));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    /// A LEB128 varint (postcard's numbers and lengths, RowBinary's lengths): its value and bytes.
    fn varint_bytes(&mut self, name: &'static str) -> Result<(u64, &'a [u8]), TranscodeError> {
        let mut value = 0u64;
        for (i, &b) in self.rest.iter().enumerate().take(10) {
            // The tenth byte may only hold the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(TranscodeError::BadNumber(name));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                let (bytes, rest) = self.rest.split_at(i + 1);
                self.rest = rest;
                return Ok((value, bytes));
            }
        }
        if self.rest.len() < 10 {
            Err(TranscodeError::Truncated(name))
        } else {
            Err(TranscodeError::BadNumber(name))
        }
    }

    fn varint(&mut self, name: &'static str) -> Result<u64, TranscodeError> {
        Ok(self.varint_bytes(name)?.0)
    }

    /// A string with its length prefix, as both formats write it.
    fn string(&mut self, name: &'static str) -> Result<&'a [u8], TranscodeError> {
        let whole = self.rest;
        let (len, prefix) = self.varint_bytes(name)?;
        let len = usize::try_from(len).map_err(|_| TranscodeError::BadNumber(name))?;
        self.take(len, name)?;
        Ok(&whole[..prefix.len() + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field set, numbers at the edges of their types and of varint widths, strings and
    /// lists empty, short, multi-byte and longer than 127 bytes (a two-byte length).
    fn full_row(seed: u8) -> EventRow {
        let s = |n: &str| CompactString::from(format!("{n}-{seed}-ü€😀"));
        let long = CompactString::from("x".repeat(300 + seed as usize));
        EventRow {
            event_id: uuid::Uuid::from_u64_pair(u64::MAX - seed as u64, 1 << 40),
            site: s("site"),
            kind: "pageview".into(),
            received_at: u32::MAX - seed as u32,
            client_ts: -1_700_000_000_000 - seed as i64,
            session_id: s("sid"),
            seq: 128,
            url: long.clone(),
            host: s("host"),
            path: s("path"),
            title: long,
            referrer: s("ref"),
            referrer_host: s("refhost"),
            prev_url: s("prev"),
            prev_path: s("prevpath"),
            utm_source: s("src"),
            utm_medium: s("med"),
            utm_campaign: s("camp"),
            utm_term: s("term"),
            utm_content: s("content"),
            engaged_ms: 16_384,
            wall_ms: u32::MAX,
            target_url: s("target"),
            target_host: s("thost"),
            event_name: s("name"),
            event_props: "{\"a\":1}".into(),
            user_id: s("user"),
            client_id: s("client"),
            visitor_id: [seed; 16],
            fingerprint_id: [0xab; 16],
            fingerprint_version: 255,
            consent: s("consent"),
            gpc: 1,
            dnt: 1,
            country: "KZ".into(),
            region_code: "KZ-ALA".into(),
            region_name: s("region"),
            city: s("city"),
            asn: 4_200_000_000,
            as_org: s("org"),
            isp: s("isp"),
            browser: s("browser"),
            browser_version: s("bv"),
            os: s("os"),
            os_version: s("ov"),
            device: s("device"),
            vendor: s("vendor"),
            timezone: s("tz"),
            tz_offset: i16::MIN + seed as i16,
            languages: vec![s("kk"), s("ru"), CompactString::default()],
            screen_w: u16::MAX - seed as u16,
            screen_h: 127,
            avail_w: 128,
            avail_h: 0,
            color_depth: 24,
            pixel_ratio: 2.625,
            viewport_w: 1_000,
            viewport_h: 700,
            window_x: i32::MIN + seed as i32,
            window_y: i32::MAX - seed as i32,
            outer_w: 300,
            outer_h: 16_383,
            platform: s("platform"),
            arch: s("arch"),
            bitness: "64".into(),
            arch_source: s("hints"),
            cores: 16,
            memory_gb: 0.5,
            touch_points: 10,
            canvas_hash: s("canvas"),
            canvas_stable: 1,
            webgl_vendor: s("wv"),
            webgl_renderer: s("wr"),
            webgl_hash: s("wh"),
            fonts_hash: s("fh"),
            fonts_count: 200,
            fonts: (0..130)
                .map(|i| CompactString::from(format!("font {i}")))
                .collect(),
            plugins: vec![s("pdf")],
            media_known: 1,
            media_audioinput: 2,
            media_videoinput: 3,
            media_audiooutput: 4,
            activex: 1,
            webdriver: 1,
            automation_headless: vec![s("ua")],
            automation_globals: vec![],
            automation_flags: vec![s("f1"), s("f2")],
            server_flags: vec![s("s1")],
            automated: 1,
            truncated_fields: vec![s("url")],
        }
    }

    /// `body` sent as an INSERT in RowBinary, read back by the `clickhouse` crate's own RowBinary
    /// decoder (its mock server's recorder).
    async fn decoded_by_the_crate(body: Vec<u8>) -> Vec<EventRow> {
        use clickhouse::test::{handlers, Mock};
        let mock = Mock::new();
        let recorded = mock.add(handlers::record());
        let client = clickhouse::Client::default()
            .with_mock(&mock)
            .with_compression(clickhouse::Compression::None);
        let mut insert = client.insert_formatted_with("INSERT INTO events FORMAT RowBinary");
        insert.send(body.into()).await.unwrap();
        insert.end().await.unwrap();
        recorded.collect().await
    }

    #[test]
    fn the_field_list_names_the_rows_columns_in_order() {
        let names: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, EventRow::COLUMN_NAMES);
    }

    #[tokio::test]
    async fn a_spool_record_becomes_the_row_clickhouse_reads_back() {
        let rows = [full_row(1), full_row(200), EventRow::default()];
        let mut body = Vec::new();
        for row in &rows {
            let key = transcode(&postcard::to_allocvec(row).unwrap(), &mut body).unwrap();
            assert_eq!(key.visitor_id, row.visitor_id);
        }
        assert_eq!(decoded_by_the_crate(body).await, rows);
    }

    #[test]
    fn a_record_that_is_not_a_row_is_refused_and_leaves_nothing_behind() {
        let record = postcard::to_allocvec(&full_row(3)).unwrap();
        let mut out = b"earlier rows".to_vec();
        for cut in [0, 1, 17, record.len() / 2, record.len() - 1] {
            assert!(
                matches!(
                    transcode(&record[..cut], &mut out),
                    Err(TranscodeError::Truncated(_))
                ),
                "cut at {cut}"
            );
            assert_eq!(out, b"earlier rows");
        }
        let mut longer = record.clone();
        longer.push(0);
        assert_eq!(
            transcode(&longer, &mut out),
            Err(TranscodeError::Trailing(1))
        );
        // A varint longer than any u64.
        let mut huge = vec![0xff; 10];
        huge.push(0x01);
        assert_eq!(
            transcode(&huge, &mut out),
            Err(TranscodeError::BadNumber("event_id"))
        );
        // seq (a u32) of 2^32. In an empty row every field before seq is one byte (the id two
        // zeros, then four empty strings or zeros and the session id), so seq is byte 7.
        let plain = postcard::to_allocvec(&EventRow::default()).unwrap();
        assert!(transcode(&plain, &mut Vec::new()).is_ok());
        let mut wide = plain[..7].to_vec();
        wide.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x10]);
        wide.extend_from_slice(&plain[8..]);
        assert_eq!(
            transcode(&wide, &mut out),
            Err(TranscodeError::BadNumber("seq"))
        );
        assert_eq!(out, b"earlier rows");
    }
}
