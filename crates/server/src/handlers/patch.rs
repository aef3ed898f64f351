//! `patch` with JSON Patch (RFC 6902).

use auth::scope::Permission;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fhir::outcome::IssueType;
use serde_json::Value;
use store::{Method, StoredResource};

use crate::audit::Note;
use crate::authorize::Caller;
use crate::error::ApiError;
use crate::handlers::update::respond;
use crate::handlers::{check_resource, parse_id, parse_type};
use crate::negotiation::{if_match, read_json_patch};
use crate::state::FhirContext;

/// `PATCH [base]/[type]/[id]`: applies the patch to the current version and stores the
/// result as the next version, provided nobody wrote in between (the version read is the
/// `If-Match` of the write). Without a client `If-Match`, a write in between makes it read
/// and apply again.
pub(crate) async fn patch(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path((type_name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (resource_type, id) = (parse_type(&type_name)?, parse_id(&id)?);
    let limit = caller.admit(&context, &resource_type, Permission::Update)?;
    limit.check_existing(&context, &resource_type, &id).await?;
    let document = read_json_patch(&headers, body, context.app.config.max_body_bytes).await?;
    let operations: json_patch::Patch = serde_json::from_value(document)
        .map_err(|error| ApiError::bad_request(format!("the body is not a JSON Patch document: {error}")))?;
    let requested = if_match(&headers)?;
    let mut attempt = 1;
    loop {
        let current = context
            .store()
            .read(context.env, &resource_type, &id)
            .await?
            .filter(|current| !current.deleted)
            .ok_or_else(|| ApiError::not_found(format!("{resource_type}/{id} is not known")))?;
        let (resource, expected, warnings) = apply(&current, requested, &operations)?;
        limit.check_body(&context, &resource_type, &resource, &caller)?;
        let store = context.audited_store(&note);
        match store.update(context.env, &resource_type, &id, resource, Some(expected), Method::Patch).await {
            // Someone wrote in between and the client named no version: patch the newer one.
            Err(store::Error::VersionConflict { .. }) if requested.is_none() && attempt < PATCH_ATTEMPTS => {
                attempt += 1;
            }
            // Still losing to other writers: the client asked for no precondition, so no 412.
            Err(store::Error::VersionConflict { .. }) if requested.is_none() => {
                return Err(ApiError::unavailable(
                    format!("{resource_type}/{id} kept changing while the patch was applied; retry it"),
                    1,
                ));
            }
            outcome => {
                let outcome = outcome?;
                note.written();
                return Ok(respond(&context, &headers, &outcome, &warnings));
            }
        }
    }
}

/// Reads and applications of a patch without `If-Match` before it gives up with a 503 (other
/// writers kept changing the resource).
const PATCH_ATTEMPTS: u32 = 5;

/// The resource `current` becomes under `operations`, validated, the version the write must
/// find (`expected`, else the version read), so that a write in between fails it, and the
/// validation's warnings.
pub(crate) fn apply(
    current: &StoredResource,
    expected: Option<u64>,
    operations: &json_patch::Patch,
) -> Result<(Value, u64, Vec<fhir::outcome::Issue>), ApiError> {
    let expected = expected.unwrap_or(current.version);
    if expected != current.version {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            IssueType::Conflict,
            format!("{}/{} is at version {}, not {expected}", current.resource_type, current.id, current.version),
        ));
    }
    let mut resource: Value = serde_json::from_str(&current.body).map_err(ApiError::internal)?;
    json_patch::patch(&mut resource, operations).map_err(|error| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueType::Processing,
            format!("the patch could not be applied: {error}"),
        )
    })?;
    if resource.get("id").and_then(Value::as_str) != Some(current.id.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueType::BusinessRule,
            "a patch may not change or remove the resource's id",
        ));
    }
    let resource_type = parse_type(&current.resource_type)?;
    let warnings = check_resource(&resource_type, &resource)?;
    Ok((resource, expected, warnings))
}
