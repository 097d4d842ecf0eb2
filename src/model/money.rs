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
        Decimal::minor_from_f64(v.as_f64()?, digits)
    }

    /// [`Decimal::minor_from_json`] of a number already read.
    pub fn minor_from_f64(x: f64, digits: u32) -> Option<i64> {
        let scaled = x * 10f64.powi(digits as i32);
        let rounded = scaled.round();
        ((scaled - rounded).abs() < 1e-6 && rounded.abs() < 9e15).then_some(rounded as i64)
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&decimal_text(i128::from(self.minor), self.digits))
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ScaledDecimal {
            value: i128::from(self.minor),
            scale: self.digits,
        }
        .serialize(s)
    }
}

/// `value / 10^scale` as decimal text, exactly: (19950, 2) → "199.50".
pub fn decimal_text(value: i128, scale: u32) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{abs}");
    }
    let unit = 10u128.pow(scale);
    format!(
        "{sign}{}.{:0width$}",
        abs / unit,
        abs % unit,
        width = scale as usize
    )
}

/// A decimal of any scale, written as raw JSON number text: no float ever holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaledDecimal {
    pub value: i128,
    pub scale: u32,
}

impl Serialize for ScaledDecimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw = RawValue::from_string(decimal_text(self.value, self.scale))
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// Decimal places kept of a quantity (beyond this a quantity is cut, never rounded up).
pub const MAX_QUANTITY_DECIMALS: u32 = 9;

/// `quantity × unit_price` exactly, as `(value, scale)` meaning `value / 10^scale` minor
/// units. The quantity is taken as its shortest decimal text (0.735, not the nearest
/// binary fraction), which is what the POS sent.
pub fn exact_line_total(quantity: f64, unit_price: i64) -> (i128, u32) {
    if quantity.fract() == 0.0 && quantity.abs() < 1e15 {
        // A whole quantity (most lines): its decimal text has no fraction digits, so the
        // product needs no formatting.
        return ((quantity as i128) * i128::from(unit_price), 0);
    }
    // The text in a buffer on the stack (a quantity's fits unless it is tiny or huge) and
    // its digits taken as they are read: the same number as the text-and-parse below.
    let mut buf = [0u8; 64];
    let mut w: &mut [u8] = &mut buf;
    let written = std::io::Write::write_fmt(&mut w, format_args!("{quantity}")).is_ok();
    let len = 64 - w.len();
    if written {
        if let Some(product) = digits_times(&buf[..len], unit_price) {
            return product;
        }
    }
    let text = format!("{quantity}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac = &frac[..frac.len().min(MAX_QUANTITY_DECIMALS as usize)];
    let digits: i128 = format!("{int}{frac}").parse().unwrap_or(0);
    (digits * i128::from(unit_price), frac.len() as u32)
}

/// [`exact_line_total`] of a quantity's text `[-]digits[.digits]`: `None` for any other
/// text or on overflow (the caller then takes the slow way, which gives 0 for those).
fn digits_times(text: &[u8], unit_price: i64) -> Option<(i128, u32)> {
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut digits: i128 = 0;
    let mut scale: Option<u32> = None;
    for &b in text {
        match b {
            b'0'..=b'9' => {
                if scale == Some(MAX_QUANTITY_DECIMALS) {
                    continue;
                }
                digits = digits.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
                if let Some(s) = &mut scale {
                    *s += 1;
                }
            }
            b'.' if scale.is_none() => scale = Some(0),
            _ => return None,
        }
    }
    let digits = if negative { -digits } else { digits };
    Some((
        digits.checked_mul(i128::from(unit_price))?,
        scale.unwrap_or(0),
    ))
}

/// Rounds `value / 10^scale` to a whole number, half away from zero.
pub fn round_half_away(value: i128, scale: u32) -> i128 {
    let unit = 10i128.pow(scale);
    let (q, r) = (value / unit, value % unit);
    if 2 * r.abs() >= unit {
        q + value.signum()
    } else {
        q
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
    fn whole_quantities_take_the_short_way_to_the_same_product() {
        let by_text = |q: f64, price: i64| {
            let text = format!("{q}");
            let digits: i128 = text.parse().unwrap();
            (digits * i128::from(price), 0)
        };
        for q in [
            0.0,
            -0.0,
            1.0,
            2.0,
            17.0,
            1_000_000.0,
            -3.0,
            999_999_999_999_999.0,
        ] {
            for price in [0, 1, 19950, -7, 9_000_000_000_000_000] {
                assert_eq!(
                    exact_line_total(q, price),
                    by_text(q, price),
                    "{q} × {price}"
                );
            }
        }
    }

    #[test]
    fn line_totals_are_exact_decimal_products() {
        assert_eq!(exact_line_total(0.735, 3990), (2_932_650, 3));
        assert_eq!(round_half_away(2_932_650, 3), 2933);
        assert_eq!(round_half_away(-2_932_500, 3), -2933);
        assert_eq!(exact_line_total(2.0, 19950), (39900, 0));
        assert_eq!(exact_line_total(0.1, 3), (3, 1));
        assert_eq!(decimal_text(-35, 4), "-0.0035");
    }

    #[test]
    fn fractional_quantities_read_on_the_stack_give_the_product_of_their_text() {
        // The text-and-parse way the stack reading replaced.
        let by_text = |q: f64, price: i64| {
            let text = format!("{q}");
            let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
            let frac = &frac[..frac.len().min(MAX_QUANTITY_DECIMALS as usize)];
            let digits: i128 = format!("{int}{frac}").parse().unwrap_or(0);
            Some((digits.checked_mul(i128::from(price))?, frac.len() as u32))
        };
        let mut bits: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut quantities = vec![
            0.5,
            0.735,
            0.1,
            -0.5,
            -2.25,
            1e-7,
            1e-300,
            123_456.789_012_345,
            0.333_333_333_333,
            4_503_599_627_370_495.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            5e-324,
        ];
        for _ in 0..3_000 {
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            quantities.push(f64::from_bits(bits));
            quantities.push((bits % 10_000_000) as f64 / 1000.0);
        }
        for q in quantities {
            for price in [0, 1, 19950, -7, 9_000_000_000_000_000] {
                // Whole quantities take the other way (tested above); a product past i128
                // cannot be a sale's (quantity and price are bounded long before).
                if q.fract() == 0.0 && q.abs() < 1e15 {
                    continue;
                }
                let Some(expected) = by_text(q, price) else {
                    continue;
                };
                assert_eq!(exact_line_total(q, price), expected, "{q} × {price}");
            }
        }
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
