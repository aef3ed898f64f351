//! [`Db`] over a `postgres` client: a pooled connection, or one inside a `SERIALIZABLE`
//! transaction.
//!
//! Statements go out typed (`query_typed`): parse, bind and execute in one round trip, where
//! an untyped one would first ask the server to describe its parameters. Writes of many rows
//! bind whole columns as arrays and `unnest` them, so a batch costs one statement.

use std::collections::HashMap;
use std::time::Duration;

use fhir::search::IndexRows;
use postgres::GenericClient;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};

use crate::postgres::{STATEMENT_TIMEOUT, index};
use crate::sql::db::{Current, Db, Row, Stored, VersionRow};
use crate::sql::{Bind, Dialect, Sql};
use crate::{Environment, Error};

/// A PostgreSQL connection as the store core uses it.
pub(crate) struct PostgresDb<'c, C>(pub(crate) &'c mut C);

impl<C: GenericClient> Db for PostgresDb<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&mut self, sql: &Sql, each: &mut dyn FnMut(&dyn Row) -> Result<bool, Error>) -> Result<(), Error> {
        let mut rows = self.0.query_typed_raw(&sql.text, params(&sql.values))?;
        while let Some(row) = rows.next()? {
            if !each(&PostgresRow(&row))? {
                // The rest is read and dropped: an error the server sends after the rows
                // `each` wanted (a serialization failure found mid-statement) must surface
                // here. Left unread, the driver would discard it, and the transaction's next
                // statement would fail as "aborted" instead of being retried.
                while rows.next()?.is_some() {}
                break;
            }
        }
        Ok(())
    }

    fn execute(&mut self, sql: &Sql) -> Result<u64, Error> {
        Ok(self.0.execute_typed(&sql.text, &params(&sql.values))?)
    }

    fn limit_time(&mut self, limit: Option<Duration>) -> Result<(), Error> {
        let limit = limit.unwrap_or(STATEMENT_TIMEOUT).as_millis().max(1);
        self.0.batch_execute(&format!("SET statement_timeout = {limit}"))?;
        Ok(())
    }

    fn current_rows(&mut self, env: Environment, keys: &[(&str, &str)]) -> Result<Vec<Option<Stored>>, Error> {
        const LOOKUP: &str = "SELECT k.position, r.row_id, r.version, r.last_updated, r.deleted, r.body \
             FROM unnest($2::TEXT[], $3::TEXT[]) WITH ORDINALITY AS k (type, logical_id, position) \
             JOIN resources r ON r.partition = $1 AND r.type = k.type AND r.logical_id = k.logical_id \
             FOR UPDATE OF r";
        let types: Vec<&str> = keys.iter().map(|(resource_type, _)| *resource_type).collect();
        let ids: Vec<&str> = keys.iter().map(|(_, id)| *id).collect();
        let rows = self.0.query_typed(
            LOOKUP,
            &[(&env.as_str(), Type::TEXT), (&types, Type::TEXT_ARRAY), (&ids, Type::TEXT_ARRAY)],
        )?;
        let mut stored: Vec<Option<Stored>> = keys.iter().map(|_| None).collect();
        for row in rows {
            let position: i64 = row.try_get(0)?;
            let row = PostgresRow(&row);
            let current = Current {
                row_id: row.int(1)?,
                version: u64::try_from(row.int(2)?).unwrap_or(0),
                last_updated: row.int(3)?,
                deleted: row.flag(4)?,
            };
            let slot = usize::try_from(position - 1)
                .ok()
                .and_then(|index| stored.get_mut(index))
                .ok_or_else(|| Error::Database(format!("the current-row lookup returned position {position}")))?;
            *slot = Some(Stored { current, body: row.text(5)? });
        }
        Ok(stored)
    }

    /// One statement whatever the number of versions; the history row keeps its own copy of
    /// the body (one statement writes both rows, so it costs no extra round trip).
    fn write_versions(&mut self, env: Environment, versions: &[VersionRow<'_>]) -> Result<Vec<i64>, Error> {
        match versions {
            [] => Ok(Vec::new()),
            [one] => Ok(vec![write_one(self.0, env, one)?]),
            many => write_many(self.0, env, many),
        }
    }

    fn clear_index(&mut self, row_ids: &[i64]) -> Result<(), Error> {
        index::clear(self.0, row_ids)
    }

    fn insert_index(&mut self, resources: &[(i64, &IndexRows)]) -> Result<(), Error> {
        index::insert(self.0, resources)
    }
}

/// Writes one version as the current row and as a history row; the current row's id.
fn write_one(client: &mut impl GenericClient, env: Environment, row: &VersionRow<'_>) -> Result<i64, Error> {
    const WRITE: &str = "WITH history AS (INSERT INTO resource_history \
         (partition, type, logical_id, version, last_updated, method, deleted, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)) \
         INSERT INTO resources (partition, type, logical_id, version, last_updated, deleted, body) \
         VALUES ($1, $2, $3, $4, $5, $7, $8) \
         ON CONFLICT (partition, type, logical_id) DO UPDATE SET version = excluded.version, \
         last_updated = excluded.last_updated, deleted = excluded.deleted, body = excluded.body RETURNING row_id";
    let version = row.version_column()?;
    let deleted = i16::from(row.deleted);
    let written = client.query_typed_one(
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

/// [`write_one`] for many versions (of distinct resources) in one statement over `unnest`.
fn write_many(client: &mut impl GenericClient, env: Environment, rows: &[VersionRow<'_>]) -> Result<Vec<i64>, Error> {
    // `input` is read twice, so PostgreSQL materializes it once, in the order of the arrays.
    const WRITE: &str = "WITH input AS (SELECT * FROM unnest($2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], \
         $6::TEXT[], $7::SMALLINT[], $8::TEXT[]) AS i (type, logical_id, version, last_updated, method, deleted, body)), \
         history AS (INSERT INTO resource_history \
         (partition, type, logical_id, version, last_updated, method, deleted, body) \
         SELECT $1, type, logical_id, version, last_updated, method, deleted, body FROM input) \
         INSERT INTO resources (partition, type, logical_id, version, last_updated, deleted, body) \
         SELECT $1, type, logical_id, version, last_updated, deleted, body FROM input \
         ON CONFLICT (partition, type, logical_id) DO UPDATE SET version = excluded.version, \
         last_updated = excluded.last_updated, deleted = excluded.deleted, body = excluded.body \
         RETURNING row_id, type, logical_id";
    let types: Vec<&str> = rows.iter().map(|row| row.resource_type).collect();
    let ids: Vec<&str> = rows.iter().map(|row| row.id).collect();
    let versions: Vec<i64> = rows.iter().map(VersionRow::version_column).collect::<Result<_, _>>()?;
    let instants: Vec<i64> = rows.iter().map(|row| row.last_updated).collect();
    let methods: Vec<&str> = rows.iter().map(|row| row.method.as_str()).collect();
    let deleted: Vec<i16> = rows.iter().map(|row| i16::from(row.deleted)).collect();
    let bodies: Vec<&str> = rows.iter().map(|row| row.body).collect();
    let written = client.query_typed(
        WRITE,
        &[
            (&env.as_str(), Type::TEXT),
            (&types, Type::TEXT_ARRAY),
            (&ids, Type::TEXT_ARRAY),
            (&versions, Type::INT8_ARRAY),
            (&instants, Type::INT8_ARRAY),
            (&methods, Type::TEXT_ARRAY),
            (&deleted, Type::INT2_ARRAY),
            (&bodies, Type::TEXT_ARRAY),
        ],
    )?;
    // `RETURNING` promises no order: match the rows back by key.
    let mut row_ids: HashMap<(String, String), i64> = HashMap::with_capacity(written.len());
    for row in written {
        row_ids.insert((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?);
    }
    rows.iter()
        .map(|row| {
            row_ids.get(&(row.resource_type.to_owned(), row.id.to_owned())).copied().ok_or_else(|| {
                Error::Database(format!("the write returned no row for {}/{}", row.resource_type, row.id))
            })
        })
        .collect()
}

struct PostgresRow<'r>(&'r postgres::Row);

impl Row for PostgresRow<'_> {
    fn int(&self, column: usize) -> Result<i64, Error> {
        Ok(self.0.try_get(column)?)
    }

    fn text(&self, column: usize) -> Result<String, Error> {
        Ok(self.0.try_get(column)?)
    }

    fn flag(&self, column: usize) -> Result<bool, Error> {
        Ok(self.0.try_get::<_, i16>(column)? != 0)
    }

    fn key(&self, column: usize) -> Result<Bind, Error> {
        let kind = self.0.columns().get(column).map(|column| column.type_());
        Ok(if kind == Some(&Type::INT8) {
            Bind::Integer(self.0.try_get(column)?)
        } else if kind == Some(&Type::FLOAT8) {
            Bind::Real(self.0.try_get(column)?)
        } else {
            Bind::Text(self.0.try_get(column)?)
        })
    }
}

/// The bound values of a statement as typed `postgres` parameters.
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
