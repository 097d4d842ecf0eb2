//! End-to-end tests of the simulator's read side (products, categories, stores, markets, inventory)
//! through a real HTTP client.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{json, Value};

use super::catalog::ean_check_digit;
use super::tests::{agent, call, token};
use super::*;

struct Fixture {
    sim: Simulator,
    a: ureq::Agent,
    tok: String,
}

impl Fixture {
    fn new(cfg: SimConfig) -> Fixture {
        let sim = Simulator::start(cfg).expect("simulator starts");
        let a = agent();
        let tok = token(&a, &sim);
        Fixture { sim, a, tok }
    }

    fn with_catalog(spec: &CatalogSpec) -> (Fixture, CatalogSummary) {
        let f = Fixture::new(SimConfig::default());
        let s = f.sim.load_catalog(spec);
        (f, s)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = call(
            &self.a,
            "POST",
            &self.url(path),
            Some(&self.tok),
            Some(body),
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = call(&self.a, "GET", &self.url(path), Some(&self.tok), None);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POST a search/scroll, then GET the scroll (with the latest id) until an empty page.
    fn scroll(&self, what: &str, body: &Value) -> Scrolled {
        let start = if what == "Products" {
            "/api/Products/Scroll"
        } else {
            "/api/Inventory/Search"
        };
        let (status, mut page) = self.post(start, body);
        assert_eq!(status, 200, "{page}");
        let total = page["totalHits"].as_u64().expect("totalHits");
        let mut out = Scrolled {
            items: Vec::new(),
            page_sizes: Vec::new(),
            total,
            scroll_id: page["scrollId"].as_str().map(str::to_string),
        };
        loop {
            let result = page["result"].as_array().expect("result").clone();
            assert_eq!(page["totalHits"].as_u64(), Some(total));
            out.page_sizes.push(result.len());
            let done = result.is_empty();
            out.items.extend(result);
            let Some(id) = page["scrollId"].as_str().filter(|_| !done) else {
                break;
            };
            let (status, next) = self.get(&format!("/api/{what}/Scroll/{id}"));
            assert_eq!(status, 200, "{next}");
            page = next;
        }
        out
    }

    fn products(&self, body: &Value) -> Vec<Value> {
        self.scroll("Products", body).items
    }
}

struct Scrolled {
    items: Vec<Value>,
    /// Sizes of every page, the final empty one included.
    page_sizes: Vec<usize>,
    total: u64,
    scroll_id: Option<String>,
}

fn spec(products: usize) -> CatalogSpec {
    CatalogSpec {
        products,
        ..CatalogSpec::default()
    }
}

fn plus_ms(stamp: &str, ms: i64) -> String {
    let t = DateTime::parse_from_rfc3339(stamp)
        .expect("rfc3339")
        .with_timezone(&Utc)
        + TimeDelta::milliseconds(ms);
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn product_ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|p| p["productId"].as_str().expect("productId").to_string())
        .collect()
}

fn skus_of(p: &Value) -> Vec<String> {
    let variants = p["variants"].as_array().expect("variants");
    if variants.is_empty() {
        vec![p["skuId"].as_str().expect("skuId").to_string()]
    } else {
        variants
            .iter()
            .map(|v| v["skuId"].as_str().expect("variant skuId").to_string())
            .collect()
    }
}

fn ean_ok(ean: &str) -> bool {
    let d: Vec<u8> = ean.bytes().map(|b| b.wrapping_sub(b'0')).collect();
    d.len() == 13 && d.iter().all(|&x| x < 10) && ean_check_digit(&d) == d[12]
}

fn is_general_price(p: &Value) -> bool {
    p["marketId"] == "NOR"
        && ["storeId", "customerId", "skuId", "promotionId"]
            .iter()
            .all(|k| p[*k].is_null())
}

#[test]
fn full_scroll_serves_every_sku_exactly_once() {
    let (f, summary) = Fixture::with_catalog(&spec(150));
    f.sim.set_scroll_page_size(40);
    let url = f.url("/api/Products/Scroll");
    assert_eq!(call(&f.a, "POST", &url, None, Some(&json!({}))).0, 401);

    // take 1000 is capped at the page size: a short page is not the end.
    let s = f.scroll("Products", &json!({"take": 1000, "isFacetsDisabled": true}));
    assert_eq!(s.total, 150);
    assert_eq!(s.page_sizes, vec![40, 40, 40, 30, 0]);
    assert_eq!(summary.products, 150);
    let mut skus: Vec<String> = s.items.iter().flat_map(skus_of).collect();
    assert_eq!(skus.len(), summary.skus);
    skus.sort();
    let unique: BTreeSet<&String> = skus.iter().collect();
    assert_eq!(unique.len(), skus.len(), "a SKU was served twice");
    assert_eq!(skus, f.sim.sku_ids());

    for p in &s.items {
        let pid = p["productId"].as_str().expect("productId");
        assert_eq!(p["id"], format!("{pid}_no"));
        assert_eq!(p["language"], "no");
        for v in p["variants"].as_array().expect("variants") {
            assert_eq!(v["modified"], p["modified"]);
        }
        assert!(p["marketIds"]
            .as_array()
            .expect("marketIds")
            .contains(&json!("NOR")));
        assert_eq!(p["costCurrency"], "NOK");
        assert!(p["cost"].as_f64().is_some_and(|c| c > 0.0));
        assert!(p["brand"].as_str().is_some_and(|b| !b.is_empty()));
        let assets = p["assets"].as_array().expect("assets");
        assert!((1..=3).contains(&assets.len()));
        let mains: Vec<&Value> = assets.iter().filter(|a| a["isMainImage"] == true).collect();
        assert_eq!(mains.len(), 1);
        assert_eq!(p["mainImageUrl"], mains[0]["url"]);
        assert!(mains[0]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("https://images.example.no/{pid}/"))));
        let cats = p["categories"].as_array().expect("categories");
        assert!((1..=2).contains(&cats.len()));
        assert_eq!(
            cats.iter().filter(|c| c["isMainCategory"] == true).count(),
            1
        );
        let general: Vec<&Value> = p["prices"]
            .as_array()
            .expect("prices")
            .iter()
            .filter(|x| is_general_price(x))
            .collect();
        assert_eq!(general.len(), 1, "{pid}");
        assert_eq!(general[0]["currencyCode"], "NOK");
        assert!(general[0]["validUntil"].is_null());
        let variants = p["variants"].as_array().expect("variants");
        if variants.is_empty() {
            assert_eq!(p["skuId"], pid);
            assert!(ean_ok(p["ean"].as_str().expect("ean")));
            assert_eq!(p["gtins"], json!([p["ean"]]));
        } else {
            assert!(p["skuId"].is_null());
            assert!(variants.len() <= 3);
            for v in variants {
                // "<product>-<size>" (spaces dropped: "-500ml"), or "<product>-<n>" when the
                // variants come in more than one colour.
                let sku = v["skuId"].as_str().expect("skuId");
                let suffix = sku
                    .strip_prefix(&format!("{pid}-"))
                    .expect("product prefix");
                let size = v["size"].as_str().expect("size").replace([' ', ','], "");
                assert!(suffix == size || suffix.parse::<usize>().is_ok(), "{sku}");
                assert!(v["color"].as_str().is_some_and(|c| !c.is_empty()));
                assert!(ean_ok(v["ean"].as_str().expect("variant ean")));
                assert_eq!(v["productId"], pid);
            }
        }
    }

    // The exhausted scroll is closed.
    let id = s.scroll_id.expect("scrollId");
    let (status, body) = f.get(&format!("/api/Products/Scroll/{id}"));
    assert_eq!((status, body), (404, json!("Scroll not found or expired")));
    let st = f.sim.stats();
    assert_eq!(st.products_served, 150);
    assert_eq!(st.scrolls_started, 1);
    assert_eq!(st.expired_scroll_requests, 1);
    assert_eq!(st.by_route["GET /api/Products/Scroll/{scrollId}"], 5);
}

#[test]
fn generated_data_is_varied_and_valid() {
    let f = Fixture::new(SimConfig::default());
    let summary = f.sim.load_catalog(&spec(400));
    let items = f.products(&json!({}));
    assert_eq!(items.len(), 400);
    let no_variants = items
        .iter()
        .filter(|p| p["variants"].as_array().is_some_and(Vec::is_empty))
        .count();
    assert!((80..=190).contains(&no_variants), "{no_variants}");
    let brands: HashSet<&str> = items.iter().filter_map(|p| p["brand"].as_str()).collect();
    assert!(brands.len() >= 12, "{brands:?}");
    let eans: Vec<&str> = items
        .iter()
        .flat_map(|p| {
            p["variants"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(std::iter::once(p))
                .filter_map(|x| x["ean"].as_str())
        })
        .collect();
    assert_eq!(eans.len(), summary.skus);
    assert_eq!(eans.iter().collect::<HashSet<_>>().len(), eans.len());
    assert!(eans.iter().all(|e| ean_ok(e)));

    let prices: Vec<(&Value, &Value)> = items
        .iter()
        .flat_map(|p| {
            p["prices"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |x| (p, x))
        })
        .collect();
    let count = |f: &dyn Fn(&Value, &Value) -> bool| prices.iter().filter(|(p, x)| f(p, x)).count();
    assert!(count(&|_, x| x["storeId"] == "oslo-1") > 40);
    let variant_prices = count(&|p, x| {
        x["skuId"].is_string()
            && x["skuId"] == x["code"]
            && p["variants"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v["skuId"] == x["skuId"]))
    });
    assert!(variant_prices > 20, "{variant_prices}");
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let campaigns: Vec<&Value> = prices
        .iter()
        .map(|(_, x)| *x)
        .filter(|x| x["promotionId"].is_string())
        .collect();
    let current = campaigns
        .iter()
        .filter(|x| x["validFrom"].as_str() < Some(&now) && x["validUntil"].as_str() > Some(&now))
        .count();
    let future = campaigns
        .iter()
        .filter(|x| x["validFrom"].as_str() > Some(&now))
        .count();
    let expired = campaigns
        .iter()
        .filter(|x| x["validUntil"].as_str() < Some(&now))
        .count();
    assert!(
        current > 0 && future > 0 && expired > 0,
        "{current} {future} {expired}"
    );
    assert_eq!(current + future + expired, campaigns.len());
    let swe = count(&|p, x| {
        x["marketId"] == "SWE"
            && x["currencyCode"] == "SEK"
            && p["marketIds"]
                .as_array()
                .is_some_and(|m| m.contains(&json!("SWE")))
    });
    assert!(swe > 2, "{swe}");
    assert!(count(&|_, x| x["customerId"].is_string()) > 2);
    // Money has at most two decimals.
    for (_, x) in &prices {
        let v = x["unitPrice"].as_f64().expect("unitPrice");
        assert!(((v * 100.0).round() - v * 100.0).abs() < 1e-6, "{v}");
    }
    assert!(prices
        .iter()
        .any(|(_, x)| x["unitPrice"].as_f64().is_some_and(|v| v.fract() == 0.5)));
}

#[test]
fn same_seed_same_catalog() {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in ["modified", "created", "validFrom", "validUntil"] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let f = Fixture::new(SimConfig::default());
    let load = |seed: u64| {
        let s = f.sim.load_catalog(&CatalogSpec {
            products: 120,
            seed,
            ..CatalogSpec::default()
        });
        let mut items = f.products(&json!({}));
        items.iter_mut().for_each(strip);
        let stock: Vec<Option<(f64, f64)>> = f
            .sim
            .sku_ids()
            .iter()
            .flat_map(|sku| ["oslo-1", "oslo-lager"].map(|w| f.sim.stock(sku, w)))
            .collect();
        (s, items, stock)
    };
    let a = load(7);
    let b = load(7);
    assert_eq!(a.0, b.0);
    assert!(a.1 == b.1, "same seed, different products");
    assert_eq!(a.2, b.2);
    let c = load(8);
    assert_ne!(product_ids(&a.1), product_ids(&c.1));
    // About 10 % of items are missing ("missing = 0").
    let missing = a.2.iter().filter(|x| x.is_none()).count();
    assert!(
        missing > 0 && missing * 4 < a.2.len(),
        "{missing}/{}",
        a.2.len()
    );
}

#[test]
fn modified_from_is_inclusive_and_a_scroll_is_a_snapshot() {
    let (f, _) = Fixture::with_catalog(&spec(60));
    f.sim.set_scroll_page_size(10);
    let touched = f.sim.touch_products(3);
    assert_eq!(touched.len(), 3);
    let stamps: Vec<String> = touched
        .iter()
        .map(|p| {
            f.sim.product(p).expect("product")["modified"]
                .as_str()
                .expect("modified")
                .to_string()
        })
        .collect();
    assert!(stamps[0] < stamps[1] && stamps[1] < stamps[2], "{stamps:?}");
    for p in &touched {
        assert!(f.sim.product(p).expect("product")["name"]
            .as_str()
            .is_some_and(|n| n.ends_with(" v1") || n.ends_with(" v2") || n.ends_with(" v3")));
    }

    // Inclusive: the product stamped exactly modifiedFrom is part of the delta.
    let got = product_ids(&f.products(&json!({"modifiedFrom": stamps[1]})));
    let want: BTreeSet<&String> = touched[1..].iter().collect();
    assert_eq!(got.iter().collect::<BTreeSet<_>>(), want);
    assert_eq!(
        product_ids(&f.products(&json!({"modifiedFrom": plus_ms(&stamps[2], 1)}))),
        Vec::<String>::new()
    );
    // modifiedTo bounds it from above (inclusive too).
    let got =
        product_ids(&f.products(&json!({"modifiedFrom": stamps[0], "modifiedTo": stamps[1]})));
    assert_eq!(got.len(), 2);

    // A scroll started now serves the three as they are now, whatever happens meanwhile.
    let (status, first) = f.post(
        "/api/Products/Scroll",
        &json!({"modifiedFrom": stamps[0], "take": 1}),
    );
    assert_eq!(status, 200);
    assert_eq!(first["totalHits"], 3);
    assert_eq!(first["result"].as_array().map(Vec::len), Some(1));
    let id = first["scrollId"].as_str().expect("scrollId").to_string();
    let last = touched.iter().max().expect("touched").clone();
    let mut changed = f.sim.product(&last).expect("product");
    let old_name = changed["name"].clone();
    changed["name"] = json!("Endret underveis");
    f.sim.upsert_product(changed);
    f.sim
        .upsert_product(json!({"productId": "NEW-1", "name": "Ny jakke"}));
    let mut served = first["result"].as_array().expect("result").clone();
    loop {
        let (status, page) = f.get(&format!("/api/Products/Scroll/{id}"));
        assert_eq!(status, 200);
        assert_eq!(page["totalHits"], 3);
        let r = page["result"].as_array().expect("result").clone();
        if r.is_empty() {
            break;
        }
        served.extend(r);
    }
    let served_ids = product_ids(&served);
    assert_eq!(
        served_ids.iter().collect::<BTreeSet<_>>(),
        touched.iter().collect()
    );
    let old = served
        .iter()
        .find(|p| p["productId"] == json!(last))
        .expect("served");
    assert_eq!(old["name"], old_name);

    // The next delta from the high-water mark has the late changes (and the tie at the mark).
    let hwm = served
        .iter()
        .filter_map(|p| p["modified"].as_str())
        .max()
        .expect("hwm")
        .to_string();
    let next = f.products(&json!({"modifiedFrom": hwm}));
    let ids: BTreeSet<String> = product_ids(&next).into_iter().collect();
    assert!(ids.contains("NEW-1") && ids.contains(&last), "{ids:?}");
    let changed = next
        .iter()
        .find(|p| p["productId"] == json!(last))
        .expect("changed");
    assert_eq!(changed["name"], "Endret underveis");
    let new = f.sim.product("NEW-1").expect("NEW-1");
    assert_eq!(new["id"], "NEW-1_no");
    assert_eq!(new["skuId"], "NEW-1");
    assert!(f.sim.sku_ids().contains(&"NEW-1".to_string()));
}

#[test]
fn default_order_is_by_id_and_modified_ascending_is_asked_for() {
    let (f, _) = Fixture::with_catalog(&spec(80));
    let touched = f.sim.touch_products(5);
    let all = f.products(&json!({}));
    let ids: Vec<&str> = all.iter().filter_map(|p| p["id"].as_str()).collect();
    assert!(ids.is_sorted());
    let modified: Vec<&str> = all.iter().filter_map(|p| p["modified"].as_str()).collect();
    assert!(
        !modified.is_sorted(),
        "default order must not look like modified order"
    );

    let asc = f.products(&json!({"sortOrder": "ModifiedAscending"}));
    let keys: Vec<(&str, &str)> = asc
        .iter()
        .map(|p| {
            (
                p["modified"].as_str().unwrap_or(""),
                p["id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        keys.is_sorted(),
        "ModifiedAscending sorts by modified, then id"
    );
    assert_eq!(product_ids(&asc[75..]), touched);

    let desc = f.products(&json!({"sortOrder": "ModifiedDescending"}));
    let mut rev = touched.clone();
    rev.reverse();
    assert_eq!(product_ids(&desc[..5]), rev);
}

#[test]
fn unknown_and_expired_scrolls_answer_404_and_are_counted() {
    let f = Fixture::new(SimConfig {
        scroll_ttl_ms: 100,
        ..SimConfig::default()
    });
    f.sim.load_catalog(&spec(30));
    f.sim.set_scroll_page_size(10);
    let gone = json!("Scroll not found or expired");
    assert_eq!(f.get("/api/Products/Scroll/nope"), (404, gone.clone()));
    let no_token = call(&f.a, "GET", &f.url("/api/Products/Scroll/nope"), None, None);
    assert_eq!(no_token.0, 401);

    let (_, page) = f.post("/api/Products/Scroll", &json!({}));
    let id = page["scrollId"].as_str().expect("scrollId").to_string();
    std::thread::sleep(Duration::from_millis(160));
    assert_eq!(
        f.get(&format!("/api/Products/Scroll/{id}")),
        (404, gone.clone())
    );

    let (_, page) = f.post("/api/Products/Scroll", &json!({}));
    let id = page["scrollId"].as_str().expect("scrollId").to_string();
    assert_eq!(f.get(&format!("/api/Products/Scroll/{id}")).0, 200);
    f.sim.expire_scrolls();
    assert_eq!(
        f.get(&format!("/api/Products/Scroll/{id}")),
        (404, gone.clone())
    );

    // An inventory scroll id is not a product scroll id.
    let (_, page) = f.post("/api/Inventory/Search", &json!({"isBatchesExcluded": true}));
    let id = page["scrollId"].as_str().expect("scrollId").to_string();
    assert_eq!(f.get(&format!("/api/Products/Scroll/{id}")).0, 404);
    assert_eq!(f.get(&format!("/api/Inventory/Scroll/{id}")).0, 200);
    std::thread::sleep(Duration::from_millis(160));
    assert_eq!(f.get(&format!("/api/Inventory/Scroll/{id}")), (404, gone));

    let s = f.sim.stats();
    assert_eq!(s.expired_scroll_requests, 5);
    assert_eq!(s.scrolls_started, 3);
}

#[test]
fn max_open_scrolls_tracks_overlap() {
    let (f, _) = Fixture::with_catalog(&spec(30));
    f.sim.set_scroll_page_size(10);
    let open = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                let (_, p) = f.post("/api/Products/Scroll", &json!({}));
                p["scrollId"].as_str().expect("scrollId").to_string()
            })
            .collect()
    };
    let finish = |id: &str| loop {
        let (status, p) = f.get(&format!("/api/Products/Scroll/{id}"));
        assert_eq!(status, 200);
        if p["result"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
    };
    let ids = open(3);
    assert_eq!(f.sim.stats().max_open_scrolls, 3);
    ids.iter().for_each(|id| finish(id));
    let more = open(1);
    finish(&more[0]);
    let s = f.sim.stats();
    assert_eq!((s.scrolls_started, s.max_open_scrolls), (4, 3));

    // A single-page result still has a scrollId, and stays open until its empty page.
    f.sim.set_scroll_page_size(1000);
    f.sim.reset_stats();
    let (_, p) = f.post("/api/Products/Scroll", &json!({}));
    assert_eq!(p["result"].as_array().map(Vec::len), Some(30));
    let id = p["scrollId"].as_str().expect("scrollId").to_string();
    let _ = open(1);
    assert_eq!(f.sim.stats().max_open_scrolls, 2);
    finish(&id);
    // Inventory searches that fit in one page open nothing.
    let (_, p) = f.post("/api/Inventory/Search", &json!({}));
    assert!(p["scrollId"].is_null());
    assert_eq!(f.sim.stats().scrolls_started, 2);
}

#[test]
fn product_filters_markets_language_active_deleted_and_union_delta() {
    let (f, _) = Fixture::with_catalog(&spec(120));
    let swe = f.products(&json!({"marketId": "SWE"}));
    assert!(!swe.is_empty() && swe.len() < 120);
    assert!(swe.iter().all(|p| p["marketIds"]
        .as_array()
        .is_some_and(|m| m.contains(&json!("SWE")))));
    assert_eq!(f.products(&json!({"marketIds": ["SWE"]})).len(), swe.len());
    assert_eq!(f.products(&json!({"marketIds": ["NOR"]})).len(), 120);

    let all = f.products(&json!({}));
    let pid = |i: usize| all[i]["productId"].as_str().expect("pid").to_string();
    // Another language version of the same product.
    let mut en = all[0].clone();
    if let Some(m) = en.as_object_mut() {
        m.remove("id");
    }
    en["language"] = json!("en");
    en["name"] = json!("Wool sweater");
    f.sim.upsert_product(en);
    assert_eq!(f.products(&json!({"productLanguage": "en"})).len(), 1);
    assert_eq!(f.products(&json!({"productLanguage": "no"})).len(), 120);
    assert_eq!(f.products(&json!({})).len(), 121);
    assert_eq!(f.sim.product(&pid(0)).expect("product")["language"], "no");

    let before = f.sim.stats();
    let hwm = f.sim.product(&pid(0)).expect("p")["modified"]
        .as_str()
        .expect("m")
        .to_string();
    f.sim.deactivate_product(&pid(1));
    f.sim.delete_product(&pid(2));
    let skus = f.sim.sku_ids();
    assert!(!skus
        .iter()
        .any(|s| s.starts_with(&pid(1)) || s.starts_with(&pid(2))));
    let full = f.products(&json!({}));
    assert_eq!(
        full.len(),
        120,
        "a deleted product is not part of a full sync"
    );
    let inactive = full
        .iter()
        .find(|p| p["productId"] == json!(pid(1)))
        .expect("inactive");
    assert_eq!(inactive["isActive"], false);
    assert_eq!(f.products(&json!({"isActive": true})).len(), 119);
    let delta = f.products(&json!({"modifiedFrom": hwm}));
    let deleted = delta
        .iter()
        .find(|p| p["productId"] == json!(pid(2)))
        .expect("deleted in delta");
    assert_eq!(
        (&deleted["status"], &deleted["isDeleted"]),
        (&json!("Deleted"), &json!(true))
    );
    assert!(f.sim.stats().products_served > before.products_served);

    // Union delta: a price that activates after the last sync brings its product along.
    let activates = Utc::now() + TimeDelta::milliseconds(120);
    f.sim.upsert_product(json!({
        "productId": "CAMPAIGN-1",
        "name": "Kampanjejakke",
        "prices": [{"unitPrice": 499.0, "currencyCode": "NOK", "marketId": "NOR",
                    "validFrom": activates.to_rfc3339_opts(SecondsFormat::Millis, true), "validUntil": null}],
    }));
    let stamp = f.sim.product("CAMPAIGN-1").expect("p")["modified"]
        .as_str()
        .expect("m")
        .to_string();
    let since = json!({"modifiedFrom": plus_ms(&stamp, 1), "isUnionDeltaQuery": true});
    assert!(f.products(&since).is_empty(), "not active yet");
    std::thread::sleep(Duration::from_millis(200));
    assert!(f
        .products(&json!({"modifiedFrom": plus_ms(&stamp, 1)}))
        .is_empty());
    assert_eq!(
        product_ids(&f.products(&since)),
        vec!["CAMPAIGN-1".to_string()]
    );

    assert_eq!(
        f.post(
            "/api/Products/Scroll",
            &json!({"modifiedFrom": "yesterday"})
        )
        .0,
        400
    );
    assert_eq!(
        f.post("/api/Products/Scroll", &json!({"marketIds": "NOR"}))
            .0,
        400
    );
}

#[test]
fn product_categories_paging_and_cap() {
    let (f, summary) = Fixture::with_catalog(&CatalogSpec {
        products: 10,
        categories: 45,
        ..CatalogSpec::default()
    });
    assert_eq!(summary.categories, 45);
    let page = |q: &str| f.get(&format!("/api/ProductCategories{q}"));
    let (status, p1) = page("?page=1&pageSize=20");
    assert_eq!(status, 200);
    assert_eq!(p1["totalHits"], 45);
    assert_eq!(p1["result"].as_array().map(Vec::len), Some(20));
    assert_eq!(
        page("?page=3&pageSize=20").1["result"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    assert_eq!(page("?page=4&pageSize=20").1["result"], json!([]));
    assert_eq!(page("").1["result"].as_array().map(Vec::len), Some(20));
    let (_, all) = page("?page=1&pageSize=1000");
    let cats = all["result"].as_array().expect("result").clone();
    assert_eq!(cats.len(), 45);
    for q in ["?pageSize=1001", "?page=0", "?pageSize=0", "?page=x"] {
        assert_eq!(page(q).0, 400, "{q}");
    }
    let no_token = call(&f.a, "GET", &f.url("/api/ProductCategories"), None, None);
    assert_eq!(no_token.0, 401);

    let roots: HashSet<&str> = cats
        .iter()
        .filter(|c| c["parentId"].is_null())
        .filter_map(|c| c["categoryId"].as_str())
        .collect();
    assert!(!roots.is_empty() && roots.len() < 20);
    for c in &cats {
        assert_eq!(
            c["id"],
            format!("{}_no", c["categoryId"].as_str().expect("categoryId"))
        );
        assert_eq!(c["language"], "no");
        assert!(c["name"].as_str().is_some_and(|n| !n.is_empty()));
        assert!(c["isHidden"].is_boolean() && c["sortIndex"].is_u64());
        if let Some(parent) = c["parentId"].as_str() {
            assert!(roots.contains(parent), "{c}");
        }
    }
    // Products are filed under categories that exist.
    let ids: HashSet<&str> = cats
        .iter()
        .filter_map(|c| c["categoryId"].as_str())
        .collect();
    for p in f.products(&json!({})) {
        for c in p["categories"].as_array().expect("categories") {
            assert!(ids.contains(c["categoryId"].as_str().expect("categoryId")));
        }
    }
}

#[test]
fn search_stores_and_markets() {
    let f = Fixture::new(SimConfig::default());
    let (status, all) = f.post("/api/Stores/SearchStores", &json!({}));
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["totalHits"], 3);
    let ids: Vec<&str> = all["result"]
        .as_array()
        .expect("result")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["bergen-1", "oslo-1", "oslo-lager"]);

    let (_, one) = f.post("/api/Stores/SearchStores", &json!({"storeIds": ["oslo-1"]}));
    assert_eq!(one["totalHits"], 1);
    let s = &one["result"][0];
    assert_eq!(
        (&s["isPrimaryStore"], &s["isWarehouse"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(s["address"]["city"], "Oslo");
    assert_eq!(s["address"]["countryCode"], "NO");
    assert!(s["phoneNumber"].is_string() && s["email"].is_string());
    assert_eq!(
        s["availableWarehouses"],
        json!([{"warehouseCode": "oslo-1", "priority": 0}, {"warehouseCode": "oslo-lager", "priority": 1}])
    );
    assert_eq!(
        s["mondayOpeningHours"],
        json!({"isOpen": true, "openFrom": "09:00:00", "openTo": "20:00:00"})
    );
    assert_eq!(s["saturdayOpeningHours"]["openTo"], "18:00:00");
    assert_eq!(s["sundayOpeningHours"]["isOpen"], false);
    let special = &s["additionalOpeningHours"][0];
    assert_eq!(special["label"], "Julaften");
    assert!(special["date"]
        .as_str()
        .is_some_and(|d| d.ends_with("-12-24T00:00:00Z")));
    assert_eq!(special["openingHours"]["openTo"], "13:00:00");
    let (_, lager) = f.post(
        "/api/Stores/SearchStores",
        &json!({"storeIds": ["oslo-lager"]}),
    );
    assert_eq!(lager["result"][0]["isPublicVisible"], false);
    assert_eq!(lager["result"][0]["isWarehouse"], true);

    let (_, paged) = f.post("/api/Stores/SearchStores", &json!({"take": 2, "page": 1}));
    assert_eq!(paged["result"].as_array().map(Vec::len), Some(1));
    assert_eq!(paged["totalHits"], 3);
    assert_eq!(
        f.post("/api/Stores/SearchStores", &json!({"take": 101})).0,
        400
    );
    assert_eq!(
        f.post(
            "/api/Stores/SearchStores",
            &json!({"take": 100, "page": 101})
        )
        .0,
        400
    );

    let stamp = s["modified"].as_str().expect("modified").to_string();
    let (_, same) = f.post("/api/Stores/SearchStores", &json!({"modifiedFrom": stamp}));
    assert_eq!(same["totalHits"], 3, "modifiedFrom is inclusive");
    let after = plus_ms(&stamp, 1);
    let (_, none) = f.post("/api/Stores/SearchStores", &json!({"modifiedFrom": after}));
    assert_eq!(none["totalHits"], 0);
    f.sim
        .upsert_store(json!({"id": "tromso-1", "name": "Fjellsport Tromsø", "isWarehouse": true}));
    let (_, delta) = f.post("/api/Stores/SearchStores", &json!({"modifiedFrom": after}));
    assert_eq!(delta["result"][0]["id"], "tromso-1");
    assert_eq!(delta["totalHits"], 1);

    let (status, markets) = f.get("/api/Markets");
    assert_eq!(status, 200);
    assert_eq!(markets[0]["marketId"], "NOR");
    assert_eq!(markets[0]["currency"], "NOK");
    assert_eq!(markets[0]["productContentLanguage"], "no");
    assert_eq!(markets[0]["defaultTaxRate"], 25);
    assert_eq!(markets[1]["marketId"], "SWE");
    assert_eq!(markets[1]["currency"], "SEK");
    let no_token = call(&f.a, "GET", &f.url("/api/Markets"), None, None);
    assert_eq!(no_token.0, 401);
}

#[test]
fn inventory_search_scroll_and_last_modified() {
    let (f, summary) = Fixture::with_catalog(&spec(50));
    f.sim.set_scroll_page_size(25);
    let skus = f.sim.sku_ids();
    let in_oslo: Vec<&String> = skus
        .iter()
        .filter(|s| f.sim.stock(s, "oslo-1").is_some())
        .collect();
    assert!(in_oslo.len() > 25 && in_oslo.len() < skus.len());

    let s = f.scroll(
        "Inventory",
        &json!({"warehouseCodes": ["oslo-1"], "isBatchesExcluded": true}),
    );
    assert_eq!(s.total as usize, in_oslo.len());
    assert!(s.scroll_id.is_some());
    assert_eq!(s.items.len(), in_oslo.len());
    assert!(s.page_sizes.iter().all(|&n| n <= 25));
    let mut seen = HashSet::new();
    for item in &s.items {
        let sku = item["sku"].as_str().expect("sku");
        assert!(seen.insert(sku.to_string()), "{sku} twice");
        assert_eq!(item["warehouseCode"], "oslo-1");
        assert!(item.get("batches").is_none());
        let (inv, res) = f.sim.stock(sku, "oslo-1").expect("stock");
        assert_eq!(item["inventory"].as_f64(), Some(inv));
        assert_eq!(item["reservedInventory"].as_f64(), Some(res));
        assert!((0.0..=50.0).contains(&inv) && (0.0..=3.0).contains(&res));
    }
    let everything = f.scroll("Inventory", &json!({}));
    assert_eq!(everything.items.len(), summary.stock_items);
    assert_eq!(everything.items[0]["batches"], json!([]));

    let stamp = s.items[0]["modified"]
        .as_str()
        .expect("modified")
        .to_string();
    let (_, none) = f.post(
        "/api/Inventory/Search",
        &json!({"lastModified": plus_ms(&stamp, 1)}),
    );
    assert_eq!(
        (&none["totalHits"], &none["scrollId"]),
        (&json!(0), &Value::Null)
    );
    let sku = in_oslo[0].clone();
    f.sim.set_stock(&sku, "oslo-1", 7.0, 1.0);
    let (_, one) = f.post(
        "/api/Inventory/Search",
        &json!({"lastModified": plus_ms(&stamp, 1)}),
    );
    assert_eq!(one["totalHits"], 1);
    assert!(one["scrollId"].is_null(), "everything fit in one page");
    let item = &one["result"][0];
    assert_eq!(
        (&item["sku"], &item["inventory"]),
        (&json!(sku), &json!(7.0))
    );
    let exact = item["modified"].as_str().expect("modified").to_string();
    let (_, again) = f.post("/api/Inventory/Search", &json!({"lastModified": exact}));
    assert_eq!(again["totalHits"], 1, "lastModified is inclusive");
    let (_, by_code) = f.post("/api/Inventory/Search", &json!({"productCodes": [sku]}));
    assert!(by_code["result"]
        .as_array()
        .is_some_and(|r| r.iter().all(|i| i["sku"] == json!(sku))));
    let served = f.sim.stats().stock_items_served;
    assert_eq!(
        served as usize,
        in_oslo.len()
            + summary.stock_items
            + 1
            + 1
            + by_code["result"].as_array().map_or(0, Vec::len)
    );
}

#[test]
fn pos_orders_and_restocking_returns_move_stock() {
    let (f, _) = Fixture::with_catalog(&spec(40));
    let skus = f.sim.sku_ids();
    let stocked = skus
        .iter()
        .find(|s| f.sim.stock(s, "oslo-1").is_some())
        .expect("stocked")
        .clone();
    let missing = skus
        .iter()
        .find(|s| f.sim.stock(s, "oslo-1").is_none())
        .expect("missing")
        .clone();
    let (inv, res) = f.sim.stock(&stocked, "oslo-1").expect("stock");
    let (_, before) = f.post(
        "/api/Inventory/Search",
        &json!({"productCodes": [stocked], "warehouseCodes": ["oslo-1"]}),
    );
    let load_stamp = before["result"][0]["modified"]
        .as_str()
        .expect("modified")
        .to_string();

    let order = json!({
        "id": "ST-1", "orderNumber": "ST-1", "marketId": "NOR", "storeId": "oslo-1",
        "billingCurrency": "NOK",
        "orderForm": {
            "lineItems": [
                {"lineItemId": "1", "code": stocked, "quantity": 2, "placedPrice": 100.0},
                {"lineItemId": "2", "code": missing, "quantity": 1, "placedPrice": 50.0}
            ],
            "payments": [{"paymentMethodName": "Card", "transactionId": "t", "transactionType": "Sale",
                          "status": "Processed", "amount": 250.0}]
        }
    });
    let (status, body) = call(
        &f.a,
        "PUT",
        &f.url("/api/Orders/PosOrders"),
        Some(&f.tok),
        Some(&order),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(f.sim.stock(&stocked, "oslo-1"), Some((inv - 2.0, res)));
    assert_eq!(f.sim.stock(&missing, "oslo-1"), Some((-1.0, 0.0)));
    let order_modified = f.sim.order("ST-1").expect("order")["modified"]
        .as_str()
        .expect("m")
        .to_string();
    let delta = f.scroll(
        "Inventory",
        &json!({"lastModified": plus_ms(&load_stamp, 1)}),
    );
    let mut got: Vec<&str> = delta
        .items
        .iter()
        .filter_map(|i| i["sku"].as_str())
        .collect();
    got.sort();
    let mut want = vec![stocked.as_str(), missing.as_str()];
    want.sort();
    assert_eq!(got, want);
    assert!(delta
        .items
        .iter()
        .all(|i| i["modified"] == json!(order_modified)));

    // A restocking return puts it back where it was sold; one that is not restocked does not.
    let ret = json!({"rmaNumber": "R1", "returns": [
        {"lineItemId": "1", "returnQuantity": 1, "isStockUpdated": true},
        {"lineItemId": "2", "returnQuantity": 1, "isStockUpdated": false}]});
    let url = f.url("/api/Returns/ST-1/Return");
    assert_eq!(call(&f.a, "POST", &url, Some(&f.tok), Some(&ret)).0, 200);
    assert_eq!(f.sim.stock(&stocked, "oslo-1"), Some((inv - 1.0, res)));
    assert_eq!(f.sim.stock(&missing, "oslo-1"), Some((-1.0, 0.0)));
    let after_return = f.sim.order("ST-1").expect("order")["modified"]
        .as_str()
        .expect("m")
        .to_string();
    assert!(
        after_return > order_modified,
        "a return bumps the order's modified"
    );
    // Returned in another store: stock goes there.
    let ret = json!({"rmaNumber": "R2", "storeId": "bergen-1", "returns": [
        {"lineItemId": "1", "returnQuantity": 1, "isStockUpdated": true}]});
    assert_eq!(call(&f.a, "POST", &url, Some(&f.tok), Some(&ret)).0, 200);
    assert_eq!(f.sim.stock(&stocked, "oslo-1"), Some((inv - 1.0, res)));
    assert_eq!(f.sim.stock(&stocked, "bergen-1"), Some((1.0, 0.0)));
    let item = f.scroll(
        "Inventory",
        &json!({"productCodes": [stocked], "warehouseCodes": ["bergen-1"]}),
    );
    assert!(item.items[0]["modified"].as_str() > Some(after_return.as_str()));
}

#[test]
fn clock_is_strictly_increasing() {
    let f = Fixture::new(SimConfig::default());
    let mut last = String::new();
    for i in 0..50 {
        f.sim.set_stock("X", "oslo-1", f64::from(i), 0.0);
        f.sim.upsert_product(json!({"productId": format!("P{i}")}));
        let m = f.sim.product(&format!("P{i}")).expect("p")["modified"]
            .as_str()
            .expect("m")
            .to_string();
        assert!(m > last, "{m} <= {last}");
        assert_eq!(m.len(), "2026-11-28T10:15:00.123Z".len());
        last = m;
    }
}

/// `excludedFields` (issue 12): the flags and `specificFields` leave fields out of every
/// product and variant served, on the scroll's later pages too; the rest is unchanged. An
/// Omnium that ignores them (`set_exclusions_honoured(false)`) serves everything.
#[test]
fn excluded_fields_are_left_out_of_every_page_of_the_scroll() {
    let (f, summary) = Fixture::with_catalog(&spec(30));
    f.sim.enrich_products(4_000);
    let body = json!({"take": 10, "excludedFields": {
        "isInventoryExcluded": true, "isPropertiesExcluded": true,
        "specificFields": ["description", "Tags", "ean"]}});
    let slim = f.scroll("Products", &body);
    assert_eq!(slim.items.len(), summary.products);
    assert_eq!(slim.page_sizes, [10, 10, 10, 0]);
    let full = f.products(&json!({"take": 10}));
    let mut variants = 0;
    for (s, w) in slim.items.iter().zip(&full) {
        assert_eq!(s["id"], w["id"]);
        for gone in ["inventory", "properties", "description", "tags", "ean"] {
            assert!(s.get(gone).is_none(), "{gone} served: {s}");
            assert!(w.get(gone).is_some(), "{gone} missing without exclusions");
        }
        for kept in ["name", "prices", "modified", "shortDescription", "skuId"] {
            assert_eq!(s[kept], w[kept], "{kept}");
        }
        for (sv, wv) in s["variants"]
            .as_array()
            .unwrap()
            .iter()
            .zip(w["variants"].as_array().unwrap())
        {
            assert!(sv.get("ean").is_none(), "a variant's ean served: {sv}");
            assert_eq!(sv["skuId"], wv["skuId"]);
            variants += 1;
        }
    }
    assert!(variants > 0, "the catalog has variants");
    f.sim.set_exclusions_honoured(false);
    let ignored = f.products(&body);
    assert_eq!(ignored, full, "served whole when exclusions are ignored");
}

/// `keep_rendered_products` (for benchmarks) serves the same pages as rendering each time:
/// under the scroll's exclusions, under other exclusions than the ones kept, and after a
/// product changed (a new document, rendered afresh).
#[test]
fn kept_renderings_serve_the_same_pages_as_fresh_ones() {
    let (f, _) = Fixture::with_catalog(&spec(40));
    let slim = json!({"take": 15, "excludedFields": {
        "isInventoryExcluded": true, "isPropertiesExcluded": true,
        "specificFields": ["description"]}});
    let whole = json!({"take": 15});
    let fresh = |f: &Fixture| {
        f.sim.keep_rendered_products(false);
        let pages = (f.products(&slim), f.products(&whole));
        f.sim.keep_rendered_products(true);
        pages
    };
    let before = fresh(&f);
    assert!(before.0 != before.1, "the exclusions change what is served");
    f.sim.keep_rendered_products(true);
    for _ in 0..2 {
        assert_eq!(
            f.products(&slim),
            before.0,
            "kept under the scroll's exclusions"
        );
        assert_eq!(f.products(&whole), before.1, "kept under other exclusions");
    }
    let touched = f.sim.touch_products(5);
    assert_eq!(touched.len(), 5);
    let after = fresh(&f);
    assert!(after.0 != before.0, "the change is served");
    assert_eq!(
        f.products(&slim),
        after.0,
        "a changed product is rendered afresh"
    );
    assert_eq!(f.products(&whole), after.1);
}
