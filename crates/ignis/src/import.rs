//! `ignis import`: loads transaction and collection Bundles and NDJSON files from files,
//! folders and `.tgz` archives into one partition.
//!
//! Reading and validating run on worker threads while the store writes what is ready in
//! large batches (one database transaction each, through the same write path as the REST
//! API, so every index row is written). Each resource keeps its own id (a Bundle's
//! placeholders are resolved to them), and the store skips resources whose content is
//! unchanged, so importing the same data twice changes nothing. A bad file or resource is
//! reported with its location and left out; `--strict` stops at the first one.

mod parse;
pub(crate) mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fhir::search::Registry;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use store::audit::{Agent, Event, Outcome};
use store::{Environment, ImportCounts, ImportResource, Store};
use tokio::sync::mpsc;

use crate::cli::ImportArgs;
use crate::import::parse::{Parsed, Problem};
use crate::serve::open_store;

/// How to import.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) env: Environment,
    /// Stop at the first problem.
    pub(crate) strict: bool,
    /// Resources per database transaction.
    pub(crate) batch_size: usize,
    /// Draw a progress bar, and print each problem as it is found, on stderr.
    pub(crate) progress: bool,
}

/// What an import did.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) counts: ImportCounts,
    /// Valid resources read, per type (a resource repeated across files counts each time).
    pub(crate) per_type: BTreeMap<String, usize>,
    pub(crate) problems: Vec<Problem>,
    pub(crate) documents: usize,
    pub(crate) elapsed: Duration,
}

pub(crate) async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let store = open_store(&args.storage)?;
    let options =
        Options { env: args.environment.into(), strict: args.strict, batch_size: args.batch_size, progress: true };
    let summary = import(store.as_ref(), &args.paths, options).await;
    audit(store.as_ref(), &args.paths, options.env, summary.as_ref()).await?;
    let summary = summary?;
    print_summary(&summary, options.env);
    if !summary.problems.is_empty() {
        anyhow::bail!("{} resources or files could not be imported (listed above)", summary.problems.len());
    }
    Ok(())
}

/// Records the import in the audit log: what was read and what it wrote, or why it stopped.
/// (The resources themselves are not listed one by one: an import writes thousands a second.)
async fn audit(
    store: &dyn Store,
    paths: &[PathBuf],
    env: Environment,
    summary: Result<&Summary, &anyhow::Error>,
) -> anyhow::Result<()> {
    let files: Vec<String> = paths.iter().map(|path| path.display().to_string()).collect();
    let (outcome, detail) = match summary {
        Ok(summary) => {
            let counts = &summary.counts;
            let written =
                format!("{} created, {} updated, {} unchanged", counts.created, counts.updated, counts.unchanged);
            let outcome = if summary.problems.is_empty() { Outcome::Success } else { Outcome::Minor };
            (outcome, format!("{written}, {} refused, from {}", summary.problems.len(), files.join(", ")))
        }
        Err(error) => (Outcome::Serious, format!("stopped: {error:#}, from {}", files.join(", "))),
    };
    let event = Event {
        category: "admin".to_owned(),
        action: "import".to_owned(),
        outcome,
        detail: Some(detail),
        environment: Some(env.as_str().to_owned()),
        agent: Agent { user: Some("ignis import".to_owned()), ..Agent::default() },
        ..Event::default()
    };
    store.append_audit(vec![event]).await.map_err(|error| anyhow::anyhow!("the import could not be audited: {error}"))
}

/// Imports everything under `paths` into `store`.
pub(crate) async fn import(store: &dyn Store, paths: &[PathBuf], options: Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let files = source::files(paths)?;
    let (sender, mut receiver) = mpsc::channel::<Parsed>(16);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = std::sync::Arc::clone(&stop);
        let registry = store.registry(options.env);
        std::thread::spawn(move || produce(files, &sender, &stop, &registry))
    };
    let progress = progress_bar(options.progress);
    let mut summary = Summary::default();
    let mut pending: Vec<ImportResource> = Vec::with_capacity(options.batch_size);
    let mut result = Ok(());
    while let Some(parsed) = receiver.recv().await {
        if let Err(error) = take(&mut summary, &mut pending, parsed, &progress, options) {
            result = Err(error);
            break;
        }
        if pending.len() >= options.batch_size.max(1) {
            write(store, options.env, &mut pending, &mut summary, &progress).await?;
        }
    }
    stop.store(true, Ordering::Relaxed);
    drop(receiver);
    producer.join().map_err(|_| anyhow::anyhow!("the import reader thread panicked"))?;
    result?;
    write(store, options.env, &mut pending, &mut summary, &progress).await?;
    progress.finish_and_clear();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Adds one parsed document to the summary and the pending batch.
fn take(
    summary: &mut Summary,
    pending: &mut Vec<ImportResource>,
    parsed: Parsed,
    progress: &ProgressBar,
    options: Options,
) -> anyhow::Result<()> {
    summary.documents += 1;
    for problem in parsed.problems {
        if options.progress {
            progress.suspend(|| eprintln!("{}: {}", problem.location, problem.message));
        }
        summary.problems.push(problem);
        progress.set_message(format!("{} errors", summary.problems.len()));
    }
    if options.strict
        && let Some(problem) = summary.problems.first()
    {
        anyhow::bail!("--strict: stopping at {}", problem.location);
    }
    for resource in &parsed.resources {
        *summary.per_type.entry(resource.resource_type.to_string()).or_default() += 1;
    }
    pending.extend(parsed.resources);
    Ok(())
}

async fn write(
    store: &dyn Store,
    env: Environment,
    pending: &mut Vec<ImportResource>,
    summary: &mut Summary,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let batch = std::mem::take(pending);
    let (size, started) = (batch.len(), Instant::now());
    let counts = store.import(env, batch).await?;
    tracing::debug!(resources = size, elapsed = ?started.elapsed(), "import batch written");
    summary.counts.add(counts);
    progress.set_position(summary.counts.total() as u64);
    Ok(())
}

/// Reads every document of `files` and parses, validates and indexes them on worker threads
/// (with the store's `registry`), sending the results until `stop` is set.
fn produce(files: Vec<PathBuf>, parsed: &mpsc::Sender<Parsed>, stop: &AtomicBool, registry: &Arc<Registry>) {
    // The store's single writer is the one serial stage: it keeps a core to itself.
    let workers = std::thread::available_parallelism().map_or(1, |cores| usize::from(cores).saturating_sub(1).max(1));
    let (documents, queue) = std::sync::mpsc::sync_channel::<source::Document>(workers * 2);
    let queue = Mutex::new(queue);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                // Workers drain the queue even after a stop, so the reader never blocks.
                while let Some(document) = queue.lock().ok().and_then(|queue| queue.recv().ok()) {
                    let document = parse::parse(&document, registry);
                    if !stop.load(Ordering::Relaxed) && parsed.blocking_send(document).is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
        for file in files {
            source::documents(&file, &mut |document| {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                match document {
                    Ok(document) => documents.send(document).is_ok(),
                    Err(error) => {
                        let problem = Problem { location: file.display().to_string(), message: format!("{error:#}") };
                        parsed.blocking_send(Parsed { resources: Vec::new(), problems: vec![problem] }).is_ok()
                    }
                }
            });
        }
        drop(documents);
    });
}

fn progress_bar(visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let progress = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} {elapsed} {human_pos} resources ({per_sec}) {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    progress.set_style(style);
    progress.set_message("0 errors");
    progress.enable_steady_tick(Duration::from_millis(200));
    progress
}

#[allow(clippy::print_stdout)] // The summary is the command's output.
fn print_summary(summary: &Summary, env: Environment) {
    let seconds = summary.elapsed.as_secs_f64();
    let counts = summary.counts;
    println!(
        "imported {} resources into {} from {} documents in {seconds:.2} s ({:.0} resources/s): {} created, {} updated, {} unchanged; {} problems",
        counts.total(),
        env.as_str(),
        summary.documents,
        counts.total() as f64 / seconds.max(1e-9),
        counts.created,
        counts.updated,
        counts.unchanged,
        summary.problems.len(),
    );
    for (resource_type, count) in &summary.per_type {
        println!("  {resource_type:<28} {count:>8}");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use fhir::id::ResourceType;
    use fhir::search::Criteria;
    use serde_json::Value;
    use store::sqlite::SqliteStore;

    use super::*;

    /// How many Synthea bundles the test imports; the bench imports all 100.
    const BUNDLES: usize = 12;

    /// Extracts the first `count` bundles of the shared Synthea archive into `folder`.
    fn synthea_subset(folder: &Path, count: usize) -> Vec<PathBuf> {
        let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/demo/synthea-r4-100-bundles.tgz");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(archive).unwrap()));
        let mut written = Vec::new();
        for member in archive.entries().unwrap() {
            let mut member = member.unwrap();
            let name = member.path().unwrap().display().to_string();
            if written.len() == count || !name.ends_with(".json") {
                continue;
            }
            let path = folder.join(format!("{}.json", written.len()));
            member.unpack(&path).unwrap();
            written.push(path);
        }
        written
    }

    /// Distinct (type, id) pairs per type, straight from the bundles.
    fn expected_counts(files: &[PathBuf]) -> BTreeMap<String, usize> {
        let mut seen = BTreeSet::new();
        for file in files {
            let bundle: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
            for entry in bundle["entry"].as_array().unwrap() {
                let resource = &entry["resource"];
                seen.insert((resource["resourceType"].as_str().unwrap().to_owned(), resource["id"].to_string()));
            }
        }
        let mut counts = BTreeMap::new();
        for (resource_type, _) in seen {
            *counts.entry(resource_type).or_default() += 1;
        }
        counts
    }

    async fn stored_counts(store: &SqliteStore, types: impl Iterator<Item = &String>) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for name in types {
            let resource_type = ResourceType::parse(name).unwrap();
            let all = Criteria::parse(&fhir::search::Registry::official(), name, &[]).unwrap();
            let found = store.find(Environment::Sandbox, &resource_type, all, usize::MAX).await.unwrap();
            counts.insert(name.clone(), found.len());
        }
        counts
    }

    #[tokio::test]
    async fn synthea_bundles_import_with_their_counts_and_twice_changes_nothing() {
        let folder = tempfile::tempdir().unwrap();
        let files = synthea_subset(folder.path(), BUNDLES);
        let store = SqliteStore::open(&folder.path().join("import.db")).unwrap();
        let options = Options { env: Environment::Sandbox, strict: true, batch_size: 500, progress: false };

        let first = import(&store, &[folder.path().to_path_buf()], options).await.unwrap();
        assert!(first.problems.is_empty(), "{:?}", first.problems);
        let expected = expected_counts(&files);
        assert_eq!(stored_counts(&store, expected.keys()).await, expected);
        assert_eq!(first.counts.created, expected.values().sum::<usize>());

        let second = import(&store, &[folder.path().to_path_buf()], options).await.unwrap();
        assert_eq!((second.counts.created, second.counts.updated), (0, 0));
        assert_eq!(second.counts.unchanged, first.counts.total());
        let production = store
            .find(
                Environment::Production,
                &ResourceType::parse("Patient").unwrap(),
                Criteria::parse(&fhir::search::Registry::official(), "Patient", &[]).unwrap(),
                10,
            )
            .await
            .unwrap();
        assert!(production.is_empty(), "the import stays in its partition");
    }

    #[tokio::test]
    async fn bad_resources_are_reported_and_strict_stops() {
        let folder = tempfile::tempdir().unwrap();
        let good = r#"{"resourceType":"Patient","id":"good","gender":"female"}"#;
        let bad = r#"{"resourceType":"Patient","id":"bad","gender":"sometimes"}"#;
        std::fs::write(folder.path().join("patients.ndjson"), format!("{good}\n{bad}\n")).unwrap();
        std::fs::write(folder.path().join("broken.json"), "{not json").unwrap();
        let store = SqliteStore::open(&folder.path().join("import.db")).unwrap();
        let lenient = Options { env: Environment::Production, strict: false, batch_size: 10, progress: false };
        let summary = import(&store, &[folder.path().to_path_buf()], lenient).await.unwrap();
        assert_eq!(summary.counts.created, 1);
        let locations: Vec<&str> = summary.problems.iter().map(|problem| problem.location.as_str()).collect();
        assert!(locations.iter().any(|location| location.ends_with("patients.ndjson:2")), "{locations:?}");
        assert!(locations.iter().any(|location| location.contains("broken.json")), "{locations:?}");

        let strict = Options { strict: true, ..lenient };
        assert!(import(&store, &[folder.path().to_path_buf()], strict).await.is_err());
    }

    #[tokio::test]
    async fn a_resource_twice_in_one_batch_keeps_the_later_version_and_its_index_rows() {
        let folder = tempfile::tempdir().unwrap();
        let first = r#"{"resourceType":"Patient","id":"twice","gender":"female","name":[{"family":"Before"}]}"#;
        let second = r#"{"resourceType":"Patient","id":"twice","gender":"male","name":[{"family":"After"}]}"#;
        let other = r#"{"resourceType":"Patient","id":"other","gender":"female"}"#;
        std::fs::write(folder.path().join("patients.ndjson"), format!("{first}\n{other}\n{second}\n")).unwrap();
        let store = SqliteStore::open(&folder.path().join("import.db")).unwrap();
        let options = Options { env: Environment::Production, strict: true, batch_size: 100, progress: false };
        let summary = import(&store, &[folder.path().to_path_buf()], options).await.unwrap();
        assert_eq!((summary.counts.created, summary.counts.updated), (2, 1));

        let patient = ResourceType::parse("Patient").unwrap();
        let find = |query: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let criteria = Criteria::parse(&fhir::search::Registry::official(), "Patient", &pairs).unwrap();
            store.find(Environment::Production, &patient, criteria, 10)
        };
        let ids = |found: Vec<store::StoredResource>| found.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(find(&[("family", "after")]).await.unwrap()), ["twice"]);
        assert!(find(&[("family", "before")]).await.unwrap().is_empty(), "the first version's rows are gone");
        assert_eq!(ids(find(&[("gender", "female")]).await.unwrap()), ["other"]);
        let stored = store.read(Environment::Production, &patient, &fhir::id::LogicalId::parse("twice").unwrap()).await;
        assert_eq!(stored.unwrap().unwrap().version, 2);
    }
}
