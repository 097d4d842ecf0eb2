//! Many tills on one API user against a simulator enforcing Omnium's rate limits (issue 13):
//! a till throttled again and again lowers its own rate, the tills of one process share the
//! API user's pause, its 20 concurrent requests and the end of an outage, no request is sent
//! inside a Retry-After, and every sale arrives once. The full fleet benchmark is
//! benches/fleet.rs.

mod common;

use common::*;
use flow_omnium::sim::{Fault, FaultKind, Limits, SimConfig, Simulator};
use serde_json::json;
use std::time::{Duration, Instant};

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

/// Issue 13 (catch-up tail): a sale turned away with 429 was taken as possibly sent, so it
/// waited its request timeout and settle margin and was read back (a GET) before going
/// again: at 50 tills the last sales of the catch-up came tens of seconds after the bucket
/// had room. A 429 is the limiter turning the request away: after the pause the sale goes
/// again at once, without a read-back, and lands once.
#[test]
fn a_sale_turned_away_with_429_goes_again_without_a_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        // A long timeout: a read-back would have to wait for it (and the settle margin).
        json!({"omnium": {"max_concurrency": 1, "timeout_ms": 20_000}}),
    );
    client.flush(Duration::from_secs(10)).unwrap();
    sim.inject(
        Fault::new(
            FaultKind::TooManyRequests {
                retry_after_secs: 1,
            },
            1,
        )
        .on_method("PUT"),
    );
    client.record_sale(&sale("T-429", 1)).unwrap();
    client
        .flush(Duration::from_secs(15))
        .expect("sent again after the 1 s pause, not after the 20 s timeout");
    let stats = sim.stats();
    assert_eq!(
        stats
            .by_route
            .get("GET /api/Orders/{id}")
            .copied()
            .unwrap_or(0),
        0,
        "read back: {:?}",
        stats.by_route
    );
    assert_eq!(
        stats.by_route.get("PUT /api/Orders/PosOrders").copied(),
        Some(2)
    );
    assert_each_once(&sim, &["T-429".to_string()]);
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

/// A 429 answered to one till holds every till of the same API user in the process: none
/// sends anything until the Retry-After has passed.
#[test]
fn a_429_to_one_till_pauses_every_till_of_the_api_user() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let open_till = |t: usize| {
        open(
            &dir.path().join(format!("till{t}.db")),
            &sim,
            json!({"terminal_id": format!("t{t:02}"), "omnium": {"max_concurrency": 1}}),
        )
    };
    let (a, b) = (open_till(0), open_till(1));
    a.flush(Duration::from_secs(10)).unwrap();
    b.flush(Duration::from_secs(10)).unwrap();
    // Nothing else in flight when the 429 comes: both first pulls are over.
    for till in [&a, &b] {
        assert!(wait_until(Duration::from_secs(20), || {
            let s = status(till);
            s["pulling"] == false && !s["last_pull_at"].is_null()
        }));
    }
    sim.inject(
        Fault::new(
            FaultKind::TooManyRequests {
                retry_after_secs: 3,
            },
            1,
        )
        .on_method("PUT"),
    );
    a.record_sale(&sale("P-A", 1)).unwrap();
    // Till A has its 429 when it reports its next attempt a second or more ahead.
    let paused = || {
        status(&a)["next_attempt_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t.timestamp_millis() > chrono::Utc::now().timestamp_millis() + 1000)
    };
    assert!(
        wait_until(Duration::from_secs(10), paused),
        "till A never got its 429: {}",
        status(&a)
    );
    // Till B has a sale to send the moment A is told to wait.
    b.record_sale(&sale("P-B", 1)).unwrap();
    a.flush(Duration::from_secs(20)).unwrap();
    b.flush(Duration::from_secs(20)).unwrap();
    let stats = sim.stats();
    assert_eq!(
        stats.requests_while_paused, 0,
        "a till sent inside the Retry-After another till of its API user received: {stats:?}"
    );
    assert_each_once(&sim, &["P-A".to_string(), "P-B".to_string()]);
}

/// Tills of one API user in one process never have more than Omnium's 20 requests in
/// flight, whatever their own `max_concurrency`: no 429 for concurrency.
#[test]
fn tills_of_one_api_user_stay_within_its_twenty_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        latency_ms: 30,
        ..SimConfig::default()
    })
    .unwrap();
    sim.set_limits(Some(Limits {
        concurrency: 20,
        bucket: 1_000_000.0,
        refill_per_sec: 1_000_000.0,
    }));
    let tills: Vec<_> = (0..8)
        .map(|t| {
            open(
                &dir.path().join(format!("till{t}.db")),
                &sim,
                json!({"terminal_id": format!("t{t:02}"), "omnium": {"max_concurrency": 8},
                       "sync": {"autostart": false}}),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for (t, till) in tills.iter().enumerate() {
        for i in 0..24 {
            let id = format!("C-{t}-{i}");
            till.record_sale(&sale(&id, 1)).unwrap();
            expected.push(id);
        }
    }
    sim.reset_stats();
    // 8 tills x 8 connections could have 64 requests in flight; the API user allows 20.
    for till in &tills {
        till.sync_now().unwrap();
    }
    for till in &tills {
        till.flush(Duration::from_secs(60))
            .expect("every till flushes");
    }
    assert_each_once(&sim, &expected);
    let stats = sim.stats();
    assert_eq!(stats.throttled, 0, "429s for concurrency: {stats:?}");
    assert!(stats.max_in_flight <= 20, "{stats:?}");
}

/// After an outage, the first till to find Omnium back ends the others' back-off: they do
/// not each wait for their own next probe (a minute here).
#[test]
fn the_first_till_to_find_omnium_back_wakes_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let open_till = |t: usize| {
        open(
            &dir.path().join(format!("till{t}.db")),
            &sim,
            json!({"terminal_id": format!("t{t:02}"),
                   "sync": {"retry_initial_ms": 60_000, "retry_max_ms": 600_000}}),
        )
    };
    let (a, b) = (open_till(0), open_till(1));
    a.flush(Duration::from_secs(10)).unwrap();
    b.flush(Duration::from_secs(10)).unwrap();
    sim.set_down(true);
    a.record_sale(&sale("R-A", 1)).unwrap();
    b.record_sale(&sale("R-B", 1)).unwrap();
    for till in [&a, &b] {
        assert!(
            wait_until(Duration::from_secs(10), || status(till)["online"] == false),
            "{}",
            status(till)
        );
    }
    sim.set_down(false);
    // Only till A is told to try now; B's own next probe is a minute away.
    a.sync_now().unwrap();
    a.flush(Duration::from_secs(10)).unwrap();
    b.flush(Duration::from_secs(10))
        .expect("till B delivers as soon as till A found Omnium back");
    assert_each_once(&sim, &["R-A".to_string(), "R-B".to_string()]);
}
