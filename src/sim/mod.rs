//! An Omnium OMS simulator: a loopback HTTP server speaking the subset of Omnium's REST API a POS
//! integration uses (token, PosOrders, order reads, returns, status updates, line cancels), with fault
//! injection (errors, 429s, timeouts, resets, "committed but the answer got lost"), a "down" mode and
//! counters so tests, the demo and benchmarks can check what a client really did.
//!
//! The read side a POS pulls is there too: product scroll with deltas (`POST /api/Products/Scroll`,
//! `GET /api/Products/Scroll/{id}`), `GET /api/ProductCategories`, `POST /api/Stores/SearchStores`,
//! `GET /api/Markets`, `POST /api/Inventory/Search`, `GET /api/Inventory/Scroll/{id}` and
//! `GET /api/Inventory/{sku}?warehouseIds=` (by id: never behind the search index), over a
//! generated, deterministic Norwegian retail catalog ([`Simulator::load_catalog`]). Every `modified`
//! comes from a strictly increasing clock, so high-water marks can be tested exactly.
//!
//! The rest of a POS integration: web orders placed "online" ([`Simulator::add_web_order`], with
//! the Omnium event payloads they emit, [`Simulator::take_events`]), `POST /api/Orders/Search`,
//! Click & Collect status changes and `POST /api/Orders/{id}/OrderLinesUpdate`; invoices
//! (`PUT /api/Invoices/UpdateInvoice`, `POST /api/Invoices/{id}/AddFileToInvoice`,
//! `GET /api/Invoices/{id}`); customers (`PUT /api/{Private|Business}Customers/AddOrUpdateMany`,
//! `GET /api/{Private|Business}Customers/{id}`); purchase orders (`POST /api/PurchaseOrders/Search`,
//! `GET /api/PurchaseOrders/{id}`) with goods reception
//! (`POST /api/Deliveries/{deliveryId}/ProcessGoodsReception`); and `PUT /api/Inventory/UpdateMany`.
//!
//! Control endpoints outside `/api` (no auth): `GET /__sim/stats`, `POST /__sim/faults`,
//! `POST /__sim/down` and `GET /__sim/orders/{id}`.

mod back_office;
mod catalog;
#[cfg(test)]
mod catalog_tests;
#[cfg(test)]
mod flows_tests;
mod http;
mod limits;
mod orders_in;
mod state;
#[cfg(test)]
mod tests;
mod vocab;

use crate::clock::Clock as _;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use limits::{Limits, TillStats};

use http::{lock, Handler, Outcome, Request, Response, Server, ServerCtl};
use state::{Route, State};

/// How the simulated tenant is set up.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Token lifetime in seconds, sent as `expiresIn`.
    pub token_ttl_secs: i64,
    /// Markets a PosOrder's `marketId` may name.
    pub markets: Vec<String>,
    /// Stores a PosOrder's `storeId` may name.
    pub stores: Vec<String>,
    /// Added to every /api request.
    pub latency_ms: u64,
    /// A new order stays "Queued" (and refuses updates with 409) for this long.
    pub queued_ms: u64,
    /// A product or inventory scroll expires after this long without a GET.
    pub scroll_ttl_ms: u64,
    /// Adversarial behaviour Omnium does not promise to avoid (issue 8); switchable at runtime
    /// with [`Simulator::set_modes`].
    pub modes: SimModes,
}

/// Ways the simulated Omnium is less kind than the default one. Each is allowed by what
/// Omnium documents (or does not document); exactly-once must hold under all of them.
#[derive(Clone, Debug, PartialEq)]
pub struct SimModes {
    /// A repeated `PUT /api/Orders/PosOrders` is refused ("already exists"). Off: it is an
    /// upsert that applies the order's effects (stock) again, counted in
    /// `SimStats::orders_reapplied`.
    pub dedup_orders: bool,
    /// A return repeating an `rmaNumber` is refused. Off: it is applied again as another
    /// return form, counted in `SimStats::returns_reapplied`.
    pub dedup_returns: bool,
    /// With `dedup_orders` / `dedup_returns` on, the repeat is refused with a plain 400 that
    /// does not say "already exists" (a duplicate check worded differently, or a validation
    /// error on the resend): the client cannot tell it from a rejection of the content.
    pub plain_duplicate_refusal: bool,
    /// For this long after a write to an order, `GET /api/Orders/{id}` serves the order as
    /// it was before the write (404 for an order just created): a lagging read model.
    pub stale_reads_ms: u64,
    /// Writes answer 503 (applying nothing) while reads are served.
    pub write_outage: bool,
    /// Every answer carries a `Date` header this far from the real time, and a 429's
    /// `Retry-After` is then an HTTP date on that skewed clock.
    pub date_skew_ms: Option<i64>,
    /// The inventory's clock runs this far from the orders' (ms): a sale's or restocked
    /// return's stock change is stamped `modified + offset`, earlier (negative) or later
    /// than the order's own `modified`. Omnium documents no ordering between the two.
    pub stock_stamp_offset_ms: i64,
}

impl Default for SimModes {
    /// Deduplicating, unless the environment says `FO_SIM_DEDUP=off` (CI runs the
    /// end-to-end tests both ways); inventory stamped `FO_SIM_STOCK_STAMP_OFFSET_MS` from
    /// orders (default 0).
    fn default() -> SimModes {
        let dedup = std::env::var("FO_SIM_DEDUP").map_or(true, |v| v != "off");
        SimModes {
            dedup_orders: dedup,
            dedup_returns: dedup,
            plain_duplicate_refusal: false,
            stale_reads_ms: 0,
            write_outage: false,
            date_skew_ms: None,
            // CI runs the inbound end-to-end tests again with inventory stamped apart.
            stock_stamp_offset_ms: std::env::var("FO_SIM_STOCK_STAMP_OFFSET_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            token_ttl_secs: 864_000,
            markets: vec!["NOR".into()],
            stores: vec!["oslo-1".into(), "bergen-1".into()],
            latency_ms: 0,
            queued_ms: 0,
            scroll_ttl_ms: 300_000,
            modes: SimModes::default(),
        }
    }
}

/// Counters of what the simulator saw and did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimStats {
    /// Every HTTP request received (token, faulted and control requests included).
    pub requests: u64,
    /// Requests per route, e.g. "PUT /api/Orders/PosOrders" or "GET /api/Orders/{id}".
    pub by_route: BTreeMap<String, u64>,
    pub tokens_issued: u64,
    /// 401s answered.
    pub unauthorized: u64,
    pub orders_created: u64,
    /// PUT PosOrders for an id that already exists.
    pub duplicate_orders_rejected: u64,
    /// PUT PosOrders for an id that already exists, applied again (`dedup_orders` off): each
    /// is a sale counted twice.
    pub orders_reapplied: u64,
    pub returns_created: u64,
    pub duplicate_returns_rejected: u64,
    /// Returns repeating an `rmaNumber`, applied again (`dedup_returns` off).
    pub returns_reapplied: u64,
    /// Requests applied after the client had given up on them (`ApplyAfterTimeout`).
    pub applied_late: u64,
    /// Status changes to an "OrderCanceled*" status plus line cancels that changed something.
    pub cancellations: u64,
    pub faults_injected: u64,
    /// 429s answered by the rate limits ([`Simulator::set_limits`]; injected faults not included).
    pub throttled: u64,
    /// Non-control requests that arrived while the last 429's Retry-After window was still open.
    pub requests_while_paused: u64,
    /// Most /api requests handled at the same time.
    pub max_in_flight: u64,
    /// Scroll ids handed out (product scrolls always, inventory searches only when they did not fit).
    pub scrolls_started: u64,
    /// Most scrolls open at once (started, not yet answered with an empty page, not expired).
    pub max_open_scrolls: u64,
    /// Scroll GETs for an unknown, finished or expired scroll id (answered 404).
    pub expired_scroll_requests: u64,
    /// Products sent in product scroll pages.
    pub products_served: u64,
    /// Inventory items sent in inventory search/scroll pages.
    pub stock_items_served: u64,
    /// Orders sent in `POST /api/Orders/Search` pages, POS orders among them.
    pub orders_served: u64,
    pub pos_orders_served: u64,
    /// Status changes and line updates refused because the order was already cancelled.
    pub rejected_on_cancelled: u64,
    /// `OrderLinesUpdate` requests applied.
    pub line_updates: u64,
    /// `UpdateInvoice` for a new invoice id.
    pub invoices_created: u64,
    /// `UpdateInvoice` for an invoice id that already existed.
    pub invoice_updates: u64,
    /// Files attached with `AddFileToInvoice`.
    pub invoice_files_added: u64,
    /// Customer `AddOrUpdateMany` batches applied (private and business).
    pub customer_batches: u64,
    /// Customers created or changed by those batches (unchanged ones are not counted).
    pub customers_upserted: u64,
    /// Goods receptions applied.
    pub goods_receptions: u64,
    /// Goods receptions refused because a `goodsReceptionId` had been processed before.
    pub duplicate_goods_receptions: u64,
    /// `PUT /api/Inventory/UpdateMany` requests applied.
    pub inventory_update_calls: u64,
    /// Inventory items those requests created or changed.
    pub inventory_items_updated: u64,
}

/// What [`Simulator::load_catalog`] generates; everything follows from `seed`.
#[derive(Clone, Debug)]
pub struct CatalogSpec {
    pub products: usize,
    /// Products with variants get 1..=max_variants of them (0 = no product has variants).
    pub max_variants: usize,
    pub seed: u64,
    /// Product content language, e.g. "no".
    pub language: String,
    /// Warehouses that get inventory items, e.g. ["oslo-1", "oslo-lager"].
    pub warehouses: Vec<String>,
    pub categories: usize,
}

impl Default for CatalogSpec {
    fn default() -> Self {
        CatalogSpec {
            products: 100,
            max_variants: 3,
            seed: 1,
            language: "no".into(),
            warehouses: vec!["oslo-1".into(), "oslo-lager".into()],
            categories: 20,
        }
    }
}

/// Counts of what a catalog load produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogSummary {
    pub products: usize,
    /// Sellable units: variants, plus products without variants.
    pub skus: usize,
    pub categories: usize,
    pub stock_items: usize,
}

/// Where a redirect fault sends the client by default: a "captive portal" page.
pub const PORTAL_PATH: &str = "/__sim/portal";

/// A fault to inject into matching requests.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Only requests whose path contains this (case-insensitive).
    pub path_contains: Option<String>,
    /// Only requests with this method.
    pub method: Option<String>,
    pub kind: FaultKind,
    /// How many matching requests it affects.
    pub count: u32,
}

#[derive(Clone, Debug)]
pub enum FaultKind {
    /// Answer with this status and body "injected fault"; nothing applied.
    Status(u16),
    /// 429 with `Retry-After`; nothing applied.
    TooManyRequests { retry_after_secs: u64 },
    /// Read the request, apply nothing, stay silent for `hold_ms`, then close.
    Timeout { hold_ms: u64 },
    /// Read the request, apply nothing, send a TCP RST.
    Reset,
    /// Apply the request fully, then answer this status instead of the real answer.
    CommitThenStatus(u16),
    /// Apply the request, then send a TCP RST.
    CommitThenReset,
    /// Apply the request, then stay silent for `hold_ms` and close.
    CommitThenTimeout { hold_ms: u64 },
    /// Answer with a redirect (`status`, 3xx) to `location`, as a captive portal on store
    /// Wi-Fi does; nothing applied. `/__sim/portal` answers any method with 200 and HTML.
    Redirect { status: u16, location: String },
    /// Stay silent for `hold_ms` and close, then apply the request (Omnium finished it after
    /// the client gave up).
    ApplyAfterTimeout { hold_ms: u64 },
    /// Answer 200 with this JSON body instead of the real answer (a hostile or broken
    /// Omnium: a page over its cap, a field of the wrong type, deep nesting); nothing applied.
    Body(FaultBody),
}

/// The body a [`FaultKind::Body`] answers with (shown by its length only: it can be large).
#[derive(Clone)]
pub struct FaultBody(pub Arc<Vec<u8>>);

impl std::fmt::Debug for FaultBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} bytes)", self.0.len())
    }
}

impl FaultBody {
    fn response(&self) -> Response {
        let mut r = Response::text(200, "");
        r.headers = vec![("Content-Type".into(), "application/json".into())];
        r.body = self.0.as_ref().clone();
        r
    }
}

impl Fault {
    pub fn new(kind: FaultKind, count: u32) -> Fault {
        Fault {
            path_contains: None,
            method: None,
            kind,
            count,
        }
    }

    pub fn on_path(mut self, s: &str) -> Fault {
        self.path_contains = Some(s.to_string());
        self
    }

    pub fn on_method(mut self, m: &str) -> Fault {
        self.method = Some(m.to_string());
        self
    }
}

struct Shared {
    state: Mutex<State>,
    /// In process: Omnium is unreachable (every request "refused").
    down: std::sync::atomic::AtomicBool,
    /// In process: requests to apply once the simulator's time reaches the instant
    /// (`ApplyAfterTimeout`), in order.
    late: Mutex<Vec<(Instant, Route, Request)>>,
    /// In process: each request and what became of it, until taken.
    journal: Mutex<Vec<String>>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// /api requests subject to the limits (all but the token endpoint) being handled now.
    limited_in_flight: AtomicU64,
}

/// Counts a request against the concurrency limit for as long as it lives.
struct Limited<'a>(&'a Shared, u64);

impl<'a> Limited<'a> {
    fn enter(shared: &'a Shared) -> Limited<'a> {
        let now = shared.limited_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        Limited(shared, now)
    }
}

impl Drop for Limited<'_> {
    fn drop(&mut self) {
        self.0.limited_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a request as in flight for as long as it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> InFlight<'a> {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running simulator; dropping it shuts it down.
pub struct Simulator {
    shared: Arc<Shared>,
    /// `None` in process (no sockets: the deterministic simulation).
    server: Option<Server>,
}

impl Simulator {
    /// Starts on 127.0.0.1 with an OS-chosen port.
    pub fn start(cfg: SimConfig) -> std::io::Result<Simulator> {
        Simulator::start_on(0, cfg)
    }

    /// Starts on 127.0.0.1:`port` (0 = any).
    pub fn start_on(port: u16, cfg: SimConfig) -> std::io::Result<Simulator> {
        let shared = Arc::new(Shared::new(State::new(cfg)));
        let s = shared.clone();
        let handler: Handler = Arc::new(move |req, ctl| handle(&s, req, ctl).dated(&s));
        let server = Server::start(port, handler)?;
        Ok(Simulator {
            shared,
            server: Some(server),
        })
    }

    /// A simulator in this process, without sockets, on `clock`'s time, and the transport
    /// that reaches it (for [`crate::Client::open_simulated`]). Faults behave as over HTTP,
    /// except that time passes only on `clock`: a request that times out moves it by
    /// `timeout_ms` (the client's timeout), and `ApplyAfterTimeout` applies when
    /// [`Simulator::run_due`] finds its time come. The same calls give the same answers.
    pub fn in_process(
        cfg: SimConfig,
        clock: Arc<crate::clock::ManualClock>,
        timeout_ms: u64,
    ) -> (Simulator, Arc<dyn crate::omnium::transport::Transport>) {
        let mut state = State::new(cfg);
        state.time = Some((
            Instant::now(),
            clock.clone() as Arc<dyn crate::clock::Clock>,
        ));
        let shared = Arc::new(Shared::new(state));
        let transport = Arc::new(InProcess {
            shared: shared.clone(),
            epoch_wall_ms: clock.wall_ms() - clock.mono_ms(),
            clock,
            timeout_ms,
        });
        (
            Simulator {
                shared,
                server: None,
            },
            transport,
        )
    }

    /// Applies the late requests whose time has come (in process).
    pub fn run_due(&self) {
        run_due(&self.shared);
    }

    /// In process: every request since the last call and what became of it (for a trace).
    pub fn take_journal(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.shared.journal))
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    pub fn port(&self) -> u16 {
        self.server.as_ref().map_or(0, Server::port)
    }

    /// Down: connections are refused and open ones are cut. Up: listens on the same port again.
    pub fn set_down(&self, down: bool) {
        match &self.server {
            Some(s) => s.set_down(down),
            None => self.shared.down.store(down, Ordering::SeqCst),
        }
    }

    pub fn set_latency_ms(&self, ms: u64) {
        lock(&self.shared.state).cfg.latency_ms = ms;
    }

    /// Switches the adversarial modes at runtime.
    pub fn set_modes(&self, modes: SimModes) {
        lock(&self.shared.state).cfg.modes = modes;
    }

    pub fn modes(&self) -> SimModes {
        lock(&self.shared.state).cfg.modes.clone()
    }

    /// Queues a fault; faults are matched first-in first-out, one unit of `count` per request.
    pub fn inject(&self, fault: Fault) {
        if fault.count > 0 {
            lock(&self.shared.state).faults.push_back(fault);
        }
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.state).faults.clear();
    }

    /// Every PUT PosOrders for this order id answers `status` with `message` (a poison order).
    pub fn reject_order(&self, order_id: &str, status: u16, message: &str) {
        lock(&self.shared.state)
            .rejects
            .insert(order_id.to_string(), (status, message.to_string()));
    }

    /// Invalidates every token issued so far.
    /// Every token issued so far (tests look for copies of them).
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.shared.state).tokens.keys().cloned().collect()
    }

    pub fn revoke_tokens(&self) {
        lock(&self.shared.state).tokens.clear();
    }

    /// The order as a client would read it now.
    pub fn order(&self, id: &str) -> Option<Value> {
        let st = lock(&self.shared.state);
        let now = st.now();
        st.orders.get(id).map(|o| o.view(now))
    }

    /// All orders in creation order.
    pub fn orders(&self) -> Vec<Value> {
        let st = lock(&self.shared.state);
        let now = st.now();
        st.order_ids
            .iter()
            .filter_map(|id| st.orders.get(id))
            .map(|o| o.view(now))
            .collect()
    }

    pub fn stats(&self) -> SimStats {
        stats_of(&self.shared)
    }

    /// Replaces products, categories and stock with a generated catalog (one clock tick: every
    /// generated `modified` is the same instant). Open scrolls keep their snapshots.
    pub fn load_catalog(&self, spec: &CatalogSpec) -> CatalogSummary {
        lock(&self.shared.state).load_catalog(spec)
    }

    /// The product as served (the catalog language's document, else any language), by productId.
    pub fn product(&self, product_id: &str) -> Option<Value> {
        lock(&self.shared.state).catalog.product(product_id)
    }

    /// Every sellable SKU (variants, or the product itself when it has none) of active, not deleted
    /// products, sorted and without duplicates.
    pub fn sku_ids(&self) -> Vec<String> {
        lock(&self.shared.state).catalog.sku_ids()
    }

    /// Adds or replaces a product document (keyed by productId and language; `language` defaults to
    /// the catalog's, `id` to `{productId}_{language}`). Sets `modified`, keeps `created`.
    ///
    /// # Panics
    /// If `product` is not an object with a string `productId`.
    pub fn upsert_product(&self, product: Value) {
        let mut st = lock(&self.shared.state);
        let stamp = st.clock.tick();
        st.catalog.upsert_product(product, stamp);
    }

    /// [`Simulator::upsert_product`] with `modified` set to `modified_ms` whatever the clock says
    /// (a product stamped in the future by a skewed integration, say). Searches see it as
    /// written now.
    pub fn upsert_product_modified_at(&self, product: Value, modified_ms: i64) {
        let mut st = lock(&self.shared.state);
        let now = st.clock.tick();
        st.catalog.upsert_product_at(product, modified_ms, now);
    }

    /// Changes name and market-wide NOR price of `n` products chosen deterministically (from the
    /// catalog seed and the calls so far), one clock tick each; returns their productIds in change order.
    pub fn touch_products(&self, n: usize) -> Vec<String> {
        let mut st = lock(&self.shared.state);
        let st = &mut *st;
        st.catalog.touch_products(n, &mut st.clock)
    }

    /// Sets `isActive: false` on the product and its variants and bumps `modified`.
    pub fn deactivate_product(&self, product_id: &str) {
        let mut st = lock(&self.shared.state);
        let st = &mut *st;
        st.catalog.deactivate_product(product_id, &mut st.clock);
    }

    /// Marks the product deleted (`status` "Deleted", `isDeleted` true) and bumps `modified`; delta
    /// queries (with `modifiedFrom`) still serve it, full scrolls do not.
    pub fn delete_product(&self, product_id: &str) {
        let mut st = lock(&self.shared.state);
        let st = &mut *st;
        st.catalog.delete_product(product_id, &mut st.clock);
    }

    /// Omnium's search index shows every write this long after it was made, with the write's
    /// original `modified` (until then searches see the version before it): products, stock
    /// and orders (`POST /api/Orders/Search`, `GetOrdersForPickUpPoint`). `GET` by id is
    /// never late. 0 (the default) turns the lag off for later writes (waiting ones keep theirs).
    pub fn set_index_lag_ms(&self, lag_ms: u64) {
        let lag = i64::try_from(lag_ms).unwrap_or(i64::MAX);
        lock(&self.shared.state).catalog.set_index_lag(lag);
    }

    /// The search index catches up now: every write still waiting out its lag becomes
    /// visible (with its original `modified`), as if the lag had passed. Lets a test hold a
    /// write back for as long as it needs, whatever the machine's load, then release it.
    pub fn index_catch_up(&self) {
        lock(&self.shared.state).catalog.refresh_index(i64::MAX);
    }

    /// Gives every loaded product about `bytes` of what a rich catalog carries and a till
    /// never reads (long descriptions, custom properties, tags, the inventory snapshot),
    /// without changing `modified`: a full page of 1,000 such products can exceed the
    /// client's response cap unless the scroll's `excludedFields` leave them out.
    pub fn enrich_products(&self, bytes: usize) {
        lock(&self.shared.state).catalog.enrich_products(bytes);
    }

    /// Whether each product's document is rendered once per set of exclusions and its
    /// bytes kept for later scrolls (off by default). A benchmark turns it on and reads the
    /// catalog once before timing, so the simulator's JSON rendering does not share the
    /// client's cores while it is timed.
    pub fn keep_rendered_products(&self, on: bool) {
        lock(&self.shared.state).catalog.keep_rendered = on;
    }

    /// Whether the product scroll honours `excludedFields` (the default). Off, it serves
    /// every field whatever the request asks: an Omnium that ignores exclusions.
    pub fn set_exclusions_honoured(&self, on: bool) {
        lock(&self.shared.state).catalog.honour_exclusions = on;
    }

    /// Deletes a product for good (every language), as `DELETE /api/Products/{id}` does: no
    /// search, full or delta, returns it again.
    pub fn hard_delete_product(&self, product_id: &str) {
        let mut st = lock(&self.shared.state);
        let stamp = st.clock.tick();
        st.catalog.hard_delete_product(product_id, stamp);
    }

    /// Takes the product out of a market (`marketIds`) without changing its `modified`, the
    /// way a market assignment elsewhere in Omnium does: a scroll filtered on that market
    /// stops returning it, and no delta announces it.
    pub fn remove_product_from_market(&self, product_id: &str, market_id: &str) {
        lock(&self.shared.state)
            .catalog
            .edit_product_silently(product_id, |doc| {
                if let Some(m) = doc["marketIds"].as_array_mut() {
                    m.retain(|x| x.as_str() != Some(market_id));
                }
            });
    }

    /// Deletes an inventory item for good (`DELETE /api/Inventory/{sku}?warehouseIds=`).
    pub fn delete_stock(&self, sku: &str, warehouse: &str) {
        let mut st = lock(&self.shared.state);
        let stamp = st.clock.tick();
        st.catalog.delete_stock(sku, warehouse, stamp);
    }

    /// Sets an inventory item's absolute `inventory` and `reservedInventory` (creating it if missing).
    pub fn set_stock(&self, sku: &str, warehouse: &str, inventory: f64, reserved: f64) {
        let mut st = lock(&self.shared.state);
        let stamp = st.clock.tick();
        st.catalog
            .set_stock(sku, warehouse, inventory, reserved, stamp);
    }

    /// `(inventory, reservedInventory)` of an item, `None` when there is no item.
    pub fn stock(&self, sku: &str, warehouse: &str) -> Option<(f64, f64)> {
        lock(&self.shared.state).catalog.stock(sku, warehouse)
    }

    /// Adds or replaces a store document by `id`; sets `modified`, keeps `created`.
    ///
    /// # Panics
    /// If `store` is not an object with a string `id`.
    pub fn upsert_store(&self, store: Value) {
        let mut st = lock(&self.shared.state);
        let stamp = st.clock.tick();
        st.catalog.upsert_store(store, stamp);
    }

    /// Every open scroll id becomes invalid (the next GET on it answers 404).
    pub fn expire_scrolls(&self) {
        lock(&self.shared.state).catalog.scrolls.clear();
    }

    /// Largest page a scroll serves (default 1000); a request's `take` is capped at it.
    pub fn set_scroll_page_size(&self, n: usize) {
        lock(&self.shared.state).catalog.page_size = n.max(1);
    }

    /// Stores an order placed online (`orderType` "ClickAndCollect" or "Online"): status "New",
    /// `created`/`modified`, a `customerPickupDeadline` 3 days ahead for Click & Collect, zero
    /// line quantities, no returns. Returns the "Order added" event payload Omnium emits (also
    /// kept for [`Simulator::take_events`]).
    ///
    /// # Panics
    /// If `order` is not an object with a non-empty string `id`, or the id already exists.
    pub fn add_web_order(&self, order: Value) -> Value {
        lock(&self.shared.state).add_web_order(order)
    }

    /// A realistic web order to pass to [`Simulator::add_web_order`]: id `WEB-1001`, `WEB-1002`, …,
    /// a private customer `C-<n>` (created in the simulator now), and `lines` lines on SKUs of the
    /// loaded catalog (`SKU-1`, … when none is loaded). Nothing is stored but the customer.
    pub fn new_web_order(&self, order_type: &str, store_id: &str, lines: usize) -> Value {
        lock(&self.shared.state).new_web_order(order_type, store_id, lines)
    }

    /// Changes an order as another system would, bumps `modified` and emits (and returns) an
    /// "Updated" event (operationId 310100); `None` for an unknown order.
    pub fn update_web_order(&self, id: &str, f: impl FnOnce(&mut Value)) -> Option<Value> {
        lock(&self.shared.state).update_web_order(id, f)
    }

    /// Sets status "OrderCanceled" from Omnium's side (`expired`: the scheduled Click & Collect
    /// expiry, operationId 115100; else an API status update, 310101), bumps `modified` and emits
    /// (and returns) the event with `previousStatus`; `None` for an unknown order.
    pub fn cancel_order_remotely(&self, id: &str, expired: bool) -> Option<Value> {
        lock(&self.shared.state).cancel_order_remotely(id, expired)
    }

    /// Moves an order to another store (its `storeId` and its shipments' warehouses, pickup
    /// included), bumps `modified` and emits (and returns) the "Updated" event naming the new
    /// store; `None` for an unknown order.
    pub fn move_web_order(&self, id: &str, store_id: &str) -> Option<Value> {
        lock(&self.shared.state).move_web_order(id, store_id)
    }

    /// Deletes an order for good: no search or `GET` returns it again, and no event says so.
    /// False when there was no such order.
    pub fn delete_order_permanently(&self, id: &str) -> bool {
        lock(&self.shared.state).delete_order_permanently(id)
    }

    /// The order (web or POS) as a client would read it now; same as [`Simulator::order`].
    pub fn web_order(&self, id: &str) -> Option<Value> {
        self.order(id)
    }

    /// Every event emitted since the last call, oldest first.
    pub fn take_events(&self) -> Vec<Value> {
        std::mem::take(&mut lock(&self.shared.state).web.events)
    }

    /// An invoice as stored.
    pub fn invoice(&self, id: &str) -> Option<Value> {
        lock(&self.shared.state).office.invoice(id)
    }

    /// Files attached to an invoice, `(fileName, bytes)` in upload order.
    pub fn invoice_files(&self, id: &str) -> Vec<(String, Vec<u8>)> {
        lock(&self.shared.state).office.invoice_files(id)
    }

    /// A customer by `customerId`: `("private" | "business", document)`; private wins a tie.
    pub fn customer(&self, id: &str) -> Option<(String, Value)> {
        lock(&self.shared.state).office.customer(id)
    }

    /// Adds a customer or merges the given fields into it (as `AddOrUpdateMany` does).
    ///
    /// # Panics
    /// If `customer` is not an object with a non-empty string `customerId`.
    pub fn upsert_customer(&self, business: bool, customer: Value) {
        let mut st = lock(&self.shared.state);
        let stamp = st.clock.tick();
        st.office.upsert_customer(business, customer, stamp);
    }

    /// Deletes a purchase order for good: no search returns it again. False when unknown.
    pub fn delete_purchase_order(&self, id: &str) -> bool {
        lock(&self.shared.state)
            .office
            .purchase_orders
            .remove(id)
            .is_some()
    }

    /// Stores (or replaces) a purchase order; its `deliveryId` (or a line's own) is what goods
    /// reception addresses.
    ///
    /// # Panics
    /// If `po` is not an object with a non-empty string `id`.
    pub fn add_purchase_order(&self, po: Value) {
        lock(&self.shared.state).add_purchase_order(po)
    }

    /// A confirmed purchase order to pass to [`Simulator::add_purchase_order`]: id `PO-<n>`,
    /// delivery `D-<n>`, lines `PO-<n>-1`, … on catalog SKUs (`SKU-1`, … when none is loaded),
    /// received into `store_id`.
    pub fn new_purchase_order(&self, store_id: &str, lines: usize) -> Value {
        lock(&self.shared.state).new_purchase_order(store_id, lines)
    }

    pub fn purchase_order(&self, id: &str) -> Option<Value> {
        lock(&self.shared.state).office.purchase_order(id)
    }

    /// Enforces Omnium's rate limits from now on (`None`: off, the default): more than
    /// `concurrency` /api requests at once, or an empty token bucket, is answered 429 with
    /// `Retry-After` and nothing applied. The token endpoint is exempt. Turning limits on fills
    /// the bucket.
    pub fn set_limits(&self, limits: Option<Limits>) {
        lock(&self.shared.state).limiter.set(limits);
    }

    /// Per-till counters of /api requests (token endpoint excluded), kept whether or not limits
    /// are on; a till is identified by its bearer token, labelled `till-1`, `till-2`, … in order
    /// of its first request.
    pub fn till_stats(&self) -> BTreeMap<String, TillStats> {
        lock(&self.shared.state).limiter.till_stats()
    }

    pub fn reset_stats(&self) {
        let mut st = lock(&self.shared.state);
        st.limiter.reset_stats();
        st.stats = SimStats::default();
        drop(st);
        self.shared.max_in_flight.store(0, Ordering::SeqCst);
    }

    pub fn shutdown(self) {
        drop(self);
    }
}

impl Shared {
    fn new(state: State) -> Shared {
        Shared {
            state: Mutex::new(state),
            down: std::sync::atomic::AtomicBool::new(false),
            late: Mutex::new(Vec::new()),
            journal: Mutex::new(Vec::new()),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            limited_in_flight: AtomicU64::new(0),
        }
    }
}

fn run_due(shared: &Shared) {
    let now = lock(&shared.state).now();
    let due: Vec<(Instant, Route, Request)> = {
        let mut late = lock(&shared.late);
        let (due, later) = std::mem::take(&mut *late)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        *late = later;
        due
    };
    for (at, route, req) in due {
        let mut st = lock(&shared.state);
        st.as_of = Some(at);
        let r = st.apply(&route, &req);
        st.as_of = None;
        st.stats.applied_late += 1;
        lock(&shared.journal).push(format!(
            "late apply of {} {}: {}",
            req.method, req.path, r.status
        ));
    }
}

/// The in-process transport: a request goes straight to the simulator's state.
struct InProcess {
    shared: Arc<Shared>,
    clock: Arc<crate::clock::ManualClock>,
    /// Omnium's clock is the manual clock's time passing from its start (its monotonic
    /// clock), not the till's wall clock, which tests jump.
    epoch_wall_ms: i64,
    timeout_ms: u64,
}

impl crate::omnium::transport::Transport for InProcess {
    fn send(
        &self,
        r: &crate::omnium::transport::HttpRequest<'_, '_>,
    ) -> Result<crate::omnium::transport::HttpResponse, crate::omnium::transport::NetError> {
        use crate::omnium::transport::{Body, HttpResponse, NetError};
        run_due(&self.shared);
        if self.shared.down.load(Ordering::SeqCst) {
            return Err(NetError::NotSent("connection refused (simulated)".into()));
        }
        let target = match r.url.find("://") {
            Some(i) => r.url[i + 3..]
                .find('/')
                .map_or("/", |j| &r.url[i + 3 + j..]),
            None => r.url,
        };
        let mut headers = Vec::new();
        if let Some(b) = r.bearer {
            headers.push(("authorization".to_string(), format!("Bearer {b}")));
        }
        let body = match &r.body {
            None => Vec::new(),
            Some((content_type, Body::Bytes(b))) => {
                headers.push(("content-type".into(), content_type.to_string()));
                b.to_vec()
            }
            Some((content_type, Body::Stream(reader))) => {
                headers.push(("content-type".into(), content_type.to_string()));
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut *reader.borrow_mut(), &mut v)
                    .map_err(|e| NetError::NotSent(e.to_string()))?;
                v
            }
        };
        let req = Request::from_parts(r.method, target, headers, body);
        let route = Route::classify(&req);
        let mut st = lock(&self.shared.state);
        st.stats.requests += 1;
        *st.stats
            .by_route
            .entry(route.key(&req.method).into_owned())
            .or_default() += 1;
        // In `date_skew_ms` mode every answer carries Omnium's clock (off by the skew).
        let skew = st.cfg.modes.date_skew_ms;
        let answer = |resp: Response| {
            let header = |name: &str| {
                resp.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let omnium_date = |skew: i64| {
                let at = self.epoch_wall_ms + self.clock.mono_ms() + skew;
                chrono::DateTime::from_timestamp_millis(at)
                    .unwrap_or_default()
                    .format("%a, %d %b %Y %H:%M:%S GMT")
                    .to_string()
            };
            Ok(HttpResponse {
                status: resp.status,
                retry_after: header("retry-after"),
                date: header("date").or_else(|| skew.map(omnium_date)),
                body: resp.body.clone(),
            })
        };
        let timed_out = |st: std::sync::MutexGuard<'_, State>| {
            drop(st);
            self.clock.advance(self.timeout_ms as i64);
            Err(NetError::Unknown("timed out (simulated)".into()))
        };
        // A write-only outage refuses writes before anything else (no fault "commits").
        if st.cfg.modes.write_outage && route.writes() {
            lock(&self.shared.journal)
                .push(format!("{} {}: 503 (write outage)", req.method, req.path));
            return answer(Response::text(
                503,
                "Service Unavailable: writes are failing",
            ));
        }
        let Some(fault) = st.take_fault(&req, &route) else {
            let resp = st.apply(&route, &req);
            lock(&self.shared.journal)
                .push(format!("{} {}: {}", req.method, req.path, resp.status));
            return answer(resp);
        };
        lock(&self.shared.journal).push(format!(
            "{} {}: fault {:?}",
            req.method, req.path, fault.kind
        ));
        match fault.kind {
            FaultKind::Status(s) => answer(Response::text(s, "injected fault")),
            FaultKind::Body(b) => answer(b.response()),
            FaultKind::TooManyRequests { retry_after_secs } => answer(
                Response::text(429, "Too many requests")
                    .with_header("Retry-After", &retry_after_secs.to_string()),
            ),
            FaultKind::Timeout { .. } => timed_out(st),
            FaultKind::Reset => Err(NetError::Unknown("connection reset (simulated)".into())),
            FaultKind::CommitThenStatus(s) => {
                let _ = st.apply(&route, &req);
                answer(Response::text(s, "injected fault"))
            }
            FaultKind::CommitThenReset => {
                let _ = st.apply(&route, &req);
                Err(NetError::Unknown("connection reset (simulated)".into()))
            }
            FaultKind::CommitThenTimeout { .. } => {
                let _ = st.apply(&route, &req);
                timed_out(st)
            }
            FaultKind::ApplyAfterTimeout { hold_ms } => {
                let at = st.now() + Duration::from_millis(hold_ms);
                lock(&self.shared.late).push((at, route, req));
                timed_out(st)
            }
            FaultKind::Redirect { status, location } => {
                answer(Response::text(status, "Moved").with_header("Location", &location))
            }
        }
    }
}

fn stats_of(shared: &Shared) -> SimStats {
    let mut s = lock(&shared.state).stats.clone();
    s.max_in_flight = shared.max_in_flight.load(Ordering::SeqCst);
    s
}

/// Entry point for every request: counting, latency, faults, then the real work.
fn handle(shared: &Arc<Shared>, req: &Request, ctl: &Arc<ServerCtl>) -> Outcome {
    let route = Route::classify(req);
    let control = route.is_control();
    // Control traffic is the test harness, not the client under test: keep it out of the client's numbers.
    let _in_flight = (!control).then(|| InFlight::enter(shared));
    let latency = {
        let mut st = lock(&shared.state);
        st.stats.requests += 1;
        let key = route.key(&req.method);
        // get_mut first: the common case then needs no allocation.
        match st.stats.by_route.get_mut(key.as_ref()) {
            Some(n) => *n += 1,
            None => {
                st.stats.by_route.insert(key.into_owned(), 1);
            }
        }
        if !control && st.paused_until.is_some_and(|t| Instant::now() < t) {
            st.stats.requests_while_paused += 1;
        }
        st.cfg.latency_ms
    };
    if control {
        return Outcome::Respond(control_request(shared, &route, req, ctl));
    }
    let api = req.path.to_ascii_lowercase().starts_with("/api");
    let limited = (api && route != Route::Token).then(|| Limited::enter(shared));
    if let Some(l) = &limited {
        let token = req.header("Authorization").unwrap_or_default();
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        let mut st = lock(&shared.state);
        if let limits::Verdict::Throttle(secs) =
            st.limiter.admit(token, l.1, req.arrived, Instant::now())
        {
            st.stats.throttled += 1;
            let mut resp = Response::text(429, "Too many requests")
                .with_header("Retry-After", &secs.to_string());
            let (shared, token) = (Arc::downgrade(shared), token.to_string());
            resp.after_write = Some(http::AfterWrite(Arc::new(move || {
                if let Some(shared) = shared.upgrade() {
                    lock(&shared.state)
                        .limiter
                        .written(&token, secs, Instant::now());
                }
            })));
            return Outcome::Respond(resp);
        }
    }
    if latency > 0 && api {
        thread::sleep(Duration::from_millis(latency));
    }
    let mut st = lock(&shared.state);
    // A write-only outage refuses writes before anything else (no fault "commits").
    if st.cfg.modes.write_outage && route.writes() {
        return Outcome::Respond(Response::text(
            503,
            "Service Unavailable: writes are failing",
        ));
    }
    let Some(fault) = st.take_fault(req, &route) else {
        return Outcome::Respond(st.apply(&route, req));
    };
    log::debug!(
        "omnium-sim: injecting {:?} into {} {}",
        fault.kind,
        req.method,
        req.path
    );
    match fault.kind {
        FaultKind::Status(s) => Outcome::Respond(Response::text(s, "injected fault")),
        FaultKind::Body(b) => Outcome::Respond(b.response()),
        FaultKind::TooManyRequests { retry_after_secs } => {
            st.paused_until = Some(Instant::now() + Duration::from_secs(retry_after_secs));
            // With a skewed Date, Retry-After is an HTTP date on that same skewed clock.
            let retry_after = match st.cfg.modes.date_skew_ms {
                Some(skew) => http_date(skew + retry_after_secs as i64 * 1000),
                None => retry_after_secs.to_string(),
            };
            Outcome::Respond(
                Response::text(429, "Too many requests").with_header("Retry-After", &retry_after),
            )
        }
        FaultKind::Timeout { hold_ms } => Outcome::Hold(Duration::from_millis(hold_ms)),
        FaultKind::Reset => Outcome::Reset,
        FaultKind::CommitThenStatus(s) => {
            let _ = st.apply(&route, req);
            Outcome::Respond(Response::text(s, "injected fault"))
        }
        FaultKind::CommitThenReset => {
            let _ = st.apply(&route, req);
            Outcome::Reset
        }
        FaultKind::CommitThenTimeout { hold_ms } => {
            let _ = st.apply(&route, req);
            Outcome::Hold(Duration::from_millis(hold_ms))
        }
        FaultKind::Redirect { status, location } => {
            Outcome::Respond(Response::text(status, "Moved").with_header("Location", &location))
        }
        FaultKind::ApplyAfterTimeout { hold_ms } => {
            drop(st);
            let (s, req, route) = (shared.clone(), req.clone(), route.clone());
            let spawned = thread::Builder::new()
                .name("omnium-sim-late".into())
                .spawn(move || {
                    thread::sleep(Duration::from_millis(hold_ms));
                    let mut st = lock(&s.state);
                    let _ = st.apply(&route, &req);
                    st.stats.applied_late += 1;
                });
            if spawned.is_err() {
                return Outcome::Reset;
            }
            // The connection closes a little before the late apply lands.
            Outcome::Hold(Duration::from_millis(hold_ms.saturating_sub(hold_ms / 10)))
        }
    }
}

impl Outcome {
    /// In `date_skew_ms` mode, the `Date` header is on the skewed clock (otherwise the
    /// server writes the real time).
    fn dated(self, shared: &Shared) -> Outcome {
        match self {
            Outcome::Respond(r) => match lock(&shared.state).cfg.modes.date_skew_ms {
                Some(skew) => Outcome::Respond(r.with_header("Date", &http_date(skew))),
                None => Outcome::Respond(r),
            },
            other => other,
        }
    }
}

/// The time now, moved by `skew_ms`, as an HTTP date (RFC 7231 IMF-fixdate).
pub(crate) fn http_date(skew_ms: i64) -> String {
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(skew_ms);
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn control_request(
    shared: &Shared,
    route: &Route,
    req: &Request,
    ctl: &Arc<ServerCtl>,
) -> Response {
    match route {
        Route::SimPortal => {
            let mut r = Response::text(200, "<html><body>Sign in to the store Wi-Fi</body></html>");
            r.headers = vec![("Content-Type".into(), "text/html".into())];
            r
        }
        Route::SimStats => match serde_json::to_value(stats_of(shared)) {
            Ok(v) => Response::json(200, &v),
            Err(e) => Response::text(500, &e.to_string()),
        },
        Route::SimOrder(id) => match lock(&shared.state).orders.get(id) {
            Some(o) => Response::json(200, &o.view(Instant::now())),
            None => Response::text(404, "Order not found"),
        },
        Route::SimFaults => match fault_from_json(&req.body) {
            Ok(f) => {
                let mut st = lock(&shared.state);
                if f.count > 0 {
                    st.faults.push_back(f);
                }
                Response::json(200, &json!({"queuedFaults": st.faults.len()}))
            }
            Err(msg) => Response::text(400, &msg),
        },
        Route::SimDown => {
            let ms = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|v| v.get("ms").and_then(Value::as_u64));
            let Some(ms) = ms else {
                return Response::text(400, "body must be {\"ms\": <milliseconds>}");
            };
            // Go down now, sparing only this connection so the caller still gets its answer.
            ctl.set_down(true, Some(req.conn_id));
            let c = ctl.clone();
            let spawned = thread::Builder::new()
                .name("omnium-sim-down".into())
                .spawn(move || {
                    thread::sleep(Duration::from_millis(ms));
                    c.set_down(false, None);
                });
            if spawned.is_err() {
                ctl.set_down(false, None);
                return Response::text(500, "cannot start the timer thread");
            }
            let mut r = Response::json(200, &json!({"downForMs": ms}));
            r.close = true;
            r
        }
        _ => Response::text(404, "No route"),
    }
}

/// Parses the `POST /__sim/faults` body.
fn fault_from_json(body: &[u8]) -> Result<Fault, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let kind_name = v
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("kind is required")?;
    let status = || -> Result<u16, String> {
        v.get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| format!("kind '{kind_name}' needs a numeric status"))
    };
    let hold_ms = v.get("hold_ms").and_then(Value::as_u64).unwrap_or(3000);
    let kind = match kind_name {
        "status" => FaultKind::Status(status()?),
        "too_many_requests" => FaultKind::TooManyRequests {
            retry_after_secs: v
                .get("retry_after_secs")
                .and_then(Value::as_u64)
                .unwrap_or(1),
        },
        "timeout" => FaultKind::Timeout { hold_ms },
        "reset" => FaultKind::Reset,
        "commit_then_status" => FaultKind::CommitThenStatus(status()?),
        "commit_then_reset" => FaultKind::CommitThenReset,
        "commit_then_timeout" => FaultKind::CommitThenTimeout { hold_ms },
        "redirect" => FaultKind::Redirect {
            status: status().unwrap_or(302),
            location: v
                .get("location")
                .and_then(Value::as_str)
                .unwrap_or(PORTAL_PATH)
                .to_string(),
        },
        "apply_after_timeout" => FaultKind::ApplyAfterTimeout { hold_ms },
        other => return Err(format!("unknown fault kind '{other}'")),
    };
    let count = match v.get("count") {
        None | Some(Value::Null) => 1,
        Some(c) => c
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())
            .ok_or("count must be a non-negative integer")?,
    };
    Ok(Fault {
        path_contains: v
            .get("path_contains")
            .and_then(Value::as_str)
            .map(str::to_string),
        method: v.get("method").and_then(Value::as_str).map(str::to_string),
        kind,
        count,
    })
}
