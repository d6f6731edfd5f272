//! The fingerprint id: a canonical, versioned byte encoding of the device components, keyed-hashed (the hot path).
//!
//! Encoding (version 1): one version byte, then every component in a fixed order as
//! `tag: u8` followed by its value: strings as `u32 LE length ++ bytes`, integers as little-endian
//! fixed width, floats by their IEEE bits, booleans as one byte, lists as `u32 LE count ++ items`.
//! Length prefixes make the encoding injective, so two different component sets can never encode
//! to the same bytes. The bytes are streamed through a stack buffer into HMAC-SHA-256 keyed by the
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

    /// Keyed hash of arbitrary bytes, for benchmarks against raw SHA-256 on the same length.
    pub fn hash_bytes(&self, bytes: &[u8]) -> [u8; 16] {
        let mut mac = self.keyed.clone();
        mac.update(bytes);
        truncate(mac)
    }
}

const BUF: usize = 2048;

/// Streams the canonical encoding into the MAC through a fixed stack buffer.
struct Encoder {
    mac: HmacSha256,
    buf: [u8; BUF],
    len: usize,
}

impl Encoder {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > BUF {
            self.mac.update(&self.buf[..self.len]);
            self.len = 0;
            if bytes.len() > BUF {
                self.mac.update(bytes);
                return;
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
    #[inline]
    fn tag(&mut self, tag: u8) {
        self.put(&[tag]);
    }
    #[inline]
    fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    #[inline]
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
fn encode_device(e: &mut Encoder, d: &Device<'_>) {
    e.put(&[FINGERPRINT_VERSION]);
    e.tag(1);
    match &d.canvas {
        Some(c) => {
            e.str(&c.h);
            e.put(&[c.stable as u8]);
        }
        None => e.str(""),
    }
    e.tag(2);
    match &d.webgl {
        Some(w) => {
            e.str(&w.vendor);
            e.str(&w.renderer);
            e.str(&w.h);
        }
        None => e.str(""),
    }
    e.tag(3);
    match &d.fonts {
        Some(f) => {
            e.str(&f.h);
            e.u32(f.n);
        }
        None => e.str(""),
    }
    e.tag(4);
    e.list(&d.plugins);
    e.tag(5);
    match d.media {
        Some(m) => {
            e.put(&[1]);
            e.u32(m.ai);
            e.u32(m.vi);
            e.u32(m.ao);
        }
        None => e.put(&[0]),
    }
    e.tag(6);
    e.put(&[d.activex as u8]);
    e.tag(7);
    let s = d.screen;
    for v in [s.w, s.h, s.aw, s.ah, s.cd] {
        e.u32(v);
    }
    e.u32(s.dpr.to_bits());
    e.tag(8);
    e.str(&d.tz);
    e.put(&d.tzo.to_le_bytes());
    e.tag(9);
    e.list(&d.langs);
    e.tag(10);
    e.str(&d.arch);
    e.str(&d.bits);
    e.str(&d.platform);
    e.tag(11);
    e.u32(d.cores);
    e.u32(d.mem.to_bits());
    e.u32(d.touch);
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
            screen: Screen { w: 1920, h: 1080, aw: 1920, ah: 1040, cd: 24, dpr: 1.0 },
            platform: "Linux x86_64".into(),
            arch: "x86".into(),
            bits: "64".into(),
            cores: 8,
            mem: 8.0,
            canvas: Some(Canvas { h: "9f2c".into(), stable: true }),
            webgl: Some(WebGl { vendor: "Google Inc.".into(), renderer: "ANGLE".into(), h: "ab12".into() }),
            fonts: Some(Fonts { h: "77aa".into(), n: 12, list: vec![] }),
            plugins: vec!["PDF Viewer".into()],
            media: Some(Media { ai: 1, vi: 0, ao: 1 }),
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
        let changes: Vec<(&str, Box<dyn Fn(&mut Device<'static>)>)> = vec![
            ("canvas", Box::new(|d| d.canvas.as_mut().unwrap().h = "9f2d".into())),
            ("canvas stable", Box::new(|d| d.canvas.as_mut().unwrap().stable = false)),
            ("webgl renderer", Box::new(|d| d.webgl.as_mut().unwrap().renderer = "ANGLE2".into())),
            ("webgl hash", Box::new(|d| d.webgl.as_mut().unwrap().h = "ab13".into())),
            ("fonts", Box::new(|d| d.fonts.as_mut().unwrap().n = 13)),
            ("plugins", Box::new(|d| d.plugins.push("X".into()))),
            ("media", Box::new(|d| d.media = Some(Media { ai: 2, vi: 0, ao: 1 }))),
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
    fn known_answer_pins_the_encoding() {
        // If this changes, the encoding changed: bump FINGERPRINT_VERSION and say so in the README.
        let id = FingerprintHasher::new(b"known-answer").fingerprint(&device());
        assert_eq!(hex::encode(id), KNOWN_ANSWER);
    }
    // Computed independently from the format description above with Python's `hmac` module.
    const KNOWN_ANSWER: &str = "1710145234fdc8485b5eebe443006181";
}
