//! Migrations on demand (`ignis migrate`). Every store applies pending migrations when it
//! opens; these entry points do only that and report the schema version before and after,
//! so an operator can upgrade a database before starting the new servers, and see what
//! changed.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::Error;

/// A database's schema version (the number of migrations applied; 0 for a database ignis
/// never opened) before and after migrating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersions {
    pub before: u32,
    pub after: u32,
}

/// Migrates the SQLite database at `path` (created when missing). Blocking.
pub fn sqlite(path: &Path) -> Result<SchemaVersions, Error> {
    let before = sqlite_version(path)?;
    drop(crate::sqlite::SqliteStore::open(path)?);
    let after = sqlite_version(path)?;
    Ok(SchemaVersions { before, after })
}

/// Migrates the PostgreSQL database at `url` (`postgres://…`). Blocking, and like
/// [`crate::postgres::PostgresStore::open`] not to be called on an async runtime's thread.
pub fn postgres(url: &str) -> Result<SchemaVersions, Error> {
    crate::postgres::migrate(url)
}

/// The SQLite schema version is the database's `user_version`.
fn sqlite_version(path: &Path) -> Result<u32, Error> {
    if !path.exists() {
        return Ok(0);
    }
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    Ok(u32::try_from(version).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_sqlite_database_is_migrated_once() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("migrate.db");
        let first = sqlite(&path).unwrap();
        assert_eq!(first.before, 0);
        assert!(first.after > 0, "{first:?}");
        let again = sqlite(&path).unwrap();
        assert_eq!(again, SchemaVersions { before: first.after, after: first.after });
    }
}
