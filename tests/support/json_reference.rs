//! The reference `beacon::parse` must agree with: `serde_json` and the `Deserialize` derives.
//!
//! Shared by `tests/json_differential.rs` and the fuzz targets (`fuzz/src/lib.rs`), so both hold
//! the reader to one rule. The one excused difference: serde also reads a struct written as a JSON
//! array of its fields in declaration order (`"screen":[1280,720,...]`); the protocol says
//! objects, and the reader refuses arrays there. It is excused only where the reader stopped: its
//! error names a struct's object and points at the `[` that opens an array.

#![allow(dead_code)]

use footfall::beacon::{self, Beacon, BeaconError, Validated};

/// The reader's names for the beacon's structs, as in its "expected a canvas object" errors.
const STRUCT_OBJECTS: &[&str] = &[
    "a device object",
    "a screen object",
    "a viewport object",
    "a window object",
    "a client-hints object",
    "a canvas object",
    "a webgl object",
    "a fonts object",
    "a media object",
    "an automation object",
];

/// Panics unless `ours` (what `beacon::parse` made of `body`) agrees with the reference: both
/// accept with the same `Debug` text, or both refuse. Returns whether `body` was accepted.
pub fn check_same_as_reference(body: &[u8], ours: &Result<Validated<'_>, BeaconError>) -> bool {
    let reference = std::str::from_utf8(body)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<Beacon<'_>>(t).map_err(|e| e.to_string()))
        .and_then(|b| beacon::validate(b).map_err(|e| e.to_string()));
    let shown = String::from_utf8_lossy(body);
    match (ours, &reference) {
        (Ok(a), Ok(b)) => {
            assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "read differently: {shown}"
            );
            true
        }
        (Err(_), Err(_)) => false,
        (Ok(_), Err(e)) => panic!("accepted, but the serde reference refuses ({e}): {shown}"),
        (Err(e), Ok(_)) => {
            let excused = refused_struct_as_array(body, &e.to_string());
            assert!(
                excused,
                "refused ({e}), but the serde reference accepts: {shown}"
            );
            false
        }
    }
}

/// Whether `error` is the reader stopping at an array where one of the beacon's structs belongs.
/// Read from the error's text and checked against the body: only the byte it names may be the
/// excused `[`. (Parsing the body as a `serde_json::Value` to look for such arrays would fail
/// on bodies that serde accepts, e.g. with an unpaired surrogate under an unknown key.)
fn refused_struct_as_array(body: &[u8], error: &str) -> bool {
    let Some(rest) = error.strip_prefix("invalid beacon JSON: expected ") else {
        return false;
    };
    let Some((what, at)) = rest.split_once(" at byte ") else {
        return false;
    };
    let at: Option<usize> = at.parse().ok();
    STRUCT_OBJECTS.contains(&what) && at.and_then(|i| body.get(i)) == Some(&b'[')
}
