//! Rate-limit buckets ([`crate::buckets`]) over [`Db`]: the `rate_buckets` table.

use crate::Error;
use crate::buckets::{Rate, Taken};
use crate::sql::Sql;
use crate::sql::db::Db;

/// Microseconds in a minute.
const MINUTE: i128 = 60_000_000;

/// Takes up to `want` requests from `key` at `now` (microseconds), in the caller's write
/// transaction: the bucket row is locked until it commits.
pub(crate) fn take(db: &mut dyn Db, key: &str, want: u32, rate: Rate, now: i64) -> Result<Taken, Error> {
    let dialect = db.dialect();
    let select = Sql::fixed(
        dialect,
        &format!("SELECT tokens, updated, refused FROM rate_buckets WHERE key = {{}}{}", dialect.lock_rows()),
        [key.into()],
    );
    let capacity = i128::from(rate.burst.max(1)) * 1_000;
    let per_minute = i128::from(rate.per_minute.max(1));
    let (tokens, updated, refused) =
        db.first(&select, |row| Ok((row.int(0)?, row.int(1)?, row.int(2)?)))?.unwrap_or((capacity as i64, now, 0));
    let elapsed = i128::from(now.saturating_sub(updated).max(0));
    let tokens = (i128::from(tokens) + elapsed * per_minute * 1_000 / MINUTE).min(capacity);
    let granted = (tokens / 1_000).min(i128::from(want));
    let tokens = tokens - granted * 1_000;
    let refused = refused + i64::from(granted == 0);
    let upsert = Sql::fixed(
        dialect,
        "INSERT INTO rate_buckets (key, tokens, updated, refused) VALUES ({}, {}, {}, {}) \
         ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated, refused = excluded.refused",
        [key.into(), (tokens as i64).into(), now.into(), refused.into()],
    );
    db.execute(&upsert)?;
    let retry_after = match granted {
        0 => {
            let micros = (1_000 - tokens).max(0) * MINUTE / (per_minute * 1_000);
            std::time::Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
        }
        _ => std::time::Duration::ZERO,
    };
    Ok(Taken { granted: granted as u32, refused: u64::try_from(refused).unwrap_or(0), retry_after })
}

/// Removes the buckets `prefix` and `prefix:…`.
pub(crate) fn reset(db: &mut dyn Db, prefix: &str) -> Result<u64, Error> {
    let sql = Sql::fixed(
        db.dialect(),
        "DELETE FROM rate_buckets WHERE key = {} OR (key >= {} AND key < {})",
        [prefix.into(), format!("{prefix}:").into(), format!("{prefix};").into()],
    );
    db.execute(&sql)
}
