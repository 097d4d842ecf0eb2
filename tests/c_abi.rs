//! Issue 7 through C: the C ABI never crashes, hangs or surprises the host. Each scenario of
//! tests/c/abi_safety.c runs in its own process, so an abort (a panic unwinding into C, a
//! use-after-free) or a deadlock (caught by the program's alarm) fails only its own test.

mod common;

use common::*;
use std::process::Command;
use std::sync::OnceLock;

fn run(scenario: &str) {
    run_with(scenario, |_| None);
}

/// Runs `scenario`; `config` may make a client config (given the scenario's directory),
/// passed as the program's third argument.
fn run_with(scenario: &str, config: impl FnOnce(&std::path::Path) -> Option<String>) {
    static EXE: OnceLock<std::path::PathBuf> = OnceLock::new();
    let exe = EXE.get_or_init(|| compile_c(&["tests/c/abi_safety.c"], "fo_abi_safety"));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(exe);
    cmd.arg(scenario).arg(dir.path());
    if let Some(config) = config(dir.path()) {
        cmd.arg(config);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{scenario} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("{scenario}: 0 failed")),
        "{stdout}"
    );
}

#[test]
fn calls_racing_with_close_get_closed_and_the_handle_stays_a_tombstone() {
    run("close_race");
}

#[test]
fn a_log_callback_may_call_back_in_and_remove_itself() {
    run("log_reentry");
}

/// A replaced callback is neither running nor called again once fo_set_log_callback has
/// returned (a review probe saw 25 of 1,105 calls reach it late before).
#[test]
fn a_replaced_log_callback_is_idle_when_the_replacement_returns() {
    run("log_replace_waits");
}

#[test]
fn closing_from_the_callback_on_the_sync_thread_does_not_wait_for_itself() {
    run("close_in_callback");
}

/// Review of the flush fix: a log callback calling fo_flush on the sync thread with jobs
/// pending waited its whole timeout for itself, holding every delivery that long.
#[test]
fn flushing_from_the_callback_on_the_sync_thread_does_not_wait_for_itself() {
    run("flush_in_callback");
}

/// Review of the pipelined pull (3780b71): the next scroll page is fetched on a thread the
/// sync thread waits for; fo_flush from a log callback there waited its whole timeout,
/// holding every delivery that long.
#[test]
fn flushing_from_the_callback_on_the_page_fetching_thread_does_not_wait_for_the_worker() {
    let sim = sim();
    // Several pages: the second is fetched while the first is applied, and answered 401
    // once (the client renews its token and logs it there).
    sim.load_catalog(&flow_omnium::sim::CatalogSpec {
        products: 30,
        ..flow_omnium::sim::CatalogSpec::default()
    });
    sim.set_scroll_page_size(10);
    sim.inject(
        flow_omnium::sim::Fault::new(flow_omnium::sim::FaultKind::Status(401), 1)
            .on_method("GET")
            .on_path("/api/Products/Scroll/"),
    );
    run_with("flush_in_fetch_callback", |dir| {
        Some(config(
            &dir.join("fetch.db"),
            &sim.base_url(),
            serde_json::json!({}),
        ))
    });
}

#[test]
fn every_kind_of_export_is_safe_from_a_thread_local_destructor() {
    run("tls_destructor");
}

#[test]
fn closing_from_a_thread_local_destructor_joins_the_running_worker_and_releases_the_database() {
    run("tls_destructor_autostart");
}

#[test]
fn config_codes_absurd_lengths_and_long_ids_are_refused_cleanly() {
    run("inputs");
}

#[test]
fn sixteen_threads_record_read_poll_and_close_against_the_simulator() {
    let exe = compile_c(&["tests/c/stress.c"], "fo_stress");
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(exe)
        .arg(sim.base_url())
        .arg(dir.path())
        .args(["3", "700"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "stress failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains(", 0 failed"), "{stdout}");
    // The threads did their work between the closes.
    assert!(!stdout.contains(" 0 sales recorded"), "{stdout}");
}
