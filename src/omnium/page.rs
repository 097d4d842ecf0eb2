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
use std::io::Read;

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
    /// Reads a page from an answer's body held in memory ([`Page::read`] without a cap).
    pub fn parse(body: &[u8], what: &str, data_set: &str) -> Result<Page<T>, Failure> {
        Page::read(body, u64::MAX, what, data_set)
    }

    /// Reads a page from an answer's body as it arrives: a list, or an object whose
    /// `result` is a list. The body is never held whole: it is read 64 KiB at a time, each
    /// piece checked (the data set's `cap`, the nesting limit) and fingerprinted, and each
    /// item of the list parsed from its own bytes as soon as they are in (serde's slice
    /// parser, the fast one); what is around the list (`totalHits`, `scrollId`) is kept
    /// apart and parsed at the end. `what` names the request, `data_set` the data set (both
    /// in every error). Anything else (an error body, HTML from a proxy, a list of the wrong
    /// items) is a failure, never an empty page, so a data set Omnium failed to serve never
    /// wipes local data. A body over `cap` fails with [`super::transport::too_large`] (so
    /// [`too_large_for`] tells it), whatever was parsed of it before.
    pub fn read(body: impl Read, cap: u64, what: &str, data_set: &str) -> Result<Page<T>, Failure> {
        let mut scan = Scan::new(body, cap, true);
        let mut seg = Segments::default();
        let mut items: Vec<T> = Vec::new();
        nulls::take();
        loop {
            if scan.fill_with(Some(&mut seg)).is_err() {
                return Err(scan.stopped_failure(what, data_set));
            }
            let prefix = if scan.state.first == Some(b'{') {
                "result"
            } else {
                ""
            };
            let mut start = 0;
            for &end in &seg.ends {
                let item = &seg.done[start..end];
                start = end;
                match serde_json::from_slice::<T>(item) {
                    Ok(v) => items.push(v),
                    Err(e) => {
                        let prefix = format!("{prefix}[{}]", items.len());
                        return Err(refusal_in(&e, item, &prefix, what, data_set));
                    }
                }
            }
            seg.done.clear();
            seg.ends.clear();
            if scan.buf.is_empty() && scan.done {
                break;
            }
        }
        let not_a_page = || {
            Failure::Uncertain(format!(
                "{data_set}: {what}: the answer is not a page of results"
            ))
        };
        let outer = seg.outer.as_slice();
        let start = outer.iter().position(|b| !b.is_ascii_whitespace());
        let (list, total_hits, scroll_id, prefix) = match start.map(|i| outer[i]) {
            Some(b'[') => {
                let list: &RawValue = serde_json::from_slice(outer)
                    .map_err(|e| refusal_in(&e, outer, "", what, data_set))?;
                (list, None, None, "")
            }
            Some(b'{') => {
                let w: Wrapper = serde_json::from_slice(outer)
                    .map_err(|e| refusal_in(&e, outer, "", what, data_set))?;
                let list = w.result.ok_or_else(not_a_page)?;
                (list, w.total_hits, w.scroll_id, "result")
            }
            _ => return Err(not_a_page()),
        };
        let raw = list.get();
        if !raw.starts_with('[') {
            return Err(not_a_page());
        }
        let fingerprint = if scan.state.hashed {
            // The list was read item by item above: what is left of it here is `[]`.
            scan.fingerprint()
        } else {
            // A `result` key written with escapes: serde found the list the scan did not
            // (it stayed around the list, whole); read from there.
            items = serde_json::from_str(raw)
                .map_err(|e| refusal_in(&e, raw.as_bytes(), prefix, what, data_set))?;
            use sha2::{Digest, Sha256};
            Sha256::digest(raw.as_bytes()).into()
        };
        log_skipped_nulls(what, data_set);
        Ok(Page {
            items,
            total_hits,
            scroll_id: scroll_id.filter(|s| !s.is_empty()),
            fingerprint,
        })
    }
}

/// The wrapper around a page's list (the list itself read apart: here `[]`); other fields
/// (`facets`, `isValid`) are skipped unread.
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

/// The failure for `text` (an item of a page, or what is around the list) that serde
/// refused: the field named by its path under `prefix` (`result[3]`).
fn refusal_in(
    e: &serde_json::Error,
    text: &[u8],
    prefix: &str,
    what: &str,
    data_set: &str,
) -> Failure {
    let at = offset(text, e.line(), e.column());
    let mut replay = Structure::new();
    // Nesting was checked as the text arrived.
    let _ = replay.feed(&text[..at], None, None);
    let inner = replay.path();
    let path = if inner.is_empty() || prefix.is_empty() || inner.starts_with('[') {
        format!("{prefix}{inner}")
    } else {
        format!("{prefix}.{inner}")
    };
    syntax(e, &path, what, data_set)
}

/// The byte offset of serde's (1-based) line and column in `text` (a slice parsed whole).
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

/// A body held in memory that must be one JSON document of type `T` ([`read_one`]).
pub fn parse_one<T: DeserializeOwned>(
    body: &[u8],
    what: &str,
    data_set: &str,
) -> Result<T, Failure> {
    read_one(body, u64::MAX, what, data_set)
}

/// A body that must be one JSON document of type `T` (a market list, one order), read as
/// it arrives under `cap` and the nesting limit, like a page ([`Page::read`]).
pub fn read_one<T: DeserializeOwned>(
    body: impl Read,
    cap: u64,
    what: &str,
    data_set: &str,
) -> Result<T, Failure> {
    let mut scan = Scan::new(body, cap, false);
    nulls::take();
    let parsed = {
        let mut de = serde_json::Deserializer::from_reader(&mut scan);
        T::deserialize(&mut de).and_then(|one| de.end().map(|()| one))
    };
    match parsed {
        Ok(one) => {
            log_skipped_nulls(what, data_set);
            Ok(one)
        }
        Err(e) => Err(scan.refusal(&e, what, data_set)),
    }
}

/// The error for a body serde refused: the field's path and what was expected, never the
/// value (an error body or a customer's data could be quoted).
fn syntax(e: &serde_json::Error, path: &str, what: &str, data_set: &str) -> Failure {
    use serde_json::error::Category;
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

/// Bytes read from the answer, checked and handed to serde at a time.
const CHUNK: usize = 64 * 1024;

/// Why [`Scan`] stopped reading.
#[derive(Clone, Debug)]
enum Stop {
    OverCap,
    /// Nesting deeper than [`MAX_DEPTH`], at this byte of the answer.
    TooDeep(u64),
    /// The answer broke off (a timeout, a reset): redacted.
    Read(String),
}

/// An object's latest key as sent (its first 64 bytes).
#[derive(Clone)]
struct Key {
    bytes: [u8; 64],
    len: u8,
    seen: bool,
}

impl Key {
    const NONE: Key = Key {
        bytes: [0; 64],
        len: 0,
        seen: false,
    };

    fn push(&mut self, more: &[u8]) {
        let at = usize::from(self.len);
        let n = more.len().min(64 - at);
        self.bytes[at..at + n].copy_from_slice(&more[..n]);
        self.len += n as u8;
    }

    fn text(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

#[derive(Clone)]
enum Frame {
    Object(Key),
    /// The index of the current element.
    List(usize),
}

/// A page's list cut into its items as the body arrives ([`Page::read`]).
#[derive(Default)]
struct Segments {
    /// The bytes around the page's list, the list itself left as `[]`.
    outer: Vec<u8>,
    /// The item being read: its bytes so far (from earlier pieces), whether one is open,
    /// whether a comma came last.
    partial: Vec<u8>,
    in_item: bool,
    after_comma: bool,
    /// Items read whole and not yet parsed: their bytes end to end, and where each ends.
    done: Vec<u8>,
    ends: Vec<usize>,
}

impl Segments {
    /// The item being read ends with `tail` (empty between two commas: serde refuses it).
    fn finish_item(&mut self, tail: &[u8]) {
        self.done.append(&mut self.partial);
        self.done.extend_from_slice(tail);
        self.ends.push(self.done.len());
        self.in_item = false;
    }
}

/// Where a scan of a JSON text is: the containers open (an object with its latest key, a
/// list with its current index), inside a string or not, the line. Enough to name the path
/// of the value at an error (`result[3].variants[0].ean`) and to find the page's list.
#[derive(Clone)]
struct Structure {
    frames: Vec<Frame>,
    in_string: bool,
    /// After a backslash inside a string.
    escaped: bool,
    /// The string being read is a key: its bytes go to the innermost object's key.
    key_string: bool,
    expect_key: bool,
    /// Bytes scanned, the line they end on (1-based, as serde counts) and where it began.
    offset: u64,
    line: usize,
    line_start: u64,
    /// The first byte that is not white space.
    first: Option<u8>,
    /// While the page's list is being fingerprinted: its depth.
    hashing: Option<usize>,
    hashed: bool,
}

impl Structure {
    fn new() -> Structure {
        Structure {
            frames: Vec::new(),
            in_string: false,
            escaped: false,
            key_string: false,
            expect_key: false,
            offset: 0,
            line: 1,
            line_start: 0,
            first: None,
            hashing: None,
            hashed: false,
        }
    }

    fn key_bytes(&mut self, bytes: &[u8]) {
        if self.key_string {
            if let Some(Frame::Object(key)) = self.frames.last_mut() {
                key.push(bytes);
            }
        }
    }

    /// Whether a list opening here is the page's: the body itself, or the top object's
    /// `result` (written plainly: one written with escapes is found by serde, [`Page::read`]).
    fn at_page_list(&self) -> bool {
        match self.frames.as_slice() {
            [] => true,
            [Frame::Object(key)] => !self.expect_key && key.seen && key.text() == b"result",
            _ => false,
        }
    }

    /// Scans `bytes`, the next of the text: the bytes of the page's list go to `hash`, and
    /// to `seg` cut into items (the rest to its `outer`). `Err` with the offset of the first
    /// bracket nesting deeper than [`MAX_DEPTH`].
    fn feed(
        &mut self,
        bytes: &[u8],
        mut hash: Option<&mut sha2::Sha256>,
        mut seg: Option<&mut Segments>,
    ) -> Result<(), u64> {
        use sha2::Digest;
        let mut hash_from = self.hashing.map(|_| 0);
        let mut outer_from = self.hashing.is_none().then_some(0);
        let mut item_from = seg.as_deref().filter(|s| s.in_item).map(|_| 0);
        let mut i = 0;
        while i < bytes.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    self.key_bytes(&bytes[i..=i]);
                    i += 1;
                    continue;
                }
                // Most of a page is text: to its end a vector search at a time.
                match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                    None => {
                        self.key_bytes(&bytes[i..]);
                        i = bytes.len();
                    }
                    Some(j) => {
                        let at = i + j;
                        self.key_bytes(&bytes[i..at]);
                        if bytes[at] == b'\\' {
                            self.key_bytes(b"\\");
                            self.escaped = true;
                        } else {
                            self.in_string = false;
                            self.key_string = false;
                        }
                        i = at + 1;
                    }
                }
                continue;
            }
            let b = bytes[i];
            if self.first.is_none() && !b.is_ascii_whitespace() {
                self.first = Some(b);
            }
            // Directly inside the page's list: items start and end here.
            let in_list = self.hashing.is_some_and(|d| d == self.frames.len());
            if let (true, Some(s)) = (in_list, seg.as_deref_mut()) {
                match b {
                    b',' => {
                        let from = item_from.take().unwrap_or(i);
                        s.finish_item(&bytes[from..i]);
                        s.after_comma = true;
                    }
                    b']' | b'}' if s.in_item || s.after_comma => {
                        let from = item_from.take().unwrap_or(i);
                        s.finish_item(&bytes[from..i]);
                    }
                    b']' | b'}' => {}
                    _ if !s.in_item && !b.is_ascii_whitespace() => {
                        s.in_item = true;
                        s.after_comma = false;
                        item_from = Some(i);
                    }
                    _ => {}
                }
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.expect_key {
                        self.expect_key = false;
                        if let Some(Frame::Object(key)) = self.frames.last_mut() {
                            *key = Key::NONE;
                            key.seen = true;
                            self.key_string = true;
                        }
                    }
                }
                b'{' | b'[' => {
                    if b == b'[' && !self.hashed && self.hashing.is_none() && self.at_page_list() {
                        self.hashing = Some(self.frames.len() + 1);
                        hash_from = Some(i);
                        if let Some(s) = seg.as_deref_mut() {
                            s.outer
                                .extend_from_slice(&bytes[outer_from.take().unwrap_or(i)..=i]);
                        }
                    }
                    if b == b'{' {
                        self.frames.push(Frame::Object(Key::NONE));
                        self.expect_key = true;
                    } else {
                        self.frames.push(Frame::List(0));
                    }
                    if self.frames.len() > MAX_DEPTH {
                        return Err(self.offset + i as u64);
                    }
                }
                b'}' | b']' => {
                    self.frames.pop();
                    if self.hashing == Some(self.frames.len() + 1) {
                        if let (Some(h), Some(from)) = (hash.as_deref_mut(), hash_from) {
                            h.update(&bytes[from..=i]);
                        }
                        self.hashing = None;
                        self.hashed = true;
                        hash_from = None;
                        outer_from = Some(i);
                    }
                }
                b',' => match self.frames.last_mut() {
                    Some(Frame::List(n)) => *n += 1,
                    Some(Frame::Object(_)) => self.expect_key = true,
                    None => {}
                },
                b'\n' => {
                    self.line += 1;
                    self.line_start = self.offset + i as u64 + 1;
                }
                _ => {}
            }
            i += 1;
        }
        if let (Some(h), Some(from)) = (hash, hash_from) {
            h.update(&bytes[from..]);
        }
        if let Some(s) = seg {
            if let Some(from) = outer_from {
                s.outer.extend_from_slice(&bytes[from..]);
            }
            if let Some(from) = item_from {
                s.partial.extend_from_slice(&bytes[from..]);
            }
        }
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// The path of the value being read (`result[3].variants[0].ean`).
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.frames {
            match frame {
                Frame::List(n) => path.push_str(&format!("[{n}]")),
                Frame::Object(key) if key.seen => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&String::from_utf8_lossy(key.text()));
                }
                Frame::Object(_) => {}
            }
        }
        path
    }
}

/// The reader serde parses an answer from: it takes the body [`CHUNK`] bytes at a time,
/// stops past `cap` (reported as over the cap, not as broken JSON), scans each piece before
/// serde sees it (the nesting limit, the page's list fingerprinted by SHA-256 as it passes)
/// and keeps the last two pieces, so an error serde reports by line and column can be named
/// by its path. Nothing more of the body is held.
struct Scan<R> {
    inner: R,
    cap: u64,
    taken: u64,
    /// The piece serde is reading, and how far.
    buf: Vec<u8>,
    pos: usize,
    /// The piece before it (its bytes and where the scan was at its start).
    prev: Vec<u8>,
    prev_start: Option<Structure>,
    /// Where the scan was at the start of `buf`, and is at its end.
    start: Structure,
    state: Structure,
    hash: Option<sha2::Sha256>,
    stop: Option<Stop>,
    done: bool,
}

impl<R: Read> Scan<R> {
    fn new(inner: R, cap: u64, fingerprint: bool) -> Scan<R> {
        use sha2::Digest;
        Scan {
            inner,
            cap,
            taken: 0,
            buf: Vec::new(),
            pos: 0,
            prev: Vec::new(),
            prev_start: None,
            start: Structure::new(),
            state: Structure::new(),
            hash: fingerprint.then(sha2::Sha256::new),
            stop: None,
            done: false,
        }
    }

    fn stopped(&mut self, stop: Stop) -> std::io::Error {
        self.stop = Some(stop);
        std::io::Error::other("the answer was not read further")
    }

    /// The next piece of the body, scanned.
    fn fill(&mut self) -> std::io::Result<()> {
        self.fill_with(None)
    }

    /// [`Scan::fill`], the page's list cut into items in `seg`. At the end of the body the
    /// piece is empty (and `done` set).
    fn fill_with(&mut self, seg: Option<&mut Segments>) -> std::io::Result<()> {
        if self.stop.is_some() {
            return Err(std::io::Error::other("the answer was not read further"));
        }
        std::mem::swap(&mut self.buf, &mut self.prev);
        self.prev_start = Some(std::mem::replace(&mut self.start, self.state.clone()));
        self.buf.clear();
        self.buf.resize(CHUNK, 0);
        self.pos = 0;
        let mut len = 0;
        while len < CHUNK && !self.done {
            match self.inner.read(&mut self.buf[len..]) {
                Ok(0) => self.done = true,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(len);
                    let why = crate::redact::redact(&e.to_string());
                    return Err(self.stopped(Stop::Read(why)));
                }
            }
        }
        self.buf.truncate(len);
        self.taken += len as u64;
        if self.taken > self.cap {
            return Err(self.stopped(Stop::OverCap));
        }
        if let Err(at) = self.state.feed(&self.buf, self.hash.as_mut(), seg) {
            return Err(self.stopped(Stop::TooDeep(at)));
        }
        Ok(())
    }

    /// SHA-256 of the page's list as sent (zeros when there was none).
    fn fingerprint(&mut self) -> [u8; 32] {
        use sha2::Digest;
        match self.hash.take() {
            Some(h) if self.state.hashed => h.finalize().into(),
            _ => [0; 32],
        }
    }

    /// The path of the value at serde's `line` and `column` (1-based: the byte serde had
    /// read last), if it is in the last two pieces read.
    fn path_at(&self, line: usize, column: usize) -> Option<String> {
        let pieces = [
            (self.prev_start.as_ref(), self.prev.as_slice()),
            (Some(&self.start), self.buf.as_slice()),
        ];
        for (start, bytes) in pieces {
            let Some(start) = start else { continue };
            let line_start = if line == start.line {
                start.line_start
            } else if line > start.line {
                let Some(nl) = memchr::memchr_iter(b'\n', bytes).nth(line - start.line - 1) else {
                    continue;
                };
                start.offset + nl as u64 + 1
            } else {
                continue;
            };
            let at = (line_start + column as u64).saturating_sub(1);
            if at < start.offset || at > start.offset + bytes.len() as u64 {
                continue;
            }
            let mut replay = start.clone();
            replay.hashing = None;
            // Nesting was checked when the piece was read.
            let _ = replay.feed(&bytes[..(at - start.offset) as usize], None, None);
            return Some(replay.path());
        }
        None
    }

    /// What a body serde read through the scan ([`read_one`]) and refused, or the scan
    /// stopped, fails with.
    fn refusal(&self, e: &serde_json::Error, what: &str, data_set: &str) -> Failure {
        if self.stop.is_some() {
            return self.stopped_failure(what, data_set);
        }
        let path = match e.classify() {
            serde_json::error::Category::Data => {
                self.path_at(e.line(), e.column()).unwrap_or_default()
            }
            _ => String::new(),
        };
        syntax(e, &path, what, data_set)
    }

    /// Why the scan stopped reading (over the cap, too deep, broken off).
    fn stopped_failure(&self, what: &str, data_set: &str) -> Failure {
        match &self.stop {
            Some(Stop::OverCap) => refused(format!(
                "{data_set}: {what}: {}",
                super::transport::too_large(self.cap)
            )),
            Some(Stop::TooDeep(at)) => refused(format!(
                "{data_set}: {what}: the answer nests deeper than {MAX_DEPTH} levels \
                 (at byte {at}); not read"
            )),
            Some(Stop::Read(why)) => Failure::Uncertain(format!("{data_set}: {what}: {why}")),
            None => Failure::Uncertain(format!("{data_set}: {what}: the answer was not read")),
        }
    }
}

impl<R: Read> Read for Scan<R> {
    #[inline]
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        // serde_json reads a byte at a time.
        if let (Some(b), [slot]) = (self.buf.get(self.pos), &mut *out) {
            *slot = *b;
            self.pos += 1;
            return Ok(1);
        }
        if self.pos == self.buf.len() {
            if self.done && self.stop.is_none() {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
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
        // 64 levels are read, 65 are not.
        let nested = |n: usize| {
            format!(
                r#"{{"result": [{{"sku": "A", "x": {}{}}}]}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert_eq!(parse(&nested(61)).unwrap().items.len(), 1);
        assert!(matches!(
            parse(&nested(62)),
            Err(Failure::Rejected { message, .. }) if message.contains("deeper than 64")
        ));
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

    /// Hands out the body a few bytes at a time (a socket's pieces), then, optionally, fails
    /// (a connection reset mid-answer).
    struct Trickle<'a> {
        body: &'a [u8],
        at: usize,
        step: usize,
        fail_at: Option<usize>,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.fail_at.is_some_and(|f| self.at >= f) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                ));
            }
            let n = self.step.min(out.len()).min(self.body.len() - self.at);
            out[..n].copy_from_slice(&self.body[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn trickle(body: &[u8], step: usize, fail_at: Option<usize>) -> Trickle<'_> {
        Trickle {
            body,
            at: 0,
            step,
            fail_at,
        }
    }

    /// A page of `n` items, each with a name of `size` bytes, `bad` of them with a wrong
    /// type in its second line.
    fn big_page(n: usize, size: usize, bad: Option<usize>) -> String {
        let items: Vec<String> = (0..n)
            .map(|i| {
                let ean = if Some(i) == bad { "7".to_string() } else { r#""7""#.to_string() };
                format!(
                    "{{\"sku\": \"S-{i}\", \"name\": \"{}\",\n \"lines\": [{{\"ean\": \"1\"}}, {{\"ean\": {ean}}}]}}",
                    "x".repeat(size)
                )
            })
            .collect();
        format!(
            "{{\"totalHits\": {n},\n \"result\": [{}],\n \"scrollId\": \"s-9\"}}",
            items.join(",\n")
        )
    }

    /// Issue 11 item 10: a page is parsed from the body as it arrives, in pieces of any
    /// size, to the same items and the same fingerprint (SHA-256 of the `result` list's
    /// bytes as sent) as from memory; a field of the wrong type far into it is named by
    /// its path whatever piece it came in.
    #[test]
    fn a_page_read_as_it_arrives_is_the_same_page() {
        use sha2::{Digest, Sha256};
        let text = big_page(300, 700, None);
        let whole = parse(&text).unwrap();
        let list_start = text.find("\"result\": [").unwrap() + "\"result\": ".len();
        let list_end = text.rfind("],").unwrap() + 1;
        let expected: [u8; 32] = Sha256::digest(&text.as_bytes()[list_start..list_end]).into();
        assert_eq!(whole.fingerprint, expected);
        assert_eq!(whole.items.len(), 300);
        for step in [1, 7, 4096, 1 << 20] {
            let page: Page<Item> = Page::read(
                trickle(text.as_bytes(), step, None),
                u64::MAX,
                "GET /x",
                "things",
            )
            .unwrap();
            assert_eq!(page.items.len(), 300, "{step}");
            assert_eq!(page.items[299].sku.as_deref(), Some("S-299"));
            assert_eq!(page.fingerprint, expected, "{step}");
            assert_eq!(
                (page.total_hits, page.scroll_id.as_deref()),
                (Some(300), Some("s-9"))
            );
        }
        // Items 280 and 3, far past the first 64 KiB piece and in it.
        for bad in [280, 3] {
            let text = big_page(300, 700, Some(bad));
            for step in [1, 1000, 1 << 20] {
                let Err(Failure::Rejected { status: 0, message }) = Page::<Item>::read(
                    trickle(text.as_bytes(), step, None),
                    u64::MAX,
                    "GET /x",
                    "things",
                ) else {
                    panic!("a wrong type is refused");
                };
                assert_eq!(
                    message,
                    format!(
                        "things: GET /x: result[{bad}].lines[1].ean: wrong type, expected a string"
                    ),
                    "{step}"
                );
            }
        }
    }

    /// A body longer than its cap is stopped there (never read further) and told apart
    /// from broken JSON: the data set's "over the cap" failure, which asks for smaller
    /// pages. An answer that breaks off is uncertain, never an empty page.
    #[test]
    fn a_body_over_its_cap_is_stopped_there_and_reported_as_such() {
        let text = big_page(300, 700, None);
        let cap = 100 * 1024;
        let mut body = trickle(text.as_bytes(), 4096, None);
        let Err(f) = Page::<Item>::read(&mut body, cap, "GET /x", "things") else {
            panic!("over the cap");
        };
        assert!(too_large_for(&f, cap), "{f:?}");
        assert!(
            f.to_string()
                .contains("things: GET /x: the answer is larger than the 100 KiB"),
            "{f}"
        );
        assert!(
            body.at as u64 <= cap + CHUNK as u64,
            "read {} bytes",
            body.at
        );
        // Exactly at the cap is allowed.
        let exact = Page::<Item>::read(text.as_bytes(), text.len() as u64, "GET /x", "things");
        assert_eq!(exact.unwrap().items.len(), 300);
        let broken = Page::<Item>::read(
            trickle(text.as_bytes(), 4096, Some(150_000)),
            u64::MAX,
            "GET /x",
            "things",
        );
        let Err(Failure::Uncertain(m)) = broken else {
            panic!("an answer that broke off is uncertain: {broken:?}");
        };
        assert!(m.contains("reset"), "{m}");
    }

    /// The list is cut into items by a scan: brackets, commas and quotes inside text do not
    /// cut; an empty item, a second `result`, a `result` written with escapes are what
    /// serde makes of them.
    #[test]
    fn items_are_cut_where_serde_would_read_them() {
        let p = parse(r#"[{"sku": "a,]b[\"x}{"}, {"sku": "B"} ]"#).unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.items[0].sku.as_deref(), Some("a,]b[\"x}{"));
        assert_eq!(parse("[ ]").unwrap().items.len(), 0);
        assert_eq!(parse(r#"{"result": []}"#).unwrap().items.len(), 0);
        for broken in [
            r#"[{"sku": "A"},,{"sku": "B"}]"#,
            r#"[,]"#,
            r#"[{"sku": "A"} {"sku": "B"}]"#,
        ] {
            assert!(
                matches!(parse(broken), Err(Failure::Uncertain(_))),
                "{broken}"
            );
        }
        let escaped = parse(r#"{"res\u0075lt": [{"sku": "A"}], "totalHits": 1}"#).unwrap();
        let plain = parse(r#"{"result": [{"sku": "A"}], "totalHits": 1}"#).unwrap();
        assert_eq!(escaped.items[0].sku.as_deref(), Some("A"));
        assert_eq!(escaped.fingerprint, plain.fingerprint);
        let Err(Failure::Rejected { message, .. }) =
            parse(r#"{"result": [{"sku": "A"}], "result": []}"#)
        else {
            panic!("a second result is refused");
        };
        assert!(message.contains("duplicate field `result`"), "{message}");
    }
}
