//! [`SqlStore`]: the one implementation of [`Store`] for both databases. A [`Backend`] gives it
//! connections (a write transaction, a read); everything it does with them is in
//! [`crate::sql`]. All database work runs on tokio's blocking pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use fhir::id::{LogicalId, ResourceType};
use fhir::search::{Criteria, Registry};
use serde_json::Value;
use time::OffsetDateTime;

use crate::audit::{Audit, ChainKey, Entry, Event, Head, Query};
use crate::clock::{WriteClock, WriteContext, from_micros, micros};
use crate::expiring::Expiring;
use crate::leases::Leases;
use crate::records::{Record, RecordWrite, Records};
use crate::registry::{self, Registries};
use crate::sql::db::Db;
use crate::sql::write::VersionWrite;
use crate::sql::{audit, buckets, bundle, expiring, import, leases, read, records, search, write};
use crate::{
    EntryOutcome, Environment, Error, ExpectedVersion, HistoryPage, HistoryQuery, ImportCounts, ImportResource, Method,
    SearchPage, SearchRequest, Store, StoredResource, TransactionError, TransactionRequest, WriteKind, WriteOutcome,
};

/// How one database hands out connections. Calls block; the store makes them on tokio's
/// blocking pool.
pub(crate) trait Backend: Send + Sync + 'static {
    /// True when [`Backend::write`] may run its work more than once.
    const RETRIES: bool;

    /// Runs `work` in one write transaction and commits it; a failure or a panic of `work`
    /// rolls it back. `work` may run more than once (PostgreSQL retries a transaction that
    /// lost a serialization race), so it must not consume its inputs. `after` runs once
    /// the transaction has ended, on the same connection (SQLite's writer lock still held).
    fn write<T, E: WriteFailure>(
        &self,
        work: &mut dyn FnMut(&mut dyn Db) -> Result<T, E>,
        after: &mut dyn FnMut(&mut dyn Db) -> Result<(), Error>,
    ) -> Result<T, E>;

    /// Runs `work` on a connection that reads committed data.
    fn read<T>(&self, work: &mut dyn FnMut(&mut dyn Db) -> Result<T, Error>) -> Result<T, Error>;

    /// Called with the number of resources each write created (PostgreSQL analyzes its tables
    /// as they grow).
    fn created(&self, _count: usize) {}
}

/// An error a write may end with: a store [`Error`], or a [`TransactionError`] that also
/// names the entry that failed.
pub(crate) trait WriteFailure: From<Error> {
    /// The store error underneath.
    fn cause(&self) -> &Error;
}

impl WriteFailure for Error {
    fn cause(&self) -> &Error {
        self
    }
}

impl WriteFailure for TransactionError {
    fn cause(&self) -> &Error {
        &self.error
    }
}

/// An input a write's work consumes: handed over the first time, or, when the backend may
/// retry the work, cloned each time (so SQLite's single attempt copies nothing).
struct Input<T> {
    value: Option<T>,
    keep: bool,
}

impl<T: Clone> Input<T> {
    fn new<B: Backend>(value: T) -> Input<T> {
        Input { value: Some(value), keep: B::RETRIES }
    }

    fn get(&mut self) -> Result<T, Error> {
        let value = if self.keep { self.value.clone() } else { self.value.take() };
        value.ok_or_else(|| Error::Database("a write's input was used twice".into()))
    }
}

/// A [`Store`] over any [`Backend`]: `SqliteStore` and `PostgresStore`.
pub struct SqlStore<B> {
    pub(crate) shared: Arc<Shared<B>>,
    /// The event every FHIR write of this handle appends ([`Audit::audited`]).
    audit: Option<Arc<Event>>,
}

/// What the store's calls share across threads.
pub(crate) struct Shared<B> {
    pub(crate) backend: B,
    pub(crate) clock: WriteClock,
    /// The search parameters of each partition; replaced after a `SearchParameter` is written.
    pub(crate) registries: Registries,
    /// How many times `remember` was called: every [`PURGE_EVERY`]th call also purges.
    pub(crate) remembers: AtomicU64,
    /// The key audit chains are hashed with, once set.
    audit_key: OnceLock<ChainKey>,
    /// This process's audit chains not in use by a write.
    lanes: audit::Lanes,
}

impl<B> Shared<B> {
    /// The audit key, or why nothing can be audited yet.
    fn audit_key(&self) -> Result<ChainKey, Error> {
        self.audit_key.get().cloned().ok_or_else(|| Error::Database("the audit log's key is not set".into()))
    }
}

/// How often `remember` purges expired entries, and how many at most: frequent enough that a
/// list never holds much more than its live entries, rare and small enough to cost nothing.
const PURGE_EVERY: u64 = 64;
const PURGE_BATCH: usize = 256;

// The backends are the store's own: callers name `SqliteStore` and `PostgresStore`.
#[allow(private_bounds)]
impl<B: Backend> SqlStore<B> {
    /// A store over `backend`, with its registries loaded and a clock that never goes back
    /// before `floor` (microseconds).
    pub(crate) fn new(backend: B, floor: i64) -> Result<SqlStore<B>, Error> {
        let registries = Registries::official();
        backend.read(&mut |db| registry::load(db, &registries))?;
        let shared = Shared {
            backend,
            clock: WriteClock::starting_after(floor),
            registries,
            remembers: AtomicU64::new(0),
            audit_key: OnceLock::new(),
            lanes: audit::Lanes::default(),
        };
        Ok(SqlStore { shared: Arc::new(shared), audit: None })
    }

    /// Runs `work` in a write transaction of partition `env`, on the blocking pool; reloads
    /// the registries when it wrote a `SearchParameter`.
    async fn write<T, E, F>(&self, env: Environment, mut work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: WriteFailure + Send + 'static,
        F: FnMut(&mut dyn Db, &WriteContext<'_>) -> Result<T, E> + Send + 'static,
    {
        let (shared, event) = (Arc::clone(&self.shared), self.audit.clone());
        run_blocking(move || {
            let registry = shared.registries.get(env);
            let context = WriteContext::new(&shared.clock, &registry, event.as_deref());
            let audit = match event {
                Some(_) => Some((shared.audit_key()?, shared.lanes.take())),
                None => None,
            };
            let result = shared.backend.write(
                &mut |db| {
                    context.begin();
                    let value = work(db, &context)?;
                    if let (Some((key, chain)), Some(event)) = (&audit, context.audit_event()) {
                        audit::append(db, key, &shared.clock, chain, std::slice::from_ref(&event))?;
                    }
                    Ok(value)
                },
                &mut |db| {
                    if context.search_parameters_changed() {
                        registry::load(db, &shared.registries)?;
                    }
                    Ok(())
                },
            );
            if let Some((_, chain)) = audit {
                shared.lanes.give(chain);
            }
            result
        })
        .await
    }

    /// Runs `work` in a write transaction with an audit chain of its own, on the blocking
    /// pool; `work` is given the audit key when it is set.
    async fn write_with_chain<T, F>(&self, mut work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Db, &WriteClock, Option<(&ChainKey, &str)>) -> Result<T, Error> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        run_blocking(move || {
            let key = shared.audit_key.get();
            let chain = key.map(|_| shared.lanes.take());
            let result =
                shared.backend.write(&mut |db| work(db, &shared.clock, key.zip(chain.as_deref())), &mut |_| Ok(()));
            if let Some(chain) = chain {
                shared.lanes.give(chain);
            }
            result
        })
        .await
    }

    /// Runs `work` with a reading connection on the blocking pool.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Db) -> Result<T, Error> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        run_blocking(move || {
            let mut work = Some(work);
            shared.backend.read(&mut |db| match work.take() {
                Some(work) => work(db),
                None => Err(Error::Database("a read ran twice".into())),
            })
        })
        .await
    }

    /// A write's outcome, counted for the backend when it created a resource.
    fn count_created(&self, outcome: WriteOutcome) -> WriteOutcome {
        self.shared.backend.created(usize::from(outcome.kind == WriteKind::Created));
        outcome
    }
}

async fn run_blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<Error> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| E::from(Error::Database(format!("database task failed: {error}"))))?
}

#[async_trait]
#[allow(private_bounds)]
impl<B: Backend> Records for SqlStore<B> {
    async fn write_record(&self, write: RecordWrite) -> Result<Record, Error> {
        // Every change to a platform record is audited with it, once the audit key is set.
        self.write_with_chain(move |db, clock, audit| {
            let record = records::write(db, clock, &write)?;
            if let Some((key, chain)) = audit {
                audit::append(db, key, clock, chain, &[audit::record_event(&record)])?;
            }
            Ok(record)
        })
        .await
    }

    async fn record(&self, kind: &str, id: &str) -> Result<Option<Record>, Error> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        SqlStore::read(self, move |db| records::record(db, &kind, &id, false)).await
    }

    async fn find_records(&self, kind: &str, name: &str, value: &str) -> Result<Vec<Record>, Error> {
        let (kind, name, value) = (kind.to_owned(), name.to_owned(), value.to_owned());
        SqlStore::read(self, move |db| records::find(db, &kind, &name, &value)).await
    }

    async fn record_history(&self, kind: &str, id: &str) -> Result<Vec<Record>, Error> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        SqlStore::read(self, move |db| records::history(db, &kind, &id)).await
    }
}

#[async_trait]
#[allow(private_bounds)]
impl<B: Backend> Expiring for SqlStore<B> {
    async fn remember(
        &self,
        list: &str,
        key: &str,
        expires: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, Error> {
        let (list, key, expires, at) = (list.to_owned(), key.to_owned(), micros(expires), micros(now));
        // Expiring lists belong to no partition; the write context goes unused.
        let new =
            self.write(Environment::Production, move |db, _| expiring::remember(db, &list, &key, expires, at)).await?;
        if self.shared.remembers.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            // In a transaction of its own, so that it never delays or fails the remember.
            if let Err(error) = self.purge_expired(now, PURGE_BATCH).await {
                tracing::warn!(%error, "purging expired list entries failed");
            }
        }
        Ok(new)
    }

    async fn remembered(&self, list: &str, key: &str, now: OffsetDateTime) -> Result<bool, Error> {
        let (list, key, now) = (list.to_owned(), key.to_owned(), micros(now));
        SqlStore::read(self, move |db| expiring::remembered(db, &list, &key, now)).await
    }

    async fn listed(&self, list: &str, now: OffsetDateTime) -> Result<Vec<(String, OffsetDateTime)>, Error> {
        let (list, now) = (list.to_owned(), micros(now));
        let entries = SqlStore::read(self, move |db| expiring::listed(db, &list, now)).await?;
        Ok(entries.into_iter().map(|(key, expires)| (key, from_micros(expires))).collect())
    }

    async fn purge_expired(&self, now: OffsetDateTime, limit: usize) -> Result<u64, Error> {
        let now = micros(now);
        self.write(Environment::Production, move |db, _| expiring::purge(db, now, limit)).await
    }
}

#[async_trait]
#[allow(private_bounds)]
impl<B: Backend> Leases for SqlStore<B> {
    async fn claim(
        &self,
        name: &str,
        owner: &str,
        expires: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, Error> {
        let (name, owner, expires, now) = (name.to_owned(), owner.to_owned(), micros(expires), micros(now));
        // Leases belong to no partition; the write context goes unused.
        self.write(Environment::Production, move |db, _| leases::claim(db, &name, &owner, expires, now)).await
    }

    async fn release(&self, name: &str, owner: &str) -> Result<bool, Error> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.write(Environment::Production, move |db, _| leases::release(db, &name, &owner)).await
    }
}

#[async_trait]
#[allow(private_bounds)]
impl<B: Backend> Store for SqlStore<B> {
    async fn read(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        id: &LogicalId,
    ) -> Result<Option<StoredResource>, Error> {
        let (resource_type, id) = (resource_type.clone(), id.clone());
        SqlStore::read(self, move |db| read::read(db, env, &resource_type, &id)).await
    }

    async fn vread(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        id: &LogicalId,
        version: u64,
    ) -> Result<Option<StoredResource>, Error> {
        let (resource_type, id) = (resource_type.clone(), id.clone());
        SqlStore::read(self, move |db| read::vread(db, env, &resource_type, &id, version)).await
    }

    async fn create(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        resource: Value,
        condition: Option<Criteria>,
    ) -> Result<WriteOutcome, Error> {
        let (resource_type, mut resource) = (resource_type.clone(), Input::new::<B>(resource));
        let outcome = self
            .write(env, move |db, context| {
                write::create(db, context, env, &resource_type, resource.get()?, condition.as_ref())
            })
            .await?;
        Ok(self.count_created(outcome))
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
        let (resource_type, id, mut resource) = (resource_type.clone(), id.clone(), Input::new::<B>(resource));
        let outcome = self
            .write(env, move |db, context| {
                let write = VersionWrite::new(&resource_type, &id, expected, method);
                write::write_version(db, context, env, write, resource.get()?)
            })
            .await?;
        Ok(self.count_created(outcome))
    }

    async fn conditional_update(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        criteria: Criteria,
        resource: Value,
    ) -> Result<WriteOutcome, Error> {
        let (resource_type, mut resource) = (resource_type.clone(), Input::new::<B>(resource));
        let outcome = self
            .write(env, move |db, context| {
                write::conditional_update(db, context, env, &resource_type, &criteria, resource.get()?)
            })
            .await?;
        Ok(self.count_created(outcome))
    }

    async fn delete(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        id: &LogicalId,
        expected: ExpectedVersion,
    ) -> Result<Option<u64>, Error> {
        let (resource_type, id) = (resource_type.clone(), id.clone());
        self.write(env, move |db, context| write::delete(db, context, env, &resource_type, &id, expected)).await
    }

    async fn conditional_delete(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        criteria: Criteria,
    ) -> Result<usize, Error> {
        let resource_type = resource_type.clone();
        self.write(env, move |db, context| write::conditional_delete(db, context, env, &resource_type, &criteria)).await
    }

    async fn find(
        &self,
        env: Environment,
        resource_type: &ResourceType,
        criteria: Criteria,
        limit: usize,
    ) -> Result<Vec<StoredResource>, Error> {
        let resource_type = resource_type.clone();
        SqlStore::read(self, move |db| read::find(db, env, &resource_type, &criteria, limit)).await
    }

    fn registry(&self, env: Environment) -> Arc<Registry> {
        self.shared.registries.get(env)
    }

    async fn reindex(&self, after: i64, limit: usize) -> Result<Option<i64>, Error> {
        let shared = Arc::clone(&self.shared);
        // Each row is indexed with its own partition's registry, not the write's.
        self.write(Environment::Production, move |db, _| registry::reindex(db, &shared.registries, after, limit)).await
    }

    async fn count_resources(&self) -> Result<u64, Error> {
        SqlStore::read(self, read::count_resources).await
    }

    async fn search(&self, env: Environment, request: SearchRequest) -> Result<SearchPage, Error> {
        SqlStore::read(self, move |db| search::search_within_limit(db, env, &request)).await
    }

    async fn history(&self, env: Environment, history: HistoryQuery) -> Result<HistoryPage, Error> {
        SqlStore::read(self, move |db| read::history(db, env, &history)).await
    }

    async fn transaction(
        &self,
        env: Environment,
        request: TransactionRequest,
    ) -> Result<Vec<EntryOutcome>, TransactionError> {
        let mut request = Input::new::<B>(request);
        let outcomes =
            self.write(env, move |db, context| bundle::transaction(db, context, env, request.get()?)).await?;
        let created = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, EntryOutcome::Written(written) if written.kind == WriteKind::Created))
            .count();
        self.shared.backend.created(created);
        Ok(outcomes)
    }

    async fn import(&self, env: Environment, resources: Vec<ImportResource>) -> Result<ImportCounts, Error> {
        let counts = self.write(env, move |db, context| import::import(db, context, env, &resources)).await?;
        self.shared.backend.created(counts.created);
        Ok(counts)
    }
}

#[async_trait]
#[allow(private_bounds)]
impl<B: Backend> Audit for SqlStore<B> {
    fn set_audit_key(&self, key: ChainKey) {
        // The first key stays: chains are verified with the key they were written with.
        let _ = self.shared.audit_key.set(key);
    }

    fn audited(&self, event: Event) -> Arc<dyn Store> {
        Arc::new(SqlStore { shared: Arc::clone(&self.shared), audit: Some(Arc::new(event)) })
    }

    async fn append_audit(&self, events: Vec<Event>) -> Result<(), Error> {
        let key = self.shared.audit_key()?;
        self.write_with_chain(move |db, clock, audit| match audit {
            Some((_, chain)) => audit::append(db, &key, clock, chain, &events),
            None => Err(Error::Database("the audit log's key is not set".into())),
        })
        .await
    }

    async fn audit_heads(&self) -> Result<Vec<Head>, Error> {
        SqlStore::read(self, audit::heads).await
    }

    async fn audit_chain(&self, chain: &str, after: u64, limit: usize) -> Result<Vec<Entry>, Error> {
        let chain = chain.to_owned();
        SqlStore::read(self, move |db| audit::chain(db, &chain, after, limit)).await
    }

    async fn fold_audit_terms(&self, limit: usize) -> Result<u64, Error> {
        self.write(Environment::Production, move |db, _| audit::fold(db, limit)).await
    }

    async fn audit_chains_without_head(&self) -> Result<Vec<String>, Error> {
        SqlStore::read(self, audit::headless).await
    }

    async fn search_audit(&self, query: Query) -> Result<Vec<Entry>, Error> {
        SqlStore::read(self, move |db| audit::search(db, &query)).await
    }
}

#[async_trait]
#[allow(private_bounds)]
impl<B: Backend> crate::buckets::Buckets for SqlStore<B> {
    async fn take(
        &self,
        key: &str,
        want: u32,
        rate: crate::buckets::Rate,
        now: OffsetDateTime,
    ) -> Result<crate::buckets::Taken, Error> {
        let (key, now) = (key.to_owned(), micros(now));
        // Buckets belong to no partition; the write context goes unused.
        self.write(Environment::Production, move |db, _| buckets::take(db, &key, want, rate, now)).await
    }

    async fn reset_buckets(&self, prefix: &str) -> Result<u64, Error> {
        let prefix = prefix.to_owned();
        self.write(Environment::Production, move |db, _| buckets::reset(db, &prefix)).await
    }
}
