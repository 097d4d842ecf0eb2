//! Kill the worker, not just the recorder (issue 8): a child process records sales and
//! receipts and delivers them to a simulator that deduplicates nothing, and is SIGKILLed at a
//! named point of delivery (`FO_TEST_KILL_AT`, see `flow_omnium::sync::kill_point`): after
//! a claim, after requests were sent and before their outcomes were recorded, between a
//! receipt's invoice and its PDF, in the middle of a catalog scroll. Each point is hit many
//! times over one database; a last child drains. Every sale the children acknowledged reaches
//! Omnium once, every receipt has one PDF.

mod common;

use common::*;
use flow_omnium::sim::{CatalogSpec, SimConfig, SimModes, Simulator};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs in the child: records `FO_KILL_SALES` sales with receipts from `FO_KILL_FIRST`,
/// printing `ACK <id>` after each acknowledgement, then waits for delivery.
#[test]
fn child_process() {
    let Ok(url) = std::env::var("FO_KILL_CHILD_URL") else {
        return;
    };
    let db = std::env::var("FO_KILL_DB").unwrap();
    let first: usize = std::env::var("FO_KILL_FIRST").unwrap().parse().unwrap();
    let sales: usize = std::env::var("FO_KILL_SALES").unwrap().parse().unwrap();
    let cfg = config(
        Path::new(&db),
        &url,
        json!({"omnium": {"timeout_ms": 500}, "sync": {"pull_interval_ms": 3_600_000}}),
    );
    let client = flow_omnium::Client::open(&cfg).unwrap();
    for i in first..first + sales {
        let id = format!("S-{i}");
        client.record_sale(&sale(&id, 2)).unwrap();
        println!("ACK {id}");
        let receipt = json!({"id": format!("RC-{i}"), "sale_id": id, "receipt_number": i.to_string(),
            "issued_at": "2026-11-28T10:15:00+01:00", "total": 20100, "tax_total": 4020,
            "currency": "NOK", "customer_id": null, "file_name": format!("RC-{i}.pdf")});
        let pdf = format!("%PDF-1.7\n% receipt {i}\n%%EOF\n");
        client
            .record_receipt(&receipt.to_string(), pdf.as_bytes())
            .unwrap();
        println!("ACK RC-{i}");
    }
    let _ = client.flush(Duration::from_secs(60));
}

/// One child run; returns the ids it acknowledged and whether it was SIGKILLed.
fn child(
    sim: &Simulator,
    db: &Path,
    kill_at: Option<&str>,
    first: usize,
    sales: usize,
) -> (Vec<String>, bool) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "child_process",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("FO_KILL_CHILD_URL", sim.base_url())
    .env("FO_KILL_DB", db)
    .env("FO_KILL_FIRST", first.to_string())
    .env("FO_KILL_SALES", sales.to_string())
    .env_remove("FO_TEST_KILL_AT")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(at) = kill_at {
        cmd.env("FO_TEST_KILL_AT", at);
    }
    let mut child = cmd.spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let acked: Vec<String> = out
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("ACK ").map(str::to_string))
        .collect();
    let status = child.wait().unwrap();
    (acked, status.signal() == Some(9))
}

#[test]
fn a_worker_killed_at_each_point_of_delivery_delivers_everything_once() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    sim.set_modes(SimModes {
        dedup_orders: false,
        dedup_returns: false,
        ..SimModes::default()
    });
    sim.set_scroll_page_size(50);
    sim.load_catalog(&CatalogSpec {
        products: 400,
        max_variants: 1,
        ..CatalogSpec::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    let mut acked = Vec::new();
    let mut kills = std::collections::BTreeMap::new();
    let mut next = 1;
    let points = [
        "after_claim",
        "after_send",
        "between_invoice_and_file",
        "mid_scroll",
    ];
    for round in 0..5 {
        for point in points {
            // Each point hit a different number of times into the run.
            let at = format!("{point}:{}", 1 + round % 3);
            let (ids, killed) = child(&sim, &db, Some(&at), next, 4);
            next += 4;
            acked.extend(ids);
            if killed {
                *kills.entry(point).or_insert(0) += 1;
            }
        }
    }
    // Every point was reached and killed at least once.
    for point in points {
        assert!(
            kills.get(point).copied().unwrap_or(0) > 0,
            "never killed at {point}: {kills:?}"
        );
    }
    // A last run, not killed, delivers what is left.
    let (ids, killed) = child(&sim, &db, None, next, 1);
    assert!(!killed);
    acked.extend(ids);
    let stats = sim.stats();
    assert_eq!(stats.orders_reapplied, 0, "a sale applied twice: {stats:?}");
    for id in &acked {
        if let Some(n) = id.strip_prefix("RC-") {
            assert_eq!(sim.invoice_files(id).len(), 1, "receipt {n}");
        } else {
            assert!(sim.order(id).is_some(), "{id} acknowledged and lost");
        }
    }
    eprintln!(
        "kills per point: {kills:?}; {} events acknowledged",
        acked.len()
    );
}
