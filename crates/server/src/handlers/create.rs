//! `create`, including conditional create (`If-None-Exist`).

use auth::scope::Permission;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use store::WriteKind;

use crate::audit::Note;
use crate::authorize::Caller;
use crate::error::ApiError;
use crate::handlers::{check_resource, parse_criteria, parse_type};
use crate::negotiation::{read_resource, return_preference};
use crate::response::write_response;
use crate::state::FhirContext;

/// `POST [base]/[type]`: the server assigns the id; an id in the body is ignored, as the
/// spec says.
pub(crate) async fn create(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path(type_name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let resource_type = parse_type(&type_name)?;
    let limit = caller.admit(&context, &resource_type, Permission::Create)?;
    let resource = read_resource(&headers, body, context.app.config.max_body_bytes).await?;
    let warnings = check_resource(&resource_type, &resource)?;
    limit.check_body(&context, &resource_type, &resource, &caller)?;
    let condition = match headers.get("if-none-exist") {
        Some(value) => {
            let query = value.to_str().map_err(|_| ApiError::bad_request("If-None-Exist is not valid text"))?;
            let mut criteria = parse_criteria(
                &context.store().registry(context.env),
                &resource_type,
                Some(query.trim_start_matches('?')),
            )?;
            caller.narrow_criteria(&context, &resource_type, &mut criteria)?;
            Some(criteria)
        }
        None => None,
    };
    let outcome = context.audited_store(&note).create(context.env, &resource_type, resource, condition).await?;
    note.written();
    let preference = return_preference(&headers);
    Ok(match outcome.kind {
        WriteKind::Unchanged => {
            write_response(StatusCode::OK, &outcome.resource, &context.base, false, preference, &warnings)
        }
        _ => write_response(StatusCode::CREATED, &outcome.resource, &context.base, true, preference, &warnings),
    })
}
