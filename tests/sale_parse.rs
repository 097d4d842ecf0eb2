//! What a sale's JSON becomes: its canonical stored form, or the error code and message.
//!
//! `tests/golden/sale_parse.txt` holds one line per input generated below (valid sales,
//! each field set to each kind of wrong value or removed, unknown and repeated keys, cut and
//! broken text). The canonical form decides whether a sale recorded again is "the same"
//! (compared byte for byte with what an earlier version stored), and the messages are the
//! POS's only guide to a bad field: a parser change that alters either fails here.
//! `FO_BLESS=1 cargo test --features sim --test sale_parse` rewrites the file.

use flow_omnium::model::fields::{canonical_json, parse_object};
use flow_omnium::model::{Defaults, Sale};
use serde_json::{json, Value};
use std::fmt::Write as _;

fn defaults() -> Defaults {
    Defaults {
        store_id: "oslo-1".into(),
        currency: "NOK".into(),
    }
}

/// FNV-1a, 64 bits: the golden file holds a canonical form's hash, not its text.
fn fnv(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The path `record_sale` takes from the POS's text to the stored canonical JSON.
fn outcome(text: &str) -> String {
    match Sale::read(text, &defaults()) {
        Ok((sale, canonical)) => {
            // The stored form reads back as the same sale.
            let again = Sale::parse(&serde_json::from_str(&canonical).unwrap()).unwrap();
            assert_eq!(again, sale, "{text}");
            format!(
                "ok {} {} {}",
                canonical.len(),
                fnv(&canonical),
                fnv(&format!("{sale:?}"))
            )
        }
        Err(e) => format!("{} {e}", e.code().name()),
    }
}

fn base() -> Value {
    json!({"id": "S-1001", "created_at": "2026-11-28T10:15:00+01:00", "customer_id": "C-77",
           "salesperson_id": "E-5", "store_id": "oslo-1", "currency": "NOK", "rounding": -3,
           "lines": [{"line_id": "1", "sku": "SKU-1", "name": "T-shirt", "quantity": 2,
                      "unit_price": 19950, "discount": 100, "tax_rate": 25},
                     {"line_id": "2", "sku": "SKU-2", "name": "Bløtkake ☕", "quantity": 0.5,
                      "unit_price": 101, "tax_rate": 12.5}],
           "payments": [{"id": "P1", "method": "Card", "amount": 39848, "transaction_id": "tx-1"}]})
}

fn wrong_values() -> Vec<Value> {
    let mut v: Vec<Value> = vec![
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(1),
        json!(-1),
        json!(2.0),
        json!(2.5),
        json!(-0.0),
        json!(9007199254740993u64),
        json!(18446744073709551615u64),
        json!(-9223372036854775808i64),
        json!(9000000000000000001u64),
        json!(1.0e300),
        json!(""),
        json!(" "),
        json!("x"),
        json!("1"),
        json!(".."),
        json!("a\u{1}b"),
        json!("NOK"),
        json!("2026-11-28T10:15:00Z"),
        json!([]),
        json!({}),
        json!([1]),
        json!({"a": 1}),
    ];
    v.push(json!("i".repeat(129)));
    v
}

fn pointers(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (k, item) in v.as_object().unwrap() {
        out.push(format!("/{k}"));
        if let Value::Array(items) = item {
            for (i, o) in items.iter().enumerate() {
                for k2 in o.as_object().unwrap().keys() {
                    out.push(format!("/{k}/{i}/{k2}"));
                }
            }
        }
    }
    out
}

fn remove(v: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap()
        .remove(key);
}

fn inputs() -> Vec<String> {
    let mut out = Vec::new();
    let b = base();
    out.push(b.to_string());
    for p in pointers(&b) {
        for w in wrong_values() {
            let mut v = b.clone();
            *v.pointer_mut(&p).unwrap() = w;
            out.push(v.to_string());
        }
        let mut v = b.clone();
        remove(&mut v, &p);
        out.push(v.to_string());
    }
    for parent in ["", "/lines/0", "/lines/1", "/payments/0"] {
        for key in ["colour", "a", "zz", "Id"] {
            let mut v = b.clone();
            v.pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .unwrap()
                .insert(key.into(), json!(1));
            out.push(v.to_string());
        }
    }
    for (list, items) in [
        ("lines", json!([b["lines"][0], b["lines"][0]])),
        ("lines", json!([null])),
        ("lines", json!([b["lines"][0], 3])),
        ("lines", json!([{}])),
        ("payments", json!([b["payments"][0], b["payments"][0]])),
        (
            "payments",
            json!([{"method": "Card", "amount": 19000}, {"method": "Cash", "amount": 20848}]),
        ),
        (
            "payments",
            json!([{"id": "S-1001-P-2", "method": "Card", "amount": 19000}, {"method": "Cash", "amount": 20848}]),
        ),
    ] {
        let mut v = b.clone();
        v[list] = items;
        out.push(v.to_string());
    }
    let mut twenty = b.clone();
    twenty["lines"] = Value::Array(
        (0..20)
            .map(|i| {
                json!({"line_id": format!("{}", i + 1), "sku": format!("SKU-{:05}", 100 + i),
                            "quantity": 1, "unit_price": 1000, "discount": 0})
            })
            .collect(),
    );
    twenty["rounding"] = json!(0);
    twenty["payments"] = json!([{"method": "Card", "amount": 20000}]);
    out.push(twenty.to_string());
    // Defaults, nulls where the contract allows them, and numbers written as floats.
    out.push(
        r#"{"id":"S-2","created_at":"2026-11-28T10:15:00Z","customer_id":null,"salesperson_id":null,
            "store_id":null,"currency":null,"rounding":null,
            "lines":[{"line_id":"1","sku":"A","name":null,"quantity":1e1,"unit_price":1.0e2,"discount":null,"tax_rate":null}],
            "payments":[{"id":null,"method":"Cash","amount":1000.0,"transaction_id":null}]}"#
            .into(),
    );
    out.push(
        r#"{"id":"S-3","created_at":"2026-11-28T10:15:00Z",
            "lines":[{"line_id":"1","sku":"A","quantity":-0.0e0,"unit_price":100}],
            "payments":[{"method":"Cash","amount":0}]}"#
            .into(),
    );
    // Escapes, unicode, control characters where text allows them, keys escaped.
    out.push(
        r#"{"i\u0064":"S-\u00e6\"4\\","created_at":"2026-11-28T10:15:00+01:00",
            "lines":[{"line_id":"1","sku":"A/\u2603","name":"Tab\there\n\u0000 \ud83d\ude00","quantity":3,"unit_price":7}],
            "payments":[{"method":"Cash\u000b","amount":21}]}"#
            .into(),
    );
    // Key order, repeated keys (the last wins), unknown keys out of order.
    let ordered = r#""created_at":"2026-11-28T10:15:00Z","lines":[{"sku":"A","line_id":"1","unit_price":5,"quantity":1}],"payments":[{"amount":5,"method":"Cash"}]"#;
    for head in [
        r#""id":"S-5","#,
        r#""id":"S-0","id":"S-5","#,
        r#""id":7,"id":"S-5","#,
        r#""id":"S-5","id":null,"#,
        r#""zz":1,"id":"S-5","aa":2,"#,
        r#""zz":1,"id":"S-5","#,
        r#""id":"S-5","lines":7,"#,
        r#""id":"S-5","zz":"\ud800","#,
        r#""id":"S-5","zz":"\ud800\u0041","#,
        r#""id":"S-5","zz":"bad \q escape","#,
        r#""id":"S-5","zz":1e400,"#,
        r#""id":"S-5","name":"x","#,
    ] {
        out.push(format!("{{{head}{ordered}}}"));
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    out.push(format!(r#"{{"id":"S-5","zz":{deep},{ordered}}}"#));
    out.push(format!(r#"{{"id":"S-5","zz":{{"a":{deep}}},{ordered}}}"#));
    out.push(format!(r#"{{"id":"S-5",{ordered},"lines":[{deep}]}}"#));
    // Not objects, cut text, trailing text.
    for text in [
        "",
        " ",
        "[]",
        "[1,",
        "1",
        "\"s\"",
        "null",
        "true",
        "{",
        "{}",
        "{\"id\"}",
        "[{}]",
        "{\"id\":\"S\"} x",
        "{\"id\":\"S\"}}",
        "\u{feff}{}",
        "{\"id\":\"S\",}",
        "{'id':'S'}",
    ] {
        out.push(text.into());
    }
    let whole = b.to_string();
    for cut in (1..whole.len()).step_by(13) {
        if whole.is_char_boundary(cut) {
            out.push(whole[..cut].to_string());
        }
    }
    out.push(format!("{whole} x"));
    out.push(format!("{whole}]"));
    out.push(format!("[{whole}]"));
    out
}

#[test]
fn every_sale_input_gives_the_stored_form_or_the_message_it_gave_before() {
    let mut got = String::new();
    for text in inputs() {
        let _ = writeln!(got, "{}", outcome(&text));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sale_parse.txt");
    if std::env::var_os("FO_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap();
    let inputs = inputs();
    for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        assert_eq!(g, w, "input {i}: {}", inputs[i]);
    }
    assert_eq!(got.lines().count(), want.lines().count());
}

/// The answer of the tree reader: parse into a `Value`, fill the defaults, check, write
/// the canonical form.
fn through_a_tree(text: &str) -> Result<(Sale, String), String> {
    let mut value = parse_object(text, "sale").map_err(|e| e.to_string())?;
    Sale::normalize(&mut value, &defaults());
    let sale = Sale::parse(&value).map_err(|e| e.to_string())?;
    Ok((sale, canonical_json(&value)))
}

#[test]
fn the_one_pass_reader_agrees_with_the_tree_reader_on_mangled_sales() {
    // Byte-level mutations (deterministic): flipped, dropped, doubled and swapped bytes and
    // JSON punctuation dropped in, on every input above.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    const PUNCT: &[u8] = b"{}[]\",:0123456789.eE-+ ntrufalse\\";
    let mut agreed = 0;
    for text in inputs() {
        for _ in 0..40 {
            let mut bytes = text.clone().into_bytes();
            for _ in 0..1 + next(3) {
                if bytes.is_empty() {
                    break;
                }
                let at = next(bytes.len());
                match next(4) {
                    0 => bytes[at] = PUNCT[next(PUNCT.len())],
                    1 => {
                        bytes.remove(at);
                    }
                    2 => bytes.insert(at, bytes[at]),
                    _ => {
                        let other = next(bytes.len());
                        bytes.swap(at, other);
                    }
                }
            }
            let Ok(mangled) = String::from_utf8(bytes) else {
                continue;
            };
            let one_pass = Sale::read(&mangled, &defaults()).map_err(|e| e.to_string());
            assert_eq!(one_pass, through_a_tree(&mangled), "{mangled}");
            agreed += 1;
        }
    }
    assert!(agreed > 10_000, "{agreed}");
}
