//! The simulated Omnium tenant: tokens, orders (which move stock), returns, cancellations, plus the
//! routing of the read side (`catalog.rs`) and the simulator's own
//! bookkeeping (faults, stats). Everything lives in one `State` behind one mutex.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::back_office::BackOffice;
use super::catalog::{fmt_ms, Catalog, Clock, ScrollKind};
use super::http::{parse_query, Request, Response};
use super::orders_in::{apply_web_status, is_cancelled_status, is_web_order, WebOrders};
use super::{Fault, SimConfig, SimStats};

/// Payments may differ from the order total by rounding only.
const BALANCE_TOLERANCE: f64 = 0.005 + 1e-9;
/// Quantities are decimals; compare with a little slack for float sums.
pub(crate) const QTY_EPS: f64 = 1e-9;

/// Which endpoint a request addresses; decided before any fault or auth check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Token,
    PutPosOrder,
    GetOrder(String),
    Return(String),
    UpdateStatus(String),
    CancelLine(String, String),
    ProductsScroll,
    ProductsScrollNext(String),
    ProductCategories,
    SearchStores,
    Markets,
    InventorySearch,
    InventoryScrollNext(String),
    /// `GET /api/Inventory/{sku}?warehouseIds=`: read by id, never behind the search index.
    GetInventory(String),
    OrdersSearch,
    OrdersForPickUpPoint,
    OrderLinesUpdate(String),
    PutInvoice,
    GetInvoice(String),
    AddFileToInvoice(String),
    /// `true` for business customers.
    CustomersUpsert(bool),
    GetCustomer(bool, String),
    PurchaseOrdersSearch,
    GetPurchaseOrder(String),
    GoodsReception(String),
    InventoryUpdateMany,
    SimStats,
    SimPortal,
    SimFaults,
    SimDown,
    SimOrder(String),
    Unmatched,
}

impl Route {
    pub fn classify(req: &Request) -> Route {
        let m = req.method.to_ascii_uppercase();
        let s: Vec<&str> = req.segments.iter().map(String::as_str).collect();
        // ASP.NET routing is case-insensitive, so fixed segments are compared that way too.
        let is = |i: usize, lit: &str| s.get(i).is_some_and(|x| x.eq_ignore_ascii_case(lit));
        let api = is(0, "api");
        match (m.as_str(), s.len()) {
            ("POST", 2) if api && is(1, "token") => Route::Token,
            ("PUT", 3) if api && is(1, "Orders") && is(2, "PosOrders") => Route::PutPosOrder,
            ("POST", 3) if api && is(1, "Orders") && is(2, "Search") => Route::OrdersSearch,
            ("GET", 3) if api && is(1, "Orders") && is(2, "GetOrdersForPickUpPoint") => {
                Route::OrdersForPickUpPoint
            }
            ("POST", 4) if api && is(1, "Orders") && is(3, "OrderLinesUpdate") => {
                Route::OrderLinesUpdate(s[2].to_string())
            }
            ("PUT", 3) if api && is(1, "Invoices") && is(2, "UpdateInvoice") => Route::PutInvoice,
            ("GET", 3) if api && is(1, "Invoices") => Route::GetInvoice(s[2].to_string()),
            ("POST", 4) if api && is(1, "Invoices") && is(3, "AddFileToInvoice") => {
                Route::AddFileToInvoice(s[2].to_string())
            }
            ("PUT", 3) if api && is(1, "PrivateCustomers") && is(2, "AddOrUpdateMany") => {
                Route::CustomersUpsert(false)
            }
            ("PUT", 3) if api && is(1, "BusinessCustomers") && is(2, "AddOrUpdateMany") => {
                Route::CustomersUpsert(true)
            }
            ("GET", 3) if api && is(1, "PrivateCustomers") => {
                Route::GetCustomer(false, s[2].to_string())
            }
            ("GET", 3) if api && is(1, "BusinessCustomers") => {
                Route::GetCustomer(true, s[2].to_string())
            }
            ("POST", 3) if api && is(1, "PurchaseOrders") && is(2, "Search") => {
                Route::PurchaseOrdersSearch
            }
            ("GET", 3) if api && is(1, "PurchaseOrders") => {
                Route::GetPurchaseOrder(s[2].to_string())
            }
            ("POST", 4) if api && is(1, "Deliveries") && is(3, "ProcessGoodsReception") => {
                Route::GoodsReception(s[2].to_string())
            }
            ("PUT", 3) if api && is(1, "Inventory") && is(2, "UpdateMany") => {
                Route::InventoryUpdateMany
            }
            ("GET", 3) if api && is(1, "Orders") => Route::GetOrder(s[2].to_string()),
            ("POST", 4) if api && is(1, "Returns") && is(3, "Return") => {
                Route::Return(s[2].to_string())
            }
            ("POST", 4) if api && is(1, "Orders") && is(3, "UpdateStatus") => {
                Route::UpdateStatus(s[2].to_string())
            }
            ("POST", 6) if api && is(1, "Orders") && is(3, "OrderLines") && is(5, "Cancel") => {
                Route::CancelLine(s[2].to_string(), s[4].to_string())
            }
            ("POST", 3) if api && is(1, "Products") && is(2, "Scroll") => Route::ProductsScroll,
            ("GET", 4) if api && is(1, "Products") && is(2, "Scroll") => {
                Route::ProductsScrollNext(s[3].to_string())
            }
            ("GET", 2) if api && is(1, "ProductCategories") => Route::ProductCategories,
            ("POST", 3) if api && is(1, "Stores") && is(2, "SearchStores") => Route::SearchStores,
            ("GET", 2) if api && is(1, "Markets") => Route::Markets,
            ("POST", 3) if api && is(1, "Inventory") && is(2, "Search") => Route::InventorySearch,
            ("GET", 4) if api && is(1, "Inventory") && is(2, "Scroll") => {
                Route::InventoryScrollNext(s[3].to_string())
            }
            ("GET", 3) if api && is(1, "Inventory") => Route::GetInventory(s[2].to_string()),
            ("GET", 2) if is(0, "__sim") && is(1, "stats") => Route::SimStats,
            // Any method: a client that follows a 302 for a PUT comes back with a GET.
            (_, 2) if is(0, "__sim") && is(1, "portal") => Route::SimPortal,
            ("POST", 2) if is(0, "__sim") && is(1, "faults") => Route::SimFaults,
            ("POST", 2) if is(0, "__sim") && is(1, "down") => Route::SimDown,
            ("GET", 3) if is(0, "__sim") && is(1, "orders") => Route::SimOrder(s[2].to_string()),
            _ => Route::Unmatched,
        }
    }

    /// Whether the request changes something (not a read, not a token).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Route::PutPosOrder
                | Route::Return(_)
                | Route::UpdateStatus(_)
                | Route::CancelLine(..)
                | Route::OrderLinesUpdate(_)
                | Route::PutInvoice
                | Route::AddFileToInvoice(_)
                | Route::CustomersUpsert(_)
                | Route::GoodsReception(_)
                | Route::InventoryUpdateMany
        )
    }

    /// The order a write changes, if it writes one.
    pub fn order_written(&self, req: &Request) -> Option<String> {
        match self {
            Route::PutPosOrder => serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string)),
            Route::Return(id)
            | Route::UpdateStatus(id)
            | Route::CancelLine(id, _)
            | Route::OrderLinesUpdate(id) => Some(id.clone()),
            _ => None,
        }
    }

    /// The `SimStats::by_route` key.
    pub fn key(&self, method: &str) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Route::Token => "POST /api/token",
            Route::PutPosOrder => "PUT /api/Orders/PosOrders",
            Route::GetOrder(_) => "GET /api/Orders/{id}",
            Route::Return(_) => "POST /api/Returns/{orderId}/Return",
            Route::UpdateStatus(_) => "POST /api/Orders/{id}/UpdateStatus",
            Route::CancelLine(..) => "POST /api/Orders/{id}/OrderLines/{lineItemId}/Cancel",
            Route::ProductsScroll => "POST /api/Products/Scroll",
            Route::ProductsScrollNext(_) => "GET /api/Products/Scroll/{scrollId}",
            Route::ProductCategories => "GET /api/ProductCategories",
            Route::SearchStores => "POST /api/Stores/SearchStores",
            Route::Markets => "GET /api/Markets",
            Route::InventorySearch => "POST /api/Inventory/Search",
            Route::InventoryScrollNext(_) => "GET /api/Inventory/Scroll/{scrollId}",
            Route::GetInventory(_) => "GET /api/Inventory/{id}",
            Route::OrdersSearch => "POST /api/Orders/Search",
            Route::OrdersForPickUpPoint => "GET /api/Orders/GetOrdersForPickUpPoint",
            Route::OrderLinesUpdate(_) => "POST /api/Orders/{id}/OrderLinesUpdate",
            Route::PutInvoice => "PUT /api/Invoices/UpdateInvoice",
            Route::GetInvoice(_) => "GET /api/Invoices/{id}",
            Route::AddFileToInvoice(_) => "POST /api/Invoices/{id}/AddFileToInvoice",
            Route::CustomersUpsert(false) => "PUT /api/PrivateCustomers/AddOrUpdateMany",
            Route::CustomersUpsert(true) => "PUT /api/BusinessCustomers/AddOrUpdateMany",
            Route::GetCustomer(false, _) => "GET /api/PrivateCustomers/{id}",
            Route::GetCustomer(true, _) => "GET /api/BusinessCustomers/{id}",
            Route::PurchaseOrdersSearch => "POST /api/PurchaseOrders/Search",
            Route::GetPurchaseOrder(_) => "GET /api/PurchaseOrders/{id}",
            Route::GoodsReception(_) => "POST /api/Deliveries/{deliveryId}/ProcessGoodsReception",
            Route::InventoryUpdateMany => "PUT /api/Inventory/UpdateMany",
            Route::SimStats => "GET /__sim/stats",
            Route::SimPortal => "/__sim/portal",
            Route::SimFaults => "POST /__sim/faults",
            Route::SimDown => "POST /__sim/down",
            Route::SimOrder(_) => "GET /__sim/orders/{id}",
            // One bucket per method, so junk paths cannot grow the map without bound.
            Route::Unmatched => {
                return Cow::Owned(format!("{} (no route)", method.to_ascii_uppercase()))
            }
        })
    }

    pub fn is_control(&self) -> bool {
        matches!(
            self,
            Route::SimStats
                | Route::SimPortal
                | Route::SimFaults
                | Route::SimDown
                | Route::SimOrder(_)
        )
    }
}

pub(crate) struct StoredOrder {
    pub order: Value,
    /// Until then the order reads back as "Queued" and refuses updates (409), like Omnium's queue.
    pub queued_until: Option<Instant>,
    /// `stale_reads_ms` mode: until then a GET serves this earlier version (`None`: 404).
    pub stale: Option<(Instant, Option<Value>)>,
}

impl StoredOrder {
    fn queued(&self, now: Instant) -> bool {
        self.queued_until.is_some_and(|t| now < t)
    }

    /// The order as a client sees it right now.
    pub fn view(&self, now: Instant) -> Value {
        let mut v = self.order.clone();
        if self.queued(now) {
            v["status"] = json!("Queued");
        }
        v
    }
}

pub(crate) struct State {
    pub cfg: SimConfig,
    pub tokens: HashMap<String, Instant>,
    pub orders: HashMap<String, StoredOrder>,
    /// Order ids in creation order, for `Simulator::orders()`.
    pub order_ids: Vec<String>,
    pub rejects: HashMap<String, (u16, String)>,
    pub faults: VecDeque<Fault>,
    pub stats: SimStats,
    pub paused_until: Option<Instant>,
    /// Rate limits (off unless set) and per-till counters.
    pub limiter: super::limits::Limiter,
    /// Strictly increasing time source for every `modified` the simulator sets.
    pub clock: Clock,
    /// Products, categories, stock, stores, markets and open scrolls.
    pub catalog: Catalog,
    /// Web-order generator counters and the emitted events.
    pub web: WebOrders,
    /// Invoices, customers, purchase orders and goods receptions.
    pub office: BackOffice,
    /// In process (the deterministic simulation), time is this clock's monotonic time from
    /// `origin`; otherwise the real time.
    pub time: Option<(Instant, std::sync::Arc<dyn crate::clock::Clock>)>,
    /// While a late request is applied: the instant it was due (it happened then).
    pub as_of: Option<Instant>,
}

impl State {
    /// Now, on the simulator's time.
    pub fn now(&self) -> Instant {
        if let Some(at) = self.as_of {
            return at;
        }
        match &self.time {
            Some((origin, clock)) => *origin + Duration::from_millis(clock.mono_ms().max(0) as u64),
            None => Instant::now(),
        }
    }

    pub fn new(cfg: SimConfig) -> State {
        let mut clock = Clock::default();
        let mut catalog = Catalog::new(&cfg, clock.tick());
        // CI runs the inbound end-to-end tests again with the search index lagging
        // (`FO_SIM_INDEX_LAG_MS`); tests that set a lag themselves override it.
        if let Some(lag) = std::env::var("FO_SIM_INDEX_LAG_MS")
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
        {
            catalog.set_index_lag(lag);
        }
        State {
            cfg,
            tokens: HashMap::new(),
            orders: HashMap::new(),
            order_ids: Vec::new(),
            rejects: HashMap::new(),
            faults: VecDeque::new(),
            stats: SimStats::default(),
            paused_until: None,
            limiter: super::limits::Limiter::new(),
            clock,
            catalog,
            web: WebOrders::default(),
            office: BackOffice::default(),
            time: None,
            as_of: None,
        }
    }

    /// Takes one unit of the first queued fault matching this request.
    pub fn take_fault(&mut self, req: &Request, route: &Route) -> Option<Fault> {
        if self.faults.is_empty() {
            return None;
        }
        let path = req.path.to_ascii_lowercase();
        let idx = self.faults.iter().position(|f| {
            let pc = f.path_contains.as_ref().map(|p| p.to_ascii_lowercase());
            // Token requests are only faulted when the fault targets the token endpoint explicitly.
            if *route == Route::Token && !pc.as_ref().is_some_and(|p| p.contains("/api/token")) {
                return false;
            }
            pc.as_ref().is_none_or(|p| path.contains(p.as_str()))
                && f.method
                    .as_ref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
        })?;
        let fault = self.faults.get_mut(idx)?;
        fault.count = fault.count.saturating_sub(1);
        let taken = fault.clone();
        if fault.count == 0 {
            self.faults.remove(idx);
        }
        self.stats.faults_injected += 1;
        Some(taken)
    }

    /// Runs an /api request against the tenant.
    pub fn apply(&mut self, route: &Route, req: &Request) -> Response {
        if *route == Route::Token {
            return self.token(req);
        }
        if *route == Route::Unmatched {
            return Response::text(404, "No route");
        }
        if !self.authorized(req) {
            self.stats.unauthorized += 1;
            return Response::text(401, "Unauthorized");
        }
        if self.cfg.modes.write_outage && route.writes() {
            return Response::text(503, "Service Unavailable: writes are failing");
        }
        let now = self.now();
        // A lagging read model: reads keep seeing the order as it was before a write.
        let written = route.order_written(req);
        let before = written
            .as_ref()
            .filter(|_| self.cfg.modes.stale_reads_ms > 0)
            .map(|id| self.orders.get(id).map(|o| o.view(now)));
        let resp = self.apply_route(route, req, now);
        if let (Some(id), Some(before)) = (written, before) {
            let stale_ms = self.cfg.modes.stale_reads_ms;
            if let Some(o) = self.orders.get_mut(&id) {
                let changed = before.as_ref() != Some(&o.view(now));
                let open = o.stale.as_ref().is_some_and(|(until, _)| now < *until);
                if changed && !open {
                    o.stale = Some((now + Duration::from_millis(stale_ms), before));
                }
            }
        }
        resp
    }

    fn apply_route(&mut self, route: &Route, req: &Request, now: Instant) -> Response {
        match route {
            Route::PutPosOrder => self.put_pos_order(req, now),
            Route::GetOrder(id) => {
                let order = self.orders.get(id).map(|o| match &o.stale {
                    Some((until, old)) if now < *until => old.clone(),
                    _ => Some(o.view(now)),
                });
                match order.flatten() {
                    Some(v) => Response::json(200, &v),
                    None => Response::text(404, "Order not found"),
                }
            }
            Route::Return(id) => self.create_return(id, req, now),
            Route::UpdateStatus(id) => self.update_status(id, req, now),
            Route::CancelLine(id, line) => self.cancel_line(id, line, now),
            Route::ProductsScroll => self.products_scroll(req),
            Route::ProductsScrollNext(id) => self.scroll_next(ScrollKind::Products, id),
            Route::ProductCategories => self.product_categories(req),
            Route::SearchStores => self.search_stores(req),
            Route::Markets => Response::json(200, &Value::Array(self.catalog.markets.clone())),
            Route::InventorySearch => self.inventory_search(req),
            Route::InventoryScrollNext(id) => self.scroll_next(ScrollKind::Inventory, id),
            Route::GetInventory(sku) => self.get_inventory(sku, req),
            Route::OrdersSearch => self.orders_search(req, now),
            Route::OrdersForPickUpPoint => self.orders_for_pickup_point(req, now),
            Route::OrderLinesUpdate(id) => self.order_lines_update(id, req, now),
            Route::PutInvoice => self.put_invoice(req),
            Route::GetInvoice(id) => self.get_invoice(id),
            Route::AddFileToInvoice(id) => self.add_file_to_invoice(id, req),
            Route::CustomersUpsert(business) => self.customers_upsert(*business, req),
            Route::GetCustomer(business, id) => self.get_customer(*business, id),
            Route::PurchaseOrdersSearch => self.purchase_orders_search(req),
            Route::GetPurchaseOrder(id) => match self.office.purchase_order(id) {
                Some(po) => Response::json(200, &po),
                None => Response::text(404, "Purchase order not found"),
            },
            Route::GoodsReception(id) => self.goods_reception(id, req),
            Route::InventoryUpdateMany => self.inventory_update_many(req),
            _ => Response::text(404, "No route"),
        }
    }

    fn token(&mut self, req: &Request) -> Response {
        // Omnium documents query parameters; older docs post a form body, so accept that too.
        let form = parse_query(&String::from_utf8_lossy(&req.body));
        let param = |name: &str| {
            req.query(name).map(str::to_string).or_else(|| {
                form.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            })
        };
        let ok = param("clientId").as_deref() == Some(self.cfg.client_id.as_str())
            && param("clientSecret").as_deref() == Some(self.cfg.client_secret.as_str());
        if !ok {
            self.stats.unauthorized += 1;
            return Response::text(401, "Invalid client credentials");
        }
        let token = format!("sim.{}{}", random_hex(), random_hex());
        let ttl = Duration::from_secs(self.cfg.token_ttl_secs.max(0) as u64);
        let now = self.now();
        self.tokens.insert(token.clone(), now + ttl);
        self.stats.tokens_issued += 1;
        let as_json = param("returnAsJson").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if as_json {
            Response::json(
                200,
                &json!({
                    "accessToken": token,
                    "tokenType": "Bearer",
                    "expiresIn": self.cfg.token_ttl_secs,
                }),
            )
        } else {
            // Omnium's default answer is the bare token.
            Response::text(200, &token)
        }
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(h) = req.header("authorization") else {
            return false;
        };
        let Some((scheme, token)) = h.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer")
            && self
                .tokens
                .get(token.trim())
                .is_some_and(|exp| self.now() < *exp)
    }

    fn put_pos_order(&mut self, req: &Request, now: Instant) -> Response {
        let mut order = match parse_object(&req.body) {
            Ok(o) => o,
            Err(r) => return r,
        };
        // A poison order answers its configured status before anything else is looked at.
        if let Some(id) = order.get("id").and_then(Value::as_str) {
            if let Some((status, msg)) = self.rejects.get(id) {
                return Response::text(*status, msg);
            }
        }
        if let Err(msg) = validate_pos_order(&order, &self.cfg) {
            return Response::text(400, &msg);
        }
        let id = order
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if self.orders.contains_key(&id) {
            if self.cfg.modes.dedup_orders {
                self.stats.duplicate_orders_rejected += 1;
                if self.cfg.modes.plain_duplicate_refusal {
                    return Response::text(400, "One or more validation errors occurred: id");
                }
                return Response::text(400, &format!("Order with id '{id}' already exists"));
            }
            // An upsert: the order is replaced and its effects applied again.
            self.stats.orders_reapplied += 1;
            self.order_ids.retain(|o| *o != id);
            self.stats.orders_created = self.stats.orders_created.saturating_sub(1);
        }
        let stamp_ms = self.clock.tick();
        let stamp = fmt_ms(stamp_ms);
        order.insert("orderType".into(), json!("Pos"));
        order.insert("status".into(), json!("Completed"));
        if order.get("created").is_none_or(Value::is_null) {
            order.insert("created".into(), json!(stamp));
        }
        order.insert("modified".into(), json!(stamp));
        order.insert("returnOrderForms".into(), json!([]));
        if let Some(lines) = order
            .get_mut("orderForm")
            .and_then(|f| f.get_mut("lineItems"))
            .and_then(Value::as_array_mut)
        {
            for line in lines.iter_mut().filter_map(Value::as_object_mut) {
                for k in ["canceledQuantity", "returnQuantity"] {
                    if line.get(k).is_none_or(Value::is_null) {
                        line.insert(k.into(), json!(0));
                    }
                }
            }
        }
        let stored = StoredOrder {
            order: Value::Object(order),
            queued_until: (self.cfg.queued_ms > 0)
                .then(|| now + Duration::from_millis(self.cfg.queued_ms)),
            stale: None,
        };
        let view = stored.view(now);
        // The sale leaves the selling store's shelf: stock goes down by each line's quantity.
        let store = stored.order["storeId"].as_str().unwrap_or_default();
        for line in stored.order["orderForm"]["lineItems"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let (Some(code), Some(qty)) = (line["code"].as_str(), line["quantity"].as_f64()) {
                let stamp = stamp_ms + self.cfg.modes.stock_stamp_offset_ms;
                self.catalog.adjust_stock(code, store, -qty, stamp);
            }
        }
        self.orders.insert(id.clone(), stored);
        self.order_ids.push(id);
        self.stats.orders_created += 1;
        Response::json(201, &view)
    }

    fn create_return(&mut self, id: &str, req: &Request, now: Instant) -> Response {
        let o = match order_for_update(&mut self.orders, id, now) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let body = match parse_object(&req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let rma = match body.get("rmaNumber") {
            None | Some(Value::Null) => format!("RMA-{}", &random_hex()[..8]),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Response::text(400, "rmaNumber must be a non-empty string"),
        };
        let exists = o.order["returnOrderForms"]
            .as_array()
            .is_some_and(|forms| forms.iter().any(|f| f["rmaNumber"] == json!(rma)));
        if exists {
            if self.cfg.modes.dedup_returns {
                self.stats.duplicate_returns_rejected += 1;
                if self.cfg.modes.plain_duplicate_refusal {
                    return Response::text(
                        400,
                        "One or more validation errors occurred: rmaNumber",
                    );
                }
                return Response::text(
                    400,
                    &format!("Return with rmaNumber '{rma}' already exists on order '{id}'"),
                );
            }
            self.stats.returns_reapplied += 1;
        }
        let Some(returns) = body.get("returns").and_then(Value::as_array) else {
            return Response::text(400, "returns is required");
        };
        if returns.is_empty() {
            return Response::text(400, "returns must not be empty");
        }
        // Check every line first so a bad return changes nothing.
        let mut wanted: HashMap<String, f64> = HashMap::new();
        let mut form_lines = Vec::new();
        for (i, r) in returns.iter().enumerate() {
            let Some(line_id) = r.get("lineItemId").and_then(Value::as_str) else {
                return Response::text(400, &format!("returns[{i}].lineItemId is required"));
            };
            let Some(line) = find_line(&o.order, line_id) else {
                return Response::text(
                    400,
                    &format!("returns[{i}].lineItemId '{line_id}' is not a line of the order"),
                );
            };
            let qty = match r.get("returnQuantity") {
                Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
                _ => {
                    return Response::text(
                        400,
                        &format!("returns[{i}].returnQuantity must be a number"),
                    )
                }
            };
            if qty <= 0.0 {
                return Response::text(
                    400,
                    &format!("returns[{i}].returnQuantity must be greater than 0"),
                );
            }
            let total = wanted.entry(line_id.to_string()).or_insert(0.0);
            *total += qty;
            let available = num_or_zero(line, "quantity")
                - num_or_zero(line, "returnQuantity")
                - num_or_zero(line, "canceledQuantity");
            if *total > available + QTY_EPS {
                return Response::text(
                    400,
                    &format!(
                        "returns[{i}].returnQuantity exceeds the returnable quantity {available} of line '{line_id}'"
                    ),
                );
            }
            form_lines.push(json!({
                "lineItemId": line_id,
                "code": line.get("code").cloned().unwrap_or(Value::Null),
                "returnQuantity": r["returnQuantity"],
                "creditAmount": r.get("creditAmount").cloned().unwrap_or(Value::Null),
                "returnReason": r.get("returnReason").cloned().unwrap_or(Value::Null),
                "isStockUpdated": r.get("isStockUpdated").cloned().unwrap_or(json!(false)),
            }));
        }
        let stamp_ms = self.clock.tick();
        let stamp = fmt_ms(stamp_ms);
        // Restocked lines go back into the returning store (or the selling store).
        let restock_in = match body.get("storeId").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => o.order["storeId"].as_str().unwrap_or_default().to_string(),
        };
        let restock: Vec<(String, f64)> = form_lines
            .iter()
            .filter(|l| l["isStockUpdated"] == json!(true))
            .filter_map(|l| {
                Some((
                    l["code"].as_str()?.to_string(),
                    l["returnQuantity"].as_f64()?,
                ))
            })
            .collect();
        let form = json!({
            "returnId": random_hex(),
            "rmaNumber": rma,
            "status": "New",
            "created": stamp,
            "lineItems": form_lines,
            "storeId": body.get("storeId").cloned().unwrap_or(Value::Null),
        });
        for (line_id, qty) in &wanted {
            if let Some(line) = find_line_mut(&mut o.order, line_id) {
                let q = num_or_zero(line, "returnQuantity") + qty;
                line.insert("returnQuantity".into(), json!(q));
            }
        }
        if let Some(forms) = o.order["returnOrderForms"].as_array_mut() {
            forms.push(form.clone());
        } else {
            o.order["returnOrderForms"] = json!([form.clone()]);
        }
        o.order["modified"] = json!(stamp);
        for (code, qty) in &restock {
            let stamp = stamp_ms + self.cfg.modes.stock_stamp_offset_ms;
            self.catalog.adjust_stock(code, &restock_in, *qty, stamp);
        }
        self.stats.returns_created += 1;
        Response::json(200, &form)
    }

    fn update_status(&mut self, id: &str, req: &Request, now: Instant) -> Response {
        let o = match order_for_update(&mut self.orders, id, now) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let body = match parse_object(&req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let Some(status) = body
            .get("status")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            return Response::text(400, "status is required");
        };
        let web = is_web_order(&o.order);
        if web && o.order["status"].as_str().is_some_and(is_cancelled_status) {
            self.stats.rejected_on_cancelled += 1;
            return Response::text(400, &format!("Order {id} is cancelled"));
        }
        let changed = o.order["status"].as_str() != Some(status);
        let stamp = fmt_ms(self.clock.tick());
        if web {
            apply_web_status(&mut o.order, status, &stamp);
        }
        o.order["status"] = json!(status);
        o.order["modified"] = json!(stamp);
        let order = o.view(now);
        if changed && status.starts_with("OrderCanceled") {
            self.stats.cancellations += 1;
        }
        Response::json(
            200,
            &json!({"isAborted": false, "order": order, "orderActionExecutionResults": []}),
        )
    }

    fn cancel_line(&mut self, id: &str, line_id: &str, now: Instant) -> Response {
        let o = match order_for_update(&mut self.orders, id, now) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let Some(line) = find_line_mut(&mut o.order, line_id) else {
            return Response::text(404, "Order line not found");
        };
        let qty = num_or_zero(line, "quantity");
        let changed = (num_or_zero(line, "canceledQuantity") - qty).abs() > QTY_EPS;
        if changed {
            line.insert("canceledQuantity".into(), line["quantity"].clone());
            o.order["modified"] = json!(fmt_ms(self.clock.tick()));
        }
        let order = o.view(now);
        if changed {
            self.stats.cancellations += 1;
        }
        Response::json(200, &order)
    }
}

/// Looks an order up for an update: 404 if unknown, 409 while still queued.
pub(crate) fn order_for_update<'a>(
    orders: &'a mut HashMap<String, StoredOrder>,
    id: &str,
    now: Instant,
) -> Result<&'a mut StoredOrder, Response> {
    let key = if orders.contains_key(id) {
        id.to_string()
    } else {
        // Returns accept the order number as well as the id.
        orders
            .iter()
            .find(|(_, o)| o.order.get("orderNumber").and_then(Value::as_str) == Some(id))
            .map(|(k, _)| k.clone())
            .ok_or_else(|| Response::text(404, "Order not found"))?
    };
    let o = orders
        .get_mut(&key)
        .ok_or_else(|| Response::text(404, "Order not found"))?;
    if o.queued(now) {
        return Err(Response::text(
            409,
            "Order is queued for processing; try again later",
        ));
    }
    Ok(o)
}

pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Response::text(400, "Request body must be a JSON object")),
        Err(e) => Err(Response::text(400, &format!("Invalid JSON body: {e}"))),
    }
}

fn find_line<'a>(order: &'a Value, line_id: &str) -> Option<&'a Map<String, Value>> {
    order["orderForm"]["lineItems"]
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .find(|l| l.get("lineItemId").and_then(Value::as_str) == Some(line_id))
}

pub(crate) fn find_line_mut<'a>(
    order: &'a mut Value,
    line_id: &str,
) -> Option<&'a mut Map<String, Value>> {
    order
        .get_mut("orderForm")?
        .get_mut("lineItems")?
        .as_array_mut()?
        .iter_mut()
        .filter_map(Value::as_object_mut)
        .find(|l| l.get("lineItemId").and_then(Value::as_str) == Some(line_id))
}

pub(crate) fn num_or_zero(m: &Map<String, Value>, key: &str) -> f64 {
    m.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

pub(crate) fn non_empty_str(
    m: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<String, String> {
    match m.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(format!("{path}{key} is required (non-empty string)")),
    }
}

/// A JSON number (strings are refused, as Omnium's model binding does for decimals).
fn number(m: &Map<String, Value>, key: &str, path: &str) -> Result<f64, String> {
    match m.get(key) {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| format!("{path}{key} must be a number")),
        _ => Err(format!("{path}{key} must be a number")),
    }
}

/// Optional number: absent or null is `None`, anything but a number is an error.
fn opt_number(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<f64>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => number(m, key, path).map(Some),
    }
}

/// Validates a PosOrder the way Omnium would; the error names the offending field.
fn validate_pos_order(o: &Map<String, Value>, cfg: &SimConfig) -> Result<(), String> {
    non_empty_str(o, "id", "")?;
    non_empty_str(o, "orderNumber", "")?;
    let market = non_empty_str(o, "marketId", "")?;
    if !cfg.markets.contains(&market) {
        return Err(format!("marketId '{market}' is not a configured market"));
    }
    let store = non_empty_str(o, "storeId", "")?;
    if !cfg.stores.contains(&store) {
        return Err(format!("storeId '{store}' is not a known store"));
    }
    non_empty_str(o, "billingCurrency", "")?;
    let Some(form) = o.get("orderForm").and_then(Value::as_object) else {
        return Err("orderForm is required".into());
    };
    let lines = match form.get("lineItems").and_then(Value::as_array) {
        Some(l) if !l.is_empty() => l,
        _ => return Err("orderForm.lineItems must be a non-empty array".into()),
    };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0.0;
    for (i, line) in lines.iter().enumerate() {
        let p = format!("orderForm.lineItems[{i}].");
        let Some(line) = line.as_object() else {
            return Err(format!("orderForm.lineItems[{i}] must be an object"));
        };
        let id = non_empty_str(line, "lineItemId", &p)?;
        if !seen.insert(id.clone()) {
            return Err(format!("{p}lineItemId '{id}' is not unique"));
        }
        non_empty_str(line, "code", &p)?;
        let qty = number(line, "quantity", &p)?;
        if qty <= 0.0 {
            return Err(format!("{p}quantity must be greater than 0"));
        }
        let price = number(line, "placedPrice", &p)?;
        if price < 0.0 {
            return Err(format!("{p}placedPrice must not be negative"));
        }
        let discounted = opt_number(line, "discounted", &p)?.unwrap_or(0.0);
        if discounted < 0.0 {
            return Err(format!("{p}discounted must not be negative"));
        }
        opt_number(line, "taxRate", &p)?;
        total += qty * price - discounted;
    }
    total += opt_number(form, "grossRoundoff", "orderForm.")?.unwrap_or(0.0);
    let payments = match form.get("payments").and_then(Value::as_array) {
        Some(p) if !p.is_empty() => p,
        _ => return Err("orderForm.payments must be a non-empty array".into()),
    };
    let mut paid = 0.0;
    for (i, pay) in payments.iter().enumerate() {
        let p = format!("orderForm.payments[{i}].");
        let Some(pay) = pay.as_object() else {
            return Err(format!("orderForm.payments[{i}] must be an object"));
        };
        for k in [
            "paymentMethodName",
            "transactionId",
            "transactionType",
            "status",
        ] {
            non_empty_str(pay, k, &p)?;
        }
        paid += number(pay, "amount", &p)?;
    }
    if (total - paid).abs() > BALANCE_TOLERANCE {
        return Err(format!(
            "payments do not balance: order total {total:.2}, payments {paid:.2}"
        ));
    }
    Ok(())
}

/// 16 hex digits that are unpredictable enough for opaque tokens and ids (no RNG crate available:
/// RandomState is randomly keyed SipHash, fed a counter and the clock).
pub(crate) fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}
