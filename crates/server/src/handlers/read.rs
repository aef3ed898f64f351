//! `read` and `vread`, with conditional reads (`If-None-Match`, `If-Modified-Since`).

use auth::scope::Permission;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir::outcome::IssueType;
use store::StoredResource;

use crate::audit::Note;
use crate::authorize::Caller;
use crate::error::ApiError;
use crate::handlers::{parse_id, parse_type};
use crate::negotiation::parse_etag;
use crate::response::{etag, resource_response};
use crate::state::FhirContext;

/// `GET [base]/[type]/[id]`.
pub(crate) async fn read(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path((type_name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (resource_type, id) = (parse_type(&type_name)?, parse_id(&id)?);
    let limit = caller.admit(&context, &resource_type, Permission::Read)?;
    let resource = context
        .store()
        .read(context.env, &resource_type, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{resource_type}/{id} is not known")))?;
    note.resource(&resource);
    limit.check(&context, &resource_type, &id).await?;
    if resource.deleted {
        return Err(gone(&resource));
    }
    if not_modified(&headers, &resource) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().insert(header::ETAG, etag(resource.version));
        return Ok(response);
    }
    Ok(resource_response(&resource))
}

/// `GET [base]/[type]/[id]/_history/[vid]`.
pub(crate) async fn vread(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path((type_name, id, version)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (resource_type, id) = (parse_type(&type_name)?, parse_id(&id)?);
    caller.admit(&context, &resource_type, Permission::Read)?.check(&context, &resource_type, &id).await?;
    let version: u64 = version
        .parse()
        .map_err(|_| ApiError::not_found(format!("'{version}' is not a version of {resource_type}/{id}")))?;
    let resource = context
        .store()
        .vread(context.env, &resource_type, &id, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{resource_type}/{id} has no version {version}")))?;
    note.resource(&resource);
    if resource.deleted {
        return Err(gone(&resource));
    }
    Ok(resource_response(&resource))
}

fn gone(resource: &StoredResource) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        IssueType::Deleted,
        format!("{}/{} was deleted (version {})", resource.resource_type, resource.id, resource.version),
    )
}

/// True when the client's cached copy is current.
fn not_modified(headers: &HeaderMap, resource: &StoredResource) -> bool {
    if let Some(value) = headers.get(header::IF_NONE_MATCH).and_then(|value| value.to_str().ok()) {
        return value.split(',').any(|tag| tag.trim() == "*" || parse_etag(tag) == Some(resource.version));
    }
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| httpdate::parse_http_date(text).ok());
    match since {
        Some(since) => {
            let since = since.duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
            u64::try_from(resource.last_updated.unix_timestamp()).unwrap_or(0) <= since
        }
        None => false,
    }
}
