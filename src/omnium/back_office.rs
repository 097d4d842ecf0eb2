//! Omnium's JSON for receipts (invoices), customers, goods receptions, inventory levels,
//! click & collect progress, and the inbound orders, customers and purchase orders read
//! back, mapped to the POS's terms.

use super::catalog::{time_str_ms, InventoryItem, Page};
use super::orders::OmniumOrder;
use super::page::cap;
use super::{classify, encode_component, Created, Failure, OmniumApi};
use crate::model::money::{minor_digits, Decimal};
use crate::model::store_events::PushLevel;
use crate::model::store_events::{Customer, CustomerType, GoodsReception, Receipt};
use serde_json::{json, Number, Value};

/// Omnium statuses after which an order is finished (handed over, cancelled, closed): a
/// full resync reads the other, open, orders.
pub const FINISHED_STATUSES: [&str; 13] = [
    "Completed",
    "PickedUp",
    "PickedUpAndPaid",
    "Closed",
    "Delivered",
    "OrderCanceled",
    "OrderCanceledByCustomer",
    "OrderCanceledByStore",
    "Canceled",
    "Expired",
    "NotCollected",
    "Deleted",
    "Returned",
];

/// Omnium statuses that mean the order will not be handed over.
pub fn is_cancel_status(status: &str) -> bool {
    status.starts_with("OrderCanceled")
        || matches!(
            status,
            "Canceled" | "Cancelled" | "Expired" | "NotCollected"
        )
}

pub fn invoice_json(r: &Receipt, store_id: &str, market_id: &str) -> Value {
    let money =
        |minor: i64| serde_json::to_value(Decimal::new(minor, &r.currency)).unwrap_or(Value::Null);
    let issued = r.issued_at.to_rfc3339();
    json!({
        "id": r.id, "orderId": r.sale_id, "invoiceNumber": r.receipt_number,
        "invoiceDate": issued, "deliveryDate": issued, "invoiceDueDate": issued,
        "amount": money(r.total), "amountExcludingTax": money(r.total - r.tax_total),
        "currency": r.currency, "customerId": r.customer_id, "storeId": store_id, "marketId": market_id,
        "invoiceType": "Outgoing", "origin": "POS", "isCreditNote": r.total < 0,
    })
}

pub fn customer_json(c: &Customer, market_id: &str) -> Value {
    let address = c.address.as_ref().map(|a| {
        json!({"line1": a.line1, "line2": a.line2, "postalCode": a.postal_code, "city": a.city,
               "countryCode": a.country_code})
    });
    let external = c
        .loyalty_id
        .as_ref()
        .map(|l| vec![json!({"providerName": "Loyalty", "id": l})])
        .unwrap_or_default();
    match c.kind {
        CustomerType::Person => json!({
            "customerId": c.id, "firstName": c.first_name, "lastName": c.last_name,
            "email": c.email, "phone": c.phone, "address": address, "customerNumber": c.loyalty_id,
            "marketId": market_id, "externalIds": external,
        }),
        CustomerType::Company => json!({
            "customerId": c.id, "name": c.company_name, "taxId": c.tax_id,
            "email": c.email, "phone": c.phone, "address": address, "customerNumber": c.loyalty_id,
            "marketId": market_id, "externalIds": external,
        }),
    }
}

/// A private or business customer as Omnium sends it (`OmniumPrivateCustomer`,
/// `OmniumBusinessCustomer`): only what the till shows. Other fields are skipped unread.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OmniumCustomer {
    pub customer_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// A business customer's name.
    pub name: Option<String>,
    pub tax_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub customer_number: Option<String>,
    pub address: Option<OmniumAddress>,
}

/// `OmniumAddress`: the lines the till shows.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OmniumAddress {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub country_code: Option<String>,
}

/// A customer read from Omnium, in the POS's terms (as `fo_customer_get` returns it).
pub fn local_customer(v: &OmniumCustomer, business: bool) -> Value {
    let address = v.address.as_ref().map_or(Value::Null, |a| {
        json!({"line1": a.line1, "line2": a.line2, "postal_code": a.postal_code, "city": a.city,
               "country_code": a.country_code})
    });
    json!({
        "id": v.customer_id, "type": if business { "company" } else { "person" },
        "first_name": v.first_name, "last_name": v.last_name,
        "company_name": if business { v.name.clone() } else { None },
        "tax_id": v.tax_id, "email": v.email, "phone": v.phone, "address": address,
        "loyalty_id": v.customer_number,
    })
}

pub fn goods_reception_json(r: &GoodsReception) -> Value {
    Value::Array(
        r.lines
            .iter()
            .map(|l| {
                json!({"lineItemId": l.line_id, "deliveredQuantity": l.quantity,
                       "warehouseCode": r.warehouse_id, "goodsReceptionId": r.id})
            })
            .collect(),
    )
}

pub fn inventory_json(levels: &[PushLevel]) -> Value {
    Value::Array(
        levels
            .iter()
            .map(
                |l| json!({"sku": l.sku, "warehouseCode": l.warehouse_id, "inventory": l.quantity}),
            )
            .collect(),
    )
}

/// Whether an order belongs to this store (CONTRACT §9 rule 16): sold by it, or to be
/// picked up at it or one of its warehouses (`shipments[].pickUpWarehouseCode`, on the order
/// form, where Omnium keeps shipments, or on the order).
pub fn is_for_store(order: &OmniumOrder, store_id: &str, warehouses: &[String]) -> bool {
    let here = |id: &str| id == store_id || warehouses.iter().any(|w| w == id);
    order.store_id.as_deref() == Some(store_id)
        || [
            order.order_form.as_ref().and_then(|f| f.shipments.as_ref()),
            order.shipments.as_ref(),
        ]
        .into_iter()
        .flatten()
        .flatten()
        .any(|s| s.pick_up_warehouse_code.as_deref().is_some_and(here))
}

/// An inbound order in the POS's terms (CONTRACT §5).
pub fn local_order(o: &OmniumOrder, fallback_currency: &str) -> Value {
    let currency = o.billing_currency.as_deref().unwrap_or(fallback_currency);
    let digits = minor_digits(currency);
    let minor = |v: Option<f64>| v.and_then(|x| Decimal::minor_from_f64(x, digits));
    let number = |v: &Option<Number>| v.as_ref().and_then(Number::as_f64);
    let lines: Vec<Value> = o
        .lines()
        .iter()
        .map(|l| {
            json!({
                "line_id": l.line_item_id, "sku": l.code, "name": l.display_name,
                "quantity": l.quantity, "unit_price": minor(number(&l.placed_price)),
                "canceled_quantity": l.canceled_quantity.unwrap_or(0.0),
                "delivered_quantity": l.delivered_quantity.unwrap_or(0.0),
                "ready_for_pickup_quantity": l.ready_for_pickup_quantity.unwrap_or(0.0),
            })
        })
        .collect();
    let form = o.order_form.as_ref();
    let computed: Option<i64> = form.and_then(|f| f.line_items.as_ref()).map(|ls| {
        ls.iter()
            .map(|l| {
                let q = number(&l.quantity).unwrap_or(0.0) - l.canceled_quantity.unwrap_or(0.0);
                let p = minor(number(&l.placed_price)).unwrap_or(0) as f64;
                // Saturating: a hostile quantity (1e300) saturates its line, and two such
                // lines must not overflow the total (a panic in a debug build).
                ((q * p).round() as i64).saturating_sub(minor(l.discounted).unwrap_or(0))
            })
            .fold(0, i64::saturating_add)
    });
    let total = minor(form.and_then(|f| f.total)).or(computed);
    let name = o
        .customer_name
        .clone()
        .or_else(|| o.billing_address.as_ref().and_then(|b| b.name.clone()));
    json!({
        "id": o.id, "order_type": o.order_type, "status": o.status, "store_id": o.store_id,
        "customer": {"id": o.customer_id, "name": name, "email": o.customer_email, "phone": o.customer_phone},
        "lines": lines, "total": total, "currency": currency,
        "pickup_deadline": o.customer_pickup_deadline, "created": o.created, "modified": o.modified,
    })
}

/// A purchase order as Omnium sends it (`OmniumPurchaseOrder`, a page of
/// `POST /api/PurchaseOrders/Search`): only what the till shows and receives against.
/// Other fields are skipped unread; a field read here with another type fails the page,
/// named, never quoted.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OmniumPurchaseOrder {
    pub id: Option<String>,
    pub purchase_order_number: Option<String>,
    pub status: Option<String>,
    pub store_id: Option<String>,
    pub supplier_id: Option<String>,
    pub supplier_name: Option<String>,
    pub requested_delivery_date: Option<String>,
    pub delivery_id: Option<String>,
    pub modified: Option<String>,
    pub purchase_order_form: Option<PurchaseOrderForm>,
}

/// A purchase order's form: its lines.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PurchaseOrderForm {
    #[serde(deserialize_with = "po_lines_skipping_nulls")]
    pub line_items: Option<Vec<PurchaseOrderLine>>,
}

/// A purchase order's line. `quantity` stays the JSON number Omnium wrote.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PurchaseOrderLine {
    pub line_item_id: Option<String>,
    pub code: Option<String>,
    pub display_name: Option<String>,
    pub ean: Option<String>,
    pub quantity: Option<Number>,
    pub delivered_quantity: Option<f64>,
}

super::page::null_skipping! {
    po_lines_skipping_nulls => "lineItems",
}

impl OmniumPurchaseOrder {
    /// Omnium's `modified`, unix ms.
    pub fn modified_ms(&self) -> Option<i64> {
        self.modified.as_deref().and_then(time_str_ms)
    }
}

/// A purchase order in the POS's terms.
pub fn local_purchase_order(p: &OmniumPurchaseOrder) -> Value {
    let lines: Vec<Value> = p
        .purchase_order_form
        .as_ref()
        .and_then(|f| f.line_items.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|l| {
            json!({"line_id": l.line_item_id, "sku": l.code, "name": l.display_name, "ean": l.ean,
                   "quantity": l.quantity, "delivered_quantity": l.delivered_quantity.unwrap_or(0.0)})
        })
        .collect();
    json!({
        "id": p.id, "number": p.purchase_order_number, "status": p.status, "store_id": p.store_id,
        "supplier": {"id": p.supplier_id, "name": p.supplier_name},
        "expected_date": p.requested_delivery_date, "delivery_id": p.delivery_id, "lines": lines,
        "modified": p.modified,
    })
}

impl OmniumApi {
    /// `PUT /api/Invoices/UpdateInvoice` (an upsert by id: sending it twice makes one invoice).
    pub fn put_invoice(&self, invoice: &Value) -> Result<(), Failure> {
        let body = serde_json::to_vec(invoice).unwrap_or_default();
        let resp = self.send_json("PUT", "/api/Invoices/UpdateInvoice", &body)?;
        classify(&resp, "PUT /api/Invoices/UpdateInvoice")
    }

    /// `POST /api/Invoices/{id}/AddFileToInvoice?fileName=…`, the PDF streamed as the body.
    pub fn add_invoice_file(
        &self,
        invoice_id: &str,
        file_name: &str,
        pdf: &mut dyn std::io::Read,
    ) -> Result<(), Failure> {
        let path = format!(
            "/api/Invoices/{}/AddFileToInvoice?fileName={}",
            encode_component(invoice_id),
            encode_component(file_name)
        );
        let resp = self.send_stream("POST", &path, "application/octet-stream", pdf)?;
        classify(
            &resp,
            &format!("POST /api/Invoices/{invoice_id}/AddFileToInvoice"),
        )
    }

    /// Whether the invoice holds a file of this name (`None` when there is no invoice).
    pub fn invoice_has_file(
        &self,
        invoice_id: &str,
        file_name: &str,
    ) -> Result<Option<bool>, Failure> {
        let invoice = self.get_json(&format!("/api/Invoices/{}", encode_component(invoice_id)))?;
        Ok(invoice.map(|v| {
            v["assets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["fileName"].as_str() == Some(file_name))
        }))
    }

    /// `PUT /api/{Private|Business}Customers/AddOrUpdateMany` with at most 100 customers.
    pub fn put_customers(&self, business: bool, customers: &[Value]) -> Result<(), Failure> {
        let path = if business {
            "/api/BusinessCustomers/AddOrUpdateMany"
        } else {
            "/api/PrivateCustomers/AddOrUpdateMany"
        };
        let body = serde_json::to_vec(customers).unwrap_or_default();
        let resp = self.send_json("PUT", path, &body)?;
        classify(&resp, &format!("PUT {path}"))
    }

    /// A customer by id: private first, then business. `None` when neither knows it. Read
    /// typed under the customer cap; a field the till reads with another type is refused,
    /// named (never quoted: it is personal data).
    pub fn get_customer(&self, id: &str) -> Result<Option<(bool, OmniumCustomer)>, Failure> {
        let id = encode_component(id);
        for (business, resource) in [(false, "PrivateCustomers"), (true, "BusinessCustomers")] {
            let path = format!("/api/{resource}/{id}");
            let what = format!("GET /api/{resource}/{{id}}");
            if let Some(v) = self.fetch_one(&path, &what, "customers", cap::CUSTOMER)? {
                return Ok(Some((business, v)));
            }
        }
        Ok(None)
    }

    /// `POST /api/Deliveries/{deliveryId}/ProcessGoodsReception`; a 400 naming the
    /// reception as a duplicate means it already landed.
    pub fn process_goods_reception(
        &self,
        delivery_id: &str,
        reception_id: &str,
        lines: &Value,
    ) -> Result<Created, Failure> {
        let path = format!(
            "/api/Deliveries/{}/ProcessGoodsReception",
            encode_component(delivery_id)
        );
        let body = serde_json::to_vec(lines).unwrap_or_default();
        let resp = self.send_json("POST", &path, &body)?;
        match classify(&resp, &format!("POST {path}")) {
            Ok(()) => Ok(Created::New),
            Err(Failure::Rejected {
                status: 400,
                message,
            }) if resp.text().to_ascii_lowercase().contains("duplicate")
                && resp.text().contains(reception_id) =>
            {
                Ok(Created::AlreadyExists(message))
            }
            Err(f) => Err(f),
        }
    }

    /// `PUT /api/Inventory/UpdateMany` with absolute levels (at most 1000).
    pub fn update_inventory(&self, levels: &[PushLevel]) -> Result<(), Failure> {
        let body = serde_json::to_vec(&inventory_json(levels)).unwrap_or_default();
        let resp = self.send_json("PUT", "/api/Inventory/UpdateMany", &body)?;
        classify(&resp, "PUT /api/Inventory/UpdateMany")
    }

    /// The SKU's current levels in `warehouses`, read by id (`GET /api/Inventory/{sku}?warehouseIds=`),
    /// not through the search index: a write Omnium took is in it at once, however late
    /// its search shows it. `None` when Omnium answers 404 (no such route or item: the
    /// caller decides what that means). An answer that is not a list of items is refused.
    pub fn inventory_item_levels(
        &self,
        sku: &str,
        warehouses: &[String],
    ) -> Result<Option<Vec<crate::model::catalog::StockLevel>>, Failure> {
        let query: Vec<String> = warehouses
            .iter()
            .map(|w| format!("warehouseIds={}", encode_component(w)))
            .collect();
        let path = format!(
            "/api/Inventory/{}?{}",
            encode_component(sku),
            query.join("&")
        );
        let Some(resp) = self.fetch("GET", &path, None, cap::INVENTORY)? else {
            return Ok(None);
        };
        // A list (or a page) of items, or one item; anything else is uncertain (asked again
        // later), with the field of the wrong type named.
        let what = "GET /api/Inventory/{id}";
        let items: Vec<InventoryItem> =
            match Page::<InventoryItem>::parse(&resp.body, what, "stock levels") {
                Ok(page) => page.items,
                Err(f) => {
                    match super::page::parse_one::<InventoryItem>(&resp.body, what, "stock levels")
                    {
                        Ok(item) if item.sku.is_some() => vec![item],
                        _ => {
                            return Err(match f {
                                Failure::Rejected { message, .. } => Failure::Uncertain(message),
                                f => f,
                            })
                        }
                    }
                }
            };
        Ok(Some(
            items
                .iter()
                .filter_map(super::catalog::stock_level)
                .filter(|l| l.sku == sku && warehouses.contains(&l.warehouse_id))
                .collect(),
        ))
    }

    /// `POST /api/Orders/{id}/OrderLinesUpdate` (partial pickup progress).
    pub fn order_lines_update(&self, order_id: &str, body: &Value) -> Result<(), Failure> {
        let path = format!(
            "/api/Orders/{}/OrderLinesUpdate",
            encode_component(order_id)
        );
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let resp = self.send_json("POST", &path, &bytes)?;
        classify(&resp, &format!("POST {path}"))
    }

    /// One page of a store's delta search, `POST /api/{resource}/Search`
    /// (`Orders` or `PurchaseOrders`), modified since `from_ms`, oldest first; `open_only`
    /// leaves out finished orders (`excludedStatuses`).
    pub fn search_for_store<T: serde::de::DeserializeOwned>(
        &self,
        q: &StoreSearch,
    ) -> Result<Page<T>, Failure> {
        let StoreSearch {
            resource,
            store_ids,
            order_type,
            from_ms,
            page,
            take,
            open_only,
        } = *q;
        let mut body = json!({"selectedStores": store_ids, "take": take, "page": page,
                              "sortOrder": "ModifiedAscending", "disableFacets": true});
        if open_only {
            body["excludedStatuses"] = json!(FINISHED_STATUSES);
        }
        if let Some(t) = order_type {
            body["orderType"] = t.into();
        }
        if let Some(ms) = from_ms {
            body["modifiedFrom"] = super::catalog::time_text(ms).into();
        }
        // Strict: a 404 or a body that is not a page fails the data set, never reads as
        // "nothing there" (a full resync would sweep on it).
        let data_set = if resource == "PurchaseOrders" {
            "purchase_orders"
        } else {
            "orders"
        };
        let path = format!("/api/{resource}/Search");
        self.fetch_page("POST", &path, Some(&body), data_set, cap::ORDERS)?
            .ok_or_else(|| answered_404(data_set, &format!("POST {path}")))
    }
}

impl OmniumApi {
    /// `GET /api/Orders/GetOrdersForPickUpPoint`: orders picked up at `store_ids` (sold by
    /// any store; `POST /api/Orders/Search`'s `selectedStores` is the selling store only),
    /// changed after `changed_since_ms` (exclusive), `page` from 1. An answer that is not a
    /// list of orders is a failure, never an empty page.
    pub fn orders_for_pickup_point(
        &self,
        store_ids: &[String],
        changed_since_ms: Option<i64>,
        page: u32,
        page_size: u32,
    ) -> Result<Page<OmniumOrder>, Failure> {
        let mut path =
            format!("/api/Orders/GetOrdersForPickUpPoint?page={page}&pageSize={page_size}");
        for id in store_ids {
            path.push_str("&storeId=");
            path.push_str(&encode_component(id));
        }
        if let Some(ms) = changed_since_ms {
            path.push_str("&changedSince=");
            path.push_str(&encode_component(&super::catalog::time_text(ms)));
        }
        self.fetch_page("GET", &path, None, "orders", cap::ORDERS)?
            .ok_or_else(|| answered_404("orders", "GET /api/Orders/GetOrdersForPickUpPoint"))
    }
}

fn answered_404(data_set: &str, what: &str) -> Failure {
    Failure::Rejected {
        status: 404,
        message: format!("{data_set}: {what} answered 404"),
    }
}

/// What [`OmniumApi::search_for_store`] asks for.
#[derive(Clone, Copy, Debug)]
pub struct StoreSearch<'a> {
    /// `Orders` or `PurchaseOrders`.
    pub resource: &'a str,
    pub store_ids: &'a [String],
    pub order_type: Option<&'a str>,
    pub from_ms: Option<i64>,
    /// 0-based.
    pub page: u32,
    pub take: u32,
    pub open_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_is_read_typed_and_a_wrong_type_is_named_never_quoted() {
        let body = br#"{"customerId": "C-1", "firstName": "Kari", "lastName": "Nordmann",
            "email": "kari@example.no", "phone": "+4791234567", "customerNumber": "L-7",
            "address": {"line1": "Gate 1", "postalCode": "0150", "city": "Oslo", "countryCode": "NO"},
            "consents": [{"x": 1}], "bonusPoints": 12}"#;
        let c: OmniumCustomer =
            crate::omnium::page::parse_one(body, "GET /api/PrivateCustomers/{id}", "customers")
                .unwrap();
        let local = local_customer(&c, false);
        assert_eq!(local["id"], "C-1");
        assert_eq!(local["loyalty_id"], "L-7");
        assert_eq!(local["address"]["postal_code"], "0150");
        assert_eq!(local["company_name"], Value::Null);
        let wrong = br#"{"customerId": "C-1", "firstName": "Kari", "phone": 4791234567}"#;
        let Err(Failure::Rejected { status: 0, message }) =
            crate::omnium::page::parse_one::<OmniumCustomer>(
                wrong,
                "GET /api/PrivateCustomers/{id}",
                "customers",
            )
        else {
            panic!("a phone number that is not text is refused");
        };
        assert_eq!(
            message,
            "customers: GET /api/PrivateCustomers/{id}: phone: wrong type, expected a string"
        );
        assert!(!message.contains("4791234567"));
    }

    /// Review: hostile quantities saturate the computed total instead of overflowing it
    /// (two lines of 1e300 panicked in a debug build, the worker's pull round with them).
    #[test]
    fn hostile_quantities_saturate_the_computed_total() {
        let o: OmniumOrder = serde_json::from_value(json!({"id": "WEB-9",
            "orderForm": {"lineItems": [
                {"lineItemId": "1", "quantity": 1e300, "placedPrice": 1, "discounted": -5},
                {"lineItemId": "2", "quantity": 1e300, "placedPrice": 1},
                {"lineItemId": "3", "quantity": -1e300, "placedPrice": 1},
                {"lineItemId": "4", "quantity": -1e300, "placedPrice": 1, "discounted": 5}]}}))
        .unwrap();
        let local = local_order(&o, "NOK");
        assert_eq!(local["total"], json!(i64::MIN), "{local}");
        let o: OmniumOrder = serde_json::from_value(json!({"id": "WEB-9",
            "orderForm": {"lineItems": [
                {"lineItemId": "1", "quantity": 1e300, "placedPrice": 1},
                {"lineItemId": "2", "quantity": 1e300, "placedPrice": 1}]}}))
        .unwrap();
        assert_eq!(local_order(&o, "NOK")["total"], json!(i64::MAX));
    }

    /// An order is read typed; the till's JSON of it is what the `Value` mapping made
    /// (quantities as Omnium wrote them, prices in minor units, totals computed when Omnium
    /// sent none); a `null` line is skipped; a wrong type is named, never quoted.
    #[test]
    fn an_order_is_read_typed_into_the_same_local_json() {
        let body = br#"{"result": [{"id": "WEB-1", "orderType": "ClickAndCollect",
            "status": "New", "storeId": "oslo-1", "customerId": "C-1",
            "billingAddress": {"name": "Kari Nordmann", "line1": "Gate 1"},
            "customerEmail": "kari@example.no", "billingCurrency": "NOK",
            "created": "2026-12-01T10:00:00Z", "modified": "2026-12-01T11:00:00Z",
            "orderForm": {"lineItems": [null,
                {"lineItemId": "1", "code": "A", "displayName": "Genser", "quantity": 2,
                 "placedPrice": 199.5, "discounted": 10, "canceledQuantity": 0},
                {"lineItemId": "2", "code": "B", "quantity": 1.5, "placedPrice": 10}],
                "shipments": [{"pickUpWarehouseCode": "oslo-lager"}]},
            "unknown": {"deep": [1, 2, 3]}}]}"#;
        let page = Page::<OmniumOrder>::parse(body, "POST /api/Orders/Search", "orders").unwrap();
        let o = &page.items[0];
        assert!(is_for_store(o, "bergen-1", &["oslo-lager".to_string()]));
        assert!(!is_for_store(o, "bergen-1", &[]));
        assert_eq!(o.modified_ms(), Some(1_796_122_800_000));
        let local = local_order(o, "SEK");
        assert_eq!(
            local,
            json!({"id": "WEB-1", "order_type": "ClickAndCollect", "status": "New",
                "store_id": "oslo-1",
                "customer": {"id": "C-1", "name": "Kari Nordmann", "email": "kari@example.no",
                             "phone": null},
                "lines": [
                    {"line_id": "1", "sku": "A", "name": "Genser", "quantity": 2,
                     "unit_price": 19950, "canceled_quantity": 0.0, "delivered_quantity": 0.0,
                     "ready_for_pickup_quantity": 0.0},
                    {"line_id": "2", "sku": "B", "name": null, "quantity": 1.5,
                     "unit_price": 1000, "canceled_quantity": 0.0, "delivered_quantity": 0.0,
                     "ready_for_pickup_quantity": 0.0}],
                "total": 39900 - 1000 + 1500, "currency": "NOK", "pickup_deadline": null,
                "created": "2026-12-01T10:00:00Z", "modified": "2026-12-01T11:00:00Z"})
        );
        assert!(local.to_string().contains(r#""quantity":2,"#), "{local}");
        let wrong = br#"[{"id": "WEB-2", "customerEmail": ["kari@example.no"]}]"#;
        let Err(Failure::Rejected { status: 0, message }) =
            Page::<OmniumOrder>::parse(wrong, "POST /api/Orders/Search", "orders")
        else {
            panic!("an e-mail that is not text is refused");
        };
        assert_eq!(
            message,
            "orders: POST /api/Orders/Search: [0].customerEmail: wrong type, expected a string"
        );
    }
}
