//! `update` (with create-on-update and `If-Match`) and conditional update.

use auth::scope::Permission;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use store::{Method, WriteKind, WriteOutcome};

use crate::audit::Note;
use crate::authorize::Caller;
use crate::error::ApiError;
use crate::handlers::{check_resource, parse_criteria, parse_id, parse_type};
use crate::negotiation::{if_match, read_resource, return_preference};
use crate::response::write_response;
use crate::state::FhirContext;

/// `PUT [base]/[type]/[id]`: the body must carry the same id.
pub(crate) async fn update(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path((type_name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (resource_type, id) = (parse_type(&type_name)?, parse_id(&id)?);
    let limit = caller.admit(&context, &resource_type, Permission::Update)?;
    let resource = read_resource(&headers, body, context.app.config.max_body_bytes).await?;
    match resource.get("id") {
        Some(Value::String(body_id)) if body_id == id.as_str() => {}
        Some(Value::String(body_id)) => {
            return Err(ApiError::bad_request(format!(
                "the body's id '{body_id}' differs from the id in the URL '{id}'"
            )));
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "an update needs the resource's id in the body (\"id\": \"{id}\")"
            )));
        }
    }
    let warnings = check_resource(&resource_type, &resource)?;
    limit.check_existing(&context, &resource_type, &id).await?;
    limit.check_body(&context, &resource_type, &resource, &caller)?;
    let expected = if_match(&headers)?;
    let store = context.audited_store(&note);
    let outcome = store.update(context.env, &resource_type, &id, resource, expected, Method::Put).await?;
    note.written();
    Ok(respond(&context, &headers, &outcome, &warnings))
}

/// `PUT [base]/[type]?criteria`.
pub(crate) async fn conditional_update(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path(type_name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let resource_type = parse_type(&type_name)?;
    let limit = caller.admit(&context, &resource_type, Permission::Update)?;
    let mut criteria = parse_criteria(&context.store().registry(context.env), &resource_type, query.as_deref())?;
    let resource = read_resource(&headers, body, context.app.config.max_body_bytes).await?;
    let warnings = check_resource(&resource_type, &resource)?;
    limit.check_body(&context, &resource_type, &resource, &caller)?;
    caller.narrow_criteria(&context, &resource_type, &mut criteria)?;
    let outcome =
        context.audited_store(&note).conditional_update(context.env, &resource_type, criteria, resource).await?;
    note.written();
    Ok(respond(&context, &headers, &outcome, &warnings))
}

/// 201 with `Location` for a create, 200 for an update.
pub(crate) fn respond(
    context: &FhirContext,
    headers: &HeaderMap,
    outcome: &WriteOutcome,
    warnings: &[fhir::outcome::Issue],
) -> Response {
    let created = outcome.kind == WriteKind::Created;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    write_response(status, &outcome.resource, &context.base, created, return_preference(headers), warnings)
}
