//! Bulk import through `Store::import` (what `ignis import` calls), then read, searched and
//! listed over HTTP: counts, versions, history and index rows must come out as if every
//! resource had been written on its own. Runs on SQLite and, under `.ci/with-postgres`, on
//! PostgreSQL, whose import writes a whole batch with a few statements.

use fhir::id::{LogicalId, ResourceType};
use reqwest::StatusCode;
use serde_json::{Value, json};
use store::{Environment, ImportCounts, ImportResource};

use crate::support::{TestApp, status_and_json};

fn patient(id: &str, family: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family}], "gender": "female"})
}

fn observation(id: &str, patient: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2024-03-05T10:00:00Z",
    })
}

fn prepared(resource: &Value) -> ImportResource {
    let resource_type = ResourceType::parse(resource["resourceType"].as_str().expect("type")).expect("known type");
    let id = LogicalId::parse(resource["id"].as_str().expect("id")).expect("valid id");
    ImportResource::new(&fhir::search::Registry::official(), resource_type, id, resource.clone()).expect("prepare")
}

async fn import(app: &TestApp, resources: &[Value]) -> ImportCounts {
    let batch = resources.iter().map(prepared).collect();
    app.store.import(Environment::Production, batch).await.expect("import")
}

fn counts(created: usize, updated: usize, unchanged: usize) -> ImportCounts {
    ImportCounts { created, updated, unchanged }
}

/// The `total` of a search.
async fn total(app: &TestApp, query: &str) -> u64 {
    let (status, bundle) = status_and_json(app.get(query).await).await;
    assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
    bundle["total"].as_u64().unwrap_or_else(|| panic!("{query}: no total in {bundle}"))
}

/// `meta.versionId` and `meta.lastUpdated` of each version of a resource, newest first.
async fn versions(app: &TestApp, path: &str) -> Vec<(String, String)> {
    let (status, history) = status_and_json(app.get(&format!("{path}/_history")).await).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    history["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            let meta = &entry["resource"]["meta"];
            (meta["versionId"].as_str().unwrap_or("").to_owned(), meta["lastUpdated"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

#[tokio::test]
async fn importing_the_same_resources_twice_writes_nothing_the_second_time() {
    let app = TestApp::spawn().await;
    let mut resources = Vec::new();
    for index in 0..40 {
        resources.push(patient(&format!("imp-p{index}"), &format!("Importer{index}")));
        for code in ["8867-4", "8480-6"] {
            resources.push(observation(&format!("imp-o{index}-{code}"), &format!("imp-p{index}"), code));
        }
    }
    assert_eq!(import(&app, &resources).await, counts(120, 0, 0));
    assert_eq!(import(&app, &resources).await, counts(0, 0, 120));

    assert_eq!(versions(&app, "Patient/imp-p7").await.len(), 1, "no second version");
    assert_eq!(total(&app, "Patient?family=Importer7").await, 1);
    assert_eq!(total(&app, "Observation?patient=imp-p7").await, 2, "index rows written once");
    assert_eq!(total(&app, "Observation?patient=imp-p7&code=http://loinc.org|8480-6").await, 1);
    let (status, read) = status_and_json(app.get("Observation/imp-o7-8867-4").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["meta"]["versionId"], "1");
    assert_eq!(read["subject"]["reference"], "Patient/imp-p7");
}

#[tokio::test]
async fn a_batch_with_updates_and_repeated_resources_counts_and_versions_as_one_by_one() {
    let app = TestApp::spawn().await;
    assert_eq!(import(&app, &[patient("rep-1", "First"), patient("rep-2", "Second")]).await, counts(2, 0, 0));

    // rep-1 changes twice in the batch, rep-3 is new and then changes, rep-2 is as stored,
    // rep-4 comes twice unchanged: written one by one that is 2 created (rep-3, rep-4),
    // 3 updated (rep-1 twice, rep-3) and 2 unchanged (rep-2, the second rep-4).
    let batch = [
        patient("rep-1", "Renamed"),
        patient("rep-3", "Third"),
        patient("rep-3", "ThirdRenamed"),
        patient("rep-2", "Second"),
        patient("rep-4", "Fourth"),
        patient("rep-1", "RenamedAgain"),
        patient("rep-4", "Fourth"),
    ];
    assert_eq!(import(&app, &batch).await, counts(2, 3, 2));

    let (_, read) = status_and_json(app.get("Patient/rep-1").await).await;
    assert_eq!(read["meta"]["versionId"], "3", "{read}");
    assert_eq!(read["name"][0]["family"], "RenamedAgain", "the later occurrence wins");
    let history = versions(&app, "Patient/rep-1").await;
    let numbers: Vec<&str> = history.iter().map(|(version, _)| version.as_str()).collect();
    assert_eq!(numbers, ["3", "2", "1"]);
    assert!(history[0].1 > history[1].1 && history[1].1 > history[2].1, "strictly later each time: {history:?}");
    let (_, read) = status_and_json(app.get("Patient/rep-3").await).await;
    assert_eq!(read["meta"]["versionId"], "2");
    assert_eq!(versions(&app, "Patient/rep-2").await.len(), 1);
    assert_eq!(versions(&app, "Patient/rep-4").await.len(), 1);

    // Old index rows went with the old versions.
    assert_eq!(total(&app, "Patient?family:exact=First").await, 0);
    assert_eq!(total(&app, "Patient?family:exact=Renamed").await, 0);
    assert_eq!(total(&app, "Patient?family:exact=RenamedAgain").await, 1);
    assert_eq!(total(&app, "Patient?family:exact=Third").await, 0);
    assert_eq!(total(&app, "Patient?family:exact=ThirdRenamed").await, 1);
    assert_eq!(total(&app, "Patient?gender=female").await, 4, "one row per resource");
}

#[tokio::test]
async fn an_import_after_a_delete_brings_the_resource_back_as_created() {
    let app = TestApp::spawn().await;
    assert_eq!(import(&app, &[patient("gone-1", "Gone")]).await, counts(1, 0, 0));
    assert_eq!(app.delete("Patient/gone-1").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(total(&app, "Patient?family=Gone").await, 0);

    assert_eq!(import(&app, &[patient("gone-1", "Gone")]).await, counts(1, 0, 0));
    let (status, read) = status_and_json(app.get("Patient/gone-1").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["meta"]["versionId"], "3", "after version 1 and the tombstone");
    assert_eq!(total(&app, "Patient?family=Gone").await, 1);
}

#[tokio::test]
async fn an_import_updates_a_resource_written_over_http() {
    let app = TestApp::spawn().await;
    assert_eq!(app.put("Patient/http-1", &patient("http-1", "Before")).await.status(), StatusCode::CREATED);
    let before = versions(&app, "Patient/http-1").await;

    assert_eq!(import(&app, &[patient("http-1", "After")]).await, counts(0, 1, 0));
    let after = versions(&app, "Patient/http-1").await;
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].0, "2");
    assert!(after[0].1 > before[0].1, "the import's instant is later: {after:?}");
    assert_eq!(total(&app, "Patient?family=Before").await, 0);
    assert_eq!(total(&app, "Patient?family=After").await, 1);
}
