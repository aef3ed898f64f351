//! Search on SQLite: the shared search SQL ([`crate::sql::search`]) run on a reader
//! connection.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params_from_iter};

use crate::sql::search::{Found, SearchConnection};
use crate::sql::{Bind, Dialect, Sql};
use crate::sqlite::query::stored_resource_at;
use crate::{Environment, Error, SearchPage, SearchRequest};

pub(crate) fn search(connection: &Connection, env: Environment, request: &SearchRequest) -> Result<SearchPage, Error> {
    crate::sql::search::search(&mut Sqlite(connection), env, request)
}

struct Sqlite<'c>(&'c Connection);

impl SearchConnection for Sqlite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn count(&mut self, sql: &Sql) -> Result<i64, Error> {
        Ok(self.0.query_row(&sql.text, params_from_iter(&sql.values), |row| row.get(0))?)
    }

    fn rows(&mut self, sql: &Sql, keys: usize) -> Result<Vec<Found>, Error> {
        let mut statement = self.0.prepare(&sql.text)?;
        let rows = statement.query_map(params_from_iter(&sql.values), |row| {
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
            Ok(Found { row_id: row.get(0)?, keys, resource: stored_resource_at(row, 1)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
