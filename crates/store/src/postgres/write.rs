//! Writes inside an open `SERIALIZABLE` transaction (the caller commits, and retries on a
//! serialization failure): the single interactions and the steps they share with
//! `bundle.rs`. Mirrors `sqlite/write.rs` and `sqlite/steps.rs`.

use fhir::id::{LogicalId, ResourceType};
use fhir::search::{Criteria, IndexRows, index_rows};
use postgres::Transaction;
use postgres::types::Type;
use serde_json::Value;

use crate::clock::{WriteContext, from_micros};
use crate::postgres::index;
use crate::postgres::query::matching_rows;
use crate::{Environment, Error, ExpectedVersion, Method, PreparedBody, StoredResource, WriteKind, WriteOutcome};

/// The current row of a resource, as far as a write needs to know it.
pub(crate) struct Current {
    pub(crate) row_id: i64,
    pub(crate) version: u64,
    pub(crate) last_updated: i64,
    pub(crate) deleted: bool,
}

pub(crate) fn create(
    transaction: &mut Transaction<'_>,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    resource: Value,
    condition: Option<&Criteria>,
) -> Result<WriteOutcome, Error> {
    if let Some(criteria) = condition
        && let Some(id) = single_match(transaction, env, resource_type, criteria)?
    {
        let existing = current_resource(transaction, env, resource_type, id.as_str())?;
        return Ok(WriteOutcome { kind: WriteKind::Unchanged, resource: existing });
    }
    let id = LogicalId::generate();
    write_version(transaction, context, env, resource_type, &id, resource, None, Method::Post)
}

pub(crate) fn conditional_update(
    transaction: &mut Transaction<'_>,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    resource: Value,
) -> Result<WriteOutcome, Error> {
    let body_id = resource.get("id").and_then(Value::as_str);
    let id = conditional_update_id(transaction, env, resource_type, criteria, body_id)?;
    write_version(transaction, context, env, resource_type, &id, resource, None, Method::Put)
}

/// The id of the one live resource matching `criteria`, `None` when nothing matches, and
/// [`Error::MultipleMatches`] when more than one does.
pub(crate) fn single_match(
    transaction: &mut Transaction<'_>,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
) -> Result<Option<LogicalId>, Error> {
    let matches = matching_rows(transaction, env, resource_type, criteria, 2)?;
    match matches.as_slice() {
        [] => Ok(None),
        [(_, id)] => {
            LogicalId::parse(id).map(Some).ok_or_else(|| Error::Database(format!("stored id '{id}' is malformed")))
        }
        _ => Err(Error::MultipleMatches { resource_type: resource_type.to_string(), count: matches.len() }),
    }
}

/// The id a conditional update writes to: the single match, or else the body's id, or else a
/// new one. A body id that contradicts the match is refused.
pub(crate) fn conditional_update_id(
    transaction: &mut Transaction<'_>,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    body_id: Option<&str>,
) -> Result<LogicalId, Error> {
    match single_match(transaction, env, resource_type, criteria)? {
        Some(id) if body_id.is_some_and(|body_id| body_id != id.as_str()) => Err(Error::InvalidResource(format!(
            "the resource's id does not match the resource the criteria found ({id})"
        ))),
        Some(id) => Ok(id),
        None => match body_id {
            Some(id) => LogicalId::parse(id).ok_or_else(|| Error::InvalidResource(format!("'{id}' is not a valid id"))),
            None => Ok(LogicalId::generate()),
        },
    }
}

/// Deletes `id`: the tombstone's version, or `None` if it was already deleted.
pub(crate) fn delete(
    transaction: &mut Transaction<'_>,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
    expected: ExpectedVersion,
) -> Result<Option<u64>, Error> {
    let Some(current) = current_row(transaction, env, resource_type, id.as_str())? else {
        return Err(Error::NotFound { resource_type: resource_type.to_string(), id: id.to_string() });
    };
    check_expected(resource_type, id, &current, expected)?;
    if current.deleted {
        return Ok(None);
    }
    Ok(Some(write_tombstone(transaction, context, env, resource_type, id.as_str(), &current)?))
}

/// Deletes the single match of `criteria`; returns how many were deleted (0 or 1).
pub(crate) fn conditional_delete(
    transaction: &mut Transaction<'_>,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
) -> Result<usize, Error> {
    let Some(id) = single_match(transaction, env, resource_type, criteria)? else { return Ok(0) };
    let current = current_row(transaction, env, resource_type, id.as_str())?
        .ok_or_else(|| Error::Database(format!("matched {resource_type}/{id} vanished inside its transaction")))?;
    write_tombstone(transaction, context, env, resource_type, id.as_str(), &current)?;
    Ok(1)
}

/// Writes version n+1 (or 1) of a resource: history row, current row and index rows.
#[allow(clippy::too_many_arguments)] // One argument per part of the FHIR update interaction.
pub(crate) fn write_version(
    transaction: &mut Transaction<'_>,
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
    write_prepared(transaction, context, env, VersionWrite { resource_type, id, expected, method }, &body, &rows)
}

/// Which version write: the resource, the `If-Match` it must meet and the interaction.
pub(crate) struct VersionWrite<'a> {
    pub(crate) resource_type: &'a ResourceType,
    pub(crate) id: &'a LogicalId,
    pub(crate) expected: ExpectedVersion,
    pub(crate) method: Method,
}

/// [`write_version`] of a body serialized and indexed beforehand (by import workers).
pub(crate) fn write_prepared(
    transaction: &mut Transaction<'_>,
    context: &WriteContext<'_>,
    env: Environment,
    write: VersionWrite<'_>,
    body: &PreparedBody,
    rows: &IndexRows,
) -> Result<WriteOutcome, Error> {
    let VersionWrite { resource_type, id, expected, method } = write;
    // A POST writes at an id generated just now, where nothing can be stored. Not looking
    // keeps concurrent creates from failing each other: under SERIALIZABLE, reading a missing
    // key locks the index page it would be on, and the other creates insert into that page.
    let current = match method {
        Method::Post => None,
        _ => current_row(transaction, env, resource_type, id.as_str())?,
    };
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
    let last_updated = next_instant(context, current.as_ref());
    let body = body.stamp(version, &fhir::instant::format(from_micros(last_updated)));
    let row = VersionRow {
        resource_type: resource_type.as_str(),
        id: id.as_str(),
        version,
        last_updated,
        method,
        deleted: false,
        body: &body,
    };
    let row_id = write_row(transaction, env, &row)?;
    crate::panic_guard::write_checkpoint(id.as_str());
    // A new or deleted resource has no index rows to remove.
    let fresh = current.as_ref().is_none_or(|current| current.deleted);
    index::replace(transaction, row_id, rows, fresh)?;
    let resource = StoredResource {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
        version,
        last_updated: from_micros(last_updated),
        deleted: false,
        body,
    };
    Ok(WriteOutcome { kind, resource })
}

fn write_tombstone(
    transaction: &mut Transaction<'_>,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &str,
    current: &Current,
) -> Result<u64, Error> {
    let version = current.version + 1;
    let last_updated = next_instant(context, Some(current));
    context.note_write(resource_type.as_str());
    let row = VersionRow {
        resource_type: resource_type.as_str(),
        id,
        version,
        last_updated,
        method: Method::Delete,
        deleted: true,
        body: "",
    };
    write_row(transaction, env, &row)?;
    index::clear(transaction, &[current.row_id])?;
    Ok(version)
}

/// The instant of a new version: this process's clock, but always after the version it
/// replaces, which another process (with another clock) may have written.
pub(crate) fn next_instant(context: &WriteContext<'_>, current: Option<&Current>) -> i64 {
    let now = context.clock.next();
    current.map_or(now, |current| now.max(current.last_updated + 1))
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

/// The current row, locked until the transaction ends.
pub(crate) fn current_row(
    transaction: &mut Transaction<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &str,
) -> Result<Option<Current>, Error> {
    let row = transaction.query_typed_opt(
        "SELECT row_id, version, last_updated, deleted FROM resources \
         WHERE partition = $1 AND type = $2 AND logical_id = $3 FOR UPDATE",
        &[(&env.as_str(), Type::TEXT), (&resource_type.as_str(), Type::TEXT), (&id, Type::TEXT)],
    )?;
    row.map(|row| {
        let version: i64 = row.try_get(1)?;
        let deleted: i16 = row.try_get(3)?;
        Ok(Current {
            row_id: row.try_get(0)?,
            version: u64::try_from(version).unwrap_or(0),
            last_updated: row.try_get(2)?,
            deleted: deleted != 0,
        })
    })
    .transpose()
}

pub(crate) fn current_resource(
    transaction: &mut Transaction<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &str,
) -> Result<StoredResource, Error> {
    let id = LogicalId::parse(id).ok_or_else(|| Error::Database(format!("stored id '{id}' is malformed")))?;
    crate::postgres::query::read(transaction, env, resource_type, &id)?
        .ok_or_else(|| Error::Database(format!("matched {resource_type}/{id} vanished inside its transaction")))
}

/// A new version of a resource as it goes into `resources` (replacing the current row) and
/// `resource_history`.
pub(crate) struct VersionRow<'a> {
    pub(crate) resource_type: &'a str,
    pub(crate) id: &'a str,
    pub(crate) version: u64,
    pub(crate) last_updated: i64,
    pub(crate) method: Method,
    pub(crate) deleted: bool,
    pub(crate) body: &'a str,
}

/// Writes `row` as the current row and as a history row, in one statement (one round trip);
/// returns the current row's id.
pub(crate) fn write_row(
    transaction: &mut Transaction<'_>,
    env: Environment,
    row: &VersionRow<'_>,
) -> Result<i64, Error> {
    const WRITE: &str = "WITH history AS (INSERT INTO resource_history \
         (partition, type, logical_id, version, last_updated, method, deleted, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)) \
         INSERT INTO resources (partition, type, logical_id, version, last_updated, deleted, body) \
         VALUES ($1, $2, $3, $4, $5, $7, $8) \
         ON CONFLICT (partition, type, logical_id) DO UPDATE SET version = excluded.version, \
         last_updated = excluded.last_updated, deleted = excluded.deleted, body = excluded.body RETURNING row_id";
    let version = i64::try_from(row.version).map_err(|_| Error::Database("version overflow".into()))?;
    let deleted = i16::from(row.deleted);
    let written = transaction.query_typed_one(
        WRITE,
        &[
            (&env.as_str(), Type::TEXT),
            (&row.resource_type, Type::TEXT),
            (&row.id, Type::TEXT),
            (&version, Type::INT8),
            (&row.last_updated, Type::INT8),
            (&row.method.as_str(), Type::TEXT),
            (&deleted, Type::INT2),
            (&row.body, Type::TEXT),
        ],
    )?;
    Ok(written.try_get(0)?)
}
