//! Omnium's health is judged on the monotonic clock: a till clock that ran fast when
//! Omnium last took a write, then stepped back, must not make an outage use up attempts nor
//! keep the outage gate open.

use flow_omnium::clock::ManualClock;
use flow_omnium::sim::{Fault, FaultKind, SimConfig, Simulator};
use flow_omnium::sync::policy::Jitter;
use flow_omnium::sync::Worker;
use flow_omnium::Client;
use serde_json::{json, Value};
use std::sync::Arc;

mod common;

const YEAR_MS: i64 = 365 * 86_400_000;

fn status(client: &Client) -> Value {
    serde_json::from_str(&client.status_json().unwrap()).unwrap()
}

#[test]
fn a_wall_clock_stepped_back_after_a_healthy_write_does_not_make_an_outage_count() {
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
    let mut worker = Worker::new(client.sync_handle(), Jitter::from_seed(7));

    // The till clock runs a year fast while Omnium takes a sale.
    clock.jump_wall(YEAR_MS);
    client.record_sale(&common::sale("S-FAST", 1)).unwrap();
    for _ in 0..50 {
        worker.step(false);
        clock.advance(1_000);
        if status(&client)["outbox"]["pending"] == 0 {
            break;
        }
    }
    assert_eq!(
        status(&client)["outbox"]["pending"],
        0,
        "{}",
        status(&client)
    );
    // NTP steps it back; then Omnium answers nothing but 500s.
    clock.jump_wall(-YEAR_MS);
    sim.inject(Fault::new(FaultKind::Status(500), 100_000));
    for i in 0..5 {
        client
            .record_sale(&common::sale(&format!("S-OUT-{i}"), 1))
            .unwrap();
    }
    let mut went_offline = false;
    for _ in 0..60 {
        worker.step(false);
        clock.advance(6_000);
        went_offline |= status(&client)["online"] == false;
    }
    let s = status(&client);
    assert_eq!(s["outbox"]["dead"], 0, "an outage used up attempts: {s}");
    assert_eq!(s["outbox"]["pending"], 5, "{s}");
    assert!(went_offline, "the outage gate never closed: {s}");
}
