//! Omnium's pages (`{"result": [...], "totalHits": N, "scrollId": "..."}`, or a bare list)
//! read as typed items straight from the answer's bytes: never a `serde_json::Value` tree of
//! the whole page. Each data set has its own response cap, a nesting limit guards every page,
//! and an item that does not have the types the till reads fails the data set with the field
//! named (`products: result[3].variants[0].ean: wrong type, expected a string`), never a
//! panic and never a partial page.

use super::Failure;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

const MIB: u64 = 1024 * 1024;

/// Response caps per data set (bytes). Omnium's largest documented pages, with generous
/// room per item (README, SECURITY): an answer over its cap fails the data set, never read
/// further.
pub mod cap {
    use super::MIB;
    /// A product scroll page: 1,000 products (`take`), each at most 32 KiB once the fields
    /// the till never reads are excluded (`excludedFields`): dozens of variants and prices.
    pub const PRODUCTS: u64 = 32 * MIB;
    /// An inventory search or scroll page: at most 1,000 items (Omnium's scroll page; the
    /// ERP guide speaks of 2,000), batches excluded: a few hundred bytes each.
    pub const INVENTORY: u64 = 8 * MIB;
    /// `GET /api/ProductCategories`: `pageSize` at most 1,000 categories, a few KiB each.
    pub const CATEGORIES: u64 = 8 * MIB;
    /// `POST /api/Stores/SearchStores`: `take` at most 100 stores with opening hours.
    pub const STORES: u64 = 4 * MIB;
    /// An order or purchase-order search page: `take` at most 100 (`pageSize` 100 for
    /// `GetOrdersForPickUpPoint`), an order with hundreds of lines well under 160 KiB.
    pub const ORDERS: u64 = 16 * MIB;
    /// `GET /api/Markets`: a tenant's markets.
    pub const MARKETS: u64 = 2 * MIB;
    /// Anything else: one order, one customer, one invoice, an answer to a write.
    pub const DEFAULT: u64 = 8 * MIB;
    /// One customer.
    pub const CUSTOMER: u64 = MIB;
    /// The token endpoint's answer: a token and its lifetime.
    pub const TOKEN: u64 = 64 * 1024;
}

/// Whether `f` is an answer over `cap` (a page of a data set, [`super::OmniumApi::fetch_page`]).
pub fn too_large_for(f: &Failure, cap: u64) -> bool {
    match f {
        Failure::Rejected { status: 0, message } | Failure::Uncertain(message) => {
            message.ends_with(&super::transport::too_large(cap))
        }
        _ => false,
    }
}

/// Deeper nesting than this fails the page. Omnium's documents nest less than ten levels
/// (an order's form, its shipments, their lines, a line's properties).
pub const MAX_DEPTH: usize = 64;

/// One page of a search or scroll.
#[derive(Debug)]
pub struct Page<T = Value> {
    pub items: Vec<T>,
    pub total_hits: Option<u64>,
    pub scroll_id: Option<String>,
    /// SHA-256 of the raw bytes of the `result` list as Omnium sent them: the same content
    /// served again has the same fingerprint (the scroll id around it may change).
    pub fingerprint: [u8; 32],
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Page {
            items: Vec::new(),
            total_hits: None,
            scroll_id: None,
            fingerprint: [0; 32],
        }
    }
}

/// The wrapper around the list; other fields (`facets`, `isValid`) are skipped unread.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wrapper<'a> {
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    total_hits: Option<u64>,
    #[serde(default)]
    scroll_id: Option<String>,
}

/// Lists inside an item whose `null` elements are skipped, not a failed page: a product's
/// variants, prices, categories, images; an order's lines, shipments, payments. Each skip is
/// counted under the list's field name and logged once per page by [`Page::parse`] or
/// [`parse_one`] (`products: POST /api/Products/Scroll: 2 null element(s) in `variants`
/// skipped`). Use as `#[serde(deserialize_with = "…")]` through [`null_skipping!`].
pub mod nulls {
    use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
    use std::cell::RefCell;
    use std::marker::PhantomData;

    thread_local! {
        /// Nulls skipped on this thread since the last [`take`], by field name.
        static SKIPPED: RefCell<Vec<(&'static str, usize)>> = const { RefCell::new(Vec::new()) };
    }

    fn note(field: &'static str, n: usize) {
        SKIPPED.with(|s| {
            let mut s = s.borrow_mut();
            match s.iter_mut().find(|(f, _)| *f == field) {
                Some((_, count)) => *count += n,
                None => s.push((field, n)),
            }
        });
    }

    /// The nulls skipped since the last call, by field name (and forgets them).
    pub fn take() -> Vec<(&'static str, usize)> {
        SKIPPED.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }

    struct List<T>(&'static str, PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for List<T> {
        type Value = Option<Vec<T>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list")
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            let mut skipped = 0;
            while let Some(item) = seq.next_element::<Option<T>>()? {
                match item {
                    Some(item) => out.push(item),
                    None => skipped += 1,
                }
            }
            if skipped > 0 {
                note(self.0, skipped);
            }
            Ok(Some(out))
        }
    }

    /// An optional list whose `null` elements are skipped and counted under `field`.
    pub fn skip<'de, D, T>(d: D, field: &'static str) -> Result<Option<Vec<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        d.deserialize_option(List(field, PhantomData))
    }
}

/// Defines `fn $name` for `#[serde(deserialize_with = "$name")]` on an `Option<Vec<T>>`
/// field: its `null` elements are skipped and counted under `$field` ([`nulls`]).
macro_rules! null_skipping {
    ($($name:ident => $field:literal),* $(,)?) => {
        $(
            fn $name<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
            where
                D: serde::Deserializer<'de>,
                T: serde::Deserialize<'de>,
            {
                $crate::omnium::page::nulls::skip(d, $field)
            }
        )*
    };
}
pub(crate) use null_skipping;

/// Logs the nulls [`nulls`] skipped while a body was read (once per body, by field).
fn log_skipped_nulls(what: &str, data_set: &str) {
    for (field, n) in nulls::take() {
        log::warn!("{data_set}: {what}: {n} null element(s) in `{field}` skipped");
    }
}

/// Why a body is not a page of `T`.
fn refused(message: String) -> Failure {
    Failure::Rejected { status: 0, message }
}

impl<T: DeserializeOwned> Page<T> {
    /// Reads a page from an answer's body: a list, or an object whose `result` is a list.
    /// `what` names the request, `data_set` the data set (both in every error). Anything
    /// else (an error body, HTML from a proxy, a list of the wrong items) is a failure, never
    /// an empty page, so a data set Omnium failed to serve never wipes local data.
    pub fn parse(body: &[u8], what: &str, data_set: &str) -> Result<Page<T>, Failure> {
        if let Some(depth) = too_deep(body, MAX_DEPTH) {
            return Err(refused(format!(
                "{data_set}: {what}: the answer nests deeper than {MAX_DEPTH} levels \
                 (at byte {depth}); not read"
            )));
        }
        let not_a_page = || {
            Failure::Uncertain(format!(
                "{data_set}: {what}: the answer is not a page of results"
            ))
        };
        let start = body.iter().position(|b| !b.is_ascii_whitespace());
        let (list, total_hits, scroll_id, prefix) = match start.map(|i| body[i]) {
            Some(b'[') => {
                let list: &RawValue = serde_json::from_slice(body)
                    .map_err(|e| syntax(&e, body, what, data_set, ""))?;
                (list, None, None, "")
            }
            Some(b'{') => {
                let w: Wrapper = serde_json::from_slice(body)
                    .map_err(|e| syntax(&e, body, what, data_set, ""))?;
                let list = w.result.ok_or_else(not_a_page)?;
                (list, w.total_hits, w.scroll_id, "result")
            }
            _ => return Err(not_a_page()),
        };
        let raw = list.get();
        if !raw.starts_with('[') {
            return Err(not_a_page());
        }
        nulls::take();
        let items: Vec<T> = serde_json::from_str(raw)
            .map_err(|e| syntax(&e, raw.as_bytes(), what, data_set, prefix))?;
        log_skipped_nulls(what, data_set);
        use sha2::{Digest, Sha256};
        Ok(Page {
            items,
            total_hits,
            scroll_id: scroll_id.filter(|s| !s.is_empty()),
            fingerprint: Sha256::digest(raw.as_bytes()).into(),
        })
    }
}

/// A body that must be one JSON document of type `T` (a market list, one order).
pub fn parse_one<T: DeserializeOwned>(
    body: &[u8],
    what: &str,
    data_set: &str,
) -> Result<T, Failure> {
    if let Some(depth) = too_deep(body, MAX_DEPTH) {
        return Err(refused(format!(
            "{data_set}: {what}: the answer nests deeper than {MAX_DEPTH} levels (at byte {depth}); not read"
        )));
    }
    nulls::take();
    let one = serde_json::from_slice(body).map_err(|e| syntax(&e, body, what, data_set, ""))?;
    log_skipped_nulls(what, data_set);
    Ok(one)
}

/// The error for a body serde refused: the field's path and what was expected, never the
/// value (an error body or a customer's data could be quoted).
fn syntax(e: &serde_json::Error, text: &[u8], what: &str, data_set: &str, prefix: &str) -> Failure {
    use serde_json::error::Category;
    let at = offset(text, e.line(), e.column());
    let path = path_at(text, at, prefix);
    let field = if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    };
    match e.classify() {
        Category::Data => {
            let message = e.to_string();
            // serde: "invalid type: string \"…\", expected a string at line 1 column 9":
            // only the part after "expected", which names a type, never the value.
            let expected = message
                .split_once(", expected ")
                .map(|(_, rest)| rest)
                .map(|rest| rest.rsplit_once(" at line ").map_or(rest, |(r, _)| r))
                .map(|r| r.chars().take(80).collect::<String>());
            let why = match expected {
                Some(x) => format!("wrong type, expected {x}"),
                None if message.starts_with("invalid") => "invalid value".to_string(),
                // serde's own ("missing field `id`") or this crate's: no value in them.
                None => message
                    .rsplit_once(" at line ")
                    .map_or(message.as_str(), |(m, _)| m)
                    .chars()
                    .take(120)
                    .collect(),
            };
            refused(format!("{data_set}: {what}: {field}{why}"))
        }
        Category::Syntax | Category::Eof | Category::Io => Failure::Uncertain(format!(
            "{data_set}: {what}: the answer is not JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )),
    }
}

/// The byte offset of serde's (1-based) line and column.
fn offset(text: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match text[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    (start + column.saturating_sub(1)).min(text.len())
}

/// The path of the value at `at` in a JSON text (`result[3].variants[0].ean`), read by a
/// scan with an explicit stack (no recursion, whatever the nesting).
fn path_at(text: &[u8], at: usize, prefix: &str) -> String {
    enum Frame {
        Object(Option<String>),
        List(usize),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    let end = at.min(text.len());
    while i < end {
        match text[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    if text[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if expect_key {
                    if let Some(Frame::Object(key)) = stack.last_mut() {
                        let k = &text[start..i.min(text.len())];
                        *key = Some(String::from_utf8_lossy(k).chars().take(64).collect());
                    }
                    expect_key = false;
                }
            }
            b'{' => {
                stack.push(Frame::Object(None));
                expect_key = true;
            }
            b'[' => stack.push(Frame::List(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::List(n)) => *n += 1,
                Some(Frame::Object(_)) => expect_key = true,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    let mut path = prefix.to_string();
    for frame in &stack {
        match frame {
            Frame::List(n) => path.push_str(&format!("[{n}]")),
            Frame::Object(Some(k)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Frame::Object(None) => {}
        }
    }
    path
}

/// The byte offset where the nesting first goes deeper than `max`, if it does (strings are
/// skipped: brackets inside them do not count).
pub fn too_deep(text: &[u8], max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                // Most of a page is text: skip to the closing quote a vector search at a time.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', text.get(i..)?) {
                        Some(j) if text[i + j] == b'\\' => i += j + 2,
                        Some(j) => {
                            i += j;
                            break;
                        }
                        // Unterminated: the parser says what is wrong.
                        None => return None,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct Item {
        #[serde(default)]
        sku: Option<String>,
        #[serde(default)]
        #[allow(dead_code)]
        lines: Option<Vec<Line>>,
    }

    #[derive(Deserialize, Debug)]
    struct Line {
        #[serde(default)]
        #[allow(dead_code)]
        ean: Option<String>,
    }

    fn parse(body: &str) -> Result<Page<Item>, Failure> {
        Page::parse(body.as_bytes(), "POST /api/X/Search", "things")
    }

    #[test]
    fn pages_are_read_from_wrappers_or_lists_skipping_unknown_fields() {
        let p = parse(
            r#"{"result": [{"sku": "A", "other": {"deep": [1, 2]}}, {}], "totalHits": 5,
                "scrollId": "abc", "facets": [{"x": 1}]}"#,
        )
        .unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.items[0].sku.as_deref(), Some("A"));
        assert_eq!(
            (p.total_hits, p.scroll_id.as_deref()),
            (Some(5), Some("abc"))
        );
        let list = parse(r#"[{"sku": "B"}]"#).unwrap();
        assert_eq!(list.items.len(), 1);
        assert_eq!(
            parse(r#"{"result": [], "scrollId": ""}"#)
                .unwrap()
                .scroll_id,
            None
        );
    }

    #[test]
    fn the_fingerprint_is_the_lists_bytes_whatever_the_scroll_id() {
        let a = parse(r#"{"result": [{"sku": "A"}], "scrollId": "s-1"}"#).unwrap();
        let b = parse(r#"{"scrollId": "s-2", "result": [{"sku": "A"}]}"#).unwrap();
        let c = parse(r#"{"result": [{"sku": "B"}], "scrollId": "s-1"}"#).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
    }

    #[test]
    fn only_a_page_of_results_is_a_page() {
        for body in [
            r#"{"error": "busy"}"#,
            r#""<html>""#,
            r#"{"result": null}"#,
            r#"{"result": {"sku": "A"}}"#,
            "",
            "null",
        ] {
            assert!(matches!(parse(body), Err(Failure::Uncertain(_))), "{body}");
        }
        let Err(Failure::Uncertain(m)) = parse("<html>busy</html>") else {
            panic!("HTML is not a page");
        };
        assert!(m.contains("things") && m.contains("not a page"), "{m}");
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named_with_the_data_set_never_quoted() {
        let body = r#"{"result": [{"sku": "A"}, {"sku": "B", "lines": [{"ean": "1"},
                      {"ean": "kari@example.no is not a number", "x": 1}, {"ean": 7}]}]}"#;
        let Err(Failure::Rejected { status: 0, message }) = parse(body) else {
            panic!("a wrong type is refused");
        };
        assert_eq!(
            message,
            "things: POST /api/X/Search: result[1].lines[2].ean: wrong type, expected a string"
        );
        let Err(Failure::Rejected { message, .. }) = parse(r#"[{"sku": ["kari"]}]"#) else {
            panic!("a wrong type is refused");
        };
        assert!(message.contains("[0].sku: wrong type"), "{message}");
        assert!(!message.contains("kari"), "{message}");
        let Err(Failure::Rejected { message, .. }) =
            parse(r#"{"totalHits": "many", "result": []}"#)
        else {
            panic!("a wrong type is refused");
        };
        assert!(message.contains("totalHits: wrong type"), "{message}");
    }

    #[test]
    fn deep_nesting_fails_the_page_without_recursion() {
        let deep = format!(
            r#"{{"result": [{{"sku": "A", "x": {}{}}}]}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let Err(Failure::Rejected { message, .. }) = parse(&deep) else {
            panic!("too deep");
        };
        assert!(message.contains("deeper than 64"), "{message}");
        // Brackets inside strings do not count.
        let text = format!(r#"{{"result": [{{"sku": "{}"}}]}}"#, "[".repeat(1000));
        assert_eq!(parse(&text).unwrap().items.len(), 1);
        assert!(too_deep(
            format!("{}{}", "[".repeat(64), "]".repeat(64)).as_bytes(),
            64
        )
        .is_none());
        assert!(too_deep(
            format!("{}{}", "[".repeat(65), "]".repeat(65)).as_bytes(),
            64
        )
        .is_some());
    }

    #[test]
    fn truncated_or_broken_json_is_uncertain() {
        assert!(matches!(
            parse(r#"{"result": [{"sku": "A"}"#),
            Err(Failure::Uncertain(_))
        ));
        assert!(matches!(
            parse(r#"[{"sku": "A"},]"#),
            Err(Failure::Uncertain(_))
        ));
    }
}
