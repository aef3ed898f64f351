//! The store core, written once for SQLite and PostgreSQL over the [`db::Db`] connection
//! abstraction: the [`Sql`] builder, reads ([`read`]), search criteria compiled over the
//! index tables ([`criteria`]), keyset-paged search with includes ([`search`]), single writes
//! ([`write`]), transaction Bundles ([`bundle`]), batched imports ([`import`]), and the
//! [`store::SqlStore`] that implements [`crate::Store`] on top of a [`store::Backend`].
//!
//! Both databases get the same query shapes; what differs is spelled by [`Dialect`] (the
//! placeholder syntax, `?` against `$n` with an explicit type so PostgreSQL never has to
//! guess a parameter's type; the odd join keyword; row locks) or lives behind [`db::Db`]
//! (how a version's rows and index rows are written in bulk).

pub(crate) mod audit;
pub(crate) mod buckets;
pub(crate) mod bundle;
pub(crate) mod criteria;
pub(crate) mod db;
pub(crate) mod expiring;
pub(crate) mod import;
pub(crate) mod leases;
pub(crate) mod read;
pub(crate) mod records;
pub(crate) mod schema;
pub(crate) mod search;
pub(crate) mod store;
pub(crate) mod write;

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Integer(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Bind {
    fn from(value: i64) -> Bind {
        Bind::Integer(value)
    }
}

impl From<f64> for Bind {
    fn from(value: f64) -> Bind {
        Bind::Real(value)
    }
}

impl From<String> for Bind {
    fn from(value: String) -> Bind {
        Bind::Text(value)
    }
}

impl From<&str> for Bind {
    fn from(value: &str) -> Bind {
        Bind::Text(value.to_owned())
    }
}

impl rusqlite::ToSql for Bind {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self {
            Bind::Integer(value) => rusqlite::types::ToSqlOutput::from(*value),
            Bind::Real(value) => rusqlite::types::ToSqlOutput::from(*value),
            Bind::Text(value) => rusqlite::types::ToSqlOutput::from(value.as_str()),
        })
    }
}

/// The SQL flavour a statement is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Dialect {
    #[default]
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The clause that locks the rows a `SELECT` reads until the transaction ends. SQLite has
    /// none and needs none: its one writer holds the database's write lock.
    pub(crate) fn lock_rows(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

/// SQL text with its bound values, in placeholder order.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) values: Vec<Bind>,
    pub(crate) dialect: Dialect,
    /// True for a statement of fixed text, run again and again: SQLite keeps it prepared.
    pub(crate) fixed: bool,
    aliases: usize,
}

impl Sql {
    /// An empty statement for `dialect`.
    pub(crate) fn new(dialect: Dialect) -> Sql {
        Sql { dialect, ..Sql::default() }
    }

    /// A statement of fixed text: `template` with each `{}` replaced by a placeholder for the
    /// next of `values`.
    pub(crate) fn fixed(dialect: Dialect, template: &str, values: impl IntoIterator<Item = Bind>) -> Sql {
        let mut sql = Sql { dialect, fixed: true, ..Sql::default() };
        let mut values = values.into_iter();
        let mut parts = template.split("{}");
        if let Some(first) = parts.next() {
            sql.push(first);
        }
        for part in parts {
            if let Some(value) = values.next() {
                sql.bind(value);
            }
            sql.push(part);
        }
        sql
    }

    pub(crate) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Appends a placeholder for `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Bind>) {
        let value = value.into();
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                let kind = match value {
                    Bind::Integer(_) => "BIGINT",
                    Bind::Real(_) => "DOUBLE PRECISION",
                    Bind::Text(_) => "TEXT",
                };
                self.text.push_str(&format!("${}::{kind}", self.values.len() + 1));
            }
        }
        self.values.push(value);
    }

    /// A fresh table alias (`stem` plus a number) for a nested query.
    pub(crate) fn fresh_alias(&mut self, stem: &str) -> String {
        self.aliases += 1;
        format!("{stem}{}", self.aliases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_statements_number_their_placeholders() {
        let values = || [Bind::from("a"), Bind::from(2_i64)];
        let sqlite = Sql::fixed(Dialect::Sqlite, "SELECT 1 WHERE a = {} AND b = {}", values());
        assert_eq!(sqlite.text, "SELECT 1 WHERE a = ? AND b = ?");
        let postgres = Sql::fixed(Dialect::Postgres, "SELECT 1 WHERE a = {} AND b = {}", values());
        assert_eq!(postgres.text, "SELECT 1 WHERE a = $1::TEXT AND b = $2::BIGINT");
        assert_eq!(postgres.values, values().to_vec());
    }
}
