//! The cost of reading Omnium's product pages into the rows the till stores, alone (issue 11
//! item 10, issue 10 target 6): no network, no database.
//!
//! `cargo bench --features sim --bench parse -- dump DIR` starts the simulator with the
//! catalog bench's catalog (60,000 products, about 100,000 SKUs) and saves every page of its
//! product scroll to DIR as Omnium sent it. `cargo bench --features sim --bench parse --
//! parse DIR [PAGES]` then reads those pages (all, or the first PAGES) as the pull does and
//! prints the CPU time (this thread's, so a loaded machine stretches it little) against a
//! floor from the same run: the bytes parsed into a `serde_json::Value` tree and dropped,
//! which every parse before the typed one started with. For instruction counts run the
//! `parse` step under `valgrind --tool=callgrind` (the README, PERFORMANCE, has the command).

use flow_omnium::omnium::catalog::{product_rows, CatalogScope, Page, Product};
use flow_omnium::sim::{CatalogSpec, SimConfig, Simulator};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const PRODUCTS: usize = 60_000;
const MAX_VARIANTS: usize = 3;
const SCROLL_TAKE: usize = 1000;

const SCOPE: CatalogScope<'static> = CatalogScope {
    market_id: "NOR",
    store_id: "oslo-1",
    currency: "NOK",
    language: Some("no"),
    market_group: None,
    default_tax_rate: Some(25.0),
    time_zone: chrono_tz::Europe::Oslo,
};

/// This thread's CPU time.
fn cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn read_bytes(resp: &mut ureq::http::Response<ureq::Body>) -> Vec<u8> {
    resp.body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_vec()
        .expect("response body")
}

fn dump(dir: &Path) {
    std::fs::create_dir_all(dir).expect("the page directory");
    let sim = Simulator::start(SimConfig::default()).expect("start the simulator");
    sim.load_catalog(&CatalogSpec {
        products: PRODUCTS,
        max_variants: MAX_VARIANTS,
        ..CatalogSpec::default()
    });
    let base = sim.base_url();
    let agent = ureq::Agent::new_with_defaults();
    let token: Value = serde_json::from_slice(&read_bytes(
        &mut agent
            .post(format!(
                "{base}/api/token?clientId=sim-client&clientSecret=sim-secret&returnAsJson=true"
            ))
            .send_empty()
            .expect("token"),
    ))
    .expect("token JSON");
    let bearer = format!("Bearer {}", token["accessToken"].as_str().expect("token"));
    let mut body = read_bytes(
        &mut agent
            .post(format!("{base}/api/Products/Scroll"))
            .header("Authorization", &bearer)
            .send_json(json!({"marketId": "NOR", "sortOrder": "ModifiedAscending",
                              "take": SCROLL_TAKE}))
            .expect("POST /api/Products/Scroll"),
    );
    let mut n = 0;
    loop {
        let page: Value = serde_json::from_slice(&body).expect("a page");
        if page["result"].as_array().is_none_or(Vec::is_empty) {
            break;
        }
        std::fs::write(dir.join(format!("page-{n:04}.json")), &body).expect("write a page");
        n += 1;
        let id = page["scrollId"].as_str().expect("scrollId").to_string();
        body = read_bytes(
            &mut agent
                .get(format!("{base}/api/Products/Scroll/{id}"))
                .header("Authorization", &bearer)
                .call()
                .expect("GET /api/Products/Scroll/{id}"),
        );
    }
    println!("saved {n} pages to {}", dir.display());
}

/// The pull's reading of a page: typed items straight from the bytes, then the rows.
fn rows(body: &[u8]) -> (usize, usize) {
    let page = Page::<Product>::parse(body, "GET /api/Products/Scroll", "products")
        .expect("a page of products");
    let rows: Vec<_> = page
        .items
        .iter()
        .filter_map(|p| product_rows(p, &SCOPE))
        .collect();
    (page.items.len(), rows.iter().map(|r| r.skus.len()).sum())
}

fn parse(dir: &Path, limit: usize) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("the page directory")
        .map(|e| e.expect("an entry").path())
        .collect();
    files.sort();
    files.truncate(limit);
    let pages: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("a page"))
        .collect();
    let bytes: usize = pages.iter().map(Vec::len).sum();
    let start = cpu();
    let mut floor_items = 0;
    for body in &pages {
        let v: Value = serde_json::from_slice(body).expect("JSON");
        floor_items += v["result"].as_array().map_or(0, Vec::len);
    }
    let floor = cpu() - start;
    let start = cpu();
    let (mut products, mut skus) = (0, 0);
    for body in &pages {
        let (p, s) = rows(body);
        products += p;
        skus += s;
    }
    let ours = cpu() - start;
    assert_eq!(products, floor_items);
    println!(
        "{} pages, {:.1} MB, {products} products, {skus} SKUs",
        pages.len(),
        bytes as f64 / 1e6
    );
    println!(
        "  floor: serde_json::Value tree of each page   {:>7.3} s CPU",
        floor.as_secs_f64()
    );
    println!(
        "  ours:  typed page + product_rows             {:>7.3} s CPU  ({:.2}x the floor)",
        ours.as_secs_f64(),
        ours.as_secs_f64() / floor.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.as_slice() {
        [cmd, dir] if cmd == "dump" => dump(Path::new(dir)),
        [cmd, dir] if cmd == "parse" => parse(Path::new(dir), usize::MAX),
        [cmd, dir, n] if cmd == "parse" => parse(Path::new(dir), n.parse().expect("PAGES")),
        _ => println!("usage: parse (dump DIR | parse DIR [PAGES]); nothing to do"),
    }
}
