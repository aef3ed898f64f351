//! Migrations written once for both databases.
//!
//! The tables of FHIR data were written per database before the store core was shared, and
//! those migrations stay as they were (`migrations/sqlite/`, `migrations/postgres/`):
//! databases in use recorded them. Every table since is written once (`migrations/shared/`),
//! as a template whose placeholders each dialect spells its own way, and runs after each
//! database's own migrations.

use std::borrow::Cow;

use crate::sql::Dialect;

/// Shared migrations in order, as templates.
const SHARED: &[&str] = &[
    include_str!("../../migrations/shared/0001.sql"),
    include_str!("../../migrations/shared/0002.sql"),
    include_str!("../../migrations/shared/0003.sql"),
    include_str!("../../migrations/shared/0004.sql"),
    include_str!("../../migrations/shared/0005.sql"),
    include_str!("../../migrations/shared/0006.sql"),
];

/// The shared migrations spelled for `dialect`.
pub(crate) fn migrations(dialect: Dialect) -> impl Iterator<Item = Cow<'static, str>> {
    SHARED.iter().map(move |template| Cow::Owned(spell(template, dialect)))
}

/// `template` with its placeholders replaced: `{text}` (code-point collation on
/// PostgreSQL, as the FHIR tables use), `{int}` (64 bits), `{flag}` (0 or 1),
/// `{clustered}` (SQLite keeps the rows in the primary key's b-tree) and `{serial}` (a
/// primary key the database numbers in insertion order).
fn spell(template: &str, dialect: Dialect) -> String {
    let (text, int, flag, clustered, serial) = match dialect {
        Dialect::Sqlite => ("TEXT", "INTEGER", "INTEGER", " WITHOUT ROWID", "INTEGER PRIMARY KEY"),
        Dialect::Postgres => {
            ("TEXT COLLATE \"C\"", "BIGINT", "SMALLINT", "", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        }
    };
    template
        .replace("{text}", text)
        .replace("{int}", int)
        .replace("{flag}", flag)
        .replace("{clustered}", clustered)
        .replace("{serial}", serial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_spelled() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for migration in migrations(dialect) {
                assert!(!migration.contains('{'), "{migration}");
            }
        }
    }
}
