//! Leases on both databases: a lease is one owner's until it expires or is released, its
//! owner renews it, and of concurrent claims from two stores on one database (two server
//! processes) exactly one wins.
//!
//! The PostgreSQL tests need `IGNIS_TEST_POSTGRES_URL` (CI sets it through
//! `.ci/with-postgres`); each runs in a throw-away schema.

use std::sync::Arc;

use store::leases::Leases;
use time::{Duration, OffsetDateTime};

mod common;
use common::Database;

/// A fixed instant, so expiry is decided by the `now` each call passes.
fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::seconds(1_700_000_000 + seconds)
}

async fn a_lease_is_one_owners_until_it_expires(database: Database) {
    let store = database.open().await;
    let leases: &dyn Leases = &*store;
    assert!(leases.claim("job-1", "a", at(30), at(0)).await.expect("claim"), "a free lease");
    assert!(!leases.claim("job-1", "b", at(40), at(10)).await.expect("claim"), "held by a");
    assert!(leases.claim("job-1", "a", at(60), at(20)).await.expect("claim"), "its owner renews it");
    assert!(!leases.claim("job-1", "b", at(70), at(40)).await.expect("claim"), "renewed until 60");
    assert!(leases.claim("job-2", "b", at(70), at(40)).await.expect("claim"), "leases are apart");
    assert!(leases.claim("job-1", "b", at(90), at(60)).await.expect("claim"), "expired at its instant");
    assert!(!leases.claim("job-1", "a", at(95), at(61)).await.expect("claim"), "b holds it now");
    assert!(!leases.release("job-1", "a").await.expect("release"), "only the owner releases");
    assert!(leases.release("job-1", "b").await.expect("release"));
    assert!(leases.claim("job-1", "a", at(100), at(62)).await.expect("claim"), "free again");
}

/// Many tasks over two stores claim one lease at once: exactly one wins, for a fresh lease
/// and for one that has just expired.
async fn concurrent_claims_agree_on_one(database: Database) {
    const TASKS: usize = 8;
    let stores = [database.open().await, database.open().await];
    for round in 0..5 {
        let name = format!("job-{round}");
        if round % 2 == 1 {
            assert!(stores[0].claim(&name, "gone", at(5), at(0)).await.expect("claim"));
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = Arc::clone(&stores[task % 2]);
                let (name, barrier) = (name.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.claim(&name, &format!("owner-{task}"), at(100), at(10)).await.expect("claim")
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            won += usize::from(task.await.expect("task"));
        }
        assert_eq!(won, 1, "round {round}: exactly one claim wins");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_lease_is_one_owners_until_it_expires() {
    a_lease_is_one_owners_until_it_expires(Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_claims_agree_on_one() {
    concurrent_claims_agree_on_one(Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn postgres_a_lease_is_one_owners_until_it_expires() {
    a_lease_is_one_owners_until_it_expires(Database::postgres("leases")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn postgres_concurrent_claims_agree_on_one() {
    concurrent_claims_agree_on_one(Database::postgres("leases")).await;
}
