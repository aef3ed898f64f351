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
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE resources (
    row_id       BIGSERIAL PRIMARY KEY,
    partition    TEXT COLLATE "C" NOT NULL,
    type         TEXT COLLATE "C" NOT NULL,
    logical_id   TEXT COLLATE "C" NOT NULL,
    version      BIGINT   NOT NULL,
    last_updated BIGINT   NOT NULL, -- microseconds since the Unix epoch
    deleted      SMALLINT NOT NULL, -- 0 or 1, as in SQLite, so the shared SQL reads the same
    body         TEXT     NOT NULL, -- JSON exactly as served; empty for a tombstone
    UNIQUE (partition, type, logical_id)
);
CREATE INDEX resources_by_type_updated ON resources (partition, type, last_updated);
CREATE TABLE resource_history (
    history_id   BIGSERIAL PRIMARY KEY, -- grows with every write: the history order
    partition    TEXT COLLATE "C" NOT NULL,
    type         TEXT COLLATE "C" NOT NULL,
    logical_id   TEXT COLLATE "C" NOT NULL,
    version      BIGINT   NOT NULL,
    last_updated BIGINT   NOT NULL,
    method       TEXT     NOT NULL,
    deleted      SMALLINT NOT NULL,
    body         TEXT     NOT NULL,
    UNIQUE (partition, type, logical_id, version)
);
CREATE INDEX resource_history_by_type ON resource_history (partition, type, history_id);
CREATE INDEX resource_history_by_partition ON resource_history (partition, history_id);
-- The registry's staleness check: the newest SearchParameter version in any partition.
CREATE INDEX resource_history_by_type_only ON resource_history (type, history_id);
CREATE TABLE token_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL, -- fhir::search::param_id of the SearchParameter URL
    system       TEXT COLLATE "C",
    code         TEXT COLLATE "C" NOT NULL
);
CREATE INDEX token_index_lookup ON token_index (param, code, system, resource_row);
CREATE INDEX token_index_by_resource ON token_index (resource_row, param, code, system);
CREATE TABLE string_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL,
    normalized   TEXT COLLATE "C" NOT NULL, -- lower case, accents removed
    exact        TEXT COLLATE "C" NOT NULL
);
CREATE INDEX string_index_lookup ON string_index (param, normalized, resource_row);
CREATE INDEX string_index_by_resource ON string_index (resource_row, param, normalized);
CREATE TABLE date_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL,
    low          BIGINT NOT NULL, -- microseconds since the Unix epoch, inclusive
    high         BIGINT NOT NULL  -- inclusive
);
CREATE INDEX date_index_lookup ON date_index (param, low, high, resource_row);
CREATE INDEX date_index_by_resource ON date_index (resource_row, param, low, high);
CREATE TABLE number_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL,
    value        DOUBLE PRECISION NOT NULL
);
CREATE INDEX number_index_lookup ON number_index (param, value, resource_row);
CREATE INDEX number_index_by_resource ON number_index (resource_row, param, value);
CREATE TABLE quantity_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    system       TEXT COLLATE "C",
    code         TEXT COLLATE "C",
    unit         TEXT COLLATE "C"
);
CREATE INDEX quantity_index_lookup ON quantity_index (param, value, resource_row);
CREATE INDEX quantity_index_by_resource ON quantity_index (resource_row, param, value);
CREATE TABLE reference_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL,
    target_type  TEXT COLLATE "C", -- the local target, when the reference names one
    target_id    TEXT COLLATE "C",
    url          TEXT COLLATE "C"  -- absolute and canonical references as written
);
CREATE INDEX reference_index_lookup ON reference_index (param, target_id, target_type, resource_row);
CREATE INDEX reference_index_target ON reference_index (target_id, target_type, param);
CREATE INDEX reference_index_url ON reference_index (param, url);
CREATE INDEX reference_index_by_resource ON reference_index (resource_row, param);
CREATE TABLE uri_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL,
    value        TEXT COLLATE "C" NOT NULL
);
CREATE INDEX uri_index_lookup ON uri_index (param, value, resource_row);
CREATE INDEX uri_index_by_resource ON uri_index (resource_row, param, value);
"#,
    r#"
-- Index rows are only ever written with their resource row, in the same transaction, and a
-- resource row is never deleted (a delete writes a tombstone): the foreign keys guarded
-- nothing, yet each index row paid for a lookup in resources and a row lock on it (a WAL
-- record of its own), most of the cost of writing index rows.
ALTER TABLE token_index DROP CONSTRAINT token_index_resource_row_fkey;
ALTER TABLE string_index DROP CONSTRAINT string_index_resource_row_fkey;
ALTER TABLE date_index DROP CONSTRAINT date_index_resource_row_fkey;
ALTER TABLE number_index DROP CONSTRAINT number_index_resource_row_fkey;
ALTER TABLE quantity_index DROP CONSTRAINT quantity_index_resource_row_fkey;
ALTER TABLE reference_index DROP CONSTRAINT reference_index_resource_row_fkey;
ALTER TABLE uri_index DROP CONSTRAINT uri_index_resource_row_fkey;
-- As in SQLite: fewer b-trees per reference row. Reverse includes and _has find targets
-- through reference_index_lookup (param first), and only absolute or canonical references
-- have a url.
DROP INDEX reference_index_target;
DROP INDEX reference_index_url;
CREATE INDEX reference_index_url ON reference_index (param, url) WHERE url IS NOT NULL;
"#,
];

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
