//! Versioned FHIR resource storage.
//!
//! The [`Store`] trait is what the server talks to. One implementation serves both
//! databases: the store core in [`sql`] is written once over a small connection abstraction
//! ([`sql::db::Db`]), and [`sqlite::SqliteStore`] (embedded: WAL mode, one writer
//! connection, a pool of readers) and [`postgres::PostgresStore`] (several processes on one
//! database) give it connections. Every write puts the history row, the current row and the
//! index rows in one database transaction, so a crash mid-write leaves the database as it
//! was before the write.
//!
//! Stored bodies are the JSON text exactly as it will be served, `meta.versionId` and
//! `meta.lastUpdated` included, so a read is a copy of bytes with no re-serialisation.
//!
//! **Architecture invariant:** this crate knows nothing of HTTP; conflicts and preconditions
//! are domain errors ([`Error`]) that the server maps to status codes.

pub mod audit;
mod body;
pub mod buckets;
mod clock;
mod error;
pub mod expiring;
pub mod leases;
pub mod migrate;
mod panic_guard;
pub mod postgres;
pub mod records;
mod registry;
mod sql;
pub mod sqlite;
mod transaction;

use async_trait::async_trait;
use fhir::id::{LogicalId, ResourceType};
use fhir::search::Criteria;
use serde_json::Value;
use time::OffsetDateTime;

pub use body::PreparedBody;
pub use error::Error;
#[cfg(feature = "test-hooks")]
pub use panic_guard::panic_on_write;
pub use sql::store::SqlStore;
pub use transaction::{
    ConditionalReference, EntryOutcome, ImportCounts, ImportResource, Operation, TransactionEntry, TransactionError,
    TransactionRequest,
};

/// The data partition a request works in. Every row carries one; a request never sees
/// another partition's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Production,
    Sandbox,
}

impl Environment {
    /// The partition name stored in every row.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Sandbox => "sandbox",
        }
    }

    /// The environment of a partition name.
    pub fn parse(name: &str) -> Option<Environment> {
        match name {
            "production" => Some(Environment::Production),
            "sandbox" => Some(Environment::Sandbox),
            _ => None,
        }
    }
}

/// One version of a resource as stored.
#[derive(Debug, Clone)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    pub last_updated: OffsetDateTime,
    /// True for the tombstone version a delete writes; `body` is then empty.
    pub deleted: bool,
    /// The JSON text as served (empty for a tombstone).
    pub body: String,
}

/// What a write did.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// `Created` for a new resource, `Updated` for a new version of an existing one, and
    /// `Unchanged` when a conditional create found its match (the match is returned).
    pub kind: WriteKind,
    pub resource: StoredResource,
}

/// See [`WriteOutcome::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Created,
    Updated,
    Unchanged,
}

/// The interaction that produced a history entry, recorded for history bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// The HTTP verb text.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    fn parse(text: &str) -> Method {
        match text {
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Put,
        }
    }
}

/// A history entry: one version plus the interaction that made it.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub method: Method,
    pub resource: StoredResource,
}

/// Which history to list.
#[derive(Debug, Clone)]
pub enum HistoryScope {
    System,
    Type(ResourceType),
    Instance(ResourceType, LogicalId),
}

/// A history request: newest first, `count` at most, resuming below `before` (a cursor from
/// the previous page) when given.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub scope: HistoryScope,
    /// Only versions written at or after this instant (`_since`).
    pub since: Option<OffsetDateTime>,
    /// Only versions that were current at this instant (`_at`).
    pub at: Option<OffsetDateTime>,
    pub count: usize,
    /// Opaque position from [`HistoryPage::next`].
    pub before: Option<i64>,
}

/// One page of history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    /// The cursor for the next page, when there is one.
    pub next: Option<i64>,
}

/// A search: the resource types to search (one for a type search, several for `_type`), the
/// parsed query, and the page size.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub types: Vec<ResourceType>,
    pub query: fhir::search::SearchQuery,
    /// Matches per page; 0 asks only for the total.
    pub count: usize,
    /// How much work the search may do.
    pub limits: SearchLimits,
}

/// Bounds on one search's work, so that no query can hold a connection or memory for long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// The database work (every statement of the search together on SQLite, each statement on
    /// PostgreSQL) is stopped after this long and the search fails with
    /// [`Error::TooCostly`].
    pub time: std::time::Duration,
    /// The resource bytes one page may hold, matches and includes together: a page that
    /// would exceed it is cut (see [`SearchPage::cut`]).
    pub page_bytes: usize,
}

impl SearchLimits {
    /// The default time limit of a search.
    pub const DEFAULT_TIME: std::time::Duration = std::time::Duration::from_secs(10);
    /// The default byte budget of a page.
    pub const DEFAULT_PAGE_BYTES: usize = 32 * 1024 * 1024;
}

impl Default for SearchLimits {
    fn default() -> SearchLimits {
        SearchLimits { time: SearchLimits::DEFAULT_TIME, page_bytes: SearchLimits::DEFAULT_PAGE_BYTES }
    }
}

/// One page of search results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    /// The matches, in the search's order.
    pub matches: Vec<StoredResource>,
    /// Resources added by `_include` and `_revinclude`.
    pub included: Vec<StoredResource>,
    /// The number of matches across all pages, when known.
    pub total: Option<u64>,
    /// The opaque `_cursor` of the next page, when there is one.
    pub next: Option<String>,
    /// The opaque `_cursor` of the previous page, when there is one.
    pub previous: Option<String>,
    /// True when the page was cut to stay within [`SearchLimits::page_bytes`]: it holds
    /// fewer matches than asked (the rest are on the next page) or leaves includes out.
    pub cut: bool,
}

/// A write precondition from `If-Match`: the version the client last saw.
pub type ExpectedVersion = Option<u64>;

/// The storage interface the server uses. Implementations must make each call atomic.
/// Every store also keeps the platform records ([`records::Records`]), the expiring lists
/// ([`expiring::Expiring`]), the leases of background work ([`leases::Leases`]), the
/// audit log ([`audit::Audit`]) and the rate-limit buckets ([`buckets::Buckets`]).
#[async_trait]
pub trait Store:
    records::Records + expiring::Expiring + leases::Leases + audit::Audit + buckets::Buckets + Send + Sync
{
    /// The current version of a resource, including a tombstone if it was deleted; `None`
    /// if it never existed.
    async fn read(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        id: &LogicalId,
    ) -> Result<Option<StoredResource>, Error>;

    /// A specific version, tombstones included.
    async fn vread(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        id: &LogicalId,
        version: u64,
    ) -> Result<Option<StoredResource>, Error>;

    /// Creates a resource with a server-assigned id. With `condition` (`If-None-Exist`), the
    /// search and the insert happen in one transaction: one match returns it unchanged, more
    /// than one is [`Error::MultipleMatches`].
    async fn create(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        resource: Value,
        condition: Option<Criteria>,
    ) -> Result<WriteOutcome, Error>;

    /// Writes a new version at `id`, creating the resource if it does not exist (or was
    /// deleted). `expected` is checked in the same transaction.
    async fn update(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        id: &LogicalId,
        resource: Value,
        expected: ExpectedVersion,
        method: Method,
    ) -> Result<WriteOutcome, Error>;

    /// Conditional update: the criteria are resolved in the write transaction. No match
    /// creates (with the body's id if it has one), one match updates it, more is
    /// [`Error::MultipleMatches`].
    async fn conditional_update(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        criteria: Criteria,
        resource: Value,
    ) -> Result<WriteOutcome, Error>;

    /// Deletes a resource: writes a tombstone version. Returns the tombstone's version, or
    /// `None` if there was nothing live to delete. [`Error::NotFound`] if it never existed.
    async fn delete(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        id: &LogicalId,
        expected: ExpectedVersion,
    ) -> Result<Option<u64>, Error>;

    /// Conditional delete: deletes the single match; none is a no-op, more than one is
    /// [`Error::MultipleMatches`]. Returns how many resources were deleted.
    async fn conditional_delete(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        criteria: Criteria,
    ) -> Result<usize, Error>;

    /// Live resources matching `criteria`, at most `limit` of them.
    async fn find(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        criteria: Criteria,
        limit: usize,
    ) -> Result<Vec<StoredResource>, Error>;

    /// A page of history.
    async fn history(&self, env: Environment, query: HistoryQuery) -> Result<HistoryPage, Error>;

    /// The search parameters of partition `env` (official plus that partition's custom
    /// `SearchParameter` resources), for parsing searches.
    fn registry(&self, env: Environment) -> std::sync::Arc<fhir::search::Registry>;

    /// Recomputes the index rows of up to `limit` live resources after row `after` (in row
    /// order, across partitions), for a reindex after the search parameters changed. Returns
    /// the position to continue from, or `None` when every resource is done.
    async fn reindex(&self, after: i64, limit: usize) -> Result<Option<i64>, Error>;

    /// How many live resources the store holds, across partitions (for progress bars).
    async fn count_resources(&self) -> Result<u64, Error>;

    /// A page of search results.
    async fn search(&self, env: Environment, request: SearchRequest) -> Result<SearchPage, Error>;

    /// Runs a FHIR transaction in one database transaction: every entry succeeds or nothing
    /// is written. Entries run in the spec's order (DELETE, POST, PUT, GET); conditional
    /// criteria, placeholder `fullUrl`s and conditional references are resolved inside it.
    /// Outcomes come back in the order of `request.entries`.
    async fn transaction(
        &self,
        env: Environment,
        request: TransactionRequest,
    ) -> Result<Vec<EntryOutcome>, TransactionError>;

    /// Upserts `resources` at their own ids in one database transaction, through the same
    /// write path as `update` (history, current and index rows). A resource whose stored
    /// content is already the same, `meta.versionId` and `meta.lastUpdated` aside, is left
    /// alone, so importing the same data twice changes nothing.
    async fn import(&self, env: Environment, resources: Vec<ImportResource>) -> Result<ImportCounts, Error>;
}
