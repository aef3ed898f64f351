//! An exact decimal number for FHIRPath `Decimal` values: an `i128` mantissa and a base-ten
//! scale.
//!
//! FHIR decimals keep their written precision (`1.10` is not `1.1` for equivalence or output),
//! and the workspace's serde_json keeps number text (`arbitrary_precision`), so decimals are
//! parsed from text and never go through `f64` except in the transcendental functions (`exp`,
//! `ln`, `sqrt`, …). Every operation is checked: an overflow gives `None`, which the evaluator
//! reports as an error or an empty result, never a panic.

use std::cmp::Ordering;
use std::fmt;

/// Most digits kept after the decimal point (results of `*` and `/` are rounded to it).
const MAX_SCALE: u32 = 28;
/// Digits after the point that a division keeps at least.
const DIVISION_SCALE: u32 = 8;

/// A decimal number `mantissa × 10^-scale`.
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    mantissa: i128,
    scale: u32,
}

impl Decimal {
    /// The integer `value` with no fractional digits.
    pub fn from_i64(value: i64) -> Decimal {
        Decimal { mantissa: i128::from(value), scale: 0 }
    }

    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]`; `None` for anything else or a value out
    /// of range.
    pub fn parse(text: &str) -> Option<Decimal> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (number, exponent) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], rest[at + 1..].parse::<i32>().ok()?),
            None => (rest, 0),
        };
        let (whole, fraction) = match number.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (number, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if number.contains('.') && (fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit())) {
            return None;
        }
        let mut mantissa: i128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa.checked_mul(10)?.checked_add(i128::from(digit - b'0'))?;
        }
        let mut scale = i64::try_from(fraction.len()).ok()? - i64::from(exponent);
        if mantissa == 0 {
            scale = scale.clamp(0, i64::from(MAX_SCALE));
        }
        while scale < 0 {
            mantissa = mantissa.checked_mul(10)?;
            scale += 1;
        }
        let mut decimal =
            Decimal { mantissa: if negative { -mantissa } else { mantissa }, scale: u32::try_from(scale).ok()? };
        if decimal.scale > MAX_SCALE {
            decimal = decimal.round(MAX_SCALE)?;
        }
        Some(decimal)
    }

    /// Digits after the decimal point as written.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// True when the value has no fractional part (whatever its scale).
    pub fn is_integral(&self) -> bool {
        self.mantissa % pow10(self.scale).unwrap_or(1) == 0
    }

    /// The value as an `i64` when it is integral and in range.
    pub fn to_i64(&self) -> Option<i64> {
        if !self.is_integral() {
            return None;
        }
        i64::try_from(self.mantissa / pow10(self.scale)?).ok()
    }

    /// The nearest `f64`.
    pub fn to_f64(&self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// The decimal nearest `value`, `None` for NaN and infinities.
    pub(crate) fn from_f64(value: f64) -> Option<Decimal> {
        if !value.is_finite() {
            return None;
        }
        // Rust prints the shortest text that reads back as the same f64, so 0.1 stays 0.1.
        Decimal::parse(&format!("{value}")).or_else(|| Decimal::parse(&format!("{value:e}")))
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    pub(crate) fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    pub(crate) fn negate(&self) -> Decimal {
        Decimal { mantissa: -self.mantissa, scale: self.scale }
    }

    pub(crate) fn abs(&self) -> Decimal {
        Decimal { mantissa: self.mantissa.abs(), scale: self.scale }
    }

    /// Exact sum.
    pub(crate) fn add(&self, other: &Decimal) -> Option<Decimal> {
        let (left, right, scale) = align(self, other)?;
        Some(Decimal { mantissa: left.checked_add(right)?, scale })
    }

    /// Exact difference.
    pub(crate) fn sub(&self, other: &Decimal) -> Option<Decimal> {
        self.add(&other.negate())
    }

    /// Product, rounded to [`MAX_SCALE`] digits when it has more.
    pub(crate) fn mul(&self, other: &Decimal) -> Option<Decimal> {
        let product = Decimal { mantissa: self.mantissa.checked_mul(other.mantissa)?, scale: self.scale + other.scale };
        if product.scale > MAX_SCALE { product.round(MAX_SCALE) } else { Some(product) }
    }

    /// Quotient with at least [`DIVISION_SCALE`] digits after the point, trailing zeros
    /// removed; `None` when dividing by zero.
    pub(crate) fn div(&self, other: &Decimal) -> Option<Decimal> {
        if other.mantissa == 0 {
            return None;
        }
        let target = DIVISION_SCALE.max(self.scale).max(other.scale);
        // self/other = (m1 / m2) × 10^(s2 - s1); compute with one guard digit, then round.
        let shift = i64::from(target) + 1 + i64::from(other.scale) - i64::from(self.scale);
        let (numerator, denominator) = if shift >= 0 {
            (self.mantissa.checked_mul(pow10(u32::try_from(shift).ok()?)?)?, other.mantissa)
        } else {
            (self.mantissa, other.mantissa.checked_mul(pow10(u32::try_from(-shift).ok()?)?)?)
        };
        let quotient = Decimal { mantissa: numerator / denominator, scale: target + 1 };
        Some(quotient.round(target)?.normalized())
    }

    /// Truncated division (`div`), `None` when dividing by zero.
    pub(crate) fn div_truncated(&self, other: &Decimal) -> Option<Decimal> {
        if other.mantissa == 0 {
            return None;
        }
        let (left, right, _) = align(self, other)?;
        Some(Decimal { mantissa: left / right, scale: 0 })
    }

    /// Remainder of truncated division (`mod`), `None` when dividing by zero.
    pub(crate) fn rem(&self, other: &Decimal) -> Option<Decimal> {
        if other.mantissa == 0 {
            return None;
        }
        let (left, right, scale) = align(self, other)?;
        Some(Decimal { mantissa: left % right, scale })
    }

    /// Rounds half away from zero to `digits` after the point.
    pub(crate) fn round(&self, digits: u32) -> Option<Decimal> {
        if digits >= self.scale {
            return self.rescale(digits);
        }
        let divisor = pow10(self.scale - digits)?;
        let quotient = self.mantissa / divisor;
        let remainder = (self.mantissa % divisor).abs();
        let rounded = if remainder * 2 >= divisor { quotient + self.mantissa.signum() } else { quotient };
        Some(Decimal { mantissa: rounded, scale: digits })
    }

    /// Drops the fractional part.
    pub(crate) fn truncate(&self) -> Option<Decimal> {
        Some(Decimal { mantissa: self.mantissa / pow10(self.scale)?, scale: 0 })
    }

    /// The greatest integer not above the value.
    pub(crate) fn floor(&self) -> Option<Decimal> {
        let truncated = self.truncate()?;
        if self.is_negative() && !self.is_integral() { truncated.sub(&Decimal::from_i64(1)) } else { Some(truncated) }
    }

    /// The least integer not below the value.
    pub(crate) fn ceiling(&self) -> Option<Decimal> {
        let truncated = self.truncate()?;
        if !self.is_negative() && !self.is_integral() { truncated.add(&Decimal::from_i64(1)) } else { Some(truncated) }
    }

    /// Numeric comparison regardless of scale (`1.0` equals `1`).
    pub(crate) fn compare(&self, other: &Decimal) -> Ordering {
        match align(self, other) {
            Some((left, right, _)) => left.cmp(&right),
            None => self.to_f64().partial_cmp(&other.to_f64()).unwrap_or(Ordering::Equal),
        }
    }

    /// Same value with `digits` after the point (more digits only: never rounds).
    fn rescale(&self, digits: u32) -> Option<Decimal> {
        if digits < self.scale {
            return self.round(digits);
        }
        Some(Decimal { mantissa: self.mantissa.checked_mul(pow10(digits - self.scale)?)?, scale: digits })
    }

    /// Same value without trailing fractional zeros.
    fn normalized(&self) -> Decimal {
        let mut decimal = *self;
        while decimal.scale > 0 && decimal.mantissa % 10 == 0 {
            decimal.mantissa /= 10;
            decimal.scale -= 1;
        }
        decimal
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(formatter, "{sign}{digits}");
        }
        if digits.len() > scale {
            let (whole, fraction) = digits.split_at(digits.len() - scale);
            write!(formatter, "{sign}{whole}.{fraction}")
        } else {
            write!(formatter, "{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
        }
    }
}

/// Both mantissas at the larger scale, `None` on overflow.
fn align(left: &Decimal, right: &Decimal) -> Option<(i128, i128, u32)> {
    let scale = left.scale.max(right.scale);
    let left_mantissa = left.mantissa.checked_mul(pow10(scale - left.scale)?)?;
    let right_mantissa = right.mantissa.checked_mul(pow10(scale - right.scale)?)?;
    Some((left_mantissa, right_mantissa, scale))
}

fn pow10(exponent: u32) -> Option<i128> {
    10i128.checked_pow(exponent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(text: &str) -> Decimal {
        Decimal::parse(text).unwrap_or_else(|| panic!("{text} parses"))
    }

    #[test]
    fn parses_and_prints_with_written_precision() {
        for text in ["0", "1.10", "-0.001", "185", "1234567890987654321.0"] {
            assert_eq!(decimal(text).to_string(), text);
        }
        assert_eq!(decimal("1e3").to_string(), "1000");
        assert_eq!(decimal("1.5E-2").to_string(), "0.015");
        for bad in ["", "-", "1.", ".5", "1..2", "a", "1e", "1.a"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn arithmetic_is_exact() {
        assert_eq!(decimal("1.2").add(&decimal("1.8")).map(|d| d.to_string()), Some("3.0".into()));
        assert_eq!(decimal("1.2").mul(&decimal("1.8")).map(|d| d.to_string()), Some("2.16".into()));
        assert_eq!(decimal("1").div(&decimal("2")).map(|d| d.to_string()), Some("0.5".into()));
        assert_eq!(decimal("2").div(&decimal("3")).map(|d| d.to_string()), Some("0.66666667".into()));
        assert!(decimal("1").div(&decimal("0")).is_none());
        assert_eq!(decimal("2.2").rem(&decimal("1.8")).map(|d| d.to_string()), Some("0.4".into()));
        assert_eq!(decimal("2.2").div_truncated(&decimal("1.8")).map(|d| d.to_string()), Some("1".into()));
        assert_eq!(decimal("-1.56").truncate().map(|d| d.to_string()), Some("-1".into()));
        assert_eq!(decimal("-2.1").floor().map(|d| d.to_string()), Some("-3".into()));
        assert_eq!(decimal("-1.1").ceiling().map(|d| d.to_string()), Some("-1".into()));
        assert_eq!(decimal("3.14159").round(3).map(|d| d.to_string()), Some("3.142".into()));
        assert_eq!(decimal("1.10").compare(&decimal("1.1")), Ordering::Equal);
    }
}
