//! Sales, returns and cancellations reaching the simulator through the real worker, with
//! Omnium down, faulty, throttling or refusing: every acknowledged event lands exactly once.

mod common;

use common::*;
use flow_omnium::sim::{Fault, FaultKind, SimConfig, Simulator};
use flow_omnium::{Client, Error};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[test]
fn sales_recorded_while_omnium_is_down_arrive_once_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    sim.set_down(true);
    let client = open(&dir.path().join("pos.db"), &sim, json!({}));
    let ids: Vec<String> = (0..60).map(|i| format!("S-{i}")).collect();
    for id in &ids {
        client.record_sale(&sale(id, 2)).unwrap();
    }
    assert!(wait_until(Duration::from_secs(5), || status(&client)
        ["online"]
        == false));
    std::thread::sleep(Duration::from_millis(300));
    let s = status(&client);
    assert_eq!(s["outbox"]["pending"], 60, "{s}");
    assert!(s["outbox"]["oldest_pending_at"].is_string(), "{s}");
    assert!(
        client.flush(Duration::from_millis(200)).is_err(),
        "nothing can drain while down"
    );

    sim.set_down(false);
    client
        .flush(Duration::from_secs(30))
        .expect("everything drains after the outage");
    assert_each_once(&sim, &ids);
    let s = status(&client);
    assert_eq!(s["online"], true);
    assert!(s["last_push_at"].is_string(), "{s}");
    assert_eq!(s["next_attempt_at"], Value::Null);
    let types: Vec<String> = drain_events(&client)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    let off = types
        .iter()
        .position(|t| t == "sync.offline")
        .expect("sync.offline event");
    let on = types
        .iter()
        .rposition(|t| t == "sync.online")
        .expect("sync.online event");
    assert!(off < on, "{types:?}");
}

#[test]
fn an_outage_does_not_use_up_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"sync": {"max_attempts": 2, "retry_max_ms": 60}}),
    );
    client.flush(Duration::from_secs(5)).unwrap();
    sim.set_down(true);
    client.record_sale(&sale("S-OUT", 1)).unwrap();
    // Dozens of offline back-off rounds pass: far more than max_attempts.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(status(&client)["outbox"]["dead"], 0);
    sim.set_down(false);
    client.flush(Duration::from_secs(10)).unwrap();
    assert_each_once(&sim, &["S-OUT".to_string()]);
}

#[test]
fn faults_of_every_kind_still_deliver_every_sale_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let orders = "/api/Orders";
    for fault in [
        Fault::new(FaultKind::Status(500), 3).on_path(orders),
        Fault::new(FaultKind::Status(503), 2).on_path(orders),
        Fault::new(
            FaultKind::TooManyRequests {
                retry_after_secs: 1,
            },
            1,
        )
        .on_path(orders),
        Fault::new(FaultKind::Reset, 2).on_path(orders),
        Fault::new(FaultKind::CommitThenReset, 2).on_method("PUT"),
        Fault::new(FaultKind::CommitThenStatus(500), 2).on_method("PUT"),
        Fault::new(FaultKind::CommitThenTimeout { hold_ms: 1500 }, 1).on_method("PUT"),
        Fault::new(FaultKind::Timeout { hold_ms: 1500 }, 1).on_method("PUT"),
    ] {
        sim.inject(fault);
    }
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"omnium": {"timeout_ms": 700}}),
    );
    let ids: Vec<String> = (0..40).map(|i| format!("F-{i}")).collect();
    for id in &ids {
        client.record_sale(&sale(id, 3)).unwrap();
    }
    client
        .flush(Duration::from_secs(60))
        .expect("drains despite faults");
    assert_each_once(&sim, &ids);
    let stats = sim.stats();
    assert!(stats.faults_injected >= 14, "{stats:?}");
    // With 4 connections a few requests can reach Omnium between its 429 and the moment
    // the client reads it; that none starts after is shown with one connection below.
    assert!(stats.requests_while_paused <= 8, "{stats:?}");
    assert_eq!(status(&client)["outbox"]["dead"], 0);
}

#[test]
fn a_poison_sale_dies_while_the_others_pass_and_its_return_waits_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    sim.reject_order("S-POISON", 400, "Invalid value for marketId");
    let client = open(&dir.path().join("pos.db"), &sim, json!({}));
    client.record_sale(&sale("S-POISON", 2)).unwrap();
    client
        .record_return(&return_of("R-POISON", "S-POISON", "1"))
        .unwrap();
    let ids: Vec<String> = (0..10).map(|i| format!("S-{i}")).collect();
    for id in &ids {
        client.record_sale(&sale(id, 1)).unwrap();
    }
    client
        .flush(Duration::from_secs(20))
        .expect("the others drain; dead and blocked do not count");
    assert_each_once(&sim, &ids);
    let s = status(&client);
    assert_eq!(
        (
            s["outbox"]["pending"].as_u64(),
            s["outbox"]["blocked"].as_u64(),
            s["outbox"]["dead"].as_u64()
        ),
        (Some(0), Some(1), Some(1)),
        "{s}"
    );
    let dead: Value = serde_json::from_str(&client.dead_jobs_json().unwrap()).unwrap();
    let item = &dead["items"][0];
    assert_eq!(item["kind"], "sale");
    assert_eq!(item["entity_id"], "S-POISON");
    assert!(
        item["last_error"].as_str().unwrap().contains("HTTP 400"),
        "{item}"
    );
    assert!(
        item["last_error"].as_str().unwrap().contains("marketId"),
        "{item}"
    );
    assert!(item["dead_at"].is_string());
    let events = drain_events(&client);
    let ev = events
        .iter()
        .find(|e| e["type"] == "job.dead")
        .expect("job.dead event");
    assert_eq!(ev["job_id"], item["id"]);
    assert_eq!(
        sim.stats().returns_created,
        0,
        "the return never went before its sale"
    );

    // Retrying: unknown id is NOT_FOUND; the real one is revived (and dies again here).
    assert!(matches!(
        client.retry_job(Some("999999")),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        client.retry_job(Some("abc")),
        Err(Error::InvalidInput(_))
    ));
    client
        .retry_job(Some(item["id"].as_str().unwrap()))
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        drain_events(&client)
            .iter()
            .any(|e| e["type"] == "job.dead")
    }));
}

#[test]
fn a_sale_failing_with_500_while_omnium_serves_others_dies_after_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    sim.reject_order("S-500", 500, "NullReferenceException");
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"sync": {"max_attempts": 3}}),
    );
    client.record_sale(&sale("S-500", 1)).unwrap();
    // Other traffic keeps succeeding, so the failures count.
    let mut n = 0;
    let died = wait_until(Duration::from_secs(20), || {
        n += 1;
        client.record_sale(&sale(&format!("S-OK-{n}"), 1)).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        status(&client)["outbox"]["dead"] == 1
    });
    assert!(died, "{}", status(&client));
    let dead: Value = serde_json::from_str(&client.dead_jobs_json().unwrap()).unwrap();
    assert_eq!(dead["items"][0]["attempts"], 3, "{dead}");
    assert!(dead["items"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("gave up after 3 attempts"));
}

#[test]
fn returns_recorded_right_after_their_sales_never_reach_omnium_first() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    sim.set_latency_ms(5);
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"omnium": {"max_concurrency": 8}}),
    );
    for i in 0..25 {
        let id = format!("S-{i}");
        client.record_sale(&sale(&id, 2)).unwrap();
        client
            .record_return(&return_of(&format!("R-{i}"), &id, "1"))
            .unwrap();
        client
            .record_return(&return_of(&format!("R2-{i}"), &id, "2"))
            .unwrap();
    }
    client.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(
        status(&client)["outbox"]["dead"],
        0,
        "a return sent before its sale would 404 and die"
    );
    for i in 0..25 {
        let order = sim.order(&format!("S-{i}")).unwrap();
        let forms: Vec<&str> = order["returnOrderForms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rmaNumber"].as_str().unwrap())
            .collect();
        assert_eq!(forms, [format!("R-{i}"), format!("R2-{i}")]);
        assert_eq!(
            order["returnOrderForms"][0]["lineItems"][0]["isStockUpdated"],
            true
        );
    }
    assert_eq!(sim.stats().duplicate_returns_rejected, 0);
}

#[test]
fn a_return_whose_answer_was_lost_is_not_sent_twice() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(&dir.path().join("pos.db"), &sim, json!({}));
    client.record_sale(&sale("S-1", 1)).unwrap();
    client.flush(Duration::from_secs(10)).unwrap();
    sim.inject(Fault::new(FaultKind::CommitThenReset, 1).on_path("/Return"));
    client.record_return(&return_of("R-1", "S-1", "1")).unwrap();
    client.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(
        sim.order("S-1").unwrap()["returnOrderForms"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(sim.stats().duplicate_returns_rejected, 0);
}

#[test]
fn cancellations_of_whole_orders_and_of_lines_reach_omnium() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(&dir.path().join("pos.db"), &sim, json!({}));
    client.record_sale(&sale("S-A", 2)).unwrap();
    client.record_sale(&sale("S-B", 3)).unwrap();
    client.record_cancellation(r#"{"id": "X-1", "order_id": "S-A", "created_at": "2026-11-28T12:00:00Z", "reason": "Customer changed mind"}"#).unwrap();
    client.record_cancellation(r#"{"id": "X-2", "order_id": "S-B", "created_at": "2026-11-28T12:00:00Z", "lines": [{"line_id": "2"}, {"line_id": "3", "quantity": 1}]}"#).unwrap();
    let err = client.record_cancellation(r#"{"id": "X-3", "order_id": "S-B", "created_at": "2026-11-28T12:00:00Z", "lines": [{"line_id": "9"}]}"#).unwrap_err();
    assert!(
        err.to_string().contains("cancellation.lines[0].line_id"),
        "{err}"
    );
    client.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(sim.order("S-A").unwrap()["status"], "OrderCanceled");
    let b = sim.order("S-B").unwrap();
    let canceled: Vec<f64> = b["orderForm"]["lineItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["canceledQuantity"].as_f64().unwrap())
        .collect();
    assert_eq!(canceled, [0.0, 1.0, 1.0]);
}

#[test]
fn a_revoked_token_is_renewed_once_and_delivery_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(&dir.path().join("pos.db"), &sim, json!({}));
    client.record_sale(&sale("S-1", 1)).unwrap();
    client.flush(Duration::from_secs(10)).unwrap();
    let before = sim.stats().tokens_issued;
    sim.revoke_tokens();
    client.record_sale(&sale("S-2", 1)).unwrap();
    client.flush(Duration::from_secs(10)).unwrap();
    assert_each_once(&sim, &["S-1".into(), "S-2".into()]);
    assert_eq!(
        sim.stats().tokens_issued,
        before + 1,
        "one renewal, not one per request"
    );
}

#[test]
fn refused_credentials_pause_sync_without_killing_jobs_or_leaking_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let secret = "wrong-secret-7f3a9c";
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"omnium": {"client_secret": secret}}),
    );
    client.record_sale(&sale("S-1", 1)).unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        drain_events(&client)
            .iter()
            .any(|e| e["type"] == "sync.auth_failed" && !e.to_string().contains(secret))
    }));
    std::thread::sleep(Duration::from_millis(500));
    let s = status(&client);
    assert_eq!(
        (
            s["online"].as_bool(),
            s["outbox"]["dead"].as_u64(),
            s["outbox"]["pending"].as_u64()
        ),
        (Some(false), Some(0), Some(1)),
        "{s}"
    );
    assert!(!client.status_json().unwrap().contains(secret));
    let err = client
        .flush(Duration::from_millis(100))
        .unwrap_err()
        .to_string();
    assert!(!err.contains(secret));
    drop(client);
    let db = std::fs::read(dir.path().join("pos.db")).unwrap();
    let wal = std::fs::read(dir.path().join("pos.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "secret stored in the database"
        );
    }
}

#[test]
fn close_returns_within_ten_seconds_while_a_request_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"omnium": {"timeout_ms": 60000}}),
    );
    client.flush(Duration::from_secs(5)).unwrap();
    sim.inject(Fault::new(FaultKind::Timeout { hold_ms: 30_000 }, 1).on_method("PUT"));
    client.record_sale(&sale("S-HANG", 1)).unwrap();
    assert!(wait_until(Duration::from_secs(5), || sim
        .stats()
        .faults_injected
        == 1));
    let started = Instant::now();
    client.close();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "close took {:?}",
        started.elapsed()
    );
    assert!(matches!(
        client.record_sale(&sale("S-AFTER", 1)),
        Err(Error::Closed)
    ));
}

#[test]
fn recording_is_idempotent_under_concurrent_threads() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"sync": {"autostart": false}}),
    );
    let client = &client;
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in 0..50 {
                    // Every thread records the same 50 sales, with keys in another order.
                    let v: Value = serde_json::from_str(&sale(&format!("S-{i}"), 2)).unwrap();
                    let text = if t % 2 == 0 {
                        v.to_string()
                    } else {
                        serde_json::to_string_pretty(&v).unwrap()
                    };
                    client.record_sale(&text).unwrap();
                    let mut other = v.clone();
                    other["payments"][0]["transaction_id"] = json!(format!("other-{t}"));
                    assert!(matches!(
                        client.record_sale(&other.to_string()),
                        Err(Error::Conflict(_))
                    ));
                }
            });
        }
    });
    assert_eq!(status(client)["outbox"]["pending"], 50);
    client.flush(Duration::from_secs(20)).unwrap();
    assert_each_once(&sim, &(0..50).map(|i| format!("S-{i}")).collect::<Vec<_>>());
}

#[test]
fn money_reaches_omnium_as_exact_decimals() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(&dir.path().join("pos.db"), &sim, json!({}));
    client.record_sale(r#"{"id": "S-M", "created_at": "2026-11-28T10:15:00+01:00", "rounding": -3,
        "lines": [{"line_id": "1", "sku": "SKU-1", "quantity": 3, "unit_price": 19990, "discount": 7, "tax_rate": 25},
                  {"line_id": "2", "sku": "SKU-2", "quantity": 0.5, "unit_price": 4999}],
        "payments": [{"id": "P1", "method": "Cash", "amount": 50000}, {"id": "P2", "method": "Card", "amount": 12460}]}"#).unwrap();
    client.flush(Duration::from_secs(10)).unwrap();
    let o = sim.order("S-M").unwrap();
    let line = &o["orderForm"]["lineItems"][0];
    assert_eq!(line["placedPrice"].as_f64(), Some(199.90));
    assert_eq!(line["discounted"].as_f64(), Some(0.07));
    // The sale's −3 øre rounding plus the half øre the till rounded 0.5 × 49.99 up by.
    assert_eq!(o["orderForm"]["grossRoundoff"].as_f64(), Some(-0.025));
    assert_eq!(
        o["orderForm"]["payments"][1]["amount"].as_f64(),
        Some(124.60)
    );
    assert_eq!(o["marketId"], "NOR");
    assert_eq!(o["storeId"], "oslo-1");
}

#[test]
fn a_client_reopened_after_a_crash_checks_before_resending() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    let sim = sim();
    {
        let client = open(&db, &sim, json!({}));
        client.flush(Duration::from_secs(5)).unwrap();
        // The order lands but the answer never comes back; the client closes meanwhile.
        sim.inject(
            Fault::new(FaultKind::CommitThenTimeout { hold_ms: 20_000 }, 1).on_method("PUT"),
        );
        client.record_sale(&sale("S-1", 1)).unwrap();
        assert!(wait_until(Duration::from_secs(5), || sim
            .order("S-1")
            .is_some()));
        client.close();
    }
    let client = open(&db, &sim, json!({}));
    client.flush(Duration::from_secs(10)).unwrap();
    assert_each_once(&sim, &["S-1".to_string()]);
}

/// Compile-time check: a client may be shared between threads (CONTRACT §3).
fn _client_is_send_and_sync(c: &Client) -> &(dyn Sync + Send) {
    c
}

#[test]
fn a_return_answered_409_while_its_order_is_queued_is_retried_not_killed() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig {
        queued_ms: 400,
        ..SimConfig::default()
    })
    .unwrap();
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"sync": {"max_attempts": 20}}),
    );
    client.record_sale(&sale("S-Q", 1)).unwrap();
    client.record_return(&return_of("R-Q", "S-Q", "1")).unwrap();
    client.flush(Duration::from_secs(20)).unwrap();
    assert_eq!(status(&client)["outbox"]["dead"], 0);
    let tries = sim
        .stats()
        .by_route
        .get("POST /api/Returns/{orderId}/Return")
        .copied();
    assert!(
        tries >= Some(2),
        "the first try met the queued order: {tries:?}"
    );
    assert_eq!(
        sim.order("S-Q").unwrap()["returnOrderForms"][0]["rmaNumber"],
        "R-Q"
    );
}

#[test]
fn after_a_429_no_request_starts_inside_the_retry_after_window() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    // One connection: nothing is in flight beside the request that got the 429.
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"omnium": {"max_concurrency": 1}}),
    );
    client.flush(Duration::from_secs(5)).unwrap();
    sim.inject(
        Fault::new(
            FaultKind::TooManyRequests {
                retry_after_secs: 1,
            },
            1,
        )
        .on_method("PUT"),
    );
    for i in 0..10 {
        client.record_sale(&sale(&format!("T-{i}"), 1)).unwrap();
    }
    let started = Instant::now();
    client.flush(Duration::from_secs(20)).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited out the Retry-After"
    );
    assert_eq!(sim.stats().requests_while_paused, 0);
    assert_each_once(&sim, &(0..10).map(|i| format!("T-{i}")).collect::<Vec<_>>());
}

#[test]
fn a_repeat_with_the_defaults_written_out_is_the_same_sale() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"sync": {"autostart": false}}),
    );
    client.record_sale(&sale("S-D", 2)).unwrap();
    let mut explicit: Value = serde_json::from_str(&sale("S-D", 2)).unwrap();
    explicit["store_id"] = "oslo-1".into();
    explicit["currency"] = "NOK".into();
    explicit["rounding"] = 0.into();
    explicit["lines"][0]["discount"] = 0.into();
    explicit["lines"][1]["quantity"] = json!(1.0);
    client.record_sale(&explicit.to_string()).unwrap();
    client.record_return(&return_of("R-D", "S-D", "1")).unwrap();
    let mut ret: Value = serde_json::from_str(&return_of("R-D", "S-D", "1")).unwrap();
    ret["lines"][0]["restock"] = true.into();
    client.record_return(&ret.to_string()).unwrap();
    assert_eq!(status(&client)["outbox"]["pending"], 2);
}

#[test]
fn a_customer_is_recorded_again_after_its_old_versions_were_purged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    let sim = sim();
    let person = |email: &str| {
        json!({"id": "C-1", "type": "person", "first_name": "Kari", "email": email}).to_string()
    };
    {
        let client = open(&db, &sim, json!({"sync": {"delivered_retention_ms": 1}}));
        client.record_customer(&person("a@example.no")).unwrap();
        client.flush(Duration::from_secs(10)).unwrap();
        client.record_customer(&person("b@example.no")).unwrap();
        client.flush(Duration::from_secs(10)).unwrap();
    }
    // The purge runs when the worker is idle; reopening starts a fresh purge clock.
    let client = open(&db, &sim, json!({"sync": {"delivered_retention_ms": 1}}));
    client.flush(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    client.record_customer(&person("c@example.no")).unwrap();
    client.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(sim.customer("C-1").unwrap().1["email"], "c@example.no");
}
