//! `$validate`: the validation a write would do, without storing anything.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fhir::Definitions;
use serde_json::Value;

use crate::error::{ApiError, outcome_response};
use crate::handlers::parse_type;
use crate::negotiation::read_resource;
use crate::state::FhirContext;

/// `POST [base]/[type]/$validate`: the body is the resource, or a `Parameters` whose
/// `resource` parameter holds it. Answers 200 with an OperationOutcome whether or not the
/// resource is valid; 4xx means validation could not be performed.
pub(crate) async fn validate(
    State(context): State<FhirContext>,
    Path(type_name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let resource_type = parse_type(&type_name)?;
    let body = read_resource(&headers, body, context.app.config.max_body_bytes).await?;
    let resource = if body["resourceType"] == "Parameters" && resource_type.as_str() != "Parameters" {
        unwrap_parameters(&body)?
    } else {
        &body
    };
    let mut issues = Definitions::get().validate(resource);
    if resource["resourceType"] != resource_type.as_str() {
        issues.push(fhir::Issue::error(
            fhir::IssueType::Invalid,
            format!("the resource is a {} but the URL is for {resource_type}", resource["resourceType"]),
        ));
    }
    Ok(outcome_response(StatusCode::OK, &issues, None))
}

fn unwrap_parameters(parameters: &Value) -> Result<&Value, ApiError> {
    parameters["parameter"]
        .as_array()
        .and_then(|list| list.iter().find(|parameter| parameter["name"] == "resource"))
        .and_then(|parameter| parameter.get("resource"))
        .ok_or_else(|| ApiError::bad_request("the Parameters body has no 'resource' parameter"))
}
