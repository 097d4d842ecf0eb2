//! Drain throughput to the Omnium simulator: N sales are recorded through the C ABI with the
//! worker stopped (`sync.autostart: false`), then the time is taken from `fo_sync_now` until
//! `fo_flush` returns `FO_OK`. The floor is a plain loop of ureq PUTs of the same Omnium
//! PosOrder bodies (built with `pos_order_json` before its clock starts) to a second fresh
//! simulator, after a token, at the same concurrency: one thread for `max_concurrency` 1,
//! four threads sharing one keep-alive `ureq::Agent` for `max_concurrency` 4 (issue 10
//! target 5: ≥ 0.9 × the floor at the same concurrency).
//!
//! Twice: on loopback, and with 20 ms added to every request by the simulator (Omnium's
//! real latency is tens of ms). Each round runs the floor and the library at both
//! concurrencies against fresh simulators. Printed: sales/s per run, then the median over the
//! rounds and the ratio median(ours)/median(floor) (best/best too, as other load on the
//! machine only ever slows a run down), the HTTP requests the library sent per sale (from the
//! simulator's counters), and a check that every simulator holds exactly the N expected
//! orders with no duplicate rejected.
//!
//! Run: `cargo bench --features sim --bench drain` (`-- loopback` or `-- latency` for one;
//! `-- once=1` for a single library drain on loopback at that concurrency, to profile).

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
const TARGET_RATIO: f64 = 0.9;
/// Each measurement is repeated this many times (fresh simulators every time): on loopback,
/// and with the added latency (where a run takes seconds).
const ROUNDS: usize = 7;
const LATENCY_ROUNDS: usize = 3;
const LATENCY_MS: u64 = 20;
/// `-- once=N`: the drain is marked on stderr.
static ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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
fn ours(concurrency: usize, latency_ms: u64) -> Run {
    let sim = Simulator::start(SimConfig {
        latency_ms,
        ..SimConfig::default()
    })
    .expect("start the simulator");
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

    // A marker for `strace`/`perf` of `-- once=N` runs: what follows is the drain.
    let once = ONCE.load(std::sync::atomic::Ordering::Relaxed);
    if once {
        eprintln!("drain starts");
    }
    let start = Instant::now();
    // SAFETY: a live client.
    check(unsafe { fo_sync_now(c) }, "fo_sync_now");
    check(unsafe { fo_flush(c, FLUSH_TIMEOUT_MS) }, "fo_flush");
    let took = start.elapsed();
    if once {
        eprintln!("drain ends");
    }
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

/// The floor: one keep-alive agent, a token, then the same bodies PUT by `concurrency`
/// threads taking the next body in turn.
fn floor(concurrency: usize, latency_ms: u64) -> Run {
    let sim = Simulator::start(SimConfig {
        latency_ms,
        ..SimConfig::default()
    })
    .expect("start the simulator");
    let agent = plain_agent();
    let base = sim.base_url();
    let expected = ids(&format!("F{concurrency}"));
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
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return;
                };
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
            });
        }
    });
    let took = start.elapsed();
    finish(&sim, &expected, took)
}

/// Median, min and max of the runs' rates (sales/s).
fn rates(runs: &[Run]) -> (f64, f64, f64) {
    let mut r: Vec<f64> = runs.iter().map(Run::rate).collect();
    r.sort_by(f64::total_cmp);
    (r[r.len() / 2], r[0], r[r.len() - 1])
}

/// Rounds of floor and library at concurrency 1 and 4; prints the summary and returns the
/// runs (for the verification at the end).
fn compare(label: &str, latency_ms: u64, rounds: usize) -> Vec<Run> {
    println!(
        "\n{label}: drain of {N} recorded 3-line sales (timed: fo_sync_now → fo_flush = FO_OK); \
         {rounds} rounds, each with fresh simulators"
    );
    let mut floors: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let mut libs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        println!("\nround {round}");
        for (slot, concurrency) in [(0, 1), (1, 4)] {
            let base = floor(concurrency, latency_ms);
            base.describe(&format!("floor, {concurrency} thread(s)"));
            let lib = ours(concurrency, latency_ms);
            lib.describe(&format!("flow-omnium, concurrency {concurrency}"));
            println!(
                "      ratio to this round's floor: {:.2}",
                lib.rate() / base.rate()
            );
            floors[slot].push(base);
            libs[slot].push(lib);
        }
    }
    println!("\nsummary, {label} (median of {rounds} runs, [min – max])");
    for (slot, concurrency) in [(0, 1), (1, 4)] {
        let (floor_rate, floor_min, floor_max) = rates(&floors[slot]);
        println!(
            "  {:<34} {floor_rate:>7.0} sales/s  [{floor_min:.0} – {floor_max:.0}]",
            format!("floor, {concurrency} thread(s)")
        );
        let runs = &libs[slot];
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
    floors.into_iter().chain(libs).flatten().collect()
}

fn main() {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: &str| named.is_empty() || named.iter().any(|n| n == part);
    let mut all = Vec::new();
    if let Some(concurrency) = named
        .iter()
        .find_map(|n| n.strip_prefix("once="))
        .and_then(|c| c.parse().ok())
    {
        // One library drain on loopback, for a profiler or strace (`drain starts` and
        // `drain ends` on stderr mark the timed part).
        ONCE.store(true, std::sync::atomic::Ordering::Relaxed);
        let run = ours(concurrency, 0);
        run.describe(&format!("flow-omnium, concurrency {concurrency}"));
        assert!(
            run.verified(),
            "the simulator did not hold exactly the sales sent"
        );
        return;
    }
    if wants("loopback") {
        all.extend(compare("loopback", 0, ROUNDS));
    }
    if wants("latency") {
        all.extend(compare(
            &format!("{LATENCY_MS} ms added per request"),
            LATENCY_MS,
            LATENCY_ROUNDS,
        ));
    }
    let build = body_build_time();
    println!(
        "  building the {N} PosOrder bodies (parse + Sale::parse + pos_order_json), which the \
         library does while draining and the floor did before its clock started: {:.1} ms \
         ({:.1} µs per sale)",
        build.as_secs_f64() * 1e3,
        build.as_secs_f64() * 1e6 / N as f64
    );
    let all_verified = all.iter().all(Run::verified);
    println!(
        "\nverification (each simulator holds exactly {N} orders, the expected ids, \
         0 duplicates rejected; all {} runs): {}",
        all.len(),
        if all_verified { "OK" } else { "FAILED" }
    );
    assert!(
        all_verified,
        "a simulator did not hold exactly the sales sent"
    );
}
