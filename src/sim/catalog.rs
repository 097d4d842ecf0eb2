//! The read side a POS pulls from Omnium: products (variants, prices, categories, assets), product
//! categories, stores, markets and inventory, with Omnium's scroll and delta semantics, plus the
//! simulator clock every `modified` comes from.
//!
//! Traps kept on purpose, so a client that does deltas and scrolls wrong gets caught:
//! - a product scroll without `sortOrder` is in document id order, not `modified` order;
//! - a catalog load stamps every document with the same instant (ties on `modified`);
//! - a scroll serves the matching set as it was at the POST (later changes wait for the next delta);
//! - a request's `take` is capped at the configured page size, so short pages are not the end;
//! - scrolls expire after `scroll_ttl_ms` without a GET; unknown or expired ids answer 404;
//! - inactive products are served (`isActive: false`), deleted ones only to delta queries;
//! - prices for other markets, other stores, customers and campaign windows are all on `prices[]`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use serde_json::{json, Map, Value};

use super::http::{Request, Response};
use super::state::{parse_object, random_hex, State};
use super::vocab::Vocabulary;
use super::{CatalogSpec, CatalogSummary, SimConfig};

pub(crate) const DAY_MS: i64 = 86_400_000;
const NS_PER_MS: i128 = 1_000_000;
/// `GET /api/ProductCategories`: largest `pageSize`.
const MAX_CATEGORY_PAGE_SIZE: i64 = 1000;
/// GET list endpoints default to 20 per page.
pub(crate) const DEFAULT_LIST_PAGE_SIZE: i64 = 20;
/// POST search bodies: `take` at most 100, `take * page` at most 10,000.
pub(crate) const MAX_SEARCH_TAKE: i64 = 100;
pub(crate) const MAX_SEARCH_WINDOW: i64 = 10_000;
/// The answer to a scroll GET for an id that is unknown, finished or expired.
const SCROLL_GONE: &str = "Scroll not found or expired";

// ---------------------------------------------------------------------------------------------
// Clock and times

/// Wall-clock milliseconds, but strictly increasing across ticks: two changes in the same
/// millisecond get stamps 1 ms apart, so every change is visible to a `>=` high-water mark.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    last_ms: i64,
}

impl Clock {
    /// A fresh stamp for a change.
    pub fn tick(&mut self) -> i64 {
        let t = Utc::now().timestamp_millis().max(self.last_ms + 1);
        self.last_ms = t;
        t
    }

    /// "Now" without making a change: never before the last stamp handed out.
    pub fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis().max(self.last_ms)
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-28T10:15:00.123Z`.
pub(crate) fn fmt_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn ms_ns(ms: i64) -> i128 {
    i128::from(ms) * NS_PER_MS
}

/// Nanoseconds since the epoch of an RFC 3339 time (any fraction, any offset), a time without an
/// offset (taken as UTC, as .NET does with `DateTimeKind.Unspecified`) or a bare date.
pub(crate) fn parse_time_ns(s: &str) -> Option<i128> {
    let s = s.trim();
    let ns = |secs: i64, sub: u32| i128::from(secs) * 1_000_000_000 + i128::from(sub);
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(ns(t.timestamp(), t.timestamp_subsec_nanos()));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            let t = t.and_utc();
            return Some(ns(t.timestamp(), t.timestamp_subsec_nanos()));
        }
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)?
        .and_utc();
    Some(ns(d.timestamp(), 0))
}

// ---------------------------------------------------------------------------------------------
// Deterministic generator

/// xorshift64* seeded through splitmix64, so nearby seeds give unrelated streams.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    fn below_i64(&mut self, n: i64) -> i64 {
        self.below(n.max(0) as u64) as i64
    }

    /// True with probability `pct`/100.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below_usize(xs.len())]
    }
}

const TOP_CATEGORIES: [&str; 8] = [
    "Dame",
    "Herre",
    "Barn",
    "Friluft",
    "Sko",
    "Tilbehør",
    "Sport",
    "Ull",
];
const SUB_CATEGORIES: [&str; 16] = [
    "Jakker",
    "Gensere",
    "Bukser",
    "Undertøy",
    "Luer",
    "Votter",
    "Sokker",
    "Skjorter",
    "T-skjorter",
    "Kjoler",
    "Sekker",
    "Telt",
    "Soveposer",
    "Støvler",
    "Skallplagg",
    "Fleece",
];
const CAMPAIGNS: [&str; 4] = ["Vinterkampanje", "Black Week", "Sommersalg", "Medlemsdager"];

/// `list[i]`, numbered once the list runs out ("Jakker 2").
fn numbered(list: &[&str], i: usize) -> String {
    let name = list[i % list.len()];
    match i / list.len() {
        0 => name.to_string(),
        n => format!("{name} {}", n + 1),
    }
}

/// Øre as a JSON number of kroner (two decimals at most).
fn money(cents: i64) -> Value {
    json!(cents as f64 / 100.0)
}

/// Down to whole kroner.
fn whole_kroner(cents: i64) -> i64 {
    cents / 100 * 100
}

/// One price row on a product's `prices[]`.
#[derive(Default)]
struct PriceRow<'a> {
    unit: i64,
    original: i64,
    currency: &'a str,
    market: &'a str,
    store: Option<&'a str>,
    customer: Option<String>,
    code: &'a str,
    sku: Option<&'a str>,
    from: i64,
    until: Option<i64>,
    promotion: Option<(String, &'a str)>,
}

impl PriceRow<'_> {
    fn json(&self, modified: &str) -> Value {
        let discount = self.original - self.unit;
        let percent = if self.original > 0 && discount > 0 {
            json!(((discount * 1000 / self.original) as f64 / 10.0).round())
        } else {
            json!(0)
        };
        json!({
            "unitPrice": money(self.unit),
            "originalUnitPrice": money(self.original),
            "discountAmount": money(discount),
            "discountPercent": percent,
            "currencyCode": self.currency,
            "marketId": self.market,
            "marketGroupId": null,
            "storeId": self.store,
            "customerId": self.customer,
            "customerGroup": null,
            "priceListId": null,
            "promotionId": self.promotion.as_ref().map(|p| p.0.clone()),
            "promotionName": self.promotion.as_ref().map(|p| p.1),
            "validFrom": fmt_ms(self.from),
            "validUntil": self.until.map(fmt_ms),
            "minQuantity": 1,
            "isTaxExcluded": false,
            "taxRate": null,
            "code": self.code,
            "skuId": self.sku,
            "modified": modified,
        })
    }
}

/// Generation state for one catalog load.
struct Gen<'a> {
    rng: Rng,
    lang: &'a str,
    /// Midnight UTC of the load day: validity windows and `created` are relative to it.
    anchor: i64,
    stamp: String,
    categories: &'a [Value],
    /// Categories products are filed under: the children, or the roots when there are none.
    leaves: Vec<usize>,
    used_ids: HashSet<String>,
    used_eans: HashSet<String>,
    /// Names come from their own stream, so ids, prices and EANs do not depend on them.
    names: Rng,
    vocab: Vocabulary,
}

impl Gen<'_> {
    fn product_id(&mut self, total: usize) -> String {
        let span = (total as u64).saturating_mul(10).max(900_000);
        loop {
            let id = (100_000 + self.rng.below(span)).to_string();
            if self.used_ids.insert(id.clone()) {
                return id;
            }
        }
    }

    /// A unique EAN-13 with a Norwegian GS1 prefix (70) and a valid check digit.
    fn ean(&mut self) -> String {
        loop {
            let mut d: Vec<u8> = vec![7, 0];
            for _ in 0..10 {
                d.push(self.rng.below(10) as u8);
            }
            d.push(ean_check_digit(&d));
            let s: String = d.iter().map(|x| char::from(b'0' + x)).collect();
            if self.used_eans.insert(s.clone()) {
                return s;
            }
        }
    }

    /// 99.00 … 3999.00, now and then ending in .50.
    fn price_cents(&mut self) -> i64 {
        let kr = 99 + 100 * self.rng.below_i64(40);
        if self.rng.chance(15) {
            (kr - 50) * 100 + 50
        } else {
            kr * 100
        }
    }

    fn product_categories(&mut self) -> Vec<Value> {
        let n = self.leaves.len();
        if n == 0 {
            return Vec::new();
        }
        let first = self.rng.below_usize(n);
        let mut picked = vec![self.leaves[first]];
        if n > 1 && self.rng.chance(50) {
            picked.push(self.leaves[(first + 1 + self.rng.below_usize(n - 1)) % n]);
        }
        picked
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let c = &self.categories[i];
                json!({
                    "id": c["id"],
                    "categoryId": c["categoryId"],
                    "language": c["language"],
                    "name": c["name"],
                    "parentId": c["parentId"],
                    "sortIndex": c["sortIndex"],
                    "isMainCategory": k == 0,
                })
            })
            .collect()
    }

    fn product(&mut self, total: usize, max_variants: usize) -> Value {
        let lang = self.lang;
        let pid = self.product_id(total);
        let naming = self.vocab.naming(&mut self.names);
        let (brand, garment, colour) = (naming.brand.as_str(), naming.kind.as_str(), naming.colour);
        let name = naming.name.clone();
        let n_variants = if max_variants == 0 || self.rng.below(3) == 0 {
            0
        } else {
            1 + self.rng.below_usize(max_variants)
        };
        let labels = self
            .vocab
            .variant_labels(&mut self.names, &naming, n_variants);
        let skus: Vec<String> = labels
            .iter()
            .enumerate()
            .map(|(k, (size, c))| {
                // One colour keeps the size as the SKU's suffix ("…-XL"); two number them.
                if labels.iter().all(|(_, other)| other == c) {
                    format!("{pid}-{}", size.replace([' ', ','], ""))
                } else {
                    format!("{pid}-{}", k + 1)
                }
            })
            .collect();
        let base = self.price_cents();
        let cost = base * (35 + self.rng.below_i64(20)) / 100;
        let created = fmt_ms(
            self.anchor - (30 + self.rng.below_i64(700)) * DAY_MS - self.rng.below_i64(DAY_MS),
        );
        let categories = self.product_categories();
        let n_images = 1 + self.rng.below(3);
        let main_image = 1 + self.rng.below(n_images);
        let assets: Vec<Value> = (1..=n_images)
            .map(|k| {
                json!({
                    "assetId": format!("{pid}-img-{k}"),
                    "url": format!("https://images.example.no/{pid}/{k}.jpg"),
                    "fileName": format!("{k}.jpg"),
                    "contentType": "image/jpeg",
                    "assetType": "Image",
                    "isMainImage": k == main_image,
                    "sortOrder": k - 1,
                    "altText": name,
                })
            })
            .collect();

        // Prices: all on the product, variant-specific ones with skuId and code set.
        let anchor = self.anchor;
        let mut rows = vec![PriceRow {
            unit: base,
            original: base,
            currency: "NOK",
            market: "NOR",
            code: &pid,
            from: anchor - (30 + self.rng.below_i64(335)) * DAY_MS,
            ..PriceRow::default()
        }];
        let mut markets = vec!["NOR"];
        if self.rng.chance(20) {
            let unit = whole_kroner(base * 95 / 100);
            rows.push(PriceRow {
                unit,
                original: unit,
                currency: "NOK",
                market: "NOR",
                store: Some("oslo-1"),
                code: &pid,
                from: anchor - (1 + self.rng.below_i64(60)) * DAY_MS,
                ..PriceRow::default()
            });
        }
        if !skus.is_empty() && self.rng.chance(20) {
            let sku = &skus[self.rng.below_usize(skus.len())];
            let unit = base + 10_000;
            rows.push(PriceRow {
                unit,
                original: unit,
                currency: "NOK",
                market: "NOR",
                code: sku,
                sku: Some(sku),
                from: anchor - (1 + self.rng.below_i64(60)) * DAY_MS,
                ..PriceRow::default()
            });
        }
        if self.rng.chance(10) {
            let (from, until) = match self.rng.below(3) {
                0 => (anchor - 3 * DAY_MS, anchor + 7 * DAY_MS),
                1 => (anchor + 5 * DAY_MS, anchor + 12 * DAY_MS),
                _ => (anchor - 20 * DAY_MS, anchor - 10 * DAY_MS),
            };
            let promotion = (
                format!("KAMP-{}", 100 + self.rng.below(900)),
                self.rng.pick(&CAMPAIGNS),
            );
            rows.push(PriceRow {
                unit: whole_kroner(base * 70 / 100),
                original: base,
                currency: "NOK",
                market: "NOR",
                code: &pid,
                from,
                until: Some(until),
                promotion: Some(promotion),
                ..PriceRow::default()
            });
        }
        if self.rng.chance(3) {
            let unit = whole_kroner(base * 11 / 10);
            rows.push(PriceRow {
                unit,
                original: unit,
                currency: "SEK",
                market: "SWE",
                code: &pid,
                from: anchor - (30 + self.rng.below_i64(100)) * DAY_MS,
                ..PriceRow::default()
            });
            markets.push("SWE");
        }
        if self.rng.chance(3) {
            let unit = whole_kroner(base * 85 / 100);
            rows.push(PriceRow {
                unit,
                original: unit,
                currency: "NOK",
                market: "NOR",
                customer: Some(format!("C-{}", 10_000 + self.rng.below(90_000))),
                code: &pid,
                from: anchor - (1 + self.rng.below_i64(30)) * DAY_MS,
                ..PriceRow::default()
            });
        }
        let prices: Vec<Value> = rows.iter().map(|r| r.json(&self.stamp)).collect();

        let mut variants = Vec::with_capacity(skus.len());
        for (sku, (size, vcolour)) in skus.iter().zip(&labels) {
            let vname = if *vcolour == colour {
                format!("{name} {size}")
            } else {
                format!("{name} {vcolour} {size}")
            };
            let ean = self.ean();
            variants.push(json!({
                "id": format!("{sku}_{lang}"),
                "skuId": sku,
                "productId": pid,
                "variantParentId": format!("{pid}_{lang}"),
                "language": lang,
                "name": vname,
                "ean": ean,
                "gtins": [ean],
                "size": size,
                "color": vcolour,
                "unit": "stk",
                "isActive": true,
                "isSku": true,
                "cost": money(cost),
                "costCurrency": "NOK",
                "marketIds": markets,
                "created": created,
                "modified": self.stamp,
            }));
        }
        let (sku_id, ean) = if variants.is_empty() {
            (Value::String(pid.clone()), Value::String(self.ean()))
        } else {
            (Value::Null, Value::Null)
        };
        let gtins: Vec<Value> = ean.as_str().map(|e| json!(e)).into_iter().collect();
        let main = categories.first();
        json!({
            "id": format!("{pid}_{lang}"),
            "productId": pid,
            "skuId": sku_id,
            "isSku": variants.is_empty(),
            "parentId": null,
            "language": lang,
            "name": name,
            "description": format!("{garment} fra {brand} i fargen {colour}."),
            "shortDescription": format!("{garment} fra {brand}"),
            "brand": brand,
            "ean": ean,
            "gtins": gtins,
            "color": colour,
            "size": null,
            "unit": "stk",
            "productType": garment,
            "categories": categories,
            "mainCategoryId": main.map(|c| c["categoryId"].clone()),
            "mainCategoryName": main.map(|c| c["name"].clone()),
            "assets": assets,
            "mainImageUrl": format!("https://images.example.no/{pid}/{main_image}.jpg"),
            "prices": prices,
            "cost": money(cost),
            "costCurrency": "NOK",
            "variants": variants,
            "isActive": true,
            "isDeleted": false,
            "status": "Published",
            "marketIds": markets,
            "storeIds": [],
            "taxCategory": "Standard",
            "created": created,
            "modified": self.stamp,
        })
    }
}

/// GS1 check digit of the first 12 digits (weights 1, 3, 1, 3, … from the left).
pub(crate) fn ean_check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .take(12)
        .enumerate()
        .map(|(i, &d)| u32::from(d) * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// A two-level tree: about a quarter roots, the rest children spread over them.
fn gen_categories(rng: &mut Rng, n: usize, lang: &str) -> Vec<Value> {
    let roots = if n == 0 { 0 } else { n.div_ceil(4).max(1) };
    (0..n)
        .map(|i| {
            let cid = format!("cat-{:03}", i + 1);
            let (name, parent, sort) = if i < roots {
                (numbered(&TOP_CATEGORIES, i), Value::Null, i)
            } else {
                let j = i - roots;
                (
                    numbered(&SUB_CATEGORIES, j),
                    json!(format!("cat-{:03}", j % roots + 1)),
                    j / roots,
                )
            };
            json!({
                "id": format!("{cid}_{lang}"),
                "categoryId": cid,
                "language": lang,
                "name": name,
                "parentId": parent,
                "sortIndex": sort,
                "isHidden": rng.chance(5),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Stores and markets

fn open_hours(from: &str, to: &str) -> Value {
    json!({"isOpen": true, "openFrom": from, "openTo": to})
}

fn closed_hours() -> Value {
    json!({"isOpen": false, "openFrom": "00:00:00", "openTo": "00:00:00"})
}

/// Monday … Sunday opening hours fields.
fn week(days: [Value; 7]) -> Map<String, Value> {
    const NAMES: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    NAMES
        .iter()
        .zip(days)
        .map(|(d, h)| (format!("{d}OpeningHours"), h))
        .collect()
}

fn with_week(mut store: Value, days: [Value; 7]) -> Value {
    if let Some(m) = store.as_object_mut() {
        m.extend(week(days));
    }
    store
}

/// The default store set: two shops and a warehouse.
fn default_stores(stamp: i64) -> Vec<Value> {
    let today = DateTime::<Utc>::from_timestamp_millis(stamp)
        .map(|t| t.date_naive())
        .unwrap_or_default();
    let christmas_year = if today.month() == 12 && today.day() > 24 {
        today.year() + 1
    } else {
        today.year()
    };
    let created = fmt_ms(stamp - 400 * DAY_MS);
    let modified = fmt_ms(stamp);
    let oslo = json!({
        "id": "oslo-1",
        "name": "Fjellsport Oslo Sentrum",
        "description": "Butikk i Karl Johans gate",
        "address": {
            "name": "Fjellsport Oslo Sentrum",
            "streetName": "Karl Johans gate",
            "streetNumber": "22",
            "zipcode": "0159",
            "city": "Oslo",
            "region": "Oslo",
            "country": "Norge",
            "countryCode": "NO",
            "email": "oslo@fjellsport.example.no",
        },
        "email": "oslo@fjellsport.example.no",
        "phoneNumber": "+47 22 41 50 00",
        "url": "https://fjellsport.example.no/butikker/oslo-sentrum",
        "latitude": "59.9127",
        "longitude": "10.7461",
        "availableOnMarkets": ["NOR"],
        "storeGroupId": "oslo",
        "isInactive": false,
        "isPublicVisible": true,
        "isPrimaryStore": true,
        "isWarehouse": true,
        "isWebWarehouse": false,
        "isPrimaryWarehouse": false,
        "isVirtual": false,
        "availableWarehouses": [
            {"warehouseCode": "oslo-1", "priority": 0},
            {"warehouseCode": "oslo-lager", "priority": 1},
        ],
        "availableReturnLocations": [{"warehouseCode": "oslo-1", "priority": 0}],
        "additionalOpeningHours": [{
            "date": format!("{christmas_year}-12-24T00:00:00Z"),
            "openingHours": open_hours("09:00:00", "13:00:00"),
            "closed": false,
            "label": "Julaften",
        }],
        "organizationalNumber": "987654321",
        "created": created,
        "modified": modified,
    });
    let lager = json!({
        "id": "oslo-lager",
        "name": "Fjellsport Sentrallager Alnabru",
        "description": "Sentrallager, ikke åpent for publikum",
        "address": {
            "name": "Fjellsport Sentrallager",
            "streetName": "Alfaset 1. industrivei",
            "streetNumber": "10",
            "zipcode": "0668",
            "city": "Oslo",
            "region": "Oslo",
            "country": "Norge",
            "countryCode": "NO",
            "email": "lager@fjellsport.example.no",
        },
        "email": "lager@fjellsport.example.no",
        "phoneNumber": "+47 22 41 50 90",
        "availableOnMarkets": ["NOR"],
        "storeGroupId": "oslo",
        "isInactive": false,
        "isPublicVisible": false,
        "isPrimaryStore": false,
        "isWarehouse": true,
        "isWebWarehouse": true,
        "isPrimaryWarehouse": true,
        "isVirtual": false,
        "availableWarehouses": [],
        "availableReturnLocations": [],
        "additionalOpeningHours": [],
        "organizationalNumber": "987654321",
        "created": created,
        "modified": modified,
    });
    let bergen = json!({
        "id": "bergen-1",
        "name": "Fjellsport Bergen Torgallmenningen",
        "description": "Butikk på Torgallmenningen",
        "address": {
            "name": "Fjellsport Bergen",
            "streetName": "Torgallmenningen",
            "streetNumber": "8",
            "zipcode": "5014",
            "city": "Bergen",
            "region": "Vestland",
            "country": "Norge",
            "countryCode": "NO",
            "email": "bergen@fjellsport.example.no",
        },
        "email": "bergen@fjellsport.example.no",
        "phoneNumber": "+47 55 30 20 10",
        "url": "https://fjellsport.example.no/butikker/bergen",
        "latitude": "60.3929",
        "longitude": "5.3241",
        "availableOnMarkets": ["NOR"],
        "storeGroupId": "bergen",
        "isInactive": false,
        "isPublicVisible": true,
        "isPrimaryStore": true,
        "isWarehouse": true,
        "isWebWarehouse": false,
        "isPrimaryWarehouse": false,
        "isVirtual": false,
        "availableWarehouses": [{"warehouseCode": "bergen-1", "priority": 0}],
        "availableReturnLocations": [{"warehouseCode": "bergen-1", "priority": 0}],
        "additionalOpeningHours": [],
        "organizationalNumber": "987654321",
        "created": created,
        "modified": modified,
    });
    let weekday = || open_hours("09:00:00", "20:00:00");
    let bergen_day = || open_hours("10:00:00", "20:00:00");
    let lager_day = || open_hours("07:00:00", "15:00:00");
    vec![
        with_week(
            oslo,
            [
                weekday(),
                weekday(),
                weekday(),
                weekday(),
                weekday(),
                open_hours("10:00:00", "18:00:00"),
                closed_hours(),
            ],
        ),
        with_week(
            lager,
            [
                lager_day(),
                lager_day(),
                lager_day(),
                lager_day(),
                lager_day(),
                closed_hours(),
                closed_hours(),
            ],
        ),
        with_week(
            bergen,
            [
                bergen_day(),
                bergen_day(),
                bergen_day(),
                bergen_day(),
                bergen_day(),
                open_hours("10:00:00", "18:00:00"),
                closed_hours(),
            ],
        ),
    ]
}

/// A configured store the default set does not describe.
fn minimal_store(id: &str, stamp: i64) -> Value {
    with_week(
        json!({
            "id": id,
            "name": id,
            "address": {"countryCode": "NO", "country": "Norge"},
            "availableOnMarkets": ["NOR"],
            "isInactive": false,
            "isPublicVisible": true,
            "isPrimaryStore": true,
            "isWarehouse": true,
            "availableWarehouses": [{"warehouseCode": id, "priority": 0}],
            "additionalOpeningHours": [],
            "created": fmt_ms(stamp),
            "modified": fmt_ms(stamp),
        }),
        [
            open_hours("10:00:00", "18:00:00"),
            open_hours("10:00:00", "18:00:00"),
            open_hours("10:00:00", "18:00:00"),
            open_hours("10:00:00", "18:00:00"),
            open_hours("10:00:00", "18:00:00"),
            closed_hours(),
            closed_hours(),
        ],
    )
}

fn markets_for(cfg: &SimConfig) -> Vec<Value> {
    let mut markets = vec![
        json!({
            "marketId": "NOR", "marketName": "Norge", "currency": "NOK", "countryCode": "NO",
            "languageCode": "nb-NO", "productContentLanguage": "no", "defaultTaxRate": 25,
            "isTaxExcluded": false, "marketGroupId": null, "marketType": null,
            "isDefaultMarket": true, "isActive": true,
        }),
        json!({
            "marketId": "SWE", "marketName": "Sverige", "currency": "SEK", "countryCode": "SE",
            "languageCode": "sv-SE", "productContentLanguage": "sv", "defaultTaxRate": 25,
            "isTaxExcluded": false, "marketGroupId": null, "marketType": null,
            "isDefaultMarket": false, "isActive": true,
        }),
    ];
    for m in &cfg.markets {
        if !markets.iter().any(|x| x["marketId"] == json!(m)) {
            markets.push(
                json!({"marketId": m, "marketName": m, "isDefaultMarket": false, "isActive": true}),
            );
        }
    }
    markets
}

// ---------------------------------------------------------------------------------------------
// The catalog

/// A product document plus what the filters need, extracted once.
#[derive(Clone, Debug)]
pub(crate) struct Product {
    pub doc: Value,
    pub product_id: String,
    pub language: String,
    pub modified_ms: i64,
    pub market_ids: Vec<String>,
    pub active: bool,
    pub deleted: bool,
    /// Every price's `validFrom` and `validUntil`, for union delta queries.
    pub price_times: Vec<i128>,
    /// Sellable SKUs: active variants, or the product's own `skuId` when it has no variants.
    pub skus: Vec<String>,
    /// The document as last served, with the exclusions it was served with, when the
    /// catalog keeps what it rendered (`Catalog::keep_rendered`). A changed product is a
    /// new `Product`, so this never outlives the document it renders.
    rendered: std::sync::OnceLock<(Exclusions, Box<[u8]>)>,
}

impl Product {
    fn new(doc: Value, modified_ms: i64) -> Product {
        let text = |k: &str| doc[k].as_str().unwrap_or_default().to_string();
        let market_ids = doc["marketIds"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let variants = doc["variants"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut skus: Vec<String> = variants
            .iter()
            .filter(|v| v["isActive"] != json!(false))
            .filter_map(|v| v["skuId"].as_str().map(str::to_string))
            .collect();
        if variants.is_empty() {
            skus.extend(doc["skuId"].as_str().map(str::to_string));
        }
        let price_times = doc["prices"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .flat_map(|p| [&p["validFrom"], &p["validUntil"]])
                    .filter_map(Value::as_str)
                    .filter_map(parse_time_ns)
                    .collect()
            })
            .unwrap_or_default();
        let (product_id, language) = (text("productId"), text("language"));
        let active = doc["isActive"] != json!(false);
        let deleted = doc["isDeleted"] == json!(true) || doc["status"] == json!("Deleted");
        Product {
            doc,
            product_id,
            language,
            modified_ms,
            market_ids,
            active,
            deleted,
            price_times,
            skus,
            rendered: std::sync::OnceLock::new(),
        }
    }

    fn doc_id(&self) -> &str {
        self.doc["id"].as_str().unwrap_or_default()
    }
}

/// What order and purchase-order generators need to know about a SKU.
#[derive(Clone, Debug)]
pub(crate) struct SkuDetails {
    pub name: String,
    pub ean: Option<String>,
    pub price: Option<f64>,
}

#[derive(Clone, Debug)]
pub(crate) struct StockItem {
    pub inventory: f64,
    pub reserved: f64,
    pub created_ms: i64,
    pub modified_ms: i64,
}

struct StoredStore {
    doc: Value,
    modified_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScrollKind {
    Products,
    Inventory,
}

/// The matching set as it was when the scroll started.
enum Snapshot {
    Products(Vec<Arc<Product>>),
    Inventory(Vec<Value>),
}

impl Snapshot {
    fn len(&self) -> usize {
        match self {
            Snapshot::Products(v) => v.len(),
            Snapshot::Inventory(v) => v.len(),
        }
    }

    fn kind(&self) -> ScrollKind {
        match self {
            Snapshot::Products(_) => ScrollKind::Products,
            Snapshot::Inventory(_) => ScrollKind::Inventory,
        }
    }

    fn page(&self, from: usize, to: usize) -> Vec<&Value> {
        match self {
            Snapshot::Products(v) => v[from..to].iter().map(|p| &p.doc).collect(),
            Snapshot::Inventory(v) => v[from..to].iter().collect(),
        }
    }

    /// The page's response; products from their kept bytes when `keep_rendered`.
    fn page_response(
        &self,
        from: usize,
        to: usize,
        scroll_id: Option<&str>,
        exclusions: &Exclusions,
        keep_rendered: bool,
    ) -> Response {
        match self {
            Snapshot::Products(v) if keep_rendered => {
                rendered_page_response(&v[from..to], self.len(), scroll_id, exclusions)
            }
            _ => page_response(&self.page(from, to), self.len(), scroll_id, exclusions),
        }
    }
}

/// A write on its way to the search index.
enum IndexWrite {
    Product(String, Option<Arc<Product>>),
    Stock((String, String), Option<StockItem>),
}

pub(crate) struct Scroll {
    snapshot: Snapshot,
    /// Items already served.
    pos: usize,
    take: usize,
    last_used: Instant,
    /// `excludedFields` of the request that opened it.
    exclusions: Exclusions,
}

pub(crate) struct Catalog {
    /// Content language of generated products and the default for upserts.
    pub language: String,
    /// By document id (`{productId}_{language}`).
    products: BTreeMap<String, Arc<Product>>,
    categories: Vec<Value>,
    /// By (sku, warehouseCode).
    stock: BTreeMap<(String, String), StockItem>,
    /// What the search index shows: Omnium's index shows a write `index_lag_ms` late, with
    /// its original `modified` (until then, the version before it, or nothing).
    index: BTreeMap<String, Arc<Product>>,
    stock_index: BTreeMap<(String, String), StockItem>,
    index_queue: VecDeque<(i64, u64, IndexWrite)>,
    /// Per key, the sequence number of the write the index shows (a later write never
    /// gives way to an earlier one that was slower to index).
    index_seq: HashMap<String, u64>,
    writes: u64,
    pub index_lag_ms: i64,
    /// The product scroll honours `excludedFields` (off: an Omnium that ignores it).
    pub honour_exclusions: bool,
    /// Each product's document is rendered once (per set of exclusions) and its bytes kept
    /// for later scrolls: a benchmark's simulator then spends no CPU rendering JSON while
    /// the client is timed (a real Omnium does not run on the till's cores).
    pub keep_rendered: bool,
    stores: BTreeMap<String, StoredStore>,
    pub markets: Vec<Value>,
    pub scrolls: HashMap<String, Scroll>,
    /// Largest scroll page; also the default `take`.
    pub page_size: usize,
    default_market: String,
    touch_rng: Rng,
    touches: u64,
}

impl Catalog {
    pub fn new(cfg: &SimConfig, stamp: i64) -> Catalog {
        let mut stores = BTreeMap::new();
        for doc in default_stores(stamp) {
            let id = doc["id"].as_str().unwrap_or_default().to_string();
            stores.insert(
                id,
                StoredStore {
                    doc,
                    modified_ms: stamp,
                },
            );
        }
        for id in &cfg.stores {
            if !stores.contains_key(id) {
                stores.insert(
                    id.clone(),
                    StoredStore {
                        doc: minimal_store(id, stamp),
                        modified_ms: stamp,
                    },
                );
            }
        }
        Catalog {
            language: "no".into(),
            products: BTreeMap::new(),
            categories: Vec::new(),
            stock: BTreeMap::new(),
            index: BTreeMap::new(),
            stock_index: BTreeMap::new(),
            index_queue: VecDeque::new(),
            index_seq: HashMap::new(),
            writes: 0,
            index_lag_ms: 0,
            honour_exclusions: true,
            keep_rendered: false,
            stores,
            markets: markets_for(cfg),
            scrolls: HashMap::new(),
            page_size: 1000,
            default_market: cfg.markets.first().cloned().unwrap_or_else(|| "NOR".into()),
            touch_rng: Rng::new(0),
            touches: 0,
        }
    }

    /// Replaces products, categories and stock with a generated catalog stamped `stamp`.
    pub fn load(&mut self, spec: &CatalogSpec, stamp: i64) -> CatalogSummary {
        let lang = spec.language.as_str();
        let mut rng = Rng::new(spec.seed);
        let categories = gen_categories(&mut rng, spec.categories, lang);
        let mut leaves: Vec<usize> = (0..categories.len())
            .filter(|&i| !categories[i]["parentId"].is_null())
            .collect();
        if leaves.is_empty() {
            leaves = (0..categories.len()).collect();
        }
        let mut gen = Gen {
            rng,
            lang,
            anchor: stamp - stamp.rem_euclid(DAY_MS),
            stamp: fmt_ms(stamp),
            categories: &categories,
            leaves,
            used_ids: HashSet::new(),
            used_eans: HashSet::new(),
            names: Rng::new(spec.seed ^ 0x4e41_4d45_5320_5f5f),
            vocab: Vocabulary::new(&mut Rng::new(spec.seed ^ 0x564f_4341_4255_4c41)),
        };
        let mut products = BTreeMap::new();
        let mut skus = Vec::new();
        for _ in 0..spec.products {
            let p = Product::new(gen.product(spec.products, spec.max_variants), stamp);
            skus.extend(p.skus.iter().cloned());
            products.insert(p.doc_id().to_string(), Arc::new(p));
        }
        // Stock from its own stream, so the products do not depend on the warehouse list.
        let mut srng = Rng::new(spec.seed ^ 0x5354_4f43_4b53_494d);
        let mut stock = BTreeMap::new();
        for sku in &skus {
            for wh in &spec.warehouses {
                if srng.chance(10) {
                    continue;
                }
                let inventory = srng.below(51) as f64;
                let reserved = srng.below(4) as f64;
                stock.insert(
                    (sku.clone(), wh.clone()),
                    StockItem {
                        inventory,
                        reserved,
                        created_ms: stamp,
                        modified_ms: stamp,
                    },
                );
            }
        }
        let summary = CatalogSummary {
            products: products.len(),
            skus: skus.len(),
            categories: categories.len(),
            stock_items: stock.len(),
        };
        self.language = spec.language.clone();
        self.products = products;
        self.categories = categories;
        self.stock = stock;
        self.index_queue.clear();
        self.index_seq.clear();
        if self.index_lag_ms <= 0 {
            self.index = self.products.clone();
            self.stock_index = self.stock.clone();
        } else {
            let keys: Vec<String> = self.products.keys().cloned().collect();
            for k in keys {
                self.note_product(&k, stamp);
            }
            let keys: Vec<(String, String)> = self.stock.keys().cloned().collect();
            for k in keys {
                self.note_stock(&k, stamp);
            }
        }
        self.touch_rng = Rng::new(spec.seed ^ 0x544f_5543_4845_5321);
        self.touches = 0;
        summary
    }

    /// The catalog language's document for `product_id`, else the first other language's.
    pub fn product(&self, product_id: &str) -> Option<Value> {
        let mut other = None;
        for p in self
            .products
            .values()
            .filter(|p| p.product_id == product_id)
        {
            if p.language == self.language {
                return Some(p.doc.clone());
            }
            other.get_or_insert(&p.doc);
        }
        other.cloned()
    }

    pub fn sku_ids(&self) -> Vec<String> {
        self.products
            .values()
            .filter(|p| p.active && !p.deleted)
            .flat_map(|p| p.skus.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    pub fn upsert_product(&mut self, product: Value, stamp: i64) {
        self.upsert_product_at(product, stamp, stamp);
    }

    /// An upsert stamped `modified_ms`, made (for the search index) at `now_ms`.
    pub fn upsert_product_at(&mut self, product: Value, stamp: i64, now_ms: i64) {
        let Value::Object(mut m) = product else {
            panic!("upsert_product: the product must be a JSON object");
        };
        let pid = match m.get("productId") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => panic!("upsert_product: productId (a non-empty string) is required"),
        };
        let lang = match m.get("language") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => self.language.clone(),
        };
        let id = match m.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => format!("{pid}_{lang}"),
        };
        let old: Vec<String> = self
            .products
            .iter()
            .filter(|(k, p)| **k == id || (p.product_id == pid && p.language == lang))
            .map(|(k, _)| k.clone())
            .collect();
        let old_created = old
            .iter()
            .filter_map(|k| self.products.get(k))
            .find_map(|p| p.doc.get("created").filter(|c| !c.is_null()).cloned());
        for k in &old {
            self.products.remove(k);
            self.note_product(k, now_ms);
        }
        m.insert("id".into(), json!(id));
        m.insert("language".into(), json!(lang));
        let mut default = |key: &str, v: Value| {
            if m.get(key).is_none_or(Value::is_null) {
                m.insert(key.into(), v);
            }
        };
        default(
            "created",
            old_created.unwrap_or_else(|| json!(fmt_ms(stamp))),
        );
        default("isActive", json!(true));
        default("isDeleted", json!(false));
        default("status", json!("Published"));
        default("marketIds", json!([self.default_market]));
        default("variants", json!([]));
        default("prices", json!([]));
        default("categories", json!([]));
        default("assets", json!([]));
        let has_variants = m
            .get("variants")
            .and_then(Value::as_array)
            .is_some_and(|v| !v.is_empty());
        if !has_variants && m.get("skuId").is_none_or(Value::is_null) {
            m.insert("skuId".into(), json!(pid));
        }
        let mut doc = Value::Object(m);
        set_modified(&mut doc, stamp);
        self.products
            .insert(id.clone(), Arc::new(Product::new(doc, stamp)));
        self.note_product(&id, now_ms);
    }

    /// Tells the search index of a product write made at `stamp`.
    fn note_product(&mut self, key: &str, stamp: i64) {
        let doc = self.products.get(key).cloned();
        self.queue_index(stamp, IndexWrite::Product(key.to_string(), doc));
    }

    /// Tells the search index of a stock write made at `stamp`.
    fn note_stock(&mut self, key: &(String, String), stamp: i64) {
        let item = self.stock.get(key).cloned();
        self.queue_index(stamp, IndexWrite::Stock(key.clone(), item));
    }

    fn queue_index(&mut self, stamp: i64, write: IndexWrite) {
        self.writes += 1;
        if self.index_lag_ms <= 0 {
            self.apply_index(self.writes, write);
        } else {
            self.index_queue
                .push_back((stamp + self.index_lag_ms, self.writes, write));
        }
    }

    fn apply_index(&mut self, seq: u64, write: IndexWrite) {
        let key = match &write {
            IndexWrite::Product(k, _) => format!("p:{k}"),
            IndexWrite::Stock((sku, wh), _) => format!("s:{sku}\u{0}{wh}"),
        };
        if self.index_seq.get(&key).is_some_and(|&s| s > seq) {
            return;
        }
        self.index_seq.insert(key, seq);
        match write {
            IndexWrite::Product(k, Some(p)) => {
                self.index.insert(k, p);
            }
            IndexWrite::Product(k, None) => {
                self.index.remove(&k);
            }
            IndexWrite::Stock(k, Some(i)) => {
                self.stock_index.insert(k, i);
            }
            IndexWrite::Stock(k, None) => {
                self.stock_index.remove(&k);
            }
        }
    }

    /// Brings the search index up to `now`: writes older than the lag become visible.
    pub fn refresh_index(&mut self, now_ms: i64) {
        if self.index_queue.is_empty() {
            return;
        }
        let mut waiting = VecDeque::with_capacity(self.index_queue.len());
        while let Some((at, seq, w)) = self.index_queue.pop_front() {
            if at <= now_ms {
                self.apply_index(seq, w);
            } else {
                waiting.push_back((at, seq, w));
            }
        }
        self.index_queue = waiting;
    }

    /// Sets the index lag of writes from now on (writes waiting keep theirs).
    pub fn set_index_lag(&mut self, lag_ms: i64) {
        self.index_lag_ms = lag_ms.max(0);
    }

    /// Removes a product for good (every language): Omnium's `DELETE /api/Products/{id}`.
    /// No delta ever mentions it again.
    pub fn hard_delete_product(&mut self, product_id: &str, stamp: i64) {
        let keys: Vec<String> = self
            .products
            .iter()
            .filter(|(_, p)| p.product_id == product_id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.products.remove(&k);
            self.note_product(&k, stamp);
        }
    }

    /// Edits every language version of a product without changing `modified` (Omnium moving
    /// it out of a market, say, where the scroll filters on `marketId`).
    pub fn edit_product_silently(&mut self, product_id: &str, mut f: impl FnMut(&mut Value)) {
        let keys: Vec<String> = self
            .products
            .iter()
            .filter(|(_, p)| p.product_id == product_id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(p) = self.products.get(&k) {
                let (mut doc, stamp) = (p.doc.clone(), p.modified_ms);
                f(&mut doc);
                self.products
                    .insert(k.clone(), Arc::new(Product::new(doc, stamp)));
                self.note_product(&k, stamp);
            }
        }
    }

    /// Gives every product what a rich catalog carries and a till never reads, about
    /// `bytes` of it each (without changing `modified`): long descriptions, custom
    /// properties, tags and the inventory snapshot of `warehouses` warehouses.
    pub fn enrich_products(&mut self, bytes: usize) {
        let ids: BTreeSet<String> = self
            .products
            .values()
            .map(|p| p.product_id.clone())
            .collect();
        let chunk = |seed: &str, n: usize| -> String {
            let mut t = String::with_capacity(n + 64);
            while t.len() < n {
                t.push_str(seed);
                t.push_str(" er laget for lange turer i norsk vaer, med tapede sommer. ");
            }
            t.truncate(n);
            t
        };
        let each = bytes / 4;
        for id in ids {
            self.edit_product_silently(&id, |doc| {
                doc["description"] = json!(chunk(&id, each));
                doc["properties"] = json!((0..8)
                    .map(|i| json!({"key": format!("spec-{i}"), "value": chunk(&id, each / 8)}))
                    .collect::<Vec<_>>());
                doc["tags"] = json!((0..each / 64)
                    .map(|i| format!("tag-{i:05}"))
                    .collect::<Vec<_>>());
                doc["inventory"] = json!((0..each / 48)
                    .map(|i| json!({"warehouseCode": format!("wh-{i:04}"), "quantity": i % 17}))
                    .collect::<Vec<_>>());
            });
        }
    }

    /// Removes an inventory item for good (`DELETE /api/Inventory/{sku}?warehouseIds=`).
    pub fn delete_stock(&mut self, sku: &str, wh: &str, stamp: i64) {
        let key = (sku.to_string(), wh.to_string());
        self.stock.remove(&key);
        self.note_stock(&key, stamp);
    }

    fn has_product(&self, product_id: &str) -> bool {
        self.products.values().any(|p| p.product_id == product_id)
    }

    /// Edits every language version of a product and stamps it. Scroll snapshots keep the old version.
    fn edit_product(&mut self, product_id: &str, stamp: i64, mut f: impl FnMut(&mut Value)) {
        let keys: Vec<String> = self
            .products
            .iter()
            .filter(|(_, p)| p.product_id == product_id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(p) = self.products.get(&k) {
                let mut doc = p.doc.clone();
                f(&mut doc);
                set_modified(&mut doc, stamp);
                self.products
                    .insert(k.clone(), Arc::new(Product::new(doc, stamp)));
                self.note_product(&k, stamp);
            }
        }
    }

    pub fn touch_products(&mut self, n: usize, clock: &mut Clock) -> Vec<String> {
        let mut ids: Vec<String> = self
            .products
            .values()
            .filter(|p| !p.deleted)
            .map(|p| p.product_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let k = n.min(ids.len());
        for i in 0..k {
            let j = i + self.touch_rng.below_usize(ids.len() - i);
            ids.swap(i, j);
        }
        ids.truncate(k);
        for pid in &ids {
            let stamp = clock.tick();
            self.touches += 1;
            let version = self.touches;
            self.edit_product(pid, stamp, |doc| {
                rename(doc, version);
                cut_price(doc, stamp);
            });
        }
        ids
    }

    pub fn deactivate_product(&mut self, product_id: &str, clock: &mut Clock) {
        if !self.has_product(product_id) {
            return;
        }
        self.edit_product(product_id, clock.tick(), |doc| {
            doc["isActive"] = json!(false);
            for v in variants_mut(doc) {
                v["isActive"] = json!(false);
            }
        });
    }

    pub fn delete_product(&mut self, product_id: &str, clock: &mut Clock) {
        if !self.has_product(product_id) {
            return;
        }
        self.edit_product(product_id, clock.tick(), |doc| {
            doc["status"] = json!("Deleted");
            doc["isDeleted"] = json!(true);
        });
    }

    pub fn set_stock(&mut self, sku: &str, wh: &str, inventory: f64, reserved: f64, stamp: i64) {
        let item = self.stock_item(sku, wh, stamp);
        item.inventory = inventory;
        item.reserved = reserved;
        item.modified_ms = stamp;
        self.note_stock(&(sku.to_string(), wh.to_string()), stamp);
    }

    /// Adds `delta` to an item's inventory, creating the item at 0 first if missing.
    pub fn adjust_stock(&mut self, sku: &str, wh: &str, delta: f64, stamp: i64) {
        let item = self.stock_item(sku, wh, stamp);
        item.inventory += delta;
        item.modified_ms = stamp;
        self.note_stock(&(sku.to_string(), wh.to_string()), stamp);
    }

    fn stock_item(&mut self, sku: &str, wh: &str, stamp: i64) -> &mut StockItem {
        self.stock
            .entry((sku.to_string(), wh.to_string()))
            .or_insert(StockItem {
                inventory: 0.0,
                reserved: 0.0,
                created_ms: stamp,
                modified_ms: stamp,
            })
    }

    pub fn stock(&self, sku: &str, wh: &str) -> Option<(f64, f64)> {
        self.stock
            .get(&(sku.to_string(), wh.to_string()))
            .map(|i| (i.inventory, i.reserved))
    }

    /// `PUT /api/Inventory/UpdateMany` semantics for one item: absolute `inventory`, `reserved`
    /// only when given; an item whose values do not change is left alone (no new `modified`).
    /// Returns whether anything changed (a missing item is created, which counts as a change).
    pub fn write_stock(
        &mut self,
        sku: &str,
        wh: &str,
        inventory: f64,
        reserved: Option<f64>,
        stamp: i64,
    ) -> bool {
        let key = (sku.to_string(), wh.to_string());
        if let Some(item) = self.stock.get(&key) {
            let same = item.inventory == inventory && reserved.is_none_or(|r| item.reserved == r);
            if same {
                return false;
            }
        }
        let item = self.stock_item(sku, wh, stamp);
        item.inventory = inventory;
        if let Some(r) = reserved {
            item.reserved = r;
        }
        item.modified_ms = stamp;
        self.note_stock(&key, stamp);
        true
    }

    /// Whether a store with this id exists and may hold inventory (`isWarehouse`).
    pub fn is_warehouse(&self, id: &str) -> bool {
        self.stores
            .get(id)
            .is_some_and(|s| s.doc["isWarehouse"] == json!(true))
    }

    /// Display name, EAN and market-wide NOR unit price of a SKU (variant or single-SKU product).
    pub fn sku_details(&self, sku: &str) -> Option<SkuDetails> {
        let p = self
            .products
            .values()
            .filter(|p| p.skus.iter().any(|s| s == sku))
            .min_by_key(|p| p.language != self.language)?;
        let doc = &p.doc;
        let variant = doc["variants"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["skuId"].as_str() == Some(sku)));
        let src = variant.unwrap_or(doc);
        let price = doc["prices"].as_array().and_then(|ps| {
            let general = |p: &&Value| {
                p["marketId"] == json!(self.default_market)
                    && ["storeId", "customerId", "promotionId"]
                        .iter()
                        .all(|k| p[*k].is_null())
            };
            // A variant's own price wins over the product's.
            ps.iter()
                .filter(general)
                .find(|p| p["skuId"].as_str() == Some(sku))
                .or_else(|| ps.iter().filter(general).find(|p| p["skuId"].is_null()))
                .and_then(|p| p["unitPrice"].as_f64())
        });
        Some(SkuDetails {
            name: src["name"]
                .as_str()
                .or(doc["name"].as_str())
                .unwrap_or(sku)
                .to_string(),
            ean: src["ean"].as_str().map(str::to_string),
            price,
        })
    }

    pub fn upsert_store(&mut self, store: Value, stamp: i64) {
        let Value::Object(mut m) = store else {
            panic!("upsert_store: the store must be a JSON object");
        };
        let id = match m.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => panic!("upsert_store: id (a non-empty string) is required"),
        };
        let created = self
            .stores
            .get(&id)
            .and_then(|s| s.doc.get("created").cloned())
            .unwrap_or_else(|| json!(fmt_ms(stamp)));
        if m.get("created").is_none_or(Value::is_null) {
            m.insert("created".into(), created);
        }
        m.insert("modified".into(), json!(fmt_ms(stamp)));
        self.stores.insert(
            id,
            StoredStore {
                doc: Value::Object(m),
                modified_ms: stamp,
            },
        );
    }
}

fn variants_mut(doc: &mut Value) -> impl Iterator<Item = &mut Value> {
    doc.get_mut("variants")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

fn set_modified(doc: &mut Value, stamp: i64) {
    let m = json!(fmt_ms(stamp));
    doc["modified"] = m.clone();
    for v in variants_mut(doc) {
        if v.is_object() {
            v["modified"] = m.clone();
        }
    }
}

/// "Name" → "Name v{version}" (replacing an earlier " vN"), variants' names along.
fn rename(doc: &mut Value, version: u64) {
    let old = doc["name"].as_str().unwrap_or_default().to_string();
    let base = match old.rsplit_once(" v") {
        Some((b, d)) if !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => old.as_str(),
    };
    let new = format!("{base} v{version}");
    for v in variants_mut(doc) {
        if let Some(rest) = v["name"]
            .as_str()
            .and_then(|n| n.strip_prefix(old.as_str()))
        {
            v["name"] = json!(format!("{new}{rest}"));
        }
    }
    doc["name"] = json!(new);
}

/// The market-wide NOR price (no store, customer, variant or campaign) drops by 10 % to whole kroner.
fn cut_price(doc: &mut Value, stamp: i64) {
    let Some(prices) = doc.get_mut("prices").and_then(Value::as_array_mut) else {
        return;
    };
    for p in prices {
        let general = p["marketId"] == json!("NOR")
            && ["storeId", "customerId", "skuId", "promotionId"]
                .iter()
                .all(|k| p[*k].is_null());
        let Some(unit) = p["unitPrice"].as_f64().filter(|_| general) else {
            continue;
        };
        let cents = whole_kroner((unit * 100.0).round() as i64 * 9 / 10).max(100);
        p["unitPrice"] = money(cents);
        p["originalUnitPrice"] = money(cents);
        p["discountAmount"] = money(0);
        p["modified"] = json!(fmt_ms(stamp));
    }
}

fn stock_json(sku: &str, wh: &str, item: &StockItem, with_batches: bool) -> Value {
    let mut v = json!({
        "sku": sku,
        "warehouseCode": wh,
        "inventory": item.inventory,
        "reservedInventory": item.reserved,
        "modified": fmt_ms(item.modified_ms),
        "created": fmt_ms(item.created_ms),
    });
    if with_batches {
        v["batches"] = json!([]);
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Request bodies

pub(crate) fn opt_time(b: &Map<String, Value>, key: &str) -> Result<Option<i128>, String> {
    match b.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => parse_time_ns(s)
            .map(Some)
            .ok_or_else(|| format!("{key} '{s}' is not a valid date-time")),
        Some(_) => Err(format!("{key} must be a date-time string")),
    }
}

pub(crate) fn opt_string(b: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match b.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

pub(crate) fn opt_strings(b: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match b.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{key} must be an array of strings"))
            })
            .collect(),
        Some(_) => Err(format!("{key} must be an array of strings")),
    }
}

fn opt_bool(b: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match b.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(v)) => Ok(Some(*v)),
        Some(_) => Err(format!("{key} must be true or false")),
    }
}

pub(crate) fn opt_int(b: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match b.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{key} must be an integer")),
    }
}

fn query_int(req: &Request, name: &str, default: i64) -> Result<i64, String> {
    match req.query(name) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("{name} must be an integer, not '{v}'")),
    }
}

/// `modified` within [from, to] (both inclusive, either open).
pub(crate) fn in_window(modified_ms: i64, from: Option<i128>, to: Option<i128>) -> bool {
    let m = ms_ns(modified_ms);
    from.is_none_or(|f| m >= f) && to.is_none_or(|t| m <= t)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    /// Document id: the default, and deliberately not `modified` order.
    Id,
    ModifiedAscending,
    ModifiedDescending,
}

/// The parts of `OmniumProductSearchRequest` the simulator honours.
struct ProductQuery {
    from: Option<i128>,
    to: Option<i128>,
    markets: Vec<String>,
    language: Option<String>,
    union: bool,
    sort: Sort,
    take: usize,
    product_ids: HashSet<String>,
    only_active: bool,
    deleted: Option<bool>,
    exclusions: Exclusions,
}

/// A product scroll's `excludedFields`: what Omnium leaves out of every product it serves
/// (and of its variants), kept for the scroll's later pages.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Exclusions {
    /// Field names left out, lower case.
    fields: Vec<String>,
}

impl Exclusions {
    fn parse(b: &Map<String, Value>) -> Result<Exclusions, String> {
        let e = match b.get("excludedFields") {
            None | Some(Value::Null) => return Ok(Exclusions::default()),
            Some(Value::Object(e)) => e,
            Some(_) => return Err("excludedFields must be an object".into()),
        };
        let mut fields = Vec::new();
        for (flag, names) in [
            (
                "isInventoryExcluded",
                &["inventory", "availableInventory"][..],
            ),
            ("isPropertiesExcluded", &["properties"]),
            ("isPricesExcluded", &["prices"]),
            ("isVariantsExcluded", &["variants"]),
            ("isAssetsExcluded", &["assets"]),
            (
                "isProductCategoriesExcluded",
                &["categories", "productCategories"],
            ),
        ] {
            if opt_bool(e, flag)? == Some(true) {
                fields.extend(names.iter().map(|n| n.to_ascii_lowercase()));
            }
        }
        fields.extend(
            opt_strings(e, "specificFields")?
                .into_iter()
                .map(|n| n.to_ascii_lowercase()),
        );
        Ok(Exclusions { fields })
    }

    fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Whether the field is left out (names compared ignoring ASCII case, no allocation).
    fn excludes(&self, key: &str) -> bool {
        self.fields.iter().any(|f| f.eq_ignore_ascii_case(key))
    }
}

/// A product (or variant) as served under `excludedFields`: written without copying it.
struct Slim<'a>(&'a Value, &'a Exclusions);

impl serde::Serialize for Slim<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        let Value::Object(m) = self.0 else {
            return self.0.serialize(ser);
        };
        let kept = |k: &String| !self.1.excludes(k);
        let mut map = ser.serialize_map(Some(m.keys().filter(|k| kept(k)).count()))?;
        for (k, v) in m.iter().filter(|(k, _)| kept(k)) {
            match v {
                Value::Array(variants) if k == "variants" => {
                    struct Variants<'b>(&'b [Value], &'b Exclusions);
                    impl serde::Serialize for Variants<'_> {
                        fn serialize<S: serde::Serializer>(
                            &self,
                            ser: S,
                        ) -> Result<S::Ok, S::Error> {
                            let mut seq = ser.serialize_seq(Some(self.0.len()))?;
                            for v in self.0 {
                                seq.serialize_element(&Slim(v, self.1))?;
                            }
                            seq.end()
                        }
                    }
                    map.serialize_entry(k, &Variants(variants, self.1))?;
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

impl ProductQuery {
    fn parse(b: &Map<String, Value>, page_size: usize) -> Result<ProductQuery, String> {
        let mut markets = opt_strings(b, "marketIds")?;
        markets.extend(opt_string(b, "marketId")?);
        let sort = match opt_string(b, "sortOrder")? {
            Some(s) if s.eq_ignore_ascii_case("ModifiedAscending") => Sort::ModifiedAscending,
            Some(s) if s.eq_ignore_ascii_case("ModifiedDescending") => Sort::ModifiedDescending,
            _ => Sort::Id,
        };
        let take = match opt_int(b, "take")? {
            Some(t) if t > 0 => usize::try_from(t).unwrap_or(usize::MAX).min(page_size),
            _ => page_size,
        };
        Ok(ProductQuery {
            from: opt_time(b, "modifiedFrom")?,
            to: opt_time(b, "modifiedTo")?,
            markets,
            language: opt_string(b, "productLanguage")?,
            union: opt_bool(b, "isUnionDeltaQuery")?.unwrap_or(false),
            sort,
            take,
            product_ids: opt_strings(b, "productIds")?.into_iter().collect(),
            only_active: opt_bool(b, "isActive")? == Some(true),
            deleted: opt_bool(b, "isDeleted")?,
            exclusions: Exclusions::parse(b)?,
        })
    }

    fn matches(&self, p: &Product, now_ns: i128) -> bool {
        if self
            .language
            .as_ref()
            .is_some_and(|l| !p.language.eq_ignore_ascii_case(l))
            || (!self.markets.is_empty() && !self.markets.iter().any(|m| p.market_ids.contains(m)))
            || (!self.product_ids.is_empty() && !self.product_ids.contains(&p.product_id))
            || (self.only_active && !p.active)
        {
            return false;
        }
        // Deleted products reach delta queries (so clients learn of them), not full syncs.
        let deleted_ok = match self.deleted {
            Some(d) => p.deleted == d,
            None => !p.deleted || self.from.is_some(),
        };
        if !deleted_ok {
            return false;
        }
        if in_window(p.modified_ms, self.from, self.to) {
            return true;
        }
        // Union delta: a price (de)activating since modifiedFrom brings the product along.
        self.union
            && self
                .from
                .is_some_and(|f| p.price_times.iter().any(|&t| (f..=now_ns).contains(&t)))
    }
}

/// `{"result": [...], "totalHits": N, "scrollId": ...}` written straight from the stored documents.
fn page_response(
    items: &[&Value],
    total: usize,
    scroll_id: Option<&str>,
    exclusions: &Exclusions,
) -> Response {
    let mut body = Vec::with_capacity(64 + items.len() * 512);
    body.extend_from_slice(b"{\"result\":[");
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        let written = if exclusions.is_empty() {
            serde_json::to_writer(&mut body, v)
        } else {
            serde_json::to_writer(&mut body, &Slim(v, exclusions))
        };
        if written.is_err() {
            return Response::text(500, "cannot serialise a result");
        }
    }
    body.extend_from_slice(format!("],\"totalHits\":{total},\"scrollId\":").as_bytes());
    body.extend_from_slice(json!(scroll_id).to_string().as_bytes());
    body.push(b'}');
    let mut r = Response::json(200, &Value::Null);
    r.body = body;
    r
}

/// [`page_response`] from each product's kept bytes, rendered (and kept) on first use; a
/// product kept under other exclusions is rendered afresh.
fn rendered_page_response(
    items: &[Arc<Product>],
    total: usize,
    scroll_id: Option<&str>,
    exclusions: &Exclusions,
) -> Response {
    use std::borrow::Cow;
    // Empty when it cannot be serialised (a document is never empty).
    let render = |p: &Product| -> Vec<u8> {
        if exclusions.is_empty() {
            serde_json::to_vec(&p.doc).unwrap_or_default()
        } else {
            serde_json::to_vec(&Slim(&p.doc, exclusions)).unwrap_or_default()
        }
    };
    let mut body = Vec::with_capacity(64 + items.len() * 512);
    body.extend_from_slice(b"{\"result\":[");
    for (i, p) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        let bytes = match p.rendered.get() {
            Some((e, kept)) if e == exclusions => Cow::Borrowed(&kept[..]),
            Some(_) => Cow::Owned(render(p)),
            None => {
                let (e, kept) = p
                    .rendered
                    .get_or_init(|| (exclusions.clone(), render(p).into_boxed_slice()));
                if e == exclusions {
                    Cow::Borrowed(&kept[..])
                } else {
                    Cow::Owned(render(p))
                }
            }
        };
        if bytes.is_empty() {
            return Response::text(500, "cannot serialise a result");
        }
        body.extend_from_slice(&bytes);
    }
    body.extend_from_slice(format!("],\"totalHits\":{total},\"scrollId\":").as_bytes());
    body.extend_from_slice(json!(scroll_id).to_string().as_bytes());
    body.push(b'}');
    let mut r = Response::json(200, &Value::Null);
    r.body = body;
    r
}

// ---------------------------------------------------------------------------------------------
// Endpoints

impl State {
    pub fn load_catalog(&mut self, spec: &CatalogSpec) -> CatalogSummary {
        let stamp = self.clock.tick();
        self.catalog.load(spec, stamp)
    }

    fn scroll_ttl(&self) -> Duration {
        Duration::from_millis(self.cfg.scroll_ttl_ms)
    }

    fn count_served(&mut self, kind: ScrollKind, n: usize) {
        match kind {
            ScrollKind::Products => self.stats.products_served += n as u64,
            ScrollKind::Inventory => self.stats.stock_items_served += n as u64,
        }
    }

    /// Answers the first page; opens a scroll for the rest (always when `always_id`, otherwise
    /// only when the first page does not hold everything).
    fn open_scroll(
        &mut self,
        snapshot: Snapshot,
        take: usize,
        always_id: bool,
        exclusions: Exclusions,
    ) -> Response {
        let exclusions = if self.catalog.honour_exclusions {
            exclusions
        } else {
            Exclusions::default()
        };
        let total = snapshot.len();
        let first = total.min(take);
        let id = (always_id || total > take).then(|| format!("{}{}", random_hex(), random_hex()));
        let resp = snapshot.page_response(
            0,
            first,
            id.as_deref(),
            &exclusions,
            self.catalog.keep_rendered,
        );
        self.count_served(snapshot.kind(), first);
        if let Some(id) = id {
            self.stats.scrolls_started += 1;
            let now = Instant::now();
            let ttl = self.scroll_ttl();
            self.catalog
                .scrolls
                .retain(|_, s| now.duration_since(s.last_used) < ttl);
            // An empty first page already ends the scroll.
            if first > 0 {
                self.catalog.scrolls.insert(
                    id,
                    Scroll {
                        snapshot,
                        pos: first,
                        take,
                        last_used: now,
                        exclusions,
                    },
                );
            }
            let open = self.catalog.scrolls.len() as u64;
            self.stats.max_open_scrolls = self.stats.max_open_scrolls.max(open);
        }
        resp
    }

    /// `GET /api/{Products|Inventory}/Scroll/{scrollId}`: the next page, `[]` (and closed) at the end.
    pub fn scroll_next(&mut self, kind: ScrollKind, id: &str) -> Response {
        let now = Instant::now();
        let ttl = self.scroll_ttl();
        let (open, expired) = match self.catalog.scrolls.get(id) {
            Some(s) if s.snapshot.kind() == kind => {
                let expired = now.duration_since(s.last_used) >= ttl;
                (!expired, expired)
            }
            _ => (false, false),
        };
        if expired {
            self.catalog.scrolls.remove(id);
        }
        let Some(s) = self.catalog.scrolls.get_mut(id).filter(|_| open) else {
            self.stats.expired_scroll_requests += 1;
            return Response::text(404, SCROLL_GONE);
        };
        let from = s.pos;
        let to = (from + s.take).min(s.snapshot.len());
        s.pos = to;
        s.last_used = now;
        let resp = s.snapshot.page_response(
            from,
            to,
            Some(id),
            &s.exclusions,
            self.catalog.keep_rendered,
        );
        if to == from {
            self.catalog.scrolls.remove(id);
        }
        self.count_served(kind, to - from);
        resp
    }

    /// `POST /api/Products/Scroll`.
    pub fn products_scroll(&mut self, req: &Request) -> Response {
        let body = match parse_object(&req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let q = match ProductQuery::parse(&body, self.catalog.page_size) {
            Ok(q) => q,
            Err(msg) => return Response::text(400, &msg),
        };
        let now = self.clock.now_ms();
        self.catalog.refresh_index(now);
        let now_ns = ms_ns(now);
        let mut hits: Vec<Arc<Product>> = self
            .catalog
            .index
            .values()
            .filter(|p| q.matches(p, now_ns))
            .cloned()
            .collect();
        match q.sort {
            Sort::Id => {}
            Sort::ModifiedAscending => hits.sort_by_key(|p| p.modified_ms),
            Sort::ModifiedDescending => hits.sort_by_key(|p| std::cmp::Reverse(p.modified_ms)),
        }
        self.open_scroll(Snapshot::Products(hits), q.take, true, q.exclusions)
    }

    /// `GET /api/ProductCategories?page=&pageSize=`: 1-based pages of at most 1000.
    pub fn product_categories(&mut self, req: &Request) -> Response {
        let (page, size) = match (
            query_int(req, "page", 1),
            query_int(req, "pageSize", DEFAULT_LIST_PAGE_SIZE),
        ) {
            (Ok(p), Ok(s)) => (p, s),
            (Err(m), _) | (_, Err(m)) => return Response::text(400, &m),
        };
        if page < 1 {
            return Response::text(400, "page must be 1 or greater");
        }
        if !(1..=MAX_CATEGORY_PAGE_SIZE).contains(&size) {
            return Response::text(
                400,
                &format!("pageSize must be between 1 and {MAX_CATEGORY_PAGE_SIZE}"),
            );
        }
        let skip = usize::try_from((page - 1).saturating_mul(size)).unwrap_or(usize::MAX);
        let result: Vec<&Value> = self
            .catalog
            .categories
            .iter()
            .skip(skip)
            .take(size as usize)
            .collect();
        Response::json(
            200,
            &json!({"result": result, "totalHits": self.catalog.categories.len()}),
        )
    }

    /// `POST /api/Stores/SearchStores`: 0-based `page`, `take` at most 100.
    pub fn search_stores(&mut self, req: &Request) -> Response {
        let body = match parse_object(&req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let parsed = (|| -> Result<_, String> {
            let take = match opt_int(&body, "take")? {
                None | Some(0) => DEFAULT_LIST_PAGE_SIZE,
                Some(t) if (1..=MAX_SEARCH_TAKE).contains(&t) => t,
                Some(t) => {
                    return Err(format!(
                        "take must be between 1 and {MAX_SEARCH_TAKE}, not {t}"
                    ))
                }
            };
            let page = opt_int(&body, "page")?.unwrap_or(0);
            if page < 0 {
                return Err("page must not be negative".into());
            }
            if take.saturating_mul(page) > MAX_SEARCH_WINDOW {
                return Err(format!("take * page must not exceed {MAX_SEARCH_WINDOW}"));
            }
            let ids: HashSet<String> = opt_strings(&body, "storeIds")?.into_iter().collect();
            Ok((
                take,
                page,
                opt_time(&body, "modifiedFrom")?,
                opt_time(&body, "modifiedTo")?,
                ids,
                opt_bool(&body, "isWarehouse")?,
            ))
        })();
        let (take, page, from, to, ids, warehouse) = match parsed {
            Ok(p) => p,
            Err(msg) => return Response::text(400, &msg),
        };
        let hits: Vec<&Value> = self
            .catalog
            .stores
            .iter()
            .filter(|(id, s)| {
                in_window(s.modified_ms, from, to)
                    && (ids.is_empty() || ids.contains(*id))
                    && warehouse.is_none_or(|w| s.doc["isWarehouse"] == json!(w))
            })
            .map(|(_, s)| &s.doc)
            .collect();
        let result: Vec<&Value> = hits
            .iter()
            .skip((take * page) as usize)
            .take(take as usize)
            .copied()
            .collect();
        Response::json(
            200,
            &json!({"result": result, "totalHits": hits.len(), "facets": []}),
        )
    }

    /// `GET /api/Inventory/{sku}?warehouseIds=`: the SKU's items in those warehouses (all of
    /// them when none is named), read by id: never behind the search index. An empty list
    /// when the SKU has no item there.
    pub fn get_inventory(&mut self, sku: &str, req: &Request) -> Response {
        let whs: HashSet<&str> = req
            .query
            .iter()
            .filter(|(k, _)| {
                k.eq_ignore_ascii_case("warehouseIds") || k.eq_ignore_ascii_case("warehouseIds[]")
            })
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect();
        let items: Vec<Value> = self
            .catalog
            .stock
            .range((sku.to_string(), String::new())..)
            .take_while(|((s, _), _)| s == sku)
            .filter(|((_, wh), _)| whs.is_empty() || whs.contains(wh.as_str()))
            .map(|((s, wh), item)| stock_json(s, wh, item, false))
            .collect();
        Response::json(200, &Value::Array(items))
    }

    /// `POST /api/Inventory/Search`: items modified at or after `lastModified`.
    pub fn inventory_search(&mut self, req: &Request) -> Response {
        let body = match parse_object(&req.body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let parsed = (|| -> Result<_, String> {
            let whs: HashSet<String> = opt_strings(&body, "warehouseCodes")?.into_iter().collect();
            let codes: HashSet<String> = opt_strings(&body, "productCodes")?.into_iter().collect();
            Ok((
                opt_time(&body, "lastModified")?,
                whs,
                codes,
                opt_bool(&body, "isBatchesExcluded")?.unwrap_or(false),
            ))
        })();
        let (since, whs, codes, no_batches) = match parsed {
            Ok(p) => p,
            Err(msg) => return Response::text(400, &msg),
        };
        let now = self.clock.now_ms();
        self.catalog.refresh_index(now);
        let items: Vec<Value> = self
            .catalog
            .stock_index
            .iter()
            .filter(|((sku, wh), item)| {
                (whs.is_empty() || whs.contains(wh))
                    && (codes.is_empty() || codes.contains(sku))
                    && in_window(item.modified_ms, since, None)
            })
            .map(|((sku, wh), item)| stock_json(sku, wh, item, !no_batches))
            .collect();
        let take = self.catalog.page_size;
        self.open_scroll(
            Snapshot::Inventory(items),
            take,
            false,
            Exclusions::default(),
        )
    }
}
