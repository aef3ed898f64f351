//! Search: each parameter type with its prefixes and modifiers, chains, `_has`, includes,
//! sorting and paging, against resources whose expected matches are worked out here.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, assert_outcome, status_and_json};

/// Ids of the `match` entries of one page, in order.
pub(crate) fn match_ids(bundle: &Value) -> Vec<String> {
    entries_with_mode(bundle, "match")
}

fn entries_with_mode(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|entry| entry["search"]["mode"] == mode)
                .map(|entry| {
                    format!(
                        "{}/{}",
                        entry["resource"]["resourceType"].as_str().unwrap(),
                        entry["resource"]["id"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) async fn search(app: &TestApp, query: &str) -> Value {
    let (status, bundle) = status_and_json(app.get(query).await).await;
    assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
    assert_eq!(bundle["type"], "searchset");
    bundle
}

/// The sorted ids a search matches on its first page.
pub(crate) async fn found(app: &TestApp, query: &str) -> Vec<String> {
    let mut ids = match_ids(&search(app, query).await);
    ids.sort();
    ids
}

pub(crate) fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|link| link["relation"] == relation)
        .map(|link| link["url"].as_str().unwrap().to_owned())
}

/// Three patients, their observations and a practitioner, with ids chosen by the test.
async fn seed(app: &TestApp) {
    let resources = [
        json!({"resourceType": "Practitioner", "id": "dr", "name": [{"family": "House"}]}),
        json!({"resourceType": "Organization", "id": "org", "name": "Acme Health"}),
        json!({"resourceType": "Patient", "id": "ann", "gender": "female", "birthDate": "1980-05-17", "active": true,
            "identifier": [{"system": "urn:mrn", "value": "A1", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
            "name": [{"family": "Müller", "given": ["Ann"]}], "managingOrganization": {"reference": "Organization/org"},
            "generalPractitioner": [{"reference": "Practitioner/dr"}], "address": [{"city": "Boston", "state": "MA"}]}),
        json!({"resourceType": "Patient", "id": "bob", "gender": "male", "birthDate": "1975",
            "identifier": [{"system": "urn:mrn", "value": "B2"}], "name": [{"family": "Smith", "given": ["Bob", "Robert"]}],
            "address": [{"city": "Denver", "state": "CO"}]}),
        json!({"resourceType": "Patient", "id": "cy", "gender": "other", "birthDate": "1990-01-01",
            "identifier": [{"system": "urn:other", "value": "A1"}], "name": [{"family": "Smithers", "given": ["Cy"]}]}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": "Patient/ann"}, "performer": [{"reference": "Practitioner/dr"}],
            "effectiveDateTime": "2024-03-05T10:00:00Z",
            "valueQuantity": {"value": 72, "unit": "beats/min", "system": "http://unitsofmeasure.org", "code": "/min"}}),
        json!({"resourceType": "Observation", "id": "o2", "status": "amended",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/bob"}, "effectivePeriod": {"start": "2024-03-01", "end": "2024-03-31"},
            "valueQuantity": {"value": 110.5, "unit": "beats/min", "system": "http://unitsofmeasure.org", "code": "/min"}}),
        json!({"resourceType": "Observation", "id": "o3", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}], "text": "Weight"},
            "subject": {"reference": "Patient/ann"}, "effectiveDateTime": "2023-12-31",
            "valueQuantity": {"value": 60, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}),
        json!({"resourceType": "RiskAssessment", "id": "r1", "status": "final", "subject": {"reference": "Patient/ann"},
            "prediction": [{"probabilityDecimal": 0.25}]}),
        json!({"resourceType": "Provenance", "id": "prov", "target": [{"reference": "Patient/ann"}], "recorded": "2024-01-01T00:00:00Z",
            "agent": [{"who": {"reference": "Practitioner/dr"}}]}),
    ];
    for resource in resources {
        let path = format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
        let response = app.put(&path, &resource).await;
        assert!(response.status().is_success(), "seed {path}: {}", response.text().await.unwrap());
    }
}

#[tokio::test]
async fn token_parameters() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    assert_eq!(found(&app, "Patient?gender=female").await, ["Patient/ann"]);
    assert_eq!(found(&app, "Patient?gender=female,male").await, ["Patient/ann", "Patient/bob"]);
    assert_eq!(found(&app, "Patient?identifier=A1").await, ["Patient/ann", "Patient/cy"]);
    assert_eq!(found(&app, "Patient?identifier=urn:mrn|A1").await, ["Patient/ann"]);
    assert_eq!(found(&app, "Patient?identifier=urn:mrn|").await, ["Patient/ann", "Patient/bob"]);
    assert_eq!(found(&app, "Patient?identifier=%7CA1").await, Vec::<String>::new(), "|code needs no system");
    assert_eq!(found(&app, "Observation?code=http://loinc.org|8867-4").await, ["Observation/o1", "Observation/o2"]);
    assert_eq!(found(&app, "Observation?code:text=weight").await, ["Observation/o3"]);
    assert_eq!(found(&app, "Observation?status:not=final").await, ["Observation/o2"]);
    assert_eq!(found(&app, "Patient?active=true").await, ["Patient/ann"]);
    let of_type = "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|A1";
    assert_eq!(found(&app, of_type).await, ["Patient/ann"]);
    assert_eq!(found(&app, "Patient?_id=bob,cy").await, ["Patient/bob", "Patient/cy"]);
}

#[tokio::test]
async fn string_parameters() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    assert_eq!(found(&app, "Patient?family=smith").await, ["Patient/bob", "Patient/cy"], "starts-with, any case");
    assert_eq!(found(&app, "Patient?family:exact=Smith").await, ["Patient/bob"]);
    assert_eq!(found(&app, "Patient?family:exact=smith").await, Vec::<String>::new());
    assert_eq!(found(&app, "Patient?name:contains=ither").await, ["Patient/cy"]);
    assert_eq!(found(&app, "Patient?name=muller").await, ["Patient/ann"], "accents are ignored");
    assert_eq!(found(&app, "Patient?given=robert").await, ["Patient/bob"]);
    assert_eq!(found(&app, "Patient?address-city=bos").await, ["Patient/ann"]);
    assert_eq!(found(&app, "Patient?name=smith&gender=other").await, ["Patient/cy"], "AND across parameters");
}

#[tokio::test]
async fn date_parameters_and_prefixes() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    assert_eq!(found(&app, "Patient?birthdate=1980-05-17").await, ["Patient/ann"]);
    assert_eq!(found(&app, "Patient?birthdate=1980").await, ["Patient/ann"], "the day lies inside the year");
    assert_eq!(found(&app, "Patient?birthdate=1975-06").await, Vec::<String>::new(), "a year is wider than a month");
    assert_eq!(found(&app, "Patient?birthdate=gt1979").await, ["Patient/ann", "Patient/cy"]);
    assert_eq!(found(&app, "Patient?birthdate=ge1980-05-17").await, ["Patient/ann", "Patient/cy"]);
    assert_eq!(found(&app, "Patient?birthdate=lt1980-05-17").await, ["Patient/bob"]);
    assert_eq!(found(&app, "Patient?birthdate=le1980-05-17").await, ["Patient/ann", "Patient/bob"]);
    assert_eq!(found(&app, "Patient?birthdate=ne1980-05-17").await, ["Patient/bob", "Patient/cy"]);
    assert_eq!(found(&app, "Patient?birthdate=sa1980-12-31").await, ["Patient/cy"]);
    assert_eq!(found(&app, "Patient?birthdate=eb1980-01-01").await, ["Patient/bob"]);
    assert_eq!(found(&app, "Patient?birthdate=ge1975&birthdate=lt1985").await, ["Patient/ann", "Patient/bob"]);
    // o2's period covers March 2024; o1 is one instant in it; o3 is in December 2023.
    assert_eq!(found(&app, "Observation?date=2024-03").await, ["Observation/o1", "Observation/o2"]);
    assert_eq!(found(&app, "Observation?date=2024-03-05").await, ["Observation/o1"]);
    assert_eq!(found(&app, "Observation?date=ge2024-03-15").await, ["Observation/o2"]);
    assert_eq!(found(&app, "Observation?date=lt2024-01-01").await, ["Observation/o3"]);
}

/// `ap` allows 10% of the distance from now, as the spec recommends. The dates are chosen
/// from today's year so that the answer is the same whatever day the test runs: ten years
/// back the slack is about a year (at least 340 days), so five months off is in and two years
/// off is out.
#[tokio::test]
async fn approximate_dates_allow_a_tenth_of_the_distance_from_now() {
    let app = TestApp::spawn().await;
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let year = 1970 + seconds / 31_556_952;
    let (target, near, far) = (year - 10, format!("{}-11-15", year - 10), format!("{}-06-15", year - 12));
    for (id, date) in [("exact", format!("{target}-06-15")), ("near", near), ("far", far)] {
        let observation = json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"text": "approximate"}, "effectiveDateTime": date});
        assert_eq!(app.put(&format!("Observation/{id}"), &observation).await.status(), StatusCode::CREATED);
    }
    assert_eq!(
        found(&app, &format!("Observation?code:text=approximate&date=ap{target}-06-15")).await,
        ["Observation/exact", "Observation/near"]
    );
    assert_eq!(
        found(&app, &format!("Observation?code:text=approximate&date={target}-06-15")).await,
        ["Observation/exact"],
        "without ap only the day itself"
    );
}

#[tokio::test]
async fn number_quantity_and_reference_parameters() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    assert_eq!(found(&app, "RiskAssessment?probability=0.25").await, ["RiskAssessment/r1"]);
    assert_eq!(found(&app, "RiskAssessment?probability=gt0.3").await, Vec::<String>::new());
    assert_eq!(found(&app, "RiskAssessment?probability=0.2").await, Vec::<String>::new(), "0.2 means [0.15, 0.25)");
    assert_eq!(found(&app, "Observation?value-quantity=72").await, ["Observation/o1"]);
    assert_eq!(found(&app, "Observation?value-quantity=gt100").await, ["Observation/o2"]);
    let quantity = "Observation?value-quantity=le100%7Chttp://unitsofmeasure.org%7C/min";
    assert_eq!(found(&app, quantity).await, ["Observation/o1"]);
    assert_eq!(found(&app, "Observation?value-quantity=60%7C%7Ckg").await, ["Observation/o3"]);
    assert_eq!(found(&app, "Observation?subject=Patient/ann").await, ["Observation/o1", "Observation/o3"]);
    assert_eq!(found(&app, "Observation?patient=ann").await, ["Observation/o1", "Observation/o3"]);
    let absolute = format!("Observation?subject={}/Patient/bob", app.base);
    assert_eq!(found(&app, &absolute).await, ["Observation/o2"]);
    assert_eq!(found(&app, "Observation?subject:Patient=bob").await, ["Observation/o2"]);
    assert_eq!(found(&app, "Observation?performer:missing=true").await, ["Observation/o2", "Observation/o3"]);
    assert_eq!(found(&app, "Observation?performer:missing=false").await, ["Observation/o1"]);
}

#[tokio::test]
async fn chains_and_reverse_chains() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    assert_eq!(found(&app, "Observation?subject:Patient.name=smith").await, ["Observation/o2"]);
    assert_eq!(found(&app, "Observation?patient.gender=female").await, ["Observation/o1", "Observation/o3"]);
    assert_eq!(
        found(&app, "Observation?subject:Patient.organization.name=acme").await,
        ["Observation/o1", "Observation/o3"],
        "two links"
    );
    assert_eq!(found(&app, "Patient?_has:Observation:patient:code=29463-7").await, ["Patient/ann"]);
    assert_eq!(found(&app, "Patient?_has:Observation:subject:status=amended").await, ["Patient/bob"]);
    // Nested: practitioners who performed an Observation that a given Provenance targets.
    // `prov` targets a Patient, so nothing; `obs-prov` targets o1, which Practitioner/dr made.
    let provenance = json!({"resourceType": "Provenance", "id": "obs-prov", "target": [{"reference": "Observation/o1"}],
        "recorded": "2024-01-01T00:00:00Z", "agent": [{"who": {"reference": "Practitioner/dr"}}]});
    assert_eq!(app.put("Provenance/obs-prov", &provenance).await.status(), StatusCode::CREATED);
    assert_eq!(
        found(&app, "Practitioner?_has:Observation:performer:_has:Provenance:target:_id=obs-prov").await,
        ["Practitioner/dr"]
    );
    assert_eq!(
        found(&app, "Practitioner?_has:Observation:performer:_has:Provenance:target:_id=prov").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn includes_and_revincludes() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let bundle = search(&app, "Observation?_id=o1&_include=Observation:subject&_include=Observation:performer").await;
    assert_eq!(match_ids(&bundle), ["Observation/o1"]);
    let mut included = entries_with_mode(&bundle, "include");
    included.sort();
    assert_eq!(included, ["Patient/ann", "Practitioner/dr"]);
    let bundle = search(&app, "Patient?_id=ann&_revinclude=Provenance:target").await;
    assert_eq!(entries_with_mode(&bundle, "include"), ["Provenance/prov"]);
    let iterate = "Observation?_id=o1&_include=Observation:subject&_include:iterate=Patient:organization";
    let mut included = entries_with_mode(&search(&app, iterate).await, "include");
    included.sort();
    assert_eq!(included, ["Organization/org", "Patient/ann"]);
}

#[tokio::test]
async fn sorting_and_keyset_paging() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let ids = match_ids(&search(&app, "Patient?_sort=birthdate").await);
    assert_eq!(ids, ["Patient/bob", "Patient/ann", "Patient/cy"]);
    let ids = match_ids(&search(&app, "Patient?_sort=-birthdate").await);
    assert_eq!(ids, ["Patient/cy", "Patient/ann", "Patient/bob"]);
    let ids = match_ids(&search(&app, "Patient?_sort=family,-_id").await);
    assert_eq!(ids, ["Patient/ann", "Patient/bob", "Patient/cy"]);
    // Paging by two, following next links, then back with previous.
    let first = search(&app, "Patient?_sort=-birthdate&_count=2").await;
    assert_eq!(match_ids(&first), ["Patient/cy", "Patient/ann"]);
    assert!(link(&first, "previous").is_none());
    let next = link(&first, "next").expect("next link");
    let (_, second) = status_and_json(app.client.get(&next).send().await.unwrap()).await;
    assert_eq!(match_ids(&second), ["Patient/bob"]);
    assert!(link(&second, "next").is_none());
    let previous = link(&second, "previous").expect("previous link");
    let (_, back) = status_and_json(app.client.get(&previous).send().await.unwrap()).await;
    assert_eq!(match_ids(&back), ["Patient/cy", "Patient/ann"]);
}

#[tokio::test]
async fn paging_is_stable_while_data_changes() {
    let app = TestApp::spawn().await;
    for index in 0..7 {
        app.create(&json!({"resourceType": "Patient", "gender": "female", "birthDate": format!("200{index}")})).await;
    }
    let mut seen = Vec::new();
    let mut bundle = search(&app, "Patient?gender=female&_count=3").await;
    assert_eq!(bundle["total"], Value::Null, "no free total when there are more pages");
    loop {
        seen.extend(match_ids(&bundle));
        // A write between pages must not shift what the next page holds.
        app.create(&json!({"resourceType": "Patient", "gender": "male"})).await;
        let Some(next) = link(&bundle, "next") else { break };
        bundle = status_and_json(app.client.get(&next).send().await.unwrap()).await.1;
    }
    assert_eq!(seen.len(), 7);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 7, "no resource twice");
}

#[tokio::test]
async fn totals_summary_and_elements() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let bundle = search(&app, "Patient?_summary=count").await;
    assert_eq!(bundle["total"], 3);
    assert!(bundle.get("entry").is_none_or(|entries| entries.as_array().unwrap().is_empty()));
    let bundle = search(&app, "Patient?_total=accurate&_count=1").await;
    assert_eq!(bundle["total"], 3);
    assert_eq!(match_ids(&bundle).len(), 1);
    let bundle = search(&app, "Patient?_id=ann&_elements=gender").await;
    let patient = &bundle["entry"][0]["resource"];
    assert_eq!(patient["gender"], "female");
    assert!(patient.get("name").is_none());
    assert_eq!(patient["meta"]["tag"][0]["code"], "SUBSETTED");
    let bundle = search(&app, "Patient?_id=ann&_summary=true").await;
    assert!(bundle["entry"][0]["resource"].get("name").is_some());
}

#[tokio::test]
async fn post_search_equals_get() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let get = search(&app, "Observation?patient=ann&code=http://loinc.org|8867-4,http://loinc.org|29463-7").await;
    let response = app
        .request(Method::POST, "Observation/_search")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("patient=ann&code=http%3A%2F%2Floinc.org%7C8867-4%2Chttp%3A%2F%2Floinc.org%7C29463-7")
        .send()
        .await
        .unwrap();
    let (status, post) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(match_ids(&post), match_ids(&get));
    assert_eq!(match_ids(&get).len(), 2);
}

#[tokio::test]
async fn compartment_and_system_search() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    assert_eq!(found(&app, "Patient/ann/Observation").await, ["Observation/o1", "Observation/o3"]);
    assert_eq!(found(&app, "Patient/ann/Observation?code=8867-4").await, ["Observation/o1"]);
    let system = format!("{}?_type=Patient,Practitioner&_id=ann,dr", app.base);
    let mut both = match_ids(&status_and_json(app.client.get(&system).send().await.unwrap()).await.1);
    both.sort();
    assert_eq!(both, ["Patient/ann", "Practitioner/dr"]);
}

#[tokio::test]
async fn unknown_and_malformed_parameters() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let bundle = search(&app, "Patient?nonsense=1&gender=male").await;
    assert_eq!(match_ids(&bundle), ["Patient/bob"], "lenient: the unknown parameter is ignored");
    let outcome =
        bundle["entry"].as_array().unwrap().iter().find(|entry| entry["search"]["mode"] == "outcome").unwrap();
    assert_eq!(outcome["resource"]["issue"][0]["severity"], "warning");
    let strict =
        app.request(Method::GET, "Patient?nonsense=1").header("prefer", "handling=strict").send().await.unwrap();
    assert_outcome(strict, StatusCode::BAD_REQUEST, "not-supported").await;
    assert_outcome(app.get("Patient?birthdate=1980-13").await, StatusCode::BAD_REQUEST, "invalid").await;
    assert_outcome(app.get("Patient?birthdate=xx1980").await, StatusCode::BAD_REQUEST, "invalid").await;
    assert_outcome(app.get("Patient?_count=-1").await, StatusCode::BAD_REQUEST, "invalid").await;
    assert_outcome(app.get("Patient?_cursor=garbage").await, StatusCode::BAD_REQUEST, "invalid").await;
    assert_outcome(app.get("Patient?gender:exact=male").await, StatusCode::BAD_REQUEST, "invalid").await;
}

#[tokio::test]
async fn custom_search_parameters_work_after_reindex() {
    let app = TestApp::spawn().await;
    let nickname = |given: &str| json!({"resourceType": "Patient", "name": [{"use": "nickname", "given": [given]}]});
    let before = app.create(&nickname("Bo")).await;
    let parameter = json!({
        "resourceType": "SearchParameter", "url": "http://example.org/SearchParameter/nickname", "name": "nickname",
        "status": "active", "description": "A patient's nickname", "code": "nickname", "base": ["Patient"],
        "type": "string", "expression": "Patient.name.where(use = 'nickname').given"
    });
    app.create(&parameter).await;
    let after = app.create(&nickname("Bobby")).await;
    assert_eq!(
        found(&app, "Patient?nickname=bo").await,
        [format!("Patient/{after}")],
        "new writes are indexed at once"
    );
    let mut position = 0;
    while let Some(last) = app.store.reindex(position, 1).await.expect("reindex") {
        position = last;
    }
    let mut expected = vec![format!("Patient/{before}"), format!("Patient/{after}")];
    expected.sort();
    assert_eq!(found(&app, "Patient?nickname=bo").await, expected, "earlier resources after a reindex");
    assert_eq!(found(&app, "Patient?nickname=bobb").await, [format!("Patient/{after}")]);
}

#[tokio::test]
async fn composite_parameters_pair_values_of_one_component() {
    let app = TestApp::spawn().await;
    let blood_pressure = |systolic: i64, diastolic: i64| {
        json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": systolic, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": diastolic, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
        ]})
    };
    let high = app.create(&blood_pressure(150, 95)).await;
    let normal = app.create(&blood_pressure(118, 76)).await;
    let query = "Observation?component-code-value-quantity=http://loinc.org%7C8480-6$gt140";
    assert_eq!(found(&app, query).await, [format!("Observation/{high}")]);
    // 95 is a diastolic value: a systolic search must not pair it with the systolic code.
    assert_eq!(found(&app, "Observation?component-code-value-quantity=8480-6$lt100").await, Vec::<String>::new());
    let either = "Observation?component-code-value-quantity=8480-6$lt120,8462-4$gt90";
    let mut expected = vec![format!("Observation/{high}"), format!("Observation/{normal}")];
    expected.sort();
    assert_eq!(found(&app, either).await, expected);
    assert_outcome(
        app.get("Observation?component-code-value-quantity=8480-6").await,
        StatusCode::BAD_REQUEST,
        "invalid",
    )
    .await;
}
