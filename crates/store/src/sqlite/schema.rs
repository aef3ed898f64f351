//! The SQLite schema and its migrations, tracked with `PRAGMA user_version`.

use std::borrow::Cow;

use rusqlite::Connection;

use crate::Error;
use crate::sql::Dialect;
use crate::sql::schema::migrations as shared_migrations;

/// SQLite's own migrations in order; `MIGRATIONS[n]` takes the schema from version `n` to
/// `n + 1`. Frozen: new tables are written once in `sql/schema.rs`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001.sql"),
    include_str!("../../migrations/sqlite/0002.sql"),
    include_str!("../../migrations/sqlite/0003.sql"),
    include_str!("../../migrations/sqlite/0004.sql"),
    include_str!("../../migrations/sqlite/0005.sql"),
];

/// Every migration in order: SQLite's own, then those written once for both databases.
fn migrations() -> Vec<Cow<'static, str>> {
    MIGRATIONS.iter().map(|migration| Cow::Borrowed(*migration)).chain(shared_migrations(Dialect::Sqlite)).collect()
}

/// Applies every migration the database has not seen, each in its own transaction.
pub(crate) fn migrate(connection: &mut Connection) -> Result<(), Error> {
    let current: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    let migrations = migrations();
    if current > migrations.len() {
        return Err(Error::Database(format!(
            "the database schema is version {current}, newer than this build of ignis knows ({})",
            migrations.len()
        )));
    }
    for (index, migration) in migrations.iter().enumerate().skip(current) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", i64::try_from(index + 1).unwrap_or(i64::MAX))?;
        transaction.commit()?;
        tracing::info!(version = index + 1, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clustered_index_tables_keep_the_rows_of_an_older_database() {
        let mut connection = Connection::open_in_memory().unwrap();
        for migration in &MIGRATIONS[..4] {
            connection.execute_batch(migration).unwrap();
        }
        connection.pragma_update(None, "user_version", 4).unwrap();
        connection
            .execute_batch(
                "INSERT INTO resources VALUES (7, 'production', 'Patient', 'p', 1, 0, 0, '{}');
                 INSERT INTO token_index (resource_row, param, system, code) VALUES (7, 1, NULL, 'a'), (7, 1, 's', 'b');
                 INSERT INTO reference_index (resource_row, param, target_type, target_id, url) VALUES (7, 2, 'Patient', 'q', NULL);",
            )
            .unwrap();
        migrate(&mut connection).unwrap();
        let tokens: Vec<(i64, i64, i64, Option<String>, String)> = connection
            .prepare("SELECT resource_row, param, seq, system, code FROM token_index ORDER BY seq")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(tokens, [(7, 1, 0, None, "a".to_owned()), (7, 1, 1, Some("s".to_owned()), "b".to_owned())]);
        let target: String = connection
            .query_row("SELECT target_id FROM reference_index WHERE param = 2", [], |row| row.get(0))
            .unwrap();
        assert_eq!(target, "q");
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
        assert_eq!(version, migrations().len() as i64);
    }
}
