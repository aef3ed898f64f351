//! Expiring lists ([`crate::expiring`]) over [`Db`]: the `expiring` table, keyed by (list,
//! key), with each entry's expiry in microseconds.

use crate::Error;
use crate::sql::Sql;
use crate::sql::db::Db;

/// Inserts `key`, or replaces it when it expired by `now`, in one statement: the database's
/// uniqueness check decides which of two racing inserts wins. True when a row was written.
pub(crate) fn remember(db: &mut dyn Db, list: &str, key: &str, expires: i64, now: i64) -> Result<bool, Error> {
    let sql = Sql::fixed(
        db.dialect(),
        "INSERT INTO expiring (list, key, expires) VALUES ({}, {}, {}) \
         ON CONFLICT (list, key) DO UPDATE SET expires = excluded.expires WHERE expiring.expires <= {}",
        [list.into(), key.into(), expires.into(), now.into()],
    );
    Ok(db.execute(&sql)? > 0)
}

/// True when `key` is in `list`, unexpired at `now`.
pub(crate) fn remembered(db: &mut dyn Db, list: &str, key: &str, now: i64) -> Result<bool, Error> {
    let sql = Sql::fixed(
        db.dialect(),
        "SELECT COUNT(*) FROM expiring WHERE list = {} AND key = {} AND expires > {}",
        [list.into(), key.into(), now.into()],
    );
    Ok(db.integer(&sql)? > 0)
}

/// Deletes up to `limit` entries expired by `now`, oldest first (through the expiry index).
pub(crate) fn purge(db: &mut dyn Db, now: i64, limit: usize) -> Result<u64, Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = Sql::fixed(
        db.dialect(),
        "DELETE FROM expiring WHERE (list, key) IN \
         (SELECT list, key FROM expiring WHERE expires <= {} ORDER BY expires LIMIT {})",
        [now.into(), limit.into()],
    );
    db.execute(&sql)
}

/// Every entry of `list` unexpired at `now`: `(key, expires)`.
pub(crate) fn listed(db: &mut dyn Db, list: &str, now: i64) -> Result<Vec<(String, i64)>, Error> {
    let sql = Sql::fixed(
        db.dialect(),
        "SELECT key, expires FROM expiring WHERE list = {} AND expires > {}",
        [list.into(), now.into()],
    );
    let mut entries = Vec::new();
    db.query(&sql, &mut |row| {
        entries.push((row.text(0)?, row.int(1)?));
        Ok(true)
    })?;
    Ok(entries)
}
