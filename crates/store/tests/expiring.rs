//! Expiring lists on both databases: a key is new once until it expires, lists are apart,
//! expired entries are replaced and purged, and of concurrent `remember`s of one key (from two
//! stores on one database: two server processes) exactly one is told the key was new.
//!
//! The PostgreSQL tests need `IGNIS_TEST_POSTGRES_URL` (CI sets it through
//! `.ci/with-postgres`); each runs in a throw-away schema.

use std::sync::Arc;

use store::expiring::Expiring;
use time::{Duration, OffsetDateTime};

mod common;
use common::Database;

/// A fixed instant, so expiry is decided by the `now` each call passes.
fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::seconds(1_700_000_000 + seconds)
}

async fn a_key_is_new_once_until_it_expires(database: Database) {
    let store = database.open().await;
    let lists: &dyn Expiring = &*store;
    assert!(!lists.remembered("jti", "a", at(0)).await.expect("remembered"));
    assert!(lists.remember("jti", "a", at(60), at(0)).await.expect("remember"), "a new key");
    assert!(!lists.remember("jti", "a", at(120), at(30)).await.expect("remember"), "a replay");
    assert!(lists.remembered("jti", "a", at(59)).await.expect("remembered"));
    // The replay did not extend the entry.
    assert!(!lists.remembered("jti", "a", at(60)).await.expect("remembered"), "expired at its instant");
    // Lists are apart.
    assert!(!lists.remembered("revoked", "a", at(0)).await.expect("remembered"));
    assert!(lists.remember("revoked", "a", at(60), at(0)).await.expect("remember"));
    // An expired entry is replaced, with its new expiry.
    assert!(lists.remember("jti", "a", at(200), at(60)).await.expect("remember"), "expired, so new again");
    assert!(lists.remembered("jti", "a", at(199)).await.expect("remembered"));
    assert!(!lists.remember("jti", "a", at(300), at(150)).await.expect("remember"));
    // A list's live entries, with their expiry.
    assert!(lists.remember("jti", "b", at(100), at(0)).await.expect("remember"));
    let mut live = lists.listed("jti", at(150)).await.expect("listed");
    live.sort();
    assert_eq!(live, [("a".to_owned(), at(200))], "b expired at 100; revoked is another list");
    assert_eq!(lists.listed("revoked", at(0)).await.expect("listed"), [("a".to_owned(), at(60))]);
}

async fn expired_entries_are_purged_in_batches(database: Database) {
    let store = database.open().await;
    let lists: &dyn Expiring = &*store;
    for (key, expires) in [("old-1", 10), ("old-2", 20), ("old-3", 30), ("live", 1_000)] {
        assert!(lists.remember("jti", key, at(expires), at(0)).await.expect("remember"));
    }
    assert!(lists.remember("revoked", "old-4", at(40), at(0)).await.expect("remember"));
    assert_eq!(lists.purge_expired(at(100), 3).await.expect("purge"), 3);
    assert_eq!(lists.purge_expired(at(100), 3).await.expect("purge"), 1);
    assert_eq!(lists.purge_expired(at(100), 3).await.expect("purge"), 0);
    assert!(lists.remembered("jti", "live", at(100)).await.expect("remembered"), "an unexpired entry stays");
    // `remember` purges now and then by itself: many calls leave no expired entry behind.
    for index in 0..200 {
        lists.remember("jti", &format!("short-{index}"), at(1), at(0)).await.expect("remember");
    }
    for index in 0..200 {
        lists.remember("jti", &format!("later-{index}"), at(1_000), at(500)).await.expect("remember");
    }
    assert!(lists.purge_expired(at(500), 1_000).await.expect("purge") < 200, "some were purged along the way");
}

/// Many tasks over two stores (two server processes) remember one key at once: exactly one
/// is told it was new, for a fresh key and for one whose entry has just expired.
async fn concurrent_remembers_agree_on_one(database: Database) {
    const TASKS: usize = 8;
    let stores = [database.open().await, database.open().await];
    for round in 0..5 {
        let key = format!("jti-{round}");
        if round % 2 == 1 {
            // An entry that has expired by the time the race runs.
            assert!(stores[0].remember("jti", &key, at(5), at(0)).await.expect("remember"));
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = Arc::clone(&stores[task % 2]);
                let (key, barrier) = (key.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.remember("jti", &key, at(100), at(10)).await.expect("remember")
                })
            })
            .collect();
        let mut new = 0;
        for task in tasks {
            new += usize::from(task.await.expect("task"));
        }
        assert_eq!(new, 1, "round {round}: exactly one remember is told the key was new");
        assert!(stores[1].remembered("jti", &key, at(99)).await.expect("remembered"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_key_is_new_once_until_it_expires() {
    a_key_is_new_once_until_it_expires(Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_expired_entries_are_purged_in_batches() {
    expired_entries_are_purged_in_batches(Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_remembers_agree_on_one() {
    concurrent_remembers_agree_on_one(Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn postgres_a_key_is_new_once_until_it_expires() {
    a_key_is_new_once_until_it_expires(Database::postgres("expiring")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn postgres_expired_entries_are_purged_in_batches() {
    expired_entries_are_purged_in_batches(Database::postgres("expiring")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn postgres_concurrent_remembers_agree_on_one() {
    concurrent_remembers_agree_on_one(Database::postgres("expiring")).await;
}
