//! Bulk Data `$export` as a client runs it: kick-off, polling, the manifest, the files, and
//! cancellation, at system, Patient and Group level, with the scopes deciding what an export
//! may hold.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, assert_outcome, status_and_json};
use crate::us_core;

/// Bulk scopes as the (g)(10) kit asks for them.
const SYSTEM_READ: &str = "system/*.read";

/// The conformance patients and Group 1a loaded through an open server, and a secured server
/// over the same database.
async fn conformance() -> (TestApp, TestApp, us_core::Loaded) {
    let open = TestApp::spawn().await;
    let loaded = us_core::load(&open).await;
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/demo/conformance-patients");
    let group: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{folder}/uscore_group_1a.json")).expect("group"))
            .expect("json");
    assert_eq!(open.put("Group/1a", &group).await.status(), StatusCode::CREATED);
    let secured = open.spawn_secured_sharing(|_| {}).await;
    (open, secured, loaded)
}

/// A kick-off of `path` (GET) with `token`: the status URL.
async fn kick_off(app: &TestApp, path: &str, token: &str) -> String {
    let response = app
        .request(reqwest::Method::GET, path)
        .bearer_auth(token)
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{path}: {:?}", response.text().await);
    response.headers()["content-location"].to_str().expect("location").to_owned()
}

/// A POST kick-off of `path` with a `Parameters` body.
async fn post_kick_off(app: &TestApp, path: &str, token: &str, parameters: &Value) -> reqwest::Response {
    app.request(reqwest::Method::POST, path)
        .bearer_auth(token)
        .header("prefer", "respond-async")
        .header("content-type", "application/fhir+json")
        .body(parameters.to_string())
        .send()
        .await
        .expect("send")
}

/// Polls `status` until the manifest comes; every poll before it is a 202 with progress.
async fn manifest(app: &TestApp, status: &str, token: &str) -> Value {
    for _ in 0..2_000 {
        let response = app.client.get(status).bearer_auth(token).send().await.expect("send");
        match response.status() {
            StatusCode::ACCEPTED => {
                assert!(response.headers().contains_key("x-progress"));
                assert!(response.headers()["retry-after"].to_str().expect("text").parse::<u64>().is_ok());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            StatusCode::OK => {
                assert!(response.headers()["content-type"].to_str().expect("type").starts_with("application/json"));
                return response.json().await.expect("manifest");
            }
            other => panic!("polling answered {other}: {:?}", response.text().await),
        }
    }
    panic!("the export did not finish");
}

/// Every file of the manifest, fetched with `token`: resources by type. Each line parses
/// and validates as the resource type its file claims.
async fn files(app: &TestApp, manifest: &Value, token: &str) -> BTreeMap<String, Vec<Value>> {
    let mut found: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for output in manifest["output"].as_array().expect("output") {
        let url = output["url"].as_str().expect("url");
        assert!(url.starts_with("http://"), "absolute URLs: {url}");
        let response = app
            .client
            .get(url)
            .bearer_auth(token)
            .header("accept", "application/fhir+ndjson")
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/fhir+ndjson");
        let text = response.text().await.expect("body");
        let resource_type = output["type"].as_str().expect("type");
        let lines: Vec<Value> =
            text.lines().map(|line| serde_json::from_str(line).expect("every line is JSON")).collect();
        assert_eq!(lines.len() as u64, output["count"].as_u64().expect("count"), "{url}");
        for line in &lines {
            assert_eq!(line["resourceType"], resource_type, "{url}");
            if line["meta"]["tag"].to_string().contains("SUBSETTED") {
                // An `_elements` subset lacks what profiles require by design.
                continue;
            }
            let errors: Vec<_> =
                fhir::Definitions::get().validate(line).into_iter().filter(fhir::Issue::is_error).collect();
            assert!(errors.is_empty(), "{url}: {errors:?}");
        }
        found.entry(resource_type.to_owned()).or_default().extend(lines);
    }
    found
}

fn ids(resources: &[Value]) -> BTreeSet<String> {
    resources.iter().map(|resource| resource["id"].as_str().expect("id").to_owned()).collect()
}

/// True when `resource` is, or points at, one of `patients`.
fn about(resource: &Value, patients: &[&str]) -> bool {
    let text = resource.to_string();
    patients.iter().any(|id| {
        (resource["resourceType"] == "Patient" && resource["id"] == *id) || text.contains(&format!("\"Patient/{id}\""))
    })
}

#[tokio::test]
async fn a_group_export_holds_its_patients_their_compartments_and_what_they_reference() {
    let (_open, app, loaded) = conformance().await;
    let token = app.token(SYSTEM_READ, None);
    let status = kick_off(&app, "Group/1a/$export", &token).await;
    assert!(status.starts_with(&app.base), "{status}");
    let manifest = manifest(&app, &status, &token).await;
    for key in ["transactionTime", "request", "requiresAccessToken", "output", "error"] {
        assert!(manifest.get(key).is_some(), "{key} in {manifest}");
    }
    assert_eq!(manifest["requiresAccessToken"], true);
    assert_eq!(manifest["request"], format!("{}/Group/1a/$export", app.base));
    let exported = files(&app, &manifest, &token).await;

    let members = ["85", "355", "907"];
    assert_eq!(ids(&exported["Patient"]), members.iter().map(|id| (*id).to_owned()).collect());
    // Every type the checklist's §5 requires has a file (the members' data holds them all).
    let required = [
        "Patient",
        "AllergyIntolerance",
        "CarePlan",
        "CareTeam",
        "Condition",
        "Device",
        "DiagnosticReport",
        "DocumentReference",
        "Goal",
        "Immunization",
        "MedicationRequest",
        "Observation",
        "Procedure",
        "Encounter",
        "Organization",
        "Practitioner",
        "Provenance",
        "ServiceRequest",
        "RelatedPerson",
        "Coverage",
        "MedicationDispense",
        "Specimen",
        "Location",
    ];
    for resource_type in required {
        assert!(exported.contains_key(resource_type), "{resource_type}: {:?}", exported.keys());
    }
    let of_members: Vec<&Value> = loaded.resources.iter().filter(|resource| about(resource, &members)).collect();
    // Exactly the members' compartments: every compartment resource is about a member, and
    // every loaded Observation, Condition and Encounter about a member is there.
    for (resource_type, resources) in &exported {
        if ["Organization", "Practitioner", "Location", "Medication"].contains(&resource_type.as_str()) {
            continue;
        }
        for resource in resources {
            assert!(about(resource, &members), "{resource_type}/{} is no member's", resource["id"]);
        }
    }
    for resource_type in ["Observation", "Condition", "Encounter"] {
        let expected: BTreeSet<String> = of_members
            .iter()
            .filter(|resource| resource["resourceType"] == resource_type)
            .map(|resource| resource["id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(ids(&exported[resource_type]), expected, "{resource_type}");
    }
    // The Organizations, Practitioners and Locations are those the members' data references.
    let referenced: BTreeSet<String> = exported
        .values()
        .flatten()
        .flat_map(|resource| fhir::references::references(resource).into_iter().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    for resource_type in ["Organization", "Practitioner", "Location"] {
        for id in ids(&exported[resource_type]) {
            assert!(referenced.contains(&format!("{resource_type}/{id}")), "{resource_type}/{id} is referenced");
        }
    }
}

#[tokio::test]
async fn kick_off_needs_a_token_and_respond_async() {
    let (_open, app, _) = conformance().await;
    let response = app
        .request(reqwest::Method::GET, "Group/1a/$export")
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async")
        .send()
        .await
        .expect("send");
    assert_outcome(response, StatusCode::UNAUTHORIZED, "login").await;
    let token = app.token(SYSTEM_READ, None);
    let response = app.request(reqwest::Method::GET, "$export").bearer_auth(&token).send().await.expect("send");
    let outcome = assert_outcome(response, StatusCode::BAD_REQUEST, "invalid").await;
    assert!(outcome.to_string().contains("respond-async"), "{outcome}");
    for (query, problem) in [
        ("_outputFormat=text/csv", "_outputFormat"),
        ("_type=Bogus", "Bogus"),
        ("_since=yesterday", "_since"),
        ("_typeFilter=Observation%3Fbogus%3D1", "bogus"),
        ("_typeFilter=Observation", "Type?query"),
    ] {
        let response = app
            .request(reqwest::Method::GET, &format!("$export?{query}"))
            .bearer_auth(&token)
            .header("prefer", "respond-async")
            .send()
            .await
            .expect("send");
        let (status, outcome) = status_and_json(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {outcome}");
        assert!(outcome.to_string().contains(problem), "{query}: {outcome}");
    }
    for format in ["application/fhir+ndjson", "application/ndjson", "ndjson"] {
        let query = serde_urlencoded::to_string([("_type", "Patient"), ("_outputFormat", format)]).expect("query");
        let status = kick_off(&app, &format!("$export?{query}"), &token).await;
        assert_eq!(app.client.delete(&status).bearer_auth(&token).send().await.expect("send").status(), 202);
    }
}

#[tokio::test]
async fn type_since_and_type_filter_narrow_a_system_export() {
    let (open, app, loaded) = conformance().await;
    let token = app.token(SYSTEM_READ, None);
    let status = kick_off(&app, "$export?_type=Patient,Condition", &token).await;
    let exported = files(&app, &manifest(&app, &status, &token).await, &token).await;
    assert_eq!(exported.keys().collect::<Vec<_>>(), ["Condition", "Patient"]);
    let count = |resource_type: &str| loaded.resources.iter().filter(|r| r["resourceType"] == resource_type).count();
    assert_eq!(exported["Patient"].len(), count("Patient"));
    assert_eq!(exported["Condition"].len(), count("Condition"));

    let laboratory = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    let filter = format!("Observation?category={laboratory}");
    let query =
        serde_urlencoded::to_string([("_type", "Observation"), ("_typeFilter", filter.as_str())]).expect("query");
    let status = kick_off(&app, &format!("$export?{query}"), &token).await;
    let exported = files(&app, &manifest(&app, &status, &token).await, &token).await;
    let labs = &exported["Observation"];
    assert!(!labs.is_empty());
    assert!(labs.len() < count("Observation"));
    for observation in labs {
        assert!(observation["category"].to_string().contains("\"laboratory\""), "{observation}");
    }

    let since = fhir::instant::format(time::OffsetDateTime::now_utc());
    let created = open.create(&json!({"resourceType": "Patient", "name": [{"family": "Later"}]})).await;
    let query = serde_urlencoded::to_string([("_since", since.as_str())]).expect("query");
    let status = kick_off(&app, &format!("$export?{query}"), &token).await;
    let exported = files(&app, &manifest(&app, &status, &token).await, &token).await;
    assert_eq!(exported.keys().collect::<Vec<_>>(), ["Patient"]);
    assert_eq!(ids(&exported["Patient"]), BTreeSet::from([created]));
}

#[tokio::test]
async fn a_cancelled_export_is_gone() {
    let (_open, app, _) = conformance().await;
    let token = app.token(SYSTEM_READ, None);
    let status = kick_off(&app, "Group/1a/$export", &token).await;
    let response = app.client.delete(&status).bearer_auth(&token).header("accept", "application/json").send().await;
    assert_eq!(response.expect("send").status(), StatusCode::ACCEPTED);
    let response = app.client.get(&status).bearer_auth(&token).send().await.expect("send");
    let outcome = assert_outcome(response, StatusCode::NOT_FOUND, "not-found").await;
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let response = app.client.delete(&status).bearer_auth(&token).send().await.expect("send");
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "cancelled once");
}

#[tokio::test]
async fn status_and_files_are_only_for_the_client_that_started_the_export() {
    let (_open, app, _) = conformance().await;
    let token = app.token(SYSTEM_READ, None);
    let status = kick_off(&app, "Group/1a/$export", &token).await;
    let manifest = manifest(&app, &status, &token).await;
    let file = manifest["output"][0]["url"].as_str().expect("a file").to_owned();
    let response = app.client.get(&file).send().await.expect("send");
    assert_outcome(response, StatusCode::UNAUTHORIZED, "login").await;
    let other = app.token_of_client("another-client", &app.base, SYSTEM_READ, None, 3600);
    for url in [&file, &status] {
        let response = app.client.get(url).bearer_auth(&other).send().await.expect("send");
        assert_outcome(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let response = app.client.delete(&status).bearer_auth(&other).send().await.expect("send");
    assert_outcome(response, StatusCode::FORBIDDEN, "forbidden").await;
    let sandbox = format!("{}/sandbox/fhir", app.root);
    let sandbox_token = app.token_for(&sandbox, SYSTEM_READ, None, 3600);
    let elsewhere = file.replace(&app.base, &sandbox);
    let response = app.client.get(&elsewhere).bearer_auth(&sandbox_token).send().await.expect("send");
    assert_outcome(response, StatusCode::NOT_FOUND, "not-found").await;
    let missing = format!("{}/$export-file/{}/Patient-99.ndjson", app.base, status.rsplit('/').next().expect("id"));
    let response = app.client.get(&missing).bearer_auth(&token).send().await.expect("send");
    assert_outcome(response, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn scopes_decide_what_an_export_holds() {
    let (_open, app, _) = conformance().await;
    // A patient's token exports that patient's compartment and nothing else.
    let token = app.token("patient/*.read", Some("85"));
    let status = kick_off(&app, "Patient/$export", &token).await;
    let exported = files(&app, &manifest(&app, &status, &token).await, &token).await;
    assert_eq!(ids(&exported["Patient"]), BTreeSet::from(["85".to_owned()]));
    for (resource_type, resources) in &exported {
        if !["Organization", "Practitioner", "Location", "Medication"].contains(&resource_type.as_str()) {
            assert!(resources.iter().all(|resource| about(resource, &["85"])), "{resource_type}");
        }
    }
    for path in ["$export", "Group/1a/$export"] {
        let response = app
            .request(reqwest::Method::GET, path)
            .bearer_auth(&token)
            .header("prefer", "respond-async")
            .send()
            .await
            .expect("send");
        assert_outcome(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // A patient's token cannot name another patient.
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/355"}}]});
    let response = post_kick_off(&app, "Patient/$export", &token, &parameters).await;
    assert_outcome(response, StatusCode::FORBIDDEN, "forbidden").await;

    // System scopes on two types: the export holds those two, and says what it left out.
    let token = app.token("system/Patient.read system/Condition.rs", None);
    let status = kick_off(&app, "$export?_type=Patient,Condition,Observation", &token).await;
    let manifest = manifest(&app, &status, &token).await;
    let exported = files(&app, &manifest, &token).await;
    assert_eq!(exported.keys().collect::<Vec<_>>(), ["Condition", "Patient"]);
    let error = manifest["error"][0]["url"].as_str().expect("an error file");
    let text = app.client.get(error).bearer_auth(&token).send().await.expect("send").text().await.expect("text");
    let outcome: Value = serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(outcome.to_string().contains("Observation was left out: the access token may not read it"), "{outcome}");
}

#[tokio::test]
async fn a_post_kick_off_takes_parameters_and_elements_subset_resources() {
    let (_open, app, _) = conformance().await;
    let token = app.token(SYSTEM_READ, None);
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient,Observation"},
        {"name": "_elements", "valueString": "Observation.status,gender"},
        {"name": "patient", "valueReference": {"reference": "Patient/85"}},
    ]});
    let response = post_kick_off(&app, "Patient/$export", &token, &parameters).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let status = response.headers()["content-location"].to_str().expect("location").to_owned();
    let exported = files(&app, &manifest(&app, &status, &token).await, &token).await;
    assert_eq!(ids(&exported["Patient"]), BTreeSet::from(["85".to_owned()]));
    assert!(!exported["Observation"].is_empty());
    let patient = &exported["Patient"][0];
    assert!(patient.get("gender").is_some() && patient.get("name").is_none(), "{patient}");
    for observation in &exported["Observation"] {
        let keys: BTreeSet<&str> = observation.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["resourceType", "id", "meta", "status"]), "{observation}");
        assert!(observation["meta"]["tag"].to_string().contains("SUBSETTED"));
    }
}

#[tokio::test]
async fn the_capability_statement_declares_bulk_export() {
    let app = TestApp::spawn().await;
    let (_, statement) = status_and_json(app.get("metadata").await).await;
    assert!(statement["instantiates"].to_string().contains("bulkdata/CapabilityStatement/bulk-data"));
    let group = statement["rest"][0]["resource"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|resource| resource["type"] == "Group")
        .expect("Group");
    assert_eq!(group["operation"][0]["name"], "export");
    assert_eq!(group["operation"][0]["definition"], "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export");
}

#[tokio::test]
async fn files_are_removed_when_their_export_expires() {
    let open = TestApp::spawn().await;
    open.create(&json!({"resourceType": "Patient", "name": [{"family": "Brief"}]})).await;
    let root = tempfile::tempdir().expect("temp dir");
    let folder = root.path().to_path_buf();
    let app = open
        .spawn_secured_sharing(move |config| {
            config.export.location = export::Location::Folder(folder);
            config.export.retention = Duration::ZERO;
            config.export.poll = Duration::from_millis(10);
        })
        .await;
    let token = app.token(SYSTEM_READ, None);
    let status = kick_off(&app, "$export?_type=Patient", &token).await;
    let job = status.rsplit('/').next().expect("job id").to_owned();
    // Complete, then expired at the runner's next round: the status is then 404 for good.
    let mut seen_files = false;
    for _ in 0..2_000 {
        let response = app.client.get(&status).bearer_auth(&token).send().await.expect("send");
        match response.status() {
            StatusCode::NOT_FOUND => {
                assert_outcome(response, StatusCode::NOT_FOUND, "not-found").await;
                assert!(!root.path().join(&job).exists(), "the export's folder is removed");
                let file = format!("{}/$export-file/{job}/Patient-0.ndjson", app.base);
                let response = app.client.get(&file).bearer_auth(&token).send().await.expect("send");
                assert_outcome(response, StatusCode::NOT_FOUND, "not-found").await;
                return;
            }
            StatusCode::OK => seen_files |= root.path().join(&job).exists(),
            StatusCode::ACCEPTED => {}
            other => panic!("polling answered {other}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the export never expired (its files were seen: {seen_files})");
}
