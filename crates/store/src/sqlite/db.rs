//! [`Db`] over a rusqlite connection: the writer inside its `BEGIN IMMEDIATE` transaction, or
//! a pooled reader.

use std::ffi::c_int;
use std::time::{Duration, Instant};

use fhir::search::IndexRows;
use rusqlite::types::ValueRef;
use rusqlite::{CachedStatement, Connection, Statement, params, params_from_iter};

use crate::sql::db::{Current, Db, Row, Stored, VersionRow};
use crate::sql::{Bind, Dialect, Sql};
use crate::sqlite::index;
use crate::{Environment, Error};

/// A SQLite connection as the store core uses it.
pub(crate) struct SqliteDb<'c>(pub(crate) &'c Connection);

/// Virtual-machine steps between two looks at the clock under a time limit: about a few
/// microseconds of work.
const CHECK_EVERY: c_int = 1000;

impl Db for SqliteDb<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&mut self, sql: &Sql, each: &mut dyn FnMut(&dyn Row) -> Result<bool, Error>) -> Result<(), Error> {
        let (mut cached, mut plain) = (None, None);
        let statement = prepare(self.0, sql, &mut cached, &mut plain)?;
        let mut rows = statement.query(params_from_iter(&sql.values))?;
        while let Some(row) = rows.next()? {
            if !each(&SqliteRow(row))? {
                break;
            }
        }
        Ok(())
    }

    fn execute(&mut self, sql: &Sql) -> Result<u64, Error> {
        let (mut cached, mut plain) = (None, None);
        let statement = prepare(self.0, sql, &mut cached, &mut plain)?;
        Ok(statement.execute(params_from_iter(&sql.values))? as u64)
    }

    /// A progress handler interrupts whichever statement is running once the deadline has
    /// passed (checked every [`CHECK_EVERY`] steps).
    fn limit_time(&mut self, limit: Option<Duration>) -> Result<(), Error> {
        match limit {
            Some(limit) => {
                let deadline = Instant::now() + limit;
                self.0.progress_handler(CHECK_EVERY, Some(move || Instant::now() >= deadline))?;
            }
            None => self.0.progress_handler(CHECK_EVERY, None::<fn() -> bool>)?,
        }
        Ok(())
    }

    /// One cached lookup per key: SQLite answers it from its page cache in microseconds.
    fn current_rows(&mut self, env: Environment, keys: &[(&str, &str)]) -> Result<Vec<Option<Stored>>, Error> {
        let mut statement = self.0.prepare_cached(
            "SELECT row_id, version, last_updated, deleted, body FROM resources \
             WHERE partition = ?1 AND type = ?2 AND logical_id = ?3",
        )?;
        let mut found = Vec::with_capacity(keys.len());
        for (resource_type, id) in keys {
            let mut rows = statement.query(params![env.as_str(), resource_type, id])?;
            let stored = match rows.next()? {
                Some(row) => {
                    let row = SqliteRow(row);
                    Some(Stored { current: Current::read(&row)?, body: row.text(4)? })
                }
                None => None,
            };
            found.push(stored);
        }
        Ok(found)
    }

    /// Three cached statements per version. The history row of the current version holds no
    /// body (it is in `resources`); the body moves into its history row when a later version
    /// replaces it, so each body is written once (see `sql/read.rs`).
    fn write_versions(&mut self, env: Environment, versions: &[VersionRow<'_>]) -> Result<Vec<i64>, Error> {
        let mut keep = self.0.prepare_cached(
            "UPDATE resource_history SET body = (SELECT body FROM resources WHERE row_id = ?1) \
             WHERE partition = ?2 AND type = ?3 AND logical_id = ?4 AND version = ?5 AND body = ''",
        )?;
        let mut current = self.0.prepare_cached(
            "INSERT INTO resources (partition, type, logical_id, version, last_updated, deleted, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (partition, type, logical_id) DO UPDATE SET version = excluded.version, \
             last_updated = excluded.last_updated, deleted = excluded.deleted, body = excluded.body RETURNING row_id",
        )?;
        let mut history = self.0.prepare_cached(
            "INSERT INTO resource_history (partition, type, logical_id, version, last_updated, method, deleted, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '')",
        )?;
        let mut row_ids = Vec::with_capacity(versions.len());
        for row in versions {
            let version = row.version_column()?;
            if let Some(replaced) = row.replaced.filter(|replaced| !replaced.deleted) {
                let replaced_version = i64::try_from(replaced.version).unwrap_or(i64::MAX);
                keep.execute(params![replaced.row_id, env.as_str(), row.resource_type, row.id, replaced_version])?;
            }
            let values =
                params![env.as_str(), row.resource_type, row.id, version, row.last_updated, row.deleted, row.body];
            row_ids.push(current.query_row(values, |found| found.get(0))?);
            let values = params![
                env.as_str(),
                row.resource_type,
                row.id,
                version,
                row.last_updated,
                row.method.as_str(),
                row.deleted
            ];
            history.execute(values)?;
        }
        Ok(row_ids)
    }

    fn clear_index(&mut self, row_ids: &[i64]) -> Result<(), Error> {
        index::clear(self.0, row_ids)
    }

    fn insert_index(&mut self, resources: &[(i64, &IndexRows)]) -> Result<(), Error> {
        index::insert(self.0, resources)
    }
}

/// `sql` prepared: kept in the connection's cache when it is a fixed statement (statements
/// built per search vary too much to cache), in `plain` otherwise.
fn prepare<'s, 'c>(
    connection: &'c Connection,
    sql: &Sql,
    cached: &'s mut Option<CachedStatement<'c>>,
    plain: &'s mut Option<Statement<'c>>,
) -> Result<&'s mut Statement<'c>, Error> {
    if sql.fixed {
        Ok(cached.insert(connection.prepare_cached(&sql.text)?))
    } else {
        Ok(plain.insert(connection.prepare(&sql.text)?))
    }
}

struct SqliteRow<'a, 'r>(&'a rusqlite::Row<'r>);

impl Row for SqliteRow<'_, '_> {
    fn int(&self, column: usize) -> Result<i64, Error> {
        Ok(self.0.get(column)?)
    }

    fn text(&self, column: usize) -> Result<String, Error> {
        Ok(self.0.get(column)?)
    }

    fn flag(&self, column: usize) -> Result<bool, Error> {
        Ok(self.0.get(column)?)
    }

    fn key(&self, column: usize) -> Result<Bind, Error> {
        Ok(match self.0.get_ref(column)? {
            ValueRef::Integer(value) => Bind::Integer(value),
            ValueRef::Real(value) => Bind::Real(value),
            ValueRef::Text(text) => Bind::Text(String::from_utf8_lossy(text).into_owned()),
            ValueRef::Null | ValueRef::Blob(_) => Bind::Text(String::new()),
        })
    }
}
