//! What the till records besides sales: receipts, customers, goods receptions, stock
//! counts and click & collect pickups (CONTRACT §4).

use super::fields::{Fields, MAX_MONEY};
use crate::error::{Error, Result};
use chrono::{DateTime, FixedOffset};
use serde_json::Value;
use std::collections::HashSet;

/// The largest receipt PDF accepted.
pub const MAX_PDF_BYTES: usize = 10 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq)]
pub struct Receipt {
    pub id: String,
    pub sale_id: String,
    pub receipt_number: String,
    pub issued_at: DateTime<FixedOffset>,
    pub total: i64,
    pub tax_total: i64,
    pub currency: String,
    pub customer_id: Option<String>,
    pub file_name: String,
}

impl Receipt {
    pub fn normalize(value: &mut Value, currency: &str) {
        if let Value::Object(map) = value {
            if map.get("currency").is_none_or(Value::is_null) {
                map.insert("currency".into(), currency.into());
            }
        }
    }

    pub fn parse(value: &Value) -> Result<Receipt> {
        let f = Fields::new(value, "receipt")?;
        f.deny_unknown(&[
            "id",
            "sale_id",
            "receipt_number",
            "issued_at",
            "total",
            "tax_total",
            "currency",
            "customer_id",
            "file_name",
        ])?;
        let receipt_number = f.id("receipt_number")?.to_string();
        let file_name = match f.text_opt("file_name")? {
            Some(n) => n.to_string(),
            None => format!("receipt-{receipt_number}.pdf"),
        };
        if file_name.contains(['/', '\\']) || file_name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "receipt.file_name",
                "must be a plain file name",
            ));
        }
        let total = f.money("total")?;
        let tax_total = f.money("tax_total")?;
        if tax_total.unsigned_abs() > total.unsigned_abs() {
            return Err(Error::invalid(
                "receipt.tax_total",
                "is larger than the total",
            ));
        }
        Ok(Receipt {
            id: f.id("id")?.to_string(),
            sale_id: f.id("sale_id")?.to_string(),
            receipt_number,
            issued_at: f.time("issued_at")?,
            total,
            tax_total,
            currency: f.text("currency")?.to_string(),
            customer_id: f.id_opt("customer_id")?.map(str::to_string),
            file_name,
        })
    }

    /// The PDF must be a PDF and not absurdly large.
    pub fn check_pdf(pdf: &[u8]) -> Result<()> {
        if !pdf.starts_with(b"%PDF-") {
            return Err(Error::invalid(
                "pdf",
                "is not a PDF (it must start with %PDF-)",
            ));
        }
        if pdf.len() > MAX_PDF_BYTES {
            return Err(Error::invalid(
                "pdf",
                format!(
                    "is {} bytes; at most {MAX_PDF_BYTES} are accepted",
                    pdf.len()
                ),
            ));
        }
        Ok(())
    }
}

/// SHA-256 of the PDF: recorded with the receipt so a repeated id with another PDF is a
/// conflict, without keeping two copies. A cryptographic hash, so no one can make a second
/// PDF that passes for the first.
pub fn pdf_fingerprint(pdf: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(pdf);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}-{}", pdf.len())
}

/// The 64-bit FNV-1a fingerprint older versions recorded (collisions can be constructed):
/// only to recognise a receipt they stored when it is recorded again.
pub fn legacy_pdf_fingerprint(pdf: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pdf {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:016x}-{}", h, pdf.len())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomerType {
    Person,
    Company,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Customer {
    pub id: String,
    pub kind: CustomerType,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    pub tax_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub loyalty_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Address {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub country_code: Option<String>,
}

impl Customer {
    pub fn parse(value: &Value) -> Result<Customer> {
        let f = Fields::new(value, "customer")?;
        f.deny_unknown(&[
            "id",
            "type",
            "first_name",
            "last_name",
            "company_name",
            "tax_id",
            "email",
            "phone",
            "address",
            "loyalty_id",
        ])?;
        let kind = match f.text("type")? {
            "person" => CustomerType::Person,
            "company" => CustomerType::Company,
            other => {
                return Err(Error::invalid(
                    "customer.type",
                    format!("must be \"person\" or \"company\", got {other:?}"),
                ))
            }
        };
        let text = |k: &str| -> Result<Option<String>> { Ok(f.text_opt(k)?.map(str::to_string)) };
        let c = Customer {
            id: f.id("id")?.to_string(),
            kind,
            first_name: text("first_name")?,
            last_name: text("last_name")?,
            company_name: text("company_name")?,
            tax_id: text("tax_id")?,
            email: text("email")?,
            phone: text("phone")?,
            address: match f.object_opt("address")? {
                None => None,
                Some(a) => {
                    a.deny_unknown(&["line1", "line2", "postal_code", "city", "country_code"])?;
                    Some(Address {
                        line1: a.text_opt("line1")?.map(str::to_string),
                        line2: a.text_opt("line2")?.map(str::to_string),
                        postal_code: a.text_opt("postal_code")?.map(str::to_string),
                        city: a.text_opt("city")?.map(str::to_string),
                        country_code: a.text_opt("country_code")?.map(str::to_string),
                    })
                }
            },
            loyalty_id: f.id_opt("loyalty_id")?.map(str::to_string),
        };
        match c.kind {
            CustomerType::Person if c.first_name.is_none() && c.last_name.is_none() => {
                Err(Error::invalid(
                    "customer.first_name",
                    "a person needs first_name or last_name",
                ))
            }
            CustomerType::Company if c.company_name.is_none() => Err(Error::invalid(
                "customer.company_name",
                "a company needs company_name",
            )),
            _ => Ok(c),
        }
        .and_then(|c| {
            if let Some(e) = &c.email {
                if !e.contains('@') {
                    return Err(Error::invalid(
                        "customer.email",
                        format!("{e:?} is not an e-mail address"),
                    ));
                }
            }
            Ok(c)
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GoodsReception {
    pub id: String,
    pub purchase_order_id: Option<String>,
    pub delivery_id: Option<String>,
    pub warehouse_id: String,
    pub received_at: DateTime<FixedOffset>,
    pub lines: Vec<ReceivedLine>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedLine {
    pub line_id: Option<String>,
    pub sku: String,
    pub quantity: f64,
}

impl GoodsReception {
    pub fn normalize(value: &mut Value, warehouse: &str) {
        if let Value::Object(map) = value {
            if map.get("warehouse_id").is_none_or(Value::is_null) {
                map.insert("warehouse_id".into(), warehouse.into());
            }
        }
    }

    pub fn parse(value: &Value) -> Result<GoodsReception> {
        let f = Fields::new(value, "goods_reception")?;
        f.deny_unknown(&[
            "id",
            "purchase_order_id",
            "delivery_id",
            "warehouse_id",
            "received_at",
            "lines",
        ])?;
        let purchase_order_id = f.id_opt("purchase_order_id")?.map(str::to_string);
        let delivery_id = f.id_opt("delivery_id")?.map(str::to_string);
        if purchase_order_id.is_some() && delivery_id.is_none() {
            return Err(Error::invalid(
                "goods_reception.delivery_id",
                "is required with a purchase_order_id that has not been pulled yet (Omnium receives goods per delivery)",
            ));
        }
        let mut seen = HashSet::new();
        let mut lines = Vec::new();
        for l in f.objects("lines")? {
            l.deny_unknown(&["line_id", "sku", "quantity"])?;
            let line_id = l.id_opt("line_id")?.map(str::to_string);
            if purchase_order_id.is_some() && line_id.is_none() {
                return Err(Error::invalid(
                    l.path("line_id"),
                    "is required when receiving a purchase order",
                ));
            }
            let sku = l.id("sku")?.to_string();
            let key = line_id.clone().unwrap_or_else(|| sku.clone());
            if !seen.insert(key.clone()) {
                return Err(Error::invalid(
                    l.path("line_id"),
                    format!("{key:?} is received twice"),
                ));
            }
            let quantity = l.number("quantity")?;
            if quantity <= 0.0 || quantity > 1e9 {
                return Err(Error::invalid(
                    l.path("quantity"),
                    format!("must be greater than 0, got {quantity}"),
                ));
            }
            lines.push(ReceivedLine {
                line_id,
                sku,
                quantity,
            });
        }
        Ok(GoodsReception {
            id: f.id("id")?.to_string(),
            purchase_order_id,
            delivery_id,
            warehouse_id: f.id("warehouse_id")?.to_string(),
            received_at: f.time("received_at")?,
            lines,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StockCount {
    pub warehouse_id: String,
    pub counted_at: DateTime<FixedOffset>,
    pub items: Vec<(String, f64)>,
}

impl StockCount {
    pub fn parse(value: &Value) -> Result<StockCount> {
        let f = Fields::new(value, "stock_count")?;
        f.deny_unknown(&["warehouse_id", "counted_at", "items"])?;
        let mut seen = HashSet::new();
        let mut items = Vec::new();
        for i in f.objects("items")? {
            i.deny_unknown(&["sku", "quantity"])?;
            let sku = i.id("sku")?.to_string();
            if !seen.insert(sku.clone()) {
                return Err(Error::invalid(
                    i.path("sku"),
                    format!("{sku:?} is counted twice"),
                ));
            }
            let q = i.number("quantity")?;
            if q.abs() > MAX_MONEY as f64 {
                return Err(Error::invalid(i.path("quantity"), "is out of range"));
            }
            items.push((sku, q));
        }
        Ok(StockCount {
            warehouse_id: f.id("warehouse_id")?.to_string(),
            counted_at: f.time("counted_at")?,
            items,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PickupStatus {
    ReadyForPickup,
    PickedUp,
    NotCollected,
    Cancelled,
}

impl PickupStatus {
    pub fn omnium_status(self) -> &'static str {
        match self {
            PickupStatus::ReadyForPickup => "ReadyForPickup",
            PickupStatus::PickedUp => "PickedUp",
            PickupStatus::NotCollected => "NotCollected",
            PickupStatus::Cancelled => "OrderCanceled",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pickup {
    pub id: String,
    pub order_id: String,
    pub status: PickupStatus,
    pub at: DateTime<FixedOffset>,
    /// `None` = every line.
    pub lines: Option<Vec<(String, f64)>>,
}

impl Pickup {
    pub fn parse(value: &Value) -> Result<Pickup> {
        let f = Fields::new(value, "pickup")?;
        f.deny_unknown(&["id", "order_id", "status", "at", "lines"])?;
        let status = match f.text("status")? {
            "ready_for_pickup" => PickupStatus::ReadyForPickup,
            "picked_up" => PickupStatus::PickedUp,
            "not_collected" => PickupStatus::NotCollected,
            "cancelled" => PickupStatus::Cancelled,
            other => {
                return Err(Error::invalid(
                    "pickup.status",
                    format!(
                        "must be ready_for_pickup, picked_up, not_collected or cancelled, got {other:?}"
                    ),
                ))
            }
        };
        let lines = match f.objects_opt("lines")? {
            None => None,
            Some(items) if items.is_empty() => {
                return Err(Error::invalid(
                    "pickup.lines",
                    "must hold a line (leave it out for all lines)",
                ))
            }
            Some(items) => {
                let mut seen = HashSet::new();
                let mut lines = Vec::new();
                for l in items {
                    l.deny_unknown(&["line_id", "quantity"])?;
                    let id = l.id("line_id")?.to_string();
                    if !seen.insert(id.clone()) {
                        return Err(Error::invalid(
                            l.path("line_id"),
                            format!("{id:?} is listed twice"),
                        ));
                    }
                    let q = l.number("quantity")?;
                    if q <= 0.0 {
                        return Err(Error::invalid(
                            l.path("quantity"),
                            format!("must be greater than 0, got {q}"),
                        ));
                    }
                    lines.push((id, q));
                }
                Some(lines)
            }
        };
        if status == PickupStatus::NotCollected && lines.is_some() {
            return Err(Error::invalid(
                "pickup.lines",
                "not_collected applies to the whole order",
            ));
        }
        Ok(Pickup {
            id: f.id("id")?.to_string(),
            order_id: f.id("order_id")?.to_string(),
            status,
            at: f.time("at")?,
            lines,
        })
    }
}

/// A level to push to Omnium: the newest count of one SKU in one warehouse (absolute).
/// Here, not in store/, so that omnium/ knows nothing of SQLite (issue 8 defect 12).
#[derive(Clone, Debug, PartialEq)]
pub struct PushLevel {
    pub sku: String,
    pub warehouse_id: String,
    pub quantity: f64,
    pub counted_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn customers_need_a_name_fitting_their_type() {
        let person = json!({"id": "C-77", "type": "person", "first_name": "Kari", "last_name": "Nordmann",
            "company_name": null, "tax_id": null, "email": "kari@example.no", "phone": "+4791234567",
            "address": {"line1": "Storgata 1", "postal_code": "0155", "city": "Oslo", "country_code": "NO"},
            "loyalty_id": "L-555"});
        assert_eq!(Customer::parse(&person).unwrap().kind, CustomerType::Person);
        let err = Customer::parse(&json!({"id": "C-1", "type": "person"})).unwrap_err();
        assert!(err.to_string().starts_with("customer.first_name"), "{err}");
        let err = Customer::parse(&json!({"id": "C-1", "type": "company", "first_name": "A"}))
            .unwrap_err();
        assert!(
            err.to_string().starts_with("customer.company_name"),
            "{err}"
        );
        let err = Customer::parse(&json!({"id": "C-1", "type": "robot"})).unwrap_err();
        assert!(err.to_string().starts_with("customer.type"), "{err}");
    }

    #[test]
    fn receipts_need_a_real_pdf() {
        assert!(Receipt::check_pdf(b"%PDF-1.7\n...").is_ok());
        assert!(Receipt::check_pdf(b"<html>")
            .unwrap_err()
            .to_string()
            .contains("%PDF-"));
        assert_ne!(pdf_fingerprint(b"%PDF-a"), pdf_fingerprint(b"%PDF-b"));
        // SHA-256 of "abc" (FIPS 180-2 test vector).
        assert_eq!(
            pdf_fingerprint(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad-3"
        );
        assert_eq!(legacy_pdf_fingerprint(b"abc"), "e71fa2190541574b-3");
    }

    #[test]
    fn a_reception_of_a_purchase_order_names_its_delivery_and_lines() {
        let ok = json!({"id": "GR-1", "purchase_order_id": "PO-9", "delivery_id": "D-9", "warehouse_id": "oslo-1",
            "received_at": "2026-11-28T08:00:00+01:00", "lines": [{"line_id": "PO-9-1", "sku": "SKU-1", "quantity": 5}]});
        assert!(GoodsReception::parse(&ok).is_ok());
        let mut bad = ok.clone();
        bad.as_object_mut().unwrap().remove("delivery_id");
        assert!(GoodsReception::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("delivery_id"));
        let no_po = json!({"id": "GR-2", "warehouse_id": "oslo-1", "received_at": "2026-11-28T08:00:00+01:00",
            "lines": [{"sku": "SKU-1", "quantity": 5}]});
        assert!(GoodsReception::parse(&no_po).is_ok());
    }

    #[test]
    fn pickup_statuses_are_the_four_of_the_contract() {
        let p = |s: &str| {
            Pickup::parse(
                &json!({"id": "PU-1", "order_id": "WEB-1", "status": s, "at": "2026-11-28T12:00:00Z"}),
            )
        };
        assert_eq!(p("picked_up").unwrap().status, PickupStatus::PickedUp);
        assert!(p("collected")
            .unwrap_err()
            .to_string()
            .starts_with("pickup.status"));
    }
}
