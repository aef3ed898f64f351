//! A strictly increasing write clock, and the context every write carries.
//!
//! Versions of one resource, and history pages, are ordered by `lastUpdated`; if the system
//! clock steps back or two writes land in the same microsecond, the next write still gets a
//! later instant than the last.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI64, Ordering};

use fhir::search::Registry;
use time::OffsetDateTime;

use crate::audit::Event;

/// What a write needs besides its connection: the clock that stamps its versions, and the
/// search parameters of its partition that index them (passed explicitly, never found in
/// thread-local state).
pub(crate) struct WriteContext<'a> {
    pub(crate) clock: &'a WriteClock,
    pub(crate) registry: &'a Registry,
    /// Set when the write stored a `SearchParameter`: the store reloads its registries after.
    search_parameters_changed: Cell<bool>,
    /// The audit event of an audited write, as given, and as completed with what this attempt
    /// of the write wrote.
    audit: Option<&'a Event>,
    audited: RefCell<Option<Event>>,
}

impl<'a> WriteContext<'a> {
    pub(crate) fn new(clock: &'a WriteClock, registry: &'a Registry, audit: Option<&'a Event>) -> WriteContext<'a> {
        WriteContext {
            clock,
            registry,
            search_parameters_changed: Cell::new(false),
            audit,
            audited: RefCell::new(None),
        }
    }

    /// Starts an attempt of the write (PostgreSQL may run one several times): the audit
    /// event starts again from the one given.
    pub(crate) fn begin(&self) {
        *self.audited.borrow_mut() = self.audit.cloned();
    }

    /// The audit event of this attempt, completed, once its work is done.
    pub(crate) fn audit_event(&self) -> Option<Event> {
        self.audited.borrow_mut().take()
    }

    /// Notes that version `version` of a resource was written, with its stored `body` (empty
    /// for a tombstone).
    pub(crate) fn note_write(&self, resource_type: &str, id: &str, version: u64, body: &str) {
        if resource_type == "SearchParameter" {
            self.search_parameters_changed.set(true);
        }
        if let Some(event) = self.audited.borrow_mut().as_mut() {
            event.note_resource(resource_type, id, Some(version), body);
        }
    }

    /// True when the write stored a `SearchParameter`.
    pub(crate) fn search_parameters_changed(&self) -> bool {
        self.search_parameters_changed.get()
    }
}

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
