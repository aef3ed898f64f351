//! FHIR `instant` and `dateTime` text: formatting what the server stamps, parsing what clients
//! send in `_since` and `_at`.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Formats `instant` as a FHIR instant in UTC with microsecond precision,
/// e.g. `2026-11-25T04:10:00.123456Z`.
pub fn format(instant: OffsetDateTime) -> String {
    let utc = instant.to_offset(UtcOffset::UTC);
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    utc.format(&format).unwrap_or_else(|_| utc.to_string())
}

/// Parses a FHIR `dateTime` or `instant` into the earliest instant it covers: `2024`,
/// `2024-03`, `2024-03-05` and full date-times with a zone. A date-time without a zone is read
/// as UTC (the spec leaves it to the server).
pub fn parse_lower_bound(text: &str) -> Option<OffsetDateTime> {
    if let Ok(instant) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(instant);
    }
    if let Ok(local) =
        PrimitiveDateTime::parse(text, format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"))
    {
        return Some(local.assume_utc());
    }
    let date = match text.len() {
        4 => Date::from_calendar_date(text.parse().ok()?, time::Month::January, 1).ok()?,
        7 => Date::parse(&format!("{text}-01"), format_description!("[year]-[month]-[day]")).ok()?,
        10 => Date::parse(text, format_description!("[year]-[month]-[day]")).ok()?,
        _ => return None,
    };
    Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc())
}

/// The instants (microseconds since the Unix epoch, both inclusive) that a FHIR `date`,
/// `dateTime` or `instant` covers at its precision: `2024` is the whole year, `2024-03-05`
/// the whole day, `2024-03-05T10:00:00Z` that second. A date-time without a zone is read as
/// UTC; so is a date, which has none.
pub fn range(text: &str) -> Option<(i64, i64)> {
    let low = parse_lower_bound(text)?;
    let date_part = text.get(..text.find('T').unwrap_or(text.len()))?;
    let high = match date_part.len() {
        4 => low.replace_year(low.year() + 1).ok()?,
        7 => {
            let (year, month) = if low.month() == time::Month::December {
                (low.year() + 1, time::Month::January)
            } else {
                (low.year(), low.month().next())
            };
            low.replace_year(year).ok()?.replace_month(month).ok()?
        }
        10 if text.len() == 10 => low + time::Duration::DAY,
        _ => low + time::Duration::nanoseconds(fraction_step_nanos(text)),
    };
    Some((micros(low), micros(high) - 1))
}

/// The length of the last unit a date-time states: a second, or `10^-n` s for `n` digits of
/// fraction (never finer than a microsecond).
fn fraction_step_nanos(text: &str) -> i64 {
    let digits = text.split_once('.').map_or(0, |(_, rest)| rest.bytes().take_while(u8::is_ascii_digit).count());
    let digits = u32::try_from(digits.min(6)).unwrap_or(6);
    1_000_000_000 / 10_i64.pow(digits)
}

fn micros(instant: OffsetDateTime) -> i64 {
    i64::try_from(instant.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let day = 86_400_000_000;
        let (low, high) = range("2024-03-05").unwrap();
        assert_eq!(high - low, day - 1);
        let (low, high) = range("2024").unwrap();
        assert_eq!(high - low, 366 * day - 1, "2024 is a leap year");
        let (low, high) = range("2024-12").unwrap();
        assert_eq!(high - low, 31 * day - 1);
        let (low, high) = range("2024-03-05T10:00:00Z").unwrap();
        assert_eq!(high - low, 999_999);
        let (low, high) = range("2024-03-05T10:00:00.5Z").unwrap();
        assert_eq!(high - low, 99_999);
        assert!(range("2024-02-30").is_none());
    }
}
