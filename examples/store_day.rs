//! A Saturday at the till of a small Oslo outdoor-clothing shop, synced to a simulated Omnium.
//!
//!     cargo run --release --features sim --example store_day
//!
//! Every data flow between a Flow till and Omnium, in one compact day:
//! - morning: the first sync brings a catalog of a few thousand products (prices, categories,
//!   stock), the store and its opening hours, a purchase order and a click & collect order; the
//!   delivery is received against the purchase order, one line over-delivered;
//! - the day: ~300 sales of real catalog items (looked up by EAN and by name), ~15 returns and
//!   ~5 cancellations, a customer created at the till, a PDF receipt for every sale with a
//!   customer, a click & collect order from the web shop handed over in two goes, and an older
//!   one that Omnium cancels as expired while the shop is offline;
//! - part of the day Omnium is unreachable; when it comes back it is flaky for a while (HTTP
//!   500s, a 429, a sale that commits but whose answer is lost);
//! - at closing the demo waits for the outbox to drain, syncs once more, and asks the
//!   *simulator* what it received: every sale, return, cancellation, receipt file, customer,
//!   goods reception and pickup exactly once, and the till's stock equal to Omnium's.
//!
//! Everything is generated from seeds, so every run records the same day.

use chrono::Datelike;
use flow_omnium::sim::{CatalogSpec, Fault, FaultKind, SimConfig, Simulator};
use flow_omnium::Client;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Sales in the day; the simulator is down while sales in `OUTAGE` are rung up.
const SALES: usize = 300;
const OUTAGE: std::ops::RangeInclusive<usize> = 100..=200;
/// A return after every 20th sale, a cancellation after every 60th: 15 and 5 in all.
const RETURN_EVERY: usize = 20;
const CANCEL_EVERY: usize = 60;
/// Wall time per sale: slow enough to watch the outbox move, fast enough for a demo.
const SALE_PACE: Duration = Duration::from_millis(20);
/// How often the display reads `status_json()`, drains events and looks at the simulator.
const POLL_EVERY: Duration = Duration::from_millis(100);
const SEED: u64 = 20_261_128;
/// The day (a Saturday: the shop's hours come from Omnium) and its UTC offset.
const DATE: &str = "2026-11-28";
const OFFSET: &str = "+01:00";
const STORE: &str = "oslo-1";
/// The catalog Omnium holds, and how many of its SKUs are on this shop's shelves.
const PRODUCTS: usize = 3_600;
const SHELF: usize = 150;
/// Clothing: 25 % VAT on everything.
const VAT: i64 = 25;

/// Moments of the day, as the sale number they come before.
const SEARCH_AT: usize = 6;
const NEW_CUSTOMER_AT: usize = 14;
const WEB_ORDER_AT: usize = 25;
const READY_AT: usize = 38;
const EXPIRE_AT: usize = 130;
const PARTIAL_PICKUP_AT: usize = 150;
const LATE_PICKUP_AT: usize = 170;
const REST_PICKUP_AT: usize = 235;

/// The customer who signs up for the club at the till.
const NEW_CUSTOMER: &str = "C-5001";
const NEW_CUSTOMER_NAME: &str = "Ingrid Solberg";
const NEW_CUSTOMER_LOYALTY: &str = "L-775512";

// ---------------------------------------------------------------------------------------------
// A tiny deterministic generator: the same seed gives the same day on every run.

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------------
// The shop: what Omnium says about it, and the catalog items on its shelves.

/// A sellable SKU as the till read it from `product_json` (price in øre, VAT included).
#[derive(Clone)]
struct Item {
    sku: String,
    name: String,
    ean: String,
    price: i64,
}

/// `None` for an inactive product or one without a price valid now.
fn item_of(p: &Value) -> Option<Item> {
    if p["active"] != true {
        return None;
    }
    Some(Item {
        sku: p["sku"].as_str()?.to_string(),
        name: p["name"].as_str()?.to_string(),
        ean: p["ean"].as_str().unwrap_or("").to_string(),
        price: p["price"]["unit_price"].as_i64().filter(|&p| p > 0)?,
    })
}

/// The receipt header, from `store_json`.
#[derive(Default)]
struct Shop {
    name: String,
    address: String,
    org: String,
}

/// Today's opening hours in minutes after midnight; the day's sales are spread over them.
struct Hours {
    open: u32,
    close: u32,
}

fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn minutes(text: &Value) -> Option<u32> {
    let (h, m) = text.as_str()?.split_once(':')?;
    Some(h.parse::<u32>().ok()? * 60 + m.parse::<u32>().ok()?)
}

impl Hours {
    fn secs(&self, n: usize) -> u64 {
        self.open as u64 * 60 + (n as u64 * (self.close - self.open) as u64 * 60) / SALES as u64
    }

    /// `HH:MM` for sale `n` of the day.
    fn clock(&self, n: usize) -> String {
        hhmm((self.secs(n) / 60) as u32)
    }

    fn timestamp(&self, n: usize, extra_secs: u64) -> String {
        at_secs(self.secs(n) + extra_secs)
    }
}

fn at_secs(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    format!("{DATE}T{h:02}:{m:02}:{s:02}{OFFSET}")
}

/// "Mon–Fri 09:00–20:00 · Sat 10:00–18:00 · Sun closed" from `opening_hours`.
fn week_hours(hours: &Value) -> String {
    const DAYS: [(&str, &str); 7] = [
        ("monday", "Mon"),
        ("tuesday", "Tue"),
        ("wednesday", "Wed"),
        ("thursday", "Thu"),
        ("friday", "Fri"),
        ("saturday", "Sat"),
        ("sunday", "Sun"),
    ];
    let span = |d: &Value| match (&d["open"], d["from"].as_str(), d["to"].as_str()) {
        (Value::Bool(true), Some(f), Some(t)) => format!("{f}–{t}"),
        _ => "closed".to_string(),
    };
    let mut parts = Vec::new();
    let mut i = 0;
    while i < DAYS.len() {
        let s = span(&hours[DAYS[i].0]);
        let mut j = i;
        while j + 1 < DAYS.len() && span(&hours[DAYS[j + 1].0]) == s {
            j += 1;
        }
        let days = if i == j {
            DAYS[i].1.to_string()
        } else {
            format!("{}–{}", DAYS[i].1, DAYS[j].1)
        };
        parts.push(format!("{days} {s}"));
        i = j + 1;
    }
    parts.join(" · ")
}

// ---------------------------------------------------------------------------------------------
// What the till remembers of its own sales, to ring up returns and cancellations later.

struct SoldLine {
    line_id: String,
    sku: String,
    quantity: f64,
    /// Quantity × price − discount: what the customer paid for the line.
    net: i64,
    returned: f64,
}

struct SaleRecord {
    id: String,
    lines: Vec<SoldLine>,
    /// Refunds go back the way the customer paid.
    method: &'static str,
    cancelled: bool,
}

/// A recorded cancellation, for checking against the simulator at the end.
enum Cancelled {
    Order(String),
    Line(String, String),
}

/// A receipt sent with its PDF, to compare byte for byte with what Omnium stored.
struct ReceiptRecord {
    id: String,
    sale_id: String,
    file_name: String,
    pdf: Vec<u8>,
}

struct Till {
    rng: XorShift,
    hours: Hours,
    shop: Shop,
    shelf: Vec<Item>,
    sales: Vec<SaleRecord>,
    returns: Vec<(String, String)>,
    cancellations: Vec<Cancelled>,
    receipts: Vec<ReceiptRecord>,
    /// Money taken, per payment method.
    takings: BTreeMap<&'static str, i64>,
    /// What the day did to each SKU's stock in oslo-1: sales −, restocked returns and goods
    /// received +.
    stock_delta: HashMap<String, f64>,
}

/// Cash is settled to whole kroner (øre coins are long gone); the difference is `rounding`.
fn cash_rounding(total: i64) -> i64 {
    (total + 50) / 100 * 100 - total
}

impl Till {
    fn new() -> Till {
        Till {
            rng: XorShift(SEED),
            // Until the store's hours for the day are read from Omnium.
            hours: Hours {
                open: 9 * 60,
                close: 21 * 60,
            },
            shop: Shop::default(),
            shelf: Vec::new(),
            sales: Vec::new(),
            returns: Vec::new(),
            cancellations: Vec::new(),
            receipts: Vec::new(),
            takings: BTreeMap::new(),
            stock_delta: HashMap::new(),
        }
    }

    /// Rings up sale number `n`: 1–4 distinct items from the shelf (`first` among them when
    /// the cashier looked it up), now and then for a club member.
    fn ring_up(&mut self, n: usize, first: Option<&Item>, customer: Option<&str>) -> Value {
        let id = format!("S-20261128-{n:04}");
        let rng = &mut self.rng;
        let wanted = 1 + rng.below(4) as usize;
        let mut picked: Vec<Item> = first.into_iter().cloned().collect();
        while picked.len() < wanted {
            let it = rng.pick(&self.shelf);
            if !picked.iter().any(|p| p.sku == it.sku) {
                picked.push(it.clone());
            }
        }
        let mut lines = Vec::new();
        let mut sold = Vec::new();
        let mut total = 0;
        for (i, it) in picked.iter().enumerate() {
            let quantity = if rng.chance(20) {
                (2 + rng.below(2)) as f64
            } else {
                1.0
            };
            let gross = (quantity * it.price as f64).round() as i64;
            // The customer club gives 10–30 % off now and then.
            let discount = if rng.chance(12) {
                gross * (10 * (1 + rng.below(3) as i64)) / 100
            } else {
                0
            };
            total += gross - discount;
            let line_id = (i + 1).to_string();
            lines.push(json!({
                "line_id": line_id, "sku": it.sku, "name": it.name,
                "quantity": json_quantity(quantity), "unit_price": it.price,
                "discount": discount, "tax_rate": VAT,
            }));
            *self.stock_delta.entry(it.sku.clone()).or_default() -= quantity;
            sold.push(SoldLine {
                line_id,
                sku: it.sku.clone(),
                quantity,
                net: gross - discount,
                returned: 0.0,
            });
        }
        let (paid, rounding) = pay(rng, total);
        let mut payments = Vec::new();
        for (k, &(method, amount)) in paid.iter().enumerate() {
            let mut p = json!({"id": format!("P{}", k + 1), "method": method, "amount": amount});
            if method != "Cash" {
                p["transaction_id"] = json!(format!("tx-{id}-{}", k + 1));
            }
            payments.push(p);
            *self.takings.entry(method).or_default() += amount;
        }
        // Refunds go back to the card when a gift card was topped up by card.
        let method = paid.last().map_or("Card", |p| p.0);
        let mut sale = json!({
            "id": id, "created_at": self.hours.timestamp(n, rng.below(60)),
            "salesperson_id": format!("emp-{}", 1 + rng.below(4)),
            "rounding": rounding, "lines": lines, "payments": payments,
        });
        let member = rng
            .chance(30)
            .then(|| format!("C-{}", 1000 + rng.below(400)));
        if let Some(c) = customer.map(str::to_string).or(member) {
            sale["customer_id"] = json!(c);
        }
        self.sales.push(SaleRecord {
            id,
            lines: sold,
            method,
            cancelled: false,
        });
        sale
    }

    /// A customer brings back part of an earlier purchase. `None` if nothing fits.
    fn take_back(&mut self, n: usize) -> Option<Value> {
        let rng = &mut self.rng;
        // Only sales from a while ago, not cancelled, with something left to return.
        let candidates: Vec<usize> = (0..self.sales.len().saturating_sub(5))
            .filter(|&i| {
                let s = &self.sales[i];
                !s.cancelled && s.lines.iter().any(|l| l.quantity > l.returned)
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let sale = &mut self.sales[*rng.pick(&candidates)];
        let mut lines = Vec::new();
        let mut credited = 0;
        for line in sale.lines.iter_mut().filter(|l| l.quantity > l.returned) {
            if !lines.is_empty() && !rng.chance(25) {
                break;
            }
            let left = line.quantity - line.returned;
            // Partial when there is more than one: "I only needed two of them".
            let quantity = if left > 1.0 {
                (1 + rng.below(left as u64 - 1)) as f64
            } else {
                left
            };
            let amount = (line.net as f64 * quantity / line.quantity).round() as i64;
            line.returned += quantity;
            credited += amount;
            let (restock, reason) = *rng.pick(&[
                (true, "Angret kjøp"),
                (true, "Feil størrelse"),
                (false, "Skadet"),
                (false, "Reklamasjon"),
            ]);
            if restock {
                *self.stock_delta.entry(line.sku.clone()).or_default() += quantity;
            }
            lines.push(json!({
                "line_id": line.line_id, "quantity": json_quantity(quantity),
                "amount": amount, "restock": restock, "reason": reason,
            }));
        }
        let id = format!("R-20261128-{:02}", self.returns.len() + 1);
        let refund = match sale.method {
            // Cash goes back in whole kroner, like the sale was paid.
            "Cash" => {
                json!({"id": "P1", "method": "Cash", "amount": credited + cash_rounding(credited)})
            }
            m => json!({"id": "P1", "method": m, "amount": credited,
                        "transaction_id": format!("tx-{id}")}),
        };
        self.returns.push((sale.id.clone(), id.clone()));
        Some(json!({
            "id": id, "sale_id": sale.id, "created_at": self.hours.timestamp(n, 70),
            "lines": lines, "refunds": [refund],
        }))
    }

    /// A customer at the till changes their mind about a purchase just rung up: alternately
    /// the whole order, or one whole line (Omnium cancels whole lines only, so no `quantity`).
    fn cancel_recent(&mut self, n: usize) -> Value {
        let id = format!("X-20261128-{:02}", self.cancellations.len() + 1);
        let want_line = self.cancellations.len() % 2 == 1;
        // The newest of the last few sales that fits; returns never pick these (see take_back).
        let recent = self.sales.len().saturating_sub(5)..self.sales.len();
        let fits = |s: &SaleRecord| !s.cancelled && (!want_line || s.lines.len() > 1);
        let idx = recent
            .clone()
            .rev()
            .find(|&i| fits(&self.sales[i]))
            .unwrap_or(recent.end - 1);
        let sale = &mut self.sales[idx];
        sale.cancelled = true;
        let mut c = json!({
            "id": id, "order_id": sale.id, "created_at": self.hours.timestamp(n, 80),
            "reason": "Kunden ombestemte seg",
        });
        if want_line && sale.lines.len() > 1 {
            let line = sale.lines[sale.lines.len() - 1].line_id.clone();
            c["lines"] = json!([{"line_id": line}]);
            self.cancellations
                .push(Cancelled::Line(sale.id.clone(), line));
        } else {
            self.cancellations.push(Cancelled::Order(sale.id.clone()));
        }
        c
    }

    /// The receipt of sale `n` and its PDF, for a customer who wants it in "my purchases".
    fn receipt(&self, n: usize, sale: &Value, who: &str) -> (Value, Vec<u8>) {
        let number = format!("t01-{n:04}");
        let file_name = format!("kvittering-{number}.pdf");
        let paid: i64 = each(&sale["payments"])
            .filter_map(|p| p["amount"].as_i64())
            .sum();
        let goods = paid - sale["rounding"].as_i64().unwrap_or(0);
        // VAT included in the price: 25/125 of it.
        let tax = (goods * VAT + (100 + VAT) / 2) / (100 + VAT);
        let receipt = json!({
            "id": format!("RC-{}", sale["id"].as_str().unwrap_or("")),
            "sale_id": sale["id"], "receipt_number": number,
            "issued_at": sale["created_at"], "total": paid, "tax_total": tax,
            "currency": "NOK", "customer_id": sale["customer_id"], "file_name": file_name,
        });
        let text = receipt_text(&self.shop, sale, &number, &self.hours.clock(n), tax, who);
        (receipt, pdf(&text))
    }
}

/// The elements of a JSON array (none for anything else).
fn each(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// Σ `key` over the lines of an order as Omnium holds it.
fn order_sum(o: &Value, key: &str) -> f64 {
    each(&o["orderForm"]["lineItems"])
        .filter_map(|l| l[key].as_f64())
        .sum()
}

/// Whole numbers as JSON integers (`2`, not `2.0`).
fn json_quantity(q: f64) -> Value {
    if q.fract() == 0.0 {
        json!(q as i64)
    } else {
        json!(q)
    }
}

/// The customer pays: card, Vipps, cash (rounded to whole kroner), or a gift card topped up
/// by card. Returns (method, amount) pairs and the sale's `rounding`.
fn pay(rng: &mut XorShift, total: i64) -> (Vec<(&'static str, i64)>, i64) {
    match rng.below(100) {
        0..=54 => (vec![("Card", total)], 0),
        55..=79 => (vec![("Vipps", total)], 0),
        80..=94 => {
            let rounding = cash_rounding(total);
            (vec![("Cash", total + rounding)], rounding)
        }
        _ if total > 50_000 => (vec![("GiftCard", 50_000), ("Card", total - 50_000)], 0),
        _ => (vec![("GiftCard", total)], 0),
    }
}

// ---------------------------------------------------------------------------------------------
// Money, counts, and the receipt as a one-page PDF.

/// `1 298,50` (Norwegian grouping), sign-safe.
fn nok(ore: i64) -> String {
    let digits = (ore.abs() / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(ch);
    }
    let sign = if ore < 0 { "-" } else { "" };
    format!("{sign}{grouped},{:02}", ore.abs() % 100)
}

fn kroner(ore: i64) -> String {
    format!("kr {}", nok(ore))
}

/// `6,012`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// At most `width` characters, cut with an ellipsis.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let cut: String = s.chars().take(width - 1).collect();
        format!("{cut}…")
    }
}

/// A receipt line: `left` and `right` on one 40-column line.
fn cols(left: &str, right: &str) -> String {
    let left = fit(left, 39 - right.chars().count());
    let pad = 40 - left.chars().count() - right.chars().count();
    format!("{left}{}{right}", " ".repeat(pad))
}

fn centred(s: &str) -> String {
    let s = fit(s, 40);
    format!("{}{s}", " ".repeat((40 - s.chars().count()) / 2))
}

fn method_name(m: &str) -> &str {
    match m {
        "Card" => "Bankkort",
        "Cash" => "Kontant",
        "GiftCard" => "Gavekort",
        other => other,
    }
}

/// The lines printed on sale `number`'s receipt.
fn receipt_text(
    shop: &Shop,
    sale: &Value,
    number: &str,
    clock: &str,
    tax: i64,
    who: &str,
) -> Vec<String> {
    let rule = "-".repeat(40);
    let date = format!("{}.{}.{}", &DATE[8..10], &DATE[5..7], &DATE[..4]);
    let mut t = vec![
        centred(&shop.name),
        centred(&shop.address),
        centred(&format!("Org.nr {} MVA", shop.org)),
        String::new(),
        cols(&format!("Kvittering {number}"), &format!("{date} {clock}")),
        format!(
            "Kasse t01, selger {}",
            sale["salesperson_id"].as_str().unwrap_or("?")
        ),
        rule.clone(),
    ];
    for l in each(&sale["lines"]) {
        let q = l["quantity"].as_f64().unwrap_or(0.0);
        let price = l["unit_price"].as_i64().unwrap_or(0);
        t.push(fit(l["name"].as_str().unwrap_or("?"), 40));
        t.push(cols(
            &format!("  {q} x {}", nok(price)),
            &nok((q * price as f64).round() as i64),
        ));
        let discount = l["discount"].as_i64().unwrap_or(0);
        if discount > 0 {
            t.push(cols("  Medlemsrabatt", &nok(-discount)));
        }
    }
    t.push(rule.clone());
    let rounding = sale["rounding"].as_i64().unwrap_or(0);
    if rounding != 0 {
        t.push(cols("Øreavrunding", &nok(rounding)));
    }
    let paid: i64 = each(&sale["payments"])
        .filter_map(|p| p["amount"].as_i64())
        .sum();
    t.push(cols("TOTALT NOK", &nok(paid)));
    t.push(cols(&format!("Herav mva {VAT} %"), &nok(tax)));
    for p in each(&sale["payments"]) {
        t.push(cols(
            method_name(p["method"].as_str().unwrap_or("?")),
            &nok(p["amount"].as_i64().unwrap_or(0)),
        ));
    }
    t.push(rule);
    t.push(format!("Kunde: {who}"));
    t.push(String::new());
    t.push(centred("Takk for handelen!"));
    t
}

/// A PDF string literal: ASCII as is, Latin-1 as octal escapes (WinAnsiEncoding).
fn pdf_string(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        match ch {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            ' '..='~' => out.push(ch),
            c if ('\u{a0}'..='\u{ff}').contains(&c) => out.push_str(&format!("\\{:03o}", c as u32)),
            '…' => out.push_str("\\205"),
            '–' | '−' => out.push('-'),
            _ => out.push('?'),
        }
    }
    out
}

/// A valid one-page PDF 1.4 showing `lines` in Courier on 80 mm receipt paper.
fn pdf(lines: &[String]) -> Vec<u8> {
    let height = 36 + 11 * lines.len();
    let mut content = format!("BT\n/F1 9 Tf\n11 TL\n8 {} Td\n", height - 24);
    for l in lines {
        content.push_str(&format!("({}) Tj T*\n", pdf_string(l)));
    }
    content.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 226 {height}] \
             /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>"
            .to_string(),
        // The content is ASCII, so its length in characters is its length in bytes.
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
    ];
    // A binary comment on line 2 tells transfer tools the file is binary.
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    // Every xref entry is exactly 20 bytes, its end of line included.
    let mut tail = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for o in &offsets {
        tail.push_str(&format!("{o:010} 00000 n \n"));
    }
    tail.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    out.extend_from_slice(tail.as_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// The display: permanent lines, plus one live line redrawn in place with `\r` on a terminal.
// When the output is not a terminal (CI, a pipe) the live line is printed once, when it ends.

const WIDTH: usize = 96;

struct Screen {
    tty: bool,
    live: Option<String>,
    last_poll: Instant,
}

impl Screen {
    fn new() -> Screen {
        Screen {
            tty: std::io::stdout().is_terminal(),
            live: None,
            last_poll: Instant::now() - POLL_EVERY,
        }
    }

    fn live(&mut self, text: String) {
        if self.tty {
            print!("\r{text:<WIDTH$}");
            let _ = std::io::stdout().flush();
        }
        self.live = Some(text);
    }

    /// A permanent line; the live line (if any) is redrawn under it.
    fn say(&mut self, text: &str) {
        if self.tty && self.live.is_some() {
            print!("\r{:WIDTH$}\r", "");
        }
        println!("{text}");
        if let (true, Some(live)) = (self.tty, self.live.clone()) {
            self.live(live);
        }
    }

    fn end_live(&mut self) {
        if let Some(text) = self.live.take() {
            if self.tty {
                println!();
            } else {
                println!("{text}");
            }
        }
    }

    /// Removes the live line without leaving it on screen.
    fn drop_live(&mut self) {
        if self.live.take().is_some() && self.tty {
            print!("\r{:WIDTH$}\r", "");
            let _ = std::io::stdout().flush();
        }
    }
}

/// The part of `status_json()` the display shows.
struct Status {
    online: bool,
    pending: u64,
    blocked: u64,
    dead: u64,
    pulling: bool,
    last_pull_at: Value,
}

fn status(client: &Client) -> Status {
    let v: Value = client
        .status_json()
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    let n = |k: &str| v["outbox"][k].as_u64().unwrap_or(0);
    Status {
        online: v["online"].as_bool().unwrap_or(false),
        pending: n("pending"),
        blocked: n("blocked"),
        dead: n("dead"),
        pulling: v["pulling"].as_bool().unwrap_or(false),
        last_pull_at: v["last_pull_at"].clone(),
    }
}

fn link(s: &Status) -> &'static str {
    if s.online {
        "online"
    } else {
        "OFFLINE"
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn num(v: &Value) -> String {
    json_quantity(v.as_f64().unwrap_or(0.0)).to_string()
}

/// The line an event gets on screen; `None` for the ones a store manager would not care about.
fn describe(e: &Value) -> Option<String> {
    let s = |k: &str| e[k].as_str().unwrap_or("?").to_string();
    let kind = e["type"].as_str().unwrap_or("");
    Some(match kind {
        "sync.offline" => format!(
            "  event  sync.offline     {}",
            e["reason"].as_str().unwrap_or("Omnium unreachable")
        ),
        "sync.online" => "  event  sync.online      Omnium is reachable".to_string(),
        "sync.auth_failed" => format!("  event  sync.auth_failed  {}", e["reason"]),
        "job.dead" => format!(
            "  event  job.dead         {} {}: {}",
            s("kind"),
            s("event_id"),
            s("error")
        ),
        "order.received" | "order.updated" | "order.cancelled" => format!(
            "  event  {kind:<16} {} · {} · {}",
            s("order_id"),
            s("order_type"),
            s("status")
        ),
        "goods_reception.over_received" => {
            let lines: Vec<String> = each(&e["lines"])
                .map(|l| {
                    format!(
                        "{} received {}, {} open",
                        l["line_id"].as_str().unwrap_or("?"),
                        num(&l["received"]),
                        num(&l["open"])
                    )
                })
                .collect();
            format!(
                "  event  goods_reception.over_received  {} ({}): {}",
                s("reception_id"),
                s("purchase_order_id"),
                lines.join(", ")
            )
        }
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// The day.

/// Omnium comes back flaky: three 500s, a 429 with Retry-After, and one sale that Omnium
/// stores but whose answer never arrives. The library must read that sale back rather than
/// send it twice.
fn inject_faults(sim: &Simulator) {
    sim.inject(Fault::new(FaultKind::Status(500), 3));
    sim.inject(Fault::new(
        FaultKind::TooManyRequests {
            retry_after_secs: 1,
        },
        1,
    ));
    sim.inject(
        Fault::new(FaultKind::CommitThenReset, 1)
            .on_path("/api/Orders/PosOrders")
            .on_method("PUT"),
    );
}

type Probe = Box<dyn Fn(&Simulator) -> Option<String>>;

/// Something in the simulator the display keeps an eye on: when `probe`'s text changes,
/// it is printed (so the screen shows when a change recorded at the till lands in Omnium).
struct Watch {
    probe: Probe,
    last: Option<String>,
}

/// The morning delivery, received against a purchase order.
struct Reception {
    id: String,
    po_id: String,
    lines: Vec<Received>,
}

#[derive(Clone)]
struct Received {
    line_id: String,
    sku: String,
    ordered: f64,
    received: f64,
    /// Omnium's stock at oslo-1 before.
    before: f64,
}

/// The click & collect orders of the day.
#[derive(Default)]
struct ClickCollect {
    /// Placed earlier in the week; Omnium cancels it as expired while the shop is offline.
    stale: String,
    /// Placed on the web shop this morning; handed over in two goes.
    fresh: String,
    /// Pickups of `stale` the till accepted (it had not heard of the cancellation).
    stale_accepted: Vec<String>,
    /// Why the till refused a pickup of `stale` once it knew.
    refusal: Option<String>,
    late_done: bool,
    pickups: usize,
}

struct Day<'a> {
    sim: &'a Simulator,
    client: &'a Client,
    till: Till,
    screen: Screen,
    /// Outbox jobs recorded (every event and state the till recorded).
    jobs: u64,
    /// Set when Omnium comes back; the faults go in once the client has noticed (sync.online),
    /// so they hit the catch-up rather than the first probe.
    faults_due: bool,
    /// The sale being served (for the time of things that happen in between).
    n: usize,
    events: Vec<Value>,
    /// `catalog.changed` and `stock.changed` come a page at a time: (type, dataset) →
    /// (events, items), printed as one line when a sync ends.
    changes: BTreeMap<(String, String), (u64, u64)>,
    watches: Vec<Watch>,
    cc: ClickCollect,
    /// The purchase order waiting in Omnium, and its SKUs (kept off the shelves, so their
    /// stock tells of the goods reception alone).
    po_id: String,
    po_skus: HashSet<String>,
    reception: Option<Reception>,
    /// The SKU scanned at the first sale: (item, Omnium's level before).
    scanned: Option<(Item, f64)>,
    /// Omnium's stock before the day of every SKU the shop sells or receives.
    stock_before: HashMap<String, f64>,
    /// Found during the day, reported with the final check.
    problems: Vec<String>,
}

impl Day<'_> {
    fn record(&mut self, what: &str, result: flow_omnium::Result<()>) -> Result<(), String> {
        result.map_err(|e| format!("recording {what} failed: {e}"))?;
        self.jobs += 1;
        Ok(())
    }

    fn say(&mut self, text: &str) {
        self.screen.say(text);
    }

    fn clock(&self) -> String {
        self.till.hours.clock(self.n)
    }

    fn watch(&mut self, probe: impl Fn(&Simulator) -> Option<String> + 'static) {
        let last = probe(self.sim);
        self.watches.push(Watch {
            probe: Box::new(probe),
            last,
        });
    }

    fn check_watches(&mut self) {
        let mut lines = Vec::new();
        for w in &mut self.watches {
            let now = (w.probe)(self.sim);
            if now.is_some() && now != w.last {
                lines.push(format!("  omnium {}", now.as_deref().unwrap_or("")));
                w.last = now;
            }
        }
        for l in lines {
            self.say(&l);
        }
    }

    /// Prints and keeps the events; returns whether the link came back online.
    fn drain(&mut self) -> bool {
        let mut came_online = false;
        while let Ok(text) = self.client.next_event(Duration::ZERO) {
            let e = parse(&text);
            came_online |= e["type"] == "sync.online";
            if e["type"] == "catalog.changed" || e["type"] == "stock.changed" {
                let key = (
                    e["type"].as_str().unwrap_or("").to_string(),
                    e["dataset"].as_str().unwrap_or("?").to_string(),
                );
                let c = self.changes.entry(key).or_default();
                c.0 += 1;
                c.1 += e["count"].as_u64().unwrap_or(0);
            } else if let Some(line) = describe(&e) {
                self.say(&line);
            }
            let stale_cancelled = e["type"] == "order.cancelled" && e["order_id"] == *self.cc.stale;
            self.events.push(e);
            if stale_cancelled && self.cc.late_done && self.cc.refusal.is_none() {
                self.say(&format!(
                    "         the cashier looks {} up again:",
                    self.cc.stale
                ));
                self.stale_pickup();
            }
        }
        came_online
    }

    /// One line for the catalog and stock changes since the last call.
    fn say_changes(&mut self) {
        let mut by_type: BTreeMap<&str, (u64, Vec<String>)> = BTreeMap::new();
        for ((kind, dataset), (events, items)) in &self.changes {
            let t = by_type.entry(kind.as_str()).or_default();
            t.0 += events;
            t.1.push(format!("{dataset} {}", count(*items)));
        }
        let parts: Vec<String> = by_type
            .iter()
            .map(|(kind, (events, what))| format!("{kind} × {events} ({})", what.join(", ")))
            .collect();
        if !parts.is_empty() {
            let line = format!("  event  {}", parts.join(" · "));
            self.say(&line);
        }
        self.changes.clear();
    }

    fn saw(&self, kind: &str, order_id: &str) -> bool {
        self.events
            .iter()
            .any(|e| e["type"] == kind && e["order_id"] == order_id)
    }

    /// Every `POLL_EVERY`: drain events, inject the faults once the client is back online,
    /// look at the simulator, return a fresh status.
    fn poll(&mut self) -> Option<Status> {
        if self.screen.last_poll.elapsed() < POLL_EVERY {
            return None;
        }
        self.screen.last_poll = Instant::now();
        let came_online = self.drain();
        if self.faults_due && came_online {
            self.faults_due = false;
            inject_faults(self.sim);
            self.say(
                "  chaos  Omnium is flaky: 3 × HTTP 500, a 429 (Retry-After 1 s), a sale committed but its answer lost",
            );
        }
        self.check_watches();
        Some(status(self.client))
    }

    /// Polls until `done` holds or `limit` passes; `false` on timeout.
    fn wait(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let start = Instant::now();
        loop {
            self.poll();
            if done(self) {
                return true;
            }
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    // -- Morning ----------------------------------------------------------------------------

    /// The terminal boots before the doors open: the first sync, the store, the shelves,
    /// the inbox, the morning delivery and a click & collect order made ready.
    fn morning(&mut self, skus_in_omnium: usize) -> Result<(), String> {
        self.say("morning  the terminal starts and syncs with Omnium");
        let started = Instant::now();
        let client = self.client;
        let synced = self.wait(Duration::from_secs(25), |day| {
            let n = client.store().sku_count().unwrap_or(0);
            let s = status(client);
            day.screen.live(format!(
                "  first sync: {} SKUs so far · {}",
                count(n),
                link(&s)
            ));
            n as usize == skus_in_omnium && !s.pulling && s.last_pull_at.is_string()
        });
        self.screen.drop_live();
        let elapsed = started.elapsed().as_secs_f64();
        self.drain();
        if !synced {
            return Err(format!(
                "the first sync did not finish in 25 s: {} of {skus_in_omnium} SKUs",
                client.store().sku_count().unwrap_or(0)
            ));
        }
        let items = |text: flow_omnium::Result<String>| -> usize {
            text.map(|t| parse(&t)["items"].as_array().map_or(0, Vec::len))
                .unwrap_or(0)
        };
        self.say_changes();
        let categories = items(client.categories_json());
        let brands = items(client.brands_json());
        self.say(&format!(
            "  catalog  {} SKUs · {categories} categories · {brands} brands, in {elapsed:.1} s",
            count(skus_in_omnium as u64)
        ));
        self.open_store()?;
        self.stock_shelves()?;
        self.inbox();
        self.goods_in()?;
        self.ready_stale()?;
        Ok(())
    }

    /// The store as Omnium describes it; today's hours set the pace of the day.
    fn open_store(&mut self) -> Result<(), String> {
        let store = self
            .client
            .store_json(STORE)
            .map(|s| parse(&s))
            .map_err(|e| format!("store_json({STORE}): {e}"))?;
        let a = &store["address"];
        let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
        self.till.shop = Shop {
            name: s(&store["name"]),
            address: format!(
                "{} {}, {} {}",
                s(&a["streetName"]),
                s(&a["streetNumber"]),
                s(&a["zipcode"]),
                s(&a["city"])
            ),
            org: s(&store["organizationalNumber"]),
        };
        let date =
            chrono::NaiveDate::parse_from_str(DATE, "%Y-%m-%d").map_err(|e| e.to_string())?;
        let day = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ][date.weekday().num_days_from_monday() as usize];
        let today = &store["opening_hours"][day];
        let (Some(open), Some(close)) = (minutes(&today["from"]), minutes(&today["to"])) else {
            return Err(format!("{STORE} is closed on {day}s: {today}"));
        };
        if close <= open {
            return Err(format!("{STORE}'s hours on {day}s make no sense: {today}"));
        }
        self.till.hours = Hours { open, close };
        let warehouses: Vec<String> = each(&store["warehouses"])
            .filter_map(|w| w["warehouse_id"].as_str().map(str::to_string))
            .collect();
        let special: Vec<String> = each(&store["special_days"])
            .map(|d| {
                let hours = match (d["open"].as_bool(), d["from"].as_str(), d["to"].as_str()) {
                    (Some(true), Some(f), Some(t)) => format!("{f}–{t}"),
                    _ => "closed".into(),
                };
                format!("{} {} {hours}", s(&d["label"]), s(&d["date"]))
            })
            .collect();
        let shop = &self.till.shop;
        let line = format!(
            "  store    {}, {} · warehouses {}",
            shop.name,
            shop.address,
            warehouses.join(", ")
        );
        self.say(&line);
        let mut hours = format!("  hours    {}", week_hours(&store["opening_hours"]));
        if !special.is_empty() {
            hours.push_str(&format!(" · {}", special.join(", ")));
        }
        self.say(&hours);
        self.say(&format!(
            "           today, {}: {}–{}",
            date.format("%A %-d %B"),
            hhmm(open),
            hhmm(close)
        ));
        Ok(())
    }

    /// Picks the SKUs this shop sells from the synced catalog: active, priced now, in stock
    /// here, and not on the purchase order.
    fn stock_shelves(&mut self) -> Result<(), String> {
        let skus = self.sim.sku_ids();
        let mut rng = XorShift(SEED ^ 0x0053_4845_4c46);
        let (mut tried, mut unpriced, mut sold_out) = (HashSet::new(), 0, 0);
        let mut shelf = Vec::new();
        while shelf.len() < SHELF + 1 && tried.len() < skus.len() {
            let sku = rng.pick(&skus);
            if !tried.insert(sku.clone()) || self.po_skus.contains(sku) {
                continue;
            }
            let product = self
                .client
                .product_json(sku)
                .map_err(|e| format!("product_json({sku}): {e}"))?;
            let Some(item) = item_of(&parse(&product)) else {
                unpriced += 1;
                continue;
            };
            let stock = self.client.stock_json(sku).map(|s| parse(&s));
            let here = stock.as_ref().ok().map(|s| &s["warehouses"][0]);
            if !here.is_some_and(|w| w["available"].as_f64().unwrap_or(0.0) >= 15.0) {
                sold_out += 1;
                continue;
            }
            let level = self.sim.stock(&item.sku, STORE).map_or(0.0, |s| s.0);
            self.stock_before.insert(item.sku.clone(), level);
            shelf.push(item);
        }
        if shelf.len() <= SHELF {
            return Err(format!("only {} sellable SKUs in stock here", shelf.len()));
        }
        // The first one is kept for the first customer, who brings it to the till.
        let scanned = shelf.remove(0);
        let (lo, hi) = shelf.iter().fold((i64::MAX, 0), |(lo, hi), i| {
            (lo.min(i.price), hi.max(i.price))
        });
        let mut passed = format!("{sold_out} low on stock");
        if unpriced > 0 {
            passed.push_str(&format!(", {unpriced} inactive or without a price"));
        }
        self.say(&format!(
            "  shelves  {} SKUs sold here, {}–{} at today's prices for {STORE} (passed over {passed})",
            shelf.len() + 1,
            kroner(lo),
            nok(hi)
        ));
        let before = self.stock_before[&scanned.sku];
        self.scanned = Some((scanned, before));
        self.till.shelf = shelf;
        Ok(())
    }

    /// What is waiting for the shop: purchase orders and click & collect orders.
    fn inbox(&mut self) {
        let pos = self
            .client
            .purchase_orders_json(None)
            .map(|t| parse(&t))
            .unwrap_or(Value::Null);
        for po in each(&pos["items"]) {
            let lines = po["lines"].as_array().map_or(0, Vec::len);
            let units: f64 = each(&po["lines"])
                .filter_map(|l| l["quantity"].as_f64())
                .sum();
            let line = format!(
                "  inbox    purchase order {} from {}: {lines} lines, {units} units, {} · delivery {}",
                po["id"].as_str().unwrap_or("?"),
                po["supplier"]["name"].as_str().unwrap_or("?"),
                po["status"].as_str().unwrap_or("?"),
                po["delivery_id"].as_str().unwrap_or("?")
            );
            self.say(&line);
        }
        let orders = self
            .client
            .orders_json(Some(r#"{"order_type": "ClickAndCollect"}"#))
            .map(|t| parse(&t))
            .unwrap_or(Value::Null);
        for o in each(&orders["items"]) {
            let line = format!(
                "  inbox    click & collect {} for {}: {} lines, {}, {}",
                o["id"].as_str().unwrap_or("?"),
                o["customer"]["name"].as_str().unwrap_or("?"),
                o["lines"].as_array().map_or(0, Vec::len),
                kroner(o["total"].as_i64().unwrap_or(0)),
                o["status"].as_str().unwrap_or("?")
            );
            self.say(&line);
        }
    }

    /// The morning delivery, received against the purchase order the till pulled; the
    /// supplier sent two more of the last line than ordered.
    fn goods_in(&mut self) -> Result<(), String> {
        let po_id = self.po_id.clone();
        let pos = parse(
            &self
                .client
                .purchase_orders_json(None)
                .map_err(|e| format!("purchase_orders_json: {e}"))?,
        );
        let Some(po) = each(&pos["items"]).find(|p| p["id"] == *po_id).cloned() else {
            return Err(format!("the till does not list purchase order {po_id}"));
        };
        let time = self.till.hours.open - 15;
        self.say(&format!(
            "{}  goods in: {po_id} from {}, delivery {}",
            hhmm(time),
            po["supplier"]["name"].as_str().unwrap_or("?"),
            po["delivery_id"].as_str().unwrap_or("?")
        ));
        let po_lines = po["lines"].as_array().cloned().unwrap_or_default();
        let mut lines = Vec::new();
        let mut kept = Vec::new();
        for (i, l) in po_lines.iter().enumerate() {
            let ordered = l["quantity"].as_f64().unwrap_or(0.0)
                - l["delivered_quantity"].as_f64().unwrap_or(0.0);
            let received = if i + 1 == po_lines.len() {
                ordered + 2.0
            } else {
                ordered
            };
            let (line_id, sku) = (
                l["line_id"].as_str().unwrap_or("?").to_string(),
                l["sku"].as_str().unwrap_or("?").to_string(),
            );
            let before = self.sim.stock(&sku, STORE).map_or(0.0, |s| s.0);
            let extra = if received > ordered {
                format!("  (+{})", received - ordered)
            } else {
                String::new()
            };
            self.say(&format!(
                "         {line_id:<8} {:<34} ordered {ordered:>2} · received {received:>2}{extra}",
                fit(l["name"].as_str().unwrap_or("?"), 34)
            ));
            lines
                .push(json!({"line_id": line_id, "sku": sku, "quantity": json_quantity(received)}));
            // The reception counts in the end-of-day stock check like a sale does.
            self.stock_before.insert(sku.clone(), before);
            *self.till.stock_delta.entry(sku.clone()).or_default() += received;
            kept.push(Received {
                line_id,
                sku,
                ordered,
                received,
                before,
            });
        }
        let id = "GR-20261128-01".to_string();
        let reception = json!({
            "id": id, "purchase_order_id": po_id, "delivery_id": po["delivery_id"],
            "warehouse_id": STORE, "received_at": at_secs(time as u64 * 60), "lines": lines,
        });
        let result = self.client.record_goods_reception(&reception.to_string());
        self.record("the goods reception", result)?;
        self.reception = Some(Reception {
            id,
            po_id: po_id.clone(),
            lines: kept.clone(),
        });
        self.watch(move |sim| {
            let po = sim.purchase_order(&po_id)?;
            let levels: Vec<String> = kept
                .iter()
                .map(|l| {
                    let now = sim.stock(&l.sku, STORE).map_or(0.0, |s| s.0);
                    format!("{}→{now}", l.before)
                })
                .collect();
            Some(format!(
                "{po_id} {} in Omnium · stock at {STORE} {}",
                po["status"].as_str().unwrap_or("?"),
                levels.join(", ")
            ))
        });
        self.drain();
        Ok(())
    }

    fn pickup(
        &mut self,
        order_id: &str,
        status: &str,
        lines: Option<Value>,
    ) -> flow_omnium::Result<()> {
        self.cc.pickups += 1;
        // Before the doors open (sale 0) the time is the morning's.
        let at = if self.n == 0 {
            at_secs(self.till.hours.open as u64 * 60 - 300)
        } else {
            self.till.hours.timestamp(self.n, 30)
        };
        let mut p = json!({
            "id": format!("PU-{order_id}-{}", self.cc.pickups), "order_id": order_id,
            "status": status, "at": at,
        });
        if let Some(l) = lines {
            p["lines"] = l;
        }
        self.client.record_pickup(&p.to_string())
    }

    fn local_status(&self, order_id: &str) -> String {
        self.client
            .order_json(order_id)
            .map(|o| parse(&o)["status"].as_str().unwrap_or("?").to_string())
            .unwrap_or_else(|e| format!("unknown ({e})"))
    }

    /// Omnium's view of a click & collect order, printed when it changes.
    fn watch_order(&mut self, id: &str) {
        let id = id.to_string();
        self.watch(move |sim| {
            let o = sim.order(&id)?;
            Some(format!(
                "{id} {} in Omnium · handed over {} of {}",
                o["status"].as_str().unwrap_or("?"),
                order_sum(&o, "deliveredQuantity"),
                order_sum(&o, "quantity")
            ))
        });
    }

    /// The click & collect order from earlier in the week is packed before opening.
    fn ready_stale(&mut self) -> Result<(), String> {
        let id = self.cc.stale.clone();
        self.watch_order(&id);
        let result = self.pickup(&id, "ready_for_pickup", None);
        self.record("a pickup", result)?;
        let line = format!(
            "{}  {id} packed and put on the pickup shelf · till shows {} at once",
            hhmm(self.till.hours.open - 5),
            self.local_status(&id)
        );
        self.say(&line);
        Ok(())
    }

    fn open_doors(&mut self) {
        let client = self.client;
        self.wait(Duration::from_secs(3), |_| status(client).online);
        self.say(&format!("{}  doors open", self.till.hours.clock(0)));
    }

    // -- The day ----------------------------------------------------------------------------

    fn run_sales(&mut self) -> Result<(), String> {
        self.open_doors();
        for n in 1..=SALES {
            self.n = n;
            if n == *OUTAGE.start() {
                self.end_phase(n - 1);
                self.sim.set_down(true);
                self.say(&format!(
                    "{}  the shop's internet goes down: Omnium unreachable, the till keeps selling",
                    self.clock()
                ));
            }
            if n == OUTAGE.end() + 1 {
                self.end_phase(n - 1);
                self.sim.set_down(false);
                self.faults_due = true;
                self.say(&format!("{}  internet is back", self.clock()));
            }
            self.moments(n)?;
            self.serve_customer(n, None, None)?;
            if let Some(s) = self.poll() {
                self.show_till(n, &s);
            }
            std::thread::sleep(SALE_PACE);
        }
        self.end_phase(SALES);
        self.say(&format!("{}  doors close", self.till.hours.clock(SALES)));
        Ok(())
    }

    /// What else happens just before sale `n`.
    fn moments(&mut self, n: usize) -> Result<(), String> {
        match n {
            1 => self.scan_first(n),
            SEARCH_AT => self.search_by_name(n),
            NEW_CUSTOMER_AT => self.new_customer(n),
            WEB_ORDER_AT => self.web_order(),
            READY_AT => self.ready_fresh(),
            EXPIRE_AT => {
                let id = self.cc.stale.clone();
                // The event Omnium sends cannot reach the offline shop, so it is not forwarded.
                self.sim.cancel_order_remotely(&id, true);
                self.say(&format!(
                    "{}  Omnium cancels {id}: its pickup deadline expired (the event cannot reach the offline shop)",
                    self.clock()
                ));
                Ok(())
            }
            PARTIAL_PICKUP_AT => self.partial_pickup(),
            LATE_PICKUP_AT => {
                self.say(&format!(
                    "{}  {}'s customer comes by; the till still shows it {}",
                    self.clock(),
                    self.cc.stale,
                    self.local_status(&self.cc.stale.clone())
                ));
                self.cc.late_done = true;
                self.stale_pickup();
                Ok(())
            }
            REST_PICKUP_AT => self.rest_pickup(),
            _ => Ok(()),
        }
    }

    /// A pickup of the order Omnium cancelled: accepted while the till has not heard (it
    /// then dies in the outbox), refused once it has.
    fn stale_pickup(&mut self) {
        let id = self.cc.stale.clone();
        match self.pickup(&id, "picked_up", None) {
            Ok(()) => {
                self.jobs += 1;
                self.cc
                    .stale_accepted
                    .push(format!("PU-{id}-{}", self.cc.pickups));
                if self.saw("order.cancelled", &id) {
                    self.problems.push(format!(
                        "the till accepted a pickup of {id} after order.cancelled"
                    ));
                }
                let line = format!(
                    "         handed over and queued · till shows {}",
                    self.local_status(&id)
                );
                self.say(&line);
            }
            Err(e) => {
                self.say(&format!("         refused: {e}"));
                self.cc.refusal = Some(e.to_string());
            }
        }
    }

    /// The first customer brings an item to the till: scanned by EAN, with its stock
    /// before and after the sale (the sale counts at once, until Omnium's level has it).
    fn scan_first(&mut self, n: usize) -> Result<(), String> {
        let Some((item, _)) = self.scanned.clone() else {
            return Ok(());
        };
        let found = parse(
            &self
                .client
                .search_json(&json!({"text": item.ean, "limit": 1}).to_string())
                .map_err(|e| format!("search_json: {e}"))?,
        );
        let hit = &found["items"][0];
        if hit["sku"] != *item.sku {
            self.problems.push(format!(
                "scanning EAN {} found {hit} instead of {}",
                item.ean, item.sku
            ));
        }
        self.say(&format!(
            "{}  scan {} → {} ({}), {}",
            self.clock(),
            item.ean,
            item.name,
            item.sku,
            kroner(item.price)
        ));
        let stock_line = |day: &Day| -> String {
            let s = day.client.stock_json(&item.sku).map(|s| parse(&s));
            let w = s
                .as_ref()
                .map(|s| s["warehouses"][0].clone())
                .unwrap_or_default();
            format!(
                "{} on hand · {} reserved · pending {} · available {}",
                num(&w["quantity"]),
                num(&w["reserved"]),
                num(&w["pending"]),
                num(&w["available"])
            )
        };
        let before = stock_line(self);
        self.say(&format!(
            "         stock at {STORE} before the sale: {before}"
        ));
        let first = Some(item.clone());
        self.serve_customer(n, first.as_ref(), None)?;
        let after = stock_line(self);
        self.say(&format!(
            "         after the sale:             {after}  (the till counts it until Omnium's level does)"
        ));
        let sku = item.sku.clone();
        self.watch(move |sim| {
            let (q, _) = sim.stock(&sku, STORE)?;
            Some(format!("{sku} at {STORE}: {q} on hand in Omnium"))
        });
        Ok(())
    }

    /// A customer asks for something by name: the cashier types the start of it.
    fn search_by_name(&mut self, n: usize) -> Result<(), String> {
        let wanted = self.till.shelf[self.till.shelf.len() / 2].clone();
        // "Skalljakke Vidde, lyseblå XS": the cashier types "Skall Vidd lyse".
        let words: Vec<String> = wanted
            .name
            .split([' ', ','])
            .filter(|w| !w.is_empty())
            .zip([5, 4, 4])
            .map(|(w, n)| w.chars().take(n).collect())
            .collect();
        let text = words.join(" ");
        let found = parse(
            &self
                .client
                .search_json(&json!({"text": text, "limit": 100}).to_string())
                .map_err(|e| format!("search_json: {e}"))?,
        );
        let hits: Vec<&Value> = each(&found["items"]).collect();
        let top: Vec<&str> = hits
            .iter()
            .take(2)
            .filter_map(|p| p["name"].as_str())
            .collect();
        self.say(&format!(
            "{}  search \"{text}\" → {} hits ({} …)",
            self.clock(),
            count(found["total"].as_u64().unwrap_or(0)),
            top.join(" · ")
        ));
        match hits.iter().position(|p| p["sku"] == *wanted.sku) {
            Some(i) => self.say(&format!(
                "         hit {} is the one: {} ({}), {}",
                i + 1,
                wanted.name,
                wanted.sku,
                kroner(wanted.price)
            )),
            None => self.problems.push(format!(
                "searching {text:?} did not find {} ({})",
                wanted.name, wanted.sku
            )),
        }
        self.serve_customer(n, Some(&wanted), None)?;
        Ok(())
    }

    /// A customer joins the club at the till, then buys with an e-receipt.
    fn new_customer(&mut self, n: usize) -> Result<(), String> {
        let (first, last) = NEW_CUSTOMER_NAME
            .split_once(' ')
            .unwrap_or(("", NEW_CUSTOMER_NAME));
        let customer = json!({
            "id": NEW_CUSTOMER, "type": "person", "first_name": first, "last_name": last,
            "email": "ingrid.solberg@example.no", "phone": "+4791554433",
            "address": {"line1": "Thorvald Meyers gate 12", "postal_code": "0555", "city": "Oslo",
                        "country_code": "NO"},
            "loyalty_id": NEW_CUSTOMER_LOYALTY,
        });
        let result = self.client.record_customer(&customer.to_string());
        self.record("a customer", result)?;
        let local = self
            .client
            .customer_json(NEW_CUSTOMER)
            .map(|c| parse(&c))
            .unwrap_or_default();
        self.say(&format!(
            "{}  new club member {NEW_CUSTOMER} {NEW_CUSTOMER_NAME}, loyalty {NEW_CUSTOMER_LOYALTY} · till shows {} {}, {} at once",
            self.clock(),
            local["first_name"].as_str().unwrap_or("?"),
            local["last_name"].as_str().unwrap_or("?"),
            local["address"]["city"].as_str().unwrap_or("?")
        ));
        self.watch(|sim| {
            let (kind, c) = sim.customer(NEW_CUSTOMER)?;
            Some(format!(
                "customer {NEW_CUSTOMER} {} {} in Omnium ({kind}, customer number {})",
                c["firstName"].as_str().unwrap_or("?"),
                c["lastName"].as_str().unwrap_or("?"),
                c["customerNumber"].as_str().unwrap_or("?")
            ))
        });
        self.serve_customer(n, None, Some(NEW_CUSTOMER))?;
        let r = self
            .till
            .receipts
            .last()
            .map(|r| (r.file_name.clone(), r.pdf.len()));
        if let Some((name, size)) = r {
            self.say(&format!(
                "         her sale comes with an e-receipt: {name} ({size} bytes)"
            ));
        }
        Ok(())
    }

    /// A click & collect order placed on the web shop; Omnium's event is forwarded to the till.
    fn web_order(&mut self) -> Result<(), String> {
        let order = self.sim.new_web_order("ClickAndCollect", STORE, 2);
        let event = self.sim.add_web_order(order);
        let id = event["objectId"].as_str().unwrap_or("?").to_string();
        self.cc.fresh = id.clone();
        self.watch_order(&id);
        self.say(&format!(
            "{}  the web shop takes click & collect order {id} for {STORE}; Omnium's event is forwarded",
            self.clock()
        ));
        self.client
            .event_notify(&event.to_string())
            .map_err(|e| format!("event_notify: {e}"))
    }

    fn ready_fresh(&mut self) -> Result<(), String> {
        let id = self.cc.fresh.clone();
        let client = self.client;
        if !self.wait(Duration::from_secs(5), |_| client.order_json(&id).is_ok()) {
            return Err(format!("order {id} never reached the till"));
        }
        let result = self.pickup(&id, "ready_for_pickup", None);
        self.record("a pickup", result)?;
        let line = format!(
            "{}  {id} packed, the customer gets a text · till shows {} at once",
            self.clock(),
            self.local_status(&id)
        );
        self.say(&line);
        Ok(())
    }

    /// The customer collects one item now and the rest later.
    fn partial_pickup(&mut self) -> Result<(), String> {
        let id = self.cc.fresh.clone();
        let order = parse(&self.client.order_json(&id).map_err(|e| e.to_string())?);
        let lines = order["lines"].as_array().cloned().unwrap_or_default();
        let Some(line) = lines.iter().max_by(|a, b| {
            let q = |l: &Value| l["quantity"].as_f64().unwrap_or(0.0);
            q(a).total_cmp(&q(b))
        }) else {
            return Err(format!("{id} has no lines"));
        };
        let taken = json!([{"line_id": line["line_id"], "quantity": 1}]);
        let result = self.pickup(&id, "picked_up", Some(taken));
        self.record("a pickup", result)?;
        let line = format!(
            "{}  {id}: the customer takes 1 item now, the rest later · till shows {} at once",
            self.clock(),
            self.local_status(&id)
        );
        self.say(&line);
        Ok(())
    }

    fn rest_pickup(&mut self) -> Result<(), String> {
        let id = self.cc.fresh.clone();
        let order = parse(&self.client.order_json(&id).map_err(|e| e.to_string())?);
        let rest: Vec<Value> = each(&order["lines"])
            .filter_map(|l| {
                let f = |k: &str| l[k].as_f64().unwrap_or(0.0);
                let left = f("quantity") - f("canceled_quantity") - f("delivered_quantity");
                (left > 0.0)
                    .then(|| json!({"line_id": l["line_id"], "quantity": json_quantity(left)}))
            })
            .collect();
        let units: f64 = rest.iter().filter_map(|l| l["quantity"].as_f64()).sum();
        let result = self.pickup(&id, "picked_up", Some(Value::Array(rest)));
        self.record("a pickup", result)?;
        let line = format!(
            "{}  {id}: the customer collects the other {units} · till shows {} at once",
            self.clock(),
            self.local_status(&id)
        );
        self.say(&line);
        Ok(())
    }

    /// Sale `n`, its receipt for a customer, and now and then a return or a cancellation.
    fn serve_customer(
        &mut self,
        n: usize,
        first: Option<&Item>,
        customer: Option<&str>,
    ) -> Result<(), String> {
        // A sale rung up in a moment (the scan, the search) takes the place of the regular one.
        if self.till.sales.len() >= n {
            return Ok(());
        }
        let sale = self.till.ring_up(n, first, customer);
        self.record("a sale", self.client.record_sale(&sale.to_string()))?;
        if let Some(c) = sale["customer_id"].as_str() {
            let who = if c == NEW_CUSTOMER {
                format!("{NEW_CUSTOMER_NAME} ({c})")
            } else {
                format!("kundeklubb {c}")
            };
            let (receipt, pdf) = self.till.receipt(n, &sale, &who);
            let result = self.client.record_receipt(&receipt.to_string(), &pdf);
            self.record("a receipt", result)?;
            self.till.receipts.push(ReceiptRecord {
                id: receipt["id"].as_str().unwrap_or("").to_string(),
                sale_id: sale["id"].as_str().unwrap_or("").to_string(),
                file_name: receipt["file_name"].as_str().unwrap_or("").to_string(),
                pdf,
            });
        }
        if n % RETURN_EVERY == 0 {
            if let Some(ret) = self.till.take_back(n) {
                self.record("a return", self.client.record_return(&ret.to_string()))?;
            }
        }
        if n % CANCEL_EVERY == 0 {
            let c = self.till.cancel_recent(n);
            let result = self.client.record_cancellation(&c.to_string());
            self.record("a cancellation", result)?;
        }
        Ok(())
    }

    fn show_till(&mut self, n: usize, s: &Status) {
        self.screen.live(format!(
            "{}  sale {n:>3}/{SALES} · returns {:>2} · cancellations {} · receipts {:>2} · pending {:>3} · {}",
            self.till.hours.clock(n),
            self.till.returns.len(),
            self.till.cancellations.len(),
            self.till.receipts.len(),
            s.pending,
            link(s)
        ));
    }

    /// Leaves the till's line on screen, up to date, as a phase ends.
    fn end_phase(&mut self, n: usize) {
        let s = status(self.client);
        self.show_till(n, &s);
        self.screen.end_live();
    }

    /// Waits for the outbox to drain, showing progress on one line.
    fn catch_up(&mut self, limit: Duration) {
        self.n = SALES;
        let start = Instant::now();
        loop {
            let Some(s) = self.poll() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let delivered = self.jobs - s.pending - s.blocked - s.dead;
            let dead = if s.dead > 0 {
                format!(", dead {}", s.dead)
            } else {
                String::new()
            };
            self.screen.live(format!(
                "catch-up: {delivered}/{} delivered, pending {}{dead}, {}",
                self.jobs,
                s.pending,
                link(&s)
            ));
            if (s.pending == 0 && !self.faults_due) || start.elapsed() > limit {
                self.screen.end_live();
                return;
            }
        }
    }

    /// After closing: the expired order's fate reaches the till, and one more sync brings
    /// Omnium's stock levels, which now count every sale, return and reception.
    fn evening(&mut self) -> Result<(), String> {
        let stale = self.cc.stale.clone();
        if !self.wait(Duration::from_secs(10), |day| {
            day.saw("order.cancelled", &stale)
        }) {
            self.problems
                .push(format!("no order.cancelled event for {stale}"));
        }
        let before = status(self.client).last_pull_at;
        let started = Instant::now();
        self.say("evening  after closing, one more sync with Omnium");
        self.client
            .sync_now()
            .map_err(|e| format!("sync_now: {e}"))?;
        let client = self.client;
        let synced = self.wait(Duration::from_secs(30), |_| {
            let s = status(client);
            s.last_pull_at != before && !s.pulling
        });
        if !synced {
            return Err("the evening sync did not finish in 30 s".into());
        }
        self.say_changes();
        self.say(&format!(
            "  synced in {:.1} s; the till's stock now (Omnium's level, and what it has not counted):",
            started.elapsed().as_secs_f64()
        ));
        // The SKU sold first thing, and the first one received this morning.
        let mut shown: Vec<(String, String)> = Vec::new();
        if let Some((item, _)) = &self.scanned {
            shown.push((
                format!("sold at {}", self.till.hours.clock(1)),
                item.sku.clone(),
            ));
        }
        if let Some(l) = self.reception.as_ref().and_then(|r| r.lines.first()) {
            shown.push((format!("received {}", l.received), l.sku.clone()));
        }
        for (what, sku) in shown {
            let s = self.client.stock_json(&sku).map(|s| parse(&s));
            let w = s.map(|s| s["warehouses"][0].clone()).unwrap_or_default();
            let omnium = self.sim.stock(&sku, STORE).unwrap_or_default();
            self.say(&format!(
                "         {sku:<10} {what:<14} {} on hand · pending {} · available {}   (Omnium: {} − {} reserved = {})",
                num(&w["quantity"]),
                num(&w["pending"]),
                num(&w["available"]),
                omnium.0,
                omnium.1,
                omnium.0 - omnium.1
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The end of the day: what did Omnium really receive?

/// Compares what the till recorded with the simulator; returns the problems found.
fn verify(day: &Day) -> Vec<String> {
    let (sim, till) = (day.sim, &day.till);
    let mut problems = day.problems.clone();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for order in sim.orders().iter().filter(|o| o["orderType"] == "Pos") {
        *seen
            .entry(order["id"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    let missing: Vec<&str> = till
        .sales
        .iter()
        .map(|s| s.id.as_str())
        .filter(|id| !seen.contains_key(*id))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} sale(s) missing in Omnium: {:?}",
            missing.len(),
            missing
        ));
    }
    let ours: HashSet<&str> = till.sales.iter().map(|s| s.id.as_str()).collect();
    for (id, count) in &seen {
        if *count != 1 {
            problems.push(format!("order {id} is in Omnium {count} times"));
        }
        if !ours.contains(id.as_str()) {
            problems.push(format!(
                "Omnium holds a POS order {id} the till never recorded"
            ));
        }
    }
    for (sale_id, rma) in &till.returns {
        let forms = sim
            .order(sale_id)
            .map(|o| o["returnOrderForms"].clone())
            .unwrap_or_default();
        let n = forms
            .as_array()
            .map_or(0, |f| f.iter().filter(|f| f["rmaNumber"] == *rma).count());
        if n != 1 {
            problems.push(format!("return {rma} of {sale_id} is in Omnium {n} times"));
        }
    }
    for c in &till.cancellations {
        let ok = match c {
            Cancelled::Order(id) => sim
                .order(id)
                .and_then(|o| o["status"].as_str().map(|s| s.starts_with("OrderCanceled")))
                .unwrap_or(false),
            Cancelled::Line(id, line) => sim.order(id).is_some_and(|o| {
                each(&o["orderForm"]["lineItems"]).any(|l| {
                    l["lineItemId"].as_str() == Some(line.as_str())
                        && l["canceledQuantity"] == l["quantity"]
                })
            }),
        };
        if !ok {
            let what = match c {
                Cancelled::Order(id) => format!("order {id}"),
                Cancelled::Line(id, line) => format!("line {line} of {id}"),
            };
            problems.push(format!("the cancellation of {what} did not reach Omnium"));
        }
    }
    // Receipts: one invoice each, on its sale, holding exactly the PDF the till made.
    for r in &till.receipts {
        let on_sale = sim.invoice(&r.id).map(|i| i["orderId"].clone());
        if on_sale != Some(json!(r.sale_id)) {
            problems.push(format!(
                "invoice {} in Omnium: {on_sale:?}, not on {}",
                r.id, r.sale_id
            ));
        }
        let files = sim.invoice_files(&r.id);
        if files.len() != 1 || files[0].0 != r.file_name || files[0].1 != r.pdf {
            let got: Vec<(&str, usize)> = files.iter().map(|f| (f.0.as_str(), f.1.len())).collect();
            problems.push(format!(
                "invoice {} holds {got:?}, not {} ({} bytes) byte for byte",
                r.id,
                r.file_name,
                r.pdf.len()
            ));
        }
    }
    // The customer created at the till.
    match sim.customer(NEW_CUSTOMER) {
        Some((kind, c)) => {
            let want = [
                ("firstName", "Ingrid"),
                ("lastName", "Solberg"),
                ("email", "ingrid.solberg@example.no"),
                ("customerNumber", NEW_CUSTOMER_LOYALTY),
            ];
            for (k, v) in want {
                if c[k] != v {
                    problems.push(format!(
                        "customer {NEW_CUSTOMER}.{k} in Omnium is {}, not {v:?}",
                        c[k]
                    ));
                }
            }
            if kind != "private" || c["address"]["city"] != "Oslo" {
                problems.push(format!("customer {NEW_CUSTOMER} in Omnium: {kind} {c}"));
            }
        }
        None => problems.push(format!("customer {NEW_CUSTOMER} never reached Omnium")),
    }
    // The goods reception: each PO line delivered as received, stock up by as much.
    if let Some(r) = &day.reception {
        let po = sim.purchase_order(&r.po_id).unwrap_or_default();
        for Received {
            line_id,
            sku,
            received,
            before,
            ..
        } in &r.lines
        {
            let delivered = each(&po["purchaseOrderForm"]["lineItems"])
                .find(|l| l["lineItemId"] == **line_id)
                .and_then(|l| l["deliveredQuantity"].as_f64());
            if delivered != Some(*received) {
                problems.push(format!(
                    "{} line {line_id}: delivered {delivered:?} in Omnium, {received} received",
                    r.po_id
                ));
            }
            let now = sim.stock(sku, STORE).map_or(0.0, |s| s.0);
            if now != before + received {
                problems.push(format!(
                    "stock of {sku} at {STORE} is {now} in Omnium, not {before} + {received}"
                ));
            }
        }
    }
    // Click & collect: the fresh order handed over in full, the stale one left cancelled.
    let cc = &day.cc;
    match sim.order(&cc.fresh) {
        Some(o) => {
            let all =
                each(&o["orderForm"]["lineItems"]).all(|l| l["deliveredQuantity"] == l["quantity"]);
            if !all {
                problems.push(format!(
                    "{} is not handed over in full in Omnium: {}",
                    cc.fresh, o["orderForm"]["lineItems"]
                ));
            }
        }
        None => problems.push(format!("order {} is gone from Omnium", cc.fresh)),
    }
    // PickedUp as the till recorded it, or Omnium's own word for it once pulled back.
    let local = day
        .client
        .order_json(&cc.fresh)
        .map(|o| parse(&o)["status"].clone());
    if !local
        .as_ref()
        .is_ok_and(|s| s == "PickedUp" || s == "Completed")
    {
        problems.push(format!(
            "{} at the till: {local:?}, not picked up",
            cc.fresh
        ));
    }
    match sim.order(&cc.stale) {
        Some(o) => {
            let handed = order_sum(&o, "deliveredQuantity");
            if o["status"] != "OrderCanceled" || handed > 0.0 {
                problems.push(format!(
                    "{} in Omnium: {} with {handed} handed over; it should stay cancelled",
                    cc.stale, o["status"]
                ));
            }
        }
        None => problems.push(format!("order {} is gone from Omnium", cc.stale)),
    }
    let local = day
        .client
        .order_json(&cc.stale)
        .map(|o| parse(&o)["status"].clone());
    if local.as_ref().ok() != Some(&json!("OrderCanceled")) {
        problems.push(format!(
            "{} at the till: {local:?}, not OrderCanceled",
            cc.stale
        ));
    }
    if cc.refusal.is_none() {
        problems.push(format!(
            "the till never refused a pickup of the cancelled {}",
            cc.stale
        ));
    }
    for (kind, id) in [
        ("order.received", &cc.stale),
        ("order.received", &cc.fresh),
        ("order.cancelled", &cc.stale),
    ] {
        if !day.saw(kind, id) {
            problems.push(format!("no {kind} event for {id}"));
        }
    }
    if !day
        .events
        .iter()
        .any(|e| e["type"] == "goods_reception.over_received")
    {
        problems.push("no goods_reception.over_received event".into());
    }
    // The only dead jobs: the pickups of the cancelled order the till accepted unknowing.
    let dead = day
        .client
        .dead_jobs_json()
        .map(|d| parse(&d)["items"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    let dead_ids: Vec<String> = dead
        .iter()
        .map(|j| {
            format!(
                "{} {}",
                j["kind"].as_str().unwrap_or("?"),
                j["entity_id"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let expected: Vec<String> = cc
        .stale_accepted
        .iter()
        .map(|_| format!("pickup {}", cc.stale))
        .collect();
    if dead_ids != expected {
        problems.push(format!("dead jobs {dead_ids:?}, expected {expected:?}"));
    }
    // Stock: Omnium's level moved by exactly the day's sales and restocked returns, and the
    // till, after the evening sync, shows that level with nothing left pending.
    let mut skus: Vec<&String> = day.stock_before.keys().collect();
    skus.sort();
    let mut off = Vec::new();
    for sku in skus {
        let before = day.stock_before[sku];
        let want = before + till.stock_delta.get(sku).copied().unwrap_or(0.0);
        let (omnium, reserved) = sim.stock(sku, STORE).unwrap_or((f64::NAN, 0.0));
        let local = day
            .client
            .stock_json(sku)
            .map(|s| parse(&s)["warehouses"][0].clone());
        let w = local.unwrap_or_default();
        let (q, p, a) = (
            w["quantity"].as_f64().unwrap_or(f64::NAN),
            w["pending"].as_f64().unwrap_or(f64::NAN),
            w["available"].as_f64().unwrap_or(f64::NAN),
        );
        if omnium != want || q != omnium || p != 0.0 || a != omnium - reserved {
            off.push(format!(
                "{sku}: Omnium {omnium} on hand (expected {before}{:+}), {} available; the till: {q} on hand, \
                 pending {p:+}, available {a}",
                want - before,
                omnium - reserved
            ));
        }
    }
    if !off.is_empty() {
        problems.push(format!(
            "stock differs for {} SKU(s): {}",
            off.len(),
            off.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
        ));
    }
    problems
}

fn report(day: &Day, final_status: &Status, elapsed: Duration) -> bool {
    let (sim, till) = (day.sim, &day.till);
    let stats = sim.stats();
    let whole = till
        .cancellations
        .iter()
        .filter(|c| matches!(c, Cancelled::Order(_)))
        .count();
    let total: i64 = till.takings.values().sum();
    let split: Vec<String> = till
        .takings
        .iter()
        .map(|(m, a)| format!("{m} {}", kroner(*a)))
        .collect();
    let pdf_bytes: usize = till.receipts.iter().map(|r| r.pdf.len()).sum();
    println!();
    println!("the till recorded");
    println!(
        "  {} sales · {} returns · {} cancellations ({whole} whole orders, {} lines) · {} receipts · {} outbox jobs",
        till.sales.len(),
        till.returns.len(),
        till.cancellations.len(),
        till.cancellations.len() - whole,
        till.receipts.len(),
        day.jobs
    );
    println!("  takings {} ({})", kroner(total), split.join(", "));
    println!("Omnium received (read from the simulator)");
    println!("  orders received        {:>5}", stats.orders_created);
    println!("  returns received       {:>5}", stats.returns_created);
    println!(
        "  cancellations          {:>5}   (orders and lines)",
        stats.cancellations
    );
    println!(
        "  duplicates rejected    {:>5}   (orders {}, returns {})",
        stats.duplicate_orders_rejected + stats.duplicate_returns_rejected,
        stats.duplicate_orders_rejected,
        stats.duplicate_returns_rejected
    );
    println!(
        "  invoices               {:>5}   with {} PDF files ({} kB), updates {}",
        stats.invoices_created,
        stats.invoice_files_added,
        pdf_bytes / 1024,
        stats.invoice_updates
    );
    let customer = sim
        .customer(NEW_CUSTOMER)
        .map_or("missing".to_string(), |(k, c)| {
            format!(
                "{NEW_CUSTOMER} {} {}, {k}, customer number {}",
                c["firstName"].as_str().unwrap_or("?"),
                c["lastName"].as_str().unwrap_or("?"),
                c["customerNumber"].as_str().unwrap_or("?")
            )
        });
    println!(
        "  customers upserted     {:>5}   ({customer})",
        stats.customers_upserted
    );
    if let Some(r) = &day.reception {
        let po = sim.purchase_order(&r.po_id).unwrap_or_default();
        let received: f64 = r.lines.iter().map(|l| l.received).sum();
        let ordered: f64 = r.lines.iter().map(|l| l.ordered).sum();
        println!(
            "  goods receptions       {:>5}   ({} of {} {}, {received} units for {ordered} ordered; replays refused {})",
            stats.goods_receptions,
            r.id,
            r.po_id,
            po["status"].as_str().unwrap_or("?"),
            stats.duplicate_goods_receptions
        );
    }
    for id in [&day.cc.stale, &day.cc.fresh] {
        let o = sim.order(id).unwrap_or_default();
        println!(
            "  click & collect {:<8}       {} · handed over {} of {} (the till shows {})",
            id,
            o["status"].as_str().unwrap_or("?"),
            order_sum(&o, "deliveredQuantity"),
            order_sum(&o, "quantity"),
            day.local_status(id)
        );
    }
    if let Some(why) = &day.cc.refusal {
        println!("    the till refused {}: {why}", day.cc.stale);
    }
    println!(
        "  line updates           {:>5}   (partial pickups), refused on cancelled orders {}",
        stats.line_updates, stats.rejected_on_cancelled
    );
    println!(
        "  requests sent          {:>5}   (every route: token, pushes, retries, read-backs, pulls)",
        stats.requests
    );
    println!(
        "  products served        {:>5}   stock items served {}",
        stats.products_served, stats.stock_items_served
    );
    println!("  faults injected        {:>5}", stats.faults_injected);
    // After an unknown outcome the library reads the order back instead of sending again.
    let read_backs = stats
        .by_route
        .get("GET /api/Orders/{id}")
        .copied()
        .unwrap_or(0);
    println!("  order reads            {read_backs:>5}   (GET /api/Orders/{{id}}: read-backs after an unknown outcome, fetches after events)");

    let mut problems = verify(day);
    if stats.duplicate_orders_rejected + stats.duplicate_returns_rejected > 0 {
        problems.push("Omnium rejected duplicates: something was sent twice".into());
    }
    let expect = [
        ("orders", stats.orders_created, till.sales.len()),
        ("returns", stats.returns_created, till.returns.len()),
        ("invoices", stats.invoices_created, till.receipts.len()),
        (
            "invoice files",
            stats.invoice_files_added,
            till.receipts.len(),
        ),
        ("goods receptions", stats.goods_receptions, 1),
    ];
    for (what, got, want) in expect {
        if got != want as u64 {
            problems.push(format!(
                "{got} {what} created in Omnium for {want} recorded"
            ));
        }
    }
    if final_status.pending + final_status.blocked > 0 {
        problems.push(format!(
            "outbox not empty: pending {}, blocked {}",
            final_status.pending, final_status.blocked
        ));
    }
    println!();
    if problems.is_empty() {
        println!(
            "check: every one of the {} sales is in Omnium exactly once; all returns, cancellations, {} receipt PDFs\n       \
             (byte for byte), the customer, the goods reception and the pickups landed; the cancelled order stayed\n       \
             cancelled; the till's stock of {} SKUs equals Omnium's  OK  ({:.1} s)",
            till.sales.len(),
            till.receipts.len(),
            day.stock_before.len(),
            elapsed.as_secs_f64()
        );
        true
    } else {
        println!("check: FAILED");
        for p in &problems {
            println!("  - {p}");
        }
        false
    }
}

// ---------------------------------------------------------------------------------------------

/// A fresh directory for the demo's database, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "flow-omnium-store-day-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(base_url: &str, db: &std::path::Path) -> String {
    json!({
        "database_path": db.to_string_lossy(),
        "store_id": STORE,
        "market_id": "NOR",
        "currency": "NOK",
        "terminal_id": "t01",
        "omnium": {"base_url": base_url, "client_id": "sim-client", "client_secret": "sim-secret"},
        // The defaults (1 minute growing to 2 hours) suit a real store; a demo wants quick catch-up.
        "sync": {"retry_initial_ms": 200, "retry_max_ms": 2000},
    })
    .to_string()
}

fn run() -> Result<bool, String> {
    let started = Instant::now();
    let sim = Simulator::start(SimConfig::default())
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    // Omnium before the shop opens: the catalog, a purchase order on its way to oslo-1, and a
    // click & collect order placed earlier in the week.
    let catalog = sim.load_catalog(&CatalogSpec {
        products: PRODUCTS,
        max_variants: 3,
        seed: SEED,
        categories: 24,
        ..CatalogSpec::default()
    });
    let po = sim.new_purchase_order(STORE, 3);
    let po_id = po["id"].as_str().unwrap_or("?").to_string();
    let po_skus: HashSet<String> = each(&po["purchaseOrderForm"]["lineItems"])
        .filter_map(|l| l["code"].as_str().map(str::to_string))
        .collect();
    sim.add_purchase_order(po);
    let stale = sim.add_web_order(sim.new_web_order("ClickAndCollect", STORE, 2));
    // A real Omnium answers in tens of milliseconds; with an instant one the catch-up would
    // be over before the display could show it.
    sim.set_latency_ms(20);
    let dir = TempDir::new().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let db = dir.0.join("omnium.db");
    let client = Client::open(&config(&sim.base_url(), &db))
        .map_err(|e| format!("cannot open the client: {e}"))?;
    println!(
        "flow-omnium {} · a Saturday at the till of {STORE}, terminal t01",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "  Omnium (simulated)  {} · {} products, {} SKUs, {} categories, {} stock levels",
        sim.base_url(),
        count(catalog.products as u64),
        count(catalog.skus as u64),
        catalog.categories,
        count(catalog.stock_items as u64)
    );
    println!("  outbox database     {}", db.display());
    println!();

    let mut day = Day {
        sim: &sim,
        client: &client,
        till: Till::new(),
        screen: Screen::new(),
        jobs: 0,
        faults_due: false,
        n: 0,
        events: Vec::new(),
        changes: BTreeMap::new(),
        watches: Vec::new(),
        cc: ClickCollect {
            stale: stale["objectId"].as_str().unwrap_or("?").to_string(),
            ..ClickCollect::default()
        },
        po_id,
        po_skus,
        reception: None,
        scanned: None,
        stock_before: HashMap::new(),
        problems: Vec::new(),
    };
    day.morning(catalog.skus)?;
    day.run_sales()?;
    day.catch_up(Duration::from_secs(90));
    // catch_up watched the outbox drain; flush is how a POS waits for it at closing time.
    client.flush(Duration::from_secs(120)).map_err(|e| {
        format!(
            "flush: {e} (status {})",
            client.status_json().unwrap_or_default()
        )
    })?;
    day.drain();
    day.evening()?;
    day.drain();
    day.check_watches();
    let ok = report(&day, &status(&client), started.elapsed());
    drop(day);
    drop(client);
    Ok(ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("store_day: {e}");
            ExitCode::FAILURE
        }
    }
}
