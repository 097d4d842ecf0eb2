//! Omnium's health is judged on the monotonic clock: a till clock that ran fast when
//! Omnium last took a write, then stepped back, must not make an outage use up attempts nor
//! keep the outage gate open.

use flow_omnium::clock::ManualClock;
use flow_omnium::sim::{Fault, FaultKind, SimConfig, SimModes, Simulator};
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

fn deliver_all(client: &Client, worker: &mut Worker, clock: &ManualClock) {
    for _ in 0..50 {
        worker.step(false);
        clock.advance(1_000);
        if status(client)["outbox"]["pending"] == 0 {
            return;
        }
    }
    panic!("not delivered: {}", status(client));
}

/// Runs idle rounds two hours later (the purge runs hourly, on the monotonic clock, in a
/// round with nothing to send and no pull running).
fn purge_round(client: &Client, worker: &mut Worker, clock: &ManualClock) {
    clock.advance(2 * 3_600_000);
    for _ in 0..200 {
        worker.step(false);
        if status(client)["pulling"] == false {
            break;
        }
    }
    worker.step(false);
}

fn open_in_process(
    date: bool,
) -> (
    Arc<ManualClock>,
    Simulator,
    Client,
    Worker,
    tempfile::TempDir,
) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now().timestamp_millis()));
    let (sim, transport) = Simulator::in_process(SimConfig::default(), clock.clone(), 2_000);
    if date {
        // Omnium's answers carry its clock (the real time here), as every HTTP server's do.
        sim.set_modes(SimModes {
            date_skew_ms: Some(0),
            ..sim.modes()
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(
        &dir.path().join("pos.db"),
        "http://127.0.0.1:9",
        json!({
            "omnium": {"max_concurrency": 1},
            "sync": {"retry_initial_ms": 1_000, "retry_max_ms": 5_000,
                     "pull_interval_ms": 36_000_000, "autostart": false},
        }),
    );
    let client = Client::open_simulated(&cfg, transport, clock.clone()).unwrap();
    let worker = Worker::new(client.sync_handle(), Jitter::from_seed(11));
    (clock, sim, client, worker, dir)
}

fn delivered(client: &Client, id: &str) -> bool {
    client
        .store()
        .outbox_rows()
        .unwrap()
        .iter()
        .any(|r| r.event_id == id && r.state == "delivered")
}

/// Review finding (c): the purge's cut-off is never ahead of Omnium's clock. A till clock
/// two years fast (which has delivered since, so its newest stamps are fast too) used to
/// purge a sale delivered minutes earlier, and the record of its id: recorded again, it was
/// sent again.
#[test]
fn a_wall_clock_years_fast_purges_nothing_young() {
    let (clock, sim, client, mut worker, _dir) = open_in_process(true);
    client.record_sale(&common::sale("S-YOUNG", 1)).unwrap();
    deliver_all(&client, &mut worker, &clock);
    clock.jump_wall(2 * YEAR_MS);
    client.record_sale(&common::sale("S-FAST", 1)).unwrap();
    deliver_all(&client, &mut worker, &clock);
    purge_round(&client, &mut worker, &clock);
    assert!(
        delivered(&client, "S-YOUNG"),
        "a two-hour-old delivery was purged"
    );
    client.record_sale(&common::sale("S-YOUNG", 1)).unwrap();
    deliver_all(&client, &mut worker, &clock);
    assert_eq!(sim.orders().len(), 2);
    let stats = sim.stats();
    assert_eq!(
        (stats.orders_reapplied, stats.duplicate_orders_rejected),
        (0, 0),
        "{stats:?}"
    );
}

/// Without any `Date` from Omnium, the cut-off is never ahead of the newest delivery.
#[test]
fn without_omniums_date_a_fast_clock_purges_nothing_younger_than_the_newest_delivery() {
    let (clock, _sim, client, mut worker, _dir) = open_in_process(false);
    client.record_sale(&common::sale("S-YOUNG", 1)).unwrap();
    deliver_all(&client, &mut worker, &clock);
    clock.jump_wall(2 * YEAR_MS);
    purge_round(&client, &mut worker, &clock);
    assert!(
        delivered(&client, "S-YOUNG"),
        "a two-hour-old delivery was purged"
    );
    // A delivery older than the retention by Omnium's measure still goes.
    clock.jump_wall(-2 * YEAR_MS);
    clock.advance(40 * 86_400_000);
    client.record_sale(&common::sale("S-LATER", 1)).unwrap();
    deliver_all(&client, &mut worker, &clock);
    purge_round(&client, &mut worker, &clock);
    assert!(
        !delivered(&client, "S-YOUNG"),
        "a 40-day-old delivery was kept"
    );
    assert!(delivered(&client, "S-LATER"));
}
