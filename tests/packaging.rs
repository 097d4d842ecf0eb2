//! Packaging facts a test can check without building a release: the header's version macros
//! match Cargo.toml, and the install script and cargo-c metadata agree on names.

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

fn define(header: &str, name: &str) -> String {
    header
        .lines()
        .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("include/flow_omnium.h has no {name}"))
        .trim()
        .to_string()
}

#[test]
fn header_version_macros_match_cargo_toml() {
    let header = read("include/flow_omnium.h");
    let fix = "update after_includes in cbindgen.toml, then FO_BLESS=1 cargo test --features sim --test header";
    assert_eq!(
        define(&header, "FO_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MAJOR"),
        "{fix}"
    );
    assert_eq!(
        define(&header, "FO_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        "{fix}"
    );
    assert_eq!(
        define(&header, "FO_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION_PATCH"),
        "{fix}"
    );
    assert_eq!(
        define(&header, "FO_VERSION_STRING"),
        format!("\"{}\"", env!("CARGO_PKG_VERSION")),
        "{fix}"
    );
}

#[test]
fn cargo_c_metadata_names_the_library_the_install_script_installs() {
    let manifest = read("Cargo.toml");
    let capi = &manifest[manifest
        .find("[package.metadata.capi")
        .expect("Cargo.toml has [package.metadata.capi] (cargo-c)")..];
    for want in [
        "name = \"flow_omnium\"",
        "generation = false",
        "subdirectory = false",
    ] {
        assert!(
            capi.contains(want),
            "[package.metadata.capi.*] lacks {want}"
        );
    }
    let script = read("scripts/install.sh");
    for want in [
        "include/flow_omnium.h",
        "pkgconfig/flow_omnium.pc",
        "cmake/flow_omnium",
        "--keep-global-symbols",
        "-soname",
    ] {
        assert!(script.contains(want), "scripts/install.sh lacks {want}");
    }
}
