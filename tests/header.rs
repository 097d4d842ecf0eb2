//! The checked-in header must be exactly what cbindgen generates from the source, so the
//! C API a POS compiles against can never drift from the library it links.

use std::path::Path;

#[test]
fn checked_in_header_matches_the_generated_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("header is UTF-8");
    let path = root.join("include/flow_omnium.h");
    if std::env::var_os("FO_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/flow_omnium.h");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/flow_omnium.h differs from what cbindgen generates from src/; \
         regenerate it with: FO_BLESS=1 cargo test --features sim --test header"
    );
}

/// Every `extern "C"` export runs its body inside the panic boundary (`guard` or
/// `guard_void`), and no export is missing `#[no_mangle]`.
#[test]
fn every_export_has_a_panic_boundary() {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ffi/mod.rs"))
        .unwrap();
    let mut exports = 0;
    let mut rest = src.as_str();
    while let Some(at) = rest.find("extern \"C\" fn ") {
        let after = &rest[at..];
        let name: String = after["extern \"C\" fn ".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let body_start = after.find('{').unwrap();
        let next = after[body_start..]
            .find("\n}\n")
            .map(|e| body_start + e)
            .unwrap_or(after.len());
        let body = &after[body_start..next];
        let is_type = rest[..at].trim_end().ends_with("Option<unsafe");
        if !is_type && !name.is_empty() {
            exports += 1;
            assert!(
                body.contains("guard(")
                    || body.contains("guard_value(")
                    || body.contains("guard_void(")
                    || body.contains("record(")
                    || body.contains("read_json(")
                    || body.contains("read_optional("),
                "{name} has no panic boundary"
            );
        }
        rest = &after[1..];
    }
    assert!(
        src.contains("unsafe fn record(")
            && src[src.find("unsafe fn record(").unwrap()..].contains("guard(|| {")
    );
    for helper in [
        "unsafe fn record(",
        "unsafe fn read_json(",
        "unsafe fn read_optional(",
    ] {
        let at = src.find(helper).unwrap();
        assert!(
            src[at..]
                .split("\n}\n")
                .next()
                .unwrap()
                .contains("guard(|| {"),
            "{helper} has no boundary"
        );
    }
    assert!(exports >= 31, "found only {exports} exports");
}
