//! Nothing acknowledged is lost: not by kill -9 of the recording process, not by a full
//! disk. Both break things for real: a SIGKILLed child process, a tmpfs that fills up.

mod common;

use common::*;
use flow_omnium::{Client, Error};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs the C recorder, SIGKILLs it after `acks` acknowledged sales, returns what it acked.
fn record_then_kill(exe: &Path, db: &Path, prefix: &str, acks: usize) -> Vec<String> {
    record_then_kill_threads(exe, db, prefix, acks, 1)
}

/// As [`record_then_kill`], with `threads` threads recording at once in the child.
fn record_then_kill_threads(
    exe: &Path,
    db: &Path,
    prefix: &str,
    acks: usize,
    threads: usize,
) -> Vec<String> {
    let mut child = Command::new(exe)
        .arg(db)
        .arg(prefix)
        .arg(threads.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < acks {
        match lines.next() {
            Some(Ok(id)) => acked.push(id),
            other => panic!("recorder stopped early: {other:?}"),
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
                           // Ids printed between our last read and the kill were acknowledged too.
    acked.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    assert!(!status.success(), "the recorder was killed");
    acked
}

#[test]
fn kill_9_of_the_recording_process_loses_nothing_it_acknowledged() {
    let exe = compile_c(&["tests/c/record_loop.c"], "fo_record_loop");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    let mut acked = Vec::new();
    for (round, n) in [40, 170, 333].into_iter().enumerate() {
        acked.extend(record_then_kill(&exe, &db, &format!("K{round}"), n));
    }
    let sim = sim();
    let client = open(&db, &sim, json!({}));
    client.flush(Duration::from_secs(60)).unwrap();
    for id in &acked {
        assert!(sim.order(id).is_some(), "acknowledged sale {id} was lost");
    }
    assert_eq!(sim.stats().duplicate_orders_rejected, 0);
    assert_eq!(sim.stats().orders_reapplied, 0, "no sale applied twice");
    // At most one unacknowledged sale per kill may have committed before the kill.
    let extra = sim.orders().len() - acked.len();
    assert!(
        extra <= 3,
        "{extra} sales landed that were never acknowledged or recorded"
    );
}

/// Eight threads record at once, so their calls share commits (group commit); a kill -9
/// lands while batches are open, committing and being acknowledged. Every id any thread was
/// told is recorded must be in the database after reopening.
#[test]
fn kill_9_during_concurrent_recording_loses_nothing_any_thread_acknowledged() {
    let exe = compile_c(&["tests/c/record_loop.c"], "fo_record_loop");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    let mut acked = Vec::new();
    for (round, n) in [57, 400, 1_111].into_iter().enumerate() {
        acked.extend(record_then_kill_threads(
            &exe,
            &db,
            &format!("G{round}"),
            n,
            8,
        ));
    }
    // Reopened by the library (recovery, migration), then read as it stored them.
    drop(
        Client::open(&config(
            &db,
            "http://127.0.0.1:9",
            json!({"sync": {"autostart": false}}),
        ))
        .unwrap(),
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: std::collections::HashSet<String> = conn
        .prepare("SELECT event_id FROM outbox_job WHERE kind = 'sale'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let threads: std::collections::HashSet<&str> =
        acked.iter().filter_map(|id| id.split('-').nth(1)).collect();
    assert_eq!(threads.len(), 8, "every thread acknowledged sales");
    for id in &acked {
        assert!(stored.contains(id), "acknowledged sale {id} was lost");
    }
    // Up to one batch per kill may have committed without being acknowledged.
    assert!(stored.len() >= acked.len());
}

/// A small tmpfs mounted for one test and unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            // mode=700: the library refuses a directory every account can write (tmpfs's
            // default root is 1777).
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=700"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_fo_storage_full_with_nothing_half_written_or_lost() {
    let dir = tempfile::tempdir().unwrap();
    // 800 KB: the catalog's own file and its -shm take about 135 KB of it from the start.
    let Some(fs) = Tmpfs::mount(dir.path(), "800k") else {
        // CI runs as root and sets FO_REQUIRE_ROOT_TESTS, so there this cannot be skipped.
        assert!(
            std::env::var_os("FO_REQUIRE_ROOT_TESTS").is_none(),
            "mounting a tmpfs failed; this test needs root"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    let db = dir.path().join("pos.db");
    let sim = sim();
    let cfg = config(&db, &sim.base_url(), json!({"sync": {"autostart": false}}));
    let client = Client::open(&cfg).unwrap();
    let mut acked = Vec::new();
    let mut failed_id = None;
    for i in 0..100_000 {
        let id = format!("D-{i}");
        match client.record_sale(&sale(&id, 8)) {
            Ok(()) => acked.push(id),
            Err(e) => {
                assert!(
                    matches!(e, Error::StorageFull(_)),
                    "expected StorageFull, got {e:?}"
                );
                assert!(e.to_string().contains("nothing was written"), "{e}");
                failed_id = Some(id);
                break;
            }
        }
    }
    let failed_id = failed_id.expect("the disk filled up");
    assert!(acked.len() > 10, "only {} sales fit", acked.len());
    // Still full: still a clean error, and reads keep working.
    assert!(matches!(
        client.record_sale(&sale("D-again", 8)),
        Err(Error::StorageFull(_))
    ));
    assert!(client.status_json().is_ok());

    // Space comes back: the same client records again without being reopened.
    fs.resize("16m");
    client
        .record_sale(&sale("D-after", 8))
        .expect("records once there is space");
    client.close();
    drop(client);

    let client = open(&db, &sim, json!({}));
    client.flush(Duration::from_secs(60)).unwrap();
    for id in acked.iter().chain(std::iter::once(&"D-after".to_string())) {
        assert!(sim.order(id).is_some(), "acknowledged sale {id} was lost");
    }
    assert!(
        sim.order(&failed_id).is_none(),
        "the refused sale {failed_id} must not exist"
    );
    assert_eq!(sim.orders().len(), acked.len() + 1);
    client.close();
}

#[test]
fn kill_9_in_the_middle_of_a_large_scroll_loses_nothing_and_refetches_about_one_page() {
    let exe = compile_c(&["tests/c/pull_wait.c"], "fo_pull_wait");
    let sim = sim();
    let page = 100;
    sim.set_scroll_page_size(page);
    sim.set_latency_ms(10);
    let loaded = sim.load_catalog(&flow_omnium::sim::CatalogSpec {
        products: 3000,
        max_variants: 1,
        ..Default::default()
    });
    sim.touch_products(3000);
    // The simulator stamps each change one millisecond after the last, so 3,000 changes made at
    // once run up to 3 s ahead of its clock. The library treats a `modified` beyond Omnium's
    // `Date` as a stamp from the future and keeps its cursor behind it, which would re-read
    // those pages after the kill for reasons that have nothing to do with the kill. Let
    // Omnium's clock pass the newest stamp first.
    std::thread::sleep(Duration::from_millis(3000 + 1500));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    let mut child = Command::new(&exe)
        .arg(sim.base_url())
        .arg(&db)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(60), || sim
        .stats()
        .products_served
        >= 1200));
    child.kill().unwrap();
    child.wait().unwrap();
    let served_before = sim.stats().products_served;
    assert!(
        served_before < 3000,
        "killed mid-scroll, not after it ({served_before} served)"
    );
    sim.set_latency_ms(0);

    let client = open(&db, &sim, json!({"sync": {"pull_overlap_ms": 0}}));
    assert!(wait_until(Duration::from_secs(60), || {
        client.store().sku_count().unwrap() as usize == loaded.skus
            && status(&client)["pulling"] == false
    }));
    for sku in sim.sku_ids().iter().step_by(97) {
        assert!(client.product_json(sku).is_ok(), "{sku} lost");
    }
    let served = sim.stats().products_served;
    let refetched = served as i64 - 3000;
    assert!(
        refetched <= page as i64 + 2,
        "after the kill at {served_before} products served, {refetched} were fetched twice"
    );
}
