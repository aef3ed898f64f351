//! The 721 official R4 examples: each valid one is stored with `PUT` and read back identical
//! apart from `meta.versionId` and `meta.lastUpdated`; the few the validator rejects (listed,
//! with the reason, in the `fhir` crate's `tests/examples.rs`) are refused with 400.

use std::io::Read;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::TestApp;

/// Examples with real errors (see `crates/fhir/tests/examples.rs` for the reasons).
const INVALID: &[&str] = &[
    "ImplementationGuide-fhir.json",
    "ig-r4.json",
    "Questionnaire-qs1.json",
    "Bundle-types.json",
    "DiagnosticReport-example-pgx.json",
    "Observation-example-genetics-brcapat.json",
    "Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json",
    "Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json",
    "Bundle-lri-example.json",
    "ActivityDefinition-blood-tubes-supply.json",
    "ActivityDefinition-heart-valve-replacement.json",
    "EventDefinition-example.json",
    "Questionnaire-zika-virus-exposure-assessment.json",
];

fn examples() -> Vec<(String, Value)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/packages/hl7.fhir.r4.examples-4.0.1.tgz");
    let file = std::fs::File::open(path).expect("examples package");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut examples = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".json") || name == "package.json" || name.starts_with('.') {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("read");
        examples.push((name, serde_json::from_str(&text).expect("example JSON")));
    }
    examples
}

fn without_version_meta(mut resource: Value) -> Value {
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            resource.as_object_mut().unwrap().remove("meta");
        }
    }
    resource
}

#[tokio::test]
async fn every_official_example_round_trips() {
    let app = TestApp::spawn().await;
    let examples = examples();
    assert_eq!(examples.len(), 720, "the package's example resources");
    let mut stored = 0;
    for (name, example) in examples {
        let resource_type = example["resourceType"].as_str().unwrap().to_owned();
        let id = example["id"].as_str().unwrap().to_owned();
        let response = app.put(&format!("{resource_type}/{id}"), &example).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        if INVALID.contains(&name.as_str()) {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name} should be refused: {body}");
            continue;
        }
        assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{name}: {status} {body}");
        let read: Value = app.get(&format!("{resource_type}/{id}")).await.json().await.unwrap();
        assert_eq!(without_version_meta(read), without_version_meta(example), "{name} did not round-trip");
        stored += 1;
    }
    assert_eq!(stored, 720 - INVALID.len());
}
