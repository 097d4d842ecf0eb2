//! Catch-up after a week offline at a busy store, against the Omnium simulator with 20 ms
//! added to every request.
//!
//! With the simulator up, 20 purchase orders are created there and the client is opened
//! and left to pull them (it must list all 20 before the outage starts). Then the simulator
//! goes down and the till records, interleaved as a week of trading would: 14,000 sales
//! (1–4 lines, balanced), a receipt with its own ~30 KB PDF for each sale, 1,000 returns of
//! some of those sales, 200 customers (persons and companies) and 20 goods receptions of
//! the purchase orders. PDFs are generated one at a time into a reused buffer.
//!
//! The simulator then comes back and the time is taken until `flush` returns OK, printing
//! progress (from the status JSON and the simulator's counters) every few seconds. Printed
//! afterwards: catch-up time (target: under 5 minutes), requests by route, duplicates at the
//! simulator, most requests in flight, invoices and files, dead or blocked jobs, and the
//! database size.
//!
//! Run: `cargo bench --features sim --bench catchup` (max_concurrency 4, then 8), or
//! `cargo bench --features sim --bench catchup -- 4` for chosen concurrencies only.

use flow_omnium::sim::{SimConfig, SimStats, Simulator};
use flow_omnium::Client;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SALES: usize = 14_000;
const RETURN_EVERY: usize = 14; // 1,000 returns
const RETURN_DELAY: usize = 40; // a return is recorded this many sales after its sale
const CUSTOMER_EVERY: usize = 70; // 200 customers
const RECEPTION_EVERY: usize = 700; // 20 goods receptions
const PURCHASE_ORDERS: usize = 20;
const PDF_BYTES: usize = 30 * 1024;
const LATENCY_MS: u64 = 20;
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1800);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
const TARGET: Duration = Duration::from_secs(300);

/// A small deterministic generator (SplitMix64), so every run records the same week.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// When sale `i` happened: 2,000 sales a day from Monday 23 to Sunday 29 November, 09–21.
fn sale_time(i: usize) -> String {
    let day = 23 + i / 2000;
    let secs = 9 * 3600 + (i % 2000) * 43_200 / 2000;
    format!(
        "2026-11-{day}T{:02}:{:02}:{:02}+01:00",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// What a return and a receipt need to know about a recorded sale.
struct SaleSummary {
    id: String,
    at: String,
    customer_id: Option<String>,
    total: i64,
    tax_total: i64,
    /// Line "1": quantity, unit price, discount.
    first_line: (f64, i64, i64),
}

/// A balanced sale (Σ round(quantity × unit_price) − Σ discount + rounding = Σ payments).
fn sale(i: usize, rng: &mut Rng, customers: usize) -> (String, SaleSummary) {
    const QUANTITIES: [f64; 6] = [1.0, 1.0, 1.0, 2.0, 3.0, 0.75];
    let id = format!("S-{i:06}");
    let at = sale_time(i);
    let n_lines = 1 + rng.below(4) as usize;
    let mut due = 0i64;
    let mut tax = 0f64;
    let mut first_line = (0.0, 0, 0);
    let lines: Vec<Value> = (1..=n_lines)
        .map(|k| {
            let quantity = QUANTITIES[rng.below(QUANTITIES.len() as u64) as usize];
            let unit_price = 1990 + 10 * rng.below(9800) as i64;
            let gross = (quantity * unit_price as f64).round() as i64;
            let discount = if rng.below(5) == 0 { gross / 10 } else { 0 };
            let tax_rate = if rng.below(4) == 0 { 15 } else { 25 };
            let net = gross - discount;
            due += net;
            tax += net as f64 * f64::from(tax_rate) / f64::from(100 + tax_rate);
            if k == 1 {
                first_line = (quantity, unit_price, discount);
            }
            json!({"line_id": k.to_string(), "sku": format!("SKU-{:05}", rng.below(800)),
                   "name": format!("Vare {k}"), "quantity": quantity, "unit_price": unit_price,
                   "discount": discount, "tax_rate": tax_rate})
        })
        .collect();
    let (rounding, payments) = match rng.below(10) {
        // Cash, rounded to whole kroner.
        0..=1 => {
            let rounding = match due.rem_euclid(100) {
                r if r < 50 => -r,
                r => 100 - r,
            };
            (
                rounding,
                json!([{"id": "P1", "method": "Cash", "amount": due + rounding}]),
            )
        }
        // A gift card covering part, the rest by card.
        2 if due > 10_000 => (
            0,
            json!([{"id": "P1", "method": "GiftCard", "amount": 10_000, "transaction_id": format!("gc-{id}")},
                   {"id": "P2", "method": "Card", "amount": due - 10_000, "transaction_id": format!("tx-{id}")}]),
        ),
        _ => (
            0,
            json!([{"id": "P1", "method": "Card", "amount": due, "transaction_id": format!("tx-{id}")}]),
        ),
    };
    let customer_id =
        (customers > 0 && i % 10 == 3).then(|| format!("C-{:04}", rng.below(customers as u64)));
    let json = json!({"id": id, "created_at": at, "customer_id": customer_id,
        "salesperson_id": format!("emp-{}", i % 7), "rounding": rounding,
        "lines": lines, "payments": payments})
    .to_string();
    let summary = SaleSummary {
        id,
        at,
        customer_id,
        total: due + rounding,
        tax_total: tax.round() as i64,
        first_line,
    };
    (json, summary)
}

/// A return of line 1 (one unit, or all of it when less than one was sold), made at `at`.
fn return_of(n: usize, s: &SaleSummary, at: &str) -> String {
    let (sold, unit_price, discount) = s.first_line;
    let quantity = sold.min(1.0);
    let amount = (quantity * unit_price as f64).round() as i64
        - (discount as f64 * quantity / sold).round() as i64;
    json!({"id": format!("R-{n:05}"), "sale_id": s.id, "created_at": at,
           "lines": [{"line_id": "1", "quantity": quantity, "amount": amount,
                      "restock": n % 5 != 0, "reason": if n % 5 == 0 { "Defect" } else { "Changed mind" }}],
           "refunds": [{"id": "RF1", "method": "Card", "amount": amount, "transaction_id": format!("rtx-{n}")}]})
    .to_string()
}

fn receipt(i: usize, s: &SaleSummary) -> String {
    json!({"id": format!("RC-{i:06}"), "sale_id": s.id, "receipt_number": (100_000 + i).to_string(),
           "issued_at": s.at, "total": s.total, "tax_total": s.tax_total, "currency": "NOK",
           "customer_id": s.customer_id, "file_name": format!("receipt-{}.pdf", 100_000 + i)})
    .to_string()
}

fn customer(n: usize) -> String {
    let address = json!({"line1": format!("Storgata {}", n + 1), "postal_code": format!("{:04}", 150 + n),
                         "city": "Oslo", "country_code": "NO"});
    if n % 4 == 3 {
        json!({"id": format!("C-{n:04}"), "type": "company", "company_name": format!("Firma {n} AS"),
               "tax_id": format!("9{n:08}"), "email": format!("post{n}@firma.no"), "address": address})
    } else {
        json!({"id": format!("C-{n:04}"), "type": "person", "first_name": "Kari",
               "last_name": format!("Nordmann {n}"), "email": format!("kari{n}@example.no"),
               "phone": format!("+47{:08}", 91_000_000 + n), "address": address,
               "loyalty_id": format!("L-{n}")})
    }
    .to_string()
}

/// Everything of the purchase order in full (every line as ordered).
fn reception(n: usize, po: &Value, at: &str) -> String {
    let lines: Vec<Value> = po["purchaseOrderForm"]["lineItems"]
        .as_array()
        .expect("purchase order lines")
        .iter()
        .map(|l| json!({"line_id": l["lineItemId"], "sku": l["code"], "quantity": l["quantity"]}))
        .collect();
    json!({"id": format!("GR-{n:03}"), "purchase_order_id": po["id"], "delivery_id": po["deliveryId"],
           "warehouse_id": "oslo-1", "received_at": at, "lines": lines})
    .to_string()
}

/// A PDF-looking buffer of about 30 KB: one pseudo-random body made once, then per receipt
/// its own header line, a few perturbed bytes and a slightly different length.
struct PdfMaker {
    body: Vec<u8>,
    buf: Vec<u8>,
}

impl PdfMaker {
    fn new() -> PdfMaker {
        let mut rng = Rng(42);
        let body = (0..PDF_BYTES + 1024)
            .map(|_| b' ' + (rng.next() >> 56) as u8 % 94)
            .collect();
        PdfMaker {
            body,
            buf: Vec::with_capacity(PDF_BYTES + 2048),
        }
    }

    fn make(&mut self, i: usize, receipt_id: &str) -> &[u8] {
        self.buf.clear();
        self.buf.extend_from_slice(
            format!("%PDF-1.7\n% Flow Retail receipt {receipt_id} (#{i})\n").as_bytes(),
        );
        let len = PDF_BYTES - 512 + (i * 37) % 1024;
        self.buf.extend_from_slice(&self.body[..len]);
        let mut rng = Rng(i as u64);
        for _ in 0..16 {
            let at = 64 + rng.below((len - 64) as u64) as usize;
            self.buf[at] = b' ' + (rng.next() >> 56) as u8 % 94;
        }
        self.buf.extend_from_slice(b"\n%%EOF\n");
        &self.buf
    }
}

fn status(client: &Client) -> Value {
    serde_json::from_str(&client.status_json().expect("status")).expect("status JSON")
}

/// Bytes of the database with its WAL and shared-memory files.
fn db_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read the temp dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A memory figure of this process from /proc/self/status (Linux), in MiB: "VmRSS" (now)
/// or "VmHWM" (peak since the process started).
fn memory_mib(key: &str) -> f64 {
    let kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with(key))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    kib as f64 / 1024.0
}

fn route_count(stats: &SimStats, key: &str) -> u64 {
    stats.by_route.get(key).copied().unwrap_or(0)
}

/// One catch-up run; returns the problems found (empty = all checks passed).
fn run(concurrency: usize) -> Vec<String> {
    println!("\n=== max_concurrency {concurrency} ===");
    let mut problems = Vec::new();
    let sim = Simulator::start(SimConfig {
        latency_ms: LATENCY_MS,
        ..Default::default()
    })
    .expect("start the simulator");
    let purchase_orders: Vec<Value> = (0..PURCHASE_ORDERS)
        .map(|_| {
            let po = sim.new_purchase_order("oslo-1", 3);
            sim.add_purchase_order(po.clone());
            po
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = json!({
        "database_path": dir.path().join("pos.db").to_str().expect("UTF-8 temp path"),
        "store_id": "oslo-1", "market_id": "NOR", "currency": "NOK", "terminal_id": "t01",
        "omnium": {"base_url": sim.base_url(), "client_id": "sim-client",
                   "client_secret": "sim-secret", "max_concurrency": concurrency},
        "sync": {"retry_initial_ms": 200, "retry_max_ms": 1000, "pull_interval_ms": 3_600_000}
    })
    .to_string();
    let client = Client::open(&config).expect("open the client");
    println!("database: {}", dir.path().display());

    // Before the outage: the client pulls the purchase orders it will receive against.
    let start = Instant::now();
    loop {
        let list: Value = serde_json::from_str(&client.purchase_orders_json(None).expect("POs"))
            .expect("PO JSON");
        let known = list["items"].as_array().map_or(0, Vec::len);
        if known >= PURCHASE_ORDERS {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the client lists {known} of {PURCHASE_ORDERS} purchase orders after 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    client
        .flush(Duration::from_secs(60))
        .expect("nothing pending before the outage");
    println!(
        "before the outage: {PURCHASE_ORDERS} purchase orders pulled in {:.2} s ({} requests)",
        start.elapsed().as_secs_f64(),
        sim.stats().requests
    );

    let before_outage = sim.stats().requests;
    sim.set_down(true);
    let mut rng = Rng(7);
    let mut pdfs = PdfMaker::new();
    let mut returns_due: VecDeque<(usize, SaleSummary)> = VecDeque::new();
    let (mut customers, mut receptions, mut returns) = (0, 0, 0);
    let mut pdf_bytes = 0u64;
    let start = Instant::now();
    for i in 0..SALES {
        if i % CUSTOMER_EVERY == 0 {
            client
                .record_customer(&customer(customers))
                .expect("record_customer");
            customers += 1;
        }
        let (json, summary) = sale(i, &mut rng, customers);
        client.record_sale(&json).expect("record_sale");
        let receipt_id = format!("RC-{i:06}");
        let pdf = pdfs.make(i, &receipt_id);
        pdf_bytes += pdf.len() as u64;
        client
            .record_receipt(&receipt(i, &summary), pdf)
            .expect("record_receipt");
        if i % RECEPTION_EVERY == RECEPTION_EVERY / 2 {
            client
                .record_goods_reception(&reception(
                    receptions,
                    &purchase_orders[receptions],
                    &summary.at,
                ))
                .expect("record_goods_reception");
            receptions += 1;
        }
        let summary_at = summary.at.clone();
        if i % RETURN_EVERY == RETURN_EVERY / 2 {
            returns_due.push_back((i, summary));
        }
        while returns_due
            .front()
            .is_some_and(|(sold_at, _)| sold_at + RETURN_DELAY <= i || i + 1 == SALES)
        {
            let (_, sold) = returns_due.pop_front().expect("a due return");
            client
                .record_return(&return_of(returns, &sold, &summary_at))
                .expect("record_return");
            returns += 1;
        }
        if (i + 1) % 2000 == 0 {
            println!(
                "  recorded day {}: {} sales, {:.1} s",
                (i + 1) / 2000,
                i + 1,
                start.elapsed().as_secs_f64()
            );
        }
    }
    let recording = start.elapsed();
    let recorded = SALES * 2 + returns + customers + receptions;
    let st = status(&client);
    println!(
        "recording (simulator down): {SALES} sales, {SALES} receipts ({:.1} MiB of PDFs), \
         {returns} returns, {customers} customers, {receptions} goods receptions = {recorded} \
         calls in {:.1} s ({:.0} calls/s, {:.2} ms each); outbox pending {}, database {:.1} MiB, \
         RSS {:.0} MiB",
        mib(pdf_bytes),
        recording.as_secs_f64(),
        recorded as f64 / recording.as_secs_f64(),
        recording.as_secs_f64() * 1e3 / recorded as f64,
        st["outbox"]["pending"],
        mib(db_size(dir.path())),
        memory_mib("VmRSS:")
    );
    let during = sim.stats().requests - before_outage;
    if during > 0 {
        problems.push(format!(
            "{during} requests reached the simulator while it was down"
        ));
    }

    // Back online: time until flush says nothing is pending.
    sim.reset_stats();
    sim.set_down(false);
    let start = Instant::now();
    let done = AtomicBool::new(false);
    let flushed = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut next = PROGRESS_EVERY;
            while !done.load(Ordering::Acquire) {
                if start.elapsed() < next {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                next += PROGRESS_EVERY;
                let st = status(&client);
                let s = sim.stats();
                println!(
                    "  {:>6.1} s  pending {:>6}  blocked {}  dead {}  online {}  | sim: {} requests \
                     ({:.0}/s), {} orders, {} invoices, {} files, {} returns, {} receptions",
                    start.elapsed().as_secs_f64(),
                    st["outbox"]["pending"],
                    st["outbox"]["blocked"],
                    st["outbox"]["dead"],
                    st["online"],
                    s.requests,
                    s.requests as f64 / start.elapsed().as_secs_f64(),
                    s.orders_created,
                    s.invoices_created,
                    s.invoice_files_added,
                    s.returns_created,
                    s.goods_receptions
                );
            }
        });
        let flushed = client.flush(FLUSH_TIMEOUT);
        done.store(true, Ordering::Release);
        flushed
    });
    let took = start.elapsed();
    let stats = sim.stats();
    let st = status(&client);
    let size_open = db_size(dir.path());

    match &flushed {
        Ok(()) => println!(
            "catch-up: flush returned OK after {:.1} s",
            took.as_secs_f64()
        ),
        Err(e) => {
            println!(
                "catch-up: flush FAILED after {:.1} s: {e}",
                took.as_secs_f64()
            );
            problems.push(format!("flush: {e}"));
        }
    }
    println!("status after flush: {st}");
    println!(
        "requests sent: {} ({:.0}/s; {:.2} per recorded event)",
        stats.requests,
        stats.requests as f64 / took.as_secs_f64(),
        stats.requests as f64 / recorded as f64
    );
    for (route, n) in &stats.by_route {
        println!("  {n:>7}  {route}");
    }
    println!(
        "simulator: orders created {}, duplicate orders {}, returns created {}, duplicate returns \
         {}, invoices created {}, invoice updates {}, files added {}, customer batches {}, \
         customers upserted {}, goods receptions {}, duplicate goods receptions {}, tokens {}, \
         401s {}, max in flight {} (max_concurrency {concurrency})",
        stats.orders_created,
        stats.duplicate_orders_rejected,
        stats.returns_created,
        stats.duplicate_returns_rejected,
        stats.invoices_created,
        stats.invoice_updates,
        stats.invoice_files_added,
        stats.customer_batches,
        stats.customers_upserted,
        stats.goods_receptions,
        stats.duplicate_goods_receptions,
        stats.tokens_issued,
        stats.unauthorized,
        stats.max_in_flight
    );

    let mut expect = |what: &str, got: u64, want: u64| {
        if got != want {
            problems.push(format!("{what}: {got}, expected {want}"));
        }
    };
    expect("orders created", stats.orders_created, SALES as u64);
    expect("duplicate orders", stats.duplicate_orders_rejected, 0);
    expect("returns created", stats.returns_created, returns as u64);
    expect("duplicate returns", stats.duplicate_returns_rejected, 0);
    expect("invoices created", stats.invoices_created, SALES as u64);
    expect(
        "invoice files added",
        stats.invoice_files_added,
        SALES as u64,
    );
    expect(
        "customers upserted",
        stats.customers_upserted,
        customers as u64,
    );
    expect(
        "goods receptions",
        stats.goods_receptions,
        receptions as u64,
    );
    expect(
        "outbox dead",
        st["outbox"]["dead"].as_u64().unwrap_or(u64::MAX),
        0,
    );
    expect(
        "outbox blocked",
        st["outbox"]["blocked"].as_u64().unwrap_or(u64::MAX),
        0,
    );
    if stats.duplicate_goods_receptions > 0 {
        // Legitimate only after a replay of an attempt whose outcome was unknown.
        let gr_posts = route_count(
            &stats,
            "POST /api/Deliveries/{deliveryId}/ProcessGoodsReception",
        );
        println!(
            "note: {} goods receptions refused as duplicates ({gr_posts} ProcessGoodsReception \
             requests for {receptions} receptions): replays",
            stats.duplicate_goods_receptions
        );
        if gr_posts <= receptions as u64 {
            problems.push("duplicate goods receptions without a replay".into());
        }
    }
    if stats.max_in_flight > concurrency as u64 {
        problems.push(format!(
            "max in flight {} exceeds max_concurrency {concurrency}",
            stats.max_in_flight
        ));
    }
    if st["outbox"]["dead"].as_u64() != Some(0) {
        println!("dead jobs: {}", client.dead_jobs_json().expect("dead jobs"));
    }
    if took > TARGET {
        problems.push(format!(
            "catch-up took {:.1} s, target under {} s",
            took.as_secs_f64(),
            TARGET.as_secs()
        ));
    }

    client.close();
    drop(client);
    let rss_end = memory_mib("VmRSS:");
    drop(sim);
    println!(
        "database size: {:.1} MiB with the client open after catch-up (db + WAL + shm), \
         {:.1} MiB after close (delivered jobs keep their PDFs for sync.delivered_retention_ms, \
         30 days by default)",
        mib(size_open),
        mib(db_size(dir.path()))
    );
    println!(
        "memory: RSS {rss_end:.0} MiB after catch-up with the simulator holding every uploaded \
         PDF ({:.0} MiB of them), {:.0} MiB once it is dropped (freed heap is not all returned \
         to the OS, so a later run starts higher); process peak so far {:.0} MiB",
        mib(pdf_bytes),
        memory_mib("VmRSS:"),
        memory_mib("VmHWM:")
    );
    println!(
        "RESULT max_concurrency {concurrency}: catch-up {:.1} s (target < {} s: {}), recording \
         {:.1} s, {} requests, max in flight {}, checks {}",
        took.as_secs_f64(),
        TARGET.as_secs(),
        if took <= TARGET { "PASS" } else { "MISS" },
        recording.as_secs_f64(),
        stats.requests,
        stats.max_in_flight,
        if problems.is_empty() {
            "OK".to_string()
        } else {
            format!("FAILED: {}", problems.join("; "))
        }
    );
    dir.close().expect("remove the temp dir");
    problems
}

fn main() {
    // cargo bench passes "--bench"; numbers are the concurrencies to run.
    let mut levels: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if levels.is_empty() {
        levels = vec![4, 8];
    }
    println!(
        "Catch-up after a week offline: {SALES} sales, {SALES} receipts with ~{} KB PDFs, {} \
         returns, {} customers, {PURCHASE_ORDERS} goods receptions; simulator latency \
         {LATENCY_MS} ms per request; max_concurrency {levels:?}",
        PDF_BYTES / 1024,
        SALES / RETURN_EVERY,
        SALES / CUSTOMER_EVERY
    );
    let mut failed = Vec::new();
    for &n in &levels {
        let problems = run(n);
        if !problems.is_empty() {
            failed.push(format!("max_concurrency {n}: {}", problems.join("; ")));
        }
    }
    if !failed.is_empty() {
        eprintln!("\nFAILED:\n  {}", failed.join("\n  "));
        std::process::exit(1);
    }
}
