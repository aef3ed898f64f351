//! An export job: what a kick-off asked for, as the server resolved it, and how far the
//! work has come. A platform record (`export-job`), so every server process sharing the
//! database sees it and a restarted one resumes it from its last committed file.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use store::Environment;
use store::records::{Kind, RecordKey};

/// Which resources an export covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "level")]
pub enum Level {
    /// `[base]/$export`: every resource of the types.
    System,
    /// `[base]/Patient/$export` and `[base]/Group/[id]/$export`: the compartments of these
    /// patients (of every patient when `None`), plus the Organization, Practitioner,
    /// Location and Medication resources they reference.
    Patients { patients: Option<Vec<String>> },
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Waiting for a runner.
    Queued,
    /// A runner works on it (or did, and its lease will run out).
    Running,
    /// Every file is written; they can be fetched until the job expires.
    Complete,
    /// The client cancelled it; the next sweep removes its files (and marks it expired).
    Cancelled,
    /// It could not be finished; `failure` says why.
    Failed,
    /// Its files were removed: after its retention time, or after it was cancelled.
    Expired,
}

impl State {
    /// The lookup key value runners and the sweeper find jobs by.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Complete => "complete",
            State::Cancelled => "cancelled",
            State::Failed => "failed",
            State::Expired => "expired",
        }
    }
}

/// One written file of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The resource type of its lines (`OperationOutcome` for the error file).
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The file's name in the job's folder.
    pub name: String,
    pub count: u64,
    pub bytes: u64,
}

/// How far a job has come: the pass it is in, the search cursor within it, and the next
/// file's sequence number. Committed with each finished file, so a resumed job writes the
/// next file again from there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub pass: usize,
    pub cursor: Option<String>,
    pub file: u32,
}

/// A Bulk Data export job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportJob {
    /// The partition exported: `production` or `sandbox`.
    pub environment: Environment,
    /// The client that started it: the only one that may poll, fetch and cancel.
    pub client_id: String,
    /// The kick-off request URL, as the manifest repeats it.
    pub request: String,
    /// The instant the export reflects (`transactionTime`): nothing written later is in it.
    pub transaction_time: String,
    pub level: Level,
    /// The types exported, in order.
    pub types: Vec<String>,
    /// `_since`: only resources last updated at or after it.
    pub since: Option<String>,
    /// Per type, alternative search queries (`_typeFilter`s); a resource is exported when it
    /// matches any of them, or every resource when a type has none.
    pub type_filters: BTreeMap<String, Vec<String>>,
    /// Per type, alternative queries the caller's scopes confine it to (granular scopes);
    /// a resource must also match one of them.
    pub scope_filters: BTreeMap<String, Vec<String>>,
    /// `_elements`: the elements to keep (`Type.element` or `element`); all when `None`.
    pub elements: Option<Vec<String>>,
    /// Issues for the error file (types left out, for example), as OperationOutcome texts.
    pub notes: Vec<String>,
    pub state: State,
    pub failure: Option<String>,
    pub position: Position,
    /// Resources exported so far.
    pub exported: u64,
    pub outputs: Vec<Output>,
    pub errors: Vec<Output>,
    /// Referenced resources to export after the compartments, by type (patient-level).
    pub referenced: BTreeMap<String, BTreeSet<String>>,
    /// When a complete job's files are removed (RFC 3339).
    pub expires: Option<String>,
}

impl Kind for ExportJob {
    const KIND: &'static str = "export-job";

    fn keys(&self) -> Vec<RecordKey> {
        vec![RecordKey::shared("state", self.state.as_str()), RecordKey::shared("client", self.client_id.clone())]
    }
}

impl ExportJob {
    /// A queued job of `client_id` exporting `types` of `env` at `level`, reflecting the
    /// data as of now, with no filter; the caller sets the rest.
    pub fn queued(env: Environment, client_id: &str, request: String, level: Level, types: Vec<String>) -> ExportJob {
        ExportJob {
            environment: env,
            client_id: client_id.to_owned(),
            request,
            transaction_time: fhir::instant::format(time::OffsetDateTime::now_utc()),
            level,
            types,
            since: None,
            type_filters: BTreeMap::new(),
            scope_filters: BTreeMap::new(),
            elements: None,
            notes: Vec::new(),
            state: State::Queued,
            failure: None,
            position: Position::default(),
            exported: 0,
            outputs: Vec::new(),
            errors: Vec::new(),
            referenced: BTreeMap::new(),
            expires: None,
        }
    }

    /// A short account of the progress for `X-Progress`.
    pub fn progress(&self) -> String {
        match self.state {
            State::Queued => "queued".to_owned(),
            _ => format!(
                "{} resources exported, type {} of {}",
                self.exported,
                (self.position.pass + 1).min(self.types.len().max(1)),
                self.types.len()
            ),
        }
    }
}
