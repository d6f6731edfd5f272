//! The JSON reader under the beacon decoder: strict RFC 8259 over one body, strings borrowed unless escaped.
//!
//! Why not `serde_json`: it was the parser until the `parse` bench showed it alone takes ~3.3 µs of
//! a 1.4 KiB beacon on these machines, at the 250 k/s target before any validation; `simd-json` was
//! 15–20 % faster and `sonic-rs` slower (A/B in one process, `benches/README.md`). A reader that
//! knows the beacon's shape skips serde's generic visitor layers. It accepts exactly the JSON that
//! `serde_json` accepts for the same types, which the tests and the `parse` fuzz target check
//! against `serde_json` itself on every input (`tests/json_differential.rs`, `fuzz/src/lib.rs`).
//!
//! Rules (serde_json's): whitespace is space, tab, LF, CR; strings forbid raw control characters,
//! and unpaired surrogate escapes in every string that is kept (values under unknown keys are
//! checked against the grammar only, where `\ud800` is allowed); numbers follow the JSON grammar
//! (no leading zeros, no `+`, no bare `.`); integers are read exactly and floats correctly rounded.
//! Recursion follows the beacon's own shape (four levels at most); values under unknown keys,
//! however deeply nested, are checked by an iterative `skip`, so no input can exhaust the stack
//! (serde_json skips them the same way and sets no depth limit there either; the body-size limit
//! bounds them).

use std::borrow::Cow;

/// What went wrong and where: the message of a 400, so it names the byte.
#[derive(Debug)]
pub struct JsonError {
    msg: Cow<'static, str>,
    at: usize,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.msg, self.at)
    }
}

pub type Result<T> = std::result::Result<T, JsonError>;

/// A number token: its text, and its exact value when it is an integer that fits 64 bits.
struct Number<'a> {
    text: &'a str,
    /// No fraction and no exponent.
    integer: bool,
    negative: bool,
    /// The magnitude, when `integer` and it fits a `u64`.
    magnitude: Option<u64>,
}

/// A cursor over one JSON text.
pub struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }

    #[cold]
    #[inline(never)]
    pub fn error(&self, msg: impl Into<Cow<'static, str>>) -> JsonError {
        JsonError {
            msg: msg.into(),
            at: self.at,
        }
    }

    #[inline(always)]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte after whitespace, not consumed.
    #[inline(always)]
    pub fn peek(&mut self) -> Option<u8> {
        let b = self.bytes();
        while let Some(&c) = b.get(self.at) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(c);
            }
            self.at += 1;
        }
        None
    }

    #[inline(always)]
    fn eat(&mut self, want: u8, what: &'static str) -> Result<()> {
        if self.peek() == Some(want) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    #[cold]
    fn unexpected(&self, what: &'static str) -> JsonError {
        match self.bytes().get(self.at) {
            None => self.error(format!("unexpected end of input, expected {what}")),
            Some(_) => self.error(format!("expected {what}")),
        }
    }

    /// Only whitespace may follow the value.
    pub fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters after the beacon")),
        }
    }

    /// Reads an object, calling `field` with each key; `field` must read that key's value.
    #[inline]
    pub fn object(
        &mut self,
        what: &'static str,
        mut field: impl FnMut(&mut Self, Cow<'a, str>) -> Result<()>,
    ) -> Result<()> {
        self.eat(b'{', what)?;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.unexpected("a string key"));
            }
            self.at += 1;
            let key = self.string_rest()?;
            self.eat(b':', "`:`")?;
            field(self, key)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.unexpected("`,` or `}`")),
            }
        }
    }

    /// Reads an array, calling `item` for each element; `item` must read it.
    #[inline]
    pub fn array(
        &mut self,
        what: &'static str,
        mut item: impl FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        self.eat(b'[', what)?;
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            item(self)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.unexpected("`,` or `]`")),
            }
        }
    }

    /// `null` is consumed and reported; anything else is left for the caller.
    #[inline]
    pub fn null(&mut self) -> Result<bool> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        self.literal(b"null")?;
        Ok(true)
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        if self.bytes()[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.error("invalid literal"))
        }
    }

    pub fn bool(&mut self) -> Result<bool> {
        match self.peek() {
            Some(b't') => self.literal(b"true").map(|()| true),
            Some(b'f') => self.literal(b"false").map(|()| false),
            _ => Err(self.unexpected("a boolean")),
        }
    }

    /// A string, borrowed from the body unless it has escapes.
    #[inline]
    pub fn string(&mut self) -> Result<Cow<'a, str>> {
        self.eat(b'"', "a string")?;
        self.string_rest()
    }

    /// The rest of a string whose opening quote was just consumed.
    #[inline]
    fn string_rest(&mut self) -> Result<Cow<'a, str>> {
        let start = self.at;
        let stop = self.scan(start);
        match self.bytes().get(stop) {
            Some(b'"') => {
                self.at = stop + 1;
                self.slice(start, stop).map(Cow::Borrowed)
            }
            Some(b'\\') => self.unescape(start, stop).map(Cow::Owned),
            Some(_) => {
                self.at = stop;
                Err(self.error("control character in a string"))
            }
            None => {
                self.at = stop;
                Err(self.error("unterminated string"))
            }
        }
    }

    /// The index of the first `"`, `\` or control character at or after `from` (or the end).
    /// Eight bytes at a time: beacon strings are mostly short, but URLs and WebGL renderers are not.
    /// (An SSE2 version, sixteen at a time, measured no faster on a real beacon: tried, not kept.)
    #[inline(always)]
    fn scan(&self, mut i: usize) -> usize {
        const ONES: u64 = u64::MAX / 255;
        const HIGH: u64 = ONES << 7;
        let b = self.bytes();
        while let Some(chunk) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
            let x = u64::from_le_bytes(*chunk);
            let quote = x ^ (ONES * u64::from(b'"'));
            let slash = x ^ (ONES * u64::from(b'\\'));
            // A byte is flagged when it is zero after the XOR (the classic "has zero byte" test)
            // or below 0x20; bytes >= 0x80 are excluded by `!x`.
            let hit = (quote.wrapping_sub(ONES) & !quote)
                | (slash.wrapping_sub(ONES) & !slash)
                | (x.wrapping_sub(ONES * 0x20) & !x);
            let hit = hit & HIGH;
            if hit != 0 {
                return i + (hit.trailing_zeros() / 8) as usize;
            }
            i += 8;
        }
        while let Some(&c) = b.get(i) {
            if c == b'"' || c == b'\\' || c < 0x20 {
                return i;
            }
            i += 1;
        }
        i
    }

    fn slice(&self, from: usize, to: usize) -> Result<&'a str> {
        // Always on a character boundary: both ends sit at ASCII bytes of valid UTF-8.
        self.text
            .get(from..to)
            .ok_or_else(|| self.error("string boundary inside a character"))
    }

    /// The slow path of `string`: copies the segments between escapes into a `String`.
    #[cold]
    fn unescape(&mut self, start: usize, mut stop: usize) -> Result<String> {
        let mut out = String::with_capacity(stop - start + 16);
        let mut from = start;
        loop {
            out.push_str(self.slice(from, stop)?);
            self.at = stop;
            match self.bytes().get(stop) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
            from = self.at;
            stop = self.scan(from);
        }
    }

    /// One escape after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<()> {
        let Some(&c) = self.bytes().get(self.at) else {
            return Err(self.error("unterminated string"));
        };
        self.at += 1;
        let ch = match simple_escape(c) {
            Some(ch) => ch,
            None if c == b'u' => self.unicode_escape()?,
            None => return Err(self.error("invalid escape")),
        };
        out.push(ch);
        Ok(())
    }

    /// `\uXXXX`, with a surrogate pair as two of them; an unpaired surrogate is an error.
    fn unicode_escape(&mut self) -> Result<char> {
        let high = self.hex4()?;
        if (0xDC00..=0xDFFF).contains(&high) {
            return Err(self.error("lone surrogate in a \\u escape"));
        }
        if !(0xD800..=0xDBFF).contains(&high) {
            return char::from_u32(high).ok_or_else(|| self.error("invalid \\u escape"));
        }
        if !self.bytes()[self.at..].starts_with(b"\\u") {
            return Err(self.error("lone surrogate in a \\u escape"));
        }
        self.at += 2;
        let low = self.hex4()?;
        if !(0xDC00..=0xDFFF).contains(&low) {
            return Err(self.error("lone surrogate in a \\u escape"));
        }
        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self
            .bytes()
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("unterminated \\u escape"))?;
        let mut n = 0;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error("invalid \\u escape")),
            };
            n = n * 16 + u32::from(v);
        }
        self.at += 4;
        Ok(n)
    }

    /// One number token, checked against the JSON grammar.
    fn number(&mut self, what: &'static str) -> Result<Number<'a>> {
        let b = self.bytes();
        let start = match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.at,
            _ => return Err(self.unexpected(what)),
        };
        let mut i = start;
        let negative = b[i] == b'-';
        if negative {
            i += 1;
        }
        let mut magnitude = Some(0u64);
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(&d @ b'0'..=b'9') = b.get(i) {
                    magnitude = magnitude
                        .and_then(|m| m.checked_mul(10))
                        .and_then(|m| m.checked_add(u64::from(d - b'0')));
                    i += 1;
                }
            }
            _ => {
                self.at = i;
                return Err(self.error("invalid number"));
            }
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            i = self.digits(i)?;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            i = self.digits(i)?;
        }
        // A digit straight after a leading zero ("01") is not JSON.
        if matches!(b.get(i), Some(b'0'..=b'9')) {
            self.at = i;
            return Err(self.error("invalid number"));
        }
        self.at = i;
        Ok(Number {
            text: self.slice(start, i)?,
            integer,
            negative,
            magnitude,
        })
    }

    /// At least one digit from `i`; the index after the last.
    fn digits(&mut self, mut i: usize) -> Result<usize> {
        let b = self.bytes();
        if !matches!(b.get(i), Some(b'0'..=b'9')) {
            self.at = i;
            return Err(self.error("invalid number"));
        }
        while matches!(b.get(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        Ok(i)
    }

    /// An integer token within `[min, max]`: fractions, exponents and out-of-range values are errors.
    fn integer(&mut self, min: i128, max: i128, what: &'static str) -> Result<i128> {
        self.peek();
        let start = self.at;
        let n = self.number(what)?;
        let value = match (n.integer, n.magnitude) {
            // `-0` is a float to serde_json (negative zero has no integer form), so not an integer.
            (true, Some(m)) if n.negative && m > 0 => -i128::from(m),
            (true, Some(m)) if !n.negative => i128::from(m),
            _ => {
                self.at = start;
                return Err(self.error(format!("expected {what}, found `{}`", n.text)));
            }
        };
        if value < min || value > max {
            self.at = start;
            return Err(self.error(format!("{what} out of range: {value}")));
        }
        Ok(value)
    }

    /// A plain unsigned integer up to `max`, read straight from its digits: most numbers in a
    /// beacon are. Anything else (a sign, fraction, exponent, leading zero, 20+ digits, too large)
    /// goes the general way, which gives the same value or error.
    #[inline]
    fn unsigned(&mut self, max: u64, what: &'static str) -> Result<u64> {
        let b = self.bytes();
        let start = match self.peek() {
            Some(b'1'..=b'9') => self.at,
            _ => return self.integer(0, max.into(), what).map(|v| v as u64),
        };
        let mut i = start;
        let mut value = 0u64;
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            value = value * 10 + u64::from(d - b'0');
            i += 1;
            if i - start == 19 {
                break;
            }
        }
        if value > max || matches!(b.get(i), Some(b'0'..=b'9' | b'.' | b'e' | b'E')) {
            return self.integer(0, max.into(), what).map(|v| v as u64);
        }
        self.at = i;
        Ok(value)
    }

    pub fn u32(&mut self) -> Result<u32> {
        // `unsigned` checks the range, so the narrowing is exact.
        self.unsigned(u32::MAX.into(), "an integer 0..=4294967295")
            .map(|v| v as u32)
    }

    pub fn u64(&mut self) -> Result<u64> {
        self.unsigned(u64::MAX, "a non-negative integer")
    }

    pub fn i32(&mut self) -> Result<i32> {
        self.integer(i32::MIN.into(), i32::MAX.into(), "a 32-bit integer")
            .map(|v| v as i32)
    }

    pub fn i64(&mut self) -> Result<i64> {
        self.integer(i64::MIN.into(), i64::MAX.into(), "a 64-bit integer")
            .map(|v| v as i64)
    }

    /// Any number as an `f64`, correctly rounded; one too large for an `f64` is an error.
    pub fn f64(&mut self) -> Result<f64> {
        self.float(|v: &f64| v.is_finite())
    }

    /// Any number as an `f32`, rounded once from the decimal text (as serde_json's
    /// `float_roundtrip` does; without it, serde rounds to `f64` first).
    pub fn f32(&mut self) -> Result<f32> {
        self.float(|v: &f32| v.is_finite())
    }

    /// A number token parsed by the standard library, which rounds correctly (integers too, so
    /// they need no path of their own); one that overflows to infinity is an error.
    fn float<T: std::str::FromStr>(&mut self, finite: fn(&T) -> bool) -> Result<T> {
        let n = self.number("a number")?;
        match n.text.parse::<T>() {
            Ok(v) if finite(&v) => Ok(v),
            Ok(_) => Err(self.error("number out of range")),
            Err(_) => Err(self.error("invalid number")),
        }
    }

    /// Reads and checks any value, keeping nothing: unknown fields must still be valid JSON.
    /// Iterative, with the open brackets on a heap stack, so nesting depth cannot overflow ours.
    pub fn skip(&mut self) -> Result<()> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            // One value's start: a scalar is read whole, a non-empty container is entered.
            match self.peek() {
                Some(b'"') => self.skip_string()?,
                Some(c @ (b'{' | b'[')) => {
                    self.at += 1;
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.at += 1;
                    } else {
                        open.push(c);
                        if c == b'{' {
                            self.key()?;
                        }
                        continue;
                    }
                }
                Some(b't' | b'f') => {
                    self.bool()?;
                }
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => {
                    self.number("a number")?;
                }
                _ => return Err(self.unexpected("a value")),
            }
            // After a whole value: close what ends here, or go on to the next element.
            loop {
                let Some(&top) = open.last() else {
                    return Ok(());
                };
                match (top, self.peek()) {
                    (_, Some(b',')) => {
                        self.at += 1;
                        if top == b'{' {
                            self.key()?;
                        }
                        break;
                    }
                    (b'{', Some(b'}')) | (b'[', Some(b']')) => {
                        self.at += 1;
                        open.pop();
                    }
                    (b'{', _) => return Err(self.unexpected("`,` or `}`")),
                    _ => return Err(self.unexpected("`,` or `]`")),
                }
            }
        }
    }

    /// An object key and its colon, inside `skip`.
    fn key(&mut self) -> Result<()> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a string key"));
        }
        self.skip_string()?;
        self.eat(b':', "`:`")
    }

    /// A string inside `skip`, checked against the grammar only and never decoded. A `\u`
    /// escape needs four hex digits but may be an unpaired surrogate: RFC 8259's grammar allows
    /// it, and serde_json skips unknown values the same way (an unpaired surrogate is only an
    /// error in a string that is kept, where it could not become UTF-8).
    fn skip_string(&mut self) -> Result<()> {
        self.eat(b'"', "a string")?;
        loop {
            let stop = self.scan(self.at);
            self.at = stop;
            match self.bytes().get(stop) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    let Some(&c) = self.bytes().get(self.at) else {
                        return Err(self.error("unterminated string"));
                    };
                    self.at += 1;
                    if c == b'u' {
                        self.hex4()?;
                    } else if simple_escape(c).is_none() {
                        return Err(self.error("invalid escape"));
                    }
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }
}

/// The character a one-letter escape (`\n`, `\"`, ...) stands for; `None` for `u` and for
/// letters JSON has no escape for. Shared by the decoding and the grammar-only string readers.
fn simple_escape(c: u8) -> Option<char> {
    Some(match c {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(json: &str) -> Result<Cow<'_, str>> {
        let mut r = Reader::new(json);
        let s = r.string()?;
        r.end()?;
        Ok(s)
    }

    #[test]
    fn strings_without_escapes_are_borrowed_and_escapes_are_decoded() {
        assert!(matches!(
            string(r#""plain ünïcode""#),
            Ok(Cow::Borrowed("plain ünïcode"))
        ));
        let all = string(r#""q\" b\\ s\/ \b\f\n\r\t \u0041\u00e9 \ud83d\ude00""#).unwrap();
        assert_eq!(all, "q\" b\\ s/ \u{8}\u{c}\n\r\t Aé 😀");
        assert!(matches!(all, Cow::Owned(_)));
    }

    #[test]
    fn the_scan_finds_every_stop_byte_at_every_offset() {
        // Across the 8-byte windows and the byte-wise tail, with any number of bytes
        // after the stop, and fillers next to the stop values (space, DEL, UTF-8 bytes).
        for fill in ["x", " ", "\u{7f}", "é"] {
            for len in 0..40 {
                for stop in [b'"', b'\\', 0x00, 0x01, 0x1f] {
                    for after in [0, 1, 7, 10, 15, 16, 17] {
                        let mut s = fill.repeat(len).into_bytes();
                        let at = s.len();
                        s.push(stop);
                        s.extend(std::iter::repeat_n(b'y', after));
                        let text = String::from_utf8(s).unwrap();
                        assert_eq!(
                            Reader::new(&text).scan(0),
                            at,
                            "{fill:?} x {len}, stop {stop}"
                        );
                    }
                }
                // No stop at all: the scan ends at the end.
                let text = fill.repeat(len);
                assert_eq!(Reader::new(&text).scan(0), text.len());
            }
        }
        // Bytes >= 0x80 (UTF-8) and 0x20 are not stops.
        let text = "é é é é é ñ\u{7f} \"";
        assert_eq!(Reader::new(text).scan(0), text.find('"').unwrap());
    }

    #[test]
    fn bad_strings_are_errors() {
        for bad in [
            "\"unterminated",
            "\"raw\ttab\"",
            "\"raw\nnewline\"",
            r#""\x""#,
            r#""\u12""#,
            r#""\u12G4""#,
            r#""\ud800""#,
            r#""\ud800x""#,
            r#""\ud800\u0041""#,
            r#""\udc00""#,
            "\"ends in a backslash\\",
        ] {
            assert!(string(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn numbers_follow_the_json_grammar() {
        let f = |s: &str| {
            let mut r = Reader::new(s);
            r.f64().and_then(|v| r.end().map(|()| v))
        };
        assert_eq!(f("0").unwrap(), 0.0);
        assert_eq!(f("-0.5e-3").unwrap(), -0.0005);
        assert_eq!(f("1E2").unwrap(), 100.0);
        assert_eq!(f("0.1").unwrap(), 0.1);
        for bad in [
            "01", "-", "+1", ".5", "1.", "1e", "1e+", "--1", "0x10", "1e400", "NaN",
        ] {
            assert!(f(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn integers_are_exact_and_range_checked() {
        let u = |s: &str| Reader::new(s).u32();
        assert_eq!(u("4294967295").unwrap(), u32::MAX);
        for bad in [
            "4294967296",
            "-1",
            "-0",
            "1.0",
            "1e2",
            "18446744073709551616",
            "\"1\"",
        ] {
            assert!(u(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Reader::new("-9223372036854775808").i64().unwrap(), i64::MIN);
        assert!(Reader::new("9223372036854775808").i64().is_err());
        assert_eq!(Reader::new("-2147483648").i32().unwrap(), i32::MIN);
        assert_eq!(Reader::new("18446744073709551615").u64().unwrap(), u64::MAX);
    }

    #[test]
    fn skip_checks_what_it_skips_at_any_depth() {
        let skip = |s: &str| {
            let mut r = Reader::new(s);
            r.skip().and_then(|()| r.end())
        };
        assert!(skip(r#" {"a":[1,-2.5e3,true,false,null,"x",{}], "b" : [] } "#).is_ok());
        // Skipped strings are grammar-checked, not decoded: an unpaired surrogate passes there
        // (as in serde_json), though `string` refuses it in any value that is kept.
        assert!(skip(r#"{"\ud83d k":["\udc00 \" \\ \/ \b\f\n\r\t"]}"#).is_ok());
        for bad in [
            r#"["\x"]"#,
            r#"["\u12G4"]"#,
            r#"{"\u12":1}"#,
            "[\"raw\ttab\"]",
            "[\"unterminated\\",
            "[1,]",
            "{\"a\":1,}",
            "[1 2]",
            "{\"a\" 1}",
            "{1:2}",
            "[tru]",
            "nul",
            "[",
            "",
        ] {
            assert!(skip(bad).is_err(), "{bad:?} was accepted");
        }
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(skip(&deep(100_000)).is_ok());
        assert!(skip(&format!(
            "{}1{}",
            "[{\"a\":".repeat(50_000),
            "}]".repeat(50_000)
        ))
        .is_ok());
        assert!(skip(&deep(100_000)[1..]).is_err());
    }

    #[test]
    fn errors_name_the_byte() {
        let mut r = Reader::new(r#"{"a" 1}"#);
        let e = r.skip().unwrap_err().to_string();
        assert_eq!(e, "expected `:` at byte 5");
    }
}
