//! The JSON the POS reads (CONTRACT §5), built from local rows.

use crate::error::{Error, Result};
use crate::model::fields::{parse_object, Fields};
use crate::model::store_events::{Pickup, PickupStatus};
use crate::omnium::back_office::is_cancel_status;
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
        "member_price": p.member_price.as_ref().map(|pr| json!({
            "unit_price": pr.unit_price, "currency": pr.currency,
            "valid_from": pr.valid_from.map(rfc3339), "valid_until": pr.valid_until.map(rfc3339),
        })),
        "cost_price": p.cost_price,
    })
}

/// The most a search page returns.
pub const MAX_SEARCH_LIMIT: u64 = 500;
/// A search text longer than this is refused: a till types a few words, and each word is a
/// prefix term the index must intersect (20,000 of them took 0.9 s).
pub const MAX_SEARCH_TEXT_BYTES: usize = 200;
/// At most this many words in a search text.
pub const MAX_SEARCH_WORDS: usize = 12;

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
    let text = f.str_opt("text")?;
    if let Some(t) = text {
        if t.len() > MAX_SEARCH_TEXT_BYTES {
            return Err(Error::invalid(
                "query.text",
                format!("at most {MAX_SEARCH_TEXT_BYTES} bytes, got {}", t.len()),
            ));
        }
        let words = t
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .count();
        if words > MAX_SEARCH_WORDS {
            return Err(Error::invalid(
                "query.text",
                format!("at most {MAX_SEARCH_WORDS} words, got {words}"),
            ));
        }
    }
    Ok(SearchQuery {
        text: text.map(str::to_string),
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
                "as_of": w.as_of.map(rfc3339),
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
    match v.as_str().and_then(|s| s.get(..5)) {
        Some(hm) => Value::from(hm),
        None => Value::Null,
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
                .map(|s| Value::from(s.get(..10).unwrap_or(s)))
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

/// Applies click & collect progress to the till's copy of an order, so the inbox shows it
/// at once. Returns the new status and, for partial progress, each line's new absolute
/// quantity (what Omnium is told, so a repeat sets the same value instead of adding).
pub fn apply_pickup(order: &mut Value, p: &Pickup) -> Result<(String, Value)> {
    let status = order["status"].as_str().unwrap_or("").to_string();
    if is_cancel_status(&status) {
        return Err(Error::invalid(
            "pickup.order_id",
            format!(
                "order {:?} was cancelled in Omnium (status {status}); it cannot be handed over",
                p.order_id
            ),
        ));
    }
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut targets = Map::new();
    let Some(lines) = order["lines"].as_array_mut() else {
        return Err(Error::Storage(format!(
            "order {:?} has no lines locally",
            p.order_id
        )));
    };
    let field = match p.status {
        PickupStatus::PickedUp => "delivered_quantity",
        PickupStatus::ReadyForPickup => "ready_for_pickup_quantity",
        PickupStatus::Cancelled => "canceled_quantity",
        PickupStatus::NotCollected => "",
    };
    match &p.lines {
        None if field.is_empty() => {}
        None => {
            for line in lines.iter_mut() {
                let value = if p.status == PickupStatus::Cancelled {
                    num(&line["quantity"])
                } else {
                    num(&line["quantity"]) - num(&line["canceled_quantity"])
                };
                line[field] = value.into();
            }
        }
        Some(picked) => {
            for (i, (line_id, q)) in picked.iter().enumerate() {
                let Some(line) = lines
                    .iter_mut()
                    .find(|l| l["line_id"].as_str() == Some(line_id))
                else {
                    return Err(Error::invalid(
                        format!("pickup.lines[{i}].line_id"),
                        format!("order {:?} has no line {line_id:?}", p.order_id),
                    ));
                };
                let open = num(&line["quantity"]) - num(&line["canceled_quantity"]);
                let new = if p.status == PickupStatus::Cancelled {
                    num(&line["quantity"])
                } else {
                    num(&line[field]) + q
                };
                if p.status != PickupStatus::Cancelled && new > open + 1e-9 {
                    return Err(Error::invalid(
                        format!("pickup.lines[{i}].quantity"),
                        format!("{q} would make {new} of line {line_id:?}, which has {open}"),
                    ));
                }
                line[field] = new.into();
                targets.insert(line_id.clone(), new.into());
            }
        }
    }
    let all = |f: &str| {
        lines
            .iter()
            .all(|l| num(&l[f]) + 1e-9 >= num(&l["quantity"]) - num(&l["canceled_quantity"]))
    };
    let new_status = match p.status {
        PickupStatus::NotCollected => "NotCollected",
        PickupStatus::Cancelled
            if lines
                .iter()
                .all(|l| num(&l["canceled_quantity"]) >= num(&l["quantity"])) =>
        {
            "OrderCanceled"
        }
        PickupStatus::Cancelled => status.as_str(),
        PickupStatus::PickedUp if all("delivered_quantity") => "PickedUp",
        PickupStatus::PickedUp => "PartiallyShipped",
        PickupStatus::ReadyForPickup => "ReadyForPickup",
    }
    .to_string();
    order["status"] = new_status.clone().into();
    Ok((new_status, Value::Object(targets)))
}

/// An order's JSON for `fo_orders_list` filters.
pub fn orders_filter(text: &str) -> Result<(Option<String>, Option<String>)> {
    let v = parse_object(text, "filter")?;
    let f = Fields::new(&v, "filter")?;
    f.deny_unknown(&["order_type", "status"])?;
    Ok((
        f.text_opt("order_type")?.map(str::to_string),
        f.text_opt("status")?.map(str::to_string),
    ))
}

pub fn purchase_orders_filter(text: &str) -> Result<Option<String>> {
    let v = parse_object(text, "filter")?;
    let f = Fields::new(&v, "filter")?;
    f.deny_unknown(&["status"])?;
    Ok(f.text_opt("status")?.map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_texts_are_capped_in_bytes_and_words() {
        assert!(search_query(r#"{"text": "ull genser 42"}"#).is_ok());
        let many = vec!["a"; 20_000].join(" ");
        let err = search_query(&serde_json::json!({ "text": many }).to_string()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.contains("query.text")),
            "{err}"
        );
        let words = vec!["ab"; 13].join(" ");
        let err = search_query(&serde_json::json!({ "text": words }).to_string()).unwrap_err();
        assert!(err.to_string().contains("words"), "{err}");
    }
}
