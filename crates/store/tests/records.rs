//! Platform records on both databases: create, optimistic update, history, lookups by each
//! declared key, delete, and two processes updating one record without losing a change.
//!
//! The PostgreSQL tests need `IGNIS_TEST_POSTGRES_URL` (CI sets it through
//! `.ci/with-postgres`); each runs in a throw-away schema.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use store::records::{self, Kind, RecordKey, Records};
use store::{Error, Store};

mod common;
use common::Database;

/// A record kind as the security layer will declare them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Client {
    client_id: String,
    account: String,
    counter: u64,
}

impl Kind for Client {
    const KIND: &'static str = "test-client";

    fn keys(&self) -> Vec<RecordKey> {
        vec![RecordKey::unique("client_id", &self.client_id), RecordKey::shared("account", &self.account)]
    }
}

fn client(client_id: &str, account: &str) -> Client {
    Client { client_id: client_id.into(), account: account.into(), counter: 0 }
}

async fn create_update_and_conflict(database: Database) {
    let store = database.open().await;
    let store: &dyn Records = &*store;
    let created = records::create(store, "c1", &client("app-1", "acme"), "alice").await.expect("create");
    assert_eq!((created.version, created.updated_by.as_str()), (1, "alice"));
    let again = records::create(store, "c1", &client("app-1", "acme"), "alice").await;
    assert!(matches!(again, Err(Error::RecordExists { .. })), "{again:?}");

    let mut changed = created.value.clone();
    changed.counter = 7;
    let updated = records::update(store, "c1", &changed, 1, "bob").await.expect("update");
    assert_eq!((updated.version, updated.value.counter), (2, 7));
    assert!(updated.updated > created.updated);

    let stale = records::update(store, "c1", &changed, 1, "carol").await;
    match stale {
        Err(Error::RecordConflict { expected: 1, current: 2, .. }) => {}
        other => panic!("a stale update must conflict, got {other:?}"),
    }
    let missing = records::update(store, "nope", &changed, 1, "carol").await;
    assert!(matches!(missing, Err(Error::RecordNotFound { .. })), "{missing:?}");
    let read = records::get::<Client>(store, "c1").await.expect("get").expect("lives");
    assert_eq!((read.version, read.value), (2, changed));
}

async fn history_keeps_every_version(database: Database) {
    let store = database.open().await;
    let store: &dyn Records = &*store;
    let mut value = client("app-h", "acme");
    records::create(store, "h", &value, "alice").await.expect("create");
    value.counter = 1;
    records::update(store, "h", &value, 1, "bob").await.expect("update");
    records::delete::<Client>(store, "h", 2, "carol").await.expect("delete");
    let history = store.record_history(Client::KIND, "h").await.expect("history");
    let summary: Vec<(u64, &str, bool)> =
        history.iter().map(|record| (record.version, record.updated_by.as_str(), record.deleted)).collect();
    assert_eq!(summary, [(1, "alice", false), (2, "bob", false), (3, "carol", true)]);
    assert!(history[1].body.contains("\"counter\":1"), "{}", history[1].body);
    assert!(records::get::<Client>(store, "h").await.expect("get").is_none());
    // A deleted record can be created again, as its next version.
    let again = records::create(store, "h", &value, "dave").await.expect("create again");
    assert_eq!(again.version, 4);
}

async fn lookups_by_each_declared_key(database: Database) {
    let store = database.open().await;
    let store: &dyn Records = &*store;
    records::create(store, "a", &client("app-a", "acme"), "op").await.expect("create a");
    records::create(store, "b", &client("app-b", "acme"), "op").await.expect("create b");
    records::create(store, "c", &client("app-c", "other"), "op").await.expect("create c");

    let by_client = records::find::<Client>(store, "client_id", "app-b").await.expect("find");
    assert_eq!(by_client.iter().map(|found| found.id.as_str()).collect::<Vec<_>>(), ["b"]);
    let by_account = records::find::<Client>(store, "account", "acme").await.expect("find");
    assert_eq!(by_account.iter().map(|found| found.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);

    // A unique key another record holds is refused, and nothing is written.
    let taken = records::create(store, "d", &client("app-a", "acme"), "op").await;
    assert!(matches!(taken, Err(Error::RecordKeyTaken { .. })), "{taken:?}");
    assert!(store.record(Client::KIND, "d").await.expect("read").is_none());

    // Keys follow the current version; a deleted record is found by none.
    records::update(store, "a", &client("app-a2", "other"), 1, "op").await.expect("update a");
    assert!(records::find::<Client>(store, "client_id", "app-a").await.expect("find").is_empty());
    let other = records::find::<Client>(store, "account", "other").await.expect("find");
    assert_eq!(other.iter().map(|found| found.id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    records::delete::<Client>(store, "c", 1, "op").await.expect("delete c");
    let other = records::find::<Client>(store, "account", "other").await.expect("find");
    assert_eq!(other.iter().map(|found| found.id.as_str()).collect::<Vec<_>>(), ["a"]);
    // The freed unique key can be taken again.
    records::create(store, "e", &client("app-a", "acme"), "op").await.expect("the old key is free");
}

/// Two stores on one database (two server processes) each add to one counter many times,
/// concurrently: optimistic retries lose neither's changes.
async fn two_processes_lose_no_change(database: Database) {
    const EACH: u64 = 25;
    let (first, second) = (database.open().await, database.open().await);
    records::create(&*first, "shared", &client("app-s", "acme"), "op").await.expect("create");
    let add = |store: Arc<dyn Store>, who: &'static str| {
        tokio::spawn(async move {
            for _ in 0..EACH {
                records::modify::<Client>(&*store, "shared", who, |value| value.counter += 1).await.expect("modify");
            }
        })
    };
    let (one, two) = (add(Arc::clone(&first), "one"), add(Arc::clone(&second), "two"));
    one.await.expect("first writer");
    two.await.expect("second writer");
    let last = records::get::<Client>(&*second, "shared").await.expect("get").expect("lives");
    assert_eq!(last.value.counter, 2 * EACH);
    assert_eq!(last.version, 2 * EACH + 1);
    let history = first.record_history(Client::KIND, "shared").await.expect("history");
    assert_eq!(history.len() as u64, 2 * EACH + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_create_update_and_conflict() {
    create_update_and_conflict(Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_history_keeps_every_version() {
    history_keeps_every_version(Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lookups_by_each_declared_key() {
    lookups_by_each_declared_key(Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_processes_lose_no_change() {
    two_processes_lose_no_change(Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn postgres_create_update_and_conflict() {
    create_update_and_conflict(Database::postgres("records")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn postgres_history_keeps_every_version() {
    history_keeps_every_version(Database::postgres("records")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn postgres_lookups_by_each_declared_key() {
    lookups_by_each_declared_key(Database::postgres("records")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn postgres_two_processes_lose_no_change() {
    two_processes_lose_no_change(Database::postgres("records")).await;
}
