//! Platform records: the security layer's state that is not FHIR data (users, clients,
//! accounts, access requests, devices, certificates…), in one versioned store for both
//! databases.
//!
//! A record is a JSON document of a `kind` at an `id`, with a version, the time and author of
//! its last change, its history, and the lookup keys its kind declares (a client id, a
//! certificate thumbprint), unique or not. Writes are optimistic: an update names the
//! version it read and fails with [`Error::RecordConflict`] when another write got there
//! first. The crates above keep their records as typed structs ([`Kind`]) and use the typed
//! functions here, so a new kind of record needs no new SQL.
//!
//! Only state that a hot path touches on every request, or that needs semantics of its own
//! (the audit chain, revocation and `jti` lists with expiry, rate-limit buckets, job leases),
//! gets a table of its own (see ARCHITECTURE.md).

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::Error;

/// One version of a record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: String,
    pub id: String,
    pub version: u64,
    pub updated: OffsetDateTime,
    /// Who made the change: a user, an operator, or a process (`"system"`).
    pub updated_by: String,
    /// True for the version a delete writes; `body` is then empty.
    pub deleted: bool,
    /// The JSON document.
    pub body: String,
}

/// A lookup key of a record: `name` = `value`, unique among live records of its kind or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey {
    pub name: &'static str,
    pub value: String,
    pub unique: bool,
}

impl RecordKey {
    /// A key no other live record of the kind may hold.
    pub fn unique(name: &'static str, value: impl Into<String>) -> RecordKey {
        RecordKey { name, value: value.into(), unique: true }
    }

    /// A key many records may share (e.g. the account a device belongs to).
    pub fn shared(name: &'static str, value: impl Into<String>) -> RecordKey {
        RecordKey { name, value: value.into(), unique: false }
    }
}

/// A write of a record: a new version of `kind`/`id`.
#[derive(Debug, Clone)]
pub struct RecordWrite {
    pub kind: &'static str,
    pub id: String,
    /// `None` creates the record ([`Error::RecordExists`] if it lives); `Some(n)` replaces
    /// version `n` ([`Error::RecordConflict`] if it is no longer the current one).
    pub expected: Option<u64>,
    /// The JSON document; `None` deletes the record.
    pub body: Option<String>,
    pub keys: Vec<RecordKey>,
    pub updated_by: String,
}

/// The versioned record store; every [`crate::Store`] is one.
#[async_trait]
pub trait Records: Send + Sync {
    /// Writes a new version and returns it.
    async fn write_record(&self, write: RecordWrite) -> Result<Record, Error>;

    /// The current version (a deleted record's tombstone included); `None` if it never
    /// existed.
    async fn record(&self, kind: &str, id: &str) -> Result<Option<Record>, Error>;

    /// Live records of `kind` whose key `name` has `value`, by id.
    async fn find_records(&self, kind: &str, name: &str, value: &str) -> Result<Vec<Record>, Error>;

    /// Every version of a record, oldest first.
    async fn record_history(&self, kind: &str, id: &str) -> Result<Vec<Record>, Error>;
}

/// A kind of record kept as a typed struct.
pub trait Kind: Serialize + DeserializeOwned + Send + Sync {
    /// The kind's name in the store (`"client"`, `"device"`…).
    const KIND: &'static str;

    /// The lookup keys of this value.
    fn keys(&self) -> Vec<RecordKey> {
        Vec::new()
    }
}

/// A typed record at a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub id: String,
    pub version: u64,
    pub updated: OffsetDateTime,
    pub updated_by: String,
    pub value: T,
}

impl<T: Kind> Versioned<T> {
    fn from_record(record: Record) -> Result<Versioned<T>, Error> {
        let value = serde_json::from_str(&record.body).map_err(|error| Error::InvalidRecord {
            kind: T::KIND.to_owned(),
            id: record.id.clone(),
            reason: error.to_string(),
        })?;
        Ok(Versioned {
            id: record.id,
            version: record.version,
            updated: record.updated,
            updated_by: record.updated_by,
            value,
        })
    }
}

fn write_of<T: Kind>(id: &str, value: &T, expected: Option<u64>, by: &str) -> Result<RecordWrite, Error> {
    let body = serde_json::to_string(value).map_err(|error| Error::InvalidRecord {
        kind: T::KIND.to_owned(),
        id: id.to_owned(),
        reason: error.to_string(),
    })?;
    Ok(RecordWrite {
        kind: T::KIND,
        id: id.to_owned(),
        expected,
        body: Some(body),
        keys: value.keys(),
        updated_by: by.to_owned(),
    })
}

/// Creates `value` at `id`, by `by`.
pub async fn create<T: Kind>(store: &dyn Records, id: &str, value: &T, by: &str) -> Result<Versioned<T>, Error> {
    Versioned::from_record(store.write_record(write_of(id, value, None, by)?).await?)
}

/// Replaces version `expected` of `id` with `value`.
pub async fn update<T: Kind>(
    store: &dyn Records,
    id: &str,
    value: &T,
    expected: u64,
    by: &str,
) -> Result<Versioned<T>, Error> {
    Versioned::from_record(store.write_record(write_of(id, value, Some(expected), by)?).await?)
}

/// Deletes version `expected` of `id`.
pub async fn delete<T: Kind>(store: &dyn Records, id: &str, expected: u64, by: &str) -> Result<(), Error> {
    let write = RecordWrite {
        kind: T::KIND,
        id: id.to_owned(),
        expected: Some(expected),
        body: None,
        keys: Vec::new(),
        updated_by: by.to_owned(),
    };
    store.write_record(write).await.map(drop)
}

/// The live record at `id`.
pub async fn get<T: Kind>(store: &dyn Records, id: &str) -> Result<Option<Versioned<T>>, Error> {
    match store.record(T::KIND, id).await? {
        Some(record) if !record.deleted => Versioned::from_record(record).map(Some),
        _ => Ok(None),
    }
}

/// Live records whose key `name` has `value`.
pub async fn find<T: Kind>(store: &dyn Records, name: &str, value: &str) -> Result<Vec<Versioned<T>>, Error> {
    store.find_records(T::KIND, name, value).await?.into_iter().map(Versioned::from_record).collect()
}

/// Reads the record at `id`, applies `change` and writes it back, again from a fresh read
/// when another write got there first (at most `ATTEMPTS` times): read-modify-write
/// without losing a concurrent change. [`Error::RecordNotFound`] when it does not live.
pub async fn modify<T: Kind>(
    store: &dyn Records,
    id: &str,
    by: &str,
    mut change: impl FnMut(&mut T) + Send,
) -> Result<Versioned<T>, Error> {
    try_modify(store, id, by, |value: &mut T| {
        change(value);
        Ok::<(), Error>(())
    })
    .await
}

/// [`modify`] with a change that may refuse (a state machine's illegal step): its error is
/// returned, judged on the current version, and nothing is written.
pub async fn try_modify<T: Kind, E: From<Error>>(
    store: &dyn Records,
    id: &str,
    by: &str,
    mut change: impl FnMut(&mut T) -> Result<(), E> + Send,
) -> Result<Versioned<T>, E> {
    const ATTEMPTS: usize = 32;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let Some(mut current) = get::<T>(store, id).await? else {
            return Err(Error::RecordNotFound { kind: T::KIND.to_owned(), id: id.to_owned() }.into());
        };
        change(&mut current.value)?;
        match update(store, id, &current.value, current.version, by).await {
            Err(error @ Error::RecordConflict { .. }) => last = Some(error),
            result => return Ok(result?),
        }
    }
    Err(last.unwrap_or_else(|| Error::RecordNotFound { kind: T::KIND.to_owned(), id: id.to_owned() }).into())
}
