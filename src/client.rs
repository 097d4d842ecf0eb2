//! [`Client`]: the Rust API of the library. Recording validates, then commits one outbox
//! row; reading and sync control go to the store and the worker.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::fields::{canonical_json, parse_object};
use crate::model::store_events::{
    legacy_pdf_fingerprint, pdf_fingerprint, Customer, GoodsReception, Pickup, Receipt, StockCount,
};
use crate::model::{Cancellation, Defaults, JobKind, Return, Sale};
use crate::omnium::OmniumApi;
use crate::store::{Extras, Lookup, NewJob, PushLevel, StockEffects, Store};
use crate::sync::policy::RetryPolicy;
use crate::sync::push::SyncContext;
use crate::sync::{now_ms, rfc3339, Sync};
use crate::views;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `close` waits this long for the worker to finish its current request; after that the
/// worker finishes on its own (its results still commit) and `close` returns.
const CLOSE_WAIT: Duration = Duration::from_secs(8);

/// How long after a request's timeout Omnium may still be applying it, at most.
const SETTLE_MARGIN_MS: i64 = 5_000;

pub struct Client {
    config: Config,
    defaults: Defaults,
    store: Arc<Store>,
    sync: Arc<Sync>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// The thread that builds an owed search index (store/deferred.rs); joined at close.
    builder: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl Client {
    /// Parses the config, opens (and migrates) the database and, unless
    /// `sync.autostart` is false, starts the worker.
    pub fn open(config_json: &str) -> Result<Client> {
        Client::open_with(
            config_json,
            None,
            Arc::new(crate::clock::SystemClock),
            false,
        )
    }

    /// [`Client::open`] with the clocks the worker schedules by (tests pass a
    /// [`crate::clock::ManualClock`]).
    pub fn open_with_clock(
        config_json: &str,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Client> {
        Client::open_with(config_json, None, clock, false)
    }

    /// Opens a client for the deterministic simulation (`tests/dst.rs`): Omnium behind
    /// `transport`, every clock the library reads is `clock`, and no worker thread (the
    /// simulation drives a [`crate::sync::Worker`] over [`Client::sync_handle`] itself; the
    /// worker never sleeps).
    #[doc(hidden)]
    pub fn open_simulated(
        config_json: &str,
        transport: Arc<dyn crate::omnium::transport::Transport>,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Client> {
        Client::open_with(config_json, Some(transport), clock, true)
    }

    /// The worker's shared state (the deterministic simulation drives it).
    #[doc(hidden)]
    pub fn sync_handle(&self) -> Arc<Sync> {
        self.sync.clone()
    }

    fn open_with(
        config_json: &str,
        transport: Option<Arc<dyn crate::omnium::transport::Transport>>,
        clock: Arc<dyn crate::clock::Clock>,
        simulated: bool,
    ) -> Result<Client> {
        let mut config = Config::from_json(config_json)?;
        if simulated {
            config.sync.autostart = false;
        }
        let store = Arc::new(Store::open(&config.database_path)?);
        store.set_retention(crate::store::Retention {
            customers_ms: config.sync.customer_retention_ms,
            finished_orders_ms: config.sync.finished_order_retention_ms,
        });
        // An uncertain job is read back only after its request's whole timeout (connect
        // and answer) plus a settle margin: Omnium may still be applying it (rule 9.8).
        let timeout = config.omnium.timeout_ms as i64;
        store.set_settle_ms(timeout + timeout.min(10_000) + timeout.min(SETTLE_MARGIN_MS));
        store.set_clock(clock.clone());
        let api = match transport {
            Some(t) => OmniumApi::with_transport(&config.omnium, t),
            // On the network and the process's clock: throttled together with every other
            // client of the same API user in this process (issue 13).
            None if clock.is_process_clock() => OmniumApi::new(&config.omnium).shared_by_user(),
            None => OmniumApi::new(&config.omnium),
        }
        .with_clock(clock.clone());
        let sync = Sync::new(
            store.clone(),
            api,
            SyncContext {
                market_id: config.market_id.clone(),
                store_id: config.store_id.clone(),
                currency: config.currency.clone(),
                terminal_id: config.terminal_id.clone(),
                warehouse_ids: config.warehouse_ids.clone(),
                pull_stock: config.stock_master == crate::config::StockMaster::Omnium,
                pull_overlap_ms: config.sync.pull_overlap_ms as i64,
                time_zone: config.time_zone,
                full_resync_ms: i64::try_from(config.sync.full_resync_ms).unwrap_or(i64::MAX),
            },
            RetryPolicy {
                initial_ms: config.sync.retry_initial_ms,
                max_ms: config.sync.retry_max_ms,
                max_attempts: config.sync.max_attempts,
            },
            config.omnium.max_concurrency,
            config.sync.pull_interval_ms,
            config.sync.delivered_retention_ms,
            clock,
        );
        let sync = Arc::new(if simulated { sync.simulated() } else { sync });
        let mut builder = None;
        if !simulated {
            // The search index a first sync, a re-fold or the single-file copy left owed is
            // built on a thread of its own (store/deferred.rs): never inside this open nor
            // on the worker, and with `sync.autostart` false too. The deterministic
            // simulation builds on its worker's steps instead.
            store.catalog_builder_starting();
            let s = store.clone();
            match std::thread::Builder::new()
                .name("flow-omnium-index".into())
                .spawn(move || s.run_catalog_builder())
            {
                Ok(handle) => builder = Some(handle),
                Err(e) => {
                    // Built on the worker's kicks then, on its thread, as before.
                    store.catalog_builder_failed();
                    log::error!("cannot start the catalog's index thread: {e}");
                }
            }
        }
        if let Some(d) = store.damage() {
            // CONTRACT §9 rule 4: the till goes on selling on a fresh file; the POS is told.
            sync.events.push(json!({
                "type": "storage.damaged",
                "moved_to": d.moved_to,
                "salvaged": d.salvaged,
                "lost": d.lost,
            }));
        }
        for moved in store.catalog_damage() {
            // The catalog's own file was damaged: moved aside and pulled again from the
            // start. It holds no job, so none is salvaged and none lost.
            sync.events.push(json!({
                "type": "storage.damaged",
                "moved_to": moved.file_name().map(|n| n.to_string_lossy().into_owned()),
                "salvaged": 0,
                "lost": 0,
            }));
        }
        let client = Client {
            defaults: Defaults {
                store_id: config.store_id.clone(),
                currency: config.currency.clone(),
            },
            config,
            store,
            sync,
            worker: Mutex::new(None),
            builder: Mutex::new(builder),
            closed: AtomicBool::new(false),
        };
        if client.config.sync.autostart {
            client.start_worker()?;
        }
        log::info!(
            "flow-omnium {} opened {} for store {:?}",
            env!("CARGO_PKG_VERSION"),
            client.config.database_path.display(),
            client.config.store_id
        );
        Ok(client)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn start_worker(&self) -> Result<()> {
        let mut slot = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the slot's lock: `close` marks the client closed before it takes the
        // slot, so a worker is either started before close takes (and joins) it, or never.
        self.check_open()?;
        if slot.is_none() {
            let sync = self.sync.clone();
            let handle = std::thread::Builder::new()
                .name("flow-omnium-sync".into())
                .spawn(move || sync.run())
                .map_err(|e| Error::Internal(format!("cannot start the sync thread: {e}")))?;
            *slot = Some(handle);
        }
        Ok(())
    }

    fn record_checked<F>(
        &self,
        kind: JobKind,
        event_id: &str,
        entity_id: &str,
        content: &Value,
        check: F,
    ) -> Result<()>
    where
        F: FnOnce(&Lookup) -> Result<Extras>,
    {
        self.record_with_blob(kind, event_id, entity_id, content, None, check)
    }

    fn record_with_blob<F>(
        &self,
        kind: JobKind,
        event_id: &str,
        entity_id: &str,
        content: &Value,
        blob: Option<&[u8]>,
        check: F,
    ) -> Result<()>
    where
        F: FnOnce(&Lookup) -> Result<Extras>,
    {
        self.record_canonical(
            kind,
            event_id,
            entity_id,
            &canonical_json(content),
            blob,
            check,
        )
    }

    /// Records an event whose canonical JSON (the stored form) is already written.
    fn record_canonical<F>(
        &self,
        kind: JobKind,
        event_id: &str,
        entity_id: &str,
        canonical: &str,
        blob: Option<&[u8]>,
        check: F,
    ) -> Result<()>
    where
        F: FnOnce(&Lookup) -> Result<Extras>,
    {
        self.record_canonical_announced(kind, event_id, entity_id, canonical, blob, check, None)
    }

    /// [`Client::record_canonical`] for a caller announced to the store before it read its
    /// event ([`Store::coming`]).
    #[allow(clippy::too_many_arguments)]
    fn record_canonical_announced<F>(
        &self,
        kind: JobKind,
        event_id: &str,
        entity_id: &str,
        canonical: &str,
        blob: Option<&[u8]>,
        check: F,
        coming: Option<crate::store::Coming<'_>>,
    ) -> Result<()>
    where
        F: FnOnce(&Lookup) -> Result<Extras>,
    {
        let job = NewJob {
            kind: kind.as_str(),
            event_id,
            entity_id,
            content: canonical,
            blob,
        };
        let outcome = self
            .store
            .record_announced(&job, self.sync.wall_ms(), check, coming)?;
        if let crate::store::Recorded::New(_) = outcome {
            self.sync.nudge();
        }
        Ok(())
    }

    /// The store's own warehouse: the store itself when it is one of `warehouse_ids` (in
    /// Omnium a store that holds stock is its own warehouse, and a POS order's and a return's
    /// stock move there), else the first configured (its default warehouse).
    fn main_warehouse(&self) -> &str {
        self.warehouse_of(&self.config.store_id)
            .unwrap_or(&self.config.warehouse_ids[0])
    }

    /// The warehouse a sale of `store_id` draws its goods from, when this till pulls its
    /// levels: that store's own, or this store's main warehouse for this store. A sale
    /// recorded for a store whose levels are not pulled moves no local level.
    fn warehouse_of(&self, store_id: &str) -> Option<&str> {
        if let Some(w) = self.config.warehouse_ids.iter().find(|w| *w == store_id) {
            return Some(w);
        }
        (store_id == self.config.store_id).then(|| self.config.warehouse_ids[0].as_str())
    }

    /// Records a sale (CONTRACT §4). Returns once it is durably stored.
    pub fn record_sale(&self, sale_json: &str) -> Result<()> {
        self.check_open()?;
        // On its way to the writer: a batch being committed by another caller waits for
        // this one (see store::group). Dropped unused if the sale is refused.
        let coming = self.store.coming();
        // The sale is read as a view into `sale_json`: none of its strings is copied.
        Sale::read_with(sale_json, &self.defaults, |sale, canonical| {
            // The goods leave the selling store's warehouse now; see fo_stock_get's pending.
            let warehouse = self.warehouse_of(sale.store_id);
            let mut effects = StockEffects::with_capacity(sale.lines.len());
            if let Some(warehouse) = warehouse {
                for l in &sale.lines {
                    effects.push(l.sku, warehouse, -l.quantity);
                }
            }
            self.record_canonical_announced(
                JobKind::Sale,
                sale.id,
                sale.id,
                &canonical,
                None,
                |_| {
                    Ok(Extras {
                        effects,
                        extra: None,
                    })
                },
                Some(coming),
            )
        })
    }

    /// Records a return. When the sale was recorded here, its lines and the quantities
    /// already returned are checked.
    pub fn record_return(&self, return_json: &str) -> Result<()> {
        self.check_open()?;
        let mut value = parse_object(return_json, "return")?;
        Return::normalize(&mut value);
        let ret = Return::parse(&value)?;
        let warehouse = self.main_warehouse().to_string();
        self.record_checked(JobKind::Return, &ret.id, &ret.sale_id, &value, |lookup| {
            // A return of an order not sold here: nothing to check, and no SKU to restock.
            let Some(sale) = recorded_sale(lookup, &ret.sale_id)? else {
                return Ok(Extras::default());
            };
            let earlier = lookup
                .contents_for_entity(JobKind::Return.as_str(), &ret.sale_id)?
                .iter()
                .filter_map(|c| serde_json::from_str(c).ok())
                .filter_map(|v: Value| Return::parse(&v).ok())
                .collect::<Vec<_>>();
            ret.check_against(&sale, &earlier)?;
            let mut effects = StockEffects::default();
            for l in ret.lines.iter().filter(|l| l.restock) {
                if let Some(sold) = sale.line(&l.line_id) {
                    effects.push(&sold.sku, &warehouse, l.quantity);
                }
            }
            Ok(Extras {
                effects,
                extra: None,
            })
        })
    }

    /// Records the cancellation of a whole order or of some of its lines.
    pub fn record_cancellation(&self, cancellation_json: &str) -> Result<()> {
        self.check_open()?;
        let value = parse_object(cancellation_json, "cancellation")?;
        let c = Cancellation::parse(&value)?;
        self.record_checked(
            JobKind::Cancellation,
            &c.id,
            &c.order_id,
            &value,
            |lookup| {
                if let Some(sale) = recorded_sale(lookup, &c.order_id)? {
                    c.check_against(&sale)?;
                }
                Ok(Extras::default())
            },
        )
    }

    /// Records a receipt and its PDF; sent after its sale as an invoice with the PDF
    /// attached. With `send_receipts` false it is validated and nothing is stored.
    pub fn record_receipt(&self, receipt_json: &str, pdf: &[u8]) -> Result<()> {
        self.check_open()?;
        let mut value = parse_object(receipt_json, "receipt")?;
        Receipt::normalize(&mut value, &self.config.currency);
        let receipt = Receipt::parse(&value)?;
        Receipt::check_pdf(pdf)?;
        if !self.config.send_receipts {
            return Ok(());
        }
        // The PDF is part of what a repeated id is compared with, by fingerprint.
        value["_pdf"] = pdf_fingerprint(pdf).into();
        let recorded = self.record_with_blob(
            JobKind::Receipt,
            &receipt.id,
            &receipt.sale_id,
            &value,
            Some(pdf),
            |_| Ok(Extras::default()),
        );
        match recorded {
            // Recorded by an older version, which fingerprinted with FNV-1a: the same
            // receipt again is still the same, not a conflict.
            Err(Error::Conflict(_)) => {
                value["_pdf"] = legacy_pdf_fingerprint(pdf).into();
                match self.record_with_blob(
                    JobKind::Receipt,
                    &receipt.id,
                    &receipt.sale_id,
                    &value,
                    Some(pdf),
                    |_| Ok(Extras::default()),
                ) {
                    Ok(()) => Ok(()),
                    Err(_) => recorded,
                }
            }
            other => other,
        }
    }

    /// Records a customer created or changed at the till: the newest version not yet sent
    /// replaces older ones, and `fo_customer_get` shows it at once.
    pub fn record_customer(&self, customer_json: &str) -> Result<()> {
        self.check_open()?;
        let value = parse_object(customer_json, "customer")?;
        let customer = Customer::parse(&value)?;
        let canonical = canonical_json(&value);
        let job = NewJob {
            kind: JobKind::Customer.as_str(),
            event_id: &customer.id,
            entity_id: &format!("customer:{}", customer.id),
            content: &canonical,
            blob: None,
        };
        let outcome = self
            .store
            .record_state(&job, self.sync.wall_ms(), |lookup| {
                lookup.put_customer(&customer.id, &canonical)
            })?;
        if let crate::store::Recorded::New(_) = outcome {
            self.sync.nudge();
        }
        Ok(())
    }

    /// Records goods received. With a purchase order it is confirmed on the delivery;
    /// without, the new absolute levels are pushed. More than ordered is accepted and
    /// reported (a log line and a `goods_reception.over_received` event).
    pub fn record_goods_reception(&self, reception_json: &str) -> Result<()> {
        self.check_open()?;
        let mut value = parse_object(reception_json, "goods_reception")?;
        GoodsReception::normalize(&mut value, self.main_warehouse());
        // A reception of a purchase order without its delivery: the pulled order names it.
        if value.get("delivery_id").is_none_or(Value::is_null) {
            if let Some(po_id) = value["purchase_order_id"].as_str() {
                let delivery = self
                    .store
                    .purchase_order_json(po_id)?
                    .and_then(|po| serde_json::from_str::<Value>(&po).ok())
                    .and_then(|po| po["delivery_id"].as_str().map(str::to_string));
                if let Some(delivery) = delivery {
                    value["delivery_id"] = delivery.into();
                }
            }
        }
        let r = GoodsReception::parse(&value)?;
        let entity = match &r.purchase_order_id {
            Some(po) => format!("po:{po}"),
            None => format!("reception:{}", r.id),
        };
        let mut over = Vec::new();
        let over_ref = &mut over;
        self.record_checked(JobKind::GoodsReception, &r.id, &entity, &value, |lookup| {
            let mut effects = StockEffects::with_capacity(r.lines.len());
            for l in &r.lines {
                effects.push(&l.sku, &r.warehouse_id, l.quantity);
            }
            let Some(po_id) = &r.purchase_order_id else {
                // No purchase order: the absolute levels are worked out when it is sent
                // (sync/push.rs), from Omnium's level then, not from this moment's.
                return Ok(Extras {
                    effects,
                    extra: None,
                });
            };
            if let Some(po) = lookup.purchase_order(po_id)? {
                let po: Value = serde_json::from_str(&po).map_err(|e| Error::Storage(e.to_string()))?;
                for (i, l) in r.lines.iter().enumerate() {
                    let line_id = l.line_id.as_deref().unwrap_or("");
                    let Some(ordered) = po["lines"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|pl| pl["line_id"].as_str() == Some(line_id))
                    else {
                        return Err(Error::invalid(
                            format!("goods_reception.lines[{i}].line_id"),
                            format!("purchase order {po_id:?} has no line {line_id:?}"),
                        ));
                    };
                    let open = ordered["quantity"].as_f64().unwrap_or(0.0)
                        - ordered["delivered_quantity"].as_f64().unwrap_or(0.0);
                    if l.quantity > open + 1e-9 {
                        over_ref.push(json!({"line_id": line_id, "sku": l.sku, "received": l.quantity, "open": open}));
                    }
                }
            }
            Ok(Extras { effects, extra: None })
        })?;
        if !over.is_empty() {
            log::warn!(
                "goods reception {:?} received more than ordered: {}",
                r.id,
                Value::from(over.clone())
            );
            self.sync.events.push(json!({
                "type": "goods_reception.over_received", "reception_id": r.id,
                "purchase_order_id": r.purchase_order_id, "lines": over,
            }));
        }
        Ok(())
    }

    /// Records a stock count (a flow stock-master store only): absolute levels, the newest
    /// per SKU and warehouse pushed to Omnium, coalesced while offline.
    pub fn record_stock_count(&self, stock_json: &str) -> Result<()> {
        self.check_open()?;
        let value = parse_object(stock_json, "stock_count")?;
        let count = StockCount::parse(&value)?;
        if self.config.stock_master != crate::config::StockMaster::Flow {
            return Err(Error::invalid(
                "stock_count",
                "this store's stock master is Omnium (config stock_master \"omnium\"); counts are not sent",
            ));
        }
        let counted_at_ms = count.counted_at.timestamp_millis();
        let levels: Vec<PushLevel> = count
            .items
            .iter()
            .map(|(sku, quantity)| PushLevel {
                sku: sku.clone(),
                warehouse_id: count.warehouse_id.clone(),
                quantity: *quantity,
                counted_at_ms,
            })
            .collect();
        self.store
            .write(|lookup| lookup.push_levels(&levels, self.sync.wall_ms()))?;
        self.sync.nudge();
        Ok(())
    }

    /// Records click & collect progress. The local order shows it at once; Omnium gets it
    /// in order, after the order's earlier progress.
    pub fn record_pickup(&self, pickup_json: &str) -> Result<()> {
        self.check_open()?;
        let value = parse_object(pickup_json, "pickup")?;
        let p = Pickup::parse(&value)?;
        self.record_checked(JobKind::Pickup, &p.id, &p.order_id, &value, |lookup| {
            let Some(local) = lookup.inbound_order(&p.order_id)? else {
                return Ok(Extras::default());
            };
            let mut order: Value =
                serde_json::from_str(&local).map_err(|e| Error::Storage(e.to_string()))?;
            let (status, targets) = views::apply_pickup(&mut order, &p)?;
            lookup.set_inbound_order(&p.order_id, &status, &order.to_string())?;
            Ok(Extras {
                effects: StockEffects::default(),
                extra: Some(json!({ "_targets": targets }).to_string()),
            })
        })
    }

    /// Wakes the worker to push now (starting it if `autostart` was false).
    pub fn sync_now(&self) -> Result<()> {
        self.check_open()?;
        self.start_worker()?;
        self.sync.sync_now();
        Ok(())
    }

    /// Wakes the worker to look at its schedule now, without forcing anything (tests that
    /// move a [`crate::clock::ManualClock`] use it).
    #[doc(hidden)]
    pub fn wake(&self) -> Result<()> {
        self.check_open()?;
        self.sync.nudge();
        Ok(())
    }

    /// Returns once nothing is pending (dead and blocked jobs do not count), or
    /// `Error::Timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.check_open()?;
        self.start_worker()?;
        let deadline = Instant::now() + timeout;
        self.sync.nudge();
        // Called on the worker's own thread (a log callback of a line the worker logged):
        // the worker is stopped in that callback, so waiting for it would stall every
        // delivery for the whole timeout (review of the flush fix: a callback flushing with
        // a long timeout held the worker that long). Checked once, never waited.
        let on_worker = self.sync.on_worker_thread();
        loop {
            if !self.store.has_pending()? {
                // Settled as soon as the outcomes commit: let the worker queue their events
                // (`job.dead`) so that a POS reading events after the flush finds them.
                self.sync.wait_reported(deadline);
                // Closed during that wait: FO_CLOSED, as documented.
                return self.check_open();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || on_worker {
                let pending = self.store.counts()?.pending;
                if on_worker {
                    return Err(Error::Timeout(format!(
                        "{pending} job(s) still pending; fo_flush called on the sync thread \
                         (from a log callback) cannot wait for it"
                    )));
                }
                return Err(Error::Timeout(format!(
                    "{pending} job(s) still pending after {} ms",
                    timeout.as_millis()
                )));
            }
            self.check_open()?;
            self.sync.wait_progress(left.min(Duration::from_millis(50)));
        }
    }

    /// The sync status JSON (CONTRACT §6).
    pub fn status_json(&self) -> Result<String> {
        self.check_open()?;
        let counts = self.store.counts()?;
        let link = self.sync.link();
        let time = |ms: Option<i64>| ms.map(rfc3339).map(Value::from).unwrap_or(Value::Null);
        let stored_time = |key: &str| -> Result<Value> {
            Ok(time(
                self.store.get_state(key)?.and_then(|v| v.parse().ok()),
            ))
        };
        let next_attempt = if counts.pending == 0 {
            None
        } else {
            let due = self.store.next_due_at()?;
            let at = match (due, link.hold_until) {
                (Some(d), Some(h)) => Some(d.max(h)),
                (d, h) => d.or(h),
            };
            // A job already due is attempted now, not in the past.
            at.map(|t| t.max(now_ms()))
        };
        Ok(json!({
            "online": link.online,
            "outbox": {
                "pending": counts.pending,
                "blocked": counts.blocked,
                "dead": counts.dead,
                "oldest_pending_at": time(counts.oldest_pending_at),
            },
            "next_attempt_at": time(next_attempt),
            "last_push_at": stored_time("last_push_at")?,
            "last_pull_at": time(self.store.last_pull_at()?),
            "pulling": link.pulling,
            "failing_datasets": self
                .store
                .pull_failures()?
                .into_iter()
                .map(|(dataset, since, runs, error)| json!({
                    "dataset": dataset, "failing_since": time(Some(since)),
                    "failed_runs": runs, "last_error": error,
                }))
                .collect::<Vec<_>>(),
        })
        .to_string())
    }

    /// The next event, waiting up to `timeout`; `Error::Timeout` if none came.
    pub fn next_event(&self, timeout: Duration) -> Result<String> {
        self.check_open()?;
        match self.sync.events.next(timeout) {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(Error::Timeout(format!(
                "no event within {} ms",
                timeout.as_millis()
            ))),
            Err(()) => Err(Error::Closed),
        }
    }

    /// Jobs given up on (CONTRACT §6).
    pub fn dead_jobs_json(&self) -> Result<String> {
        self.check_open()?;
        let items: Vec<Value> = self
            .store
            .dead_jobs()?
            .into_iter()
            .map(|j| {
                json!({
                    "id": j.id.to_string(), "kind": j.kind, "entity_id": j.entity_id,
                    "attempts": j.attempts, "last_error": j.last_error,
                    "dead_at": j.dead_at.map(rfc3339),
                })
            })
            .collect();
        Ok(json!({ "items": items }).to_string())
    }

    /// Gives a dead job (or every dead job, with `None`) a new set of attempts.
    pub fn retry_job(&self, job_id: Option<&str>) -> Result<()> {
        self.check_open()?;
        let id = match job_id {
            None => None,
            Some(s) => Some(s.trim().parse::<i64>().map_err(|_| {
                Error::invalid(
                    "job_id",
                    format!("{s:?} is not a job id (ids come from fo_dead_jobs)"),
                )
            })?),
        };
        let revived = self.store.retry_dead(id, self.sync.wall_ms())?;
        if let (Some(id), 0) = (id, revived) {
            if self.store.dead_job_erased(id)? {
                return Err(Error::NotFound(format!(
                    "dead job {id} cannot be retried: its personal data was erased \
                     (retention or a forgotten customer)"
                )));
            }
            return Err(Error::NotFound(format!("no dead job with id {id}")));
        }
        if revived > 0 {
            log::info!("{revived} dead job(s) queued again");
            self.sync.sync_now();
        }
        Ok(())
    }

    /// Stops the worker and refuses further calls. Returns within about 8 s even when a
    /// request is in flight (the worker then finishes that request on its own).
    pub fn close(&self) {
        self.close_waiting(true)
    }

    /// Stops the worker and refuses further calls without waiting for the worker: for a
    /// close from foreign code the library itself called (a log callback), whose thread the
    /// worker may be waiting on. The database is released once the worker has stopped.
    pub fn close_without_waiting(&self) {
        self.close_waiting(false)
    }

    fn close_waiting(&self, wait: bool) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.sync.shutdown();
        // One deadline for the builder and the worker: the close returns within CLOSE_WAIT
        // (plus the release), not one wait after the other.
        let closing_by = Instant::now() + CLOSE_WAIT;
        // A thread waiting in fo_next_event returns FO_CLOSED now, not at its timeout.
        self.sync.events.close();
        // The index build stops (its statement interrupted and rolled back, the mark kept
        // for the next open) and its thread is joined, so it keeps no part of the store
        // open after the close; from that thread itself (a log callback) it ends on return.
        self.store.stop_catalog_build();
        if let Some(builder) = self
            .builder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            use std::os::unix::thread::JoinHandleExt;
            // SAFETY: pthread_equal and pthread_self only compare/read thread ids.
            let on_builder =
                unsafe { libc::pthread_equal(builder.as_pthread_t(), libc::pthread_self()) != 0 };
            // From the worker's thread (a log callback) the builder may wait for the
            // catalog's writer this thread holds: not waited for, it ends on its own.
            // A close that does not wait (fo_client_close_without_waiting) does not wait
            // for it either.
            if wait && !on_builder && !self.sync.on_worker_thread() {
                // Bounded: it stops within one rolled-back statement, unless it waits for
                // the catalog's writer held by the thread closing (a log callback of the
                // worker's inside a catalog write); then it ends on its own.
                let deadline = closing_by;
                while !builder.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if builder.is_finished() {
                    let _ = builder.join();
                }
            }
        }
        let handle = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        // Closed from the worker's own thread, or a thread sending its batch (a log callback
        // called fo_client_close): it cannot wait for itself; it stops once the callback returns, and is joined then.
        // Compared by pthread identity, not `std::thread::current()`: that panics on a
        // thread whose thread-locals are already destroyed (a close from a pthread_key
        // destructor), which would abandon the close halfway.
        let on_worker = handle.as_ref().is_some_and(|h| {
            use std::os::unix::thread::JoinHandleExt;
            // SAFETY: pthread_equal and pthread_self only compare/read thread ids.
            unsafe { libc::pthread_equal(h.as_pthread_t(), libc::pthread_self()) != 0 }
        }) || self.sync.on_worker_thread();
        let wait = wait && !on_worker;
        if let Some(handle) = handle {
            let deadline = if !wait { Instant::now() } else { closing_by };
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
                self.sync.api.forget_secrets();
                self.store.release_lock();
            } else {
                if wait {
                    log::warn!(
                        "the sync worker is still inside a request; leaving it to finish on its own"
                    );
                }
                // The database stays held (a new client would reset the jobs this worker is
                // still sending) until the worker is done.
                let store = self.store.clone();
                let sync = self.sync.clone();
                let _ = std::thread::Builder::new()
                    .name("flow-omnium-close".into())
                    .spawn(move || {
                        let _ = handle.join();
                        sync.api.forget_secrets();
                        store.release_lock();
                    });
            }
        } else {
            self.sync.api.forget_secrets();
            self.store.release_lock();
        }
        log::info!("flow-omnium closed");
    }

    /// A product by SKU with the price valid now (CONTRACT §5).
    pub fn product_json(&self, sku: &str) -> Result<String> {
        self.check_open()?;
        let p = self.store.product(sku, now_ms())?.ok_or_else(|| {
            Error::NotFound(format!("no product with SKU {sku:?} in the local catalog"))
        })?;
        Ok(views::product(&p).to_string())
    }

    /// Searches sellable products: `{"text", "category_id", "brand", "limit", "offset"}`.
    pub fn search_json(&self, query_json: &str) -> Result<String> {
        self.check_open()?;
        let q = views::search_query(query_json)?;
        let (items, total) = self.store.search_products(&q, now_ms())?;
        let items: Vec<Value> = items.iter().map(views::product).collect();
        Ok(json!({ "items": items, "total": total }).to_string())
    }

    /// Omnium's last known levels in this store's warehouses, with what it has not counted.
    pub fn stock_json(&self, sku: &str) -> Result<String> {
        self.check_open()?;
        let stock = self
            .store
            .stock(sku, &self.config.warehouse_ids)?
            .ok_or_else(|| Error::NotFound(format!("no stock known for SKU {sku:?}")))?;
        Ok(views::stock(&stock).to_string())
    }

    /// A store as Omnium describes it, plus `opening_hours`, `special_days` and `warehouses`.
    pub fn store_json(&self, store_id: &str) -> Result<String> {
        self.check_open()?;
        let raw = self.store.store_json(store_id)?.ok_or_else(|| {
            Error::NotFound(format!("store {store_id:?} is not known locally (yet)"))
        })?;
        let raw: Value = serde_json::from_str(&raw).map_err(|e| Error::Storage(e.to_string()))?;
        Ok(views::store(raw).to_string())
    }

    pub fn categories_json(&self) -> Result<String> {
        self.check_open()?;
        let items: Vec<Value> = self
            .store
            .categories()?
            .into_iter()
            .map(|c| json!({"id": c.id, "name": c.name, "parent_id": c.parent_id, "sort_index": c.sort_index}))
            .collect();
        Ok(json!({ "items": items }).to_string())
    }

    /// Brands of sellable products (Omnium has no brand entity).
    pub fn brands_json(&self) -> Result<String> {
        self.check_open()?;
        Ok(json!({ "items": self.store.brands()? }).to_string())
    }

    /// Takes a forwarded Omnium event as is. An order event queues one fetch of that order
    /// (repeats coalesce) whatever store it names (CONTRACT §9 rule 16: the payload does not
    /// say where the order is picked up, and a move names the new store); the fetched order
    /// decides. Events of POS orders (`subClassName` "Pos") and of other classes are ignored.
    pub fn event_notify(&self, event_json: &str) -> Result<()> {
        self.check_open()?;
        let v = parse_object(event_json, "event")?;
        let class = v["className"].as_str().unwrap_or("");
        if !class.eq_ignore_ascii_case("Order") {
            log::debug!("ignoring an Omnium event of class {class:?}");
            return Ok(());
        }
        let Some(order_id) = v["objectId"].as_str().filter(|s| !s.trim().is_empty()) else {
            return Err(Error::invalid(
                "event.objectId",
                "is required for an order event",
            ));
        };
        if order_id.len() > crate::model::fields::MAX_ID_BYTES {
            return Err(Error::invalid("event.objectId", "is longer than 128 bytes"));
        }
        if v["subClassName"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("Pos"))
        {
            log::debug!("ignoring an event for POS order {order_id:?}");
            return Ok(());
        }
        self.store
            .queue_order_fetch(order_id, self.sync.wall_ms())?;
        self.sync.nudge();
        Ok(())
    }

    /// Inbound orders kept for this store: `{"order_type", "status"}` filter, both optional.
    pub fn orders_json(&self, filter_json: Option<&str>) -> Result<String> {
        self.check_open()?;
        let (order_type, status) = match filter_json {
            Some(f) => views::orders_filter(f)?,
            None => (None, None),
        };
        let items = self
            .store
            .inbound_orders(order_type.as_deref(), status.as_deref())?;
        Ok(format!("{{\"items\":[{}]}}", items.join(",")))
    }

    pub fn order_json(&self, order_id: &str) -> Result<String> {
        self.check_open()?;
        self.store
            .inbound_order(order_id)?
            .ok_or_else(|| Error::NotFound(format!("no order {order_id:?} is known locally")))
    }

    /// Purchase orders for this store: `{"status"}` filter, optional.
    pub fn purchase_orders_json(&self, filter_json: Option<&str>) -> Result<String> {
        self.check_open()?;
        let status = match filter_json {
            Some(f) => views::purchase_orders_filter(f)?,
            None => None,
        };
        let items = self.store.purchase_orders(status.as_deref())?;
        Ok(format!("{{\"items\":[{}]}}", items.join(",")))
    }

    pub fn customer_json(&self, customer_id: &str) -> Result<String> {
        self.check_open()?;
        self.store
            .customer(customer_id)?
            .ok_or_else(|| Error::NotFound(format!("no customer {customer_id:?} is known locally")))
    }

    /// Erases what the till holds about a customer (CONTRACT §9 rule 13); `NotFound` when
    /// nothing was held. A customer job still to be delivered is erased once delivered.
    pub fn forget_customer(&self, customer_id: &str) -> Result<()> {
        use crate::clock::Clock;
        self.check_open()?;
        if customer_id.trim().is_empty() || customer_id.len() > crate::model::fields::MAX_ID_BYTES {
            return Err(Error::invalid(
                "customer_id",
                format!(
                    "must be a non-empty id of at most {} bytes",
                    crate::model::fields::MAX_ID_BYTES
                ),
            ));
        }
        if self
            .store
            .forget_customer(customer_id, crate::clock::SystemClock.wall_ms())?
        {
            log::info!("a customer was forgotten on request");
            Ok(())
        } else {
            Err(Error::NotFound(
                "nothing is held about this customer".to_string(),
            ))
        }
    }

    /// The store, for tests and tools in this crate's family.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// A sale recorded on this terminal, read back inside a recording transaction.
fn recorded_sale(lookup: &Lookup, sale_id: &str) -> Result<Option<Sale>> {
    let Some(content) = lookup.content(JobKind::Sale.as_str(), sale_id)? else {
        return Ok(None);
    };
    let value: Value = serde_json::from_str(&content).map_err(|e| Error::Storage(e.to_string()))?;
    Sale::parse(&value).map(Some)
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log callback calling `fo_flush` on a thread that sends one of the worker's
    /// batches (the drain sends from threads of its own, issue 10 target 5) must not wait
    /// for that batch, which waits for the callback: it checks once and returns, as on the
    /// worker's own thread. Before, it waited its whole timeout.
    #[test]
    fn a_flush_from_a_thread_sending_a_batch_does_not_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = json!({
            "database_path": dir.path().join("c.db"), "store_id": "oslo-1",
            "market_id": "NOR", "currency": "NOK",
            "omnium": {"base_url": "http://127.0.0.1:9", "client_id": "c",
                       "client_secret": "not-a-real-secret"},
            "sync": {"autostart": false},
        });
        let client = Client::open(&config.to_string()).unwrap();
        client
            .record_sale(
                &json!({"id": "S-1", "created_at": "2026-11-28T10:15:00+01:00",
                    "lines": [{"line_id": "1", "sku": "SKU-1", "name": "Item", "quantity": 1,
                               "unit_price": 10_000, "tax_rate": 25}],
                    "payments": [{"id": "P1", "method": "Card", "amount": 10_000}]})
                .to_string(),
            )
            .unwrap();
        let outcome = Mutex::new(None);
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                crate::sync::sending_thread(&client.sync, &|| {
                    assert!(client.sync.on_worker_thread());
                    *outcome.lock().unwrap() = Some(client.flush(Duration::from_secs(60)));
                });
                assert!(!client.sync.on_worker_thread(), "marked only while sending");
            });
        });
        let outcome = outcome.into_inner().unwrap().unwrap();
        assert!(matches!(outcome, Err(Error::Timeout(_))), "{outcome:?}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited {:?}",
            started.elapsed()
        );
        assert!(!client.sync.on_worker_thread());
        client.close();
    }

    /// `fo_sync_now`/`fo_flush` racing with close: whichever order they run in, no worker
    /// is started once close has begun (the check is made under the worker slot's lock).
    #[test]
    fn no_worker_starts_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let config = json!({
            "database_path": dir.path().join("c.db"), "store_id": "oslo-1",
            "market_id": "NOR", "currency": "NOK",
            "omnium": {"base_url": "http://127.0.0.1:9", "client_id": "c",
                       "client_secret": "not-a-real-secret"},
            "sync": {"autostart": false},
        });
        let client = Client::open(&config.to_string()).unwrap();
        client.close();
        assert_eq!(client.start_worker(), Err(Error::Closed));
        assert!(client
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none());
    }
}
