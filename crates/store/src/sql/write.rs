//! Writes inside an open write transaction (the store commits it, and on PostgreSQL retries
//! it after a serialization failure): the single interactions, and the steps they share
//! with transaction Bundles ([`crate::sql::bundle`]). None of them commits.

use fhir::id::{LogicalId, ResourceType};
use fhir::search::{Criteria, IndexRows, index_rows};
use serde_json::Value;

use crate::clock::{WriteContext, from_micros};
use crate::sql::Sql;
use crate::sql::db::{Current, Db, VersionRow};
use crate::sql::read::{matched, matching_ids};
use crate::{Environment, Error, ExpectedVersion, Method, PreparedBody, StoredResource, WriteKind, WriteOutcome};

/// `POST`: a new resource at a fresh id, or with `condition` (`If-None-Exist`) its single
/// match, unchanged.
pub(crate) fn create(
    db: &mut dyn Db,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    resource: Value,
    condition: Option<&Criteria>,
) -> Result<WriteOutcome, Error> {
    if let Some(criteria) = condition
        && let Some(id) = single_match(db, env, resource_type, criteria)?
    {
        let existing = matched(db, env, resource_type, &id)?;
        return Ok(WriteOutcome { kind: WriteKind::Unchanged, resource: existing });
    }
    let id = LogicalId::generate();
    write_version(db, context, env, VersionWrite::new(resource_type, &id, None, Method::Post), resource)
}

/// `PUT [type]?criteria`.
pub(crate) fn conditional_update(
    db: &mut dyn Db,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    resource: Value,
) -> Result<WriteOutcome, Error> {
    let body_id = resource.get("id").and_then(Value::as_str);
    let id = conditional_update_id(db, env, resource_type, criteria, body_id)?;
    write_version(db, context, env, VersionWrite::new(resource_type, &id, None, Method::Put), resource)
}

/// The id of the one live resource matching `criteria`, `None` when nothing matches, and
/// [`Error::MultipleMatches`] when more than one does.
pub(crate) fn single_match(
    db: &mut dyn Db,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
) -> Result<Option<LogicalId>, Error> {
    let mut matches = matching_ids(db, env, resource_type, criteria, 2)?;
    match matches.len() {
        0 | 1 => Ok(matches.pop()),
        count => Err(Error::MultipleMatches { resource_type: resource_type.to_string(), count }),
    }
}

/// The id a conditional update writes to: the single match, or else the body's id, or else a
/// new one. A body id that contradicts the match is refused.
pub(crate) fn conditional_update_id(
    db: &mut dyn Db,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    body_id: Option<&str>,
) -> Result<LogicalId, Error> {
    match single_match(db, env, resource_type, criteria)? {
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
    db: &mut dyn Db,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
    expected: ExpectedVersion,
) -> Result<Option<u64>, Error> {
    let Some(current) = current_row(db, env, resource_type, id)? else {
        return Err(Error::NotFound { resource_type: resource_type.to_string(), id: id.to_string() });
    };
    check_expected(resource_type, id, &current, expected)?;
    if current.deleted {
        return Ok(None);
    }
    Ok(Some(write_tombstone(db, context, env, resource_type, id, &current)?))
}

/// Deletes the single match of `criteria`; returns how many were deleted (0 or 1).
pub(crate) fn conditional_delete(
    db: &mut dyn Db,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
) -> Result<usize, Error> {
    let Some(id) = single_match(db, env, resource_type, criteria)? else { return Ok(0) };
    let current = current_row(db, env, resource_type, &id)?
        .ok_or_else(|| Error::Database(format!("matched {resource_type}/{id} vanished inside its transaction")))?;
    write_tombstone(db, context, env, resource_type, &id, &current)?;
    Ok(1)
}

/// Which version write: the resource, the `If-Match` it must meet and the interaction.
#[derive(Clone, Copy)]
pub(crate) struct VersionWrite<'a> {
    pub(crate) resource_type: &'a ResourceType,
    pub(crate) id: &'a LogicalId,
    pub(crate) expected: ExpectedVersion,
    pub(crate) method: Method,
}

impl<'a> VersionWrite<'a> {
    pub(crate) fn new(
        resource_type: &'a ResourceType,
        id: &'a LogicalId,
        expected: ExpectedVersion,
        method: Method,
    ) -> VersionWrite<'a> {
        VersionWrite { resource_type, id, expected, method }
    }
}

/// Writes version n+1 (or 1) of a resource: history row, current row and index rows.
pub(crate) fn write_version(
    db: &mut dyn Db,
    context: &WriteContext<'_>,
    env: Environment,
    write: VersionWrite<'_>,
    resource: Value,
) -> Result<WriteOutcome, Error> {
    let rows = index_rows(context.registry, write.resource_type.as_str(), &resource);
    let body = PreparedBody::new(resource, write.resource_type.as_str(), write.id.as_str())?;
    write_prepared(db, context, env, write, &body, &rows)
}

/// [`write_version`] of a body serialized and indexed beforehand.
fn write_prepared(
    db: &mut dyn Db,
    context: &WriteContext<'_>,
    env: Environment,
    write: VersionWrite<'_>,
    body: &PreparedBody,
    rows: &IndexRows,
) -> Result<WriteOutcome, Error> {
    let VersionWrite { resource_type, id, expected, method } = write;
    // A POST writes at an id generated just now, where nothing can be stored. Not looking
    // keeps concurrent creates on PostgreSQL from failing each other: under SERIALIZABLE,
    // reading a missing key locks the index page it would be on, where the others insert.
    let current = match method {
        Method::Post => None,
        _ => current_row(db, env, resource_type, id)?,
    };
    match (&current, expected) {
        (Some(current), _) => check_expected(resource_type, id, current, expected)?,
        (None, Some(expected)) => {
            return Err(Error::VersionConflict {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
                expected,
                current: 0,
            });
        }
        (None, None) => {}
    }
    let kind = match &current {
        Some(current) if !current.deleted => WriteKind::Updated,
        _ => WriteKind::Created,
    };
    let version = current.as_ref().map_or(0, |current| current.version) + 1;
    let last_updated = next_instant(context, current.as_ref());
    let body = body.stamp(version, &fhir::instant::format(from_micros(last_updated)));
    context.note_write(resource_type.as_str(), id.as_str(), version, &body);
    let row = VersionRow {
        resource_type: resource_type.as_str(),
        id: id.as_str(),
        version,
        last_updated,
        method,
        deleted: false,
        body: &body,
        replaced: current.as_ref(),
    };
    let row_id = single_row(db.write_versions(env, &[row])?)?;
    crate::panic_guard::write_checkpoint(id.as_str());
    // A new or deleted resource has no index rows to remove.
    if current.as_ref().is_some_and(|current| !current.deleted) {
        db.clear_index(&[row_id])?;
    }
    db.insert_index(&[(row_id, rows)])?;
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
    db: &mut dyn Db,
    context: &WriteContext<'_>,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
    current: &Current,
) -> Result<u64, Error> {
    let version = current.version + 1;
    let last_updated = next_instant(context, Some(current));
    context.note_write(resource_type.as_str(), id.as_str(), version, "");
    let row = VersionRow {
        resource_type: resource_type.as_str(),
        id: id.as_str(),
        version,
        last_updated,
        method: Method::Delete,
        deleted: true,
        body: "",
        replaced: Some(current),
    };
    db.write_versions(env, &[row])?;
    db.clear_index(&[current.row_id])?;
    Ok(version)
}

/// The one row id a one-version write returned.
fn single_row(row_ids: Vec<i64>) -> Result<i64, Error> {
    row_ids.first().copied().ok_or_else(|| Error::Database("a version write returned no row".into()))
}

/// The instant of a new version: the store's clock, but always after the version it
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

/// The current row of a resource, locked until the transaction ends.
pub(crate) fn current_row(
    db: &mut dyn Db,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
) -> Result<Option<Current>, Error> {
    let dialect = db.dialect();
    let sql = Sql::fixed(
        dialect,
        &format!(
            "SELECT {} FROM resources WHERE partition = {{}} AND type = {{}} AND logical_id = {{}}{}",
            Current::COLUMNS,
            dialect.lock_rows()
        ),
        [env.as_str().into(), resource_type.as_str().into(), id.as_str().into()],
    );
    db.first(&sql, Current::read)
}
