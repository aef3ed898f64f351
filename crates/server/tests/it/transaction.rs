//! `POST [base]` with transaction and batch Bundles: atomicity, placeholder and conditional
//! reference resolution, processing order, per-entry preconditions, concurrency.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, assert_outcome, status_and_json};

fn patient(identifier: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test", "value": identifier}],
        "name": [{"family": identifier}],
        "gender": "female",
    })
}

fn observation(subject: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": subject},
        "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"{subject}\">patient</a></div>")},
    })
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn post_entry(full_url: Option<&str>, resource: Value) -> Value {
    let url = resource["resourceType"].clone();
    let mut entry = json!({"resource": resource, "request": {"method": "POST", "url": url}});
    if let Some(full_url) = full_url {
        entry["fullUrl"] = json!(full_url);
    }
    entry
}

fn request_entry(method: &str, url: &str) -> Value {
    json!({"request": {"method": method, "url": url}})
}

/// A PATCH entry carrying `operations` (JSON Patch) as a Binary, as the spec has it.
fn patch_entry(url: &str, operations: Value, if_match: Option<&str>) -> Value {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(operations.to_string());
    let mut entry = json!({
        "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data},
        "request": {"method": "PATCH", "url": url},
    });
    if let Some(if_match) = if_match {
        entry["request"]["ifMatch"] = json!(if_match);
    }
    entry
}

/// A PATCH entry with a FHIRPath Patch (`Parameters`), which the server does not support.
fn fhirpath_patch_entry(url: &str) -> Value {
    json!({
        "resource": {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": "Patient.gender"}]}]},
        "request": {"method": "PATCH", "url": url},
    })
}

/// Posts `body` to the FHIR base and reads the answer.
async fn post_bundle(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    status_and_json(app.post_base(body).await).await
}

/// How many versions the type's history holds (every write leaves one).
async fn history_count(app: &TestApp, resource_type: &str) -> usize {
    let (_, history) = status_and_json(app.get(&format!("{resource_type}/_history?_count=500")).await).await;
    history["entry"].as_array().map_or(0, Vec::len)
}

fn id_from_location(entry: &Value) -> String {
    entry["response"]["location"].as_str().expect("location").split('/').nth(1).expect("id").to_owned()
}

#[tokio::test]
async fn placeholders_resolve_across_entries() {
    let app = TestApp::spawn().await;
    let body = bundle(
        "transaction",
        vec![
            post_entry(None, observation("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a")),
            post_entry(Some("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"), patient("placeholder")),
        ],
    );
    let (status, response) = post_bundle(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["type"], "transaction-response");
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    assert!(entries[1]["response"]["location"].as_str().unwrap().starts_with("Patient/"));
    assert_eq!(entries[1]["response"]["etag"], "W/\"1\"");
    assert!(entries[1]["response"]["lastModified"].as_str().unwrap().ends_with('Z'));
    let patient_id = id_from_location(&entries[1]);
    let observation_id = id_from_location(&entries[0]);
    let (_, stored) = status_and_json(app.get(&format!("Observation/{observation_id}")).await).await;
    assert_eq!(stored["subject"]["reference"], format!("Patient/{patient_id}"));
    assert!(stored["text"]["div"].as_str().unwrap().contains(&format!("href=\"Patient/{patient_id}\"")));
}

#[tokio::test]
async fn a_bad_entry_in_the_middle_leaves_no_trace() {
    let app = TestApp::spawn().await;
    let existing = app.create(&patient("existing")).await;
    let invalid = json!({"resourceType": "Observation", "status": "not-a-status", "code": {"text": "x"}});
    let body = bundle(
        "transaction",
        vec![post_entry(None, patient("a")), post_entry(None, invalid), post_entry(None, patient("b"))],
    );
    let outcome = assert_outcome(app.post_base(&body).await, StatusCode::BAD_REQUEST, "code-invalid").await;
    assert!(outcome.to_string().contains("Bundle.entry[1]"), "{outcome}");

    // A failure only the database can find (a stale If-Match) after two creates were written.
    let mut stale = patient("existing");
    stale["id"] = json!(existing);
    let body = bundle(
        "transaction",
        vec![
            post_entry(None, patient("c")),
            json!({"resource": stale, "request": {"method": "PUT", "url": format!("Patient/{existing}"), "ifMatch": "W/\"7\""}}),
            post_entry(None, observation("Patient/whatever")),
        ],
    );
    let outcome = assert_outcome(app.post_base(&body).await, StatusCode::PRECONDITION_FAILED, "conflict").await;
    assert!(outcome.to_string().contains("Bundle.entry[1]"), "{outcome}");
    assert_eq!(history_count(&app, "Patient").await, 1, "only the patient created before the transactions");
    assert_eq!(history_count(&app, "Observation").await, 0);
}

#[tokio::test]
async fn conditional_references_resolve_inside_the_transaction() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient("known")).await;
    let body = bundle("transaction", vec![post_entry(None, observation("Patient?identifier=urn:test|known"))]);
    let (status, response) = post_bundle(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let observation_id = id_from_location(&response["entry"][0]);
    let (_, stored) = status_and_json(app.get(&format!("Observation/{observation_id}")).await).await;
    assert_eq!(stored["subject"]["reference"], format!("Patient/{id}"));

    let body = bundle("transaction", vec![post_entry(None, observation("Patient?identifier=urn:test|nobody"))]);
    assert_outcome(app.post_base(&body).await, StatusCode::BAD_REQUEST, "processing").await;
    assert_eq!(history_count(&app, "Observation").await, 1);
}

#[tokio::test]
async fn entries_run_delete_then_post_then_put_then_get() {
    let app = TestApp::spawn().await;
    let kept = app.create(&patient("kept")).await;
    let doomed = app.create(&patient("doomed")).await;
    let mut updated = patient("kept");
    updated["id"] = json!(kept);
    updated["name"][0]["family"] = json!("Updated");
    let mut create_again = post_entry(None, patient("doomed"));
    create_again["request"]["ifNoneExist"] = json!("identifier=urn:test|doomed");
    let body = bundle(
        "transaction",
        vec![
            request_entry("GET", &format!("Patient/{kept}")),
            json!({"resource": updated, "request": {"method": "PUT", "url": format!("Patient/{kept}")}}),
            create_again,
            request_entry("DELETE", &format!("Patient/{doomed}")),
            request_entry("GET", "Patient?identifier=urn:test|doomed"),
        ],
    );
    let (status, response) = post_bundle(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(entries[0]["resource"]["name"][0]["family"], "Updated", "GET runs after PUT");
    assert_eq!(entries[0]["response"]["etag"], "W/\"2\"");
    assert_eq!(entries[1]["response"]["status"], "200 OK");
    assert_eq!(entries[2]["response"]["status"], "201 Created", "the DELETE ran before the conditional POST");
    assert_ne!(id_from_location(&entries[2]), doomed);
    assert_eq!(entries[3]["response"]["status"], "204 No Content");
    let searchset = &entries[4]["resource"];
    assert_eq!(searchset["type"], "searchset", "{searchset}");
    assert_eq!(searchset["entry"].as_array().map(Vec::len), Some(1), "only the new one: {searchset}");
    assert_eq!(searchset["entry"][0]["resource"]["id"], id_from_location(&entries[2]).as_str());
    assert_eq!(app.get(&format!("Patient/{doomed}")).await.status(), StatusCode::GONE);
}

#[tokio::test]
async fn conditional_create_in_a_transaction_points_placeholders_at_the_match() {
    let app = TestApp::spawn().await;
    let id = app.create(&patient("shared")).await;
    let mut entry = post_entry(Some("urn:uuid:0f3b4a55-8a0e-4b35-9a8e-0d3a7c5ad2a1"), patient("shared"));
    entry["request"]["ifNoneExist"] = json!("identifier=urn:test|shared");
    let body = bundle(
        "transaction",
        vec![entry, post_entry(None, observation("urn:uuid:0f3b4a55-8a0e-4b35-9a8e-0d3a7c5ad2a1"))],
    );
    let (status, response) = post_bundle(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["entry"][0]["response"]["status"], "200 OK");
    let observation_id = id_from_location(&response["entry"][1]);
    let (_, stored) = status_and_json(app.get(&format!("Observation/{observation_id}")).await).await;
    assert_eq!(stored["subject"]["reference"], format!("Patient/{id}"));
    assert_eq!(history_count(&app, "Patient").await, 1);
}

#[tokio::test]
async fn concurrent_identical_conditional_creates_make_one_resource() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut tasks = Vec::new();
    for task in 0..12 {
        let app = std::sync::Arc::clone(&app);
        tasks.push(tokio::spawn(async move {
            if task % 2 == 0 {
                let response = app
                    .request(reqwest::Method::POST, "Patient")
                    .header("content-type", "application/fhir+json")
                    .header("if-none-exist", "identifier=urn:test|race")
                    .body(patient("race").to_string())
                    .send()
                    .await
                    .unwrap();
                response.status()
            } else {
                let mut entry = post_entry(None, patient("race"));
                entry["request"]["ifNoneExist"] = json!("identifier=urn:test|race");
                app.post_base(&bundle("transaction", vec![entry])).await.status()
            }
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().is_success());
    }
    assert_eq!(history_count(&app, "Patient").await, 1, "exactly one resource, one version");
}

#[tokio::test]
async fn batch_entries_succeed_or_fail_on_their_own() {
    let app = TestApp::spawn().await;
    let existing = app.create(&patient("batch")).await;
    let invalid = json!({"resourceType": "Patient", "gender": "sometimes"});
    let body = bundle(
        "batch",
        vec![
            post_entry(None, patient("new")),
            post_entry(None, invalid),
            request_entry("GET", "Patient/does-not-exist"),
            request_entry("DELETE", &format!("Patient/{existing}")),
            fhirpath_patch_entry(&format!("Patient/{existing}")),
            request_entry("GET", "Patient?birthdate=not-a-date"),
            request_entry("GET", "Patient?identifier=urn:test|new"),
        ],
    );
    let (status, response) = post_bundle(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["type"], "batch-response");
    let statuses: Vec<&str> = response["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "201 Created",
            "400 Bad Request",
            "404 Not Found",
            "204 No Content",
            "400 Bad Request",
            "400 Bad Request",
            "200 OK"
        ]
    );
    assert_eq!(response["entry"][6]["resource"]["entry"].as_array().map(Vec::len), Some(1));
    assert_eq!(response["entry"][1]["response"]["outcome"]["resourceType"], "OperationOutcome");
    assert_eq!(response["entry"][4]["response"]["outcome"]["issue"][0]["code"], "not-supported");
    let created = id_from_location(&response["entry"][0]);
    assert_eq!(app.get(&format!("Patient/{created}")).await.status(), StatusCode::OK);
    assert_eq!(app.get(&format!("Patient/{existing}")).await.status(), StatusCode::GONE);
}

#[tokio::test]
async fn two_writes_to_one_resource_fail_the_transaction() {
    let app = TestApp::spawn().await;
    let mut first = patient("twice");
    first["id"] = json!("twice");
    let entry = json!({"resource": first, "request": {"method": "PUT", "url": "Patient/twice"}});
    let body = bundle("transaction", vec![entry.clone(), entry]);
    assert_outcome(app.post_base(&body).await, StatusCode::BAD_REQUEST, "processing").await;
    assert_eq!(app.get("Patient/twice").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn only_transactions_and_batches_are_processed() {
    let app = TestApp::spawn().await;
    let body = bundle("collection", vec![post_entry(None, patient("x"))]);
    assert_outcome(app.post_base(&body).await, StatusCode::BAD_REQUEST, "not-supported").await;
    assert_outcome(app.post_base(&patient("x")).await, StatusCode::BAD_REQUEST, "invalid").await;
    let (status, response) = post_bundle(&app, &bundle("transaction", vec![])).await;
    assert_eq!((status, response["entry"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
}

#[tokio::test]
async fn patch_entries_apply_json_patch_inside_the_transaction() {
    let app = TestApp::spawn().await;
    let existing = app.create(&patient("patch-me")).await;
    let operations = json!([
        {"op": "replace", "path": "/gender", "value": "male"},
        {"op": "add", "path": "/birthDate", "value": "1970-01-02"},
    ]);
    let body = bundle(
        "transaction",
        vec![
            patch_entry(&format!("Patient/{existing}"), operations, Some("W/\"1\"")),
            post_entry(None, patient("beside-the-patch")),
        ],
    );
    let (status, response) = post_bundle(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["entry"][0]["response"]["status"], "200 OK", "{response}");
    assert_eq!(response["entry"][0]["response"]["etag"], "W/\"2\"", "{response}");
    let (_, read) = status_and_json(app.get(&format!("Patient/{existing}")).await).await;
    assert_eq!((read["gender"].as_str(), read["birthDate"].as_str()), (Some("male"), Some("1970-01-02")));
    assert_eq!(read["name"][0]["family"], "patch-me", "untouched elements stay");
    let (_, found) = status_and_json(app.get("Patient?gender=male&birthdate=1970-01-02").await).await;
    assert_eq!(found["total"], 1, "the patched version is indexed: {found}");
}

#[tokio::test]
async fn a_failing_patch_entry_rolls_the_transaction_back() {
    let app = TestApp::spawn().await;
    let existing = app.create(&patient("patch-fails")).await;
    let url = format!("Patient/{existing}");
    let stale = json!([{"op": "replace", "path": "/gender", "value": "male"}]);
    let invalid = json!([{"op": "replace", "path": "/gender", "value": "sometimes"}]);
    let unappliable = json!([{"op": "remove", "path": "/deceasedBoolean"}]);
    let cases = [
        (patch_entry(&url, stale, Some("W/\"7\"")), StatusCode::PRECONDITION_FAILED, "conflict"),
        (patch_entry(&url, invalid, None), StatusCode::BAD_REQUEST, "code-invalid"),
        (patch_entry(&url, unappliable, None), StatusCode::UNPROCESSABLE_ENTITY, "processing"),
        (patch_entry("Patient/nobody", json!([]), None), StatusCode::NOT_FOUND, "not-found"),
    ];
    for (entry, status, code) in cases {
        let body = bundle("transaction", vec![post_entry(None, patient("rolled-back")), entry]);
        let response = app.post_base(&body).await;
        let outcome = assert_outcome(response, status, code).await;
        assert!(outcome.to_string().contains("Bundle.entry[1]"), "names the entry: {outcome}");
    }
    let (_, found) = status_and_json(app.get("Patient?identifier=urn:test|rolled-back").await).await;
    assert_eq!(found["total"], 0, "no entry of a failed transaction is written: {found}");
    let (_, read) = status_and_json(app.get(&url).await).await;
    assert_eq!((read["meta"]["versionId"].as_str(), read["gender"].as_str()), (Some("1"), Some("female")));
}
