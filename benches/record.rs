//! Cost of recording a sale: `fo_record_sale` called through the C ABI (CString arguments,
//! exactly as a C caller would) against a floor that does only the unavoidable part, a bare
//! rusqlite `INSERT` of the same JSON into an outbox-like table in its own `BEGIN IMMEDIATE …
//! COMMIT`, on a connection with the same durability pragmas (WAL, synchronous=FULL), in a
//! database in the same temporary directory.
//!
//! After a warm-up, calls are measured one by one, alternating blocks of ours and of the floor
//! so that disk noise hits both alike. Printed per sale size (3 lines, then 20 lines): median and
//! p99 in µs, the ratios ours/floor and PASS/MISS against the targets (median ratio ≤ 1.3,
//! p99 ≤ 2 ms).
//!
//! Then, in the same run: the peers (`benches/peers.py`: persist-queue's SQLiteAckQueue and
//! litequeue, at their default durability and with synchronous=FULL, plus a Python sqlite3
//! floor) fed the same JSON, from a venv the bench makes under `target/bench-peers` (pip
//! install of the two packages; when Python, the venv or the registry fails it says why and
//! goes on), and a Rust durable queue (`benches/peers-rust`: queue-file, its own workspace,
//! built under `target/bench-peers-rust` on a full run). Last, many callers: 1 thread, then 8 threads recording at once on one client
//! (group commit), throughput and p99 per call.
//!
//! Run: `cargo bench --features sim --bench record` (`-- --quick` for a smoke run; CI runs
//! `cargo test --features sim --bench record`, a debug build in the quick sizes).

use flow_omnium::ffi::{
    fo_client, fo_client_close, fo_client_open, fo_last_error_message, fo_record_sale,
};
use flow_omnium::fo_result;
use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::{json, Value};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Sizes of one run: warm-up calls, calls per block (blocks of ours and of the floor
/// alternate), blocks of each kind, calls per thread in the many-callers part.
#[derive(Clone, Copy)]
struct Sizes {
    warmup: usize,
    block: usize,
    blocks: usize,
    per_thread: usize,
}

const FULL: Sizes = Sizes {
    warmup: 200,
    block: 100,
    blocks: 50,
    per_thread: 1_000,
};

/// `-- --quick`: a smoke run that still goes through every part.
const QUICK: Sizes = Sizes {
    warmup: 5,
    block: 5,
    blocks: 2,
    per_thread: 10,
};

const TARGET_MEDIAN_RATIO: f64 = 1.15;
const TARGET_P99_US: f64 = 1000.0;
/// Many callers: 8 threads get at least this many times one thread's throughput…
const TARGET_THROUGHPUT_GAIN: f64 = 4.0;
/// … with a p99 per call at most this many times one thread's.
const TARGET_P99_GROWTH: f64 = 3.0;

/// The outbox table the library creates (src/store/schema.rs), so the floor pays for the same
/// row shape and indexes.
const FLOOR_SCHEMA: &str = "CREATE TABLE outbox_job (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    event_id TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    content TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    tries INTEGER NOT NULL DEFAULT 0,
    uncertain INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER,
    dead_at INTEGER,
    UNIQUE (kind, event_id)
);
CREATE INDEX outbox_job_due ON outbox_job (state, next_attempt_at);
CREATE INDEX outbox_job_entity ON outbox_job (entity_id, id);";

/// A balanced sale: Σ round(quantity × unit_price) − Σ discount + rounding = Σ payments.
fn sale_json(id: &str, line_count: usize) -> String {
    const QUANTITIES: [f64; 3] = [2.0, 1.0, 0.5];
    const PRICES: [i64; 3] = [19950, 12900, 8990];
    let mut due: i64 = 0;
    let lines: Vec<Value> = (0..line_count)
        .map(|i| {
            let quantity = QUANTITIES[i % 3];
            let unit_price = PRICES[i % 3] + 100 * (i as i64 / 3);
            let discount = if i % 3 == 1 { 1000 } else { 0 };
            due += (quantity * unit_price as f64).round() as i64 - discount;
            json!({"line_id": (i + 1).to_string(), "sku": format!("SKU-{:05}", 100 + i),
                   "name": format!("Article {}", i + 1), "quantity": quantity,
                   "unit_price": unit_price, "discount": discount, "tax_rate": 25})
        })
        .collect();
    // Cash rounding to whole kroner.
    let rounding = match due.rem_euclid(100) {
        r if r < 50 => -r,
        r => 100 - r,
    };
    let total = due + rounding;
    let cash = 10_000;
    assert!(total > cash, "the sale must cover the cash payment");
    json!({
        "id": id, "created_at": "2026-11-28T10:15:00+01:00",
        "customer_id": "C-77", "salesperson_id": "E-12", "rounding": rounding,
        "lines": lines,
        "payments": [
            {"id": "P1", "method": "Card", "amount": total - cash, "transaction_id": format!("tx-{id}")},
            {"id": "P2", "method": "Cash", "amount": cash}
        ]
    })
    .to_string()
}

/// One sale to record: its id and JSON, also as the C string the C ABI takes.
struct Payload {
    id: String,
    json: String,
    c_json: CString,
}

fn payloads(prefix: &str, count: usize, line_count: usize) -> Vec<Payload> {
    (0..count)
        .map(|i| {
            let id = format!("{prefix}-{i:06}");
            let json = sale_json(&id, line_count);
            let c_json = CString::new(json.clone()).expect("JSON has no NUL");
            Payload { id, json, c_json }
        })
        .collect()
}

/// The library through its C ABI.
struct Ours {
    client: *mut fo_client,
}

impl Ours {
    fn open(db: &Path) -> Ours {
        let config = json!({
            "database_path": db.to_str().expect("UTF-8 temp path"),
            "store_id": "oslo-1", "market_id": "NOR", "currency": "NOK",
            "omnium": {"base_url": "http://127.0.0.1:9", "client_id": "x", "client_secret": "y"},
            "sync": {"autostart": false}
        })
        .to_string();
        let config = CString::new(config).expect("no NUL");
        let mut client: *mut fo_client = std::ptr::null_mut();
        // SAFETY: a NUL-terminated config and a writable out-pointer.
        let r = unsafe { fo_client_open(config.as_ptr(), &mut client) };
        check(r, "fo_client_open");
        Ours { client }
    }

    fn record(&self, p: &Payload) -> Duration {
        let start = Instant::now();
        // SAFETY: a live client and a NUL-terminated string.
        let r = unsafe { fo_record_sale(self.client, p.c_json.as_ptr()) };
        let took = start.elapsed();
        check(r, "fo_record_sale");
        took
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        // SAFETY: opened by fo_client_open, closed exactly once here.
        unsafe { fo_client_close(self.client) };
    }
}

fn check(r: fo_result, what: &str) {
    if r != fo_result::FO_OK {
        // SAFETY: never NULL, valid until the next fo_ call on this thread.
        let message = unsafe { CStr::from_ptr(fo_last_error_message()) };
        panic!("{what}: {} ({})", r.name(), message.to_string_lossy());
    }
}

/// The floor: one INSERT in its own immediate transaction, nothing else.
struct Floor {
    conn: Connection,
    now_ms: i64,
}

impl Floor {
    fn open(db: &Path) -> Floor {
        let conn = Connection::open(db).expect("open the floor database");
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode.to_ascii_lowercase(), "wal");
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous must be FULL");
        conn.execute_batch(FLOOR_SCHEMA).unwrap();
        Floor {
            conn,
            now_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    #[inline(never)]
    fn record(&mut self, p: &Payload) -> Duration {
        let start = Instant::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        tx.prepare_cached(
            "INSERT INTO outbox_job (kind, event_id, entity_id, content, next_attempt_at, created_at)
             VALUES ('sale', ?1, ?1, ?2, ?3, ?3)",
        )
        .unwrap()
        .execute(params![p.id, p.json, self.now_ms])
        .unwrap();
        tx.commit().unwrap();
        start.elapsed()
    }
}

/// Median and p99 (nearest rank) in µs.
fn summary(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1].as_secs_f64() * 1e6
    };
    (at(0.5), at(0.99))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// Ours and the floor of one sale size, interleaved; returns (ours, floor) as (median, p99)
/// and writes the JSON recorded to `payload_file` for the peers.
fn run(dir: &Path, line_count: usize, sz: Sizes, payload_file: &Path) -> ((f64, f64), (f64, f64)) {
    let case = dir.join(format!("lines-{line_count}"));
    std::fs::create_dir(&case).unwrap();
    let ours = Ours::open(&case.join("bench.db"));
    let mut floor = Floor::open(&case.join("floor.db"));

    for p in payloads("W", sz.warmup, line_count) {
        ours.record(&p);
        floor.record(&p);
    }

    let mut ours_t = Vec::with_capacity(sz.block * sz.blocks);
    let mut floor_t = Vec::with_capacity(sz.block * sz.blocks);
    let mut json_bytes = 0;
    let mut all_json = String::new();
    let started = Instant::now();
    for b in 0..sz.blocks {
        // Both record the very same JSON (each into its own database).
        let block = payloads(&format!("S{b:02}"), sz.block, line_count);
        json_bytes = block[0].json.len();
        // Alternate which goes first, so neither always follows the other's checkpoint.
        if b % 2 == 0 {
            ours_t.extend(block.iter().map(|p| ours.record(p)));
            floor_t.extend(block.iter().map(|p| floor.record(p)));
        } else {
            floor_t.extend(block.iter().map(|p| floor.record(p)));
            ours_t.extend(block.iter().map(|p| ours.record(p)));
        }
        for p in &block {
            all_json.push_str(&p.json);
            all_json.push('\n');
        }
    }
    let wall = started.elapsed();
    drop(ours);
    std::fs::write(payload_file, all_json).unwrap();

    let n = ours_t.len();
    let (om, op) = summary(ours_t);
    let (fm, fp) = summary(floor_t);
    println!(
        "\n{line_count}-line sale ({json_bytes} B of JSON), {n} calls of each after {} warm-up, \
         blocks of {} interleaved ({:.1} s)",
        sz.warmup,
        sz.block,
        wall.as_secs_f64()
    );
    println!("  {:<44} {:>10} {:>10}", "", "median µs", "p99 µs");
    println!("  {:<44} {om:>10.1} {op:>10.1}", "fo_record_sale via C ABI");
    println!(
        "  {:<44} {fm:>10.1} {fp:>10.1}",
        "floor: INSERT in BEGIN IMMEDIATE/COMMIT"
    );
    println!(
        "  {:<44} {:>10.2} {:>10.2}",
        "ratio ours/floor",
        om / fm,
        op / fp
    );
    println!(
        "  {:<44} {:>10.1} {:>10.1}",
        "ours − floor (µs)",
        om - fm,
        op - fp
    );
    println!(
        "  target median ratio ≤ {TARGET_MEDIAN_RATIO}: {} ({:.2})",
        verdict(om / fm <= TARGET_MEDIAN_RATIO),
        om / fm
    );
    println!(
        "  target p99 ≤ {TARGET_P99_US:.0} µs:    {} ({op:.1} µs)",
        verdict(op <= TARGET_P99_US)
    );
    ((om, op), (fm, fp))
}

/// A Python with persist-queue and litequeue, in a venv under target/ made on first use.
/// In a smoke run an existing venv is used but none is made (no registry access in CI).
fn peers_python(smoke: bool) -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-peers");
    let python = venv.join("bin/python");
    let ready = venv.join(".installed-persist-queue-1.1.0-litequeue-0.9");
    if ready.exists() {
        return Ok(python);
    }
    if smoke {
        return Err("the smoke run makes no venv (a full run does)".into());
    }
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(3).collect();
            Err(format!("{cmd:?} failed: {}", tail.join(" | ")))
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    // litequeue 0.10 and later need Python 3.12; 0.9 has the same put path.
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "persist-queue==1.1.0",
        "litequeue==0.9",
    ]))?;
    std::fs::write(&ready, b"").map_err(|e| e.to_string())?;
    Ok(python)
}

/// Runs benches/peers.py on `payload_file` and prints each peer beside our figures and the
/// floor of the same sale size.
fn peers(
    dir: &Path,
    line_count: usize,
    sz: Sizes,
    smoke: bool,
    payload_file: &Path,
    ours: (f64, f64),
    floor: (f64, f64),
) {
    println!("\n  peers, {line_count}-line sale (the same JSON; benches/peers.py, after ours):");
    let python = match peers_python(smoke) {
        Ok(p) => p,
        Err(why) => {
            println!("  peers not run: {why}");
            return;
        }
    };
    let out_dir = dir.join(format!("peers-{line_count}"));
    std::fs::create_dir(&out_dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(&out_dir)
        .arg(payload_file)
        .args([sz.warmup, sz.blocks, sz.block].map(|n| n.to_string()))
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            println!(
                "  peers failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            println!("  peers not run: {e}");
            return;
        }
    };
    println!(
        "  {:<44} {:>6} {:>10} {:>10} {:>12} {:>12}",
        "", "sync", "median µs", "p99 µs", "ours/peer", "peer/floor"
    );
    let mut fastest_full: Option<f64> = None;
    let mut python_floor: Option<f64> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let name = format!(
            "{} ({})",
            v["peer"].as_str().unwrap_or("?"),
            if v["full"].as_bool() == Some(true) {
                "FULL"
            } else {
                "default"
            }
        );
        if let Some(err) = v["error"].as_str() {
            println!("  {name:<44} not run: {err}");
            continue;
        }
        let median = v["median_us"].as_f64().unwrap_or(f64::NAN);
        let p99 = v["p99_us"].as_f64().unwrap_or(f64::NAN);
        let sync = match v["synchronous"].as_i64() {
            Some(0) => "OFF",
            Some(1) => "NORMAL",
            Some(2) => "FULL",
            Some(3) => "EXTRA",
            _ => "?",
        };
        let is_floor = name.starts_with("python");
        if is_floor {
            python_floor = Some(median);
        } else if sync == "FULL" || sync == "EXTRA" {
            fastest_full = Some(fastest_full.map_or(median, |f: f64| f.min(median)));
        }
        println!(
            "  {name:<44} {sync:>6} {median:>10.1} {p99:>10.1} {:>12.2} {:>12.2}",
            ours.0 / median,
            median / floor.0
        );
    }
    if let Some(f) = fastest_full {
        println!(
            "  target median ≤ fastest peer at FULL: {} (ours {:.1} µs, peer {f:.1} µs; measured in \
             separate processes one after the other, so compare ratios to each floor too)",
            verdict(ours.0 <= f),
            ours.0
        );
        if let Some(pf) = python_floor {
            println!(
                "  ours/Rust floor {:.2} vs fastest FULL peer/Python floor {:.2}",
                ours.0 / floor.0,
                f / pf
            );
        }
    }
    rust_peer(&out_dir, sz, smoke, payload_file, ours, floor);
}

/// benches/peers-rust (queue-file, its own workspace so that the library never depends on
/// it), built into target/bench-peers-rust on a full run; a smoke run uses it only if built.
fn peers_rust(smoke: bool) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/bench-peers-rust");
    let binary = target.join("release/flow-omnium-peers");
    if smoke {
        return if binary.exists() {
            Ok(binary)
        } else {
            Err("the smoke run builds no peer (a full run does)".into())
        };
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(root.join("benches/peers-rust/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(format!(
            "building benches/peers-rust failed: {}",
            tail.join(" | ")
        ));
    }
    Ok(binary)
}

/// The Rust durable queue (queue-file) on the same payloads, after the Python peers; its
/// ratio is to the Rust floor of this run (both Rust, both one fsync or more per call).
fn rust_peer(
    out_dir: &Path,
    sz: Sizes,
    smoke: bool,
    payload_file: &Path,
    ours: (f64, f64),
    floor: (f64, f64),
) {
    let binary = match peers_rust(smoke) {
        Ok(b) => b,
        Err(why) => {
            println!("  Rust durable queue not run: {why}");
            return;
        }
    };
    let out = Command::new(&binary)
        .arg(out_dir)
        .arg(payload_file)
        .args([sz.warmup, sz.blocks, sz.block].map(|n| n.to_string()))
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            println!("  Rust durable queue failed: {}", err.trim());
            return;
        }
        Err(e) => {
            println!("  Rust durable queue not run: {}: {e}", binary.display());
            return;
        }
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let durable = v["full"].as_bool() == Some(true);
        let name = format!(
            "{} ({})",
            v["peer"].as_str().unwrap_or("?"),
            if durable { "default" } else { "sync off" }
        );
        let median = v["median_us"].as_f64().unwrap_or(f64::NAN);
        let p99 = v["p99_us"].as_f64().unwrap_or(f64::NAN);
        let sync = if durable { "fsync" } else { "none" };
        println!(
            "  {name:<44} {sync:>6} {median:>10.1} {p99:>10.1} {:>12.2} {:>12.2}",
            ours.0 / median,
            median / floor.0
        );
        if durable {
            println!(
                "  target median ≤ the Rust durable queue: {} (ours {:.1} µs, queue-file {median:.1} µs, \
                 {}; its ratio to the Rust floor {:.2})",
                verdict(ours.0 <= median),
                ours.0,
                v["durability"].as_str().unwrap_or("?"),
                median / floor.0
            );
        }
    }
}

/// A client handle shared by the recording threads (the C API allows calls from any thread).
#[derive(Clone, Copy)]
struct Shared(*mut fo_client);
// SAFETY: a fo_client handle may be used from any thread at once (header: "Threads").
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

/// `threads` threads each record `per_thread` sales at once on one client; returns
/// (calls per second, p99 µs per call).
fn many(dir: &Path, threads: usize, per_thread: usize, line_count: usize) -> (f64, f64) {
    let ours = Ours::open(&dir.join(format!("many-{threads}.db")));
    for p in payloads(&format!("MW{threads}"), 50, line_count) {
        ours.record(&p);
    }
    let shared = Shared(ours.client);
    let work: Vec<Vec<Payload>> = (0..threads)
        .map(|t| payloads(&format!("M{threads}-{t}"), per_thread, line_count))
        .collect();
    let barrier = std::sync::Barrier::new(threads);
    let started = Instant::now();
    let samples: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .iter()
            .map(|mine| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let c = shared;
                    barrier.wait();
                    mine.iter()
                        .map(|p| {
                            let start = Instant::now();
                            // SAFETY: a live client and a NUL-terminated string.
                            let r = unsafe { fo_record_sale(c.0, p.c_json.as_ptr()) };
                            let took = start.elapsed();
                            check(r, "fo_record_sale");
                            took
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let n = samples.len();
    let (_, p99) = summary(samples);
    (n as f64 / wall, p99)
}

fn many_callers(dir: &Path, sz: Sizes) {
    let line_count = 3;
    println!(
        "\nmany callers: {line_count}-line sales, {} per thread, one client, 1 thread then 8 at once",
        sz.per_thread
    );
    let (t1, p1) = many(dir, 1, sz.per_thread, line_count);
    let (t8, p8) = many(dir, 8, sz.per_thread, line_count);
    println!("  {:<44} {:>12} {:>10}", "", "calls/s", "p99 µs");
    println!("  {:<44} {t1:>12.0} {p1:>10.1}", "1 thread");
    println!("  {:<44} {t8:>12.0} {p8:>10.1}", "8 threads");
    println!(
        "  target throughput ≥ {TARGET_THROUGHPUT_GAIN}× one thread: {} ({:.2}×)",
        verdict(t8 / t1 >= TARGET_THROUGHPUT_GAIN),
        t8 / t1
    );
    println!(
        "  target p99 ≤ {TARGET_P99_GROWTH}× one thread's:      {} ({:.2}×)",
        verdict(p8 / p1 <= TARGET_P99_GROWTH),
        p8 / p1
    );
}

/// `-- --profile <lines> <calls>`: records `calls` sales through the C ABI and nothing else,
/// for a profiler (`valgrind --tool=callgrind --toggle-collect=fo_record_sale`).
/// `-- --profile-floor <lines> <calls>`: the same for the floor (`--toggle-collect='*Floor*record*'`).
fn profile(line_count: usize, calls: usize, floor: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sales = payloads("P", calls, line_count);
    let started = Instant::now();
    if floor {
        let mut f = Floor::open(&dir.path().join("profile.db"));
        for p in &sales {
            f.record(p);
        }
    } else {
        let ours = Ours::open(&dir.path().join("profile.db"));
        for p in &sales {
            ours.record(p);
        }
    }
    println!(
        "profile: {calls} {line_count}-line sales recorded in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mode = args.first().map(String::as_str);
    if matches!(mode, Some("--profile" | "--profile-floor")) {
        let n = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
        profile(n(1, 3), n(2, 2000), mode == Some("--profile-floor"));
        return;
    }
    // `cargo bench` passes --bench; `cargo test --bench record` (the CI smoke) does not.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let sz = if smoke || args.iter().any(|a| a == "--quick") {
        QUICK
    } else {
        FULL
    };
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "fo_record_sale vs bare SQLite INSERT floor (journal_mode=WAL, synchronous=FULL), \
         databases in {}",
        dir.path().display()
    );
    for line_count in [3, 20] {
        let payload_file = dir.path().join(format!("payloads-{line_count}.jsonl"));
        let (ours, floor) = run(dir.path(), line_count, sz, &payload_file);
        peers(
            dir.path(),
            line_count,
            sz,
            smoke,
            &payload_file,
            ours,
            floor,
        );
    }
    many_callers(dir.path(), sz);
}
