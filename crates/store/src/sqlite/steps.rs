//! FHIR write steps inside an already open database transaction: the pieces that
//! single-interaction writes (`write.rs`) and multi-entry transactions (`bundle.rs`) share.
//! None of them commits; the caller owns the transaction.

use fhir::id::{LogicalId, ResourceType};
use fhir::search::Criteria;
use rusqlite::Transaction;

use crate::clock::WriteContext;
use crate::sqlite::query::matching_rows;
use crate::sqlite::write::{check_expected, current_row, write_tombstone};
use crate::{Environment, Error, ExpectedVersion};

/// The id of the one live resource matching `criteria`, `None` when nothing matches, and
/// [`Error::MultipleMatches`] when more than one does.
pub(crate) fn single_match(
    transaction: &Transaction<'_>,
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
    transaction: &Transaction<'_>,
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
    transaction: &Transaction<'_>,
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
    transaction: &Transaction<'_>,
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
