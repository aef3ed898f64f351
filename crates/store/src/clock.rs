//! A strictly increasing write clock.
//!
//! Versions of one resource, and history pages, are ordered by `lastUpdated`; if the system
//! clock steps back or two writes land in the same microsecond, the next write still gets a
//! later instant than the last.

use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// Hands out strictly increasing instants, in microseconds since the Unix epoch.
#[derive(Debug, Default)]
pub(crate) struct WriteClock {
    last: AtomicI64,
}

impl WriteClock {
    /// A clock that will never return `floor` or anything before it.
    pub(crate) fn starting_after(floor: i64) -> WriteClock {
        WriteClock { last: AtomicI64::new(floor) }
    }

    /// The next instant, in microseconds.
    pub(crate) fn next(&self) -> i64 {
        let now = micros(OffsetDateTime::now_utc());
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = now.max(last + 1);
            match self.last.compare_exchange_weak(last, candidate, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return candidate,
                Err(actual) => last = actual,
            }
        }
    }
}

/// Microseconds since the Unix epoch.
pub(crate) fn micros(instant: OffsetDateTime) -> i64 {
    (instant.unix_timestamp_nanos() / 1_000) as i64
}

/// The instant for `micros` microseconds since the Unix epoch.
pub(crate) fn from_micros(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_even_when_floor_is_in_the_future() {
        let far_future = micros(OffsetDateTime::now_utc()) + 10_000_000;
        let clock = WriteClock::starting_after(far_future);
        let first = clock.next();
        assert_eq!(first, far_future + 1);
        assert!(clock.next() > first);
    }
}
