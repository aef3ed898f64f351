//! The instance interactions: create, read, vread, update, delete, patch, and the
//! conditional forms, with their headers.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, assert_outcome, status_and_json};

fn patient(family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test", "value": family}],
        "name": [{"family": family, "given": ["Ada"]}],
        "gender": "female",
        "birthDate": "1970-01-02",
    })
}

#[tokio::test]
async fn create_assigns_id_and_version_and_returns_headers() {
    let app = TestApp::spawn().await;
    let mut body = patient("Lovelace");
    body["id"] = json!("client-chosen");
    let response = app.post("Patient", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let headers = response.headers().clone();
    let (_, created) = status_and_json(response).await;
    let id = created["id"].as_str().unwrap();
    assert_ne!(id, "client-chosen", "the server ignores an id in a create");
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(headers["etag"], "W/\"1\"");
    assert_eq!(headers["location"].to_str().unwrap(), format!("{}/Patient/{id}/_history/1", app.base));
    assert!(headers.contains_key("last-modified"));
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/fhir+json"));
}

#[tokio::test]
async fn read_returns_what_was_stored() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient("Hopper")).await;
    let response = app.get(&format!("Patient/{id}")).await;
    assert_eq!(response.headers()["etag"], "W/\"1\"");
    let (status, read) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["name"][0]["family"], "Hopper");
    assert_eq!(read["id"], id.as_str());
}

#[tokio::test]
async fn decimals_keep_their_precision() {
    let app = TestApp::spawn().await;
    let observation = r#"{"resourceType":"Observation","status":"final","code":{"text":"weight"},"valueQuantity":{"value":1.50,"unit":"kg"}}"#;
    let response = app
        .request(Method::POST, "Observation")
        .header("content-type", "application/fhir+json")
        .body(observation)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let id = location.split('/').rev().nth(2).unwrap();
    let text = app.get(&format!("Observation/{id}")).await.text().await.unwrap();
    assert!(text.contains(r#""value":1.50"#), "{text}");
}

#[tokio::test]
async fn update_creates_then_versions() {
    let app = TestApp::spawn().await;
    let mut body = patient("Curie");
    body["id"] = json!("curie");
    let response = app.put("Patient/curie", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED, "create-on-update");
    body["gender"] = json!("other");
    let response = app.put("Patient/curie", &body).await;
    assert_eq!(response.headers()["etag"], "W/\"2\"");
    let (status, updated) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["meta"]["versionId"], "2");
    let (status, first) = status_and_json(app.get("Patient/curie/_history/1").await).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["gender"], "female");
    assert_eq!(first["meta"]["versionId"], "1");
    let (status, second) = status_and_json(app.get("Patient/curie/_history/2").await).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["gender"], "other");
    assert_eq!(second["meta"]["versionId"], "2");
}

#[tokio::test]
async fn if_match_guards_updates() {
    let app = TestApp::spawn().await;
    let mut body = patient("Noether");
    body["id"] = json!("noether");
    assert_eq!(app.put("Patient/noether", &body).await.status(), StatusCode::CREATED);
    body["gender"] = json!("other");
    let stale = app
        .request(Method::PUT, "Patient/noether")
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"7\"")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_outcome(stale, StatusCode::PRECONDITION_FAILED, "conflict").await;
    let current = app
        .request(Method::PUT, "Patient/noether")
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(current.headers()["etag"], "W/\"2\"");
    let (status, updated) = status_and_json(current).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["meta"]["versionId"], "2", "{updated}");
    assert_eq!(updated["gender"], "other", "{updated}");
    let (_, history) = status_and_json(app.get("Patient/noether/_history").await).await;
    assert_eq!(history["entry"].as_array().map(Vec::len), Some(2), "the refused write left no version: {history}");
}

#[tokio::test]
async fn delete_leaves_history_and_read_is_gone() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient("Franklin")).await;
    let response = app.delete(&format!("Patient/{id}")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_outcome(app.get(&format!("Patient/{id}")).await, StatusCode::GONE, "deleted").await;
    let again = app.delete(&format!("Patient/{id}")).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT, "deleting twice is harmless");
    let (status, version_one) = status_and_json(app.get(&format!("Patient/{id}/_history/1")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version_one["name"][0]["family"], "Franklin");
    assert_outcome(app.get(&format!("Patient/{id}/_history/2")).await, StatusCode::GONE, "deleted").await;
    let mut revived = patient("Franklin");
    revived["id"] = json!(id);
    let response = app.put(&format!("Patient/{id}"), &revived).await;
    assert_eq!(response.status(), StatusCode::CREATED, "an update brings a deleted resource back");
    assert_eq!(response.headers()["etag"], "W/\"3\"");
}

#[tokio::test]
async fn delete_of_unknown_resource_is_not_found() {
    let app = TestApp::spawn().await;
    assert_outcome(app.delete("Patient/never").await, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn prefer_return_minimal_and_operation_outcome() {
    let app = TestApp::spawn().await;
    let minimal = app
        .request(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(patient("Minimal").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(minimal.status(), StatusCode::CREATED);
    assert!(minimal.headers().contains_key("location"));
    assert!(minimal.text().await.unwrap().is_empty());
    let outcome = app
        .request(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=OperationOutcome")
        .body(patient("Outcome").to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(outcome).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["severity"], "information");
}

#[tokio::test]
async fn conditional_read_answers_not_modified() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient("Cached")).await;
    let response =
        app.request(Method::GET, &format!("Patient/{id}")).header("if-none-match", "W/\"1\"").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let response =
        app.request(Method::GET, &format!("Patient/{id}")).header("if-none-match", "W/\"0\"").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn conditional_create_finds_existing_match() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient("Unique")).await;
    let response = app
        .request(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "identifier=urn:test|Unique")
        .body(patient("Unique").to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "a match means no new resource");
    assert_eq!(body["id"], id.as_str());
    let response = app
        .request(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "identifier=urn:test|Other")
        .body(patient("Other").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn conditional_create_with_two_matches_fails() {
    let app = TestApp::spawn().await;
    app.create(&patient("Twin")).await;
    app.create(&patient("Twin")).await;
    let response = app
        .request(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "identifier=urn:test|Twin")
        .body(patient("Twin").to_string())
        .send()
        .await
        .unwrap();
    assert_outcome(response, StatusCode::PRECONDITION_FAILED, "multiple-matches").await;
}

#[tokio::test]
async fn conditional_update_creates_then_updates_the_match() {
    let app = TestApp::spawn().await;
    let response = app.put("Patient?identifier=urn:test|Cond", &patient("Cond")).await;
    let (status, created) = status_and_json(response).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut changed = patient("Cond");
    changed["gender"] = json!("male");
    let (status, updated) = status_and_json(app.put("Patient?identifier=urn:test|Cond", &changed).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["id"], created["id"]);
    assert_eq!(updated["meta"]["versionId"], "2");
    assert_eq!(updated["gender"], "male");
}

#[tokio::test]
async fn conditional_delete_removes_the_single_match() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient("Doomed")).await;
    let keep = app.create(&patient("Kept")).await;
    assert_eq!(app.delete("Patient?identifier=urn:test|Doomed").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("Patient/{id}")).await.status(), StatusCode::GONE);
    assert_eq!(app.get(&format!("Patient/{keep}")).await.status(), StatusCode::OK);
    assert_eq!(app.delete("Patient?identifier=urn:test|Nobody").await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn json_patch_applies_and_versions() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient("Patched")).await;
    let patch = json!([
        {"op": "test", "path": "/gender", "value": "female"},
        {"op": "replace", "path": "/gender", "value": "unknown"},
        {"op": "add", "path": "/name/0/given/-", "value": "Marie"}
    ]);
    let response = app
        .request(Method::PATCH, &format!("Patient/{id}"))
        .header("content-type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    let (status, patched) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["gender"], "unknown");
    assert_eq!(patched["name"][0]["given"], json!(["Ada", "Marie"]));
    assert_eq!(patched["meta"]["versionId"], "2");
}

/// Concurrent patches without `If-Match` all land: one that loses the race to another write
/// applies itself again to the newer version instead of answering 412. With four patchers a
/// patch loses at most three times, within the server's attempts, however they interleave.
#[tokio::test]
async fn concurrent_patches_without_if_match_all_apply() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient("Racing")).await;
    let patches = (0..4).map(|index| {
        let request = app
            .request(Method::PATCH, &format!("Patient/{id}"))
            .header("content-type", "application/json-patch+json")
            .body(json!([{"op": "add", "path": "/name/0/given/-", "value": format!("P{index}")}]).to_string());
        tokio::spawn(async move { request.send().await.map(|response| response.status()) })
    });
    for patch in patches.collect::<Vec<_>>() {
        assert_eq!(patch.await.expect("task").expect("send"), StatusCode::OK);
    }
    let (_, current) = status_and_json(app.get(&format!("Patient/{id}")).await).await;
    assert_eq!(current["meta"]["versionId"], "5", "{current}");
    let mut given: Vec<&str> =
        current["name"][0]["given"].as_array().expect("given").iter().filter_map(Value::as_str).collect();
    given.sort_unstable();
    assert_eq!(given, ["Ada", "P0", "P1", "P2", "P3"], "every patch applied once: {current}");
}

#[tokio::test]
async fn sandbox_and_production_are_separate() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient("Prod")).await;
    let response = app.client.get(format!("{}/sandbox/fhir/Patient/{id}", app.root)).send().await.unwrap();
    assert_outcome(response, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn validate_operation_stores_nothing() {
    let app = TestApp::spawn().await;
    let (status, outcome) = status_and_json(app.post("Patient/$validate", &patient("Valid")).await).await;
    assert_eq!(status, StatusCode::OK);
    let issues = outcome["issue"].as_array().expect("issues");
    assert!(issues.iter().all(|issue| issue["severity"] != "error"), "{outcome}");
    // A Patient without narrative breaks only dom-6, a warning.
    assert_eq!(issues[0]["severity"], "warning", "{outcome}");
    assert!(issues[0]["diagnostics"].as_str().is_some_and(|text| text.starts_with("dom-6")), "{outcome}");
    let (status, history) = status_and_json(app.get("Patient/_history").await).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history["type"], "history", "{history}");
    assert_eq!(history["entry"].as_array().map(Vec::len).unwrap_or(0), 0, "{history}");
}
