//! `delete` and conditional delete. A delete writes a tombstone version: history keeps
//! every earlier version, and a later update brings the resource back.

use auth::scope::Permission;
use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::audit::Note;
use crate::authorize::Caller;
use crate::error::ApiError;
use crate::handlers::{parse_criteria, parse_id, parse_type};
use crate::negotiation::if_match;
use crate::response::etag;
use crate::state::FhirContext;

/// `DELETE [base]/[type]/[id]`: 204; deleting an already deleted resource is also 204.
pub(crate) async fn delete(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path((type_name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (resource_type, id) = (parse_type(&type_name)?, parse_id(&id)?);
    caller.admit(&context, &resource_type, Permission::Delete)?.check_existing(&context, &resource_type, &id).await?;
    let expected = if_match(&headers)?;
    // The tombstone holds no body: the audit event takes the patients from the version deleted.
    if let Some(current) = context.store().read(context.env, &resource_type, &id).await?.filter(|found| !found.deleted)
    {
        note.resource(&current);
    }
    let version = context.audited_store(&note).delete(context.env, &resource_type, &id, expected).await?;
    note.written();
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(version) = version {
        response.headers_mut().insert(header::ETAG, etag(version));
    }
    Ok(response)
}

/// `DELETE [base]/[type]?criteria`: deletes the one match; no match is a no-op (204); more
/// than one is 412.
pub(crate) async fn conditional_delete(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path(type_name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let resource_type = parse_type(&type_name)?;
    caller.admit(&context, &resource_type, Permission::Delete)?;
    let mut criteria = parse_criteria(&context.store().registry(context.env), &resource_type, query.as_deref())?;
    caller.narrow_criteria(&context, &resource_type, &mut criteria)?;
    context.audited_store(&note).conditional_delete(context.env, &resource_type, criteria).await?;
    note.written();
    Ok(StatusCode::NO_CONTENT.into_response())
}
