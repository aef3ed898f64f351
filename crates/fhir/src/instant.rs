//! FHIR `instant`, `dateTime` and `date` text: formatting what the server stamps, parsing what
//! clients send (`_since`, `_at`, date search values) and what resources hold (date indexes).
//!
//! The parser is hand-written and total: every calendar date from `0001-01-01` to `9999-12-31`,
//! at every precision, with any zone FHIR allows (`-14:00` to `+14:00`), becomes microseconds
//! since the Unix epoch in plain `i64` arithmetic. The edges need that: the end of `9999-12-31`
//! is in year 10000 and `0001-01-01T00:00:00+14:00` starts in year 0 in UTC, and neither is a
//! date the `time` crate can hold.

use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// The widest zone offset FHIR allows, in minutes (`+14:00` and `-14:00`).
const MAX_OFFSET_MINUTES: i32 = 14 * 60;

/// Formats `instant` as a FHIR instant in UTC with microsecond precision,
/// e.g. `2026-11-25T04:10:00.123456Z`. An instant whose UTC date is outside the years 0001 to
/// 9999 that FHIR can write (`9999-12-31T23:00:00-05:00`) keeps its own offset instead.
pub fn format(instant: OffsetDateTime) -> String {
    match instant.checked_to_offset(UtcOffset::UTC).filter(|utc| (1..=9999).contains(&utc.year())) {
        Some(utc) => {
            let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
            utc.format(&format).unwrap_or_else(|_| utc.to_string())
        }
        None => {
            let format = format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6][offset_hour sign:mandatory]:[offset_minute]"
            );
            instant.format(&format).unwrap_or_else(|_| instant.to_string())
        }
    }
}

/// Parses a FHIR `date`, `dateTime` or `instant` into the earliest instant it covers: `2024`,
/// `2024-03`, `2024-03-05`, `2024-03-05T10:00` and full date-times with optional fraction and
/// zone, in the zone the text names. A date-time without a zone is read as UTC (the spec
/// leaves it to the server); so is a date, which has none. A leap second (`23:59:60`) is read
/// as the last microsecond of the minute.
pub fn parse_lower_bound(text: &str) -> Option<OffsetDateTime> {
    let parts = Parts::parse(text)?;
    let date = Date::from_calendar_date(parts.year, Month::try_from(parts.month).ok()?, parts.day).ok()?;
    let time = if parts.second == 60 {
        Time::from_hms_micro(parts.hour, parts.minute, 59, 999_999)
    } else {
        Time::from_hms_nano(parts.hour, parts.minute, parts.second, parts.nanos)
    }
    .ok()?;
    let offset = UtcOffset::from_whole_seconds(parts.offset_minutes * 60).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

/// The instants (microseconds since the Unix epoch, both inclusive) that a FHIR `date`,
/// `dateTime` or `instant` covers at its precision: `2024` is the whole year, `2024-03-05`
/// the whole day, `2024-03-05T10:00:00Z` that second, `…:00.5Z` that tenth of a second
/// (never less than a microsecond). Zones as in [`parse_lower_bound`]. `None` for text that
/// is not a real calendar date and time in years 0001 to 9999.
pub fn range(text: &str) -> Option<(i64, i64)> {
    Parts::parse(text).map(|parts| parts.range())
}

/// The last unit a value states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Year,
    Month,
    Day,
    Minute,
    Second,
    /// `10^-n` s for `n` (1 to 9) digits of fraction.
    Fraction(u32),
}

/// The fields of a parsed date or date-time, all in range.
#[derive(Debug, Clone, Copy)]
struct Parts {
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    /// 0 to 60 (a leap second).
    second: u8,
    /// The first nine digits of the fraction, as nanoseconds.
    nanos: u32,
    unit: Unit,
    /// Minutes east of UTC; 0 when the text names no zone.
    offset_minutes: i32,
}

impl Parts {
    /// `YYYY[-MM[-DD[Thh:mm[:ss[.f…]][Z|±hh:mm]]]]`, years 0001 to 9999, real calendar dates.
    fn parse(text: &str) -> Option<Parts> {
        let mut cursor = Cursor { text: text.as_bytes(), at: 0 };
        let year = i32::try_from(cursor.number(4)?).ok().filter(|year| *year >= 1)?;
        let mut parts = Parts {
            year,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            nanos: 0,
            unit: Unit::Year,
            offset_minutes: 0,
        };
        if cursor.at_end() {
            return Some(parts);
        }
        cursor.expect(b'-')?;
        parts.month = cursor.number(2).and_then(|month| u8::try_from(month).ok()).filter(|m| (1..=12).contains(m))?;
        parts.unit = Unit::Month;
        if cursor.at_end() {
            return Some(parts);
        }
        cursor.expect(b'-')?;
        let day = cursor.number(2).and_then(|day| u8::try_from(day).ok())?;
        if day == 0 || day > days_in_month(year, parts.month) {
            return None;
        }
        parts.day = day;
        parts.unit = Unit::Day;
        if cursor.at_end() {
            return Some(parts);
        }
        cursor.expect(b'T')?;
        parts.hour = cursor.number(2).and_then(|hour| u8::try_from(hour).ok()).filter(|h| *h < 24)?;
        cursor.expect(b':')?;
        parts.minute = cursor.number(2).and_then(|minute| u8::try_from(minute).ok()).filter(|m| *m < 60)?;
        parts.unit = Unit::Minute;
        if cursor.eat(b':') {
            parts.second = cursor.number(2).and_then(|second| u8::try_from(second).ok()).filter(|s| *s <= 60)?;
            parts.unit = Unit::Second;
            if cursor.eat(b'.') {
                let digits = cursor.digits();
                if digits.is_empty() {
                    return None;
                }
                parts.nanos = (0..9)
                    .fold(0, |nanos, index| nanos * 10 + digits.get(index).map_or(0, |digit| u32::from(digit - b'0')));
                parts.unit = Unit::Fraction(u32::try_from(digits.len().min(9)).unwrap_or(9));
            }
        }
        parts.offset_minutes = cursor.zone()?;
        cursor.at_end().then_some(parts)
    }

    /// The covered microseconds, both inclusive (see [`range`]).
    fn range(&self) -> (i64, i64) {
        let day = days_from_civil(self.year, self.month, self.day) * MICROS_PER_DAY;
        let minute = day + (i64::from(self.hour) * 60 + i64::from(self.minute)) * MICROS_PER_MINUTE;
        let (low, end) = match self.unit {
            Unit::Year => (day, days_from_civil(self.year + 1, 1, 1) * MICROS_PER_DAY),
            Unit::Month => {
                let (year, month) = if self.month == 12 { (self.year + 1, 1) } else { (self.year, self.month + 1) };
                (day, days_from_civil(year, month, 1) * MICROS_PER_DAY)
            }
            Unit::Day => (day, day + MICROS_PER_DAY),
            Unit::Minute => (minute, minute + MICROS_PER_MINUTE),
            _ if self.second == 60 => {
                let last = minute + MICROS_PER_MINUTE - 1;
                (last, last + 1)
            }
            Unit::Second => {
                let second = minute + i64::from(self.second) * MICROS_PER_SECOND;
                (second, second + MICROS_PER_SECOND)
            }
            Unit::Fraction(digits) => {
                let second = minute + i64::from(self.second) * MICROS_PER_SECOND;
                let step_nanos = 10_i64.pow(9 - digits.min(9));
                let nanos = i64::from(self.nanos);
                // Rounded outwards to whole microseconds, so that a unit finer than a
                // microsecond still covers the microsecond it falls in.
                (second + nanos / 1000, second + (nanos + step_nanos + 999) / 1000)
            }
        };
        let offset = i64::from(self.offset_minutes) * MICROS_PER_MINUTE;
        (low - offset, end - 1 - offset)
    }
}

/// A forward-only reader over the bytes of a date-time.
struct Cursor<'t> {
    text: &'t [u8],
    at: usize,
}

impl<'t> Cursor<'t> {
    fn at_end(&self) -> bool {
        self.at >= self.text.len()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.text.get(self.at) == Some(&byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// Exactly `count` ASCII digits, as a number.
    fn number(&mut self, count: usize) -> Option<u32> {
        let slice = self.text.get(self.at..self.at.checked_add(count)?)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.at += count;
        Some(slice.iter().fold(0, |value, digit| value * 10 + u32::from(digit - b'0')))
    }

    /// The run of ASCII digits at the cursor (possibly empty).
    fn digits(&mut self) -> &'t [u8] {
        let text: &'t [u8] = self.text;
        let rest = text.get(self.at..).unwrap_or_default();
        let count = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
        self.at += count;
        rest.get(..count).unwrap_or_default()
    }

    /// `Z`, `+hh:mm`, `-hh:mm` (at most 14:00) or nothing, as minutes east of UTC.
    fn zone(&mut self) -> Option<i32> {
        if self.eat(b'Z') {
            return Some(0);
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return Some(0);
        };
        let hours = i32::try_from(self.number(2)?).ok()?;
        self.expect(b':')?;
        let minutes = i32::try_from(self.number(2)?).ok()?;
        let total = hours * 60 + minutes;
        (minutes < 60 && total <= MAX_OFFSET_MINUTES).then_some(sign * total)
    }
}

/// Whether `year` of the proleptic Gregorian calendar has a 29 February.
pub(crate) fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// The number of days in `month` (1 to 12) of `year`.
pub(crate) fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm); total
/// for any `i32` year, so it also gives the day after `9999-12-31`.
pub(crate) fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;
    /// Microseconds since the epoch of 0001-01-01T00:00:00Z and of 10000-01-01T00:00:00Z.
    const YEAR_1: i64 = -62_135_596_800_000_000;
    const YEAR_10000: i64 = 253_402_300_800_000_000;

    fn micros(instant: OffsetDateTime) -> i64 {
        i64::try_from(instant.unix_timestamp_nanos() / 1_000).unwrap()
    }

    #[test]
    fn formats_with_microseconds_in_utc() {
        let instant = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap();
        assert_eq!(format(instant), "2023-11-14T22:13:20.123456Z");
    }

    #[test]
    fn parses_partial_dates_and_zones() {
        assert_eq!(format(parse_lower_bound("2024").unwrap()), "2024-01-01T00:00:00.000000Z");
        assert_eq!(format(parse_lower_bound("2024-03").unwrap()), "2024-03-01T00:00:00.000000Z");
        assert_eq!(format(parse_lower_bound("2024-03-05").unwrap()), "2024-03-05T00:00:00.000000Z");
        assert_eq!(format(parse_lower_bound("2024-03-05T10:00:00+02:00").unwrap()), "2024-03-05T08:00:00.000000Z");
        assert!(parse_lower_bound("2024-13").is_none());
        assert!(parse_lower_bound("yesterday").is_none());
    }

    #[test]
    fn ranges_follow_precision() {
        let (low, high) = range("2024-03-05").unwrap();
        assert_eq!(high - low, DAY - 1);
        let (low, high) = range("2024").unwrap();
        assert_eq!(high - low, 366 * DAY - 1, "2024 is a leap year");
        let (low, high) = range("2024-12").unwrap();
        assert_eq!(high - low, 31 * DAY - 1);
        let (low, high) = range("2024-03-05T10:00:00Z").unwrap();
        assert_eq!(high - low, 999_999);
        let (low, high) = range("2024-03-05T10:00:00.5Z").unwrap();
        assert_eq!(high - low, 99_999);
        assert!(range("2024-02-30").is_none());
    }

    #[test]
    fn ranges_agree_with_the_time_crate() {
        for text in ["2024-03-05T10:00:00+02:00", "1969-12-31T23:59:59.999999Z", "1970", "2000-02-29", "1600-03"] {
            let (low, _) = range(text).unwrap();
            assert_eq!(low, micros(parse_lower_bound(text).unwrap()), "{text}");
        }
        assert_eq!(range("1970-01-01T00:00:00Z"), Some((0, 999_999)));
        assert_eq!(range("1970-01-01T01:00:00+01:00"), Some((0, 999_999)));
    }

    #[test]
    fn minutes_fractions_and_leap_seconds() {
        let (low, high) = range("2024-03-05T10:00Z").unwrap();
        assert_eq!(high - low, 60_000_000 - 1);
        assert_eq!(range("2024-03-05T10:00"), range("2024-03-05T10:00Z"));
        let (low, high) = range("2024-03-05T10:00:00.123456Z").unwrap();
        assert_eq!((low % 1_000_000, high - low), (123_456, 0));
        let (low, high) = range("2024-03-05T10:00:00.123456789Z").unwrap();
        assert_eq!((low % 1_000_000, high - low), (123_456, 0));
        let (low, high) = range("2024-03-05T10:00:00.12345678912345Z").unwrap();
        assert_eq!((low % 1_000_000, high - low), (123_456, 0));
        let (low, high) = range("2016-12-31T23:59:60Z").unwrap();
        assert_eq!((low, high), (range("2017").unwrap().0 - 1, range("2017").unwrap().0 - 1));
        assert_eq!(format(parse_lower_bound("2016-12-31T23:59:60Z").unwrap()), "2016-12-31T23:59:59.999999Z");
    }

    #[test]
    fn malformed_values_are_none() {
        for bad in [
            "",
            "0000",
            "10000",
            "999",
            "2024-",
            "2024-1",
            "2024-00",
            "2024-13",
            "2023-02-29",
            "2024-04-31",
            "2024-03-00",
            "2024-03-05T",
            "2024-03-05T24:00Z",
            "2024-03-05T10",
            "2024-03-05T10:60Z",
            "2024-03-05T10:00:61Z",
            "2024-03-05T10:00:00.Z",
            "2024-03-05T10:00:00+14:01",
            "2024-03-05T10:00:00+15:00",
            "2024-03-05T10:00:00+0100",
            "2024-03-05T10:00:00 01:00",
            "2024-03-05Z",
            "2024Z",
            "2024-03-05t10:00:00z",
            "+2024",
            "-2024",
            "2024-03-05T10:00:00Z ",
            " 2024",
            "２０２４",
            "2024-03-05T10:00:00.5Z.5",
            "9999-12-31T23:59:59Z+",
        ] {
            assert_eq!(range(bad), None, "{bad:?}");
            assert_eq!(parse_lower_bound(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_first_and_last_years_at_every_precision() {
        let cases: [(&str, i64, i64); 12] = [
            ("0001", YEAR_1, 365 * DAY),
            ("0001-01", YEAR_1, 31 * DAY),
            ("0001-01-01", YEAR_1, DAY),
            ("0001-01-01T00:00Z", YEAR_1, 60_000_000),
            ("0001-01-01T00:00:00Z", YEAR_1, 1_000_000),
            ("0001-01-01T00:00:00.000000000Z", YEAR_1, 1),
            ("9999", YEAR_10000 - 365 * DAY, 365 * DAY),
            ("9999-12", YEAR_10000 - 31 * DAY, 31 * DAY),
            ("9999-12-31", YEAR_10000 - DAY, DAY),
            ("9999-12-31T23:59Z", YEAR_10000 - 60_000_000, 60_000_000),
            ("9999-12-31T23:59:59Z", YEAR_10000 - 1_000_000, 1_000_000),
            ("9999-12-31T23:59:59.999999999Z", YEAR_10000 - 1, 1),
        ];
        for (text, low, span) in cases {
            assert_eq!(range(text), Some((low, low + span - 1)), "{text}");
            let lower = parse_lower_bound(text).unwrap();
            assert_eq!(micros(lower), low, "{text}");
            let formatted = format(lower);
            assert_eq!(range(&formatted).map(|r| r.0), Some(low), "{text} formats as {formatted}");
        }
        assert_eq!(format(parse_lower_bound("9999-12-31T23:59:59.999999Z").unwrap()), "9999-12-31T23:59:59.999999Z");
        assert_eq!(format(parse_lower_bound("0001").unwrap()), "0001-01-01T00:00:00.000000Z");
        for digits in 1..=9 {
            let text = format!("9999-12-31T23:59:59.{}Z", "9".repeat(digits));
            let (low, high) = range(&text).unwrap();
            assert!(low <= high && high == YEAR_10000 - 1, "{text}");
            let text = format!("0001-01-01T00:00:00.{}", "0".repeat(digits));
            let (low, high) = range(&text).unwrap();
            assert!(low == YEAR_1 && low <= high, "{text}");
        }
    }

    #[test]
    fn zones_that_cross_the_first_and_last_years() {
        let hour = 3_600_000_000;
        assert_eq!(range("9999-12-31T23:00:00-05:00"), Some((YEAR_10000 + 4 * hour, YEAR_10000 + 4 * hour + 999_999)));
        assert_eq!(range("9999-12-31T23:59:59-14:00").map(|r| r.1), Some(YEAR_10000 + 14 * hour - 1));
        assert_eq!(range("0001-01-01T00:00:00+14:00"), Some((YEAR_1 - 14 * hour, YEAR_1 - 14 * hour + 999_999)));
        assert_eq!(range("0001-01-01T00:00+14:00").map(|r| r.0), Some(YEAR_1 - 14 * hour));
        for text in ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999999-14:00"] {
            let lower = parse_lower_bound(text).unwrap();
            assert_eq!(Some(micros(lower)), range(text).map(|r| r.0), "{text}");
            let formatted = format(lower);
            assert_eq!(range(&formatted).map(|r| r.0), range(text).map(|r| r.0), "{text} formats as {formatted}");
        }
        assert_eq!(format(parse_lower_bound("9999-12-31T23:00:00-05:00").unwrap()), "9999-12-31T23:00:00.000000-05:00");
        assert_eq!(format(parse_lower_bound("0001-01-01T00:00:00+14:00").unwrap()), "0001-01-01T00:00:00.000000+14:00");
        assert_eq!(format(parse_lower_bound("9999-12-31T09:00:00-14:00").unwrap()), "9999-12-31T23:00:00.000000Z");
    }

    #[test]
    fn civil_days_match_the_time_crate() {
        for (year, month, day) in [(1, 1, 1), (1970, 1, 1), (2000, 2, 29), (9999, 12, 31), (1582, 10, 4)] {
            let date = Date::from_calendar_date(year, Month::try_from(month).unwrap(), day).unwrap();
            assert_eq!(days_from_civil(year, month, day), i64::from(date.to_julian_day()) - 2_440_588);
        }
        assert_eq!(days_from_civil(10_000, 1, 1) * DAY, YEAR_10000);
    }
}
