//! The PostgreSQL schema and its migrations, tracked in `schema_migrations`.
//!
//! Every text column uses the `"C"` collation: search compares, sorts and pages by code
//! point, exactly as SQLite does, and the B-tree indexes serve prefix ranges.

use std::borrow::Cow;

use postgres::Client;

use crate::Error;
use crate::sql::Dialect;
use crate::sql::schema::migrations as shared_migrations;

/// PostgreSQL's own migrations in order; `MIGRATIONS[n]` takes the schema from version `n`
/// to `n + 1`. Frozen: new tables are written once in `sql/schema.rs`, applied after these.
const MIGRATIONS: &[&str] =
    &[include_str!("../../migrations/postgres/0001.sql"), include_str!("../../migrations/postgres/0002.sql")];

/// The schema version of the database behind `client`: the number of migrations applied, 0
/// for a database ignis never opened.
pub(crate) fn version(client: &mut Client) -> Result<u32, Error> {
    let tracked: bool = client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?.try_get(0)?;
    if !tracked {
        return Ok(0);
    }
    let version: i32 = client.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?.try_get(0)?;
    Ok(u32::try_from(version).unwrap_or(0))
}

/// An arbitrary constant: the advisory lock that keeps two processes from migrating at once.
const MIGRATION_LOCK: i64 = 0x6967_6e69_735f_6d67;

/// Applies every migration the database has not seen, in one transaction that holds an
/// advisory lock, so processes starting together migrate once.
pub(crate) fn migrate(client: &mut Client) -> Result<(), Error> {
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    transaction.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, \
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let current: i32 = transaction.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?.get(0);
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    let migrations: Vec<Cow<'static, str>> = MIGRATIONS
        .iter()
        .map(|migration| Cow::Borrowed(*migration))
        .chain(shared_migrations(Dialect::Postgres))
        .collect();
    if current > migrations.len() {
        return Err(Error::Database(format!(
            "the database schema is version {current}, newer than this build of ignis knows ({})",
            migrations.len()
        )));
    }
    for (index, migration) in migrations.iter().enumerate().skip(current) {
        transaction.batch_execute(migration)?;
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        transaction.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version])?;
        tracing::info!(version, "applied database migration");
    }
    transaction.commit()?;
    Ok(())
}
