//! One module per FHIR interaction, plus the small parsers they share. Handlers extract,
//! call the store, and map the result; FHIR rules stay in the `fhir` crate.

pub(crate) mod capabilities;
pub(crate) mod create;
pub(crate) mod delete;
pub(crate) mod health;
pub(crate) mod history;
pub(crate) mod patch;
pub(crate) mod read;
pub(crate) mod search;
pub(crate) mod transaction;
pub(crate) mod update;
pub(crate) mod validate;

use axum::http::StatusCode;
use fhir::Definitions;
use fhir::id::{LogicalId, ResourceType};
use fhir::outcome::{Issue, IssueType};
use fhir::search::{Criteria, Registry};
use serde_json::Value;

use crate::error::ApiError;

/// The resource type named in a URL; 404 if the server has no such type.
pub(crate) fn parse_type(name: &str) -> Result<ResourceType, ApiError> {
    ResourceType::parse(name)
        .ok_or_else(|| ApiError::not_found(format!("'{name}' is not a resource type this server supports")))
}

/// The logical id in a URL; 400 if it is not a valid FHIR id.
pub(crate) fn parse_id(id: &str) -> Result<LogicalId, ApiError> {
    LogicalId::parse(id)
        .ok_or_else(|| ApiError::bad_request(format!("'{id}' is not a valid id (1-64 of A-Z, a-z, 0-9, '-', '.')")))
}

/// Decoded `name=value` pairs of a query string; 400 if it is not valid form encoding.
pub(crate) fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|error| ApiError::bad_request(format!("the query string is malformed: {error}")))
}

/// Conditional criteria from a query string (conditional update and delete) or an
/// `If-None-Exist` header. Empty criteria are refused: they would match every resource.
pub(crate) fn parse_criteria(
    registry: &Registry,
    resource_type: &ResourceType,
    query: Option<&str>,
) -> Result<Criteria, ApiError> {
    let pairs = query_pairs(query)?;
    let criteria = Criteria::parse(registry, resource_type.as_str(), &pairs)
        .map_err(|issue| ApiError::with_issues(StatusCode::BAD_REQUEST, vec![issue]))?;
    if criteria.is_empty() {
        return Err(ApiError::bad_request("conditional criteria are required here and none were given"));
    }
    Ok(criteria)
}

/// Checks that the body's `resourceType` is the one in the URL, then validates it; 400 with
/// every issue found when it is invalid, else the warnings (e.g. `dom-6`, a resource without
/// narrative), which a write reports in its OperationOutcome.
pub(crate) fn check_resource(resource_type: &ResourceType, resource: &Value) -> Result<Vec<Issue>, ApiError> {
    let body_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or("");
    if body_type != resource_type.as_str() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Invalid,
            format!("the body is a {body_type} but the URL is for {resource_type}"),
        ));
    }
    let issues = Definitions::get().validate(resource);
    if issues.iter().any(|issue| issue.is_error()) {
        return Err(ApiError::with_issues(StatusCode::BAD_REQUEST, issues));
    }
    Ok(issues)
}
