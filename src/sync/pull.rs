//! The pull engine: brings Omnium's stores, categories, products (with prices) and stock
//! into the local tables, one page per step so the worker can push between pages.
//!
//! Each data set has a cursor: the high-water mark of Omnium's `modified` seen, re-read with
//! a small overlap and applied idempotently. A page and the cursor it earns commit together.
//! Product scrolls are asked for in `modified` order; while pages really come in that order
//! the cursor advances page by page, so a kill -9 mid-scroll re-fetches at most about one
//! page. Pages out of order (an Omnium that ignores the sort) only move the cursor when the
//! scroll ends, which is still safe, just slower to resume.

use super::{now_ms, Sync, SyncContext};
use crate::model::catalog::CatalogProduct;
use crate::omnium::catalog::{self, CatalogScope, Page};
use crate::omnium::Failure;
use crate::store::CursorAdvance;
use serde_json::json;
use std::collections::VecDeque;

/// Stores and categories change rarely; they are pulled at most this often unless asked.
const SLOW_DATASET_INTERVAL_MS: i64 = 3_600_000;
/// Products are applied in transactions of this many, so the writer lock is never held long.
const APPLY_CHUNK: usize = 200;
/// Page size asked of Omnium's scrolls.
const SCROLL_TAKE: usize = 1000;
/// An expired scroll is restarted from the cursor at most this many times per run.
const MAX_SCROLL_RESTARTS: u32 = 3;

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
    /// The cursor when the scroll started: items at or below it are not news.
    base: Option<i64>,
    max_seen: Option<i64>,
    last_page_max: Option<i64>,
    in_order: bool,
    fetched: u64,
    restarts: u32,
    /// When the scroll was started, by this clock.
    started_ms: i64,
}

#[derive(Default)]
pub struct Puller {
    queue: VecDeque<Dataset>,
    scroll: Option<Scroll>,
    next_run_at: i64,
    last_slow_run: i64,
    /// The market's product language, once known (`Some(None)` = accept all).
    language: Option<Option<String>>,
    runs: u64,
    /// `fo_sync_now` came during a run: run again when it ends.
    rerun: bool,
    /// The page of a paged search (orders, purchase orders) being read, and the newest
    /// `modified` seen in this run.
    search_page: u32,
    search_max: Option<i64>,
    search_started: i64,
}

/// Purchase orders change seldom: pulled on every this-many-th run (and when asked).
const PURCHASE_ORDER_EVERY: u64 = 3;
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

    pub fn next_run_at(&self) -> i64 {
        self.next_run_at
    }

    /// Starts a run now if one is due (or `force`, from `fo_sync_now`).
    pub fn maybe_start(&mut self, now: i64, force: bool, ctx: &SyncContext) {
        // Asked while a run is under way (it may be past the data set that changed):
        // another full run follows it at once.
        self.rerun |= force && self.is_running();
        let force = force || (self.rerun && !self.is_running());
        if self.is_running() || (!force && now < self.next_run_at) {
            return;
        }
        self.rerun = false;
        if force || now - self.last_slow_run >= SLOW_DATASET_INTERVAL_MS {
            self.queue.push_back(Dataset::Stores);
            self.queue.push_back(Dataset::Categories);
            self.last_slow_run = now;
        }
        self.queue.push_back(Dataset::Products);
        if ctx.pull_stock {
            self.queue.push_back(Dataset::Stock);
        }
        self.queue.push_back(Dataset::Orders);
        if force || self.runs % PURCHASE_ORDER_EVERY == 0 {
            self.queue.push_back(Dataset::PurchaseOrders);
        }
        self.runs += 1;
    }

    /// Ends the run early (a failure): the next run resumes from the committed cursors.
    pub fn abort(&mut self, retry_at: i64) {
        self.queue.clear();
        self.scroll = None;
        self.search_page = 0;
        self.search_max = None;
        self.next_run_at = retry_at;
    }

    /// Does one request's worth of pulling.
    pub fn step(&mut self, sync: &Sync) -> Result<Step, Failure> {
        let Some(&dataset) = self.queue.front() else {
            return Ok(Step::Idle);
        };
        let result = match dataset {
            Dataset::Stores => self.pull_stores(sync),
            Dataset::Categories => self.pull_categories(sync),
            Dataset::Products | Dataset::Stock => self.pull_scroll(sync, dataset),
            Dataset::Orders | Dataset::PurchaseOrders => self.pull_search(sync, dataset),
        };
        let finished = match result {
            Ok(done) => done,
            // Omnium refuses or fails this data set (a missing role, an endpoint that errs):
            // the others still come, and this one is tried again on the next run from its
            // committed cursor. Only an Omnium that is down, throttling or refusing the API
            // user stops the run.
            Err(f @ (Failure::Rejected { .. } | Failure::Uncertain(_) | Failure::Busy(_))) => {
                log::error!("pulling {} failed: {f}", dataset.name());
                self.scroll = None;
                self.search_page = 0;
                self.search_max = None;
                true
            }
            Err(f) => return Err(f),
        };
        if finished {
            self.queue.pop_front();
            if self.queue.is_empty() {
                self.next_run_at = now_ms() + sync.pull_interval_ms as i64;
            }
        }
        Ok(if self.queue.is_empty() {
            Step::Idle
        } else {
            Step::More
        })
    }

    fn language(&mut self, sync: &Sync) -> Result<Option<String>, Failure> {
        if let Some(lang) = &self.language {
            return Ok(lang.clone());
        }
        let stored = sync.store.get_state("market_language").map_err(storage)?;
        let lang = match stored {
            Some(l) => Some(l).filter(|l| !l.is_empty()),
            None => {
                match sync.api.market_language(&sync.ctx.market_id) {
                    Ok(lang) => {
                        sync.store
                            .set_state("market_language", lang.as_deref().unwrap_or(""))
                            .map_err(storage)?;
                        lang
                    }
                    Err(
                        f @ (Failure::Unreachable(_)
                        | Failure::Throttled { .. }
                        | Failure::Unauthorized(_)),
                    ) => return Err(f),
                    // The markets list is a nicety: without it every language is kept, and
                    // it is asked again on the next run.
                    Err(f) => {
                        log::warn!("cannot read the market's language ({f}); keeping every language this run");
                        return Ok(None);
                    }
                }
            }
        };
        log::info!("catalog language: {}", lang.as_deref().unwrap_or("(any)"));
        self.language = Some(lang.clone());
        Ok(lang)
    }

    fn pull_stores(&mut self, sync: &Sync) -> Result<bool, Failure> {
        let started = now_ms();
        let (cursor, from) = delta_from(sync, Dataset::Stores)?;
        let mut ids = vec![sync.ctx.store_id.clone()];
        for w in &sync.ctx.warehouse_ids {
            if !ids.contains(w) {
                ids.push(w.clone());
            }
        }
        let page = sync.api.search_stores(&ids, from)?;
        let stores: Vec<(String, String)> = page
            .items
            .iter()
            .filter_map(|s| Some((s["id"].as_str()?.to_string(), s.to_string())))
            .collect();
        let max = page
            .items
            .iter()
            .filter_map(|s| catalog::time_ms(&s["modified"]))
            .max();
        let news = page
            .items
            .iter()
            .filter(|s| catalog::time_ms(&s["modified"]) > cursor || cursor.is_none())
            .count();
        sync.store
            .upsert_stores(&stores, Some(&advance("stores", max)))
            .map_err(storage)?;
        settle(sync, Dataset::Stores, cursor, started);
        if news > 0 {
            sync.events
                .push(json!({"type": "catalog.changed", "dataset": "stores", "count": news}));
        }
        Ok(true)
    }

    fn pull_categories(&mut self, sync: &Sync) -> Result<bool, Failure> {
        let language = self.language(sync)?;
        let scope = scope(&sync.ctx, language.as_deref());
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

    /// One page of the order or purchase-order search. `Ok(true)` when the run is done; the
    /// cursor moves to the newest `modified` seen when it is.
    fn pull_search(&mut self, sync: &Sync, dataset: Dataset) -> Result<bool, Failure> {
        if self.search_page == 0 {
            self.search_started = now_ms();
        }
        let (cursor, from) = delta_from(sync, dataset)?;
        let resource = if dataset == Dataset::Orders {
            "Orders"
        } else {
            "PurchaseOrders"
        };
        let page = sync.api.search_for_store(
            resource,
            &sync.ctx.store_id,
            from,
            self.search_page,
            SEARCH_TAKE,
        )?;
        let newest = page
            .items
            .iter()
            .filter_map(crate::omnium::back_office::modified_ms)
            .max();
        self.search_max = self.search_max.max(newest);
        if dataset == Dataset::Orders {
            for order in &page.items {
                super::inbound::apply_order(sync, order);
            }
        } else {
            let pos: Vec<_> = page
                .items
                .iter()
                .filter_map(|p| {
                    Some((
                        p["id"].as_str()?.to_string(),
                        p["status"].as_str().map(str::to_string),
                        crate::omnium::back_office::local_purchase_order(p).to_string(),
                        crate::omnium::back_office::modified_ms(p),
                    ))
                })
                .collect();
            sync.store
                .put_purchase_orders(&pos, None)
                .map_err(storage)?;
        }
        // Omnium caps take × page at 10,000: past that, the next run continues from the cursor.
        let done = page.items.len() < SEARCH_TAKE as usize
            || (self.search_page + 2) * SEARCH_TAKE > 10_000;
        if done {
            sync.store
                .advance_cursor(&advance(dataset.name(), self.search_max))
                .map_err(storage)?;
            settle(sync, dataset, cursor, self.search_started);
            self.search_page = 0;
            self.search_max = None;
        } else {
            self.search_page += 1;
        }
        Ok(done)
    }

    /// One page of the products or stock scroll. `Ok(true)` when the scroll is done.
    fn pull_scroll(&mut self, sync: &Sync, dataset: Dataset) -> Result<bool, Failure> {
        let language = if dataset == Dataset::Products {
            self.language(sync)?
        } else {
            None
        };
        let scope = scope(&sync.ctx, language.as_deref());
        let resource = if dataset == Dataset::Products {
            "Products"
        } else {
            "Inventory"
        };
        let page = match self
            .scroll
            .as_mut()
            .filter(|s| s.dataset == dataset && s.id.is_some())
        {
            Some(s) => match sync
                .api
                .scroll_next(resource, s.id.as_deref().unwrap_or_default())?
            {
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
            },
            None => {
                let restarts = self.scroll.as_ref().map_or(0, |s| s.restarts);
                let started_ms = now_ms();
                let (base, from) = delta_from(sync, dataset)?;
                let page = if dataset == Dataset::Products {
                    sync.api.products_scroll_start(from, &scope, SCROLL_TAKE)?
                } else {
                    sync.api.inventory_search(&sync.ctx.warehouse_ids, from)?
                };
                self.scroll = Some(Scroll {
                    dataset,
                    id: None,
                    base,
                    max_seen: None,
                    last_page_max: None,
                    in_order: true,
                    fetched: 0,
                    restarts,
                    started_ms,
                });
                page
            }
        };
        let Some(scroll) = self.scroll.as_mut() else {
            return Ok(true);
        };
        if page.scroll_id.is_some() {
            scroll.id = page.scroll_id.clone();
        }
        scroll.fetched += page.items.len() as u64;
        // Read to the empty page even when totalHits says everything came: Omnium asks
        // integrations to finish their scrolls rather than leave them to expire.
        let done = page.items.is_empty() || page.scroll_id.is_none();
        let news = if dataset == Dataset::Products {
            apply_products_page(sync, scroll, &page, &scope, done)?
        } else {
            apply_stock_page(sync, scroll, &page, done)?
        };
        if news > 0 {
            let kind = if dataset == Dataset::Products {
                "catalog.changed"
            } else {
                "stock.changed"
            };
            sync.events
                .push(json!({"type": kind, "dataset": dataset.name(), "count": news}));
        }
        if done {
            let (base, started) = (scroll.base, scroll.started_ms);
            self.scroll = None;
            settle(sync, dataset, base, started);
        }
        Ok(done)
    }
}

/// Where a delta starts: just after the cursor once everything up to it is settled (a
/// catalog imported at one instant is then not read again on every pull), else the overlap
/// before it, since Omnium's search index may not have shown all of it yet.
fn delta_from(sync: &Sync, dataset: Dataset) -> Result<(Option<i64>, Option<i64>), Failure> {
    let (cursor, settled) = sync.store.cursor(dataset.name()).map_err(storage)?;
    let from = cursor.map(|c| {
        if settled {
            c + 1
        } else {
            c - sync.ctx.pull_overlap_ms
        }
    });
    Ok((cursor, from))
}

/// A delta that started two overlaps after the cursor (one for the index to catch up, one
/// for clock skew) has read everything up to it: later deltas may start after it.
fn settle(sync: &Sync, dataset: Dataset, base: Option<i64>, started_ms: i64) {
    if let Some(c) = base {
        if started_ms >= c + 2 * sync.ctx.pull_overlap_ms {
            if let Err(e) = sync.store.mark_settled(dataset.name(), c) {
                log::warn!("cannot mark the {} cursor settled: {e}", dataset.name());
            }
        }
    }
}

fn scope<'a>(ctx: &'a SyncContext, language: Option<&'a str>) -> CatalogScope<'a> {
    CatalogScope {
        market_id: &ctx.market_id,
        store_id: &ctx.store_id,
        currency: &ctx.currency,
        language,
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

/// The cursor a page may commit: its own newest `modified` while pages arrive in order,
/// else nothing until the scroll ends, when it is the newest seen.
fn page_cursor(
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
        scroll.max_seen
    } else if scroll.in_order {
        page_max
    } else {
        None
    }
}

fn apply_products_page(
    sync: &Sync,
    scroll: &mut Scroll,
    page: &Page,
    scope: &CatalogScope,
    done: bool,
) -> Result<usize, Failure> {
    let rows: Vec<CatalogProduct> = page
        .items
        .iter()
        .filter_map(|p| catalog::product_rows(p, scope))
        .collect();
    let modified = page.items.iter().map(|p| catalog::time_ms(&p["modified"]));
    let cursor = page_cursor(scroll, modified.clone(), done);
    let news = modified
        .filter(|m| scroll.base.is_none() || *m > scroll.base)
        .count();
    let chunks: Vec<&[CatalogProduct]> = rows.chunks(APPLY_CHUNK).collect();
    if chunks.is_empty() {
        let adv = advance("products", cursor);
        sync.store.advance_cursor(&adv).map_err(storage)?;
    }
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let adv = advance("products", cursor);
        sync.store
            .apply_products(chunk, last.then_some(&adv))
            .map_err(storage)?;
    }
    Ok(news)
}

fn apply_stock_page(
    sync: &Sync,
    scroll: &mut Scroll,
    page: &Page,
    done: bool,
) -> Result<usize, Failure> {
    let levels: Vec<_> = page.items.iter().filter_map(catalog::stock_level).collect();
    let cursor = page_cursor(scroll, levels.iter().map(|l| Some(l.modified_ms)), done);
    let changed = sync
        .store
        .apply_stock(&levels, Some(&advance("stock", cursor)))
        .map_err(storage)?;
    Ok(changed)
}
