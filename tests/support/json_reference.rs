//! The reference `beacon::parse` must agree with: `serde_json` and the `Deserialize` derives.
//!
//! Shared by `tests/json_differential.rs` and the fuzz targets (`fuzz/src/lib.rs`), so both hold
//! the reader to one rule. The one excused difference: serde also reads a struct written as a JSON
//! array of its fields in declaration order (`"screen":[1280,720,...]`); the protocol says
//! objects, and the reader refuses arrays there.

#![allow(dead_code)]

use footfall::beacon::{self, Beacon, BeaconError, Validated};
use serde_json::Value;

/// Keys whose values are structs: serde also reads those from arrays.
const STRUCT_KEYS: &[&str] = &[
    "device", "screen", "vp", "win", "uach", "canvas", "webgl", "fonts", "media", "auto",
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
            let excused = serde_json::from_slice::<Value>(body).is_ok_and(|v| struct_as_array(&v));
            assert!(
                excused,
                "refused ({e}), but the serde reference accepts: {shown}"
            );
            false
        }
    }
}

/// Whether a struct-valued key holds an array anywhere in `v`.
fn struct_as_array(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            (STRUCT_KEYS.contains(&k.as_str()) && v.is_array()) || struct_as_array(v)
        }),
        Value::Array(a) => a.iter().any(struct_as_array),
        _ => false,
    }
}
