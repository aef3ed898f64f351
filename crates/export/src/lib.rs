//! Bulk Data `$export` without HTTP: export jobs kept as platform records, and the runner
//! every server process starts, which claims queued (or abandoned) jobs with a lease in the
//! store and streams their resources into NDJSON files.
//!
//! Several processes sharing a database split the jobs: a job is worked on by the holder of
//! its lease, renewed while it runs; when a process dies its lease runs out and another takes
//! the job over from its last committed file ([`job::Position`]). Files are kept until the
//! job's retention time passes, then removed with the job's folder.
//!
//! Layout: `job.rs` the record, `plan.rs` the searches a job runs, `runner.rs` one job's
//! run, `files.rs` the folder the files live in; this file the service and its loop.

pub mod files;
pub mod job;
pub mod plan;
mod runner;

use std::sync::Arc;
use std::time::Duration;

use store::Store;
use store::records::{self, Versioned};
use time::OffsetDateTime;

pub use files::{Files, Location};
pub use job::{ExportJob, Level, Output, Position, State};

/// How exports are run and kept.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where files are written.
    pub location: Location,
    /// A file is closed, and the next one begun, once it holds this many bytes.
    pub max_file_bytes: u64,
    /// How long a complete export's files are kept.
    pub retention: Duration,
    /// How long a job's lease lasts without renewal: a dead process's job waits this long
    /// before another takes it over.
    pub lease: Duration,
    /// How often an idle runner looks for work (a kick-off in this process wakes it at once).
    pub poll: Duration,
    /// Resources one search page reads (and one file commit holds at least).
    pub page: usize,
    /// The time limit of one page's search (at most a third of `lease`).
    pub page_time: Duration,
}

impl Settings {
    /// Defaults with files at `location`.
    pub fn new(location: Location) -> Settings {
        Settings {
            location,
            max_file_bytes: 256 * 1024 * 1024,
            retention: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(2),
            page: 1000,
            page_time: Duration::from_secs(10),
        }
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("export file: {0}")]
    Files(#[from] object_store::Error),
    #[error("{0}")]
    Plan(String),
}

/// The export service of one process: starts, finds and cancels jobs, and runs them.
pub struct Exports {
    store: Arc<dyn Store>,
    files: Files,
    settings: Settings,
    /// This process's name on the leases it holds.
    owner: String,
    wake: tokio::sync::Notify,
    written: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Exports {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Exports").field("settings", &self.settings).field("owner", &self.owner).finish()
    }
}

impl Exports {
    /// The service over `store`; fails when the file location cannot be used (an S3
    /// bucket without credentials or region, a folder that cannot be created).
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Result<Exports, RunError> {
        Ok(Exports {
            store,
            files: Files::open(&settings.location)?,
            settings,
            owner: uuid::Uuid::new_v4().simple().to_string(),
            wake: tokio::sync::Notify::new(),
            written: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The folder files are served from.
    pub fn files(&self) -> &Files {
        &self.files
    }

    /// Records a new job and wakes this process's runner; returns the job's id.
    pub async fn start(&self, job: &ExportJob, by: &str) -> Result<String, store::Error> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        records::create(self.store.as_ref(), &id, job, by).await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// The job at `id`.
    pub async fn get(&self, id: &str) -> Result<Option<Versioned<ExportJob>>, store::Error> {
        records::get(self.store.as_ref(), id).await
    }

    /// Cancels the job at `id`: the runner stops at its next page and the files go. True
    /// when the job was live (queued, running or complete).
    pub async fn cancel(&self, id: &str, by: &str) -> Result<bool, store::Error> {
        let mut cancelled = false;
        let result = records::modify::<ExportJob>(self.store.as_ref(), id, by, |job| {
            cancelled = matches!(job.state, State::Queued | State::Running | State::Complete);
            if cancelled {
                job.state = State::Cancelled;
            }
        })
        .await;
        match result {
            Ok(_) => {}
            Err(store::Error::RecordNotFound { .. }) => return Ok(false),
            Err(error) => return Err(error),
        }
        if cancelled {
            self.wake.notify_one();
        }
        Ok(cancelled)
    }

    /// Runs jobs until the process ends: waits for a kick-off or the poll interval, then
    /// works through what is there.
    pub async fn run_forever(self: Arc<Self>) {
        loop {
            if let Err(error) = self.work().await {
                tracing::warn!(%error, "export runner");
            }
            let _ = tokio::time::timeout(self.settings.poll, self.wake.notified()).await;
        }
    }

    /// One round: removes the files of cancelled and expired jobs, then runs every queued
    /// job, and every running one whose lease is free (its process died), to its end.
    pub async fn work(&self) -> Result<(), RunError> {
        self.sweep().await?;
        for state in [State::Queued, State::Running] {
            for job in records::find::<ExportJob>(self.store.as_ref(), "state", state.as_str()).await? {
                if !self.claim(&job.id).await? {
                    continue;
                }
                let outcome = self.run(&job.id).await;
                if let Err(error) = &outcome {
                    tracing::warn!(job = %job.id, %error, "export failed");
                    self.fail(&job.id, error).await?;
                }
                if !matches!(outcome, Ok(Some(runner::Stop::LeaseLost))) {
                    self.store.release(&lease_name(&job.id), &self.owner).await?;
                }
            }
        }
        Ok(())
    }

    /// Runs job `id` alone, in the foreground (`ignis export`): takes its lease, runs it to
    /// its end and gives the lease up. The job's state after the run.
    pub async fn run_one(&self, id: &str) -> Result<State, RunError> {
        if !self.claim(id).await? {
            return Err(RunError::Plan(format!("the export {id} is being run by another process")));
        }
        let outcome = self.run(id).await;
        if let Err(error) = &outcome {
            self.fail(id, error).await?;
        }
        self.store.release(&lease_name(id), &self.owner).await?;
        outcome?;
        Ok(self.get(id).await?.map_or(State::Expired, |job| job.value.state))
    }

    /// Resources this process has written to export files since it started.
    pub fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes or renews this process's lease on job `id`.
    async fn claim(&self, id: &str) -> Result<bool, store::Error> {
        let now = OffsetDateTime::now_utc();
        self.store.claim(&lease_name(id), &self.owner, now + self.settings.lease, now).await
    }

    async fn fail(&self, id: &str, error: &RunError) -> Result<(), RunError> {
        let reason = match error {
            RunError::Plan(reason) => reason.clone(),
            _ => "the export could not be written; the server log has the cause".to_owned(),
        };
        records::modify::<ExportJob>(self.store.as_ref(), id, "system", |job| {
            if job.state == State::Running {
                job.state = State::Failed;
                job.failure = Some(reason.clone());
            }
        })
        .await?;
        self.files.remove(id).await?;
        Ok(())
    }

    /// Removes the files of cancelled jobs and of complete jobs past their retention.
    async fn sweep(&self) -> Result<(), RunError> {
        let now = OffsetDateTime::now_utc();
        for job in records::find::<ExportJob>(self.store.as_ref(), "state", State::Complete.as_str()).await? {
            let expired = job
                .value
                .expires
                .as_deref()
                .and_then(fhir::instant::parse_lower_bound)
                .is_some_and(|expires| expires <= now);
            if expired {
                self.files.remove(&job.id).await?;
                records::modify::<ExportJob>(self.store.as_ref(), &job.id, "system", |job| {
                    if job.state == State::Complete {
                        job.state = State::Expired;
                    }
                })
                .await?;
            }
        }
        for job in records::find::<ExportJob>(self.store.as_ref(), "state", State::Cancelled.as_str()).await? {
            // A runner elsewhere may still be writing: only the lease holder removes.
            if self.claim(&job.id).await? {
                self.files.remove(&job.id).await?;
                records::modify::<ExportJob>(self.store.as_ref(), &job.id, "system", |job| {
                    if job.state == State::Cancelled {
                        job.state = State::Expired;
                    }
                })
                .await?;
                self.store.release(&lease_name(&job.id), &self.owner).await?;
            }
        }
        Ok(())
    }
}

fn lease_name(job: &str) -> String {
    format!("export:{job}")
}
