//! Bundles posted to a FHIR base: `transaction` (all or nothing, one database transaction)
//! and `batch` (each entry on its own).
//!
//! Entries are parsed and validated here, off the async workers; the store runs them (in the
//! spec's order, resolving placeholders and conditional references inside its transaction);
//! `response.rs` writes the response Bundle in the request's entry order.
//!
//! Search entries (`GET [type]?…`) run as searches (`handlers::search`) after the store has
//! committed the rest, so they see the transaction's writes; a failed search is reported in
//! its own entry, since the writes before it are already committed.

mod entry;
mod response;

use fhir::outcome::{Issue, IssueType};
use fhir::search::Registry;
use serde_json::Value;
use store::{TransactionError, TransactionRequest};

use axum::http::StatusCode;

use crate::audit::Note;
use crate::authorize::Caller;
use crate::error::ApiError;
use crate::state::FhirContext;

use response::Answer;
pub(crate) use response::Detail;

/// What each entry of a transaction turned into, in entry order.
enum Slot {
    /// The next of the store's outcomes.
    Store,
    Search {
        type_name: String,
        query: Option<String>,
    },
}

/// Runs a posted Bundle and returns the response Bundle's JSON.
pub(crate) async fn process(
    context: &FhirContext,
    caller: &Caller,
    note: &Note,
    mut bundle: Value,
    detail: Detail,
) -> Result<String, ApiError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ApiError::bad_request("POST to the FHIR base takes a Bundle of type transaction or batch"));
    }
    let kind = bundle.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
    let entries = match bundle.get_mut("entry").map(Value::take) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(ApiError::bad_request("Bundle.entry must be an array")),
    };
    match kind.as_str() {
        "transaction" => transaction(context, caller, note, entries, detail).await,
        "batch" => batch(context, caller, note, entries, detail).await,
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::NotSupported,
            format!("a Bundle of type '{other}' cannot be processed; send a transaction or a batch"),
        )),
    }
}

async fn transaction(
    context: &FhirContext,
    caller: &Caller,
    note: &Note,
    entries: Vec<Value>,
    detail: Detail,
) -> Result<String, ApiError> {
    let base = context.base.to_string();
    let registry = context.store().registry(context.env);
    let (entries, slots) = tokio::task::spawn_blocking(move || parse_all(&registry, &base, entries))
        .await
        .map_err(ApiError::internal)??;
    let (request, warnings) = resolve(context, caller, entries).await?;
    // The event is written with the transaction; searches inside it run after, and are
    // noted in an event of their own.
    let outcomes = context.audited_store(note).transaction(context.env, request).await.map_err(entry_error)?;
    if !slots.iter().any(|slot| matches!(slot, Slot::Search { .. })) {
        note.written();
    }
    let mut outcomes = outcomes.into_iter().zip(warnings);
    let mut results = Vec::with_capacity(slots.len());
    for (index, slot) in slots.into_iter().enumerate() {
        results.push(match slot {
            Slot::Store => outcomes
                .next()
                .map(|(outcome, warnings)| Answer::Stored(outcome, warnings))
                .ok_or_else(|| ApiError::internal("the store returned fewer outcomes than entries")),
            Slot::Search { type_name, query } => search(context, caller, note, index, type_name, query).await,
        });
    }
    response::bundle(&context.base, "transaction-response", &results, detail)
}

/// An entry for the store, in entry order: ready, or a patch still to apply.
enum StoreEntry {
    Ready { index: usize, parsed: entry::ParsedEntry },
    Patch { index: usize, patch: entry::PatchEntry },
}

/// Parses and validates every entry; the first bad one fails the whole transaction.
fn parse_all(registry: &Registry, base: &str, entries: Vec<Value>) -> Result<(Vec<StoreEntry>, Vec<Slot>), ApiError> {
    let mut stored = Vec::with_capacity(entries.len());
    let mut slots = Vec::with_capacity(entries.len());
    for (index, mut entry) in entries.into_iter().enumerate() {
        match entry::parse(registry, base, index, &mut entry).map_err(|error| error.in_entry(index))? {
            entry::Request::Store(parsed) => {
                stored.push(StoreEntry::Ready { index, parsed });
                slots.push(Slot::Store);
            }
            entry::Request::Patch(patch) => {
                stored.push(StoreEntry::Patch { index, patch });
                slots.push(Slot::Store);
            }
            entry::Request::Search { type_name, query } => slots.push(Slot::Search { type_name, query }),
        }
    }
    Ok((stored, slots))
}

/// The store's request: patches applied to the versions they find now (the store then fails
/// the transaction if any of those versions changed before it runs).
/// The store's request for the entries, and each entry's warnings in the same order.
async fn resolve(
    context: &FhirContext,
    caller: &Caller,
    entries: Vec<StoreEntry>,
) -> Result<(TransactionRequest, Vec<Vec<Issue>>), ApiError> {
    let mut request = TransactionRequest::default();
    let mut warnings = Vec::with_capacity(entries.len());
    for entry in entries {
        let (index, parsed) = match entry {
            StoreEntry::Ready { index, parsed } => (index, parsed),
            StoreEntry::Patch { index, patch } => {
                (index, patched(context, patch).await.map_err(|error| error.in_entry(index))?)
            }
        };
        let parsed = admitted(context, caller, parsed).await.map_err(|error| error.in_entry(index))?;
        request.entries.push(parsed.entry);
        request.conditional_references.extend(parsed.conditional_references);
        warnings.push(parsed.warnings);
    }
    Ok((request, warnings))
}

/// A PATCH entry as the update of the patched current version.
async fn patched(context: &FhirContext, patch: entry::PatchEntry) -> Result<entry::ParsedEntry, ApiError> {
    let current = context
        .store()
        .read(context.env, &patch.resource_type, &patch.id)
        .await?
        .filter(|current| !current.deleted)
        .ok_or_else(|| ApiError::not_found(format!("{}/{} is not known", patch.resource_type, patch.id)))?;
    let (resource, expected, warnings) = crate::handlers::patch::apply(&current, patch.if_match, &patch.operations)?;
    Ok(patch.into_entry(resource, expected, warnings))
}

/// An entry the caller may run, its conditional criteria and references narrowed to what
/// the caller may see.
async fn admitted(
    context: &FhirContext,
    caller: &Caller,
    mut parsed: entry::ParsedEntry,
) -> Result<entry::ParsedEntry, ApiError> {
    caller.admit_operation(context, &mut parsed.entry.operation).await?;
    for reference in &mut parsed.conditional_references {
        caller.narrow_criteria(context, &reference.resource_type, &mut reference.criteria)?;
    }
    Ok(parsed)
}

/// A search entry: the searchset Bundle of its search.
async fn search(
    context: &FhirContext,
    caller: &Caller,
    note: &Note,
    index: usize,
    type_name: String,
    query: Option<String>,
) -> Result<Answer, ApiError> {
    crate::handlers::search::type_searchset(context, caller, note, &type_name, query.as_deref())
        .await
        .map(Answer::Searchset)
        .map_err(|error| error.in_entry(index))
}

async fn batch(
    context: &FhirContext,
    caller: &Caller,
    note: &Note,
    entries: Vec<Value>,
    detail: Detail,
) -> Result<String, ApiError> {
    let mut results = Vec::with_capacity(entries.len());
    for (index, mut entry) in entries.into_iter().enumerate() {
        results.push(batch_entry(context, caller, note, index, &mut entry).await);
    }
    response::bundle(&context.base, "batch-response", &results, detail)
}

/// One batch entry in its own database transaction.
async fn batch_entry(
    context: &FhirContext,
    caller: &Caller,
    note: &Note,
    index: usize,
    entry: &mut Value,
) -> Result<Answer, ApiError> {
    let parsed = match entry::parse(&context.store().registry(context.env), &context.base, index, entry)
        .map_err(|error| error.in_entry(index))?
    {
        entry::Request::Store(parsed) => parsed,
        entry::Request::Patch(patch) => patched(context, patch).await.map_err(|error| error.in_entry(index))?,
        entry::Request::Search { type_name, query } => {
            return search(context, caller, note, index, type_name, query).await;
        }
    };
    let parsed = admitted(context, caller, parsed).await.map_err(|error| error.in_entry(index))?;
    let request =
        TransactionRequest { entries: vec![parsed.entry], conditional_references: parsed.conditional_references };
    // Each entry's write records an event of its own; the batch as a whole is recorded after.
    let mut outcomes = context.audited_store(note).transaction(context.env, request).await.map_err(entry_error)?;
    outcomes
        .pop()
        .map(|outcome| Answer::Stored(outcome, parsed.warnings))
        .ok_or_else(|| ApiError::internal("the store returned no outcome for a batch entry"))
}

fn entry_error(error: TransactionError) -> ApiError {
    let api_error = ApiError::from(error.error);
    match error.entry {
        Some(index) => api_error.in_entry(index),
        None => api_error,
    }
}
