//! PostgreSQL only (ignored unless run with `--include-ignored` and `IGNIS_TEST_POSTGRES_URL`,
//! as `.ci/run` does under `.ci/with-postgres`): several
//! servers, each with its own store, as separate processes would have, over one database; a
//! database outage; and the query plans of the SQL search generates.

use fhir::id::{LogicalId, ResourceType};
use fhir::search::{Handling, SearchQuery};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, assert_outcome, postgres_url, status_and_json};

/// Why these tests are ignored in a plain `cargo test`.
const NEEDS_POSTGRES: &str = "needs IGNIS_TEST_POSTGRES_URL (run under .ci/with-postgres with --include-ignored)";

/// The PostgreSQL database of the run; a test that needs one fails without it.
fn required_postgres_url() -> String {
    postgres_url().expect(NEEDS_POSTGRES)
}

/// Two servers over one fresh PostgreSQL database.
async fn two_servers() -> (TestApp, TestApp) {
    required_postgres_url();
    let first = TestApp::spawn().await;
    let second = first.spawn_sharing().await;
    (first, second)
}

fn patient(family: &str, identifier: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test", "value": identifier}],
        "name": [{"family": family}],
    })
}

#[tokio::test]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn a_write_through_one_server_is_read_and_searched_through_the_other() {
    let (first, second) = two_servers().await;
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
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn concurrent_conditional_creates_across_servers_make_one_resource() {
    let (first, second) = two_servers().await;
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

/// Plain creates never conflict: many at once through two servers all succeed. (When a
/// create looked its fresh id up first, SERIALIZABLE made concurrent creates fail each other
/// until they ran out of retries.)
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_plain_creates_across_servers_all_succeed() {
    let (first, second) = two_servers().await;
    let servers = std::sync::Arc::new([first, second]);
    let mut tasks = Vec::new();
    for task in 0..8 {
        let servers = std::sync::Arc::clone(&servers);
        tasks.push(tokio::spawn(async move {
            for index in 0..25 {
                let response = servers[(task + index) % 2]
                    .post("Patient", &patient("Many", &format!("many-{task}-{index}")))
                    .await;
                let (status, body) = status_and_json(response).await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let (_, found) = status_and_json(servers[0].get("Patient?family=many&_total=accurate&_count=1").await).await;
    assert_eq!(found["total"], 200, "{found}");
}

/// Many clients updating and patching one resource through two servers: every answer is a
/// success or a 503 with `Retry-After` (a write that lost its serialization race more often
/// than it retries, a patch whose resource kept changing), never a 500, nor a 412 for a
/// precondition the client never sent.
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_of_one_resource_never_fail_with_500() {
    let (first, second) = two_servers().await;
    let id = first.create(&patient("Contended", "contended-1")).await;
    let servers = std::sync::Arc::new([first, second]);
    let mut tasks = Vec::new();
    for task in 0..8 {
        let (servers, id) = (std::sync::Arc::clone(&servers), id.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for index in 0..30 {
                let server = &servers[(task + index) % 2];
                let response = if index % 2 == 0 {
                    let mut body = patient("Contended", "contended-1");
                    body["id"] = json!(id);
                    body["name"][0]["given"] = json!([format!("t{task}-{index}")]);
                    server.put(&format!("Patient/{id}"), &body).await
                } else {
                    let change = json!([{"op": "add", "path": "/active", "value": index % 4 == 1}]);
                    server
                        .request(reqwest::Method::PATCH, &format!("Patient/{id}"))
                        .header("content-type", "application/json-patch+json")
                        .body(change.to_string())
                        .send()
                        .await
                        .expect("send")
                };
                let status = response.status();
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    assert!(response.headers().contains_key("retry-after"));
                }
                statuses.push(status);
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.extend(task.await.expect("task"));
    }
    let failed: Vec<_> =
        statuses.iter().filter(|status| !status.is_success() && **status != StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(statuses.iter().filter(|status| status.is_success()).count() > statuses.len() / 2);
}

// Multi-threaded: dropping the app drops its schema through the proxy from a blocking thread,
// which must not stop the proxy's tasks from running.
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_gives_503_and_the_server_recovers() {
    let url = required_postgres_url();
    let config: postgres::Config = url.parse().expect("IGNIS_TEST_POSTGRES_URL");
    let upstream = match (config.get_hosts().first(), config.get_ports().first()) {
        (Some(postgres::config::Host::Tcp(host)), Some(port)) => format!("{host}:{port}"),
        _ => panic!("IGNIS_TEST_POSTGRES_URL needs a TCP host and port"),
    };
    let mut proxy = Proxy::start(upstream.clone(), "127.0.0.1:0".parse().expect("address")).await;
    let app = TestApp::spawn_postgres(&url.replacen(&upstream, &proxy.address.to_string(), 1)).await;
    let id = app.create(&patient("Outage", "outage")).await;

    let address = proxy.address;
    proxy.stop();
    let response = app.get(&format!("Patient/{id}")).await;
    assert!(response.headers().contains_key("retry-after"), "Retry-After on a 503");
    assert_outcome(response, StatusCode::SERVICE_UNAVAILABLE, "transient").await;

    let proxy = Proxy::start(upstream, address).await;
    let (status, read) = status_and_json(app.get(&format!("Patient/{id}")).await).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(app.post("Patient", &patient("Back", "back")).await.status(), StatusCode::CREATED);
    drop(app);
    drop(proxy);
}

/// A TCP forwarder to the database that the test can cut off, connections and all.
struct Proxy {
    address: std::net::SocketAddr,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String, address: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = std::sync::Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let connection = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections.lock().expect("tasks").push(connection);
            }
        });
        tasks.lock().expect("tasks").push(accept);
        Proxy { address, tasks }
    }

    /// Stops listening and drops every forwarded connection.
    fn stop(&mut self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Resources for the plan check: `patients` patients, each with observations (vital signs
/// and laboratory, several codes and dates), conditions and medication requests.
fn population(patients: usize) -> Vec<Value> {
    let mut resources = Vec::new();
    for index in 0..patients {
        let id = format!("plan-p{index}");
        resources.push(json!({
            "resourceType": "Patient",
            "id": id,
            "identifier": [{"system": "urn:test:mrn", "value": format!("mrn-{index}")}],
            "name": [{"family": format!("Planfamily{index}"), "given": ["Ada"]}],
            "gender": if index % 2 == 0 { "female" } else { "male" },
            "birthDate": format!("19{:02}-01-01", index % 100),
        }));
        for observation in 0..12 {
            let (category, code) = match observation % 4 {
                0 => ("vital-signs", "8867-4"),
                1 => ("vital-signs", "8480-6"),
                2 => ("laboratory", "2339-0"),
                _ => ("laboratory", "718-7"),
            };
            resources.push(json!({
                "resourceType": "Observation",
                "id": format!("plan-o{index}-{observation}"),
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": format!("Patient/{id}")},
                "effectiveDateTime": format!("20{:02}-03-05T10:00:00Z", 10 + observation),
                "valueQuantity": {"value": 60 + observation, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
            }));
        }
        for condition in 0..3 {
            resources.push(json!({
                "resourceType": "Condition",
                "id": format!("plan-c{index}-{condition}"),
                "subject": {"reference": format!("Patient/{id}")},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": format!("4454{condition}")}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
            }));
        }
        for request in 0..3 {
            resources.push(json!({
                "resourceType": "MedicationRequest",
                "id": format!("plan-m{index}-{request}"),
                "status": "active",
                "intent": if request == 0 { "plan" } else { "order" },
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": format!("31463{request}")}]},
                "subject": {"reference": format!("Patient/{id}")},
            }));
        }
    }
    resources
}

/// The representative US Core searches get plans without a sequential scan of `resources`
/// or of any index table, on realistic statistics: a few thousand resources, analyzed. (With
/// a handful of rows PostgreSQL rightly prefers sequential scans, so the data has to be there
/// for the plans to mean anything.)
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn us_core_searches_are_planned_on_indexes() {
    required_postgres_url();
    let app = TestApp::spawn().await;
    let batch = population(250)
        .iter()
        .map(|resource| {
            let resource_type = ResourceType::parse(resource["resourceType"].as_str().expect("type")).expect("type");
            let id = LogicalId::parse(resource["id"].as_str().expect("id")).expect("id");
            store::ImportResource::new(
                &app.store.registry(store::Environment::Production),
                resource_type,
                id,
                resource.clone(),
            )
            .expect("prepare")
        })
        .collect::<Vec<_>>();
    let loaded = batch.len();
    let counts = app.store.import(store::Environment::Production, batch).await.expect("import");
    assert_eq!(counts.created, loaded);
    app.postgres_execute("ANALYZE").await;
    let store = app.postgres_store().await.expect("a PostgreSQL store");

    let searches = [
        ("Patient", "family=Planfamily17"),
        ("Patient", "identifier=urn:test:mrn|mrn-17"),
        ("Observation", "patient=plan-p17&category=laboratory"),
        ("Observation", "patient=plan-p17&code=http://loinc.org|8867-4&date=ge2015-01-01"),
        ("Condition", "patient=plan-p17"),
        ("MedicationRequest", "patient=plan-p17&intent=order"),
    ];
    let registry = app.store.registry(store::Environment::Production);
    for (resource_type, query) in searches {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("query");
        let query = SearchQuery::parse(&registry, resource_type, &pairs, Handling::Strict).expect("parse");
        let request = store::SearchRequest {
            types: vec![ResourceType::parse(resource_type).expect("type")],
            query,
            count: 20,
            limits: Default::default(),
        };
        let plans = store.explain_search(store::Environment::Production, request).await.expect("explain");
        assert!(!plans.is_empty(), "{resource_type}?{pairs:?} ran no statement");
        for plan in &plans {
            eprintln!("{resource_type}?{pairs:?}\n{plan}\n");
            assert!(!plan.contains("Seq Scan"), "{resource_type}?{pairs:?} scans a table:\n{plan}");
        }
    }
    // The searches find what they should, too.
    let (_, found) = status_and_json(app.get("Observation?patient=plan-p17&category=laboratory").await).await;
    assert_eq!(found["total"], 6, "{found}");
    let (_, found) = status_and_json(app.get("MedicationRequest?patient=plan-p17&intent=order").await).await;
    assert_eq!(found["total"], 2, "{found}");
}
