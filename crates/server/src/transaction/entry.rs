//! Reading one Bundle entry (`request`, `resource`, `fullUrl`) into a store operation:
//! method and URL, `ifMatch`, `ifNoneExist`, validation of the resource, and the conditional
//! references its body holds.

use base64::Engine as _;
use fhir::id::{LogicalId, ResourceType};
use fhir::outcome::{Issue, IssueType};
use fhir::references;
use fhir::search::Registry;
use serde_json::Value;
use store::{ConditionalReference, Method, Operation, TransactionEntry};

use axum::http::StatusCode;

use crate::error::ApiError;
use crate::handlers::{check_resource, parse_criteria, parse_id, parse_type};
use crate::negotiation::parse_etag;

/// What an entry asks for.
pub(crate) enum Request {
    /// An interaction the store runs.
    Store(ParsedEntry),
    /// A search (`GET [type]?…`), run through the search handler.
    Search { type_name: String, query: Option<String> },
    /// A JSON Patch, applied to the current version before the store runs the entry.
    Patch(PatchEntry),
}

/// `PATCH [type]/[id]` with a JSON Patch document (a `Binary` of type
/// `application/json-patch+json`, as the spec has Bundles carry patches).
pub(crate) struct PatchEntry {
    pub(crate) resource_type: ResourceType,
    pub(crate) id: LogicalId,
    pub(crate) operations: json_patch::Patch,
    pub(crate) if_match: Option<u64>,
    pub(crate) placeholder: Option<String>,
}

impl PatchEntry {
    /// The entry as the store runs it: an update to `resource` (the patched current version,
    /// validated) that fails if the resource is no longer at `expected`.
    pub(crate) fn into_entry(self, resource: Value, expected: u64, warnings: Vec<Issue>) -> ParsedEntry {
        let operation = Operation::Update {
            resource_type: self.resource_type,
            id: self.id,
            resource,
            expected: Some(expected),
            method: Method::Patch,
        };
        ParsedEntry {
            entry: TransactionEntry { placeholder: self.placeholder, operation },
            conditional_references: Vec::new(),
            warnings,
        }
    }
}

/// An entry ready for the store, with the conditional references found in its resource.
pub(crate) struct ParsedEntry {
    pub(crate) entry: TransactionEntry,
    pub(crate) conditional_references: Vec<ConditionalReference>,
    /// The validation's warnings on the entry's resource, for its response's `outcome`.
    pub(crate) warnings: Vec<Issue>,
}

/// Parses entry `index` of a Bundle posted to `base`. The entry's resource is moved out of
/// `entry`.
pub(crate) fn parse(registry: &Registry, base: &str, index: usize, entry: &mut Value) -> Result<Request, ApiError> {
    let request = entry.get("request").ok_or_else(|| ApiError::bad_request("the entry has no request"))?;
    let method = text(request, "method")?.to_owned();
    let url = relative_url(base, text(request, "url")?);
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (url.clone(), None),
    };
    let segments: Vec<&str> = path.split('/').filter(|segment| !segment.is_empty()).collect();
    let if_match = optional_text(request, "ifMatch")?.map(parse_if_match).transpose()?;
    let if_none_exist = optional_text(request, "ifNoneExist")?.map(str::to_owned);
    let placeholder =
        entry.get("fullUrl").and_then(Value::as_str).filter(|url| references::is_placeholder(url)).map(str::to_owned);
    let resource = entry.get_mut("resource").map(Value::take);
    let mut warnings = Vec::new();
    let mut checked = |resource_type: &ResourceType, resource: Option<Value>| {
        let (resource, found) = checked(resource_type, resource)?;
        warnings = found;
        Ok::<Value, ApiError>(resource)
    };
    let operation = match (method.as_str(), segments.as_slice(), query) {
        ("POST", [type_name], None) => {
            let resource_type = parse_type(type_name)?;
            let resource = checked(&resource_type, resource)?;
            let condition = if_none_exist
                .map(|query| parse_criteria(registry, &resource_type, Some(query.rsplit('?').next().unwrap_or(""))))
                .transpose()?;
            Operation::Create { resource_type, resource, condition }
        }
        ("PUT", [type_name, id], None) => {
            let (resource_type, id) = (parse_type(type_name)?, parse_id(id)?);
            let resource = checked(&resource_type, resource)?;
            check_body_id(&resource, id.as_str())?;
            Operation::Update { resource_type, id, resource, expected: if_match, method: Method::Put }
        }
        ("PUT", [type_name], Some(query)) => {
            let resource_type = parse_type(type_name)?;
            let criteria = parse_criteria(registry, &resource_type, Some(&query))?;
            Operation::ConditionalUpdate { resource: checked(&resource_type, resource)?, resource_type, criteria }
        }
        ("DELETE", [type_name, id], None) => {
            Operation::Delete { resource_type: parse_type(type_name)?, id: parse_id(id)?, expected: if_match }
        }
        ("DELETE", [type_name], Some(query)) => {
            let resource_type = parse_type(type_name)?;
            Operation::ConditionalDelete {
                criteria: parse_criteria(registry, &resource_type, Some(&query))?,
                resource_type,
            }
        }
        ("GET" | "HEAD", [type_name, id], None) => {
            Operation::Read { resource_type: parse_type(type_name)?, id: parse_id(id)?, version: None }
        }
        ("GET" | "HEAD", [type_name, id, "_history", version], None) => {
            let version = version.parse().map_err(|_| ApiError::not_found(format!("'{version}' is not a version")))?;
            Operation::Read { resource_type: parse_type(type_name)?, id: parse_id(id)?, version: Some(version) }
        }
        ("GET" | "HEAD", [type_name], query) => {
            parse_type(type_name)?;
            return Ok(Request::Search { type_name: (*type_name).to_owned(), query });
        }
        ("PATCH", [type_name, id], None) => {
            let (resource_type, id) = (parse_type(type_name)?, parse_id(id)?);
            let operations = json_patch(resource)?;
            return Ok(Request::Patch(PatchEntry { resource_type, id, operations, if_match, placeholder }));
        }
        ("GET" | "HEAD" | "PATCH", _, _) => return Err(not_supported(&method, &url)),
        _ => return Err(ApiError::bad_request(format!("'{method} {url}' is not a valid Bundle entry request"))),
    };
    let conditional_references = conditional_references(registry, index, &operation)?;
    let entry = TransactionEntry { placeholder, operation };
    Ok(Request::Store(ParsedEntry { entry, conditional_references, warnings }))
}

/// The JSON Patch document a PATCH entry carries as a `Binary` (base64 `data`).
fn json_patch(resource: Option<Value>) -> Result<json_patch::Patch, ApiError> {
    let resource = resource.ok_or_else(|| ApiError::bad_request("a PATCH entry needs a Binary with the patch"))?;
    let content_type = resource.get("contentType").and_then(Value::as_str).unwrap_or("");
    if resource.get("resourceType").and_then(Value::as_str) != Some("Binary")
        || content_type.split(';').next().map(str::trim) != Some("application/json-patch+json")
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::NotSupported,
            "a PATCH entry's resource must be a Binary of contentType application/json-patch+json (FHIRPath Patch is not supported)",
        ));
    }
    let data = resource.get("data").and_then(Value::as_str).unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|error| ApiError::bad_request(format!("the patch Binary's data is not base64: {error}")))?;
    serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::bad_request(format!("the patch Binary's data is not a JSON Patch document: {error}"))
    })
}

/// The URL relative to the FHIR base: absolute URLs on this base lose the base.
fn relative_url(base: &str, url: &str) -> String {
    let url = url.strip_prefix(base).unwrap_or(url);
    url.trim_start_matches('/').to_owned()
}

fn text<'a>(object: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    optional_text(object, field)?.ok_or_else(|| ApiError::bad_request(format!("the entry's request has no {field}")))
}

fn optional_text<'a>(object: &'a Value, field: &str) -> Result<Option<&'a str>, ApiError> {
    match object.get(field) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ApiError::bad_request(format!("request.{field} must be a string"))),
    }
}

fn parse_if_match(text: &str) -> Result<u64, ApiError> {
    parse_etag(text)
        .ok_or_else(|| ApiError::bad_request(format!("ifMatch '{text}' is not a version ETag like W/\"3\"")))
}

/// The entry's resource, validated against its type and profiles, and the warnings.
fn checked(resource_type: &ResourceType, resource: Option<Value>) -> Result<(Value, Vec<Issue>), ApiError> {
    let resource = resource.ok_or_else(|| ApiError::bad_request("this entry needs a resource"))?;
    let warnings = check_resource(resource_type, &resource)?;
    Ok((resource, warnings))
}

/// A PUT body may omit its id (the URL gives it) but may not contradict the URL.
fn check_body_id(resource: &Value, id: &str) -> Result<(), ApiError> {
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id != id => {
            Err(ApiError::bad_request(format!("the resource's id '{body_id}' differs from the id in the URL '{id}'")))
        }
        _ => Ok(()),
    }
}

fn not_supported(method: &str, url: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        IssueType::NotSupported,
        format!(
            "'{method} {url}' is not supported inside a Bundle (read, vread, search, create, update, patch and delete are)"
        ),
    )
}

/// Every search-style reference (`Patient?identifier=…`) in the entry's resource.
fn conditional_references(
    registry: &Registry,
    index: usize,
    operation: &Operation,
) -> Result<Vec<ConditionalReference>, ApiError> {
    let resource = match operation {
        Operation::Create { resource, .. }
        | Operation::Update { resource, .. }
        | Operation::ConditionalUpdate { resource, .. } => resource,
        _ => return Ok(Vec::new()),
    };
    let mut found: Vec<ConditionalReference> = Vec::new();
    for reference in references::references(resource) {
        let Some((type_name, query)) = references::conditional(reference) else { continue };
        if found.iter().any(|known| known.reference == reference) {
            continue;
        }
        let resource_type = parse_type(type_name)?;
        let criteria = parse_criteria(registry, &resource_type, Some(query))?;
        found.push(ConditionalReference { reference: reference.to_owned(), resource_type, criteria, entry: index });
    }
    Ok(found)
}
