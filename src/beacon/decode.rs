//! The beacon's shape: which keys each object has and how each value is read, on top of `json::Reader`.
//!
//! Mirrors the `Deserialize` derives in `beacon/mod.rs`, which stay as the reference the tests and
//! the fuzz target compare against: unknown keys are read and ignored, a known key twice is an
//! error, `v` and `site` are required, `null` is accepted exactly where the type is an `Option`.
//! Every allocation is one `serde` would make too: the device box, one buffer per non-empty list,
//! and a `String` for a string that had escapes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::json::{Reader, Result};
use super::{
    Automation, Beacon, Canvas, ClientHints, Consent, Device, Fonts, Kind, Media, PropValue,
    Screen, Viewport, WebGl, Window,
};

/// The position of `name` in `names`, at compile time (for the duplicate-key bit).
const fn index_of(names: &[&str], name: &str) -> usize {
    let mut i = 0;
    while i < names.len() {
        let (a, b) = (names[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("field not in the list")
}

/// Reads one object of a known shape: each `"key" => statement` arm runs when its key comes, a key
/// seen twice is an error, other keys are skipped. Evaluates to the bit set of the keys seen.
macro_rules! fields {
    ($r:ident, $what:literal, { $($name:literal => $read:expr,)* }) => {{
        const NAMES: &[&str] = &[$($name),*];
        let mut seen = 0u64;
        $r.object($what, |$r, key| {
            match &*key {
                $($name => {
                    const BIT: u64 = 1 << index_of(NAMES, $name);
                    if seen & BIT != 0 {
                        return Err($r.error(concat!("duplicate field `", $name, "`")));
                    }
                    seen |= BIT;
                    $read;
                })*
                _ => $r.skip()?,
            }
            Ok(())
        })?;
        seen
    }};
}

pub fn beacon<'a>(r: &mut Reader<'a, '_>) -> Result<Beacon<'a>> {
    let mut b = Beacon::default();
    let seen = fields!(r, "a beacon object", {
        "v" => b.v = r.u32()?,
        "site" => b.site = r.string()?,
        "kind" => b.kind = kind(r)?,
        "url" => b.url = r.string()?,
        "title" => b.title = r.string()?,
        "ref" => b.referrer = r.string()?,
        "prev" => b.prev = r.string()?,
        "sid" => b.sid = r.string()?,
        "seq" => b.seq = r.u32()?,
        "ts" => b.ts = if r.null()? { None } else { Some(r.i64()?) },
        "uid" => b.uid = r.string()?,
        "cid" => b.cid = r.string()?,
        "engaged_ms" => b.engaged_ms = r.u64()?,
        "wall_ms" => b.wall_ms = r.u64()?,
        "target" => b.target = r.string()?,
        "name" => b.name = r.string()?,
        "props" => b.props = if r.null()? { None } else { Some(props(r)?) },
        "consent" => b.consent = consent(r)?,
        "gpc" => b.gpc = r.bool()?,
        "dnt" => b.dnt = r.bool()?,
        "device" => b.device = if r.null()? { None } else { Some(device(r)?) },
    });
    // `v` and `site` are the first two names above.
    if seen & 1 == 0 {
        return Err(r.error("missing field `v`"));
    }
    if seen & 2 == 0 {
        return Err(r.error("missing field `site`"));
    }
    Ok(b)
}

/// A unit variant: its name as a string, or serde's `{"name": null}` form.
fn variant<'a>(r: &mut Reader<'a, '_>, what: &'static str) -> Result<Cow<'a, str>> {
    if r.peek() != Some(b'{') {
        return r.string();
    }
    let mut name = None;
    r.object(what, |r, key| {
        if name.is_some() {
            return Err(r.error("expected one variant"));
        }
        if !r.null()? {
            return Err(r.error("expected `null` for a unit variant"));
        }
        name = Some(key);
        Ok(())
    })?;
    name.ok_or_else(|| r.error("expected a variant name"))
}

fn kind(r: &mut Reader<'_, '_>) -> Result<Kind> {
    match &*variant(r, "a kind")? {
        "pageview" => Ok(Kind::Pageview),
        "engagement" => Ok(Kind::Engagement),
        "outbound" => Ok(Kind::Outbound),
        "custom" => Ok(Kind::Custom),
        other => Err(r.error(format!(
            "unknown kind `{other}`, expected pageview, engagement, outbound or custom"
        ))),
    }
}

fn consent(r: &mut Reader<'_, '_>) -> Result<Consent> {
    match &*variant(r, "a consent state")? {
        "granted" => Ok(Consent::Granted),
        "denied" => Ok(Consent::Denied),
        "unset" => Ok(Consent::Unset),
        other => Err(r.error(format!(
            "unknown consent `{other}`, expected granted, denied or unset"
        ))),
    }
}

/// Custom-event properties; a repeated key keeps its last value (a map, as serde reads it).
fn props<'a>(r: &mut Reader<'a, '_>) -> Result<BTreeMap<Cow<'a, str>, PropValue<'a>>> {
    let mut map = BTreeMap::new();
    r.object("an object of properties", |r, key| {
        let value = match r.peek() {
            Some(b't' | b'f') => PropValue::Bool(r.bool()?),
            Some(b'-' | b'0'..=b'9') => PropValue::Number(r.f64()?),
            Some(b'"') => PropValue::Text(r.string()?),
            _ => return Err(r.error("a property value must be a string, a number or a boolean")),
        };
        map.insert(key, value);
        Ok(())
    })?;
    Ok(map)
}

/// A list of strings; one allocation for a typical list (growing from 4 would take two or three,
/// and from 8 a second one for a desktop's font list: a realloc was 2 % of the parse).
fn strings<'a>(r: &mut Reader<'a, '_>) -> Result<Vec<Cow<'a, str>>> {
    let mut out = Vec::new();
    r.array("a list of strings", |r| {
        if out.is_empty() {
            out.reserve(16);
        }
        out.push(r.string()?);
        Ok(())
    })?;
    Ok(out)
}

fn device<'a>(r: &mut Reader<'a, '_>) -> Result<Box<Device<'a>>> {
    // Filled in place: the device block is large, and moving it into a box would copy it.
    let mut d = Box::<Device<'a>>::default();
    fields!(r, "a device object", {
        "tz" => d.tz = r.string()?,
        "tzo" => d.tzo = r.i32()?,
        "langs" => d.langs = strings(r)?,
        "screen" => d.screen = screen(r)?,
        "vp" => d.vp = viewport(r)?,
        "win" => d.win = window(r)?,
        "platform" => d.platform = r.string()?,
        "arch" => d.arch = r.string()?,
        "bits" => d.bits = r.string()?,
        "arch_src" => d.arch_src = r.string()?,
        "uach" => d.uach = if r.null()? { None } else { Some(client_hints(r)?) },
        "cores" => d.cores = r.u32()?,
        "mem" => d.mem = r.f32()?,
        "touch" => d.touch = r.u32()?,
        "canvas" => d.canvas = if r.null()? { None } else { Some(canvas(r)?) },
        "webgl" => d.webgl = if r.null()? { None } else { Some(webgl(r)?) },
        "fonts" => d.fonts = if r.null()? { None } else { Some(fonts(r)?) },
        "plugins" => d.plugins = strings(r)?,
        "media" => d.media = if r.null()? { None } else { Some(media(r)?) },
        "activex" => d.activex = r.bool()?,
        "auto" => d.auto = automation(r)?,
    });
    Ok(d)
}

fn screen(r: &mut Reader<'_, '_>) -> Result<Screen> {
    let mut s = Screen::default();
    fields!(r, "a screen object", {
        "w" => s.w = r.u32()?,
        "h" => s.h = r.u32()?,
        "aw" => s.aw = r.u32()?,
        "ah" => s.ah = r.u32()?,
        "cd" => s.cd = r.u32()?,
        "dpr" => s.dpr = r.f32()?,
    });
    Ok(s)
}

fn viewport(r: &mut Reader<'_, '_>) -> Result<Viewport> {
    let mut v = Viewport::default();
    fields!(r, "a viewport object", {
        "w" => v.w = r.u32()?,
        "h" => v.h = r.u32()?,
    });
    Ok(v)
}

fn window(r: &mut Reader<'_, '_>) -> Result<Window> {
    let mut w = Window::default();
    fields!(r, "a window object", {
        "x" => w.x = r.i32()?,
        "y" => w.y = r.i32()?,
        "ow" => w.ow = r.u32()?,
        "oh" => w.oh = r.u32()?,
    });
    Ok(w)
}

fn client_hints<'a>(r: &mut Reader<'a, '_>) -> Result<ClientHints<'a>> {
    let mut c = ClientHints::default();
    fields!(r, "a client-hints object", {
        "brands" => c.brands = strings(r)?,
        "mobile" => c.mobile = r.bool()?,
        "platform" => c.platform = r.string()?,
        "pv" => c.pv = r.string()?,
        "model" => c.model = r.string()?,
    });
    Ok(c)
}

fn canvas<'a>(r: &mut Reader<'a, '_>) -> Result<Canvas<'a>> {
    let mut c = Canvas {
        h: Cow::Borrowed(""),
        stable: true,
    };
    fields!(r, "a canvas object", {
        "h" => c.h = r.string()?,
        "stable" => c.stable = r.bool()?,
    });
    Ok(c)
}

fn webgl<'a>(r: &mut Reader<'a, '_>) -> Result<WebGl<'a>> {
    let mut w = WebGl::default();
    fields!(r, "a webgl object", {
        "vendor" => w.vendor = r.string()?,
        "renderer" => w.renderer = r.string()?,
        "h" => w.h = r.string()?,
    });
    Ok(w)
}

fn fonts<'a>(r: &mut Reader<'a, '_>) -> Result<Fonts<'a>> {
    let mut f = Fonts::default();
    fields!(r, "a fonts object", {
        "h" => f.h = r.string()?,
        "n" => f.n = r.u32()?,
        "list" => f.list = strings(r)?,
    });
    Ok(f)
}

fn media(r: &mut Reader<'_, '_>) -> Result<Media> {
    let mut m = Media::default();
    fields!(r, "a media object", {
        "ai" => m.ai = r.u32()?,
        "vi" => m.vi = r.u32()?,
        "ao" => m.ao = r.u32()?,
    });
    Ok(m)
}

fn automation<'a>(r: &mut Reader<'a, '_>) -> Result<Automation<'a>> {
    let mut a = Automation::default();
    fields!(r, "an automation object", {
        "webdriver" => a.webdriver = r.bool()?,
        "headless" => a.headless = strings(r)?,
        "globals" => a.globals = strings(r)?,
        "flags" => a.flags = strings(r)?,
    });
    Ok(a)
}
