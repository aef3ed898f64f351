//! The embedded SQLite store.
//!
//! SQLite allows one writer at a time, so writes go through a single connection behind a
//! mutex (no `SQLITE_BUSY` retries between our own writers), while reads use a pool of
//! connections that see committed snapshots thanks to WAL mode. What the store does with
//! them is written once for both databases in [`crate::sql`]; this module holds what is
//! SQLite's own: the connections, the schema, and how rows are written ([`db`]).

mod db;
mod index;
mod schema;

use std::path::Path;
use std::sync::Mutex;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::Error;
use crate::panic_guard;
use crate::sql::db::Db;
use crate::sql::store::{Backend, SqlStore, WriteFailure};
use db::SqliteDb;

/// How many reader connections to keep.
const READERS: u32 = 8;

/// A store in one SQLite database file.
pub type SqliteStore = SqlStore<Sqlite>;

/// The SQLite side of a [`SqliteStore`]: the writer and the readers.
pub struct Sqlite {
    /// The only connection that writes; holding the mutex is holding the write lock.
    writer: Mutex<Connection>,
    readers: r2d2::Pool<SqliteConnectionManager>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, Error> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        configure_writer(&writer)?;
        schema::migrate(&mut writer)?;
        let floor: i64 =
            writer.query_row("SELECT COALESCE(MAX(last_updated), 0) FROM resource_history", [], |row| row.get(0))?;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI)
            .with_init(|connection| connection.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;"));
        let readers = r2d2::Pool::builder().max_size(READERS).build(manager)?;
        SqlStore::new(Sqlite { writer: Mutex::new(writer), readers }, floor)
    }
}

impl Backend for Sqlite {
    const RETRIES: bool = false;

    fn write<T, E: WriteFailure>(
        &self,
        work: &mut dyn FnMut(&mut dyn Db) -> Result<T, E>,
        after: &mut dyn FnMut(&mut dyn Db) -> Result<(), Error>,
    ) -> Result<T, E> {
        // A poisoned lock would only mean a panic escaped `catch`; the connection is still
        // usable once any transaction it left open is rolled back (below).
        let mut connection = self.writer.lock().unwrap_or_else(|poisoned| {
            self.writer.clear_poison();
            poisoned.into_inner()
        });
        let result = panic_guard::catch("a write", || {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(Error::from)?;
            let value = work(&mut SqliteDb(&transaction))?;
            transaction.commit().map_err(Error::from)?;
            Ok(value)
        });
        if !connection.is_autocommit() {
            // Only after a panic: the transaction commits or rolls back on drop otherwise.
            connection.execute_batch("ROLLBACK").map_err(Error::from)?;
        }
        after(&mut SqliteDb(&connection))?;
        result
    }

    fn read<T>(&self, work: &mut dyn FnMut(&mut dyn Db) -> Result<T, Error>) -> Result<T, Error> {
        let connection = self.readers.get()?;
        work(&mut SqliteDb(&connection))
    }
}

fn configure(connection: &Connection) -> Result<(), Error> {
    // FULL makes every acknowledged write survive power loss, not only a process crash.
    // Foreign keys stay unenforced (SQLite's default): the only ones are from index rows to
    // their resource row, which is written in the same transaction and never deleted (a
    // delete writes a tombstone), and checking them cost every index row a lookup.
    connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")?;
    // A write touches a dozen statements (current, history, one delete and one insert per
    // index table), more than rusqlite's default cache of 16 holds: without room they are
    // re-parsed on every write. A 64 MiB page cache keeps large transactions (imports,
    // Bundles) from spilling pages to the WAL before they commit.
    connection.set_prepared_statement_cache_capacity(64);
    connection.execute_batch("PRAGMA cache_size = -65536;")?;
    Ok(())
}

/// Settings for the one writer connection on top of [`configure`].
///
/// Multi-row `INSERT`s keep a statement journal (to undo a half-done statement); in memory
/// it costs no file writes. Checkpoints run every 32 MiB of WAL rather than SQLite's 4 MiB:
/// each one waits for two `fsync`s on the writer's path, and pages that several
/// transactions change in between are copied back once.
fn configure_writer(connection: &Connection) -> Result<(), Error> {
    connection.execute_batch("PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 8192;")?;
    Ok(())
}
