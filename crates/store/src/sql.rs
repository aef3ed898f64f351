//! SQL shared by the SQLite and PostgreSQL stores: the [`Sql`] builder, search criteria
//! compiled over the index tables ([`criteria`]) and keyset-paged search with includes
//! ([`search`]).
//!
//! Both databases get the same query shapes; what differs is spelled by [`Dialect`]: the
//! placeholder syntax (`?` against `$n` with an explicit type, so PostgreSQL never has to
//! guess a parameter's type) and the odd join keyword.

pub(crate) mod criteria;
pub(crate) mod search;

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

/// SQL text with its bound values, in placeholder order.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) values: Vec<Bind>,
    pub(crate) dialect: Dialect,
    aliases: usize,
}

impl Sql {
    /// An empty statement for `dialect`.
    pub(crate) fn new(dialect: Dialect) -> Sql {
        Sql { dialect, ..Sql::default() }
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
