//! Runs one export job: pass after pass, page after page of the store's search, into NDJSON
//! files cut at the configured size. Each finished file is committed to the job record with
//! the position after it, so a job taken over from a crashed process writes the next file
//! again from there. Memory stays at one page of resources and one file buffer, whatever the
//! size of the export.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use fhir::search::{Clause, Registry, SearchQuery};
use fhir::summary::View;
use serde_json::Value;
use store::records::{self, Versioned};
use store::{SearchLimits, SearchRequest};
use time::OffsetDateTime;

use crate::files::FileWriter;
use crate::job::{ExportJob, Output, Position, State};
use crate::plan::{self, Pass};
use crate::{Exports, RunError};

/// Why a run stopped before the end.
pub(crate) enum Stop {
    /// The job was cancelled (or is gone).
    Cancelled,
    /// Another process holds the lease now.
    LeaseLost,
}

/// A file of the current pass being written, with what it holds.
struct Current {
    writer: FileWriter,
    name: String,
    count: u64,
}

/// The work state of one run.
struct Run<'a> {
    exports: &'a Exports,
    id: &'a str,
    job: ExportJob,
    registry: std::sync::Arc<Registry>,
    file: Option<Current>,
    /// References collected since the last commit (patient level).
    referenced: BTreeMap<String, BTreeSet<String>>,
    renewed: Instant,
}

impl Exports {
    /// Runs job `id` (whose lease this process holds) to its end, or until it is cancelled
    /// or the lease is lost.
    pub(crate) async fn run(&self, id: &str) -> Result<Option<Stop>, RunError> {
        let Some(current) = records::get::<ExportJob>(self.store.as_ref(), id).await? else {
            return Ok(Some(Stop::Cancelled));
        };
        let mut job = current.value;
        match job.state {
            State::Queued => job = self.set_running(id).await?,
            State::Running => {}
            _ => return Ok(None),
        }
        let registry = self.store.registry(job.environment);
        let mut run =
            Run { exports: self, id, job, registry, file: None, referenced: BTreeMap::new(), renewed: Instant::now() };
        if let Some(stop) = run.passes().await? {
            if let Some(file) = run.file.take() {
                file.writer.abort().await?;
            }
            return Ok(Some(stop));
        }
        self.complete(id, &run.job.notes).await?;
        Ok(None)
    }

    async fn set_running(&self, id: &str) -> Result<ExportJob, RunError> {
        let updated = records::modify::<ExportJob>(self.store.as_ref(), id, "system", |job| {
            if job.state == State::Queued {
                job.state = State::Running;
            }
        })
        .await?;
        Ok(updated.value)
    }

    /// Writes the error file (the job's notes as OperationOutcomes) and marks the job done.
    async fn complete(&self, id: &str, notes: &[String]) -> Result<(), RunError> {
        let mut errors = Vec::new();
        if !notes.is_empty() {
            let name = "OperationOutcome-errors.ndjson";
            let mut writer = self.files.create(id, name).await?;
            for note in notes {
                let outcome = serde_json::json!({
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "warning", "code": "forbidden", "diagnostics": note}]
                });
                writer.line(outcome.to_string().as_bytes()).await?;
            }
            let bytes = writer.finish().await?;
            let count = notes.len() as u64;
            errors.push(Output { resource_type: "OperationOutcome".to_owned(), name: name.to_owned(), count, bytes });
        }
        let expires = OffsetDateTime::now_utc() + self.settings.retention;
        records::modify::<ExportJob>(self.store.as_ref(), id, "system", |job| {
            if job.state == State::Running {
                job.state = State::Complete;
                job.errors = errors.clone();
                job.expires = Some(fhir::instant::format(expires));
            }
        })
        .await?;
        Ok(())
    }
}

impl Run<'_> {
    async fn passes(&mut self) -> Result<Option<Stop>, RunError> {
        while self.job.position.pass < self.job.types.len() {
            let resource_type = self.job.types[self.job.position.pass].clone();
            let stop = match plan::pass(&self.registry, &self.job, &resource_type) {
                Pass::All => self.search_pass(&resource_type, None).await?,
                Pass::Compartment(clause) => self.search_pass(&resource_type, Some(clause)).await?,
                Pass::Referenced => self.referenced_pass(&resource_type).await?,
                Pass::Empty => None,
            };
            if stop.is_some() {
                return Ok(stop);
            }
            let next = Position { pass: self.job.position.pass + 1, cursor: None, file: self.job.position.file };
            if let Some(stop) = self.commit(next).await? {
                return Ok(Some(stop));
            }
            if self.job.state != State::Running {
                return Ok(Some(Stop::Cancelled));
            }
        }
        Ok(None)
    }

    /// Pages through the type's search from the committed cursor.
    async fn search_pass(&mut self, resource_type: &str, extra: Option<Clause>) -> Result<Option<Stop>, RunError> {
        let mut cursor = self.job.position.cursor.clone();
        // Parsed once per pass; each page only moves the cursor.
        let pass = plan::query(&self.registry, &self.job, resource_type, extra, None).map_err(RunError::Plan)?;
        loop {
            if let Some(stop) = self.checkpoint().await? {
                return Ok(Some(stop));
            }
            let query = SearchQuery { cursor: cursor.clone(), ..pass.clone() };
            let page = self.search(resource_type, query).await?;
            for resource in &page.matches {
                self.write(resource_type, &resource.body).await?;
            }
            cursor = page.next;
            let Some(next) = &cursor else { return Ok(None) };
            if self.file_full() {
                let position = Position { pass: self.job.position.pass, cursor: Some(next.clone()), file: 0 };
                if let Some(stop) = self.commit(position).await? {
                    return Ok(Some(stop));
                }
            }
        }
    }

    /// Exports the referenced resources of the type collected from the compartments, a chunk
    /// of ids at a time; the cursor is the last id done.
    async fn referenced_pass(&mut self, resource_type: &str) -> Result<Option<Stop>, RunError> {
        let ids = self.job.referenced.get(resource_type).cloned().unwrap_or_default();
        let mut after = self.job.position.cursor.clone();
        // Parsed once per pass; each chunk only adds its ids.
        let pass = plan::query(&self.registry, &self.job, resource_type, None, None).map_err(RunError::Plan)?;
        loop {
            if let Some(stop) = self.checkpoint().await? {
                return Ok(Some(stop));
            }
            let chunk = plan::referenced_chunk(&ids, after.as_deref(), self.exports.settings.page);
            let Some(last) = chunk.last().cloned() else { return Ok(None) };
            let mut query = pass.clone();
            query.clauses.push(Clause::Id { ids: chunk, negate: false });
            let page = self.search(resource_type, query).await?;
            for resource in &page.matches {
                self.write(resource_type, &resource.body).await?;
            }
            after = Some(last.clone());
            if self.file_full() {
                let position = Position { pass: self.job.position.pass, cursor: Some(last), file: 0 };
                if let Some(stop) = self.commit(position).await? {
                    return Ok(Some(stop));
                }
            }
        }
    }

    async fn search(
        &self,
        resource_type: &str,
        query: fhir::search::SearchQuery,
    ) -> Result<store::SearchPage, RunError> {
        let resource_type = fhir::id::ResourceType::parse(resource_type)
            .ok_or_else(|| RunError::Plan(format!("{resource_type} is not a resource type")))?;
        // A page never outlasts a third of the lease, so the lease is renewed before it runs out.
        let time = self.exports.settings.page_time.min(self.exports.settings.lease / 3);
        let limits = SearchLimits { time, ..SearchLimits::default() };
        let request = SearchRequest { types: vec![resource_type], query, count: self.exports.settings.page, limits };
        Ok(self.exports.store.search(self.job.environment, request).await?)
    }

    fn file_full(&self) -> bool {
        self.file.as_ref().is_some_and(|file| file.writer.bytes() >= self.exports.settings.max_file_bytes)
    }

    /// Writes one resource (shaped by `_elements`, its references collected when the export
    /// adds referenced resources) to the current file, opening one if needed.
    async fn write(&mut self, resource_type: &str, body: &str) -> Result<(), RunError> {
        let shaped = self.shape(resource_type, body);
        if self.file.is_none() {
            let name = format!("{resource_type}-{}.ndjson", self.job.position.file);
            let writer = self.exports.files.create(self.id, &name).await?;
            self.file = Some(Current { writer, name, count: 0 });
        }
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        file.writer.line(shaped.as_deref().unwrap_or(body).as_bytes()).await?;
        file.count += 1;
        self.exports.written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The body to write when it differs from the stored one (`_elements`), after noting
    /// its references.
    fn shape(&mut self, resource_type: &str, body: &str) -> Option<String> {
        let collect = plan::REFERENCED_TYPES.iter().any(|wanted| plan::collects(&self.job, wanted))
            && !plan::REFERENCED_TYPES.contains(&resource_type);
        let elements = self.job.elements.as_ref().map(|elements| elements_of(elements, resource_type));
        if !collect && elements.is_none() {
            return None;
        }
        let mut value: Value = serde_json::from_str(body).ok()?;
        if collect {
            for reference in fhir::references::references(&value) {
                let Some((target, id)) = reference.split_once('/') else { continue };
                if plan::collects(&self.job, target) && fhir::id::is_valid_id(id) {
                    self.referenced.entry(target.to_owned()).or_default().insert(id.to_owned());
                }
            }
        }
        let elements = elements?;
        fhir::summary::apply(&mut value, View::Elements(&elements));
        Some(value.to_string())
    }

    /// Once a third of the lease has passed: stops when the job was cancelled or the lease
    /// went to another process, else renews the lease. (Reading the job's record is not free:
    /// it holds every output and collected reference, so it is not read every page.)
    async fn checkpoint(&mut self) -> Result<Option<Stop>, RunError> {
        if self.renewed.elapsed() < self.exports.settings.lease / 3 {
            return Ok(None);
        }
        match records::get::<ExportJob>(self.exports.store.as_ref(), self.id).await? {
            Some(current) if current.value.state == State::Running => {}
            _ => return Ok(Some(Stop::Cancelled)),
        }
        self.renew().await
    }

    /// Renews the lease; [`Stop::LeaseLost`] when another process holds it.
    async fn renew(&mut self) -> Result<Option<Stop>, RunError> {
        if !self.exports.claim(self.id).await? {
            return Ok(Some(Stop::LeaseLost));
        }
        self.renewed = Instant::now();
        Ok(None)
    }

    /// Finishes the current file and commits it, the references collected and `position`
    /// to the job record (the file number advances past a written file). The lease is renewed
    /// first: a process that lost it (it stalled past the lease) commits nothing.
    async fn commit(&mut self, mut position: Position) -> Result<Option<Stop>, RunError> {
        if let Some(stop) = self.renew().await? {
            return Ok(Some(stop));
        }
        position.file = self.job.position.file;
        let mut output = None;
        if let Some(file) = self.file.take() {
            let bytes = file.writer.finish().await?;
            position.file += 1;
            output = Some(Output {
                resource_type: file.name.rsplit_once('-').map_or(String::new(), |(kind, _)| kind.to_owned()),
                name: file.name,
                count: file.count,
                bytes,
            });
        }
        let referenced = std::mem::take(&mut self.referenced);
        let updated: Versioned<ExportJob> =
            records::modify::<ExportJob>(self.exports.store.as_ref(), self.id, "system", |job| {
                if job.state != State::Running {
                    return;
                }
                if let Some(output) = &output {
                    job.exported += output.count;
                    job.outputs.push(output.clone());
                }
                for (kind, ids) in &referenced {
                    job.referenced.entry(kind.clone()).or_default().extend(ids.iter().cloned());
                }
                job.position = position.clone();
            })
            .await?;
        self.job = updated.value;
        Ok(None)
    }
}

/// The elements `_elements` keeps on a `resource_type`: the unqualified ones and those
/// qualified with the type (`Patient.name`).
fn elements_of(elements: &[String], resource_type: &str) -> Vec<String> {
    elements
        .iter()
        .filter_map(|element| match element.split_once('.') {
            Some((kind, name)) => (kind == resource_type).then(|| name.to_owned()),
            None => Some(element.clone()),
        })
        .collect()
}
