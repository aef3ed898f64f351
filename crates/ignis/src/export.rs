//! `ignis export`: a Bulk Data export of the database from the command line, run by the same
//! job runner as `$export` (the job is a record like a kick-off's, held under this process's
//! lease while it runs), with a progress bar, and a summary of the files written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use export::{ExportJob, Exports, Level, State};
use fhir::id::{LogicalId, ResourceType};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use store::{Environment, Store};

use crate::cli::ExportArgs;
use crate::serve::open_store;

pub(crate) async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let store = open_store(&args.storage)?;
    let env: Environment = args.environment.into();
    let job = job(store.as_ref(), env, &args).await?;
    let folder = args.output.clone().unwrap_or_else(|| args.storage.data_dir.join("exports"));
    let mut settings = export::Settings::new(export::Location::Folder(folder.clone()));
    settings.max_file_bytes = args.file_bytes.max(1);
    let exports = Arc::new(Exports::new(Arc::clone(&store), settings)?);
    let id = exports.start(&job, "ignis export").await?;
    let progress = progress_bar();
    let ticker = tokio::spawn({
        let (exports, progress) = (Arc::clone(&exports), progress.clone());
        async move {
            loop {
                progress.set_position(exports.written());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let started = Instant::now();
    let state = exports.run_one(&id).await;
    ticker.abort();
    progress.finish_and_clear();
    let state = state?;
    let finished = exports.get(&id).await?.context("the export's record is gone")?.value;
    if state != State::Complete {
        bail!("the export ended {}: {}", state.as_str(), finished.failure.unwrap_or_default());
    }
    print_summary(&finished, &folder.join(&id), started.elapsed());
    Ok(())
}

/// The job the flags describe, checked as a kick-off's parameters are.
async fn job(store: &dyn Store, env: Environment, args: &ExportArgs) -> anyhow::Result<ExportJob> {
    let registry = store.registry(env);
    let (level, candidates) = match (&args.group, args.patients) {
        (Some(group), _) => (Level::Patients { patients: Some(group_members(store, env, group).await?) }, true),
        (None, true) => (Level::Patients { patients: None }, true),
        (None, false) => (Level::System, false),
    };
    for name in &args.types {
        if ResourceType::parse(name).is_none() {
            bail!("--type: '{name}' is not a resource type");
        }
    }
    let asked = (!args.types.is_empty()).then_some(args.types.as_slice());
    let types = export::plan::candidate_types(&registry, asked, candidates);
    if let Level::Patients { patients: Some(patients) } = &level {
        export::plan::check_patients(patients.len()).map_err(|problem| anyhow::anyhow!("--group: {problem}"))?;
    }
    let request = format!("ignis export {}", std::env::args().skip(2).collect::<Vec<_>>().join(" "));
    let mut job = ExportJob::queued(env, "ignis export", request, level, types);
    if let Some(since) = &args.since {
        job.since = Some(export::plan::since(since).map_err(|problem| anyhow::anyhow!("--since {problem}"))?);
    }
    for filter in &args.type_filters {
        let (resource_type, query) = export::plan::type_filter(&registry, filter)
            .map_err(|problem| anyhow::anyhow!("--type-filter: {problem}"))?;
        job.type_filters.entry(resource_type).or_default().push(query);
    }
    Ok(job)
}

async fn group_members(store: &dyn Store, env: Environment, id: &str) -> anyhow::Result<Vec<String>> {
    let logical = LogicalId::parse(id).with_context(|| format!("--group '{id}' is not a valid id"))?;
    export::plan::read_group(store, env, &logical)
        .await?
        .with_context(|| format!("Group/{id} is not in the {} partition", env.as_str()))
}

fn progress_bar() -> ProgressBar {
    let progress = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} {elapsed} {human_pos} resources exported ({per_sec})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    progress.set_style(style);
    progress.enable_steady_tick(Duration::from_millis(200));
    progress
}

#[allow(clippy::print_stdout)] // The summary is the command's output.
fn print_summary(job: &ExportJob, folder: &std::path::Path, elapsed: Duration) {
    let bytes: u64 = job.outputs.iter().map(|output| output.bytes).sum();
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    println!(
        "exported {} resources ({:.1} MB) in {} files to {} in {seconds:.2} s ({:.0} resources/s, {:.1} MB/s){}",
        job.exported,
        bytes as f64 / 1e6,
        job.outputs.len(),
        folder.display(),
        job.exported as f64 / seconds,
        bytes as f64 / 1e6 / seconds,
        peak_memory().map(|peak| format!("; peak memory {:.0} MiB", peak as f64 / 1048576.0)).unwrap_or_default(),
    );
    for output in job.outputs.iter().chain(&job.errors) {
        println!("  {} {} ({} resources)", output.name, output.resource_type, output.count);
    }
}

/// This process's peak resident memory in bytes (Linux's `VmHWM`); `None` elsewhere.
pub(crate) fn peak_memory() -> Option<u64> {
    peak_memory_of("self")
}

/// The peak resident memory of process `pid` (`self` for this one), from `/proc`.
pub(crate) fn peak_memory_of(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}
