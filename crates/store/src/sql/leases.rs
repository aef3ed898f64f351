//! Leases ([`crate::leases`]) over [`Db`]: the `leases` table, one row a lease, its expiry in
//! microseconds.

use crate::Error;
use crate::sql::Sql;
use crate::sql::db::Db;

/// Inserts the lease, or takes it over when it expired by `now` or is `owner`'s already, in
/// one statement: the database's uniqueness check decides between racing claims. True when a
/// row was written.
pub(crate) fn claim(db: &mut dyn Db, name: &str, owner: &str, expires: i64, now: i64) -> Result<bool, Error> {
    let sql = Sql::fixed(
        db.dialect(),
        "INSERT INTO leases (name, owner, expires) VALUES ({}, {}, {}) \
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires \
         WHERE leases.expires <= {} OR leases.owner = excluded.owner",
        [name.into(), owner.into(), expires.into(), now.into()],
    );
    Ok(db.execute(&sql)? > 0)
}

/// Deletes the lease if `owner` holds it.
pub(crate) fn release(db: &mut dyn Db, name: &str, owner: &str) -> Result<bool, Error> {
    let sql =
        Sql::fixed(db.dialect(), "DELETE FROM leases WHERE name = {} AND owner = {}", [name.into(), owner.into()]);
    Ok(db.execute(&sql)? > 0)
}
