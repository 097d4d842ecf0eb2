//! A receipt whose claim was lost between its invoice and its file stops there: whoever
//! holds the job now sends the file (after checking what landed), so it is never uploaded
//! by both.

use flow_omnium::clock::{Clock, ManualClock};
use flow_omnium::sim::{SimConfig, Simulator};
use flow_omnium::sync::policy::Jitter;
use flow_omnium::sync::{push, Worker};
use flow_omnium::Client;
use serde_json::json;
use std::sync::Arc;

mod common;

#[test]
fn a_receipt_that_lost_its_claim_after_the_invoice_does_not_upload_its_file() {
    let clock = Arc::new(ManualClock::new(1_795_000_000_000));
    let (sim, transport) = Simulator::in_process(SimConfig::default(), clock.clone(), 2_000);
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(
        &dir.path().join("pos.db"),
        "http://127.0.0.1:9",
        json!({
            "omnium": {"max_concurrency": 1},
            "sync": {"retry_initial_ms": 1_000, "retry_max_ms": 5_000,
                     "pull_interval_ms": 36_000_000, "max_attempts": 3, "autostart": false},
        }),
    );
    let client = Client::open_simulated(&cfg, transport, clock.clone()).unwrap();
    let sync = client.sync_handle();
    let mut worker = Worker::new(sync.clone(), Jitter::from_seed(3));
    client.record_sale(&common::sale("S-R", 1)).unwrap();
    for _ in 0..20 {
        worker.step(false);
        clock.advance(1_000);
    }
    assert_eq!(common::status(&client)["outbox"]["pending"], 0);
    assert_eq!(sim.stats().invoices_created, 0);
    let receipt = json!({"id": "RC-1", "sale_id": "S-R", "receipt_number": "1",
        "issued_at": "2026-11-28T10:15:00+01:00", "total": 10000, "tax_total": 2000,
        "currency": "NOK", "customer_id": null, "file_name": "receipt-1.pdf"})
    .to_string();
    client
        .record_receipt(&receipt, b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n")
        .unwrap();
    let mut claimed = None;
    for _ in 0..60 {
        clock.advance(5_000);
        let jobs = sync.store.claim_due(clock.wall_ms(), 10).unwrap();
        claimed = jobs.into_iter().find(|j| j.kind == "receipt");
        if claimed.is_some() {
            break;
        }
    }
    let job = claimed.expect("the receipt comes due");
    // The claim is taken away (a failed round recovered the jobs in flight) while this try
    // is still under way with its old claim.
    sync.store.recover_in_flight(clock.wall_ms()).unwrap();
    let delivery = push::deliver(&job, &sync);
    assert!(delivery.result.is_err(), "{:?}", delivery.result);
    let stats = sim.stats();
    assert_eq!(stats.invoices_created, 1, "{stats:?}");
    assert_eq!(
        stats.invoice_files_added, 0,
        "the file went up under a lost claim: {stats:?}"
    );
}
