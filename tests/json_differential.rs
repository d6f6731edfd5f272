//! The beacon reader (`beacon::parse`) accepts exactly the bodies that `serde_json` with the
//! `Deserialize` derives accepts, and reads every field to the same value.
//!
//! `serde_json` is the reference: the reader replaced it on the input path for speed, and these
//! cases (plus the `parse` fuzz targets, which run the same comparison on every input) keep the two
//! in step. The rule and its one excused difference are in `support/json_reference.rs`.

#[path = "support/json_reference.rs"]
mod json_reference;

use footfall::beacon;
use serde_json::{json, Value};

/// Both accept with equal results, or both refuse. Returns whether the body was accepted.
fn agree(body: &str) -> bool {
    json_reference::check_same_as_reference(body.as_bytes(), &beacon::parse(body.as_bytes()))
}

fn fixtures() -> Vec<&'static str> {
    include_str!("fixtures/beacons.jsonl").lines().collect()
}

#[test]
fn every_captured_beacon_is_read_the_same() {
    for line in fixtures() {
        assert!(agree(line), "a captured beacon was refused: {line}");
    }
}

/// Every value in the tree, as a path of keys and indices.
fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                at.push(json!(k));
                out.push(at.clone());
                paths(child, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                at.push(json!(i));
                out.push(at.clone());
                paths(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn slot<'v>(v: &'v mut Value, path: &[Value]) -> &'v mut Value {
    path.iter().fold(v, |v, step| match step {
        Value::String(k) => &mut v[k.as_str()],
        Value::Number(i) => &mut v[i.as_u64().unwrap() as usize],
        _ => unreachable!(),
    })
}

#[test]
fn every_field_given_every_kind_of_value_is_read_the_same() {
    let swaps = [
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(4294967296u64),
        json!(-2147483649i64),
        json!(9223372036854775808u64),
        json!(1e39),
        json!(""),
        json!("pageview"),
        json!("x\"\\\u{1}é😀"),
        json!([]),
        json!(["a", "b"]),
        json!([1]),
        json!({}),
        json!({"custom": null}),
        json!({"w": 1, "h": 2}),
    ];
    let (mut accepted, mut total) = (0, 0);
    for line in fixtures() {
        let base: Value = serde_json::from_str(line).unwrap();
        let mut all = Vec::new();
        paths(&base, &mut Vec::new(), &mut all);
        for path in &all {
            for swap in &swaps {
                let mut v = base.clone();
                *slot(&mut v, path) = swap.clone();
                total += 1;
                accepted += usize::from(agree(&v.to_string()));
            }
        }
    }
    // Both outcomes are exercised in bulk, not just one.
    assert!(
        total > 5_000 && accepted > 500 && accepted < total - 500,
        "{accepted}/{total}"
    );
}

#[test]
fn every_single_byte_edit_of_a_beacon_is_read_the_same() {
    let edits: &[&[u8]] = &[
        b"",
        b"\"",
        b"\\",
        b",",
        b":",
        b"{",
        b"}",
        b"[",
        b"]",
        b"0",
        b"-",
        b".",
        b"e",
        b"n",
        b" ",
        b"\x01",
        b"\t",
        "é".as_bytes(),
        b"1",
        b"u",
    ];
    let mut total = 0;
    for line in fixtures().into_iter().take(4) {
        let bytes = line.as_bytes();
        for at in 0..bytes.len() {
            for edit in edits {
                for replace in [false, true] {
                    let mut b = bytes[..at].to_vec();
                    b.extend_from_slice(edit);
                    b.extend_from_slice(&bytes[at + usize::from(replace)..]);
                    if let Ok(body) = std::str::from_utf8(&b) {
                        total += 1;
                        agree(body);
                    }
                }
            }
        }
    }
    assert!(total > 50_000, "{total}");
}

#[test]
fn edge_cases_of_the_json_grammar_are_read_the_same() {
    let cases = [
        // Escaped keys are matched after unescaping, like serde's field visitor.
        r#"{"\u0076":1,"site":"s","url":"https://a.b/"}"#,
        r#"{"v":1,"s\u0069te":"s","url":"https://a.b/","\ud83d\ude00":1}"#,
        // Duplicates: an error for a known key, fine for an unknown one, last wins in props.
        r#"{"v":1,"v":1,"site":"s","url":"https://a.b/"}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","zz":1,"zz":2}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","kind":"custom","name":"n","props":{"a":1,"a":"x"}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"screen":{"w":1,"w":2}}}"#,
        // Whitespace of every JSON kind, everywhere.
        " \t\r\n{ \"v\" : 1 ,\n\"site\"\t:\"s\" , \"url\":\"https://a.b/\" } \r\n",
        // Not whitespace in JSON.
        "\u{c}{\"v\":1,\"site\":\"s\",\"url\":\"https://a.b/\"}",
        "\u{feff}{\"v\":1,\"site\":\"s\",\"url\":\"https://a.b/\"}",
        // Numbers at the edges of each field's type.
        r#"{"v":1,"site":"s","url":"https://a.b/","seq":4294967295,"ts":-9223372036854775808,"engaged_ms":18446744073709551615}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","seq":-0,"ts":null}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","seq":1.0}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","seq":1e0}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","ts":9223372036854775808}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"mem":1e39,"screen":{"dpr":3.4028235e38}}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"mem":0.1,"tzo":-2147483648,"screen":{"dpr":16777217}}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"mem":1e-50,"screen":{"dpr":-0.0}}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"mem":123456789012345678901234567890}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","kind":"custom","name":"n","props":{"a":1e308,"b":-1e-400,"c":18446744073709551616,"d":0.30000000000000004}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","kind":"custom","name":"n","props":{"a":1e309}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","kind":"custom","name":"n","props":{"a":null}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","kind":"custom","name":"n","props":null}"#,
        // Enums as strings and in serde's map form.
        r#"{"v":1,"site":"s","url":"https://a.b/","kind":{"pageview":null},"consent":{"granted":null}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","kind":{"pageview":1}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","kind":{"pageview":null,"custom":null}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","kind":{}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","kind":"Pageview"}"#,
        // Strings: escapes, surrogates, raw control characters, DEL and non-ASCII.
        r#"{"v":1,"site":"s\"\\\/\b\f\n\r\t","url":"https://a.b/\u00e9\ud83d\ude00"}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","title":"\ud800"}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","title":"\udc00\ud800"}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","title":"\ud800\ud800\udc00"}"#,
        // Unpaired surrogates are refused in kept strings and in every key serde reads as a field
        // name, but pass under unknown keys, which serde skips by the grammar alone.
        r#"{"v":1,"site":"s","url":"https://a.b/","x":"\ud83d","y":{"\udc00":["\ud800x"]}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","\ud83d":1}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"\ud83d":1}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"zz":"\ud83d"}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","kind":"custom","name":"n","props":{"\ud83d":1}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","x":"\ud83"}"#,
        // A struct as an array (serde reads it, the reader refuses it), beside a string only the
        // grammar-checking skip accepts.
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"canvas":["h"]}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"canvas":["h"]},"x":"\ud83d"}"#,
        "{\"v\":1,\"site\":\"s\",\"url\":\"https://a.b/\",\"title\":\"tab\there\"}",
        "{\"v\":1,\"site\":\"s\",\"url\":\"https://a.b/\",\"title\":\"del\u{7f} ок\"}",
        // Structure: nulls, trailing commas and characters, missing and empty things.
        r#"{"v":1,"site":"s","url":"https://a.b/","device":null}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"canvas":null,"webgl":null,"fonts":null,"media":null,"uach":null}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"auto":null}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"plugins":null}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"plugins":["a",null]}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","device":{"canvas":{}}}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/",}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/"} x"#,
        r#"{"v":1,"site":"s","url":"https://a.b/"}{}"#,
        r#"{"site":"s","url":"https://a.b/"}"#,
        r#"{"v":1,"url":"https://a.b/"}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","x":[1,[2,[3,{"y":[tru]}]]]}"#,
        r#"{"v":1,"site":"s","url":"https://a.b/","x":[1,[2,[3,{"y":[true]}]]]}"#,
        r#"[1,"s"]"#,
        "{}",
        "null",
        "\"v\"",
        "",
        " ",
    ];
    for case in cases {
        agree(case);
    }
    // Nesting at and past the limit, inside an ignored field.
    for depth in [126, 127, 128, 100_000] {
        let body = format!(
            r#"{{"v":1,"site":"s","url":"https://a.b/","x":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        agree(&body);
    }
}
