//! Exact conversion of minor units to the decimal text Omnium expects (19950 → 199.50).

use serde::ser::{Serialize, Serializer};
use serde_json::value::RawValue;

/// Digits after the decimal point for a currency (ISO 4217 minor units).
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// An amount in minor units that serializes as an exact JSON decimal number in major units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    pub minor: i64,
    pub digits: u32,
}

impl Decimal {
    pub fn new(minor: i64, currency: &str) -> Decimal {
        Decimal {
            minor,
            digits: minor_digits(currency),
        }
    }

    /// Parses Omnium's decimal back to minor units, if it is exactly representable.
    pub fn minor_from_json(v: &serde_json::Value, digits: u32) -> Option<i64> {
        let x = v.as_f64()?;
        let scaled = x * 10f64.powi(digits as i32);
        let rounded = scaled.round();
        ((scaled - rounded).abs() < 1e-6 && rounded.abs() < 9e15).then_some(rounded as i64)
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        if self.digits == 0 {
            return write!(f, "{sign}{abs}");
        }
        let scale = 10u64.pow(self.digits);
        write!(
            f,
            "{sign}{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = self.digits as usize
        )
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Written as raw JSON number text: no float ever holds the amount.
        let raw = RawValue::from_string(self.to_string()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_exactly() {
        assert_eq!(Decimal::new(19950, "NOK").to_string(), "199.50");
        assert_eq!(Decimal::new(-5, "NOK").to_string(), "-0.05");
        assert_eq!(Decimal::new(0, "EUR").to_string(), "0.00");
        assert_eq!(Decimal::new(1999, "JPY").to_string(), "1999");
        assert_eq!(Decimal::new(1234, "KWD").to_string(), "1.234");
        assert_eq!(
            Decimal::new(9_007_199_254_740_993, "NOK").to_string(),
            "90071992547409.93"
        );
    }

    #[test]
    fn serializes_as_a_json_number() {
        let json = serde_json::to_string(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(json, r#"{"a":1}"#);
        let s = serde_json::to_string(&vec![Decimal::new(19990, "NOK")]).unwrap();
        assert_eq!(s, "[199.90]");
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(Decimal::minor_from_json(&back[0], 2), Some(19990));
    }
}
