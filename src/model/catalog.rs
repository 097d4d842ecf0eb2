//! What the till reads offline: sellable SKUs, their prices, categories, stock levels.
//! Plain rows, filled from Omnium's JSON by `omnium::catalog` and stored by `store::catalog`.

/// One sellable SKU (a variant, or a product without variants).
#[derive(Clone, Debug, PartialEq)]
pub struct SkuRow {
    pub sku: String,
    pub product_id: String,
    pub name: String,
    pub brand: Option<String>,
    pub ean: Option<String>,
    pub gtins: Vec<String>,
    pub category_ids: Vec<String>,
    /// Main image first.
    pub image_urls: Vec<String>,
    pub active: bool,
    pub language: Option<String>,
    /// Minor units of the store's currency.
    pub cost_price: Option<i64>,
}

/// A selling price that may apply to a SKU in this store and market; which one applies is
/// decided when it is read, so validity windows open and close on the minute without a sync.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceRow {
    pub sku: String,
    pub unit_price: i64,
    pub currency: String,
    pub store_specific: bool,
    pub variant_specific: bool,
    /// A customer-club price (`isCustomerClubSpecificPrice`): offered as `member_price`,
    /// never as the shelf price.
    pub member: bool,
    /// Unix ms; `None` = open-ended.
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
}

/// A product as it applies locally: its SKUs (all of them, active or not) and prices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogProduct {
    pub product_id: String,
    pub skus: Vec<SkuRow>,
    pub prices: Vec<PriceRow>,
    /// Omnium's `modified`, unix ms.
    pub modified_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Category {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub sort_index: i64,
}

/// Omnium's last known level of one SKU in one warehouse.
#[derive(Clone, Debug, PartialEq)]
pub struct StockLevel {
    pub sku: String,
    pub warehouse_id: String,
    pub quantity: f64,
    pub reserved: f64,
    /// Omnium's `modified` of the item, unix ms.
    pub modified_ms: i64,
}
