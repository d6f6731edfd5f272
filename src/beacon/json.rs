//! The JSON reader under the beacon decoder: strict RFC 8259 over one body, strings borrowed unless escaped.
//!
//! Why not `serde_json`: it was the parser until the `parse` bench showed it alone takes ~3.3 µs of
//! a 1.4 KiB beacon on these machines, at the 250 k/s target before any validation; `simd-json` was
//! 15–20 % faster and `sonic-rs` slower (A/B in one process, `benches/README.md`). A reader that
//! knows the beacon's shape skips serde's generic visitor layers. It accepts exactly the JSON that
//! `serde_json` accepts for the same types, which the tests and the `parse` fuzz target check
//! against `serde_json` itself on every input (`tests/json_differential.rs`, `fuzz/src/lib.rs`).
//!
//! Where strings end comes from `Stops`, built in one pass over the body before reading: AVX2 (or
//! SSE2 where the CPU lacks it) marks every `"`, `\` and control character thirty-two (sixteen)
//! bytes at a time, so each of a beacon's ~110 strings ends with a word lookup instead of a scan
//! of its own, and the same pass finds the span between the first and last non-ASCII byte, the
//! only part the UTF-8 check needs to read. Together with direct reading of plain integers this
//! took the parse from ~27 800 to ~19 600 instructions per beacon, and AVX2 (with mimalloc 2.x's
//! quicker path for aligned blocks, see `Cargo.toml`) to ~18 000 (`benches/README.md`,
//! 2026-12-03). The `unsafe` blocks (the SIMD loads, the call into the AVX2 loop once the CPU is
//! known to have it, and the body as text once its non-ASCII span is checked) say why they hold.
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

/// Words of the stop index kept inline: bodies up to 3 KiB (most beacons) need no allocation.
const INLINE_WORDS: usize = 48;

/// Where every string of one body can stop: one bit per byte, set at each `"`, `\` and control
/// character, and one more bit just past the end, so a lookup always finds a bit. Also where the
/// body's non-ASCII bytes begin and end, so only that span needs a UTF-8 check.
///
/// Built once per body, sixteen bytes per step, so that finding a string's end is a word lookup
/// instead of a scan: the eight-bytes-at-a-time scan per string was a third of the whole parse,
/// most of it the fixed cost of starting and ending a scan on the 110 short strings of a beacon.
pub struct Stops<'b> {
    /// The body the index describes, kept so `text` cannot be handed another one.
    body: &'b [u8],
    inline: [u64; INLINE_WORDS],
    heap: Vec<u64>,
    words: usize,
    /// The first and last byte at or above 0x80, if any.
    high: Option<(usize, usize)>,
}

impl<'b> Stops<'b> {
    pub fn new(b: &'b [u8]) -> Self {
        let words = b.len() / 64 + 1;
        let mut stops = Stops {
            body: b,
            inline: [0; INLINE_WORDS],
            heap: Vec::new(),
            words,
            high: None,
        };
        let out = if words > INLINE_WORDS {
            stops.heap = vec![0; words];
            &mut stops.heap[..]
        } else {
            &mut stops.inline[..words]
        };
        stops.high = index(b, out);
        stops
    }

    #[inline(always)]
    fn words(&self) -> &[u64] {
        if self.words > INLINE_WORDS {
            &self.heap
        } else {
            &self.inline[..self.words]
        }
    }

    /// A reader over the indexed body, or `None` when the body is not valid UTF-8. The reader
    /// can only come from here, so its text and its index are always the same body.
    pub fn reader(&self) -> Option<Reader<'b, '_>> {
        Some(Reader {
            text: self.text()?,
            stops: self.words(),
            at: 0,
        })
    }

    /// The body as text, or `None` when it is not valid UTF-8. Only the span from the first to
    /// the last non-ASCII byte is checked: a beacon is mostly ASCII, and checking all of it was
    /// one twentieth of the parse.
    fn text(&self) -> Option<&'b str> {
        let b = self.body;
        if let Some((first, last)) = self.high {
            std::str::from_utf8(b.get(first..=last)?).ok()?;
        }
        // SAFETY: every byte outside `first..=last` has its high bit clear (`Stops::new` saw all
        // of them, in this same `body`, which the struct borrows immutably), so each is a whole
        // one-byte character and the span's neighbours are character boundaries; the span itself
        // is valid UTF-8 (checked above). Together the bytes are valid UTF-8. `tests::utf8_is_checked_where_it_can_be_wrong` compares this
        // with `std::str::from_utf8` across block edges.
        Some(unsafe { std::str::from_utf8_unchecked(b) })
    }
}

/// Fills `out` (one word per 64 bytes of `b`, and one more) with the stop bits of `b`, sets the
/// bit just past the end, and returns the first and last byte at or above 0x80.
///
/// With AVX2 (most x86-64 CPUs since 2013, detected at run time) thirty-two bytes are compared
/// per step instead of sixteen: building the index was a tenth of the parse.
#[inline]
fn index(b: &[u8], out: &mut [u64]) -> Option<(usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: this CPU has AVX2, checked just above.
        return unsafe { index_avx2(b, out) };
    }
    index_with(b, out, block_bits)
}

/// [`index`] with AVX2 enabled for the loop and the block function it inlines.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn index_avx2(b: &[u8], out: &mut [u64]) -> Option<(usize, usize)> {
    index_with(b, out, |block| block_bits_avx2(block))
}

/// The loop of [`index`] over 64-byte blocks, with `bits` giving one block's stop and high bits.
#[inline(always)]
fn index_with(
    b: &[u8],
    out: &mut [u64],
    bits: impl Fn(&[u8; 64]) -> (u64, u64),
) -> Option<(usize, usize)> {
    let (blocks, rest) = b.as_chunks::<64>();
    // `out` has one word per whole block and one for the rest; a plain loop over the whole
    // blocks and the rest on its own (a chained iterator cost as much as the compares).
    let (whole, tail) = out.split_at_mut(blocks.len());
    let mut high = High::default();
    for (w, (word, block)) in whole.iter_mut().zip(blocks).enumerate() {
        let (stop, high_bits) = bits(block);
        *word = stop;
        high.add(w, high_bits);
    }
    // The last, partial block is padded with spaces (neither a stop nor high), and its word
    // also marks the end.
    let mut last = [b' '; 64];
    last[..rest.len()].copy_from_slice(rest);
    let (stop, high_bits) = bits(&last);
    if let Some(word) = tail.first_mut() {
        *word = stop | 1 << rest.len();
    }
    high.add(blocks.len(), high_bits);
    high.span()
}

/// The first and last byte at or above 0x80 seen so far.
#[derive(Default)]
struct High {
    first: Option<usize>,
    last: usize,
}

impl High {
    /// Takes the high-byte bits of block `w`.
    #[inline(always)]
    fn add(&mut self, w: usize, bits: u64) {
        if bits != 0 {
            self.first
                .get_or_insert(w * 64 + bits.trailing_zeros() as usize);
            self.last = w * 64 + 63 - bits.leading_zeros() as usize;
        }
    }

    fn span(&self) -> Option<(usize, usize)> {
        self.first.map(|first| (first, self.last))
    }
}

/// The stop bits and the high-byte bits of 64 bytes, bit `i` for byte `i`.
#[inline(always)]
fn block_bits(block: &[u8; 64]) -> (u64, u64) {
    let (quarters, _) = block.as_chunks::<16>();
    let (mut stop, mut high) = (0, 0);
    for (k, q) in quarters.iter().enumerate() {
        let (s, h) = bits16(q);
        stop |= u64::from(s) << (16 * k);
        high |= u64::from(h) << (16 * k);
    }
    (stop, high)
}

/// [`block_bits`] thirty-two bytes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn block_bits_avx2(block: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_min_epu8, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8,
    };
    let (halves, _) = block.as_chunks::<32>();
    let (mut stop, mut high) = (0, 0);
    for (k, half) in halves.iter().enumerate() {
        // SAFETY: an unaligned load of exactly the thirty-two bytes `half` borrows.
        let v: __m256i = unsafe { _mm256_loadu_si256(half.as_ptr().cast()) };
        let quote = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8));
        let slash = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
        // Below 0x20 as unsigned bytes: min(c, 0x1f) == c.
        let control = _mm256_cmpeq_epi8(_mm256_min_epu8(v, _mm256_set1_epi8(0x1f)), v);
        let stops = _mm256_or_si256(_mm256_or_si256(quote, slash), control);
        stop |= u64::from(_mm256_movemask_epi8(stops) as u32) << (32 * k);
        high |= u64::from(_mm256_movemask_epi8(v) as u32) << (32 * k);
    }
    (stop, high)
}

/// The stop bits and high-byte bits of 16 bytes with SSE2, which every x86-64 CPU has.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn bits16(q: &[u8; 16]) -> (u16, u16) {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline, so the target always enables it; the one
    // memory access is an unaligned load of exactly the sixteen bytes `q` borrows.
    unsafe {
        let v = _mm_loadu_si128(q.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let slash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Below 0x20 as unsigned bytes: min(c, 0x1f) == c.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        let stop = _mm_or_si128(_mm_or_si128(quote, slash), control);
        (_mm_movemask_epi8(stop) as u16, _mm_movemask_epi8(v) as u16)
    }
}

/// The same, one byte at a time, where SSE2 is not there.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn bits16(q: &[u8; 16]) -> (u16, u16) {
    let (mut stop, mut high) = (0, 0);
    for (i, &c) in q.iter().enumerate() {
        stop |= u16::from(c == b'"' || c == b'\\' || c < 0x20) << i;
        high |= u16::from(c >= 0x80) << i;
    }
    (stop, high)
}

/// A cursor over one JSON text and its stop index (made by `Stops::reader`).
pub struct Reader<'a, 's> {
    text: &'a str,
    stops: &'s [u64],
    at: usize,
}

impl<'a, 's> Reader<'a, 's> {
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
            // Nothing above the space is whitespace: one compare for what a tracker sends.
            if c > b' ' || !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
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

    /// The rest of a string whose opening quote was just consumed. The common case (no escape)
    /// is a handful of instructions inlined at each caller; everything else is out of line.
    #[inline(always)]
    fn string_rest(&mut self) -> Result<Cow<'a, str>> {
        let start = self.at;
        let stop = self.scan(start);
        if self.bytes().get(stop) == Some(&b'"') {
            if let Some(s) = self.text.get(start..stop) {
                self.at = stop + 1;
                return Ok(Cow::Borrowed(s));
            }
        }
        self.string_end(start, stop)
    }

    /// A string that stops at an escape, a control character or the end of the text.
    #[cold]
    #[inline(never)]
    fn string_end(&mut self, start: usize, stop: usize) -> Result<Cow<'a, str>> {
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
    #[inline(always)]
    fn scan(&self, from: usize) -> usize {
        let mut w = from / 64;
        let Some(&first) = self.stops.get(w) else {
            return self.text.len();
        };
        let mut bits = first & (u64::MAX << (from % 64));
        while bits == 0 {
            w += 1;
            match self.stops.get(w) {
                Some(&next) => bits = next,
                None => return self.text.len(),
            }
        }
        // The end-of-text bit bounds it; `min` keeps a wrong index from ever pointing past it.
        (w * 64 + bits.trailing_zeros() as usize).min(self.text.len())
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

    /// The magnitude of a plain integer whose first digit (1-9) is at `start`, and the index after
    /// it, read straight from the digits: most numbers in a beacon are. `None` for anything the
    /// general way must decide (a fraction, an exponent, a digit after 19), which then gives the
    /// same value or error.
    #[inline(always)]
    fn plain_digits(&self, start: usize) -> Option<(u64, usize)> {
        let b = self.bytes();
        let mut i = start;
        let mut value = 0u64;
        // Nineteen digits cannot overflow a u64.
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            value = value * 10 + u64::from(d - b'0');
            i += 1;
            if i - start == 19 {
                break;
            }
        }
        match b.get(i) {
            Some(b'0'..=b'9' | b'.' | b'e' | b'E') => None,
            _ => Some((value, i)),
        }
    }

    /// A non-negative integer up to `max`.
    #[inline]
    fn unsigned(&mut self, max: u64, what: &'static str) -> Result<u64> {
        if let Some(b'1'..=b'9') = self.peek() {
            if let Some((value, end)) = self.plain_digits(self.at) {
                if value <= max {
                    self.at = end;
                    return Ok(value);
                }
            }
        }
        self.integer(0, max.into(), what).map(|v| v as u64)
    }

    /// An integer within `[min, max]`, either sign.
    #[inline]
    fn signed(&mut self, min: i64, max: i64, what: &'static str) -> Result<i64> {
        let negative = self.peek() == Some(b'-');
        let first = self.at + usize::from(negative);
        if let Some(b'1'..=b'9') = self.bytes().get(first) {
            if let Some((magnitude, end)) = self.plain_digits(first) {
                let value = if negative {
                    -i128::from(magnitude)
                } else {
                    i128::from(magnitude)
                };
                if (i128::from(min)..=i128::from(max)).contains(&value) {
                    self.at = end;
                    // In range, so the narrowing is exact.
                    return Ok(value as i64);
                }
            }
        }
        self.integer(min.into(), max.into(), what).map(|v| v as i64)
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
        self.signed(i32::MIN.into(), i32::MAX.into(), "a 32-bit integer")
            .map(|v| v as i32)
    }

    pub fn i64(&mut self) -> Result<i64> {
        self.signed(i64::MIN, i64::MAX, "a 64-bit integer")
    }

    /// Any number as an `f64`, correctly rounded; one too large for an `f64` is an error.
    pub fn f64(&mut self) -> Result<f64> {
        // Integers up to 2^53 are exact in an f64, so converting one is the correct rounding.
        self.float(
            |v: &f64| v.is_finite(),
            |m| (m <= 1 << 53).then_some(m as f64),
        )
    }

    /// Any number as an `f32`, rounded once from the decimal text (as serde_json's
    /// `float_roundtrip` does; without it, serde rounds to `f64` first).
    pub fn f32(&mut self) -> Result<f32> {
        // Integers up to 2^24 are exact in an f32 (`"mem": 8`, `"dpr": 1`).
        self.float(
            |v: &f32| v.is_finite(),
            |m| (m <= 1 << 24).then_some(m as f32),
        )
    }

    /// A number token parsed by the standard library, which rounds correctly; an integer that
    /// `exact` can convert without rounding skips it. One that overflows to infinity is an error.
    fn float<T: std::str::FromStr + std::ops::Neg<Output = T>>(
        &mut self,
        finite: fn(&T) -> bool,
        exact: fn(u64) -> Option<T>,
    ) -> Result<T> {
        let n = self.number("a number")?;
        if let Some(v) = n.magnitude.filter(|_| n.integer).and_then(exact) {
            // `-0` stays a negative zero, as the standard library reads it.
            return Ok(if n.negative { -v } else { v });
        }
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

    /// Runs `f` on a reader over `text`.
    fn read<T>(text: &str, f: impl FnOnce(&mut Reader<'_, '_>) -> T) -> T {
        let stops = Stops::new(text.as_bytes());
        f(&mut stops.reader().unwrap())
    }

    fn string(json: &str) -> Result<Cow<'_, str>> {
        let stops = Stops::new(json.as_bytes());
        let mut r = stops.reader().unwrap();
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
                            read(&text, |r| r.scan(0)),
                            at,
                            "{fill:?} x {len}, stop {stop}"
                        );
                    }
                }
                // No stop at all: the scan ends at the end.
                let text = fill.repeat(len);
                assert_eq!(read(&text, |r| r.scan(0)), text.len());
            }
        }
        // Bytes >= 0x80 (UTF-8) and 0x20 are not stops.
        let text = "é é é é é ñ\u{7f} \"";
        assert_eq!(read(text, |r| r.scan(0)), text.find('"').unwrap());
    }

    #[test]
    fn every_way_of_building_the_index_marks_the_same_bytes() {
        // Each byte value at each position of a block (with another value elsewhere), through
        // SSE2 and, where this CPU has it, AVX2, against a byte-at-a-time reference.
        let reference = |block: &[u8; 64]| {
            let (mut stop, mut high) = (0u64, 0u64);
            for (i, &c) in block.iter().enumerate() {
                stop |= u64::from(c == b'"' || c == b'\\' || c < 0x20) << i;
                high |= u64::from(c >= 0x80) << i;
            }
            (stop, high)
        };
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::is_x86_feature_detected!("avx2");
        for pos in 0..64 {
            for c in 0..=255u8 {
                let mut block = [b'a'; 64];
                block[(pos * 7 + 3) % 64] = 255 - c;
                block[pos] = c;
                let want = reference(&block);
                assert_eq!(block_bits(&block), want, "byte {c} at {pos}");
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: this CPU has AVX2, checked above.
                    let got = unsafe { block_bits_avx2(&block) };
                    assert_eq!(got, want, "byte {c} at {pos}, AVX2");
                }
            }
        }
        // Whole bodies: the chosen way and the SSE2 one give the same words and span.
        for len in [0, 1, 63, 64, 65, 128, 1000, 3100] {
            let body: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let words = len / 64 + 1;
            let (mut chosen, mut sse2) = (vec![0; words], vec![0; words]);
            let spans = (
                index(&body, &mut chosen),
                index_with(&body, &mut sse2, block_bits),
            );
            assert_eq!(
                (&chosen, spans.0),
                (&sse2, spans.1),
                "a body of {len} bytes"
            );
        }
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
        let f = |s: &str| read(s, |r| r.f64().and_then(|v| r.end().map(|()| v)));
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
        let u = |s: &str| read(s, |r| r.u32());
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
        assert_eq!(read("-9223372036854775808", |r| r.i64()).unwrap(), i64::MIN);
        assert!(read("9223372036854775808", |r| r.i64()).is_err());
        assert_eq!(read("-2147483648", |r| r.i32()).unwrap(), i32::MIN);
        assert_eq!(read("18446744073709551615", |r| r.u64()).unwrap(), u64::MAX);
    }

    #[test]
    fn utf8_is_checked_where_it_can_be_wrong() {
        // Text is valid exactly when the standard library says so, wherever the non-ASCII bytes
        // sit: both ends of the checked span at every offset across the 64-byte blocks, cut
        // characters at the end, and bytes that are never UTF-8.
        let pieces: [&[u8]; 9] = [
            "é".as_bytes(),
            "😀".as_bytes(),
            &[0xC3],
            &[0x80],
            &[0xF0, 0x9F, 0x98],
            &[0xFF],
            &[0xED, 0xA0, 0x80],
            &[0xC0, 0xAF],
            "ж".as_bytes(),
        ];
        for len in [0, 1, 15, 16, 62, 63, 64, 65, 127, 128, 200] {
            for at in [0, 1, 31, 62, 63, 64, 65, 100, 150, 199] {
                for (i, a) in pieces.iter().enumerate() {
                    for b in [&pieces[..], &[b"" as &[u8]]].concat() {
                        let mut body = vec![b'x'; len];
                        let at = at.min(len);
                        body.splice(at..at, a.iter().copied());
                        body.extend_from_slice(b);
                        let stops = Stops::new(&body);
                        assert_eq!(
                            stops.reader().is_some(),
                            std::str::from_utf8(&body).is_ok(),
                            "piece {i} at {at} of {len}, then {b:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn plain_integers_and_the_general_way_agree() {
        // The direct digit reader and the grammar-checked one give the same value or error.
        fn both(text: &str, min: i64, max: i64) -> (Option<i64>, Option<i64>) {
            let whole =
                |r: &mut Reader<'_, '_>, v: Result<i64>| v.and_then(|v| r.end().map(|()| v));
            let fast = read(text, |r| {
                let v = r.signed(min, max, "an integer");
                whole(r, v)
            });
            let general = read(text, |r| {
                let v = r
                    .integer(min.into(), max.into(), "an integer")
                    .map(|v| v as i64);
                whole(r, v)
            });
            (fast.ok(), general.ok())
        }
        for text in [
            "1",
            "7",
            "-7",
            "300",
            "-300",
            "2147483647",
            "2147483648",
            "-2147483648",
            "-2147483649",
            "-0",
            "0",
            "01",
            "-01",
            "1.5",
            "1e2",
            "-",
            "-x",
            "12x",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "99999999999999999999",
            "1234567890123456789",
            "12345678901234567890",
        ] {
            let (fast, general) = both(text, i32::MIN.into(), i32::MAX.into());
            assert_eq!(fast, general, "i32 {text}");
            let (fast, general) = both(text, i64::MIN, i64::MAX);
            assert_eq!(fast, general, "i64 {text}");
        }
        assert_eq!(both("-300", -1000, 1000).0, Some(-300));
        assert_eq!(
            both("-9223372036854775808", i64::MIN, i64::MAX).0,
            Some(i64::MIN)
        );
    }

    #[test]
    fn floats_are_the_standard_librarys_rounding() {
        for text in [
            "0",
            "-0",
            "1",
            "16",
            "-3",
            "16777216",
            "16777217",
            "16777219",
            "9007199254740993",
            "18446744073709551615",
            "123456789012345678901",
            "1.25",
            "2.625",
            "1e3",
            "-0.0",
        ] {
            let f32 = read(text, |r| r.f32()).unwrap();
            let want = text.parse::<f32>().unwrap();
            assert_eq!(f32.to_bits(), want.to_bits(), "f32 {text}");
            let f64 = read(text, |r| r.f64()).unwrap();
            let want = text.parse::<f64>().unwrap();
            assert_eq!(f64.to_bits(), want.to_bits(), "f64 {text}");
        }
    }

    #[test]
    fn skip_checks_what_it_skips_at_any_depth() {
        let skip = |s: &str| read(s, |r| r.skip().and_then(|()| r.end()));
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
        let e = read(r#"{"a" 1}"#, |r| r.skip()).unwrap_err().to_string();
        assert_eq!(e, "expected `:` at byte 5");
    }
}
