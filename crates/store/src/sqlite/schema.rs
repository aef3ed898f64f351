//! The SQLite schema and its migrations, tracked with `PRAGMA user_version`.

use std::borrow::Cow;

use rusqlite::Connection;

use crate::Error;
use crate::sql::Dialect;
use crate::sql::schema::migrations as shared_migrations;

/// SQLite's own migrations in order; `MIGRATIONS[n]` takes the schema from version `n` to
/// `n + 1`. Frozen: new tables are written once in `sql/schema.rs`.
const MIGRATIONS: &[&str] = &[
    r"
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
",
    r"
-- Search: one narrow table per search-parameter kind, keyed by resource row and parameter id.
CREATE TABLE string_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL,
    normalized   TEXT    NOT NULL, -- lower case, accents removed: prefix and contains search
    exact        TEXT    NOT NULL
);
CREATE INDEX string_index_lookup ON string_index (param, normalized, resource_row);
CREATE INDEX string_index_by_resource ON string_index (resource_row);
CREATE TABLE date_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL,
    low          INTEGER NOT NULL, -- microseconds since the Unix epoch, inclusive
    high         INTEGER NOT NULL  -- inclusive
);
CREATE INDEX date_index_lookup ON date_index (param, low, high, resource_row);
CREATE INDEX date_index_by_resource ON date_index (resource_row);
CREATE TABLE number_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL,
    value        REAL    NOT NULL
);
CREATE INDEX number_index_lookup ON number_index (param, value, resource_row);
CREATE INDEX number_index_by_resource ON number_index (resource_row);
CREATE TABLE quantity_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL,
    value        REAL    NOT NULL,
    system       TEXT,
    code         TEXT,
    unit         TEXT
);
CREATE INDEX quantity_index_lookup ON quantity_index (param, value, resource_row);
CREATE INDEX quantity_index_by_resource ON quantity_index (resource_row);
CREATE TABLE reference_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL,
    target_type  TEXT, -- the local target, when the reference names one
    target_id    TEXT,
    url          TEXT  -- absolute and canonical references as written (without |version)
);
CREATE INDEX reference_index_lookup ON reference_index (param, target_id, target_type, resource_row);
CREATE INDEX reference_index_target ON reference_index (target_id, target_type, param);
CREATE INDEX reference_index_url ON reference_index (param, url);
CREATE INDEX reference_index_by_resource ON reference_index (resource_row, param);
CREATE TABLE uri_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL,
    value        TEXT    NOT NULL
);
CREATE INDEX uri_index_lookup ON uri_index (param, value, resource_row);
CREATE INDEX uri_index_by_resource ON uri_index (resource_row);
CREATE INDEX resources_by_type_updated ON resources (partition, type, last_updated);
",
    r"
-- Correlated checks look index rows up by (resource_row, param): make those indexes cover it.
DROP INDEX token_index_by_resource;
CREATE INDEX token_index_by_resource ON token_index (resource_row, param, code, system);
DROP INDEX string_index_by_resource;
CREATE INDEX string_index_by_resource ON string_index (resource_row, param, normalized);
DROP INDEX date_index_by_resource;
CREATE INDEX date_index_by_resource ON date_index (resource_row, param, low, high);
DROP INDEX number_index_by_resource;
CREATE INDEX number_index_by_resource ON number_index (resource_row, param, value);
DROP INDEX quantity_index_by_resource;
CREATE INDEX quantity_index_by_resource ON quantity_index (resource_row, param, value);
DROP INDEX uri_index_by_resource;
CREATE INDEX uri_index_by_resource ON uri_index (resource_row, param, value);
",
    r"
-- Fewer b-trees to update per write: reverse includes and _has look targets up through
-- reference_index_lookup (param first), and only absolute or canonical references have a url.
DROP INDEX reference_index_target;
DROP INDEX reference_index_url;
CREATE INDEX reference_index_url ON reference_index (param, url) WHERE url IS NOT NULL;
",
    r"
-- Index tables clustered on (resource_row, param, seq), WITHOUT ROWID: a resource's rows for
-- one parameter lie together, so the table itself serves what the *_by_resource indexes did
-- (correlated checks, deletes, sorting) and a row costs two b-tree inserts rather than three.
-- seq numbers a resource's rows within one table, which makes the key unique.
CREATE TABLE token_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, system TEXT, code TEXT NOT NULL,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO token_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, system, code FROM token_index;
DROP TABLE token_index;
ALTER TABLE token_index_clustered RENAME TO token_index;
CREATE INDEX token_index_lookup ON token_index (param, code, system, resource_row);
CREATE TABLE string_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, normalized TEXT NOT NULL, exact TEXT NOT NULL,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO string_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, normalized, exact FROM string_index;
DROP TABLE string_index;
ALTER TABLE string_index_clustered RENAME TO string_index;
CREATE INDEX string_index_lookup ON string_index (param, normalized, resource_row);
CREATE TABLE date_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, low INTEGER NOT NULL, high INTEGER NOT NULL,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO date_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, low, high FROM date_index;
DROP TABLE date_index;
ALTER TABLE date_index_clustered RENAME TO date_index;
CREATE INDEX date_index_lookup ON date_index (param, low, high, resource_row);
CREATE TABLE number_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO number_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, value FROM number_index;
DROP TABLE number_index;
ALTER TABLE number_index_clustered RENAME TO number_index;
CREATE INDEX number_index_lookup ON number_index (param, value, resource_row);
CREATE TABLE quantity_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, value REAL NOT NULL, system TEXT, code TEXT, unit TEXT,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO quantity_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, value, system, code, unit FROM quantity_index;
DROP TABLE quantity_index;
ALTER TABLE quantity_index_clustered RENAME TO quantity_index;
CREATE INDEX quantity_index_lookup ON quantity_index (param, value, resource_row);
CREATE TABLE reference_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, target_type TEXT, target_id TEXT, url TEXT,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO reference_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, target_type, target_id, url FROM reference_index;
DROP TABLE reference_index;
ALTER TABLE reference_index_clustered RENAME TO reference_index;
CREATE INDEX reference_index_lookup ON reference_index (param, target_id, target_type, resource_row);
CREATE INDEX reference_index_url ON reference_index (param, url) WHERE url IS NOT NULL;
CREATE TABLE uri_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO uri_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, value FROM uri_index;
DROP TABLE uri_index;
ALTER TABLE uri_index_clustered RENAME TO uri_index;
CREATE INDEX uri_index_lookup ON uri_index (param, value, resource_row);
",
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
