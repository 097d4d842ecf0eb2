//! Many tills on one API user against a simulator enforcing Omnium's rate limits (issue 13):
//! a till throttled again and again lowers its own rate, no request is sent inside a
//! Retry-After, and every sale arrives once. The full fleet benchmark is benches/fleet.rs.

mod common;

use common::*;
use flow_omnium::sim::{Fault, FaultKind, Limits, Simulator};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn assert_each_once(sim: &Simulator, expected: &[String]) {
    let mut ids = BTreeMap::new();
    for o in sim.orders() {
        *ids.entry(o["id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    for id in expected {
        assert_eq!(ids.get(id), Some(&1), "sale {id} must be in Omnium once");
    }
    assert_eq!(ids.len(), expected.len(), "no other orders");
    assert_eq!(
        sim.stats().duplicate_orders_rejected,
        0,
        "no sale sent twice"
    );
}

#[test]
fn repeated_429s_grow_the_pause() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"omnium": {"max_concurrency": 1}}),
    );
    client.flush(Duration::from_secs(10)).unwrap();
    // Three 429s in a row, each asking for 1 s: a till that only obeyed Retry-After would be
    // through after about 3 s; one that lowers its rate pauses 1 s, then 2 s, then 4 s.
    sim.inject(
        Fault::new(
            FaultKind::TooManyRequests {
                retry_after_secs: 1,
            },
            3,
        )
        .on_method("PUT"),
    );
    client.record_sale(&sale("G-1", 1)).unwrap();
    let started = Instant::now();
    client.flush(Duration::from_secs(40)).unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(6500),
        "pauses did not grow: {took:?}"
    );
    assert_eq!(sim.stats().requests_while_paused, 0);
    assert_each_once(&sim, &["G-1".to_string()]);
}

/// A tiny fleet: 5 tills, one API user, limits tight enough to throttle them.
#[test]
fn fleet_smoke_five_tills_under_tight_limits() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    sim.set_limits(Some(Limits {
        concurrency: 3,
        bucket: 15.0,
        refill_per_sec: 5.0,
    }));
    let tills: Vec<_> = (0..5)
        .map(|t| {
            open(
                &dir.path().join(format!("till{t}.db")),
                &sim,
                // One request at a time per till: a request already under way when another
                // thread of the same till got a 429 is not one sent inside its Retry-After.
                json!({"terminal_id": format!("t{t:02}"), "omnium": {"max_concurrency": 1}}),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for round in 0..4 {
        for (t, till) in tills.iter().enumerate() {
            let id = format!("F-{t}-{round}");
            till.record_sale(&sale(&id, 2)).unwrap();
            expected.push(id);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(50);
    for till in &tills {
        let left = deadline.saturating_duration_since(Instant::now());
        till.flush(left).expect("every till flushes within 50 s");
    }
    assert_each_once(&sim, &expected);
    let per_till = sim.till_stats();
    assert!(per_till.len() >= 5, "{per_till:?}");
    let inside: u64 = per_till.values().map(|t| t.inside_retry_after).sum();
    assert_eq!(inside, 0, "a request inside a Retry-After: {per_till:?}");
}
