//! Writes. Each public function is one `BEGIN IMMEDIATE` transaction that checks its
//! preconditions and conditional criteria, then writes the history row, the current row and
//! the index rows together.

use fhir::id::{LogicalId, ResourceType};
use fhir::search::{Criteria, index_rows};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;

use crate::clock::{WriteContext, from_micros};
use crate::sqlite::steps;
use crate::{Environment, Error, ExpectedVersion, Method, PreparedBody, StoredResource, WriteKind, WriteOutcome};

/// The current row of a resource, as far as a write needs to know it.
pub(crate) struct Current {
    pub(crate) row_id: i64,
    pub(crate) version: u64,
    pub(crate) deleted: bool,
}

pub(crate) fn create(
    connection: &mut Connection,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    resource: Value,
    condition: Option<Criteria>,
) -> Result<WriteOutcome, Error> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(criteria) = condition
        && let Some(id) = steps::single_match(&transaction, env, resource_type, &criteria)?
    {
        let existing = current_resource(&transaction, env, resource_type, id.as_str())?;
        return Ok(WriteOutcome { kind: WriteKind::Unchanged, resource: existing });
    }
    let id = LogicalId::generate();
    let outcome = write_version(&transaction, context, env, resource_type, &id, resource, None, Method::Post)?;
    transaction.commit()?;
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)] // One argument per part of the FHIR update interaction.
pub(crate) fn update(
    connection: &mut Connection,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
    resource: Value,
    expected: ExpectedVersion,
    method: Method,
) -> Result<WriteOutcome, Error> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcome = write_version(&transaction, context, env, resource_type, id, resource, expected, method)?;
    transaction.commit()?;
    Ok(outcome)
}

pub(crate) fn conditional_update(
    connection: &mut Connection,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    resource: Value,
) -> Result<WriteOutcome, Error> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let body_id = resource.get("id").and_then(Value::as_str);
    let id = steps::conditional_update_id(&transaction, env, resource_type, criteria, body_id)?;
    let outcome = write_version(&transaction, context, env, resource_type, &id, resource, None, Method::Put)?;
    transaction.commit()?;
    Ok(outcome)
}

pub(crate) fn delete(
    connection: &mut Connection,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
    expected: ExpectedVersion,
) -> Result<Option<u64>, Error> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version = steps::delete(&transaction, context, env, resource_type, id, expected)?;
    transaction.commit()?;
    Ok(version)
}

pub(crate) fn conditional_delete(
    connection: &mut Connection,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
) -> Result<usize, Error> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let count = steps::conditional_delete(&transaction, context, env, resource_type, criteria)?;
    transaction.commit()?;
    Ok(count)
}

/// Writes version n+1 (or 1) of a resource: history row, current row and index rows.
#[allow(clippy::too_many_arguments)] // Internal; mirrors `update` plus the open transaction.
pub(crate) fn write_version(
    transaction: &Transaction<'_>,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
    resource: Value,
    expected: ExpectedVersion,
    method: Method,
) -> Result<WriteOutcome, Error> {
    let rows = index_rows(context.registry, resource_type.as_str(), &resource);
    let body = PreparedBody::new(resource, resource_type.as_str(), id.as_str())?;
    let write = VersionWrite { resource_type, id, expected, method };
    let written = write_rows(transaction, context, env, write, &body)?;
    crate::panic_guard::write_checkpoint(id.as_str());
    crate::sqlite::index::replace(transaction, written.row_id, &rows, written.fresh)?;
    Ok(written.outcome)
}

/// Which version write: the resource, the `If-Match` it must meet and the interaction.
pub(crate) struct VersionWrite<'a> {
    pub(crate) resource_type: &'a ResourceType,
    pub(crate) id: &'a LogicalId,
    pub(crate) expected: ExpectedVersion,
    pub(crate) method: Method,
}

/// What [`write_rows`] wrote.
pub(crate) struct Written {
    pub(crate) outcome: WriteOutcome,
    /// The resource's row, which its index rows point at.
    pub(crate) row_id: i64,
    /// True when the resource had no row before, so it has no index rows to clear.
    pub(crate) fresh: bool,
}

/// The current and history rows of a version write, without its index rows (imports prepare
/// them in parallel, outside the single writer, and insert a whole batch's at once).
pub(crate) fn write_rows(
    transaction: &Transaction<'_>,
    context: &WriteContext<'_>,
    env: Environment,
    write: VersionWrite<'_>,
    body: &PreparedBody,
) -> Result<Written, Error> {
    let VersionWrite { resource_type, id, expected, method } = write;
    let current = current_row(transaction, env, resource_type, id.as_str())?;
    let current_version = match &current {
        Some(current) => {
            check_expected(resource_type, id, current, expected)?;
            current.version
        }
        None if expected.is_some() => {
            return Err(Error::VersionConflict {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
                expected: expected.unwrap_or(0),
                current: 0,
            });
        }
        None => 0,
    };
    let kind = match &current {
        Some(current) if !current.deleted => WriteKind::Updated,
        _ => WriteKind::Created,
    };
    context.note_write(resource_type.as_str());
    let version = current_version + 1;
    let last_updated = context.clock.next();
    let body = body.stamp(version, &fhir::instant::format(from_micros(last_updated)));
    if let Some(current) = &current {
        keep_replaced_body(transaction, env, resource_type, id.as_str(), current)?;
    }
    let row_id = upsert_current(transaction, env, resource_type, id.as_str(), version, last_updated, false, &body)?;
    insert_history(transaction, env, resource_type, id.as_str(), version, last_updated, method, false)?;
    let resource = StoredResource {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
        version,
        last_updated: from_micros(last_updated),
        deleted: false,
        body,
    };
    Ok(Written { outcome: WriteOutcome { kind, resource }, row_id, fresh: current.is_none() })
}

pub(crate) fn write_tombstone(
    transaction: &Transaction<'_>,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &str,
    current: &Current,
) -> Result<u64, Error> {
    let version = current.version + 1;
    let last_updated = context.clock.next();
    context.note_write(resource_type.as_str());
    keep_replaced_body(transaction, env, resource_type, id, current)?;
    upsert_current(transaction, env, resource_type, id, version, last_updated, true, "")?;
    insert_history(transaction, env, resource_type, id, version, last_updated, Method::Delete, true)?;
    crate::sqlite::index::clear(transaction, current.row_id)?;
    Ok(version)
}

pub(crate) fn check_expected(
    resource_type: &ResourceType,
    id: &LogicalId,
    current: &Current,
    expected: ExpectedVersion,
) -> Result<(), Error> {
    match expected {
        Some(expected) if expected != current.version || current.deleted => Err(Error::VersionConflict {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            expected,
            current: current.version,
        }),
        _ => Ok(()),
    }
}

pub(crate) fn current_row(
    transaction: &Transaction<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &str,
) -> Result<Option<Current>, Error> {
    let mut statement = transaction.prepare_cached(
        "SELECT row_id, version, deleted FROM resources WHERE partition = ?1 AND type = ?2 AND logical_id = ?3",
    )?;
    let current = statement
        .query_row(params![env.as_str(), resource_type.as_str(), id], |row| {
            let version: i64 = row.get(1)?;
            Ok(Current { row_id: row.get(0)?, version: u64::try_from(version).unwrap_or(0), deleted: row.get(2)? })
        })
        .optional()?;
    Ok(current)
}

pub(crate) fn current_resource(
    transaction: &Transaction<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &str,
) -> Result<StoredResource, Error> {
    let id = LogicalId::parse(id).ok_or_else(|| Error::Database(format!("stored id '{id}' is malformed")))?;
    crate::sqlite::query::read(transaction, env, resource_type, &id)?
        .ok_or_else(|| Error::Database(format!("matched {resource_type}/{id} vanished inside its transaction")))
}

#[allow(clippy::too_many_arguments)] // One argument per column.
fn upsert_current(
    transaction: &Transaction<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &str,
    version: u64,
    last_updated: i64,
    deleted: bool,
    body: &str,
) -> Result<i64, Error> {
    let mut statement = transaction.prepare_cached(
        "INSERT INTO resources (partition, type, logical_id, version, last_updated, deleted, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (partition, type, logical_id) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated, \
         deleted = excluded.deleted, body = excluded.body RETURNING row_id",
    )?;
    let version = i64::try_from(version).map_err(|_| Error::Database("version overflow".into()))?;
    Ok(statement
        .query_row(params![env.as_str(), resource_type.as_str(), id, version, last_updated, deleted, body], |row| {
            row.get(0)
        })?)
}

/// Adds the version's row to `resource_history`, without a body: the body of the current
/// version lives in `resources` only (see `query::HISTORY_COLUMNS`).
#[allow(clippy::too_many_arguments)] // One argument per column.
fn insert_history(
    transaction: &Transaction<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &str,
    version: u64,
    last_updated: i64,
    method: Method,
    deleted: bool,
) -> Result<(), Error> {
    let mut statement = transaction.prepare_cached(
        "INSERT INTO resource_history (partition, type, logical_id, version, last_updated, method, deleted, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '')",
    )?;
    let version = i64::try_from(version).map_err(|_| Error::Database("version overflow".into()))?;
    statement.execute(params![
        env.as_str(),
        resource_type.as_str(),
        id,
        version,
        last_updated,
        method.as_str(),
        deleted
    ])?;
    Ok(())
}

/// Copies the body of the version about to be replaced into its history row, which held none
/// while it was current (rows written before that rule already have theirs).
fn keep_replaced_body(
    transaction: &Transaction<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &str,
    current: &Current,
) -> Result<(), Error> {
    if current.deleted {
        return Ok(());
    }
    let mut statement = transaction.prepare_cached(
        "UPDATE resource_history SET body = (SELECT body FROM resources WHERE row_id = ?1) \
         WHERE partition = ?2 AND type = ?3 AND logical_id = ?4 AND version = ?5 AND body = ''",
    )?;
    let version = i64::try_from(current.version).map_err(|_| Error::Database("version overflow".into()))?;
    statement.execute(params![current.row_id, env.as_str(), resource_type.as_str(), id, version])?;
    Ok(())
}
