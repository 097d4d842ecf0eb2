//! Orders, purchase orders and stock for every configured warehouse (issue 12 defect 9), and
//! the full resync removing orders and purchase orders Omnium no longer returns (rule 9.14).
//! CI runs these again with the simulator's search index lagging (`.ci/inbound.sh`).

mod common;

use common::*;
use flow_omnium::sim::{Fault, FaultKind, Simulator};
use flow_omnium::{Client, Error};
use serde_json::{json, Value};
use std::time::Duration;

fn purchase_order_ids(client: &Client) -> Vec<String> {
    let v: Value = serde_json::from_str(&client.purchase_orders_json(None).unwrap()).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

fn has_order(client: &Client, id: &str) -> bool {
    match client.order_json(id) {
        Ok(_) => true,
        Err(Error::NotFound(_)) => false,
        Err(e) => panic!("{e}"),
    }
}

fn add_po(sim: &Simulator, store: &str) -> String {
    let po = sim.new_purchase_order(store, 1);
    let id = po["id"].as_str().unwrap().to_string();
    sim.add_purchase_order(po);
    id
}

#[test]
fn a_sale_is_booked_in_its_stores_warehouse_not_the_first_configured() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"warehouse_ids": ["oslo-lager", "oslo-1"], "sync": {"autostart": false}}),
    );
    client.record_sale(&sale("S-1", 1)).unwrap();
    let stock: Value = serde_json::from_str(&client.stock_json("SKU-0").unwrap()).unwrap();
    let pending = |w: &str| {
        stock["warehouses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["warehouse_id"] == w)
            .map(|r| r["pending"].as_f64().unwrap())
    };
    assert_eq!(pending("oslo-1"), Some(-1.0), "{stock}");
    assert_eq!(pending("oslo-lager"), Some(0.0), "{stock}");
}

#[test]
fn purchase_orders_of_every_configured_warehouse_are_pulled_past_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    // 150 for the store (two pages; ids do not sort like their `modified`), one for its
    // warehouse, one for Bergen.
    let mut wanted: Vec<String> = (0..150).map(|_| add_po(&sim, "oslo-1")).collect();
    wanted.push(add_po(&sim, "oslo-lager"));
    let bergen = add_po(&sim, "bergen-1");
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"warehouse_ids": ["oslo-1", "oslo-lager"]}),
    );
    wanted.sort();
    let mut got = Vec::new();
    let complete = wait_until(Duration::from_secs(20), || {
        got = purchase_order_ids(&client);
        got == wanted
    });
    let missing: Vec<&String> = wanted.iter().filter(|w| !got.contains(w)).collect();
    assert!(
        complete,
        "{} of {}; missing {missing:?}",
        got.len(),
        wanted.len()
    );
    assert!(!got.contains(&bergen));
}

#[test]
fn the_full_resync_removes_orders_and_purchase_orders_omnium_no_longer_returns() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let cc = sim.add_web_order(sim.new_web_order("ClickAndCollect", "oslo-1", 1))["objectId"]
        .as_str()
        .unwrap()
        .to_string();
    let online = sim.add_web_order(sim.new_web_order("Online", "oslo-1", 1))["objectId"]
        .as_str()
        .unwrap()
        .to_string();
    let kept_po = add_po(&sim, "oslo-1");
    let gone_po = add_po(&sim, "oslo-lager");
    // Every run after the first is a full resync.
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"warehouse_ids": ["oslo-1", "oslo-lager"],
               "sync": {"pull_interval_ms": 300, "full_resync_ms": 1, "pull_overlap_ms": 1000}}),
    );
    assert!(wait_until(Duration::from_secs(20), || {
        has_order(&client, &cc)
            && has_order(&client, &online)
            && purchase_order_ids(&client).len() == 2
    }));
    // Omnium deletes an order and a purchase order for good; no event, no delta says so.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sim.delete_order_permanently(&cc));
    assert!(sim.delete_purchase_order(&gone_po));
    // While the purchase orders' search fails, nothing of them is wiped.
    sim.inject(Fault::new(FaultKind::Status(403), 1_000_000).on_path("/api/PurchaseOrders/Search"));
    let mut events = Vec::new();
    // The event is queued just after the sweep commits: wait for both, not only the removal.
    let told = |events: &[Value]| {
        events
            .iter()
            .any(|e| e["type"] == "order.updated" && e["order_id"] == cc.as_str())
    };
    assert!(
        wait_until(Duration::from_secs(20), || {
            events.extend(drain_events(&client));
            !has_order(&client, &cc) && told(&events)
        }),
        "the deleted order stays, or no event said so: {events:?}"
    );
    assert!(has_order(&client, &online), "the other order stays");
    let e = events
        .iter()
        .find(|e| e["type"] == "order.updated" && e["order_id"] == cc.as_str())
        .expect("order.updated");
    assert_eq!(e["removed"], true, "{e}");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        purchase_order_ids(&client).len(),
        2,
        "a failed data set wipes nothing"
    );
    // fo_status says which data set keeps failing, since when and why.
    let failing = |client: &Client| {
        status(client)["failing_datasets"]
            .as_array()
            .expect("failing_datasets is a list")
            .iter()
            .find(|d| d["dataset"] == "purchase_orders")
            .cloned()
    };
    let mut f = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            f = failing(&client);
            f.as_ref()
                .is_some_and(|f| f["failed_runs"].as_i64() >= Some(2))
        }),
        "{}",
        status(&client)
    );
    let f = f.unwrap();
    assert!(f["failing_since"].is_string(), "{f}");
    assert!(f["last_error"].as_str().unwrap().contains("403"), "{f}");
    assert_eq!(
        status(&client)["failing_datasets"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the others are pulled: {}",
        status(&client)
    );
    sim.clear_faults();
    assert!(
        wait_until(Duration::from_secs(20), || purchase_order_ids(&client)
            == [kept_po.clone()]),
        "{:?}",
        purchase_order_ids(&client)
    );
    assert!(
        wait_until(Duration::from_secs(10), || failing(&client).is_none()),
        "no longer reported once pulled: {}",
        status(&client)
    );
}

/// Review (reviewa): the orders data set is read in passes, and the pickup-point pass runs
/// every other run. Its failure was reported as "orders" and cleared by the next run that
/// skipped it, so a pass that always fails never showed more than one failed run in a row
/// (and vanished from fo_status every other run). Each pass is now reported on its own.
#[test]
fn a_failing_order_pass_stays_reported_across_runs_that_skip_it() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    sim.inject(
        Fault::new(FaultKind::Status(403), 1_000_000)
            .on_path("/api/Orders/GetOrdersForPickUpPoint"),
    );
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"sync": {"pull_interval_ms": 300}}),
    );
    let failing = |client: &Client| {
        status(client)["failing_datasets"]
            .as_array()
            .expect("failing_datasets is a list")
            .iter()
            .find(|d| {
                d["dataset"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("orders"))
            })
            .cloned()
    };
    let mut f = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            f = failing(&client);
            f.as_ref()
                .is_some_and(|f| f["failed_runs"].as_i64() >= Some(3))
        }),
        "{}",
        status(&client)
    );
    let f = f.unwrap();
    assert_eq!(f["dataset"], "orders.PickUpPoint", "{f}");
    assert!(f["last_error"].as_str().unwrap().contains("403"), "{f}");
    sim.clear_faults();
    client.sync_now().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || failing(&client).is_none()),
        "{}",
        status(&client)
    );
}

/// Review (reviewa, low): a failed order pass ended the orders data set for the run, so
/// while Omnium refused the order search, the orders picked up here (another endpoint)
/// were never pulled either. The other passes now run; and the full resync, which reads
/// orders whole, removes none of them while a pass failed (its orders were not read).
#[test]
fn a_failed_order_pass_lets_the_others_run_and_the_full_resync_remove_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    // A web order of this store: only the order search returns it (no pickup here).
    let own = sim.add_web_order(sim.new_web_order("Online", "oslo-1", 1))["objectId"]
        .as_str()
        .unwrap()
        .to_string();
    // Every run after the first is a full resync.
    let client = open(
        &dir.path().join("pos.db"),
        &sim,
        json!({"sync": {"pull_interval_ms": 300, "full_resync_ms": 1, "pull_overlap_ms": 1000}}),
    );
    assert!(wait_until(Duration::from_secs(20), || has_order(
        &client, &own
    )));
    // Omnium refuses the order search (both order types) from now on.
    sim.inject(Fault::new(FaultKind::Status(403), 1_000_000).on_path("/api/Orders/Search"));
    std::thread::sleep(Duration::from_millis(1500));
    // Sold in Bergen, picked up here, no event: only the pickup-point pass finds it.
    let mut o = sim.new_web_order("ClickAndCollect", "bergen-1", 1);
    o["orderForm"]["shipments"][0]["pickUpWarehouseCode"] = "oslo-1".into();
    let elsewhere = sim.add_web_order(o)["objectId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        wait_until(Duration::from_secs(20), || has_order(&client, &elsewhere)),
        "the pickup-point pass runs although the order search fails: {}",
        status(&client)
    );
    // Full resyncs ran meanwhile; the order only the failing search returns stays.
    let before = sim.stats().by_route["POST /api/Orders/Search"];
    assert!(wait_until(Duration::from_secs(20), || {
        sim.stats().by_route["POST /api/Orders/Search"] >= before + 12
    }));
    assert!(has_order(&client, &own), "a failed pass removes nothing");
    let failing: Vec<String> = status(&client)["failing_datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dataset"].as_str().unwrap().to_string())
        .collect();
    assert!(
        failing.contains(&"orders.ClickAndCollect".to_string())
            && failing.contains(&"orders.Online".to_string()),
        "{failing:?}"
    );
}
