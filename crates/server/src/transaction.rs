//! Bundles posted to a FHIR base: `transaction` (all or nothing, one database transaction)
//! and `batch` (each entry on its own).
//!
//! Entries are parsed and validated here, off the async workers; the store runs them (in the
//! spec's order, resolving placeholders and conditional references inside its transaction);
//! `response.rs` writes the response Bundle in the request's entry order.

mod entry;
mod response;

use fhir::outcome::IssueType;
use serde_json::Value;
use store::{EntryOutcome, TransactionError, TransactionRequest};

use axum::http::StatusCode;

use crate::error::ApiError;
use crate::state::FhirContext;

pub(crate) use response::Detail;

/// Runs a posted Bundle and returns the response Bundle's JSON.
pub(crate) async fn process(context: &FhirContext, mut bundle: Value, detail: Detail) -> Result<String, ApiError> {
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
        "transaction" => transaction(context, entries, detail).await,
        "batch" => batch(context, entries, detail).await,
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::NotSupported,
            format!("a Bundle of type '{other}' cannot be processed; send a transaction or a batch"),
        )),
    }
}

async fn transaction(context: &FhirContext, entries: Vec<Value>, detail: Detail) -> Result<String, ApiError> {
    let base = context.base.to_string();
    let request =
        tokio::task::spawn_blocking(move || parse_all(&base, entries)).await.map_err(ApiError::internal)??;
    let outcomes = context.store().transaction(context.env, request).await.map_err(entry_error)?;
    let results: Vec<Result<EntryOutcome, ApiError>> = outcomes.into_iter().map(Ok).collect();
    response::bundle(&context.base, "transaction-response", &results, detail)
}

/// Parses and validates every entry; the first bad one fails the whole transaction.
fn parse_all(base: &str, entries: Vec<Value>) -> Result<TransactionRequest, ApiError> {
    let mut request = TransactionRequest::default();
    for (index, mut entry) in entries.into_iter().enumerate() {
        let parsed = entry::parse(base, index, &mut entry).map_err(|error| error.in_entry(index))?;
        request.entries.push(parsed.entry);
        request.conditional_references.extend(parsed.conditional_references);
    }
    Ok(request)
}

async fn batch(context: &FhirContext, entries: Vec<Value>, detail: Detail) -> Result<String, ApiError> {
    let mut results = Vec::with_capacity(entries.len());
    for (index, mut entry) in entries.into_iter().enumerate() {
        results.push(batch_entry(context, index, &mut entry).await);
    }
    response::bundle(&context.base, "batch-response", &results, detail)
}

/// One batch entry in its own database transaction.
async fn batch_entry(context: &FhirContext, index: usize, entry: &mut Value) -> Result<EntryOutcome, ApiError> {
    let parsed = entry::parse(&context.base, index, entry).map_err(|error| error.in_entry(index))?;
    let request =
        TransactionRequest { entries: vec![parsed.entry], conditional_references: parsed.conditional_references };
    let mut outcomes = context.store().transaction(context.env, request).await.map_err(entry_error)?;
    outcomes.pop().ok_or_else(|| ApiError::internal("the store returned no outcome for a batch entry"))
}

fn entry_error(error: TransactionError) -> ApiError {
    let api_error = ApiError::from(error.error);
    match error.entry {
        Some(index) => api_error.in_entry(index),
        None => api_error,
    }
}
