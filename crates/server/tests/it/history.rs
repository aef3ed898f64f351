//! History at instance, type and system level.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, status_and_json};

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|link| link["relation"] == "next")
        .map(|link| link["url"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn instance_history_lists_every_version_newest_first() {
    let app = TestApp::spawn().await;
    let mut body = json!({"resourceType": "Patient", "id": "h1", "gender": "female"});
    app.put("Patient/h1", &body).await;
    body["gender"] = json!("male");
    app.put("Patient/h1", &body).await;
    app.delete("Patient/h1").await;
    let (status, bundle) = status_and_json(app.get("Patient/h1/_history").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bundle["type"], "history");
    let entries = entries(&bundle);
    let methods: Vec<&str> = entries.iter().map(|entry| entry["request"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["DELETE", "PUT", "PUT"]);
    assert!(entries[0].get("resource").is_none(), "a delete entry has no resource");
    assert_eq!(entries[1]["resource"]["gender"], "male");
    assert_eq!(entries[2]["resource"]["meta"]["versionId"], "1");
    assert_eq!(entries[2]["response"]["etag"], "W/\"1\"");
}

#[tokio::test]
async fn type_and_system_history_page_with_count() {
    let app = TestApp::spawn().await;
    for index in 0..5 {
        app.create(&json!({"resourceType": "Patient", "gender": "other", "birthDate": format!("200{index}")})).await;
    }
    app.create(&json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})).await;
    let (_, first) = status_and_json(app.get("Patient/_history?_count=2").await).await;
    assert_eq!(entries(&first).len(), 2);
    let mut seen: Vec<String> =
        entries(&first).iter().map(|entry| entry["fullUrl"].as_str().unwrap().to_owned()).collect();
    let mut next = next_link(&first);
    while let Some(url) = next {
        let (status, page) = status_and_json(app.client.get(&url).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(entries(&page).iter().map(|entry| entry["fullUrl"].as_str().unwrap().to_owned()));
        next = next_link(&page);
    }
    assert_eq!(seen.len(), 5, "every Patient version exactly once: {seen:?}");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
    let (_, system) = status_and_json(app.get("_history").await).await;
    assert_eq!(entries(&system).len(), 6);
}

#[tokio::test]
async fn since_and_at_filter_versions() {
    let app = TestApp::spawn().await;
    let mut body = json!({"resourceType": "Patient", "id": "t1", "gender": "female"});
    let (_, first) = status_and_json(app.put("Patient/t1", &body).await).await;
    body["gender"] = json!("male");
    let (_, second) = status_and_json(app.put("Patient/t1", &body).await).await;
    let second_time = second["meta"]["lastUpdated"].as_str().unwrap();
    let first_time = first["meta"]["lastUpdated"].as_str().unwrap();

    let query = serde_urlencoded::to_string([("_since", second_time)]).unwrap();
    let (_, since) = status_and_json(app.get(&format!("Patient/t1/_history?{query}")).await).await;
    let versions: Vec<Value> =
        entries(&since).iter().map(|entry| entry["resource"]["meta"]["versionId"].clone()).collect();
    assert_eq!(versions, [json!("2")]);

    let query = serde_urlencoded::to_string([("_at", first_time)]).unwrap();
    let (_, at) = status_and_json(app.get(&format!("Patient/_history?{query}")).await).await;
    let entries = entries(&at);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["resource"]["meta"]["versionId"], "1");
}

#[tokio::test]
async fn history_of_unknown_resource_is_not_found() {
    let app = TestApp::spawn().await;
    let (status, body) = status_and_json(app.get("Patient/nobody/_history").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn every_version_keeps_its_own_body_across_updates_deletes_and_recreation() {
    let app = TestApp::spawn().await;
    let genders = ["female", "male", "other"];
    for gender in genders {
        app.put("Patient/v", &json!({"resourceType": "Patient", "id": "v", "gender": gender})).await;
    }
    app.delete("Patient/v").await;
    app.put("Patient/v", &json!({"resourceType": "Patient", "id": "v", "gender": "unknown"})).await;
    for (version, gender) in [(1, "female"), (2, "male"), (3, "other"), (5, "unknown")] {
        let (status, read) = status_and_json(app.get(&format!("Patient/v/_history/{version}")).await).await;
        assert_eq!(status, StatusCode::OK, "version {version}: {read}");
        assert_eq!(
            (read["gender"].as_str(), read["meta"]["versionId"].as_str()),
            (Some(gender), Some(&*version.to_string()))
        );
    }
    assert_eq!(app.get("Patient/v/_history/4").await.status(), StatusCode::GONE);
    let (_, bundle) = status_and_json(app.get("Patient/v/_history").await).await;
    let listed = entries(&bundle);
    let shown: Vec<Option<&str>> =
        listed.iter().map(|entry| entry.get("resource").and_then(|resource| resource["gender"].as_str())).collect();
    let expected = [Some("unknown"), None, Some("other"), Some("male"), Some("female")];
    assert_eq!(shown, expected, "{bundle}");
}
