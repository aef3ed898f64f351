//! Migrations written once for both databases.
//!
//! The tables of FHIR data were written per database before the store core was shared, and
//! those migrations stay as they were (`sqlite/schema.rs`, `postgres/schema.rs`): databases
//! in use recorded them. Every table since is written here once, as a template whose
//! placeholders each dialect spells its own way, and runs after each database's own
//! migrations.

use std::borrow::Cow;

use crate::sql::Dialect;

/// Shared migrations in order, as templates.
const SHARED: &[&str] = &[r"
-- Platform records: versioned JSON documents of the security layer (users, clients,
-- accounts, devices…), each of a kind, with the lookup keys its kind declares.
CREATE TABLE records (
    kind       {text} NOT NULL,
    id         {text} NOT NULL,
    version    {int}  NOT NULL,
    updated    {int}  NOT NULL, -- microseconds since the Unix epoch
    updated_by {text} NOT NULL,
    deleted    {flag} NOT NULL,
    body       {text} NOT NULL, -- JSON; empty for a deleted record
    PRIMARY KEY (kind, id)
){clustered};
CREATE TABLE record_history (
    kind       {text} NOT NULL,
    id         {text} NOT NULL,
    version    {int}  NOT NULL,
    updated    {int}  NOT NULL,
    updated_by {text} NOT NULL,
    deleted    {flag} NOT NULL,
    body       {text} NOT NULL,
    PRIMARY KEY (kind, id, version)
){clustered};
CREATE TABLE record_keys (
    kind  {text} NOT NULL,
    name  {text} NOT NULL,
    value {text} NOT NULL,
    id    {text} NOT NULL,
    PRIMARY KEY (kind, name, value, id)
){clustered};
CREATE INDEX record_keys_by_record ON record_keys (kind, id);
"];

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
