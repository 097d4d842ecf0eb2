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

/// The header is the reference a POS developer reads (issue 7, defect 9): every function
/// says which results it returns (`FO_PANIC` included, and `FO_CLOSED` for every call that
/// takes a client), which threads may call it, whether and how long it blocks, and who owns
/// each pointer. A new export without these fails here.
#[test]
fn every_export_documents_results_threads_blocking_and_pointers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/flow_omnium.h")).unwrap();
    let codes: Vec<String> = header
        .lines()
        .filter_map(|l| l.trim().strip_suffix(','))
        .filter_map(|l| l.split(" = ").next())
        .filter(|n| n.starts_with("FO_"))
        .map(str::to_string)
        .collect();
    assert!(codes.len() >= 13, "{codes:?}");
    let lines: Vec<&str> = header.lines().collect();
    let mut functions = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let is_decl = line.starts_with(|c: char| c.is_ascii_alphabetic())
            && !line.starts_with("typedef")
            && line.contains("fo_")
            && line.contains('(');
        if !is_decl {
            i += 1;
            continue;
        }
        // The declaration may span lines; its comment is the block of `//` lines above.
        let mut decl = line.to_string();
        let mut j = i;
        while !decl.trim_end().ends_with(';') {
            j += 1;
            decl.push_str(lines[j]);
        }
        let mut k = i;
        while k > 0 && lines[k - 1].starts_with("//") {
            k -= 1;
        }
        let doc = lines[k..i].join("\n");
        let name: String = decl[decl.find("fo_").unwrap()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        functions += 1;
        for part in ["Results:", "Threads:", "Blocks:"] {
            assert!(
                doc.contains(part),
                "{name}: its comment has no {part}\n{doc}"
            );
        }
        let results = &doc[doc.find("Results:").unwrap()..];
        let results = &results[..results.find("Threads:").unwrap_or(results.len())];
        let mut rest = results;
        while let Some(at) = rest.find("FO_") {
            let code: String = rest[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(codes.contains(&code), "{name}: {code} is not a result code");
            rest = &rest[at + code.len()..];
        }
        if decl.starts_with("enum fo_result") {
            assert!(results.contains("FO_PANIC"), "{name}: FO_PANIC not listed");
            assert!(results.contains("FO_OK"), "{name}: FO_OK not listed");
        }
        if decl.contains("struct fo_client *c") && decl.starts_with("enum fo_result") {
            for code in ["FO_CLOSED", "FO_NULL_ARGUMENT", "FO_INVALID_INPUT"] {
                assert!(results.contains(code), "{name}: {code} not listed");
            }
        }
        let has_pointer = decl.contains('*');
        if has_pointer {
            assert!(
                doc.contains("Pointers:"),
                "{name}: pointer ownership not said\n{doc}"
            );
        }
        i = j + 1;
    }
    assert!(functions >= 32, "found only {functions} functions");

    // fo_next_event names every event type the library queues: the known ones, and any
    // `"type": "x.y"` in a source file that queues events.
    let next_event = &header[..header.find("fo_next_event(").unwrap()];
    let next_event = &next_event[next_event.rfind("\n\n").unwrap()..];
    let mut types: std::collections::BTreeSet<String> = [
        "order.received",
        "order.updated",
        "order.cancelled",
        "stock.changed",
        "catalog.changed",
        "job.dead",
        "sync.online",
        "sync.offline",
        "sync.auth_failed",
        "goods_reception.over_received",
        "storage.damaged",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("sim") {
                    dirs.push(path);
                }
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Only code that queues events for fo_next_event (the operator tool's timeline
            // has types of its own).
            if !text.contains("events.push(") {
                continue;
            }
            for (at, _) in text.match_indices("\"type\": \"") {
                let t: String = text[at + 9..].chars().take_while(|c| *c != '"').collect();
                if t.contains('.') {
                    types.insert(t);
                }
            }
        }
    }
    for t in &types {
        assert!(
            next_event.contains(&format!("`{t}`")),
            "fo_next_event does not list the event type {t}"
        );
    }

    // The rules every function shares.
    for rule in ["longjmp", "unwind", "fork()", "pthread_key", "never free"] {
        assert!(
            header.contains(rule),
            "the header does not say anything about {rule}"
        );
    }
}
