//! The types of multi-operation writes: FHIR transactions (all or nothing, in the spec's
//! processing order, placeholders and conditional references resolved inside the database
//! transaction) and bulk imports (many resources at their own ids in one transaction).

use fhir::id::{LogicalId, ResourceType};
use fhir::search::{Criteria, IndexRows, Registry, index_rows};
use serde_json::Value;

use crate::{Error, ExpectedVersion, Method, PreparedBody, StoredResource, WriteOutcome};

/// A FHIR transaction: every entry, plus the conditional references found in their bodies.
#[derive(Debug, Clone, Default)]
pub struct TransactionRequest {
    pub entries: Vec<TransactionEntry>,
    /// Search-style references (`Patient?identifier=…`) to resolve to exactly one resource.
    pub conditional_references: Vec<ConditionalReference>,
}

/// One entry of a transaction.
#[derive(Debug, Clone)]
pub struct TransactionEntry {
    /// The entry's placeholder `fullUrl` (`urn:uuid:…`), which other entries may use as a
    /// reference to this entry's resource; `None` when it has none.
    pub placeholder: Option<String>,
    pub operation: Operation,
}

/// What one entry does. Bodies are already validated; their placeholders are rewritten by
/// the store once every id is known.
#[derive(Debug, Clone)]
pub enum Operation {
    /// `POST`: a new resource at a server-assigned id, or the single match of `condition`.
    Create { resource_type: ResourceType, resource: Value, condition: Option<Criteria> },
    /// `PUT [type]/[id]` (with `If-Match` as `expected`).
    Update { resource_type: ResourceType, id: LogicalId, resource: Value, expected: ExpectedVersion, method: Method },
    /// `PUT [type]?criteria`.
    ConditionalUpdate { resource_type: ResourceType, criteria: Criteria, resource: Value },
    /// `DELETE [type]/[id]`.
    Delete { resource_type: ResourceType, id: LogicalId, expected: ExpectedVersion },
    /// `DELETE [type]?criteria`.
    ConditionalDelete { resource_type: ResourceType, criteria: Criteria },
    /// `GET [type]/[id]` or, with `version`, `GET [type]/[id]/_history/[version]`.
    Read { resource_type: ResourceType, id: LogicalId, version: Option<u64> },
}

impl Operation {
    /// The spec's processing order: DELETE, then POST, then PUT, then GET.
    pub fn phase(&self) -> u8 {
        match self {
            Operation::Delete { .. } | Operation::ConditionalDelete { .. } => 0,
            Operation::Create { .. } => 1,
            Operation::Update { .. } | Operation::ConditionalUpdate { .. } => 2,
            Operation::Read { .. } => 3,
        }
    }
}

/// A reference written as a search, and the entry whose body holds it.
#[derive(Debug, Clone)]
pub struct ConditionalReference {
    /// The reference exactly as written, e.g. `Patient?identifier=http://x|1`.
    pub reference: String,
    pub resource_type: ResourceType,
    pub criteria: Criteria,
    /// Index of the entry that holds it, for error reports.
    pub entry: usize,
}

/// What one entry did, in the order of the request's entries.
#[derive(Debug, Clone)]
pub enum EntryOutcome {
    /// A create or update (or a conditional create that found its match: `Unchanged`).
    Written(WriteOutcome),
    /// A delete; the tombstone's version, or `None` when it was already deleted.
    Deleted { version: Option<u64> },
    /// A conditional delete and how many resources it deleted (0 or 1).
    ConditionallyDeleted { count: usize },
    /// A read.
    Read(StoredResource),
}

/// Why a transaction failed; nothing of it was written.
#[derive(Debug, thiserror::Error)]
#[error("{}{error}", entry.map(|index| format!("entry {index}: ")).unwrap_or_default())]
pub struct TransactionError {
    /// The entry that failed, when the failure belongs to one.
    pub entry: Option<usize>,
    pub error: Error,
}

impl TransactionError {
    /// A failure of entry `index`.
    pub fn at(index: usize) -> impl FnOnce(Error) -> TransactionError {
        move |error| TransactionError { entry: Some(index), error }
    }
}

impl From<Error> for TransactionError {
    fn from(error: Error) -> TransactionError {
        TransactionError { entry: None, error }
    }
}

/// One resource to import at its own id (an upsert), prepared off the writer: serialized and
/// indexed already, so the single writer only splices in the version and inserts rows.
#[derive(Debug, Clone)]
pub struct ImportResource {
    pub resource_type: ResourceType,
    pub id: LogicalId,
    pub body: PreparedBody,
    pub index: IndexRows,
}

impl ImportResource {
    /// Prepares a validated `resource` for import at `resource_type`/`id`, indexing it with
    /// `registry` (the search parameters of the partition it goes to).
    pub fn new(
        registry: &Registry,
        resource_type: ResourceType,
        id: LogicalId,
        resource: Value,
    ) -> Result<ImportResource, Error> {
        let index = index_rows(registry, resource_type.as_str(), &resource);
        let body = PreparedBody::new(resource, resource_type.as_str(), id.as_str())?;
        Ok(ImportResource { resource_type, id, body, index })
    }
}

/// What an import call wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Resources that did not exist (or were deleted) and now do.
    pub created: usize,
    /// Resources that got a new version because their content changed.
    pub updated: usize,
    /// Resources whose stored content was already the same (apart from `meta.versionId` and
    /// `meta.lastUpdated`): no new version was written.
    pub unchanged: usize,
}

impl ImportCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: ImportCounts) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
    }

    /// Every resource seen.
    pub fn total(&self) -> usize {
        self.created + self.updated + self.unchanged
    }
}
