//! The US Core searches that the ONC (g)(10) kit runs, over the conformance patients.
//!
//! Like the kit, each search takes its values from a resource of the patient, and every
//! resource returned must match every parameter. Expected counts are worked out here from
//! the bundles' own contents, independently of the server's index.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{TestApp, status_and_json};

const BUNDLES: &[&str] = &["85", "355", "907", "908", "client_test"];

/// The first search of each (g)(10) US Core group (US Core 6.1.0 and 7.0.0), as
/// `(type, parameters)`; `patient` takes the patient id, the others a value from a resource.
const SEARCHES: &[(&str, &[&str])] = &[
    ("AllergyIntolerance", &["patient"]),
    ("CarePlan", &["patient", "category"]),
    ("CareTeam", &["patient", "status"]),
    ("Condition", &["patient"]),
    ("Condition", &["patient", "category"]),
    ("Coverage", &["patient"]),
    ("Device", &["patient"]),
    ("DiagnosticReport", &["patient"]),
    ("DiagnosticReport", &["patient", "category"]),
    ("DiagnosticReport", &["patient", "code"]),
    ("DocumentReference", &["patient"]),
    ("DocumentReference", &["patient", "type"]),
    ("DocumentReference", &["patient", "category"]),
    ("Encounter", &["patient"]),
    ("Goal", &["patient"]),
    ("Immunization", &["patient"]),
    ("MedicationDispense", &["patient"]),
    ("MedicationRequest", &["patient", "intent"]),
    ("MedicationRequest", &["patient", "intent", "status"]),
    ("Observation", &["patient", "category"]),
    ("Observation", &["patient", "code"]),
    ("Procedure", &["patient"]),
    ("ServiceRequest", &["patient"]),
    ("ServiceRequest", &["patient", "category"]),
    ("Patient", &["_id"]),
    ("Patient", &["identifier"]),
    ("Patient", &["name"]),
    ("Patient", &["gender", "name"]),
    ("Patient", &["birthdate", "name"]),
];

/// Date searches with the comparators the kit tries: `(type, date element)`.
const DATE_SEARCHES: &[(&str, &str)] = &[
    ("Observation", "effective"),
    ("DiagnosticReport", "effective"),
    ("Encounter", "period"),
    ("Procedure", "performed"),
    ("Immunization", "occurrence"),
    ("DocumentReference", "date"),
];

/// The conformance data as loaded: each resource (with server ids and rewritten references).
pub(crate) struct Loaded {
    pub(crate) resources: Vec<Value>,
}

/// Loads the conformance bundles as transactions. Entries that fail validation are left
/// out first (the upstream data has two real errors: Patient 908 lacks the `gender` US Core
/// requires and gives `us-core-sex` a valueCoding where it takes a code, and an Observation of
/// 355 has `effectivePeriod.stop`).
pub(crate) async fn load(app: &TestApp) -> Loaded {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/demo/conformance-patients");
    let mut dropped = Vec::new();
    for name in BUNDLES {
        let text = std::fs::read_to_string(format!("{folder}/uscore_bundle_patient_{name}.json")).expect("bundle");
        let mut bundle: Value = serde_json::from_str(&text).expect("json");
        let entries = bundle["entry"].as_array_mut().expect("entries");
        entries.retain(|entry| {
            let valid = !fhir::Definitions::get().validate(&entry["resource"]).iter().any(fhir::Issue::is_error);
            if !valid {
                dropped.push(format!("{name}: {}", entry["resource"]["resourceType"]));
            }
            valid
        });
        let response = app
            .client
            .post(&app.base)
            .header("content-type", "application/fhir+json")
            .body(bundle.to_string())
            .send()
            .await
            .expect("send");
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::OK, "bundle {name}: {body}");
    }
    assert_eq!(dropped, ["355: \"Observation\"", "908: \"Patient\""], "only the two known errors are left out");
    let mut resources = Vec::new();
    let mut next = Some(format!("{}/_history?_count=1000", app.base));
    while let Some(url) = next {
        let (_, page) = status_and_json(app.client.get(&url).send().await.expect("send")).await;
        for entry in page["entry"].as_array().into_iter().flatten() {
            resources.push(entry["resource"].clone());
        }
        next = page["link"].as_array().and_then(|links| {
            links
                .iter()
                .find(|link| link["relation"] == "next")
                .map(|link| link["url"].as_str().unwrap_or("").to_owned())
        });
    }
    Loaded { resources }
}

/// The patient a resource belongs to (`Patient/85` → `85`).
fn patient_of(resource: &Value) -> Option<String> {
    if resource["resourceType"] == "Patient" {
        return resource["id"].as_str().map(str::to_owned);
    }
    ["subject", "patient", "beneficiary"].iter().find_map(|field| {
        let reference = resource[*field]["reference"].as_str()?;
        reference.strip_prefix("Patient/").map(str::to_owned)
    })
}

fn codings(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(codings).collect(),
        Value::Object(map) => {
            map.get("coding").and_then(Value::as_array).map(|c| c.iter().collect()).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// The element a token parameter reads, per the search parameter definitions.
fn token_element(param: &str) -> &'static str {
    match param {
        "category" => "category",
        "code" => "code",
        "type" => "type",
        "clinical-status" => "clinicalStatus",
        _ => "",
    }
}

/// A value for `param` taken from `resource`, in the form the kit sends.
fn value_of(resource: &Value, param: &str) -> Option<String> {
    match param {
        "patient" => patient_of(resource),
        "_id" => resource["id"].as_str().map(str::to_owned),
        "status" | "intent" | "gender" => resource[param].as_str().map(str::to_owned),
        "birthdate" => resource["birthDate"].as_str().map(str::to_owned),
        "name" => resource["name"][0]["family"].as_str().map(str::to_owned),
        "identifier" => {
            let identifier = &resource["identifier"][0];
            Some(format!("{}|{}", identifier["system"].as_str()?, identifier["value"].as_str()?))
        }
        _ => codings(&resource[token_element(param)])
            .first()
            .and_then(|coding| coding["code"].as_str())
            .map(str::to_owned),
    }
}

/// Whether `resource` matches `param=value`, judged from its JSON.
fn matches(resource: &Value, param: &str, value: &str) -> bool {
    match param {
        "patient" => patient_of(resource).as_deref() == Some(value),
        "_id" => resource["id"] == value,
        "status" | "intent" | "gender" => value.split(',').any(|value| resource[param] == value),
        "birthdate" => resource["birthDate"] == value,
        "name" => resource["name"].as_array().into_iter().flatten().any(|name| {
            let parts = name["given"].as_array().into_iter().flatten().chain(std::iter::once(&name["family"]));
            parts.filter_map(Value::as_str).any(|part| part.to_lowercase().starts_with(&value.to_lowercase()))
        }),
        "identifier" => resource["identifier"].as_array().into_iter().flatten().any(|identifier| {
            format!("{}|{}", identifier["system"].as_str().unwrap_or(""), identifier["value"].as_str().unwrap_or(""))
                == value
        }),
        _ => {
            let (system, code) = value.split_once('|').map_or((None, value), |(system, code)| (Some(system), code));
            codings(&resource[token_element(param)])
                .iter()
                .any(|coding| coding["code"] == code && system.is_none_or(|system| coding["system"] == system))
        }
    }
}

/// Match ids of a search, across every page.
async fn search_ids(app: &TestApp, resource_type: &str, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next = Some(format!("{}/{resource_type}?{query}&_count=200", app.base));
    while let Some(url) = next {
        let (status, page) = status_and_json(app.client.get(&url).send().await.expect("send")).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        for entry in page["entry"].as_array().into_iter().flatten() {
            if entry["search"]["mode"] == "match" {
                ids.push(entry["resource"]["id"].as_str().unwrap_or("").to_owned());
            }
        }
        next = page["link"].as_array().and_then(|links| {
            links
                .iter()
                .find(|link| link["relation"] == "next")
                .map(|link| link["url"].as_str().unwrap_or("").to_owned())
        });
    }
    ids.sort();
    ids
}

fn encode(pairs: &[(String, String)]) -> String {
    serde_urlencoded::to_string(pairs).expect("encode")
}

#[tokio::test]
async fn us_core_searches_return_exactly_the_matching_resources() {
    let app = TestApp::spawn().await;
    let loaded = load(&app).await;
    let by_id: HashMap<String, &Value> = loaded
        .resources
        .iter()
        .map(|resource| {
            (
                format!(
                    "{}/{}",
                    resource["resourceType"].as_str().unwrap_or(""),
                    resource["id"].as_str().unwrap_or("")
                ),
                resource,
            )
        })
        .collect();
    let patients: Vec<String> = ["85", "355", "907", "us-core-client-tests-patient"].map(str::to_owned).to_vec();
    let mut searches_run = 0;
    for (resource_type, params) in SEARCHES {
        for patient in &patients {
            let of_patient: Vec<&Value> = loaded
                .resources
                .iter()
                .filter(|resource| {
                    resource["resourceType"] == *resource_type && patient_of(resource).as_deref() == Some(patient)
                })
                .collect();
            let Some(seed) =
                of_patient.iter().find(|resource| params.iter().all(|param| value_of(resource, param).is_some()))
            else {
                continue;
            };
            let pairs: Vec<(String, String)> =
                params.iter().map(|param| (param.to_string(), value_of(seed, param).unwrap_or_default())).collect();
            let expected: Vec<&&Value> = of_patient
                .iter()
                .filter(|resource| pairs.iter().all(|(param, value)| matches(resource, param, value)))
                .collect();
            let got = search_ids(&app, resource_type, &encode(&pairs)).await;
            let query = encode(&pairs);
            assert_eq!(got.len(), expected.len(), "{resource_type}?{query}");
            for id in &got {
                let resource = by_id[&format!("{resource_type}/{id}")];
                for (param, value) in &pairs {
                    assert!(matches(resource, param, value), "{resource_type}/{id} does not match {param}={value}");
                }
            }
            check_variants(&app, resource_type, &pairs, seed, &got).await;
            searches_run += 1;
        }
    }
    assert!(searches_run >= 60, "searches run: {searches_run}");
}

/// The kit's variant checks: `patient=Patient/id`, POST `_search`, `system|code`.
async fn check_variants(app: &TestApp, resource_type: &str, pairs: &[(String, String)], seed: &Value, got: &[String]) {
    let query = encode(pairs);
    if pairs.iter().any(|(param, _)| param == "patient") {
        let typed: Vec<(String, String)> = pairs
            .iter()
            .map(|(param, value)| {
                if param == "patient" {
                    (param.clone(), format!("Patient/{value}"))
                } else {
                    (param.clone(), value.clone())
                }
            })
            .collect();
        assert_eq!(search_ids(app, resource_type, &encode(&typed)).await, got, "{resource_type}: patient=Patient/id");
    }
    let response = app
        .request(Method::POST, &format!("{resource_type}/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("{query}&_count=500"))
        .send()
        .await
        .expect("send");
    let (_, bundle) = status_and_json(response).await;
    let mut posted: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["search"]["mode"] == "match")
        .map(|entry| entry["resource"]["id"].as_str().unwrap_or("").to_owned())
        .collect();
    posted.sort();
    assert_eq!(posted, got, "{resource_type}: POST _search equals GET");
    for (param, _) in pairs.iter().filter(|(param, _)| !token_element(param).is_empty()) {
        let coding = codings(&seed[token_element(param)])[0];
        let with_system: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| {
                if name == param {
                    (name.clone(), format!("{}|{}", coding["system"].as_str().unwrap_or(""), value))
                } else {
                    (name.clone(), value.clone())
                }
            })
            .collect();
        let found = search_ids(app, resource_type, &encode(&with_system)).await;
        assert!(
            !found.is_empty() && found.iter().all(|id| got.contains(id)),
            "{resource_type}: system|code for {param}"
        );
    }
}

/// The date element of a resource as a range in microseconds.
fn date_range(resource: &Value, element: &str) -> Option<(i64, i64)> {
    let map = resource.as_object()?;
    let (key, value) = map.iter().find(|(key, _)| {
        key.as_str() == element
            || key.strip_prefix(element).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
    })?;
    match value {
        Value::String(text) => fhir::instant::range(text),
        Value::Object(period) if key.ends_with("Period") || key == "period" => {
            let low =
                period.get("start").and_then(Value::as_str).and_then(fhir::instant::range).map_or(i64::MIN, |r| r.0);
            let high =
                period.get("end").and_then(Value::as_str).and_then(fhir::instant::range).map_or(i64::MAX, |r| r.1);
            Some((low, high))
        }
        _ => None,
    }
}

fn date_text(resource: &Value, element: &str) -> Option<String> {
    let map = resource.as_object()?;
    map.iter().find_map(|(key, value)| {
        let is_element = key.as_str() == element
            || key.strip_prefix(element).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()));
        if !is_element {
            return None;
        }
        value.as_str().or_else(|| value["start"].as_str()).map(str::to_owned)
    })
}

#[tokio::test]
async fn us_core_date_searches_honour_comparators() {
    let app = TestApp::spawn().await;
    let loaded = load(&app).await;
    let mut checked = 0;
    for (resource_type, element) in DATE_SEARCHES {
        for patient in ["85", "355"] {
            let of_patient: Vec<&Value> = loaded
                .resources
                .iter()
                .filter(|resource| {
                    resource["resourceType"] == *resource_type && patient_of(resource).as_deref() == Some(patient)
                })
                .collect();
            let Some(seed) = of_patient.iter().find(|resource| date_text(resource, element).is_some()) else {
                continue;
            };
            let text = date_text(seed, element).unwrap_or_default();
            let (query_low, query_high) = fhir::instant::range(&text).expect("seed date");
            for prefix in ["", "gt", "ge", "lt", "le"] {
                let expected = of_patient
                    .iter()
                    .filter(|resource| {
                        date_range(resource, element).is_some_and(|(low, high)| match prefix {
                            "gt" => high > query_high,
                            "ge" => high >= query_low,
                            "lt" => low < query_low,
                            "le" => low <= query_high,
                            _ => low >= query_low && high <= query_high,
                        })
                    })
                    .count();
                let pairs =
                    vec![("patient".to_owned(), patient.to_owned()), ("date".to_owned(), format!("{prefix}{text}"))];
                let got = search_ids(&app, resource_type, &encode(&pairs)).await;
                assert_eq!(got.len(), expected, "{resource_type}?{}", encode(&pairs));
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "date searches checked: {checked}");
}

#[tokio::test]
async fn us_core_includes_and_revincludes() {
    let app = TestApp::spawn().await;
    let loaded = load(&app).await;
    // Provenance targets: every target of every Provenance comes back with _revinclude.
    let provenance =
        loaded.resources.iter().find(|resource| resource["resourceType"] == "Provenance").expect("a Provenance");
    let target = provenance["target"][0]["reference"].as_str().expect("target");
    let (target_type, target_id) = target.split_once('/').expect("Type/id");
    let (_, bundle) =
        status_and_json(app.get(&format!("{target_type}?_id={target_id}&_revinclude=Provenance:target")).await).await;
    let included: Vec<&Value> =
        bundle["entry"].as_array().into_iter().flatten().filter(|entry| entry["search"]["mode"] == "include").collect();
    assert!(included.iter().any(|entry| entry["resource"]["id"] == provenance["id"]), "{bundle}");
    // MedicationRequest:medication brings the referenced Medication.
    let request = loaded
        .resources
        .iter()
        .find(|resource| {
            resource["resourceType"] == "MedicationRequest" && resource["medicationReference"]["reference"].is_string()
        })
        .expect("a MedicationRequest with a medicationReference");
    let patient = patient_of(request).expect("patient");
    let query = format!(
        "MedicationRequest?patient={patient}&intent={}&_include=MedicationRequest:medication",
        request["intent"].as_str().unwrap_or("")
    );
    let (_, bundle) = status_and_json(app.get(&query).await).await;
    let medication = request["medicationReference"]["reference"].as_str().unwrap_or("");
    let included: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["search"]["mode"] == "include")
        .map(|entry| {
            format!(
                "{}/{}",
                entry["resource"]["resourceType"].as_str().unwrap_or(""),
                entry["resource"]["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(included.contains(&medication.to_owned()), "{medication} not in {included:?}");
    // Comma OR: every intent at once.
    let every = "proposal,plan,order,original-order,reflex-order,filler-order,instance-order,option";
    let all = search_ids(&app, "MedicationRequest", &format!("patient={patient}&intent={every}")).await;
    let expected = loaded
        .resources
        .iter()
        .filter(|resource| {
            resource["resourceType"] == "MedicationRequest" && patient_of(resource).as_deref() == Some(patient.as_str())
        })
        .count();
    assert_eq!(all.len(), expected);
}
