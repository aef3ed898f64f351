//! The audit log as operators read it: every FHIR interaction (reads and searches with the
//! patients they reached, writes from their own transaction, refusals), token and sign-in
//! steps and `/api/` calls are entries; an AuditEvent search by patient returns exactly the
//! accesses to that patient's data; a date range exports as NDJSON.

use std::collections::BTreeMap;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, status_and_json};

async fn send(app: &TestApp, token: &str, method: Method, path: &str, body: Option<&Value>) -> Response {
    let mut request = app.request(method, path).bearer_auth(token);
    if let Some(body) = body {
        request = request.header("content-type", "application/fhir+json").body(body.to_string());
    }
    request.send().await.expect("send")
}

async fn created(response: Response) -> String {
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().expect("id").to_owned()
}

/// The `subtype` code (the interaction) of each AuditEvent, counted.
fn interactions(events: &[Value]) -> BTreeMap<String, usize> {
    let mut counted = BTreeMap::new();
    for event in events {
        *counted.entry(event["subtype"][0]["code"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
    }
    counted
}

#[tokio::test]
async fn fhir_interactions_are_audited_with_the_patients_they_reach() {
    let app = TestApp::spawn_secured().await;
    let admin = app.token("user/*.cruds", None);
    let patient = |family: &str| json!({"resourceType": "Patient", "name": [{"family": family}]});
    let a = created(send(&app, &admin, Method::POST, "Patient", Some(&patient("Able"))).await).await;
    let b = created(send(&app, &admin, Method::POST, "Patient", Some(&patient("Baker"))).await).await;
    let observation = |subject: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
               "subject": {"reference": format!("Patient/{subject}")}})
    };
    let a_pulse = created(send(&app, &admin, Method::POST, "Observation", Some(&observation(&a))).await).await;
    created(send(&app, &admin, Method::POST, "Observation", Some(&observation(&b))).await).await;
    // Accesses to A's data: reads, a search, a history, an update, a delete.
    assert_eq!(send(&app, &admin, Method::GET, &format!("Patient/{a}"), None).await.status(), StatusCode::OK);
    let search = send(&app, &admin, Method::GET, &format!("Observation?subject=Patient/{a}"), None).await;
    assert_eq!(search.status(), StatusCode::OK);
    let history = send(&app, &admin, Method::GET, &format!("Observation/{a_pulse}/_history"), None).await;
    assert_eq!(history.status(), StatusCode::OK);
    let mut changed = observation(&a);
    changed["id"] = json!(a_pulse);
    changed["status"] = json!("amended");
    let update = send(&app, &admin, Method::PUT, &format!("Observation/{a_pulse}"), Some(&changed)).await;
    assert_eq!(update.status(), StatusCode::OK);
    // A search that reaches both patients is an access to each.
    assert_eq!(send(&app, &admin, Method::GET, "Observation", None).await.status(), StatusCode::OK);
    // B only: a read and a transaction.
    assert_eq!(send(&app, &admin, Method::GET, &format!("Patient/{b}"), None).await.status(), StatusCode::OK);
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation(&b), "request": {"method": "POST", "url": "Observation"}}]});
    let response = app
        .client
        .post(&app.base)
        .bearer_auth(&admin)
        .header("content-type", "application/fhir+json")
        .body(transaction.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    // A's observation deleted: the tombstone has no body, the event names A still.
    let deleted = send(&app, &admin, Method::DELETE, &format!("Observation/{a_pulse}"), None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    // Refusals: a bad token, and a write the validator refuses.
    let refused =
        app.request(Method::GET, &format!("Patient/{a}")).bearer_auth("not-a-token").send().await.expect("send");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let invalid = json!({"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}});
    assert_eq!(send(&app, &admin, Method::POST, "Observation", Some(&invalid)).await.status(), StatusCode::BAD_REQUEST);

    let key = app.operator_key("olga").await;
    let of_a = app.audit_events_with(&key, &format!("patient={a}&_count=3")).await;
    let expected: BTreeMap<String, usize> =
        [("create", 2), ("read", 1), ("search-type", 2), ("history-instance", 1), ("update", 1), ("delete", 1)]
            .into_iter()
            .map(|(name, count)| (name.to_owned(), count))
            .collect();
    assert_eq!(interactions(&of_a), expected, "{of_a:#?}");
    for event in &of_a {
        let patients: Vec<&str> = event["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entity| entity["role"]["code"] == "1")
            .filter_map(|entity| entity["what"]["reference"].as_str())
            .collect();
        assert!(patients.contains(&format!("Patient/{a}").as_str()), "{event}");
        assert_eq!(event["outcome"], "0");
        assert_eq!(event["agent"][0]["who"]["identifier"]["value"], "test-user", "{event}");
        assert_eq!(event["agent"][1]["who"]["identifier"]["value"], "test-client", "{event}");
        assert_eq!(event["source"]["site"], "production");
    }
    let of_b = interactions(&app.audit_events_with(&key, &format!("patient=Patient/{b}")).await);
    let expected_b: BTreeMap<String, usize> = [("create", 2), ("read", 1), ("search-type", 1), ("transaction", 1)]
        .into_iter()
        .map(|(name, count)| (name.to_owned(), count))
        .collect();
    assert_eq!(of_b, expected_b);
    // The update's entry names the version it wrote; the entity search finds the resource's
    // every access.
    let pulse = app.audit_events_with(&key, &format!("entity=Observation/{a_pulse}")).await;
    assert_eq!(interactions(&pulse).get("update"), Some(&1));
    let updated = pulse.iter().find(|event| event["subtype"][0]["code"] == "update").expect("the update");
    assert_eq!(updated["entity"][0]["what"]["reference"], format!("Observation/{a_pulse}/_history/2"));
    assert_eq!(updated["action"], "U");
    // Refusals are entries with their reason.
    let failures = app.audit_events_with(&key, "type=rest&outcome=4").await;
    assert_eq!(failures.len(), 2, "{failures:#?}");
    let reasons: Vec<&str> = failures.iter().filter_map(|event| event["outcomeDesc"].as_str()).collect();
    assert!(reasons.iter().any(|reason| reason.contains("answered 401")), "{reasons:?}");
    assert!(reasons.iter().any(|reason| reason.contains("POST /fhir/Observation answered 400")), "{reasons:?}");

    // A date range exports as NDJSON: every entry of today, each an AuditEvent.
    let today = time::OffsetDateTime::now_utc().date();
    let all = app.audit_events_with(&key, &format!("date=ge{today}")).await;
    let url =
        format!("{}/api/audit-events/export?since={today}&until={}", app.root, today.next_day().expect("tomorrow"));
    let response = app.client.get(url).bearer_auth(&key).send().await.expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/fhir+ndjson");
    let text = response.text().await.expect("body");
    let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).expect("json")).collect();
    assert!(lines.iter().all(|event| event["resourceType"] == "AuditEvent"));
    assert!(lines.len() >= all.len() && !all.is_empty(), "{} exported, {} searched", lines.len(), all.len());
}

#[tokio::test]
async fn tokens_sign_ins_api_calls_and_record_changes_are_audited() {
    let app = TestApp::spawn_secured().await;
    let token = app
        .client
        .post(format!("{}/auth/token", app.root))
        .form(&[("grant_type", "client_credentials"), ("client_id", "nobody"), ("client_secret", "wrong")])
        .send()
        .await
        .expect("send");
    assert_eq!(token.status(), StatusCode::UNAUTHORIZED);
    let wrong = json!({"username": "olga", "password": "not it"});
    let refused = app.client.post(format!("{}/api/sessions", app.root)).json(&wrong).send().await.expect("send");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let key = app.operator_key("olga").await;

    let tokens = app.audit_events_with(&key, "type=110114&subtype=token").await;
    assert_eq!(tokens.len(), 1, "{tokens:#?}");
    assert_eq!(tokens[0]["outcome"], "4");
    assert_eq!(tokens[0]["agent"][0]["who"]["identifier"], json!({"system": "urn:ignis:client", "value": "nobody"}));
    assert!(tokens[0]["outcomeDesc"].as_str().unwrap_or("").starts_with("invalid_client"), "{}", tokens[0]);
    let sessions = app.audit_events_with(&key, "type=api").await;
    let outcomes: Vec<&str> = sessions.iter().filter_map(|event| event["outcome"].as_str()).collect();
    assert!(outcomes.contains(&"4") && outcomes.contains(&"0"), "{sessions:#?}");
    // The operator's user record was made, and its API key: record changes, by whom.
    let records = app.audit_events_with(&key, "type=record").await;
    let kinds: Vec<&str> = records
        .iter()
        .filter_map(|event| event["entity"][0]["what"]["identifier"]["value"].as_str())
        .filter_map(|value| value.split('/').next())
        .collect();
    assert!(kinds.contains(&"user") && kinds.contains(&"api-key"), "{kinds:?}");
    // Only operators read the audit log.
    let (status, _) =
        status_and_json(app.client.get(format!("{}/api/audit-events", app.root)).send().await.expect("send")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = app
        .client
        .get(format!("{}/api/audit-events?agent=alice", app.root))
        .bearer_auth(&key)
        .send()
        .await
        .expect("send");
    let (status, problem) = status_and_json(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problem["detail"].as_str().unwrap_or("").contains("user:NAME"), "{problem}");
}

/// Asks `GET path` until it answers `wanted` (the first event of a failure is appended a moment
/// after its answer; the deadline is only a hang guard).
async fn until_status(app: &TestApp, path: &str, wanted: StatusCode) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (status, body) = status_and_json(app.get(path).await).await;
        if status == wanted {
            return body;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{path} never answered {wanted}: {body}");
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: IGNIS_TEST_POSTGRES_URL (CI runs it with --include-ignored)"]
async fn nothing_is_served_while_the_audit_log_cannot_be_written() {
    let url = crate::support::postgres_url().expect("IGNIS_TEST_POSTGRES_URL");
    let app = TestApp::spawn_postgres(&url).await;
    let id = app.create(&json!({"resourceType": "Patient", "name": [{"family": "Able"}]})).await;
    let path = format!("Patient/{id}");
    until_status(&app, &path, StatusCode::OK).await;
    // The audit table goes away: writes fail in their own transaction, reads once a batch has
    // failed; both answer with an OperationOutcome.
    app.postgres_execute("ALTER TABLE audit_entries RENAME TO audit_entries_away").await;
    let create = app.post("Patient", &json!({"resourceType": "Patient"})).await;
    assert_eq!(create.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let refused = until_status(&app, &path, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(refused["issue"][0]["diagnostics"].as_str().unwrap_or("").contains("audit log"), "{refused}");
    // Back: the next batch succeeds and the server serves again.
    app.postgres_execute("ALTER TABLE audit_entries_away RENAME TO audit_entries").await;
    until_status(&app, &path, StatusCode::OK).await;
    assert_eq!(app.post("Patient", &json!({"resourceType": "Patient"})).await.status(), StatusCode::CREATED);
}
