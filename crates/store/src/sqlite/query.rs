//! Reads: current and past versions, criteria matching and history pages.

use fhir::id::{LogicalId, ResourceType};
use fhir::search::Criteria;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use crate::clock::{from_micros, micros};
use crate::sql::Sql;
use crate::sql::criteria::push_matching;
use crate::{Environment, Error, HistoryEntry, HistoryPage, HistoryQuery, HistoryScope, Method, StoredResource};

pub(crate) const RESOURCE_COLUMNS: &str = "type, logical_id, version, last_updated, deleted, body";

/// [`RESOURCE_COLUMNS`] of a `resource_history` row `h`. The row of a resource's current
/// version holds no body (`''`, not deleted): that body is in `resources`, and is copied to
/// the history row when a later version replaces it (see `write.rs`), so each body is
/// written once per version rather than twice.
const HISTORY_COLUMNS: &str = "h.type, h.logical_id, h.version, h.last_updated, h.deleted, \
     CASE WHEN h.body = '' AND h.deleted = 0 THEN (SELECT c.body FROM resources c \
     WHERE c.partition = h.partition AND c.type = h.type AND c.logical_id = h.logical_id) ELSE h.body END";

pub(crate) fn read(
    connection: &Connection,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
) -> Result<Option<StoredResource>, Error> {
    let sql =
        format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE partition = ?1 AND type = ?2 AND logical_id = ?3");
    let mut statement = connection.prepare_cached(&sql)?;
    Ok(statement.query_row(params![env.as_str(), resource_type.as_str(), id.as_str()], stored_resource).optional()?)
}

pub(crate) fn vread(
    connection: &Connection,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
    version: u64,
) -> Result<Option<StoredResource>, Error> {
    let sql = format!(
        "SELECT {HISTORY_COLUMNS} FROM resource_history h WHERE partition = ?1 AND type = ?2 AND logical_id = ?3 AND version = ?4"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let version = i64::try_from(version).unwrap_or(i64::MAX);
    Ok(statement
        .query_row(params![env.as_str(), resource_type.as_str(), id.as_str(), version], stored_resource)
        .optional()?)
}

/// Live resources of `resource_type` matching `criteria`, at most `limit`, by row id.
pub(crate) fn find(
    connection: &Connection,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    limit: usize,
) -> Result<Vec<StoredResource>, Error> {
    let sql = matching_sql(&format!("SELECT {RESOURCE_COLUMNS}"), env, resource_type, criteria, limit);
    let mut statement = connection.prepare(&sql.text)?;
    let rows = statement.query_map(params_from_iter(sql.values), stored_resource)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Row ids and ids of live resources matching `criteria` (at most `limit`), for conditional
/// writes.
pub(crate) fn matching_rows(
    connection: &Connection,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    limit: usize,
) -> Result<Vec<(i64, String)>, Error> {
    let sql = matching_sql("SELECT r.row_id, r.logical_id", env, resource_type, criteria, limit);
    let mut statement = connection.prepare(&sql.text)?;
    let rows = statement.query_map(params_from_iter(sql.values), |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn matching_sql(
    select: &str,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    limit: usize,
) -> Sql {
    let mut sql = Sql::default();
    sql.push(select);
    push_matching(&mut sql, criteria.clauses(), env.as_str());
    sql.push(" AND r.type = ");
    sql.bind(resource_type.as_str().to_owned());
    sql.push(" ORDER BY r.row_id LIMIT ");
    sql.bind(i64::try_from(limit).unwrap_or(i64::MAX));
    sql
}

/// One page of history, newest first.
pub(crate) fn history(connection: &Connection, env: Environment, query: &HistoryQuery) -> Result<HistoryPage, Error> {
    let mut sql = format!("SELECT history_id, method, {HISTORY_COLUMNS} FROM resource_history h WHERE partition = ?");
    let mut values = vec![SqlValue::from(env.as_str().to_owned())];
    match &query.scope {
        HistoryScope::System => {}
        HistoryScope::Type(resource_type) => {
            sql.push_str(" AND type = ?");
            values.push(SqlValue::from(resource_type.as_str().to_owned()));
        }
        HistoryScope::Instance(resource_type, id) => {
            sql.push_str(" AND type = ? AND logical_id = ?");
            values.push(SqlValue::from(resource_type.as_str().to_owned()));
            values.push(SqlValue::from(id.as_str().to_owned()));
        }
    }
    if let Some(since) = query.since {
        sql.push_str(" AND last_updated >= ?");
        values.push(SqlValue::from(micros(since)));
    }
    if let Some(at) = query.at {
        // The version current at `at`: written by then, and not yet replaced by then.
        sql.push_str(
            " AND last_updated <= ? AND NOT EXISTS (SELECT 1 FROM resource_history n WHERE n.partition = h.partition \
             AND n.type = h.type AND n.logical_id = h.logical_id AND n.version > h.version AND n.last_updated <= ?)",
        );
        values.push(SqlValue::from(micros(at)));
        values.push(SqlValue::from(micros(at)));
    }
    if let Some(before) = query.before {
        sql.push_str(" AND history_id < ?");
        values.push(SqlValue::from(before));
    }
    sql.push_str(" ORDER BY history_id DESC LIMIT ?");
    values.push(SqlValue::from(i64::try_from(query.count + 1).unwrap_or(i64::MAX)));
    let mut statement = connection.prepare(&sql)?;
    let rows = statement.query_map(params_from_iter(values), |row| {
        let position: i64 = row.get(0)?;
        let method: String = row.get(1)?;
        Ok((position, HistoryEntry { method: Method::parse(&method), resource: stored_resource_at(row, 2)? }))
    })?;
    let mut entries: Vec<(i64, HistoryEntry)> = rows.collect::<Result<_, _>>()?;
    let next = if entries.len() > query.count {
        entries.truncate(query.count);
        entries.last().map(|(position, _)| *position)
    } else {
        None
    };
    Ok(HistoryPage { entries: entries.into_iter().map(|(_, entry)| entry).collect(), next })
}

pub(crate) fn stored_resource(row: &Row<'_>) -> rusqlite::Result<StoredResource> {
    stored_resource_at(row, 0)
}

pub(crate) fn stored_resource_at(row: &Row<'_>, first: usize) -> rusqlite::Result<StoredResource> {
    let version: i64 = row.get(first + 2)?;
    Ok(StoredResource {
        resource_type: row.get(first)?,
        id: row.get(first + 1)?,
        version: u64::try_from(version).unwrap_or(0),
        last_updated: from_micros(row.get(first + 3)?),
        deleted: row.get(first + 4)?,
        body: row.get(first + 5)?,
    })
}
