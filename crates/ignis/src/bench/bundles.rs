//! `ignis bench --bundles PATH`: resources/s for loading the same Bundles (a) with
//! `ignis import` and (b) posted as transactions over HTTP by 1 and by N clients, each run
//! against a fresh database: a throw-away SQLite file, or with `--database-url` a throw-away
//! schema in that PostgreSQL database (dropped after the run).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use store::Environment;

use crate::bench::{Backend, BenchServer};
use crate::import::{self, Options, source};

/// One row of the result table.
struct Row {
    method: String,
    clients: usize,
    resources: usize,
    elapsed: Duration,
}

pub(crate) async fn run(path: &Path, clients: usize, database_url: Option<String>) -> anyhow::Result<()> {
    let bundles = read_bundles(path)?;
    let resources: usize = bundles.iter().map(|(_, count)| count).sum();
    let mut columns = Vec::new();
    for backend in Backend::compared(database_url) {
        let mut rows = vec![import_row(path, &backend).await?];
        for clients in [1, clients.max(1)] {
            rows.push(Row {
                method: "POST [base] transaction".into(),
                clients,
                resources,
                elapsed: post_all(&bundles, clients, &backend).await?,
            });
        }
        columns.push((backend.name(), rows));
    }
    print_table(&columns, bundles.len());
    Ok(())
}

/// Every Bundle's text and its number of entries.
pub(super) fn read_bundles(path: &Path) -> anyhow::Result<Vec<(Arc<String>, usize)>> {
    let mut bundles = Vec::new();
    let mut failure = None;
    for file in source::files(&[path.to_path_buf()])? {
        source::documents(&file, &mut |document| match document.and_then(|document| bundle(&document.bytes)) {
            Ok(bundle) => {
                bundles.push(bundle);
                true
            }
            Err(error) => {
                failure = Some(error);
                false
            }
        });
    }
    match failure {
        Some(error) => Err(error),
        None if bundles.is_empty() => bail!("no Bundles found in {}", path.display()),
        None => Ok(bundles),
    }
}

fn bundle(bytes: &[u8]) -> anyhow::Result<(Arc<String>, usize)> {
    let text = String::from_utf8(bytes.to_vec()).context("a Bundle is not UTF-8")?;
    let value: Value = serde_json::from_str(&text)?;
    let entries = value["entry"].as_array().map_or(0, Vec::len);
    Ok((Arc::new(text), entries))
}

async fn import_row(path: &Path, backend: &Backend) -> anyhow::Result<Row> {
    let fresh = backend.fresh().await?;
    let options = Options { env: Environment::Production, strict: false, batch_size: 2000, progress: false };
    let summary = import::import(fresh.store.as_ref(), &[PathBuf::from(path)], options).await;
    fresh.remove().await?;
    let summary = summary?;
    if !summary.problems.is_empty() {
        bail!("the import reported {} problems", summary.problems.len());
    }
    Ok(Row { method: "ignis import".into(), clients: 1, resources: summary.counts.total(), elapsed: summary.elapsed })
}

/// Posts every Bundle to a fresh server from `clients` concurrent clients.
async fn post_all(bundles: &[(Arc<String>, usize)], clients: usize, backend: &Backend) -> anyhow::Result<Duration> {
    let fresh = backend.fresh().await?;
    let server = BenchServer::start(Arc::clone(&fresh.store), None).await?;
    let posted = post_to(&server.base, bundles, clients).await;
    server.stop().await?;
    fresh.remove().await?;
    posted
}

/// Posts every Bundle to `url` from `clients` concurrent clients; the time it took.
async fn post_to(url: &str, bundles: &[(Arc<String>, usize)], clients: usize) -> anyhow::Result<Duration> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|worker| {
            let (client, url) = (client.clone(), url.to_owned());
            let mine: Vec<Arc<String>> =
                bundles.iter().skip(worker).step_by(clients).map(|(text, _)| Arc::clone(text)).collect();
            tokio::spawn(async move {
                for body in mine {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/fhir+json")
                        .body(body.as_str().to_owned())
                        .send()
                        .await?;
                    if response.status() != reqwest::StatusCode::OK {
                        bail!("a transaction answered {}: {}", response.status(), response.text().await?);
                    }
                    response.bytes().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

#[allow(clippy::print_stdout)] // The table is the command's output.
fn print_table(columns: &[(&str, Vec<Row>)], bundles: usize) {
    let Some((_, first)) = columns.first() else { return };
    let names: Vec<String> = columns.iter().map(|(name, _)| format!(" {name} s | {name} resources/s |")).collect();
    println!("| load {bundles} Bundles | clients | resources |{}", names.concat());
    println!("|---|---:|---:|{}", "---:|---:|".repeat(columns.len()));
    for (index, row) in first.iter().enumerate() {
        let cells: Vec<String> = columns
            .iter()
            .filter_map(|(_, rows)| rows.get(index))
            .map(|row| {
                let seconds = row.elapsed.as_secs_f64();
                format!(" {seconds:.2} | {:.0} |", row.resources as f64 / seconds.max(1e-9))
            })
            .collect();
        println!("| {} | {} | {} |{}", row.method, row.clients, row.resources, cells.concat());
    }
}
