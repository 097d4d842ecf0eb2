//! Omnium's catalog JSON (products with variants and prices, categories, stores, inventory)
//! turned into the local rows the till reads, and the paged/scrolled reads that fetch it.

use super::{encode_component, page, Failure, OmniumApi};
use crate::model::catalog::{CatalogProduct, Category, PriceRow, SkuRow, StockLevel};
use crate::model::money::{minor_digits, Decimal};
use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde_json::{json, Value};

/// Which prices and texts apply to this terminal.
pub struct CatalogScope<'a> {
    pub market_id: &'a str,
    pub store_id: &'a str,
    pub currency: &'a str,
    /// The market's product content language; `None` accepts every language.
    pub language: Option<&'a str>,
    /// The market's group (`marketGroupId`), when it has one.
    pub market_group: Option<&'a str>,
    /// The market's default VAT rate in percent, for prices whose `taxRate` is null.
    pub default_tax_rate: Option<f64>,
    /// Price bounds without an offset are this zone's local time.
    pub time_zone: Tz,
}

/// What the catalog needs to know about the configured market.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MarketInfo {
    /// `productContentLanguage`: only products and categories in it are applied.
    pub language: String,
    /// `marketGroupId`.
    pub group: Option<String>,
    /// `defaultTaxRate`, percent.
    pub tax_rate: Option<f64>,
}

pub use super::page::Page;

/// What the till never reads of a product (`excludedFields` of the product scroll): the
/// inventory snapshot (stock comes from the inventory pull), custom properties, texts and
/// lists no view shows. A rich catalog's pages then stay far under the response cap; the
/// fields `product_rows` reads are never excluded (a test parses a product both ways).
pub fn product_exclusions() -> Value {
    json!({
        "isInventoryExcluded": true,
        "isPropertiesExcluded": true,
        "specificFields": EXCLUDED_PRODUCT_FIELDS,
    })
}

/// Product (and variant) fields the till never reads.
pub const EXCLUDED_PRODUCT_FIELDS: [&str; 9] = [
    "description",
    "shortDescription",
    "alternativeProductName",
    "components",
    "externalIds",
    "tags",
    "units",
    "availableInventory",
    "inventory",
];

/// Omnium times are RFC 3339; one without an offset is taken as UTC (swagger says UTC).
pub fn time_ms(v: &Value) -> Option<i64> {
    v.as_str().and_then(time_str_ms)
}

/// [`time_ms`] of a time already read as text.
pub fn time_str_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|t| t.and_utc().timestamp_millis())
        })
        .ok()
}

/// A price's validity bound: `Ok(None)` when there is none, `Err` when there is one that
/// does not parse. A time without an offset (or a bare date, read as its midnight) is local
/// time in `tz`: a time inside a DST gap is read with the offset before it; an ambiguous one (the hour
/// the clocks go back) is its first occurrence.
pub(crate) fn bound_ms(v: Option<&str>, tz: Tz) -> Result<Option<i64>, ()> {
    let Some(s) = v.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.timestamp_millis()));
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or(())?;
    local_ms(naive, tz).map(Some).ok_or(())
}

fn local_ms(naive: NaiveDateTime, tz: Tz) -> Option<i64> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.timestamp_millis()),
        LocalResult::Ambiguous(first, _) => Some(first.timestamp_millis()),
        // Skipped by the clocks going forward (02:30 on the spring morning): read with the
        // offset before the gap, which lands as far past the gap's end (03:30 summer time).
        LocalResult::None => tz
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
            .map(|t| t.timestamp_millis()),
    }
}

/// Adds VAT at `rate_percent` to a tax-excluded amount in minor units, rounding half away
/// from zero to the minor unit. `None` for a rate outside 0–100 % or an overflow.
pub fn with_vat(minor: i64, rate_percent: f64) -> Option<i64> {
    if !(0.0..100.0).contains(&rate_percent) {
        return None;
    }
    // Basis points: 25 % = 2500, 12.5 % = 1250, 11.11 % = 1111.
    let bp = (rate_percent * 100.0).round() as i128;
    let scaled = i128::from(minor) * (10_000 + bp);
    let half = if scaled < 0 { -5_000 } else { 5_000 };
    i64::try_from((scaled + half) / 10_000).ok()
}

pub fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An Omnium decimal in minor units, only if exact: 199.50 → 19950, 199.505 → `None`.
fn money(v: Option<f64>, currency: &str) -> Option<i64> {
    Decimal::minor_from_f64(v?, minor_digits(currency))
}

/// A text field: trimmed, `None` when missing or blank.
fn text(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn is_blank(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|s| s.trim().is_empty())
}

/// A product or a variant as the product scroll sends it (`OmniumProduct`,
/// `OmniumProductVariant`: the same field set), holding only what the till reads. Other
/// fields are skipped unread; a field read here with another type fails the page, naming
/// the field.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Product {
    pub id: Option<String>,
    pub product_id: Option<String>,
    pub sku_id: Option<String>,
    pub language: Option<String>,
    pub name: Option<String>,
    pub brand: Option<String>,
    pub ean: Option<String>,
    pub gtins: Option<Vec<Option<String>>>,
    pub is_active: Option<bool>,
    pub is_deleted: Option<bool>,
    pub status: Option<String>,
    pub market_ids: Option<Vec<Option<String>>>,
    #[serde(deserialize_with = "categories_skipping_nulls")]
    pub categories: Option<Vec<ProductCategory>>,
    pub category_ids: Option<Vec<Option<String>>>,
    #[serde(deserialize_with = "assets_skipping_nulls")]
    pub assets: Option<Vec<Asset>>,
    pub main_image_url: Option<String>,
    pub cost: Option<f64>,
    pub cost_currency: Option<String>,
    #[serde(deserialize_with = "variants_skipping_nulls")]
    pub variants: Option<Vec<Product>>,
    #[serde(deserialize_with = "prices_skipping_nulls")]
    pub prices: Option<Vec<Price>>,
    pub modified: Option<String>,
}

// A `null` inside a product's lists is skipped (and logged once per page), never a failed
// page: the rest of the product and of the page applies. (Lists of text, `gtins`,
// `marketIds`, `categoryIds`, already take a null as "none".)
page::null_skipping! {
    categories_skipping_nulls => "categories",
    assets_skipping_nulls => "assets",
    variants_skipping_nulls => "variants",
    prices_skipping_nulls => "prices",
}

impl Product {
    /// The language-neutral product id (`productId`, else the document `id`), trimmed.
    pub fn key(&self) -> Option<String> {
        text(&self.product_id).or_else(|| text(&self.id))
    }

    /// `modified`, unix ms.
    pub fn modified_ms(&self) -> Option<i64> {
        self.modified.as_deref().and_then(time_str_ms)
    }

    fn is_live(&self) -> bool {
        self.is_active != Some(false)
            && self.is_deleted != Some(true)
            && self.status.as_deref() != Some("Deleted")
    }

    /// Image URLs of a product or variant, main image first, no duplicates.
    fn images(&self, out: &mut Vec<String>) {
        let mut assets: Vec<&Asset> = self.assets.iter().flatten().collect();
        assets.sort_by_key(|a| {
            (
                a.is_main_image != Some(true),
                a.sort_order.map_or(i64::MAX, |o| o as i64),
            )
        });
        let urls = text(&self.main_image_url).into_iter().chain(
            assets
                .into_iter()
                .filter_map(|a| text(&a.url).or_else(|| text(&a.external_url))),
        );
        for url in urls {
            if !out.contains(&url) {
                out.push(url);
            }
        }
    }
}

/// `OmniumProductCategory` on a product: which categories, which one is the main one.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProductCategory {
    pub category_id: Option<String>,
    pub is_main_category: Option<bool>,
}

/// `OmniumAsset`: an image.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Asset {
    pub url: Option<String>,
    pub external_url: Option<String>,
    pub is_main_image: Option<bool>,
    pub sort_order: Option<f64>,
}

/// `OmniumPrice`: the fields CONTRACT §9 rule 15 decides on.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Price {
    pub unit_price: Option<f64>,
    pub currency_code: Option<String>,
    pub market_id: Option<String>,
    pub market_group_id: Option<String>,
    pub store_id: Option<String>,
    pub customer_id: Option<String>,
    pub customer_group: Option<String>,
    pub min_quantity: Option<f64>,
    pub price_type: Option<String>,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    pub is_tax_excluded: Option<bool>,
    pub tax_rate: Option<f64>,
    pub is_customer_club_specific_price: Option<bool>,
    pub code: Option<String>,
    pub sku_id: Option<String>,
}

/// A number as Omnium may write it in a log line.
fn shown(v: Option<f64>) -> String {
    v.map_or_else(|| "null".to_string(), |x| x.to_string())
}

fn shown_text(v: &Option<String>) -> String {
    v.as_deref()
        .map_or_else(|| "null".to_string(), |s| format!("{s:?}"))
}

/// The local rows of one Omnium product, or `None` when it is in another language.
pub fn product_rows(p: &Product, scope: &CatalogScope) -> Option<CatalogProduct> {
    if let (Some(want), Some(lang)) = (scope.language, p.language.as_deref()) {
        if !lang.eq_ignore_ascii_case(want) {
            return None;
        }
    }
    let product_id = p.key()?;
    let in_market = p
        .market_ids
        .as_ref()
        .is_none_or(|m| m.is_empty() || m.iter().any(|x| x.as_deref() == Some(scope.market_id)));
    let product_live = p.is_live() && in_market;
    let mut categories: Vec<&ProductCategory> = p.categories.iter().flatten().collect();
    categories.sort_by_key(|c| c.is_main_category != Some(true));
    let mut category_ids: Vec<String> = categories
        .iter()
        .filter_map(|c| text(&c.category_id))
        .collect();
    for id in p.category_ids.iter().flatten().filter_map(text) {
        if !category_ids.contains(&id) {
            category_ids.push(id);
        }
    }
    let cost = |v: &Product| -> Option<i64> {
        let c = v.cost?;
        let currency = v.cost_currency.as_deref().unwrap_or(scope.currency);
        if currency != scope.currency {
            return None;
        }
        let minor = money(Some(c), currency);
        if minor.is_none() {
            log::error!(
                "product {product_id:?}: cost {c} is not an exact amount in {currency}; ignored"
            );
        }
        minor
    };
    let mut product_images = Vec::new();
    p.images(&mut product_images);
    let variants: Vec<&Product> = p.variants.iter().flatten().collect();
    let sku_sources: Vec<&Product> = if variants.is_empty() {
        vec![p]
    } else {
        variants
    };
    let mut skus = Vec::new();
    for v in sku_sources {
        let is_product = std::ptr::eq(v, p);
        let Some(sku) = text(&v.sku_id).or_else(|| is_product.then(|| product_id.clone())) else {
            continue;
        };
        let mut image_urls = Vec::new();
        if !is_product {
            v.images(&mut image_urls);
        }
        for url in &product_images {
            if !image_urls.contains(url) {
                image_urls.push(url.clone());
            }
        }
        skus.push(SkuRow {
            sku,
            product_id: product_id.clone(),
            name: text(&v.name)
                .or_else(|| text(&p.name))
                .unwrap_or_else(|| product_id.clone()),
            brand: text(&v.brand).or_else(|| text(&p.brand)),
            ean: text(&v.ean),
            gtins: v.gtins.iter().flatten().filter_map(text).collect(),
            category_ids: category_ids.clone(),
            image_urls,
            active: product_live && (is_product || v.is_live()),
            language: text(&p.language),
            cost_price: cost(v).or_else(|| if is_product { None } else { cost(p) }),
        });
    }
    let mut prices = Vec::new();
    let all_prices = p
        .prices
        .iter()
        .flatten()
        .map(|pr| (pr, None))
        .chain(skus.iter().flat_map(|s| {
            // Prices kept on a variant are that variant's.
            let variant = p
                .variants
                .iter()
                .flatten()
                .find(|v| v.sku_id.as_deref() == Some(s.sku.as_str()));
            variant
                .and_then(|v| v.prices.as_ref())
                .into_iter()
                .flatten()
                .map(move |pr| (pr, Some(s.sku.clone())))
        }))
        .collect::<Vec<_>>();
    for (pr, owner) in all_prices {
        // CONTRACT §9 rule 15: the price a walk-in customer pays in this market (or its
        // group), this store or all stores, this currency.
        let applies = pr.currency_code.as_deref() == Some(scope.currency)
            && (is_blank(&pr.market_id) || pr.market_id.as_deref() == Some(scope.market_id))
            && (is_blank(&pr.market_group_id)
                || scope.market_group.is_some()
                    && pr.market_group_id.as_deref() == scope.market_group)
            && (is_blank(&pr.store_id) || pr.store_id.as_deref() == Some(scope.store_id))
            && is_blank(&pr.customer_id)
            && is_blank(&pr.customer_group)
            && pr.min_quantity.unwrap_or(0.0) <= 1.0
            && pr.price_type.as_deref() != Some("B");
        if !applies {
            continue;
        }
        let Some(unit_price) = money(pr.unit_price, scope.currency) else {
            log::error!(
                "product {product_id:?}: price {} is not an exact amount in {}; ignored, never rounded",
                shown(pr.unit_price),
                scope.currency
            );
            continue;
        };
        let (Ok(valid_from), Ok(valid_until)) = (
            bound_ms(pr.valid_from.as_deref(), scope.time_zone),
            bound_ms(pr.valid_until.as_deref(), scope.time_zone),
        ) else {
            log::error!(
                "product {product_id:?}: price {} has a validity bound that does not parse ({} to {}); dropped",
                shown(pr.unit_price),
                shown_text(&pr.valid_from),
                shown_text(&pr.valid_until)
            );
            continue;
        };
        // The till shows prices with VAT: a tax-excluded one is converted with its rate
        // (`taxRate`, else the market's default), or skipped when no rate is known.
        let unit_price = if pr.is_tax_excluded == Some(true) {
            let rate = pr.tax_rate.or(scope.default_tax_rate);
            match rate.and_then(|r| with_vat(unit_price, r)) {
                Some(p) => p,
                None => {
                    log::warn!(
                        "product {product_id:?}: tax-excluded price {} has no usable VAT rate ({}); skipped",
                        shown(pr.unit_price),
                        shown(pr.tax_rate)
                    );
                    continue;
                }
            }
        } else {
            unit_price
        };
        let member = pr.is_customer_club_specific_price == Some(true);
        let code = owner
            .or_else(|| text(&pr.code))
            .or_else(|| text(&pr.sku_id));
        let targets: Vec<(&str, bool)> = match code.as_deref() {
            Some(c) if c != product_id => match skus.iter().find(|s| s.sku == c) {
                Some(s) => vec![(s.sku.as_str(), true)],
                None => continue,
            },
            _ => skus.iter().map(|s| (s.sku.as_str(), false)).collect(),
        };
        for (sku, variant_specific) in targets {
            prices.push(PriceRow {
                sku: sku.to_string(),
                unit_price,
                currency: scope.currency.to_string(),
                store_specific: !is_blank(&pr.store_id),
                variant_specific,
                member,
                valid_from,
                valid_until,
            });
        }
    }
    Some(CatalogProduct {
        product_id,
        skus,
        prices,
        modified_ms: p.modified_ms(),
    })
}

/// A category of `GET /api/ProductCategories` (`OmniumProductCategory`).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CategoryItem {
    pub id: Option<String>,
    pub category_id: Option<String>,
    pub language: Option<String>,
    pub name: Option<String>,
    pub parent_id: Option<String>,
    pub sort_index: Option<i64>,
}

/// Categories in the scope's language (or all, without one).
pub fn category(c: &CategoryItem, scope: &CatalogScope) -> Option<Category> {
    if let (Some(want), Some(lang)) = (scope.language, c.language.as_deref()) {
        if !lang.eq_ignore_ascii_case(want) {
            return None;
        }
    }
    Some(Category {
        id: text(&c.category_id).or_else(|| text(&c.id))?,
        name: text(&c.name).unwrap_or_default(),
        parent_id: text(&c.parent_id),
        sort_index: c.sort_index.unwrap_or(0),
    })
}

/// An item of `POST /api/Inventory/Search` and its scroll (`OmniumInventoryItem`).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InventoryItem {
    pub sku: Option<String>,
    pub warehouse_code: Option<String>,
    pub inventory: Option<f64>,
    pub reserved_inventory: Option<f64>,
    pub modified: Option<String>,
}

pub fn stock_level(item: &InventoryItem) -> Option<StockLevel> {
    Some(StockLevel {
        sku: text(&item.sku)?,
        warehouse_id: text(&item.warehouse_code)?,
        quantity: item.inventory.unwrap_or(0.0),
        reserved: item.reserved_inventory.unwrap_or(0.0),
        modified_ms: item.modified.as_deref().and_then(time_str_ms).unwrap_or(0),
    })
}

/// A store of `POST /api/Stores/SearchStores`: its id and `modified` read, the whole
/// document kept as Omnium sent it (the store view reads its opening hours and warehouses).
#[derive(Debug)]
pub struct StoreItem {
    pub id: Option<String>,
    pub modified_ms: Option<i64>,
    pub raw: Box<serde_json::value::RawValue>,
}

impl<'de> serde::Deserialize<'de> for StoreItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Head {
            #[serde(default)]
            id: Option<String>,
            #[serde(default)]
            modified: Option<String>,
        }
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        let head: Head = serde_json::from_str(raw.get())
            .map_err(|_| serde::de::Error::custom("a store's id or modified is not a string"))?;
        Ok(StoreItem {
            id: head.id,
            modified_ms: head.modified.as_deref().and_then(time_str_ms),
            raw,
        })
    }
}

/// A scroll is stopped after this many pages in one run: 2,000,000 items at the 1,000 a page
/// asked for, twenty times a 100,000-SKU catalog. An endless scroll must not fill the disk.
/// A products scroll asked for fewer a page (pages over the response cap, `sync::pull`) may
/// read proportionally more pages: the same 2,000,000 items.
pub const MAX_SCROLL_PAGES: u32 = 2_000;

/// The page size [`MAX_SCROLL_PAGES`] is counted at.
const NOMINAL_TAKE: usize = 1_000;

/// What one scroll (one per resource at a time) has served so far.
#[derive(Default)]
pub(crate) struct ScrollTrail {
    pages: u32,
    /// The page limit of this scroll (0: [`MAX_SCROLL_PAGES`]).
    max_pages: u32,
    seen: std::collections::HashSet<[u8; 32]>,
}

impl OmniumApi {
    /// Follows a scroll page by page: `start` for its first page. A page served before in the
    /// same scroll (the same bytes in its `result`, whatever scroll id comes with them), or a
    /// page beyond [`MAX_SCROLL_PAGES`], stops it (a broken or hostile Omnium answering the
    /// same page for ever would otherwise be read for ever).
    fn track_scroll<T>(&self, resource: &str, start: bool, page: &Page<T>) -> Result<(), Failure> {
        let mut scrolls = self.scrolls.lock().unwrap_or_else(|p| p.into_inner());
        if start {
            scrolls.remove(resource);
        }
        if page.items.is_empty() {
            // The end of the scroll.
            scrolls.remove(resource);
            return Ok(());
        }
        let trail = scrolls.entry(resource.to_string()).or_default();
        trail.pages += 1;
        let fresh = trail.seen.insert(page.fingerprint);
        let stop = if !fresh {
            Some(format!(
                "the {resource} scroll served a page it had already served; stopped (Omnium answers the same page again)"
            ))
        } else if trail.pages > trail.max_pages.max(MAX_SCROLL_PAGES) {
            Some(format!(
                "the {resource} scroll went past {} pages in one run; stopped",
                trail.max_pages.max(MAX_SCROLL_PAGES)
            ))
        } else {
            None
        };
        match stop {
            Some(message) => {
                scrolls.remove(resource);
                // Not while holding the lock: the log callback is foreign code.
                drop(scrolls);
                log::warn!("{message}");
                Err(Failure::Rejected { status: 0, message })
            }
            None => Ok(()),
        }
    }

    /// A page that must come: a 404 fails the data set too (never "nothing there", which a
    /// full resync would sweep on).
    fn required_page<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
        data_set: &str,
        cap: u64,
    ) -> Result<Page<T>, Failure> {
        self.fetch_page(method, path, body, data_set, cap)?
            .ok_or_else(|| Failure::Rejected {
                status: 404,
                message: format!("{data_set}: {method} {path} answered 404"),
            })
    }

    /// `POST /api/Products/Scroll`: starts a scroll of products modified since `from_ms`
    /// (all products when `None`), sorted by `modified` so progress can be kept per page.
    pub fn products_scroll_start(
        &self,
        from_ms: Option<i64>,
        scope: &CatalogScope,
        take: usize,
    ) -> Result<Page<Product>, Failure> {
        let mut body = json!({
            "marketId": scope.market_id, "storeId": scope.store_id,
            "isUnionDeltaQuery": true, "isFacetsDisabled": true,
            "sortOrder": "ModifiedAscending", "take": take,
            "excludedFields": product_exclusions(),
        });
        if let Some(ms) = from_ms {
            body["modifiedFrom"] = time_text(ms).into();
        }
        if let Some(lang) = scope.language {
            body["productLanguage"] = lang.into();
        }
        let page = self.required_page(
            "POST",
            "/api/Products/Scroll",
            Some(&body),
            "products",
            page::cap::PRODUCTS,
        )?;
        self.track_scroll("Products", true, &page)?;
        if take < NOMINAL_TAKE {
            // Smaller pages: as many items as at the nominal size, not as many pages.
            let pages = (MAX_SCROLL_PAGES as usize * NOMINAL_TAKE / take.max(1)) as u32;
            let mut scrolls = self.scrolls.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(trail) = scrolls.get_mut("Products") {
                trail.max_pages = pages;
            }
        }
        Ok(page)
    }

    /// The next page of a scroll (`Products` or `Inventory`); `None` when the scroll expired
    /// (404).
    pub fn scroll_next<T: serde::de::DeserializeOwned>(
        &self,
        resource: &str,
        scroll_id: &str,
    ) -> Result<Option<Page<T>>, Failure> {
        let (data_set, cap) = match resource {
            "Products" => ("products", page::cap::PRODUCTS),
            "Inventory" => ("stock", page::cap::INVENTORY),
            _ => (resource, page::cap::DEFAULT),
        };
        let path = format!("/api/{resource}/Scroll/{}", encode_component(scroll_id));
        // A 404 is an expired scroll (`None`); an answer that is not a page is a failure,
        // never an empty page that would end the scroll early (and, in a full resync, sweep
        // what was not read yet).
        let page = self.fetch_page("GET", &path, None, data_set, cap)?;
        if let Some(page) = &page {
            self.track_scroll(resource, false, page)?;
        }
        Ok(page)
    }

    /// `GET /api/ProductCategories` (no delta filter exists: always the full list).
    pub fn categories_page(&self, page: u32) -> Result<Page<CategoryItem>, Failure> {
        let path = format!("/api/ProductCategories?page={page}&pageSize=1000");
        self.required_page("GET", &path, None, "categories", page::cap::CATEGORIES)
    }

    /// `POST /api/Stores/SearchStores` for the given stores.
    pub fn search_stores(
        &self,
        store_ids: &[String],
        from_ms: Option<i64>,
    ) -> Result<Page<StoreItem>, Failure> {
        let mut body =
            json!({"storeIds": store_ids, "take": 100, "page": 0, "includeInactive": true});
        if let Some(ms) = from_ms {
            body["modifiedFrom"] = time_text(ms).into();
        }
        self.required_page(
            "POST",
            "/api/Stores/SearchStores",
            Some(&body),
            "stores",
            page::cap::STORES,
        )
    }

    /// `POST /api/Inventory/Search` for the warehouses, modified since `from_ms`.
    pub fn inventory_search(
        &self,
        warehouses: &[String],
        from_ms: Option<i64>,
    ) -> Result<Page<InventoryItem>, Failure> {
        let mut body = json!({"warehouseCodes": warehouses, "isBatchesExcluded": true});
        if let Some(ms) = from_ms {
            body["lastModified"] = time_text(ms).into();
        }
        let page = self.required_page(
            "POST",
            "/api/Inventory/Search",
            Some(&body),
            "stock",
            page::cap::INVENTORY,
        )?;
        self.track_scroll("Inventory", true, &page)?;
        Ok(page)
    }

    /// Current levels of some SKUs (`POST /api/Inventory/Search` with `productCodes`). An
    /// answer that is not a page of levels, or a 404, is uncertain (the job asks again
    /// later): never "no levels", which a reception would take for a level of 0 and send
    /// the goods received as Omnium's whole level.
    pub fn inventory_levels(
        &self,
        skus: &[String],
        warehouses: &[String],
    ) -> Result<Vec<StockLevel>, Failure> {
        let body =
            json!({"productCodes": skus, "warehouseCodes": warehouses, "isBatchesExcluded": true});
        let page = self
            .fetch_page::<InventoryItem>(
                "POST",
                "/api/Inventory/Search",
                Some(&body),
                "stock levels",
                page::cap::INVENTORY,
            )
            .map_err(|f| match f {
                Failure::Rejected { status: 0, message } => Failure::Uncertain(message),
                f => f,
            })?
            .ok_or_else(|| {
                Failure::Uncertain(
                    "stock levels: POST /api/Inventory/Search answered 404; the levels cannot be read"
                        .into(),
                )
            })?;
        Ok(page.items.iter().filter_map(stock_level).collect())
    }

    /// What the catalog needs of the configured market, from `GET /api/Markets`. A market
    /// that is missing or names no content language is refused (`Rejected`): without its
    /// language the catalog would mix every language.
    pub fn market_info(&self, market_id: &str) -> Result<MarketInfo, Failure> {
        let refused = |why: String| Failure::Rejected {
            status: 0,
            message: why,
        };
        let markets: Page<MarketItem> = self
            .fetch_page("GET", "/api/Markets", None, "markets", page::cap::MARKETS)?
            .ok_or_else(|| refused("GET /api/Markets answered 404".into()))?;
        let market = markets
            .items
            .iter()
            .find(|m| m.market_id.as_deref() == Some(market_id))
            .ok_or_else(|| {
                refused(format!(
                    "market {market_id:?} is not among Omnium's markets"
                ))
            })?;
        let language = text(&market.product_content_language).ok_or_else(|| {
            refused(format!(
                "market {market_id:?} names no productContentLanguage"
            ))
        })?;
        Ok(MarketInfo {
            language,
            group: text(&market.market_group_id),
            tax_rate: market.default_tax_rate,
        })
    }
}

/// A market of `GET /api/Markets` (`OmniumMarket`): what the catalog needs.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MarketItem {
    pub market_id: Option<String>,
    pub product_content_language: Option<String>,
    pub market_group_id: Option<String>,
    pub default_tax_rate: Option<f64>,
}

#[cfg(test)]
mod scroll_tests {
    use super::*;
    use crate::omnium::transport::{HttpRequest, HttpResponse, NetError, Transport};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Omnium with a scroll that never ends: each page has new items (`repeat` false) or the
    /// same items again (`repeat` true).
    struct EndlessScroll {
        repeat: bool,
        pages: AtomicU64,
    }

    impl Transport for EndlessScroll {
        fn send(&self, req: &HttpRequest<'_, '_>) -> Result<HttpResponse, NetError> {
            let body = if req.url.contains("/api/token") {
                r#"{"accessToken": "scroll-test-token", "expiresIn": 864000}"#.to_string()
            } else {
                let n = self.pages.fetch_add(1, Ordering::SeqCst);
                let item = if self.repeat { 0 } else { n };
                format!(r#"{{"result": [{{"productId": "P-{item}"}}], "scrollId": "s-{n}"}}"#)
            };
            Ok(HttpResponse {
                status: 200,
                retry_after: None,
                date: None,
                body: body.into_bytes(),
            })
        }
    }

    fn api(repeat: bool) -> (OmniumApi, Arc<EndlessScroll>) {
        let fake = Arc::new(EndlessScroll {
            repeat,
            pages: AtomicU64::new(0),
        });
        let cfg = crate::config::OmniumConfig {
            base_url: "https://omnium.test".into(),
            client_id: "id".into(),
            client_secret: crate::redact::Secret::new("scroll-test-secret"),
            timeout_ms: 1000,
            max_concurrency: 1,
            proxy: None,
        };
        (OmniumApi::with_transport(&cfg, fake.clone()), fake)
    }

    const SCOPE: CatalogScope = CatalogScope {
        market_id: "NOR",
        store_id: "oslo-1",
        currency: "NOK",
        language: None,
        market_group: None,
        default_tax_rate: None,
        time_zone: chrono_tz::Europe::Oslo,
    };

    #[test]
    fn a_scroll_serving_the_same_page_again_is_stopped() {
        let (api, fake) = api(true);
        let first = api.products_scroll_start(None, &SCOPE, 1000).unwrap();
        let err = api
            .scroll_next::<Product>("Products", first.scroll_id.as_deref().unwrap())
            .unwrap_err();
        assert!(
            matches!(&err, Failure::Rejected { status: 0, message } if message.contains("already served")),
            "{err}"
        );
        assert_eq!(fake.pages.load(Ordering::SeqCst), 2);
        // A new scroll starts afresh.
        api.products_scroll_start(None, &SCOPE, 1000).unwrap();
    }

    #[test]
    fn an_endless_scroll_stops_after_the_page_cap() {
        let (api, fake) = api(false);
        let mut id = api
            .products_scroll_start(None, &SCOPE, 1000)
            .unwrap()
            .scroll_id
            .unwrap();
        let mut served = 1;
        let err = loop {
            match api.scroll_next::<Product>("Products", &id) {
                Ok(Some(page)) => {
                    served += 1;
                    id = page.scroll_id.unwrap();
                }
                Ok(None) => panic!("the fake never expires"),
                Err(e) => break e,
            }
            assert!(served <= MAX_SCROLL_PAGES + 1, "not stopped");
        };
        assert!(err.to_string().contains("pages"), "{err}");
        assert_eq!(served, MAX_SCROLL_PAGES);
        assert_eq!(
            fake.pages.load(Ordering::SeqCst),
            u64::from(MAX_SCROLL_PAGES) + 1
        );
    }

    /// Review (reviewb): a products scroll asked for smaller pages (its pages came over the
    /// response cap) was still stopped at 2,000 pages, so a full resync of a catalog over
    /// 2,000 × the smaller size failed; the limit is the same number of items.
    #[test]
    fn a_scroll_of_smaller_pages_may_read_as_many_items() {
        let (api, fake) = api(false);
        let mut id = api
            .products_scroll_start(None, &SCOPE, 500)
            .unwrap()
            .scroll_id
            .unwrap();
        let mut served: u32 = 1;
        let err = loop {
            match api.scroll_next::<Product>("Products", &id) {
                Ok(Some(page)) => {
                    served += 1;
                    id = page.scroll_id.unwrap();
                }
                Ok(None) => panic!("the fake never expires"),
                Err(e) => break e,
            }
            assert!(served <= 2 * MAX_SCROLL_PAGES + 1, "not stopped");
        };
        assert!(err.to_string().contains("4000 pages"), "{err}");
        assert_eq!(served, 2 * MAX_SCROLL_PAGES);
        assert_eq!(
            fake.pages.load(Ordering::SeqCst),
            2 * u64::from(MAX_SCROLL_PAGES) + 1
        );
        // A scroll at the usual size is back to the usual limit.
        let first = api.products_scroll_start(None, &SCOPE, 1000).unwrap();
        assert!(first.scroll_id.is_some());
        assert_eq!(
            api.scrolls.lock().unwrap()["Products"].max_pages,
            0,
            "a new scroll starts at the usual limit"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: CatalogScope = CatalogScope {
        market_id: "NOR",
        store_id: "oslo-1",
        currency: "NOK",
        language: Some("no"),
        market_group: Some("NORDICS"),
        default_tax_rate: Some(25.0),
        time_zone: chrono_tz::Europe::Oslo,
    };

    /// A product as the scroll's typed parse reads it.
    fn typed(v: Value) -> Product {
        serde_json::from_value(v).expect("a product")
    }

    fn product() -> Product {
        typed(json!({
            "id": "P1_no", "productId": "P1", "language": "no", "name": "Ullgenser", "brand": "Devold",
            "isActive": true, "marketIds": ["NOR"], "modified": "2026-11-01T10:00:00.000Z",
            "categories": [{"categoryId": "c2"}, {"categoryId": "c1", "isMainCategory": true}],
            "assets": [{"url": "https://i/2.jpg", "sortOrder": 2}, {"url": "https://i/1.jpg", "isMainImage": true}],
            "cost": 400.00, "costCurrency": "NOK",
            "variants": [
                {"skuId": "P1-M", "ean": "7000000000011", "name": "Ullgenser M"},
                {"skuId": "P1-L", "ean": "7000000000028", "isActive": false}
            ],
            "prices": [
                {"unitPrice": 999.00, "currencyCode": "NOK", "marketId": "NOR", "validFrom": "2026-01-01T00:00:00Z"},
                {"unitPrice": 899.50, "currencyCode": "NOK", "marketId": "NOR", "storeId": "oslo-1"},
                {"unitPrice": 949.00, "currencyCode": "NOK", "marketId": "NOR", "skuId": "P1-L", "code": "P1-L"},
                {"unitPrice": 10.00, "currencyCode": "SEK", "marketId": "SWE"},
                {"unitPrice": 1.00, "currencyCode": "NOK", "marketId": "NOR", "customerId": "C-1"},
                {"unitPrice": 5.00, "currencyCode": "NOK", "marketId": "NOR", "storeId": "bergen-1"},
                {"unitPrice": 99.999, "currencyCode": "NOK", "marketId": "NOR"}
            ]
        }))
    }

    #[test]
    fn variants_become_skus_with_the_products_shared_fields() {
        let rows = product_rows(&product(), &SCOPE).unwrap();
        assert_eq!(rows.product_id, "P1");
        let m = &rows.skus[0];
        assert_eq!(
            (m.sku.as_str(), m.name.as_str(), m.brand.as_deref()),
            ("P1-M", "Ullgenser M", Some("Devold"))
        );
        assert_eq!(m.category_ids, ["c1", "c2"], "main category first");
        assert_eq!(
            m.image_urls,
            ["https://i/1.jpg", "https://i/2.jpg"],
            "main image first"
        );
        assert_eq!(m.cost_price, Some(40000));
        assert!(m.active);
        assert_eq!(
            rows.skus[1].name, "Ullgenser",
            "a variant without a name takes the product's"
        );
        assert!(
            !rows.skus[1].active,
            "a deactivated variant is not sellable"
        );
        assert_eq!(rows.modified_ms, Some(1_793_527_200_000));
    }

    #[test]
    fn only_this_market_store_and_currency_general_prices_apply_exactly() {
        let rows = product_rows(&product(), &SCOPE).unwrap();
        let mut got: Vec<(String, i64, bool, bool)> = rows
            .prices
            .iter()
            .map(|p| {
                (
                    p.sku.clone(),
                    p.unit_price,
                    p.store_specific,
                    p.variant_specific,
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("P1-L".to_string(), 89950, true, false),
                ("P1-L".to_string(), 94900, false, true),
                ("P1-L".to_string(), 99900, false, false),
                ("P1-M".to_string(), 89950, true, false),
                ("P1-M".to_string(), 99900, false, false),
            ]
        );
    }

    #[test]
    fn a_single_sku_product_is_its_own_sku_and_other_languages_are_skipped() {
        let single = typed(
            json!({"productId": "P2", "skuId": "P2", "name": "Lue", "language": "no", "ean": "7000000000035"}),
        );
        let rows = product_rows(&single, &SCOPE).unwrap();
        assert_eq!(rows.skus.len(), 1);
        assert_eq!(rows.skus[0].ean.as_deref(), Some("7000000000035"));
        let english =
            typed(json!({"productId": "P2", "skuId": "P2", "name": "Hat", "language": "en"}));
        assert!(product_rows(&english, &SCOPE).is_none());
        let deleted =
            typed(json!({"productId": "P3", "skuId": "P3", "name": "X", "status": "Deleted"}));
        assert!(!product_rows(&deleted, &SCOPE).unwrap().skus[0].active);
    }

    #[test]
    fn bounds_without_an_offset_are_oslo_time_in_winter_summer_and_at_the_switches() {
        let oslo = chrono_tz::Europe::Oslo;
        let ms = |s: &str| bound_ms(Some(s), oslo).unwrap().unwrap();
        let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
        assert_eq!(ms("2026-12-01T10:00:00"), utc("2026-12-01T09:00:00Z"));
        assert_eq!(ms("2026-07-01T10:00:00.000"), utc("2026-07-01T08:00:00Z"));
        assert_eq!(
            ms("2026-07-01"),
            utc("2026-06-30T22:00:00Z"),
            "a bare date is its midnight"
        );
        assert_eq!(ms("2026-07-01T10:00:00+00:00"), utc("2026-07-01T10:00:00Z"));
        // 02:30 does not exist on 29 March 2026 in Oslo; 02:30 on 25 October happens twice.
        assert_eq!(ms("2026-03-29T02:30:00"), utc("2026-03-29T01:30:00Z"));
        assert_eq!(ms("2026-10-25T02:30:00"), utc("2026-10-25T00:30:00Z"));
        assert_eq!(bound_ms(None, oslo), Ok(None));
        assert_eq!(bound_ms(Some(" "), oslo), Ok(None));
        assert_eq!(bound_ms(Some("next tuesday"), oslo), Err(()));
    }

    #[test]
    fn the_fields_excluded_from_the_product_scroll_are_never_read() {
        let scope = CatalogScope {
            market_id: "NOR",
            store_id: "oslo-1",
            currency: "NOK",
            language: Some("no"),
            market_group: None,
            default_tax_rate: Some(25.0),
            time_zone: chrono_tz::Europe::Oslo,
        };
        let rich = json!({
            "id": "P1_no", "productId": "P1", "language": "no", "name": "Skjorte", "brand": "B",
            "modified": "2026-12-01T10:00:00Z", "marketIds": ["NOR"], "isActive": true,
            "description": "lang tekst", "shortDescription": "kort", "alternativeProductName": "x",
            "components": [{"skuId": "C"}], "externalIds": [{"id": "e"}], "tags": ["t"],
            "units": [{"unit": "stk"}], "availableInventory": 3, "inventory": [{"warehouseCode": "oslo-1", "quantity": 3}],
            "properties": [{"key": "k", "value": "v"}],
            "categories": [{"categoryId": "C1", "language": "no", "name": "Klær"}],
            "assets": [{"url": "https://i/1.jpg", "isMainImage": true}],
            "prices": [{"unitPrice": 199.5, "currencyCode": "NOK", "marketId": "NOR"}],
            "variants": [{"skuId": "P1-S", "name": "S", "ean": "7000000000001", "description": "v",
                          "inventory": [{"warehouseCode": "oslo-1", "quantity": 1}],
                          "properties": [{"key": "k", "value": "v"}], "tags": ["t"]}],
        });
        let mut lean = rich.clone();
        let strip = |v: &mut Value| {
            let m = v.as_object_mut().unwrap();
            for f in EXCLUDED_PRODUCT_FIELDS.iter().chain(&["properties"]) {
                m.remove(*f);
            }
        };
        strip(&mut lean);
        for v in lean["variants"].as_array_mut().unwrap() {
            strip(v);
        }
        let a = product_rows(&typed(rich), &scope).expect("rich parses");
        let b = product_rows(&typed(lean), &scope).expect("lean parses");
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let ex = product_exclusions();
        assert_eq!(ex["isInventoryExcluded"], true);
        assert_eq!(ex["isPropertiesExcluded"], true);
    }

    #[test]
    fn vat_is_added_to_tax_excluded_prices_rounding_half_away_from_zero() {
        assert_eq!(with_vat(80_000, 25.0), Some(100_000));
        assert_eq!(with_vat(999, 25.0), Some(1249), "1248.75 rounds to 1249");
        assert_eq!(with_vat(10_000, 12.5), Some(11_250));
        assert_eq!(with_vat(-999, 25.0), Some(-1249));
        assert_eq!(with_vat(100, 100.0), None);
        assert_eq!(with_vat(100, -1.0), None);
    }

    #[test]
    fn club_other_group_unparseable_and_tax_excluded_prices_are_never_the_shelf_price() {
        let p = json!({
            "productId": "P9", "skuId": "P9", "name": "X", "language": "no",
            "prices": [
                {"unitPrice": 1000.00, "currencyCode": "NOK", "marketId": "NOR"},
                {"unitPrice": 700.00, "currencyCode": "NOK", "marketId": "NOR", "isCustomerClubSpecificPrice": true},
                {"unitPrice": 800.00, "currencyCode": "NOK", "marketId": "NOR", "isTaxExcluded": true},
                {"unitPrice": 800.00, "currencyCode": "NOK", "marketId": "NOR", "isTaxExcluded": true, "taxRate": 15},
                {"unitPrice": 600.00, "currencyCode": "NOK", "marketGroupId": "OTHER"},
                {"unitPrice": 650.00, "currencyCode": "NOK", "marketGroupId": "NORDICS"},
                {"unitPrice": 500.00, "currencyCode": "NOK", "marketId": "NOR", "validFrom": "soon"}
            ]
        });
        let p = typed(p);
        let rows = product_rows(&p, &SCOPE).unwrap();
        let got: Vec<(i64, bool)> = rows
            .prices
            .iter()
            .map(|r| (r.unit_price, r.member))
            .collect();
        assert_eq!(
            got,
            [
                (100_000, false),
                (70_000, true),
                (100_000, false),
                (92_000, false),
                (65_000, false)
            ]
        );
        let no_rate = CatalogScope {
            default_tax_rate: None,
            ..SCOPE
        };
        let rows = product_rows(&p, &no_rate).unwrap();
        assert!(
            !rows.prices.iter().any(|r| r.unit_price == 80_000),
            "without a rate a tax-excluded price is skipped, never shown as if it included VAT"
        );
    }
}
