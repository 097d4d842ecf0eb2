//! Drain throughput to the Omnium simulator on loopback: N sales are recorded through the C ABI
//! with the worker stopped (`sync.autostart: false`), then the time is taken from `fo_sync_now`
//! until `fo_flush` returns `FO_OK`. The floor is a plain sequential loop with one keep-alive
//! `ureq::Agent` that fetches a token and PUTs the same Omnium PosOrder bodies (built with
//! `pos_order_json`, before its clock starts) to a second fresh simulator.
//!
//! Each round runs the floor, the library with `omnium.max_concurrency` 1 and 4, and (for
//! information only) the floor again with the per-phase timeouts the library's agent sets, all
//! against fresh simulators. Printed: sales/s per run, then the median over the rounds and the
//! ratio median(ours)/median(floor) (target ≥ 0.8; best/best too, as other load on the machine
//! only ever slows a run down), the HTTP requests the library sent per sale
//! (from the simulator's counters), and a check that every simulator holds exactly the N
//! expected orders with no duplicate rejected.
//!
//! Run: `cargo bench --features sim --bench drain`

use flow_omnium::ffi::{
    fo_client, fo_client_close, fo_client_open, fo_flush, fo_last_error_message, fo_record_sale,
    fo_sync_now,
};
use flow_omnium::fo_result;
use flow_omnium::model::{Defaults, Sale};
use flow_omnium::omnium::orders::{pos_order_json, OrderContext};
use flow_omnium::sim::{SimConfig, SimStats, Simulator};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

const N: usize = 2000;
const FLUSH_TIMEOUT_MS: u32 = 120_000;
const TARGET_RATIO: f64 = 0.8;
/// Each measurement is repeated this many times (fresh simulators every time).
const ROUNDS: usize = 7;

/// A balanced 3-line, 2-payment sale (Σ round(q × price) − Σ discount + rounding = Σ payments).
fn sale_json(id: &str) -> String {
    // 2 × 19950 + 1 × 12900 − 1000 + round(0.5 × 8990) = 56295; + 5 rounding = 56300.
    json!({
        "id": id, "created_at": "2026-11-28T10:15:00+01:00",
        "customer_id": "C-77", "salesperson_id": "E-12", "rounding": 5,
        "lines": [
            {"line_id": "1", "sku": "SKU-00100", "name": "T-shirt", "quantity": 2,
             "unit_price": 19950, "discount": 0, "tax_rate": 25},
            {"line_id": "2", "sku": "SKU-00101", "name": "Cap", "quantity": 1,
             "unit_price": 12900, "discount": 1000, "tax_rate": 25},
            {"line_id": "3", "sku": "SKU-00102", "name": "Coffee beans", "quantity": 0.5,
             "unit_price": 8990, "discount": 0, "tax_rate": 15}
        ],
        "payments": [
            {"id": "P1", "method": "Card", "amount": 46300, "transaction_id": format!("tx-{id}")},
            {"id": "P2", "method": "Cash", "amount": 10000}
        ]
    })
    .to_string()
}

fn ids(prefix: &str) -> Vec<String> {
    (0..N).map(|i| format!("{prefix}-{i:05}")).collect()
}

fn check(r: fo_result, what: &str) {
    if r != fo_result::FO_OK {
        // SAFETY: never NULL, valid until the next fo_ call on this thread.
        let message = unsafe { CStr::from_ptr(fo_last_error_message()) };
        panic!("{what}: {} ({})", r.name(), message.to_string_lossy());
    }
}

struct Run {
    took: Duration,
    stats: SimStats,
    /// Whether the simulator holds exactly the N expected orders.
    orders_ok: bool,
    orders: usize,
}

impl Run {
    fn rate(&self) -> f64 {
        N as f64 / self.took.as_secs_f64()
    }

    fn verified(&self) -> bool {
        self.orders_ok && self.stats.duplicate_orders_rejected == 0
    }

    fn describe(&self, label: &str) {
        println!(
            "  {label:<28} {:>9.0} sales/s  ({:.3} s; simulator: {} orders, {} duplicates rejected: {})",
            self.rate(),
            self.took.as_secs_f64(),
            self.orders,
            self.stats.duplicate_orders_rejected,
            if self.verified() { "OK" } else { "WRONG" }
        );
    }
}

fn finish(sim: &Simulator, expected: &[String], took: Duration) -> Run {
    let stats = sim.stats();
    let orders = sim.orders();
    let held: HashSet<&str> = orders.iter().filter_map(|o| o["id"].as_str()).collect();
    let orders_ok = orders.len() == N && expected.iter().all(|id| held.contains(id.as_str()));
    Run {
        took,
        stats,
        orders_ok,
        orders: orders.len(),
    }
}

/// The library: record N sales with the worker stopped, then time sync_now → flush.
fn ours(concurrency: usize) -> Run {
    let sim = Simulator::start(SimConfig::default()).expect("start the simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = json!({
        "database_path": dir.path().join("bench.db").to_str().expect("UTF-8 temp path"),
        "store_id": "oslo-1", "market_id": "NOR", "currency": "NOK",
        "omnium": {"base_url": sim.base_url(), "client_id": "sim-client",
                   "client_secret": "sim-secret", "max_concurrency": concurrency},
        "sync": {"autostart": false}
    })
    .to_string();
    let config = CString::new(config).expect("no NUL");
    let mut c: *mut fo_client = std::ptr::null_mut();
    // SAFETY: a NUL-terminated config and a writable out-pointer.
    check(
        unsafe { fo_client_open(config.as_ptr(), &mut c) },
        "fo_client_open",
    );

    let expected = ids(&format!("L{concurrency}"));
    for id in &expected {
        let sale = CString::new(sale_json(id)).expect("no NUL");
        // SAFETY: a live client and a NUL-terminated string.
        check(
            unsafe { fo_record_sale(c, sale.as_ptr()) },
            "fo_record_sale",
        );
    }
    assert_eq!(sim.stats().requests, 0, "nothing is sent before sync_now");

    let start = Instant::now();
    // SAFETY: a live client.
    check(unsafe { fo_sync_now(c) }, "fo_sync_now");
    check(unsafe { fo_flush(c, FLUSH_TIMEOUT_MS) }, "fo_flush");
    let took = start.elapsed();
    // SAFETY: opened above, closed once.
    unsafe { fo_client_close(c) };
    finish(&sim, &expected, took)
}

/// The PosOrder bodies the library would send for these sales.
fn bodies(sale_jsons: &[String]) -> Vec<Vec<u8>> {
    let defaults = Defaults {
        store_id: "oslo-1".into(),
        currency: "NOK".into(),
    };
    let ctx = OrderContext {
        market_id: "NOR",
        terminal_id: None,
    };
    sale_jsons
        .iter()
        .map(|json| {
            let mut value: Value = serde_json::from_str(json).expect("JSON");
            Sale::normalize(&mut value, &defaults);
            pos_order_json(&Sale::parse(&value).expect("a valid sale"), &ctx)
        })
        .collect()
}

/// How long building N bodies takes (median of 5).
fn body_build_time() -> Duration {
    let jsons: Vec<String> = ids("B").iter().map(|id| sale_json(id)).collect();
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(bodies(&jsons));
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    times[2]
}

/// The floor's agent: keep-alive, statuses as answers, nothing else.
fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// An agent set up like the library's (src/omnium/transport.rs with the default
/// `timeout_ms` 30 000 and `max_concurrency` 1): every phase has a timeout.
fn library_like_agent() -> ureq::Agent {
    let timeout = Duration::from_secs(30);
    let connect = Duration::from_secs(10);
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_resolve(Some(connect))
        .timeout_connect(Some(connect))
        .timeout_send_request(Some(timeout))
        .timeout_send_body(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .timeout_global(Some(timeout + connect))
        .max_idle_connections_per_host(2)
        .build()
        .into()
}

/// The floor: one keep-alive agent, a token, then sequential PUTs of the same bodies.
fn floor(agent: ureq::Agent) -> Run {
    let sim = Simulator::start(SimConfig::default()).expect("start the simulator");
    let base = sim.base_url();
    let expected = ids("F");
    let jsons: Vec<String> = expected.iter().map(|id| sale_json(id)).collect();
    let bodies = bodies(&jsons);
    let orders_url = format!("{base}/api/Orders/PosOrders");

    let start = Instant::now();
    let mut resp = agent
        .post(format!(
            "{base}/api/token?clientId=sim-client&clientSecret=sim-secret&returnAsJson=true"
        ))
        .send_empty()
        .expect("token request");
    assert_eq!(resp.status().as_u16(), 200, "token status");
    let token: Value = resp.body_mut().read_json().expect("token JSON");
    let bearer = format!(
        "Bearer {}",
        token["accessToken"].as_str().expect("accessToken")
    );
    for body in &bodies {
        let mut resp = agent
            .put(&orders_url)
            .header("Accept", "application/json")
            .header("Authorization", &bearer)
            .header("Content-Type", "application/json")
            .send(&body[..])
            .expect("PUT PosOrders");
        // Read the answer to the end so the connection is reused.
        let answer = resp.body_mut().read_to_vec().expect("answer body");
        let status = resp.status().as_u16();
        assert!(
            (200..300).contains(&status),
            "PUT PosOrders: HTTP {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let took = start.elapsed();
    finish(&sim, &expected, took)
}

/// Median, min and max of the runs' rates (sales/s).
fn rates(runs: &[Run]) -> (f64, f64, f64) {
    let mut r: Vec<f64> = runs.iter().map(Run::rate).collect();
    r.sort_by(f64::total_cmp);
    (r[r.len() / 2], r[0], r[r.len() - 1])
}

fn main() {
    println!(
        "Drain of {N} recorded 3-line sales to the Omnium simulator on loopback \
         (timed: fo_sync_now → fo_flush = FO_OK); {ROUNDS} rounds, each with fresh simulators, \
         the floor run next to the library's"
    );
    let mut floors = Vec::new();
    let mut timed_floors = Vec::new();
    let mut libs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=ROUNDS {
        println!("\nround {round}");
        let base = floor(plain_agent());
        base.describe("floor: sequential ureq PUTs");
        for (slot, concurrency) in [(0, 1), (1, 4)] {
            let lib = ours(concurrency);
            lib.describe(&format!("flow-omnium, concurrency {concurrency}"));
            println!(
                "      ratio to this round's floor: {:.2}",
                lib.rate() / base.rate()
            );
            libs[slot].push(lib);
        }
        let timed = floor(library_like_agent());
        timed.describe("floor with library timeouts");
        floors.push(base);
        timed_floors.push(timed);
    }

    let (floor_rate, floor_min, floor_max) = rates(&floors);
    println!("\nsummary (median of {ROUNDS} runs, [min – max])");
    println!(
        "  {:<34} {floor_rate:>7.0} sales/s  [{floor_min:.0} – {floor_max:.0}]",
        "floor: sequential ureq PUTs"
    );
    let (timed_rate, timed_min, timed_max) = rates(&timed_floors);
    println!(
        "  {:<34} {timed_rate:>7.0} sales/s  [{timed_min:.0} – {timed_max:.0}]  (informational: \
         the same loop with the per-phase timeouts the library's agent sets)",
        "floor with library timeouts"
    );
    for (runs, concurrency) in libs.iter().zip([1, 4]) {
        let (rate, min, max) = rates(runs);
        let ratio = rate / floor_rate;
        println!(
            "  {:<34} {rate:>7.0} sales/s  [{min:.0} – {max:.0}]  ratio ours/floor {ratio:.2} \
             (target ≥ {TARGET_RATIO}: {}; best/best {:.2})",
            format!("flow-omnium, max_concurrency {concurrency}"),
            if ratio >= TARGET_RATIO {
                "PASS"
            } else {
                "MISS"
            },
            max / floor_max
        );
        let requests: u64 = runs.iter().map(|r| r.stats.requests).sum();
        let mut routes = std::collections::BTreeMap::new();
        for r in runs {
            for (route, n) in &r.stats.by_route {
                *routes.entry(route.as_str()).or_insert(0) += n;
            }
        }
        let routes: Vec<String> = routes
            .iter()
            .map(|(route, n)| format!("{route} × {n}"))
            .collect();
        println!(
            "      HTTP requests sent: {:.4} per sale ({requests} for {} sales: {}); most in flight: {}",
            requests as f64 / (N * runs.len()) as f64,
            N * runs.len(),
            routes.join(", "),
            runs.iter().map(|r| r.stats.max_in_flight).max().unwrap_or(0)
        );
    }
    let build = body_build_time();
    println!(
        "  building the {N} PosOrder bodies (parse + Sale::parse + pos_order_json), which the \
         library does while draining and the floor did before its clock started: {:.1} ms \
         ({:.1} µs per sale)",
        build.as_secs_f64() * 1e3,
        build.as_secs_f64() * 1e6 / N as f64
    );
    let all_verified = floors
        .iter()
        .chain(&timed_floors)
        .chain(libs.iter().flatten())
        .all(Run::verified);
    println!(
        "\nverification (each simulator holds exactly {N} orders, the expected ids, \
         0 duplicates rejected; all {} runs): {}",
        floors.len() + timed_floors.len() + libs.iter().map(Vec::len).sum::<usize>(),
        if all_verified { "OK" } else { "FAILED" }
    );
    assert!(
        all_verified,
        "a simulator did not hold exactly the sales sent"
    );
}
