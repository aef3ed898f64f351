//! Search on SQLite: the shared search SQL ([`crate::sql::search`]) run on a reader
//! connection.

use rusqlite::types::Value as SqlValue;
use std::ffi::c_int;
use std::time::Instant;

use rusqlite::{Connection, params_from_iter};

use crate::sql::search::{Found, SearchConnection, keep_reading};
use crate::sql::{Bind, Dialect, Sql};
use crate::sqlite::query::stored_resource_at;
use crate::{Environment, Error, SearchPage, SearchRequest};

/// Runs the search under its time limit: a progress handler interrupts whichever statement
/// is running once the deadline has passed (checked every [`CHECK_EVERY`] VM steps).
pub(crate) fn search(connection: &Connection, env: Environment, request: &SearchRequest) -> Result<SearchPage, Error> {
    let deadline = Instant::now() + request.limits.time;
    connection.progress_handler(CHECK_EVERY, Some(move || Instant::now() >= deadline))?;
    let _clear = ClearProgressHandler(connection);
    crate::sql::search::search(&mut Sqlite(connection), env, request)
        .map_err(|error| crate::sql::search::name_time_limit(error, request))
}

/// Removes the progress handler however the search ends (a pooled connection must not keep
/// an old deadline).
struct ClearProgressHandler<'c>(&'c Connection);

impl Drop for ClearProgressHandler<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.0.progress_handler(CHECK_EVERY, None::<fn() -> bool>) {
            tracing::warn!(%error, "cannot remove a search's progress handler");
        }
    }
}

/// Virtual-machine steps between two looks at the clock: about a few microseconds of work.
const CHECK_EVERY: c_int = 1000;

struct Sqlite<'c>(&'c Connection);

impl SearchConnection for Sqlite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn count(&mut self, sql: &Sql) -> Result<i64, Error> {
        Ok(self.0.query_row(&sql.text, params_from_iter(&sql.values), |row| row.get(0))?)
    }

    fn rows(&mut self, sql: &Sql, keys: usize, budget: usize) -> Result<Vec<Found>, Error> {
        let mut statement = self.0.prepare(&sql.text)?;
        let mut rows = statement.query(params_from_iter(&sql.values))?;
        let (mut found, mut bytes) = (Vec::new(), 0usize);
        while keep_reading(found.len(), bytes, budget)
            && let Some(row) = rows.next()?
        {
            let keys = (0..keys)
                .map(|index| {
                    Ok(match row.get::<_, SqlValue>(7 + index)? {
                        SqlValue::Integer(value) => Bind::Integer(value),
                        SqlValue::Real(value) => Bind::Real(value),
                        SqlValue::Text(value) => Bind::Text(value),
                        SqlValue::Null | SqlValue::Blob(_) => Bind::Text(String::new()),
                    })
                })
                .collect::<rusqlite::Result<_>>()?;
            let resource = stored_resource_at(row, 1)?;
            bytes = bytes.saturating_add(resource.body.len());
            found.push(Found { row_id: row.get(0)?, keys, resource });
        }
        Ok(found)
    }
}
