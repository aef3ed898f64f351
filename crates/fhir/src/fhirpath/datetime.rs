//! Partial dates, date-times and times as FHIRPath sees them: each value carries its precision
//! (`2015`, `2015-02`, `2015-02-04T14:34`), and comparing values of different precision gives
//! no answer (an empty result) rather than guessing.
//!
//! One [`DateTime`] struct serves both `Date` and `DateTime` (the evaluator keeps them apart by
//! item variant); [`Time`] is separate because it has no calendar part. Seconds and
//! milliseconds count as one precision, as the specification asks.

use std::cmp::Ordering;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::instant::{days_from_civil, days_in_month};

/// How much of a date-time is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

/// A (partial) date or date-time, with an optional time-zone offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    millisecond: u16,
    precision: Precision,
    /// Minutes east of UTC; `None` when the value names no zone.
    offset: Option<i16>,
}

/// A (partial) time of day, without zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    hour: u8,
    minute: u8,
    second: u8,
    millisecond: u16,
    precision: Precision,
}

/// A calendar duration unit a date-time can be moved by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CalendarUnit {
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

impl DateTime {
    /// Parses a FHIR `date` (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`).
    pub fn parse_date(text: &str) -> Option<DateTime> {
        let mut cursor = Cursor { text: text.as_bytes(), at: 0 };
        let value = cursor.date()?;
        cursor.at_end().then_some(value)
    }

    /// Parses a FHIR `dateTime` or `instant`, or a FHIRPath date-time literal body: a date,
    /// optionally `T` and a (possibly empty) partial time, then an optional zone.
    pub fn parse(text: &str) -> Option<DateTime> {
        let mut cursor = Cursor { text: text.as_bytes(), at: 0 };
        let mut value = cursor.date()?;
        if cursor.eat(b'T') {
            if cursor.peek().is_some_and(|b| b.is_ascii_digit()) {
                if value.precision != Precision::Day {
                    return None;
                }
                let time = cursor.time()?;
                value.hour = time.hour;
                value.minute = time.minute;
                value.second = time.second;
                value.millisecond = time.millisecond;
                value.precision = time.precision;
            }
            value.offset = cursor.offset()?;
        } else if value.precision == Precision::Day && !cursor.at_end() {
            return None;
        }
        cursor.at_end().then_some(value)
    }

    /// How much of the value is known.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The number of digits the precision stands for (`2014` is 4, `2014-01-05T10:30:00.000`
    /// is 17), as `precision()` reports it.
    pub(crate) fn precision_digits(&self) -> i64 {
        match self.precision {
            Precision::Year => 4,
            Precision::Month => 6,
            Precision::Day => 8,
            Precision::Hour => 10,
            Precision::Minute => 12,
            Precision::Second => 14,
            Precision::Millisecond => 17,
        }
    }

    /// The earliest (or latest) instant the value may stand for, at the precision `digits`
    /// names (default: milliseconds). A missing zone becomes the
    /// furthest one: `+14:00` for the low boundary, `-12:00` for the high one.
    pub(crate) fn boundary(&self, digits: Option<i64>, high: bool) -> Option<DateTime> {
        let precision = match digits.unwrap_or(17) {
            4 => Precision::Year,
            6 => Precision::Month,
            8 => Precision::Day,
            10 => Precision::Hour,
            12 => Precision::Minute,
            14 => Precision::Second,
            17 => Precision::Millisecond,
            _ => return None,
        };
        let mut value = *self;
        if high {
            if self.precision < Precision::Month {
                value.month = 12;
            }
            if self.precision < Precision::Day {
                value.day = days_in_month(value.year, value.month);
            }
            if self.precision < Precision::Hour {
                value.hour = 23;
            }
            if self.precision < Precision::Minute {
                value.minute = 59;
            }
            if self.precision < Precision::Second {
                value.second = 59;
            }
            if self.precision < Precision::Millisecond {
                value.millisecond = 999;
            }
        }
        value.precision = precision;
        if precision >= Precision::Hour && value.offset.is_none() {
            value.offset = Some(if high { -12 * 60 } else { 14 * 60 });
        }
        Some(value)
    }

    /// The current instant in UTC, to the millisecond.
    pub(crate) fn now() -> DateTime {
        let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let millis = i64::try_from(elapsed).unwrap_or(0);
        let mut value = from_epoch_millis(millis);
        value.offset = Some(0);
        value
    }

    /// The date part (precision at most day, no zone).
    pub(crate) fn date_part(&self) -> DateTime {
        DateTime {
            hour: 0,
            minute: 0,
            second: 0,
            millisecond: 0,
            precision: self.precision.min(Precision::Day),
            offset: None,
            ..*self
        }
    }

    /// The time part of a date-time known at least to the hour.
    pub(crate) fn time_part(&self) -> Option<Time> {
        (self.precision >= Precision::Hour).then_some(Time {
            hour: self.hour,
            minute: self.minute,
            second: self.second,
            millisecond: self.millisecond,
            precision: self.precision,
        })
    }

    /// Orders two values; `None` when they differ in precision over their common part, or
    /// when only one of two values with a time names a zone.
    pub(crate) fn compare(&self, other: &DateTime) -> Option<Ordering> {
        let (left, right) = if self.precision >= Precision::Hour && other.precision >= Precision::Hour {
            match (self.offset, other.offset) {
                (Some(_), Some(_)) => (self.to_utc()?, other.to_utc()?),
                (None, None) => (*self, *other),
                _ => return None,
            }
        } else {
            (*self, *other)
        };
        let (left_level, right_level) = (level(left.precision), level(right.precision));
        let (left_parts, right_parts) = (left.components(), right.components());
        for index in 0..=left_level.min(right_level) {
            match left_parts[index].cmp(&right_parts[index]) {
                Ordering::Equal => {}
                unequal => return Some(unequal),
            }
        }
        (left_level == right_level).then_some(Ordering::Equal)
    }

    /// Moves the value by `amount` calendar units (fractions are dropped, as for durations
    /// in the specification); `None` when the result leaves the years 0001 to 9999.
    pub(crate) fn add(&self, amount: i64, unit: CalendarUnit) -> Option<DateTime> {
        let mut value = *self;
        match unit {
            CalendarUnit::Year => {
                value.year = i32::try_from(i64::from(value.year).checked_add(amount)?).ok()?;
                value.day = value.day.min(days_in_month(value.year, value.month));
            }
            CalendarUnit::Month if value.precision >= Precision::Month => {
                let months = (i64::from(value.year) * 12 + i64::from(value.month) - 1).checked_add(amount)?;
                value.year = i32::try_from(months.div_euclid(12)).ok()?;
                value.month = u8::try_from(months.rem_euclid(12) + 1).ok()?;
                value.day = value.day.min(days_in_month(value.year, value.month));
            }
            CalendarUnit::Month => return value.add(amount / 12, CalendarUnit::Year),
            CalendarUnit::Week => return value.add(amount.checked_mul(7)?, CalendarUnit::Day),
            CalendarUnit::Day if value.precision >= Precision::Day => {
                let millis = value.epoch_millis()?.checked_add(amount.checked_mul(86_400_000)?)?;
                value = value.with_epoch_millis(millis);
            }
            CalendarUnit::Day => return value.add(amount / 30, CalendarUnit::Month),
            CalendarUnit::Hour | CalendarUnit::Minute | CalendarUnit::Second | CalendarUnit::Millisecond => {
                let unit_millis = match unit {
                    CalendarUnit::Hour => 3_600_000,
                    CalendarUnit::Minute => 60_000,
                    CalendarUnit::Second => 1_000,
                    _ => 1,
                };
                if value.precision < Precision::Hour {
                    return value.add(amount.checked_mul(unit_millis)? / 86_400_000, CalendarUnit::Day);
                }
                let millis = value.epoch_millis()?.checked_add(amount.checked_mul(unit_millis)?)?;
                value = value.with_epoch_millis(millis);
            }
        }
        (1..=9999).contains(&value.year).then_some(value)
    }

    /// `[year, month, day, hour, minute, millisecond-of-minute]`.
    fn components(&self) -> [i64; 6] {
        [
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
            i64::from(self.hour),
            i64::from(self.minute),
            i64::from(self.second) * 1000 + i64::from(self.millisecond),
        ]
    }

    /// Local wall-clock milliseconds since 1970-01-01T00:00; `None` past the range of `i64`.
    fn epoch_millis(&self) -> Option<i64> {
        let days = days_from_civil(self.year, self.month, self.day);
        let in_day = i64::from(self.hour) * 3_600_000
            + i64::from(self.minute) * 60_000
            + i64::from(self.second) * 1000
            + i64::from(self.millisecond);
        days.checked_mul(86_400_000)?.checked_add(in_day)
    }

    /// The same precision and zone, at `millis` (local wall-clock milliseconds).
    fn with_epoch_millis(&self, millis: i64) -> DateTime {
        DateTime { precision: self.precision, offset: self.offset, ..from_epoch_millis(millis) }
    }

    /// The same instant with zone `Z`; `None` past the range of `i64` milliseconds.
    fn to_utc(self) -> Option<DateTime> {
        match self.offset {
            Some(offset) if offset != 0 => {
                let shifted = self.with_epoch_millis(self.epoch_millis()?.checked_sub(i64::from(offset) * 60_000)?);
                Some(DateTime { offset: Some(0), ..shifted })
            }
            _ => Some(self),
        }
    }
}

impl Time {
    /// Parses `hh`, `hh:mm`, `hh:mm:ss` or `hh:mm:ss.fff…` (a FHIR `time` or FHIRPath literal).
    pub fn parse(text: &str) -> Option<Time> {
        let mut cursor = Cursor { text: text.as_bytes(), at: 0 };
        let time = cursor.time()?;
        cursor.at_end().then_some(time)
    }

    /// How much of the value is known.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The number of digits the precision stands for (`10:30` is 4, `10:30:00.000` is 9).
    pub(crate) fn precision_digits(&self) -> i64 {
        match self.precision {
            Precision::Hour => 2,
            Precision::Minute => 4,
            Precision::Second => 6,
            _ => 9,
        }
    }

    /// The earliest (or latest) time the value may stand for, at the precision `digits`
    /// names (default: milliseconds).
    pub(crate) fn boundary(&self, digits: Option<i64>, high: bool) -> Option<Time> {
        let precision = match digits.unwrap_or(9) {
            2 => Precision::Hour,
            4 => Precision::Minute,
            6 => Precision::Second,
            9 => Precision::Millisecond,
            _ => return None,
        };
        let mut value = *self;
        if high {
            if self.precision < Precision::Minute {
                value.minute = 59;
            }
            if self.precision < Precision::Second {
                value.second = 59;
            }
            if self.precision < Precision::Millisecond {
                value.millisecond = 999;
            }
        }
        value.precision = precision;
        Some(value)
    }

    /// Orders two times; `None` when they differ in precision over their common part.
    pub(crate) fn compare(&self, other: &Time) -> Option<Ordering> {
        let as_date_time = |time: &Time| DateTime {
            year: 0,
            month: 1,
            day: 1,
            hour: time.hour,
            minute: time.minute,
            second: time.second,
            millisecond: time.millisecond,
            precision: time.precision,
            offset: None,
        };
        as_date_time(self).compare(&as_date_time(other))
    }
}

impl CalendarUnit {
    /// The unit a quantity's unit names, accepting the calendar keywords (`year`, `days`, …)
    /// and the UCUM codes with a fixed length (`wk`, `d`, `h`, `min`, `s`, `ms`). UCUM `a` and
    /// `mo` are averages, not calendar units, so they give `None`.
    pub(crate) fn from_unit(unit: &str) -> Option<CalendarUnit> {
        Some(match unit {
            "year" | "years" => CalendarUnit::Year,
            "month" | "months" => CalendarUnit::Month,
            "week" | "weeks" | "wk" => CalendarUnit::Week,
            "day" | "days" | "d" => CalendarUnit::Day,
            "hour" | "hours" | "h" => CalendarUnit::Hour,
            "minute" | "minutes" | "min" => CalendarUnit::Minute,
            "second" | "seconds" | "s" => CalendarUnit::Second,
            "millisecond" | "milliseconds" | "ms" => CalendarUnit::Millisecond,
            _ => return None,
        })
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:04}", self.year)?;
        if self.precision >= Precision::Month {
            write!(formatter, "-{:02}", self.month)?;
        }
        if self.precision >= Precision::Day {
            write!(formatter, "-{:02}", self.day)?;
        }
        if let Some(time) = self.time_part() {
            write!(formatter, "T{time}")?;
            match self.offset {
                Some(0) => formatter.write_str("Z")?,
                Some(offset) => {
                    let sign = if offset < 0 { '-' } else { '+' };
                    write!(formatter, "{sign}{:02}:{:02}", offset.unsigned_abs() / 60, offset.unsigned_abs() % 60)?;
                }
                None => {}
            }
        }
        Ok(())
    }
}

impl fmt::Display for Time {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:02}", self.hour)?;
        if self.precision >= Precision::Minute {
            write!(formatter, ":{:02}", self.minute)?;
        }
        if self.precision >= Precision::Second {
            write!(formatter, ":{:02}", self.second)?;
        }
        if self.precision >= Precision::Millisecond {
            write!(formatter, ".{:03}", self.millisecond)?;
        }
        Ok(())
    }
}

/// Seconds and milliseconds are one precision level for comparison.
fn level(precision: Precision) -> usize {
    match precision {
        Precision::Year => 0,
        Precision::Month => 1,
        Precision::Day => 2,
        Precision::Hour => 3,
        Precision::Minute => 4,
        Precision::Second | Precision::Millisecond => 5,
    }
}

/// A forward-only reader over the text of a date or time.
struct Cursor<'t> {
    text: &'t [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn at_end(&self) -> bool {
        self.at == self.text.len()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn digits(&mut self, count: usize) -> Option<u32> {
        let slice = self.text.get(self.at..self.at + count)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.at += count;
        Some(slice.iter().fold(0, |value, digit| value * 10 + u32::from(digit - b'0')))
    }

    fn date(&mut self) -> Option<DateTime> {
        let year = i32::try_from(self.digits(4)?).ok()?;
        let mut value = DateTime {
            year,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            millisecond: 0,
            precision: Precision::Year,
            offset: None,
        };
        if self.peek() == Some(b'-') && self.text.get(self.at + 1).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
            value.month = u8::try_from(self.digits(2)?).ok().filter(|m| (1..=12).contains(m))?;
            value.precision = Precision::Month;
            if self.peek() == Some(b'-') && self.text.get(self.at + 1).is_some_and(u8::is_ascii_digit) {
                self.at += 1;
                let day = u8::try_from(self.digits(2)?).ok()?;
                if day == 0 || day > days_in_month(year, value.month) {
                    return None;
                }
                value.day = day;
                value.precision = Precision::Day;
            }
        }
        Some(value)
    }

    fn time(&mut self) -> Option<Time> {
        let hour = u8::try_from(self.digits(2)?).ok().filter(|h| *h < 24)?;
        let mut time = Time { hour, minute: 0, second: 0, millisecond: 0, precision: Precision::Hour };
        if self.eat(b':') {
            time.minute = u8::try_from(self.digits(2)?).ok().filter(|m| *m < 60)?;
            time.precision = Precision::Minute;
            if self.eat(b':') {
                time.second = u8::try_from(self.digits(2)?).ok().filter(|s| *s < 60)?;
                time.precision = Precision::Second;
                if self.peek() == Some(b'.') && self.text.get(self.at + 1).is_some_and(u8::is_ascii_digit) {
                    self.at += 1;
                    let start = self.at;
                    while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                        self.at += 1;
                    }
                    let fraction = &self.text[start..self.at];
                    let millis = (0..3).fold(0u16, |value, index| {
                        value * 10 + fraction.get(index).map_or(0, |digit| u16::from(digit - b'0'))
                    });
                    time.millisecond = millis;
                    time.precision = Precision::Millisecond;
                }
            }
        }
        Some(time)
    }

    /// `Z`, `+hh:mm`, `-hh:mm` or nothing; the outer `None` is a malformed zone.
    fn offset(&mut self) -> Option<Option<i16>> {
        match self.peek() {
            Some(b'Z') => {
                self.at += 1;
                Some(Some(0))
            }
            Some(sign @ (b'+' | b'-')) => {
                self.at += 1;
                let hours = self.digits(2)?;
                if !self.eat(b':') {
                    return None;
                }
                let minutes = self.digits(2)?;
                if hours > 14 || minutes > 59 {
                    return None;
                }
                let total = i16::try_from(hours * 60 + minutes).ok()?;
                Some(Some(if sign == b'-' { -total } else { total }))
            }
            _ => Some(None),
        }
    }
}

/// The wall-clock fields of `millis` since 1970-01-01T00:00, at millisecond precision.
fn from_epoch_millis(millis: i64) -> DateTime {
    let days = millis.div_euclid(86_400_000);
    let in_day = millis.rem_euclid(86_400_000);
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    DateTime {
        year: i32::try_from(year).unwrap_or(i32::MAX),
        month: month as u8,
        day: day as u8,
        hour: (in_day / 3_600_000) as u8,
        minute: (in_day / 60_000 % 60) as u8,
        second: (in_day / 1000 % 60) as u8,
        millisecond: (in_day % 1000) as u16,
        precision: Precision::Millisecond,
        offset: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date_time(text: &str) -> DateTime {
        DateTime::parse(text).unwrap_or_else(|| panic!("{text} parses"))
    }

    #[test]
    fn parses_partial_values() {
        assert_eq!(date_time("2015").precision(), Precision::Year);
        assert_eq!(date_time("2015-02T").precision(), Precision::Month);
        assert_eq!(date_time("2015-02-04T14:34:28.123+10:00").to_string(), "2015-02-04T14:34:28.123+10:00");
        assert!(DateTime::parse("2015-02-30").is_none());
        assert!(DateTime::parse("2015-02-04T25:00").is_none());
        assert!(DateTime::parse_date("2015-02-04T10").is_none());
        assert_eq!(Time::parse("14:34").map(|t| t.to_string()), Some("14:34".into()));
    }

    #[test]
    fn compares_with_precision_and_zones() {
        let compare = |a: &str, b: &str| date_time(a).compare(&date_time(b));
        assert_eq!(compare("2012-04-15", "2012-04-16"), Some(Ordering::Less));
        assert_eq!(compare("2012-04-15", "2012-04-15T10:00:00"), None);
        assert_eq!(compare("2018-03", "2019-03-01"), Some(Ordering::Less));
        assert_eq!(compare("2012-04-15T15:30:31", "2012-04-15T15:30:31.0"), Some(Ordering::Equal));
        assert_eq!(compare("2012-04-15T15:00:00+02:00", "2012-04-15T16:00:00+03:00"), Some(Ordering::Equal));
        assert_eq!(compare("2012-04-15T15:00:00Z", "2012-04-15T10:00:00"), None);
    }

    #[test]
    fn calendar_arithmetic() {
        let add =
            |text: &str, amount: i64, unit: CalendarUnit| date_time(text).add(amount, unit).map(|d| d.to_string());
        assert_eq!(add("1973-12-25", 7, CalendarUnit::Day), Some("1974-01-01".into()));
        assert_eq!(add("1973-12-25", 1, CalendarUnit::Month), Some("1974-01-25".into()));
        assert_eq!(add("2020-01-31", 1, CalendarUnit::Month), Some("2020-02-29".into()));
        assert_eq!(add("1974-12-25", -1, CalendarUnit::Month), Some("1974-11-25".into()));
        assert_eq!(
            add("1973-12-25T00:00:00.000+10:00", 10, CalendarUnit::Millisecond),
            Some("1973-12-25T00:00:00.010+10:00".into())
        );
    }

    #[test]
    fn arithmetic_stays_within_years_1_to_9999() {
        let add =
            |text: &str, amount: i64, unit: CalendarUnit| date_time(text).add(amount, unit).map(|d| d.to_string());
        assert_eq!(add("9999-12-31", 1, CalendarUnit::Day), None);
        assert_eq!(add("9999-12-31T23:59:59.999Z", 1, CalendarUnit::Millisecond), None);
        assert_eq!(add("9999-12", 1, CalendarUnit::Month), None);
        assert_eq!(add("9999", 1, CalendarUnit::Year), None);
        assert_eq!(add("0001-01-01", -1, CalendarUnit::Day), None);
        assert_eq!(add("0001-01-01T00:00:00.000+14:00", -1, CalendarUnit::Millisecond), None);
        assert_eq!(add("9998-12-31", 1, CalendarUnit::Day), Some("9999-01-01".into()));
        assert_eq!(add("0002", -1, CalendarUnit::Year), Some("0001".into()));
        for unit in [
            CalendarUnit::Year,
            CalendarUnit::Month,
            CalendarUnit::Week,
            CalendarUnit::Day,
            CalendarUnit::Hour,
            CalendarUnit::Minute,
            CalendarUnit::Second,
            CalendarUnit::Millisecond,
        ] {
            for amount in [i64::MAX, i64::MIN, i64::MAX / 7, i64::MIN / 3, 1_000_000_000_000_000] {
                for text in ["2015", "2015-02", "2015-02-04", "2015-02-04T14:34:28.123+10:00", "0001", "9999-12-31"] {
                    assert_eq!(add(text, amount, unit), None, "{text} + {amount} {unit:?}");
                }
            }
        }
    }

    #[test]
    fn zones_at_the_first_and_last_years_compare() {
        let compare = |a: &str, b: &str| date_time(a).compare(&date_time(b));
        assert_eq!(compare("9999-12-31T23:00:00-05:00", "9999-12-31T23:59:59Z"), Some(Ordering::Greater));
        assert_eq!(compare("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z"), Some(Ordering::Less));
        assert_eq!(compare("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999-14:00"), Some(Ordering::Less));
        assert_eq!(compare("0000-01-01T00:00:00+14:00", "0000-01-01T00:00:00+14:00"), Some(Ordering::Equal));
    }
}
