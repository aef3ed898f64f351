//! Building FHIR responses: resource bodies with their version headers, honouring `Prefer`.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir::outcome::{Issue, IssueType};
use store::StoredResource;

use crate::error::outcome_response;
use crate::negotiation::ReturnPreference;

/// The content type of every FHIR JSON response.
pub(crate) const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// `W/"n"`: the weak ETag of version `n`.
pub(crate) fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\"")).unwrap_or_else(|_| HeaderValue::from_static("W/\"0\""))
}

/// The `Last-Modified` value (an HTTP date, second precision) of a stored version.
pub(crate) fn last_modified(resource: &StoredResource) -> HeaderValue {
    let seconds = u64::try_from(resource.last_updated.unix_timestamp()).unwrap_or(0);
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    HeaderValue::from_str(&httpdate::fmt_http_date(when)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A 200 response carrying `resource` with its `ETag` and `Last-Modified`.
pub(crate) fn resource_response(resource: &StoredResource) -> Response {
    let mut response = json_response(StatusCode::OK, resource.body.clone());
    version_headers(response.headers_mut(), resource);
    response
}

/// The response to a write: `status` with `Location`, `ETag`, `Last-Modified`, and the body
/// that the client's `Prefer: return=` asks for; an OperationOutcome also carries the
/// validation's `warnings`.
pub(crate) fn write_response(
    status: StatusCode,
    resource: &StoredResource,
    base: &str,
    location: bool,
    preference: ReturnPreference,
    warnings: &[Issue],
) -> Response {
    let mut response = match preference {
        ReturnPreference::Representation => json_response(status, resource.body.clone()),
        ReturnPreference::Minimal => status.into_response(),
        ReturnPreference::OperationOutcome => {
            let note = Issue::information(
                IssueType::Informational,
                format!("{} {}/{} version {}", verb(status), resource.resource_type, resource.id, resource.version),
            );
            let issues: Vec<Issue> = std::iter::once(note).chain(warnings.iter().cloned()).collect();
            outcome_response(status, &issues, None)
        }
    };
    let headers = response.headers_mut();
    version_headers(headers, resource);
    if location {
        let url = format!("{base}/{}/{}/_history/{}", resource.resource_type, resource.id, resource.version);
        if let Ok(value) = HeaderValue::from_str(&url) {
            headers.insert(header::LOCATION, value);
        }
    }
    response
}

/// A JSON body with the FHIR content type.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, Body::from(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

fn version_headers(headers: &mut HeaderMap, resource: &StoredResource) {
    headers.insert(header::ETAG, etag(resource.version));
    headers.insert(header::LAST_MODIFIED, last_modified(resource));
}

fn verb(status: StatusCode) -> &'static str {
    if status == StatusCode::CREATED { "created" } else { "updated" }
}
