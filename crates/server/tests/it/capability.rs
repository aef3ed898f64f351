//! The CapabilityStatement at `GET [base]/metadata`.

use reqwest::StatusCode;

use crate::support::{TestApp, status_and_json};

#[tokio::test]
async fn metadata_lists_every_resource_type_and_us_core_profiles() {
    let app = TestApp::spawn().await;
    let (status, statement) = status_and_json(app.get("metadata").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(statement["kind"], "instance");
    let resources = statement["rest"][0]["resource"].as_array().unwrap();
    assert!(resources.len() >= 140, "every R4 resource type: {}", resources.len());
    let patient = resources.iter().find(|resource| resource["type"] == "Patient").unwrap();
    let profiles: Vec<&str> =
        patient["supportedProfile"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(profiles.contains(&"http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"), "{profiles:?}");
    let interactions: Vec<&str> =
        patient["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    for expected in ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create"] {
        assert!(interactions.contains(&expected), "{expected}");
    }
    assert!(resources.iter().all(|resource| resource["type"] != "DomainResource"), "abstract types are not listed");
    let params = patient["searchParam"].as_array().unwrap();
    let birthdate = params.iter().find(|param| param["name"] == "birthdate").expect("birthdate");
    assert_eq!(birthdate["type"], "date");
    assert_eq!(birthdate["definition"], "http://hl7.org/fhir/SearchParameter/individual-birthdate");
    assert!(params.iter().any(|param| param["name"] == "_id"));
    let revincludes: Vec<&str> =
        patient["searchRevInclude"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(revincludes.contains(&"Provenance:target"), "{revincludes:?}");
}
