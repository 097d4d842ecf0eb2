//! One pass from JSON to typed fields: a record's fields are read straight from the text
//! (or from a parsed value) into slots, strings borrowed where the text has no escapes, and
//! checked afterwards in a fixed order, so the error a bad input gets does not depend on
//! where in the text the fault sits. No tree of maps is built.
//!
//! JSON is read as `serde_json::Value` would read it: a repeated key keeps its last value,
//! whole numbers written as floats (`2.0`) are integers (as `normalize_numbers` makes them),
//! and a value under an unknown key is read in full (so its syntax errors are the same).

use super::fields::{unknown_field, Scalar};
use crate::error::{Error, Result};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;
use std::borrow::Cow;
use std::fmt;

/// A JSON value read and thrown away (its syntax still checked).
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Skip, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E>(self) -> std::result::Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_none<E>(self) -> std::result::Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Skip, D::Error> {
        Skip::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Skip, A::Error> {
        while map.next_key::<Key>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

/// An object key, borrowed from the text when it has no escapes.
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Key<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A whole number held as a float is an integer, as `fields::normalize_numbers` makes it.
fn number_of_f64(f: f64) -> Number {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Number::from(f as i64)
    } else {
        // JSON text holds no NaN or infinity; serde_json reads an overflow as an error.
        Number::from_f64(f).unwrap_or_else(|| Number::from(0))
    }
}

/// A field's slot: what the text held under its key, kept until the checks run.
#[derive(Default, Debug)]
pub(crate) enum Got<'de> {
    #[default]
    Absent,
    Null,
    Bool(bool),
    Num(Number),
    Str(Cow<'de, str>),
    /// An array or object where a scalar belongs: read, not kept.
    Array,
    Object,
}

impl Got<'_> {
    pub(crate) fn view(&self) -> Scalar<'_> {
        match self {
            Got::Absent | Got::Null => Scalar::Absent,
            Got::Bool(b) => Scalar::Bool(*b),
            Got::Num(n) => Scalar::Num(n),
            Got::Str(s) => Scalar::Str(s),
            Got::Array => Scalar::Array,
            Got::Object => Scalar::Object,
        }
    }

    /// Absent or null.
    pub(crate) fn is_none(&self) -> bool {
        matches!(self, Got::Absent | Got::Null)
    }
}

impl<'de> Deserialize<'de> for Got<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Got<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Got<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> std::result::Result<Got<'de>, E> {
                Ok(Got::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> std::result::Result<Got<'de>, E> {
                Ok(Got::Num(Number::from(n)))
            }
            fn visit_u64<E>(self, n: u64) -> std::result::Result<Got<'de>, E> {
                Ok(Got::Num(Number::from(n)))
            }
            fn visit_f64<E>(self, n: f64) -> std::result::Result<Got<'de>, E> {
                Ok(Got::Num(number_of_f64(n)))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Got<'de>, E> {
                Ok(Got::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Got<'de>, E> {
                Ok(Got::Str(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> std::result::Result<Got<'de>, E> {
                Ok(Got::Str(Cow::Owned(s)))
            }
            fn visit_unit<E>(self) -> std::result::Result<Got<'de>, E> {
                Ok(Got::Null)
            }
            fn visit_none<E>(self) -> std::result::Result<Got<'de>, E> {
                Ok(Got::Null)
            }
            fn visit_some<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> std::result::Result<Got<'de>, D::Error> {
                Got::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                seq: A,
            ) -> std::result::Result<Got<'de>, A::Error> {
                SkipVisitor.visit_seq(seq).map(|_| Got::Array)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<Got<'de>, A::Error> {
                SkipVisitor.visit_map(map).map(|_| Got::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// An object's fields read into `Self`'s slots, key by key.
pub(crate) trait Slots<'de>: Default {
    /// Reads the value under `key` into its slot; `false` for a key that has none (the
    /// caller skips its value).
    fn read<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<bool, A::Error>;
}

/// An object read into slots, with the first of its unknown keys (in the order a sorted
/// map lists them, as `Fields::deny_unknown` names it).
#[derive(Default)]
pub(crate) struct Obj<'de, T> {
    pub(crate) slots: T,
    pub(crate) unknown: Option<Cow<'de, str>>,
}

/// A value read where an object belongs: the object, or the kind of what was there.
pub(crate) enum Shaped<'de, T> {
    Obj(Obj<'de, T>),
    /// Not an object: the kind of what was there ("null", "an array", …).
    Other(&'static str),
}

fn read_object<'de, T: Slots<'de>, A: MapAccess<'de>>(
    mut map: A,
) -> std::result::Result<Obj<'de, T>, A::Error> {
    let mut obj = Obj::<T>::default();
    while let Some(Key(key)) = map.next_key::<Key>()? {
        if !obj.slots.read(&key, &mut map)? {
            map.next_value::<Skip>()?;
            if obj.unknown.as_ref().is_none_or(|u| key < *u) {
                obj.unknown = Some(key);
            }
        }
    }
    Ok(obj)
}

impl<'de, T: Slots<'de>> Deserialize<'de> for Shaped<'de, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Slots<'de>> Visitor<'de> for V<T> {
            type Value = Shaped<'de, T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                read_object(map).map(Shaped::Obj)
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
                Ok(Shaped::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
                Ok(Shaped::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
                Ok(Shaped::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
                Ok(Shaped::Other("a number"))
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
                Ok(Shaped::Other("a string"))
            }
            fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
                Ok(Shaped::Other("null"))
            }
            fn visit_none<E>(self) -> std::result::Result<Self::Value, E> {
                Ok(Shaped::Other("null"))
            }
            fn visit_some<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> std::result::Result<Self::Value, D::Error> {
                Shaped::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                SkipVisitor
                    .visit_seq(seq)
                    .map(|_| Shaped::Other("an array"))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A value read where an array of objects belongs.
#[derive(Default)]
pub(crate) enum List<'de, T> {
    #[default]
    Absent,
    Items(Vec<Shaped<'de, T>>),
    /// Null: counts as absent.
    Null,
    /// Not an array: its kind ("a string", …).
    Other(&'static str),
}

impl<'de, T: Slots<'de>> Deserialize<'de> for List<'de, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Slots<'de>> Visitor<'de> for V<T> {
            type Value = List<'de, T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(item) = seq.next_element::<Shaped<'de, T>>()? {
                    items.push(item);
                }
                Ok(List::Items(items))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                SkipVisitor.visit_map(map).map(|_| List::Other("an object"))
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
                Ok(List::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
                Ok(List::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
                Ok(List::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
                Ok(List::Other("a number"))
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
                Ok(List::Other("a string"))
            }
            fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
                Ok(List::Null)
            }
            fn visit_none<E>(self) -> std::result::Result<Self::Value, E> {
                Ok(List::Null)
            }
            fn visit_some<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> std::result::Result<Self::Value, D::Error> {
                List::deserialize(d)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Where a field sits, for messages: `sale`, or `sale.lines` item 3.
#[derive(Clone, Copy)]
pub(crate) struct At<'p> {
    pub(crate) base: &'p str,
    pub(crate) index: Option<usize>,
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.index {
            None => f.write_str(self.base),
            Some(i) => write!(f, "{}[{i}]", self.base),
        }
    }
}

impl At<'_> {
    pub(crate) fn path(&self, key: &str) -> String {
        format!("{self}.{key}")
    }

    /// The error `Fields::deny_unknown` gives for the first unknown key.
    pub(crate) fn deny_unknown(&self, unknown: &Option<Cow<str>>, allowed: &[&str]) -> Result<()> {
        match unknown {
            None => Ok(()),
            Some(k) => Err(unknown_field(&self.path(k), allowed)),
        }
    }

    /// The items of a required, non-empty array of objects, or the error
    /// `Fields::objects` gives.
    pub(crate) fn objects<'l, 'de, T>(
        &self,
        key: &str,
        list: &'l List<'de, T>,
    ) -> Result<Vec<&'l Obj<'de, T>>> {
        let items = match list {
            List::Absent | List::Null => return Err(Error::invalid(self.path(key), "is required")),
            List::Other(kind) => {
                return Err(Error::invalid(
                    self.path(key),
                    format!("expected an array, got {kind}"),
                ))
            }
            List::Items(items) => items,
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Shaped::Obj(o) => out.push(o),
                Shaped::Other(kind) => {
                    return Err(Error::InvalidInput(format!(
                        "{self}.{key}[{i}]: expected a JSON object, got {kind}"
                    )))
                }
            }
        }
        if out.is_empty() {
            return Err(Error::invalid(
                self.path(key),
                "must hold at least one item",
            ));
        }
        Ok(out)
    }
}

/// The checks of `fields::Fields`, on a slot's value.
#[derive(Clone, Copy)]
pub(crate) struct Field<'g> {
    pub(crate) at: At<'g>,
    pub(crate) key: &'static str,
    pub(crate) value: Scalar<'g>,
}

impl<'g> Field<'g> {
    pub(crate) fn new(at: At<'g>, key: &'static str, got: &'g Got<'_>) -> Field<'g> {
        Field {
            at,
            key,
            value: got.view(),
        }
    }

    /// The slot's value, or `default` when it is absent or null (as `Sale::normalize`
    /// fills it in before the checks).
    pub(crate) fn or(mut self, default: Option<&'g str>) -> Field<'g> {
        if let (Scalar::Absent, Some(d)) = (self.value, default) {
            self.value = Scalar::Str(d);
        }
        self
    }

    pub(crate) fn path(&self) -> String {
        self.at.path(self.key)
    }
    pub(crate) fn text_opt(&self) -> Result<Option<&'g str>> {
        self.value.text_opt(|| self.path())
    }
    pub(crate) fn text(&self) -> Result<&'g str> {
        self.value.text(|| self.path())
    }
    pub(crate) fn id_opt(&self) -> Result<Option<&'g str>> {
        self.value.id_opt(|| self.path())
    }
    pub(crate) fn id(&self) -> Result<&'g str> {
        self.value.id(|| self.path())
    }
    pub(crate) fn money_opt(&self) -> Result<Option<i64>> {
        self.value.money_opt(|| self.path())
    }
    pub(crate) fn money(&self) -> Result<i64> {
        self.value.money(|| self.path())
    }
    pub(crate) fn number_opt(&self) -> Result<Option<f64>> {
        self.value.number_opt(|| self.path())
    }
    pub(crate) fn number(&self) -> Result<f64> {
        self.value.number(|| self.path())
    }
    pub(crate) fn time(&self) -> Result<chrono::DateTime<chrono::FixedOffset>> {
        self.value.time(|| self.path())
    }
}

/// Canonical JSON written from slots: keys in sorted order, exactly as
/// `fields::canonical_json` writes the same object parsed into a `Value`.
pub(crate) struct Canon {
    pub(crate) out: Vec<u8>,
    first: bool,
}

impl Canon {
    pub(crate) fn with_capacity(n: usize) -> Canon {
        Canon {
            out: Vec::with_capacity(n),
            first: true,
        }
    }

    pub(crate) fn open(&mut self, c: u8) {
        self.sep();
        self.out.push(c);
        self.first = true;
    }

    pub(crate) fn close(&mut self, c: u8) {
        self.out.push(c);
        self.first = false;
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// `"key":` (keys are plain ASCII names: no escaping needed). Inlined, so that each
    /// key, a literal, is copied as a constant.
    #[inline(always)]
    pub(crate) fn key(&mut self, key: &str) {
        self.sep();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.first = true;
    }

    /// A value in a slot; `Absent` writes nothing (call only for present slots).
    pub(crate) fn value(&mut self, got: &Got) -> Result<()> {
        self.sep();
        if got.is_none() {
            self.out.extend_from_slice(b"null");
            return Ok(());
        }
        match got {
            Got::Str(s) => {
                push_json_str(&mut self.out, s);
                return Ok(());
            }
            // Integers as serde_json writes them (itoa's digits), without a serializer.
            Got::Num(n) if n.is_u64() || n.is_i64() => {
                if let Some(u) = n.as_u64() {
                    push_u64(&mut self.out, u);
                } else if let Some(i) = n.as_i64() {
                    self.out.push(b'-');
                    push_u64(&mut self.out, i.unsigned_abs());
                }
                return Ok(());
            }
            _ => {}
        }
        let mut ser = serde_json::Serializer::new(&mut self.out);
        let written = match got {
            Got::Null | Got::Absent | Got::Str(_) => Ok(()),
            Got::Bool(b) => serde::Serialize::serialize(b, &mut ser),
            Got::Num(n) => serde::Serialize::serialize(n, &mut ser),
            // A valid record holds no array or object where a scalar belongs.
            Got::Array | Got::Object => {
                return Err(Error::Internal(
                    "a checked record holds a value of the wrong kind".into(),
                ))
            }
        };
        written.map_err(|e| Error::Internal(format!("cannot write JSON: {e}")))
    }

    /// `"key":value` for a present slot, nothing for an absent one.
    #[inline(always)]
    pub(crate) fn field(&mut self, key: &str, got: &Got) -> Result<()> {
        if matches!(got, Got::Absent) {
            return Ok(());
        }
        self.key(key);
        self.value(got)
    }

    pub(crate) fn finish(self) -> Result<String> {
        String::from_utf8(self.out).map_err(|e| Error::Internal(format!("canonical JSON: {e}")))
    }
}

/// Appends `s` as a JSON string, exactly as `serde_json` writes it: a string with nothing
/// to escape (no `"`, `\\` or control character, the usual case) is copied as it is,
/// any other goes through `serde_json`.
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail, and a &str always serializes.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Appends `u` in decimal.
fn push_u64(out: &mut Vec<u8>, mut u: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let mut numbers: Vec<Number> = [0u64, 1, 9, 10, 99, 100, 12_345, u64::MAX, i64::MAX as u64]
            .into_iter()
            .map(Number::from)
            .collect();
        numbers.extend([-1i64, -10, -19_950, i64::MIN].map(Number::from));
        numbers.extend([0.5, -2.25, 1e-7, 1.5e300].map(|f| Number::from_f64(f).unwrap()));
        let strings = [
            "",
            "plain",
            "a\"b",
            "back\\slash",
            "tab\t",
            "\u{1}",
            "ø/æ\u{7f}",
        ];
        let gots = numbers
            .into_iter()
            .map(Got::Num)
            .chain(strings.iter().map(|s| Got::Str(Cow::Borrowed(*s))))
            .chain([Got::Bool(true), Got::Null]);
        for got in gots {
            let mut c = Canon::with_capacity(0);
            c.value(&got).unwrap();
            let expected = match &got {
                Got::Num(n) => serde_json::to_string(n).unwrap(),
                Got::Str(s) => serde_json::to_string(s).unwrap(),
                Got::Bool(b) => serde_json::to_string(b).unwrap(),
                _ => "null".to_string(),
            };
            assert_eq!(c.finish().unwrap(), expected, "{got:?}");
        }
    }
}
