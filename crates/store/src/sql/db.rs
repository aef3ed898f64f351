//! The connection abstraction the store core is written over.
//!
//! [`Db`] is one database connection, inside a write transaction or a read: it runs
//! [`Sql`] statements and hands back rows through [`Row`], and it writes what each database
//! writes its own way (a version's current and history rows, index rows in bulk: multi-row
//! `INSERT`s on SQLite, `unnest` arrays on PostgreSQL). Everything else (conditional
//! writes, transactions, imports, reads, search, history) is written once in [`crate::sql`].

use std::time::Duration;

use fhir::search::IndexRows;

use crate::clock::from_micros;
use crate::sql::{Bind, Dialect, Sql};
use crate::{Environment, Error, Method, StoredResource};

/// One row of a result, read by column position.
pub(crate) trait Row {
    fn int(&self, column: usize) -> Result<i64, Error>;
    fn text(&self, column: usize) -> Result<String, Error>;
    /// A 0/1 column (`deleted`).
    fn flag(&self, column: usize) -> Result<bool, Error>;
    /// A sort key: an integer, a real or a text, as the column holds.
    fn key(&self, column: usize) -> Result<Bind, Error>;
}

/// A database connection as the store core uses it.
pub(crate) trait Db {
    /// The dialect statements are built for.
    fn dialect(&self) -> Dialect;

    /// Runs `sql` and hands `each` its rows in order, until `each` returns `false` (the rest
    /// are left unread).
    fn query(&mut self, sql: &Sql, each: &mut dyn FnMut(&dyn Row) -> Result<bool, Error>) -> Result<(), Error>;

    /// Runs a statement that returns no rows; the number of rows it changed.
    fn execute(&mut self, sql: &Sql) -> Result<u64, Error>;

    /// Stops any statement that runs longer than `limit` ([`Error::TooCostly`]); `None`
    /// restores the connection's default.
    fn limit_time(&mut self, limit: Option<Duration>) -> Result<(), Error>;

    /// The current row of each `(type, id)` in `keys`, in their order, with its body; locked
    /// until the transaction ends.
    fn current_rows(&mut self, env: Environment, keys: &[(&str, &str)]) -> Result<Vec<Option<Stored>>, Error>;

    /// Writes each version as the current row of its resource and as a history row; returns
    /// the current rows' ids, in the order of `versions`.
    fn write_versions(&mut self, env: Environment, versions: &[VersionRow<'_>]) -> Result<Vec<i64>, Error>;

    /// Removes every index row of the resource rows `row_ids`.
    fn clear_index(&mut self, row_ids: &[i64]) -> Result<(), Error>;

    /// Inserts the index rows of each `(resource row, rows)`; none of them has rows yet.
    fn insert_index(&mut self, resources: &[(i64, &IndexRows)]) -> Result<(), Error>;
}

impl dyn Db + '_ {
    /// Every row of `sql`, each turned into a `T` by `read`.
    pub(crate) fn rows<T>(
        &mut self,
        sql: &Sql,
        mut read: impl FnMut(&dyn Row) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let mut rows = Vec::new();
        self.query(sql, &mut |row| {
            rows.push(read(row)?);
            Ok(true)
        })?;
        Ok(rows)
    }

    /// The first row of `sql`, if any, turned into a `T` by `read`.
    pub(crate) fn first<T>(
        &mut self,
        sql: &Sql,
        mut read: impl FnMut(&dyn Row) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        let mut first = None;
        self.query(sql, &mut |row| {
            first = Some(read(row)?);
            Ok(false)
        })?;
        Ok(first)
    }

    /// The integer in the first column of the first row of `sql` (0 for no row).
    pub(crate) fn integer(&mut self, sql: &Sql) -> Result<i64, Error> {
        Ok(self.first(sql, |row| row.int(0))?.unwrap_or(0))
    }
}

/// The columns of a stored resource, in the order [`stored_resource_at`] reads them.
pub(crate) const RESOURCE_COLUMNS: &str = "type, logical_id, version, last_updated, deleted, body";

/// The stored resource in `row`'s columns `first..first + 6` ([`RESOURCE_COLUMNS`]).
pub(crate) fn stored_resource_at(row: &dyn Row, first: usize) -> Result<StoredResource, Error> {
    Ok(StoredResource {
        resource_type: row.text(first)?,
        id: row.text(first + 1)?,
        version: u64::try_from(row.int(first + 2)?).unwrap_or(0),
        last_updated: from_micros(row.int(first + 3)?),
        deleted: row.flag(first + 4)?,
        body: row.text(first + 5)?,
    })
}

/// The current row of a resource, as far as a write needs to know it.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub(crate) row_id: i64,
    pub(crate) version: u64,
    pub(crate) last_updated: i64,
    pub(crate) deleted: bool,
}

impl Current {
    /// The columns [`Current::read`] reads.
    pub(crate) const COLUMNS: &str = "row_id, version, last_updated, deleted";

    /// The current row in `row`'s first four columns ([`Current::COLUMNS`]).
    pub(crate) fn read(row: &dyn Row) -> Result<Current, Error> {
        Ok(Current {
            row_id: row.int(0)?,
            version: u64::try_from(row.int(1)?).unwrap_or(0),
            last_updated: row.int(2)?,
            deleted: row.flag(3)?,
        })
    }
}

/// A resource's current row and its stored body (empty for a tombstone).
pub(crate) struct Stored {
    pub(crate) current: Current,
    pub(crate) body: String,
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
    /// The current row this version replaces (SQLite moves its body into its history row
    /// then; see `sqlite/db.rs`).
    pub(crate) replaced: Option<&'a Current>,
}

impl VersionRow<'_> {
    /// The version as a database integer.
    pub(crate) fn version_column(&self) -> Result<i64, Error> {
        i64::try_from(self.version).map_err(|_| Error::Database("version overflow".into()))
    }
}
