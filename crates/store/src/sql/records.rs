//! Platform records ([`crate::records`]) over [`Db`]: the `records` table holds each
//! record's current version, `record_history` every version, `record_keys` the lookup keys
//! of the current one.

use crate::Error;
use crate::clock::{WriteClock, from_micros};
use crate::records::RecordKey;
use crate::records::{Record, RecordWrite};
use crate::sql::db::{Db, Row};
use crate::sql::{Bind, Sql};

/// The columns [`record_at`] reads.
const COLUMNS: &str = "kind, id, version, updated, updated_by, deleted, body";

/// The record in `row`'s columns ([`COLUMNS`]).
fn record_at(row: &dyn Row) -> Result<Record, Error> {
    Ok(Record {
        kind: row.text(0)?,
        id: row.text(1)?,
        version: u64::try_from(row.int(2)?).unwrap_or(0),
        updated: from_micros(row.int(3)?),
        updated_by: row.text(4)?,
        deleted: row.flag(5)?,
        body: row.text(6)?,
    })
}

/// The current version of `kind`/`id`, locked until the transaction ends when written.
pub(crate) fn record(db: &mut dyn Db, kind: &str, id: &str, lock: bool) -> Result<Option<Record>, Error> {
    let dialect = db.dialect();
    let lock = if lock { dialect.lock_rows() } else { "" };
    let sql = Sql::fixed(
        dialect,
        &format!("SELECT {COLUMNS} FROM records WHERE kind = {{}} AND id = {{}}{lock}"),
        [kind.into(), id.into()],
    );
    db.first(&sql, record_at)
}

/// Live records of `kind` whose key `name` has `value`, by id.
pub(crate) fn find(db: &mut dyn Db, kind: &str, name: &str, value: &str) -> Result<Vec<Record>, Error> {
    let sql = Sql::fixed(
        db.dialect(),
        "SELECT r.kind, r.id, r.version, r.updated, r.updated_by, r.deleted, r.body FROM record_keys k \
         JOIN records r ON r.kind = k.kind AND r.id = k.id \
         WHERE k.kind = {} AND k.name = {} AND k.value = {} AND r.deleted = 0 ORDER BY r.id",
        [kind.into(), name.into(), value.into()],
    );
    db.rows(&sql, record_at)
}

/// Every version of `kind`/`id`, oldest first.
pub(crate) fn history(db: &mut dyn Db, kind: &str, id: &str) -> Result<Vec<Record>, Error> {
    let sql = Sql::fixed(
        db.dialect(),
        &format!("SELECT {COLUMNS} FROM record_history WHERE kind = {{}} AND id = {{}} ORDER BY version"),
        [kind.into(), id.into()],
    );
    db.rows(&sql, record_at)
}

/// Writes a new version of a record in the caller's transaction, after checking the
/// version it expects and its unique keys.
pub(crate) fn write(db: &mut dyn Db, clock: &WriteClock, write: &RecordWrite) -> Result<Record, Error> {
    let current = record(db, write.kind, &write.id, true)?;
    let version = check_version(write, current.as_ref())?;
    let updated = clock.next().max(current.as_ref().map_or(0, |current| crate::clock::micros(current.updated) + 1));
    let body = write.body.clone().unwrap_or_default();
    let record = Record {
        kind: write.kind.to_owned(),
        id: write.id.clone(),
        version,
        updated: from_micros(updated),
        updated_by: write.updated_by.clone(),
        deleted: write.body.is_none(),
        body,
    };
    let keys = if record.deleted { &[][..] } else { &write.keys[..] };
    check_keys(db, write, keys)?;
    store_version(db, &record, current.is_some(), updated)?;
    replace_keys(db, &record, keys)?;
    Ok(record)
}

/// The version a write makes, or why it may not.
fn check_version(write: &RecordWrite, current: Option<&Record>) -> Result<u64, Error> {
    let (kind, id) = (write.kind.to_owned(), write.id.clone());
    let live = current.filter(|current| !current.deleted);
    match (write.expected, live) {
        (None, None) => Ok(current.map_or(0, |current| current.version) + 1),
        (None, Some(_)) => Err(Error::RecordExists { kind, id }),
        (Some(_), None) => Err(Error::RecordNotFound { kind, id }),
        (Some(expected), Some(live)) if expected != live.version => {
            Err(Error::RecordConflict { kind, id, expected, current: live.version })
        }
        (Some(expected), Some(_)) => Ok(expected + 1),
    }
}

/// Refuses a unique key that another live record of the kind holds.
fn check_keys(db: &mut dyn Db, write: &RecordWrite, keys: &[RecordKey]) -> Result<(), Error> {
    for key in keys.iter().filter(|key| key.unique) {
        let sql = Sql::fixed(
            db.dialect(),
            "SELECT COUNT(*) FROM record_keys WHERE kind = {} AND name = {} AND value = {} AND id <> {}",
            [write.kind.into(), key.name.into(), key.value.as_str().into(), write.id.as_str().into()],
        );
        if db.integer(&sql)? > 0 {
            return Err(Error::RecordKeyTaken {
                kind: write.kind.to_owned(),
                name: key.name.to_owned(),
                value: key.value.clone(),
            });
        }
    }
    Ok(())
}

/// Writes `record` as the current version (insert or replace) and into the history.
fn store_version(db: &mut dyn Db, record: &Record, exists: bool, updated: i64) -> Result<(), Error> {
    let dialect = db.dialect();
    let version = i64::try_from(record.version).map_err(|_| Error::Database("version overflow".into()))?;
    let (kind, id) = (Bind::from(record.kind.as_str()), Bind::from(record.id.as_str()));
    let state = [
        Bind::from(version),
        Bind::from(updated),
        Bind::from(record.updated_by.as_str()),
        Bind::from(i64::from(record.deleted)),
        Bind::from(record.body.as_str()),
    ];
    let current = if exists {
        Sql::fixed(
            dialect,
            "UPDATE records SET version = {}, updated = {}, updated_by = {}, deleted = {}, body = {} \
             WHERE kind = {} AND id = {}",
            state.iter().cloned().chain([kind.clone(), id.clone()]),
        )
    } else {
        Sql::fixed(
            dialect,
            "INSERT INTO records (kind, id, version, updated, updated_by, deleted, body) \
             VALUES ({}, {}, {}, {}, {}, {}, {})",
            [kind.clone(), id.clone()].into_iter().chain(state.iter().cloned()),
        )
    };
    db.execute(&current)?;
    let history = Sql::fixed(
        dialect,
        "INSERT INTO record_history (kind, id, version, updated, updated_by, deleted, body) \
         VALUES ({}, {}, {}, {}, {}, {}, {})",
        [kind, id].into_iter().chain(state),
    );
    db.execute(&history)?;
    Ok(())
}

/// Replaces the lookup keys of `record` with `keys`.
fn replace_keys(db: &mut dyn Db, record: &Record, keys: &[RecordKey]) -> Result<(), Error> {
    let dialect = db.dialect();
    let clear = Sql::fixed(
        dialect,
        "DELETE FROM record_keys WHERE kind = {} AND id = {}",
        [record.kind.as_str().into(), record.id.as_str().into()],
    );
    db.execute(&clear)?;
    for key in keys {
        let insert = Sql::fixed(
            dialect,
            "INSERT INTO record_keys (kind, name, value, id) VALUES ({}, {}, {}, {})",
            [record.kind.as_str().into(), key.name.into(), key.value.as_str().into(), record.id.as_str().into()],
        );
        db.execute(&insert)?;
    }
    Ok(())
}
