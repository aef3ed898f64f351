//! The embedded SQLite store.
//!
//! SQLite allows one writer at a time, so writes go through a single connection behind a
//! mutex (no `SQLITE_BUSY` retries between our own writers), while reads use a pool of
//! connections that see committed snapshots thanks to WAL mode. All database work runs on
//! tokio's blocking pool.

mod bundle;
mod criteria;
mod index;
mod query;
mod schema;
mod search;
mod steps;
mod write;

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fhir::id::{LogicalId, ResourceType};
use fhir::search::Criteria;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use crate::clock::WriteClock;
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
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, Error> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        schema::migrate(&mut writer)?;
        let floor: i64 =
            writer.query_row("SELECT COALESCE(MAX(last_updated), 0) FROM resource_history", [], |row| row.get(0))?;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI)
            .with_init(|connection| connection.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;"));
        let readers = r2d2::Pool::builder().max_size(READERS).build(manager)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner { writer: Mutex::new(writer), readers, clock: WriteClock::starting_after(floor) }),
        })
    }

    /// Runs `work` with the writer connection on the blocking pool.
    async fn write<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &WriteClock) -> Result<T, Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let mut connection =
                inner.writer.lock().map_err(|_| Error::Database("the writer connection was poisoned".into()))?;
            work(&mut connection, &inner.clock)
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
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
    )?;
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
        self.write(move |connection, clock| write::create(connection, clock, env, &resource_type, resource, condition))
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
        self.write(move |connection, clock| {
            write::update(connection, clock, env, &resource_type, &id, resource, expected, method)
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
        self.write(move |connection, clock| {
            write::conditional_update(connection, clock, env, &resource_type, &criteria, resource)
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
        self.write(move |connection, clock| write::delete(connection, clock, env, &resource_type, &id, expected)).await
    }

    async fn conditional_delete(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        criteria: Criteria,
    ) -> Result<usize, Error> {
        let resource_type = resource_type.clone();
        self.write(move |connection, clock| {
            write::conditional_delete(connection, clock, env, &resource_type, &criteria)
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
        self.write(move |connection, clock| Ok(bundle::transaction(connection, clock, env, request))).await?
    }

    async fn import(&self, env: Environment, resources: Vec<ImportResource>) -> Result<ImportCounts, Error> {
        self.write(move |connection, clock| bundle::import(connection, clock, env, resources)).await
    }
}
