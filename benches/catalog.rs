//! Catalog pull and offline reads at store scale (about 100,000 SKUs), against the Omnium
//! simulator on loopback. Four measurements, one run:
//!
//! 1. Initial sync: the time from `Client::open` on an empty database until the local catalog
//!    holds every SKU and the status says `"pulling": false`, with memory sampled every 20 ms.
//!    The simulator keeps the whole catalog in memory (over 1 GB at this size) and builds
//!    each scroll's result set in memory too, so it runs in a child process (this bench
//!    binary, started again with `--sim-child`): this process's RSS is then the client's own.
//!    Both processes' figures are printed.
//! 2. Apply rate: the same products, fetched from the simulator's scroll API by hand and
//!    turned into rows with `product_rows`, written (no network in the timing) by
//!    `Store::apply_products` a page of 1,000 at a time (as the pull does) and by a bare
//!    rusqlite bulk upsert (WAL, synchronous=NORMAL like the library's catalog writes, one
//!    transaction per page) into two plain tables. The library gets a time budget; when it
//!    runs out, the floor is timed on the same rows.
//! 3. Read latency through the C ABI on the synced database: `fo_product_get` for random
//!    SKUs and `fo_product_search` with a mix of till-like queries.
//! 4. Requests of an idle terminal: the client pulls every 500 ms for 10 s with nothing
//!    changing; the requests per pull are scaled to the default 5-minute interval. When a
//!    pull is still running at the end, the size of a whole pull is read from Omnium's
//!    `totalHits` for the library's own queries (`OmniumApi`, the cursors in the database).
//! 5. Recording never waits on sync (issue 10 target 4): 10,000 sales are recorded with the
//!    worker stopped (their latencies are the idle baseline), then `fo_sync_now` starts the
//!    first sync of the whole catalog and the drain of those 10,000 jobs together, and a sale
//!    is recorded through `fo_record_sale` every 10 ms until both are done: p50, p99 and max
//!    of those calls. (Pending sales go before pull pages, so a much faster stream of sales
//!    would stretch the sync instead.)
//!
//! Run: `cargo bench --features sim --bench catalog` (all five), or name the parts to run:
//! `cargo bench --features sim --bench catalog -- sync apply reads idle record`. `-- record
//! trace` also traces every hold of the outbox's writer over 1 ms during part 5 (by caller,
//! split into the holder's CPU, its time preempted and the rest) and prints what the
//! longest-blocked recording calls waited behind. `FO_BENCH_DIR=/dev/shm` puts the databases
//! on a tmpfs. With `rendered` beside `sync`, a second first sync follows, into a new
//! database, with the simulator serving each product from bytes it rendered in a warm-up
//! read before the timing (a real Omnium does not render its JSON on the till's cores).

use flow_omnium::ffi::{
    fo_client, fo_client_close, fo_client_open, fo_last_error_message, fo_product_get,
    fo_product_search, fo_record_sale, fo_status, fo_string_free, fo_sync_now,
};
use flow_omnium::fo_result;
use flow_omnium::model::catalog::CatalogProduct;
use flow_omnium::omnium::catalog::{product_rows, CatalogScope, Page, Product};
use flow_omnium::sim::{CatalogSpec, SimConfig, Simulator};
use flow_omnium::store::{
    take_writer_holds, take_writer_wait, trace_writer_holds, Store, WriterHold,
};
use flow_omnium::Client;
use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, CStr, CString};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// With `max_variants` 3 a product has 5/3 SKUs on average: 60,000 products ≈ 100,000 SKUs.
const PRODUCTS: usize = 60_000;
const MAX_VARIANTS: usize = 3;
/// What `sync::pull` asks per scroll page and hands to `Store::apply_products` at once.
const SCROLL_TAKE: usize = 1000;
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// The library's apply run stops after this long (the floor is then timed on the rows the
/// library got through); a second round of both runs only when the first was this quick.
const APPLY_BUDGET: Duration = Duration::from_secs(30);
const APPLY_REPEAT_UNDER: Duration = Duration::from_secs(10);

const GETS: usize = 20_000;
const SEARCHES: usize = 2_000;
const SEARCH_LIMIT: u32 = 20;

const IDLE_INTERVAL_MS: u64 = 500;
const IDLE_RUN: Duration = Duration::from_secs(10);
const DEFAULT_INTERVAL_MS: u64 = 300_000;
/// Requests made once per client start (a token) or per database (the market's language).
const ONE_OFF_ROUTES: [&str; 2] = ["POST /api/token", "GET /api/Markets"];
/// Stores and categories are pulled once an hour (`SLOW_DATASET_INTERVAL_MS` in sync::pull).
const SLOW_ROUTES: [&str; 2] = [
    "POST /api/Stores/SearchStores",
    "GET /api/ProductCategories",
];
/// The product and stock scrolls; a pull run's other requests (order and purchase-order
/// searches) are whatever else the simulator counts.
const SCROLL_ROUTES: [&str; 4] = [
    "POST /api/Products/Scroll",
    "GET /api/Products/Scroll/{scrollId}",
    "POST /api/Inventory/Search",
    "GET /api/Inventory/Scroll/{scrollId}",
];

/// Issue 10 target 6.
const TARGET_SYNC_S: f64 = 5.0;
const TARGET_CLIENT_PEAK_MB: f64 = 100.0;
const TARGET_APPLY_RATIO: f64 = 3.0;
const TARGET_GET_P99_US: f64 = 500.0;
const TARGET_SEARCH_P99_US: f64 = 5_000.0;
const TARGET_IDLE_PER_HOUR: f64 = 60.0;

const SCOPE: CatalogScope<'static> = CatalogScope {
    market_id: "NOR",
    store_id: "oslo-1",
    currency: "NOK",
    language: Some("no"),
    market_group: None,
    default_tax_rate: Some(25.0),
    time_zone: chrono_tz::Europe::Oslo,
};

/// Starts this binary as the simulator process.
const SIM_CHILD_ARG: &str = "--sim-child";

// ---------------------------------------------------------------------------------------------
// Helpers

/// A `kB` field of /proc/{pid}/status (VmRSS, VmHWM, RssAnon…), in bytes; 0 if unreadable.
fn proc_status_bytes(pid: Option<u32>, field: &str) -> u64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(path).unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn delta_mb(after: u64, before: u64) -> f64 {
    mb(after) - mb(before)
}

/// Samples VmRSS of this process and of the simulator's on a thread, keeping the largest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(u64, u64)>,
}

impl RssSampler {
    fn start(sim_pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut ours, mut sim) = (0, 0);
            loop {
                ours = ours.max(proc_status_bytes(None, "VmRSS"));
                sim = sim.max(proc_status_bytes(Some(sim_pid), "VmRSS"));
                if flag.load(Ordering::Relaxed) {
                    return (ours, sim);
                }
                std::thread::sleep(RSS_SAMPLE_EVERY);
            }
        });
        RssSampler { stop, handle }
    }

    /// The peak VmRSS seen of (this process, the simulator's), in bytes.
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the RSS sampler")
    }
}

/// This thread's CPU time (less sensitive than the wall clock to the other processes on
/// this machine's two cores).
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// xorshift64*: deterministic picks without a crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Sorted latencies in µs.
struct Latencies(Vec<f64>);

impl Latencies {
    fn new(mut v: Vec<f64>) -> Latencies {
        v.sort_by(f64::total_cmp);
        Latencies(v)
    }

    fn pct(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0[((self.0.len() - 1) as f64 * q).round() as usize]
    }

    fn line(&self, label: &str) -> String {
        format!(
            "  {label:<30} n={:>6}  p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>9.1} µs",
            self.0.len(),
            self.pct(0.50),
            self.pct(0.99),
            self.pct(1.0)
        )
    }
}

fn client_config(db: &Path, base_url: &str, sync: Value) -> String {
    json!({
        "database_path": db.to_str().expect("UTF-8 temp path"),
        "store_id": "oslo-1", "market_id": "NOR", "currency": "NOK",
        "omnium": {"base_url": base_url, "client_id": "sim-client", "client_secret": "sim-secret"},
        "sync": sync,
    })
    .to_string()
}

fn check(r: fo_result, what: &str) {
    if r != fo_result::FO_OK {
        // SAFETY: never NULL, valid until the next fo_ call on this thread.
        let message = unsafe { CStr::from_ptr(fo_last_error_message()) };
        panic!("{what}: {} ({})", r.name(), message.to_string_lossy());
    }
}

// ---------------------------------------------------------------------------------------------
// The simulator in a child process

/// The child: loads the catalog, prints `{"base_url", "skus", …}`, then answers `stats`,
/// `reset` and `sku_ids` (one JSON line each) on stdin until it closes.
fn sim_child() {
    let sim = Simulator::start(SimConfig::default()).expect("start the simulator");
    let started = Instant::now();
    let summary = sim.load_catalog(&CatalogSpec {
        products: PRODUCTS,
        max_variants: MAX_VARIANTS,
        ..CatalogSpec::default()
    });
    let mut out = std::io::stdout().lock();
    let hello = json!({
        "base_url": sim.base_url(), "products": summary.products, "skus": summary.skus,
        "categories": summary.categories, "stock_items": summary.stock_items,
        "load_s": started.elapsed().as_secs_f64(),
    });
    writeln!(out, "{hello}").expect("stdout");
    out.flush().expect("stdout");
    for line in std::io::stdin().lock().lines() {
        let answer = match line.expect("stdin").trim() {
            "stats" => serde_json::to_value(sim.stats()).expect("stats"),
            "reset" => {
                sim.reset_stats();
                json!("ok")
            }
            "sku_ids" => json!(sim.sku_ids()),
            "keep_rendered" => {
                sim.keep_rendered_products(true);
                json!("ok")
            }
            other => json!({"error": format!("unknown command {other:?}")}),
        };
        writeln!(out, "{answer}").expect("stdout");
        out.flush().expect("stdout");
    }
}

/// What the bench reads of the simulator's counters.
struct Stats {
    requests: u64,
    by_route: BTreeMap<String, u64>,
    products_served: u64,
    stock_items_served: u64,
}

impl Stats {
    fn route(&self, route: &str) -> u64 {
        self.by_route.get(route).copied().unwrap_or(0)
    }

    /// Requests on every route not in `except`.
    fn others(&self, except: &[&[&str]]) -> u64 {
        self.by_route
            .iter()
            .filter(|(route, _)| !except.iter().any(|list| list.contains(&route.as_str())))
            .map(|(_, n)| n)
            .sum()
    }

    fn routes(&self) -> String {
        self.by_route
            .iter()
            .map(|(route, n)| format!("    {n:>6}  {route}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

struct ChildSim {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    hello: Value,
}

impl ChildSim {
    fn start() -> ChildSim {
        let exe = std::env::current_exe().expect("this bench's path");
        let mut child = Command::new(exe)
            .arg(SIM_CHILD_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the simulator process");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut sim = ChildSim {
            child,
            stdin,
            stdout,
            hello: Value::Null,
        };
        sim.hello = sim.read_line();
        sim
    }

    fn read_line(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("simulator answer");
        serde_json::from_str(&line).expect("simulator answer is JSON")
    }

    fn ask(&mut self, command: &str) -> Value {
        let stdin = self.stdin.as_mut().expect("simulator stdin");
        writeln!(stdin, "{command}").expect("simulator stdin");
        stdin.flush().expect("simulator stdin");
        self.read_line()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn base_url(&self) -> String {
        self.hello["base_url"]
            .as_str()
            .expect("base_url")
            .to_string()
    }

    fn count(&self, key: &str) -> usize {
        self.hello[key].as_u64().expect("count") as usize
    }

    fn stats(&mut self) -> Stats {
        let v = self.ask("stats");
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Stats {
            requests: n("requests"),
            by_route: v["by_route"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect(),
            products_served: n("products_served"),
            stock_items_served: n("stock_items_served"),
        }
    }

    fn reset_stats(&mut self) {
        assert_eq!(self.ask("reset"), "ok");
    }

    fn sku_ids(&mut self) -> Vec<String> {
        serde_json::from_value(self.ask("sku_ids")).expect("SKU ids")
    }
}

impl Drop for ChildSim {
    fn drop(&mut self) {
        // Closing stdin ends the child.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Initial sync

struct SyncRun {
    took: Duration,
    skus: usize,
    rss_before: u64,
    peak_rss: u64,
    hwm_after: u64,
    /// Requests of the run besides the product and stock scrolls, stores and categories.
    other_per_run: u64,
}

fn initial_sync(sim: &mut ChildSim, db: &Path) -> SyncRun {
    let skus = sim.count("skus");
    sim.reset_stats();
    let config = client_config(db, &sim.base_url(), json!({"pull_interval_ms": 3_600_000}));
    let sim_pid = Some(sim.pid());
    let rss_before = proc_status_bytes(None, "VmRSS");
    let hwm_before = proc_status_bytes(None, "VmHWM");
    let sim_before = proc_status_bytes(sim_pid, "VmRSS");
    let sim_hwm_before = proc_status_bytes(sim_pid, "VmHWM");

    let sampler = RssSampler::start(sim.pid());
    timing_start();
    let start = Instant::now();
    let client = Client::open(&config).expect("Client::open");
    loop {
        let count = client.store().sku_count().expect("sku_count") as usize;
        if count == skus {
            let status: Value =
                serde_json::from_str(&client.status_json().expect("status")).expect("JSON");
            // The search index a first sync leaves owed is built on its own thread after
            // the products step: the sync is done once it is built too.
            if status["pulling"] == false
                && status["last_pull_at"].is_string()
                && !client.store().catalog_build_owed().expect("build owed")
            {
                break;
            }
        }
        assert!(
            start.elapsed() < SYNC_TIMEOUT,
            "the sync did not finish in {SYNC_TIMEOUT:?}: {count} of {skus} SKUs; status {}",
            client.status_json().unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = start.elapsed();
    let breakdown = timing_breakdown(start, start + took);
    let (peak_rss, sim_peak) = sampler.finish();
    let run = SyncRun {
        took,
        skus,
        rss_before,
        peak_rss,
        hwm_after: proc_status_bytes(None, "VmHWM"),
        other_per_run: 0,
    };
    let anon = proc_status_bytes(None, "RssAnon");
    let file = proc_status_bytes(None, "RssFile");
    let shmem = proc_status_bytes(None, "RssShmem");
    client.close();
    let stats = sim.stats();
    let run = SyncRun {
        other_per_run: stats.others(&[&ONE_OFF_ROUTES, &SLOW_ROUTES, &SCROLL_ROUTES]),
        ..run
    };
    println!(
        "  synced {} SKUs in {:.2} s = {:.0} SKUs/s  ({} products and {} stock items served, \
         {} HTTP requests)",
        run.skus,
        took.as_secs_f64(),
        run.skus as f64 / took.as_secs_f64(),
        stats.products_served,
        stats.stock_items_served,
        stats.requests
    );
    println!("{}", stats.routes());
    let floor = fetch_floor(&sim.base_url());
    print_breakdown(took, &breakdown, &floor);
    println!("  memory, this process (the client; no catalog held by the bench yet):");
    println!(
        "    before Client::open            VmRSS {:>7.1} MB   VmHWM {:>7.1} MB",
        mb(rss_before),
        mb(hwm_before)
    );
    println!(
        "    during the sync (20 ms)   peak VmRSS {:>7.1} MB   (+{:.1} MB)",
        mb(run.peak_rss),
        delta_mb(run.peak_rss, rss_before)
    );
    println!(
        "    after the sync                 VmHWM {:>7.1} MB   (+{:.1} MB; VmRSS now: anon \
         {:.1} + file {:.1} + shmem {:.1} MB)",
        mb(run.hwm_after),
        delta_mb(run.hwm_after, rss_before),
        mb(anon),
        mb(file),
        mb(shmem)
    );
    println!("  memory, simulator process (holds the catalog; builds each scroll's result set):");
    println!(
        "    after load_catalog             VmRSS {:>7.1} MB   VmHWM {:>7.1} MB",
        mb(sim_before),
        mb(sim_hwm_before)
    );
    println!(
        "    during the sync           peak VmRSS {:>7.1} MB   (+{:.1} MB: in one process this \
         would count as the client's)",
        mb(sim_peak),
        delta_mb(sim_peak, sim_before)
    );
    run
}

// ---------------------------------------------------------------------------------------------
// 1b. Where the first sync's time goes

/// The pull's timing lines (`flow_omnium::sync::pull::TIMING_TARGET`, debug level), kept
/// with when they came; every other log line is dropped.
struct TimingLog {
    lines: std::sync::Mutex<Vec<(Instant, String)>>,
}

impl log::Log for TimingLog {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.target() == flow_omnium::sync::pull::TIMING_TARGET
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = record.args().to_string();
            self.lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((Instant::now(), line));
        }
    }

    fn flush(&self) {}
}

static TIMING: TimingLog = TimingLog {
    lines: std::sync::Mutex::new(Vec::new()),
};

/// Installs [`TIMING`] (once) and forgets what it held.
fn timing_start() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if log::set_logger(&TIMING).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
    });
    TIMING
        .lines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
}

/// The first sync's time, by part, from the pull's timing lines.
#[derive(Default)]
struct Breakdown {
    /// Pages, fetch (request, body and parse), apply time, and the part of the fetch the
    /// worker waited for (all of it unless fetched on another thread during an apply), per
    /// data set.
    products: (usize, Duration, Duration, Duration),
    stock: (usize, Duration, Duration, Duration),
    build: Duration,
    /// From the start to the first products page fetched (token, market, stores,
    /// categories, the scroll's start).
    before_products: Duration,
    /// From the last timing line to when the bench saw the sync done (the orders and
    /// purchase-order searches, the status poll every 10 ms).
    after_last: Duration,
}

fn micros_after(line: &str, key: &str) -> Duration {
    let rest = line.split(key).nth(1).unwrap_or("");
    let n: u64 = rest
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    Duration::from_micros(n)
}

fn timing_breakdown(start: Instant, end: Instant) -> Breakdown {
    let lines = TIMING.lines.lock().unwrap_or_else(|p| p.into_inner());
    let mut b = Breakdown::default();
    let mut first_products: Option<Instant> = None;
    for (at, line) in lines.iter() {
        let fetch = micros_after(line, "fetched in ");
        let waited = micros_after(line, "waited ");
        let apply = micros_after(line, "applied in ");
        let part = if line.starts_with("products page") {
            first_products.get_or_insert(at.checked_sub(waited + apply).unwrap_or(*at));
            &mut b.products
        } else if line.starts_with("stock page") {
            &mut b.stock
        } else {
            b.build += micros_after(line, "built in ");
            continue;
        };
        part.0 += 1;
        part.1 += fetch;
        part.2 += apply;
        part.3 += waited;
    }
    b.before_products =
        first_products.map_or(Duration::ZERO, |f| f.saturating_duration_since(start));
    b.after_last = lines
        .last()
        .map_or(Duration::ZERO, |(at, _)| end.saturating_duration_since(*at));
    b
}

/// The floor of fetching: the library's own product scroll (same body: its excluded fields,
/// language, page size) and stock scroll, read with a plain ureq loop, each body read whole
/// and dropped. Then, apart, the CPU of parsing the product pages as the pull does
/// (`Page::parse` and `product_rows`), outside the fetch's clock.
struct FetchFloor {
    product_pages: usize,
    product_bytes: usize,
    products: Duration,
    stock_pages: usize,
    stock_bytes: usize,
    stock: Duration,
    parse: Duration,
}

fn fetch_floor(base: &str) -> FetchFloor {
    let agent = ureq::Agent::new_with_defaults();
    let (token, _) = read_json(
        &mut agent
            .post(format!(
                "{base}/api/token?clientId=sim-client&clientSecret=sim-secret&returnAsJson=true"
            ))
            .send_empty()
            .expect("token"),
    );
    let bearer = format!("Bearer {}", token["accessToken"].as_str().expect("token"));
    let mut f = FetchFloor {
        product_pages: 0,
        product_bytes: 0,
        products: Duration::ZERO,
        stock_pages: 0,
        stock_bytes: 0,
        stock: Duration::ZERO,
        parse: Duration::ZERO,
    };
    let scroll_id = |body: &[u8]| -> Option<String> {
        // The id is in the last bytes: `…,"scrollId":"…"}`.
        let tail = &body[body.len().saturating_sub(200)..];
        let text = String::from_utf8_lossy(tail);
        let at = text.rfind("\"scrollId\":\"")? + "\"scrollId\":\"".len();
        Some(text[at..].split('"').next()?.to_string())
    };
    for resource in ["Products", "Inventory"] {
        let first = if resource == "Products" {
            json!({
                "marketId": "NOR", "storeId": "oslo-1", "isUnionDeltaQuery": true,
                "isFacetsDisabled": true, "sortOrder": "ModifiedAscending", "take": SCROLL_TAKE,
                "excludedFields": flow_omnium::omnium::catalog::product_exclusions(),
                "productLanguage": "no",
            })
        } else {
            json!({"warehouseCodes": ["oslo-1"], "isBatchesExcluded": true})
        };
        let path = if resource == "Products" {
            "Products/Scroll"
        } else {
            "Inventory/Search"
        };
        // Only the requests are on this clock (the parse below is not).
        let started = Instant::now();
        let mut body = read_bytes(
            &mut agent
                .post(format!("{base}/api/{path}"))
                .header("Authorization", &bearer)
                .send_json(first)
                .expect("scroll start"),
        );
        let mut clock = started.elapsed();
        loop {
            let empty = body.starts_with(b"{\"result\":[]");
            if resource == "Products" {
                f.product_pages += 1;
                f.product_bytes += body.len();
                let parse = Instant::now();
                let page = Page::<Product>::parse(&body, "GET /api/Products/Scroll", "products")
                    .expect("a page of products");
                let rows: Vec<CatalogProduct> = page
                    .items
                    .iter()
                    .filter_map(|p| product_rows(p, &SCOPE))
                    .collect();
                drop(rows);
                f.parse += parse.elapsed();
            } else {
                f.stock_pages += 1;
                f.stock_bytes += body.len();
            }
            let Some(id) = scroll_id(&body).filter(|_| !empty) else {
                break;
            };
            drop(body);
            let started_get = Instant::now();
            body = read_bytes(
                &mut agent
                    .get(format!("{base}/api/{resource}/Scroll/{id}"))
                    .header("Authorization", &bearer)
                    .call()
                    .expect("scroll page"),
            );
            clock += started_get.elapsed();
        }
        if resource == "Products" {
            f.products = clock;
        } else {
            f.stock = clock;
        }
    }
    f
}

/// The catalog build's steps, from the timing lines.
fn print_build_steps() {
    let lines = TIMING.lines.lock().unwrap_or_else(|p| p.into_inner());
    let steps: Vec<String> = lines
        .iter()
        .filter_map(|(_, l)| l.strip_prefix("catalog build step: "))
        .map(|l| {
            let (what, rest) = l.rsplit_once(" in ").unwrap_or((l, ""));
            let wall = micros_after(l, " in ").as_secs_f64();
            let cpu = micros_after(rest, "CPU ").as_secs_f64();
            format!("{what} {wall:.2} (CPU {cpu:.2})")
        })
        .collect();
    if !steps.is_empty() {
        println!("    the build's steps, wall (CPU) s: {}", steps.join(", "));
    }
}

fn print_breakdown(took: Duration, b: &Breakdown, floor: &FetchFloor) {
    let s = |d: Duration| d.as_secs_f64();
    let accounted = b.before_products
        + b.products.3
        + b.products.2
        + b.build
        + b.stock.3
        + b.stock.2
        + b.after_last;
    println!(
        "  where the {:.2} s went (the pull's timing lines, debug level):",
        s(took)
    );
    println!(
        "    start → first products page (token, market, stores, categories)  {:>6.2} s",
        s(b.before_products)
    );
    println!(
        "    {:>3} products pages: fetched and parsed  {:>6.2} s   applied  {:>6.2} s   \
         waited for pages {:>6.2} s",
        b.products.0,
        s(b.products.1),
        s(b.products.2),
        s(b.products.3)
    );
    println!(
        "    the search index and listings built at the end             {:>6.2} s",
        s(b.build)
    );
    print_build_steps();
    println!(
        "    {:>3} stock pages: fetched and parsed     {:>6.2} s   applied  {:>6.2} s   \
         waited for pages {:>6.2} s",
        b.stock.0,
        s(b.stock.1),
        s(b.stock.2),
        s(b.stock.3)
    );
    println!(
        "    last page → sync seen done (orders, purchase orders, 10 ms poll) {:>6.2} s",
        s(b.after_last)
    );
    println!(
        "    not accounted (the worker between pages)                         {:>6.2} s",
        s(took.saturating_sub(accounted))
    );
    println!("  floor, a plain ureq loop over the same scrolls (bodies read and dropped):");
    println!(
        "    {:>3} products pages, {:.1} MB  {:>6.2} s   ({:.0} MB/s; the simulator renders \
         each page)",
        floor.product_pages,
        mb(floor.product_bytes as u64),
        s(floor.products),
        mb(floor.product_bytes as u64) / s(floor.products)
    );
    println!(
        "    {:>3} stock pages, {:.1} MB     {:>6.2} s",
        floor.stock_pages,
        mb(floor.stock_bytes as u64),
        s(floor.stock)
    );
    println!(
        "    parsing the products pages into rows as the pull does (one thread, apart) {:>6.2} s",
        s(floor.parse)
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Apply rate: library vs bare rusqlite

struct Fetched {
    products: Vec<CatalogProduct>,
    pages: usize,
    bytes: usize,
    largest_page: usize,
    convert: Duration,
}

impl Fetched {
    fn skus(products: &[CatalogProduct]) -> usize {
        products.iter().map(|p| p.skus.len()).sum()
    }
}

fn read_bytes(resp: &mut ureq::http::Response<ureq::Body>) -> Vec<u8> {
    resp.body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_vec()
        .expect("response body")
}

fn read_json(resp: &mut ureq::http::Response<ureq::Body>) -> (Value, usize) {
    let bytes = read_bytes(resp);
    let v = serde_json::from_slice(&bytes).expect("JSON response");
    (v, bytes.len())
}

/// Every product, read through the scroll API like a plain integration would, as rows.
fn fetch_rows(base: &str) -> Fetched {
    let agent = ureq::Agent::new_with_defaults();
    let (token, _) = read_json(
        &mut agent
            .post(format!(
                "{base}/api/token?clientId=sim-client&clientSecret=sim-secret&returnAsJson=true"
            ))
            .send_empty()
            .expect("token"),
    );
    let bearer = format!("Bearer {}", token["accessToken"].as_str().expect("token"));
    let mut out = Fetched {
        products: Vec::new(),
        pages: 0,
        bytes: 0,
        largest_page: 0,
        convert: Duration::ZERO,
    };
    let mut body = read_bytes(
        &mut agent
            .post(format!("{base}/api/Products/Scroll"))
            .header("Authorization", &bearer)
            .send_json(
                json!({"marketId": "NOR", "sortOrder": "ModifiedAscending", "take": SCROLL_TAKE}),
            )
            .expect("POST /api/Products/Scroll"),
    );
    loop {
        out.bytes += body.len();
        out.largest_page = out.largest_page.max(body.len());
        // Timed: the typed parse of the page (as the pull does) and the rows.
        let start = Instant::now();
        let page = Page::<Product>::parse(&body, "GET /api/Products/Scroll", "products")
            .expect("a page of products");
        if page.items.is_empty() {
            break;
        }
        out.pages += 1;
        out.products
            .extend(page.items.iter().filter_map(|p| product_rows(p, &SCOPE)));
        out.convert += start.elapsed();
        let id = page.scroll_id.expect("scrollId");
        body = read_bytes(
            &mut agent
                .get(format!("{base}/api/Products/Scroll/{id}"))
                .header("Authorization", &bearer)
                .call()
                .expect("GET /api/Products/Scroll/{id}"),
        );
    }
    out
}

/// A library apply run: how far it got, and the time after each chunk.
struct LibraryRun {
    products: usize,
    /// This thread's CPU time for the whole run (rows and build).
    cpu: Duration,
    /// (SKUs applied so far, time since the start) after each chunk.
    progress: Vec<(usize, Duration)>,
}

impl LibraryRun {
    fn took(&self) -> Duration {
        self.progress.last().map_or(Duration::ZERO, |p| p.1)
    }

    fn skus(&self) -> usize {
        self.progress.last().map_or(0, |p| p.0)
    }

    /// SKUs/s over the first and over the last `n` SKUs applied.
    fn first_and_last_rate(&self, n: usize) -> (f64, f64) {
        let rate = |skus: usize, d: Duration| skus as f64 / d.as_secs_f64();
        let first = self
            .progress
            .iter()
            .find(|p| p.0 >= n)
            .or(self.progress.last())
            .map_or(0.0, |&(s, d)| rate(s, d));
        let (end_skus, end) = self.progress.last().copied().unwrap_or_default();
        let (from_skus, from) = self
            .progress
            .iter()
            .rev()
            .find(|p| p.0 + n <= end_skus)
            .copied()
            .unwrap_or_default();
        (first, rate(end_skus - from_skus, end - from))
    }
}

/// `Store::apply_products` a page (1,000 products) at a time on a fresh database, as
/// `sync::pull` does (less the cursor, one more small upsert per page), until done or out of
/// `budget`, between `begin_catalog_build` and `finish_catalog_build` as a first sync is
/// (the build's time counts).
fn apply_library(products: &[CatalogProduct], db: &Path, budget: Duration) -> LibraryRun {
    let start = Instant::now();
    let cpu_start = thread_cpu();
    let store = Store::open(db).expect("Store::open");
    let mut run = LibraryRun {
        products: 0,
        cpu: Duration::ZERO,
        progress: Vec::new(),
    };
    // As a first sync does: bare tables, then the search index and listings in one pass.
    assert!(store.begin_catalog_build().expect("begin_catalog_build"));
    let mut skus = 0;
    for chunk in products.chunks(SCROLL_TAKE) {
        store.apply_products(chunk, None).expect("apply_products");
        run.products += chunk.len();
        skus += Fetched::skus(chunk);
        run.progress.push((skus, start.elapsed()));
        if start.elapsed() >= budget {
            break;
        }
    }
    let build = Instant::now();
    let cpu_build = thread_cpu();
    timing_start();
    assert!(store.finish_catalog_build().expect("finish_catalog_build"));
    let cpu_end = thread_cpu();
    println!(
        "  (of the library's time: the search index and listings built at the end in {:.2} s; \
         this thread's CPU: rows {:.2} s, build {:.2} s)",
        build.elapsed().as_secs_f64(),
        (cpu_build - cpu_start).as_secs_f64(),
        (cpu_end - cpu_build).as_secs_f64()
    );
    run.cpu = cpu_end - cpu_start;
    print_build_steps();
    if let Some(last) = run.progress.last_mut() {
        last.1 = start.elapsed();
    }
    assert_eq!(store.sku_count().expect("count") as usize, skus);
    run
}

const FLOOR_SCHEMA: &str = "
    CREATE TABLE product (
        sku TEXT PRIMARY KEY, product_id TEXT NOT NULL, name TEXT NOT NULL, brand TEXT, ean TEXT,
        json TEXT NOT NULL
    );
    CREATE TABLE price (
        sku TEXT NOT NULL, n INTEGER NOT NULL, unit_price INTEGER NOT NULL, currency TEXT NOT NULL,
        store_specific INTEGER NOT NULL, variant_specific INTEGER NOT NULL,
        valid_from INTEGER, valid_until INTEGER,
        PRIMARY KEY (sku, n)
    ) WITHOUT ROWID;";

/// The floor: one connection (WAL, synchronous=NORMAL, as the library applies pulled pages),
/// one transaction per page of 1,000 products,
/// `INSERT … ON CONFLICT DO UPDATE` of each SKU (the fields the library keeps in columns, the
/// rest as one JSON text) and of each price, keyed by (sku, its n-th price).
fn apply_floor(products: &[CatalogProduct], db: &Path) -> Duration {
    let start = Instant::now();
    let cpu_start = thread_cpu();
    let mut conn = Connection::open(db).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .expect("WAL");
    assert_eq!(mode, "wal");
    conn.execute_batch("PRAGMA synchronous = NORMAL")
        .expect("synchronous");
    conn.execute_batch(FLOOR_SCHEMA).expect("schema");
    let mut nth: HashMap<&str, i64> = HashMap::new();
    for chunk in products.chunks(SCROLL_TAKE) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("BEGIN");
        for p in chunk {
            for s in &p.skus {
                let rest = json!({
                    "gtins": s.gtins, "category_ids": s.category_ids, "image_urls": s.image_urls,
                    "active": s.active, "language": s.language, "cost_price": s.cost_price,
                })
                .to_string();
                tx.prepare_cached(
                    "INSERT INTO product (sku, product_id, name, brand, ean, json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (sku) DO UPDATE SET product_id = excluded.product_id,
                       name = excluded.name, brand = excluded.brand, ean = excluded.ean,
                       json = excluded.json",
                )
                .expect("prepare")
                .execute(params![s.sku, s.product_id, s.name, s.brand, s.ean, rest])
                .expect("upsert product");
            }
            nth.clear();
            for pr in &p.prices {
                let n = nth.entry(pr.sku.as_str()).or_insert(0);
                *n += 1;
                tx.prepare_cached(
                    "INSERT INTO price (sku, n, unit_price, currency, store_specific,
                                        variant_specific, valid_from, valid_until)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (sku, n) DO UPDATE SET unit_price = excluded.unit_price,
                       currency = excluded.currency, store_specific = excluded.store_specific,
                       variant_specific = excluded.variant_specific,
                       valid_from = excluded.valid_from, valid_until = excluded.valid_until",
                )
                .expect("prepare")
                .execute(params![
                    pr.sku,
                    *n,
                    pr.unit_price,
                    pr.currency,
                    pr.store_specific,
                    pr.variant_specific,
                    pr.valid_from,
                    pr.valid_until
                ])
                .expect("upsert price");
            }
        }
        tx.commit().expect("COMMIT");
    }
    println!(
        "  (floor: this thread's CPU {:.2} s)",
        (thread_cpu() - cpu_start).as_secs_f64()
    );
    start.elapsed()
}

struct ApplyRun {
    /// Whether the library applied every product within the budget.
    complete: bool,
    library: Duration,
    floor: Duration,
}

impl ApplyRun {
    fn ratio(&self) -> f64 {
        self.library.as_secs_f64() / self.floor.as_secs_f64()
    }
}

fn apply_comparison(fetched: &Fetched) -> ApplyRun {
    let products = &fetched.products;
    let skus = Fetched::skus(products);
    let prices: usize = products.iter().map(|p| p.prices.len()).sum();
    let links: usize = products
        .iter()
        .flat_map(|p| &p.skus)
        .map(|s| s.category_ids.len())
        .sum();
    println!(
        "  fetched {} pages ({:.1} MB of JSON, largest page {:.1} MB): {} products, {} SKUs, \
         {} price rows, {} SKU→category links",
        fetched.pages,
        mb(fetched.bytes as u64),
        mb(fetched.largest_page as u64),
        products.len(),
        skus,
        prices,
        links,
    );
    println!(
        "  (product_rows, JSON → rows, not in the timings below: {:.2} s = {:.0} products/s)",
        fetched.convert.as_secs_f64(),
        products.len() as f64 / fetched.convert.as_secs_f64()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let db = |name: &str| dir.path().join(name);

    let lib = apply_library(products, &db("lib1.db"), APPLY_BUDGET);
    let complete = lib.products == products.len();
    let (first, last) = lib.first_and_last_rate(10_000);
    println!(
        "  library: Store::apply_products  {:>8.0} SKU rows/s  ({} of {} SKUs in {:.2} s{}; \
         first 10k SKUs at {first:.0}/s, last 10k at {last:.0}/s)",
        lib.skus() as f64 / lib.took().as_secs_f64(),
        lib.skus(),
        skus,
        lib.took().as_secs_f64(),
        if complete {
            String::new()
        } else {
            format!(", stopped at the {} s budget", APPLY_BUDGET.as_secs())
        },
    );
    let same_rows = &products[..lib.products];
    let floor_same = apply_floor(same_rows, &db("floor1.db"));
    println!(
        "  floor: bare rusqlite upsert     {:>8.0} SKU rows/s  (the same {} SKUs in {:.2} s)",
        lib.skus() as f64 / floor_same.as_secs_f64(),
        lib.skus(),
        floor_same.as_secs_f64()
    );
    let mut run = ApplyRun {
        complete,
        library: lib.took(),
        floor: floor_same,
    };
    if complete && lib.took() < APPLY_REPEAT_UNDER {
        // Quick enough to take the better of two runs each (other load only slows a run).
        let again = apply_library(products, &db("lib2.db"), APPLY_BUDGET);
        let floor_again = apply_floor(products, &db("floor2.db"));
        println!(
            "  second round: library {:.2} s, floor {:.2} s (the better of each is used)",
            again.took().as_secs_f64(),
            floor_again.as_secs_f64()
        );
        run.library = run.library.min(again.took());
        run.floor = run.floor.min(floor_again);
    }
    if !complete {
        let floor_all = apply_floor(products, &db("floor-all.db"));
        println!(
            "  floor, all {} SKUs: {:.2} s = {:.0} SKU rows/s",
            skus,
            floor_all.as_secs_f64(),
            skus as f64 / floor_all.as_secs_f64()
        );
    }
    println!(
        "  time ratio library/floor on the same rows: {:.1} (target ≤ {TARGET_APPLY_RATIO}){}",
        run.ratio(),
        if complete {
            ""
        } else {
            "; a lower bound for the full set, as the library slows down as its tables grow"
        }
    );
    println!(
        "  the floor does NOT: maintain the FTS5 index (5 columns, prefixes 1-3) and its \
         triggers, write product_category links, keep the product_id/ean/brand indexes, mark \
         SKUs that left a product inactive, delete stale prices, or check foreign keys"
    );
    run
}

// ---------------------------------------------------------------------------------------------
// 3. Reads through the C ABI

/// A search the till might send, and what an exact hit must return first.
struct Search {
    kind: &'static str,
    query: CString,
    first_sku: Option<String>,
}

/// Till-like searches: the start of name words, a full SKU, an EAN, a brand, a category.
fn searches(products: &[CatalogProduct], rng: &mut Rng) -> Vec<Search> {
    let skus: Vec<_> = products.iter().flat_map(|p| &p.skus).collect();
    let mut brands: Vec<&str> = skus.iter().filter_map(|s| s.brand.as_deref()).collect();
    brands.sort_unstable();
    brands.dedup();
    let mut categories: Vec<&str> = skus
        .iter()
        .flat_map(|s| s.category_ids.iter().map(String::as_str))
        .collect();
    categories.sort_unstable();
    categories.dedup();
    // The first 3-5 letters of a word of at least 3 letters (sizes like "M" are skipped).
    let prefix = |name: &str, rng: &mut Rng| -> String {
        let words: Vec<&str> = name
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= 3)
            .collect();
        let word = if words.is_empty() {
            name
        } else {
            rng.pick(&words)
        };
        word.chars().take(3 + rng.below(3)).collect()
    };
    (0..SEARCHES)
        .map(|i| {
            let s = rng.pick(&skus);
            let (kind, mut q, first_sku) = match i % 10 {
                0..=3 => (
                    "name prefix, 1 word",
                    json!({"text": prefix(&s.name, rng)}),
                    None,
                ),
                4 => {
                    let text = format!("{} {}", prefix(&s.name, rng), prefix(&s.name, rng));
                    ("name prefix, 2 words", json!({ "text": text }), None)
                }
                5 => ("full SKU", json!({"text": s.sku}), Some(s.sku.clone())),
                6 => match &s.ean {
                    Some(ean) => ("EAN", json!({ "text": ean }), Some(s.sku.clone())),
                    None => ("full SKU", json!({"text": s.sku}), Some(s.sku.clone())),
                },
                7 | 8 => ("brand filter", json!({"brand": rng.pick(&brands)}), None),
                _ => (
                    "category filter",
                    json!({"category_id": rng.pick(&categories)}),
                    None,
                ),
            };
            q["limit"] = SEARCH_LIMIT.into();
            Search {
                kind,
                query: CString::new(q.to_string()).expect("no NUL"),
                first_sku,
            }
        })
        .collect()
}

struct ReadRun {
    get: Latencies,
    search: Latencies,
}

/// One C call and the free of its answer, timed together (what the till waits for).
fn timed_call(f: impl FnOnce(*mut *mut c_char) -> fo_result, what: &str) -> (f64, String) {
    let mut out: *mut c_char = std::ptr::null_mut();
    let start = Instant::now();
    let r = f(&mut out);
    let text = if out.is_null() {
        String::new()
    } else {
        // SAFETY: a string the library returned, freed below.
        unsafe { CStr::from_ptr(out) }
            .to_string_lossy()
            .into_owned()
    };
    // SAFETY: returned by the library (or NULL), freed once.
    unsafe { fo_string_free(out) };
    let us = start.elapsed().as_secs_f64() * 1e6;
    check(r, what);
    (us, text)
}

fn reads(db: &Path, base_url: &str, skus: &[String], products: &[CatalogProduct]) -> ReadRun {
    let config =
        CString::new(client_config(db, base_url, json!({"autostart": false}))).expect("no NUL");
    let mut c: *mut fo_client = std::ptr::null_mut();
    // SAFETY: a NUL-terminated config and a writable out-pointer.
    check(
        unsafe { fo_client_open(config.as_ptr(), &mut c) },
        "fo_client_open",
    );
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let picks: Vec<CString> = (0..GETS)
        .map(|_| CString::new(rng.pick(skus).as_str()).expect("no NUL"))
        .collect();
    let mut get = Vec::with_capacity(GETS);
    for sku in &picks {
        // SAFETY: a live client, a NUL-terminated SKU, a writable out-pointer.
        let (us, _) = timed_call(
            |out| unsafe { fo_product_get(c, sku.as_ptr(), out) },
            "fo_product_get",
        );
        get.push(us);
    }

    let queries = searches(products, &mut rng);
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut all = Vec::with_capacity(queries.len());
    let mut misses = Vec::new();
    let mut empty = 0;
    for q in &queries {
        // SAFETY: a live client, a NUL-terminated query, a writable out-pointer.
        let (us, text) = timed_call(
            |out| unsafe { fo_product_search(c, q.query.as_ptr(), out) },
            "fo_product_search",
        );
        all.push(us);
        by_kind.entry(q.kind).or_default().push(us);
        let v: Value = serde_json::from_str(&text).expect("search JSON");
        if v["total"] == 0 {
            empty += 1;
        }
        if let Some(want) = &q.first_sku {
            if v["items"][0]["sku"].as_str() != Some(want) {
                misses.push(q.query.to_string_lossy().into_owned());
            }
        }
    }
    // SAFETY: opened above, closed once.
    unsafe { fo_client_close(c) };

    let run = ReadRun {
        get: Latencies::new(get),
        search: Latencies::new(all),
    };
    println!("{}", run.get.line("fo_product_get (random SKU)"));
    println!("{}", run.search.line("fo_product_search (all)"));
    for (kind, v) in by_kind {
        println!("{}", Latencies::new(v).line(&format!("  search: {kind}")));
    }
    println!(
        "  checks: {empty} searches found nothing; exact SKU/EAN not first: {}",
        if misses.is_empty() {
            "none".to_string()
        } else {
            format!("{} (e.g. {})", misses.len(), misses[0])
        }
    );
    run
}

// ---------------------------------------------------------------------------------------------
// 4. Requests of an idle terminal

struct IdleRun {
    /// Pull runs started while measuring.
    pulls: u64,
    /// Requests per pull, measured once the cursors had settled.
    measured_per_pull: f64,
    /// How long the warm-up took: the first pulls re-read each cursor's overlap window once.
    settle: Duration,
    per_hour: f64,
}

/// The overlap used here, so cursors settle within the bench (a delta settles two overlaps
/// after the newest change: with the default 60 s, two minutes into an idle spell).
const IDLE_OVERLAP_MS: u64 = 2_000;

fn idle(sim: &mut ChildSim, db: &Path, _other_per_run: u64) -> IdleRun {
    let config = client_config(
        db,
        &sim.base_url(),
        json!({"pull_interval_ms": IDLE_INTERVAL_MS, "pull_overlap_ms": IDLE_OVERLAP_MS}),
    );
    let started = Instant::now();
    let client = Client::open(&config).expect("Client::open");
    // Warm-up: wait past two overlaps, then for the pull under way (which re-reads the
    // window once) to end, then one more interval.
    std::thread::sleep(Duration::from_millis(
        2 * IDLE_OVERLAP_MS + IDLE_INTERVAL_MS,
    ));
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let status: Value =
            serde_json::from_str(&client.status_json().expect("status")).expect("JSON");
        if status["pulling"] == false {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(2 * IDLE_INTERVAL_MS));
    let settle = started.elapsed();
    sim.reset_stats();
    std::thread::sleep(IDLE_RUN);
    let stats = sim.stats();
    client.close();

    let pulls = stats.route(SCROLL_ROUTES[0]);
    let pull_requests = stats.others(&[&ONE_OFF_ROUTES, &SLOW_ROUTES]);
    let measured_per_pull = pull_requests as f64 / pulls.max(1) as f64;
    println!(
        "  after a warm-up of {:.1} s (pull_overlap_ms {IDLE_OVERLAP_MS}: the cursors settle), \
         {} requests in {:.0} s with pull_interval_ms {IDLE_INTERVAL_MS}: {pulls} pull(s); \
         {} products and {} stock items sent:",
        settle.as_secs_f64(),
        stats.requests,
        IDLE_RUN.as_secs_f64(),
        stats.products_served,
        stats.stock_items_served
    );
    println!("{}", stats.routes());
    let pulls_per_hour = 3_600_000.0 / DEFAULT_INTERVAL_MS as f64;
    // Stores and categories come once an hour; the token lives far longer than an hour.
    let slow = SLOW_ROUTES.len() as f64;
    let run = IdleRun {
        pulls,
        measured_per_pull,
        settle,
        per_hour: measured_per_pull * pulls_per_hour + slow,
    };
    println!(
        "  per hour at the default {} min interval: {measured_per_pull:.2} requests per pull × \
         {pulls_per_hour:.0} + {slow:.0} (stores and categories, hourly) = {:.0}  (+ 1 token per start)",
        DEFAULT_INTERVAL_MS / 60_000,
        run.per_hour
    );
    run
}

// ---------------------------------------------------------------------------------------------
// 5. Recording while a first sync and a drain run

const DRAIN_JOBS: usize = 10_000;
const RECORD_EVERY: Duration = Duration::from_millis(10);
const TARGET_RECORD_P99_US: f64 = 2_000.0;
const TARGET_RECORD_MAX_US: f64 = 20_000.0;

/// A balanced 3-line, 2-payment sale (as in benches/drain.rs).
fn sale_json(id: &str) -> CString {
    let sale = json!({
        "id": id, "created_at": "2026-11-28T10:15:00+01:00", "rounding": 5,
        "lines": [
            {"line_id": "1", "sku": "SKU-00100", "name": "T-shirt", "quantity": 2,
             "unit_price": 19950, "discount": 0, "tax_rate": 25},
            {"line_id": "2", "sku": "SKU-00101", "name": "Cap", "quantity": 1,
             "unit_price": 12900, "discount": 1000, "tax_rate": 25},
            {"line_id": "3", "sku": "SKU-00102", "name": "Coffee beans", "quantity": 0.5,
             "unit_price": 8990, "discount": 0, "tax_rate": 15}
        ],
        "payments": [
            {"id": "P1", "method": "Card", "amount": 46300},
            {"id": "P2", "method": "Cash", "amount": 10000}
        ]
    });
    CString::new(sale.to_string()).expect("no NUL")
}

/// One `fo_record_sale`, timed (µs), and how much of it was spent blocked on the writer
/// connection (µs; `store::take_writer_wait`: another transaction held it).
fn record_one(c: *mut fo_client, id: &str) -> (f64, f64) {
    let sale = sale_json(id);
    take_writer_wait();
    let start = Instant::now();
    // SAFETY: a live client and a NUL-terminated string.
    let r = unsafe { fo_record_sale(c, sale.as_ptr()) };
    let us = start.elapsed().as_secs_f64() * 1e6;
    let waited = take_writer_wait().as_secs_f64() * 1e6;
    check(r, "fo_record_sale");
    (us, waited)
}

fn status(c: *mut fo_client) -> Value {
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: a live client and a writable out-pointer.
    check(unsafe { fo_status(c, &mut out) }, "fo_status");
    // SAFETY: returned by fo_status, NUL-terminated, freed once below.
    let v = serde_json::from_str(&unsafe { CStr::from_ptr(out) }.to_string_lossy())
        .expect("status JSON");
    // SAFETY: returned by the library, not used after.
    unsafe { fo_string_free(out) };
    v
}

struct RecordRun {
    idle: Latencies,
    during: Latencies,
    /// Of each call during both: the time blocked on the writer, and the rest.
    waited: Latencies,
    own: Latencies,
    took: Duration,
}

fn record_during_sync(sim: &mut ChildSim, dir: &Path, trace: bool) -> RecordRun {
    let skus = sim.count("skus");
    let db = dir.join("record.db");
    let config = client_config(
        &db,
        &sim.base_url(),
        json!({"autostart": false, "pull_interval_ms": 3_600_000}),
    );
    let config = CString::new(config).expect("no NUL");
    let mut c: *mut fo_client = std::ptr::null_mut();
    // SAFETY: a NUL-terminated config and a writable out-pointer.
    check(
        unsafe { fo_client_open(config.as_ptr(), &mut c) },
        "fo_client_open",
    );
    let idle: Vec<f64> = (0..DRAIN_JOBS)
        .map(|i| record_one(c, &format!("Q-{i:06}")).0)
        .collect();
    // The catalog lives in its own file beside the database.
    let counter = Connection::open_with_flags(
        flow_omnium::store::catalog_path(&db),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("a read-only look at the database");
    let local_skus = || -> usize {
        counter
            .query_row("SELECT count(*) FROM product", [], |r| r.get::<_, i64>(0))
            .unwrap_or(0) as usize
    };
    if trace {
        trace_writer_holds(Some(TRACE_HOLDS_OVER));
    }
    let start = Instant::now();
    // SAFETY: a live client.
    check(unsafe { fo_sync_now(c) }, "fo_sync_now");
    let mut during = Vec::new();
    let mut waits = Vec::new();
    // Each call's start (since `start`), its time and its wait, for the trace.
    let mut calls: Vec<(Duration, f64, f64)> = Vec::new();
    let mut last_check = Instant::now();
    let mut n = 0usize;
    loop {
        // Checked a pause after the last sale, not right after recording it: the drain is
        // done when it has delivered what was recorded (read on a reader, the status never
        // waits for the worker's transactions, so a sale recorded a microsecond before
        // would always still be pending).
        if last_check.elapsed() >= Duration::from_millis(100) {
            last_check = Instant::now();
            let st = status(c);
            let synced =
                local_skus() == skus && st["pulling"] == false && st["last_pull_at"].is_string();
            if synced && st["outbox"]["pending"] == 0 {
                break;
            }
            assert!(
                start.elapsed() < SYNC_TIMEOUT,
                "sync and drain did not finish in {SYNC_TIMEOUT:?}: {} of {skus} SKUs; {st}",
                local_skus()
            );
        }
        let at = start.elapsed();
        let (us, waited) = record_one(c, &format!("R-{n:06}"));
        calls.push((at, us, waited));
        during.push(us);
        waits.push(waited);
        n += 1;
        std::thread::sleep(RECORD_EVERY);
    }
    let took = start.elapsed();
    let holds = if trace {
        let h = take_writer_holds();
        trace_writer_holds(None);
        h
    } else {
        Vec::new()
    };
    // SAFETY: opened above, closed once.
    unsafe { fo_client_close(c) };
    let waited_calls = waits.iter().filter(|w| **w > 0.0).count();
    let own = during.iter().zip(&waits).map(|(t, w)| t - w).collect();
    let run = RecordRun {
        idle: Latencies::new(idle),
        during: Latencies::new(during),
        waited: Latencies::new(waits),
        own: Latencies::new(own),
        took,
    };
    println!(
        "  first sync of {skus} SKUs and drain of {DRAIN_JOBS} + {n} sales done in {:.1} s",
        took.as_secs_f64()
    );
    println!("{}", run.idle.line("fo_record_sale, worker stopped"));
    println!("{}", run.during.line("fo_record_sale, during both"));
    println!("{}", run.waited.line("  of it blocked on the writer"));
    println!("{}", run.own.line("  of it not blocked"));
    println!(
        "  {waited_calls} of {} calls found the writer held by another transaction",
        run.during.0.len()
    );
    if trace {
        print_holds(&holds, &calls);
    }
    run
}

/// With `trace`: holds of the outbox's writer longer than this are recorded during part 5.
const TRACE_HOLDS_OVER: Duration = Duration::from_millis(1);

/// The function of the library around a traced hold's caller line (read from the source).
fn caller_name(h: &WriterHold) -> String {
    let file = h.caller.file();
    let line = h.caller.line() as usize;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let name = std::fs::read_to_string(&path).ok().and_then(|text| {
        let lines: Vec<&str> = text.lines().take(line).collect();
        lines.iter().rev().find_map(|l| {
            let at = l.find("fn ")?;
            let rest = &l[at + 3..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
            (end > 0).then(|| rest[..end].to_string())
        })
    });
    let short = file.rsplit('/').next().unwrap_or(file);
    format!("{} ({short}:{line})", name.unwrap_or_default())
}

/// The trace of part 5: holds of the outbox's writer over `TRACE_HOLDS_OVER`, by caller
/// (times in ms), then what each of the longest-blocked recording calls waited behind.
fn print_holds(holds: &[WriterHold], calls: &[(Duration, f64, f64)]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut by: BTreeMap<String, Vec<&WriterHold>> = BTreeMap::new();
    for h in holds {
        by.entry(caller_name(h)).or_default().push(h);
    }
    let mut rows: Vec<_> = by.into_iter().collect();
    rows.sort_by(|a, b| {
        let sum = |v: &[&WriterHold]| v.iter().map(|h| h.held).sum::<Duration>();
        sum(&b.1).cmp(&sum(&a.1))
    });
    println!(
        "  holds of the outbox writer over {} ms during the run, by caller (ms; cpu = the \
         holder's CPU time, preempted = runnable without a CPU, the rest = off CPU otherwise: \
         I/O, locks):",
        TRACE_HOLDS_OVER.as_millis()
    );
    println!(
        "  {:<44} {:>6} {:>7} {:>7} {:>7} {:>8} {:>6} {:>10} {:>6} {:>9}",
        "caller",
        "holds",
        "p50",
        "p99",
        "max",
        "sum",
        "cpu%",
        "preempted%",
        "rest%",
        "caller waited"
    );
    for (name, v) in &rows {
        let held = Latencies::new(v.iter().map(|h| ms(h.held)).collect());
        let sum: f64 = held.0.iter().sum();
        let cpu: f64 = v.iter().map(|h| ms(h.cpu)).sum();
        let pre: f64 = v.iter().map(|h| ms(h.run_delay)).sum();
        let rest = (sum - cpu - pre).max(0.0);
        println!(
            "  {name:<44} {:>6} {:>7.1} {:>7.1} {:>7.1} {:>8.0} {:>6.0} {:>10.0} {:>6.0} {:>9}",
            v.len(),
            held.pct(0.5),
            held.pct(0.99),
            held.pct(1.0),
            sum,
            100.0 * cpu / sum,
            100.0 * pre / sum,
            100.0 * rest / sum,
            v.iter().filter(|h| h.waited_for).count()
        );
    }
    let mut slow: Vec<_> = calls.iter().filter(|c| c.2 >= 1000.0).collect();
    slow.sort_by(|a, b| b.2.total_cmp(&a.2));
    println!("  the recording calls blocked longest, and the holds that ended while they waited:");
    for (at, us, waited) in slow.iter().take(12) {
        let from = *at;
        let to = *at + Duration::from_secs_f64(us / 1e6);
        let behind: Vec<String> = holds
            .iter()
            .filter(|h| h.at + h.held > from && h.at + h.held <= to && h.at < to)
            .map(|h| {
                format!(
                    "{} {:.1} ms (cpu {:.1}, preempted {:.1})",
                    caller_name(h),
                    ms(h.held),
                    ms(h.cpu),
                    ms(h.run_delay)
                )
            })
            .collect();
        println!(
            "    at {:>7.3} s: {:>6.1} ms, blocked {:>6.1} ms behind {}",
            from.as_secs_f64(),
            us / 1e3,
            waited / 1e3,
            if behind.is_empty() {
                "(no hold over the threshold)".to_string()
            } else {
                behind.join("; ")
            }
        );
    }
}

// ---------------------------------------------------------------------------------------------

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn main() {
    if std::env::args().any(|a| a == SIM_CHILD_ARG) {
        sim_child();
        return;
    }
    let started = Instant::now();
    let mut sim = ChildSim::start();
    let skus = sim.count("skus");
    println!(
        "Catalog (simulator in process {}): {} products (max_variants {MAX_VARIANTS}) = {skus} \
         SKUs, {} categories, {} stock items; generated in {:.1} s",
        sim.pid(),
        sim.count("products"),
        sim.count("categories"),
        sim.count("stock_items"),
        sim.hello["load_s"].as_f64().unwrap_or(0.0)
    );
    // FO_BENCH_DIR: where the databases go (default: the system's temp dir). On a tmpfs
    // (`/dev/shm`) no fsync costs anything, which separates waiting for the disk from waiting
    // for the writer connection in part 5.
    let dir = match std::env::var_os("FO_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let db = dir.path().join("pos.db");
    println!("  databases in {}", dir.path().display());
    // Parts named after `--` run alone (reads and idle need the synced database of part 1).
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: &str| named.is_empty() || named.iter().any(|n| n == part);
    let mut rows: Vec<(String, String, String, Option<bool>)> = Vec::new();

    if wants("sync") || wants("reads") || wants("idle") {
        println!(
            "\n1. Initial sync from the simulator on loopback (Client::open → all SKUs local, not \
             pulling)"
        );
        let sync = initial_sync(&mut sim, &db);
        let growth = delta_mb(sync.peak_rss.max(sync.hwm_after), sync.rss_before);
        rows.push((
            format!("initial sync of {} SKUs", sync.skus),
            format!(
                "{:.1} s = {:.0} SKUs/s",
                sync.took.as_secs_f64(),
                sync.skus as f64 / sync.took.as_secs_f64()
            ),
            format!("≤ {TARGET_SYNC_S:.0} s"),
            Some(sync.took.as_secs_f64() <= TARGET_SYNC_S),
        ));
        rows.push((
            "client process peak RSS (sync)".into(),
            format!("{:.1} MB (VmHWM)", mb(sync.hwm_after)),
            format!("< {TARGET_CLIENT_PEAK_MB:.0} MB"),
            Some(mb(sync.hwm_after) < TARGET_CLIENT_PEAK_MB),
        ));
        rows.push((
            "  growth during the sync".into(),
            format!("+{growth:.1} MB"),
            "-".into(),
            None,
        ));
        if wants("rendered") {
            // A real Omnium does not render its JSON on the till's cores: the simulator
            // renders each product once (the warm-up read below) and serves the kept bytes
            // to a second first sync, into a new database.
            println!(
                "\n1b. The same first sync, the simulator serving pages rendered before timing"
            );
            assert_eq!(sim.ask("keep_rendered"), "ok");
            let started = Instant::now();
            let warm = fetch_floor(&sim.base_url());
            println!(
                "  warm-up read rendering and keeping every product: {:.2} s ({} pages)",
                started.elapsed().as_secs_f64(),
                warm.product_pages + warm.stock_pages
            );
            let again = initial_sync(&mut sim, &dir.path().join("rendered.db"));
            rows.push((
                format!("initial sync, pages pre-rendered ({} SKUs)", again.skus),
                format!(
                    "{:.1} s = {:.0} SKUs/s",
                    again.took.as_secs_f64(),
                    again.skus as f64 / again.took.as_secs_f64()
                ),
                format!("≤ {TARGET_SYNC_S:.0} s"),
                Some(again.took.as_secs_f64() <= TARGET_SYNC_S),
            ));
        }
        let fetched = (wants("apply") || wants("reads")).then(|| fetch_rows(&sim.base_url()));
        if let Some(fetched) = fetched.as_ref().filter(|_| wants("apply")) {
            println!("\n2. Apply rate, same rows, no network: library vs bare rusqlite");
            let apply = apply_comparison(fetched);
            rows.push((
                "apply time library/floor".into(),
                format!(
                    "{:.1}{}",
                    apply.ratio(),
                    if apply.complete {
                        ""
                    } else {
                        " (partial set, ≥)"
                    }
                ),
                format!("≤ {TARGET_APPLY_RATIO}"),
                Some(apply.ratio() <= TARGET_APPLY_RATIO),
            ));
        }
        if let Some(fetched) = fetched.as_ref().filter(|_| wants("reads")) {
            println!(
                "\n3. Reads through the C ABI on the synced {skus}-SKU database (warm page cache)"
            );
            let sku_ids = sim.sku_ids();
            let read = reads(&db, &sim.base_url(), &sku_ids, &fetched.products);
            rows.push((
                "fo_product_get p99".into(),
                format!(
                    "{:.0} µs (p50 {:.0})",
                    read.get.pct(0.99),
                    read.get.pct(0.5)
                ),
                format!("< {TARGET_GET_P99_US:.0} µs"),
                Some(read.get.pct(0.99) < TARGET_GET_P99_US),
            ));
            rows.push((
                "fo_product_search p99".into(),
                format!(
                    "{:.0} µs (p50 {:.0})",
                    read.search.pct(0.99),
                    read.search.pct(0.5)
                ),
                format!("< {TARGET_SEARCH_P99_US:.0} µs"),
                Some(read.search.pct(0.99) < TARGET_SEARCH_P99_US),
            ));
        }
        drop(fetched);
        if wants("idle") {
            println!("\n4. Idle terminal (nothing changes in the simulator)");
            let idle = idle(&mut sim, &db, sync.other_per_run);
            rows.push((
                "idle requests per pull".into(),
                format!(
                    "{:.2} (measured over {} pulls after {:.1} s to settle)",
                    idle.measured_per_pull,
                    idle.pulls,
                    idle.settle.as_secs_f64()
                ),
                "-".into(),
                None,
            ));
            rows.push((
                "idle requests per hour (5 min)".into(),
                format!("{:.0}", idle.per_hour),
                format!("≤ {TARGET_IDLE_PER_HOUR:.0}"),
                Some(idle.per_hour <= TARGET_IDLE_PER_HOUR),
            ));
        }
    } else if wants("apply") {
        println!("\n2. Apply rate, same rows, no network: library vs bare rusqlite");
        let apply = apply_comparison(&fetch_rows(&sim.base_url()));
        rows.push((
            "apply time library/floor".into(),
            format!("{:.1}", apply.ratio()),
            format!("≤ {TARGET_APPLY_RATIO}"),
            Some(apply.ratio() <= TARGET_APPLY_RATIO),
        ));
    }
    if wants("record") {
        println!(
            "\n5. fo_record_sale every {} ms while a first sync of {skus} SKUs and a drain of \
             {DRAIN_JOBS} sales run",
            RECORD_EVERY.as_millis()
        );
        // `-- record trace`: also trace the holds of the outbox's writer (adds a few µs to
        // each hold: compare figures of runs without it).
        let trace = named.iter().any(|n| n == "trace");
        let run = record_during_sync(&mut sim, dir.path(), trace);
        rows.push((
            "record p99 during sync + drain".into(),
            format!(
                "{:.0} µs (p50 {:.0}; idle p99 {:.0})",
                run.during.pct(0.99),
                run.during.pct(0.5),
                run.idle.pct(0.99)
            ),
            format!("≤ {TARGET_RECORD_P99_US:.0} µs"),
            Some(run.during.pct(0.99) <= TARGET_RECORD_P99_US),
        ));
        rows.push((
            "record max during sync + drain".into(),
            format!(
                "{:.0} µs (over {} calls in {:.1} s)",
                run.during.pct(1.0),
                run.during.0.len(),
                run.took.as_secs_f64()
            ),
            format!("≤ {TARGET_RECORD_MAX_US:.0} µs"),
            Some(run.during.pct(1.0) <= TARGET_RECORD_MAX_US),
        ));
    }
    println!("\nSummary");
    println!("  {:<32} {:<44} {:<12} result", "figure", "value", "target");
    for (figure, value, target, ok) in rows {
        println!(
            "  {figure:<32} {value:<44} {target:<12} {}",
            ok.map_or("info", verdict)
        );
    }
    println!("  (whole bench: {:.0} s)", started.elapsed().as_secs_f64());
}
