//! The fingerprint id: a canonical, versioned byte encoding of the device components, keyed-hashed (the hot path).
//!
//! Encoding (version 1): one version byte; then every scalar component in one fixed 48-byte block
//! (presence flags and booleans as one byte each, integers little-endian, floats by their IEEE
//! bits); then the strings in a fixed order as `u32 LE length ++ bytes`; then the lists as
//! `u32 LE count ++ strings`. Fixed widths and length prefixes make the encoding injective, so
//! two different component sets can never encode to the same bytes. The bytes are streamed through a stack buffer into HMAC-SHA-256 keyed by the
//! secret (its keyed state is computed once and cloned per event), and the first 16 bytes of the
//! MAC are the id. No heap allocation happens on this path.
//!
//! Viewport and window position are left out on purpose: they change when a window is resized
//! or moved, which would split one device into many ids.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::beacon::Device;

pub const FINGERPRINT_VERSION: u8 = 1;

type HmacSha256 = Hmac<Sha256>;

/// Computes fingerprint ids with a fixed secret.
#[derive(Clone)]
pub struct FingerprintHasher {
    keyed: HmacSha256,
}

impl FingerprintHasher {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            // Any key length is valid for HMAC, so this cannot fail.
            keyed: <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!()),
        }
    }

    /// The 16-byte fingerprint id of `device`.
    pub fn fingerprint(&self, device: &Device<'_>) -> [u8; 16] {
        let mut enc = Encoder {
            mac: self.keyed.clone(),
            buf: [0; BUF],
            len: 0,
        };
        encode_device(&mut enc, device);
        enc.finish()
    }

    /// The canonical encoding itself, for benchmarks and tests (allocates; not the hot path).
    pub fn canonical_bytes(device: &Device<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_device(&mut out, device);
        out
    }

    /// Keyed hash of arbitrary bytes, for benchmarks against raw SHA-256 on the same length.
    pub fn hash_bytes(&self, bytes: &[u8]) -> [u8; 16] {
        let mut mac = self.keyed.clone();
        mac.update(bytes);
        truncate(mac)
    }
}

const BUF: usize = 512;

/// Where the canonical encoding goes: the MAC on the hot path, a `Vec` in tests and benches.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
    /// Fixed-size writes compile to plain stores instead of a `memcpy` call.
    fn put_array<const N: usize>(&mut self, bytes: [u8; N]);
    #[inline(always)]
    fn u32(&mut self, v: u32) {
        self.put_array(v.to_le_bytes());
    }
    #[inline(always)]
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.put(s.as_bytes());
    }
    fn list<S: AsRef<str>>(&mut self, items: &[S]) {
        self.u32(items.len() as u32);
        for item in items {
            self.str(item.as_ref());
        }
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn put_array<const N: usize>(&mut self, bytes: [u8; N]) {
        self.extend_from_slice(&bytes);
    }
}

/// Streams the canonical encoding into the MAC through a fixed stack buffer.
struct Encoder {
    mac: HmacSha256,
    buf: [u8; BUF],
    len: usize,
}

impl Sink for Encoder {
    #[inline(always)]
    fn str(&mut self, s: &str) {
        let n = s.len();
        if n + 4 <= BUF - self.len {
            self.buf[self.len..self.len + 4].copy_from_slice(&(n as u32).to_le_bytes());
            self.len += 4;
            copy_short(&mut self.buf[self.len..self.len + n], s.as_bytes());
            self.len += n;
        } else {
            self.u32(n as u32);
            self.put(s.as_bytes());
        }
    }

    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        if n <= BUF - self.len {
            // Short strings are the common case: copy them byte by byte rather than calling memcpy.
            copy_short(&mut self.buf[self.len..self.len + n], bytes);
            self.len += n;
        } else {
            self.spill(bytes);
        }
    }

    #[inline(always)]
    fn put_array<const N: usize>(&mut self, bytes: [u8; N]) {
        if N <= BUF - self.len {
            self.buf[self.len..self.len + N].copy_from_slice(&bytes);
            self.len += N;
        } else {
            self.spill(&bytes);
        }
    }
}

/// Copies component strings (typically 2..100 bytes) with inline 16-byte moves: a `memcpy`
/// call per string costs more than the copy itself at these sizes.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (dc, sc) in (&mut d).zip(&mut s) {
        let chunk: [u8; 16] = sc.try_into().unwrap_or([0; 16]);
        dc.copy_from_slice(&chunk);
    }
    for (db, sb) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *db = *sb;
    }
}

impl Encoder {
    /// The buffer is full: hash it, then buffer `bytes` (or hash them directly if they are larger).
    #[cold]
    #[inline(never)]
    fn spill(&mut self, bytes: &[u8]) {
        self.mac.update(&self.buf[..self.len]);
        self.len = 0;
        if bytes.len() > BUF {
            self.mac.update(bytes);
        } else {
            self.buf[..bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len();
        }
    }
}

impl Encoder {
    fn finish(mut self) -> [u8; 16] {
        self.mac.update(&self.buf[..self.len]);
        truncate(self.mac)
    }
}

fn truncate(mac: HmacSha256) -> [u8; 16] {
    let full = mac.finalize().into_bytes();
    let mut id = [0u8; 16];
    id.copy_from_slice(&full[..16]);
    id
}

/// The component order is part of the version: changing it needs a new `FINGERPRINT_VERSION`.
fn encode_device(e: &mut impl Sink, d: &Device<'_>) {
    let mut scalars = [0u8; 48];
    let (canvas_stable, canvas_present) = d.canvas.as_ref().map_or((0, 0), |c| (c.stable as u8, 1));
    let media = d.media;
    scalars[0] = FINGERPRINT_VERSION;
    scalars[1] = canvas_present;
    scalars[2] = canvas_stable;
    scalars[3] = d.webgl.is_some() as u8;
    scalars[4] = d.fonts.is_some() as u8;
    scalars[5] = media.is_some() as u8;
    scalars[6] = d.activex as u8;
    scalars[7] = 0; // reserved
    let words: [u32; 10] = [
        d.fonts.as_ref().map_or(0, |f| f.n),
        media.map_or(0, |m| m.ai),
        media.map_or(0, |m| m.vi),
        media.map_or(0, |m| m.ao),
        d.screen.w,
        d.screen.h,
        d.screen.aw,
        d.screen.ah,
        d.screen.cd,
        d.screen.dpr.to_bits(),
    ];
    for (i, w) in words.iter().enumerate() {
        scalars[8 + 4 * i..12 + 4 * i].copy_from_slice(&w.to_le_bytes());
    }
    // 48 bytes hold 8 flag bytes and 10 words; the rest go in a second block below.
    e.put_array(scalars);
    let mut more = [0u8; 16];
    more[0..4].copy_from_slice(&d.tzo.to_le_bytes());
    more[4..8].copy_from_slice(&d.cores.to_le_bytes());
    more[8..12].copy_from_slice(&d.mem.to_bits().to_le_bytes());
    more[12..16].copy_from_slice(&d.touch.to_le_bytes());
    e.put_array(more);

    let empty = "";
    e.str(d.canvas.as_ref().map_or(empty, |c| &c.h));
    e.str(d.webgl.as_ref().map_or(empty, |w| &w.vendor));
    e.str(d.webgl.as_ref().map_or(empty, |w| &w.renderer));
    e.str(d.webgl.as_ref().map_or(empty, |w| &w.h));
    e.str(d.fonts.as_ref().map_or(empty, |f| &f.h));
    e.str(&d.tz);
    e.str(&d.arch);
    e.str(&d.bits);
    e.str(&d.platform);
    e.list(&d.plugins);
    e.list(&d.langs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beacon::{Canvas, Fonts, Media, Screen, WebGl};
    use std::borrow::Cow;

    fn device() -> Device<'static> {
        Device {
            tz: "Asia/Almaty".into(),
            tzo: 300,
            langs: vec!["kk-KZ".into(), "ru".into()],
            screen: Screen {
                w: 1920,
                h: 1080,
                aw: 1920,
                ah: 1040,
                cd: 24,
                dpr: 1.0,
            },
            platform: "Linux x86_64".into(),
            arch: "x86".into(),
            bits: "64".into(),
            cores: 8,
            mem: 8.0,
            canvas: Some(Canvas {
                h: "9f2c".into(),
                stable: true,
            }),
            webgl: Some(WebGl {
                vendor: "Google Inc.".into(),
                renderer: "ANGLE".into(),
                h: "ab12".into(),
            }),
            fonts: Some(Fonts {
                h: "77aa".into(),
                n: 12,
                list: vec![],
            }),
            plugins: vec!["PDF Viewer".into()],
            media: Some(Media {
                ai: 1,
                vi: 0,
                ao: 1,
            }),
            ..Device::default()
        }
    }

    #[test]
    fn same_components_same_id_on_every_instance_with_the_secret() {
        let a = FingerprintHasher::new(b"shared");
        let b = FingerprintHasher::new(b"shared");
        assert_eq!(a.fingerprint(&device()), b.fingerprint(&device()));
    }

    #[test]
    fn a_different_secret_gives_a_different_id() {
        let a = FingerprintHasher::new(b"one").fingerprint(&device());
        let b = FingerprintHasher::new(b"two").fingerprint(&device());
        assert_ne!(a, b);
    }

    #[test]
    fn any_one_component_changing_changes_the_id() {
        let h = FingerprintHasher::new(b"k");
        let base = h.fingerprint(&device());
        type Change = Box<dyn Fn(&mut Device<'static>)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "canvas",
                Box::new(|d| d.canvas.as_mut().unwrap().h = "9f2d".into()),
            ),
            (
                "canvas stable",
                Box::new(|d| d.canvas.as_mut().unwrap().stable = false),
            ),
            (
                "webgl renderer",
                Box::new(|d| d.webgl.as_mut().unwrap().renderer = "ANGLE2".into()),
            ),
            (
                "webgl hash",
                Box::new(|d| d.webgl.as_mut().unwrap().h = "ab13".into()),
            ),
            ("fonts", Box::new(|d| d.fonts.as_mut().unwrap().n = 13)),
            ("plugins", Box::new(|d| d.plugins.push("X".into()))),
            (
                "media",
                Box::new(|d| {
                    d.media = Some(Media {
                        ai: 2,
                        vi: 0,
                        ao: 1,
                    })
                }),
            ),
            ("media missing", Box::new(|d| d.media = None)),
            ("activex", Box::new(|d| d.activex = true)),
            ("screen", Box::new(|d| d.screen.w = 1921)),
            ("dpr", Box::new(|d| d.screen.dpr = 2.0)),
            ("timezone", Box::new(|d| d.tz = "Europe/Berlin".into())),
            ("offset", Box::new(|d| d.tzo = 360)),
            ("languages", Box::new(|d| d.langs.reverse())),
            ("arch", Box::new(|d| d.arch = "arm".into())),
            ("platform", Box::new(|d| d.platform = "Win32".into())),
            ("cores", Box::new(|d| d.cores = 4)),
            ("memory", Box::new(|d| d.mem = 4.0)),
        ];
        for (name, change) in changes {
            let mut d = device();
            change(&mut d);
            assert_ne!(h.fingerprint(&d), base, "{name} did not change the id");
        }
    }

    #[test]
    fn viewport_and_window_do_not_change_the_id() {
        let h = FingerprintHasher::new(b"k");
        let mut d = device();
        let base = h.fingerprint(&d);
        d.vp.w = 500;
        d.win.x = 99;
        assert_eq!(h.fingerprint(&d), base);
    }

    #[test]
    fn length_prefixes_keep_boundaries_apart() {
        let h = FingerprintHasher::new(b"k");
        let mut a = device();
        a.langs = vec![Cow::from("ab"), Cow::from("c")];
        let mut b = device();
        b.langs = vec![Cow::from("a"), Cow::from("bc")];
        assert_ne!(h.fingerprint(&a), h.fingerprint(&b));
    }

    #[test]
    fn components_larger_than_the_buffer_are_hashed_whole() {
        let h = FingerprintHasher::new(b"k");
        let mut a = device();
        a.plugins = (0..40).map(|i| Cow::from(format!("{i:0>120}"))).collect();
        let mut b = device();
        b.plugins = a.plugins.clone();
        b.plugins[39] = Cow::from(format!("{:0>120}", 41));
        assert_ne!(h.fingerprint(&a), h.fingerprint(&b));
        assert_eq!(h.fingerprint(&a), h.fingerprint(&a));
    }

    #[test]
    fn the_streamed_hash_equals_the_hash_of_the_canonical_bytes() {
        let h = FingerprintHasher::new(b"k");
        let mut d = device();
        d.plugins = (0..40).map(|i| Cow::from(format!("{i:0>120}"))).collect();
        let bytes = FingerprintHasher::canonical_bytes(&d);
        assert!(bytes.len() > BUF, "exercise the buffer flush");
        assert_eq!(h.fingerprint(&d), h.hash_bytes(&bytes));
    }

    #[test]
    fn known_answer_pins_the_encoding() {
        // If this changes, the encoding changed: bump FINGERPRINT_VERSION and say so in the README.
        let id = FingerprintHasher::new(b"known-answer").fingerprint(&device());
        assert_eq!(hex::encode(id), KNOWN_ANSWER);
    }
    // Computed independently from the format description above with Python's `hmac` module.
    const KNOWN_ANSWER: &str = "493bb3ef09d96c13f1bd670679647b06";
}
