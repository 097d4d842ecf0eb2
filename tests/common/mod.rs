//! Helpers shared by the integration tests: configs, sales, waiting, compiling C.
#![allow(dead_code)]

use flow_omnium::sim::{SimConfig, Simulator};
use flow_omnium::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const CLIENT_ID: &str = "sim-client";
pub const CLIENT_SECRET: &str = "sim-secret";

pub fn sim() -> Simulator {
    Simulator::start(SimConfig::default()).expect("simulator starts")
}

/// A config with fast retries for tests; `overrides` is merged in (objects merge deeply).
pub fn config(db: &Path, base_url: &str, overrides: Value) -> String {
    let mut cfg = json!({
        "database_path": db.to_str().unwrap(),
        "store_id": "oslo-1",
        "market_id": "NOR",
        "currency": "NOK",
        "terminal_id": "t01",
        "omnium": {"base_url": base_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                   "timeout_ms": 2000, "max_concurrency": 4},
        "sync": {"retry_initial_ms": 50, "retry_max_ms": 400, "pull_interval_ms": 60000},
    });
    merge(&mut cfg, overrides);
    cfg.to_string()
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

pub fn open(db: &Path, sim: &Simulator, overrides: Value) -> Client {
    Client::open(&config(db, &sim.base_url(), overrides)).expect("client opens")
}

/// A balanced sale: `lines` × (quantity 1, 10000 + 100·i øre), one card payment.
pub fn sale(id: &str, lines: usize) -> String {
    let items: Vec<Value> = (0..lines)
        .map(|i| {
            json!({"line_id": (i + 1).to_string(), "sku": format!("SKU-{i}"), "name": "Item",
                        "quantity": 1, "unit_price": 10_000 + 100 * i as i64, "tax_rate": 25})
        })
        .collect();
    let total: i64 = (0..lines).map(|i| 10_000 + 100 * i as i64).sum();
    json!({"id": id, "created_at": "2026-11-28T10:15:00+01:00", "lines": items,
           "payments": [{"id": "P1", "method": "Card", "amount": total, "transaction_id": format!("tx-{id}")}]})
    .to_string()
}

pub fn return_of(id: &str, sale_id: &str, line_id: &str) -> String {
    json!({"id": id, "sale_id": sale_id, "created_at": "2026-11-28T11:00:00+01:00",
           "lines": [{"line_id": line_id, "quantity": 1, "amount": 10_000, "restock": true, "reason": "Defect"}],
           "refunds": [{"id": "RF1", "method": "Card", "amount": 10_000}]})
    .to_string()
}

pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

pub fn status(client: &Client) -> Value {
    serde_json::from_str(&client.status_json().unwrap()).unwrap()
}

/// Every event currently queued.
pub fn drain_events(client: &Client) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(e) = client.next_event(Duration::ZERO) {
        out.push(serde_json::from_str(&e).unwrap());
    }
    out
}

/// Where cargo put libflow_omnium.so for this test run (target/<profile>).
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// `cargo test` builds the library as an rlib only, so the shared library the C programs
/// link is built here, once per test binary, with the same features (never a stale one).
fn ensure_cdylib() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--lib", "--features", "sim", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .status()
            .expect("run cargo to build libflow_omnium.so");
        assert!(status.success(), "cargo build --lib --features sim failed");
    });
}

/// Compiles C sources against the header and the cdylib with warnings as errors.
///
/// Under `.ci/sanitizers.sh`, `FO_C_SANITIZE` (`address` or `thread`) builds the C program
/// with that sanitizer and `FO_C_LIB_DIR` names the directory of the libflow_omnium.so to
/// link instead of this run's own (one built with `-Zsanitizer=address` for ASan).
pub fn compile_c(sources: &[&str], out_name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sanitize = std::env::var("FO_C_SANITIZE")
        .ok()
        .filter(|s| !s.is_empty());
    let lib = match std::env::var_os("FO_C_LIB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            ensure_cdylib();
            lib_dir()
        }
    };
    assert!(
        lib.join("libflow_omnium.so").exists(),
        "{} has no libflow_omnium.so after cargo build --lib --features sim",
        lib.display()
    );
    let out = match &sanitize {
        Some(kind) => lib_dir().join(format!("{out_name}-{kind}")),
        None => lib_dir().join(out_name),
    };
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = std::process::Command::new(&cc);
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g"])
        .arg(format!("-I{}", root.join("include").display()));
    for s in sources {
        cmd.arg(root.join(s));
    }
    if let Some(kind) = &sanitize {
        cmd.arg(format!("-fsanitize={kind}"))
            .arg("-fno-omit-frame-pointer");
    }
    cmd.arg("-o")
        .arg(&out)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lflow_omnium")
        .arg("-lpthread");
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
    assert!(
        output.status.success(),
        "C compile failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// How many orders Omnium holds under each id.
pub fn order_ids(sim: &Simulator) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for o in sim.orders() {
        *ids.entry(o["id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    ids
}

/// Each of `expected` is in Omnium exactly once, nothing else is, and no sale was sent twice.
pub fn assert_each_once(sim: &Simulator, expected: &[String]) {
    let ids = order_ids(sim);
    for id in expected {
        assert_eq!(
            ids.get(id),
            Some(&1),
            "sale {id} must be in Omnium exactly once"
        );
    }
    assert_eq!(ids.len(), expected.len(), "no other orders");
    let stats = sim.stats();
    assert_eq!(
        (stats.duplicate_orders_rejected, stats.orders_reapplied),
        (0, 0),
        "no sale was sent twice (refused, or applied again when the simulator does not deduplicate)"
    );
}

/// Requests the simulator received on `key` (e.g. "GET /api/Orders/{id}").
pub fn route(sim: &Simulator, key: &str) -> u64 {
    sim.stats().by_route.get(key).copied().unwrap_or(0)
}

/// A web order of `order_type` for oslo-1 placed in the simulator, and the event Omnium
/// emitted for it: `(order id, event)`.
pub fn web_order(sim: &Simulator, order_type: &str, lines: usize) -> (String, Value) {
    let o = sim.new_web_order(order_type, "oslo-1", lines);
    let event = sim.add_web_order(o);
    (event["objectId"].as_str().unwrap().to_string(), event)
}

/// One line of a purchase order placed with [`place_purchase_order`].
pub struct PoLine {
    pub line_id: String,
    pub sku: String,
    pub quantity: f64,
}

/// A purchase order placed in the simulator.
pub struct PlacedPo {
    pub id: String,
    pub delivery_id: String,
    pub lines: Vec<PoLine>,
}

/// Places a purchase order of `lines` lines for `store` in the simulator.
pub fn place_purchase_order(sim: &Simulator, store: &str, lines: usize) -> PlacedPo {
    let po = sim.new_purchase_order(store, lines);
    let placed = PlacedPo {
        id: po["id"].as_str().unwrap().to_string(),
        delivery_id: po["deliveryId"].as_str().unwrap().to_string(),
        lines: po["purchaseOrderForm"]["lineItems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| PoLine {
                line_id: l["lineItemId"].as_str().unwrap().to_string(),
                sku: l["code"].as_str().unwrap().to_string(),
                quantity: l["quantity"].as_f64().unwrap(),
            })
            .collect(),
    };
    sim.add_purchase_order(po);
    placed
}

/// Waits (10 s at most) until the client lists the purchase order `id`.
pub fn purchase_order_listed(client: &Client, id: &str) -> bool {
    wait_until(Duration::from_secs(10), || {
        let list: Value =
            serde_json::from_str(&client.purchase_orders_json(None).unwrap()).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id)
    })
}

/// Moves the schedule's clock by `ms`, wakes the worker and waits for the pull run that is
/// then due to finish (every run ends with the orders search).
pub fn pull_after(
    client: &Client,
    sim: &Simulator,
    clock: &flow_omnium::clock::ManualClock,
    ms: i64,
) {
    let before = route(sim, "POST /api/Orders/Search");
    clock.advance(ms);
    client.wake().unwrap();
    // On a loaded machine a request may time out and the run be retried after a back-off on
    // the same clock (1 minute, then 2, with jitter): time keeps passing, 5 s every half
    // second or so, while the test waits (1 s at a time outran the 60 s wait in a loaded run).
    let mut waited = 0;
    assert!(
        wait_until(Duration::from_secs(90), || {
            waited += 1;
            if waited % 25 == 0 {
                clock.advance(5_000);
                let _ = client.wake();
            }
            route(sim, "POST /api/Orders/Search") > before && status(client)["pulling"] == false
        }),
        "a pull ran after the clock moved {ms} ms"
    );
}
