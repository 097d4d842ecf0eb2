//! Fifty tills on one API user (issue 13): N clients in one process against the simulator
//! enforcing Omnium's rate limits, printing per scenario the requests per till per hour, the
//! 429 share, the time until every till has flushed, duplicates and requests sent inside a
//! Retry-After the till had received.
//!
//! Time is compressed by a factor C (default 20) and every rate with it, so the load on the
//! limits is the real one: the pull interval is 300 s / C, a till records a sale every 30 s / C
//! (twice as often during a "lunch" third of the trading phase), and the token bucket (1,200,
//! Omnium's 12,000 scaled 10x as in the issue) refills 10 x C per second; per-user concurrency
//! is 20. Requests per till per hour are given in simulated time (real seconds x C).
//! Retry-After is whole seconds and is not compressed (it is Omnium's word), which only makes
//! the throttled phases slower than they would be. The back-off after an outage is compressed
//! like the rest (`sync.retry_initial_ms` 60 s / C, `retry_max_ms` 2 h / C).
//!
//! Limits: `scaled` (default; the issue's: Omnium's scaled down 10x, so 50 tills meet a tenth
//! of the capacity Omnium gives one API user) or `omnium` (Omnium's own: bucket 12,000,
//! 100 per second, 20 concurrent). Under the scaled bucket the catch-up cannot be faster than
//! (requests − bucket) / refill, printed as its floor.
//!
//! Scenarios: the day before (new tills, first full sync; not reported), a morning start of
//! every till at once with a burst of 20 sales each, a trading day, a 2-hour outage of the whole
//! chain (the simulator down while each till records 2 h of sales, 240, as fast as it can;
//! then up) and the catch-up, and idle (four pull intervals).
//!
//! Run: `cargo bench --features sim --bench fleet` or
//! `... --bench fleet -- <tills> <C> <scaled|omnium>`.

use flow_omnium::sim::{CatalogSpec, Limits, SimConfig, Simulator};
use flow_omnium::Client;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const PULL_INTERVAL_S: f64 = 300.0;
const SALE_EVERY_S: f64 = 30.0;
const OUTAGE_SALES: usize = 240;
const MORNING_BURST: usize = 20;
/// The outage lasts 2 h simulated, but at most this long in real time: by then every till's
/// probe back-off has long reached its cap (5 × `retry_initial_ms`), so a longer outage
/// changes nothing after Omnium returns.
const OUTAGE_REAL_MAX_S: f64 = 90.0;

fn config(db: &Path, base_url: &str, till: usize, c: f64) -> String {
    json!({
        "database_path": db.to_str().unwrap(),
        "store_id": if till % 2 == 0 { "oslo-1" } else { "bergen-1" },
        "market_id": "NOR",
        "currency": "NOK",
        "terminal_id": format!("t{till:03}"),
        "omnium": {"base_url": base_url, "client_id": "sim-client", "client_secret": "sim-secret",
                   "timeout_ms": 10_000},
        "sync": {"pull_interval_ms": (PULL_INTERVAL_S * 1000.0 / c) as u64,
                 "retry_initial_ms": (60_000.0 / c) as u64,
                 "retry_max_ms": (7_200_000.0 / c) as u64},
    })
    .to_string()
}

fn sale(id: &str) -> String {
    json!({"id": id, "created_at": "2026-11-28T10:15:00+01:00",
           "lines": [{"line_id": "1", "sku": "SKU-1", "name": "Item", "quantity": 1,
                      "unit_price": 10_000, "tax_rate": 25}],
           "payments": [{"id": "P1", "method": "Card", "amount": 10_000, "transaction_id": format!("tx-{id}")}]})
    .to_string()
}

struct Fleet {
    sim: Simulator,
    dir: tempfile::TempDir,
    tills: Vec<Client>,
    n: usize,
    c: f64,
    sales: usize,
}

impl Fleet {
    fn open_all(&mut self) {
        let base = self.sim.base_url();
        self.tills = (0..self.n)
            .map(|t| {
                let db = self.dir.path().join(format!("till{t}.db"));
                Client::open(&config(&db, &base, t, self.c)).expect("till opens")
            })
            .collect();
    }

    fn record(&mut self, till: usize, tag: &str) {
        let id = format!("{tag}-{till}-{}", self.sales);
        self.sales += 1;
        self.tills[till]
            .record_sale(&sale(&id))
            .expect("sale recorded");
    }

    /// Seconds until every till has flushed.
    fn flush_all(&self, started: Instant) -> f64 {
        for t in &self.tills {
            t.flush(Duration::from_secs(1800)).expect("till flushes");
        }
        started.elapsed().as_secs_f64()
    }

    fn report(&self, name: &str, started: Instant, flushed_s: Option<f64>) -> u64 {
        let real_s = started.elapsed().as_secs_f64();
        let s = self.sim.stats();
        let per_till = self.sim.till_stats();
        let inside: u64 = per_till.values().map(|t| t.inside_retry_after).sum();
        let in_transit: u64 = per_till
            .values()
            .map(|t| t.inside_retry_after_within_10ms)
            .sum();
        let before: u64 = per_till.values().map(|t| t.sent_before_the_429).sum();
        let n = self.tills.len() as f64;
        let per_hour = s.requests as f64 / n / (real_s * self.c / 3600.0);
        let share = 100.0 * s.throttled as f64 / (s.requests.max(1)) as f64;
        // The simulator keeps one order per id; a sale sent again is refused and counted.
        let dups = s.duplicate_orders_rejected;
        println!(
            "{name:<10} {real_s:>7.1} s real ({:>6.1} min simulated)  {per_hour:>7.1} req/till/h  429 {share:>5.1} %  flushed after {}  duplicates {dups}  inside Retry-After {inside} ({in_transit} within 10 ms of the 429; {before} more sent before the 429 was written)  tokens {}",
            real_s * self.c / 60.0,
            flushed_s.map_or("-".to_string(), |f| format!("{f:.1} s ({:.1} min simulated)", f * self.c / 60.0)),
            s.tokens_issued,
        );
        self.sim.reset_stats();
        // Requests the bucket let through.
        s.requests - s.throttled
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let c: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20.0);
    let omnium_limits = args.get(3).is_some_and(|a| a == "omnium");
    let sim = Simulator::start(SimConfig::default()).expect("simulator");
    sim.load_catalog(&CatalogSpec::default());
    let mut limits = if omnium_limits {
        Limits {
            concurrency: 20,
            bucket: 12_000.0,
            refill_per_sec: 100.0,
        }
    } else {
        Limits::scaled()
    };
    let simulated_refill = limits.refill_per_sec;
    let bucket = limits.bucket;
    limits.refill_per_sec *= c;
    sim.set_limits(Some(limits));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet {
        sim,
        dir,
        tills: Vec::new(),
        n,
        c,
        sales: 0,
    };
    println!("fleet: {n} tills, one API user, time compressed {c}x (pull every {:.1} s, a sale every {:.2} s per till), limits: {} (bucket {bucket}, {simulated_refill}/s simulated, 20 concurrent)",
        PULL_INTERVAL_S / c, SALE_EVERY_S / c, if omnium_limits { "Omnium's" } else { "Omnium's scaled 10x down" });

    // The day before: new tills, first full sync.
    fleet.open_all();
    let t = Instant::now();
    fleet.flush_all(t);
    std::thread::sleep(Duration::from_secs_f64(PULL_INTERVAL_S / c));
    for t in fleet.tills.drain(..) {
        t.close();
    }
    fleet.sim.reset_stats();

    // Morning start: every till at once, a burst of sales each; one pull interval observed.
    let t = Instant::now();
    fleet.open_all();
    for till in 0..n {
        for _ in 0..MORNING_BURST {
            fleet.record(till, "M");
        }
    }
    let flushed = fleet.flush_all(t);
    let rest = PULL_INTERVAL_S / c - t.elapsed().as_secs_f64();
    if rest > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(rest));
    }
    fleet.report("morning", t, Some(flushed));

    // Trading: 30 simulated minutes, a sale every 30 s per till, twice as often at "lunch".
    let t = Instant::now();
    let phase = 1800.0 / c;
    let mut next = vec![0.0f64; n];
    for (i, x) in next.iter_mut().enumerate() {
        *x = SALE_EVERY_S / c * i as f64 / n as f64;
    }
    loop {
        let now = t.elapsed().as_secs_f64();
        if now >= phase {
            break;
        }
        let lunch = now > phase / 3.0 && now < 2.0 * phase / 3.0;
        let every = SALE_EVERY_S / c / if lunch { 2.0 } else { 1.0 };
        for (till, due) in next.iter_mut().enumerate() {
            if *due <= now {
                fleet.record(till, "D");
                *due += every;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let flushed = fleet.flush_all(t) - phase;
    fleet.report("trading", t, Some(flushed.max(0.0)));

    // A 2-hour outage of the whole chain, then the catch-up.
    fleet.sim.set_down(true);
    let t = Instant::now();
    for till in 0..n {
        for _ in 0..OUTAGE_SALES {
            fleet.record(till, "O");
        }
    }
    let outage_real = t
        .elapsed()
        .as_secs_f64()
        .max((7200.0 / c).min(OUTAGE_REAL_MAX_S));
    std::thread::sleep(Duration::from_secs_f64(
        (outage_real - t.elapsed().as_secs_f64()).max(0.0),
    ));
    fleet.sim.reset_stats();
    fleet.sim.set_down(false);
    let t = Instant::now();
    let flushed = fleet.flush_all(t);
    let requests = fleet.report("catch-up", t, Some(flushed));
    // The bucket lets no fleet through faster than this.
    let floor_s = (requests as f64 - bucket).max(0.0) / simulated_refill;
    println!(
        "catch-up floor set by the bucket: ({requests} requests let through - {bucket}) / {simulated_refill} per s = {:.1} min simulated",
        floor_s / 60.0
    );

    // Idle: four pull intervals.
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(4.0 * PULL_INTERVAL_S / c));
    fleet.report("idle", t, None);
    let orders = fleet.sim.orders().len();
    println!("sales recorded {}, orders in Omnium {orders}", fleet.sales);
    for t in fleet.tills.drain(..) {
        t.close();
    }
}
