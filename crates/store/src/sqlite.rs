//! The embedded SQLite store.
//!
//! SQLite allows one writer at a time, so writes go through a single connection behind a
//! mutex (no `SQLITE_BUSY` retries between our own writers), while reads use a pool of
//! connections that see committed snapshots thanks to WAL mode. All database work runs on
//! tokio's blocking pool.

mod bundle;
mod index;
mod query;
mod registry;
mod schema;
mod search;
mod steps;
mod write;

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fhir::id::{LogicalId, ResourceType};
use fhir::search::{Criteria, Registry};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use crate::clock::{WriteClock, WriteContext};
use crate::panic_guard;
use crate::registry::Registries;
use crate::{
    EntryOutcome, Environment, Error, ExpectedVersion, HistoryPage, HistoryQuery, ImportCounts, ImportResource, Method,
    SearchPage, SearchRequest, Store, StoredResource, TransactionError, TransactionRequest, WriteOutcome,
};

/// How many reader connections to keep.
const READERS: u32 = 8;

/// A store in one SQLite database file.
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The only connection that writes; holding the mutex is holding the write lock.
    writer: Mutex<Connection>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    clock: WriteClock,
    /// The search parameters of each partition; replaced when a `SearchParameter` is
    /// written, under the writer lock.
    registries: Registries,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, Error> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        configure_writer(&writer)?;
        schema::migrate(&mut writer)?;
        let registries = registry::load_all(&writer)?;
        let floor: i64 =
            writer.query_row("SELECT COALESCE(MAX(last_updated), 0) FROM resource_history", [], |row| row.get(0))?;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI)
            .with_init(|connection| connection.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;"));
        let readers = r2d2::Pool::builder().max_size(READERS).build(manager)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                clock: WriteClock::starting_after(floor),
                registries,
            }),
        })
    }

    /// Runs `work` with the writer connection on the blocking pool, indexing with `env`'s
    /// search parameters.
    async fn write<T, F>(&self, env: Environment, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &WriteContext<'_>) -> Result<T, Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            // A poisoned lock would only mean a panic escaped `catch`; the connection is still
            // usable once any transaction it left open is rolled back (below).
            let mut connection = inner.writer.lock().unwrap_or_else(|poisoned| {
                inner.writer.clear_poison();
                poisoned.into_inner()
            });
            let registry = inner.registries.get(env);
            let context = WriteContext::new(&inner.clock, &registry);
            let result = panic_guard::catch("a write", || work(&mut connection, &context));
            if !connection.is_autocommit() {
                // Only after a panic: every write commits or rolls back its own transaction.
                connection.execute_batch("ROLLBACK")?;
            }
            if context.search_parameters_changed() {
                inner.registries.reload(|env| registry::load(&connection, env))?;
            }
            result
        })
        .await
    }

    /// Runs `work` with a reader connection on the blocking pool.
    async fn read_with<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let connection = inner.readers.get()?;
            work(&connection)
        })
        .await
    }
}

async fn run_blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| Error::Database(format!("database task failed: {error}")))?
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

#[async_trait]
impl Store for SqliteStore {
    async fn read(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        id: &LogicalId,
    ) -> Result<Option<StoredResource>, Error> {
        let (resource_type, id) = (resource_type.clone(), id.clone());
        self.read_with(move |connection| query::read(connection, env, &resource_type, &id)).await
    }

    async fn vread(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        id: &LogicalId,
        version: u64,
    ) -> Result<Option<StoredResource>, Error> {
        let (resource_type, id) = (resource_type.clone(), id.clone());
        self.read_with(move |connection| query::vread(connection, env, &resource_type, &id, version)).await
    }

    async fn create(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        resource: Value,
        condition: Option<Criteria>,
    ) -> Result<WriteOutcome, Error> {
        let resource_type = resource_type.clone();
        self.write(env, move |connection, context| {
            write::create(connection, context, env, &resource_type, resource, condition)
        })
        .await
    }

    async fn update(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        id: &LogicalId,
        resource: Value,
        expected: ExpectedVersion,
        method: Method,
    ) -> Result<WriteOutcome, Error> {
        let (resource_type, id) = (resource_type.clone(), id.clone());
        self.write(env, move |connection, context| {
            write::update(connection, context, env, &resource_type, &id, resource, expected, method)
        })
        .await
    }

    async fn conditional_update(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        criteria: Criteria,
        resource: Value,
    ) -> Result<WriteOutcome, Error> {
        let resource_type = resource_type.clone();
        self.write(env, move |connection, context| {
            write::conditional_update(connection, context, env, &resource_type, &criteria, resource)
        })
        .await
    }

    async fn delete(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        id: &LogicalId,
        expected: ExpectedVersion,
    ) -> Result<Option<u64>, Error> {
        let (resource_type, id) = (resource_type.clone(), id.clone());
        self.write(env, move |connection, context| {
            write::delete(connection, context, env, &resource_type, &id, expected)
        })
        .await
    }

    async fn conditional_delete(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        criteria: Criteria,
    ) -> Result<usize, Error> {
        let resource_type = resource_type.clone();
        self.write(env, move |connection, context| {
            write::conditional_delete(connection, context, env, &resource_type, &criteria)
        })
        .await
    }

    async fn find(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        criteria: Criteria,
        limit: usize,
    ) -> Result<Vec<StoredResource>, Error> {
        let resource_type = resource_type.clone();
        self.read_with(move |connection| query::find(connection, env, &resource_type, &criteria, limit)).await
    }

    fn registry(&self, env: Environment) -> Arc<Registry> {
        self.inner.registries.get(env)
    }

    async fn reindex(&self, after: i64, limit: usize) -> Result<Option<i64>, Error> {
        let inner = Arc::clone(&self.inner);
        // Each row is indexed with its own partition's registry, not the one `write` scopes.
        self.write(Environment::Production, move |connection, _| {
            registry::reindex(connection, &inner.registries, after, limit)
        })
        .await
    }

    async fn count_resources(&self) -> Result<u64, Error> {
        self.read_with(|connection| {
            let count: i64 =
                connection.query_row("SELECT COUNT(*) FROM resources WHERE deleted = 0", [], |row| row.get(0))?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn search(&self, env: Environment, request: SearchRequest) -> Result<SearchPage, Error> {
        self.read_with(move |connection| search::search(connection, env, &request)).await
    }

    async fn history(&self, env: Environment, history: HistoryQuery) -> Result<HistoryPage, Error> {
        self.read_with(move |connection| query::history(connection, env, &history)).await
    }

    async fn transaction(
        &self,
        env: Environment,
        request: TransactionRequest,
    ) -> Result<Vec<EntryOutcome>, TransactionError> {
        self.write(env, move |connection, context| Ok(bundle::transaction(connection, context, env, request))).await?
    }

    async fn import(&self, env: Environment, resources: Vec<ImportResource>) -> Result<ImportCounts, Error> {
        self.write(env, move |connection, context| bundle::import(connection, context, env, resources)).await
    }
}
