//! Leases: a named piece of work held by one owner (a server process) until an instant, so
//! that several processes sharing a database split background jobs and a crashed process's
//! job is taken over once its lease runs out. A table of its own (see ARCHITECTURE.md): a
//! holder renews every few seconds, and a claim must say atomically whether it won.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::Error;

/// The leases; every [`crate::Store`] keeps them.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes or renews the lease `name` for `owner` until `expires`. True when `owner` holds
    /// it now: it was free, had expired by `now`, or was already `owner`'s (then renewed).
    /// Atomic: of concurrent claims by different owners, at most one wins.
    async fn claim(&self, name: &str, owner: &str, expires: OffsetDateTime, now: OffsetDateTime)
    -> Result<bool, Error>;

    /// Gives the lease `name` up if `owner` holds it; true when it did.
    async fn release(&self, name: &str, owner: &str) -> Result<bool, Error>;
}
