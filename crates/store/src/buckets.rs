//! Rate-limit token buckets shared by every server process through the database.
//!
//! A bucket holds up to `burst` requests and refills at `per_minute`. A process takes several
//! requests at once ([`Buckets::take`]) and spends them from memory, so a busy device costs
//! the database one write a second, not one a request; the limit holds across processes to
//! within what each holds. Each bucket counts the requests it refused since it was made or
//! reset, which is what the monitor's rules escalate on.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::Error;

/// What a take got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Requests granted (0: refused).
    pub granted: u32,
    /// Requests the bucket refused since it was made or reset, this one included.
    pub refused: u64,
    /// When refused: how long until a request is granted again.
    pub retry_after: std::time::Duration,
}

/// A bucket's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    /// The most requests it holds (a full bucket allows this many at once).
    pub burst: u32,
}

impl Rate {
    /// `per_minute`, with a burst of ten seconds' worth (at least one request).
    pub fn per_minute(per_minute: u32) -> Rate {
        Rate { per_minute, burst: (per_minute / 6).max(1) }
    }
}

#[async_trait]
pub trait Buckets: Send + Sync {
    /// Takes up to `want` requests from the bucket `key` (made full when new) at `now`.
    async fn take(&self, key: &str, want: u32, rate: Rate, now: OffsetDateTime) -> Result<Taken, Error>;

    /// Removes the buckets whose key is `prefix` or starts with `prefix` and `:` (they start
    /// full again, their refusals forgotten).
    async fn reset_buckets(&self, prefix: &str) -> Result<u64, Error>;
}
