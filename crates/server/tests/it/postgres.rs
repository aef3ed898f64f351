//! PostgreSQL only (the tests return at once without `IGNIS_TEST_POSTGRES_URL`): several
//! servers, each with its own store, as separate processes would have, over one database.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, postgres_url, status_and_json};

/// Two servers over one fresh database, or `None` when the suite runs on SQLite.
async fn two_servers() -> Option<(TestApp, TestApp)> {
    postgres_url()?;
    let first = TestApp::spawn().await;
    let second = first.spawn_sharing().await;
    Some((first, second))
}

fn patient(family: &str, identifier: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test", "value": identifier}],
        "name": [{"family": family}],
    })
}

#[tokio::test]
async fn a_write_through_one_server_is_read_and_searched_through_the_other() {
    let Some((first, second)) = two_servers().await else { return };
    let id = first.create(&patient("Shared", "shared-1")).await;

    let (status, read) = status_and_json(second.get(&format!("Patient/{id}")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["name"][0]["family"], "Shared");
    let (_, found) = status_and_json(second.get("Patient?family=shared").await).await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["entry"][0]["resource"]["id"], id.as_str());

    // An update through the second server is a new version for the first, after the first
    // version in time even though another store's clock stamped it.
    let mut changed = read.clone();
    changed["name"][0]["family"] = json!("Changed");
    assert_eq!(second.put(&format!("Patient/{id}"), &changed).await.status(), StatusCode::OK);
    let (_, history) = status_and_json(first.get(&format!("Patient/{id}/_history")).await).await;
    let entries = history["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{history}");
    let instants: Vec<&str> =
        entries.iter().map(|entry| entry["resource"]["meta"]["lastUpdated"].as_str().unwrap_or("")).collect();
    assert!(instants[0] > instants[1], "newest first, strictly later: {instants:?}");
    let (_, found) = status_and_json(first.get("Patient?family=changed").await).await;
    assert_eq!(found["total"], 1, "{found}");

    assert_eq!(first.delete(&format!("Patient/{id}")).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(second.get(&format!("Patient/{id}")).await.status(), StatusCode::GONE);
}

#[tokio::test]
async fn concurrent_conditional_creates_across_servers_make_one_resource() {
    let Some((first, second)) = two_servers().await else { return };
    let servers = std::sync::Arc::new([first, second]);
    let mut tasks = Vec::new();
    for task in 0..16 {
        let servers = std::sync::Arc::clone(&servers);
        tasks.push(tokio::spawn(async move {
            let response = servers[task % 2]
                .request(reqwest::Method::POST, "Patient")
                .header("content-type", "application/fhir+json")
                .header("if-none-exist", "identifier=urn:test|race")
                .body(patient("Race", "race").to_string())
                .send()
                .await
                .expect("send");
            let (status, body) = status_and_json(response).await;
            assert!(status.is_success(), "{status}: {body}");
            body["id"].as_str().expect("id").to_owned()
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("task"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every create found the one resource: {ids:?}");
    for server in servers.iter() {
        let (_, found) = status_and_json(server.get("Patient?identifier=urn:test|race").await).await;
        assert_eq!(found["total"], 1, "{found}");
        let (_, history) = status_and_json(server.get("Patient/_history").await).await;
        assert_eq!(history["entry"].as_array().map(Vec::len), Some(1), "one version: {history}");
    }
}
