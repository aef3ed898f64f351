//! `capabilities`: `GET [base]/metadata`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::response::json_response;
use crate::state::FhirContext;

/// `GET [base]/metadata`: the CapabilityStatement built for this base at start.
pub(crate) async fn metadata(State(context): State<FhirContext>) -> Response {
    json_response(StatusCode::OK, context.capability.to_string())
}
