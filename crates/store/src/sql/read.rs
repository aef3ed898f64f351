//! Reads: current and past versions, criteria matching and history pages.

use fhir::id::{LogicalId, ResourceType};
use fhir::search::Criteria;

use crate::clock::micros;
use crate::sql::criteria::push_matching;
use crate::sql::db::{Db, RESOURCE_COLUMNS, stored_resource_at};
use crate::sql::{Dialect, Sql};
use crate::{Environment, Error, HistoryEntry, HistoryPage, HistoryQuery, HistoryScope, Method, StoredResource};

/// [`RESOURCE_COLUMNS`] of a `resource_history` row `h`.
///
/// On SQLite the row of a resource's current version holds no body (`''`, not deleted): that
/// body is in `resources`, and is copied to the history row when a later version replaces it
/// (see `sqlite/db.rs`), so each body is written once per version rather than twice.
/// PostgreSQL writes both rows in one statement and keeps the body in each.
fn history_columns(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "h.type, h.logical_id, h.version, h.last_updated, h.deleted, \
             CASE WHEN h.body = '' AND h.deleted = 0 THEN (SELECT c.body FROM resources c \
             WHERE c.partition = h.partition AND c.type = h.type AND c.logical_id = h.logical_id) ELSE h.body END"
        }
        Dialect::Postgres => "h.type, h.logical_id, h.version, h.last_updated, h.deleted, h.body",
    }
}

/// The current version of a resource, tombstone included.
pub(crate) fn read(
    db: &mut dyn Db,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
) -> Result<Option<StoredResource>, Error> {
    let sql = Sql::fixed(
        db.dialect(),
        &format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE partition = {{}} AND type = {{}} AND logical_id = {{}}"
        ),
        [env.as_str().into(), resource_type.as_str().into(), id.as_str().into()],
    );
    db.first(&sql, |row| stored_resource_at(row, 0))
}

/// A past or current version, tombstones included.
pub(crate) fn vread(
    db: &mut dyn Db,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
    version: u64,
) -> Result<Option<StoredResource>, Error> {
    let dialect = db.dialect();
    let sql = Sql::fixed(
        dialect,
        &format!(
            "SELECT {} FROM resource_history h WHERE partition = {{}} AND type = {{}} AND logical_id = {{}} AND version = {{}}",
            history_columns(dialect)
        ),
        [
            env.as_str().into(),
            resource_type.as_str().into(),
            id.as_str().into(),
            i64::try_from(version).unwrap_or(i64::MAX).into(),
        ],
    );
    db.first(&sql, |row| stored_resource_at(row, 0))
}

/// The current version of a resource a write has just matched (so it must exist).
pub(crate) fn matched(
    db: &mut dyn Db,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
) -> Result<StoredResource, Error> {
    read(db, env, resource_type, id)?
        .ok_or_else(|| Error::Database(format!("matched {resource_type}/{id} vanished inside its transaction")))
}

/// Live resources of `resource_type` matching `criteria`, at most `limit`, by row id.
pub(crate) fn find(
    db: &mut dyn Db,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    limit: usize,
) -> Result<Vec<StoredResource>, Error> {
    let sql = matching_sql(db.dialect(), &format!("SELECT {RESOURCE_COLUMNS}"), env, resource_type, criteria, limit);
    db.rows(&sql, |row| stored_resource_at(row, 0))
}

/// Ids of live resources matching `criteria` (at most `limit`), for conditional writes.
pub(crate) fn matching_ids(
    db: &mut dyn Db,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    limit: usize,
) -> Result<Vec<LogicalId>, Error> {
    let sql = matching_sql(db.dialect(), "SELECT r.logical_id", env, resource_type, criteria, limit);
    db.rows(&sql, |row| {
        let id = row.text(0)?;
        LogicalId::parse(&id).ok_or_else(|| Error::Database(format!("stored id '{id}' is malformed")))
    })
}

fn matching_sql(
    dialect: Dialect,
    select: &str,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    limit: usize,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(select);
    push_matching(&mut sql, criteria.clauses(), env.as_str());
    sql.push(" AND r.type = ");
    sql.bind(resource_type.as_str());
    sql.push(" ORDER BY r.row_id LIMIT ");
    sql.bind(i64::try_from(limit).unwrap_or(i64::MAX));
    sql
}

/// How many live resources the database holds, across partitions.
pub(crate) fn count_resources(db: &mut dyn Db) -> Result<u64, Error> {
    let sql = Sql::fixed(db.dialect(), "SELECT COUNT(*) FROM resources WHERE deleted = 0", []);
    Ok(u64::try_from(db.integer(&sql)?).unwrap_or(0))
}

/// One page of history, newest first.
pub(crate) fn history(db: &mut dyn Db, env: Environment, query: &HistoryQuery) -> Result<HistoryPage, Error> {
    let dialect = db.dialect();
    let mut sql = Sql::new(dialect);
    sql.push(&format!(
        "SELECT history_id, method, {} FROM resource_history h WHERE partition = ",
        history_columns(dialect)
    ));
    sql.bind(env.as_str());
    match &query.scope {
        HistoryScope::System => {}
        HistoryScope::Type(resource_type) => {
            sql.push(" AND type = ");
            sql.bind(resource_type.as_str());
        }
        HistoryScope::Instance(resource_type, id) => {
            sql.push(" AND type = ");
            sql.bind(resource_type.as_str());
            sql.push(" AND logical_id = ");
            sql.bind(id.as_str());
        }
    }
    if let Some(since) = query.since {
        sql.push(" AND last_updated >= ");
        sql.bind(micros(since));
    }
    if let Some(at) = query.at {
        // The version current at `at`: written by then, and not yet replaced by then.
        sql.push(" AND last_updated <= ");
        sql.bind(micros(at));
        sql.push(
            " AND NOT EXISTS (SELECT 1 FROM resource_history n WHERE n.partition = h.partition \
             AND n.type = h.type AND n.logical_id = h.logical_id AND n.version > h.version AND n.last_updated <= ",
        );
        sql.bind(micros(at));
        sql.push(")");
    }
    if let Some(before) = query.before {
        sql.push(" AND history_id < ");
        sql.bind(before);
    }
    sql.push(" ORDER BY history_id DESC LIMIT ");
    sql.bind(i64::try_from(query.count + 1).unwrap_or(i64::MAX));
    let mut entries = db.rows(&sql, |row| {
        let entry = HistoryEntry { method: Method::parse(&row.text(1)?), resource: stored_resource_at(row, 2)? };
        Ok((row.int(0)?, entry))
    })?;
    let next = if entries.len() > query.count {
        entries.truncate(query.count);
        entries.last().map(|(position, _)| *position)
    } else {
        None
    };
    Ok(HistoryPage { entries: entries.into_iter().map(|(_, entry)| entry).collect(), next })
}
