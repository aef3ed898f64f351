//! The audit log on both databases: entries appended by concurrent writers (and by audited
//! FHIR writes and record changes, in their own transaction) verify; altering, deleting,
//! reordering or inserting one row is found at that row; searches find entries by their terms.
//!
//! The PostgreSQL tests need `IGNIS_TEST_POSTGRES_URL` (CI sets it through
//! `.ci/with-postgres`); each runs in a throw-away schema.

use std::sync::Arc;

use fhir::id::ResourceType;
use serde_json::json;
use store::Store;
use store::audit::{Agent, ChainKey, Event, Outcome, Problem, Query, verify};

mod common;
use common::Database;

fn key() -> ChainKey {
    ChainKey::new(&[7; 32])
}

fn read_event(user: &str, patient: &str) -> Event {
    Event {
        category: "rest".into(),
        action: "read".into(),
        agent: Agent { user: Some(user.into()), ..Agent::default() },
        entities: vec![format!("Patient/{patient}")],
        patients: vec![patient.into()],
        ..Event::default()
    }
}

/// Appends from several tasks at once (so several chains), an audited create and a record
/// change; returns how many entries were written.
async fn fill(stores: &[Arc<dyn Store>]) -> u64 {
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let store = Arc::clone(&stores[task % stores.len()]);
            tokio::spawn(async move {
                for round in 0..5 {
                    let events = vec![read_event(&format!("u{task}"), &format!("p{round}")); 1 + round % 2];
                    store.append_audit(events).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let store = &stores[0];
    let event = Event { category: "rest".into(), action: "create".into(), ..Event::default() };
    let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/p9"}});
    let observation_type = ResourceType::parse("Observation").expect("type");
    store
        .audited(event)
        .create(store::Environment::Sandbox, &observation_type, observation, None)
        .await
        .expect("create");
    let record = store::records::RecordWrite {
        kind: "thing",
        id: "t1".into(),
        expected: None,
        body: Some("{}".into()),
        keys: vec![],
        updated_by: "operator".into(),
    };
    store.write_record(record).await.expect("record");
    8 * 7 + 2
}

async fn concurrent_appends_verify(database: Database) {
    let stores = [database.open().await, database.open().await];
    for store in &stores {
        store.set_audit_key(key());
    }
    let written = fill(&stores).await;
    let verification = verify(stores[0].as_ref(), &key()).await.expect("verify");
    assert_eq!(verification.problem, None);
    assert_eq!(verification.entries, written);
    assert!(verification.chains >= 2, "concurrent writers use chains of their own: {verification:?}");
    // Two servers folding at once: both succeed, and every term is found once.
    let (first, second) = tokio::join!(stores[0].fold_audit_terms(usize::MAX), stores[1].fold_audit_terms(usize::MAX));
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
    let p1 = Query { terms: vec!["patient:p1".into()], count: 100, ..Query::default() };
    assert_eq!(stores[1].search_audit(p1).await.expect("search").len(), 16);
    let other = verify(stores[0].as_ref(), &ChainKey::new(&[8; 32])).await.expect("verify");
    assert!(matches!(other.problem, Some(Problem::Altered { seq: 1, .. })), "another key: {other:?}");
}

#[tokio::test]
async fn concurrent_appends_verify_on_sqlite() {
    concurrent_appends_verify(Database::sqlite()).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: IGNIS_TEST_POSTGRES_URL (CI runs it with --include-ignored)"]
async fn concurrent_appends_verify_on_postgres() {
    concurrent_appends_verify(Database::postgres("audit_verify")).await;
}

/// The audited write and the record change are entries with what they touched.
#[tokio::test]
async fn writes_and_record_changes_are_entries_of_their_transaction() {
    let database = Database::sqlite();
    let store = database.open().await;
    store.set_audit_key(key());
    fill(std::slice::from_ref(&store)).await;
    let query = |terms: &[&str]| Query {
        terms: terms.iter().map(|term| term.to_string()).collect(),
        count: 100,
        ..Query::default()
    };
    let created = Query { action: Some("create".into()), ..query(&["patient:p9"]) };
    let created = store.search_audit(created).await.expect("search");
    assert_eq!(created.len(), 1);
    let event = created[0].event().expect("event");
    assert_eq!(event.outcome, Outcome::Success);
    assert!(event.entities[0].starts_with("Observation/") && event.entities[0].ends_with("/_history/1"), "{event:?}");
    let record = Query { category: Some("record".into()), ..query(&["entity:thing/t1"]) };
    let record = store.search_audit(record).await.expect("search");
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].event().expect("event").agent.user.as_deref(), Some("operator"));
    // p1 was read by each of the 8 tasks in round 1, twice each (2 events per append).
    let p1 = store.search_audit(query(&["patient:p1"])).await.expect("search");
    assert_eq!(p1.len(), 16);
    // Terms are found pending, partly folded into the index, and all folded.
    assert_eq!(store.fold_audit_terms(10).await.expect("fold"), 10);
    assert_eq!(store.search_audit(query(&["patient:p1"])).await.expect("search"), p1);
    assert!(store.fold_audit_terms(usize::MAX).await.expect("fold") > 0);
    assert_eq!(store.fold_audit_terms(10).await.expect("fold"), 0, "nothing left");
    assert_eq!(store.search_audit(query(&["patient:p1"])).await.expect("search"), p1);
    let by_u3 = store.search_audit(query(&["patient:p1", "agent:user:u3"])).await.expect("search");
    assert_eq!(by_u3.len(), 2);
    // Pages continue below the last entry of the one before, without overlap.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .search_audit(Query {
                terms: vec!["patient:p1".into()],
                count: 5,
                before: before.clone(),
                ..Query::default()
            })
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        before = Some(store::audit::Position::of(last));
        seen.extend(page.iter().map(|entry| (entry.chain.clone(), entry.seq)));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 16);
    let failed = store
        .audited(read_event("u", "p"))
        .delete(
            store::Environment::Sandbox,
            &ResourceType::parse("Patient").expect("type"),
            &fhir::id::LogicalId::parse("missing").expect("id"),
            Some(3),
        )
        .await;
    assert!(failed.is_err());
    assert!(
        store.search_audit(query(&["agent:user:u", "patient:p"])).await.expect("search").is_empty(),
        "a failed write leaves no entry"
    );
}

/// One row changed by hand at a time (and put back): verify names it.
#[tokio::test]
async fn tampering_with_one_row_is_found_at_that_row() {
    let database = Database::sqlite();
    let store = database.open().await;
    store.set_audit_key(key());
    store
        .append_audit(vec![read_event("u", "p1"), read_event("u", "p2"), read_event("u", "p3"), read_event("u", "p4")])
        .await
        .expect("append");
    let Database::Sqlite(folder) = &database else { unreachable!() };
    let sql = rusqlite::Connection::open(folder.path().join("store.db")).expect("open");
    let chain: String = sql.query_row("SELECT chain FROM audit_chains", [], |row| row.get(0)).expect("chain");
    let check = |expected: Option<Problem>| {
        let store = Arc::clone(&store);
        async move {
            let verification = verify(store.as_ref(), &key()).await.expect("verify");
            assert_eq!(verification.problem, expected);
        }
    };
    check(None).await;
    let run = |statement: &str| sql.execute_batch(statement).expect(statement);

    run("UPDATE audit_entries SET body = replace(body, 'p2', 'p9') WHERE seq = 2");
    check(Some(Problem::Altered { chain: chain.clone(), seq: 2 })).await;
    run("UPDATE audit_entries SET body = replace(body, 'p9', 'p2') WHERE seq = 2");
    check(None).await;

    run("UPDATE audit_entries SET recorded = recorded + 1 WHERE seq = 3");
    check(Some(Problem::Altered { chain: chain.clone(), seq: 3 })).await;
    run("UPDATE audit_entries SET recorded = recorded - 1 WHERE seq = 3");

    // Reordering: entries 2 and 3 trade places.
    run("UPDATE audit_entries SET seq = 0 WHERE seq = 2; UPDATE audit_entries SET seq = 2 WHERE seq = 3; \
         UPDATE audit_entries SET seq = 3 WHERE seq = 0");
    check(Some(Problem::Altered { chain: chain.clone(), seq: 2 })).await;
    run("UPDATE audit_entries SET seq = 0 WHERE seq = 2; UPDATE audit_entries SET seq = 2 WHERE seq = 3; \
         UPDATE audit_entries SET seq = 3 WHERE seq = 0");
    check(None).await;

    run("CREATE TABLE saved AS SELECT * FROM audit_entries; DELETE FROM audit_entries WHERE seq = 2");
    check(Some(Problem::Missing { chain: chain.clone(), seq: 2 })).await;
    run("DELETE FROM audit_entries WHERE seq = 4");
    run("INSERT INTO audit_entries SELECT * FROM saved WHERE seq = 2");
    check(Some(Problem::Missing { chain: chain.clone(), seq: 4 })).await;
    run("INSERT INTO audit_entries SELECT * FROM saved WHERE seq = 4");
    check(None).await;

    run(
        "INSERT INTO audit_entries SELECT chain, 5, recorded + 1, category, action, outcome, body, hash FROM saved WHERE seq = 4",
    );
    check(Some(Problem::Inserted { chain: chain.clone(), seq: 5, last: 4 })).await;
    run("DELETE FROM audit_entries WHERE seq = 5");

    run("CREATE TABLE head AS SELECT * FROM audit_chains; DELETE FROM audit_chains");
    check(Some(Problem::Headless { chain: chain.clone() })).await;
    run("INSERT INTO audit_chains SELECT * FROM head");
    check(None).await;
}
