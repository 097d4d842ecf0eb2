//! The fuzz harnesses (fuzz/src/lib.rs) run in the ordinary test suite on every committed
//! seed and every input that once crashed a target (fuzz/regressions/<target>/): they stay
//! compiling whatever changes in src/, and a fixed crash cannot come back unnoticed.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("sale", harness::sale),
    ("return", harness::return_),
    ("cancellation", harness::cancellation),
    ("receipt", harness::receipt),
    ("customer", harness::customer),
    ("goods_reception", harness::goods_reception),
    ("stock_count", harness::stock_count),
    ("pickup", harness::pickup),
    ("search_query", harness::search_query),
    ("config", harness::config),
    ("event", harness::event),
    ("c_api", harness::c_api),
    ("omnium_catalog", harness::omnium_catalog),
    ("omnium_orders", harness::omnium_orders),
    ("omnium_store", harness::omnium_store),
    ("omnium_http", harness::omnium_http),
    ("retry_after", harness::retry_after),
];

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn every_fuzz_target_passes_its_seeds_and_past_crashes() {
    let scratch = tempfile::tempdir().unwrap();
    harness::set_scratch_dir(scratch.path().to_path_buf());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let declared = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut ran = 0;
    for (name, target) in TARGETS {
        assert!(
            declared.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no target {name}"
        );
        let seeds = inputs(&root.join("seeds").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name} has no seed");
        for (file, data) in seeds
            .iter()
            .chain(&inputs(&root.join("regressions").join(name)))
        {
            let outcome = std::panic::catch_unwind(|| target(data));
            assert!(outcome.is_ok(), "{file} fails the {name} target");
            ran += 1;
        }
    }
    // Every target declared in fuzz/Cargo.toml is replayed here.
    let declared_targets = declared.matches("[[bin]]").count();
    assert_eq!(
        declared_targets,
        TARGETS.len(),
        "a fuzz target is missing from TARGETS"
    );
    assert!(ran >= TARGETS.len());
}
