//! Hostile input through C: `tests/c/hostile.c` calls every export with NULL, empty, non-UTF-8,
//! interior-NUL, 16 MiB, 10⁶-deep, SQL, path-traversal, RTL and emoji arguments and checks
//! that only documented codes come back; here we check that it ran to the end, that the
//! hostile ids reached Omnium byte for byte, and that nothing was created outside its directory.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hostile strings of hostile.c's `WILD`, in order.
const WILD: &[&str] = &[
    "'; DROP TABLE outbox; --",
    "1' OR '1'='1",
    "../../../../etc/passwd",
    "%2e%2e%2f%00",
    "\u{202e}fdp.exe",
    "\u{200f}\u{5e9}\u{5dc}\u{5d5}\u{5dd}",
    "\u{1f600}\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}",
    "Z\u{30d}\u{311}\u{34a}\u{346}a\u{30e}\u{30d}l\u{30d}go",
    "$(rm -rf /)`id`",
    "<script>alert(1)</script>",
];

#[test]
fn every_export_survives_hostile_input_from_c_and_hostile_ids_reach_omnium_unchanged() {
    let exe = compile_c(&["tests/c/hostile.c"], "fo_hostile");
    let sim = sim();
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o700)).unwrap();

    let mut child = Command::new(&exe)
        .arg(sim.base_url())
        .arg(&work)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Generous: the program waits up to 60 s for delivery; a hang is a failure, not a stall.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("hostile.c hung for 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.success(),
        "hostile.c failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}\n{stderr}");

    // Every hostile id and SKU reached Omnium exactly as the till recorded it.
    for s in WILD {
        let order = sim
            .order(s)
            .unwrap_or_else(|| panic!("the sale {s:?} reached Omnium\n{stdout}"));
        assert_eq!(order["id"], *s);
        assert_eq!(order["orderForm"]["lineItems"][0]["code"], *s);
        assert_eq!(order["orderForm"]["lineItems"][0]["lineItemId"], *s);
        let forms = order["returnOrderForms"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            forms.iter().any(|f| f["rmaNumber"] == format!("R-{s}")),
            "the return of {s:?} reached Omnium: {order}"
        );
    }
    assert_eq!(sim.stats().duplicate_orders_rejected, 0);

    // Nothing was created beside the directory it was given (a path-traversal name, the
    // directory opened as a database, a path through a missing directory).
    let beside: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("work")]);
    let names: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in &names {
        assert!(
            name.ends_with(".db")
                || name.ends_with(".db-lock")
                || name.ends_with(".db-wal")
                || name.ends_with(".db-shm")
                || name.ends_with(".db-catalog")
                || name.ends_with(".db-catalog-wal")
                || name.ends_with(".db-catalog-shm"),
            "unexpected file {name:?} in the database directory: {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n == "'; DROP TABLE outbox; --.db"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "\u{202e}fdp.exe.db"), "{names:?}");
}

/// hostile.c must cover every function the header declares (a new export gets hostile
/// input too, or this fails).
#[test]
fn hostile_c_calls_every_export_in_the_header() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/flow_omnium.h")).unwrap();
    let program = std::fs::read_to_string(root.join("tests/c/hostile.c")).unwrap();
    let mut exports = Vec::new();
    for line in header.lines() {
        let line = line.trim_start();
        if line.starts_with("//") || line.starts_with('#') || line.starts_with("typedef") {
            continue;
        }
        for (at, _) in line.match_indices("fo_") {
            let name: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if line[at + name.len()..].starts_with('(') {
                exports.push(name);
            }
        }
    }
    assert!(exports.len() > 30, "found only {exports:?} in the header");
    let missing: Vec<_> = exports
        .iter()
        .filter(|name| {
            !program.contains(&format!("{name}("))
                && !program.contains(&format!("{{\"{name}\", {name}}}"))
        })
        .collect();
    assert!(missing.is_empty(), "hostile.c never calls {missing:?}");
}
