//! `ignis bench --soak`: `--requests` mixed valid and malformed requests from `--clients`
//! clients against a throw-away server on loopback, bounded in count and time. It counts the
//! answers by status class and fails if any 5xx other than a deliberate 503 came back, or if
//! the server no longer takes a write at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::bench::{Backend, BenchServer};

/// The run stops after this long even if requests remain.
const TIME_BOUND: Duration = Duration::from_secs(600);

/// One kind of request in the mix: a name for the table and how to build it.
struct Kind {
    name: &'static str,
    build: fn(&Seed, usize) -> Request,
}

struct Request {
    method: Method,
    /// Under the server root, e.g. `/fhir/Patient`.
    path: String,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
}

/// What the mix refers to: resources created before the run.
struct Seed {
    patients: Vec<String>,
}

impl Request {
    fn get(path: impl Into<String>) -> Request {
        Request { method: Method::GET, path: path.into(), content_type: None, body: None }
    }

    fn send(method: Method, path: impl Into<String>, content_type: &'static str, body: impl Into<Vec<u8>>) -> Request {
        Request { method, path: path.into(), content_type: Some(content_type), body: Some(body.into()) }
    }

    fn json(method: Method, path: impl Into<String>, body: &Value) -> Request {
        Request::send(method, path, FHIR_JSON, body.to_string())
    }
}

const FHIR_JSON: &str = "application/fhir+json";

fn patient_at(seed: &Seed, index: usize) -> &str {
    &seed.patients[index % seed.patients.len()]
}

/// The mix, in the order it cycles through: valid requests first, then malformed ones.
const KINDS: &[Kind] = &[
    Kind { name: "read", build: |seed, i| Request::get(format!("/fhir/Patient/{}", patient_at(seed, i))) },
    Kind { name: "search name", build: |_, i| Request::get(format!("/fhir/Patient?name=soak{}&_count=10", i % 50)) },
    Kind {
        name: "search with include",
        build: |seed, i| {
            Request::get(format!("/fhir/Observation?patient={}&_include=Observation:subject", patient_at(seed, i)))
        },
    },
    Kind { name: "search date edge", build: |_, _| Request::get("/fhir/Patient?birthdate=ge9999-12-31") },
    Kind { name: "create", build: |_, i| Request::json(Method::POST, "/fhir/Patient", &patient(i)) },
    Kind {
        name: "create year 9999",
        build: |_, _| {
            Request::json(Method::POST, "/fhir/Patient", &json!({"resourceType": "Patient", "birthDate": "9999-12-31"}))
        },
    },
    Kind {
        name: "create year 0001",
        build: |_, _| {
            let body = json!({"resourceType": "Patient", "deceasedDateTime": "0001-01-01T00:00:00+14:00"});
            Request::json(Method::POST, "/fhir/Patient", &body)
        },
    },
    Kind {
        name: "update",
        build: |seed, i| {
            let id = patient_at(seed, i);
            let mut body = patient(i);
            body["id"] = json!(id);
            Request::json(Method::PUT, format!("/fhir/Patient/{id}"), &body)
        },
    },
    Kind {
        name: "patch",
        build: |seed, i| {
            let patch = json!([{"op": "add", "path": "/gender", "value": if i % 2 == 0 { "male" } else { "female" }}]);
            Request::send(
                Method::PATCH,
                format!("/fhir/Patient/{}", patient_at(seed, i)),
                "application/json-patch+json",
                patch.to_string(),
            )
        },
    },
    Kind {
        name: "transaction",
        build: |_, i| {
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": "urn:uuid:6f6f1c0e-0000-4000-8000-000000000001", "resource": patient(i),
                 "request": {"method": "POST", "url": "Patient"}},
                {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "soak"},
                              "subject": {"reference": "urn:uuid:6f6f1c0e-0000-4000-8000-000000000001"}},
                 "request": {"method": "POST", "url": "Observation"}}]});
            Request::json(Method::POST, "/fhir", &bundle)
        },
    },
    Kind { name: "history", build: |seed, i| Request::get(format!("/fhir/Patient/{}/_history", patient_at(seed, i))) },
    Kind {
        name: "sandbox create (costly custom parameter)",
        build: |_, i| Request::json(Method::POST, "/sandbox/fhir/Patient", &patient(i)),
    },
    Kind {
        name: "bad: chain fan-out",
        build: |_, _| Request::get("/fhir/Task?subject.subject.subject.subject.identifier=x"),
    },
    Kind {
        name: "bad: forged cursor",
        build: |_, i| Request::get(format!("/fhir/Patient?_cursor=WzAsMSx7ImkiOj{i}9XQ")),
    },
    Kind {
        name: "bad: too many values",
        build: |_, _| Request::get(format!("/fhir/Patient?name={}", vec!["x"; 2000].join(","))),
    },
    Kind {
        name: "bad: deep _has",
        build: |_, _| {
            Request::get("/fhir/Patient?_has:Observation:patient:_has:Provenance:target:_has:AuditEvent:entity:_id=x")
        },
    },
    Kind { name: "bad: date 2023-02-30", build: |_, _| Request::get("/fhir/Patient?birthdate=2023-02-30") },
    Kind {
        name: "bad: invalid birthDate",
        build: |_, _| {
            Request::json(
                Method::POST,
                "/fhir/Patient",
                &json!({"resourceType": "Patient", "birthDate": "10000-01-01"}),
            )
        },
    },
    Kind {
        name: "bad: truncated JSON",
        build: |_, _| Request::send(Method::POST, "/fhir/Patient", FHIR_JSON, "{\"resourceType\":"),
    },
    Kind {
        name: "bad: nested 100k deep",
        build: |_, _| Request::send(Method::POST, "/fhir/Patient", FHIR_JSON, "[".repeat(100_000)),
    },
    Kind { name: "bad: random bytes", build: |_, i| Request::send(Method::POST, "/fhir", FHIR_JSON, noise(i)) },
    Kind {
        name: "bad: content type",
        build: |_, i| Request::send(Method::POST, "/fhir/Patient", "text/plain", patient(i).to_string()),
    },
    Kind {
        name: "bad: invalid resource",
        build: |_, _| {
            Request::json(Method::POST, "/fhir/Observation", &json!({"resourceType": "Observation", "status": 7}))
        },
    },
    Kind { name: "bad: id", build: |_, _| Request::get("/fhir/Patient/not%20an%20id!") },
    Kind { name: "bad: type", build: |_, _| Request::get("/fhir/Nonsense/1") },
    Kind {
        name: "bad: patch",
        build: |seed, i| {
            Request::send(
                Method::PATCH,
                format!("/fhir/Patient/{}", patient_at(seed, i)),
                "application/json-patch+json",
                "[{\"op\":\"explode\"}]",
            )
        },
    },
    Kind {
        name: "bad: transaction entry",
        build: |_, _| {
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
                {"resource": {"resourceType": "Patient", "birthDate": "yesterday"}, "request": {"method": "POST", "url": "Patient"}}]});
            Request::json(Method::POST, "/fhir", &bundle)
        },
    },
];

fn patient(index: usize) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": format!("Soak{}", index % 50), "given": ["Load"]}],
           "birthDate": format!("{}-0{}-1{}", 1930 + index % 90, 1 + index % 9, index % 10)})
}

/// Bytes that are not JSON, different for each request.
fn noise(index: usize) -> Vec<u8> {
    (0..256).map(|position| ((position * 31 + index * 17) % 251) as u8).collect()
}

/// Statuses seen per kind.
type Tally = BTreeMap<&'static str, BTreeMap<u16, usize>>;

pub(crate) async fn run(requests: usize, clients: usize, database_url: Option<String>) -> anyhow::Result<()> {
    let backend = Backend::new(database_url);
    let fresh = backend.fresh().await?;
    let server = BenchServer::start(Arc::clone(&fresh.store), None).await?;
    let root = server.base.trim_end_matches("/fhir").to_owned();
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    let seed = seed(&client, &root).await?;
    let seed = Arc::new(seed);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (client, root, seed, next) = (client.clone(), root.clone(), Arc::clone(&seed), Arc::clone(&next));
            tokio::spawn(async move {
                let mut tally = Tally::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= requests || started.elapsed() > TIME_BOUND {
                        return anyhow::Ok(tally);
                    }
                    let kind = &KINDS[index % KINDS.len()];
                    let status = send(&client, &root, (kind.build)(&seed, index)).await?;
                    *tally.entry(kind.name).or_default().entry(status.as_u16()).or_default() += 1;
                }
            })
        })
        .collect();
    let mut tally = Tally::new();
    for task in tasks {
        for (kind, statuses) in task.await?? {
            for (status, count) in statuses {
                *tally.entry(kind).or_default().entry(status).or_default() += count;
            }
        }
    }
    let elapsed = started.elapsed();
    let after = send(&client, &root, Request::json(Method::POST, "/fhir/Patient", &patient(0))).await?;
    server.stop().await?;
    fresh.remove().await?;
    print_table(&tally, clients, elapsed, backend.name(), after);
    let failures: usize = tally
        .values()
        .flat_map(|statuses| statuses.iter())
        .filter(|(status, _)| is_failure(**status))
        .map(|(_, count)| count)
        .sum();
    if failures > 0 {
        bail!("{failures} answers were 5xx other than a deliberate 503");
    }
    if after != StatusCode::CREATED {
        bail!("after the run a create answered {after}");
    }
    Ok(())
}

/// A server error that is not the deliberate, retryable 503.
fn is_failure(status: u16) -> bool {
    status >= 500 && status != 503
}

async fn send(client: &reqwest::Client, root: &str, request: Request) -> anyhow::Result<StatusCode> {
    let mut builder = client.request(request.method, format!("{root}{}", request.path));
    if let Some(content_type) = request.content_type {
        builder = builder.header("content-type", content_type);
    }
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    let response = builder.send().await.context("the server did not answer")?;
    let status = response.status();
    // Read the whole answer, as a client would.
    response.bytes().await.context("the answer broke off")?;
    Ok(status)
}

/// Patients to refer to, and a sandbox SearchParameter whose expression walks every node of
/// each resource (so every sandbox write runs FHIRPath under its work budget).
async fn seed(client: &reqwest::Client, root: &str) -> anyhow::Result<Seed> {
    let mut patients = Vec::new();
    for index in 0..50 {
        let response = client
            .post(format!("{root}/fhir/Patient"))
            .header("content-type", FHIR_JSON)
            .body(patient(index).to_string())
            .send()
            .await?;
        if response.status() != StatusCode::CREATED {
            bail!("seeding a Patient answered {}", response.status());
        }
        let body: Value = response.json().await?;
        patients.push(body["id"].as_str().context("a created Patient without id")?.to_owned());
    }
    let parameter = json!({"resourceType": "SearchParameter", "url": "http://example.org/soak/everything",
        "name": "everything", "status": "active", "description": "Every string in the resource", "code": "everything",
        "base": ["Patient"], "type": "string", "expression": "Patient.descendants().ofType(string)"});
    let response = client
        .post(format!("{root}/sandbox/fhir/SearchParameter"))
        .header("content-type", FHIR_JSON)
        .body(parameter.to_string())
        .send()
        .await?;
    if response.status() != StatusCode::CREATED {
        bail!("seeding the sandbox SearchParameter answered {}", response.status());
    }
    Ok(Seed { patients })
}

#[allow(clippy::print_stdout)] // The table is the command's output.
fn print_table(tally: &Tally, clients: usize, elapsed: Duration, backend: &str, after: StatusCode) {
    let total: usize = tally.values().flat_map(|statuses| statuses.values()).sum();
    let count = |test: fn(u16) -> bool| -> usize {
        tally.values().flat_map(|statuses| statuses.iter()).filter(|(status, _)| test(**status)).map(|(_, n)| n).sum()
    };
    println!(
        "soak on {backend}: {total} requests from {clients} clients in {:.1} s ({:.0} requests/s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    println!();
    println!("| request | count | statuses |");
    println!("|---|---:|---|");
    for (kind, statuses) in tally {
        let seen: Vec<String> = statuses.iter().map(|(status, n)| format!("{status}×{n}")).collect();
        println!("| {kind} | {} | {} |", statuses.values().sum::<usize>(), seen.join(" "));
    }
    println!();
    println!("| 2xx | 4xx | 503 | other 5xx | create after the run |");
    println!("|---:|---:|---:|---:|---|");
    println!(
        "| {} | {} | {} | {} | {} |",
        count(|status| (200..300).contains(&status)),
        count(|status| (400..500).contains(&status)),
        count(|status| status == 503),
        count(is_failure),
        after.as_u16()
    );
}
