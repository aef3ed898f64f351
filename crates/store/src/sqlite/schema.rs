//! The SQLite schema and its migrations, tracked with `PRAGMA user_version`.

use rusqlite::Connection;

use crate::Error;

/// Migrations in order; `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[r"
CREATE TABLE resources (
    row_id       INTEGER PRIMARY KEY,
    partition    TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    logical_id   TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL, -- microseconds since the Unix epoch
    deleted      INTEGER NOT NULL,
    body         TEXT    NOT NULL, -- JSON exactly as served; empty for a tombstone
    UNIQUE (partition, type, logical_id)
);
CREATE TABLE resource_history (
    history_id   INTEGER PRIMARY KEY, -- grows with every write: the history order
    partition    TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    logical_id   TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    method       TEXT    NOT NULL,
    deleted      INTEGER NOT NULL,
    body         TEXT    NOT NULL,
    UNIQUE (partition, type, logical_id, version)
);
CREATE INDEX resource_history_by_type ON resource_history (partition, type, history_id);
CREATE INDEX resource_history_by_partition ON resource_history (partition, history_id);
CREATE TABLE token_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL, -- fhir::search::param_id of the SearchParameter URL
    system       TEXT,
    code         TEXT    NOT NULL
);
CREATE INDEX token_index_lookup ON token_index (param, code, system, resource_row);
CREATE INDEX token_index_by_resource ON token_index (resource_row);
"];

/// Applies every migration the database has not seen, each in its own transaction.
pub(crate) fn migrate(connection: &mut Connection) -> Result<(), Error> {
    let current: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(Error::Database(format!(
            "the database schema is version {current}, newer than this build of ignis knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", i64::try_from(index + 1).unwrap_or(i64::MAX))?;
        transaction.commit()?;
        tracing::info!(version = index + 1, "applied database migration");
    }
    Ok(())
}
