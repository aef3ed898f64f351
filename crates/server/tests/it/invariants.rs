//! The FHIRPath invariants of the definitions, as a client meets them on a write: an `error`
//! invariant that does not hold is a 400 whose OperationOutcome names the constraint's key
//! and human text, with the resource's path in `expression`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, status_and_json};

/// The error issues of a write refused with 400.
async fn errors(app: &TestApp, resource: &Value) -> Vec<Value> {
    let resource_type = resource["resourceType"].as_str().expect("type");
    let (status, outcome) = status_and_json(app.post(resource_type, resource).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
    outcome["issue"].as_array().expect("issues").iter().filter(|issue| issue["severity"] == "error").cloned().collect()
}

/// The single error issue of a write refused with 400.
async fn refused(app: &TestApp, resource: &Value) -> Value {
    let mut errors = errors(app, resource).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.remove(0)
}

#[tokio::test]
async fn a_contained_resource_referenced_from_nowhere_is_refused_by_dom_3() {
    let app = TestApp::spawn().await;
    let mut patient = json!({"resourceType": "Patient",
        "contained": [{"resourceType": "Organization", "id": "org1", "name": "Clinic"}]});
    let issue = refused(&app, &patient).await;
    assert_eq!(issue["code"], "invariant");
    assert!(issue["diagnostics"].as_str().expect("text").starts_with("dom-3: If the resource is contained"), "{issue}");
    assert_eq!(issue["expression"][0], "Patient");
    patient["managingOrganization"] = json!({"reference": "#org1"});
    let (status, body) = status_and_json(app.post("Patient", &patient).await).await;
    assert_eq!(status, StatusCode::CREATED, "referenced, it is allowed: {body}");
}

#[tokio::test]
async fn nested_contained_resources_and_their_meta_are_refused() {
    let app = TestApp::spawn().await;
    let nested = json!({"resourceType": "Patient", "managingOrganization": {"reference": "#org1"},
        "contained": [{"resourceType": "Organization", "id": "org1", "name": "Clinic",
            "contained": [{"resourceType": "Organization", "id": "inner", "name": "Inner"}]}]});
    let issues = errors(&app, &nested).await;
    let keys: Vec<&str> = issues.iter().filter_map(|issue| issue["diagnostics"].as_str()?.split(':').next()).collect();
    // The inner Organization is nested (dom-2 on the Patient) and referenced from nowhere
    // (dom-3 on the outer Organization).
    assert_eq!(keys, ["dom-3", "dom-2"], "{issues:?}");
    let versioned = json!({"resourceType": "Patient", "managingOrganization": {"reference": "#org1"},
        "contained": [{"resourceType": "Organization", "id": "org1", "name": "Clinic", "meta": {"versionId": "1"}}]});
    let issue = refused(&app, &versioned).await;
    assert!(issue["diagnostics"].as_str().expect("text").starts_with("dom-4:"), "{issue}");
}

#[tokio::test]
async fn resource_invariants_are_checked() {
    let app = TestApp::spawn().await;
    let base = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}});
    // obs-6: dataAbsentReason only when there is no value.
    let mut both = base.clone();
    both["valueQuantity"] = json!({"value": 72});
    both["dataAbsentReason"] = json!({"text": "not asked"});
    let issue = refused(&app, &both).await;
    assert!(issue["diagnostics"].as_str().expect("text").starts_with("obs-6:"), "{issue}");
    assert_eq!(issue["expression"][0], "Observation");
    // obs-7: a component with the Observation's own code, when the Observation has a value.
    let mut same_code = base.clone();
    same_code["valueQuantity"] = json!({"value": 72});
    same_code["component"] = json!([{"code": base["code"], "valueQuantity": {"value": 70}}]);
    let issue = refused(&app, &same_code).await;
    assert!(issue["diagnostics"].as_str().expect("text").starts_with("obs-7:"), "{issue}");
    // Within a transaction too: the entry is named.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": both, "request": {"method": "POST", "url": "Observation"}}]});
    let (status, outcome) = status_and_json(app.post_base(&bundle).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{outcome}");
    assert!(outcome.to_string().contains("obs-6"), "{outcome}");
    let mut fine = base;
    fine["valueQuantity"] = json!({"value": 72});
    let (status, body) = status_and_json(app.post("Observation", &fine).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// A write asking for an OperationOutcome back; the status and the outcome.
async fn written_with_outcome(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    resource: &Value,
) -> (StatusCode, Value) {
    let response = app
        .request(method, path)
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=OperationOutcome")
        .body(resource.to_string())
        .send()
        .await
        .expect("send");
    status_and_json(response).await
}

/// The diagnostics of the outcome's warnings.
fn warnings(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .filter(|issue| issue["severity"] == "warning")
        .map(|issue| issue["diagnostics"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_warning_invariant_leaves_a_warning_on_a_successful_write() {
    let app = TestApp::spawn().await;
    // dom-6 (warning): a resource should have a narrative.
    let bare = json!({"resourceType": "Patient", "name": [{"family": "Warned"}]});
    let (status, outcome) = written_with_outcome(&app, reqwest::Method::POST, "Patient", &bare).await;
    assert_eq!(status, StatusCode::CREATED, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let found = warnings(&outcome);
    assert_eq!(found.len(), 1, "{outcome}");
    assert!(found[0].starts_with("dom-6: A resource should have narrative"), "{outcome}");

    let narrated = json!({"resourceType": "Patient", "name": [{"family": "Narrated"}],
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Narrated</div>"}});
    let (status, outcome) = written_with_outcome(&app, reqwest::Method::POST, "Patient", &narrated).await;
    assert_eq!(status, StatusCode::CREATED, "{outcome}");
    assert!(warnings(&outcome).is_empty(), "{outcome}");

    // An update warns the same way.
    let id = app.create(&bare).await;
    let mut update = bare.clone();
    update["id"] = json!(id);
    let (status, outcome) = written_with_outcome(&app, reqwest::Method::PUT, &format!("Patient/{id}"), &update).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(warnings(&outcome).len(), 1, "{outcome}");

    // In a transaction, each entry's response carries its warnings as its outcome.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": bare, "request": {"method": "POST", "url": "Patient"}},
        {"resource": narrated, "request": {"method": "POST", "url": "Patient"}}]});
    let (status, response) = status_and_json(app.post_base(&bundle).await).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let first = &response["entry"][0]["response"];
    assert_eq!(first["status"], "201 Created");
    assert!(warnings(&first["outcome"])[0].starts_with("dom-6"), "{response}");
    assert!(response["entry"][1]["response"].get("outcome").is_none(), "{response}");
}

#[tokio::test]
async fn data_type_invariants_are_checked_where_their_values_sit() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({"resourceType": "Patient", "name": [{"family": "P", "period": {"start": "2020-01-01", "end": "2010-01-01"}}]}),
            "per-1",
            "Patient.name[0].period",
        ),
        (
            json!({"resourceType": "Patient", "managingOrganization": {"reference": "#missing"}}),
            "ref-1",
            "Patient.managingOrganization",
        ),
        (
            json!({"resourceType": "Patient", "extension": [{"url": "http://example.org/x", "valueString": "v",
                "extension": [{"url": "inner", "valueBoolean": true}]}]}),
            "ext-1",
            "Patient.extension[0]",
        ),
        (json!({"resourceType": "Patient", "name": [{"id": "only-an-id"}]}), "ele-1", "Patient.name[0]"),
    ];
    for (resource, key, path) in cases {
        let issue = refused(&app, &resource).await;
        assert!(issue["diagnostics"].as_str().expect("text").starts_with(&format!("{key}:")), "{key}: {issue}");
        assert_eq!(issue["expression"][0], path, "{key}: {issue}");
    }
    // Repaired, each is accepted: the period in order, the local reference contained, the
    // extension with a value only, the name with a family.
    let repaired = [
        json!({"resourceType": "Patient", "name": [{"family": "P", "period": {"start": "2010-01-01", "end": "2020-01-01"}}]}),
        json!({"resourceType": "Patient", "managingOrganization": {"reference": "#org"},
            "contained": [{"resourceType": "Organization", "id": "org", "name": "Clinic"}]}),
        json!({"resourceType": "Patient", "extension": [{"url": "http://example.org/x", "valueString": "v"}]}),
        json!({"resourceType": "Patient", "name": [{"id": "n1", "family": "F"}]}),
        // Compared as instants, not as text: across a change of offset (as Synthea writes on
        // the night clocks go back) this start is before this end.
        json!({"resourceType": "Patient", "name": [{"family": "P",
            "period": {"start": "2017-11-05T01:46:40-04:00", "end": "2017-11-05T01:16:40-05:00"}}]}),
    ];
    for resource in repaired {
        let (status, body) = status_and_json(app.post("Patient", &resource).await).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

/// Each broken resource is refused with its rule's key at its path, and `$validate` reports
/// the same errors; each repaired one is accepted with 201.
async fn refused_then_accepted(app: &TestApp, cases: &[(Value, &str, &str, Value)]) {
    for (broken, key, path, repaired) in cases {
        let issue = refused(app, broken).await;
        let diagnostics = issue["diagnostics"].as_str().expect("text");
        assert!(diagnostics.starts_with(&format!("{key}:")), "{key}: {issue}");
        assert_eq!(issue["expression"][0], *path, "{key}: {issue}");
        let resource_type = repaired["resourceType"].as_str().expect("type");
        let (status, outcome) = status_and_json(app.post(&format!("{resource_type}/$validate"), broken).await).await;
        assert_eq!(status, StatusCode::OK, "{outcome}");
        let reported: Vec<&Value> =
            outcome["issue"].as_array().expect("issues").iter().filter(|i| i["severity"] == "error").collect();
        assert_eq!(reported, [&issue], "{key}: $validate reports what the write did");
        let (status, body) = status_and_json(app.post(resource_type, repaired).await).await;
        assert_eq!(status, StatusCode::CREATED, "{key} repaired: {body}");
    }
}

#[tokio::test]
async fn invariants_of_backbone_elements_are_checked_on_each_value() {
    let app = TestApp::spawn().await;
    let observation = |range: Value| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "heart rate"},
            "valueQuantity": {"value": 72}, "referenceRange": range})
    };
    let questionnaire = |inner: Value| {
        json!({"resourceType": "Questionnaire", "status": "draft",
            "item": [{"linkId": "1", "type": "group", "item": [inner]}]})
    };
    let request = |repeat: Value| {
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/1"},
            "dosageInstruction": [{"timing": {"repeat": repeat}}]})
    };
    let cases = [
        (
            observation(json!([{"low": {"value": 60}}, {"appliesTo": [{"text": "adults"}]}])),
            "obs-3",
            "Observation.referenceRange[1]",
            observation(json!([{"low": {"value": 60}}, {"text": "60 to 100", "appliesTo": [{"text": "adults"}]}])),
        ),
        (
            // A nested item reuses the definition of `item` (a contentReference): so do its rules.
            questionnaire(json!({"linkId": "1.1", "type": "group"})),
            "que-1",
            "Questionnaire.item[0].item[0]",
            questionnaire(json!({"linkId": "1.1", "type": "string"})),
        ),
        (
            json!({"resourceType": "Organization", "name": "Clinic", "address": [{"use": "home", "city": "X"}]}),
            "org-2",
            "Organization.address[0]",
            json!({"resourceType": "Organization", "name": "Clinic", "address": [{"use": "work", "city": "X"}]}),
        ),
        (
            request(json!({"duration": 2})),
            "tim-1",
            "MedicationRequest.dosageInstruction[0].timing.repeat",
            request(json!({"duration": 2, "durationUnit": "h"})),
        ),
    ];
    refused_then_accepted(&app, &cases).await;
}

#[tokio::test]
async fn the_official_validators_base_checks_refuse_what_it_refuses() {
    let app = TestApp::spawn().await;
    let narrative = |inner: &str| {
        json!({"resourceType": "Patient",
            "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{inner}</div>")}})
    };
    let photo = |attachment: Value| json!({"resourceType": "Patient", "photo": [attachment]});
    let hello = |extra: Value| {
        let mut attachment = json!({"contentType": "text/plain", "data": "aGVsbG8="});
        for (key, value) in extra.as_object().expect("object") {
            attachment[key] = value.clone();
        }
        attachment
    };
    let contained = |id: &str| {
        json!({"resourceType": "Patient", "managingOrganization": {"reference": format!("#{id}")},
            "contained": [{"resourceType": "Organization", "id": id, "name": "Clinic"}]})
    };
    let cases = [
        (contained("org_1"), "res-id", "Patient.contained[0].id", contained("org-1")),
        (
            narrative("<p onclick=\"steal()\">Hi</p>"),
            "txt-1",
            "Patient.text.div",
            narrative("<p class=\"greeting\">Hi</p>"),
        ),
        (narrative("<script>steal()</script>"), "txt-1", "Patient.text.div", narrative("<b>Hi</b>")),
        (photo(hello(json!({"size": 6}))), "att-size", "Patient.photo[0].size", photo(hello(json!({"size": 5})))),
        (
            photo(hello(json!({"hash": "AAAAHdzF6KLavt4PO0gs2a6pQ00="}))),
            "att-hash",
            "Patient.photo[0].hash",
            photo(hello(json!({"hash": "qvTGHdzF6KLavt4PO0gs2a6pQ00="}))),
        ),
    ];
    refused_then_accepted(&app, &cases).await;
}

#[tokio::test]
async fn extensions_and_us_core_profiles_are_held_to_their_definitions() {
    let app = TestApp::spawn().await;
    const US_CORE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/";
    let patient = |extra: Value| {
        let mut patient = json!({"resourceType": "Patient", "meta": {"profile": [format!("{US_CORE}us-core-patient")]},
            "identifier": [{"system": "http://hospital.example/mrn", "value": "1"}],
            "name": [{"family": "Shaw", "given": ["Amy"]}], "gender": "female"});
        for (key, value) in extra.as_object().expect("object") {
            patient[key] = value.clone();
        }
        patient
    };
    let birth_sex = |code: Value| json!([{"url": format!("{US_CORE}us-core-birthsex"), "valueCode": code}]);
    let race = |text: &str| json!({"url": format!("{US_CORE}us-core-race"), "extension": [{"url": "text", "valueString": text}]});
    let weight = |code: &str, category: &str| {
        json!({"resourceType": "Observation", "meta": {"profile": [format!("{US_CORE}us-core-body-weight")]},
            "status": "final", "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2024-01-01",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})
    };
    let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    let mut birth_sex_on_observation = observation.clone();
    birth_sex_on_observation["extension"] = birth_sex(json!("F"));
    let cases = [
        (birth_sex_on_observation, "ext-context", "Observation.extension[0]", observation),
        (
            patient(json!({"extension": [{"url": format!("{US_CORE}us-core-birthsex"), "valueString": "F"}]})),
            "ext-value",
            "Patient.extension[0].valueString",
            patient(json!({"extension": birth_sex(json!("F"))})),
        ),
        (
            patient(json!({"extension": [race("White"), race("Asian")]})),
            "slice",
            "Patient.extension",
            patient(json!({"extension": [race("White")]})),
        ),
        (weight("29463-7", "laboratory"), "slice", "Observation.category", weight("29463-7", "vital-signs")),
        (weight("8302-2", "vital-signs"), "pattern", "Observation.code", weight("29463-7", "vital-signs")),
        (
            patient(json!({"name": [{"text": "Amy Shaw"}]})),
            "us-core-6",
            "Patient.name[0]",
            patient(json!({"name": [{"text": "Amy Shaw", "family": "Shaw"}]})),
        ),
    ];
    refused_then_accepted(&app, &cases).await;
}

#[tokio::test]
async fn bundle_rules_and_warnings_of_the_base_checks() {
    let app = TestApp::spawn().await;
    let patient = json!({"resourceType": "Patient", "id": "p1"});
    let collection = |full_url: &str| json!({"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": full_url, "resource": patient}]});
    let searchset = |links: Value| json!({"resourceType": "Bundle", "type": "searchset", "link": links});
    let document = |subject: &str| {
        json!({"resourceType": "Bundle", "type": "document", "timestamp": "2024-01-01T00:00:00Z",
            "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:8f1e5c6a-2b7d-4c3e-9a1f-6d5e4c3b2a10"},
            "entry": [
                {"fullUrl": "http://example.org/fhir/Composition/c1", "resource": {"resourceType": "Composition", "id": "c1",
                    "status": "final", "type": {"text": "note"}, "date": "2024-01-01", "title": "Note",
                    "author": [{"reference": "Patient/p1"}], "subject": {"reference": subject}}},
                {"fullUrl": "http://example.org/fhir/Patient/p1", "resource": patient}]})
    };
    let self_link = |query: &str| json!({"relation": "self", "url": format!("http://example.org/fhir/Patient{query}")});
    let cases = [
        (
            collection("Patient/p1"),
            "bdl-url",
            "Bundle.entry[0].fullUrl",
            collection("http://example.org/fhir/Patient/p1"),
        ),
        (
            collection("http://example.org/fhir/Patient/p2"),
            "bdl-url",
            "Bundle.entry[0].fullUrl",
            collection("urn:uuid:0b4b2a9e-5d0e-4f59-9a4e-0d6a5b0c1e2f"),
        ),
        (
            searchset(json!([self_link(""), self_link("?name=x")])),
            "bdl-link",
            "Bundle.link[1]",
            searchset(json!([self_link(""), {"relation": "next", "url": "http://example.org/fhir/Patient?page=2"}])),
        ),
        (document("Patient/p9"), "bdl-ref", "Bundle.entry[0].resource", document("Patient/p1")),
    ];
    refused_then_accepted(&app, &cases).await;

    // HTML in markdown is a warning (md-html) on a successful write; in a string, information.
    let marked_up = json!({"resourceType": "Observation", "status": "final", "code": {"text": "<b>x</b>"},
        "note": [{"text": "see <b>this</b>"}],
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}});
    let (status, outcome) = written_with_outcome(&app, reqwest::Method::POST, "Observation", &marked_up).await;
    assert_eq!(status, StatusCode::CREATED, "{outcome}");
    let found = warnings(&outcome);
    assert!(found.len() == 1 && found[0].starts_with("md-html:"), "{outcome}");
    let noted = outcome["issue"].as_array().expect("issues").iter().filter(|issue| issue["severity"] == "information");
    let noted: Vec<&Value> =
        noted.filter(|issue| issue["diagnostics"].as_str().is_some_and(|d| d.starts_with("str-html:"))).collect();
    assert_eq!(noted.len(), 1, "{outcome}");
    assert_eq!(noted[0]["expression"][0], "Observation.code.text");
}
