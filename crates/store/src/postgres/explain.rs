//! `EXPLAIN` of a search's statements, for checking that the generated SQL can use the
//! indexes (a PostgreSQL diagnostic: SQLite's planner output says little without statistics).

use crate::sql::db::Db;
use crate::sql::search::{Found, SearchConnection, search};
use crate::sql::{Dialect, Sql};
use crate::{Environment, Error, SearchRequest};

/// The plans of the statements a search would run for `request`, one text per statement,
/// without running them. Include queries depend on a page's matches, so they are not among
/// them.
pub(crate) fn explain_search(db: &mut dyn Db, env: Environment, request: &SearchRequest) -> Result<Vec<String>, Error> {
    let mut explain = Explain { db, plans: Vec::new() };
    search(&mut explain, env, request)?;
    Ok(explain.plans)
}

/// A search connection that explains each statement and answers as if nothing matched.
struct Explain<'a> {
    db: &'a mut dyn Db,
    plans: Vec<String>,
}

impl Explain<'_> {
    fn explain(&mut self, sql: &Sql) -> Result<(), Error> {
        let mut explain = Sql::new(sql.dialect);
        explain.text = format!("EXPLAIN {}", sql.text);
        explain.values = sql.values.clone();
        let lines = self.db.rows(&explain, |row| row.text(0))?;
        self.plans.push(lines.join("\n"));
        Ok(())
    }
}

impl SearchConnection for Explain<'_> {
    fn dialect(&self) -> Dialect {
        self.db.dialect()
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
