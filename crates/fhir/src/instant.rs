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
}
