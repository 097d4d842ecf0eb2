//! The fuzz harnesses, one function per target (`fuzz_targets/<name>.rs` calls it).
//!
//! Each takes what the POS or Omnium could send and drives it through the same code the
//! library runs on it, checking the properties that must hold for any input:
//! - nothing panics, overflows or loops (libFuzzer reports a crash, a timeout or an OOM);
//! - a record the till accepted parses again from the JSON it stores (the worker reads it
//!   back from there) to the same value, and the Omnium JSON built from it is valid JSON;
//! - a sale's own Omnium order, read back, is recognised as that sale;
//! - a `Retry-After` pause is never longer than the contract's cap;
//! - products and levels accepted from Omnium can be read back from the local store.
//!
//! POS inputs are UTF-8 text (the C boundary refuses anything else; `c_api` fuzzes that
//! boundary itself, non-UTF-8 and all). Omnium inputs are raw bytes, as they come off the wire.

use flow_omnium::config::Config;
use flow_omnium::model::fields::{canonical_json, parse_object};
use flow_omnium::model::store_events::{
    pdf_fingerprint, Customer, GoodsReception, Pickup, Receipt, StockCount,
};
use flow_omnium::model::{Cancellation, Defaults, Return, Sale};
use flow_omnium::omnium::back_office;
use flow_omnium::omnium::catalog::{self, CatalogScope, Page};
use flow_omnium::omnium::orders::{self, OrderContext};
use flow_omnium::omnium::transport::{HttpRequest, HttpResponse, NetError, Transport};
use flow_omnium::omnium::{classify, parse_retry_after, OmniumApi, MAX_RETRY_AFTER_MS};
use flow_omnium::store::{PushLevel, Store};
use flow_omnium::{views, Client};
use serde_json::{json, Value};
use std::ffi::{c_char, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

fn defaults() -> Defaults {
    Defaults {
        store_id: "oslo-1".into(),
        currency: "NOK".into(),
    }
}

/// A sale recorded at the till, for returns, cancellations and read-backs to refer to.
pub const SALE: &str = r#"{"id":"S-1","created_at":"2026-11-28T10:15:00+01:00",
 "lines":[{"line_id":"1","sku":"SKU-1","name":"Item","quantity":2,"unit_price":10000,"tax_rate":25},
          {"line_id":"2","sku":"SKU-2","quantity":0.5,"unit_price":1999,"discount":100,"tax_rate":15}],
 "payments":[{"id":"P1","method":"Card","amount":20900,"transaction_id":"tx-1"}]}"#;

fn recorded_sale() -> Sale {
    let mut v = parse_object(SALE, "sale").expect("the sample sale is JSON");
    Sale::normalize(&mut v, &defaults());
    Sale::parse(&v).expect("the sample sale is valid")
}

/// An Omnium click & collect order for this store, as Omnium sends it.
pub const OMNIUM_ORDER: &str = r#"{"id":"WEB-1","orderType":"ClickAndCollect","status":"New",
 "storeId":"oslo-1","billingCurrency":"NOK","modified":"2026-11-28T09:00:00Z",
 "customerName":"Kari","customerEmail":"kari@example.com",
 "orderForm":{"lineItems":[{"lineItemId":"1","code":"SKU-1","quantity":2,"placedPrice":100},
                           {"lineItemId":"2","code":"SKU-2","quantity":1,"placedPrice":19.99}]}}"#;

/// The stored JSON of an accepted record, parsed again as the worker will.
fn stored(value: &Value) -> Value {
    let text = canonical_json(value);
    serde_json::from_str(&text).expect("canonical_json writes JSON")
}

fn assert_json(bytes: &[u8], what: &str) {
    if let Err(e) = serde_json::from_slice::<Value>(bytes) {
        panic!("{what} is not JSON: {e}");
    }
}

pub fn sale(data: &[u8]) {
    let Some(s) = text(data) else { return };
    // The one-pass reader `fo_record_sale` uses agrees with reading the JSON into a tree:
    // the same error, or the same sale and byte for byte the same stored form.
    let read = Sale::read(s, &defaults());
    let mut value = match parse_object(s, "sale") {
        Ok(value) => value,
        Err(e) => {
            let got = read.expect_err("a sale the tree reader refuses");
            assert_eq!(got.to_string(), e.to_string());
            return;
        }
    };
    Sale::normalize(&mut value, &defaults());
    let sale = match Sale::parse(&value) {
        Ok(sale) => sale,
        Err(e) => {
            let got = read.expect_err("a sale the tree reader refuses");
            assert_eq!(got.to_string(), e.to_string());
            return;
        }
    };
    let (read_sale, canonical) = read.expect("a sale the tree reader accepts");
    assert_eq!(read_sale, sale);
    assert_eq!(canonical, canonical_json(&value), "the stored form");
    let again = Sale::parse(&stored(&value)).expect("an accepted sale parses from its stored JSON");
    assert_eq!(again, sale, "the stored sale reads back the same");
    let ctx = OrderContext {
        market_id: "NOR",
        terminal_id: Some("t01"),
    };
    let body = orders::pos_order_json(&sale, &ctx);
    assert_json(&body, "the PosOrders body");
    let order: orders::OmniumOrder =
        serde_json::from_slice(&body).expect("the sale's own order reads as an Omnium order");
    if let Err(e) = orders::matches_sale(&order, &sale, ctx.terminal_id) {
        panic!("the sale's own order read back is not recognised: {e}");
    }
    let _ = orders::is_canceled(&order);
}

pub fn return_(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let Ok(mut value) = parse_object(s, "return") else {
        return;
    };
    Return::normalize(&mut value);
    let Ok(ret) = Return::parse(&value) else {
        return;
    };
    let again =
        Return::parse(&stored(&value)).expect("an accepted return parses from its stored JSON");
    assert_eq!(again, ret, "the stored return reads back the same");
    let sale = recorded_sale();
    let _ = ret.check_against(&sale, &[]);
    let _ = ret.check_against(&sale, std::slice::from_ref(&ret));
    assert_json(
        &orders::return_json(&ret, "oslo-1", "NOK"),
        "the return body",
    );
}

pub fn cancellation(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let Ok(value) = parse_object(s, "cancellation") else {
        return;
    };
    let Ok(c) = Cancellation::parse(&value) else {
        return;
    };
    let again = Cancellation::parse(&stored(&value))
        .expect("an accepted cancellation parses from its stored JSON");
    assert_eq!(again, c, "the stored cancellation reads back the same");
    let _ = c.check_against(&recorded_sale());
}

/// The receipt JSON up to the first NUL byte, the PDF after it.
pub fn receipt(data: &[u8]) {
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (json_part, pdf) = (&data[..cut], data.get(cut + 1..).unwrap_or(&[]));
    let Some(s) = text(json_part) else { return };
    let Ok(mut value) = parse_object(s, "receipt") else {
        return;
    };
    Receipt::normalize(&mut value, "NOK");
    let Ok(r) = Receipt::parse(&value) else {
        return;
    };
    let again =
        Receipt::parse(&stored(&value)).expect("an accepted receipt parses from its stored JSON");
    assert_eq!(again, r, "the stored receipt reads back the same");
    if Receipt::check_pdf(pdf).is_ok() {
        let _ = pdf_fingerprint(pdf);
    }
    let invoice = back_office::invoice_json(&r, "oslo-1", "NOR");
    assert_json(invoice.to_string().as_bytes(), "the invoice");
}

pub fn customer(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let Ok(value) = parse_object(s, "customer") else {
        return;
    };
    let Ok(c) = Customer::parse(&value) else {
        return;
    };
    let again =
        Customer::parse(&stored(&value)).expect("an accepted customer parses from its stored JSON");
    assert_eq!(again, c, "the stored customer reads back the same");
    // Out to Omnium and back into the till's shape, as an inbound customer would come.
    let omnium = back_office::customer_json(&c, "NOR");
    let read: back_office::OmniumCustomer =
        serde_json::from_value(omnium).expect("a customer we send reads back as Omnium's");
    for business in [false, true] {
        let _ = back_office::local_customer(&read, business);
    }
}

pub fn goods_reception(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let Ok(mut value) = parse_object(s, "goods_reception") else {
        return;
    };
    GoodsReception::normalize(&mut value, "oslo-1");
    let Ok(r) = GoodsReception::parse(&value) else {
        return;
    };
    let again = GoodsReception::parse(&stored(&value))
        .expect("an accepted goods reception parses from its stored JSON");
    assert_eq!(again, r, "the stored goods reception reads back the same");
    let body = back_office::goods_reception_json(&r);
    assert_json(body.to_string().as_bytes(), "the goods reception body");
}

pub fn stock_count(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let Ok(value) = parse_object(s, "stock_count") else {
        return;
    };
    let Ok(count) = StockCount::parse(&value) else {
        return;
    };
    let levels: Vec<PushLevel> = count
        .items
        .iter()
        .map(|(sku, quantity)| PushLevel {
            sku: sku.clone(),
            warehouse_id: count.warehouse_id.clone(),
            quantity: *quantity,
            counted_at_ms: count.counted_at.timestamp_millis(),
        })
        .collect();
    let body = back_office::inventory_json(&levels);
    assert_json(body.to_string().as_bytes(), "the inventory body");
}

pub fn pickup(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let Ok(value) = parse_object(s, "pickup") else {
        return;
    };
    let Ok(p) = Pickup::parse(&value) else {
        return;
    };
    let again =
        Pickup::parse(&stored(&value)).expect("an accepted pickup parses from its stored JSON");
    assert_eq!(again, p, "the stored pickup reads back the same");
    let omnium: orders::OmniumOrder = serde_json::from_str(OMNIUM_ORDER).expect("sample order");
    let mut local = back_office::local_order(&omnium, "NOK");
    if let Ok((status, targets)) = views::apply_pickup(&mut local, &p) {
        assert!(
            !status.is_empty(),
            "a pickup leaves the order with a status"
        );
        let _ = targets.to_string();
    }
}

/// `fo_product_search`'s query and the filters of `fo_orders_list`/`fo_purchase_orders_list`.
pub fn search_query(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(q) = views::search_query(s) {
        assert!(q.limit >= 1 && u64::from(q.limit) <= views::MAX_SEARCH_LIMIT);
    }
    let _ = views::orders_filter(s);
    let _ = views::purchase_orders_filter(s);
}

pub fn config(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let _ = Config::from_json(s);
}

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

/// Where the targets that need a database keep it (default: the temp directory). A test
/// replaying seeds sets it to a directory it removes afterwards; call before any target.
pub fn set_scratch_dir(dir: PathBuf) {
    let _ = SCRATCH.set(dir);
}

/// A private directory for the targets that need a database (the library refuses a
/// directory every account can write, such as /tmp itself).
fn private_dir(name: &str) -> PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    let base = SCRATCH.get_or_init(std::env::temp_dir);
    let dir = base.join(format!("fo-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .expect("create a private directory for the fuzz database");
    dir
}

/// A config whose Omnium is never contacted (`autostart` false: no worker runs).
fn offline_config(db: &std::path::Path) -> String {
    json!({
        "database_path": db.to_str().expect("temp paths are UTF-8"),
        "store_id": "oslo-1", "market_id": "NOR", "currency": "NOK", "terminal_id": "t01",
        "stock_master": "flow",
        "omnium": {"base_url": "http://127.0.0.1:9", "client_id": "fuzz", "client_secret": "fuzz-secret"},
        "sync": {"autostart": false},
    })
    .to_string()
}

/// An Omnium event forwarded by the POS (`fo_event_notify`), into a real client.
pub fn event(data: &[u8]) {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        let db = private_dir("event").join("event.db");
        Client::open(&offline_config(&db)).expect("the fuzz client opens")
    });
    let Some(s) = text(data) else { return };
    let _ = client.event_notify(s);
}

struct Handle(*mut flow_omnium::ffi::fo_client);
// SAFETY: the client is thread-safe by contract; libFuzzer calls from one thread anyway.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

const RECEIPT: &std::ffi::CStr = c"{\"id\": \"RC-1\", \"sale_id\": \"S-1\", \"receipt_number\": \"1\", \"issued_at\": \"2026-11-28T10:15:00+01:00\", \"total\": 100, \"tax_total\": 20, \"currency\": \"NOK\"}";

/// Every export that takes a string, through the C ABI: the first byte picks the export,
/// the rest (up to a NUL) is the string, any bytes at all.
pub fn c_api(data: &[u8]) {
    use flow_omnium::ffi::*;
    static CLIENT: OnceLock<Handle> = OnceLock::new();
    let c = CLIENT
        .get_or_init(|| {
            let db = private_dir("c_api").join("c_api.db");
            let cfg = CString::new(offline_config(&db)).expect("no NUL in the config");
            let mut out = std::ptr::null_mut();
            // SAFETY: valid C string and out-pointer.
            let r = unsafe { fo_client_open(cfg.as_ptr(), &mut out) };
            assert_eq!(r as i32, 0, "the fuzz client opens");
            Handle(out)
        })
        .0;
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let cut = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let arg = CString::new(&rest[..cut]).expect("cut at the first NUL");
    let p = arg.as_ptr();
    let mut out: *mut c_char = std::ptr::null_mut();
    let o = &mut out as *mut *mut c_char;
    let pdf = b"%PDF-1.4 fuzz";
    // SAFETY: a live client, NUL-terminated strings and valid out-pointers, per the header.
    let r = unsafe {
        match which % 20 {
            0 => fo_record_sale(c, p),
            1 => fo_record_return(c, p),
            2 => fo_record_cancellation(c, p),
            3 => fo_record_receipt(c, p, pdf.as_ptr(), pdf.len()),
            4 => fo_record_customer(c, p),
            5 => fo_record_goods_reception(c, p),
            6 => fo_record_stock_count(c, p),
            7 => fo_record_pickup(c, p),
            8 => fo_event_notify(c, p),
            9 => fo_product_search(c, p, o),
            10 => fo_orders_list(c, p, o),
            11 => fo_purchase_orders_list(c, p, o),
            12 => fo_product_get(c, p, o),
            13 => fo_stock_get(c, p, o),
            14 => fo_store_get(c, p, o),
            15 => fo_order_get(c, p, o),
            16 => fo_customer_get(c, p, o),
            17 => fo_job_retry(c, p),
            18 => fo_forget_customer(c, p),
            // The bytes as the PDF of a valid receipt. (fo_client_open is not fuzzed here:
            // a valid config would create files and reach addresses of the fuzzer's choosing;
            // the `config` target parses configs, tests/hostile.rs opens hostile ones.)
            _ => fo_record_receipt(c, RECEIPT.as_ptr(), rest.as_ptr(), rest.len()),
        }
    };
    let code = r as i32;
    // SAFETY: a static NUL-terminated string per the header.
    let name = unsafe { std::ffi::CStr::from_ptr(fo_result_name(code)) };
    assert_ne!(
        name.to_bytes(),
        b"FO_UNKNOWN",
        "an undocumented result code {code}"
    );
    assert_ne!(name.to_bytes(), b"FO_PANIC", "a panic reached the boundary");
    // SAFETY: never NULL per the header.
    let msg_text = || unsafe { std::ffi::CStr::from_ptr(fo_last_error_message()) };
    assert_ne!(
        name.to_bytes(),
        b"FO_INTERNAL",
        "input the library did not foresee: {:?}",
        msg_text()
    );
    // SAFETY: never NULL per the header, valid until the next call on this thread.
    let msg = unsafe { std::ffi::CStr::from_ptr(fo_last_error_message()) };
    assert_eq!(
        code == 0,
        msg.to_bytes().is_empty(),
        "a message iff a failure"
    );
    assert!(
        msg.to_bytes().len() <= 4096,
        "an error message echoes too much input"
    );
    if code == 0 && !out.is_null() {
        // SAFETY: returned by the library on FO_OK.
        let json = unsafe { std::ffi::CStr::from_ptr(out) };
        assert_json(json.to_bytes(), "a returned string");
    }
    // SAFETY: NULL or a string the library returned.
    unsafe { fo_string_free(out) };
}

fn scope(language: Option<&str>) -> CatalogScope<'_> {
    CatalogScope {
        market_id: "NOR",
        store_id: "oslo-1",
        currency: "NOK",
        language,
        market_group: None,
        default_tax_rate: Some(25.0),
        time_zone: "Europe/Oslo".parse().expect("a time zone"),
    }
}

/// A page of products, stock levels or categories as Omnium sends it; accepted rows go
/// into a real store and must read back.
pub fn omnium_catalog(data: &[u8]) {
    static STORE: OnceLock<Store> = OnceLock::new();
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    // Each page as the pull reads it: typed, straight from the bytes. A refused page is an
    // error (never a panic); an accepted one is applied.
    let language = if mode & 1 == 0 { None } else { Some("no") };
    let scope = scope(language);
    let products: Vec<_> = Page::<catalog::Product>::parse(body, "fuzz", "products")
        .map(|page| {
            for p in &page.items {
                let _ = (p.key(), p.modified_ms());
            }
            page.items
                .iter()
                .filter_map(|p| catalog::product_rows(p, &scope))
                .collect()
        })
        .unwrap_or_default();
    let levels: Vec<_> = Page::<catalog::InventoryItem>::parse(body, "fuzz", "stock")
        .map(|page| page.items.iter().filter_map(catalog::stock_level).collect())
        .unwrap_or_default();
    let categories: Vec<_> = Page::<catalog::CategoryItem>::parse(body, "fuzz", "categories")
        .map(|page| {
            page.items
                .iter()
                .filter_map(|c| catalog::category(c, &scope))
                .collect()
        })
        .unwrap_or_default();
    if let Ok(page) = Page::<catalog::StoreItem>::parse(body, "fuzz", "stores") {
        for s in &page.items {
            let _ = serde_json::from_str::<Value>(s.raw.get()).expect("a store is JSON");
        }
    }
    if mode & 2 == 0 {
        return;
    }
    let store = STORE.get_or_init(|| {
        Store::open(&private_dir("catalog").join("catalog.db")).expect("the fuzz store opens")
    });
    let now = 1_800_000_000_000;
    if store.apply_products(&products, None).is_ok() {
        for p in &products {
            for s in &p.skus {
                let _ = store.product(&s.sku, now);
            }
        }
    }
    if store.apply_stock(&levels, None).is_ok() {
        for l in &levels {
            let read = store.stock(&l.sku, std::slice::from_ref(&l.warehouse_id));
            assert!(
                matches!(read, Ok(Some(_))),
                "an applied level reads back: {read:?}"
            );
        }
    }
    let _ = store.replace_categories(&categories, None);
    let _ = store.categories();
}

/// Orders and purchase orders as Omnium sends them (an order fetched after an event, a
/// search page, a read-back).
pub fn omnium_orders(data: &[u8]) {
    let sale = recorded_sale();
    let page = Page::<orders::OmniumOrder>::parse(data, "fuzz", "orders").unwrap_or_default();
    let one = flow_omnium::omnium::page::parse_one::<orders::OmniumOrder>(data, "fuzz", "orders");
    for order in page.items.iter().chain(one.as_ref().ok()) {
        let _ = back_office::is_for_store(order, "oslo-1", &["oslo-lager".to_string()]);
        let _ = order.modified_ms();
        let _ = orders::is_canceled(order);
        let _ = orders::has_return(order, "R-1");
        let _ = orders::line_is_canceled(order, "1");
        let _ = orders::matches_sale(order, &sale, Some("t01"));
        let mut local = back_office::local_order(order, "NOK");
        for status in ["picked_up", "ready_for_pickup", "not_collected"] {
            let pickup = json!({"id": "PU-1", "order_id": "WEB-1", "status": status,
                                "at": "2026-11-28T12:00:00Z"});
            if let Ok(p) = Pickup::parse(&pickup) {
                let _ = views::apply_pickup(&mut local, &p);
            }
        }
    }
    let pos = Page::<back_office::OmniumPurchaseOrder>::parse(data, "fuzz", "purchase_orders")
        .unwrap_or_default();
    for po in &pos.items {
        let _ = po.modified_ms();
        let _ = back_office::local_purchase_order(po).to_string();
    }
}

/// A store and a customer as Omnium sends them.
pub fn omnium_store(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let page = Page::<Value>::parse(data, "fuzz", "customers").unwrap_or_default();
    for item in page.items.into_iter().chain([v]) {
        if let Ok(c) = serde_json::from_value::<back_office::OmniumCustomer>(item.clone()) {
            let _ = back_office::local_customer(&c, false);
            let _ = back_office::local_customer(&c, true);
        }
        let _ = views::store(item).to_string();
    }
}

/// Omnium's answers as the HTTP client sees them: `[call, status hi, status lo,
/// retry-after length, retry-after…, body…]`. Call 0 fuzzes the token answer itself; the
/// others get a valid token and the fuzzed answer to their request.
struct Answer {
    token_body: Vec<u8>,
    status: u16,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl Transport for Answer {
    fn send(&self, req: &HttpRequest<'_, '_>) -> Result<HttpResponse, NetError> {
        if req.url.contains("/api/token") {
            return Ok(HttpResponse {
                status: if self.token_body.is_empty() {
                    self.status
                } else {
                    200
                },
                retry_after: self.retry_after.clone(),
                date: None,
                body: if self.token_body.is_empty() {
                    self.body.clone()
                } else {
                    self.token_body.clone()
                },
            });
        }
        Ok(HttpResponse {
            status: self.status,
            retry_after: self.retry_after.clone(),
            date: None,
            body: self.body.clone(),
        })
    }
}

pub fn omnium_http(data: &[u8]) {
    static CFG: OnceLock<Config> = OnceLock::new();
    let cfg = CFG.get_or_init(|| {
        let db = PathBuf::from("/nonexistent/never-opened.db");
        Config::from_json(&offline_config(&db)).expect("the fuzz config is valid")
    });
    let [call, hi, lo, ra_len, rest @ ..] = data else {
        return;
    };
    let status = u16::from_be_bytes([*hi, *lo]) % 600;
    let ra_len = usize::from(*ra_len).min(rest.len());
    let retry_after = (ra_len > 0).then(|| String::from_utf8_lossy(&rest[..ra_len]).into_owned());
    let body = rest[ra_len..].to_vec();
    let token_body = if call % 16 == 0 {
        Vec::new()
    } else {
        br#"{"accessToken":"fuzz-token-0123456789","expiresIn":864000}"#.to_vec()
    };
    let answer = Answer {
        token_body,
        status,
        retry_after,
        body,
    };
    let resp = HttpResponse {
        status,
        retry_after: answer.retry_after.clone(),
        date: None,
        body: answer.body.clone(),
    };
    if let Err(flow_omnium::omnium::Failure::Throttled { retry_after_ms, .. }) =
        classify(&resp, "x")
    {
        assert!(retry_after_ms <= MAX_RETRY_AFTER_MS);
    }
    let api = OmniumApi::with_transport(&cfg.omnium, std::sync::Arc::new(answer));
    let sale_body = orders::pos_order_json(
        &recorded_sale(),
        &OrderContext {
            market_id: "NOR",
            terminal_id: None,
        },
    );
    let skus = ["SKU-1".to_string()];
    let whs = ["oslo-1".to_string()];
    let s = scope(None);
    match call % 16 {
        0 => drop(api.probe()),
        1 => drop(api.get_order("S-1")),
        2 => drop(api.create_pos_order("S-1", &sale_body)),
        3 => drop(api.create_return("S-1", b"{}")),
        4 => drop(api.update_order_status("WEB-1", "PickedUp")),
        5 => drop(api.cancel_order_line("S-1", "1")),
        6 => drop(api.market_info("NOR")),
        7 => drop(api.inventory_levels(&skus, &whs)),
        8 => drop(api.scroll_next::<catalog::InventoryItem>("Inventory", "scroll-1")),
        9 => drop(api.products_scroll_start(Some(0), &s, 100)),
        10 => drop(api.categories_page(1)),
        11 => drop(api.search_stores(&whs, None)),
        12 => drop(api.get_customer("C-1")),
        13 => drop(api.invoice_has_file("RC-1", "RC-1.pdf")),
        14 => drop(api.process_goods_reception("D-1", "GR-1", &json!([]))),
        _ => drop(
            api.search_for_store::<orders::OmniumOrder>(&back_office::StoreSearch {
                resource: "Orders",
                store_ids: &["oslo-1".to_string()],
                order_type: Some("ClickAndCollect"),
                from_ms: Some(0),
                page: 0,
                take: 100,
                open_only: false,
            }),
        ),
    }
}

pub fn retry_after(data: &[u8]) {
    let header = String::from_utf8_lossy(data);
    // Against no Date, and against a Date made of the same bytes (Omnium's clock).
    for date in [None, Some(header.as_ref())] {
        let ms = parse_retry_after(Some(&header), date, Some(0));
        assert!(ms <= MAX_RETRY_AFTER_MS, "{header:?} pauses {ms} ms");
    }
}
