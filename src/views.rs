//! The JSON the POS reads (CONTRACT §5), built from local rows.

use crate::error::{Error, Result};
use crate::model::fields::{parse_object, Fields};
use crate::store::{ProductView, SearchQuery, StockView};
use crate::sync::rfc3339;
use serde_json::{json, Map, Value};

pub fn product(p: &ProductView) -> Value {
    json!({
        "sku": p.sku, "product_id": p.product_id, "name": p.name, "brand": p.brand, "ean": p.ean,
        "category_ids": p.category_ids, "image_urls": p.image_urls, "active": p.active,
        "price": p.price.as_ref().map(|pr| json!({
            "unit_price": pr.unit_price, "currency": pr.currency,
            "valid_from": pr.valid_from.map(rfc3339), "valid_until": pr.valid_until.map(rfc3339),
        })),
        "cost_price": p.cost_price,
    })
}

/// The most a search page returns.
pub const MAX_SEARCH_LIMIT: u64 = 500;

pub fn search_query(text: &str) -> Result<SearchQuery> {
    let v = parse_object(text, "query")?;
    let f = Fields::new(&v, "query")?;
    f.deny_unknown(&["text", "category_id", "brand", "limit", "offset"])?;
    let limit = f.u64_opt("limit")?.unwrap_or(50);
    if limit == 0 || limit > MAX_SEARCH_LIMIT {
        return Err(Error::invalid(
            "query.limit",
            format!("must be between 1 and {MAX_SEARCH_LIMIT}"),
        ));
    }
    let offset = f.u64_opt("offset")?.unwrap_or(0);
    Ok(SearchQuery {
        text: f.str_opt("text")?.map(str::to_string),
        category_id: f.text_opt("category_id")?.map(str::to_string),
        brand: f.text_opt("brand")?.map(str::to_string),
        limit: limit as u32,
        offset: offset.min(u32::MAX as u64) as u32,
    })
}

pub fn stock(s: &StockView) -> Value {
    let warehouses: Vec<Value> = s
        .warehouses
        .iter()
        .map(|w| {
            json!({
                "warehouse_id": w.warehouse_id, "quantity": w.quantity, "reserved": w.reserved,
                "pending": w.pending, "available": w.quantity - w.reserved + w.pending,
            })
        })
        .collect();
    json!({ "sku": s.sku, "warehouses": warehouses })
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// "09:00:00" → "09:00".
fn hhmm(v: &Value) -> Value {
    match v.as_str() {
        Some(s) if s.len() >= 5 => Value::from(&s[..5]),
        _ => Value::Null,
    }
}

fn hours(h: &Value) -> Value {
    let open = h["isOpen"].as_bool().unwrap_or(false);
    json!({"open": open, "from": if open { hhmm(&h["openFrom"]) } else { Value::Null },
           "to": if open { hhmm(&h["openTo"]) } else { Value::Null }})
}

/// Omnium's store as is, with the opening hours and warehouses in the POS's terms added.
pub fn store(mut raw: Value) -> Value {
    let mut opening = Map::new();
    for day in DAYS {
        opening.insert(day.to_string(), hours(&raw[format!("{day}OpeningHours")]));
    }
    let special: Vec<Value> = raw["additionalOpeningHours"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let closed = d["closed"].as_bool().unwrap_or(false);
            let mut h = if closed {
                json!({"open": false, "from": null, "to": null})
            } else {
                hours(&d["openingHours"])
            };
            h["date"] = d["date"]
                .as_str()
                .map(|s| Value::from(&s[..s.len().min(10)]))
                .unwrap_or(Value::Null);
            h["label"] = d["label"].clone();
            h
        })
        .collect();
    let mut warehouses: Vec<Value> = raw["availableWarehouses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| {
            Some(json!({"warehouse_id": w["warehouseCode"].as_str()?, "priority": w["priority"].as_i64().unwrap_or(0)}))
        })
        .collect();
    if warehouses.is_empty() && raw["isWarehouse"].as_bool() == Some(true) {
        warehouses.push(json!({"warehouse_id": raw["id"], "priority": 0}));
    }
    if let Value::Object(map) = &mut raw {
        map.insert("opening_hours".into(), Value::Object(opening));
        map.insert("special_days".into(), Value::Array(special));
        map.insert("warehouses".into(), Value::Array(warehouses));
    }
    raw
}
