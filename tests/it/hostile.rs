//! Hostile traffic against the real binary: a seeded generator builds more than 10,000 malformed
//! and abusive requests (truncations, byte flips, type confusion, huge and deep JSON, invalid
//! UTF-8, content-type and encoding games, gzip bombs, header abuse, broken HTTP framing, slow
//! bodies) and sends them over raw TCP, so every byte on the wire is the generator's.
//!
//! The contract:
//! * every request that reaches the application is answered 202 or with a 4xx whose body is a JSON
//!   `{"error": "..."}`, and where the answer is certain (a cut beacon is a 400, a bomb a 413, a
//!   wrong origin a 403, a stalled body a 408, ...) it is exactly that status;
//! * requests broken at the HTTP level (request line, header syntax, too many or too large
//!   headers, contradictory framing) may instead be refused by actix-web's own HTTP/1 parser with a
//!   bare 4xx or a closed connection: those are counted apart, and still never get a 5xx;
//! * nothing ever gets a 5xx, the process never panics, it still serves afterwards, shuts down
//!   cleanly, and its memory after the corpus stays within 64 MiB of what it was after a warm-up.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

use crate::harness::{rss_of, FootfallProcess};

/// The generator's seed: the corpus is the same on every run.
const SEED: u64 = 0x_f007_fa11_0bad_c0de;
/// An origin the default `demo` site accepts.
const ORIGIN: &str = "http://localhost:3000";
/// The collector's documented limits.
const WIRE_LIMIT: usize = 32 * 1024;
const GUNZIP_LIMIT: usize = 64 * 1024;
/// actix-web's own limits on a request head (`actix-http` h1 decoder).
const MAX_HEADERS: usize = 96;
/// Requests in flight at once in the main phases.
const CONCURRENCY: usize = 32;
/// Distinct, huge (64–120 KiB) User-Agents sent with otherwise valid beacons: whatever the
/// collector keeps per User-Agent must not keep them all.
const HUGE_USER_AGENTS: usize = 1_000;
/// How long any request may wait for its answer (slow bodies are answered after 10 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// Memory the server may keep after the corpus, over what it held after the warm-up.
const RSS_SLACK: u64 = 64 * 1024 * 1024;
/// Requests run before the baseline memory reading.
const WARM_UP: usize = 1_000;

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// The `footfall` binary with no ClickHouse: accepted events go to its spool only.
fn start_server() -> (FootfallProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = FootfallProcess::spawn(
        &dir.path().join("data"),
        dir.path(),
        &[
            ("FOOTFALL_CLICKHOUSE_BINARY", "/nonexistent/clickhouse"),
            // Loopback is a trusted proxy, so X-Forwarded-For chains are really walked.
            ("FOOTFALL_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    );
    (server, dir)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

// ---------------------------------------------------------------------------------------------
// Requests, answers and what is expected of them
// ---------------------------------------------------------------------------------------------

/// How a request goes on the wire.
enum Wire {
    /// All bytes at once, then read the answer.
    Whole(Vec<u8>),
    /// Pieces, each after its pause; the connection stays open while the answer is awaited.
    Paced(Vec<(Duration, Vec<u8>)>),
    /// Pieces, each after its pause; then the client waits a moment and hangs up unread.
    HangUp(Vec<(Duration, Vec<u8>)>, Duration),
}

impl Wire {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Wire::Whole(b) => b.clone(),
            Wire::Paced(p) | Wire::HangUp(p, _) => p.iter().flat_map(|(_, b)| b.clone()).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Well-formed HTTP: the application answers, with exactly this status.
    Status(u16),
    /// Well-formed HTTP: the application answers 202 or a 4xx with a JSON error.
    Handled,
    /// Broken at the HTTP level: actix-web may refuse it (a bare 4xx, or closing the connection)
    /// before the application sees it; if the application does see it, as `Handled`.
    Parser,
    /// The client hangs up: there is nothing to read.
    Gone,
}

#[derive(Debug, Clone)]
enum Outcome {
    /// The application's answer: 202, or a 4xx with a JSON `error`.
    App(u16),
    /// A 4xx with an empty body: actix-web's HTTP/1 layer refused the request itself.
    Bare(u16),
    /// The connection closed before any answer.
    Closed,
    /// The client hung up on purpose.
    HungUp,
    /// Anything else: a 5xx, another status, a body that is not a JSON error, no answer in time.
    Bad(Option<u16>, String),
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Outcome::App(s) => s.to_string(),
            Outcome::Bare(s) => format!("{s} bare"),
            Outcome::Closed => "closed".into(),
            Outcome::HungUp => "hung up".into(),
            Outcome::Bad(Some(s), _) => format!("{s} BAD"),
            Outcome::Bad(None, _) => "BAD".into(),
        }
    }
}

fn judge(expect: Expect, outcome: &Outcome) -> Result<(), String> {
    match (expect, outcome) {
        (_, Outcome::Bad(_, why)) => Err(why.clone()),
        (Expect::Status(want), Outcome::App(got)) if want == *got => Ok(()),
        (Expect::Handled, Outcome::App(_)) => Ok(()),
        (Expect::Parser, Outcome::App(_) | Outcome::Bare(_) | Outcome::Closed) => Ok(()),
        (Expect::Gone, _) => Ok(()),
        (e, o) => Err(format!("expected {e:?}, got {}", o.label())),
    }
}

/// One generated request.
struct Case {
    category: &'static str,
    what: String,
    wire: Wire,
    expect: Expect,
}

/// A request exactly as written: nothing is normalised on the way out.
#[derive(Clone)]
struct Req {
    method: String,
    target: String,
    version: &'static str,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    length: Length,
}

#[derive(Clone)]
enum Length {
    /// A correct `Content-Length`.
    Exact,
    /// No `Content-Length`.
    Omit,
    /// These `Content-Length` headers, verbatim.
    Values(Vec<String>),
}

/// `POST /api/event` with a text/plain body from an allowed origin.
fn post(body: impl Into<Vec<u8>>) -> Req {
    Req {
        method: "POST".into(),
        target: "/api/event".into(),
        version: "HTTP/1.1",
        headers: vec![
            ("Host".into(), b"localhost".to_vec()),
            ("Content-Type".into(), b"text/plain".to_vec()),
            ("Origin".into(), ORIGIN.into()),
            ("Connection".into(), b"close".to_vec()),
        ],
        body: body.into(),
        length: Length::Exact,
    }
}

impl Req {
    fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Replaces every header of that name.
    fn set(self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.without(name).header(name, value)
    }

    fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    fn gzipped(mut self) -> Self {
        self.body = gzip(&self.body);
        self.set("Content-Encoding", "gzip")
    }

    fn chunked(mut self, size: usize) -> Self {
        self.body = chunked(&self.body, size);
        self.length = Length::Omit;
        self.header("Transfer-Encoding", "chunked")
    }

    fn length(mut self, length: Length) -> Self {
        self.length = length;
        self
    }

    fn method(mut self, method: &str) -> Self {
        self.method = method.into();
        self
    }

    fn target(mut self, target: impl Into<String>) -> Self {
        self.target = target.into();
        self
    }

    fn head(&self) -> Vec<u8> {
        let mut h = format!("{} {} {}\r\n", self.method, self.target, self.version).into_bytes();
        for (name, value) in &self.headers {
            h.extend_from_slice(name.as_bytes());
            h.extend_from_slice(b": ");
            h.extend_from_slice(value);
            h.extend_from_slice(b"\r\n");
        }
        match &self.length {
            Length::Exact => {
                h.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes())
            }
            Length::Omit => {}
            Length::Values(values) => {
                for v in values {
                    h.extend_from_slice(format!("Content-Length: {v}\r\n").as_bytes());
                }
            }
        }
        h.extend_from_slice(b"\r\n");
        h
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = self.head();
        b.extend_from_slice(&self.body);
        b
    }
}

fn case(category: &'static str, what: impl Into<String>, req: Req, expect: Expect) -> Case {
    Case {
        category,
        what: what.into(),
        wire: Wire::Whole(req.bytes()),
        expect,
    }
}

fn raw(category: &'static str, what: impl Into<String>, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        category,
        what: what.into(),
        wire: Wire::Whole(bytes),
        expect,
    }
}

/// 413 when the body cannot fit the wire limit, else `otherwise`.
fn fits(body: &[u8], otherwise: Expect) -> Expect {
    if body.len() > WIRE_LIMIT {
        Expect::Status(413)
    } else {
        otherwise
    }
}

// ---------------------------------------------------------------------------------------------
// The raw HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

/// Sends one request on a fresh connection and classifies what comes back.
async fn exchange(addr: SocketAddr, wire: &Wire) -> Outcome {
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return Outcome::Bad(None, format!("cannot connect: {e}")),
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    if let Wire::HangUp(pieces, linger) = wire {
        for (pause, piece) in pieces {
            tokio::time::sleep(*pause).await;
            if wr.write_all(piece).await.is_err() {
                break;
            }
        }
        tokio::time::sleep(*linger).await;
        return Outcome::HungUp;
    }
    let write = async {
        match wire {
            Wire::Whole(bytes) => {
                let _ = wr.write_all(bytes).await;
            }
            Wire::Paced(pieces) => {
                for (pause, piece) in pieces {
                    tokio::time::sleep(*pause).await;
                    if wr.write_all(piece).await.is_err() {
                        break;
                    }
                }
            }
            Wire::HangUp(..) => unreachable!(),
        }
        // The write side stays open: a half-close would read as the client going away.
        std::future::pending::<()>().await
    };
    tokio::select! {
        answer = tokio::time::timeout(ANSWER_WITHIN, read_answer(&mut rd)) => answer
            .unwrap_or_else(|_| Outcome::Bad(None, format!("no answer within {ANSWER_WITHIN:?}"))),
        () = write => unreachable!(),
    }
}

async fn read_answer(rd: &mut OwnedReadHalf) -> Outcome {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let eof = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => true,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                false
            }
        };
        loop {
            match parse_answer(&buf, eof) {
                Parsed::More if eof => {
                    return if buf.is_empty() {
                        Outcome::Closed
                    } else {
                        Outcome::Bad(None, format!("cut-off answer: {}", preview(&buf)))
                    }
                }
                Parsed::More => break,
                Parsed::Interim(len) => {
                    buf.drain(..len);
                }
                Parsed::Final(outcome) => return outcome,
            }
        }
    }
}

enum Parsed {
    More,
    /// A 1xx answer of this many bytes, to skip.
    Interim(usize),
    Final(Outcome),
}

fn parse_answer(buf: &[u8], eof: bool) -> Parsed {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Parsed::More;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = match status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse::<u16>().ok())
    {
        Some(s) => s,
        None => {
            return Parsed::Final(Outcome::Bad(
                None,
                format!("bad status line {status_line:?}"),
            ))
        }
    };
    let mut headers = BTreeMap::new();
    for line in lines {
        if let Some((n, v)) = line.split_once(':') {
            headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let rest = &buf[head_end + 4..];
    if (100..200).contains(&status) {
        return Parsed::Interim(head_end + 4);
    }
    let body = if let Some(len) = headers.get("content-length") {
        let Ok(len) = len.parse::<usize>() else {
            return Parsed::Final(Outcome::Bad(
                Some(status),
                format!("content-length {len:?}"),
            ));
        };
        if rest.len() < len {
            return Parsed::More;
        }
        rest[..len].to_vec()
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|te| te.contains("chunked"))
    {
        match dechunk(rest) {
            Some(body) => body,
            None => return Parsed::More,
        }
    } else if eof {
        rest.to_vec()
    } else {
        return Parsed::More;
    };
    Parsed::Final(classify(status, headers.get("content-type"), &body))
}

fn classify(status: u16, content_type: Option<&String>, body: &[u8]) -> Outcome {
    if status == 202 {
        return Outcome::App(202);
    }
    if !(400..500).contains(&status) {
        return Outcome::Bad(
            Some(status),
            format!("status {status}, body {}", preview(body)),
        );
    }
    if body.is_empty() {
        return Outcome::Bare(status);
    }
    let json = content_type.is_some_and(|t| t.starts_with("application/json"));
    let error = serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("error").is_some_and(Value::is_string));
    if json && error {
        Outcome::App(status)
    } else {
        Outcome::Bad(
            Some(status),
            format!(
                "{status} whose body is not a JSON error ({content_type:?}): {}",
                preview(body)
            ),
        )
    }
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if data.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn preview(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(240)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if bytes.len() > 240 {
        format!("{shown}… ({} bytes)", bytes.len())
    } else {
        shown
    }
}

// ---------------------------------------------------------------------------------------------
// Building blocks of the corpus
// ---------------------------------------------------------------------------------------------

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// `prefix`, then `n` copies of `byte`, compressed without holding the whole thing in memory.
fn gzip_repeated(prefix: &[u8], byte: u8, n: usize) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(prefix).unwrap();
    let block = vec![byte; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len());
        e.write_all(&block[..k]).unwrap();
        left -= k;
    }
    e.finish().unwrap()
}

fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(size.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn minimal(seq: usize) -> String {
    format!(
        r#"{{"v":1,"site":"demo","kind":"pageview","url":"http://localhost:3000/x","sid":"s1","seq":{seq}}}"#
    )
}

/// The captured beacons, made valid for `demo`.
fn real_beacons() -> Vec<String> {
    include_str!("../fixtures/beacons.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.replace(r#""site":"shop""#, r#""site":"demo""#))
        .collect()
}

/// Non-ASCII text, escapes and a custom event: cuts land inside multi-byte characters.
fn unicode_beacon() -> String {
    r#"{"v":1,"site":"demo","kind":"custom","url":"http://localhost:3000/ümlaut?utm_source=straße&utm_medium=ラジオ","title":"Ωmega — 🎉 \"quoted\" \\ back \u00e9 \ud83d\ude00","sid":"sé","seq":7,"name":"clicked ✓","props":{"ключ":"значение","n":1.5e3,"b":true,"😀":"🙃"}}"#.to_owned()
}

/// Every field of the protocol present, with the right type.
fn full_beacon() -> Value {
    json!({
        "v": 1, "site": "demo", "kind": "custom", "url": "http://localhost:3000/a?utm_source=x",
        "title": "t", "ref": "https://ref.example/r", "prev": "http://localhost:3000/p",
        "sid": "s1", "seq": 1, "ts": 1_700_000_000_000_i64, "uid": "u", "cid": "c",
        "engaged_ms": 5, "wall_ms": 6, "target": "https://out.example/", "name": "n",
        "props": {"a": "b", "n": 1, "t": true}, "consent": "granted", "gpc": false, "dnt": false,
        "device": {
            "tz": "UTC", "tzo": 0, "langs": ["en-GB"],
            "screen": {"w": 1920, "h": 1080, "aw": 1920, "ah": 1040, "cd": 24, "dpr": 1.25},
            "vp": {"w": 1280, "h": 720}, "win": {"x": 0, "y": 0, "ow": 1280, "oh": 800},
            "platform": "Linux x86_64", "arch": "x86", "bits": "64", "arch_src": "uach",
            "uach": {"brands": ["Chromium/120.0.1"], "mobile": false, "platform": "Linux",
                     "pv": "6.1", "model": ""},
            "cores": 8, "mem": 8, "touch": 0,
            "canvas": {"h": "5cd5eaddf7a88809", "stable": true},
            "webgl": {"vendor": "Google Inc.", "renderer": "ANGLE (SwiftShader)", "h": "6106e634"},
            "fonts": {"h": "20bd54e02fd4e6e9", "n": 1, "list": ["Arial"]},
            "plugins": ["PDF Viewer"], "media": {"ai": 1, "vi": 1, "ao": 1}, "activex": false,
            "auto": {"webdriver": false, "headless": ["ua"], "globals": ["cdc_x"], "flags": ["zero_outer"]}
        }
    })
}

/// JSON pointers to every member of `v`, depth first; arrays through their first item.
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                pointers(child, &p, out);
            }
        }
        Value::Array(a) => {
            if let Some(first) = a.first() {
                let p = format!("{at}/0");
                out.push(p.clone());
                pointers(first, &p, out);
            }
        }
        _ => {}
    }
}

const MARK: &str = "\u{1}hostile\u{1}";

/// `base` serialized with the value at `pointer` replaced by these raw bytes.
fn splice(base: &Value, pointer: &str, raw: &[u8]) -> Vec<u8> {
    let mut v = base.clone();
    if pointer.is_empty() {
        return raw.to_vec();
    }
    *v.pointer_mut(pointer).expect(pointer) = Value::String(MARK.into());
    let text = v.to_string();
    let mark = Value::String(MARK.into()).to_string();
    let at = text.find(&mark).unwrap();
    let mut out = text.as_bytes()[..at].to_vec();
    out.extend_from_slice(raw);
    out.extend_from_slice(&text.as_bytes()[at + mark.len()..]);
    out
}

fn with(base: &Value, pointer: &str, value: Value) -> Vec<u8> {
    let mut v = base.clone();
    *v.pointer_mut(pointer).expect(pointer) = value;
    v.to_string().into_bytes()
}

fn without_member(base: &Value, pointer: &str) -> Vec<u8> {
    let mut v = base.clone();
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    match v.pointer_mut(parent).unwrap() {
        Value::Object(m) => {
            m.remove(last);
        }
        Value::Array(a) => {
            a.remove(0);
        }
        _ => unreachable!(),
    }
    v.to_string().into_bytes()
}

fn printable(rng: &mut StdRng, n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ;/()._-";
    (0..n)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The generator, one category at a time
// ---------------------------------------------------------------------------------------------

/// Every captured beacon and the synthetic ones, sent as browsers and proxies do: always 202.
fn valid(beacons: &[String]) -> Vec<Case> {
    const C: &str = "valid (control)";
    let mut out = Vec::new();
    for (i, b) in beacons.iter().enumerate() {
        let b = b.as_bytes();
        let variants: Vec<(&str, Req)> = vec![
            ("text/plain", post(b)),
            ("application/json", post(b).set("Content-Type", "application/json")),
            ("charset", post(b).set("Content-Type", "text/plain;charset=UTF-8")),
            ("gzip", post(b).gzipped()),
            ("x-gzip", post(b).gzipped().set("Content-Encoding", "x-gzip")),
            ("identity", post(b).header("Content-Encoding", "identity")),
            ("127.0.0.1 origin", post(b).set("Origin", "http://127.0.0.1:8080")),
            (
                "referer only",
                post(b)
                    .without("Origin")
                    .header("Referer", "http://localhost:3000/some/page?q=1"),
            ),
            ("chunked", post(b).chunked(37)),
            ("HTTP/1.0", {
                let mut r = post(b).without("Host");
                r.version = "HTTP/1.0";
                r
            }),
            (
                "browser headers",
                post(b)
                    .header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36")
                    .header("Sec-CH-UA", r#""Chromium";v="120", "Not?A_Brand";v="24""#)
                    .header("Sec-CH-UA-Mobile", "?0")
                    .header("Sec-CH-UA-Platform", r#""Linux""#)
                    .header("Accept-Language", "en-GB,en;q=0.9"),
            ),
        ];
        for (how, req) in variants {
            out.push(case(
                C,
                format!("beacon {i} ({how})"),
                req,
                Expect::Status(202),
            ));
        }
    }
    out
}

/// Every beacon cut short: at every byte of five of them, at 40 random bytes of the rest.
fn truncations(rng: &mut StdRng, beacons: &[String]) -> Vec<Case> {
    const C: &str = "truncation";
    let mut out = Vec::new();
    // The two large page views, the long custom event, and the synthetic ones (the last two).
    let mut everywhere: BTreeSet<usize> = [0, 10, 18].into();
    everywhere.extend([beacons.len() - 2, beacons.len() - 1]);
    for (i, b) in beacons.iter().enumerate() {
        let b = b.as_bytes();
        let cuts: Vec<usize> = if everywhere.contains(&i) {
            (0..b.len()).collect()
        } else {
            (0..40).map(|_| rng.gen_range(0..b.len())).collect()
        };
        for cut in cuts {
            out.push(case(
                C,
                format!("beacon {i} cut at {cut}/{}", b.len()),
                post(&b[..cut]),
                Expect::Status(400),
            ));
        }
    }
    out
}

/// Random single and multiple byte edits of real beacons.
fn byte_flips(rng: &mut StdRng, beacons: &[String], n: usize) -> Vec<Case> {
    const C: &str = "byte flip";
    const SPECIAL: &[u8] = b"\"\\{}[],: \x00\x7f\xff\n\r\t0-.eE";
    let mut out = Vec::new();
    for _ in 0..n {
        let i = rng.gen_range(0..beacons.len());
        let mut b = beacons[i].as_bytes().to_vec();
        let op = rng.gen_range(0..8);
        let p = rng.gen_range(0..b.len());
        let what = match op {
            0 => {
                b[p] = rng.gen();
                "random byte"
            }
            1 => {
                b[p] ^= 1 << rng.gen_range(0..8);
                "bit flip"
            }
            2 => {
                b[p] = SPECIAL[rng.gen_range(0..SPECIAL.len())];
                "special byte"
            }
            3 => {
                b.insert(p, rng.gen());
                "inserted byte"
            }
            4 => {
                b.remove(p);
                "deleted byte"
            }
            5 => {
                let end = (p + rng.gen_range(1..64)).min(b.len());
                let span = b[p..end].to_vec();
                b.splice(p..p, span);
                "duplicated span"
            }
            6 => {
                let q = rng.gen_range(0..b.len());
                b.swap(p, q);
                "swapped bytes"
            }
            _ => {
                for _ in 0..rng.gen_range(3..12) {
                    let q = rng.gen_range(0..b.len());
                    b[q] = rng.gen();
                }
                "several random bytes"
            }
        };
        out.push(case(
            C,
            format!("beacon {i}: {what} at {p}"),
            post(b),
            Expect::Handled,
        ));
    }
    out
}

/// Values of every JSON type, and numbers no field can hold, for every field of the protocol.
fn type_confusion() -> Vec<Case> {
    const C: &str = "type confusion";
    const WRONG: &[&str] = &[
        r#""text""#,
        r#""""#,
        "0",
        "1",
        "-1",
        "1.5",
        "-0",
        "-0.0",
        "1e3",
        "1E-7",
        "1e400",
        "-1e400",
        "4294967296",
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "[]",
        r#"[1,"a",null]"#,
        "{}",
        r#"{"a":{"b":[]}}"#,
        "null",
        "true",
        "false",
        r#""NaN""#,
        r#""Infinity""#,
        r#""-Infinity""#,
        r#""1""#,
        r#""true""#,
        r#""null""#,
    ];
    let full = full_beacon();
    let mut paths = vec![String::new()];
    pointers(&full, "", &mut paths);
    let mut out = Vec::new();
    for p in &paths {
        for w in WRONG {
            out.push(case(
                C,
                format!("{p:?} = {w}"),
                post(splice(&full, p, w.as_bytes())),
                if p.is_empty() {
                    Expect::Status(400)
                } else {
                    Expect::Handled
                },
            ));
        }
        if !p.is_empty() {
            out.push(case(
                C,
                format!("{p:?} missing"),
                post(without_member(&full, p)),
                Expect::Handled,
            ));
        }
    }
    // The two enums, spelled every wrong way.
    for p in ["/kind", "/consent"] {
        for w in [
            "PAGEVIEW",
            "Custom",
            "page view",
            "pageview\u{0}",
            "custom ",
            "",
            "outbound",
            "engagement",
            "denied",
            "unset",
            "granted\u{200b}",
        ] {
            out.push(case(
                C,
                format!("{p:?} = {w:?}"),
                post(with(&full, p, json!(w))),
                Expect::Handled,
            ));
        }
    }
    // Every top-level member twice.
    if let Value::Object(m) = &full {
        for (k, v) in m {
            let text = full.to_string();
            let body = format!("{{\"{k}\":{v},{}", &text[1..]);
            out.push(case(
                C,
                format!("{k:?} twice"),
                post(body),
                Expect::Status(400),
            ));
        }
    }
    // A beacon as an array: serde reads structs from sequences too.
    for body in [
        r#"[1,"demo","pageview","http://localhost:3000/x"]"#,
        r#"[1,"demo"]"#,
        "[1]",
        r#"[2,"demo","pageview","http://localhost:3000/x"]"#,
        r#"[1,"demo","pageview","http://localhost:3000/x","t","","","s",1,null,"","",0,0,"","",null,"unset",false,false,null,"extra"]"#,
        r#"{"v":1,"site":"demo","url":"http://localhost:3000/","device":[]}"#,
        r#"{"v":1,"site":"demo","url":"http://localhost:3000/","device":{"screen":[1,2,3,4,5,6]}}"#,
        r#"{"v":1,"site":"demo","url":"http://localhost:3000/","props":{"a":{"b":1}}}"#,
        r#"{"v":1,"site":"demo","url":"http://localhost:3000/","props":{"a":null}}"#,
        r#"{"v":1,"site":"demo","url":"http://localhost:3000/","props":{"":""}}"#,
        r#"{"v":1,"site":"demo","url":"http://localhost:3000/","props":{"a":1e308,"b":-1e308,"c":5e-324}}"#,
        r#"{"v":1,"site":"demo","kind":"outbound","url":"http://localhost:3000/"}"#,
        r#"{"v":1,"site":"demo","kind":"outbound","url":"http://localhost:3000/","target":"javascript:alert(1)"}"#,
        r#"{"v":1,"site":"demo","kind":"custom","url":"http://localhost:3000/","name":"   "}"#,
        r#"{"v":1,"site":"demo","url":"http:///x"}"#,
        r#"{"v":1,"site":"demo","url":"https://"}"#,
        r#"{"v":1,"site":"demo","url":"javascript://localhost/%0aalert(1)"}"#,
        r#"{"v":1,"site":"","url":"http://localhost:3000/"}"#,
        r#"{"v":1,"site":"nope","url":"http://localhost:3000/"}"#,
        r#"{"v":0,"site":"demo","url":"http://localhost:3000/"}"#,
        r#"{"v":4294967295,"site":"demo","url":"http://localhost:3000/"}"#,
    ] {
        out.push(case(C, body, post(body), Expect::Handled));
    }
    out
}

/// Many keys, long strings at and past every limit, long lists, bodies around 32 KiB on the wire
/// and 64 KiB after gunzip.
fn huge_json(rng: &mut StdRng) -> Vec<Case> {
    const C: &str = "huge JSON";
    let full = full_beacon();
    let mut out = Vec::new();
    let head = r#"{"v":1,"site":"demo","url":"http://localhost:3000/""#;

    // Unknown members, at the top and inside `device`.
    for n in [100, 1_000, 2_000, 2_900, 3_500] {
        let members: String = (0..n).map(|i| format!(r#","k{i}":0"#)).collect();
        let body = format!("{head}{members}}}");
        let expect = fits(body.as_bytes(), Expect::Status(202));
        out.push(case(C, format!("{n} unknown members"), post(body), expect));
        let body = format!(r#"{head},"device":{{"tz":"UTC"{members}}}}}"#);
        let expect = fits(body.as_bytes(), Expect::Status(202));
        out.push(case(
            C,
            format!("{n} unknown device members"),
            post(body),
            expect,
        ));
    }
    // Custom-event properties: 16 allowed, one more refused.
    for n in [16, 17, 100, 1_000, 2_500] {
        let props: Vec<String> = (0..n).map(|i| format!(r#""p{i}":{i}"#)).collect();
        let body = format!(
            r#"{head},"kind":"custom","name":"n","props":{{{}}}}}"#,
            props.join(",")
        );
        let want = if n <= 16 { 202 } else { 400 };
        let expect = fits(body.as_bytes(), Expect::Status(want));
        out.push(case(C, format!("{n} props"), post(body), expect));
    }
    // Every string at, around and far past every documented limit (32, 35, 64, 128, 256, 512,
    // 2048 bytes), in characters of one to four bytes: cut, never refused.
    let mut paths = Vec::new();
    pointers(&full, "", &mut paths);
    let strings: Vec<&String> = paths
        .iter()
        .filter(|p| full.pointer(p).is_some_and(Value::is_string))
        .filter(|p| !matches!(p.as_str(), "/site" | "/kind" | "/consent"))
        .collect();
    let lengths = [
        31, 32, 33, 35, 36, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513, 2047, 2048,
        2049, 8_192, 30_000,
    ];
    for p in &strings {
        for len in lengths {
            let fill = *["a", "é", "€", "😀"].choose(rng).unwrap();
            let prefix = if matches!(p.as_str(), "/url" | "/ref" | "/prev" | "/target") {
                "http://localhost:3000/"
            } else {
                ""
            };
            let mut s = prefix.to_owned();
            while s.len() + fill.len() <= len {
                s.push_str(fill);
            }
            let body = with(&full, p, json!(s));
            let expect = fits(&body, Expect::Status(202));
            out.push(case(
                C,
                format!("{p} of {} bytes of {fill:?}", s.len()),
                post(body),
                expect,
            ));
        }
    }
    // Long lists.
    for p in [
        "/device/langs",
        "/device/plugins",
        "/device/fonts/list",
        "/device/uach/brands",
        "/device/auto/headless",
        "/device/auto/globals",
        "/device/auto/flags",
    ] {
        for n in [8, 9, 16, 17, 32, 33, 64, 65, 1_000, 6_000] {
            let items: Vec<Value> = (0..n).map(|i| json!(format!("x{i}"))).collect();
            let body = with(&full, p, Value::Array(items));
            let expect = fits(&body, Expect::Status(202));
            out.push(case(C, format!("{p} with {n} items"), post(body), expect));
        }
    }
    // Bodies around the wire limit: a title pads a valid beacon to the exact size.
    let padded = |size: usize| {
        let base = format!(r#"{head},"title":""}}"#);
        format!(r#"{head},"title":"{}"}}"#, "t".repeat(size - base.len()))
    };
    for size in [32_767, 32_768, 32_769, 40_000, 1 << 20, 8 << 20] {
        let body = padded(size);
        let want = if size <= WIRE_LIMIT { 202 } else { 413 };
        out.push(case(
            C,
            format!("{size}-byte body"),
            post(body.clone()),
            Expect::Status(want),
        ));
        if size <= 100_000 {
            out.push(case(
                C,
                format!("{size}-byte body, chunked"),
                post(body).chunked(4_096),
                Expect::Status(want),
            ));
        }
    }
    // Whitespace around a valid beacon.
    for n in [1_000, 30_000, 40_000] {
        let ws: String = (0..n).map(|i| [' ', '\n', '\t', '\r'][i % 4]).collect();
        for (at, body) in [
            ("after", format!("{}{ws}", minimal(1))),
            ("before", format!("{ws}{}", minimal(1))),
        ] {
            let expect = fits(body.as_bytes(), Expect::Status(202));
            out.push(case(C, format!("{n} whitespace {at}"), post(body), expect));
        }
    }
    // Numbers of 30,000 digits.
    let digits = "9".repeat(30_000);
    for (p, raw) in [
        ("/seq", digits.clone()),
        ("/ts", format!("-{digits}")),
        ("/device/mem", format!("0.{digits}")),
        ("/device/screen/dpr", format!("{digits}.5")),
        ("/engaged_ms", format!("1{}", "0".repeat(29_999))),
        ("/device/tzo", format!("-0.{}1", "0".repeat(29_990))),
    ] {
        out.push(case(
            C,
            format!("{p} = a {}-digit number", raw.len()),
            post(splice(&full, p, raw.as_bytes())),
            Expect::Handled,
        ));
    }
    // Escapes everywhere: the parser must copy what it cannot borrow.
    for (what, esc) in [
        ("\\u00e9", "\\u00e9"),
        ("\\\"", "\\\""),
        ("\\n", "\\n"),
        ("surrogate pairs", "\\ud83d\\ude00"),
    ] {
        let s = esc.repeat(30_000 / esc.len());
        let body = splice(&full, "/title", format!("\"{s}\"").as_bytes());
        let expect = fits(&body, Expect::Status(202));
        out.push(case(
            C,
            format!("title of {what} escapes"),
            post(body),
            expect,
        ));
        let body = splice(&full, "/props/a", format!("\"{s}\"").as_bytes());
        let expect = fits(&body, Expect::Status(202));
        out.push(case(
            C,
            format!("prop of {what} escapes"),
            post(body),
            expect,
        ));
    }
    // Wide arrays and objects in unknown members.
    for n in [1_000, 10_000, 16_000] {
        let zeros = vec!["0"; n].join(",");
        let body = format!("{head},\"x\":[{zeros}]}}");
        let expect = fits(body.as_bytes(), Expect::Status(202));
        out.push(case(C, format!("unknown array of {n}"), post(body), expect));
        let objs = vec!["{}"; n].join(",");
        let body = format!("{head},\"x\":[{objs}]}}");
        let expect = fits(body.as_bytes(), Expect::Status(202));
        out.push(case(
            C,
            format!("unknown array of {n} objects"),
            post(body),
            expect,
        ));
    }
    // Around the limit after gunzip.
    for size in [GUNZIP_LIMIT - 1, GUNZIP_LIMIT, GUNZIP_LIMIT + 1, 200_000] {
        let beacon = minimal(1);
        let body = format!("{beacon}{}", " ".repeat(size - beacon.len()));
        let want = if size <= GUNZIP_LIMIT { 202 } else { 413 };
        out.push(case(
            C,
            format!("gzip of {size} bytes"),
            post(body).gzipped(),
            Expect::Status(want),
        ));
        let members: String = (0..)
            .map(|i| format!(r#","k{i}":0"#))
            .scan(head.len() + 1, |len, m| {
                *len += m.len();
                (*len <= size).then_some(m)
            })
            .collect();
        let body = format!("{head}{members}}}");
        out.push(case(
            C,
            format!("gzip of {} bytes of members", body.len()),
            post(body).gzipped(),
            Expect::Handled,
        ));
    }
    out
}

/// Nesting far past serde_json's recursion limit, at the top and inside real fields, up to a
/// million levels (gzipped, since 32 KiB on the wire holds only 32,000).
fn deep_nesting() -> Vec<Case> {
    const C: &str = "deep nesting";
    // (name, accepted however deep, body of that depth)
    type Shape = (&'static str, bool, fn(usize) -> String);
    let shapes: [Shape; 9] = [
        ("[ only", false, |d| "[".repeat(d)),
        ("{\"a\": only", false, |d| r#"{"a":"#.repeat(d)),
        ("balanced []", false, |d| {
            format!("{}{}", "[".repeat(d), "]".repeat(d))
        }),
        ("balanced {}", false, |d| {
            format!("{}1{}", r#"{"a":"#.repeat(d), "}".repeat(d))
        }),
        ("alternating", false, |d| r#"[{"a":"#.repeat(d / 2 + 1)),
        // Unknown members are skipped without recursion: any depth that fits is accepted.
        ("in an unknown member", true, |d| {
            let head = r#"{"v":1,"site":"demo","url":"http://localhost:3000/""#;
            format!("{head},\"x\":{}{}}}", "[".repeat(d), "]".repeat(d))
        }),
        ("in props", false, |d| {
            let head = r#"{"v":1,"site":"demo","url":"http://localhost:3000/""#;
            format!(
                "{head},\"props\":{{\"a\":{}{}}}}}",
                "[".repeat(d),
                "]".repeat(d)
            )
        }),
        ("in device.auto.flags", false, |d| {
            let head = r#"{"v":1,"site":"demo","url":"http://localhost:3000/""#;
            format!(
                "{head},\"device\":{{\"auto\":{{\"flags\":{}{}}}}}}}",
                "[".repeat(d),
                "]".repeat(d)
            )
        }),
        ("unclosed in device", false, |d| {
            let head = r#"{"v":1,"site":"demo","url":"http://localhost:3000/""#;
            format!("{head},\"device\":{}", r#"{"tz":"#.repeat(d))
        }),
    ];
    let mut out = Vec::new();
    for (name, deep_ok, shape) in shapes {
        for d in [
            1, 2, 16, 64, 100, 125, 126, 127, 128, 129, 130, 256, 1_000, 4_096, 10_000, 16_000,
            30_000, 60_000, 100_000, 1_000_000,
        ] {
            let body = shape(d);
            let (req, how) = if body.len() <= WIRE_LIMIT {
                (post(body.clone()), "plain")
            } else {
                (post(body.clone()).gzipped(), "gzip")
            };
            let expect = if body.len() > GUNZIP_LIMIT {
                Expect::Status(413)
            } else if deep_ok {
                Expect::Status(202)
            } else if d > 200 {
                Expect::Status(400)
            } else {
                Expect::Handled
            };
            out.push(case(C, format!("{name}, depth {d} ({how})"), req, expect));
        }
    }
    out
}

/// Invalid UTF-8 in every part of a beacon, overlong forms, encoded and escaped surrogates,
/// other encodings of the whole body, and non-ASCII bytes in headers.
fn invalid_utf8(rng: &mut StdRng, beacons: &[String]) -> Vec<Case> {
    const C: &str = "invalid UTF-8";
    let mut out = Vec::new();
    let bad: &[(&str, &[u8])] = &[
        ("ff", b"\xff"),
        ("fe", b"\xfe"),
        ("lone continuation 80", b"\x80"),
        ("lone continuation bf", b"\xbf"),
        ("overlong / (c0 af)", b"\xc0\xaf"),
        ("overlong NUL (c0 80)", b"\xc0\x80"),
        ("overlong c1 bf", b"\xc1\xbf"),
        ("overlong 3-byte /", b"\xe0\x80\xaf"),
        ("overlong 4-byte /", b"\xf0\x80\x80\xaf"),
        ("encoded surrogate d800", b"\xed\xa0\x80"),
        ("encoded surrogate dfff", b"\xed\xbf\xbf"),
        ("CESU-8 emoji", b"\xed\xa0\xbd\xed\xb8\x80"),
        ("above U+10FFFF", b"\xf4\x90\x80\x80"),
        ("5-byte form", b"\xf8\x88\x80\x80\x80"),
        ("6-byte form", b"\xfc\x84\x80\x80\x80\x80"),
        ("cut 2-byte", b"\xc3"),
        ("cut 3-byte", b"\xe2\x82"),
        ("cut 4-byte", b"\xf0\x9f\x98"),
        ("c3 28", b"\xc3\x28"),
        ("latin-1 e9", b"caf\xe9"),
    ];
    let templates: &[(&str, &str)] = &[
        (
            "title",
            r#"{"v":1,"site":"demo","url":"http://localhost:3000/","title":"a@b"}"#,
        ),
        (
            "site",
            r#"{"v":1,"site":"de@mo","url":"http://localhost:3000/"}"#,
        ),
        (
            "url",
            r#"{"v":1,"site":"demo","url":"http://localhost:3000/@"}"#,
        ),
        (
            "a key",
            r#"{"v":1,"site":"demo","url":"http://localhost:3000/","ti@tle":"x"}"#,
        ),
        (
            "a prop key",
            r#"{"v":1,"site":"demo","kind":"custom","name":"n","url":"http://localhost:3000/","props":{"@":1}}"#,
        ),
        (
            "device.tz",
            r#"{"v":1,"site":"demo","url":"http://localhost:3000/","device":{"tz":"@"}}"#,
        ),
        (
            "the start",
            r#"@{"v":1,"site":"demo","url":"http://localhost:3000/"}"#,
        ),
        (
            "between members",
            r#"{"v":1,@"site":"demo","url":"http://localhost:3000/"}"#,
        ),
        (
            "the end",
            r#"{"v":1,"site":"demo","url":"http://localhost:3000/"}@"#,
        ),
    ];
    for (where_, t) in templates {
        let (a, b) = t.split_once('@').unwrap();
        for (name, bytes) in bad {
            let body = [a.as_bytes(), bytes, b.as_bytes()].concat();
            out.push(case(
                C,
                format!("{name} in {where_}"),
                post(body.clone()),
                Expect::Status(400),
            ));
        }
    }
    // Inserted at random places in real beacons.
    for _ in 0..300 {
        let i = rng.gen_range(0..beacons.len());
        let (name, bytes) = bad[rng.gen_range(0..bad.len())];
        let mut body = beacons[i].as_bytes().to_vec();
        let p = rng.gen_range(0..=body.len());
        body.splice(p..p, bytes.iter().copied());
        out.push(case(
            C,
            format!("{name} at {p} of beacon {i}"),
            post(body),
            Expect::Status(400),
        ));
    }
    // JSON escapes: lone and reversed surrogates are refused, valid pairs and NUL accepted.
    let escapes = [
        r"\ud800",
        r"\udfff",
        r"\uDBFF",
        r"\ud800\u0041",
        r"\ud800\ud800",
        r"\udc00\ud800",
        r"\ud800x",
        r"\ud83d\ude00",
        r"\u0000",
        r"\u00",
        r"\uGGGG",
        r"\x41",
        r"\'",
        r"\/",
        r"\U0041",
        "\t",
        "\u{7f}",
        "\u{2028}",
        "\u{feff}",
    ];
    for (where_, t) in &templates[..6] {
        let (a, b) = t.split_once('@').unwrap();
        for e in escapes {
            out.push(case(
                C,
                format!("{e:?} in {where_}"),
                post(format!("{a}{e}{b}")),
                Expect::Handled,
            ));
        }
    }
    // The whole body in another encoding.
    let beacon = minimal(1);
    let utf16le: Vec<u8> = beacon.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let utf16be: Vec<u8> = beacon.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let utf32le: Vec<u8> = beacon
        .chars()
        .flat_map(|c| (c as u32).to_le_bytes())
        .collect();
    for (name, body) in [
        ("UTF-16LE", utf16le.clone()),
        ("UTF-16LE with BOM", [&b"\xff\xfe"[..], &utf16le].concat()),
        ("UTF-16BE", utf16be.clone()),
        ("UTF-16BE with BOM", [&b"\xfe\xff"[..], &utf16be].concat()),
        ("UTF-32LE", utf32le),
        (
            "UTF-8 BOM",
            [&b"\xef\xbb\xbf"[..], beacon.as_bytes()].concat(),
        ),
    ] {
        for ct in [
            "text/plain",
            "text/plain; charset=utf-16",
            "application/json",
        ] {
            out.push(case(
                C,
                format!("{name} body as {ct}"),
                post(body.clone()).set("Content-Type", ct),
                Expect::Status(400),
            ));
        }
    }
    // Bytes above 0x7f in header values (HTTP obs-text): not strings, so treated as absent.
    let headers: [(&str, &[u8], u16); 11] = [
        ("User-Agent", b"Mozilla/5.0 \xff\xfe caf\xe9", 202),
        ("User-Agent", b"\xc0\xaf\xed\xa0\x80", 202),
        ("Origin", b"http://localhost:3000\xff", 403),
        ("Origin", b"http://l\xc3\xb6calhost:3000", 403),
        ("X-Forwarded-For", b"1.2.3.4, \xff\xfe", 202),
        ("X-Real-IP", b"\xff", 202),
        ("Sec-CH-UA", b"\"Chr\xf6mium\";v=\"1\"", 202),
        ("Sec-CH-UA-Platform", b"\"L\xefnux\"", 202),
        ("Accept-Language", b"\xff\xff", 202),
        ("Sec-Purpose", b"prefetch\xff", 202),
        ("Content-Type", b"text/plain; charset=\xff", 415),
    ];
    for (name, value, want) in headers {
        out.push(case(
            C,
            format!("{name} with bytes above 0x7f"),
            post(minimal(1)).set(name, value),
            Expect::Status(want),
        ));
    }
    // An unreadable Content-Encoding is taken as none: a plain body is accepted.
    out.push(case(
        C,
        "Content-Encoding with bytes above 0x7f",
        post(minimal(1)).set("Content-Encoding", b"gz\xefp"),
        Expect::Handled,
    ));
    out.push(case(
        C,
        "Referer with bytes above 0x7f and no Origin",
        post(minimal(1))
            .without("Origin")
            .header("Referer", b"http://localhost:3000/\xff"),
        Expect::Status(403),
    ));
    out
}

/// Content types right and wrong, with and without parameters, for several bodies.
fn content_types() -> Vec<Case> {
    const C: &str = "content type";
    let mut out = Vec::new();
    let long = "x".repeat(8_000);
    let repeated = "text/plain".repeat(1_000);
    let types: Vec<(Option<&str>, bool)> = vec![
        (Some("text/plain"), true),
        (Some("application/json"), true),
        (Some("TEXT/PLAIN"), true),
        (Some("Application/Json"), true),
        (Some(" text/plain "), true),
        (Some("text/plain; charset=utf-8"), true),
        (Some("text/plain;charset=UTF-16"), true),
        (Some("text/plain; charset=ISO-8859-1"), true),
        (Some(r#"application/json; charset="utf-8""#), true),
        (Some("text/plain;;;"), true),
        (Some("text/plain; foo"), true),
        (Some("application/json; boundary=x; charset=utf-8"), true),
        (None, false),
        (Some(""), false),
        (Some(";"), false),
        (Some("text/html"), false),
        (Some("application/x-www-form-urlencoded"), false),
        (Some("multipart/form-data; boundary=----x"), false),
        (Some("application/javascript"), false),
        (Some("application/octet-stream"), false),
        (Some("text/plain2"), false),
        (Some("text/plainx; charset=utf-8"), false),
        (Some("text / plain"), false),
        (Some("text/plain,application/json"), false),
        (Some("application/jsonp"), false),
        (Some("application/json+x"), false),
        (Some("*/*"), false),
        (Some("text/*"), false),
        (Some("plain"), false),
        (Some(long.as_str()), false),
        (Some(repeated.as_str()), false),
    ];
    let bodies: Vec<(&str, Req, u16)> = vec![
        ("a valid beacon", post(minimal(1)), 202),
        ("a gzipped beacon", post(minimal(1)).gzipped(), 202),
        ("broken JSON", post(r#"{"v":1,"#), 400),
        ("an empty body", post(""), 400),
    ];
    for (ct, good) in &types {
        for (what, req, want) in &bodies {
            let req = match ct {
                Some(ct) => req.clone().set("Content-Type", ct),
                None => req.clone().without("Content-Type"),
            };
            let want = if *good { *want } else { 415 };
            out.push(case(
                C,
                format!("{what} as {ct:?}"),
                req,
                Expect::Status(want),
            ));
        }
    }
    out.push(case(
        C,
        "two Content-Type headers, good first",
        post(minimal(1)).header("Content-Type", "text/html"),
        Expect::Handled,
    ));
    out.push(case(
        C,
        "two Content-Type headers, bad first",
        post(minimal(1))
            .set("Content-Type", "text/html")
            .header("Content-Type", "text/plain"),
        Expect::Handled,
    ));
    out
}

/// Gzip bombs, broken gzip, lies about the encoding, exotic gzip headers.
fn gzip_abuse(rng: &mut StdRng) -> Vec<Case> {
    const C: &str = "gzip";
    let mut out = Vec::new();
    let beacon = minimal(1);
    let gz = gzip(beacon.as_bytes());
    let ws_bomb = gzip_repeated(beacon.as_bytes(), b' ', 20 << 20);
    let bombs: Vec<(&str, Vec<u8>, u16)> = vec![
        ("1 MiB of zeros", gzip_repeated(b"", 0, 1 << 20), 413),
        ("10 MiB of zeros", gzip_repeated(b"", 0, 10 << 20), 413),
        ("30 MiB of zeros", gzip_repeated(b"", 0, 30 << 20), 413),
        ("a beacon and 20 MiB of spaces", ws_bomb.clone(), 413),
        ("20 MiB of [", gzip_repeated(b"", b'[', 20 << 20), 413),
        (
            "100 MiB of zeros (over the wire limit)",
            gzip_repeated(b"", 0, 100 << 20),
            413,
        ),
        (
            "25 members of 1 MiB each",
            gzip_repeated(b"", b'a', 1 << 20).repeat(25),
            413,
        ),
        ("a bomb inside gzip", gzip(&ws_bomb), 400),
    ];
    for (name, body, want) in &bombs {
        for k in 0..25 {
            out.push(case(
                C,
                format!("bomb: {name} ({} bytes compressed) #{k}", body.len()),
                post(body.clone()).set("Content-Encoding", "gzip"),
                Expect::Status(*want),
            ));
        }
    }
    // Multi-member streams.
    out.push(case(
        C,
        "1,500 empty members",
        post(gzip(b"").repeat(1_500)).set("Content-Encoding", "gzip"),
        Expect::Status(400),
    ));
    let (a, b) = beacon.split_at(beacon.len() / 2);
    out.push(case(
        C,
        "a beacon split over two members",
        post([gzip(a.as_bytes()), gzip(b.as_bytes())].concat()).set("Content-Encoding", "gzip"),
        Expect::Status(202),
    ));
    out.push(case(
        C,
        "a member followed by garbage",
        post([gz.clone(), b"garbage".to_vec()].concat()).set("Content-Encoding", "gzip"),
        Expect::Handled,
    ));
    // Cut at every byte: the trailer (CRC, length) missing or partial.
    for cut in 0..gz.len() {
        let expect = if cut + 8 >= gz.len() {
            Expect::Handled
        } else {
            Expect::Status(400)
        };
        out.push(case(
            C,
            format!("gzip cut at {cut}/{}", gz.len()),
            post(&gz[..cut]).set("Content-Encoding", "gzip"),
            expect,
        ));
    }
    // A wrong CRC, a wrong length.
    for (name, at) in [("CRC", gz.len() - 8), ("ISIZE", gz.len() - 4)] {
        let mut bad = gz.clone();
        bad[at] ^= 0x55;
        out.push(case(
            C,
            format!("wrong {name}"),
            post(bad).set("Content-Encoding", "gzip"),
            Expect::Status(400),
        ));
    }
    // Random edits of a gzipped beacon, random bytes behind the gzip magic.
    for k in 0..150 {
        let mut bad = gz.clone();
        for _ in 0..rng.gen_range(1..4) {
            let p = rng.gen_range(0..bad.len());
            bad[p] = rng.gen();
        }
        out.push(case(
            C,
            format!("gzip with random bytes #{k}"),
            post(bad).set("Content-Encoding", "gzip"),
            Expect::Handled,
        ));
        let mut junk = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03".to_vec();
        junk.extend((0..rng.gen_range(0..2_000)).map(|_| rng.gen::<u8>()));
        out.push(case(
            C,
            format!("gzip magic then {} random bytes", junk.len() - 10),
            post(junk).set("Content-Encoding", "gzip"),
            Expect::Handled,
        ));
    }
    // Lies about the encoding.
    out.push(case(
        C,
        "gzip claimed, plain body",
        post(beacon.clone()).set("Content-Encoding", "gzip"),
        Expect::Status(400),
    ));
    out.push(case(
        C,
        "plain claimed, gzip body",
        post(gz.clone()),
        Expect::Status(400),
    ));
    out.push(case(
        C,
        "identity claimed, gzip body",
        post(gz.clone()).set("Content-Encoding", "identity"),
        Expect::Status(400),
    ));
    for (ce, gzipped, want) in [
        ("GZIP", true, 202),
        (" gzip ", true, 202),
        ("x-gzip", true, 202),
        ("X-GZIP", true, 202),
        ("identity", false, 202),
        ("", false, 202),
        ("deflate", true, 415),
        ("br", true, 415),
        ("zstd", true, 415),
        ("compress", true, 415),
        ("gzip, gzip", true, 415),
        ("gzip;q=1", true, 415),
        ("identity, gzip", true, 415),
        ("*", true, 415),
        ("chunked", true, 415),
    ] {
        let body = if gzipped {
            gz.clone()
        } else {
            beacon.clone().into_bytes()
        };
        out.push(case(
            C,
            format!("Content-Encoding {ce:?}"),
            post(body).set("Content-Encoding", ce),
            Expect::Status(want),
        ));
    }
    let long = "gzip".repeat(2_000);
    out.push(case(
        C,
        "8,000-byte Content-Encoding",
        post(gz.clone()).set("Content-Encoding", long),
        Expect::Status(415),
    ));
    out.push(case(
        C,
        "two Content-Encoding headers",
        post(gz.clone())
            .set("Content-Encoding", "gzip")
            .header("Content-Encoding", "br"),
        Expect::Handled,
    ));
    // Exotic but valid gzip headers: a 30,000-byte file name, comment, extra field.
    let exotic = |b: flate2::GzBuilder| {
        let mut e = b.write(Vec::new(), Compression::default());
        e.write_all(beacon.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    for (name, body) in [
        (
            "file name",
            exotic(flate2::GzBuilder::new().filename(vec![b'n'; 30_000])),
        ),
        (
            "comment",
            exotic(flate2::GzBuilder::new().comment(vec![b'c'; 30_000])),
        ),
        (
            "extra field",
            exotic(flate2::GzBuilder::new().extra(vec![7; 30_000])),
        ),
    ] {
        out.push(case(
            C,
            format!("gzip with a 30,000-byte {name}"),
            post(body).set("Content-Encoding", "gzip"),
            Expect::Status(202),
        ));
    }
    let mut unterminated = b"\x1f\x8b\x08\x08\x00\x00\x00\x00\x00\x03".to_vec();
    unterminated.extend(vec![b'n'; 30_000]);
    out.push(case(
        C,
        "gzip whose file name never ends",
        post(unterminated).set("Content-Encoding", "gzip"),
        Expect::Status(400),
    ));
    out
}

/// Huge and numerous headers, forwarding chains, origins, client hints, lying lengths, chunked
/// framing and header syntax.
fn header_abuse(rng: &mut StdRng) -> Vec<Case> {
    const C: &str = "headers";
    let mut out = Vec::new();
    let ok = || post(minimal(1));

    // Distinct huge User-Agents on valid beacons.
    for i in 0..HUGE_USER_AGENTS {
        let size = rng.gen_range(64 * 1_024..=120 * 1_024);
        let ua = format!(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.0.0 #{i} {}",
            printable(rng, size)
        );
        out.push(case(
            C,
            format!("User-Agent of {} bytes", ua.len()),
            post(minimal(i)).header("User-Agent", ua),
            Expect::Status(202),
        ));
    }
    // Forwarding chains: long trusted ones are walked to the end, anything unparsable stops them.
    let public_v4 = |rng: &mut StdRng| {
        format!(
            "{}.{}.{}.{}",
            rng.gen_range(1..224),
            rng.gen::<u8>(),
            rng.gen::<u8>(),
            rng.gen::<u8>()
        )
    };
    let v6 = |rng: &mut StdRng| {
        format!(
            "2001:db8:{:x}:{:x}::{:x}",
            rng.gen::<u16>(),
            rng.gen::<u16>(),
            rng.gen::<u16>()
        )
    };
    let chains: Vec<(String, String)> = vec![
        (
            "10,000 trusted hops".into(),
            vec!["127.0.0.1"; 10_000].join(", "),
        ),
        (
            "5,000 public IPv4 hops".into(),
            (0..5_000)
                .map(|_| public_v4(rng))
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            "3,000 IPv6 hops".into(),
            (0..3_000).map(|_| v6(rng)).collect::<Vec<_>>().join(", "),
        ),
        (
            "3,000 bracketed hops with ports".into(),
            (0..3_000)
                .map(|_| format!("[{}]:{}", v6(rng), rng.gen::<u16>()))
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("100 KiB of commas".into(), ",".repeat(100 * 1_024)),
        ("100 KiB of spaces".into(), " ".repeat(100 * 1_024)),
        (
            "a client and 9,000 trusted hops".into(),
            format!("8.8.8.8, {}", vec!["127.0.0.1"; 9_000].join(", ")),
        ),
    ];
    for (what, xff) in chains {
        out.push(case(
            C,
            format!("X-Forwarded-For: {what}"),
            ok().header("X-Forwarded-For", xff),
            Expect::Status(202),
        ));
    }
    for xff in [
        "garbage",
        "1.2.3.4.5",
        ":::::",
        "[::1",
        "999.999.999.999",
        "1.2.3.4:99999",
        "unknown",
        "",
        ",,,,",
        " , ",
        "\"1.2.3.4\"",
        "[2001:db8::1]:443",
        "1.2.3.4, garbage, 127.0.0.1",
        "::ffff:8.8.8.8",
        "0.0.0.0",
        "255.255.255.255",
        "::",
        "fe80::1%eth0",
        "1.2.3.4\t, 5.6.7.8",
        "-1.-1.-1.-1",
        "01.02.03.04",
        "0x7f.1",
        "2130706433",
    ] {
        out.push(case(
            C,
            format!("X-Forwarded-For: {xff:?}"),
            ok().header("X-Forwarded-For", xff),
            Expect::Status(202),
        ));
        out.push(case(
            C,
            format!("X-Real-IP: {xff:?}"),
            ok().header("X-Real-IP", xff),
            Expect::Status(202),
        ));
    }
    let mut many = ok();
    for _ in 0..80 {
        let hop = public_v4(rng);
        many = many.header("X-Forwarded-For", hop);
    }
    out.push(case(
        C,
        "80 X-Forwarded-For headers",
        many,
        Expect::Status(202),
    ));
    out.push(case(
        C,
        "X-Real-IP of 100 KiB",
        ok().header("X-Real-IP", "1".repeat(100 * 1_024)),
        Expect::Status(202),
    ));

    // Origins: refused unless they are the site's, whatever their shape or size.
    let huge_port = format!("{ORIGIN}{}", "0".repeat(100 * 1_024));
    let huge_host = format!("http://{}", "a".repeat(100 * 1_024));
    for (origin, want) in [
        ("https://evil.example", Expect::Status(403)),
        ("http://localhost.evil.com", Expect::Status(403)),
        ("http://localhost:3000.evil.com", Expect::Status(403)),
        ("http://evil.com#@localhost:3000", Expect::Status(403)),
        ("http://evil.com?@localhost:3000", Expect::Status(403)),
        ("http://localhost:99999", Expect::Status(403)),
        ("http://localhost:-1", Expect::Status(403)),
        ("http://localhost:", Expect::Status(403)),
        ("http://localhost:3000/path", Expect::Status(403)),
        ("http://user@localhost:3000", Expect::Status(403)),
        ("ftp://localhost:3000", Expect::Status(403)),
        ("localhost:3000", Expect::Status(403)),
        ("http://", Expect::Status(403)),
        ("http://:3000", Expect::Status(403)),
        ("http://[::1]:3000", Expect::Status(403)),
        ("http://127.0.0.2:3000", Expect::Status(403)),
        (
            "http://localhost:3000, http://evil.example",
            Expect::Status(403),
        ),
        ("*", Expect::Status(403)),
        ("", Expect::Status(403)),
        ("null", Expect::Status(403)),
        (huge_port.as_str(), Expect::Status(403)),
        (huge_host.as_str(), Expect::Status(403)),
        ("http://localhost:3000/", Expect::Status(202)),
        ("HTTP://LOCALHOST:3000", Expect::Status(202)),
        ("http://localhost", Expect::Status(202)),
        ("http://localhost:65535", Expect::Status(202)),
        ("http://localhost:+80", Expect::Handled),
        ("http://localhost:0003000", Expect::Handled),
    ] {
        out.push(case(
            C,
            format!("Origin {:?}", preview(origin.as_bytes())),
            ok().set("Origin", origin),
            want,
        ));
    }
    let huge_referer = format!("{ORIGIN}/{}", "p".repeat(100 * 1_024));
    for (what, req, want) in [
        (
            "null Origin, good Referer",
            ok().set("Origin", "null")
                .header("Referer", "http://localhost:3000/x"),
            202,
        ),
        ("no Origin, no Referer", ok().without("Origin"), 403),
        (
            "no Origin, Referer nonsense",
            ok().without("Origin").header("Referer", "nonsense"),
            403,
        ),
        (
            "no Origin, evil Referer",
            ok().without("Origin")
                .header("Referer", "https://evil.example/http://localhost:3000/"),
            403,
        ),
        (
            "no Origin, 100 KiB Referer",
            ok().without("Origin").header("Referer", huge_referer),
            202,
        ),
        (
            "evil Origin, good Referer",
            ok().set("Origin", "https://evil.example")
                .header("Referer", "http://localhost:3000/"),
            403,
        ),
    ] {
        out.push(case(C, what, req, Expect::Status(want)));
    }
    out.push(case(
        C,
        "two Origin headers, evil first",
        ok().set("Origin", "https://evil.example")
            .header("Origin", ORIGIN),
        Expect::Handled,
    ));

    // Many headers: actix-web takes 96; past that its parser refuses the request.
    for extra in [10, 50, 85, 91, 92, 100, 200, 1_000, 3_000] {
        let mut req = ok();
        for i in 0..extra {
            req = req.header(&format!("X-Pad-{i}"), format!("{i}"));
        }
        let total = extra + 5;
        let expect = if total <= 90 {
            Expect::Status(202)
        } else {
            Expect::Parser
        };
        out.push(case(
            C,
            format!("{total} headers (actix-web takes {MAX_HEADERS})"),
            req,
            expect,
        ));
    }
    // One huge header: up to ~120 KiB is a request, past 128 KiB of head actix answers 431.
    for kib in [64, 120, 129, 200, 1_024, 4_096] {
        let expect = if kib <= 120 {
            Expect::Status(202)
        } else {
            Expect::Parser
        };
        out.push(case(
            C,
            format!("a {kib} KiB header"),
            ok().header("X-Junk", "j".repeat(kib * 1_024)),
            expect,
        ));
    }
    for (name, size) in [
        ("Cookie", 100),
        ("Host", 100),
        ("Accept", 100),
        ("Referer", 60),
    ] {
        out.push(case(
            C,
            format!("a {size} KiB {name}"),
            ok().set(name, "c".repeat(size * 1_024)),
            if name == "Referer" {
                Expect::Status(202)
            } else {
                Expect::Handled
            },
        ));
    }
    // Client hints and languages, malformed and huge, with a device block to compare against.
    let full = full_beacon().to_string();
    let brands = vec![r#""Brand";v="1""#; 3_000].join(", ");
    let langs: Vec<String> = (0..3_000).map(|i| format!("l{i};q=0.{i}")).collect();
    for (name, value) in [
        ("Sec-CH-UA", brands),
        ("Sec-CH-UA", "\"abc".into()),
        ("Sec-CH-UA", "\"".repeat(20_000)),
        ("Sec-CH-UA", ",".repeat(20_000)),
        ("Sec-CH-UA", r#""a";v="#.repeat(5_000)),
        ("Sec-CH-UA", r#""Not;A=Brand";v="99", "Chromium";v="#.into()),
        ("Sec-CH-UA", r#"";v="1""#.into()),
        ("Sec-CH-UA-Platform", "\"Linux".repeat(2_000)),
        ("Sec-CH-UA-Platform", "\"\"".into()),
        ("Sec-CH-UA-Mobile", "?2".into()),
        ("Sec-CH-UA-Mobile", "garbage".repeat(1_000)),
        ("Accept-Language", langs.join(",")),
        ("Accept-Language", ";;;,,,;q=".repeat(2_000)),
        ("Sec-Purpose", "prefetch".into()),
        ("Sec-Purpose", "prefetch;prerender".into()),
        ("Purpose", "prefetch".into()),
        ("Sec-Purpose", "x".repeat(50_000)),
    ] {
        out.push(case(
            C,
            format!(
                "{name}: {}",
                preview(&value.as_bytes()[..value.len().min(40)])
            ),
            post(full.clone()).header(name, value).header(
                "User-Agent",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0",
            ),
            Expect::Status(202),
        ));
    }

    // Content-Length lying smaller than the body: the application reads what was declared.
    let beacon = minimal(1);
    let n = beacon.len();
    for (what, body, declared, want) in [
        ("one byte short", beacon.clone(), n - 1, 400),
        ("half", beacon.clone(), n / 2, 400),
        ("zero", beacon.clone(), 0, 400),
        ("a beacon, then junk", format!("{beacon}JUNK"), n, 202),
        (
            "a beacon, then a smuggled request",
            format!(
                "{beacon}POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            ),
            n,
            202,
        ),
    ] {
        out.push(case(
            C,
            format!("Content-Length {what}"),
            post(body).length(Length::Values(vec![declared.to_string()])),
            Expect::Status(want),
        ));
    }
    // Content-Length far above the limit: refused before any body is read.
    for declared in [
        "40000",
        "4294967296",
        "1000000000000",
        "18446744073709551615",
    ] {
        out.push(case(
            C,
            format!("Content-Length {declared} with a small body"),
            ok().length(Length::Values(vec![declared.into()])),
            Expect::Status(413),
        ));
    }
    // Content-Length that is not a length, or twice: the HTTP parser's business.
    for values in [
        vec![n.to_string(), n.to_string()],
        vec![n.to_string(), (n + 1).to_string()],
        vec![format!("{n}, {n}")],
        vec![format!("+{n}")],
        vec!["-1".into()],
        vec!["abc".into()],
        vec!["1e3".into()],
        vec!["0x40".into()],
        vec!["18446744073709551616".into()],
        vec!["".into()],
        vec![format!(" {n} ")],
    ] {
        out.push(case(
            C,
            format!("Content-Length {values:?}"),
            ok().length(Length::Values(values)),
            Expect::Parser,
        ));
    }
    // Chunked bodies, valid and broken.
    let chunk = |size: usize| post(beacon.clone()).chunked(size);
    out.push(case(C, "1-byte chunks", chunk(1), Expect::Status(202)));
    out.push(case(C, "one chunk", chunk(10_000), Expect::Status(202)));
    let mut ext = chunk(16);
    ext.body = beacon
        .as_bytes()
        .chunks(16)
        .flat_map(|p| {
            [
                format!("{:x};ext=\"v\"\r\n", p.len()).as_bytes(),
                p,
                b"\r\n",
            ]
            .concat()
        })
        .chain(b"0\r\n\r\n".iter().copied())
        .collect();
    out.push(case(C, "chunk extensions", ext, Expect::Handled));
    let mut trailers = chunk(16);
    trailers.body.truncate(trailers.body.len() - 2);
    trailers.body.extend_from_slice(b"X-Trailer: 1\r\n\r\n");
    out.push(case(C, "trailers", trailers, Expect::Handled));
    out.push(case(
        C,
        "no chunks at all",
        post("").chunked(1),
        Expect::Status(400),
    ));
    out.push(case(
        C,
        "40,000 bytes of chunks",
        post(" ".repeat(40_000)).chunked(1_000),
        Expect::Status(413),
    ));
    for (what, req) in [
        (
            "chunked and Content-Length",
            chunk(8).length(Length::Values(vec!["5".into()])),
        ),
        (
            "Transfer-Encoding gzip, chunked",
            chunk(8).set("Transfer-Encoding", "gzip, chunked"),
        ),
        (
            "Transfer-Encoding chunked, gzip",
            chunk(8).set("Transfer-Encoding", "chunked, gzip"),
        ),
        (
            "Transfer-Encoding identity",
            ok().header("Transfer-Encoding", "identity"),
        ),
        (
            "Transfer-Encoding twice",
            chunk(8).header("Transfer-Encoding", "chunked"),
        ),
        (
            "Transfer-Encoding Chunked",
            chunk(8).set("Transfer-Encoding", "Chunked"),
        ),
        ("chunk size zz", {
            let mut r = chunk(8);
            r.body = b"zz\r\nabc\r\n0\r\n\r\n".to_vec();
            r
        }),
        ("chunk size of 19 f's", {
            let mut r = chunk(8);
            r.body = b"fffffffffffffffffff\r\nabc\r\n0\r\n\r\n".to_vec();
            r
        }),
        ("chunk longer than declared", {
            let mut r = chunk(8);
            r.body = b"2\r\nabcdef\r\n0\r\n\r\n".to_vec();
            r
        }),
        ("chunk size line without CRLF", {
            let mut r = chunk(8);
            r.body = b"5\nhello\n0\n\n".to_vec();
            r
        }),
        ("negative chunk size", {
            let mut r = chunk(8);
            r.body = b"-5\r\nhello\r\n0\r\n\r\n".to_vec();
            r
        }),
    ] {
        out.push(case(C, what, req, Expect::Parser));
    }
    // Expect, Connection, Upgrade.
    out.push(case(
        C,
        "Expect: 100-continue",
        ok().header("Expect", "100-continue"),
        Expect::Status(202),
    ));
    out.push(case(
        C,
        "Expect: something else",
        ok().header("Expect", "the-unexpected"),
        Expect::Handled,
    ));
    out.push(case(
        C,
        "Connection: keep-alive",
        ok().set("Connection", "keep-alive"),
        Expect::Status(202),
    ));
    out.push(case(
        C,
        "Upgrade: h2c",
        ok().set("Connection", "Upgrade, HTTP2-Settings")
            .header("Upgrade", "h2c")
            .header("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        Expect::Parser,
    ));
    // Header syntax: the HTTP parser's business.
    let syntax: Vec<(&str, Vec<u8>)> = vec![
        ("a space in a name", b"X Y: 1".to_vec()),
        ("parentheses in a name", b"X(Y): 1".to_vec()),
        ("an empty name", b": 1".to_vec()),
        ("no colon", b"NoColonHere".to_vec()),
        ("a space before the colon", b"X-Y : 1".to_vec()),
        (
            "an obs-fold continuation",
            b"X-A: 1\r\n  continued".to_vec(),
        ),
        ("a NUL in a value", b"X-A: a\x00b".to_vec()),
        ("a bare CR in a value", b"X-A: a\rb".to_vec()),
        ("a DEL in a name", b"X-\x7f: 1".to_vec()),
        ("a high byte in a name", b"X-\xff: 1".to_vec()),
        ("a second Host", b"Host: evil.example".to_vec()),
    ];
    for (what, line) in syntax {
        let req = ok();
        let head = req.head();
        let mut bytes = head[..head.len() - 2].to_vec();
        bytes.extend_from_slice(&line);
        bytes.extend_from_slice(b"\r\n\r\n");
        bytes.extend_from_slice(&req.body);
        out.push(raw(C, format!("header with {what}"), bytes, Expect::Parser));
    }
    let lf_only = String::from_utf8(ok().bytes())
        .unwrap()
        .replace("\r\n", "\n");
    out.push(raw(
        C,
        "LF-only line ends",
        lf_only.into_bytes(),
        Expect::Parser,
    ));
    out.push(case(C, "no Host", ok().without("Host"), Expect::Parser));
    out
}

/// Request lines that are not HTTP/1.1, and random bytes.
fn request_lines(rng: &mut StdRng) -> Vec<Case> {
    const C: &str = "request line";
    let mut out = Vec::new();
    let beacon = minimal(1);
    let rest = format!(
        "Host: localhost\r\nContent-Type: text/plain\r\nOrigin: {ORIGIN}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{beacon}",
        beacon.len()
    );
    for line in [
        "GARBAGE",
        "POST",
        "POST /api/event",
        "POST /api/event HTTP/2.0",
        "POST /api/event HTTP/1.2",
        "POST /api/event HTTP/9.9",
        "POST /api/event HTTP/1",
        "POST /api/event http/1.1",
        "POST /api/event HTTP/1.1 extra",
        "POST  /api/event HTTP/1.1",
        "POST\t/api/event\tHTTP/1.1",
        " POST /api/event HTTP/1.1",
        "POST /api/event#frag HTTP/1.1",
        "POST api/event HTTP/1.1",
        "POST /api/ev ent HTTP/1.1",
        "POST /api/event\x00 HTTP/1.1",
        "POST /api/\x7fevent HTTP/1.1",
        "POST /api/eventé HTTP/1.1",
        "PO ST /api/event HTTP/1.1",
        "POST\u{0}/api/event HTTP/1.1",
        "\u{feff}POST /api/event HTTP/1.1",
    ] {
        out.push(raw(
            C,
            format!("request line {line:?}"),
            format!("{line}\r\n{rest}").into_bytes(),
            Expect::Parser,
        ));
    }
    let long_path = format!("/api/event?{}", "q".repeat(100 * 1_024));
    out.push(raw(
        C,
        "a 100 KiB request target",
        format!("POST {long_path} HTTP/1.1\r\n{rest}").into_bytes(),
        Expect::Parser,
    ));
    out.push(raw(
        C,
        "empty lines before the request line",
        format!("\r\n\r\nPOST /api/event HTTP/1.1\r\n{rest}").into_bytes(),
        Expect::Parser,
    ));
    out.push(raw(
        C,
        "the HTTP/2 preface",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        Expect::Parser,
    ));
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.extend((0..500).map(|_| rng.gen::<u8>()));
    out.push(raw(C, "a TLS ClientHello", hello, Expect::Parser));
    out.push(raw(
        C,
        "HTTP/1.0 POST without Content-Length",
        format!("POST /api/event HTTP/1.0\r\nContent-Type: text/plain\r\nOrigin: {ORIGIN}\r\n\r\n{beacon}")
            .into_bytes(),
        Expect::Parser,
    ));
    for k in 0..150 {
        let n = rng.gen_range(1..4_096);
        let mut junk: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
        if k % 2 == 0 {
            // Printable junk that looks more like text.
            junk.iter_mut().for_each(|b| *b = 0x20 + *b % 0x5f);
        }
        junk.extend_from_slice(b"\r\n\r\n");
        out.push(raw(C, format!("{n} random bytes"), junk, Expect::Parser));
    }
    out
}

/// Other methods on the endpoint, other paths for the beacon.
fn methods_and_paths() -> Vec<Case> {
    const C: &str = "method / path";
    let mut out = Vec::new();
    let beacon = minimal(1);
    for m in [
        "GET", "PUT", "DELETE", "PATCH", "TRACE", "FOO", "post", "P0ST", "POSTX", "PROPFIND",
        "M-SEARCH",
    ] {
        for body in ["", beacon.as_str()] {
            out.push(case(
                C,
                format!("{m} /api/event with {} body bytes", body.len()),
                post(body).method(m),
                Expect::Status(405),
            ));
        }
    }
    out.push(case(
        C,
        "CONNECT",
        post(beacon.clone())
            .method("CONNECT")
            .target("localhost:80"),
        Expect::Parser,
    ));
    for (path, want) in [
        ("/", 404),
        ("/healthz", 404),
        ("/readyz", 404),
        ("/metrics", 404),
        ("/footfall.js", 404),
        ("/api", 404),
        ("/api/", 404),
        ("/api/event/", 404),
        ("/API/EVENT", 404),
        ("/api/events", 404),
        ("/api//event", 404),
        ("/api/event/../event", 404),
        ("/api/event%00", 404),
        ("/api/event;x", 404),
        ("/%2e%2e/%2e%2e/etc/passwd", 404),
        ("*", 404),
        ("/api/event?", 202),
        ("/api/event?x=1&x=2&%ff%fe", 202),
    ] {
        out.push(case(
            C,
            format!("POST {path}"),
            post(beacon.clone()).target(path),
            Expect::Status(want),
        ));
    }
    for path in [
        "/api/%65vent",
        "//api/event",
        "/./api/event",
        "http://localhost/api/event",
        "http://evil.example/api/event",
    ] {
        out.push(case(
            C,
            format!("POST {path}"),
            post(beacon.clone()).target(path),
            Expect::Handled,
        ));
    }
    let long_query = format!("/api/event?{}", "q=1&".repeat(2_500));
    out.push(case(
        C,
        "POST with a 10 KB query",
        post(beacon.clone()).target(long_query),
        Expect::Status(202),
    ));
    out
}

/// Bodies that are empty, blank or JSON but not an object.
fn empty_bodies() -> Vec<Case> {
    const C: &str = "empty";
    let mut out = Vec::new();
    for body in [
        "", " ", "\n", "\r\n", "\t \r\n", "null", "{}", "[]", "\"\"", "0", "true", "\"{}\"",
    ] {
        for ct in ["text/plain", "application/json"] {
            out.push(case(
                C,
                format!("{body:?} as {ct}"),
                post(body).set("Content-Type", ct),
                Expect::Status(400),
            ));
            out.push(case(
                C,
                format!("{body:?} as {ct}, gzipped"),
                post(body).set("Content-Type", ct).gzipped(),
                Expect::Status(400),
            ));
        }
    }
    for n in [100, 10_000, 32_768, 32_769] {
        let blank = " \n".repeat(n / 2 + 1)[..n].to_owned();
        let want = if n <= WIRE_LIMIT { 400 } else { 413 };
        out.push(case(
            C,
            format!("{n} blank bytes"),
            post(blank),
            Expect::Status(want),
        ));
    }
    out.push(case(
        C,
        "no Content-Length, no body",
        post("").length(Length::Omit),
        Expect::Status(400),
    ));
    out.push(case(
        C,
        "no Content-Type, no body",
        post("").without("Content-Type"),
        Expect::Status(415),
    ));
    out
}

/// Bodies that arrive too slowly or never, and heads that never finish. The application waits
/// 10 s for a body, then answers 408; actix-web waits 5 s for a head.
fn slow_bodies() -> Vec<Case> {
    const C: &str = "slow body";
    let mut out = Vec::new();
    let beacon = minimal(1);
    let req = post(beacon.clone());
    let head = req.head();
    let body = beacon.as_bytes();
    let now = Duration::ZERO;
    let slow = |what: String, pieces: Vec<(Duration, Vec<u8>)>, expect: Expect| Case {
        category: C,
        what,
        wire: Wire::Paced(pieces),
        expect,
    };
    for k in 0..6 {
        out.push(slow(
            format!("head, then nothing #{k}"),
            vec![(now, head.clone())],
            Expect::Status(408),
        ));
        out.push(slow(
            format!("head and half the body, then nothing #{k}"),
            vec![(now, [&head[..], &body[..body.len() / 2]].concat())],
            Expect::Status(408),
        ));
        let mut trickle = vec![(now, head.clone())];
        trickle.extend(body.iter().map(|b| (Duration::from_millis(700), vec![*b])));
        out.push(slow(
            format!("body at a byte every 700 ms #{k}"),
            trickle,
            Expect::Status(408),
        ));
    }
    for k in 0..3 {
        let gz = post(beacon.clone()).gzipped();
        let mut trickle = vec![(now, gz.head())];
        trickle.extend(
            gz.body
                .iter()
                .map(|b| (Duration::from_millis(400), vec![*b])),
        );
        out.push(slow(
            format!("gzip body at a byte every 400 ms #{k}"),
            trickle,
            Expect::Status(408),
        ));
        let ch = post(beacon.clone()).chunked(8);
        let half = ch.body.len() / 2;
        out.push(slow(
            format!("chunked body stalled halfway #{k}"),
            vec![(now, [&ch.head()[..], &ch.body[..half]].concat())],
            Expect::Status(408),
        ));
    }
    for k in 0..4 {
        let lying =
            post(beacon.clone()).length(Length::Values(vec![(body.len() + 100).to_string()]));
        out.push(slow(
            format!("Content-Length 100 more than sent #{k}"),
            vec![(now, lying.bytes())],
            Expect::Status(408),
        ));
    }
    for k in 0..6 {
        out.push(Case {
            category: C,
            what: format!("half a body, then hang up after {} ms", 100 + 500 * k),
            wire: Wire::HangUp(
                vec![(now, [&head[..], &body[..body.len() / 2]].concat())],
                Duration::from_millis(100 + 500 * k),
            ),
            expect: Expect::Gone,
        });
    }
    for k in 0..2 {
        let lying = post(beacon.clone()).length(Length::Values(vec!["30000".into()]));
        out.push(Case {
            category: C,
            what: format!("Content-Length 30000, a beacon, then hang up #{k}"),
            wire: Wire::HangUp(vec![(now, lying.bytes())], Duration::from_secs(2)),
            expect: Expect::Gone,
        });
    }
    for k in 0..3 {
        let trickle = head
            .iter()
            .map(|b| (Duration::from_millis(500), vec![*b]))
            .collect();
        out.push(slow(
            format!("head at a byte every 500 ms #{k}"),
            trickle,
            Expect::Parser,
        ));
        out.push(slow(
            format!("half a head, then nothing #{k}"),
            vec![(now, head[..head.len() / 2].to_vec())],
            Expect::Parser,
        ));
    }
    // A websocket upgrade nobody accepts: actix-web hands the application the rest of the
    // connection as the body, which never ends.
    let upgrade = post(beacon.clone())
        .set("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "13");
    out.push(slow(
        "Upgrade: websocket".into(),
        vec![(now, upgrade.bytes())],
        Expect::Status(408),
    ));
    for k in 0..2 {
        out.push(slow(
            format!("connect, send nothing #{k}"),
            vec![],
            Expect::Parser,
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Running it
// ---------------------------------------------------------------------------------------------

/// Peak server memory per phase, sampled in the background.
struct Sampler {
    pid: u32,
    phase: Mutex<&'static str>,
    peaks: Mutex<BTreeMap<&'static str, u64>>,
    stop: AtomicBool,
}

impl Sampler {
    fn sample(&self) -> u64 {
        let rss = rss_of(self.pid);
        let phase = *self.phase.lock().unwrap();
        let mut peaks = self.peaks.lock().unwrap();
        let peak = peaks.entry(phase).or_default();
        *peak = (*peak).max(rss);
        rss
    }

    fn enter(&self, phase: &'static str) {
        self.sample();
        *self.phase.lock().unwrap() = phase;
        self.sample();
    }
}

/// Runs the cases at `indices` with `CONCURRENCY` requests in flight.
async fn run(
    addr: SocketAddr,
    cases: &Arc<Vec<Case>>,
    indices: Vec<usize>,
) -> Vec<(usize, Outcome)> {
    let indices = Arc::new(indices);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (cases, indices, next) = (cases.clone(), indices.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = indices.get(k) else { break };
                done.push((i, exchange(addr, &cases[i].wire).await));
            }
            done
        }));
    }
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_requests_get_a_4xx_json_error_or_202_and_never_hurt_the_server() {
    tokio::time::timeout(Duration::from_secs(180), hostile_corpus())
        .await
        .expect("the hostile corpus did not finish within 180 s");
}

async fn hostile_corpus() {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut beacons = real_beacons();
    beacons.push(unicode_beacon());
    beacons.push(full_beacon().to_string());

    // The corpus, category by category; the slow bodies run apart, all at once.
    let mut groups: Vec<(&'static str, Vec<Case>)> = Vec::new();
    let mut add = |cases: Vec<Case>| groups.push((cases[0].category, cases));
    add(valid(&beacons));
    add(truncations(&mut rng, &beacons));
    add(byte_flips(&mut rng, &beacons, 2_000));
    add(type_confusion());
    add(huge_json(&mut rng));
    add(deep_nesting());
    add(invalid_utf8(&mut rng, &beacons));
    add(content_types());
    add(gzip_abuse(&mut rng));
    add(header_abuse(&mut rng));
    add(request_lines(&mut rng));
    add(methods_and_paths());
    add(empty_bodies());
    add(slow_bodies());
    let (slow_name, slow) = groups.pop().unwrap();

    let mut cases = Vec::new();
    let mut phases: Vec<(&'static str, Vec<usize>)> = Vec::new();
    for (name, group) in groups {
        let start = cases.len();
        cases.extend(group);
        let mut indices: Vec<usize> = (start..cases.len()).collect();
        indices.shuffle(&mut rng);
        phases.push((name, indices));
    }
    let generated = cases.len() + slow.len();
    let warm_every = cases.len() / WARM_UP;
    let mut warm_up = Vec::new();
    for (_, indices) in &mut phases {
        let (warm, rest): (Vec<usize>, Vec<usize>) =
            indices.iter().partition(|&&i| i % warm_every == 0);
        warm_up.extend(warm);
        *indices = rest;
    }
    warm_up.shuffle(&mut rng);
    let cases = Arc::new(cases);
    println!(
        "generated {generated} requests ({} main, {} slow) in {:.1?}",
        cases.len(),
        slow.len(),
        started.elapsed()
    );
    assert!(generated >= 10_000, "only {generated} requests");

    let (server, _dir) = tokio::task::spawn_blocking(start_server).await.unwrap();
    let addr = server.addr;
    let rss_start = server.rss();
    let sampler = Arc::new(Sampler {
        pid: server.pid(),
        phase: Mutex::new("start"),
        peaks: Mutex::new(BTreeMap::new()),
        stop: AtomicBool::new(false),
    });
    let sampling = {
        let sampler = sampler.clone();
        tokio::spawn(async move {
            while !sampler.stop.load(Ordering::Relaxed) {
                sampler.sample();
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    let mut results: Vec<(usize, Outcome)> = Vec::new();
    let mut timings = Vec::new();

    // Warm-up: a thousand requests from every category, then the memory baseline.
    sampler.enter("warm-up");
    let t = Instant::now();
    let n = warm_up.len();
    results.extend(run(addr, &cases, warm_up).await);
    timings.push(("warm-up", n, t.elapsed()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_warm = server.rss();

    // The slow bodies start now and finish in the background, all at once.
    let slow = Arc::new(slow);
    let slow_started = Instant::now();
    let slow_tasks: Vec<_> = (0..slow.len())
        .map(|i| {
            let slow = slow.clone();
            tokio::spawn(async move { exchange(addr, &slow[i].wire).await })
        })
        .collect();

    for (name, indices) in phases {
        sampler.enter(name);
        let t = Instant::now();
        let n = indices.len();
        results.extend(run(addr, &cases, indices).await);
        timings.push((name, n, t.elapsed()));
    }
    sampler.enter(slow_name);
    let mut slow_results = Vec::new();
    for (i, task) in slow_tasks.into_iter().enumerate() {
        slow_results.push((i, task.await.unwrap()));
    }
    timings.push((slow_name, slow.len(), slow_started.elapsed()));

    // Still serving.
    sampler.enter("end");
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let after = http
        .post(format!("{}/api/event", server.base))
        .header("content-type", "text/plain")
        .header("origin", ORIGIN)
        .body(minimal(424_242))
        .send()
        .await
        .expect("the server still answers");
    let after_status = after.status().as_u16();
    let health = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("the server still answers /healthz")
        .status()
        .as_u16();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_end = server.rss();
    sampler.stop.store(true, Ordering::Relaxed);
    sampling.await.unwrap();

    // Judge every answer.
    let mut table: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut failures = Vec::new();
    // Requests broken at the HTTP level: how many actix-web refused, how many reached the app.
    let (mut http_level, mut refused, mut reached) = (0, 0, 0);
    let mut judge_one = |c: &Case, outcome: &Outcome| {
        *table
            .entry(c.category)
            .or_default()
            .entry(outcome.label())
            .or_default() += 1;
        if c.expect == Expect::Parser {
            http_level += 1;
            match outcome {
                Outcome::Bare(_) | Outcome::Closed => refused += 1,
                Outcome::App(_) => reached += 1,
                _ => {}
            }
        }
        if let Err(why) = judge(c.expect, outcome) {
            failures.push(format!(
                "[{}] {}: {why}\n    request: {}",
                c.category,
                c.what,
                preview(&c.wire.bytes())
            ));
        }
    };
    for (i, outcome) in &results {
        judge_one(&cases[*i], outcome);
    }
    for (i, outcome) in &slow_results {
        judge_one(&slow[*i], outcome);
    }
    let total = results.len() + slow_results.len();

    // The report.
    let columns: BTreeSet<String> = table.values().flat_map(|m| m.keys().cloned()).collect();
    let mut report = format!("\n{:<18}{:>7}", "category", "total");
    for col in &columns {
        report.push_str(&format!("{col:>10}"));
    }
    report.push('\n');
    let mut sums: BTreeMap<&String, usize> = BTreeMap::new();
    for (category, counts) in &table {
        let n: usize = counts.values().sum();
        report.push_str(&format!("{category:<18}{n:>7}"));
        for col in &columns {
            let k = counts.get(col).copied().unwrap_or(0);
            *sums.entry(col).or_default() += k;
            report.push_str(&format!("{k:>10}"));
        }
        report.push('\n');
    }
    report.push_str(&format!("{:<18}{total:>7}", "all"));
    for col in &columns {
        report.push_str(&format!("{:>10}", sums.get(col).copied().unwrap_or(0)));
    }
    report.push_str(&format!(
        "\n\nbroken at the HTTP level: {http_level}, of which {refused} were refused by actix-web's \
         HTTP/1 layer (bare 4xx or closed) and {reached} reached the application\n\n"
    ));
    report.push_str(&format!(
        "{:<18}{:>7}{:>10}{:>14}\n",
        "phase", "cases", "time", "peak RSS"
    ));
    let peaks = sampler.peaks.lock().unwrap().clone();
    for (name, n, took) in &timings {
        report.push_str(&format!(
            "{name:<18}{n:>7}{:>10}{:>14}\n",
            format!("{:.1?}", took),
            mib(peaks.get(name).copied().unwrap_or(0))
        ));
    }
    report.push_str(&format!(
        "\nRSS: at start {}, after warm-up {}, at the end {} (limit {}), highest {}\n",
        mib(rss_start),
        mib(rss_warm),
        mib(rss_end),
        mib(rss_warm + RSS_SLACK),
        mib(peaks.values().copied().max().unwrap_or(0)),
    ));
    report.push_str(&format!("{total} requests in {:.1?}\n", started.elapsed()));
    println!("{report}");

    // Stop it the way an operator does, before judging, so every verdict below is known.
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let mut server = server;
        let status = server.sigterm();
        (status, server.stderr())
    })
    .await
    .unwrap();

    assert!(
        !stderr.contains("panicked"),
        "the server panicked:\n{stderr}"
    );
    assert!(status.success(), "exit after SIGTERM: {status:?}\n{stderr}");
    assert!(
        failures.is_empty(),
        "{} of {total} requests were not answered as specified; the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(total, generated);
    assert_eq!(after_status, 202, "a valid beacon after the corpus");
    assert_eq!(health, 200, "/healthz after the corpus");
    assert!(
        rss_end < rss_warm + RSS_SLACK,
        "memory grew from {} after the warm-up to {} at the end (limit {}); peak per phase: {}",
        mib(rss_warm),
        mib(rss_end),
        mib(rss_warm + RSS_SLACK),
        timings
            .iter()
            .map(|(name, ..)| format!("{name} {}", mib(peaks.get(name).copied().unwrap_or(0))))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
