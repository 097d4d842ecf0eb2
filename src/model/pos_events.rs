//! Sales, returns and cancellations: the immutable events the till records.

use super::fields::{Fields, MAX_MONEY};
use super::raw::{At, Canon, Field, Got, List, Obj, Shaped, Slots};
use super::Defaults;
use crate::error::{Error, Result};
use chrono::{DateTime, FixedOffset};
use serde::de::{Deserialize, MapAccess};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashSet;

#[derive(Clone, Debug, PartialEq)]
pub struct Sale {
    pub id: String,
    pub created_at: DateTime<FixedOffset>,
    pub store_id: String,
    pub currency: String,
    pub customer_id: Option<String>,
    pub salesperson_id: Option<String>,
    pub rounding: i64,
    pub lines: Vec<SaleLine>,
    pub payments: Vec<Payment>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SaleLine {
    pub line_id: String,
    pub sku: String,
    pub name: Option<String>,
    pub quantity: f64,
    /// Unit price including VAT, minor units.
    pub unit_price: i64,
    /// The line's total discount, minor units.
    pub discount: i64,
    pub tax_rate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Payment {
    pub id: String,
    pub method: String,
    pub amount: i64,
    pub transaction_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Return {
    pub id: String,
    pub sale_id: String,
    pub created_at: DateTime<FixedOffset>,
    pub lines: Vec<ReturnLine>,
    pub refunds: Vec<Payment>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReturnLine {
    pub line_id: String,
    pub quantity: f64,
    /// The credited amount for this line, minor units.
    pub amount: i64,
    pub restock: bool,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cancellation {
    pub id: String,
    pub order_id: String,
    pub created_at: DateTime<FixedOffset>,
    pub reason: Option<String>,
    /// `None` cancels the whole order.
    pub lines: Option<Vec<CancelLine>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CancelLine {
    pub line_id: String,
    pub quantity: Option<f64>,
}

const SALE_KEYS: &[&str] = &[
    "id",
    "created_at",
    "store_id",
    "currency",
    "customer_id",
    "salesperson_id",
    "rounding",
    "lines",
    "payments",
];
const SALE_LINE_KEYS: &[&str] = &[
    "line_id",
    "sku",
    "name",
    "quantity",
    "unit_price",
    "discount",
    "tax_rate",
];
const PAYMENT_KEYS: &[&str] = &["id", "method", "amount", "transaction_id"];
const RETURN_KEYS: &[&str] = &["id", "sale_id", "created_at", "lines", "refunds"];
const RETURN_LINE_KEYS: &[&str] = &["line_id", "quantity", "amount", "restock", "reason"];
const CANCEL_KEYS: &[&str] = &["id", "order_id", "created_at", "reason", "lines"];
const CANCEL_LINE_KEYS: &[&str] = &["line_id", "quantity"];

fn positive_quantity(f: &Fields, key: &str) -> Result<f64> {
    in_quantity_range(f.number(key)?, || f.path(key))
}

fn in_quantity_range(q: f64, path: impl Fn() -> String) -> Result<f64> {
    if q <= 0.0 || q > MAX_QUANTITY {
        return Err(Error::invalid(
            path(),
            format!("must be greater than 0 and at most {MAX_QUANTITY}, got {q}"),
        ));
    }
    Ok(q)
}

fn non_negative_money(f: &Fields, key: &str, value: i64) -> Result<i64> {
    not_negative(value, || f.path(key))
}

fn not_negative(value: i64, path: impl Fn() -> String) -> Result<i64> {
    if value < 0 {
        return Err(Error::invalid(
            path(),
            format!("must not be negative, got {value}"),
        ));
    }
    Ok(value)
}

fn unique<'a>(seen: &mut HashSet<&'a str>, f: &Fields, key: &str, id: &'a str) -> Result<()> {
    if !seen.insert(id) {
        return Err(Error::invalid(f.path(key), format!("{id:?} is used twice")));
    }
    Ok(())
}

/// `round(quantity × unit_price)`, half away from zero, as the balance rule states,
/// computed in exact decimal arithmetic.
pub fn line_gross(quantity: f64, unit_price: i64) -> Result<i64> {
    let (value, scale) = super::money::exact_line_total(quantity, unit_price);
    let gross = super::money::round_half_away(value, scale);
    if gross.unsigned_abs() > u128::from(MAX_MONEY) {
        return Err(Error::InvalidInput("line total is out of range".into()));
    }
    Ok(gross as i64)
}

/// The most a line may hold: beyond this a quantity is surely a scanning error.
pub const MAX_QUANTITY: f64 = 1_000_000.0;

fn parse_payments(items: Vec<Fields>, owner_id: &str, key: &str) -> Result<Vec<Payment>> {
    let mut ids = HashSet::new();
    let mut payments = Vec::with_capacity(items.len());
    for (i, p) in items.iter().enumerate() {
        p.deny_unknown(PAYMENT_KEYS)?;
        let id = match p.id_opt("id")? {
            Some(id) => id.to_string(),
            None => format!("{owner_id}-{key}-{}", i + 1),
        };
        if !ids.insert(id.clone()) {
            return Err(Error::invalid(
                p.path("id"),
                format!("{id:?} is used twice"),
            ));
        }
        payments.push(Payment {
            id,
            method: p.text("method")?.to_string(),
            amount: p.money("amount")?,
            transaction_id: p.id_opt("transaction_id")?.map(str::to_string),
        });
    }
    Ok(payments)
}

impl Sale {
    /// Reads a sale from the POS's JSON text in one pass (no tree of maps): the validated
    /// sale and its canonical JSON, the stored form, with the contract's defaults filled
    /// in. The same sale, errors and canonical text as `fields::parse_object`,
    /// [`Sale::normalize`], [`Sale::parse`] and `fields::canonical_json` give
    /// (`tests/sale_parse.rs`, the `sale` fuzz target).
    pub fn read(text: &str, defaults: &Defaults) -> Result<(Sale, String)> {
        Sale::read_with(text, defaults, |sale, canonical| {
            Ok((sale.to_owned(), canonical))
        })
    }

    /// [`Sale::read`] handing `f` the checked sale as a view into the text (no string of
    /// it copied) and its canonical JSON: what recording needs, without an owned [`Sale`]
    /// (its strings were a fifth of a 20-line recording call's instructions).
    pub fn read_with<R>(
        text: &str,
        defaults: &Defaults,
        f: impl FnOnce(&SaleView<'_>, String) -> Result<R>,
    ) -> Result<R> {
        let slots = match serde_json::from_str::<Shaped<SaleSlots>>(text) {
            Ok(Shaped::Obj(obj)) => obj,
            Ok(Shaped::Other(kind)) => {
                return Err(Error::InvalidJson(format!(
                    "sale: expected a JSON object, got {kind}"
                )))
            }
            Err(e) => return Err(Error::InvalidJson(format!("sale: not valid JSON: {e}"))),
        };
        let sale = Sale::check(&slots, Some(defaults))?;
        let canonical = slots.slots.canonical(defaults, text.len())?;
        f(&sale, canonical)
    }

    /// Fills the defaults the contract names into the raw JSON, so that the stored
    /// content (and the comparison of a repeated id) sees the sale as it will be sent.
    pub fn normalize(value: &mut Value, defaults: &Defaults) {
        fill_in_items(value, "lines", "discount", Value::from(0));
        if let Value::Object(map) = value {
            for (key, default) in [
                ("store_id", Value::from(defaults.store_id.as_str())),
                ("currency", Value::from(defaults.currency.as_str())),
                ("rounding", Value::from(0)),
            ] {
                if map.get(key).is_none_or(Value::is_null) {
                    map.insert(key.to_string(), default);
                }
            }
        }
    }

    /// A sale from a parsed (and normalized) value, such as its stored JSON.
    pub fn parse(value: &Value) -> Result<Sale> {
        match Shaped::<SaleSlots>::deserialize(value) {
            Ok(Shaped::Obj(obj)) => Sale::check(&obj, None).map(|s| s.to_owned()),
            Ok(Shaped::Other(kind)) => Err(Error::InvalidJson(format!(
                "sale: expected a JSON object, got {kind}"
            ))),
            Err(e) => Err(Error::InvalidJson(format!("sale: {e}"))),
        }
    }

    /// [`Sale::parse`] of a stored sale's JSON text, read in one pass without building a
    /// tree of maps (the worker reads each sale it sends). The same sale: both read the
    /// same slots and check them with the same rules (`tests/sale_parse.rs` holds the
    /// text and tree readers to the same answers).
    pub fn parse_stored(text: &str) -> Result<Sale> {
        match serde_json::from_str::<Shaped<SaleSlots>>(text) {
            Ok(Shaped::Obj(obj)) => Sale::check(&obj, None).map(|s| s.to_owned()),
            Ok(Shaped::Other(kind)) => Err(Error::InvalidJson(format!(
                "sale: expected a JSON object, got {kind}"
            ))),
            Err(e) => Err(Error::InvalidJson(format!("sale: {e}"))),
        }
    }

    /// The contract's rules, checked in a fixed order (so a sale with several faults gets
    /// the same message however its JSON is laid out). `defaults` fills in what
    /// [`Sale::normalize`] would.
    fn check<'g>(obj: &'g Obj<SaleSlots>, defaults: Option<&'g Defaults>) -> Result<SaleView<'g>> {
        let at = At {
            base: "sale",
            index: None,
        };
        at.deny_unknown(&obj.unknown, SALE_KEYS)?;
        let f = &obj.slots;
        let id = Field::new(at, "id", &f.id).id()?;
        let currency = Field::new(at, "currency", &f.currency)
            .or(defaults.map(|d| d.currency.as_str()))
            .text()?;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::invalid(
                at.path("currency"),
                "must be an ISO 4217 code like \"NOK\"",
            ));
        }
        let items = at.objects("lines", &f.lines)?;
        // A short list is searched (no hashing); a long one hashed.
        let mut line_ids = HashSet::with_capacity(if items.len() > SHORT_LIST {
            items.len()
        } else {
            0
        });
        let mut lines: Vec<SaleLineView> = Vec::with_capacity(items.len());
        let mut total: i128 = 0;
        for (i, item) in items.iter().enumerate() {
            let at = At {
                base: "sale.lines",
                index: Some(i),
            };
            at.deny_unknown(&item.unknown, SALE_LINE_KEYS)?;
            let l = &item.slots;
            let id_field = Field::new(at, "line_id", &l.line_id);
            let line_id = id_field.id()?;
            let twice = if items.len() > SHORT_LIST {
                !line_ids.insert(line_id)
            } else {
                lines.iter().any(|l| l.line_id == line_id)
            };
            if twice {
                return Err(Error::invalid(
                    id_field.path(),
                    format!("{line_id:?} is used twice"),
                ));
            }
            let q = Field::new(at, "quantity", &l.quantity);
            let quantity = in_quantity_range(q.number()?, || q.path())?;
            let p = Field::new(at, "unit_price", &l.unit_price);
            let unit_price = not_negative(p.money()?, || p.path())?;
            let d = Field::new(at, "discount", &l.discount);
            let discount = not_negative(d.money_opt()?.unwrap_or(0), || d.path())?;
            let gross = line_gross(quantity, unit_price)?;
            if discount > gross {
                return Err(Error::invalid(
                    d.path(),
                    format!("{discount} is more than the line's total {gross}"),
                ));
            }
            let t = Field::new(at, "tax_rate", &l.tax_rate);
            let tax_rate = t.number_opt()?;
            if let Some(rate) = tax_rate {
                if !(0.0..=100.0).contains(&rate) {
                    return Err(Error::invalid(
                        t.path(),
                        "must be a percentage from 0 to 100",
                    ));
                }
            }
            total += i128::from(gross) - i128::from(discount);
            lines.push(SaleLineView {
                line_id,
                sku: Field::new(at, "sku", &l.sku).id()?,
                name: Field::new(at, "name", &l.name).text_opt()?,
                quantity,
                unit_price,
                discount,
                tax_rate,
            });
        }
        let rounding = Field::new(at, "rounding", &f.rounding)
            .money_opt()?
            .unwrap_or(0);
        let items = at.objects("payments", &f.payments)?;
        let mut payment_ids = HashSet::with_capacity(if items.len() > SHORT_LIST {
            items.len()
        } else {
            0
        });
        let mut payments: Vec<PaymentView> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = At {
                base: "sale.payments",
                index: Some(i),
            };
            at.deny_unknown(&item.unknown, PAYMENT_KEYS)?;
            let p = &item.slots;
            let pid: Cow<str> = match Field::new(at, "id", &p.id).id_opt()? {
                Some(pid) => Cow::Borrowed(pid),
                None => Cow::Owned(format!("{id}-P-{}", i + 1)),
            };
            let twice = if items.len() > SHORT_LIST {
                !payment_ids.insert(pid.clone())
            } else {
                payments.iter().any(|p| p.id == pid)
            };
            if twice {
                return Err(Error::invalid(
                    at.path("id"),
                    format!("{pid:?} is used twice"),
                ));
            }
            payments.push(PaymentView {
                id: pid,
                method: Field::new(at, "method", &p.method).text()?,
                amount: Field::new(at, "amount", &p.amount).money()?,
                transaction_id: Field::new(at, "transaction_id", &p.transaction_id).id_opt()?,
            });
        }
        let paid: i128 = payments.iter().map(|p| i128::from(p.amount)).sum();
        let due = total + i128::from(rounding);
        if due != paid {
            return Err(Error::invalid(
                "sale.payments",
                format!(
                    "amounts add up to {paid} but the lines minus discounts plus rounding come to {due}"
                ),
            ));
        }
        Ok(SaleView {
            id,
            created_at: Field::new(at, "created_at", &f.created_at).time()?,
            store_id: Field::new(at, "store_id", &f.store_id)
                .or(defaults.map(|d| d.store_id.as_str()))
                .id()?,
            currency,
            customer_id: Field::new(at, "customer_id", &f.customer_id).id_opt()?,
            salesperson_id: Field::new(at, "salesperson_id", &f.salesperson_id).id_opt()?,
            rounding,
            lines,
            payments,
        })
    }

    pub fn line(&self, line_id: &str) -> Option<&SaleLine> {
        self.lines.iter().find(|l| l.line_id == line_id)
    }
}

/// Up to this many lines (or payments), a repeated id is found by comparing with those
/// before it; beyond, by hashing.
const SHORT_LIST: usize = 32;

/// A checked sale whose strings are borrowed from the JSON text it was read from (see
/// [`Sale::read_with`]); [`SaleView::to_owned`] is the [`Sale`].
#[derive(Debug)]
pub struct SaleView<'a> {
    pub id: &'a str,
    pub created_at: DateTime<FixedOffset>,
    pub store_id: &'a str,
    pub currency: &'a str,
    pub customer_id: Option<&'a str>,
    pub salesperson_id: Option<&'a str>,
    pub rounding: i64,
    pub lines: Vec<SaleLineView<'a>>,
    pub payments: Vec<PaymentView<'a>>,
}

/// A [`SaleLine`] borrowed from the text.
#[derive(Debug)]
pub struct SaleLineView<'a> {
    pub line_id: &'a str,
    pub sku: &'a str,
    pub name: Option<&'a str>,
    pub quantity: f64,
    pub unit_price: i64,
    pub discount: i64,
    pub tax_rate: Option<f64>,
}

/// A [`Payment`] borrowed from the text (an id the sale did not give is made up).
#[derive(Debug)]
pub struct PaymentView<'a> {
    pub id: Cow<'a, str>,
    pub method: &'a str,
    pub amount: i64,
    pub transaction_id: Option<&'a str>,
}

impl SaleView<'_> {
    pub fn to_owned(&self) -> Sale {
        Sale {
            id: self.id.to_string(),
            created_at: self.created_at,
            store_id: self.store_id.to_string(),
            currency: self.currency.to_string(),
            customer_id: self.customer_id.map(str::to_string),
            salesperson_id: self.salesperson_id.map(str::to_string),
            rounding: self.rounding,
            lines: self
                .lines
                .iter()
                .map(|l| SaleLine {
                    line_id: l.line_id.to_string(),
                    sku: l.sku.to_string(),
                    name: l.name.map(str::to_string),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    discount: l.discount,
                    tax_rate: l.tax_rate,
                })
                .collect(),
            payments: self
                .payments
                .iter()
                .map(|p| Payment {
                    id: p.id.to_string(),
                    method: p.method.to_string(),
                    amount: p.amount,
                    transaction_id: p.transaction_id.map(str::to_string),
                })
                .collect(),
        }
    }
}

/// A sale's fields as read from its JSON, before the checks.
#[derive(Default)]
struct SaleSlots<'de> {
    id: Got<'de>,
    created_at: Got<'de>,
    store_id: Got<'de>,
    currency: Got<'de>,
    customer_id: Got<'de>,
    salesperson_id: Got<'de>,
    rounding: Got<'de>,
    lines: List<'de, LineSlots<'de>>,
    payments: List<'de, PaymentSlots<'de>>,
}

#[derive(Default)]
struct LineSlots<'de> {
    line_id: Got<'de>,
    sku: Got<'de>,
    name: Got<'de>,
    quantity: Got<'de>,
    unit_price: Got<'de>,
    discount: Got<'de>,
    tax_rate: Got<'de>,
}

#[derive(Default)]
struct PaymentSlots<'de> {
    id: Got<'de>,
    method: Got<'de>,
    amount: Got<'de>,
    transaction_id: Got<'de>,
}

impl<'de> Slots<'de> for SaleSlots<'de> {
    fn read<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<bool, A::Error> {
        match key {
            "id" => self.id = map.next_value()?,
            "created_at" => self.created_at = map.next_value()?,
            "store_id" => self.store_id = map.next_value()?,
            "currency" => self.currency = map.next_value()?,
            "customer_id" => self.customer_id = map.next_value()?,
            "salesperson_id" => self.salesperson_id = map.next_value()?,
            "rounding" => self.rounding = map.next_value()?,
            "lines" => self.lines = map.next_value()?,
            "payments" => self.payments = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Slots<'de> for LineSlots<'de> {
    fn read<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<bool, A::Error> {
        match key {
            "line_id" => self.line_id = map.next_value()?,
            "sku" => self.sku = map.next_value()?,
            "name" => self.name = map.next_value()?,
            "quantity" => self.quantity = map.next_value()?,
            "unit_price" => self.unit_price = map.next_value()?,
            "discount" => self.discount = map.next_value()?,
            "tax_rate" => self.tax_rate = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Slots<'de> for PaymentSlots<'de> {
    fn read<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<bool, A::Error> {
        match key {
            "id" => self.id = map.next_value()?,
            "method" => self.method = map.next_value()?,
            "amount" => self.amount = map.next_value()?,
            "transaction_id" => self.transaction_id = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl SaleSlots<'_> {
    /// The stored form of a checked sale: what `fields::canonical_json` writes for the
    /// normalized value (keys sorted at every level, defaults filled in, nulls kept).
    fn canonical(&self, defaults: &Defaults, size_hint: usize) -> Result<String> {
        let mut c = Canon::with_capacity(size_hint + 64);
        let zero = Got::Num(serde_json::Number::from(0));
        let store_default = Got::Str(std::borrow::Cow::Borrowed(&defaults.store_id));
        let currency_default = Got::Str(std::borrow::Cow::Borrowed(&defaults.currency));
        fn or<'a, 'b>(got: &'a Got<'b>, default: &'a Got<'b>) -> &'a Got<'b> {
            if got.is_none() {
                default
            } else {
                got
            }
        }
        c.open(b'{');
        c.field("created_at", &self.created_at)?;
        c.field("currency", or(&self.currency, &currency_default))?;
        c.field("customer_id", &self.customer_id)?;
        c.field("id", &self.id)?;
        c.key("lines");
        c.open(b'[');
        for line in list_items(&self.lines) {
            c.open(b'{');
            c.field("discount", or(&line.discount, &zero))?;
            c.field("line_id", &line.line_id)?;
            c.field("name", &line.name)?;
            c.field("quantity", &line.quantity)?;
            c.field("sku", &line.sku)?;
            c.field("tax_rate", &line.tax_rate)?;
            c.field("unit_price", &line.unit_price)?;
            c.close(b'}');
        }
        c.close(b']');
        c.key("payments");
        c.open(b'[');
        for p in list_items(&self.payments) {
            c.open(b'{');
            c.field("amount", &p.amount)?;
            c.field("id", &p.id)?;
            c.field("method", &p.method)?;
            c.field("transaction_id", &p.transaction_id)?;
            c.close(b'}');
        }
        c.close(b']');
        c.field("rounding", or(&self.rounding, &zero))?;
        c.field("salesperson_id", &self.salesperson_id)?;
        c.field("store_id", or(&self.store_id, &store_default))?;
        c.close(b'}');
        c.finish()
    }
}

/// The objects of a checked list (a checked sale holds nothing else in it).
fn list_items<'l, 'de, T>(list: &'l List<'de, T>) -> impl Iterator<Item = &'l T> {
    let items: &[Shaped<'de, T>] = match list {
        List::Items(items) => items,
        _ => &[],
    };
    items.iter().filter_map(|i| match i {
        Shaped::Obj(o) => Some(&o.slots),
        Shaped::Other(_) => None,
    })
}

/// Sets `key` to `default` in every object of the array `list` that lacks it (or has null).
fn fill_in_items(value: &mut Value, list: &str, key: &str, default: Value) {
    if let Some(items) = value.get_mut(list).and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            if item.get(key).is_none_or(Value::is_null) {
                item.insert(key.to_string(), default.clone());
            }
        }
    }
}

impl Return {
    /// Fills the contract's defaults (`restock` true) so that an explicit default and an
    /// omitted one are the same content.
    pub fn normalize(value: &mut Value) {
        fill_in_items(value, "lines", "restock", Value::from(true));
    }

    pub fn parse(value: &Value) -> Result<Return> {
        let f = Fields::new(value, "return")?;
        f.deny_unknown(RETURN_KEYS)?;
        let id = f.id("id")?.to_string();
        let mut line_ids = HashSet::new();
        let mut lines = Vec::new();
        for l in f.objects("lines")? {
            l.deny_unknown(RETURN_LINE_KEYS)?;
            let line_id = l.id("line_id")?;
            unique(&mut line_ids, &l, "line_id", line_id)?;
            lines.push(ReturnLine {
                line_id: line_id.to_string(),
                quantity: positive_quantity(&l, "quantity")?,
                amount: non_negative_money(&l, "amount", l.money("amount")?)?,
                restock: l.bool_opt("restock")?.unwrap_or(true),
                reason: l.text_opt("reason")?.map(str::to_string),
            });
        }
        let refunds = match f.objects_opt("refunds")? {
            Some(items) => parse_payments(items, &id, "refund")?,
            None => Vec::new(),
        };
        Ok(Return {
            sale_id: f.id("sale_id")?.to_string(),
            created_at: f.time("created_at")?,
            id,
            lines,
            refunds,
        })
    }

    /// Checks the lines against the sale when the sale was recorded on this terminal:
    /// every line must exist, and no more may be returned than was sold, counting the
    /// returns already recorded.
    pub fn check_against(&self, sale: &Sale, earlier: &[Return]) -> Result<()> {
        for (i, line) in self.lines.iter().enumerate() {
            let path = format!("return.lines[{i}]");
            let sold = sale.line(&line.line_id).ok_or_else(|| {
                Error::invalid(
                    format!("{path}.line_id"),
                    format!("sale {:?} has no line {:?}", sale.id, line.line_id),
                )
            })?;
            let returned: f64 = earlier
                .iter()
                .flat_map(|r| r.lines.iter())
                .filter(|l| l.line_id == line.line_id)
                .map(|l| l.quantity)
                .sum();
            if line.quantity + returned > sold.quantity + 1e-9 {
                return Err(Error::invalid(
                    format!("{path}.quantity"),
                    format!(
                        "{} would bring the returned quantity of line {:?} to {} but {} was sold",
                        line.quantity,
                        line.line_id,
                        line.quantity + returned,
                        sold.quantity
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Cancellation {
    pub fn parse(value: &Value) -> Result<Cancellation> {
        let f = Fields::new(value, "cancellation")?;
        f.deny_unknown(CANCEL_KEYS)?;
        let lines = match f.objects_opt("lines")? {
            None => None,
            Some(items) if items.is_empty() => {
                return Err(Error::invalid(
                    f.path("lines"),
                    "must hold at least one line (leave it out to cancel the whole order)",
                ))
            }
            Some(items) => {
                let mut ids = HashSet::new();
                let mut lines = Vec::new();
                for l in items {
                    l.deny_unknown(CANCEL_LINE_KEYS)?;
                    let line_id = l.id("line_id")?;
                    unique(&mut ids, &l, "line_id", line_id)?;
                    let quantity = match l.number_opt("quantity")? {
                        Some(_) => Some(positive_quantity(&l, "quantity")?),
                        None => None,
                    };
                    lines.push(CancelLine {
                        line_id: line_id.to_string(),
                        quantity,
                    });
                }
                Some(lines)
            }
        };
        Ok(Cancellation {
            id: f.id("id")?.to_string(),
            order_id: f.id("order_id")?.to_string(),
            created_at: f.time("created_at")?,
            reason: f.text_opt("reason")?.map(str::to_string),
            lines,
        })
    }

    /// Omnium cancels whole lines, so a line quantity, when given, must be the sale line's.
    pub fn check_against(&self, sale: &Sale) -> Result<()> {
        for (i, line) in self.lines.iter().flatten().enumerate() {
            let path = format!("cancellation.lines[{i}]");
            let sold = sale.line(&line.line_id).ok_or_else(|| {
                Error::invalid(
                    format!("{path}.line_id"),
                    format!("order {:?} has no line {:?}", sale.id, line.line_id),
                )
            })?;
            if let Some(q) = line.quantity {
                if (q - sold.quantity).abs() > 1e-9 {
                    return Err(Error::invalid(
                        format!("{path}.quantity"),
                        format!(
                            "Omnium cancels whole lines: line {:?} has quantity {}, got {q}",
                            line.line_id, sold.quantity
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> Defaults {
        Defaults {
            store_id: "oslo-1".into(),
            currency: "NOK".into(),
        }
    }

    /// The worker's one-pass read of a stored sale gives the sale the tree reader gives,
    /// and refuses what it refuses.
    #[test]
    fn a_stored_sale_read_in_one_pass_is_the_sale_the_tree_reader_gives() {
        let (_, stored) = Sale::read(&sale_json().to_string(), &defaults()).unwrap();
        let tree: Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(
            Sale::parse_stored(&stored).unwrap(),
            Sale::parse(&tree).unwrap()
        );
        let mut bad = tree.clone();
        bad["lines"][0]["quantity"] = json!("two");
        let text = bad.to_string();
        assert_eq!(
            Sale::parse_stored(&text).unwrap_err().to_string(),
            Sale::parse(&bad).unwrap_err().to_string()
        );
        assert!(Sale::parse_stored("[1]").is_err());
        assert!(Sale::parse_stored("{").is_err());
    }

    fn sale_json() -> Value {
        json!({"id": "S-1001", "created_at": "2026-11-28T10:15:00+01:00", "customer_id": "C-77",
               "lines": [{"line_id": "1", "sku": "SKU-1", "name": "T-shirt", "quantity": 2,
                          "unit_price": 19950, "discount": 0, "tax_rate": 25}],
               "payments": [{"id": "P1", "method": "Card", "amount": 39900, "transaction_id": "tx-1"}]})
    }

    fn parse(mut v: Value) -> Result<Sale> {
        Sale::normalize(&mut v, &defaults());
        Sale::parse(&v)
    }

    #[test]
    fn the_contract_example_is_a_valid_sale_with_defaults() {
        let s = parse(sale_json()).unwrap();
        assert_eq!(
            (s.store_id.as_str(), s.currency.as_str(), s.rounding),
            ("oslo-1", "NOK", 0)
        );
        assert_eq!(s.lines[0].unit_price, 19950);
    }

    #[test]
    fn the_balance_rule_counts_discounts_rounding_and_fractional_quantities() {
        let mut v = sale_json();
        v["lines"][0]["quantity"] = json!(0.333);
        v["lines"][0]["discount"] = json!(100);
        v["rounding"] = json!(-43);
        // round(0.333 × 19950) = 6643; 6643 − 100 − 43 = 6500
        v["payments"][0]["amount"] = json!(6500);
        assert!(parse(v.clone()).is_ok());
        v["payments"][0]["amount"] = json!(6501);
        let err = parse(v).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.starts_with("sale.payments:")),
            "{err}"
        );
    }

    #[test]
    fn rule_breaks_name_the_field() {
        type Mutation = fn(&mut Value);
        let cases: Vec<(Mutation, &str)> = vec![
            (|v| v["lines"] = json!([]), "sale.lines"),
            (|v| v["payments"] = json!([]), "sale.payments"),
            (
                |v| {
                    v.as_object_mut().unwrap().remove("id");
                },
                "sale.id",
            ),
            (|v| v["id"] = json!("x".repeat(129)), "sale.id"),
            (
                |v| v["created_at"] = json!("2026-11-28 10:15"),
                "sale.created_at",
            ),
            (
                |v| v["lines"][0]["quantity"] = json!(0),
                "sale.lines[0].quantity",
            ),
            (
                |v| v["lines"][0]["unit_price"] = json!(199.5),
                "sale.lines[0].unit_price",
            ),
            (|v| v["lines"][0]["sku"] = json!(""), "sale.lines[0].sku"),
            (
                |v| v["lines"][0]["colour"] = json!("red"),
                "sale.lines[0].colour",
            ),
            (
                |v| {
                    let line = v["lines"][0].clone();
                    v["lines"].as_array_mut().unwrap().push(line);
                },
                "sale.lines[1].line_id",
            ),
            (|v| v["currency"] = json!("kr"), "sale.currency"),
        ];
        for (mutate, field) in cases {
            let mut v = sale_json();
            mutate(&mut v);
            let err = parse(v).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidInput(m) if m.starts_with(field)),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn a_return_cannot_exceed_what_was_sold() {
        let sale = parse(sale_json()).unwrap();
        let r = |q: f64| {
            Return::parse(
                &json!({"id": "R-1", "sale_id": "S-1001", "created_at": "2026-11-28T11:00:00Z",
                "lines": [{"line_id": "1", "quantity": q, "amount": 19950}]}),
            )
            .unwrap()
        };
        let first = r(1.0);
        first.check_against(&sale, &[]).unwrap();
        r(1.0)
            .check_against(&sale, std::slice::from_ref(&first))
            .unwrap();
        let err = r(2.0).check_against(&sale, &[first]).unwrap_err();
        assert!(
            err.to_string().starts_with("return.lines[0].quantity"),
            "{err}"
        );
        let bad_line = Return::parse(
            &json!({"id": "R-2", "sale_id": "S-1001", "created_at": "2026-11-28T11:00:00Z",
            "lines": [{"line_id": "9", "quantity": 1, "amount": 1}]}),
        )
        .unwrap();
        assert!(bad_line
            .check_against(&sale, &[])
            .unwrap_err()
            .to_string()
            .contains("no line \"9\""));
    }

    #[test]
    fn a_cancellation_without_lines_is_the_whole_order() {
        let c = Cancellation::parse(&json!({"id": "X-1", "order_id": "S-1001",
            "created_at": "2026-11-28T11:00:00Z", "reason": "Customer changed mind"}))
        .unwrap();
        assert!(c.lines.is_none());
        let err = Cancellation::parse(&json!({"id": "X-1", "order_id": "S-1001",
            "created_at": "2026-11-28T11:00:00Z", "lines": []}))
        .unwrap_err();
        assert!(err.to_string().starts_with("cancellation.lines"));
    }
}
