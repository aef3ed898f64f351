//! FHIRPath quantities: a decimal value with a UCUM unit or a calendar duration keyword, and
//! the small unit table that lets `4 'g' = 4000 'mg'` and `7 days = 1 week` hold.
//!
//! Full UCUM is out of scope: the table covers the units search and invariants meet in practice
//! (mass, length, volume, time). Units outside it compare only with the same unit; `year` and
//! `month` compare only with themselves, because UCUM `a` and `mo` are averages rather than
//! calendar units.

use std::cmp::Ordering;
use std::fmt;

use crate::fhirpath::decimal::Decimal;

/// A value with a unit.
#[derive(Debug, Clone)]
pub struct Quantity {
    value: Decimal,
    /// A UCUM code (`mg`, `[lb_av]`, `1`) or a calendar keyword as written (`days`, `week`).
    unit: String,
}

/// Units this module converts, each with its dimension and its factor to the dimension's base
/// unit (written as text so that the factors stay exact decimals).
const UNITS: &[(&str, &str, &str)] = &[
    ("g", "mass", "1"),
    ("mg", "mass", "0.001"),
    ("ug", "mass", "0.000001"),
    ("kg", "mass", "1000"),
    ("[lb_av]", "mass", "453.59237"),
    ("[oz_av]", "mass", "28.349523125"),
    ("m", "length", "1"),
    ("cm", "length", "0.01"),
    ("mm", "length", "0.001"),
    ("km", "length", "1000"),
    ("[in_i]", "length", "0.0254"),
    ("[ft_i]", "length", "0.3048"),
    ("L", "volume", "1"),
    ("dL", "volume", "0.1"),
    ("mL", "volume", "0.001"),
    ("ms", "time", "0.001"),
    ("s", "time", "1"),
    ("min", "time", "60"),
    ("h", "time", "3600"),
    ("d", "time", "86400"),
    ("wk", "time", "604800"),
];

impl Quantity {
    /// A quantity of `value` in `unit` (a UCUM code or a calendar keyword).
    pub fn new(value: Decimal, unit: impl Into<String>) -> Quantity {
        Quantity { value, unit: unit.into() }
    }

    /// The numeric value.
    pub fn value(&self) -> &Decimal {
        &self.value
    }

    /// The unit: a UCUM code or a calendar keyword.
    pub fn unit(&self) -> &str {
        &self.unit
    }

    /// True for the calendar keywords (`year`, `months`, `day`, …) written without quotes.
    pub(crate) fn is_calendar_keyword(unit: &str) -> bool {
        matches!(
            unit,
            "year"
                | "years"
                | "month"
                | "months"
                | "week"
                | "weeks"
                | "day"
                | "days"
                | "hour"
                | "hours"
                | "minute"
                | "minutes"
                | "second"
                | "seconds"
                | "millisecond"
                | "milliseconds"
        )
    }

    pub(crate) fn with_value(&self, value: Decimal) -> Quantity {
        Quantity { value, unit: self.unit.clone() }
    }

    /// Orders two quantities whose units are the same or convertible; `None` otherwise.
    pub(crate) fn compare(&self, other: &Quantity) -> Option<Ordering> {
        let converted = other.value_in(&self.unit)?;
        Some(self.value.compare(&converted))
    }

    /// Equivalence: convertible units, values equal at the precision of the less precise one.
    pub(crate) fn equivalent(&self, other: &Quantity) -> bool {
        let Some(converted) = other.value_in(&self.unit) else {
            return false;
        };
        let digits = self.value.scale().min(other.value.scale());
        match (self.value.round(digits), converted.round(digits)) {
            (Some(left), Some(right)) => left.compare(&right) == Ordering::Equal,
            _ => false,
        }
    }

    /// Sum, in this quantity's unit; `None` when the units do not convert.
    pub(crate) fn add(&self, other: &Quantity) -> Option<Quantity> {
        let converted = other.value_in(&self.unit)?;
        Some(self.with_value(self.value.add(&converted)?))
    }

    /// Product; like units multiply into a squared base unit (`cm × m = m2`).
    pub(crate) fn mul(&self, other: &Quantity) -> Option<Quantity> {
        let (left_unit, right_unit) = (canonical_unit(&self.unit), canonical_unit(&other.unit));
        if left_unit == "1" {
            return Some(Quantity::new(self.value.mul(&other.value)?, other.unit.clone()));
        }
        if right_unit == "1" {
            return Some(Quantity::new(self.value.mul(&other.value)?, self.unit.clone()));
        }
        match (unit_factor(left_unit), unit_factor(right_unit)) {
            (Some((left_dimension, left_factor)), Some((right_dimension, right_factor)))
                if left_dimension == right_dimension =>
            {
                let base = base_unit(left_dimension)?;
                let left = self.value.mul(&left_factor)?;
                let right = other.value.mul(&right_factor)?;
                Some(Quantity::new(left.mul(&right)?, format!("{base}2")))
            }
            _ => Some(Quantity::new(self.value.mul(&other.value)?, format!("{left_unit}.{right_unit}"))),
        }
    }

    /// Quotient; like units cancel to `1`. `None` when dividing by zero.
    pub(crate) fn div(&self, other: &Quantity) -> Option<Quantity> {
        let right_unit = canonical_unit(&other.unit);
        if right_unit == "1" {
            return Some(Quantity::new(self.value.div(&other.value)?, self.unit.clone()));
        }
        if let Some(converted) = other.value_in(&self.unit) {
            return Some(Quantity::new(self.value.div(&converted)?, "1"));
        }
        Some(Quantity::new(self.value.div(&other.value)?, format!("{}/{right_unit}", canonical_unit(&self.unit))))
    }

    /// This quantity's value expressed in `unit`, when the units are the same or convertible.
    fn value_in(&self, unit: &str) -> Option<Decimal> {
        let (from, to) = (canonical_unit(&self.unit), canonical_unit(unit));
        if from == to {
            return Some(self.value);
        }
        let (from_dimension, from_factor) = unit_factor(from)?;
        let (to_dimension, to_factor) = unit_factor(to)?;
        if from_dimension != to_dimension {
            return None;
        }
        self.value.mul(&from_factor)?.div(&to_factor)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if Quantity::is_calendar_keyword(&self.unit) {
            write!(formatter, "{} {}", self.value, self.unit)
        } else {
            write!(formatter, "{} '{}'", self.value, self.unit)
        }
    }
}

/// The UCUM code a unit stands for: calendar keywords with a fixed length map to their UCUM
/// code, `year` and `month` to a keyword of their own that matches nothing else.
fn canonical_unit(unit: &str) -> &str {
    match unit {
        "year" | "years" => "year",
        "month" | "months" => "month",
        "week" | "weeks" => "wk",
        "day" | "days" => "d",
        "hour" | "hours" => "h",
        "minute" | "minutes" => "min",
        "second" | "seconds" => "s",
        "millisecond" | "milliseconds" => "ms",
        "" => "1",
        other => other,
    }
}

fn unit_factor(unit: &str) -> Option<(&'static str, Decimal)> {
    let (_, dimension, factor) = UNITS.iter().find(|(code, _, _)| *code == unit)?;
    Some((dimension, Decimal::parse(factor)?))
}

fn base_unit(dimension: &str) -> Option<&'static str> {
    match dimension {
        "mass" => Some("g"),
        "length" => Some("m"),
        "volume" => Some("L"),
        "time" => Some("s"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantity(value: &str, unit: &str) -> Quantity {
        Quantity::new(Decimal::parse(value).unwrap_or_else(|| panic!("{value}")), unit)
    }

    #[test]
    fn converts_known_units() {
        assert_eq!(quantity("4.0000", "g").compare(&quantity("4000.0", "mg")), Some(Ordering::Equal));
        assert!(quantity("4", "g").equivalent(&quantity("4040", "mg")));
        assert_eq!(quantity("7", "days").compare(&quantity("1", "week")), Some(Ordering::Equal));
        assert_eq!(quantity("1", "year").compare(&quantity("1", "a")), None);
        assert_eq!(quantity("1", "cm").compare(&quantity("1", "s")), None);
    }

    #[test]
    fn multiplies_and_divides() {
        let area = quantity("2.0", "cm").mul(&quantity("2.0", "m"));
        assert_eq!(area.and_then(|a| a.compare(&quantity("0.040", "m2"))), Some(Ordering::Equal));
        assert_eq!(quantity("1.0", "m").div(&quantity("1.0", "m")).map(|q| q.to_string()), Some("1 '1'".into()));
        assert_eq!(quantity("4.0", "g").div(&quantity("2.0", "m")).map(|q| q.to_string()), Some("2 'g/m'".into()));
    }
}
