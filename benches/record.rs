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
//! Run: `cargo bench --features sim --bench record`

use flow_omnium::ffi::{
    fo_client, fo_client_close, fo_client_open, fo_last_error_message, fo_record_sale,
};
use flow_omnium::fo_result;
use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::{json, Value};
use std::ffi::{CStr, CString};
use std::path::Path;
use std::time::{Duration, Instant};

const WARMUP: usize = 200;
/// Calls per block; blocks of ours and of the floor alternate.
const BLOCK: usize = 100;
/// Blocks of each kind: BLOCK × BLOCKS measured calls of each.
const BLOCKS: usize = 50;
const TARGET_MEDIAN_RATIO: f64 = 1.3;
const TARGET_P99_US: f64 = 2000.0;

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

fn run(dir: &Path, line_count: usize) {
    let case = dir.join(format!("lines-{line_count}"));
    std::fs::create_dir(&case).unwrap();
    let ours = Ours::open(&case.join("bench.db"));
    let mut floor = Floor::open(&case.join("floor.db"));

    for p in payloads("W", WARMUP, line_count) {
        ours.record(&p);
        floor.record(&p);
    }

    let mut ours_t = Vec::with_capacity(BLOCK * BLOCKS);
    let mut floor_t = Vec::with_capacity(BLOCK * BLOCKS);
    let mut json_bytes = 0;
    let started = Instant::now();
    for b in 0..BLOCKS {
        // Both record the very same JSON (each into its own database).
        let block = payloads(&format!("S{b:02}"), BLOCK, line_count);
        json_bytes = block[0].json.len();
        // Alternate which goes first, so neither always follows the other's checkpoint.
        if b % 2 == 0 {
            ours_t.extend(block.iter().map(|p| ours.record(p)));
            floor_t.extend(block.iter().map(|p| floor.record(p)));
        } else {
            floor_t.extend(block.iter().map(|p| floor.record(p)));
            ours_t.extend(block.iter().map(|p| ours.record(p)));
        }
    }
    let wall = started.elapsed();
    drop(ours);

    let n = ours_t.len();
    let (om, op) = summary(ours_t);
    let (fm, fp) = summary(floor_t);
    println!(
        "\n{line_count}-line sale ({json_bytes} B of JSON), {n} calls of each after {WARMUP} warm-up, \
         blocks of {BLOCK} interleaved ({:.1} s)",
        wall.as_secs_f64()
    );
    println!("  {:<40} {:>10} {:>10}", "", "median µs", "p99 µs");
    println!("  {:<40} {om:>10.1} {op:>10.1}", "fo_record_sale via C ABI");
    println!(
        "  {:<40} {fm:>10.1} {fp:>10.1}",
        "floor: INSERT in BEGIN IMMEDIATE/COMMIT"
    );
    println!(
        "  {:<40} {:>10.2} {:>10.2}",
        "ratio ours/floor",
        om / fm,
        op / fp
    );
    println!(
        "  {:<40} {:>10.1} {:>10.1}",
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
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "fo_record_sale vs bare SQLite INSERT floor (journal_mode=WAL, synchronous=FULL), \
         databases in {}",
        dir.path().display()
    );
    run(dir.path(), 3);
    run(dir.path(), 20);
}
