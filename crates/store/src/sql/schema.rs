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
/// PostgreSQL, as the FHIR tables use), `{int}` (64 bits), `{flag}` (0 or 1) and
/// `{clustered}` (SQLite keeps the rows in the primary key's b-tree).
fn spell(template: &str, dialect: Dialect) -> String {
    let (text, int, flag, clustered) = match dialect {
        Dialect::Sqlite => ("TEXT", "INTEGER", "INTEGER", " WITHOUT ROWID"),
        Dialect::Postgres => ("TEXT COLLATE \"C\"", "BIGINT", "SMALLINT", ""),
    };
    template.replace("{text}", text).replace("{int}", int).replace("{flag}", flag).replace("{clustered}", clustered)
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
