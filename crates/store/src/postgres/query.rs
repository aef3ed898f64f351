//! Reads: current and past versions, criteria matching, history pages and search.

use fhir::id::{LogicalId, ResourceType};
use fhir::search::Criteria;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use postgres::{GenericClient, Row};

use crate::clock::{from_micros, micros};
use crate::sql::criteria::push_matching;
use crate::sql::search::{Found, SearchConnection, keep_reading};
use crate::sql::{Bind, Dialect, Sql};
use crate::{
    Environment, Error, HistoryEntry, HistoryPage, HistoryQuery, HistoryScope, Method, SearchPage, SearchRequest,
    StoredResource,
};

pub(crate) const RESOURCE_COLUMNS: &str = "type, logical_id, version, last_updated, deleted, body";

pub(crate) fn read(
    client: &mut impl GenericClient,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
) -> Result<Option<StoredResource>, Error> {
    let sql =
        format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE partition = $1 AND type = $2 AND logical_id = $3");
    let row = client.query_typed_opt(
        &sql,
        &[(&env.as_str(), Type::TEXT), (&resource_type.as_str(), Type::TEXT), (&id.as_str(), Type::TEXT)],
    )?;
    row.map(|row| stored_resource_at(&row, 0)).transpose()
}

pub(crate) fn vread(
    client: &mut impl GenericClient,
    env: Environment,
    resource_type: &ResourceType,
    id: &LogicalId,
    version: u64,
) -> Result<Option<StoredResource>, Error> {
    let sql = format!(
        "SELECT {RESOURCE_COLUMNS} FROM resource_history WHERE partition = $1 AND type = $2 AND logical_id = $3 AND version = $4"
    );
    let version = i64::try_from(version).unwrap_or(i64::MAX);
    let row = client.query_typed_opt(
        &sql,
        &[
            (&env.as_str(), Type::TEXT),
            (&resource_type.as_str(), Type::TEXT),
            (&id.as_str(), Type::TEXT),
            (&version, Type::INT8),
        ],
    )?;
    row.map(|row| stored_resource_at(&row, 0)).transpose()
}

/// Live resources of `resource_type` matching `criteria`, at most `limit`, by row id.
pub(crate) fn find(
    client: &mut impl GenericClient,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    limit: usize,
) -> Result<Vec<StoredResource>, Error> {
    let sql = matching_sql(&format!("SELECT {RESOURCE_COLUMNS}"), env, resource_type, criteria, limit);
    let rows = client.query_typed(&sql.text, &params(&sql.values))?;
    rows.iter().map(|row| stored_resource_at(row, 0)).collect()
}

/// Row ids and ids of live resources matching `criteria` (at most `limit`), for conditional
/// writes.
pub(crate) fn matching_rows(
    client: &mut impl GenericClient,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    limit: usize,
) -> Result<Vec<(i64, String)>, Error> {
    let sql = matching_sql("SELECT r.row_id, r.logical_id", env, resource_type, criteria, limit);
    let rows = client.query_typed(&sql.text, &params(&sql.values))?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
}

fn matching_sql(
    select: &str,
    env: Environment,
    resource_type: &ResourceType,
    criteria: &Criteria,
    limit: usize,
) -> Sql {
    let mut sql = Sql::new(Dialect::Postgres);
    sql.push(select);
    push_matching(&mut sql, criteria.clauses(), env.as_str());
    sql.push(" AND r.type = ");
    sql.bind(resource_type.as_str().to_owned());
    sql.push(" ORDER BY r.row_id LIMIT ");
    sql.bind(i64::try_from(limit).unwrap_or(i64::MAX));
    sql
}

/// One page of history, newest first.
pub(crate) fn history(
    client: &mut impl GenericClient,
    env: Environment,
    query: &HistoryQuery,
) -> Result<HistoryPage, Error> {
    let mut sql = Sql::new(Dialect::Postgres);
    sql.push(&format!("SELECT history_id, method, {RESOURCE_COLUMNS} FROM resource_history h WHERE partition = "));
    sql.bind(env.as_str().to_owned());
    match &query.scope {
        HistoryScope::System => {}
        HistoryScope::Type(resource_type) => {
            sql.push(" AND type = ");
            sql.bind(resource_type.as_str().to_owned());
        }
        HistoryScope::Instance(resource_type, id) => {
            sql.push(" AND type = ");
            sql.bind(resource_type.as_str().to_owned());
            sql.push(" AND logical_id = ");
            sql.bind(id.as_str().to_owned());
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
    let rows = client.query_typed(&sql.text, &params(&sql.values))?;
    let mut entries = rows
        .iter()
        .map(|row| {
            let position: i64 = row.try_get(0)?;
            let method: String = row.try_get(1)?;
            Ok((position, HistoryEntry { method: Method::parse(&method), resource: stored_resource_at(row, 2)? }))
        })
        .collect::<Result<Vec<(i64, HistoryEntry)>, Error>>()?;
    let next = if entries.len() > query.count {
        entries.truncate(query.count);
        entries.last().map(|(position, _)| *position)
    } else {
        None
    };
    Ok(HistoryPage { entries: entries.into_iter().map(|(_, entry)| entry).collect(), next })
}

/// A page of search results ([`crate::sql::search`]).
pub(crate) fn search(
    client: &mut impl GenericClient,
    env: Environment,
    request: &SearchRequest,
) -> Result<SearchPage, Error> {
    let limit = request.limits.time.as_millis().max(1);
    client.batch_execute(&format!("SET statement_timeout = {limit}"))?;
    let result = crate::sql::search::search(&mut Postgres(client), env, request);
    client.batch_execute(&format!("SET statement_timeout = {}", crate::postgres::STATEMENT_TIMEOUT.as_millis()))?;
    result.map_err(|error| crate::sql::search::name_time_limit(error, request))
}

/// The plans (`EXPLAIN`) of the statements [`search`] would run for `request`, one text per
/// statement, without running them: a diagnostic for checking that searches use the indexes.
/// Include queries depend on a page's matches, so they are not among them.
pub(crate) fn explain_search(
    client: &mut impl GenericClient,
    env: Environment,
    request: &SearchRequest,
) -> Result<Vec<String>, Error> {
    let mut explain = Explain { client, plans: Vec::new() };
    crate::sql::search::search(&mut explain, env, request)?;
    Ok(explain.plans)
}

/// A search connection that explains each statement and answers as if nothing matched.
struct Explain<'c, C> {
    client: &'c mut C,
    plans: Vec<String>,
}

impl<C: GenericClient> Explain<'_, C> {
    fn explain(&mut self, sql: &Sql) -> Result<(), Error> {
        let rows = self.client.query_typed(&format!("EXPLAIN {}", sql.text), &params(&sql.values))?;
        let lines = rows.iter().map(|row| row.try_get::<_, String>(0)).collect::<Result<Vec<_>, _>>()?;
        self.plans.push(lines.join("\n"));
        Ok(())
    }
}

impl<C: GenericClient> SearchConnection for Explain<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn count(&mut self, sql: &Sql) -> Result<i64, Error> {
        self.explain(sql)?;
        Ok(0)
    }

    fn rows(&mut self, sql: &Sql, _keys: usize, _budget: usize) -> Result<Vec<Found>, Error> {
        self.explain(sql)?;
        Ok(Vec::new())
    }
}

struct Postgres<'c, C>(&'c mut C);

impl<C: GenericClient> SearchConnection for Postgres<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn count(&mut self, sql: &Sql) -> Result<i64, Error> {
        Ok(self.0.query_typed_one(&sql.text, &params(&sql.values))?.try_get(0)?)
    }

    fn rows(&mut self, sql: &Sql, keys: usize, budget: usize) -> Result<Vec<Found>, Error> {
        let mut rows = self.0.query_typed_raw(&sql.text, params(&sql.values))?;
        let (mut found, mut bytes) = (Vec::new(), 0usize);
        // Rows stream in; past the budget the rest are left unread (the driver discards them).
        while keep_reading(found.len(), bytes, budget)
            && let Some(row) = rows.next()?
        {
            let keys = (7..7 + keys)
                .map(|index| {
                    let kind = row.columns()[index].type_();
                    Ok(if *kind == Type::INT8 {
                        Bind::Integer(row.try_get(index)?)
                    } else if *kind == Type::FLOAT8 {
                        Bind::Real(row.try_get(index)?)
                    } else {
                        Bind::Text(row.try_get(index)?)
                    })
                })
                .collect::<Result<_, Error>>()?;
            let resource = stored_resource_at(&row, 1)?;
            bytes = bytes.saturating_add(resource.body.len());
            found.push(Found { row_id: row.try_get(0)?, keys, resource });
        }
        Ok(found)
    }
}

/// The bound values of a statement as typed `postgres` parameters: with their types known,
/// a statement goes out in one round trip (parse, bind, execute) instead of two.
pub(crate) fn params(values: &[Bind]) -> Vec<(&(dyn ToSql + Sync), Type)> {
    values
        .iter()
        .map(|value| match value {
            Bind::Integer(value) => (value as &(dyn ToSql + Sync), Type::INT8),
            Bind::Real(value) => (value as &(dyn ToSql + Sync), Type::FLOAT8),
            Bind::Text(value) => (value as &(dyn ToSql + Sync), Type::TEXT),
        })
        .collect()
}

/// The stored resource in `row`'s columns `first..first + 6` ([`RESOURCE_COLUMNS`]).
pub(crate) fn stored_resource_at(row: &Row, first: usize) -> Result<StoredResource, Error> {
    let version: i64 = row.try_get(first + 2)?;
    let deleted: i16 = row.try_get(first + 4)?;
    Ok(StoredResource {
        resource_type: row.try_get(first)?,
        id: row.try_get(first + 1)?,
        version: u64::try_from(version).unwrap_or(0),
        last_updated: from_micros(row.try_get(first + 3)?),
        deleted: deleted != 0,
        body: row.try_get(first + 4 + 1)?,
    })
}
