//! Mostly-valid beacons built from `arbitrary` data, so the fuzzer spends its time in validation
//! and cutting rather than in JSON syntax errors: strings are runs of chosen characters (1–4 byte
//! UTF-8, quotes, backslashes, controls) with repeat counts, so any length around a limit is a
//! few bytes of input; each run is written raw or `\u`-escaped (borrowed vs. owned `Cow`); lists
//! can exceed their item limits. The JSON text goes through the same oracle as the `parse` target.
#![no_main]

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// Characters chosen to sit on both sides of UTF-8 and JSON-escaping boundaries.
#[rustfmt::skip]
const ALPHABET: &[char] = &[
    'a', 'Z', '0', ' ', '/', '.', ':', '"', '\\', '\n', '\t', '\u{0}', '\u{1f}', '\u{7f}', 'é', 'ж',
    '\u{7ff}', '€', '\u{ffff}', '\u{10000}', '😀', '\u{10ffff}', '\u{2028}', '\u{feff}',
];

/// Upper bound for one generated string, in characters (the largest limit is 2048 bytes).
const MAX_CHARS: usize = 2300;

#[derive(Arbitrary, Debug)]
struct Run {
    ch: u8,
    other: char,
    repeat: u16,
    escaped: bool,
}

#[derive(Arbitrary, Debug)]
struct Str(Vec<Run>);

impl Str {
    fn write(&self, out: &mut String) {
        out.push('"');
        let mut n = 0;
        for run in &self.0 {
            let c = ALPHABET.get(run.ch as usize).copied().unwrap_or(run.other);
            let times = (run.repeat as usize % 600).min(MAX_CHARS - n);
            n += times;
            for _ in 0..times {
                write_char(out, c, run.escaped);
            }
        }
        out.push('"');
    }
}

fn write_char(out: &mut String, c: char, escaped: bool) {
    if escaped {
        let mut units = [0u16; 2];
        for u in c.encode_utf16(&mut units) {
            write!(out, "\\u{u:04x}").unwrap();
        }
    } else {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Scheme {
    Https,
    Http,
    Other,
    None,
    NoHost,
}

#[derive(Arbitrary, Debug)]
struct Url(Scheme, Str);

impl Url {
    fn write(&self, out: &mut String) {
        let prefix = match self.0 {
            Scheme::Https => "https://",
            Scheme::Http => "http://",
            Scheme::Other => "javascript:",
            Scheme::None => "",
            Scheme::NoHost => "https:///",
        };
        let mut s = String::new();
        self.1.write(&mut s);
        out.push('"');
        out.push_str(prefix);
        out.push_str(&s[1..]);
    }
}

/// A list whose items may repeat, so 33 items cost a few bytes of input.
#[derive(Arbitrary, Debug)]
struct List(Vec<(Str, u8)>);

impl List {
    fn write(&self, out: &mut String) {
        out.push('[');
        let mut first = true;
        let mut n = 0;
        for (s, times) in &self.0 {
            for _ in 0..(*times % 40).max(1) {
                if n == 80 {
                    break;
                }
                n += 1;
                if !first {
                    out.push(',');
                }
                first = false;
                s.write(out);
            }
        }
        out.push(']');
    }
}

#[derive(Arbitrary, Debug)]
enum Prop {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(Str),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Text(Str),
    List(List),
}

impl Value {
    fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => write!(out, "{b}").unwrap(),
            Value::Int(i) => write!(out, "{i}").unwrap(),
            Value::Text(s) => s.write(out),
            Value::List(l) => l.write(out),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum KindName {
    Pageview,
    Engagement,
    Outbound,
    Custom,
    Absent,
    Bogus(Str),
}

#[derive(Arbitrary, Debug)]
struct Beacon {
    /// `None` = the supported version 1.
    v: Option<u32>,
    site: Str,
    kind: KindName,
    url: Option<Url>,
    target: Option<Url>,
    strings: Vec<(u8, Str)>,
    numbers: Vec<(u8, i64)>,
    props: Option<Vec<(Str, Prop)>>,
    /// Many small props, to cross the 16-prop limit cheaply.
    prop_count: u8,
    device: Option<Device>,
    /// Unknown or duplicated keys with loose values.
    extra: Vec<(u8, Str, Value)>,
}

#[derive(Arbitrary, Debug)]
struct Device {
    strings: Vec<(u8, Str)>,
    langs: Option<List>,
    plugins: Option<List>,
    uach: Option<(List, bool, Str, Str, Str)>,
    canvas: Option<(Str, Option<bool>)>,
    webgl: Option<(Str, Str, Str)>,
    fonts: Option<(Str, u32, Option<List>)>,
    auto: Option<Auto>,
    numbers: Vec<(u8, i64)>,
    screen: Option<(u32, u32, f32)>,
}

#[derive(Arbitrary, Debug)]
struct Auto {
    webdriver: bool,
    headless: Option<List>,
    globals: Option<List>,
    flags: Option<List>,
}

const TOP_STRINGS: &[&str] = &["title", "ref", "prev", "sid", "uid", "cid", "name", "site"];
const TOP_NUMBERS: &[&str] = &["seq", "ts", "engaged_ms", "wall_ms", "v"];
const DEV_STRINGS: &[&str] = &["tz", "platform", "arch", "bits", "arch_src"];
const DEV_NUMBERS: &[&str] = &["tzo", "cores", "mem", "touch"];
const EXTRA_KEYS: &[&str] = &["consent", "gpc", "dnt", "kind", "props", "device", "future"];

struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }
    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write!(self.out, "\"{k}\":").unwrap();
        self.out
    }
    fn end(self) {
        self.out.push('}');
    }
}

fn pick<'s>(names: &[&'s str], i: u8) -> &'s str {
    names[i as usize % names.len()]
}

fn opt_list(o: &mut Obj<'_>, k: &str, l: &Option<List>) {
    if let Some(l) = l {
        l.write(o.key(k));
    }
}

impl Beacon {
    fn write(&self, out: &mut String) {
        let mut o = Obj::new(out);
        write!(o.key("v"), "{}", self.v.unwrap_or(1)).unwrap();
        self.site.write(o.key("site"));
        match &self.kind {
            KindName::Pageview => o.key("kind").push_str("\"pageview\""),
            KindName::Engagement => o.key("kind").push_str("\"engagement\""),
            KindName::Outbound => o.key("kind").push_str("\"outbound\""),
            KindName::Custom => o.key("kind").push_str("\"custom\""),
            KindName::Absent => {}
            KindName::Bogus(s) => s.write(o.key("kind")),
        }
        if let Some(u) = &self.url {
            u.write(o.key("url"));
        }
        if let Some(u) = &self.target {
            u.write(o.key("target"));
        }
        for (k, s) in &self.strings {
            s.write(o.key(pick(TOP_STRINGS, *k)));
        }
        for (k, n) in &self.numbers {
            write!(o.key(pick(TOP_NUMBERS, *k)), "{n}").unwrap();
        }
        if self.props.is_some() || self.prop_count > 0 {
            let out = o.key("props");
            let mut p = Obj::new(out);
            for (k, v) in self.props.iter().flatten() {
                let mut key = String::new();
                k.write(&mut key);
                let out = p.key(&key[1..key.len() - 1]);
                match v {
                    Prop::Bool(b) => write!(out, "{b}").unwrap(),
                    Prop::Int(i) => write!(out, "{i}").unwrap(),
                    Prop::Float(f) if f.is_finite() => write!(out, "{f:e}").unwrap(),
                    Prop::Float(_) => out.push_str("null"),
                    Prop::Text(s) => s.write(out),
                }
            }
            for i in 0..self.prop_count % 24 {
                write!(p.key(&format!("k{i}")), "{i}").unwrap();
            }
            p.end();
        }
        if let Some(d) = &self.device {
            d.write(o.key("device"));
        }
        for (k, key, v) in &self.extra {
            if *k < 128 {
                v.write(o.key(pick(EXTRA_KEYS, *k)));
            } else {
                let mut name = String::new();
                key.write(&mut name);
                v.write(o.key(&name[1..name.len() - 1]));
            }
        }
        o.end();
    }
}

impl Device {
    fn write(&self, out: &mut String) {
        let mut o = Obj::new(out);
        for (k, s) in &self.strings {
            s.write(o.key(pick(DEV_STRINGS, *k)));
        }
        for (k, n) in &self.numbers {
            write!(o.key(pick(DEV_NUMBERS, *k)), "{n}").unwrap();
        }
        if let Some((w, h, dpr)) = self.screen {
            let dpr = if dpr.is_finite() { dpr } else { 1.0 };
            write!(o.key("screen"), "{{\"w\":{w},\"h\":{h},\"dpr\":{dpr:e}}}").unwrap();
        }
        opt_list(&mut o, "langs", &self.langs);
        opt_list(&mut o, "plugins", &self.plugins);
        if let Some((brands, mobile, platform, pv, model)) = &self.uach {
            let mut u = Obj::new(o.key("uach"));
            brands.write(u.key("brands"));
            write!(u.key("mobile"), "{mobile}").unwrap();
            platform.write(u.key("platform"));
            pv.write(u.key("pv"));
            model.write(u.key("model"));
            u.end();
        }
        if let Some((h, stable)) = &self.canvas {
            let mut c = Obj::new(o.key("canvas"));
            h.write(c.key("h"));
            if let Some(s) = stable {
                write!(c.key("stable"), "{s}").unwrap();
            }
            c.end();
        }
        if let Some((vendor, renderer, h)) = &self.webgl {
            let mut w = Obj::new(o.key("webgl"));
            vendor.write(w.key("vendor"));
            renderer.write(w.key("renderer"));
            h.write(w.key("h"));
            w.end();
        }
        if let Some((h, n, list)) = &self.fonts {
            let mut f = Obj::new(o.key("fonts"));
            h.write(f.key("h"));
            write!(f.key("n"), "{n}").unwrap();
            opt_list(&mut f, "list", list);
            f.end();
        }
        if let Some(auto) = &self.auto {
            let mut a = Obj::new(o.key("auto"));
            write!(a.key("webdriver"), "{}", auto.webdriver).unwrap();
            opt_list(&mut a, "headless", &auto.headless);
            opt_list(&mut a, "globals", &auto.globals);
            opt_list(&mut a, "flags", &auto.flags);
            a.end();
        }
        o.end();
    }
}

/// With `FOOTFALL_FUZZ_DUMP=<dir>`, every generated body is also written there (as JSON, named by
/// a hash of its content), e.g. to feed a structured corpus to the byte-level `parse` target:
/// `FOOTFALL_FUZZ_DUMP=/tmp/json fuzz/target/*/release/parse_structured -runs=0 fuzz/corpus/parse_structured`.
fn dump(json: &str) {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    if let Some(dir) = DIR.get_or_init(|| std::env::var_os("FOOTFALL_FUZZ_DUMP").map(PathBuf::from))
    {
        let mut h = DefaultHasher::new();
        json.hash(&mut h);
        std::fs::write(dir.join(format!("{:016x}.json", h.finish())), json).unwrap();
    }
}

fuzz_target!(|b: Beacon| {
    let mut json = String::new();
    b.write(&mut json);
    dump(&json);
    footfall_fuzz::check_parse(json.as_bytes());
});
