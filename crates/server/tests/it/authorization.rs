//! Access tokens on the FHIR API: authentication (401 with a challenge), scopes per type and
//! interaction (403, never an empty 200), and patient-compartment isolation: patient A's token
//! reaches nothing of patient B through read, vread, search, chains, `_has`, includes,
//! history, transactions, batches or a `next` link. Granular scopes filter by category.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, assert_outcome, status_and_json};

/// Everything, for setting up data.
const ADMIN: &str = "system/*.cruds";
const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";

async fn send(app: &TestApp, token: &str, method: Method, path: &str, body: Option<&Value>) -> Response {
    let mut request = app.request(method, path).bearer_auth(token);
    if let Some(body) = body {
        request = request.header("content-type", "application/fhir+json").body(body.to_string());
    }
    request.send().await.expect("send")
}

async fn get(app: &TestApp, token: &str, path: &str) -> Response {
    send(app, token, Method::GET, path, None).await
}

/// The ids of the `match` entries of a searchset, and of its `include` entries.
fn ids(bundle: &Value, mode: &str) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|entry| entry["search"]["mode"] == mode)
                .map(|entry| {
                    format!(
                        "{}/{}",
                        entry["resource"]["resourceType"].as_str().unwrap_or(""),
                        entry["resource"]["id"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Two patients, each with a laboratory and a vital-signs Observation and a Condition; A's
/// lab Observation names B as a performer (so an `_include` could reach B).
struct World {
    a: String,
    b: String,
    a_lab: String,
    a_vitals: String,
    b_lab: String,
    b_condition: String,
}

async fn world(app: &TestApp) -> World {
    let admin = app.token(ADMIN, None);
    let create = |resource: Value| {
        let admin = admin.clone();
        async move {
            let response =
                send(app, &admin, Method::POST, resource["resourceType"].as_str().unwrap_or(""), Some(&resource)).await;
            let (status, body) = status_and_json(response).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["id"].as_str().expect("id").to_owned()
        }
    };
    let a = create(json!({"resourceType": "Patient", "name": [{"family": "Able"}]})).await;
    let b = create(json!({"resourceType": "Patient", "name": [{"family": "Baker"}]})).await;
    let observation = |patient: &str, category: &str, code: &str, performer: Option<&str>| {
        let mut resource = json!({
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")}
        });
        if let Some(performer) = performer {
            resource["performer"] = json!([{"reference": format!("Patient/{performer}")}]);
        }
        resource
    };
    let a_lab = create(observation(&a, "laboratory", "2708-6", Some(&b))).await;
    let a_vitals = create(observation(&a, "vital-signs", "8867-4", None)).await;
    let b_lab = create(observation(&b, "laboratory", "2708-6", None)).await;
    create(json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{a}")}})).await;
    let b_condition =
        create(json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{b}")}})).await;
    World { a, b, a_lab, a_vitals, b_lab, b_condition }
}

#[tokio::test]
async fn a_request_without_a_valid_token_is_401_with_a_challenge() {
    let app = TestApp::spawn_secured().await;
    let response = app.get("Patient").await;
    let challenge = response.headers().get("www-authenticate").and_then(|value| value.to_str().ok()).map(str::to_owned);
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"ignis\""));
    assert_outcome(response, StatusCode::UNAUTHORIZED, "login").await;

    for (token, reason) in [
        ("garbage".to_owned(), "malformed"),
        (app.token_for(&app.base, "patient/*.rs", Some("1"), -10), "expired"),
        (app.token_for(&format!("{}/sandbox/fhir", app.root), "user/*.rs", None, 3600), "another FHIR server"),
    ] {
        let response = get(&app, &token, "Patient").await;
        let challenge =
            response.headers().get("www-authenticate").and_then(|value| value.to_str().ok()).unwrap_or("").to_owned();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        let outcome = assert_outcome(response, StatusCode::UNAUTHORIZED, "login").await;
        assert!(outcome.to_string().contains(reason), "{reason}: {outcome}");
    }
    // The CapabilityStatement stays open, as SMART discovery needs.
    assert_eq!(app.get("metadata").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_type_the_token_does_not_cover_is_403_never_an_empty_200() {
    let app = TestApp::spawn_secured().await;
    let world = world(&app).await;
    let token = app.token("patient/Patient.rs patient/Observation.rs", Some(&world.a));
    assert_outcome(get(&app, &token, "Condition").await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_outcome(
        get(&app, &token, &format!("Condition/{}", world.b_condition)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Read-only scopes do not write.
    let body = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{}", world.a)}});
    assert_outcome(
        send(&app, &token, Method::POST, "Observation", Some(&body)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // A search across types the token does not all cover.
    let response = app.client.get(format!("{}?_type=Patient,Condition", app.base)).bearer_auth(&token).send().await;
    assert_outcome(response.expect("send"), StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn patient_a_reads_nothing_of_patient_b() {
    let app = TestApp::spawn_secured().await;
    let world = world(&app).await;
    let token = app.token("launch/patient patient/*.rs", Some(&world.a));

    assert_eq!(get(&app, &token, &format!("Patient/{}", world.a)).await.status(), StatusCode::OK);
    for path in [
        format!("Patient/{}", world.b),
        format!("Observation/{}", world.b_lab),
        format!("Observation/{}/_history/1", world.b_lab),
        format!("Observation/{}/_history", world.b_lab),
        format!("Condition/{}", world.b_condition),
    ] {
        assert_outcome(get(&app, &token, &path).await, StatusCode::FORBIDDEN, "forbidden").await;
    }

    let mut own = vec![format!("Observation/{}", world.a_lab), format!("Observation/{}", world.a_vitals)];
    own.sort();
    for query in [
        "Observation".to_owned(),
        format!("Observation?subject=Patient/{}", world.b),
        "Observation?code=2708-6,8867-4".to_owned(),
        "Observation?subject.name=Baker".to_owned(),
        format!("Patient/{}/Observation", world.b),
    ] {
        let (status, bundle) = status_and_json(get(&app, &token, &query).await).await;
        assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
        let found = ids(&bundle, "match");
        assert!(found.iter().all(|id| own.contains(id)), "{query} leaked {found:?}");
    }
    let (_, bundle) = status_and_json(get(&app, &token, "Observation").await).await;
    assert_eq!(ids(&bundle, "match"), own);

    // _has: patients with a laboratory Observation are A and B; only A comes back.
    let (_, bundle) = status_and_json(get(&app, &token, "Patient?_has:Observation:subject:code=2708-6").await).await;
    assert_eq!(ids(&bundle, "match"), [format!("Patient/{}", world.a)]);

    // _include: A's lab Observation names B as performer; B is not included.
    let (_, bundle) = status_and_json(
        get(&app, &token, "Observation?_include=Observation:performer&_include=Observation:subject").await,
    )
    .await;
    assert_eq!(ids(&bundle, "include"), [format!("Patient/{}", world.a)]);
    // _revinclude from A reaches A's Observations only.
    let (_, bundle) = status_and_json(get(&app, &token, "Patient?_revinclude=Observation:performer").await).await;
    assert_eq!(ids(&bundle, "match"), [format!("Patient/{}", world.a)]);
    assert!(ids(&bundle, "include").is_empty(), "{bundle}");

    // History across resources is refused rather than leaked.
    assert_outcome(get(&app, &token, "Observation/_history").await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_outcome(get(&app, &token, "_history").await, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn next_links_transactions_and_batches_stay_in_the_compartment() {
    let app = TestApp::spawn_secured().await;
    let world = world(&app).await;
    let token_a = app.token("patient/*.rs", Some(&world.a));
    let token_b = app.token("patient/*.rs", Some(&world.b));

    // A's first page has a next link; following it with A's token stays within A's
    // Observations, and with B's token it yields nothing of A's.
    let (_, first) = status_and_json(get(&app, &token_a, "Observation?_count=1").await).await;
    let next = first["link"]
        .as_array()
        .and_then(|links| links.iter().find(|link| link["relation"] == "next"))
        .and_then(|link| link["url"].as_str())
        .expect("a next link")
        .to_owned();
    let (status, second) =
        status_and_json(app.client.get(&next).bearer_auth(&token_a).send().await.expect("send")).await;
    assert_eq!(status, StatusCode::OK);
    let a_own = [format!("Observation/{}", world.a_lab), format!("Observation/{}", world.a_vitals)];
    assert!(ids(&second, "match").iter().all(|id| a_own.contains(id)), "{second}");
    let response = app.client.get(&next).bearer_auth(&token_b).send().await.expect("send");
    let (status, stolen) = status_and_json(response).await;
    if status == StatusCode::OK {
        assert!(ids(&stolen, "match").iter().all(|id| !a_own.contains(id)), "{stolen}");
    } else {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{stolen}");
    }

    // A transaction that reads B's Observation fails as a whole, naming the entry.
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": format!("Observation/{}", world.b_lab)}}
    ]});
    let response = app
        .client
        .post(&app.base)
        .bearer_auth(&token_a)
        .header("content-type", "application/fhir+json")
        .body(transaction.to_string())
        .send()
        .await
        .expect("send");
    let outcome = assert_outcome(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(outcome.to_string().contains("Bundle.entry[0]"), "{outcome}");

    // A batch: its search entry sees A's Observations only; its read of B's is refused.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation?code=2708-6"}},
        {"request": {"method": "GET", "url": format!("Patient/{}", world.b)}}
    ]});
    let response = app
        .client
        .post(&app.base)
        .bearer_auth(&token_a)
        .header("content-type", "application/fhir+json")
        .body(batch.to_string())
        .send()
        .await
        .expect("send");
    let (status, bundle) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let searchset = &bundle["entry"][0]["resource"];
    assert_eq!(ids(searchset, "match"), [format!("Observation/{}", world.a_lab)]);
    assert_eq!(bundle["entry"][1]["response"]["status"].as_str().map(|status| &status[..3]), Some("403"));
}

#[tokio::test]
async fn granular_scopes_filter_by_category() {
    let app = TestApp::spawn_secured().await;
    let world = world(&app).await;
    let token = app.token(&format!("patient/Observation.rs?category={LAB} patient/Patient.rs"), Some(&world.a));
    let (status, bundle) = status_and_json(get(&app, &token, "Observation").await).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(ids(&bundle, "match"), [format!("Observation/{}", world.a_lab)]);
    let (_, bundle) = status_and_json(get(&app, &token, "Observation?category=vital-signs").await).await;
    assert!(ids(&bundle, "match").is_empty(), "{bundle}");
    assert_eq!(get(&app, &token, &format!("Observation/{}", world.a_lab)).await.status(), StatusCode::OK);
    assert_outcome(
        get(&app, &token, &format!("Observation/{}", world.a_vitals)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Still only patient A's.
    assert_outcome(
        get(&app, &token, &format!("Observation/{}", world.b_lab)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn patient_scoped_writes_stay_in_the_compartment() {
    let app = TestApp::spawn_secured().await;
    let world = world(&app).await;
    let token = app.token("patient/Observation.cruds patient/Patient.rs", Some(&world.a));
    let observation = |patient: &str| json!({"resourceType": "Observation", "status": "final", "code": {"text": "steps"}, "subject": {"reference": format!("Patient/{patient}")}});
    let response = send(&app, &token, Method::POST, "Observation", Some(&observation(&world.a))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_outcome(
        send(&app, &token, Method::POST, "Observation", Some(&observation(&world.b))).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Moving B's Observation, or writing A's into B's compartment, is refused.
    let mut b_lab = observation(&world.a);
    b_lab["id"] = json!(world.b_lab);
    assert_outcome(
        send(&app, &token, Method::PUT, &format!("Observation/{}", world.b_lab), Some(&b_lab)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let mut a_lab = observation(&world.b);
    a_lab["id"] = json!(world.a_lab);
    assert_outcome(
        send(&app, &token, Method::PUT, &format!("Observation/{}", world.a_lab), Some(&a_lab)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_outcome(
        send(&app, &token, Method::DELETE, &format!("Observation/{}", world.b_lab), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // A conditional delete never matches B's resources.
    let response = send(&app, &token, Method::DELETE, &format!("Observation?_id={}", world.b_lab), None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let admin = app.token(ADMIN, None);
    assert_eq!(get(&app, &admin, &format!("Observation/{}", world.b_lab)).await.status(), StatusCode::OK);
}
