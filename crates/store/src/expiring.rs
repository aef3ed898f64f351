//! Expiring lists: keys remembered until an instant, in a table of their own (see
//! ARCHITECTURE.md: a hot path touches them, and they need semantics records do not have).
//!
//! `jti` replay protection remembers each client assertion's id until the assertion expires,
//! and needs to learn atomically whether the id was new: of two concurrent calls with one key,
//! exactly one is told so. Revocation lists ask whether a token id is listed and unexpired.
//! An expired entry counts as absent and is replaced by the next `remember`; expired rows are
//! purged in small batches, now and then by `remember` itself, so no sweeper is needed.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::Error;

/// The expiring lists; every [`crate::Store`] keeps them.
#[async_trait]
pub trait Expiring: Send + Sync {
    /// Remembers `key` in `list` until `expires`. True when it was not there (or had expired
    /// by `now`, and is replaced); false when it is there and unexpired, which is left as it
    /// was. Atomic: of concurrent calls with one key, one alone returns true.
    async fn remember(
        &self,
        list: &str,
        key: &str,
        expires: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, Error>;

    /// True when `key` is in `list` and has not expired by `now`.
    async fn remembered(&self, list: &str, key: &str, now: OffsetDateTime) -> Result<bool, Error>;

    /// Every entry of `list` unexpired at `now`, with its expiry: what a process holds in
    /// memory to check a short list on every request.
    async fn listed(&self, list: &str, now: OffsetDateTime) -> Result<Vec<(String, OffsetDateTime)>, Error>;

    /// Deletes up to `limit` entries (of any list) expired by `now`, oldest first; how many
    /// were deleted. `remember` calls this itself now and then.
    async fn purge_expired(&self, now: OffsetDateTime, limit: usize) -> Result<u64, Error>;
}
