//! The pull engine: brings Omnium's stores, categories, products (with prices) and stock
//! into the local tables, one page per step so the worker can push between pages.
//!
//! Each data set has a cursor: where its next delta starts (`modifiedFrom`, inclusive), on
//! Omnium's clock. Everything modified before it is known to be read. Omnium's search index
//! shows a write late (up to `pull_overlap_ms`, the index lag this library assumes), with
//! the write's original `modified`; so a delta that Omnium answered at its time `S` (its
//! `Date` header) has surely seen everything modified before `S - overlap`, and that, not
//! the newest `modified` it saw, is where the next delta starts. Neither the till's clock
//! nor a `modified` stamped in the future moves a cursor. Changes are applied idempotently,
//! and a page commits together with the cursor it earns.
//!
//! Product scrolls are asked for in `modified` order; while pages really come in that order
//! the cursor advances page by page (to the page's newest `modified`, ties re-read), so a
//! kill -9 mid-scroll re-fetches at most about one page. Stock pages are never assumed to
//! be sorted (the search has no sort): their cursor moves when the scroll ends.

use super::{now_ms, rfc3339, Sync, SyncContext};
use crate::model::catalog::CatalogProduct;
use crate::omnium::back_office::OmniumPurchaseOrder;
use crate::omnium::catalog::{self, CatalogScope, InventoryItem, MarketInfo, Page, Product};
use crate::omnium::orders::OmniumOrder;
use crate::omnium::Failure;
use crate::store::CursorAdvance;
use serde_json::json;
use std::collections::VecDeque;

/// The log target of the pull's timing lines (debug level): per scroll page the time to
/// fetch and parse it and the time to apply it, and the time of the catalog's build after
/// a first sync. `benches/catalog.rs -- sync` reads them for its breakdown.
pub const TIMING_TARGET: &str = "flow_omnium::sync::pull::timing";

/// Stores and categories change rarely; they are pulled at most this often unless asked.
const SLOW_DATASET_INTERVAL_MS: i64 = 3_600_000;
/// Page size asked of Omnium's scrolls.
const SCROLL_TAKE: usize = 1000;
/// An expired scroll is restarted from the cursor at most this many times per run.
const MAX_SCROLL_RESTARTS: u32 = 3;
/// The fewest products a scroll page is asked for when pages come over the products cap.
const MIN_SCROLL_TAKE: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataset {
    Stores,
    Categories,
    Products,
    Stock,
    Orders,
    PurchaseOrders,
}

impl Dataset {
    fn name(self) -> &'static str {
        match self {
            Dataset::Stores => "stores",
            Dataset::Categories => "categories",
            Dataset::Products => "products",
            Dataset::Stock => "stock",
            Dataset::Orders => "orders",
            Dataset::PurchaseOrders => "purchase_orders",
        }
    }
}

/// A scroll being read.
struct Scroll {
    dataset: Dataset,
    id: Option<String>,
    /// The cursor when the scroll started: items below it are not news.
    base: Option<i64>,
    /// Omnium's `Date` on the first page (`None` when Omnium sent none).
    date: Option<i64>,
    max_seen: Option<i64>,
    last_page_max: Option<i64>,
    /// Pages were asked for in `modified` order and have come in it so far.
    in_order: bool,
    fetched: u64,
    restarts: u32,
}

#[derive(Default)]
pub struct Puller {
    queue: VecDeque<Dataset>,
    scroll: Option<Scroll>,
    /// When the next run is due, on the monotonic clock.
    next_run_at: i64,
    /// When stores and categories were last pulled, on the monotonic clock.
    last_slow_run: Option<i64>,
    /// The configured market's language, group and VAT rate, once known.
    market: Option<MarketInfo>,
    runs: u64,
    /// `fo_sync_now` came during a run: run again when it ends.
    rerun: bool,
    /// The page of a paged search (orders, purchase orders) being read, and the newest
    /// `modified` seen in this run.
    search_page: u32,
    search_max: Option<i64>,
    /// The key of keyset paging: pages are asked for from this `modified` on, so an order
    /// modified while pages are read never shifts another out of view.
    search_key: Option<i64>,
    /// Omnium's `Date` on the search's first page.
    search_date: Option<i64>,
    /// Which of [`ORDER_TYPES`] the orders search is at; past them, the orders picked up here.
    search_type: usize,
    /// A page of the search came out of `modified` order: this run's cursor stays put.
    search_unsorted: bool,
    /// Order passes (the [`ORDER_TYPES`], then the orders picked up here) this run leaves out.
    skip_order_pass: [bool; ORDER_PASSES],
    /// A full resync's read of orders or purchase orders: the ids Omnium returned, whether
    /// some search was not read to its end, what was surely visible to all of it (Omnium's
    /// clock less the index lag), and when it started (the database's clock).
    seen_ids: std::collections::HashSet<String>,
    full_read_partial: bool,
    full_visible_before: Option<i64>,
    full_read_started: Option<i64>,
    /// Products asked for per scroll page (0: `SCROLL_TAKE`). Halved whenever a page comes
    /// over the products response cap (a tenant whose products, even with the unread fields
    /// excluded, are bigger than the cap allows at 1,000 a page: the catalog would otherwise
    /// never sync again), doubled back after each scroll read to its end.
    product_take: usize,
    /// Orders or purchase orders asked for per search page (0: [`SEARCH_TAKE`]): 100, then
    /// 50, then 10 while pages come over the orders response cap (orders with hundreds of
    /// lines), back to 100 when the search ends. Each size divides the one before, so a
    /// search paging by offset goes on at the same item.
    order_take: u32,
    /// This run is a full resync (`sync.full_resync_ms`): data sets are read whole and what
    /// Omnium did not return is removed.
    full: bool,
    /// What the full read has returned so far: product ids, and (sku, warehouse) levels.
    seen_products: std::collections::HashSet<String>,
    seen_stock: std::collections::HashSet<(String, String)>,
    /// The newest `modified` already announced per data set, so a window re-read does not
    /// announce the same change twice.
    announced: std::collections::HashMap<&'static str, i64>,
    /// The scroll's next page, fetched (and parsed) on another thread while this one
    /// applied the page before it; taken by the next step instead of asking again.
    ahead: Option<Ahead>,
}

/// A scroll page fetched ahead: asked for with `id` while the page before it was applied.
/// Only in memory: the cursor covers what was applied, so a crash or an aborted run
/// forgets it and reads it again from the cursor, as it would a page not yet fetched.
struct Ahead {
    dataset: Dataset,
    id: String,
    page: Result<Option<ScrollPage>, Failure>,
    /// How long the request took, and how long of it the worker waited once its own
    /// apply was done.
    fetched_in: std::time::Duration,
    waited: std::time::Duration,
}

/// Purchase orders change seldom: pulled on every this-many-th run (and when asked).
const PURCHASE_ORDER_EVERY: u64 = 3;
/// The order types a till needs from Omnium (issue 13 item 3): its own and other tills' POS
/// sales are never re-read. `orderType` takes one value, so each type is its own search with
/// its own cursor.
const ORDER_TYPES: [&str; 2] = ["ClickAndCollect", "Online"];

/// The order passes of a run: each of [`ORDER_TYPES`], then the orders picked up here.
const ORDER_PASSES: usize = ORDER_TYPES.len() + 1;

/// An item of an order or purchase-order search: what paging and a full resync read of it.
trait SearchItem {
    fn id(&self) -> Option<&str>;
    fn modified_ms(&self) -> Option<i64>;
}

impl SearchItem for OmniumOrder {
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    fn modified_ms(&self) -> Option<i64> {
        OmniumOrder::modified_ms(self)
    }
}

impl SearchItem for OmniumPurchaseOrder {
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    fn modified_ms(&self) -> Option<i64> {
        OmniumPurchaseOrder::modified_ms(self)
    }
}

/// Pages of the orders picked up here read in one run; the next run continues.
const MAX_PICKUP_PAGES: u32 = 100;

/// Page size of order and purchase-order searches (Omnium's maximum).
const SEARCH_TAKE: u32 = 100;

pub enum Step {
    /// More pages or data sets are left in this run.
    More,
    Idle,
}

impl Puller {
    pub fn is_running(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Milliseconds until the next run is due (0 when it is), on the monotonic clock.
    pub fn due_in_ms(&self, sync: &Sync) -> i64 {
        (self.next_run_at - sync.clock.mono_ms()).max(0)
    }

    /// Moves the start of the next run, on the monotonic clock (the worker spreads the
    /// schedule with jitter).
    pub fn schedule(&mut self, at_mono_ms: i64) {
        self.next_run_at = at_mono_ms;
    }

    /// Starts a run now if one is due (or `force`, from `fo_sync_now`). The schedule runs on
    /// the monotonic clock, so a wall clock corrected backwards never stops pulls.
    pub fn maybe_start(&mut self, force: bool, sync: &Sync) {
        let now = sync.clock.mono_ms();
        let ctx = &sync.ctx;
        // Asked while a run is under way (it may be past the data set that changed):
        // another full run follows it at once.
        self.rerun |= force && self.is_running();
        let force = force || (self.rerun && !self.is_running());
        if self.is_running() || (!force && now < self.next_run_at) {
            return;
        }
        self.rerun = false;
        self.full = full_resync_due(sync);
        if self.full {
            log::info!("full resync: every data set is read whole; what Omnium no longer returns leaves the till");
        }
        let force = force || self.full;
        if force
            || self
                .last_slow_run
                .is_none_or(|at| now - at >= SLOW_DATASET_INTERVAL_MS)
        {
            self.queue.push_back(Dataset::Stores);
            self.queue.push_back(Dataset::Categories);
            self.last_slow_run = Some(now);
        }
        self.queue.push_back(Dataset::Products);
        if ctx.pull_stock {
            self.queue.push_back(Dataset::Stock);
        }
        self.queue.push_back(Dataset::Orders);
        // Click & collect orders of this store every run; web orders and orders sold
        // elsewhere for pickup here on alternate runs (events are the fast path for both),
        // all of them when asked or in a full resync: the idle cost stays within 60 an hour.
        self.skip_order_pass = if force {
            [false; ORDER_PASSES]
        } else {
            let odd = self.runs % 2 == 1;
            [false, odd, !odd]
        };
        self.search_type = 0;
        if force || self.runs % PURCHASE_ORDER_EVERY == 0 {
            self.queue.push_back(Dataset::PurchaseOrders);
        }
        self.runs += 1;
    }

    /// Ends the run early (a failure): the next run resumes from the committed cursors.
    pub fn abort(&mut self, retry_at: i64) {
        self.queue.clear();
        self.scroll = None;
        self.ahead = None;
        self.reset_search();
        self.search_type = 0;
        self.full = false;
        self.seen_products.clear();
        self.seen_stock.clear();
        self.forget_full_read();
        self.next_run_at = retry_at;
    }

    fn forget_full_read(&mut self) {
        self.seen_ids.clear();
        self.full_read_partial = false;
        self.full_visible_before = None;
        self.full_read_started = None;
    }

    /// Does one request's worth of pulling.
    pub fn step(&mut self, sync: &Sync) -> Result<Step, Failure> {
        let Some(&dataset) = self.queue.front() else {
            return Ok(Step::Idle);
        };
        // Failures are reported per order pass: the passes do not all run every run, and
        // a pass that fails must not be cleared by a run that skipped it.
        let name = self.report_name(dataset);
        let result = match dataset {
            Dataset::Stores => self.pull_stores(sync),
            Dataset::Categories => self.pull_categories(sync),
            Dataset::Products | Dataset::Stock => self.pull_scroll(sync, dataset),
            Dataset::Orders if self.search_type >= ORDER_TYPES.len() => {
                self.pull_pickup_point(sync)
            }
            Dataset::Orders | Dataset::PurchaseOrders => self.pull_search(sync, dataset),
        };
        let finished = match result {
            Ok(done) => {
                // This data set (or order pass) was read to its end.
                if done || self.report_name(dataset) != name {
                    if let Err(e) = sync.store.clear_pull_failure(&name) {
                        log::warn!("cannot record that {name} was pulled: {e}");
                    }
                }
                done
            }
            // Omnium refuses or fails this data set (a missing role, an endpoint that errs):
            // the others still come, and this one is tried again on the next run from its
            // committed cursor. Only an Omnium that is down, throttling or refusing the API
            // user stops the run.
            Err(f @ (Failure::Rejected { .. } | Failure::Uncertain(_) | Failure::Busy(_))) => {
                log::error!("pulling {name} failed: {f}");
                // Reported in fo_status until the data set is pulled whole again.
                if let Err(e) =
                    sync.store
                        .note_pull_failure(&name, sync.clock.wall_ms(), &f.to_string())
                {
                    log::warn!("cannot record that {name} failed: {e}");
                }
                self.scroll = None;
                self.ahead = None;
                self.reset_search();
                // A data set that failed is never swept: what was not read is not gone.
                self.seen_products.clear();
                self.seen_stock.clear();
                if dataset == Dataset::Orders {
                    // The other order passes still run; the full read of orders is
                    // incomplete, so none of them removes anything this run (set after
                    // whatever cleared it, and kept until the last pass ends).
                    self.full_read_partial = true;
                    self.next_order_pass_after_failure(sync)?
                } else {
                    self.search_type = 0;
                    self.forget_full_read();
                    true
                }
            }
            Err(f) => return Err(f),
        };
        if finished && dataset == Dataset::Products {
            // Read to its end or failed: what a first sync (or a re-fold) set aside is
            // built now (restarted after a crash; searches read the tables meanwhile), on
            // the builder's own thread (store/deferred.rs), never on this worker.
            super::kill_point("before_catalog_build");
            if let Err(e) = sync.store.kick_catalog_build() {
                log::error!("cannot build the catalog's search index: {e}");
            }
        }
        if finished {
            self.queue.pop_front();
            if self.queue.is_empty() {
                self.next_run_at = sync.clock.mono_ms() + sync.pull_interval_ms as i64;
                if std::mem::take(&mut self.full) {
                    let at = sync.clock.wall_ms().to_string();
                    if let Err(e) = sync.store.set_state("full_resync_at", &at) {
                        log::warn!("cannot record the full resync: {e}");
                    }
                }
            }
        }
        Ok(if self.queue.is_empty() {
            Step::Idle
        } else {
            Step::More
        })
    }

    /// The name a data set's failure is reported under in `fo_status`: the order pass for
    /// orders (`orders.ClickAndCollect`, `orders.Online`, `orders.PickUpPoint`).
    fn report_name(&self, dataset: Dataset) -> String {
        match (dataset, ORDER_TYPES.get(self.search_type)) {
            (Dataset::Orders, Some(t)) => format!("orders.{t}"),
            (Dataset::Orders, None) => "orders.PickUpPoint".to_string(),
            _ => dataset.name().to_string(),
        }
    }

    /// Moves to the next order pass this run makes; false when none is left.
    fn next_order_pass(&mut self) -> bool {
        loop {
            self.search_type += 1;
            if self.search_type >= ORDER_PASSES {
                return false;
            }
            if !self.skip_order_pass[self.search_type] {
                return true;
            }
        }
    }

    /// After a failed order pass: on to the next pass this run makes (`false`: the orders
    /// data set goes on), else the orders' full read ends, unswept (`true`).
    fn next_order_pass_after_failure(&mut self, sync: &Sync) -> Result<bool, Failure> {
        if self.next_order_pass() {
            return Ok(false);
        }
        self.search_type = 0;
        self.finish_full_read(sync, Dataset::Orders)?;
        Ok(true)
    }

    fn reset_search(&mut self) {
        self.order_take = 0;
        self.search_unsorted = false;
        self.search_page = 0;
        self.search_max = None;
        self.search_key = None;
        self.search_date = None;
    }

    /// Counts the items newer than what was already announced, and remembers the newest.
    fn news(
        &mut self,
        dataset: Dataset,
        base: Option<i64>,
        modified: impl Iterator<Item = Option<i64>>,
    ) -> usize {
        let seen = self.announced.get(dataset.name()).copied();
        let floor = seen.max(base.map(|b| b - 1));
        let mut newest = seen;
        let mut n = 0;
        for m in modified {
            if floor.is_none() || m > floor {
                n += 1;
            }
            newest = newest.max(m);
        }
        if let Some(m) = newest {
            self.announced.insert(dataset.name(), m);
        }
        n
    }

    /// The configured market's language, group and VAT rate: from the database, else from
    /// `GET /api/Markets` (then kept). When Omnium will not say (403, the market missing, no
    /// content language) the catalog is not applied this run: `Rejected` skips the data set
    /// and leaves its cursor, so nothing in another language is applied and passed over.
    fn market(&mut self, sync: &Sync) -> Result<MarketInfo, Failure> {
        if let Some(m) = &self.market {
            return Ok(m.clone());
        }
        let stored = sync
            .store
            .get_state("market_info")
            .map_err(storage)?
            .and_then(|s| serde_json::from_str::<MarketInfo>(&s).ok());
        let market = match stored {
            Some(m) => m,
            None => {
                let m = sync.api.market_info(&sync.ctx.market_id)?;
                let text = serde_json::to_string(&m)
                    .map_err(|e| Failure::Uncertain(format!("market info: {e}")))?;
                sync.store
                    .set_state("market_info", &text)
                    .map_err(storage)?;
                m
            }
        };
        log::info!(
            "catalog language {:?}, market group {:?}, default VAT {:?} %",
            market.language,
            market.group,
            market.tax_rate
        );
        self.market = Some(market.clone());
        Ok(market)
    }

    fn pull_stores(&mut self, sync: &Sync) -> Result<bool, Failure> {
        let (cursor, from) = delta_from(sync, Dataset::Stores)?;
        let from = from.filter(|_| !self.full);
        let mut ids = vec![sync.ctx.store_id.clone()];
        for w in &sync.ctx.warehouse_ids {
            if !ids.contains(w) {
                ids.push(w.clone());
            }
        }
        let page = sync.api.search_stores(&ids, from)?;
        let date = sync.api.answer_date_ms();
        let stores: Vec<(String, String)> = page
            .items
            .iter()
            .filter_map(|s| Some((s.id.clone()?, s.raw.get().to_string())))
            .collect();
        let max = page.items.iter().filter_map(|s| s.modified_ms).max();
        let news = self.news(
            Dataset::Stores,
            cursor,
            page.items.iter().map(|s| s.modified_ms),
        );
        let limit = limit(sync, date, max);
        let resume = finished_resume(sync, limit, max);
        sync.store
            .upsert_stores(&stores, Some(&advance("stores", resume)))
            .map_err(storage)?;
        if self.full {
            let returned: Vec<String> = stores.iter().map(|(id, _)| id.clone()).collect();
            let gone = sync.store.sweep_stores(&returned).map_err(storage)?;
            if gone > 0 {
                log::info!("full resync: {gone} store(s) Omnium no longer returns removed");
            }
        }
        if news > 0 {
            sync.events
                .push(json!({"type": "catalog.changed", "dataset": "stores", "count": news}));
        }
        Ok(true)
    }

    fn pull_categories(&mut self, sync: &Sync) -> Result<bool, Failure> {
        let market = self.market(sync)?;
        let scope = scope(&sync.ctx, Some(&market));
        let mut all = Vec::new();
        for page_no in 1..=100 {
            let page = sync.api.categories_page(page_no)?;
            let n = page.items.len();
            all.extend(
                page.items
                    .iter()
                    .filter_map(|c| catalog::category(c, &scope)),
            );
            if n < 1000 {
                break;
            }
        }
        let before = sync.store.categories().map_err(storage)?;
        sync.store
            .replace_categories(&all, Some(&advance("categories", None)))
            .map_err(storage)?;
        if before != sync.store.categories().map_err(storage)? {
            sync.events.push(
                json!({"type": "catalog.changed", "dataset": "categories", "count": all.len()}),
            );
        }
        Ok(true)
    }

    /// An order or purchase-order page over the orders response cap: the same page is
    /// asked for again in smaller pages (at the same item: the page number scales), down
    /// to 10 a page; `false` when `f` is another failure or the pages are already that
    /// small (the data set then fails, named).
    fn shrink_orders_page(&mut self, what: &str, f: &Failure) -> bool {
        let take = orders_take(self.order_take);
        let Some(&smaller) = ORDER_TAKES.iter().find(|&&t| t < take) else {
            return false;
        };
        if !crate::omnium::page::too_large_for(f, crate::omnium::page::cap::ORDERS) {
            return false;
        }
        self.search_page *= take / smaller;
        self.order_take = smaller;
        log::warn!(
            "a page of {take} {what} came over the response cap; asking for {smaller} a page"
        );
        true
    }

    /// What every page of a search notes, whichever search it is: on the first page Omnium's
    /// `Date` (the window's end) and the start of a full read; whether the page came in
    /// `modified` order after `from`; the newest stamp so far; and, in a full resync, the ids
    /// seen. Returns the page's newest stamp.
    fn note_search_page(
        &mut self,
        sync: &Sync,
        first: bool,
        items: &[impl SearchItem],
        from: Option<i64>,
    ) -> Option<i64> {
        if first {
            self.search_date = sync.api.answer_date_ms();
            self.note_full_read(sync, self.search_date);
        }
        let stamps: Vec<Option<i64>> = items.iter().map(SearchItem::modified_ms).collect();
        self.search_unsorted |= !in_modified_order(&stamps, from);
        let newest = stamps.iter().flatten().copied().max();
        self.search_max = self.search_max.max(newest);
        if self.full {
            self.seen_ids
                .extend(items.iter().filter_map(|o| o.id().map(str::to_string)));
        }
        newest
    }

    /// One page of the order or purchase-order search. `Ok(true)` when the data set is done;
    /// the cursor moves when a search is read to its end. Orders are searched for this
    /// store (`selectedStores` is the selling store); purchase orders for the store and
    /// every configured warehouse (a PO's `storeId` is its receiving warehouse).
    fn pull_search(&mut self, sync: &Sync, dataset: Dataset) -> Result<bool, Failure> {
        let (resource, order_type) = if dataset == Dataset::Orders {
            ("Orders", ORDER_TYPES.get(self.search_type).copied())
        } else {
            ("PurchaseOrders", None)
        };
        let cursor_name = match order_type {
            Some(t) => format!("orders.{t}"),
            None => dataset.name().to_string(),
        };
        let stores = if dataset == Dataset::Orders {
            vec![sync.ctx.store_id.clone()]
        } else {
            store_and_warehouses(&sync.ctx)
        };
        let (_, from) = delta_from_named(sync, &cursor_name)?;
        // A full resync reads open orders and every purchase order whole.
        let from = from.filter(|_| !self.full);
        let first = self.search_key.is_none() && self.search_page == 0;
        let from = self.search_key.or(from);
        let take = orders_take(self.order_take);
        let search = crate::omnium::back_office::StoreSearch {
            resource,
            store_ids: &stores,
            order_type,
            from_ms: from,
            page: self.search_page,
            take,
            open_only: self.full && dataset == Dataset::Orders,
        };
        let (count, newest) = if dataset == Dataset::Orders {
            let page = match sync.api.search_for_store::<OmniumOrder>(&search) {
                Err(f) if self.shrink_orders_page(dataset.name(), &f) => return Ok(false),
                page => page?,
            };
            let newest = self.note_search_page(sync, first, &page.items, from);
            for order in &page.items {
                super::inbound::apply_order(sync, order);
            }
            (page.items.len(), newest)
        } else {
            let page = match sync.api.search_for_store::<OmniumPurchaseOrder>(&search) {
                Err(f) if self.shrink_orders_page(dataset.name(), &f) => return Ok(false),
                page => page?,
            };
            let newest = self.note_search_page(sync, first, &page.items, from);
            let pos: Vec<_> = page
                .items
                .iter()
                .filter_map(|p| {
                    Some((
                        p.id.clone()?,
                        p.status.clone(),
                        crate::omnium::back_office::local_purchase_order(p).to_string(),
                        p.modified_ms(),
                    ))
                })
                .collect();
            sync.store
                .put_purchase_orders(&pos, None)
                .map_err(storage)?;
            (page.items.len(), newest)
        };
        // Keyset paging in `modified` order: the next page starts at this page's newest
        // `modified` (its ties are read again), so an order modified meanwhile (it moves to
        // the end) never shifts an unread one onto a page already read. A page made
        // entirely of one `modified` pages on by offset within it; so does a search whose
        // pages came out of `modified` order, and its cursor then stays where it was (the
        // next run reads the window again rather than skip what an offset shift hid).
        let full = count >= take as usize;
        let capped = (self.search_page + 2) * take > 10_000;
        let done = !full || capped;
        if done {
            let limit = limit(sync, self.search_date, self.search_max);
            let resume = if self.search_unsorted {
                None
            } else if full {
                // Omnium caps take × page at 10,000: the next run continues from here.
                newest.map(|m| limit.map_or(m, |l| m.min(l)))
            } else {
                finished_resume(sync, limit, self.search_max)
            };
            // A capped full read did not see everything: nothing is swept this run.
            self.full_read_partial |= full;
            sync.store
                .advance_cursor(&advance(&cursor_name, resume))
                .map_err(storage)?;
            self.reset_search();
            if order_type.is_some() && self.next_order_pass() {
                // The next order type, or the orders picked up here, in the same run.
                return Ok(false);
            }
            self.search_type = 0;
            self.finish_full_read(sync, dataset)?;
        } else if !self.search_unsorted && newest.is_some_and(|n| Some(n) > from) {
            self.search_key = newest;
            self.search_page = 0;
        } else {
            self.search_page += 1;
        }
        Ok(done)
    }

    /// In a full resync, notes Omnium's clock of a search's first page: only what was
    /// modified before it, less the index lag, was surely visible to the whole read.
    fn note_full_read(&mut self, sync: &Sync, date: Option<i64>) {
        if !self.full {
            return;
        }
        self.full_read_started.get_or_insert_with(now_ms);
        match limit(sync, date, None) {
            Some(v) => {
                self.full_visible_before = Some(self.full_visible_before.map_or(v, |a| a.min(v)));
            }
            // Without Omnium's Date the window cannot be judged: nothing is swept.
            None => self.full_read_partial = true,
        }
    }

    /// The end of a data set's full read: what Omnium did not return leaves the till
    /// (rule 9.14), only when every search of it was read whole.
    fn finish_full_read(&mut self, sync: &Sync, dataset: Dataset) -> Result<(), Failure> {
        let seen = std::mem::take(&mut self.seen_ids);
        let partial = std::mem::take(&mut self.full_read_partial);
        let visible = self.full_visible_before.take();
        let started = self.full_read_started.take();
        if !self.full {
            return Ok(());
        }
        let (Some(visible), Some(started), false) = (visible, started, partial) else {
            log::info!("full resync: {} not swept (not read whole)", dataset.name());
            return Ok(());
        };
        if dataset == Dataset::Orders {
            let gone = sync
                .store
                .sweep_inbound_orders(&seen, visible, started)
                .map_err(storage)?;
            for (id, order_type, status) in &gone {
                sync.events.push(json!({
                    "type": "order.updated", "order_id": id, "order_type": order_type,
                    "status": status, "removed": true, "reason": "gone", "at": rfc3339(now_ms()),
                }));
            }
            if !gone.is_empty() {
                log::info!(
                    "full resync: {} open order(s) Omnium no longer returns for this store removed",
                    gone.len()
                );
            }
        } else {
            let gone = sync
                .store
                .sweep_purchase_orders(&seen, visible)
                .map_err(storage)?;
            if gone > 0 {
                log::info!(
                    "full resync: {gone} purchase order(s) Omnium no longer returns removed"
                );
            }
        }
        Ok(())
    }

    /// One page of the orders to be picked up here (at the store or one of its warehouses)
    /// whatever store sold them: Omnium's order search filters on the selling store only, so
    /// a web order sold by another store and collected here is found only this way
    /// (`GET /api/Orders/GetOrdersForPickUpPoint`). Keyset paging on `changedSince` while
    /// pages come oldest change first (an order changed meanwhile moves to the end and
    /// shifts nothing unread); a page out of that order pages on by offset, and the cursor
    /// then stays where it was, so the next run reads the window again rather than skip.
    /// `Ok(true)` when the orders data set is done.
    fn pull_pickup_point(&mut self, sync: &Sync) -> Result<bool, Failure> {
        const NAME: &str = "orders.PickUpPoint";
        let (cursor, from) = delta_from_named(sync, NAME)?;
        let from = from.filter(|_| !self.full);
        let first = self.search_key.is_none() && self.search_page == 0;
        let key = self.search_key.or(from);
        let places = store_and_warehouses(&sync.ctx);
        // `changedSince` is exclusive: one millisecond earlier reads the key's ties again.
        let take = orders_take(self.order_take);
        let page = match sync.api.orders_for_pickup_point(
            &places,
            key.map(|k| k.saturating_sub(1)),
            self.search_page + 1,
            take,
        ) {
            Err(f) if self.shrink_orders_page("orders picked up here", &f) => return Ok(false),
            page => page?,
        };
        let newest = self.note_search_page(sync, first, &page.items, key);
        for order in &page.items {
            super::inbound::apply_order(sync, order);
        }
        let full = page.items.len() >= take as usize;
        // The same number of orders whatever the page size.
        let capped = (self.search_page + 1) * take >= MAX_PICKUP_PAGES * SEARCH_TAKE;
        if full && !capped {
            if !self.search_unsorted && newest.is_some_and(|n| Some(n) > key) {
                self.search_key = newest;
                self.search_page = 0;
            } else {
                self.search_page += 1;
            }
            return Ok(false);
        }
        let resume = if self.search_unsorted {
            cursor
        } else {
            let limit = limit(sync, self.search_date, self.search_max);
            if full {
                // Capped: the next run continues from here.
                newest.map(|m| limit.map_or(m, |l| m.min(l)))
            } else {
                finished_resume(sync, limit, self.search_max)
            }
        };
        self.full_read_partial |= full;
        sync.store
            .advance_cursor(&advance(NAME, resume))
            .map_err(storage)?;
        self.reset_search();
        self.search_type = 0;
        self.finish_full_read(sync, Dataset::Orders)?;
        Ok(true)
    }

    /// One page of the products or stock scroll. `Ok(true)` when the scroll is done.
    fn pull_scroll(&mut self, sync: &Sync, dataset: Dataset) -> Result<bool, Failure> {
        let market = if dataset == Dataset::Products {
            Some(self.market(sync)?)
        } else {
            None
        };
        let scope = scope(&sync.ctx, market.as_ref());
        let fetch_started = std::time::Instant::now();
        // (request and parse, how long the worker waited for it)
        let mut fetch_times = None;
        let page = match self
            .scroll
            .as_mut()
            .filter(|s| s.dataset == dataset && s.id.is_some())
        {
            Some(s) => {
                let id = s.id.as_deref().unwrap_or_default();
                let next = match self
                    .ahead
                    .take()
                    .filter(|a| a.dataset == dataset && a.id == id)
                {
                    Some(a) => {
                        fetch_times = Some((a.fetched_in, a.waited));
                        a.page
                    }
                    None => ScrollPage::next(sync, dataset, id),
                };
                if let Err(f) = &next {
                    if shrink_products_page(&mut self.product_take, dataset, f) {
                        // Read again from the committed cursor, in smaller pages.
                        s.id = None;
                        return Ok(false);
                    }
                }
                match next? {
                    Some(page) => page,
                    None => {
                        // Expired: start again from the committed cursor.
                        log::warn!(
                            "the {} scroll expired; restarting it from the cursor",
                            dataset.name()
                        );
                        s.restarts += 1;
                        if s.restarts > MAX_SCROLL_RESTARTS {
                            return Err(Failure::Uncertain(format!(
                                "the {} scroll keeps expiring",
                                dataset.name()
                            )));
                        }
                        s.id = None;
                        return Ok(false);
                    }
                }
            }
            None => {
                self.ahead = None;
                let restarts = self.scroll.as_ref().map_or(0, |s| s.restarts);
                let (base, from) = delta_from(sync, dataset)?;
                let from = from.filter(|_| !self.full);
                let page = if dataset == Dataset::Products {
                    if from.is_none() {
                        // A first sync into an empty catalog writes bare tables; the search
                        // index and listings are built once at the end of this step.
                        sync.store.begin_catalog_build().map_err(storage)?;
                    }
                    let take = products_take(self.product_take);
                    match sync.api.products_scroll_start(from, &scope, take) {
                        Ok(page) => ScrollPage::Products(page),
                        Err(f) if shrink_products_page(&mut self.product_take, dataset, &f) => {
                            return Ok(false)
                        }
                        Err(f) => return Err(f),
                    }
                } else {
                    ScrollPage::Stock(sync.api.inventory_search(&sync.ctx.warehouse_ids, from)?)
                };
                self.scroll = Some(Scroll {
                    dataset,
                    id: None,
                    base,
                    date: sync.api.answer_date_ms(),
                    max_seen: None,
                    last_page_max: None,
                    // Only products are asked for in `modified` order.
                    in_order: dataset == Dataset::Products,
                    fetched: 0,
                    restarts,
                });
                page
            }
        };
        let (fetched_in, waited) = fetch_times.unwrap_or_else(|| {
            let took = fetch_started.elapsed();
            (took, took)
        });
        let Some(mut scroll) = self.scroll.take() else {
            return Ok(true);
        };
        let (len, scroll_id) = match &page {
            ScrollPage::Products(p) => (p.items.len(), &p.scroll_id),
            ScrollPage::Stock(p) => (p.items.len(), &p.scroll_id),
        };
        if scroll_id.is_some() {
            scroll.id = scroll_id.clone();
        }
        scroll.fetched += len as u64;
        // Read to the empty page even when totalHits says everything came: Omnium asks
        // integrations to finish their scrolls rather than leave them to expire.
        let done = len == 0 || scroll_id.is_none();
        if self.full {
            match &page {
                // Every product returned counts as present, whatever its language (one in
                // another language is not applied, and is swept if it was).
                ScrollPage::Products(p) => self
                    .seen_products
                    .extend(p.items.iter().filter_map(Product::key)),
                ScrollPage::Stock(p) => self.seen_stock.extend(
                    p.items
                        .iter()
                        .filter_map(catalog::stock_level)
                        .map(|l| (l.sku, l.warehouse_id)),
                ),
            }
        }
        let apply_started = std::time::Instant::now();
        let apply = |scroll: &mut Scroll| match &page {
            ScrollPage::Products(p) => apply_products_page(sync, scroll, p, &scope, done),
            ScrollPage::Stock(p) => apply_stock_page(sync, scroll, p, done),
        };
        // The next page is fetched and parsed on another thread while this one is applied
        // (the simulator on its own core, the parse beside the SQLite work): one page ahead
        // at most, so memory stays bounded. Not in the deterministic simulation, which runs
        // the worker on one thread.
        let next_id = scroll.id.clone().filter(|_| !done && !sync.simulated);
        let (applied, applied_in) = match next_id {
            Some(id) => std::thread::scope(|threads| {
                // The worker waits for this thread: marked as its own, so a log callback
                // here calling fo_flush does not wait for the worker (review of 3780b71).
                let fetch = threads.spawn(|| {
                    super::joined_by_worker(sync, || {
                        // Reads wait behind the sales of the API user, as on the worker.
                        let _reading = crate::omnium::user_gate::pulling();
                        let started = std::time::Instant::now();
                        let page = ScrollPage::next(sync, dataset, &id);
                        (page, started.elapsed())
                    })
                });
                let applied = apply(&mut scroll);
                let applied_in = apply_started.elapsed();
                let join_started = std::time::Instant::now();
                let (page, fetched_in) = fetch
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                self.ahead = Some(Ahead {
                    dataset,
                    id: id.clone(),
                    page,
                    fetched_in,
                    waited: join_started.elapsed(),
                });
                (applied, applied_in)
            }),
            None => {
                let applied = apply(&mut scroll);
                (applied, apply_started.elapsed())
            }
        };
        log::debug!(
            target: TIMING_TARGET,
            "{} page: {len} items, fetched in {} us, waited {} us, applied in {} us",
            dataset.name(),
            fetched_in.as_micros(),
            waited.as_micros(),
            applied_in.as_micros()
        );
        let news = match (applied, &page) {
            (Ok(_), ScrollPage::Products(p)) => self.news(
                dataset,
                scroll.base,
                p.items.iter().map(Product::modified_ms),
            ),
            (Ok(changed), _) => changed,
            (Err(f), _) => {
                self.scroll = Some(scroll);
                return Err(f);
            }
        };
        if !done {
            super::kill_point("mid_scroll");
        }
        if news > 0 {
            let kind = if dataset == Dataset::Products {
                "catalog.changed"
            } else {
                "stock.changed"
            };
            sync.events
                .push(json!({"type": kind, "dataset": dataset.name(), "count": news}));
        }
        if done && dataset == Dataset::Products {
            // Read to its end: the next scroll tries pages twice as big again, up to the
            // usual size (pages came over the cap once; they may not any more).
            self.product_take = (products_take(self.product_take) * 2).min(SCROLL_TAKE);
        }
        if !done {
            self.scroll = Some(scroll);
        } else if self.full {
            let gone = if dataset == Dataset::Products {
                let seen = std::mem::take(&mut self.seen_products);
                sync.store.sweep_products(&seen).map_err(storage)?
            } else {
                let seen = std::mem::take(&mut self.seen_stock);
                sync.store
                    .sweep_stock(&seen, &sync.ctx.warehouse_ids)
                    .map_err(storage)?
            };
            if gone > 0 {
                log::info!(
                    "full resync: {gone} {} Omnium no longer returns removed",
                    if dataset == Dataset::Products {
                        "SKU(s)"
                    } else {
                        "stock level(s)"
                    }
                );
                let kind = if dataset == Dataset::Products {
                    "catalog.changed"
                } else {
                    "stock.changed"
                };
                sync.events
                    .push(json!({"type": kind, "dataset": dataset.name(), "count": gone}));
            }
        }
        Ok(done)
    }
}

/// Whether this run is a full resync: `sync.full_resync_ms` after the last one (by the wall
/// clock, since it must outlive restarts; a wall clock set back by more than the interval
/// makes it due rather than never).
fn full_resync_due(sync: &Sync) -> bool {
    let interval = sync.ctx.full_resync_ms;
    if interval <= 0 {
        return false;
    }
    let now = sync.clock.wall_ms();
    match sync
        .store
        .get_state("full_resync_at")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<i64>().ok())
    {
        // A first sync reads everything anyway: it starts the interval (so a kill during it
        // resumes from its cursors rather than starting whole again). A database that was
        // synced before without this record (an upgrade) is resynced now.
        None => {
            let synced_before = sync
                .store
                .cursor(Dataset::Products.name())
                .ok()
                .and_then(|(c, _)| c)
                .is_some();
            if !synced_before {
                if let Err(e) = sync.store.set_state("full_resync_at", &now.to_string()) {
                    log::warn!("cannot record the first sync: {e}");
                }
            }
            synced_before
        }
        Some(last) => now.saturating_sub(last) >= interval || last > now.saturating_add(interval),
    }
}

/// The store, then each configured warehouse not already named.
fn store_and_warehouses(ctx: &SyncContext) -> Vec<String> {
    let mut ids = vec![ctx.store_id.clone()];
    for w in &ctx.warehouse_ids {
        if !ids.contains(w) {
            ids.push(w.clone());
        }
    }
    ids
}

/// Whether a page of a search came oldest change first, starting at its key (the keyset
/// paging rests on it). An item without `modified` counts as out of order.
fn in_modified_order(stamps: &[Option<i64>], key: Option<i64>) -> bool {
    stamps.iter().all(Option::is_some)
        && stamps.windows(2).all(|w| w[0] <= w[1])
        && stamps.first().is_none_or(|m| key.is_none() || *m >= key)
}

/// Where a delta starts: the cursor itself (inclusive), which already lies the index lag
/// before what Omnium had surely shown (see the module doc).
fn delta_from(sync: &Sync, dataset: Dataset) -> Result<(Option<i64>, Option<i64>), Failure> {
    delta_from_named(sync, dataset.name())
}

fn delta_from_named(sync: &Sync, name: &str) -> Result<(Option<i64>, Option<i64>), Failure> {
    let (cursor, _) = sync.store.cursor(name).map_err(storage)?;
    Ok((cursor, cursor))
}

/// Everything modified before this was visible to a search Omnium answered with `date` (its
/// `Date` header) and in which the newest `modified` was `seen`: Omnium's clock then, less
/// the index lag. `Date` has whole seconds, rounded down; a `modified` within that second
/// shows the clock was further on (one beyond it is a stamp from the future, ignored).
/// `None` when Omnium sent no `Date`.
fn limit(sync: &Sync, date: Option<i64>, seen: Option<i64>) -> Option<i64> {
    let d = date?;
    let now = match seen {
        Some(m) if m > d && m < d + 1000 => m,
        _ => d,
    };
    Some(now.saturating_sub(sync.ctx.pull_overlap_ms))
}

/// Where the next delta starts once a data set was read to its end: Omnium's clock at the
/// start less the index lag; without a `Date` from Omnium, the index lag before the newest
/// `modified` seen (the best Omnium's own stamps allow; never the till's clock).
fn finished_resume(sync: &Sync, limit: Option<i64>, max_seen: Option<i64>) -> Option<i64> {
    limit.or_else(|| {
        let m = max_seen?;
        log::debug!("Omnium sent no Date header: the delta window rests on its newest stamp");
        Some(m.saturating_sub(sync.ctx.pull_overlap_ms))
    })
}

fn scope<'a>(ctx: &'a SyncContext, market: Option<&'a MarketInfo>) -> CatalogScope<'a> {
    CatalogScope {
        market_id: &ctx.market_id,
        store_id: &ctx.store_id,
        currency: &ctx.currency,
        language: market.map(|m| m.language.as_str()),
        market_group: market.and_then(|m| m.group.as_deref()),
        default_tax_rate: market.and_then(|m| m.tax_rate),
        time_zone: ctx.time_zone,
    }
}

fn advance(dataset: &str, high_water_ms: Option<i64>) -> CursorAdvance<'_> {
    CursorAdvance {
        dataset,
        high_water_ms,
        now_ms: now_ms(),
    }
}

fn storage(e: crate::error::Error) -> Failure {
    Failure::Uncertain(format!("local database: {e}"))
}

/// The cursor a page may commit: while pages arrive in `modified` order, the page's newest
/// `modified` (ties with it are read again), never past the scroll's limit; else nothing
/// until the scroll ends, when it is where the next delta starts.
fn page_cursor(
    sync: &Sync,
    scroll: &mut Scroll,
    modified: impl Iterator<Item = Option<i64>> + Clone,
    done: bool,
) -> Option<i64> {
    let page_min = modified.clone().flatten().min();
    let page_max = modified.flatten().max();
    if let (Some(min), Some(last)) = (page_min, scroll.last_page_max) {
        if min < last {
            scroll.in_order = false;
        }
    }
    scroll.last_page_max = page_max.or(scroll.last_page_max);
    scroll.max_seen = scroll.max_seen.max(page_max);
    if done {
        let limit = limit(sync, scroll.date, scroll.max_seen);
        finished_resume(sync, limit, scroll.max_seen)
    } else if scroll.in_order {
        let lag = sync.ctx.pull_overlap_ms;
        let limit = limit(sync, scroll.date, scroll.max_seen);
        page_max.map(|m| limit.map_or(m.saturating_sub(lag), |l| m.min(l)))
    } else {
        None
    }
}

/// Orders or purchase orders asked for per search page (`order_take` 0: [`SEARCH_TAKE`]).
fn orders_take(order_take: u32) -> u32 {
    if order_take == 0 {
        SEARCH_TAKE
    } else {
        order_take
    }
}

/// The page sizes an order search shrinks through (each divides the one before).
const ORDER_TAKES: [u32; 3] = [SEARCH_TAKE, 50, 10];

/// Products asked for per scroll page (`product_take` 0: [`SCROLL_TAKE`]).
fn products_take(product_take: usize) -> usize {
    if product_take == 0 {
        SCROLL_TAKE
    } else {
        product_take
    }
}

/// A products page over its response cap: `true` when the page size was halved (the
/// scroll is read again in smaller pages); `false` at the smallest page, when the failure
/// stands (the data set fails in `fo_status`, nothing wiped).
fn shrink_products_page(product_take: &mut usize, dataset: Dataset, f: &Failure) -> bool {
    let take = products_take(*product_take);
    if dataset != Dataset::Products
        || !crate::omnium::page::too_large_for(f, crate::omnium::page::cap::PRODUCTS)
        || take <= MIN_SCROLL_TAKE
    {
        return false;
    }
    *product_take = (take / 2).max(MIN_SCROLL_TAKE);
    log::warn!(
        "a products page of {take} came over the response cap; asking for {} a page",
        *product_take
    );
    true
}

/// One page of the products or the stock scroll, typed.
enum ScrollPage {
    Products(Page<Product>),
    Stock(Page<InventoryItem>),
}

impl ScrollPage {
    /// The scroll's next page; `None` when it expired.
    fn next(sync: &Sync, dataset: Dataset, id: &str) -> Result<Option<ScrollPage>, Failure> {
        Ok(if dataset == Dataset::Products {
            sync.api
                .scroll_next("Products", id)?
                .map(ScrollPage::Products)
        } else {
            sync.api
                .scroll_next("Inventory", id)?
                .map(ScrollPage::Stock)
        })
    }
}

fn apply_products_page(
    sync: &Sync,
    scroll: &mut Scroll,
    page: &Page<Product>,
    scope: &CatalogScope,
    done: bool,
) -> Result<usize, Failure> {
    let rows: Vec<CatalogProduct> = page
        .items
        .iter()
        .filter_map(|p| catalog::product_rows(p, scope))
        .collect();
    let modified = page.items.iter().map(Product::modified_ms);
    let cursor = page_cursor(sync, scroll, modified.clone(), done);
    let news = rows.len();
    // The store splits the page into short transactions itself (committing whenever a
    // record call waits), the cursor with the last.
    let adv = advance("products", cursor);
    sync.store
        .apply_products(&rows, Some(&adv))
        .map_err(storage)?;
    Ok(news)
}

fn apply_stock_page(
    sync: &Sync,
    scroll: &mut Scroll,
    page: &Page<InventoryItem>,
    done: bool,
) -> Result<usize, Failure> {
    let levels: Vec<_> = page.items.iter().filter_map(catalog::stock_level).collect();
    let cursor = page_cursor(
        sync,
        scroll,
        levels.iter().map(|l| Some(l.modified_ms)),
        done,
    );
    let changed = sync
        .store
        .apply_stock(&levels, Some(&advance("stock", cursor)))
        .map_err(storage)?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::in_modified_order;

    #[test]
    fn keyset_paging_trusts_only_pages_in_modified_order_from_their_key() {
        assert!(in_modified_order(&[Some(5), Some(5), Some(9)], Some(5)));
        assert!(in_modified_order(&[], Some(5)));
        assert!(!in_modified_order(&[Some(9), Some(5)], None), "descending");
        assert!(
            !in_modified_order(&[Some(4), Some(9)], Some(5)),
            "before its key"
        );
        assert!(
            !in_modified_order(&[Some(5), None], None),
            "a stamp missing"
        );
    }
}
