//! The `transaction-response` and `batch-response` Bundles: one entry per request entry, in
//! the request's order, with `status`, `location`, `etag` and `lastModified`; stored bodies
//! are embedded as raw JSON.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use store::{EntryOutcome, StoredResource, WriteKind};

use fhir::outcome::Issue;

use crate::error::ApiError;

/// What one entry produced.
pub(crate) enum Answer {
    /// The outcome of an interaction the store ran, and the validation's warnings on its
    /// resource.
    Stored(EntryOutcome, Vec<Issue>),
    /// A search's `searchset` Bundle, as JSON text.
    Searchset(String),
}

/// What each response entry carries besides its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Status, location and version only (the default).
    Minimal,
    /// Also the written resource (`Prefer: return=representation`).
    Representation,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bundle<'a> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    bundle_type: &'static str,
    entry: Vec<Entry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a RawValue>,
    response: Response,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Value>,
}

/// The response Bundle of type `bundle_type` for `results`, one per request entry.
pub(crate) fn bundle(
    base: &str,
    bundle_type: &'static str,
    results: &[Result<Answer, ApiError>],
    detail: Detail,
) -> Result<String, ApiError> {
    let entry = results
        .iter()
        .map(|result| match result {
            Ok(Answer::Stored(outcome, warnings)) => {
                let mut entry = entry(base, outcome, detail)?;
                if !warnings.is_empty() {
                    entry.response.outcome = Some(fhir::outcome::operation_outcome(warnings));
                }
                Ok(entry)
            }
            Ok(Answer::Searchset(bundle)) => searchset(bundle),
            Err(error) => Ok(failed(error)),
        })
        .collect::<Result<_, _>>()?;
    serde_json::to_string(&Bundle { resource_type: "Bundle", bundle_type, entry }).map_err(ApiError::internal)
}

fn entry<'a>(base: &str, outcome: &'a EntryOutcome, detail: Detail) -> Result<Entry<'a>, ApiError> {
    Ok(match outcome {
        EntryOutcome::Written(written) => {
            let status = if written.kind == WriteKind::Created { "201 Created" } else { "200 OK" };
            let body = if detail == Detail::Representation { Some(raw(&written.resource)?) } else { None };
            versioned(base, &written.resource, status, body, true)
        }
        EntryOutcome::Read(resource) => versioned(base, resource, "200 OK", Some(raw(resource)?), false),
        EntryOutcome::Deleted { version } => Entry {
            full_url: None,
            resource: None,
            response: Response {
                status: "204 No Content".into(),
                location: None,
                etag: version.map(|version| format!("W/\"{version}\"")),
                last_modified: None,
                outcome: None,
            },
        },
        EntryOutcome::ConditionallyDeleted { .. } => Entry {
            full_url: None,
            resource: None,
            response: Response {
                status: "204 No Content".into(),
                location: None,
                etag: None,
                last_modified: None,
                outcome: None,
            },
        },
    })
}

fn versioned<'a>(
    base: &str,
    resource: &StoredResource,
    status: &str,
    body: Option<&'a RawValue>,
    location: bool,
) -> Entry<'a> {
    let path = format!("{}/{}", resource.resource_type, resource.id);
    Entry {
        full_url: Some(format!("{base}/{path}")),
        resource: body,
        response: Response {
            status: status.into(),
            location: location.then(|| format!("{path}/_history/{}", resource.version)),
            etag: Some(format!("W/\"{}\"", resource.version)),
            last_modified: Some(fhir::instant::format(resource.last_updated)),
            outcome: None,
        },
    }
}

fn searchset(bundle: &str) -> Result<Entry<'_>, ApiError> {
    let response = Response { status: "200 OK".into(), location: None, etag: None, last_modified: None, outcome: None };
    Ok(Entry { full_url: None, resource: Some(serde_json::from_str(bundle).map_err(ApiError::internal)?), response })
}

fn failed(error: &ApiError) -> Entry<'static> {
    let status = error.status();
    Entry {
        full_url: None,
        resource: None,
        response: Response {
            status: format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")).trim_end().to_owned(),
            location: None,
            etag: None,
            last_modified: None,
            outcome: Some(error.outcome()),
        },
    }
}

fn raw(resource: &StoredResource) -> Result<&RawValue, ApiError> {
    serde_json::from_str(&resource.body).map_err(ApiError::internal)
}
