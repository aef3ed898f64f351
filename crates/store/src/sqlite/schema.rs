//! The SQLite schema and its migrations, tracked with `PRAGMA user_version`.

use rusqlite::Connection;

use crate::Error;

/// Migrations in order; `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`.
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
];

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
