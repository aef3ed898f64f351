//! `ignis bench --search PATH`: loads the Bundles at PATH (the Synthea set) as many times as
//! it takes to reach `--resources` (each copy with new ids), then runs a fixed mix of US Core
//! searches over HTTP and prints p50/p99 latency and searches/s per kind and overall.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use regex::Regex;
use serde_json::Value;
use store::Environment;

use crate::bench::{Backend, BenchServer, bench_token, percentile};
use crate::import::{self, Options, source};

/// What one patient offers the query mix.
pub(super) struct PatientFacts {
    id: String,
    family: String,
    birth_date: String,
    identifier: String,
    observation_code: Option<String>,
}

pub(crate) async fn run(
    path: &Path,
    resources_wanted: usize,
    requests: usize,
    clients: usize,
    database_url: Option<String>,
) -> anyhow::Result<()> {
    let bundles = read_texts(path)?;
    let per_copy: usize = bundles.iter().map(|text| text.matches("\"request\"").count()).sum();
    let copies = resources_wanted.div_ceil(per_copy.max(1)).max(1);
    let data_dir = tempfile::tempdir()?;
    let copies_dir = data_dir.path().join("copies");
    let patients = write_copies(&bundles, copies, &copies_dir)?;
    let mix = query_mix(&patients);
    let mut measured = Vec::new();
    for backend in Backend::compared(database_url) {
        measured.push(measure(&backend, &copies_dir, &mix, requests, clients).await?);
    }
    print_table(&measured, clients);
    Ok(())
}

/// One backend's run: the import of the copies, then the search mix over HTTP.
struct Measured {
    backend: &'static str,
    loaded: usize,
    import_seconds: f64,
    database_bytes: Option<u64>,
    results: Results,
    elapsed: Duration,
    /// Searches/s of the same mix with a bearer token.
    with_token: f64,
}

async fn measure(
    backend: &Backend,
    copies: &Path,
    mix: &[(&'static str, String)],
    requests: usize,
    clients: usize,
) -> anyhow::Result<Measured> {
    let fresh = backend.fresh().await?;
    let options = Options { env: Environment::Production, strict: false, batch_size: 2000, progress: true };
    let started = Instant::now();
    let summary = import::import(fresh.store.as_ref(), &[copies.to_path_buf()], options).await?;
    let import_seconds = started.elapsed().as_secs_f64();
    let database_bytes = fresh.sqlite_bytes();
    let server = BenchServer::start(Arc::clone(&fresh.store), None).await?;
    let (results, elapsed) = run_mix(&server.base, mix, requests, clients, None).await?;
    server.stop().await?;
    // The same mix through a server that requires tokens, over the same database.
    let secured = BenchServer::start(Arc::clone(&fresh.store), Some(bench_token()?)).await?;
    let (token_results, token_elapsed) =
        run_mix(&secured.base, mix, requests, clients, secured.token.as_deref()).await?;
    secured.stop().await?;
    let with_token = token_results.values().map(|(latencies, _)| latencies.len()).sum::<usize>() as f64
        / token_elapsed.as_secs_f64().max(1e-9);
    fresh.remove().await?;
    Ok(Measured {
        backend: backend.name(),
        loaded: summary.counts.total(),
        import_seconds,
        database_bytes,
        results,
        elapsed,
        with_token,
    })
}

pub(super) fn read_texts(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    for file in source::files(&[path.to_path_buf()])? {
        source::documents(&file, &mut |document| {
            if let Ok(document) = document {
                texts.push(String::from_utf8_lossy(&document.bytes).into_owned());
            }
            true
        });
    }
    if texts.is_empty() {
        bail!("no Bundles found in {}", path.display());
    }
    Ok(texts)
}

/// Writes `copies` copies of every Bundle, each UUID (ids, references, identifiers) suffixed
/// with the copy number, and returns the facts of every patient written.
pub(super) fn write_copies(bundles: &[String], copies: usize, folder: &Path) -> anyhow::Result<Vec<PatientFacts>> {
    let uuid = Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")?;
    let mut patients = Vec::new();
    for copy in 0..copies {
        let copy_folder = folder.join(copy.to_string());
        std::fs::create_dir_all(&copy_folder)?;
        for (index, text) in bundles.iter().enumerate() {
            let renamed = uuid.replace_all(text, |found: &regex::Captures<'_>| format!("{}-{copy}", &found[0]));
            std::fs::write(copy_folder.join(format!("{index}.json")), renamed.as_bytes())?;
            if let Ok(bundle) = serde_json::from_str::<Value>(&renamed) {
                patients.extend(patient_facts(&bundle));
            }
        }
    }
    Ok(patients)
}

fn patient_facts(bundle: &Value) -> Option<PatientFacts> {
    let entries = bundle["entry"].as_array()?;
    let patient =
        entries.iter().map(|entry| &entry["resource"]).find(|resource| resource["resourceType"] == "Patient")?;
    let identifier = patient["identifier"].as_array()?.iter().find(|identifier| identifier["system"].is_string())?;
    let id = patient["id"].as_str()?.to_owned();
    let observation_code = entries
        .iter()
        .map(|entry| &entry["resource"])
        .find(|resource| resource["resourceType"] == "Observation")
        .and_then(|observation| observation["code"]["coding"][0]["code"].as_str())
        .map(str::to_owned);
    Some(PatientFacts {
        id,
        family: patient["name"][0]["family"].as_str()?.to_owned(),
        birth_date: patient["birthDate"].as_str()?.to_owned(),
        identifier: format!("{}|{}", identifier["system"].as_str()?, identifier["value"].as_str()?),
        observation_code,
    })
}

/// The fixed mix: `(kind, query)` pairs cycling through the patients.
fn query_mix(patients: &[PatientFacts]) -> Vec<(&'static str, String)> {
    let encode = |pairs: &[(&str, &str)]| serde_urlencoded::to_string(pairs).unwrap_or_default();
    let mut mix = Vec::new();
    for patient in patients.iter().take(200) {
        let id = patient.id.as_str();
        mix.push(("Patient?identifier", format!("Patient?{}", encode(&[("identifier", &patient.identifier)]))));
        mix.push(("Patient?name", format!("Patient?{}", encode(&[("name", &patient.family)]))));
        mix.push((
            "Patient?birthdate&name",
            format!("Patient?{}", encode(&[("birthdate", &patient.birth_date), ("name", &patient.family)])),
        ));
        mix.push((
            "Observation?patient&category",
            format!("Observation?{}", encode(&[("patient", id), ("category", "laboratory")])),
        ));
        if let Some(code) = &patient.observation_code {
            let code = format!("http://loinc.org|{code}");
            mix.push((
                "Observation?patient&code",
                format!("Observation?{}", encode(&[("patient", id), ("code", &code)])),
            ));
        }
        mix.push((
            "Observation?patient&category&date",
            format!(
                "Observation?{}",
                encode(&[("patient", id), ("category", "vital-signs"), ("date", "ge2015-01-01")])
            ),
        ));
        mix.push(("Condition?patient", format!("Condition?{}", encode(&[("patient", id)]))));
        mix.push((
            "Encounter?patient&date",
            format!("Encounter?{}", encode(&[("patient", id), ("date", "ge2010-01-01")])),
        ));
        mix.push((
            "MedicationRequest?patient&intent",
            format!("MedicationRequest?{}", encode(&[("patient", id), ("intent", "order")])),
        ));
        mix.push(("Procedure?patient", format!("Procedure?{}", encode(&[("patient", id)]))));
        mix.push(("Immunization?patient", format!("Immunization?{}", encode(&[("patient", id)]))));
    }
    mix
}

/// Latencies and match counts per kind.
type Results = BTreeMap<&'static str, (Vec<Duration>, usize)>;

async fn run_mix(
    base: &str,
    mix: &[(&'static str, String)],
    requests: usize,
    clients: usize,
    token: Option<&str>,
) -> anyhow::Result<(Results, Duration)> {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let client = reqwest::Client::new();
    let mix = Arc::new(mix.to_vec());
    let started = Instant::now();
    let clients = clients.max(1);
    let tasks: Vec<_> = (0..clients)
        .map(|worker| {
            let (client, mix, base) = (client.clone(), Arc::clone(&mix), base.to_owned());
            let authorization = authorization.clone();
            tokio::spawn(async move {
                let mut results: Results = BTreeMap::new();
                let mut index = worker;
                while index < requests {
                    let (kind, query) = &mix[index % mix.len()];
                    let sent = Instant::now();
                    let mut request = client.get(format!("{base}/{query}"));
                    if let Some(authorization) = &authorization {
                        request = request.header("authorization", authorization);
                    }
                    let response = request.send().await?;
                    if !response.status().is_success() {
                        bail!("{query} answered {}", response.status());
                    }
                    let body = response.bytes().await?;
                    let latency = sent.elapsed();
                    let matches = count_matches(&body);
                    let entry = results.entry(kind).or_default();
                    entry.0.push(latency);
                    entry.1 += matches;
                    index += clients;
                }
                anyhow::Ok(results)
            })
        })
        .collect();
    let mut merged: Results = BTreeMap::new();
    for task in tasks {
        for (kind, (latencies, matches)) in task.await?? {
            let entry = merged.entry(kind).or_default();
            entry.0.extend(latencies);
            entry.1 += matches;
        }
    }
    Ok((merged, started.elapsed()))
}

fn count_matches(body: &[u8]) -> usize {
    let text = String::from_utf8_lossy(body);
    text.matches("\"mode\":\"match\"").count()
}

#[allow(clippy::print_stdout)] // The table is the command's output.
fn print_table(measured: &[Measured], clients: usize) {
    let Some(first) = measured.first() else { return };
    for run in measured {
        let size = run.database_bytes.map(|bytes| format!("; database {:.1} MiB", bytes as f64 / 1048576.0));
        println!(
            "{}: imported {} resources in {:.1} s ({:.0} resources/s){}",
            run.backend,
            run.loaded,
            run.import_seconds,
            run.loaded as f64 / run.import_seconds.max(1e-9),
            size.unwrap_or_default()
        );
    }
    println!("{clients} clients; latencies in ms");
    let names: Vec<String> = measured.iter().map(|run| format!(" {0} p50 | {0} p99 |", run.backend)).collect();
    println!("| search | requests |{} matches/search |", names.concat());
    println!("|---|---:|{}---:|", "---:|---:|".repeat(measured.len()));
    for (kind, (latencies, matches)) in &first.results {
        let cells: Vec<String> = measured
            .iter()
            .map(|run| {
                let mut sorted = run.results.get(kind).map(|(latencies, _)| latencies.clone()).unwrap_or_default();
                sorted.sort();
                format!(" {:.2} | {:.2} |", percentile(&sorted, 0.5), percentile(&sorted, 0.99))
            })
            .collect();
        let per_search = *matches as f64 / latencies.len().max(1) as f64;
        println!("| {kind} | {} |{} {per_search:.1} |", latencies.len(), cells.concat());
    }
    let mut rates = Vec::new();
    let cells: Vec<String> = measured
        .iter()
        .map(|run| {
            let mut all: Vec<Duration> = run.results.values().flat_map(|(latencies, _)| latencies.clone()).collect();
            all.sort();
            let rate = all.len() as f64 / run.elapsed.as_secs_f64().max(1e-9);
            rates.push(format!("{} {rate:.0} (with a bearer token {:.0})", run.backend, run.with_token));
            format!(" {:.2} | {:.2} |", percentile(&all, 0.5), percentile(&all, 0.99))
        })
        .collect();
    let total: usize = first.results.values().map(|(latencies, _)| latencies.len()).sum();
    println!("| **all** | {total} |{} searches/s: {} |", cells.concat(), rates.join(", "));
}
