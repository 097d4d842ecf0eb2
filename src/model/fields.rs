//! Reading a JSON object field by field, with errors that name the path of the bad field
//! (`sale.lines[1].quantity: ...`) and with unknown keys rejected so typos are caught.

use crate::error::{Error, Result};
use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Number, Value};

/// The longest id the contract allows, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Parses `text` as a JSON object; anything else is `InvalidJson`.
pub fn parse_object(text: &str, what: &str) -> Result<Value> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::InvalidJson(format!("{what}: not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Error::InvalidJson(format!(
            "{what}: expected a JSON object, got {}",
            type_name(&value)
        )));
    }
    let mut value = value;
    normalize_numbers(&mut value);
    Ok(value)
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object being read, with the path used in error messages.
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    /// `value` must be an object (use [`parse_object`] first for text).
    pub fn new(value: &'a Value, path: &str) -> Result<Fields<'a>> {
        match value {
            Value::Object(obj) => Ok(Fields {
                obj,
                path: path.to_string(),
            }),
            other => Err(Error::InvalidJson(format!(
                "{path}: expected a JSON object, got {}",
                type_name(other)
            ))),
        }
    }

    pub fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn wrong(&self, key: &str, expected: &str, got: &Value) -> Error {
        Error::invalid(
            self.path(key),
            format!("expected {expected}, got {}", type_name(got)),
        )
    }

    fn missing(&self, key: &str) -> Error {
        Error::invalid(self.path(key), "is required")
    }

    /// The value under `key`, for the checks of [`Scalar`].
    fn scalar(&self, key: &str) -> Scalar<'a> {
        Scalar::of(self.get(key))
    }

    /// Rejects keys not in `allowed`, naming the first unknown one.
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<()> {
        match self.obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(unknown_field(&self.path(k), allowed)),
        }
    }

    pub fn str_opt(&self, key: &str) -> Result<Option<&'a str>> {
        self.scalar(key).str_opt(|| self.path(key))
    }

    /// A non-empty string.
    pub fn text(&self, key: &str) -> Result<&'a str> {
        self.scalar(key).text(|| self.path(key))
    }

    pub fn text_opt(&self, key: &str) -> Result<Option<&'a str>> {
        self.scalar(key).text_opt(|| self.path(key))
    }

    /// A non-empty string of at most [`MAX_ID_BYTES`] bytes.
    pub fn id(&self, key: &str) -> Result<&'a str> {
        self.scalar(key).id(|| self.path(key))
    }

    pub fn id_opt(&self, key: &str) -> Result<Option<&'a str>> {
        self.scalar(key).id_opt(|| self.path(key))
    }

    /// An integer amount of money in minor units.
    pub fn money(&self, key: &str) -> Result<i64> {
        self.scalar(key).money(|| self.path(key))
    }

    pub fn money_opt(&self, key: &str) -> Result<Option<i64>> {
        self.scalar(key).money_opt(|| self.path(key))
    }

    /// A finite number.
    pub fn number(&self, key: &str) -> Result<f64> {
        self.scalar(key).number(|| self.path(key))
    }

    pub fn number_opt(&self, key: &str) -> Result<Option<f64>> {
        self.scalar(key).number_opt(|| self.path(key))
    }

    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        self.scalar(key).bool_opt(|| self.path(key))
    }

    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        self.scalar(key).u64_opt(|| self.path(key))
    }

    /// An RFC 3339 time with an offset.
    pub fn time(&self, key: &str) -> Result<DateTime<FixedOffset>> {
        self.scalar(key).time(|| self.path(key))
    }

    pub fn time_opt(&self, key: &str) -> Result<Option<DateTime<FixedOffset>>> {
        self.scalar(key).time_opt(|| self.path(key))
    }

    pub fn object_opt(&self, key: &str) -> Result<Option<Fields<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Fields::new(v, &self.path(key)).map(Some),
            Some(other) => Err(self.wrong(key, "an object", other)),
        }
    }

    /// An array of objects; `None` when absent or null.
    pub fn objects_opt(&self, key: &str) -> Result<Option<Vec<Fields<'a>>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                let base = self.path(key);
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        // The item's path is formatted once, straight into its reader.
                        Value::Object(obj) => Ok(Fields {
                            obj,
                            path: format!("{base}[{i}]"),
                        }),
                        other => Err(Error::InvalidInput(format!(
                            "{base}[{i}]: expected a JSON object, got {}",
                            type_name(other)
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Some)
            }
            Some(other) => Err(self.wrong(key, "an array", other)),
        }
    }

    /// A non-empty array of objects.
    pub fn objects(&self, key: &str) -> Result<Vec<Fields<'a>>> {
        let items = self.objects_opt(key)?.ok_or_else(|| self.missing(key))?;
        if items.is_empty() {
            return Err(Error::invalid(
                self.path(key),
                "must hold at least one item",
            ));
        }
        Ok(items)
    }

    pub fn strings_opt(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.as_str()),
                    other => Err(Error::invalid(
                        format!("{}[{i}]", self.path(key)),
                        format!("expected a non-empty string, got {}", type_name(other)),
                    )),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(self.wrong(key, "an array of strings", other)),
        }
    }
}

/// The error for an unknown key at `path`.
pub(crate) fn unknown_field(path: &str, allowed: &[&str]) -> Error {
    Error::invalid(
        path,
        format!("unknown field (expected one of: {})", allowed.join(", ")),
    )
}

/// One field's value as the checks see it, whether read from a parsed [`Value`] ([`Fields`])
/// or straight from the text (`model::raw`): one set of rules and messages for both.
/// `path` names the field in a message and is formatted only on error.
#[derive(Clone, Copy, Debug)]
pub enum Scalar<'v> {
    /// Absent or null: "not given" (null is never a type error).
    Absent,
    Bool(bool),
    Num(&'v Number),
    Str(&'v str),
    Array,
    Object,
}

impl<'v> Scalar<'v> {
    pub fn of(value: Option<&'v Value>) -> Scalar<'v> {
        match value {
            None | Some(Value::Null) => Scalar::Absent,
            Some(Value::Bool(b)) => Scalar::Bool(*b),
            Some(Value::Number(n)) => Scalar::Num(n),
            Some(Value::String(s)) => Scalar::Str(s),
            Some(Value::Array(_)) => Scalar::Array,
            Some(Value::Object(_)) => Scalar::Object,
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            Scalar::Absent => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Num(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }

    fn wrong(self, path: impl Fn() -> String, expected: &str) -> Error {
        Error::invalid(
            path(),
            format!("expected {expected}, got {}", self.type_name()),
        )
    }

    pub fn str_opt(self, path: impl Fn() -> String) -> Result<Option<&'v str>> {
        match self {
            Scalar::Absent => Ok(None),
            Scalar::Str(s) => Ok(Some(s)),
            other => Err(other.wrong(path, "a string")),
        }
    }

    /// A non-empty string.
    pub fn text(self, path: impl Fn() -> String) -> Result<&'v str> {
        self.text_opt(&path)?
            .ok_or_else(|| Error::invalid(path(), "is required"))
    }

    pub fn text_opt(self, path: impl Fn() -> String) -> Result<Option<&'v str>> {
        match self.str_opt(&path)? {
            Some(s) if s.trim().is_empty() => Err(Error::invalid(path(), "must not be empty")),
            other => Ok(other),
        }
    }

    /// A non-empty string of at most [`MAX_ID_BYTES`] bytes.
    pub fn id(self, path: impl Fn() -> String) -> Result<&'v str> {
        self.id_opt(&path)?
            .ok_or_else(|| Error::invalid(path(), "is required"))
    }

    pub fn id_opt(self, path: impl Fn() -> String) -> Result<Option<&'v str>> {
        let Some(s) = self.text_opt(&path)? else {
            return Ok(None);
        };
        if s.len() > MAX_ID_BYTES {
            return Err(Error::invalid(
                path(),
                format!("ids are at most {MAX_ID_BYTES} bytes, got {}", s.len()),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(Error::invalid(
                path(),
                "must not contain control characters",
            ));
        }
        if !s.is_empty() && s.bytes().all(|b| b == b'.') {
            // "." and ".." are path steps once in a URL (ids travel in Omnium's paths).
            return Err(Error::invalid(path(), "must not be made only of dots"));
        }
        Ok(Some(s))
    }

    /// An integer amount of money in minor units.
    pub fn money(self, path: impl Fn() -> String) -> Result<i64> {
        self.money_opt(&path)?
            .ok_or_else(|| Error::invalid(path(), "is required"))
    }

    pub fn money_opt(self, path: impl Fn() -> String) -> Result<Option<i64>> {
        match self {
            Scalar::Absent => Ok(None),
            Scalar::Num(n) => match n.as_i64() {
                Some(v) if v.unsigned_abs() <= MAX_MONEY => Ok(Some(v)),
                Some(_) => Err(Error::invalid(path(), "amount is out of range")),
                None => Err(Error::invalid(
                    path(),
                    format!("must be an integer in minor units (øre, cents), got {n}"),
                )),
            },
            other => Err(other.wrong(path, "an integer amount in minor units")),
        }
    }

    /// A finite number.
    pub fn number(self, path: impl Fn() -> String) -> Result<f64> {
        self.number_opt(&path)?
            .ok_or_else(|| Error::invalid(path(), "is required"))
    }

    pub fn number_opt(self, path: impl Fn() -> String) -> Result<Option<f64>> {
        match self {
            Scalar::Absent => Ok(None),
            Scalar::Num(n) => match n.as_f64() {
                Some(v) if v.is_finite() => Ok(Some(v)),
                _ => Err(Error::invalid(path(), "must be a finite number")),
            },
            other => Err(other.wrong(path, "a number")),
        }
    }

    pub fn bool_opt(self, path: impl Fn() -> String) -> Result<Option<bool>> {
        match self {
            Scalar::Absent => Ok(None),
            Scalar::Bool(b) => Ok(Some(b)),
            other => Err(other.wrong(path, "true or false")),
        }
    }

    pub fn u64_opt(self, path: impl Fn() -> String) -> Result<Option<u64>> {
        match self {
            Scalar::Absent => Ok(None),
            Scalar::Num(n) => n.as_u64().map(Some).ok_or_else(|| {
                Error::invalid(path(), format!("must be a whole number >= 0, got {n}"))
            }),
            other => Err(other.wrong(path, "a whole number")),
        }
    }

    /// An RFC 3339 time with an offset.
    pub fn time(self, path: impl Fn() -> String) -> Result<DateTime<FixedOffset>> {
        self.time_opt(&path)?
            .ok_or_else(|| Error::invalid(path(), "is required"))
    }

    pub fn time_opt(self, path: impl Fn() -> String) -> Result<Option<DateTime<FixedOffset>>> {
        let Some(s) = self.str_opt(&path)? else {
            return Ok(None);
        };
        DateTime::parse_from_rfc3339(s).map(Some).map_err(|e| {
            Error::invalid(
                path(),
                format!("expected an RFC 3339 time with an offset, like 2026-11-28T10:15:00+01:00 ({e})"),
            )
        })
    }
}

/// Amounts beyond this (±90 trillion in major units) are refused, so sums of a few
/// thousand lines cannot overflow an i64 and every amount converts exactly.
pub const MAX_MONEY: u64 = 9_000_000_000_000_000;

/// Writes whole numbers held as floats (`2.0`) as integers (`2`), everywhere in the value,
/// so that a repeated record compares equal however its numbers were written.
pub fn normalize_numbers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(map) => map.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

/// JSON text with object keys sorted at every level, so that two documents that differ
/// only in key order or spacing compare equal.
pub fn canonical_json(value: &Value) -> String {
    // serde_json's map is sorted unless some crate in the build turned on `preserve_order`;
    // then (and only then) the slower explicit sort below is needed.
    static MAP_IS_SORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let sorted = *MAP_IS_SORTED.get_or_init(|| {
        serde_json::from_str::<Value>(r#"{"b":1,"a":2}"#)
            .map(|v| v.to_string())
            .is_ok_and(|text| text == r#"{"a":2,"b":1}"#)
    });
    if sorted {
        // Straight into a byte buffer: `to_string` (Display) would go through a formatter.
        return serde_json::to_string(value).unwrap_or_else(|_| value.to_string());
    }
    sorted_json(value)
}

fn sorted_json(value: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&map[k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_and_the_explicit_canonical_forms_agree() {
        let v: Value =
            serde_json::from_str(r#"{"z": {"b": 1, "a": [{"d": 1, "c": 2}]}, "m": null}"#).unwrap();
        assert_eq!(canonical_json(&v), sorted_json(&v));
    }

    #[test]
    fn canonical_json_ignores_key_order_and_spacing() {
        let a: Value = serde_json::from_str(r#"{"b": [1, {"y":1,"x":2}], "a": "s"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":"s","b":[1,{"x":2,"y":1}]}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":"s","b":[1,{"x":2,"y":1}]}"#);
    }

    #[test]
    fn errors_name_the_nested_field() {
        let v: Value = serde_json::from_str(r#"{"lines":[{"q":1},{"q":"x"}]}"#).unwrap();
        let f = Fields::new(&v, "sale").unwrap();
        let lines = f.objects("lines").unwrap();
        let err = lines[1].number("q").unwrap_err();
        assert_eq!(
            err.to_string(),
            "sale.lines[1].q: expected a number, got a string"
        );
    }

    #[test]
    fn money_must_be_an_integer() {
        let v: Value = serde_json::from_str(r#"{"a": 199.5, "b": 19950}"#).unwrap();
        let f = Fields::new(&v, "x").unwrap();
        assert!(f
            .money("a")
            .unwrap_err()
            .to_string()
            .contains("minor units"));
        assert_eq!(f.money("b").unwrap(), 19950);
    }

    #[test]
    fn unknown_keys_are_named() {
        let v: Value = serde_json::from_str(r#"{"id": "1", "discont": 5}"#).unwrap();
        let f = Fields::new(&v, "sale").unwrap();
        let err = f.deny_unknown(&["id", "discount"]).unwrap_err();
        assert!(err.to_string().starts_with("sale.discont: unknown field"));
    }
}
