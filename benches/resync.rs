//! The full resync at store scale (issue 12): its time and its requests for about 100,000
//! SKUs (60,000 products with up to 3 variants, stock in two warehouses), against the Omnium
//! simulator on loopback, in this process.
//!
//! The client first syncs the catalog (a first sync, timed too), then its clock (a
//! `ManualClock`, so nothing waits on real time) is moved past `sync.full_resync_ms`: the next
//! run reads stores, categories, products, stock, orders and purchase orders whole and sweeps
//! what Omnium no longer returns. Nothing changed in between, so the run is the cost of the
//! resync itself: every page read and applied again, and the sweeps. Requests are counted by
//! the simulator per route (the difference over the run).
//!
//! Run: `cargo bench --features sim --bench resync` (`-- 20000` for fewer products).

use flow_omnium::clock::ManualClock;
use flow_omnium::sim::{CatalogSpec, SimConfig, Simulator};
use flow_omnium::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FULL_RESYNC_MS: i64 = 86_400_000;
const TIMEOUT: Duration = Duration::from_secs(900);

fn status(client: &Client) -> Value {
    serde_json::from_str(&client.status_json().unwrap()).unwrap()
}

fn routes(sim: &Simulator) -> BTreeMap<String, u64> {
    sim.stats().by_route
}

/// Waits until a run that started after `before` (the orders search count then) is over.
fn wait_run(client: &Client, sim: &Simulator, before: u64) -> Duration {
    let started = Instant::now();
    loop {
        let searched = routes(sim)
            .get("POST /api/Orders/Search")
            .copied()
            .unwrap_or(0);
        if searched > before && status(client)["pulling"] == false {
            return started.elapsed();
        }
        assert!(started.elapsed() < TIMEOUT, "the run did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let products: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(60_000);
    let sim = Simulator::start(SimConfig::default()).expect("simulator starts");
    let loaded = sim.load_catalog(&CatalogSpec {
        products,
        max_variants: 3,
        ..CatalogSpec::default()
    });
    println!(
        "catalog: {} products, {} SKUs, {} stock items, {} categories",
        loaded.products, loaded.skus, loaded.stock_items, loaded.categories
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = json!({
        "database_path": dir.path().join("pos.db").to_str().unwrap(),
        "store_id": "oslo-1",
        "warehouse_ids": ["oslo-1", "oslo-lager"],
        "market_id": "NOR",
        "currency": "NOK",
        "terminal_id": "t01",
        "omnium": {"base_url": sim.base_url(), "client_id": "sim-client",
                   "client_secret": "sim-secret", "timeout_ms": 60_000},
        "sync": {"pull_interval_ms": 300_000, "full_resync_ms": FULL_RESYNC_MS},
    });
    let clock = Arc::new(ManualClock::new(chrono::Utc::now().timestamp_millis()));
    let opened = Instant::now();
    let client = Client::open_with_clock(&cfg.to_string(), clock.clone()).expect("client opens");
    let first = wait_run(&client, &sim, 0);
    let skus = client.store().sku_count().unwrap() as usize;
    assert_eq!(skus, loaded.skus, "the first sync holds every SKU");
    println!(
        "first sync: {:.1} s ({} SKUs)",
        opened.elapsed().as_secs_f64().max(first.as_secs_f64()),
        skus
    );

    let before = routes(&sim);
    let searched = before.get("POST /api/Orders/Search").copied().unwrap_or(0);
    clock.advance(FULL_RESYNC_MS);
    client.wake().unwrap();
    let took = wait_run(&client, &sim, searched);
    let after = routes(&sim);
    assert_eq!(
        client.store().sku_count().unwrap() as usize,
        loaded.skus,
        "the resync keeps every SKU"
    );
    let mut total = 0;
    println!("full resync: {:.1} s", took.as_secs_f64());
    for (route, n) in &after {
        let d = n - before.get(route).copied().unwrap_or(0);
        if d > 0 {
            println!("  {d:>5}  {route}");
            total += d;
        }
    }
    println!("  {total:>5}  requests in all");
}
