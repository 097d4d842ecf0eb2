//! The token and the secret are sent only when needed: refused credentials hold until their
//! back-off passes whatever the POS does, and a 429 pause is not followed by a new token.

mod common;

use common::*;
use flow_omnium::sim::{Fault, FaultKind, Simulator};
use serde_json::json;
use std::time::{Duration, Instant};

fn token_requests(sim: &Simulator) -> u64 {
    sim.stats()
        .by_route
        .get("POST /api/token")
        .copied()
        .unwrap_or(0)
}

#[test]
fn fo_sync_now_in_a_loop_cannot_shorten_the_hold_after_refused_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    // A back-off of at least 2 s: in the 3 s below the worker may ask twice at most.
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"omnium": {"client_secret": "wrong-secret"},
               "sync": {"retry_initial_ms": 2000, "retry_max_ms": 60000}}),
    );
    client.record_sale(&sale("S-1", 1)).unwrap();
    assert!(wait_until(Duration::from_secs(10), || drain_events(
        &client
    )
    .iter()
    .any(|e| e["type"] == "sync.auth_failed")));
    let before = token_requests(&sim);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        client.sync_now().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = token_requests(&sim) - before;
    assert!(
        sent <= 2,
        "{sent} token requests (each carrying the secret) in 3 s of fo_sync_now every 50 ms"
    );
    assert!(sim.order("S-1").is_none());
}

#[test]
fn no_new_token_when_a_429_pause_ends_with_nothing_to_send() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(&dir.path().join("pos.db"), &sim, json!({}));
    client.record_sale(&sale("S-1", 1)).unwrap();
    client.flush(Duration::from_secs(10)).unwrap();
    // The first pull is done when its last data set has been asked for.
    assert!(wait_until(Duration::from_secs(10), || {
        sim.stats()
            .by_route
            .contains_key("POST /api/PurchaseOrders/Search")
    }));
    std::thread::sleep(Duration::from_millis(300));
    let tokens = token_requests(&sim);
    assert_eq!(tokens, 1);
    // A pull is throttled for a second; nothing else is due.
    sim.inject(
        Fault::new(
            FaultKind::TooManyRequests {
                retry_after_secs: 1,
            },
            1,
        )
        .on_path("/api/Products/Scroll"),
    );
    let faults = sim.stats().faults_injected;
    client.sync_now().unwrap();
    assert!(wait_until(Duration::from_secs(10), || sim
        .stats()
        .faults_injected
        > faults));
    // Well past the pause: the worker went back to work without asking for a token.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        token_requests(&sim),
        tokens,
        "a 429 says nothing about the token"
    );
    assert_eq!(sim.stats().requests_while_paused, 0);
    client.record_sale(&sale("S-2", 1)).unwrap();
    client.flush(Duration::from_secs(10)).unwrap();
    assert!(sim.order("S-2").is_some());
    assert_eq!(token_requests(&sim), tokens);
}
