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
mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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
    /// Draw a progress bar on stderr.
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
    let summary = import(store.as_ref(), &args.paths, options).await?;
    print_summary(&summary, options.env);
    if !summary.problems.is_empty() {
        anyhow::bail!("{} resources or files could not be imported (listed above)", summary.problems.len());
    }
    Ok(())
}

/// Imports everything under `paths` into `store`.
pub(crate) async fn import(store: &dyn Store, paths: &[PathBuf], options: Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let files = source::files(paths)?;
    let (sender, mut receiver) = mpsc::channel::<Parsed>(16);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || produce(files, &sender, &stop))
    };
    let progress = progress_bar(options.progress);
    let mut summary = Summary::default();
    let mut pending: Vec<ImportResource> = Vec::with_capacity(options.batch_size);
    let mut result = Ok(());
    while let Some(parsed) = receiver.recv().await {
        if let Err(error) = take(&mut summary, &mut pending, parsed, &progress, options.strict) {
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
    strict: bool,
) -> anyhow::Result<()> {
    summary.documents += 1;
    for problem in parsed.problems {
        progress.suspend(|| eprintln!("{}: {}", problem.location, problem.message));
        summary.problems.push(problem);
        progress.set_message(format!("{} errors", summary.problems.len()));
    }
    if strict && let Some(problem) = summary.problems.first() {
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
    let counts = store.import(env, batch).await?;
    summary.counts.add(counts);
    progress.set_position(summary.counts.total() as u64);
    Ok(())
}

/// Reads every document of `files` and parses them on worker threads, sending the results
/// until `stop` is set.
fn produce(files: Vec<PathBuf>, parsed: &mpsc::Sender<Parsed>, stop: &AtomicBool) {
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let (documents, queue) = std::sync::mpsc::sync_channel::<source::Document>(workers * 2);
    let queue = Mutex::new(queue);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                // Workers drain the queue even after a stop, so the reader never blocks.
                while let Some(document) = queue.lock().ok().and_then(|queue| queue.recv().ok()) {
                    if !stop.load(Ordering::Relaxed) && parsed.blocking_send(parse::parse(&document)).is_err() {
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
