//! Shared oracle for the beacon fuzz targets.
//!
//! [`check_parse`] runs `footfall::beacon::parse`, compares its outcome with `serde_json` and the
//! `Deserialize` derives (the reference its JSON reader must match), and, when it accepts a body, checks what
//! `beacon::validate` promises (required fields, `tracker-js/PROTOCOL.md` limits, "cut at a
//! character boundary", "the names of the fields that had to be cut") against an unvalidated
//! deserialisation of the same body.

use std::borrow::Cow;
use std::collections::BTreeSet;

use footfall::beacon::{self, limits, Beacon, Kind, PropValue, PROTOCOL_VERSION};

// The same reference rule as `tests/json_differential.rs`.
#[path = "../../tests/support/json_reference.rs"]
mod json_reference;

/// Parses `body`; panics if `parse` panics, if it disagrees with the `serde_json` reference, or if
/// an accepted beacon breaks a documented invariant.
pub fn check_parse(body: &[u8]) {
    let parsed = beacon::parse(body);
    json_reference::check_same_as_reference(body, &parsed);
    let Ok(v) = parsed else {
        return;
    };
    // The same body without validation: what the client sent, before any cutting.
    let raw: Beacon<'_> = serde_json::from_slice(body)
        .expect("parse accepted a body that plain deserialisation rejects");
    let b = &v.beacon;

    // Required fields (the checks at the top of `validate`), still true after cutting.
    assert_eq!(b.v, PROTOCOL_VERSION, "accepted protocol version");
    assert!(!b.site.is_empty(), "accepted an empty site");
    assert_eq!(
        b.site, raw.site,
        "site has no limit and must be kept as sent"
    );
    assert!(is_http_url(&b.url), "accepted url {:?}", b.url);
    match b.kind {
        Kind::Outbound => assert!(is_http_url(&b.target), "outbound target {:?}", b.target),
        Kind::Custom => assert!(
            !b.name.trim().is_empty(),
            "custom event accepted with a blank name after validation: {:?} (sent {:?})",
            b.name,
            raw.name
        ),
        _ => {}
    }

    let mut want = Vec::new();
    let t = &mut want;
    field(t, "url", &raw.url, &b.url, limits::URL);
    field(t, "title", &raw.title, &b.title, limits::TITLE);
    field(t, "ref", &raw.referrer, &b.referrer, limits::URL);
    field(t, "prev", &raw.prev, &b.prev, limits::URL);
    field(t, "target", &raw.target, &b.target, limits::URL);
    field(t, "sid", &raw.sid, &b.sid, limits::SESSION_ID);
    field(t, "uid", &raw.uid, &b.uid, limits::USER_ID);
    field(t, "cid", &raw.cid, &b.cid, limits::CLIENT_ID);
    field(t, "name", &raw.name, &b.name, limits::EVENT_NAME);

    assert_eq!(raw.props.is_some(), b.props.is_some(), "props presence");
    if let (Some(rp), Some(bp)) = (&raw.props, &b.props) {
        assert!(bp.len() <= limits::PROPS, "{} props accepted", bp.len());
        let mut cut_any = false;
        let mut expected = std::collections::BTreeMap::new();
        for (k, val) in rp {
            let k2 = expect_cut(k, limits::PROP_KEY);
            cut_any |= k2.len() < k.len();
            let val2 = match val {
                PropValue::Text(s) => {
                    let s2 = expect_cut(s, limits::PROP_VALUE);
                    cut_any |= s2.len() < s.len();
                    Some(s2)
                }
                _ => None,
            };
            expected.insert(k2, (val, val2));
        }
        // Keys cut to the same prefix collapse (the later one wins, as in `validate`'s collect).
        assert_eq!(bp.len(), expected.len(), "props count after cutting");
        for (k, val) in bp {
            assert!(k.len() <= limits::PROP_KEY, "prop key of {} bytes", k.len());
            let (rv, text) = expected
                .get(k.as_ref())
                .unwrap_or_else(|| panic!("prop key {k:?} was not sent"));
            match (val, text) {
                (PropValue::Text(s), Some(s2)) => assert_eq!(s, s2, "prop {k:?} value cut"),
                (other, None) => assert_eq!(other, *rv, "prop {k:?} scalar changed"),
                (other, Some(_)) => panic!("prop {k:?} changed type: {other:?}"),
            }
        }
        if cut_any {
            t.push("props");
        }
    }

    assert_eq!(raw.device.is_some(), b.device.is_some(), "device presence");
    if let (Some(rd), Some(d)) = (&raw.device, &b.device) {
        field(t, "device.tz", &rd.tz, &d.tz, limits::TIMEZONE);
        list(
            t,
            "device.langs",
            &rd.langs,
            &d.langs,
            limits::LANGUAGES,
            limits::LANGUAGE,
        );
        field(
            t,
            "device.platform",
            &rd.platform,
            &d.platform,
            limits::PLATFORM,
        );
        field(t, "device.arch", &rd.arch, &d.arch, limits::ARCH);
        field(t, "device.bits", &rd.bits, &d.bits, limits::ARCH);
        field(
            t,
            "device.arch_src",
            &rd.arch_src,
            &d.arch_src,
            limits::ARCH,
        );
        assert_eq!(rd.uach.is_some(), d.uach.is_some(), "uach presence");
        if let (Some(r), Some(c)) = (&rd.uach, &d.uach) {
            list(
                t,
                "device.uach.brands",
                &r.brands,
                &c.brands,
                limits::BRANDS,
                limits::BRAND,
            );
            field(
                t,
                "device.uach.platform",
                &r.platform,
                &c.platform,
                limits::PLATFORM,
            );
            field(t, "device.uach.pv", &r.pv, &c.pv, limits::ARCH);
            field(t, "device.uach.model", &r.model, &c.model, limits::PLATFORM);
        }
        assert_eq!(rd.canvas.is_some(), d.canvas.is_some(), "canvas presence");
        if let (Some(r), Some(c)) = (&rd.canvas, &d.canvas) {
            field(t, "device.canvas.h", &r.h, &c.h, limits::HASH);
        }
        assert_eq!(rd.webgl.is_some(), d.webgl.is_some(), "webgl presence");
        if let (Some(r), Some(w)) = (&rd.webgl, &d.webgl) {
            field(
                t,
                "device.webgl.vendor",
                &r.vendor,
                &w.vendor,
                limits::WEBGL_TEXT,
            );
            field(
                t,
                "device.webgl.renderer",
                &r.renderer,
                &w.renderer,
                limits::WEBGL_TEXT,
            );
            field(t, "device.webgl.h", &r.h, &w.h, limits::HASH);
        }
        assert_eq!(rd.fonts.is_some(), d.fonts.is_some(), "fonts presence");
        if let (Some(r), Some(f)) = (&rd.fonts, &d.fonts) {
            field(t, "device.fonts.h", &r.h, &f.h, limits::HASH);
            list(
                t,
                "device.fonts.list",
                &r.list,
                &f.list,
                limits::FONTS,
                limits::FONT,
            );
        }
        list(
            t,
            "device.plugins",
            &rd.plugins,
            &d.plugins,
            limits::PLUGINS,
            limits::PLUGIN,
        );
        let (ra, a) = (&rd.auto, &d.auto);
        list(
            t,
            "device.auto.headless",
            &ra.headless,
            &a.headless,
            limits::SIGNALS,
            limits::SIGNAL,
        );
        list(
            t,
            "device.auto.globals",
            &ra.globals,
            &a.globals,
            limits::SIGNALS,
            limits::SIGNAL,
        );
        list(
            t,
            "device.auto.flags",
            &ra.flags,
            &a.flags,
            limits::SIGNALS,
            limits::SIGNAL,
        );
    }

    // `truncated` names exactly the fields that had to be cut, each once (order not promised).
    let got: BTreeSet<&str> = v.truncated.iter().copied().collect();
    assert_eq!(
        got.len(),
        v.truncated.len(),
        "duplicates in {:?}",
        v.truncated
    );
    let want: BTreeSet<&str> = want.into_iter().collect();
    assert_eq!(got, want, "truncated list");
}

/// The validator's URL rule: `http://` or `https://` followed by a host (non-empty, not `/`).
fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/'))
}

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
fn expect_cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap();
    &s[..end]
}

/// One string field: within `max`, the longest boundary-respecting prefix of what was sent, and
/// named in `truncated` iff it was cut.
fn field(t: &mut Vec<&'static str>, name: &'static str, raw: &str, got: &str, max: usize) {
    assert!(
        got.len() <= max,
        "{name}: {} bytes > limit {max}",
        got.len()
    );
    assert_eq!(got, expect_cut(raw, max), "{name}: not the expected cut");
    if raw.len() > max {
        t.push(name);
    }
}

/// One list field: at most `max_items` items, the first ones sent, each cut like a field.
fn list(
    t: &mut Vec<&'static str>,
    name: &'static str,
    raw: &[Cow<'_, str>],
    got: &[Cow<'_, str>],
    max_items: usize,
    max_len: usize,
) {
    assert!(
        got.len() <= max_items,
        "{name}: {} items > limit {max_items}",
        got.len()
    );
    assert_eq!(got.len(), raw.len().min(max_items), "{name}: item count");
    let mut cut_any = raw.len() > max_items;
    for (r, g) in raw.iter().zip(got) {
        assert!(
            g.len() <= max_len,
            "{name}: item of {} bytes > limit {max_len}",
            g.len()
        );
        assert_eq!(
            g.as_ref(),
            expect_cut(r, max_len),
            "{name}: item not the expected cut"
        );
        cut_any |= r.len() > max_len;
    }
    if cut_any {
        t.push(name);
    }
}
