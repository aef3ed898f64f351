//! The PostgreSQL store, for deployments where several `ignis` processes share one database.
//!
//! What the store does is written once for both databases in [`crate::sql`]; this module
//! holds what is PostgreSQL's own: the synchronous `postgres` client and its r2d2 pool, the
//! schema, how rows are written in bulk ([`db`]), serialization retries, background
//! `ANALYZE`, and watching for other processes' search parameters.
//!
//! Concurrency: every write runs in a `SERIALIZABLE` transaction and is retried (a few
//! times, with a short random backoff) when PostgreSQL reports a serialization failure or a
//! deadlock, so a conditional create racing another process's conditional create (or a
//! transaction Bundle racing anything) commits as if they had run one after the other.
//! Nothing in the process has to agree with other processes: the write clock takes
//! `max(now, previous version + 1 µs)` inside the transaction, and the search-parameter
//! registry is reloaded after this process writes a `SearchParameter` and otherwise when a
//! background check (every [`REGISTRY_CHECK`]) sees another process wrote one.
//!
//! Failures to reach the database (refused connection, a pool with no free connection
//! within [`CONNECT_TIMEOUT`], a server shutting down, a statement over
//! [`STATEMENT_TIMEOUT`]) are [`Error::Unavailable`]; the pool checks connections on
//! checkout, so the store recovers by itself when the database comes back.
//!
//! The `postgres` client runs its own small runtime, so [`PostgresStore::open`] must be
//! called outside an async context (e.g. in `spawn_blocking`).

mod db;
mod explain;
mod index;
mod schema;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use postgres::{Client, Config, IsolationLevel, NoTls};
use r2d2_postgres::PostgresConnectionManager;

use crate::migrate::SchemaVersions;
use crate::panic_guard;
use crate::registry;
use crate::sql::db::Db;
use crate::sql::store::{Backend, Shared, SqlStore, WriteFailure};
use crate::{Environment, Error, SearchRequest};
use db::PostgresDb;

/// How many connections one process keeps at most.
const POOL_SIZE: u32 = 16;
/// How long a call waits for a connection before the database counts as unavailable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest any one statement may run.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the store looks for `SearchParameter` writes by other processes.
pub const REGISTRY_CHECK: Duration = Duration::from_secs(2);
/// How many times a write is attempted when it keeps losing serialization races.
const WRITE_ATTEMPTS: u32 = 12;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// The pool, closed off the async runtime: closing a synchronous `postgres` client blocks on
/// a runtime of its own, which panics on a thread that drives async tasks (where the last
/// handle to the store is often dropped).
struct Connections(Option<Pool>);

impl std::ops::Deref for Connections {
    type Target = Pool;

    fn deref(&self) -> &Pool {
        self.0.as_ref().expect("the pool is only taken when the store is dropped")
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new().name("ignis-pool-close".into()).spawn(move || drop(pool));
        }
    }
}

/// A store in a PostgreSQL database (or one schema of it).
pub type PostgresStore = SqlStore<Postgres>;

/// The PostgreSQL side of a [`PostgresStore`].
pub struct Postgres {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Connections,
    /// Resources this process created (by any write), for deciding when to `ANALYZE`.
    created: AtomicU64,
    /// The background `ANALYZE`: [`IDLE`], [`ANALYZING`], or [`ANALYZE_AGAIN`] when asked for
    /// while one runs (the running one then runs once more).
    analyze: AtomicU8,
}

/// How many resources this process creates before it first analyzes the tables.
const ANALYZE_FROM: u64 = 1024;

const IDLE: u8 = 0;
const ANALYZING: u8 = 1;
const ANALYZE_AGAIN: u8 = 2;

/// What `ANALYZE` covers: this store's tables (as the search path finds them), not every
/// schema of the database.
const TABLES: &str = "resources, resource_history, token_index, string_index, date_index, number_index, \
     quantity_index, reference_index, uri_index";

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?…`), applies any
    /// pending migrations and loads the search-parameter registry. Blocking.
    pub fn open(url: &str) -> Result<PostgresStore, Error> {
        PostgresStore::open_config(parse_url(url)?)
    }

    /// Like [`PostgresStore::open`], with every table in `schema` (created when missing)
    /// rather than in the connection's default `search_path`.
    pub fn open_in_schema(url: &str, schema: &str) -> Result<PostgresStore, Error> {
        check_schema_name(schema)?;
        let mut config = parse_url(url)?;
        let mut client = config.connect(NoTls)?;
        client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))?;
        drop(client);
        config.options(&format!("-c search_path={schema}"));
        PostgresStore::open_config(config)
    }

    /// Drops `schema` and everything in it: the clean-up of a throw-away schema opened with
    /// [`PostgresStore::open_in_schema`] (by benchmarks), once no store uses it. Blocking.
    pub fn drop_schema(url: &str, schema: &str) -> Result<(), Error> {
        check_schema_name(schema)?;
        let mut client = parse_url(url)?.connect(NoTls)?;
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))?;
        Ok(())
    }

    fn open_config(mut config: Config) -> Result<PostgresStore, Error> {
        config.connect_timeout(CONNECT_TIMEOUT);
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .connection_customizer(Box::new(Session))
            .build(manager)?;
        schema::migrate(&mut *pool.get()?)?;
        let inner = Inner { pool: Connections(Some(pool)), created: AtomicU64::new(0), analyze: AtomicU8::new(IDLE) };
        // Versions are ordered per resource by the previous version's instant (see
        // `sql::write::next_instant`), so the process clock needs no floor of its own.
        let store = SqlStore::new(Postgres { inner: Arc::new(inner) }, 0)?;
        watch_registry(Arc::downgrade(&store.shared));
        Ok(store)
    }

    /// Diagnostics: the PostgreSQL plans (`EXPLAIN` output, one text per statement) of the
    /// statements a search runs, without running them, for checking that the generated SQL
    /// can use the indexes. Includes are left out: their statements depend on a page's rows.
    pub async fn explain_search(&self, env: Environment, request: SearchRequest) -> Result<Vec<String>, Error> {
        self.read(move |db| explain::explain_search(db, env, &request)).await
    }
}

impl Backend for Postgres {
    const RETRIES: bool = true;

    /// Runs `work` in a `SERIALIZABLE` transaction, again after a serialization failure.
    fn write<T, E: WriteFailure>(
        &self,
        work: &mut dyn FnMut(&mut dyn Db) -> Result<T, E>,
        after: &mut dyn FnMut(&mut dyn Db) -> Result<(), Error>,
    ) -> Result<T, E> {
        let mut client = self.inner.pool.get().map_err(Error::from)?;
        let mut attempt = 1;
        let result = loop {
            // A panic drops the transaction, which rolls it back.
            let result = panic_guard::catch::<T, E>("a write", || {
                let mut transaction = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::Serializable)
                    .start()
                    .map_err(Error::from)?;
                let value = work(&mut PostgresDb(&mut transaction))?;
                transaction.commit().map_err(Error::from)?;
                Ok(value)
            });
            match result {
                Err(error) if is_serialization_failure(error.cause()) && attempt < WRITE_ATTEMPTS => {
                    tracing::debug!(attempt, "write lost a serialization race; retrying");
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                result => break result,
            }
        };
        after(&mut PostgresDb(&mut *client))?;
        result
    }

    fn read<T>(&self, work: &mut dyn FnMut(&mut dyn Db) -> Result<T, Error>) -> Result<T, Error> {
        let mut client = self.inner.pool.get()?;
        work(&mut PostgresDb(&mut *client))
    }

    /// Fresh statistics keep the planner on the right indexes as the tables grow (without
    /// any, it may read a resource by id through `resources_by_type_updated`, scanning every
    /// resource of the type): the tables are analyzed each time the resources this process
    /// created double, from [`ANALYZE_FROM`] on, in the background.
    fn created(&self, count: usize) {
        let count = count as u64;
        let before = self.inner.created.fetch_add(count, Ordering::Relaxed);
        let after = before + count;
        if after >= ANALYZE_FROM && before.leading_zeros() != after.leading_zeros() {
            analyze_in_background(&self.inner);
        }
    }
}

/// Runs `ANALYZE` on a thread of its own, or, when one is running, has it run once more
/// after (the tables grew since it sampled them).
fn analyze_in_background(inner: &Arc<Inner>) {
    let previous = inner.analyze.fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
        Some(if state == IDLE { ANALYZING } else { ANALYZE_AGAIN })
    });
    if previous != Ok(IDLE) {
        return;
    }
    let worker = Arc::clone(inner);
    let spawned = std::thread::Builder::new().name("ignis-analyze".into()).spawn(move || {
        loop {
            let analyzed = worker.pool.get().map_err(Error::from).and_then(|mut client| {
                client.batch_execute(&format!("ANALYZE {TABLES}"))?;
                Ok(())
            });
            if let Err(error) = analyzed {
                tracing::warn!(%error, "cannot analyze the tables after an import");
            }
            // Done unless someone asked again meanwhile; then once more.
            match worker.analyze.compare_exchange(ANALYZING, IDLE, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(_) => worker.analyze.store(ANALYZING, Ordering::Release),
            }
        }
    });
    if let Err(error) = spawned {
        inner.analyze.store(IDLE, Ordering::Release);
        tracing::warn!(%error, "cannot start a background ANALYZE");
    }
}

/// Checks for other processes' `SearchParameter` writes every [`REGISTRY_CHECK`] until the
/// store is dropped.
fn watch_registry(shared: Weak<Shared<Postgres>>) {
    let spawned = std::thread::Builder::new().name("ignis-registry-watch".into()).spawn(move || {
        loop {
            std::thread::sleep(REGISTRY_CHECK);
            let Some(shared) = shared.upgrade() else { return };
            if let Err(error) = refresh_registry(&shared) {
                tracing::debug!(%error, "cannot check the search parameters for changes");
            }
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the search-parameter watcher; other processes' changes need a restart");
    }
}

/// Reloads the registries if another process wrote a `SearchParameter` since they were loaded.
fn refresh_registry(shared: &Shared<Postgres>) -> Result<(), Error> {
    shared.backend.read(&mut |db| {
        if registry::mark(db)? != shared.registries.mark.load(Ordering::Relaxed) {
            tracing::info!("search parameters changed in the database; reloading them");
            registry::load(db, &shared.registries)?;
        }
        Ok(())
    })
}

/// Applies any pending migrations to the database at `url` (over one connection, without
/// opening a store) and returns its schema version before and after. Blocking.
pub(crate) fn migrate(url: &str) -> Result<SchemaVersions, Error> {
    let mut config = parse_url(url)?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let mut client = config.connect(NoTls)?;
    let before = schema::version(&mut client)?;
    schema::migrate(&mut client)?;
    let after = schema::version(&mut client)?;
    Ok(SchemaVersions { before, after })
}

/// Per-connection settings, applied when the pool opens a connection.
#[derive(Debug)]
struct Session;

impl r2d2::CustomizeConnection<Client, postgres::Error> for Session {
    fn on_acquire(&self, client: &mut Client) -> Result<(), postgres::Error> {
        client.batch_execute(&format!("SET statement_timeout = {}", STATEMENT_TIMEOUT.as_millis()))
    }
}

/// Schema names are spliced into SQL, so only plain ones are accepted.
fn check_schema_name(schema: &str) -> Result<(), Error> {
    if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::Database(format!("'{schema}' is not a plain schema name")));
    }
    Ok(())
}

fn parse_url(url: &str) -> Result<Config, Error> {
    url.parse::<Config>().map_err(|error| Error::Database(format!("invalid PostgreSQL connection string: {error}")))
}

/// True for the errors a retry of the whole transaction fixes.
fn is_serialization_failure(error: &Error) -> bool {
    matches!(error, Error::Unavailable(message) if message.starts_with(crate::error::SERIALIZATION_FAILURE))
}

/// A random pause that grows with the attempt, so racing writers spread out.
fn backoff(attempt: u32) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let ceiling = 2u64.pow(attempt.min(7)) * 1_000;
    Duration::from_micros(u64::from(nanos) % ceiling + 500)
}
